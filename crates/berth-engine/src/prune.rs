//! `container prune`, `image prune` and `system df`.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::container::Status;
use crate::error::{EngineError, Result};
use crate::query::ListOptions;

/// `until` (a unix time, RFC 3339 time or Go duration before now) as unix seconds.
pub(crate) fn until_filter(filters: &HashMap<String, Vec<String>>) -> Result<Option<i64>> {
    let Some(v) = filters.get("until").and_then(|v| v.first()) else {
        return Ok(None);
    };
    if let Ok(n) = v.split('.').next().unwrap_or("").parse::<i64>() {
        return Ok(Some(n));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(Some(t.timestamp()));
    }
    let mut secs = 0f64;
    let mut num = String::new();
    for ch in v.chars() {
        if ch.is_ascii_digit() || ch == '.' {
            num.push(ch);
            continue;
        }
        let n: f64 = num.parse().map_err(|_| bad_until(v))?;
        num.clear();
        secs += n * match ch {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => return Err(bad_until(v)),
        };
    }
    if !num.is_empty() {
        return Err(bad_until(v));
    }
    Ok(Some(chrono::Utc::now().timestamp() - secs as i64))
}

fn bad_until(v: &str) -> EngineError {
    EngineError::InvalidParameter(format!("invalid filter 'until={v}'"))
}

/// `label=k`, `label=k=v`, `label!=...` against a label map.
pub(crate) fn labels_match(
    filters: &HashMap<String, Vec<String>>,
    labels: &HashMap<String, String>,
) -> bool {
    let has = |l: &str| match l.split_once('=') {
        Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
        None => labels.contains_key(l),
    };
    filters
        .get("label")
        .is_none_or(|ls| ls.iter().all(|l| has(l)))
        && filters
            .get("label!")
            .is_none_or(|ls| ls.iter().all(|l| !has(l)))
}

pub(crate) fn check_keys(filters: &HashMap<String, Vec<String>>, allowed: &[&str]) -> Result<()> {
    for k in filters.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(EngineError::InvalidParameter(format!(
                "invalid filter '{k}'"
            )));
        }
    }
    Ok(())
}

impl crate::Engine {
    /// `POST /containers/prune`: removes stopped containers.
    pub async fn container_prune(&self, filters: &HashMap<String, Vec<String>>) -> Result<Value> {
        check_keys(filters, &["until", "label", "label!"])?;
        let until = until_filter(filters)?;
        let mut deleted = Vec::new();
        let mut space = 0u64;
        for e in self.all_entries() {
            let rec = e.snapshot();
            if rec.build_step
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
                    (crate::volumes::dir_size(&p) as i64, refs)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_and_labels() {
        let f = |k: &str, v: &str| HashMap::from([(k.to_string(), vec![v.to_string()])]);
        assert_eq!(until_filter(&f("until", "100")).expect("u"), Some(100));
        assert_eq!(
            until_filter(&f("until", "2020-01-01T00:00:00Z")).expect("u"),
            Some(1577836800)
        );
        let now = chrono::Utc::now().timestamp();
        let h = until_filter(&f("until", "1h")).expect("u").expect("some");
        assert!((now - 3600 - h).abs() <= 1);
        assert!(until_filter(&f("until", "soon")).is_err());
        let labels = HashMap::from([("a".to_string(), "1".to_string())]);
        assert!(labels_match(&f("label", "a"), &labels));
        assert!(labels_match(&f("label", "a=1"), &labels));
        assert!(!labels_match(&f("label", "a=2"), &labels));
        assert!(!labels_match(&f("label!", "a"), &labels));
    }
}
