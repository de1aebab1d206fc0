//! `image prune`.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::error::Result;
use crate::filters::{check_keys, labels_match, until_filter};
use crate::Engine;

impl Engine {
    /// `POST /images/prune`: dangling images, or every unused one with `dangling=false`.
    pub async fn image_prune(&self, filters: &HashMap<String, Vec<String>>) -> Result<Value> {
        check_keys(filters, &["until", "label", "label!", "dangling"])?;
        let dangling_only = filters
            .get("dangling")
            .and_then(|v| v.first())
            .map(|v| !matches!(v.as_str(), "false" | "0"))
            .unwrap_or(true);
        let until = until_filter(filters)?;
        let images = self.image_list(false, &HashMap::new()).await?;
        let mut deleted: Vec<Value> = Vec::new();
        let mut space = 0u64;
        for img in images {
            let dangling =
                img.repo_tags.is_empty() || img.repo_tags.iter().all(|t| t == "<none>:<none>");
            if dangling_only && !dangling {
                continue;
            }
            if until.is_some_and(|u| img.created >= u) {
                continue;
            }
            let labels: HashMap<String, String> = img.labels.clone().into_iter().collect();
            if !labels_match(filters, &labels) {
                continue;
            }
            if self.image_user(&img.id).is_some() {
                continue;
            }
            if let Ok(items) = self.image_remove(&img.id, true, false).await {
                if items.iter().any(|i| i.deleted.is_some()) {
                    space += img.size.max(0) as u64;
                }
                for i in items {
                    deleted.push(serde_json::to_value(i).unwrap_or(Value::Null));
                }
            }
        }
        self.emit("image", "prune", "", &[("reclaimed", space.to_string())]);
        Ok(
            json!({"ImagesDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) }, "SpaceReclaimed": space}),
        )
    }
}
