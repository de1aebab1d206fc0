//! Layer tars: the entries COPY/ADD/WORKDIR write (sorted, deterministic), and the rewrite of
//! a RUN step's diff (mtimes clamped to SOURCE_DATE_EPOCH, mount stubs dropped).

use super::imagefs::ImageFs;
use super::stage::StageRun;
use super::util::failed;
use super::BuildError;
use crate::context::clean_rel;
use berth_image::chain_ids;
use std::collections::BTreeSet;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// One entry of a layer tar being assembled.
pub(super) struct Entry {
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

pub(super) enum EntryKind {
    Dir,
    File(PathBuf, u64),
    Inline(Vec<u8>),
    Symlink(PathBuf),
}

impl StageRun<'_, '_, '_> {
    pub fn mtime_default(&self) -> u64 {
        match self.run.epoch {
            Some(e) => e.max(0) as u64,
            None => chrono::Utc::now().timestamp().max(0) as u64,
        }
    }

    /// A source mtime, clamped to SOURCE_DATE_EPOCH when one is set.
    pub fn clamp(&self, t: i64) -> u64 {
        let t = t.max(0);
        match self.run.epoch {
            Some(e) if t > e => e.max(0) as u64,
            _ => t as u64,
        }
    }

    pub fn parent_chain(&self) -> Option<String> {
        chain_ids(&self.st.config.rootfs.diff_ids).pop()
    }

    /// Entries for the missing parent directories of `path` (absolute, in the image).
    pub fn parent_entries(&self, fs: &ImageFs, path: &str, out: &mut Vec<Entry>) {
        let rel = clean_rel(Path::new(path)).unwrap_or_default();
        let mut cur = PathBuf::new();
        let comps: Vec<_> = rel.components().collect();
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            cur.push(c);
            let p = cur.to_string_lossy().into_owned();
            if !fs.exists(&format!("/{p}")) && !out.iter().any(|e| e.path == p) {
                out.push(Entry {
                    path: p,
                    kind: EntryKind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    mtime: self.mtime_default(),
                });
            }
        }
    }

    /// Writes entries as a layer tar (sorted, deterministic) and stores it. Returns the diff id.
    pub fn write_layer(&self, mut entries: Vec<Entry>) -> Result<String, BuildError> {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries.dedup_by(|a, b| a.path == b.path);
        let tmp_dir = &self.run.b.tmp_dir;
        std::fs::create_dir_all(tmp_dir).map_err(|e| failed("temp dir", e))?;
        let mut f = tempfile_in(tmp_dir)?;
        {
            let mut tb = tar::Builder::new(std::io::BufWriter::new(&mut f));
            let werr = |e: std::io::Error| failed("writing layer", e);
            for e in &entries {
                let mut h = tar::Header::new_gnu();
                h.set_mode(e.mode);
                h.set_uid(e.uid);
                h.set_gid(e.gid);
                h.set_mtime(e.mtime);
                match &e.kind {
                    EntryKind::Dir => {
                        h.set_entry_type(tar::EntryType::Directory);
                        h.set_size(0);
                        tb.append_data(&mut h, format!("{}/", e.path), &[][..])
                            .map_err(werr)?;
                    }
                    EntryKind::File(p, size) => {
                        h.set_entry_type(tar::EntryType::Regular);
                        h.set_size(*size);
                        let file = std::fs::File::open(p).map_err(werr)?;
                        tb.append_data(&mut h, &e.path, file.take(*size))
                            .map_err(werr)?;
                    }
                    EntryKind::Inline(data) => {
                        h.set_entry_type(tar::EntryType::Regular);
                        h.set_size(data.len() as u64);
                        tb.append_data(&mut h, &e.path, &data[..]).map_err(werr)?;
                    }
                    EntryKind::Symlink(t) => {
                        h.set_entry_type(tar::EntryType::Symlink);
                        h.set_size(0);
                        tb.append_link(&mut h, &e.path, t).map_err(werr)?;
                    }
                }
            }
            tb.into_inner()
                .and_then(|mut w| w.flush())
                .map_err(|e| failed("writing layer", e))?;
        }
        f.rewind().map_err(|e| failed("layer", e))?;
        let info = self
            .run
            .b
            .store
            .add_layer(
                self.parent_chain().as_deref(),
                &mut std::io::BufReader::new(f),
            )
            .map_err(|e| failed("storing layer", e))?;
        Ok(info.diff_id)
    }
}

/// An anonymous temp file in `dir` (unlinked at once, gone when closed).
pub(super) fn tempfile_in(dir: &Path) -> Result<std::fs::File, BuildError> {
    let p = dir.join(format!("layer-{}", super::util::unique_suffix()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&p)
        .map_err(|e| failed("temp file", e))?;
    let _ = std::fs::remove_file(&p);
    Ok(f)
}

/// Rewrites a RUN step's diff tar: every mtime clamped to `epoch` (when set), and the mount
/// points the runtime created for the step's mounts (`stubs`, paths relative to the root that
/// did not exist before) dropped when nothing else in the diff lives under them.
pub(super) fn rewrite_diff(
    f: std::fs::File,
    epoch: Option<i64>,
    stubs: &BTreeSet<String>,
    tmp: &Path,
) -> Result<std::fs::File, BuildError> {
    let werr = |e: std::io::Error| failed("rewriting layer", e);
    let norm = |p: &Path| p.to_string_lossy().trim_end_matches('/').to_string();
    let mut f = f;
    // Which stubs hold something of the step's own (then they stay).
    let mut keep = BTreeSet::new();
    if !stubs.is_empty() {
        let mut ar = tar::Archive::new(std::io::BufReader::new(&mut f));
        for e in ar.entries().map_err(werr)? {
            let e = e.map_err(werr)?;
            let p = norm(&e.path().map_err(werr)?);
            let is_empty_stub = stubs.contains(&p)
                && (e.header().entry_type().is_dir() || e.header().size().unwrap_or(1) == 0);
            if !is_empty_stub {
                let mut cur = p.as_str();
                while let Some((parent, _)) = cur.rsplit_once('/') {
                    keep.insert(parent.to_string());
                    cur = parent;
                }
                keep.insert(p.clone());
            }
        }
        f.rewind().map_err(werr)?;
    }
    let mut out = tempfile_in(tmp)?;
    {
        let mut ar = tar::Archive::new(std::io::BufReader::new(f));
        let mut tb = tar::Builder::new(std::io::BufWriter::new(&mut out));
        for e in ar.entries().map_err(werr)? {
            let mut e = e.map_err(werr)?;
            let path = e.path().map_err(werr)?.into_owned();
            let p = norm(&path);
            if stubs.contains(&p) && !keep.contains(&p) {
                continue;
            }
            let mut h = e.header().clone();
            if let Some(epoch) = epoch {
                let m = h.mtime().unwrap_or(0) as i64;
                if m > epoch {
                    h.set_mtime(epoch.max(0) as u64);
                }
            }
            if let Some(l) = e.link_name().map_err(werr)?.map(|l| l.into_owned()) {
                tb.append_link(&mut h, &path, l).map_err(werr)?;
            } else {
                tb.append_data(&mut h, &path, &mut e).map_err(werr)?;
            }
        }
        tb.into_inner().and_then(|mut w| w.flush()).map_err(werr)?;
    }
    out.rewind().map_err(|e| failed("layer", e))?;
    Ok(out)
}
