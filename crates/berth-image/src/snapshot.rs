//! Container root filesystems: `<root>/snapshots/<container-id>/{upper,work,merged}` with the
//! image's extracted layers as overlay lower dirs.
//!
//! Mount options must fit in one page. Each lower dir is named through a 16-char symlink in
//! `<root>/l/` (pointing at `../layers/<chain>/diff`), and the mount is made from a short-lived
//! thread that has unshared its filesystem context (`unshare(CLONE_FS)`) and chdir'ed into
//! `<root>/l`, so the lowerdir list is just `abcd...:efgh...` (17 bytes a layer, ~230 layers in a
//! page) without changing the daemon's working directory for any other thread.

use crate::error::{ImageError, IoContext};
use crate::fsutil::{atomic_write, remove_all};
use crate::layers::LayerStore;
use crate::store::ImageStore;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const MAX_MOUNT_DATA: usize = 4095;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotRecord {
    pub image_id: String,
    /// Chain ids, bottom layer first.
    pub layers: Vec<String>,
    /// The snapshot has an init layer (`init/`, between the image and the rw layer). Absent in
    /// snapshots made before it existed.
    #[serde(default)]
    pub init: bool,
}

/// Docker's init layer: the mount points every container gets (and `/.dockerenv`, `/etc/mtab`),
/// made in a layer of the container's own below its rw layer, so that `diff` and `commit` never
/// see them (dockerd's `<id>-init`).
const INIT_DIRS: [&str; 4] = ["dev/pts", "dev/shm", "proc", "sys"];
const INIT_FILES: [&str; 5] = [
    ".dockerenv",
    "etc/resolv.conf",
    "etc/hosts",
    "etc/hostname",
    "dev/console",
];
const INIT_LINKS: [(&str, &str); 1] = [("etc/mtab", "/proc/mounts")];

fn make_init_layer(init: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let mkdir = |p: &Path| {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(p)
            .ctx("create", p)
    };
    mkdir(init)?;
    for d in INIT_DIRS {
        mkdir(&init.join(d))?;
    }
    for f in INIT_FILES {
        let p = init.join(f);
        if let Some(parent) = p.parent() {
            mkdir(parent)?;
        }
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o755)
            .open(&p)
            .ctx("create", &p)?;
    }
    for (link, target) in INIT_LINKS {
        let p = init.join(link);
        match std::os::unix::fs::symlink(target, &p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ImageError::io_path("symlink", &p, e)),
        }
    }
    Ok(())
}

fn valid_container_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn is_mounted(path: &Path) -> Result<bool, ImageError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let (a, b) = match (fs::metadata(path), fs::metadata(parent)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        (Err(e), _) | (_, Err(e)) => return Err(ImageError::io_path("stat", path, e)),
    };
    Ok(a.dev() != b.dev() || a.ino() == b.ino())
}

impl ImageStore {
    fn snapshot_dir(&self, container_id: &str) -> Result<PathBuf, ImageError> {
        if !valid_container_id(container_id) {
            return Err(ImageError::InvalidArgument(format!(
                "invalid container id {container_id:?}"
            )));
        }
        Ok(self.root.join("snapshots").join(container_id))
    }

    pub(crate) fn snapshot_record(&self, container_id: &str) -> Result<SnapshotRecord, ImageError> {
        let p = self.snapshot_dir(container_id)?.join("snapshot.json");
        let b = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageError::InvalidArgument(format!(
                    "no snapshot for container {container_id}"
                )))
            }
            Err(e) => return Err(ImageError::io_path("read", &p, e)),
        };
        serde_json::from_slice(&b).map_err(|e| ImageError::json(p.display().to_string(), e))
    }

    pub(crate) fn snapshot_records(&self) -> Result<Vec<SnapshotRecord>, ImageError> {
        let dir = self.root.join("snapshots");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).ctx("read", &dir)? {
            let e = e.ctx("read", &dir)?;
            if let Ok(b) = fs::read(e.path().join("snapshot.json")) {
                if let Ok(r) = serde_json::from_slice(&b) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Prepares a container's rw layer on top of an image (by id or any name `get` accepts), with
    /// Docker's init layer between them.
    pub fn create_snapshot(&self, container_id: &str, image_id: &str) -> Result<(), ImageError> {
        self.new_snapshot(container_id, image_id, true)
    }

    /// A snapshot of the image's own tree, without the init layer: what a build mounts to read
    /// a stage or an image from (`COPY --from`, bind mounts, exporters), where a container's
    /// mount points would be files the image does not have.
    pub fn create_image_snapshot(&self, id: &str, image_id: &str) -> Result<(), ImageError> {
        self.new_snapshot(id, image_id, false)
    }

    fn new_snapshot(
        &self,
        container_id: &str,
        image_id: &str,
        init: bool,
    ) -> Result<(), ImageError> {
        let _g = self.gc.read().unwrap_or_else(|e| e.into_inner());
        let dir = self.snapshot_dir(container_id)?;
        let id = self.resolve_id(image_id)?;
        if let Ok(existing) = self.snapshot_record(container_id) {
            return if existing.image_id == id {
                Ok(())
            } else {
                Err(ImageError::Conflict(format!(
                    "snapshot for container {container_id} already exists"
                )))
            };
        }
        let rec = self.record(&id)?;
        for l in &rec.layers {
            if self.layers.get(&l.chain_id)?.is_none() {
                return Err(ImageError::Internal(format!(
                    "layer {} is missing",
                    l.chain_id
                )));
            }
        }
        for d in ["upper", "work", "merged", "empty"] {
            let p = dir.join(d);
            fs::create_dir_all(&p).ctx("create", &p)?;
        }
        if init {
            make_init_layer(&dir.join("init"))?;
        }
        let sr = SnapshotRecord {
            image_id: id,
            layers: rec.layers.iter().map(|l| l.chain_id.clone()).collect(),
            init,
        };
        let json = serde_json::to_vec(&sr).map_err(|e| ImageError::json("snapshot", e))?;
        // Written last: its presence marks a complete snapshot.
        atomic_write(&dir.join("snapshot.json"), &json)
    }

    /// Mounts the container's root filesystem; returns the merged dir. Idempotent.
    pub fn mount_snapshot(&self, container_id: &str) -> Result<PathBuf, ImageError> {
        let dir = self.snapshot_dir(container_id)?;
        let rec = self.snapshot_record(container_id)?;
        let merged = dir.join("merged");
        if is_mounted(&merged)? {
            return Ok(merged);
        }
        let upper = dir.join("upper");
        let work = dir.join("work");
        let mut lowers: Vec<String> = Vec::new();
        if rec.init {
            lowers.push(dir.join("init").display().to_string());
        }
        for c in rec.layers.iter().rev() {
            lowers.push(LayerStore::short_name(c)?);
        }
        if lowers.is_empty() {
            lowers.push(dir.join("empty").display().to_string());
        }
        let lower = lowers.join(":");
        let mut opts = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            upper.display(),
            work.display()
        );
        // Layers are shared between snapshots; with the inodes index on, overlay ties a lower
        // dir to the first upper that used it. Docker turns it off too, where the kernel knows it.
        if Path::new("/sys/module/overlay/parameters/index").exists() {
            opts.push_str(",index=off");
        }
        if upper.display().to_string().contains([',', ':']) {
            return Err(ImageError::InvalidArgument(format!(
                "data root {} contains ',' or ':', which overlayfs cannot use",
                self.root.display()
            )));
        }
        if opts.len() > MAX_MOUNT_DATA {
            return Err(ImageError::InvalidArgument(format!(
                "too many layers ({}) for an overlay mount",
                rec.layers.len()
            )));
        }
        let links = self.layers.links_dir().to_path_buf();
        let target = merged.clone();
        let res = std::thread::spawn(move || -> Result<(), ImageError> {
            // SAFETY: unshare(CLONE_FS) only affects this thread's cwd/umask/root.
            if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                return Err(ImageError::io("unshare", std::io::Error::last_os_error()));
            }
            std::env::set_current_dir(&links).ctx("chdir", &links)?;
            nix::mount::mount(
                Some("overlay"),
                &target,
                Some("overlay"),
                nix::mount::MsFlags::empty(),
                Some(opts.as_str()),
            )
            .map_err(|e| ImageError::io_path("mount overlay on", &target, e.into()))
        })
        .join()
        .map_err(|_| ImageError::Internal("mount thread panicked".into()))?;
        res?;
        Ok(merged)
    }

    /// Unmounts the container's root filesystem. Idempotent.
    pub fn unmount_snapshot(&self, container_id: &str) -> Result<(), ImageError> {
        let merged = self.snapshot_dir(container_id)?.join("merged");
        if !is_mounted(&merged)? {
            return Ok(());
        }
        use nix::mount::{umount2, MntFlags};
        match umount2(&merged, MntFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            // Still busy (a process lingers in it): detach now, the kernel frees it later.
            Err(nix::errno::Errno::EBUSY) => umount2(&merged, MntFlags::MNT_DETACH)
                .map_err(|e| ImageError::io_path("unmount", &merged, e.into())),
            Err(e) => Err(ImageError::io_path("unmount", &merged, e.into())),
        }
    }

    /// Deletes the container's rw layer (unmounting first), and layers nothing uses any more.
    pub fn remove_snapshot(&self, container_id: &str) -> Result<(), ImageError> {
        let _gc = self.gc.write().unwrap_or_else(|e| e.into_inner());
        let dir = self.snapshot_dir(container_id)?;
        if !dir.exists() {
            return Ok(());
        }
        self.unmount_snapshot(container_id)?;
        if is_mounted(&dir.join("merged"))? {
            return Err(ImageError::Internal(format!(
                "rootfs of container {container_id} is still mounted"
            )));
        }
        let rec = self.snapshot_record(container_id).ok();
        remove_all(&dir)?;
        if let Some(rec) = rec {
            let mut candidates = Vec::new();
            for c in rec.layers {
                if let Some(info) = self.layers.get(&c)? {
                    candidates.push(info);
                }
            }
            let st = self.lock();
            // Layer blobs of removed images are already gone; only dirs are collected here.
            self.gc_layers(&st, candidates)?;
        }
        Ok(())
    }

    /// Bytes written by the container (Docker's SizeRw): the upper dir's contents.
    pub fn snapshot_size(&self, container_id: &str) -> Result<u64, ImageError> {
        let upper = self.snapshot_dir(container_id)?.join("upper");
        let mut seen = HashSet::new();
        let mut total = 0u64;
        let mut stack = vec![upper];
        while let Some(d) = stack.pop() {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ImageError::io_path("read", &d, e)),
            };
            for e in rd {
                let e = e.ctx("read", &d)?;
                let m = match fs::symlink_metadata(e.path()) {
                    Ok(m) => m,
                    Err(_) => continue, // removed while we walk
                };
                if m.is_dir() {
                    stack.push(e.path());
                } else if m.nlink() <= 1 || seen.insert((m.dev(), m.ino())) {
                    total += m.len();
                }
            }
        }
        Ok(total)
    }
}
