//! The step cache: keys, hits, and recording a step's image (its config, history entry,
//! parent link and cache entry).

use super::stage::{StageRun, StageState};
use super::util::{failed, sha_hex, short};
use super::{BuildError, VertexState};
use berth_image::config::History;

/// The cache key of a step: sha256(parent image id, the step's cache string).
pub(super) fn cache_key(parent: &Option<String>, s: &str) -> String {
    sha_hex(format!("{}\n{}", parent.as_deref().unwrap_or(""), s).as_bytes())
}

impl StageRun<'_, '_, '_> {
    pub fn cache_key(&self, s: &str) -> String {
        cache_key(&self.st.image_id, s)
    }

    fn cache_get(&self, key: &str) -> Option<String> {
        if self.no_cache {
            return None;
        }
        let b = self.run.b;
        let id = std::fs::read_to_string(b.cache_dir.join(key)).ok()?;
        let id = b.store.resolve_id(id.trim()).ok()?;
        match &self.run.cache_sources {
            Some(sources) if !sources.contains(&id) => None,
            _ => Some(id),
        }
    }

    fn cache_put(&self, key: &str, id: &str) {
        let dir = &self.run.b.cache_dir;
        let _ = std::fs::create_dir_all(dir);
        let tmp = dir.join(format!(".{key}.{}.tmp", super::util::unique_suffix()));
        if std::fs::write(&tmp, id).is_ok() && std::fs::rename(&tmp, dir.join(key)).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// A hit: the step's result is taken from the cache.
    pub fn try_cache(&mut self, key: &str) -> Result<bool, BuildError> {
        let Some(id) = self.cache_get(key) else {
            return Ok(false);
        };
        let img = self
            .run
            .b
            .store
            .get(&id)
            .map_err(|e| failed("reading cached image", e))?;
        self.st.config = img.config;
        self.st.image_id = Some(id.clone());
        self.say(" ---> Using cache\n");
        self.say(&format!(" ---> {}\n", short(&id)));
        self.finish_vertex(VertexState::Cached);
        Ok(true)
    }

    pub fn now(&self) -> String {
        match self.run.epoch {
            Some(e) => chrono::DateTime::from_timestamp(e, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            None => chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        }
    }

    pub fn store_config(&self) -> Result<String, BuildError> {
        let bytes = serde_json::to_vec(&self.st.config).map_err(|e| failed("image config", e))?;
        self.run
            .b
            .store
            .create_image(&bytes, &[])
            .map_err(|e| failed("storing image", e))
    }

    /// Records the new config (and layer, if any) as the step's image.
    pub fn finish_step(
        &mut self,
        key: &str,
        created_by: String,
        layer: Option<String>,
    ) -> Result<(), BuildError> {
        let created = self.now();
        let cfg = &mut self.st.config;
        cfg.created = Some(created.clone());
        if let Some(d) = &layer {
            cfg.rootfs.diff_ids.push(d.clone());
        }
        cfg.history.push(History {
            created: Some(created),
            created_by: Some(created_by),
            empty_layer: layer.is_none(),
            ..Default::default()
        });
        cfg.docker_version = Some(concat!("berth-", env!("CARGO_PKG_VERSION")).into());
        let id = self.store_config()?;
        self.cache_put(key, &id);
        if let Some(parent) = &self.st.image_id {
            let dir = &self.run.b.parents_dir;
            let _ = std::fs::create_dir_all(dir);
            let name = id.strip_prefix("sha256:").unwrap_or(&id);
            let tmp = dir.join(format!(".{name}.{}.tmp", super::util::unique_suffix()));
            if std::fs::write(&tmp, parent).is_ok()
                && std::fs::rename(&tmp, dir.join(name)).is_err()
            {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        if let Some(dir) = &self.run.b.cache_images_dir {
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::write(dir.join(id.strip_prefix("sha256:").unwrap_or(&id)), "");
        }
        self.st.image_id = Some(id.clone());
        self.say(&format!(" ---> {}\n", short(&id)));
        self.finish_vertex(VertexState::Done);
        Ok(())
    }

    /// A step that only changes the config.
    pub fn meta_step(
        &mut self,
        created_by: String,
        apply: impl FnOnce(&mut StageState),
    ) -> Result<(), BuildError> {
        let key = self.cache_key(&created_by);
        if self.try_cache(&key)? {
            return Ok(());
        }
        apply(&mut self.st);
        self.finish_step(&key, created_by, None)
    }
}
