//! `exec start`: the exec's shim, its attach and the monitor that records its exit; wait and resize.

use crate::container::attach::AttachStream;
use crate::error::{EngineError, Result};
use crate::exec::{console_size, run_cmdline, start_failure_code, ExecEntry};
use crate::Engine;

impl Engine {
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
            match self
                .runtime()
                .attach(&dir, cfg.attach_stdin, cfg.attach_stdout, cfg.attach_stderr)
                .await
            {
                Ok(io) => Some(AttachStream { tty: cfg.tty, io }),
                Err(err) => {
                    let _ = self.runtime().kill(&dir, 9).await;
                    return Err(err);
                }
            }
        } else {
            None
        };
        let engine = self.clone();
        let e2 = e.clone();
        tokio::spawn(async move {
            let code = match engine.runtime().wait(&dir).await {
                Ok(Some(x)) => x.exit_code,
                _ => engine
                    .runtime()
                    .exit_file(&dir)
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
        self.runtime()
            .resize(&self.exec_dir(&e), height, width)
            .await
    }
}
