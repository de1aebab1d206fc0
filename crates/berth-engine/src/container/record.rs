//! The container record (persisted as `<data-root>/containers/<id>/container.json`) and its
//! in-memory entry.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_api::types::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

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
}

impl Entry {
    pub fn new(record: ContainerRecord, dir: PathBuf) -> Entry {
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

    /// Mutate the record in memory only, and wake watchers: for states that need not survive a
    /// crash because recovery re-derives them (an `--rm` container's exit, removal).
    pub fn update_volatile<F: FnOnce(&mut ContainerRecord)>(&self, f: F) -> ContainerRecord {
        let rec = {
            let mut guard = match self.record.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            f(&mut guard);
            guard.clone()
        };
        self.signal.send_modify(|s| {
            s.running = rec.state.status.is_running();
            s.exit_code = rec.state.exit_code;
        });
        rec
    }

    /// Mutate the record, persist it, and wake watchers.
    pub fn update<F: FnOnce(&mut ContainerRecord)>(
        &self,
        f: F,
    ) -> std::io::Result<ContainerRecord> {
        let rec = {
            let mut guard = match self.record.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            f(&mut guard);
            // Saved under the lock so two updates can never land on disk out of order.
            let saved = if self.removed.load(std::sync::atomic::Ordering::SeqCst) {
                Ok(())
            } else {
                guard.save(&self.dir)
            };
            (saved, guard.clone())
        };
        let (res, rec) = rec;
        self.signal.send_modify(|s| {
            s.running = rec.state.status.is_running();
            s.exit_code = rec.state.exit_code;
        });
        res.map(|_| rec)
    }
}
