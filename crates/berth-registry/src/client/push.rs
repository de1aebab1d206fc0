//! Push: compress and upload the layers, then the config and manifest.

use super::*;

struct HashWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    n: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A compressed layer ready to push.
struct PreparedLayer {
    id: String,
    diff_id: String,
    digest: String,
    size: u64,
    file: tempfile::NamedTempFile,
}

/// Gzips each layer's stored tar (`ImageStore::open_layer_tar`) into a temp file, checking the
/// tar still has its diff id. Same gzip settings as ever, so a layer keeps its pushed digest.
fn prepare_layers(
    store: &ImageStore,
    layers: &[LayerInfo],
) -> Result<BTreeMap<String, PreparedLayer>, RegistryError> {
    // Open every layer first: an open file stays readable if the image is removed meanwhile.
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for l in layers {
        if seen.insert(l.diff_id.clone()) {
            files.push((l.diff_id.clone(), store.open_layer_tar(&l.diff_id)?));
        }
    }
    let mut out = BTreeMap::new();
    for (diff_id, f) in files {
        let p = compress_layer(&diff_id, f)?;
        out.insert(diff_id, p);
    }
    Ok(out)
}

fn compress_layer(diff_id: &str, mut src: std::fs::File) -> Result<PreparedLayer, RegistryError> {
    let file = tempfile::NamedTempFile::new().map_err(|e| RegistryError::io("temp file", e))?;
    let hw = HashWriter {
        inner: std::io::BufWriter::new(
            file.reopen()
                .map_err(|e| RegistryError::io("temp file", e))?,
        ),
        hasher: Sha256::new(),
        n: 0,
    };
    let mut gz = flate2::write::GzEncoder::new(hw, flate2::Compression::fast());
    let mut plain = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = src
            .read(&mut buf)
            .map_err(|e| RegistryError::io("read layer", e))?;
        if n == 0 {
            break;
        }
        plain.update(&buf[..n]);
        gz.write_all(&buf[..n])
            .map_err(|e| RegistryError::io("compress layer", e))?;
    }
    let mut hw = gz
        .finish()
        .map_err(|e| RegistryError::io("compress layer", e))?;
    hw.flush()
        .map_err(|e| RegistryError::io("compress layer", e))?;
    let plain_digest = format!("sha256:{}", hex::encode(plain.finalize()));
    if plain_digest != diff_id {
        return Err(RegistryError::DigestMismatch(format!(
            "local layer {diff_id} has content digest {plain_digest}"
        )));
    }
    Ok(PreparedLayer {
        id: short(diff_id),
        diff_id: diff_id.to_string(),
        digest: format!("sha256:{}", hex::encode(hw.hasher.finalize())),
        size: hw.n,
        file,
    })
}

/// Result of a push: the manifest digest and size (`tag: digest: sha256:... size: N`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PushResult {
    pub tag: String,
    pub digest: String,
    pub size: u64,
}

/// Pushes `reference` (a local image tag) to its registry. Blocking (see the module doc).
pub fn push(
    store: &ImageStore,
    reference: &str,
    opts: &PushOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<PushResult, RegistryError> {
    let r = parse_ref(reference)?;
    if r.digest.is_some() {
        return Err(RegistryError::InvalidReference(
            "cannot push a digest reference".into(),
        ));
    }
    let (ptx, prx) = mpsc::channel::<Progress>();
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| push_worker(store, &r, opts, ptx));
        for p in prx {
            progress(p);
        }
        worker
            .join()
            .unwrap_or_else(|_| Err(RegistryError::Http("push worker panicked".into())))
    })
}

async fn blob_exists(s: &Session, digest: &str) -> Result<bool, RegistryError> {
    let url = s.url(&format!("blobs/{digest}"));
    let resp = s.send(|c| c.head(&url)).await?;
    match resp.status() {
        st if st.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => Err(response_error(resp).await),
    }
}

/// Uploads a blob from a file in chunks (POST, PATCH..., PUT ?digest=).
async fn upload_blob(
    s: &Session,
    digest: &str,
    size: u64,
    file: &std::path::Path,
    id: Option<&str>,
    ptx: &mpsc::Sender<Progress>,
) -> Result<(), RegistryError> {
    let start = s.url("blobs/uploads/");
    let resp = s.send(|c| c.post(&start)).await?;
    if resp.status() != StatusCode::ACCEPTED {
        return Err(response_error(resp).await);
    }
    let mut loc = s.location(&resp)?;
    let mut f = tokio::fs::File::open(file)
        .await
        .map_err(|e| RegistryError::io("open layer", e))?;
    let mut offset: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    use tokio::io::AsyncReadExt;
    loop {
        let mut n = 0;
        while n < buf.len() {
            let k = f
                .read(&mut buf[n..])
                .await
                .map_err(|e| RegistryError::io("read layer", e))?;
            if k == 0 {
                break;
            }
            n += k;
        }
        if n == 0 {
            break;
        }
        let body = Bytes::copy_from_slice(&buf[..n]);
        let range = format!("{}-{}", offset, offset + n as u64 - 1);
        let url = loc.clone();
        let resp = s
            .send(|c| {
                c.patch(&url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(reqwest::header::CONTENT_RANGE, range.clone())
                    .body(body.clone())
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED && resp.status() != StatusCode::NO_CONTENT {
            return Err(response_error(resp).await);
        }
        loc = s.location(&resp)?;
        offset += n as u64;
        if let Some(id) = id {
            let _ = ptx.send(Progress::bar(id, "Pushing", offset, size));
        }
    }
    let sep = if loc.contains('?') { '&' } else { '?' };
    let url = format!("{loc}{sep}digest={digest}");
    let resp = s
        .send(|c| {
            c.put(&url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, 0)
        })
        .await?;
    if resp.status() != StatusCode::CREATED {
        return Err(response_error(resp).await);
    }
    Ok(())
}

async fn try_mount(s: &Session, digest: &str, from: &str) -> Result<bool, RegistryError> {
    let url = format!("{}?mount={digest}&from={from}", s.url("blobs/uploads/"));
    let resp = s.send(|c| c.post(&url)).await?;
    if resp.status() == StatusCode::CREATED {
        return Ok(true);
    }
    if resp.status() == StatusCode::ACCEPTED {
        // The registry opened an upload instead; cancel it.
        if let Ok(loc) = s.location(&resp) {
            let _ = s.send(|c| c.delete(&loc)).await;
        }
    }
    Ok(false)
}

fn push_worker(
    store: &ImageStore,
    r: &Reference,
    opts: &PushOptions,
    ptx: mpsc::Sender<Progress>,
) -> Result<PushResult, RegistryError> {
    let id = store.resolve_id(&r.full()).map_err(|_| {
        RegistryError::NotFound(format!(
            "An image does not exist locally with the tag: {}",
            r.repository_familiar()
        ))
    })?;
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let config = store.config_bytes(&id)?;
    let layers = store.image_layers(&id)?;
    let _ = ptx.send(Progress::line(
        None,
        format!("The push refers to repository [{}]", r.name()),
    ));
    // Docker lists the layers top first.
    for l in layers.iter().rev() {
        let _ = ptx.send(Progress::line(Some(&short(&l.diff_id)), "Preparing"));
    }
    let prepared = prepare_layers(store, &layers)?;
    // Mount sources: other repositories of the same registry whose local images have the
    // layer (this image's own other tags first). Berth's gzip is deterministic, so a layer
    // pushed from here before has the same digest there.
    let mut sources: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add_sources = |img: &berth_image::Image, diff_ids: &[String]| {
        for s in img.repo_tags.iter().chain(img.repo_digests.iter()) {
            let Ok(o) = Reference::parse_named(s) else {
                continue;
            };
            if o.domain != r.domain || o.path == r.path {
                continue;
            }
            for d in diff_ids {
                let v = sources.entry(d.clone()).or_default();
                if v.len() < 3 && !v.contains(&o.path) {
                    v.push(o.path.clone());
                }
            }
        }
    };
    let own: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    if let Ok(img) = store.get(&id) {
        add_sources(&img, &own);
    }
    if let Ok(images) = store.list() {
        for img in images.iter().filter(|i| i.id != id) {
            let Ok(ls) = store.image_layers(&img.id) else {
                continue;
            };
            let shared: Vec<String> = ls
                .into_iter()
                .map(|l| l.diff_id)
                .filter(|d| own.contains(d))
                .collect();
            if !shared.is_empty() {
                add_sources(img, &shared);
            }
        }
    }
    let mut scopes = vec![format!("repository:{}:pull,push", r.path)];
    let mut from: Vec<&String> = sources.values().flatten().collect();
    from.sort();
    from.dedup();
    scopes.extend(from.iter().take(10).map(|s| format!("repository:{s}:pull")));
    let rt = runtime()?;
    let http = http_client(&[&r.domain], opts.certs_dir.as_deref())?;
    let domain = if r.domain == DOCKER_HUB {
        DOCKER_HUB_REGISTRY
    } else {
        r.domain.as_str()
    };
    rt.block_on(async {
        let mut last = None;
        let mut session = None;
        for base in bases_for(domain, &opts.insecure_registries) {
            match Session::connect(http.clone(), &base, &r.path, opts.auth.clone(), scopes.clone())
                .await
            {
                Ok(s) => {
                    session = Some(s);
                    break;
                }
                Err(e) => keep_error(&mut last, e),
            }
        }
        let Some(s) = session else {
            return Err(last.unwrap_or_else(|| RegistryError::Http("no endpoint".into())));
        };
        let mut order: Vec<&PreparedLayer> = Vec::new();
        for l in &layers {
            if let Some(p) = prepared.get(&l.diff_id) {
                if !order.iter().any(|o| o.digest == p.digest) {
                    order.push(p);
                }
            }
        }
        for p in order.iter().skip(CONCURRENT_UPLOADS) {
            let _ = ptx.send(Progress::line(Some(&p.id), "Waiting"));
        }
        let results: Vec<Result<(), RegistryError>> =
            futures_util::stream::iter(order.iter().map(|p| {
                let s = &s;
                let ptx = ptx.clone();
                let sources = &sources;
                async move {
                    if blob_exists(s, &p.digest).await? {
                        let _ = ptx.send(Progress::line(Some(&p.id), "Layer already exists"));
                        return Ok(());
                    }
                    for src in sources.get(&p.diff_id).into_iter().flatten() {
                        if try_mount(s, &p.digest, src).await? {
                            let _ = ptx
                                .send(Progress::line(Some(&p.id), format!("Mounted from {src}")));
                            return Ok(());
                        }
                    }
                    upload_blob(s, &p.digest, p.size, p.file.path(), Some(&p.id), &ptx).await?;
                    let _ = ptx.send(Progress::line(Some(&p.id), "Pushed"));
                    Ok(())
                }
            }))
            .buffer_unordered(CONCURRENT_UPLOADS)
            .collect()
            .await;
        for r in results {
            r?;
        }
        let config_digest = sha256_digest(&config);
        if !blob_exists(&s, &config_digest).await? {
            let tmp = tempfile::NamedTempFile::new().map_err(|e| RegistryError::io("temp", e))?;
            std::fs::write(tmp.path(), &config).map_err(|e| RegistryError::io("temp", e))?;
            upload_blob(&s, &config_digest, config.len() as u64, tmp.path(), None, &ptx).await?;
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_DOCKER_MANIFEST,
            "config": {
                "mediaType": MEDIA_DOCKER_CONFIG,
                "size": config.len(),
                "digest": config_digest,
            },
            "layers": layers.iter().filter_map(|l| prepared.get(&l.diff_id)).map(|p| serde_json::json!({
                "mediaType": MEDIA_DOCKER_LAYER_GZIP,
                "size": p.size,
                "digest": p.digest,
            })).collect::<Vec<_>>(),
        });
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| RegistryError::Http(format!("manifest: {e}")))?;
        let digest = sha256_digest(&body);
        let url = s.url(&format!("manifests/{tag}"));
        let b = Bytes::from(body);
        let resp = s
            .send(|c| {
                c.put(&url)
                    .header(CONTENT_TYPE, MEDIA_DOCKER_MANIFEST)
                    .body(b.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(response_error(resp).await);
        }
        let size = b.len() as u64;
        let _ = ptx.send(Progress::line(
            None,
            format!("{tag}: digest: {digest} size: {size}"),
        ));
        let _ = ptx.send(Progress {
            aux: Some(serde_json::json!({"Tag": tag, "Digest": digest, "Size": size})),
            ..Default::default()
        });
        Ok(PushResult {
            tag: tag.clone(),
            digest,
            size,
        })
    })
    .and_then(|res| {
        store.add_reference(&r.with_digest(&res.digest), &id)?;
        Ok(res)
    })
}
