//! The `/volumes` operations: create, inspect, list, remove, prune.

use std::collections::{BTreeMap, HashMap, HashSet};

use berth_api::volume::Volume;

use crate::error::{EngineError, Result};
use crate::volume::store::no_such_volume;
use crate::volume::{VolumeStore, ANONYMOUS_LABEL};
use crate::Engine;

/// `filters` for volume list and prune.
fn label_filter(labels: &BTreeMap<String, String>, f: &str) -> bool {
    match f.split_once('=') {
        Some((k, v)) => labels.get(k).map(|x| x == v).unwrap_or(false),
        None => labels.contains_key(f),
    }
}

fn bool_filter(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

impl Engine {
    pub(crate) fn volumes(&self) -> &VolumeStore {
        &self.inner.volumes
    }

    /// Ids of the containers whose mounts name volume `name`.
    pub(crate) fn volume_users(&self, name: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .all_entries()
            .iter()
            .filter(|e| {
                e.snapshot().mount_points.iter().any(|m| {
                    m.kind == crate::container::mounts::MountKind::Volume && m.name == name
                })
            })
            .map(|e| e.id.clone())
            .collect();
        for (c, n) in self.volumes().reservations() {
            if n == name && !ids.contains(&c) {
                ids.push(c);
            }
        }
        ids.sort();
        ids
    }

    pub async fn volume_create(
        &self,
        opts: berth_api::volume::VolumeCreateOptions,
    ) -> Result<Volume> {
        let _g = self.inner.volume_lock.lock().await;
        let mut labels = opts.labels.unwrap_or_default();
        // Docker: a volume created without a name is anonymous (pruned without `all`).
        if opts.name.is_empty() {
            labels.insert(ANONYMOUS_LABEL.into(), String::new());
        }
        let m = self.volumes().create(
            Some(opts.name.as_str()),
            &opts.driver,
            labels,
            opts.driver_opts.unwrap_or_default(),
        )?;
        let v = self.volumes().to_api(&m);
        self.emit("volume", "create", &v.name, &[("driver", v.driver.clone())]);
        Ok(v)
    }

    pub async fn volume_inspect(&self, name: &str) -> Result<Volume> {
        let m = self
            .volumes()
            .get(name)
            .ok_or_else(|| no_such_volume(name))?;
        Ok(self.volumes().to_api(&m))
    }

    pub async fn volume_list(&self, filters: &HashMap<String, Vec<String>>) -> Result<Vec<Volume>> {
        for (k, vals) in filters {
            match k.as_str() {
                "name" | "driver" | "label" => {}
                "dangling" => {
                    for v in vals {
                        if bool_filter(v).is_none() {
                            return Err(EngineError::InvalidParameter(format!(
                                "invalid filter 'dangling={v}'"
                            )));
                        }
                    }
                }
                other => {
                    return Err(EngineError::InvalidParameter(format!(
                        "invalid filter '{other}'"
                    )))
                }
            }
        }
        let used = self.used_volumes();
        let mut out = Vec::new();
        for m in self.volumes().all() {
            if let Some(names) = filters.get("name") {
                if !names.iter().any(|n| m.name.contains(n.as_str())) {
                    continue;
                }
            }
            if let Some(ds) = filters.get("driver") {
                if !ds.iter().any(|d| &m.driver == d) {
                    continue;
                }
            }
            if let Some(ls) = filters.get("label") {
                if !ls.iter().all(|l| label_filter(&m.labels, l)) {
                    continue;
                }
            }
            if let Some(ds) = filters.get("dangling") {
                let dangling = !used.contains(&m.name);
                if !ds.iter().any(|d| bool_filter(d) == Some(dangling)) {
                    continue;
                }
            }
            out.push(self.volumes().to_api(&m));
        }
        Ok(out)
    }

    fn used_volumes(&self) -> HashSet<String> {
        let mut used = HashSet::new();
        for e in self.all_entries() {
            for m in e.snapshot().mount_points {
                if m.kind == crate::container::mounts::MountKind::Volume {
                    used.insert(m.name);
                }
            }
        }
        used.extend(self.volumes().reservations().into_iter().map(|(_, n)| n));
        used
    }

    pub async fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        let _g = self.inner.volume_lock.lock().await;
        if self.volumes().get(name).is_none() {
            if force {
                return Ok(());
            }
            return Err(no_such_volume(name));
        }
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        let vols = self.clone();
        let n = name.to_string();
        tokio::task::spawn_blocking(move || vols.volumes().delete(&n))
            .await
            .map_err(EngineError::internal)??;
        self.emit("volume", "destroy", name, &[("driver", "local".into())]);
        Ok(())
    }

    /// Removes unused volumes: anonymous ones only, unless the `all` filter is true.
    pub async fn volume_prune(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<(Vec<String>, u64)> {
        let mut all = false;
        for (k, vals) in filters {
            match k.as_str() {
                "label" | "label!" => {}
                "all" => {
                    for v in vals {
                        all = bool_filter(v).ok_or_else(|| {
                            EngineError::InvalidParameter(format!("invalid filter 'all={v}'"))
                        })?;
                    }
                }
                other => {
                    return Err(EngineError::InvalidParameter(format!(
                        "invalid filter '{other}'"
                    )))
                }
            }
        }
        let _g = self.inner.volume_lock.lock().await;
        let used = self.used_volumes();
        let mut victims = Vec::new();
        for m in self.volumes().all() {
            if used.contains(&m.name) || (!all && !m.is_anonymous()) {
                continue;
            }
            if let Some(ls) = filters.get("label") {
                if !ls.iter().all(|l| label_filter(&m.labels, l)) {
                    continue;
                }
            }
            if let Some(ls) = filters.get("label!") {
                if ls.iter().any(|l| label_filter(&m.labels, l)) {
                    continue;
                }
            }
            victims.push(m.name);
        }
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut deleted = Vec::new();
            let mut space = 0;
            for n in victims {
                match engine.volumes().delete(&n) {
                    Ok(s) => {
                        space += s;
                        deleted.push(n);
                    }
                    Err(e) => tracing::warn!("prune: {e}"),
                }
            }
            (deleted, space)
        })
        .await
        .map_err(EngineError::internal)
    }

    /// `rm -v` / `--rm`: removes the anonymous volumes of a removed container that nobody else
    /// uses. Named volumes always outlive their containers.
    pub(crate) async fn remove_anonymous_volumes(
        &self,
        mounts: &[crate::container::mounts::MountPoint],
    ) {
        let _g = self.inner.volume_lock.lock().await;
        for m in mounts {
            if m.kind != crate::container::mounts::MountKind::Volume || m.named {
                continue;
            }
            if !self.volume_users(&m.name).is_empty() {
                continue;
            }
            let engine = self.clone();
            let n = m.name.clone();
            let r = tokio::task::spawn_blocking(move || engine.volumes().delete(&n)).await;
            if let Ok(Err(e)) = r {
                tracing::warn!("removing anonymous volume {}: {e}", m.name);
            }
        }
    }
}
