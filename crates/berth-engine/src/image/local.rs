//! The local image store's operations: list, inspect, history, tag, remove, load, import, save.

use std::io::Read;

use berth_api::types::{
    ContainerConfig, GraphDriverData, HistoryItem, ImageDeleteItem, ImageInspect, ImageMetadata,
    ImageSummary, RootFs,
};
use berth_image::Image;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::{EngineError, Result};
use crate::image::{retype, ChannelWriter};
use crate::Engine;

fn created_unix(img: &Image) -> i64 {
    img.created
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// Docker's `rmi` also deletes the image's parent chain: after an image is deleted, its parent
/// (the build step it was made from, recorded by the builder in `build-parents/`) goes too while it
/// is untagged, has no other child and no container, and so on up the chain; the first one kept
/// ends the walk quietly. `no_prune` (`rmi --no-prune`) keeps the parents. Every deleted image's
/// own parent link is forgotten, so a kept parent without children shows as dangling.
fn prune_build_parents(
    store: &berth_image::ImageStore,
    parents_dir: &std::path::Path,
    items: &mut Vec<berth_image::DeleteItem>,
    no_prune: bool,
    in_use: &dyn Fn(&str) -> Option<(String, bool)>,
) {
    // The image itself is the first `Deleted` record; layers (chain ids) follow it.
    let mut deleted = items.iter().find_map(|i| match i {
        berth_image::DeleteItem::Deleted(d) => Some(d.clone()),
        berth_image::DeleteItem::Untagged(_) => None,
    });
    while let Some(id) = deleted.take() {
        let link = parents_dir.join(id.strip_prefix("sha256:").unwrap_or(&id));
        let parent = std::fs::read_to_string(&link)
            .ok()
            .map(|p| p.trim().to_string());
        let _ = std::fs::remove_file(&link);
        let Some(parent) = parent.filter(|p| !p.is_empty() && !no_prune) else {
            break;
        };
        let Ok(img) = store.get(&parent) else { break };
        if !img.repo_tags.is_empty()
            || !img.repo_digests.is_empty()
            || in_use(&img.id).is_some()
            || berth_build::builder::parent_ids(parents_dir).contains(&img.id)
        {
            break;
        }
        match store.remove(&img.id, false, false, in_use) {
            Ok(more) => {
                items.extend(more);
                deleted = Some(img.id);
            }
            Err(_) => break,
        }
    }
}

impl Engine {
    pub async fn image_list(
        &self,
        all: bool,
        filters: &std::collections::HashMap<String, Vec<String>>,
    ) -> Result<Vec<ImageSummary>> {
        let images = self.blocking(|s| s.list()).await?;
        // Build steps' intermediate images: shown with -a only (Docker's rule).
        let parents = if all {
            Default::default()
        } else {
            self.intermediate_parents()
        };
        let counts = self.image_container_counts();
        let refs = filters.get("reference").cloned().unwrap_or_default();
        let dangling = filters
            .get("dangling")
            .and_then(|v| v.first())
            .map(|v| v == "true");
        let label_f = filters.get("label").cloned().unwrap_or_default();
        let mut out = Vec::new();
        for img in images {
            let labels = img
                .config
                .config
                .as_ref()
                .and_then(|c| c.labels.clone())
                .map(|l| l.into_iter().collect())
                .unwrap_or_default();
            if img.repo_tags.is_empty() && parents.contains(&img.id) {
                continue;
            }
            if let Some(d) = dangling {
                if d != img.repo_tags.is_empty() {
                    continue;
                }
            }
            if !refs.is_empty()
                && !img
                    .repo_tags
                    .iter()
                    .any(|t| refs.iter().any(|r| reference_matches(r, t)))
            {
                continue;
            }
            let lbls: &std::collections::BTreeMap<String, String> = &labels;
            if !label_f.iter().all(|l| match l.split_once('=') {
                Some((k, v)) => lbls.get(k).map(|x| x == v).unwrap_or(false),
                None => lbls.contains_key(l),
            }) {
                continue;
            }
            // Docker lists only the tags the reference filter matched.
            let repo_tags = if refs.is_empty() {
                img.repo_tags.clone()
            } else {
                img.repo_tags
                    .iter()
                    .filter(|t| refs.iter().any(|r| reference_matches(r, t)))
                    .cloned()
                    .collect()
            };
            out.push(ImageSummary {
                id: img.id.clone(),
                parent_id: String::new(),
                repo_tags,
                repo_digests: img.repo_digests.clone(),
                created: created_unix(&img),
                size: img.size as i64,
                shared_size: -1,
                virtual_size: Some(img.size as i64),
                labels,
                containers: counts.get(&img.id).copied().unwrap_or(0),
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    pub async fn image_inspect(&self, name: &str) -> Result<ImageInspect> {
        let n = name.to_string();
        let img = self.blocking(move |s| s.get(&n)).await?;
        let cfg = &img.config;
        let config: ContainerConfig = cfg.config.as_ref().map(retype).unwrap_or_default();
        Ok(ImageInspect {
            id: img.id.clone(),
            repo_tags: img.repo_tags.clone(),
            repo_digests: img.repo_digests.clone(),
            parent: self.image_parent(&img.id),
            comment: cfg.comment.clone().unwrap_or_default(),
            container: cfg
                .extra
                .get("container")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            container_config: cfg
                .extra
                .get("container_config")
                .and_then(|v| serde_json::from_value(v.clone()).ok()),
            created: img.created.clone().unwrap_or_default(),
            docker_version: cfg.docker_version.clone().unwrap_or_default(),
            author: cfg.author.clone().unwrap_or_default(),
            config,
            architecture: cfg.architecture.clone(),
            variant: cfg.variant.clone().unwrap_or_default(),
            os: cfg.os.clone(),
            size: img.size as i64,
            virtual_size: Some(img.size as i64),
            graph_driver: GraphDriverData {
                name: "overlay2".into(),
                data: None,
            },
            root_fs: RootFs {
                r#type: "layers".into(),
                layers: Some(cfg.rootfs.diff_ids.clone()),
            },
            metadata: ImageMetadata::default(),
            ..Default::default()
        })
    }

    pub async fn image_history(&self, name: &str) -> Result<Vec<HistoryItem>> {
        let n = name.to_string();
        let items = self.blocking(move |s| s.history(&n)).await?;
        Ok(items.iter().map(retype).collect())
    }

    pub async fn image_tag(&self, source: &str, repo: &str, tag: &str) -> Result<()> {
        if repo.is_empty() {
            return Err(EngineError::InvalidParameter(
                "repository name must have at least one component".into(),
            ));
        }
        let target = if tag.is_empty() {
            repo.to_string()
        } else {
            format!("{repo}:{tag}")
        };
        let src = source.to_string();
        let t2 = target.clone();
        self.blocking(move |s| s.tag(&src, &t2)).await?;
        let id = self
            .images()
            .get(source)
            .map(|i| i.id.clone())
            .unwrap_or_default();
        self.emit("image", "tag", &id, &[("name", target)]);
        Ok(())
    }

    pub async fn image_remove(
        &self,
        name: &str,
        force: bool,
        no_prune: bool,
    ) -> Result<Vec<ImageDeleteItem>> {
        let n = name.to_string();
        let engine = self.clone();
        let parents = self.config().data_root.join("build-parents");
        let items = self
            .blocking(move |s| {
                let in_use = |id: &str| engine.image_user(id);
                let mut items = s.remove(&n, force, no_prune, &in_use)?;
                prune_build_parents(s, &parents, &mut items, no_prune, &in_use);
                Ok(items)
            })
            .await?;
        let items: Vec<ImageDeleteItem> = items.iter().map(retype).collect();
        for it in &items {
            if let Some(u) = &it.untagged {
                self.emit("image", "untag", u, &[("name", u.clone())]);
            }
            if let Some(d) = &it.deleted {
                self.emit("image", "delete", d, &[("name", d.clone())]);
            }
        }
        Ok(items)
    }

    /// Loads a `docker save` archive; returns Docker's "Loaded image: x" lines.
    pub async fn image_load(&self, mut tar: Box<dyn Read + Send>) -> Result<Vec<String>> {
        let lines = self.blocking(move |s| s.load(&mut tar)).await?;
        for l in &lines {
            let name = l
                .strip_prefix("Loaded image: ")
                .or_else(|| l.strip_prefix("Loaded image ID: "))
                .unwrap_or(l);
            let id = self
                .images()
                .get(name)
                .map(|i| i.id.clone())
                .unwrap_or_else(|_| name.to_string());
            self.emit("image", "load", &id, &[("name", name.to_string())]);
        }
        Ok(lines)
    }

    pub async fn image_import(
        &self,
        mut tar: Box<dyn Read + Send>,
        reference: Option<String>,
        changes: Vec<String>,
        message: Option<String>,
    ) -> Result<String> {
        let id = self
            .blocking(move |s| {
                s.import(&mut tar, reference.as_deref(), &changes, message.as_deref())
            })
            .await?;
        self.emit("image", "import", &id, &[("name", id.clone())]);
        Ok(id)
    }

    /// Streams a `docker save` archive of `names`. Names are checked before the first byte.
    pub async fn image_save(&self, names: Vec<String>) -> Result<mpsc::Receiver<Bytes>> {
        let mut ids = Vec::new();
        for n in &names {
            let n2 = n.clone();
            let id = self.blocking(move |s| s.get(&n2).map(|i| i.id)).await?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let (tx, rx) = mpsc::channel(16);
        let store = self.images();
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter(tx);
            match store.save(&names, &mut w) {
                // Docker: one `save` event per image, named by its id.
                Ok(_) => {
                    for id in &ids {
                        engine.emit("image", "save", id, &[("name", id.clone())]);
                    }
                }
                Err(e) => tracing::warn!("image save failed: {e}"),
            }
        });
        Ok(rx)
    }
}

/// A reference in Docker's familiar form ("busybox:latest"), as pull/push events name it.
pub(crate) fn familiar(reference: &str) -> String {
    berth_image::Reference::parse(reference)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| reference.to_string())
}

/// Docker's `reference` filter: glob on the familiar name, with or without tag.
fn reference_matches(pattern: &str, tag: &str) -> bool {
    let repo = tag.rsplit_once(':').map(|(r, _)| r).unwrap_or(tag);
    glob_match(pattern, tag) || glob_match(pattern, repo)
}

fn glob_match(p: &str, s: &str) -> bool {
    let re = format!(
        "^{}$",
        regex::escape(p)
            .replace(r"\*", "[^/]*")
            .replace(r"\?", "[^/]")
    );
    regex::Regex::new(&re)
        .map(|r| r.is_match(s))
        .unwrap_or(false)
}
