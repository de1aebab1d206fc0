//! `/volumes` wire types and client calls (kept apart from `types.rs`/`endpoints.rs` so the
//! volume work merges cleanly).

use serde::{Deserialize, Serialize};

use crate::client::{Body, Client, Result};
use crate::types::{nullable, StringMap};

/// `GET /volumes/{name}` and every volume in a list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Volume {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub driver: String,
    #[serde(deserialize_with = "nullable")]
    pub mountpoint: String,
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub created_at: String,
    #[serde(deserialize_with = "nullable")]
    pub labels: StringMap,
    #[serde(deserialize_with = "nullable")]
    pub scope: String,
    #[serde(deserialize_with = "nullable")]
    pub options: StringMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_data: Option<VolumeUsageData>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct VolumeUsageData {
    pub size: i64,
    pub ref_count: i64,
}

/// `POST /volumes/create` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct VolumeCreateOptions {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub driver: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_opts: Option<StringMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<StringMap>,
}

/// `GET /volumes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct VolumeListResponse {
    #[serde(deserialize_with = "nullable")]
    pub volumes: Vec<Volume>,
    #[serde(deserialize_with = "nullable")]
    pub warnings: Vec<String>,
}

/// `POST /volumes/prune`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct VolumePruneResponse {
    #[serde(deserialize_with = "nullable")]
    pub volumes_deleted: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub space_reclaimed: u64,
}

fn seg(s: &str) -> String {
    crate::client::encode_query_component(s)
}

impl Client {
    pub async fn volume_create(&self, o: &VolumeCreateOptions) -> Result<Volume> {
        self.post_json("/volumes/create", &[], Body::json(o)?).await
    }

    pub async fn volume_list(&self, filters: &[(String, String)]) -> Result<VolumeListResponse> {
        let mut q = Vec::new();
        if !filters.is_empty() {
            q.push(("filters", crate::endpoints::filters_json(filters)));
        }
        self.get_json("/volumes", &q).await
    }

    pub async fn volume_inspect(&self, name: &str) -> Result<Volume> {
        self.get_json(&format!("/volumes/{}", seg(name)), &[]).await
    }

    pub async fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        let q = [("force", if force { "1" } else { "0" }.to_string())];
        self.delete(&format!("/volumes/{}", seg(name)), &q)
            .await?
            .bytes()
            .await
            .map(|_| ())
    }

    pub async fn volume_prune(&self, filters: &[(String, String)]) -> Result<VolumePruneResponse> {
        let mut q = Vec::new();
        if !filters.is_empty() {
            q.push(("filters", crate::endpoints::filters_json(filters)));
        }
        self.post_json("/volumes/prune", &q, Body::Empty).await
    }
}
