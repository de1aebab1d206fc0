//! `container prune`.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::container::Status;
use crate::error::Result;
use crate::filters::{check_keys, labels_match, until_filter};
use crate::Engine;

impl Engine {
    /// `POST /containers/prune`: removes stopped containers.
    pub async fn container_prune(&self, filters: &HashMap<String, Vec<String>>) -> Result<Value> {
        check_keys(filters, &["until", "label", "label!"])?;
        let until = until_filter(filters)?;
        let mut deleted = Vec::new();
        let mut space = 0u64;
        for e in self.all_entries() {
            let rec = e.snapshot();
            if rec.build_step
                || rec.pod.is_some()
                || rec.state.status.is_running()
                || rec.state.status == Status::Removing
            {
                continue;
            }
            let created = chrono::DateTime::parse_from_rfc3339(&rec.created)
                .map(|t| t.timestamp())
                .unwrap_or(0);
            if until.is_some_and(|u| created >= u) {
                continue;
            }
            let labels: HashMap<String, String> = rec
                .config
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            if !labels_match(filters, &labels) {
                continue;
            }
            let size = self.images().snapshot_size(&rec.id).unwrap_or(0);
            if self.remove(&rec.id, false, false).await.is_ok() {
                deleted.push(rec.id.clone());
                space += size;
            }
        }
        self.emit(
            "container",
            "prune",
            "",
            &[("reclaimed", space.to_string())],
        );
        Ok(
            json!({"ContainersDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) }, "SpaceReclaimed": space}),
        )
    }
}
