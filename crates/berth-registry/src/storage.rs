//! Filesystem storage of `berth registry serve`.
//!
//! ```text
//! <root>/blobs/sha256/<hex>                                  content, verified on the way in
//! <root>/repositories/<name>/_layers/sha256/<hex>            blob linked into a repository
//! <root>/repositories/<name>/_manifests/revisions/sha256/<hex>   manifest link (holds its media type)
//! <root>/repositories/<name>/_manifests/tags/<tag>           the tag's digest
//! <root>/uploads/<uuid>/{data,name}                          upload sessions
//! ```
//! Every file is written to a temporary name, fsynced and renamed into place.

use crate::error::{ErrorCode, IoCtx, RegistryError};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// Repository name grammar of the distribution spec:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn valid_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    name.split('/')
        .all(berth_image::reference::valid_path_component)
}

/// Tag grammar: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// `sha256:<64 lowercase hex>` → the hex part.
pub fn digest_hex(d: &str) -> Option<&str> {
    let hex = d.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

pub fn is_digest(s: &str) -> bool {
    s.contains(':')
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn check_digest(d: &str) -> Result<&str, RegistryError> {
    digest_hex(d).ok_or_else(|| {
        RegistryError::with_detail(ErrorCode::DigestInvalid, format!("invalid digest {d:?}"))
    })
}

/// Writes `data` to `path` atomically (berth-fs: temp file, fsync, rename, fsync of the
/// directory).
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<(), RegistryError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).ctx("create", dir)?;
    berth_fs::write_atomic(path, data).ctx("write", path)
}

pub fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// 128 random bits in the UUID text form (`8-4-4-4-12` hex digits): an upload session's name
/// here, the daemon's ID in the engine.
pub fn random_uuid() -> String {
    let h = hex::encode(rand::random::<[u8; 16]>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub urls: Option<Vec<String>>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub platform: Option<serde_json::Value>,
}

/// The parts of any manifest or index the registry looks at.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnyManifest {
    #[serde(default)]
    pub schema_version: Option<i64>,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub subject: Option<Descriptor>,
    #[serde(default)]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

pub struct Storage {
    root: PathBuf,
}

pub struct UploadState {
    pub name: String,
    pub size: u64,
}

impl Storage {
    pub fn open(root: &Path) -> Result<Storage, RegistryError> {
        for d in ["blobs/sha256", "repositories", "uploads"] {
            let p = root.join(d);
            fs::create_dir_all(&p).ctx("create", &p)?;
        }
        Ok(Storage {
            root: root.to_path_buf(),
        })
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, RegistryError> {
        let hex = check_digest(digest)?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    fn repo_dir(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name)
    }

    fn layer_link(&self, name: &str, hex: &str) -> PathBuf {
        self.repo_dir(name).join("_layers/sha256").join(hex)
    }

    fn revision_link(&self, name: &str, hex: &str) -> PathBuf {
        self.repo_dir(name)
            .join("_manifests/revisions/sha256")
            .join(hex)
    }

    fn tag_path(&self, name: &str, tag: &str) -> PathBuf {
        self.repo_dir(name).join("_manifests/tags").join(tag)
    }

    pub fn repo_exists(&self, name: &str) -> bool {
        self.repo_dir(name).join("_manifests").is_dir()
            || self.repo_dir(name).join("_layers").is_dir()
    }

    /// Size of a blob linked into `name`, or `BLOB_UNKNOWN`.
    pub fn blob_size(&self, name: &str, digest: &str) -> Result<u64, RegistryError> {
        let hex = check_digest(digest)?;
        let unknown = || RegistryError::with_detail(ErrorCode::BlobUnknown, digest.to_string());
        if !self.layer_link(name, hex).exists() && !self.revision_link(name, hex).exists() {
            return Err(unknown());
        }
        fs::metadata(self.blob_path(digest)?)
            .map(|m| m.len())
            .map_err(|_| unknown())
    }

    pub fn blob_exists_global(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    pub fn link_blob(&self, name: &str, digest: &str) -> Result<(), RegistryError> {
        let hex = check_digest(digest)?;
        atomic_write(&self.layer_link(name, hex), digest.as_bytes())
    }

    pub fn unlink_blob(&self, name: &str, digest: &str) -> Result<(), RegistryError> {
        let hex = check_digest(digest)?;
        let p = self.layer_link(name, hex);
        if !p.exists() {
            return Err(RegistryError::with_detail(
                ErrorCode::BlobUnknown,
                digest.to_string(),
            ));
        }
        fs::remove_file(&p).ctx("remove", &p)
    }

    /// Stores verified content under its digest (no-op if already present).
    pub fn put_blob_bytes(&self, data: &[u8]) -> Result<String, RegistryError> {
        let digest = sha256_digest(data);
        let path = self.blob_path(&digest)?;
        if !path.exists() {
            atomic_write(&path, data)?;
        }
        Ok(digest)
    }

    // ---- uploads ----

    fn upload_dir(&self, uuid: &str) -> Result<PathBuf, RegistryError> {
        let ok = !uuid.is_empty()
            && uuid.len() <= 64
            && uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        if !ok {
            return Err(RegistryError::code(ErrorCode::BlobUploadUnknown));
        }
        Ok(self.root.join("uploads").join(uuid))
    }

    pub fn upload_data_path(&self, uuid: &str) -> Result<PathBuf, RegistryError> {
        Ok(self.upload_dir(uuid)?.join("data"))
    }

    pub fn new_upload(&self, name: &str) -> Result<String, RegistryError> {
        let uuid = random_uuid();
        let dir = self.upload_dir(&uuid)?;
        fs::create_dir_all(&dir).ctx("create", &dir)?;
        fs::File::create(dir.join("data")).ctx("create", &dir)?;
        atomic_write(&dir.join("name"), name.as_bytes())?;
        Ok(uuid)
    }

    /// The session `uuid` of repository `name`, or `BLOB_UPLOAD_UNKNOWN`.
    pub fn upload_state(&self, name: &str, uuid: &str) -> Result<UploadState, RegistryError> {
        let dir = self.upload_dir(uuid)?;
        let unknown = || RegistryError::with_detail(ErrorCode::BlobUploadUnknown, uuid.to_string());
        let owner = fs::read_to_string(dir.join("name")).map_err(|_| unknown())?;
        if owner != name {
            return Err(unknown());
        }
        let size = fs::metadata(dir.join("data")).map_err(|_| unknown())?.len();
        Ok(UploadState { name: owner, size })
    }

    pub fn cancel_upload(&self, uuid: &str) -> Result<(), RegistryError> {
        let dir = self.upload_dir(uuid)?;
        fs::remove_dir_all(&dir).ctx("remove", &dir)
    }

    /// Verifies the session's content against `digest` and moves it into the blob store.
    pub fn commit_upload(&self, name: &str, uuid: &str, digest: &str) -> Result<(), RegistryError> {
        let dir = self.upload_dir(uuid)?;
        let data = dir.join("data");
        let target = self.blob_path(digest)?;
        let mut f = fs::File::open(&data).ctx("open", &data)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).ctx("read", &data)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let actual = format!("sha256:{}", hex::encode(h.finalize()));
        if actual != digest {
            let _ = fs::remove_dir_all(&dir);
            return Err(RegistryError::with_detail(
                ErrorCode::DigestInvalid,
                format!("digest {digest} does not match content digest {actual}"),
            ));
        }
        f.sync_all().ctx("sync", &data)?;
        if target.exists() {
            let _ = fs::remove_dir_all(&dir);
        } else {
            fs::rename(&data, &target).ctx("rename", &target)?;
            if let Some(p) = target.parent() {
                sync_dir(p);
            }
            let _ = fs::remove_dir_all(&dir);
        }
        self.link_blob(name, digest)
    }

    // ---- manifests ----

    /// Resolves a tag or digest to (digest, media type).
    pub fn resolve_manifest(
        &self,
        name: &str,
        reference: &str,
    ) -> Result<(String, String), RegistryError> {
        let unknown =
            || RegistryError::with_detail(ErrorCode::ManifestUnknown, reference.to_string());
        let digest = if is_digest(reference) {
            check_digest(reference)?;
            reference.to_string()
        } else {
            // No tag of that spelling can exist: unknown, as the spec and the reference
            // registry answer (TAG_INVALID is for a PUT).
            if !valid_tag(reference) {
                return Err(unknown());
            }
            fs::read_to_string(self.tag_path(name, reference))
                .map_err(|_| unknown())?
                .trim()
                .to_string()
        };
        let hex = check_digest(&digest)?;
        let media = fs::read_to_string(self.revision_link(name, hex)).map_err(|_| unknown())?;
        if !self.blob_exists_global(&digest) {
            return Err(unknown());
        }
        Ok((digest, media))
    }

    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let p = self.blob_path(digest)?;
        fs::read(&p).ctx("read", &p)
    }

    /// Stores a manifest after checking what it references is present. Returns its digest.
    pub fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(String, AnyManifest), RegistryError> {
        let digest = sha256_digest(body);
        if is_digest(reference) {
            check_digest(reference)?;
            if reference != digest {
                return Err(RegistryError::with_detail(
                    ErrorCode::DigestInvalid,
                    format!("manifest digest {digest} does not match {reference}"),
                ));
            }
        } else if !valid_tag(reference) {
            return Err(RegistryError::code(ErrorCode::TagInvalid));
        }
        let m: AnyManifest = serde_json::from_slice(body)
            .map_err(|e| RegistryError::with_detail(ErrorCode::ManifestInvalid, e.to_string()))?;
        if m.schema_version != Some(2) {
            return Err(RegistryError::with_detail(
                ErrorCode::ManifestInvalid,
                "unsupported manifest schema version",
            ));
        }
        let media = content_type
            .filter(|c| !c.is_empty() && *c != "application/octet-stream")
            .map(|c| c.split(';').next().unwrap_or(c).trim().to_string())
            .or_else(|| m.media_type.clone())
            .unwrap_or_else(|| {
                if m.manifests.is_some() {
                    "application/vnd.oci.image.index.v1+json".into()
                } else {
                    "application/vnd.oci.image.manifest.v1+json".into()
                }
            });
        if let (Some(declared), Some(body_type)) = (content_type, &m.media_type) {
            let declared = declared.split(';').next().unwrap_or(declared).trim();
            if !declared.is_empty()
                && declared != "application/octet-stream"
                && declared != body_type
            {
                return Err(RegistryError::with_detail(
                    ErrorCode::ManifestInvalid,
                    format!("mediaType in manifest should be '{declared}' not '{body_type}'"),
                ));
            }
        }
        // References must be present in this repository.
        let mut blobs: Vec<&Descriptor> = Vec::new();
        if let Some(c) = &m.config {
            blobs.push(c);
        }
        if let Some(ls) = &m.layers {
            blobs.extend(
                ls.iter()
                    .filter(|l| l.urls.as_ref().is_none_or(|u| u.is_empty())),
            );
        }
        for d in blobs {
            if self.blob_size(name, &d.digest).is_err() {
                return Err(RegistryError::with_detail(
                    ErrorCode::ManifestBlobUnknown,
                    d.digest.clone(),
                ));
            }
        }
        if let Some(ms) = &m.manifests {
            for d in ms {
                let hex = check_digest(&d.digest)?;
                if !self.revision_link(name, hex).exists() {
                    return Err(RegistryError::with_detail(
                        ErrorCode::ManifestBlobUnknown,
                        d.digest.clone(),
                    ));
                }
            }
        }
        self.put_blob_bytes(body)?;
        let hex = check_digest(&digest)?.to_string();
        atomic_write(&self.revision_link(name, &hex), media.as_bytes())?;
        if !is_digest(reference) {
            atomic_write(&self.tag_path(name, reference), digest.as_bytes())?;
        }
        Ok((digest, m))
    }

    /// Deletes a tag, or a manifest revision by digest (and the tags pointing at it).
    pub fn delete_manifest(&self, name: &str, reference: &str) -> Result<(), RegistryError> {
        let unknown =
            || RegistryError::with_detail(ErrorCode::ManifestUnknown, reference.to_string());
        if !is_digest(reference) {
            if !valid_tag(reference) {
                return Err(RegistryError::code(ErrorCode::TagInvalid));
            }
            let p = self.tag_path(name, reference);
            return fs::remove_file(&p).map_err(|_| unknown());
        }
        let hex = check_digest(reference)?;
        let link = self.revision_link(name, hex);
        fs::remove_file(&link).map_err(|_| unknown())?;
        for tag in self.tags(name)? {
            let p = self.tag_path(name, &tag);
            if fs::read_to_string(&p)
                .map(|d| d.trim() == reference)
                .unwrap_or(false)
            {
                let _ = fs::remove_file(&p);
            }
        }
        Ok(())
    }

    pub fn tags(&self, name: &str) -> Result<Vec<String>, RegistryError> {
        let dir = self.repo_dir(name).join("_manifests/tags");
        let mut out: Vec<String> = match fs::read_dir(&dir) {
            Ok(rd) => rd
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect(),
            Err(_) => Vec::new(),
        };
        out.sort();
        Ok(out)
    }

    /// Every manifest digest stored in a repository.
    pub fn revisions(&self, name: &str) -> Vec<String> {
        let dir = self.repo_dir(name).join("_manifests/revisions/sha256");
        let mut out: Vec<String> = fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| digest_hex(&format!("sha256:{n}")).is_some())
                    .map(|n| format!("sha256:{n}"))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Repository names, sorted.
    pub fn catalog(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk_repos(&self.root.join("repositories"), "", &mut out);
        out.sort();
        out
    }

    /// The referrers of `digest` in `name`: descriptors of manifests whose `subject` is it.
    pub fn referrers(
        &self,
        name: &str,
        digest: &str,
        artifact_type: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, RegistryError> {
        check_digest(digest)?;
        let mut out = Vec::new();
        for rev in self.revisions(name) {
            let Ok(body) = self.read_blob(&rev) else {
                continue;
            };
            let Ok(m) = serde_json::from_slice::<AnyManifest>(&body) else {
                continue;
            };
            if m.subject.as_ref().map(|s| s.digest.as_str()) != Some(digest) {
                continue;
            }
            let media = fs::read_to_string(self.revision_link(name, &rev[7..]))
                .unwrap_or_else(|_| m.media_type.clone().unwrap_or_default());
            let at = m
                .artifact_type
                .clone()
                .or_else(|| m.config.as_ref().and_then(|c| c.media_type.clone()));
            if let Some(f) = artifact_type {
                if at.as_deref() != Some(f) {
                    continue;
                }
            }
            let mut d = serde_json::json!({
                "mediaType": media,
                "digest": rev,
                "size": body.len(),
            });
            if let Some(at) = at {
                d["artifactType"] = at.into();
            }
            if let Some(a) = m.annotations {
                d["annotations"] = serde_json::Value::Object(a);
            }
            out.push(d);
        }
        Ok(out)
    }

    /// Removes blobs no manifest of any repository references. Returns the digests removed
    /// (or that would be, with `dry_run`).
    pub fn garbage_collect(&self, dry_run: bool) -> Result<Vec<String>, RegistryError> {
        let mut marked = BTreeSet::new();
        let repos = self.catalog();
        for repo in &repos {
            for rev in self.revisions(repo) {
                marked.insert(rev.clone());
                let Ok(body) = self.read_blob(&rev) else {
                    continue;
                };
                let Ok(m) = serde_json::from_slice::<AnyManifest>(&body) else {
                    continue;
                };
                if let Some(c) = m.config {
                    marked.insert(c.digest);
                }
                for l in m.layers.unwrap_or_default() {
                    marked.insert(l.digest);
                }
            }
        }
        let dir = self.root.join("blobs/sha256");
        let mut removed = Vec::new();
        for e in fs::read_dir(&dir).ctx("read", &dir)?.flatten() {
            let Ok(n) = e.file_name().into_string() else {
                continue;
            };
            let d = format!("sha256:{n}");
            if n.starts_with(".tmp-") {
                if !dry_run {
                    let _ = fs::remove_file(e.path());
                }
                continue;
            }
            if !marked.contains(&d) {
                if !dry_run {
                    fs::remove_file(e.path()).ctx("remove", &e.path())?;
                }
                removed.push(d);
            }
        }
        if !dry_run {
            // Upload sessions abandoned for a week.
            let week = std::time::Duration::from_secs(7 * 24 * 3600);
            if let Ok(rd) = fs::read_dir(self.root.join("uploads")) {
                for e in rd.flatten() {
                    let old = fs::metadata(e.path().join("data"))
                        .or_else(|_| e.metadata())
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > week);
                    if old {
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            }
            for repo in &repos {
                let ld = self.repo_dir(repo).join("_layers/sha256");
                if let Ok(rd) = fs::read_dir(&ld) {
                    for e in rd.flatten() {
                        let n = e.file_name().to_string_lossy().to_string();
                        if !marked.contains(&format!("sha256:{n}")) {
                            let _ = fs::remove_file(e.path());
                        }
                    }
                }
            }
        }
        removed.sort();
        Ok(removed)
    }
}

fn walk_repos(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(n) = e.file_name().into_string() else {
            continue;
        };
        if n.starts_with('_') || n.starts_with('.') || !e.path().is_dir() {
            continue;
        }
        let name = if prefix.is_empty() {
            n.clone()
        } else {
            format!("{prefix}/{n}")
        };
        if e.path().join("_manifests").is_dir() {
            out.push(name.clone());
        }
        walk_repos(&e.path(), &name, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "library/busybox", "a.b_c__d---e/f0", "x/y/z"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a..b", "a___b", "-a", "a/_b", "a b", "../x",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(
            valid_tag("latest") && valid_tag("_v1.2-x") && !valid_tag(".x") && !valid_tag("a/b")
        );
    }
}
