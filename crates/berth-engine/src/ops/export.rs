//! `export`: a container's filesystem as a tar stream.

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::container::Status;
use crate::error::{EngineError, Result};
use crate::Engine;

impl Engine {
    /// `GET /containers/{id}/export`: the container's filesystem as a tar stream.
    pub async fn export(&self, name: &str) -> Result<mpsc::Receiver<Bytes>> {
        let c = self.lookup(name)?;
        let images = self.images();
        let id = c.id.clone();
        let was_mounted_for_us =
            !c.snapshot().state.status.is_running() && c.snapshot().state.status != Status::Paused;
        let i2 = images.clone();
        let root = tokio::task::spawn_blocking(move || i2.mount_snapshot(&id))
            .await
            .map_err(EngineError::internal)?
            .map_err(crate::image::image_err)?;
        let (tx, rx) = mpsc::channel(8);
        let id = c.id.clone();
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = crate::container::archive::export_root(&root, tx) {
                tracing::debug!("export of {id}: {e}");
            }
            if was_mounted_for_us {
                let still_stopped = engine
                    .lookup(&id)
                    .map(|c| !c.snapshot().state.status.is_running())
                    .unwrap_or(true);
                if still_stopped {
                    let _ = images.unmount_snapshot(&id);
                }
            }
        });
        self.emit_container(&c.id, "export", &[]);
        Ok(rx)
    }
}
