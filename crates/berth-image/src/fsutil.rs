//! Small filesystem helpers: atomic metadata writes and digests.

use crate::error::{ImageError, IoContext};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A random suffix for temporary names, so concurrent writers never share a temp file.
pub(crate) fn rand_suffix() -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("{n:016x}")
}

/// Write temp, fsync, rename, fsync the directory (berth-fs): a crash leaves either the old or
/// the new file.
pub(crate) fn atomic_write(path: &Path, data: &[u8]) -> Result<(), ImageError> {
    let dir = path
        .parent()
        .ok_or_else(|| ImageError::Internal(format!("no parent for {}", path.display())))?;
    fs::create_dir_all(dir).ctx("create", dir)?;
    berth_fs::write_atomic(path, data).ctx("write", path)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir).and_then(|d| d.sync_all()).ctx("fsync", dir)
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub(crate) fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// A reader that hashes and counts what passes through it.
pub(crate) struct HashingReader<R> {
    pub inner: R,
    pub hasher: Sha256,
    pub count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    pub fn finish_hex(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// `sha256:<hex>` -> `<hex>` (validated), for use in paths.
pub(crate) fn digest_hex(digest: &str) -> Result<&str, ImageError> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    if hex.len() == 64 && crate::reference::is_lower_hex(hex) {
        Ok(hex)
    } else {
        Err(ImageError::InvalidArgument(format!(
            "invalid digest: {digest:?}"
        )))
    }
}

/// Chain ids as in the OCI image spec: ChainID(L0) = DiffID(L0),
/// ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Removes a path of any type; missing is fine.
pub(crate) fn remove_all(path: &Path) -> Result<(), ImageError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::io_path("stat", path, e)),
        Ok(m) if m.is_dir() => match fs::remove_dir_all(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.ctx("remove", path),
        },
        Ok(_) => match fs::remove_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.ctx("remove", path),
        },
    }
}

/// A directory removed on drop unless kept (for staging areas of loads and extractions).
pub(crate) struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new_in(parent: &Path, prefix: &str) -> Result<TempDir, ImageError> {
        fs::create_dir_all(parent).ctx("create", parent)?;
        let path = parent.join(format!("{prefix}-{}", rand_suffix()));
        fs::create_dir(&path).ctx("create", &path)?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = remove_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_spec() {
        let a = sha256_digest(b"a");
        let b = sha256_digest(b"b");
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], sha256_digest(format!("{a} {b}").as_bytes()));
    }
}
