//! `exec create`, and the checks a start makes before it answers.

use std::sync::{Arc, Mutex};

use berth_api::types::ExecConfig;

use crate::error::{EngineError, Result};
use crate::exec::{ExecEntry, ExecState, MAX_FINISHED_PER_CONTAINER};
use crate::Engine;

impl Engine {
    /// `POST /containers/{id}/exec`: records the exec; nothing runs yet.
    pub async fn exec_create(&self, container: &str, cfg: ExecConfig) -> Result<String> {
        let c = self.lookup(container)?;
        if cfg.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(EngineError::InvalidParameter(
                "No exec command specified".into(),
            ));
        }
        self.check_exec_target(&c)?;
        let id = crate::util::new_id();
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
        // Finished means an exit code: one being started (started, not yet running) is not,
        // and evicting it would make its client's inspect after the output fail with 404.
        let mut finished: Vec<(u64, String)> = map
            .values()
            .map(|e| (e.id.clone(), e.get()))
            .filter(|(_, s)| s.container_id == c.id && s.exit_code.is_some())
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
        let cmdline = super::run_cmdline(&entry.get().config);
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
}
