//! `system df`.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::container::list::ListOptions;
use crate::error::{EngineError, Result};
use crate::Engine;

impl Engine {
    /// `GET /system/df`.
    pub async fn system_df(&self) -> Result<Value> {
        let images = self.image_list(false, &HashMap::new()).await?;
        let layers: i64 = images.iter().map(|i| i.size).sum();
        let containers = self
            .list(&ListOptions {
                all: true,
                limit: None,
                size: true,
                filters: HashMap::new(),
            })
            .await?;
        let mut volumes = self.volume_list(&HashMap::new()).await?;
        let engine = self.clone();
        let names: Vec<(String, std::path::PathBuf)> = volumes
            .iter()
            .map(|v| (v.name.clone(), std::path::PathBuf::from(&v.mountpoint)))
            .collect();
        let sizes = tokio::task::spawn_blocking(move || {
            names
                .into_iter()
                .map(|(n, p)| {
                    let refs = engine.volume_users(&n).len() as i64;
                    (crate::volume::dir_size(&p) as i64, refs)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(EngineError::internal)?;
        for (v, (size, refs)) in volumes.iter_mut().zip(sizes) {
            v.usage_data = Some(berth_api::volume::VolumeUsageData {
                size,
                ref_count: refs,
            });
        }
        Ok(json!({
            "LayersSize": layers,
            "Images": images,
            "Containers": containers,
            "Volumes": volumes,
            "BuildCache": [],
            "BuilderSize": 0,
        }))
    }
}
