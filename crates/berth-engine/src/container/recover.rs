//! Live restore: after a daemon restart, load every container record, reconnect to live shims and
//! record what happened to the others (exits, restarts the policy asks for).

use std::sync::Arc;

use crate::container::config::restart_policy;
use crate::container::{ContainerRecord, Entry, Status};
use crate::error::Result;
use crate::util;
use crate::Engine;

impl Engine {
    /// Reads every container record and reconnects to the shims of those still running.
    pub(crate) async fn restore(&self) -> Result<()> {
        let dir = self.inner.cfg.data_root.join("containers");
        let mut loaded = Vec::new();
        for ent in std::fs::read_dir(&dir)? {
            let ent = match ent {
                Ok(e) => e,
                Err(_) => continue,
            };
            let path = ent.path();
            if !path.join("container.json").exists() {
                // A removal the previous daemon did not finish.
                if let Some(id) = path.file_name().and_then(|n| n.to_str()) {
                    let engine = self.clone();
                    let id = id.to_string();
                    tokio::task::spawn_blocking(move || engine.purge_files(&id));
                }
                continue;
            }
            match ContainerRecord::load(&path) {
                Ok(rec) => loaded.push((rec, path)),
                Err(e) => {
                    tracing::warn!(
                        "skipping unreadable container record {}: {e}",
                        path.display()
                    )
                }
            }
        }
        {
            let mut reg = self.write_index();
            for (rec, path) in &loaded {
                reg.names.insert(rec.name.clone(), rec.id.clone());
                reg.by_id.insert(
                    rec.id.clone(),
                    Arc::new(self.new_entry(rec.clone(), path.clone())),
                );
            }
        }
        self.net_sweep();
        for (rec, _) in loaded {
            if let Ok(c) = self.lookup(&rec.id) {
                self.recover(c).await;
            }
            if rec.build_step {
                // Its build died with the previous daemon: nothing will ever remove it.
                if let Err(e) = self.remove(&rec.id, true, true).await {
                    tracing::warn!("removing build container {}: {e}", rec.id);
                }
            }
        }
        Ok(())
    }
}

impl Engine {
    /// After a daemon restart: reconnect to a live shim, or record what happened meanwhile.
    pub(crate) async fn recover(&self, c: Arc<Entry>) {
        let rec = c.snapshot();
        let rt = self.runtime_dir(&c.id);
        let live = matches!(
            rec.state.status,
            Status::Running | Status::Paused | Status::Restarting
        );
        if live && rec.state.status != Status::Restarting && self.runtime().alive(&rt) {
            for m in &rec.mount_points {
                self.volumes().adopt(&m.name, &c.id);
            }
            self.net_readopt(&c.id);
            self.start_health(&c);
            self.spawn_monitor(c);
            return;
        }
        if live && rec.state.status != Status::Restarting {
            let exit = self.runtime().exit_file(&rt);
            self.handle_exit(c, exit).await;
            return;
        }
        // Not running: start it if its policy says so at daemon start.
        let (name, _) = restart_policy(&rec.host_config);
        // Docker: `always` comes back at daemon start even after a manual stop;
        // `unless-stopped` only if it was not stopped by hand.
        let wants = match name.as_str() {
            "always" => true,
            "unless-stopped" => !rec.manually_stopped,
            _ => rec.state.status == Status::Restarting && !rec.manually_stopped,
        };
        if wants && rec.state.started_at != util::ZERO_TIME {
            let engine = self.clone();
            tokio::spawn(async move {
                let _g = c.op.lock().await;
                // A restart the policy had scheduled when the daemon died still counts as one.
                let _ = c.record(|r| {
                    if r.state.status == Status::Restarting {
                        r.restart_count += 1;
                    }
                    r.state.status = Status::Exited;
                });
                if let Err(e) = engine.start_locked(&c).await {
                    tracing::warn!("restarting {} at daemon start: {e}", c.id);
                }
            });
        }
    }
}
