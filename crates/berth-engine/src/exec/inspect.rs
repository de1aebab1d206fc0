//! `exec inspect`.

use berth_api::types::{ExecInspect, ExecProcessConfig};

use crate::error::Result;
use crate::Engine;

impl Engine {
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

    /// Signals an exec's process (the CRI's ExecSync ends one whose time is up).
    pub async fn exec_kill(&self, id: &str, signal: i32) -> Result<()> {
        let e = self.exec_lookup(id)?;
        if !e.get().running {
            return Ok(());
        }
        self.runtime().kill(&self.exec_dir(&e), signal).await
    }

    /// Exec ids of a container (inspect's `ExecIDs`).
    pub fn exec_ids(&self, container_id: &str) -> Vec<String> {
        self.inner.execs.ids_of(container_id)
    }
}
