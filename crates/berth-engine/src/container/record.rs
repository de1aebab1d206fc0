//! The container record (persisted as `<data-root>/containers/<id>/container.json`) and its
//! in-memory entry.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use berth_api::types::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::disk::RecordWriter;
use crate::util::{self, ZERO_TIME};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// Running in the sense of "has a live process": paused and restarting-with-process count.
    pub fn is_running(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateRecord {
    pub status: Status,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    pub oom_killed: bool,
}

impl Default for StateRecord {
    fn default() -> Self {
        StateRecord {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            oom_killed: false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    /// Without the leading slash.
    pub name: String,
    pub created: String,
    pub path: String,
    pub args: Vec<String>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// "sha256:<hex>"
    pub image_id: String,
    pub state: StateRecord,
    pub restart_count: i64,
    /// Set by stop/kill so the restart policy leaves the container alone.
    pub manually_stopped: bool,
    pub log_path: String,
    pub hostname_path: String,
    pub hosts_path: String,
    pub resolv_conf_path: String,
    /// Volumes, binds and tmpfs mounts, resolved at create (see `container/mounts`).
    #[serde(default)]
    pub mount_points: Vec<crate::container::mounts::MountPoint>,
    /// A build's RUN step: internal to the builder, as in BuildKit, so it is left out of
    /// container lists, counts and prunes (a user or a prune must not see or take it mid-build).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub build_step: bool,
    /// A pod's container (made through the CRI): left out of Docker's lists and prunes unless
    /// asked for (`crate::pod::container::POD_LABEL`), run in its pod's namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<crate::pod::PodContainer>,
}

impl ContainerRecord {
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let data = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        util::write_atomic(&dir.join("container.json"), &data)
    }

    /// Whether a change of the record must survive a power loss (fsynced). A build step's
    /// need not: a boot ends its build, and the startup sweep removes it whatever its state
    /// says. (Its first record, `save` at create, is fsynced: a new file's rename is what a
    /// power loss may leave empty, and an unreadable record is never removed.)
    pub fn durable(&self) -> bool {
        !self.build_step
    }

    pub fn load(dir: &Path) -> std::io::Result<ContainerRecord> {
        let data = std::fs::read(dir.join("container.json"))?;
        serde_json::from_slice(&data).map_err(std::io::Error::other)
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

/// What waiters watch: bumped on every state change.
#[derive(Clone, Debug, Default)]
pub struct Signal {
    /// Number of exits seen since the daemon loaded this container.
    pub exits: u64,
    pub running: bool,
    pub removed: bool,
    pub exit_code: i64,
    /// When the last exit happened, and whether a `next-exit` waiter has been told of it.
    pub last_exit: Option<std::time::Instant>,
    pub exit_claimed: bool,
}

pub struct Entry {
    pub id: String,
    pub dir: PathBuf,
    pub record: Mutex<ContainerRecord>,
    /// Serialises lifecycle operations (start/stop/rm/restart) on one container.
    pub op: tokio::sync::Mutex<()>,
    pub signal: watch::Sender<Signal>,
    pub pending_attach: Mutex<Vec<crate::container::attach::PendingAttach>>,
    /// Set once removal has begun: late updates must not write the record back to disk.
    pub removed: std::sync::atomic::AtomicBool,
    /// How the record reaches the disk (the data root's guard; a failing one in unit tests).
    writer: Arc<dyn RecordWriter>,
    /// Memory holds a fact the disk does not yet (a write of `record` failed): written by the
    /// next successful write of this record, or by the disk watcher's `flush`.
    dirty: AtomicBool,
}

impl Entry {
    pub fn new(record: ContainerRecord, dir: PathBuf, writer: Arc<dyn RecordWriter>) -> Entry {
        let sig = Signal {
            exits: 0,
            running: record.state.status.is_running(),
            removed: false,
            exit_code: record.state.exit_code,
            last_exit: None,
            exit_claimed: true,
        };
        let (tx, _rx) = watch::channel(sig);
        Entry {
            id: record.id.clone(),
            dir,
            record: Mutex::new(record),
            op: tokio::sync::Mutex::new(()),
            signal: tx,
            pending_attach: Mutex::new(Vec::new()),
            removed: std::sync::atomic::AtomicBool::new(false),
            writer,
            dirty: AtomicBool::new(false),
        }
    }

    /// The attach requests waiting for the next start, handed over once.
    pub fn take_pending(&self) -> Vec<crate::container::attach::PendingAttach> {
        match self.pending_attach.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }

    pub fn snapshot(&self) -> ContainerRecord {
        match self.record.lock() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ContainerRecord> {
        match self.record.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Whether memory holds a fact the disk does not yet.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::SeqCst)
    }

    /// Writes `rec` as this container's record (nothing once removal began). The caller holds
    /// the record lock, so two writes never land on disk out of order.
    fn persist(&self, rec: &ContainerRecord, critical: bool) -> std::io::Result<()> {
        if self.removed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let data = serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?;
        self.writer
            .write(
                &self.dir.join("container.json"),
                &data,
                critical,
                rec.durable(),
            )
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot record the state of container {}: {e}",
                        rec.short_id()
                    ),
                )
            })?;
        self.dirty.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn publish(&self, rec: &ContainerRecord) {
        self.signal.send_modify(|s| {
            s.running = rec.state.status.is_running();
            s.exit_code = rec.state.exit_code;
        });
    }

    /// Mutate the record in memory only, and wake watchers: for states that need not survive a
    /// crash because recovery re-derives them (an `--rm` container's exit, removal).
    pub fn update_volatile<F: FnOnce(&mut ContainerRecord)>(&self, f: F) -> ContainerRecord {
        let rec = {
            let mut guard = self.lock();
            f(&mut guard);
            guard.clone()
        };
        self.publish(&rec);
        rec
    }

    /// A change asked for (start, rename, update, pause...): computes the new record, persists
    /// it, and only then publishes it in memory. If the write fails nothing changes and the
    /// caller gets the error.
    pub fn update<F: FnOnce(&mut ContainerRecord)>(
        &self,
        f: F,
    ) -> std::io::Result<ContainerRecord> {
        let rec = {
            let mut guard = self.lock();
            let mut next = guard.clone();
            f(&mut next);
            self.persist(&next, false)?;
            *guard = next.clone();
            next
        };
        self.publish(&rec);
        Ok(rec)
    }

    /// A fact that already happened (a stop asked for and signalled, an exit): published in
    /// memory whatever the disk says, persisted best effort (with the space reserve). A failed
    /// write leaves the entry dirty, written later by `flush` or the next write; until then
    /// recovery re-derives the state from the shim (a dead process is never shown running).
    pub fn record<F: FnOnce(&mut ContainerRecord)>(&self, f: F) -> ContainerRecord {
        let rec = {
            let mut guard = self.lock();
            f(&mut guard);
            if let Err(e) = self.persist(&guard, true) {
                self.dirty.store(true, Ordering::SeqCst);
                tracing::warn!("{e} (kept in memory, written when the disk allows)");
            }
            guard.clone()
        };
        self.publish(&rec);
        rec
    }

    /// Writes the record if memory is ahead of the disk.
    pub fn flush(&self) -> std::io::Result<()> {
        let guard = self.lock();
        if !self.is_dirty() {
            return Ok(());
        }
        self.persist(&guard, true)
    }
}
