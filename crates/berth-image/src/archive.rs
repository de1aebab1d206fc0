//! `docker load` / `docker save`.
//!
//! Load accepts the legacy docker-save layout (manifest.json + `<id>.json` + `<dir>/layer.tar`),
//! Docker >= 25 (OCI layout plus manifest.json) and plain OCI image-layout archives. The archive is
//! first unpacked into a private staging dir under `<root>/tmp`; symlinks in it (legacy saves link
//! repeated layers) are resolved lexically and may not leave the staging dir. Every image of the
//! archive is fully stored and verified before any of them becomes visible.
//!
//! Save writes the Docker >= 25 format: OCI layout (oci-layout, index.json, blobs/sha256/*) with
//! uncompressed layers, plus manifest.json and repositories for older loaders.

use crate::config::ImageConfig;
use crate::error::ImageError;
use crate::extract::clean_path;
use crate::fsutil::{chain_ids, digest_hex, sha256_digest, HashingReader, TempDir};
use crate::reference::Reference;
use crate::store::{ImageRecord, ImageStore};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Wraps a stream, decompressing gzip, bzip2 or xz transparently (sniffed from the magic
/// bytes, as dockerd's DecompressStream does); anything else passes through as is.
pub fn decompress<'a>(r: &'a mut dyn Read) -> Result<Box<dyn Read + 'a>, ImageError> {
    let mut br = BufReader::with_capacity(64 * 1024, r);
    let head = br.fill_buf().map_err(|e| ImageError::io("read", e))?;
    let marked = |format: &'static str, r: Box<dyn Read + 'a>| -> Box<dyn Read + 'a> {
        Box::new(Marked { format, inner: r })
    };
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(marked(
            "gzip",
            Box::new(flate2::read::MultiGzDecoder::new(br)),
        ))
    } else if head.starts_with(b"BZh") {
        Ok(marked(
            "bzip2",
            Box::new(bzip2::read::MultiBzDecoder::new(br)),
        ))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Ok(marked(
            "xz",
            Box::new(liblzma::read::XzDecoder::new_multi_decoder(br)),
        ))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(ImageError::InvalidArgument(
            "zstd-compressed archives are not supported".into(),
        ))
    } else {
        Ok(Box::new(br))
    }
}

/// A decompressing reader whose errors are the client's data's fault ([`BadInput`]).
struct Marked<'a> {
    format: &'static str,
    inner: Box<dyn Read + 'a>,
}

impl Read for Marked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner
            .read(buf)
            .map_err(|e| crate::error::BadInput::wrap(self.format, e))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct OciManifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// The unpacked archive.
struct Staging {
    dir: TempDir,
    links: HashMap<PathBuf, PathBuf>,
}

fn bad_archive(msg: impl std::fmt::Display) -> ImageError {
    let m = msg.to_string();
    if m.starts_with("invalid archive: ") {
        return ImageError::InvalidArgument(m);
    }
    ImageError::InvalidArgument(format!("invalid archive: {m}"))
}

impl Staging {
    fn unpack(reader: &mut dyn Read, parent: &Path) -> Result<Staging, ImageError> {
        let dir = TempDir::new_in(parent, "load")?;
        let mut links = HashMap::new();
        let mut plain = decompress(reader)?;
        let mut ar = tar::Archive::new(&mut plain);
        for entry in ar.entries().map_err(bad_archive)? {
            let mut entry = entry.map_err(bad_archive)?;
            let rel = clean_path(&entry.path().map_err(bad_archive)?)?;
            if rel.as_os_str().is_empty() {
                continue;
            }
            let dst = dir.path.join(&rel);
            // Errors name the archive's entry, never the staging dir.
            let staged = |what: &str, e: std::io::Error| -> ImageError {
                use std::io::ErrorKind::*;
                match e.kind() {
                    AlreadyExists | NotADirectory | IsADirectory | DirectoryNotEmpty => {
                        bad_archive(format!("{}: {e}", rel.display()))
                    }
                    _ => ImageError::io(format!("{what} {}", rel.display()), e),
                }
            };
            match entry.header().entry_type() {
                tar::EntryType::Directory => {
                    fs::create_dir_all(&dst).map_err(|e| staged("create", e))?
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    if let Some(p) = dst.parent() {
                        // The staging tree never holds symlinks, so creating parents is safe.
                        fs::create_dir_all(p).map_err(|e| staged("create", e))?;
                    }
                    let mut f = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&dst)
                        .map_err(|e| staged("create", e))?;
                    std::io::copy(&mut entry, &mut f).map_err(|e| staged("write", e))?;
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(t) = entry.link_name().map_err(bad_archive)? {
                        let t = t.into_owned();
                        if entry.header().entry_type() == tar::EntryType::Link {
                            // Hardlinks name archive paths from the root.
                            links.insert(rel, Path::new("/").join(clean_path(&t)?));
                        } else {
                            links.insert(rel, t);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Staging { dir, links })
    }

    /// Resolves an archive path, following archive symlinks, never leaving the staging dir.
    fn resolve(&self, rel: &str) -> Result<PathBuf, ImageError> {
        let mut queue: VecDeque<OsString> = Path::new(rel)
            .components()
            .map(|c| c.as_os_str().to_os_string())
            .collect();
        let mut stack: Vec<OsString> = Vec::new();
        let mut hops = 0;
        while let Some(c) = queue.pop_front() {
            match Path::new(&c).components().next() {
                // The guard pops: `..` climbs one level, or fails at the top.
                Some(Component::ParentDir) if stack.pop().is_none() => {
                    return Err(bad_archive(format!("{rel} escapes the archive")));
                }
                Some(Component::Normal(_)) => {
                    stack.push(c);
                    let cur: PathBuf = stack.iter().collect();
                    if let Some(t) = self.links.get(&cur) {
                        hops += 1;
                        if hops > 40 {
                            return Err(bad_archive(format!("{rel}: too many links")));
                        }
                        stack.pop();
                        if t.is_absolute() {
                            stack.clear();
                        }
                        let parts: Vec<OsString> = t
                            .components()
                            .filter(|tc| matches!(tc, Component::Normal(_) | Component::ParentDir))
                            .map(|tc| tc.as_os_str().to_os_string())
                            .collect();
                        for part in parts.into_iter().rev() {
                            queue.push_front(part);
                        }
                    }
                }
                _ => {}
            }
        }
        let p: PathBuf = stack.iter().collect();
        Ok(self.dir.path.join(p))
    }

    fn open(&self, rel: &str) -> Result<File, ImageError> {
        let p = self.resolve(rel)?;
        File::open(&p).map_err(|_| bad_archive(format!("{rel} not found in archive")))
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, ImageError> {
        let mut v = Vec::new();
        self.open(rel)?
            .read_to_end(&mut v)
            .map_err(|e| ImageError::io(format!("read {rel}"), e))?;
        Ok(v)
    }

    fn exists(&self, rel: &str) -> bool {
        self.resolve(rel).map(|p| p.is_file()).unwrap_or(false)
    }
}

/// One image found in an archive, before it is stored.
struct Found {
    config: Vec<u8>,
    /// Archive path of each layer and, for OCI blobs, its (compressed) digest.
    layers: Vec<(String, Option<String>)>,
    tags: Vec<Reference>,
}

fn blob_path(digest: &str) -> Result<String, ImageError> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| bad_archive(format!("invalid digest {digest}")))?;
    if alg != "sha256" {
        return Err(bad_archive(format!("unsupported digest algorithm {alg}")));
    }
    Ok(format!(
        "blobs/sha256/{}",
        digest_hex(&format!("sha256:{hex}"))?
    ))
}

fn is_index(media: &str) -> bool {
    media == MEDIA_OCI_INDEX || media == MEDIA_DOCKER_LIST
}

/// Name of an OCI index entry: containerd's full name, else a ref.name that is a full reference
/// (a bare tag like `latest` names no repository, so the image stays untagged).
fn oci_name(d: &Descriptor) -> Option<Reference> {
    let a = d.annotations.as_ref()?;
    if let Some(n) = a.get(ANNOTATION_CONTAINERD_NAME) {
        if let Ok(r) = Reference::parse(n) {
            return Some(r);
        }
    }
    let n = a.get(ANNOTATION_REF_NAME)?;
    if n.contains([':', '/', '@']) {
        Reference::parse(n).ok()
    } else {
        None
    }
}

impl ImageStore {
    /// `docker load`. Returns Docker's output lines.
    pub fn load(&self, tar: &mut dyn Read) -> Result<Vec<String>, ImageError> {
        let _g = self.gc.read().unwrap_or_else(|e| e.into_inner());
        let staging = Staging::unpack(tar, &self.root.join("tmp"))?;
        let found = if staging.exists("manifest.json") {
            Self::find_docker(&staging)?
        } else if staging.exists("index.json") {
            Self::find_oci(&staging)?
        } else {
            return Err(ImageError::InvalidArgument(
                "invalid archive: no manifest.json or index.json found".into(),
            ));
        };
        let mut prepared: Vec<(ImageRecord, Vec<Reference>)> = Vec::new();
        let mut lines = Vec::new();
        for f in found {
            let rec = self.store_found(&staging, &f)?;
            if f.tags.is_empty() {
                lines.push(format!("Loaded image ID: {}", rec.id));
            }
            for t in &f.tags {
                lines.push(format!("Loaded image: {}", t.familiar()));
            }
            prepared.push((rec, f.tags));
        }
        self.commit(prepared)?;
        Ok(lines)
    }

    fn find_docker(staging: &Staging) -> Result<Vec<Found>, ImageError> {
        let entries: Vec<ManifestEntry> = serde_json::from_slice(&staging.read("manifest.json")?)
            .map_err(|e| ImageError::json("manifest.json", e))?;
        let mut out = Vec::new();
        for e in entries {
            let config = staging.read(&e.config)?;
            let mut tags = Vec::new();
            for t in e.repo_tags.unwrap_or_default() {
                let r = Reference::parse_named(&t)?;
                if r.tag.is_none() {
                    return Err(ImageError::InvalidArgument(format!("invalid tag {t:?}")));
                }
                tags.push(r);
            }
            out.push(Found {
                config,
                layers: e.layers.into_iter().map(|l| (l, None)).collect(),
                tags,
            });
        }
        Ok(out)
    }

    fn find_oci(staging: &Staging) -> Result<Vec<Found>, ImageError> {
        let index: OciIndex = serde_json::from_slice(&staging.read("index.json")?)
            .map_err(|e| ImageError::json("index.json", e))?;
        // Several index entries may name the same manifest with different tags.
        let mut order: Vec<String> = Vec::new();
        let mut by_digest: HashMap<String, Found> = HashMap::new();
        for d in &index.manifests {
            let manifest_desc = Self::pick_manifest(staging, d, 0)?;
            let key = manifest_desc.digest.clone();
            if !by_digest.contains_key(&key) {
                let bytes = Self::read_verified(staging, &manifest_desc.digest)?;
                let m: OciManifest = serde_json::from_slice(&bytes)
                    .map_err(|e| ImageError::json("image manifest", e))?;
                let config = Self::read_verified(staging, &m.config.digest)?;
                let mut layers = Vec::new();
                for l in &m.layers {
                    layers.push((blob_path(&l.digest)?, Some(l.digest.clone())));
                }
                by_digest.insert(
                    key.clone(),
                    Found {
                        config,
                        layers,
                        tags: Vec::new(),
                    },
                );
                order.push(key.clone());
            }
            if let (Some(name), Some(f)) = (oci_name(d), by_digest.get_mut(&key)) {
                if !f.tags.contains(&name) {
                    f.tags.push(name);
                }
            }
        }
        Ok(order
            .into_iter()
            .filter_map(|k| by_digest.remove(&k))
            .collect())
    }

    /// Follows nested indexes to the manifest for the host platform.
    fn pick_manifest(
        staging: &Staging,
        d: &Descriptor,
        depth: usize,
    ) -> Result<Descriptor, ImageError> {
        if !is_index(&d.media_type) {
            return Ok(d.clone());
        }
        if depth > 4 {
            return Err(bad_archive("index nesting too deep"));
        }
        let idx: OciIndex = serde_json::from_slice(&Self::read_verified(staging, &d.digest)?)
            .map_err(|e| ImageError::json("image index", e))?;
        let arch = crate::config::host_architecture();
        let candidates: Vec<&Descriptor> = idx
            .manifests
            .iter()
            .filter(|m| {
                m.platform
                    .as_ref()
                    .map(|p| p.os != "unknown")
                    .unwrap_or(true)
            })
            .collect();
        let pick = candidates
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .map(|p| p.os == "linux" && p.architecture == arch)
                    .unwrap_or(false)
            })
            .or_else(|| {
                if candidates.len() == 1 {
                    candidates.first()
                } else {
                    None
                }
            })
            .ok_or_else(|| {
                ImageError::InvalidArgument(format!(
                    "no matching manifest for linux/{arch} in the manifest list entries"
                ))
            })?;
        let mut out = Self::pick_manifest(staging, pick, depth + 1)?;
        if out.annotations.is_none() {
            out.annotations = d.annotations.clone();
        }
        Ok(out)
    }

    fn read_verified(staging: &Staging, digest: &str) -> Result<Vec<u8>, ImageError> {
        let bytes = staging.read(&blob_path(digest)?)?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Stores config and layers of one archive image; returns its (not yet visible) record.
    fn store_found(&self, staging: &Staging, f: &Found) -> Result<ImageRecord, ImageError> {
        let cfg: ImageConfig =
            serde_json::from_slice(&f.config).map_err(|e| ImageError::json("image config", e))?;
        let diff_ids = &cfg.rootfs.diff_ids;
        if diff_ids.len() != f.layers.len() {
            return Err(ImageError::InvalidArgument(format!(
                "invalid manifest, layers length mismatch: expected {}, got {}",
                diff_ids.len(),
                f.layers.len()
            )));
        }
        for ((chain, diff), (path, blob_digest)) in
            chain_ids(diff_ids).iter().zip(diff_ids).zip(&f.layers)
        {
            digest_hex(diff)?;
            if self.layers.get(chain)?.is_some() && self.blobs.exists(diff) {
                continue; // loaded before: nothing to read
            }
            if !self.blobs.exists(diff) {
                if let Some(bd) = blob_digest {
                    let mut hr = HashingReader::new(BufReader::new(staging.open(path)?));
                    std::io::copy(&mut hr, &mut std::io::sink())
                        .map_err(|e| ImageError::io(format!("read {path}"), e))?;
                    let actual = format!("sha256:{}", hr.finish_hex());
                    if &actual != bd {
                        return Err(ImageError::DigestMismatch {
                            expected: bd.clone(),
                            actual,
                        });
                    }
                }
                let mut file = staging.open(path)?;
                let mut plain = decompress(&mut file)?;
                self.blobs.put_reader(Some(diff), &mut plain)?;
            }
            self.ensure_layer(chain, diff)?;
        }
        self.prepare_record(&f.config)
    }

    /// `docker save`: Docker >= 25 layout, readable by `docker load` and OCI tools.
    pub fn save(&self, names: &[String], out: &mut dyn Write) -> Result<(), ImageError> {
        // (image id, tags) in first-seen order.
        let mut images: Vec<(String, Vec<Reference>)> = Vec::new();
        let mut add = |id: String, tag: Option<Reference>| {
            let pos = match images.iter().position(|(i, _)| *i == id) {
                Some(p) => p,
                None => {
                    images.push((id, Vec::new()));
                    images.len() - 1
                }
            };
            if let Some(t) = tag {
                if !images[pos].1.contains(&t) {
                    images[pos].1.push(t);
                }
            }
        };
        for name in names {
            // A bare repository name saves every tag of that repository.
            if let Ok(r) = Reference::parse_named(name) {
                if r.tag.is_none() && r.digest.is_none() {
                    let tags = self.repository_tags(&r.name());
                    if !tags.is_empty() {
                        for (t, id) in tags {
                            add(id, Some(t));
                        }
                        continue;
                    }
                }
            }
            let id = self.resolve_id(name)?;
            let by_ref = Reference::parse(name)
                .ok()
                .filter(|r| r.digest.is_none() && self.references(&id).contains(r));
            add(id, by_ref);
        }

        // Tar writes 512-byte headers; batch them for writers that cost per call (HTTP bodies).
        let mut tb = tar::Builder::new(std::io::BufWriter::with_capacity(256 * 1024, out));
        let mut written: HashSet<String> = HashSet::new();
        let mut index_entries = Vec::new();
        let mut manifest_json = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        append_dir(&mut tb, "blobs/")?;
        append_dir(&mut tb, "blobs/sha256/")?;
        for (id, tags) in &images {
            let rec = self.record(id)?;
            let config_size = self.blobs.size(id)?;
            self.append_blob(&mut tb, &mut written, id)?;
            let mut layer_descs = Vec::new();
            for l in &rec.layers {
                self.append_blob(&mut tb, &mut written, &l.diff_id)?;
                layer_descs.push(serde_json::json!({
                    "mediaType": MEDIA_OCI_LAYER,
                    "digest": l.diff_id,
                    "size": self.blobs.size(&l.diff_id)?,
                }));
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_OCI_MANIFEST,
                "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": id, "size": config_size},
                "layers": layer_descs,
            });
            let mbytes =
                serde_json::to_vec(&manifest).map_err(|e| ImageError::json("manifest", e))?;
            let mdigest = sha256_digest(&mbytes);
            if written.insert(mdigest.clone()) {
                append_file(&mut tb, &blob_path(&mdigest)?, &mbytes)?;
            }
            let desc = |annotations: Option<BTreeMap<String, String>>| Descriptor {
                media_type: MEDIA_OCI_MANIFEST.into(),
                digest: mdigest.clone(),
                size: mbytes.len() as i64,
                annotations,
                platform: None,
            };
            if tags.is_empty() {
                index_entries.push(desc(None));
            }
            for t in tags {
                let mut a = BTreeMap::new();
                a.insert(ANNOTATION_CONTAINERD_NAME.to_string(), t.full());
                a.insert(
                    ANNOTATION_REF_NAME.to_string(),
                    t.tag.clone().unwrap_or_default(),
                );
                index_entries.push(desc(Some(a)));
                if let (Some(tag), Some(top)) = (&t.tag, rec.layers.last()) {
                    repositories
                        .entry(t.repository_familiar())
                        .or_default()
                        .insert(tag.clone(), digest_hex(&top.diff_id)?.to_string());
                }
            }
            manifest_json.push(ManifestEntry {
                config: blob_path(id)?,
                repo_tags: if tags.is_empty() {
                    None
                } else {
                    Some(tags.iter().map(|t| t.familiar()).collect())
                },
                layers: rec
                    .layers
                    .iter()
                    .map(|l| blob_path(&l.diff_id))
                    .collect::<Result<_, _>>()?,
            });
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_INDEX,
            "manifests": index_entries,
        });
        let to_json = |v: &dyn erased::Ser| v.bytes();
        append_file(&mut tb, "index.json", &to_json(&index)?)?;
        append_file(&mut tb, "manifest.json", &to_json(&manifest_json)?)?;
        append_file(&mut tb, "oci-layout", br#"{"imageLayoutVersion": "1.0.0"}"#)?;
        if !repositories.is_empty() {
            append_file(&mut tb, "repositories", &to_json(&repositories)?)?;
        }
        tb.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(|e| ImageError::io("write archive", e))
    }

    fn append_blob<W: Write>(
        &self,
        tb: &mut tar::Builder<W>,
        written: &mut HashSet<String>,
        digest: &str,
    ) -> Result<(), ImageError> {
        if !written.insert(digest.to_string()) {
            return Ok(());
        }
        let f = self.blobs.open_blob(digest)?;
        let size = f
            .metadata()
            .map_err(|e| ImageError::io("stat blob", e))?
            .len();
        let mut h = file_header(size);
        tb.append_data(&mut h, blob_path(digest)?, f)
            .map_err(|e| ImageError::io("write archive", e))
    }
}

mod erased {
    use crate::error::ImageError;
    /// Lets one closure serialise differently typed values.
    pub trait Ser {
        fn bytes(&self) -> Result<Vec<u8>, ImageError>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn bytes(&self) -> Result<Vec<u8>, ImageError> {
            serde_json::to_vec(self).map_err(|e| ImageError::json("archive metadata", e))
        }
    }
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h
}

fn append_file<W: Write>(
    tb: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
) -> Result<(), ImageError> {
    let mut h = file_header(data.len() as u64);
    tb.append_data(&mut h, path, data)
        .map_err(|e| ImageError::io("write archive", e))
}

fn append_dir<W: Write>(tb: &mut tar::Builder<W>, path: &str) -> Result<(), ImageError> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    h.set_mtime(0);
    tb.append_data(&mut h, path, &[][..])
        .map_err(|e| ImageError::io("write archive", e))
}
