//! The data root's free space, and how container records are written when it runs out.
//!
//! Every container record goes through a [`RecordWriter`]: write-temp, fsync, rename (berth-fs).
//! The real one, [`DiskGuard`], keeps a small reserve file (`<data-root>/space-reserve`, 1 MiB of
//! written zeros, so its blocks are really allocated) that only *critical* writes may use: the
//! facts a record must not lose (a stop asked for, an exit that happened), never a user's new
//! change. When such a write meets ENOSPC the reserve is deleted and the write tried once more.
//!
//! A watcher task ([`Engine::spawn_disk_watch`]) checks the data root every second: below
//! [`LOW_BYTES`] free it reports the disk full (a `daemon` event `disk-full` and a warning in
//! `GET /info`); once [`CLEAR_BYTES`] are free again it writes the reserve back, writes the
//! records that only memory holds (`Entry::flush`) and reports `disk-space-available`. Nothing
//! else is sticky: every write tries the disk again.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::Engine;

/// The reserve critical writes may use on a full disk.
pub(crate) const RESERVE_BYTES: u64 = 1 << 20;
/// Below this much free space (what root may still use) the data root counts as full.
pub(crate) const LOW_BYTES: u64 = 512 << 10;
/// A full data root counts as writable again from this much free space.
pub(crate) const CLEAR_BYTES: u64 = 2 * RESERVE_BYTES + LOW_BYTES;

/// How a container record reaches the disk: the seam that lets unit tests fail the writes.
pub trait RecordWriter: Send + Sync {
    /// Replaces `path` with `data` atomically. `critical`: a fact that may use the reserve.
    fn write(&self, path: &Path, data: &[u8], critical: bool) -> std::io::Result<()>;
}

pub(crate) fn is_enospc(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
}

pub struct DiskGuard {
    root: PathBuf,
    reserve: PathBuf,
    /// Set when a write met ENOSPC or the watcher saw too little space; cleared by the watcher.
    full: AtomicBool,
}

impl DiskGuard {
    pub(crate) fn new(root: &Path) -> DiskGuard {
        let g = DiskGuard {
            root: root.to_path_buf(),
            reserve: root.join("space-reserve"),
            full: AtomicBool::new(false),
        };
        if free_bytes(root).is_some_and(|f| f >= CLEAR_BYTES) {
            g.make_reserve();
        }
        g
    }

    pub(crate) fn is_full(&self) -> bool {
        self.full.load(Ordering::SeqCst)
    }

    pub(crate) fn set_full(&self, full: bool) -> bool {
        self.full.swap(full, Ordering::SeqCst)
    }

    /// Writes the reserve if it is missing or short; best effort.
    fn make_reserve(&self) -> bool {
        if std::fs::metadata(&self.reserve).is_ok_and(|m| m.len() >= RESERVE_BYTES) {
            return true;
        }
        let res = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&self.reserve)?;
            let zeros = vec![0u8; 64 << 10];
            let mut left = RESERVE_BYTES;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            f.sync_all()
        })();
        if let Err(e) = res {
            // A short reserve would only take space without holding any: drop it.
            let _ = std::fs::remove_file(&self.reserve);
            tracing::warn!("writing the space reserve {}: {e}", self.reserve.display());
            return false;
        }
        true
    }

    /// Frees the reserve's blocks; false if there was none.
    fn release_reserve(&self) -> bool {
        match std::fs::remove_file(&self.reserve) {
            Ok(()) => {
                tracing::warn!(
                    "data root {} is full: released the space reserve for container state",
                    self.root.display()
                );
                true
            }
            Err(_) => false,
        }
    }

    /// The warning `GET /info` carries while the data root is out of space.
    pub(crate) fn warning(&self) -> Option<String> {
        let low = free_bytes(&self.root).is_some_and(|f| f < LOW_BYTES);
        (self.is_full() || low).then(|| {
            format!(
                "WARNING: the data root {} is out of space: containers can still be stopped, killed and removed, but new changes to them fail until space is freed",
                self.root.display()
            )
        })
    }
}

impl RecordWriter for DiskGuard {
    fn write(&self, path: &Path, data: &[u8], critical: bool) -> std::io::Result<()> {
        match crate::util::write_atomic(path, data) {
            Err(e) if is_enospc(&e) => {
                self.full.store(true, Ordering::SeqCst);
                if critical && self.release_reserve() {
                    crate::util::write_atomic(path, data)
                } else {
                    Err(e)
                }
            }
            r => r,
        }
    }
}

/// Free bytes root may use (`f_bfree`: the blocks ext4 keeps for root count, the daemon is root).
pub(crate) fn free_bytes(path: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    Some((st.blocks_free() as u64).saturating_mul(st.fragment_size() as u64))
}

impl Engine {
    /// The data root's out-of-space warning for `GET /info`, if it is out of space.
    pub fn disk_warning(&self) -> Option<String> {
        self.inner.disk.warning()
    }

    /// The watcher of the data root's free space (see the module's comment). Holds the engine
    /// weakly: it ends with the engine.
    pub(crate) fn spawn_disk_watch(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut reported = false;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(inner) = weak.upgrade() else { return };
                let engine = Engine { inner };
                let reported_now = tokio::task::spawn_blocking({
                    let engine = engine.clone();
                    move || engine.disk_check(reported)
                })
                .await
                .unwrap_or(reported);
                reported = reported_now;
            }
        });
    }

    /// One round of the watcher; returns whether the disk is now reported full.
    fn disk_check(&self, reported: bool) -> bool {
        let disk = &self.inner.disk;
        let root = &self.inner.cfg.data_root;
        let free = free_bytes(root);
        if free.is_some_and(|f| f < LOW_BYTES) {
            disk.set_full(true);
        }
        if disk.is_full() && free.is_some_and(|f| f >= CLEAR_BYTES) {
            disk.make_reserve();
            if self.flush_records() {
                disk.set_full(false);
            }
        } else if !disk.is_full() {
            // A write failed for another reason (or the disk filled and emptied between two
            // rounds): try again.
            self.flush_records();
        }
        let full = disk.is_full();
        if full != reported {
            let (action, msg) = if full {
                ("disk-full", "no space left on device")
            } else {
                ("disk-space-available", "space freed")
            };
            tracing::warn!("data root {}: {msg}", root.display());
            self.emit(
                "daemon",
                action,
                self.id(),
                &[
                    ("path", root.display().to_string()),
                    ("message", msg.to_string()),
                ],
            );
        }
        full
    }

    /// Writes every record that only memory holds; true if none is left.
    pub(crate) fn flush_records(&self) -> bool {
        let entries: Vec<_> = self.read_index().by_id.values().cloned().collect();
        let mut all = true;
        for c in entries {
            if let Err(e) = c.flush() {
                tracing::debug!("writing the record of {}: {e}", c.id);
                all = false;
            }
        }
        all
    }
}
