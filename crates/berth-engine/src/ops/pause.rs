//! `pause` and `unpause` through the cgroup freezer.

use std::sync::Arc;

use crate::container::{Entry, Status};
use crate::error::{EngineError, Result};
use crate::ops::not_running;
use crate::Engine;

impl Engine {
    pub async fn pause(&self, name: &str) -> Result<()> {
        let c = self.lookup(name)?;
        let _g = c.op.lock().await;
        let st = c.snapshot().state.status;
        if st == Status::Paused {
            return Err(EngineError::Conflict(format!(
                "Container {} is already paused",
                c.id
            )));
        }
        if !st.is_running() {
            return Err(not_running(&c.id));
        }
        if crate::container::resources::rootless_without_cgroups() {
            return Err(EngineError::Internal(format!(
                "Cannot pause container {}: pausing needs the container's cgroup (its freezer), \
                 and a rootless daemon's containers have none on a host that does not delegate \
                 cgroup v2 to the user",
                c.id
            )));
        }
        let cg = self.running_cgroup(&c.id)?;
        tokio::task::spawn_blocking(move || {
            cg.freeze(true)?;
            if !cg.wait_frozen(true) {
                let _ = cg.freeze(false);
                return Err(std::io::Error::other("timed out freezing the container"));
            }
            Ok(())
        })
        .await
        .map_err(EngineError::internal)?
        .map_err(|e| EngineError::Internal(format!("Cannot pause container {}: {e}", c.id)))?;
        // Persisted before it is published: if the record cannot say paused, thaw again.
        if let Err(e) = c.update(|r| r.state.status = Status::Paused) {
            if let Some(cg) = self.cgroup(&c.id) {
                let _ = tokio::task::spawn_blocking(move || {
                    let _ = cg.freeze(false);
                    cg.wait_frozen(false);
                })
                .await;
            }
            return Err(e.into());
        }
        self.emit_container(&c.id, "pause", &[]);
        Ok(())
    }

    pub async fn unpause(&self, name: &str) -> Result<()> {
        let c = self.lookup(name)?;
        let _g = c.op.lock().await;
        if c.snapshot().state.status != Status::Paused {
            return Err(EngineError::Conflict(format!(
                "Container {} is not paused",
                c.id
            )));
        }
        self.thaw(&c).await?;
        self.emit_container(&c.id, "unpause", &[]);
        Ok(())
    }

    /// Thaws a paused container and records it running again.
    pub(crate) async fn thaw(&self, c: &Arc<Entry>) -> Result<()> {
        let cg = self.running_cgroup(&c.id)?;
        tokio::task::spawn_blocking(move || {
            cg.freeze(false)?;
            cg.wait_frozen(false);
            Ok::<(), std::io::Error>(())
        })
        .await
        .map_err(EngineError::internal)?
        .map_err(|e| EngineError::Internal(format!("Cannot unpause container {}: {e}", c.id)))?;
        if c.snapshot().state.status == Status::Paused {
            // A fact (the process runs again): stop and kill thaw first, also on a full disk.
            c.record(|r| r.state.status = Status::Running);
        }
        Ok(())
    }
}
