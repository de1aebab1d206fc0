//! Live restore for pods: after a daemon restart every pod record is loaded again; a ready pod
//! whose infra process is gone becomes not ready (its containers, restored on their own, are
//! found running or exited by the container recovery).

use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::pod::{PodEntry, PodRecord, PodState};
use crate::Engine;

impl Engine {
    pub(crate) fn restore_pods(&self) -> Result<()> {
        let dir = self.inner.cfg.data_root.join("pods");
        std::fs::create_dir_all(&dir)?;
        for ent in std::fs::read_dir(&dir)?.flatten() {
            let path = ent.path();
            if !path.join("pod.json").exists() {
                // A removal the previous daemon did not finish.
                if let Some(id) = path.file_name().and_then(|n| n.to_str()) {
                    let _ = std::fs::remove_dir_all(self.pod_run_dir(id));
                }
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            let mut rec = match PodRecord::load(&path) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("skipping unreadable pod record {}: {e}", path.display());
                    continue;
                }
            };
            if rec.state == PodState::Ready && !rec.infra.is_some_and(|i| i.alive()) {
                tracing::warn!("pod {}: its infra process is gone; not ready", rec.id);
                rec.state = PodState::NotReady;
                let _ = rec.save(&path);
            }
            let key = PodRecord::key(&rec.spec);
            let mut idx = self.pods_index();
            idx.keys.insert(key, rec.id.clone());
            idx.by_id.insert(
                rec.id.clone(),
                Arc::new(PodEntry {
                    id: rec.id.clone(),
                    dir: path,
                    record: Mutex::new(rec),
                    op: tokio::sync::Mutex::new(()),
                }),
            );
        }
        Ok(())
    }
}
