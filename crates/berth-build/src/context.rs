//! The build context: safe extraction of the context tar the client sends. Lookups inside it
//! (nothing may resolve outside the context root) go through `berth_fs::secure_join`.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Normalises a path found in an archive: relative, no `..` above its root, no `.` parts.
/// `None` for a path that would climb out.
pub fn clean_rel(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Some(out)
}

/// Unpacks a (plain or gzip) context tar into `dir`, with the workspace's one extractor
/// (berth-fs): nothing is written outside `dir` — `..` is refused, absolute paths start at
/// `dir`, no entry is written through a symbolic link and hard links must point inside.
/// `.wh.` names are ordinary files here, and every entry is 0:0 as the builder's copies are.
pub fn extract(reader: &mut dyn Read, dir: &Path) -> Result<(), String> {
    let mut buf = std::io::BufReader::new(reader);
    use std::io::BufRead;
    let peek = buf.fill_buf().map_err(|e| e.to_string())?;
    let gzip = peek.starts_with(&[0x1f, 0x8b]);
    let mut r: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(buf))
    } else {
        Box::new(buf)
    };
    berth_fs::extract::extract(&mut r, dir, &berth_fs::extract::ExtractOptions::default())
        .map(|_| ())
        .map_err(|e| format!("Error processing tar file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, t, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*t);
            h.set_mode(0o644);
            h.set_size(0);
            // Write the name bytes raw so `..` and absolute paths reach the extractor.
            let name = h.as_old_mut().name.as_mut();
            name[..p.len()].copy_from_slice(p.as_bytes());
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn escapes_are_confined_or_refused() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("ctx");
        std::fs::create_dir(&dir).unwrap();
        let t = tar_with(&[("../evil", tar::EntryType::Regular, "")]);
        assert!(extract(&mut &t[..], &dir).is_err());
        let t = tar_with(&[("/abs", tar::EntryType::Regular, "")]);
        extract(&mut &t[..], &dir).unwrap();
        assert!(dir.join("abs").exists());
        let t = tar_with(&[
            ("l", tar::EntryType::Symlink, ".."),
            ("l/evil2", tar::EntryType::Regular, ""),
        ]);
        assert!(extract(&mut &t[..], &dir).is_err());
        assert!(!outer.path().join("evil").exists() && !outer.path().join("evil2").exists());
    }

    #[test]
    fn resolve_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("e")).unwrap();
        std::os::unix::fs::symlink("../../..", d.path().join("up")).unwrap();
        // The build's lookups (berth-fs): an absolute link restarts at the context root.
        let join = |p| berth_fs::secure_join(d.path(), p).unwrap();
        assert_eq!(join("e/passwd"), d.path().join("etc/passwd"));
        assert_eq!(join("up/x"), d.path().join("x"));
        assert_eq!(join("../../x"), d.path().join("x"));
    }
}
