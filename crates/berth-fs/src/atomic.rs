//! Atomic file writes: a unique temp file beside the target (so the rename stays on one file
//! system), written, optionally fsynced, renamed over the target. A crash leaves the old file or
//! the new one; a failure removes the temp file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `.<name>.<random>.tmp` beside `path`: unique per write, so two writers (threads, processes)
/// never share a temp file, and a leftover of a crash is recognisable.
pub fn temp_path(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tag: u64 = rand::random();
    dir.join(format!(".{name}.{tag:016x}.tmp"))
}

/// Whether `name` is a temp file of [`temp_path`]'s making (`.<name>.<16 hex>.tmp`): what a
/// write interrupted by a crash leaves, which a startup sweep may remove.
pub fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|r| r.strip_suffix(".tmp")) else {
        return false;
    };
    match rest.rsplit_once('.') {
        Some((target, tag)) => {
            !target.is_empty() && tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    }
}

/// Removes the temp file unless the write got as far as renaming it.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn write_with(
    path: &Path,
    sync: bool,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = temp_path(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&tmp)?;
    let mut guard = TempGuard(Some(tmp.clone()));
    fill(&mut f)?;
    if sync {
        f.sync_all()?;
    }
    drop(f);
    std::fs::rename(&tmp, path)?;
    guard.0 = None;
    if sync {
        if let Ok(d) = File::open(path.parent().unwrap_or(Path::new("."))) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Write, fsync, rename, fsync the directory: the file survives a power loss whole or not at all.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_with(path, true, 0o644, |f| f.write_all(data))
}

/// Write and rename without fsync: readers see the old or the whole new file, but a power loss
/// may lose it. For runtime state in the exec root, which a reboot clears anyway.
pub fn write_replace(path: &Path, data: &[u8]) -> io::Result<()> {
    write_with(path, false, 0o644, |f| f.write_all(data))
}

/// [`write_atomic`] for content produced by a writer (a large manifest, a stream).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    write_with(path, true, 0o644, fill)
}

/// [`write_atomic`] with the file's permission bits (a secret: 0600).
pub fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_with(path, true, mode, |f| f.write_all(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn temp_names_are_recognised() {
        let t = temp_path(Path::new("/x/container.json"));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(is_temp_name(name), "{name}");
        assert!(!is_temp_name("container.json"));
        assert!(!is_temp_name(".hidden"));
        assert!(!is_temp_name(".x.tmp"));
        assert!(!is_temp_name(".x.0123456789abcdeg.tmp"));
    }

    #[test]
    fn replaces_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        write_replace(&p, b"three").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"three");
        assert!(leftovers(d.path()).is_empty());
    }

    #[test]
    fn a_failed_write_removes_its_temp_file_and_keeps_the_old_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"old").unwrap();
        let r = write_atomic_with(&p, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert!(leftovers(d.path()).is_empty());
        // A rename that fails (the target is a non-empty directory) cleans up too.
        let dir_target = d.path().join("dir");
        std::fs::create_dir(&dir_target).unwrap();
        std::fs::write(dir_target.join("x"), b"").unwrap();
        assert!(write_atomic(&dir_target, b"x").is_err());
        assert!(leftovers(d.path()).is_empty());
    }

    #[test]
    fn temp_names_are_unique() {
        let p = Path::new("/x/y");
        assert_ne!(temp_path(p), temp_path(p));
        assert!(temp_path(p).starts_with("/x"));
    }
}
