//! What the build cache reports about its directories: disk usage and age.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes allocated on disk under `p`, `du`-style (directories' own blocks included, symlinks
/// not followed); unreadable entries count as 0.
pub fn usage(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    let own = m.blocks() * 512;
    if m.is_dir() {
        own + std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| usage(&e.path())).sum())
            .unwrap_or(0)
    } else {
        own
    }
}

/// Modification time of `p` in seconds since the epoch; 0 when unknown.
pub fn mtime_secs(p: &Path) -> i64 {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_files_and_directories() {
        let d = tempfile::tempdir().expect("tempdir");
        let empty = usage(d.path());
        std::fs::create_dir(d.path().join("sub")).expect("mkdir");
        std::fs::write(d.path().join("sub").join("f"), vec![1u8; 100_000]).expect("write");
        let full = usage(d.path());
        assert!(full >= empty + 100_000, "{empty} -> {full}");
        assert_eq!(usage(&d.path().join("missing")), 0);
        assert!(mtime_secs(d.path()) > 1_700_000_000);
        assert_eq!(mtime_secs(&d.path().join("missing")), 0);
    }
}
