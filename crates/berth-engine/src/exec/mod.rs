//! Exec instances: Docker's `/containers/{id}/exec` and `/exec/{id}/...`.
//!
//! The records live in memory (as in Docker: an exec does not survive a daemon restart, its
//! process does, being a child of its own shim). Each started exec has a shim in
//! `<exec-root>/exec/<exec id>/` (see berth-runtime's `exec`); a monitor
//! task holds a `wait` on it and records the exit code.

mod create;
mod inspect;
mod start;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_api::types::ExecConfig;

use crate::container::Status;
use crate::error::{EngineError, Result};
use crate::Engine;

/// How long a finished exec stays inspectable (Docker keeps them until the container goes;
/// we also bound their number per container).
const MAX_FINISHED_PER_CONTAINER: usize = 256;

#[derive(Debug, Clone)]
pub struct ExecState {
    pub config: ExecConfig,
    pub container_id: String,
    pub started: bool,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
    pub finished_seq: u64,
}

pub struct ExecEntry {
    pub id: String,
    state: Mutex<ExecState>,
    done: tokio::sync::watch::Sender<bool>,
}

impl ExecEntry {
    fn get(&self) -> ExecState {
        match self.state.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn update<F: FnOnce(&mut ExecState)>(&self, f: F) {
        match self.state.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }
}

#[derive(Default)]
pub struct ExecTable {
    by_id: Mutex<HashMap<String, Arc<ExecEntry>>>,
    seq: std::sync::atomic::AtomicU64,
}

impl ExecTable {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ExecEntry>>> {
        match self.by_id.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Forget the execs of a removed container.
    pub fn remove_container(&self, container_id: &str) {
        self.map()
            .retain(|_, e| e.get().container_id != container_id);
    }

    pub fn ids_of(&self, container_id: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .map()
            .values()
            .filter(|e| e.get().container_id == container_id)
            .map(|e| e.id.clone())
            .collect();
        v.sort();
        v
    }
}

/// Docker's exit code for an exec whose process never started: 126, whatever the reason
/// (127 is `run`'s code for a missing command, not exec's).
fn start_failure_code(_msg: &str) -> i64 {
    126
}

/// The command as dockerd writes it in exec events: the program, a space, its arguments
/// (`exec_create: true ` for a bare `true`; clients match on it).
fn run_cmdline(cfg: &ExecConfig) -> String {
    let cmd = cfg.cmd.clone().unwrap_or_default();
    match cmd.split_first() {
        Some((prog, args)) => format!("{prog} {}", args.join(" ")),
        None => " ".into(),
    }
}

fn console_size(v: &Option<[u64; 2]>) -> Option<(u16, u16)> {
    match v {
        Some([h, w]) if *h > 0 && *w > 0 => Some((
            (*h).min(u16::MAX as u64) as u16,
            (*w).min(u16::MAX as u64) as u16,
        )),
        _ => None,
    }
}

impl Engine {
    fn exec_lookup(&self, id: &str) -> Result<Arc<ExecEntry>> {
        self.inner
            .execs
            .map()
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("No such exec instance: {id}")))
    }

    fn exec_dir(&self, e: &ExecEntry) -> PathBuf {
        // Not below the container's runtime dir: the socket path must stay under 108 bytes.
        self.inner.cfg.exec_root.join("exec").join(&e.id)
    }

    fn check_exec_target(&self, c: &crate::container::Entry) -> Result<()> {
        let rec = c.snapshot();
        match rec.state.status {
            Status::Running => Ok(()),
            Status::Paused => Err(EngineError::Conflict(format!(
                "Container {} is paused, unpause the container before exec",
                c.id
            ))),
            Status::Restarting => Err(EngineError::Conflict(format!(
                "Container {} is restarting, wait until the container is running",
                c.id
            ))),
            _ => Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.id
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_failure_codes_follow_docker() {
        assert_eq!(
            start_failure_code("exec: \"x\": executable file not found in $PATH"),
            126
        );
        assert_eq!(start_failure_code("exec: \"/etc\": permission denied"), 126);
    }

    #[test]
    fn console_size_needs_positive_numbers() {
        assert_eq!(console_size(&Some([30, 100])), Some((30, 100)));
        assert_eq!(console_size(&Some([0, 100])), None);
        assert_eq!(console_size(&None), None);
    }
}
