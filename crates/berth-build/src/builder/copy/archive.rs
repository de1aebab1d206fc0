//! ADD of a local tar archive (plain or gzip): its entries under the destination, paths
//! confined to it, hard links only to files already in the archive.

use super::{Entry, EntryKind};
use crate::builder::stage::StageRun;
use crate::builder::util::failed;
use crate::builder::BuildError;
use crate::context::clean_rel;
use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

pub(super) fn is_tar_archive(p: &Path) -> bool {
    let Ok(f) = std::fs::File::open(p) else {
        return false;
    };
    let mut head = Vec::with_capacity(512);
    let mut r: Box<dyn Read> = Box::new(f);
    let mut magic = [0u8; 2];
    if r.read_exact(&mut magic).is_err() {
        return false;
    }
    let rest: Box<dyn Read> = Box::new(std::io::Cursor::new(magic.to_vec()).chain(r));
    let mut r: Box<dyn Read> = if magic == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(rest))
    } else {
        rest
    };
    if r.by_ref().take(512).read_to_end(&mut head).is_err() || head.len() < 262 {
        return false;
    }
    &head[257..262] == b"ustar"
}

pub(super) fn open_maybe_gz(p: &Path) -> std::io::Result<Box<dyn Read>> {
    let mut f = std::fs::File::open(p)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    f.rewind()?;
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)))
    } else {
        Box::new(std::io::BufReader::new(f))
    })
}

impl StageRun<'_, '_, '_> {
    /// ADD of a local tar archive: its entries under `dest` (paths confined to it).
    pub(super) fn unpack_archive(
        &self,
        archive: &Path,
        dest: &str,
        tmp: &Path,
        out: &mut Vec<Entry>,
    ) -> Result<(), BuildError> {
        let r = open_maybe_gz(archive).map_err(|e| failed("reading archive", e))?;
        let mut ar = tar::Archive::new(r);
        let werr =
            |e: std::io::Error| BuildError::BadRequest(format!("ADD failed: reading archive: {e}"));
        let mut files: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
        for (n, e) in ar.entries().map_err(werr)?.enumerate() {
            let mut e = e.map_err(werr)?;
            let p = e.path().map_err(werr)?.into_owned();
            let Some(rel) = clean_rel(&p) else { continue };
            if rel.as_os_str().is_empty() {
                continue;
            }
            let target = if dest.is_empty() {
                rel.to_string_lossy().into_owned()
            } else {
                format!("{dest}/{}", rel.display())
            };
            let h = e.header().clone();
            let mode = h.mode().unwrap_or(0o644) & 0o7777;
            let uid = h.uid().unwrap_or(0);
            let gid = h.gid().unwrap_or(0);
            let mtime = self.clamp(h.mtime().unwrap_or(0) as i64);
            let t = h.entry_type();
            let kind = if t.is_dir() {
                EntryKind::Dir
            } else if t.is_symlink() {
                EntryKind::Symlink(
                    e.link_name()
                        .map_err(werr)?
                        .map(|l| l.into_owned())
                        .unwrap_or_default(),
                )
            } else if t.is_hard_link() {
                let l = e
                    .link_name()
                    .map_err(werr)?
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let Some(src) = clean_rel(&l).and_then(|l| files.get(&l).cloned()) else {
                    continue;
                };
                let size = std::fs::metadata(&src).map(|m| m.len()).unwrap_or(0);
                EntryKind::File(src, size)
            } else if t.is_file() || t == tar::EntryType::Continuous {
                let f = tmp.join(format!("f{n}"));
                let mut w = std::fs::File::create(&f).map_err(|e| failed("temp file", e))?;
                let size = std::io::copy(&mut e, &mut w).map_err(werr)?;
                files.insert(rel.clone(), f.clone());
                EntryKind::File(f, size)
            } else {
                continue;
            };
            out.push(Entry {
                path: target,
                kind,
                mode,
                uid,
                gid,
                mtime,
            });
        }
        Ok(())
    }
}
