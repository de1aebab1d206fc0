//! The data root's free space, and how container records are written when it runs out.
//!
//! Every container record goes through a [`RecordWriter`]: write-temp, fsync, rename (berth-fs).
//! The real one, [`DiskGuard`], keeps a small reserve file (`<data-root>/space-reserve`, 1 MiB of
//! written zeros, so its blocks are really allocated) that only *critical* writes may use: the
//! facts a record must not lose (a stop asked for, an exit that happened), never a user's new
//! change. When such a write meets ENOSPC the reserve is deleted and the write tried once more.
//!
//! Fullness is what the disk says to a write, not a free-bytes threshold: ext4 keeps blocks no
//! one may use (its reserved clusters, and the root-reserved blocks for other users) that
//! statvfs still counts as free. So an ENOSPC or EDQUOT from any record write (or from the probe
//! written at startup) marks the data root full at once: the `daemon` event `disk-full` is
//! emitted right there and `GET /info` warns. A watcher task ([`Engine::spawn_disk_watch`])
//! checks every second whether space came back — statvfs's `f_bavail` at least [`CLEAR_BYTES`]
//! *and* a probe write succeeding — then writes the reserve back, writes the records that only
//! memory holds (`Entry::flush`) and reports `disk-space-available`. Nothing else is sticky:
//! every write tries the disk again.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::Engine;

/// The reserve critical writes may use on a full disk.
pub(crate) const RESERVE_BYTES: u64 = 1 << 20;
/// A full data root is tried again (the probe write) from this much space available:
/// the reserve to write back plus a 1 MiB margin.
pub(crate) const CLEAR_BYTES: u64 = RESERVE_BYTES + (1 << 20);

/// How a container record reaches the disk: the seam that lets unit tests fail the writes.
pub trait RecordWriter: Send + Sync {
    /// Replaces `path` with `data` atomically. `critical`: a fact that may use the reserve.
    /// `durable`: fsynced (file and directory) before it returns, so a power loss keeps it;
    /// otherwise only a crash of the daemon is survived (see `ContainerRecord::durable`).
    fn write(&self, path: &Path, data: &[u8], critical: bool, durable: bool)
        -> std::io::Result<()>;
}

pub(crate) fn is_enospc(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
}

/// The file write underneath (`write_atomic`, or `write_replace` when not durable; unit tests
/// put a failing one in).
type WriteFn = dyn Fn(&Path, &[u8], bool) -> std::io::Result<()> + Send + Sync;

fn write_file(path: &Path, data: &[u8], durable: bool) -> std::io::Result<()> {
    if durable {
        crate::util::write_atomic(path, data)
    } else {
        berth_fs::write_replace(path, data)
    }
}

pub struct DiskGuard {
    root: PathBuf,
    reserve: PathBuf,
    /// Set when a write met ENOSPC; cleared by the watcher once space is back.
    full: AtomicBool,
    io: Box<WriteFn>,
    /// Called once each time the data root becomes full (the engine emits `disk-full`).
    on_full: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl DiskGuard {
    pub(crate) fn new(root: &Path) -> DiskGuard {
        let g = DiskGuard::with_io(root, Box::new(write_file));
        // A daemon started on a full disk knows it before the first record write fails.
        if g.probe().is_ok() {
            g.make_reserve();
        }
        g
    }

    pub(crate) fn with_io(root: &Path, io: Box<WriteFn>) -> DiskGuard {
        DiskGuard {
            root: root.to_path_buf(),
            reserve: root.join("space-reserve"),
            full: AtomicBool::new(false),
            io,
            on_full: OnceLock::new(),
        }
    }

    /// What to call when the data root becomes full; set once, by the engine.
    pub(crate) fn set_on_full(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_full.set(f);
    }

    pub(crate) fn is_full(&self) -> bool {
        self.full.load(Ordering::SeqCst)
    }

    /// Marks the data root full; tells `on_full` if it was not already.
    fn mark_full(&self) {
        if !self.full.swap(true, Ordering::SeqCst) {
            tracing::warn!("data root {}: no space left on device", self.root.display());
            if let Some(f) = self.on_full.get() {
                f();
            }
        }
    }

    /// A small write where the records live; an ENOSPC marks the data root full.
    fn probe(&self) -> std::io::Result<()> {
        let p = self.root.join(".space-probe");
        let r = (self.io)(&p, b"probe\n", true);
        let _ = std::fs::remove_file(&p);
        if let Err(e) = &r {
            if is_enospc(e) {
                self.mark_full();
            }
        }
        r
    }

    /// Whether a full data root has room again: enough space available by statvfs (cheap) and
    /// a probe write that succeeds (the truth).
    pub(crate) fn space_back(&self) -> bool {
        avail_bytes(&self.root).is_some_and(|f| f >= CLEAR_BYTES) && self.probe().is_ok()
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
        self.is_full().then(|| {
            format!(
                "WARNING: the data root {} is out of space: containers can still be stopped, killed and removed, but new changes to them fail until space is freed",
                self.root.display()
            )
        })
    }
}

impl RecordWriter for DiskGuard {
    fn write(
        &self,
        path: &Path,
        data: &[u8],
        critical: bool,
        durable: bool,
    ) -> std::io::Result<()> {
        match (self.io)(path, data, durable) {
            Err(e) if is_enospc(&e) => {
                self.mark_full();
                if critical && self.release_reserve() {
                    (self.io)(path, data, durable)
                } else {
                    Err(e)
                }
            }
            r => r,
        }
    }
}

/// Bytes an unprivileged writer may still use (`f_bavail`); only a hint that space came back.
pub(crate) fn avail_bytes(path: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    Some((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

impl Engine {
    /// The data root's out-of-space warning for `GET /info`, if it is out of space.
    pub fn disk_warning(&self) -> Option<String> {
        self.inner.disk.warning()
    }

    /// The watcher of the data root's free space (see the module's comment), and the `disk-full`
    /// event the writers emit. Both hold the engine weakly: they end with the engine.
    pub(crate) fn spawn_disk_watch(&self) {
        let weak = Arc::downgrade(&self.inner);
        self.inner.disk.set_on_full(Box::new({
            let weak = weak.clone();
            move || {
                if let Some(inner) = weak.upgrade() {
                    Engine { inner }.emit_disk("disk-full", "no space left on device");
                }
            }
        }));
        if self.inner.disk.is_full() {
            // Found full by the startup probe, before anyone listened.
            self.emit_disk("disk-full", "no space left on device");
        }
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(inner) = weak.upgrade() else { return };
                let engine = Engine { inner };
                let _ = tokio::task::spawn_blocking(move || engine.disk_check()).await;
            }
        });
    }

    fn emit_disk(&self, action: &str, msg: &str) {
        let root = self.inner.cfg.data_root.display().to_string();
        self.emit(
            "daemon",
            action,
            self.id(),
            &[("path", root), ("message", msg.to_string())],
        );
    }

    /// One round of the watcher.
    fn disk_check(&self) {
        let disk = &self.inner.disk;
        if !disk.is_full() {
            // A write failed for another reason: try again.
            self.flush_records();
            return;
        }
        if disk.space_back() {
            disk.make_reserve();
            if self.flush_records() && disk.full.swap(false, Ordering::SeqCst) {
                tracing::warn!(
                    "data root {}: space freed",
                    self.inner.cfg.data_root.display()
                );
                self.emit_disk("disk-space-available", "space freed");
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A guard on a temp dir whose writes fail with `errno` while `fail` is set.
    fn guard(dir: &Path, errno: i32) -> (Arc<DiskGuard>, Arc<AtomicBool>, Arc<AtomicUsize>) {
        let fail = Arc::new(AtomicBool::new(false));
        let g = Arc::new(DiskGuard::with_io(
            dir,
            Box::new({
                let fail = fail.clone();
                move |p, d, durable| {
                    if fail.load(Ordering::SeqCst) {
                        return Err(std::io::Error::from_raw_os_error(errno));
                    }
                    write_file(p, d, durable)
                }
            }),
        ));
        let told = Arc::new(AtomicUsize::new(0));
        g.set_on_full(Box::new({
            let told = told.clone();
            move || {
                told.fetch_add(1, Ordering::SeqCst);
            }
        }));
        (g, fail, told)
    }

    #[test]
    fn an_enospc_from_a_write_marks_the_disk_full_at_once() {
        let t = tempfile::tempdir().expect("tmp");
        let (g, fail, told) = guard(t.path(), libc::ENOSPC);
        let rec = t.path().join("rec.json");
        g.write(&rec, b"1", false, true).expect("write");
        assert!(!g.is_full());
        assert!(g.warning().is_none());
        fail.store(true, Ordering::SeqCst);
        let e = g.write(&rec, b"2", false, true).expect_err("full");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(g.is_full());
        assert_eq!(told.load(Ordering::SeqCst), 1, "told once");
        assert!(g.warning().expect("warning").contains("out of space"));
        // Told once per fullness, however many writes fail.
        g.write(&rec, b"3", false, true).expect_err("full");
        assert_eq!(told.load(Ordering::SeqCst), 1);
        assert_eq!(std::fs::read(&rec).expect("read"), b"1");
        // statvfs says the temp dir has room, but the probe write fails: not back yet.
        assert!(!g.space_back());
        assert!(g.is_full());
        fail.store(false, Ordering::SeqCst);
        assert!(g.space_back(), "room and a probe that succeeds");
        assert!(
            !t.path().join(".space-probe").exists(),
            "the probe is removed"
        );
    }

    #[test]
    fn edquot_counts_as_full_and_other_errors_do_not() {
        let t = tempfile::tempdir().expect("tmp");
        let (g, fail, told) = guard(t.path(), libc::EDQUOT);
        fail.store(true, Ordering::SeqCst);
        g.write(&t.path().join("r"), b"x", false, true)
            .expect_err("quota");
        assert!(g.is_full());
        assert_eq!(told.load(Ordering::SeqCst), 1);

        let (g, fail, told) = guard(t.path(), libc::EIO);
        fail.store(true, Ordering::SeqCst);
        g.write(&t.path().join("r"), b"x", true, true)
            .expect_err("io error");
        assert!(!g.is_full());
        assert_eq!(told.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_critical_write_on_a_full_disk_uses_the_reserve_once() {
        let t = tempfile::tempdir().expect("tmp");
        let (g, fail, _) = guard(t.path(), libc::ENOSPC);
        assert!(g.make_reserve());
        let reserve = t.path().join("space-reserve");
        assert_eq!(
            std::fs::metadata(&reserve).expect("reserve").len(),
            RESERVE_BYTES
        );
        fail.store(true, Ordering::SeqCst);
        // A user's change never takes the reserve.
        g.write(&t.path().join("r"), b"x", false, true)
            .expect_err("full");
        assert!(reserve.exists());
        // A fact does: the reserve goes (this writer still fails the retry).
        g.write(&t.path().join("r"), b"x", true, true)
            .expect_err("full");
        assert!(!reserve.exists());
    }
}
