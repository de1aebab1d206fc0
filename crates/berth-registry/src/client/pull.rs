//! Pull: resolve a reference, stream each layer into the store while it downloads.

use super::*;

/// A `Read` over byte chunks sent from the download task.
struct ChanReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    cur: Bytes,
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// Decompresses zstd (every frame, skipping skippable ones) for the store, which takes plain
/// or gzip tars.
struct ZstdReader<R: Read> {
    src: std::io::BufReader<R>,
    dec: ruzstd::decoding::FrameDecoder,
    in_frame: bool,
}

impl<R: Read> ZstdReader<R> {
    fn new(r: R) -> Self {
        ZstdReader {
            src: std::io::BufReader::with_capacity(256 * 1024, r),
            dec: ruzstd::decoding::FrameDecoder::new(),
            in_frame: false,
        }
    }
}

impl<R: Read> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
        use std::io::BufRead;
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.in_frame {
                while self.dec.can_collect() < buf.len() && !self.dec.is_finished() {
                    let need = buf.len() - self.dec.can_collect();
                    self.dec
                        .decode_blocks(
                            &mut self.src,
                            ruzstd::decoding::BlockDecodingStrategy::UptoBytes(need),
                        )
                        .map_err(std::io::Error::other)?;
                }
                let n = self.dec.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.in_frame = false;
            }
            if self.src.fill_buf()?.is_empty() {
                return Ok(0);
            }
            match self.dec.reset(&mut self.src) {
                Ok(()) => self.in_frame = true,
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    std::io::copy(
                        &mut (&mut self.src).take(u64::from(length)),
                        &mut std::io::sink(),
                    )?;
                }
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
    }
}

fn is_zstd(desc: &Descriptor) -> bool {
    desc.media_type.ends_with("+zstd") || desc.media_type.ends_with(".zstd")
}

/// Downloads a blob into `tx`, verifying its digest; resumes with `Range` after a dropped
/// connection (up to 3 times).
async fn stream_blob(
    s: &Session,
    desc: &Descriptor,
    id: &str,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    ptx: &mpsc::Sender<Progress>,
) -> Result<(), RegistryError> {
    let url = s.url(&format!("blobs/{}", desc.digest));
    let mut hasher = Sha256::new();
    let mut offset: u64 = 0;
    let mut attempts = 0;
    let mut last_report = std::time::Instant::now();
    let gone = || RegistryError::Http("layer extraction stopped".into());
    'outer: loop {
        let resp = s
            .send(|c| {
                let r = c.get(&url);
                if offset > 0 {
                    r.header(reqwest::header::RANGE, format!("bytes={offset}-"))
                } else {
                    r
                }
            })
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(RegistryError::Http(e)) if attempts < 3 => {
                attempts += 1;
                tracing::debug!("retrying {} at {offset}: {e}", desc.digest);
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempts)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if offset > 0 && resp.status() != StatusCode::PARTIAL_CONTENT {
            return Err(RegistryError::Http(format!(
                "registry can not resume blob {} (status {})",
                desc.digest,
                resp.status()
            )));
        }
        if !resp.status().is_success() {
            return Err(response_error(resp).await);
        }
        let mut stream = resp.bytes_stream();
        while let Some(c) = stream.next().await {
            match c {
                Ok(c) => {
                    hasher.update(&c);
                    offset += c.len() as u64;
                    if desc.size > 0 && offset > desc.size {
                        return Err(RegistryError::DigestMismatch(format!(
                            "blob {} is larger than its descriptor says ({})",
                            desc.digest, desc.size
                        )));
                    }
                    tx.send(Ok(c)).await.map_err(|_| gone())?;
                    if last_report.elapsed() > std::time::Duration::from_millis(100) {
                        last_report = std::time::Instant::now();
                        let _ = ptx.send(Progress::bar(id, "Downloading", offset, desc.size));
                    }
                }
                Err(e) if attempts < 3 => {
                    attempts += 1;
                    tracing::debug!("blob {} dropped at {offset}: {e}", desc.digest);
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempts)).await;
                    continue 'outer;
                }
                Err(e) => return Err(net_err(&format!("download {}", desc.digest), e)),
            }
        }
        break;
    }
    let _ = ptx.send(Progress::bar(id, "Downloading", offset, desc.size));
    let _ = ptx.send(Progress::line(Some(id), "Verifying Checksum"));
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != desc.digest {
        let msg = format!(
            "filesystem layer verification failed for digest {}",
            desc.digest
        );
        let _ = tx
            .send(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                msg.clone(),
            )))
            .await;
        return Err(RegistryError::DigestMismatch(msg));
    }
    let _ = ptx.send(Progress::line(Some(id), "Download complete"));
    Ok(())
}

/// Pulls `reference` into `store`; returns the image id. Blocking (see the module doc).
///
/// An image whose config is already in the store is not downloaded again; layers some local
/// image already has, or that the store holds from an earlier (interrupted) pull, are reported
/// "Already exists" and skipped.
pub fn pull(
    store: &ImageStore,
    reference: &str,
    opts: &PullOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<String, RegistryError> {
    let r = parse_ref(reference)?;
    let (ptx, prx) = mpsc::channel::<Progress>();
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| pull_worker(scope, store, &r, opts, ptx));
        for p in prx {
            progress(p);
        }
        worker
            .join()
            .unwrap_or_else(|_| Err(RegistryError::Http("pull worker panicked".into())))
    })
}

fn pull_worker<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    store: &'scope ImageStore,
    r: &Reference,
    opts: &PullOptions,
    ptx: mpsc::Sender<Progress>,
) -> Result<String, RegistryError> {
    let rt = runtime()?;
    let platform = wanted_platform(opts.platform.as_deref())?;
    let tag_or_digest = r.tag.clone().or(r.digest.clone()).unwrap_or_default();
    let (session, resolved) = on_pull_endpoints(&rt, r, opts, |s| {
        let platform = &platform;
        async move {
            let resolved = match resolve(&s, r, platform).await {
                // Docker Hub answers a pull of a repository it does not have with "pull access
                // denied" (it cannot tell a missing repository from a private one); a mirror
                // standing in for it says "manifest unknown". Clients rely on Hub's wording
                // (docker-py maps it to ImageNotFound), so a repository the mirror lacks
                // altogether gets it.
                Err(RegistryError::NotFound(m))
                    if r.domain == DOCKER_HUB && !repository_exists(&s).await =>
                {
                    Err(RegistryError::NotFound(format!(
                        "pull access denied for {}, repository does not exist or may require 'docker login': {}",
                        repo_part(&r.familiar()),
                        m.rsplit_once(" not found: ").map(|(_, c)| c).unwrap_or(&m)
                    )))
                }
                res => res,
            }?;
            Ok::<_, RegistryError>((s, resolved))
        }
    })?;
    let _ = ptx.send(Progress {
        message: true,
        ..Progress::line(
            Some(&tag_or_digest),
            format!("Pulling from {}", r.repository_familiar_path()),
        )
    });
    let m = resolved.manifest;
    let config_desc = m
        .config
        .clone()
        .ok_or_else(|| RegistryError::Unsupported("manifest has no config".into()))?;
    let config = rt.block_on(get_blob_bytes(&session, &config_desc.digest, MAX_CONFIG))?;
    let peek: ConfigPeek = serde_json::from_slice(&config)
        .map_err(|e| RegistryError::Unsupported(format!("invalid image config: {e}")))?;
    if opts.platform.is_some() {
        let have = Platform {
            os: peek.os.clone(),
            architecture: peek.architecture.clone(),
            variant: peek.variant.clone(),
            os_version: None,
        };
        if !platform_matches(&platform, &have) {
            let v = |p: &Platform| {
                let mut s = format!("{}/{}", p.os, p.architecture);
                if let Some(v) = &p.variant {
                    s.push('/');
                    s.push_str(v);
                }
                s
            };
            return Err(RegistryError::NotFound(format!(
                "image with reference {} was found but does not match the specified platform: wanted {}, actual: {}",
                r.familiar(),
                v(&platform),
                v(&have)
            )));
        }
    }
    if peek.rootfs.diff_ids.len() != m.layers.len() {
        return Err(RegistryError::Unsupported(format!(
            "image config has {} diff ids but the manifest {} layers",
            peek.rootfs.diff_ids.len(),
            m.layers.len()
        )));
    }
    let tags: Vec<Reference> = if r.digest.is_none() {
        vec![r.clone()]
    } else {
        Vec::new()
    };
    let display = r.familiar();
    let image_id = config_desc.digest.clone();
    let previously = store.resolve_id(&r.full()).ok();
    let have_image = store.resolve_id(&image_id).is_ok();

    if !have_image {
        let chains = berth_image::chain_ids(&peek.rootfs.diff_ids);
        let mut present: HashSet<String> = HashSet::new();
        if let Ok(images) = store.list() {
            for img in images {
                if let Ok(ls) = store.image_layers(&img.id) {
                    present.extend(ls.into_iter().map(|l| l.chain_id));
                }
            }
        }
        struct Job<'a> {
            idx: usize,
            desc: &'a Descriptor,
            id: String,
            tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
        }
        let mut jobs = Vec::new();
        let mut unpackers = Vec::new();
        let mut seen = HashSet::new();
        for (i, desc) in m.layers.iter().enumerate() {
            let id = short(&desc.digest);
            if present.contains(&chains[i]) || store.has_layer(&chains[i]) {
                let _ = ptx.send(Progress::line(Some(&id), "Already exists"));
                continue;
            }
            if !seen.insert(chains[i].clone()) {
                continue;
            }
            let _ = ptx.send(Progress::line(Some(&id), "Pulling fs layer"));
            let (tx, rx) = tokio::sync::mpsc::channel(32);
            let parent = (i > 0).then(|| chains[i - 1].clone());
            let expected_diff = peek.rootfs.diff_ids[i].clone();
            let ptx2 = ptx.clone();
            let lid = id.clone();
            let size = desc.size;
            let zstd = is_zstd(desc);
            unpackers.push(scope.spawn(move || {
                let reader = ChanReader {
                    rx,
                    cur: Bytes::new(),
                };
                // Extracted as it streams in; kept only if it has the config's diff id.
                let info: LayerInfo = if zstd {
                    store.add_layer_streaming(
                        parent.as_deref(),
                        &expected_diff,
                        &mut ZstdReader::new(reader),
                    )?
                } else {
                    let mut reader = reader;
                    store.add_layer_streaming(parent.as_deref(), &expected_diff, &mut reader)?
                };
                if info.diff_id != expected_diff {
                    return Err(RegistryError::DigestMismatch(format!(
                        "layer {} has diff id {}, the image config says {expected_diff}",
                        lid, info.diff_id
                    )));
                }
                let _ = ptx2.send(Progress::bar(&lid, "Extracting", size, size));
                let _ = ptx2.send(Progress::line(Some(&lid), "Pull complete"));
                Ok::<_, RegistryError>(info)
            }));
            jobs.push(Job {
                idx: i,
                desc,
                id,
                tx,
            });
        }
        for j in jobs.iter().skip(CONCURRENT_DOWNLOADS) {
            let _ = ptx.send(Progress::line(Some(&j.id), "Waiting"));
        }
        let results: Vec<(usize, Result<(), RegistryError>)> = rt.block_on(async {
            futures_util::stream::iter(jobs.into_iter().map(|j| {
                let s = &session;
                let ptx = ptx.clone();
                async move {
                    let res = stream_blob(s, j.desc, &j.id, &j.tx, &ptx).await;
                    if let Err(e) = &res {
                        let _ = j.tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    }
                    (j.idx, res)
                }
            }))
            .buffer_unordered(CONCURRENT_DOWNLOADS)
            .collect()
            .await
        });
        // Unpack results first: a download that stopped because extraction failed reports
        // the extraction error.
        let mut first_err = None;
        for h in unpackers {
            match h.join() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(RegistryError::Http("layer unpack panicked".into()));
                }
            }
        }
        let mut results = results;
        results.sort_by_key(|(i, _)| *i);
        for (_, r) in results {
            if let Err(e) = r {
                if matches!(e, RegistryError::DigestMismatch(_)) || first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
    }
    let id = store.create_image(&config, &tags)?;
    store.add_reference(&r.with_digest(&resolved.digest), &id)?;
    let _ = ptx.send(Progress::line(None, format!("Digest: {}", resolved.digest)));
    let status = if previously.as_deref() == Some(id.as_str()) {
        format!("Status: Image is up to date for {display}")
    } else {
        format!("Status: Downloaded newer image for {display}")
    };
    let _ = ptx.send(Progress::line(None, status));
    Ok(id)
}

trait FamiliarPath {
    fn repository_familiar_path(&self) -> String;
}

impl FamiliarPath for Reference {
    /// Docker's "Pulling from library/busybox" names the path inside the registry.
    fn repository_familiar_path(&self) -> String {
        self.path.clone()
    }
}
