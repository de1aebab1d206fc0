//! A container's changes: `docker diff`, and turning an upper dir back into a layer tarball for
//! `docker commit` and the builder (overlay whiteouts become `.wh.` entries again).

use crate::config::{ContainerConfig, History, ImageConfig};
use crate::error::{ImageError, IoContext};
use crate::fsutil::TempDir;
use crate::reference::Reference;
use crate::store::ImageStore;
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::{Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One row of `GET /containers/{id}/changes`: Kind 0 = modified, 1 = added, 2 = deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    #[serde(rename = "Path")]
    pub path: String,
    #[serde(rename = "Kind")]
    pub kind: u8,
}

/// Options of `docker commit`.
#[derive(Clone, Debug, Default)]
pub struct CommitOptions {
    /// Tag for the new image.
    pub reference: Option<String>,
    /// Dockerfile-like lines (`-c`).
    pub changes: Vec<String>,
    pub comment: Option<String>,
    pub author: Option<String>,
    /// Replaces the base image's container config when set (before `changes` apply).
    pub config: Option<ContainerConfig>,
    /// History `created_by` (the builder records its instruction here).
    pub created_by: Option<String>,
    /// `docker commit`: the id and config (API JSON) of the committed container, recorded as
    /// the config's `container` and `container_config`, as Docker does.
    pub container: Option<(String, serde_json::Value)>,
}

/// Paths of a container's overlay, for `GraphDriver` in inspect output.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotPaths {
    /// Top layer first, as overlay's lowerdir.
    pub lower_dirs: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 4];
    // SAFETY: valid C strings and a buffer of the stated size.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

/// Upper-dir entries in a stable order (sorted by name, parents before children).
fn walk(root: &Path) -> Result<Vec<(PathBuf, fs::Metadata)>, ImageError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .ctx("read", &dir)?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        let mut subdirs = Vec::new();
        for n in names {
            let r = rel.join(&n);
            let m = fs::symlink_metadata(root.join(&r)).ctx("stat", &root.join(&r))?;
            if m.is_dir() {
                subdirs.push(r.clone());
            }
            out.push((r, m));
        }
        // Depth-first in name order: push reversed so the smallest pops first.
        for s in subdirs.into_iter().rev() {
            stack.push(s);
        }
    }
    // Make the order a strict pre-order traversal.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

impl ImageStore {
    /// The layer dirs, top first, of a snapshot, with its own dirs.
    pub fn snapshot_paths(&self, container_id: &str) -> Result<SnapshotPaths, ImageError> {
        let rec = self.snapshot_record(container_id)?;
        let dir = self.root.join("snapshots").join(container_id);
        let mut lower_dirs = Vec::new();
        if rec.init {
            lower_dirs.push(dir.join("init"));
        }
        for c in rec.layers.iter().rev() {
            lower_dirs.push(self.layers.layer_dir(c)?.join("diff"));
        }
        Ok(SnapshotPaths {
            lower_dirs,
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("merged"),
        })
    }

    /// `docker diff`: what the container added, changed and deleted.
    pub fn snapshot_changes(&self, container_id: &str) -> Result<Vec<Change>, ImageError> {
        let p = self.snapshot_paths(container_id)?;
        let in_lower = |rel: &Path| -> bool {
            for l in &p.lower_dirs {
                match fs::symlink_metadata(l.join(rel)) {
                    Ok(m) if is_whiteout(&m) => return false,
                    Ok(_) => return true,
                    Err(_) => {}
                }
                // An opaque ancestor in this layer hides everything below it.
                let mut anc = rel.parent();
                while let Some(a) = anc {
                    if a.as_os_str().is_empty() {
                        break;
                    }
                    if is_opaque(&l.join(a)) {
                        return false;
                    }
                    anc = a.parent();
                }
            }
            false
        };
        let mut out = Vec::new();
        let mut deleted_dirs: Vec<PathBuf> = Vec::new();
        for (rel, m) in walk(&p.upper)? {
            if deleted_dirs.iter().any(|d| rel.starts_with(d)) {
                continue;
            }
            let kind = if is_whiteout(&m) {
                2
            } else if in_lower(&rel) {
                0
            } else {
                1
            };
            if kind == 2 {
                deleted_dirs.push(rel.clone());
            }
            out.push(Change {
                path: format!("/{}", rel.display()),
                kind,
            });
        }
        Ok(out)
    }

    /// Writes the container's changes as a layer tarball (Docker whiteout format).
    pub fn snapshot_diff(&self, container_id: &str, out: &mut dyn Write) -> Result<(), ImageError> {
        let p = self.snapshot_paths(container_id)?;
        write_layer_tar(&p.upper, out)
    }

    /// `docker commit`: the container's changes become a new layer on top of its image.
    pub fn commit_snapshot(
        &self,
        container_id: &str,
        opts: &CommitOptions,
    ) -> Result<String, ImageError> {
        let tag = opts
            .reference
            .as_deref()
            .map(Reference::parse)
            .transpose()?;
        if tag.as_ref().is_some_and(|t| t.digest.is_some()) {
            return Err(ImageError::InvalidArgument(
                "refusing to create a tag with a digest reference".into(),
            ));
        }
        let rec = self.snapshot_record(container_id)?;
        let base_bytes = self
            .blobs
            .read(&rec.image_id)
            .map_err(|_| ImageError::NotFound(rec.image_id.clone()))?;
        let mut cfg: ImageConfig =
            serde_json::from_slice(&base_bytes).map_err(|e| ImageError::json("image config", e))?;
        let mut cc = opts
            .config
            .clone()
            .or_else(|| cfg.config.clone())
            .unwrap_or_default();
        crate::import::apply_changes(&mut cc, &opts.changes)?;

        let _g = self.gc.read().unwrap_or_else(|e| e.into_inner());
        let staging = TempDir::new_in(&self.root.join("tmp"), "commit")?;
        let f = staged_tar(&staging, |f| self.snapshot_diff(container_id, f))?;
        let parent = rec.layers.last().map(String::as_str);
        let layer = self.add_layer_locked(parent, None, &mut std::io::BufReader::new(f))?;

        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        cfg.created = Some(created.clone());
        cfg.config = Some(cc);
        cfg.author = opts.author.clone().filter(|a| !a.is_empty());
        cfg.comment = opts.comment.clone().filter(|c| !c.is_empty());
        cfg.docker_version = Some(concat!("berth-", env!("CARGO_PKG_VERSION")).into());
        // Fields describing the container the base image was built from no longer apply.
        cfg.extra.remove("container");
        cfg.extra.remove("container_config");
        if let Some((id, config)) = &opts.container {
            cfg.extra.insert("container".into(), id.clone().into());
            cfg.extra.insert("container_config".into(), config.clone());
        }
        cfg.rootfs.kind = "layers".into();
        cfg.rootfs.diff_ids.push(layer.diff_id.clone());
        cfg.history.push(History {
            created: Some(created),
            created_by: opts.created_by.clone(),
            author: cfg.author.clone(),
            comment: cfg.comment.clone(),
            ..Default::default()
        });
        let bytes = serde_json::to_vec(&cfg).map_err(|e| ImageError::json("image config", e))?;
        let rec = self.prepare_record(&bytes)?;
        let id = rec.id.clone();
        self.commit(vec![(rec, tag.into_iter().collect())])?;
        Ok(id)
    }

    /// `build --squash`: `image_id`'s layers above `base_id`'s (all of them for `None`,
    /// scratch) become one. The history is
    /// kept, its entries above the base marked `empty_layer`, with a last entry saying what was
    /// merged, as Docker records a squash. The image is returned as is when it has no layer of
    /// its own.
    pub fn squash(&self, image_id: &str, base_id: Option<&str>) -> Result<String, ImageError> {
        let read = |id: &str| -> Result<(String, ImageConfig), ImageError> {
            let id = self.resolve_id(id)?;
            let bytes = self
                .blobs
                .read(&id)
                .map_err(|_| ImageError::NotFound(id.clone()))?;
            let cfg =
                serde_json::from_slice(&bytes).map_err(|e| ImageError::json("image config", e))?;
            Ok((id, cfg))
        };
        let (image_id, mut cfg) = read(image_id)?;
        let (base_id, base) = match base_id {
            Some(b) => read(b)?,
            None => ("scratch".to_string(), ImageConfig::default()),
        };
        let base_layers = &base.rootfs.diff_ids;
        if !cfg.rootfs.diff_ids.starts_with(base_layers) {
            return Err(ImageError::InvalidArgument(format!(
                "cannot squash {image_id}: it is not built on {base_id}"
            )));
        }
        let own = cfg.rootfs.diff_ids[base_layers.len()..].to_vec();
        if own.is_empty() {
            return Ok(image_id);
        }
        let _g = self.gc.read().unwrap_or_else(|e| e.into_inner());
        let staging = TempDir::new_in(&self.root.join("tmp"), "squash")?;
        let merged = staging.path.join("merged");
        fs::create_dir(&merged).ctx("mkdir", &merged)?;
        for diff_id in &own {
            let f = self.open_layer_tar(diff_id)?;
            crate::extract::merge_layer(&mut std::io::BufReader::new(f), &merged)?;
        }
        let f = staged_tar(&staging, |f| write_layer_tar(&merged, f))?;
        let chain = crate::fsutil::chain_ids(base_layers);
        let layer = self.add_layer_locked(
            chain.last().map(String::as_str),
            None,
            &mut std::io::BufReader::new(f),
        )?;

        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        for h in cfg.history.iter_mut().skip(base.history.len()) {
            h.empty_layer = true;
        }
        cfg.history.push(History {
            created: Some(created.clone()),
            comment: Some(format!("merge {image_id} to {base_id}")),
            ..Default::default()
        });
        cfg.created = Some(created);
        cfg.rootfs.diff_ids = base_layers.clone();
        cfg.rootfs.diff_ids.push(layer.diff_id.clone());
        let bytes = serde_json::to_vec(&cfg).map_err(|e| ImageError::json("image config", e))?;
        let rec = self.prepare_record(&bytes)?;
        let id = rec.id.clone();
        self.commit(vec![(rec, Vec::new())])?;
        Ok(id)
    }
}

/// A layer tar written by `write` into `staging`, rewound for reading.
fn staged_tar(
    staging: &TempDir,
    write: impl FnOnce(&mut fs::File) -> Result<(), ImageError>,
) -> Result<fs::File, ImageError> {
    let tmp = staging.path.join("layer.tar");
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp)
        .ctx("create", &tmp)?;
    write(&mut f)?;
    f.rewind().ctx("seek", &tmp)?;
    Ok(f)
}

/// Writes an overlay-format directory (a snapshot's upper, merged layers) as a layer tarball
/// in Docker's whiteout format.
fn write_layer_tar(upper: &Path, out: &mut dyn Write) -> Result<(), ImageError> {
    let mut tb = tar::Builder::new(out);
    tb.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let werr = |e: std::io::Error| ImageError::io("write layer", e);
    for (rel, m) in walk(upper)? {
        let full = upper.join(&rel);

        let mut h = tar::Header::new_gnu();
        h.set_mtime(u64::try_from(m.mtime()).unwrap_or(0));
        h.set_uid(u64::from(m.uid()));
        h.set_gid(u64::from(m.gid()));
        h.set_mode(m.mode() & 0o7777);
        h.set_size(0);
        let ft = m.file_type();
        if is_whiteout(&m) {
            let name = rel
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let wh = rel.with_file_name(format!(".wh.{name}"));
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            tb.append_data(&mut h, &wh, &[][..]).map_err(werr)?;
        } else if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            tb.append_data(&mut h, &rel, &[][..]).map_err(werr)?;
            if is_opaque(&full) {
                let mut oh = tar::Header::new_gnu();
                oh.set_entry_type(tar::EntryType::Regular);
                oh.set_mode(0o644);
                oh.set_size(0);
                oh.set_mtime(u64::try_from(m.mtime()).unwrap_or(0));
                tb.append_data(&mut oh, rel.join(".wh..wh..opq"), &[][..])
                    .map_err(werr)?;
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).ctx("readlink", &full)?;
            h.set_entry_type(tar::EntryType::Symlink);
            tb.append_link(&mut h, &rel, &target).map_err(werr)?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = links.get(&(m.dev(), m.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    tb.append_link(&mut h, &rel, first).map_err(werr)?;
                    continue;
                }
                links.insert((m.dev(), m.ino()), rel.clone());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(m.len());
            let f = fs::File::open(&full).ctx("open", &full)?;
            tb.append_data(&mut h, &rel, f).map_err(werr)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            h.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            });
            let rdev = m.rdev();
            h.set_device_major(libc::major(rdev)).map_err(werr)?;
            h.set_device_minor(libc::minor(rdev)).map_err(werr)?;
            tb.append_data(&mut h, &rel, &[][..]).map_err(werr)?;
        }
        // Sockets are not archived, as in Docker.
    }
    tb.into_inner().and_then(|w| w.flush()).map_err(werr)
}
