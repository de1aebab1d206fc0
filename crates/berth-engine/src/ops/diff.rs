//! `diff` (`GET /containers/{id}/changes`).

use crate::error::{EngineError, Result};
use crate::Engine;

impl Engine {
    /// `GET /containers/{id}/changes`.
    pub async fn changes(&self, name: &str) -> Result<Vec<berth_image::diff::Change>> {
        let c = self.lookup(name)?;
        let images = self.images();
        let id = c.id.clone();
        tokio::task::spawn_blocking(move || images.snapshot_changes(&id))
            .await
            .map_err(EngineError::internal)?
            .map_err(crate::image::image_err)
    }
}
