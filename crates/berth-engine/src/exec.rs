//! Exec instances: Docker's `/containers/{id}/exec` and `/exec/{id}/...`.
//!
//! The records live in memory (as in Docker: an exec does not survive a daemon restart, its
//! process does, being a child of its own shim). Each started exec has a shim in
//! `<exec-root>/exec/<exec id>/` (see berth-runtime's `exec`); a monitor
//! task holds a `wait` on it and records the exit code.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_api::types::{ExecConfig, ExecInspect, ExecProcessConfig};

use crate::attach::AttachStream;
use crate::container::Status;
use crate::error::{EngineError, Result};
use crate::shim_client;

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

fn run_cmdline(cfg: &ExecConfig) -> String {
    cfg.cmd.clone().unwrap_or_default().join(" ")
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

impl crate::Engine {
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

    /// `POST /containers/{id}/exec`: records the exec; nothing runs yet.
    pub async fn exec_create(&self, container: &str, cfg: ExecConfig) -> Result<String> {
        let c = self.lookup(container)?;
        if cfg.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(EngineError::InvalidParameter(
                "No exec command specified".into(),
            ));
        }
        self.check_exec_target(&c)?;
        let id = hex::encode(rand::random::<[u8; 32]>());
        let (done, _) = tokio::sync::watch::channel(false);
        let entry = Arc::new(ExecEntry {
            id: id.clone(),
            state: Mutex::new(ExecState {
                config: cfg,
                container_id: c.id.clone(),
                started: false,
                running: false,
                exit_code: None,
                pid: 0,
                finished_seq: 0,
            }),
            done,
        });
        let mut map = self.inner.execs.map();
        // Bound the finished execs kept for a container (Docker keeps them for its lifetime).
        let mut finished: Vec<(u64, String)> = map
            .values()
            .map(|e| (e.id.clone(), e.get()))
            .filter(|(_, s)| s.container_id == c.id && s.started && !s.running)
            .map(|(id, s)| (s.finished_seq, id))
            .collect();
        if finished.len() >= MAX_FINISHED_PER_CONTAINER {
            finished.sort();
            for (_, old) in finished
                .iter()
                .take(finished.len() + 1 - MAX_FINISHED_PER_CONTAINER)
            {
                map.remove(old);
            }
        }
        let cmdline = entry.get().config.cmd.clone().unwrap_or_default().join(" ");
        map.insert(id.clone(), entry);
        drop(map);
        self.emit_container(
            &c.id,
            &format!("exec_create: {cmdline}"),
            &[("execID", id.clone())],
        );
        Ok(id)
    }

    /// The checks of a start that can fail before anything runs (unknown exec, already
    /// started, container not running), so an attached start can answer them as HTTP errors
    /// before it hijacks the connection.
    pub fn exec_precheck(&self, id: &str) -> Result<()> {
        let e = self.exec_lookup(id)?;
        let st = e.get();
        if st.started {
            return Err(EngineError::Conflict(format!(
                "Error: Exec command {id} is already running"
            )));
        }
        let c = self.lookup(&st.container_id)?;
        self.check_exec_target(&c)
    }

    /// `POST /exec/{id}/start`. With `detach` the process runs with no client; otherwise the
    /// returned stream is attached to its stdio (stdin only with `AttachStdin`).
    pub async fn exec_start(
        &self,
        id: &str,
        detach: bool,
        start_console: &Option<[u64; 2]>,
    ) -> Result<Option<AttachStream>> {
        let e = self.exec_lookup(id)?;
        let mut already = false;
        e.update(|s| {
            already = s.started;
            s.started = true;
        });
        if already {
            return Err(EngineError::Conflict(format!(
                "Error: Exec command {id} is already running"
            )));
        }
        let st = e.get();
        let c = match self.lookup(&st.container_id) {
            Ok(c) => c,
            Err(err) => {
                self.exec_failed(&e, 126);
                return Err(err);
            }
        };
        if let Err(err) = self.check_exec_target(&c) {
            self.exec_failed(&e, 126);
            return Err(err);
        }
        let cfg = &st.config;
        let run = berth_runtime::exec::ExecConfig {
            cmd: cfg.cmd.clone().unwrap_or_default(),
            env: cfg.env.clone().unwrap_or_default(),
            user: cfg.user.clone(),
            working_dir: cfg.working_dir.clone(),
            tty: cfg.tty,
            privileged: cfg.privileged,
            attach_stdin: cfg.attach_stdin && !detach,
            console_size: console_size(start_console).or(console_size(&cfg.console_size)),
        };
        let attach_out = !detach && (cfg.attach_stdout || cfg.attach_stderr || cfg.attach_stdin);
        let exe = self.inner.cfg.berth_exe.clone();
        let (cid, state_root, rt) = (c.id.clone(), self.state_root(), self.runtime_dir(&c.id));
        let dir = self.exec_dir(&e);
        let spawned = tokio::task::spawn_blocking(move || {
            berth_runtime::exec::spawn_exec(&exe, &cid, &state_root, &rt, &dir, &run, attach_out)
        })
        .await
        .map_err(EngineError::internal)?;
        let started = match spawned {
            Ok(s) => s,
            Err(err) => {
                let msg = err.to_string();
                self.exec_failed(&e, start_failure_code(&msg));
                return Err(match err {
                    berth_runtime::RuntimeError::UserNotFound(_)
                    | berth_runtime::RuntimeError::GroupNotFound(_)
                    | berth_runtime::RuntimeError::Spec(_) => EngineError::InvalidParameter(msg),
                    berth_runtime::RuntimeError::ExecNotFound(_)
                    | berth_runtime::RuntimeError::ExecNoSuchFile(_)
                    | berth_runtime::RuntimeError::ExecPermission(_) => EngineError::Internal(
                        format!("OCI runtime exec failed: exec failed: unable to start container process: {msg}: unknown"),
                    ),
                    _ => EngineError::Internal(msg),
                });
            }
        };
        e.update(|s| {
            s.running = true;
            s.pid = started.init_pid as i64;
        });
        self.emit_container(
            &c.id,
            &format!("exec_start: {}", run_cmdline(cfg)),
            &[("execID", e.id.clone())],
        );
        let dir = self.exec_dir(&e);
        // Attach before the monitor's wait, so held output goes to this client.
        let stream = if attach_out {
            match shim_client::attach(&dir, cfg.attach_stdin, cfg.attach_stdout, cfg.attach_stderr)
                .await
            {
                Ok(io) => Some(AttachStream { tty: cfg.tty, io }),
                Err(err) => {
                    let _ = shim_client::kill(&dir, 9).await;
                    return Err(err);
                }
            }
        } else {
            None
        };
        let engine = self.clone();
        let e2 = e.clone();
        tokio::spawn(async move {
            let code = match shim_client::wait(&dir).await {
                Ok(Some(x)) => x.exit_code,
                _ => shim_client::read_exit_file(&dir)
                    .map(|x| x.exit_code)
                    .unwrap_or(-1),
            };
            let seq = engine
                .inner
                .execs
                .seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            e2.update(|s| {
                s.running = false;
                s.exit_code = Some(code);
                s.finished_seq = seq;
            });
            let cid = e2.get().container_id;
            engine.emit_container(
                &cid,
                "exec_die",
                &[("execID", e2.id.clone()), ("exitCode", code.to_string())],
            );
            e2.done.send_replace(true);
            // The shim is gone or going; its directory has served its purpose.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let _ = tokio::fs::remove_dir_all(&dir).await;
        });
        Ok(stream)
    }

    fn exec_failed(&self, e: &ExecEntry, code: i64) {
        let seq = self
            .inner
            .execs
            .seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        e.update(|s| {
            s.running = false;
            s.exit_code = Some(code);
            s.finished_seq = seq;
        });
        e.done.send_replace(true);
    }

    /// Waits until the exec's exit code is recorded (after its attachment ended).
    pub async fn exec_wait(&self, id: &str) -> Result<()> {
        let e = self.exec_lookup(id)?;
        let mut rx = e.done.subscribe();
        if !e.get().started {
            return Ok(());
        }
        let _ = rx.wait_for(|d| *d).await;
        Ok(())
    }

    pub async fn exec_resize(&self, id: &str, height: u32, width: u32) -> Result<()> {
        let e = self.exec_lookup(id)?;
        let st = e.get();
        if !st.running {
            return Err(EngineError::Conflict(format!(
                "Exec {id} is not running, so it can not be resized."
            )));
        }
        if !st.config.tty {
            return Err(EngineError::Conflict(format!(
                "Exec {id} is not running in a tty, so it can not be resized."
            )));
        }
        shim_client::resize(&self.exec_dir(&e), height, width).await
    }

    pub fn exec_inspect(&self, id: &str) -> Result<ExecInspect> {
        let e = self.exec_lookup(id)?;
        let s = e.get();
        let cmd = s.config.cmd.clone().unwrap_or_default();
        Ok(ExecInspect {
            can_remove: s.started && !s.running,
            container_id: s.container_id.clone(),
            detach_keys: s.config.detach_keys.clone(),
            exit_code: s.exit_code,
            id: e.id.clone(),
            open_stderr: s.config.attach_stderr,
            open_stdin: s.config.attach_stdin,
            open_stdout: s.config.attach_stdout,
            process_config: ExecProcessConfig {
                tty: s.config.tty,
                entrypoint: cmd.first().cloned().unwrap_or_default(),
                arguments: cmd.iter().skip(1).cloned().collect(),
                privileged: s.config.privileged,
                user: s.config.user.clone(),
            },
            running: s.running,
            pid: s.pid,
        })
    }

    /// Exec ids of a container (inspect's `ExecIDs`).
    pub fn exec_ids(&self, container_id: &str) -> Vec<String> {
        self.inner.execs.ids_of(container_id)
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
