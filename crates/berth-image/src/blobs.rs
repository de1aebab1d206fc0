//! Content-addressed blob store: `<root>/blobs/sha256/<hex>`. Every write is verified against the
//! expected digest before it becomes visible; a mismatch leaves nothing behind.

use crate::error::{ImageError, IoContext};
use crate::fsutil::{digest_hex, rand_suffix, sync_dir};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    pub fn open(root: &Path) -> Result<BlobStore, ImageError> {
        let dir = root.join("blobs").join("sha256");
        fs::create_dir_all(&dir).ctx("create", &dir)?;
        Ok(BlobStore { dir })
    }

    pub fn path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.dir.join(digest_hex(digest)?))
    }

    pub fn exists(&self, digest: &str) -> bool {
        self.path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    pub fn read(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.path(digest)?;
        fs::read(&p).ctx("read blob", &p)
    }

    pub fn open_blob(&self, digest: &str) -> Result<File, ImageError> {
        let p = self.path(digest)?;
        File::open(&p).ctx("open blob", &p)
    }

    pub fn size(&self, digest: &str) -> Result<u64, ImageError> {
        let p = self.path(digest)?;
        Ok(fs::metadata(&p).ctx("stat blob", &p)?.len())
    }

    /// Stores bytes; returns `sha256:<hex>`.
    pub fn put_bytes(&self, expected: Option<&str>, data: &[u8]) -> Result<String, ImageError> {
        self.put_reader(expected, &mut &data[..]).map(|(d, _)| d)
    }

    /// Streams a blob in, verifying the digest; returns the digest and size.
    pub fn put_reader(
        &self,
        expected: Option<&str>,
        reader: &mut dyn Read,
    ) -> Result<(String, u64), ImageError> {
        if let Some(exp) = expected {
            let hex = digest_hex(exp)?;
            let p = self.dir.join(hex);
            if p.is_file() {
                // Already present and verified when it was written: drain nothing, stay cheap.
                let size = fs::metadata(&p).ctx("stat blob", &p)?.len();
                return Ok((format!("sha256:{hex}"), size));
            }
        }
        let mut w = self.writer()?;
        std::io::copy(reader, &mut w).map_err(|e| ImageError::io("write blob", e))?;
        w.finish(expected)
    }

    /// A blob written piece by piece (a layer that is extracted while it streams in).
    pub(crate) fn writer(&self) -> Result<BlobWriter<'_>, ImageError> {
        let tmp = self.dir.join(format!(".tmp-{}", rand_suffix()));
        let file = File::create(&tmp).ctx("create", &tmp)?;
        Ok(BlobWriter {
            store: self,
            tmp,
            file: Some(file),
            hasher: sha2::Sha256::default(),
            count: 0,
            queued: 0,
            committed: false,
        })
    }

    /// Digests of all stored blobs; unfinished temp files are deleted on the way.
    pub fn list(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tmp-") {
                    let _ = fs::remove_file(e.path());
                } else if digest_hex(&name).is_ok() {
                    out.push(format!("sha256:{name}"));
                }
            }
        }
        out
    }

    pub fn remove(&self, digest: &str) -> Result<(), ImageError> {
        let p = self.path(digest)?;
        match fs::remove_file(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.ctx("remove blob", &p),
        }
    }
}

/// A blob being written; visible only after [`BlobWriter::finish`] verified it, removed if
/// dropped before that.
pub(crate) struct BlobWriter<'a> {
    store: &'a BlobStore,
    tmp: PathBuf,
    file: Option<File>,
    hasher: sha2::Sha256,
    count: u64,
    /// Bytes already handed to the disk's writeback.
    queued: u64,
    committed: bool,
}

/// Writeback is started every this many bytes, so the fsync at the end has little left to
/// wait for (it overlaps the rest of a pull instead of following it).
const WRITEBACK_STEP: u64 = 8 << 20;

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("blob already finished"))?;
        let n = f.write(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        self.count += n as u64;
        if self.count - self.queued >= WRITEBACK_STEP {
            use std::os::fd::AsRawFd;
            // SAFETY: plain syscall on a descriptor we own; failure only loses the head start.
            unsafe {
                libc::sync_file_range(
                    f.as_raw_fd(),
                    self.queued as libc::off64_t,
                    (self.count - self.queued) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.queued = self.count;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl BlobWriter<'_> {
    /// Checks the content against `expected` (when given), then makes it visible under its
    /// digest. Returns the digest and size.
    pub(crate) fn finish(mut self, expected: Option<&str>) -> Result<(String, u64), ImageError> {
        let f = self
            .file
            .take()
            .ok_or_else(|| ImageError::Internal("blob already finished".into()))?;
        let actual = format!(
            "sha256:{}",
            hex::encode(sha2::Digest::finalize(std::mem::take(&mut self.hasher)))
        );
        if let Some(exp) = expected.filter(|e| *e != actual) {
            return Err(ImageError::DigestMismatch {
                expected: exp.to_string(),
                actual,
            });
        }
        f.sync_all().ctx("fsync", &self.tmp)?;
        let dst = self.store.path(&actual)?;
        fs::rename(&self.tmp, &dst).ctx("rename", &dst)?;
        self.committed = true;
        sync_dir(&self.store.dir)?;
        Ok((actual, self.count))
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.file = None;
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_digest() {
        let t = tempfile::tempdir().unwrap();
        let s = BlobStore::open(t.path()).unwrap();
        let d = s.put_bytes(None, b"hello").unwrap();
        assert_eq!(d, crate::fsutil::sha256_digest(b"hello"));
        assert_eq!(s.read(&d).unwrap(), b"hello");
        let wrong = crate::fsutil::sha256_digest(b"other");
        let e = s.put_bytes(Some(&wrong), b"hello2").unwrap_err();
        assert!(matches!(e, ImageError::DigestMismatch { .. }));
        // Nothing left behind: only the first blob.
        let names: Vec<_> = fs::read_dir(t.path().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(!s.exists(&wrong));
    }
}
