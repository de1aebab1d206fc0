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

/// Whether any existing ancestor of `rel` under `root` is a symlink (writing there could
/// leave the root).
fn through_symlink(root: &Path, rel: &Path) -> bool {
    let mut cur = root.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return true,
            _ => {}
        }
    }
    false
}

/// Unpacks a (plain or gzip) context tar into `dir`. Entries with absolute paths or `..` are
/// confined to `dir`; entries that would be written through a symlink are refused; hard links
/// must point inside.
pub fn extract(reader: &mut dyn Read, dir: &Path) -> Result<(), String> {
    let mut head = [0u8; 2];
    let mut buf = std::io::BufReader::new(reader);
    use std::io::BufRead;
    let peek = buf.fill_buf().map_err(|e| e.to_string())?;
    let n = peek.len().min(2);
    head[..n].copy_from_slice(&peek[..n]);
    let r: Box<dyn Read> = if head == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(buf))
    } else {
        Box::new(buf)
    };
    let mut ar = tar::Archive::new(r);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let entries = ar
        .entries()
        .map_err(|e| format!("Error processing tar file: {e}"))?;
    for e in entries {
        let mut e = e.map_err(|e| format!("Error processing tar file: {e}"))?;
        let path = e
            .path()
            .map_err(|e| format!("Error processing tar file: {e}"))?
            .into_owned();
        let Some(rel) = clean_rel(&path) else {
            return Err(format!(
                "Error processing tar file: path {} escapes the context",
                path.display()
            ));
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        if through_symlink(dir, &rel) {
            return Err(format!(
                "Error processing tar file: {} is below a symbolic link",
                rel.display()
            ));
        }
        let kind = e.header().entry_type();
        if kind.is_hard_link() {
            let target = e
                .link_name()
                .map_err(|e| e.to_string())?
                .map(|t| t.into_owned())
                .unwrap_or_default();
            let Some(t) = clean_rel(&target) else {
                return Err("Error processing tar file: hard link escapes the context".into());
            };
            if through_symlink(dir, &t)
                || std::fs::symlink_metadata(dir.join(&t)).is_ok_and(|m| m.file_type().is_symlink())
            {
                return Err("Error processing tar file: hard link to a symbolic link".into());
            }
            if let Some(p) = dir.join(&rel).parent() {
                std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
            }
            let _ = std::fs::remove_file(dir.join(&rel));
            std::fs::hard_link(dir.join(&t), dir.join(&rel))
                .map_err(|e| format!("Error processing tar file: {e}"))?;
            continue;
        }
        if !(kind.is_file()
            || kind.is_dir()
            || kind.is_symlink()
            || kind == tar::EntryType::Continuous)
        {
            continue; // devices and fifos have no place in a context
        }
        if let Some(p) = dir.join(&rel).parent() {
            std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
        }
        let ok = e
            .unpack_in(dir)
            .map_err(|e| format!("Error processing tar file: {e}"))?;
        if !ok {
            return Err(format!(
                "Error processing tar file: {} escapes the context",
                rel.display()
            ));
        }
    }
    Ok(())
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
