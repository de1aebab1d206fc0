//! `commit`: a container's changes as a new image.

use berth_api::types::ContainerConfig;

use crate::container::Status;
use crate::error::{EngineError, Result};
use crate::Engine;

/// Options of `POST /commit`.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    pub container: String,
    pub repo: String,
    pub tag: String,
    pub comment: String,
    pub author: String,
    pub pause: bool,
    pub changes: Vec<String>,
    pub config: Option<ContainerConfig>,
}

impl Engine {
    /// `POST /commit`: the container's changes become a new image layer.
    pub async fn commit(&self, req: CommitRequest) -> Result<String> {
        let c = self.lookup(&req.container)?;
        let reference = if req.repo.is_empty() {
            None
        } else if req.tag.is_empty() {
            Some(req.repo.clone())
        } else {
            Some(format!("{}:{}", req.repo, req.tag))
        };
        let rec = c.snapshot();
        let status = rec.state.status;
        // Best effort, as the container may be exiting right now (then nothing writes anyway).
        let pause = req.pause && status == Status::Running && self.pause(&c.id).await.is_ok();
        let opts = berth_image::diff::CommitOptions {
            reference: reference.clone(),
            changes: req.changes.clone(),
            comment: (!req.comment.is_empty()).then(|| req.comment.clone()),
            author: (!req.author.is_empty()).then(|| req.author.clone()),
            config: req.config.as_ref().and_then(|cfg| {
                serde_json::to_value(cfg)
                    .ok()
                    .and_then(|v| serde_json::from_value(v).ok())
            }),
            created_by: None,
            container: Some((
                c.id.clone(),
                serde_json::to_value(&rec.config).unwrap_or_default(),
            )),
        };
        let images = self.images();
        let id = c.id.clone();
        let res = tokio::task::spawn_blocking(move || images.commit_snapshot(&id, &opts))
            .await
            .map_err(EngineError::internal);
        if pause {
            let _ = self.unpause(&c.id).await;
        }
        let image_id = res?.map_err(crate::image::image_err)?;
        self.record_parent(&image_id, &rec.image_id);
        self.emit_container(&c.id, "commit", &[]);
        if let Some(r) = reference {
            self.emit("image", "tag", &image_id, &[("name", r)]);
        }
        Ok(image_id)
    }
}
