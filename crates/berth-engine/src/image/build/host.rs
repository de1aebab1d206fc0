//! The engine as BuildKit's front end sees it ([`BuildHost`]): builds with the one builder,
//! the image exporter's tagging, a result's file system for the local and tar exporters, and
//! the build cache for `buildx du` and `buildx prune`.

use super::backend::Cancel;
use crate::Engine;
use berth_build::builder::{
    cache_mounts_usage, prune_cache_mounts, BuildError, BuildInput, BuildOptions, Progress,
};
use berth_build::host::{BuildHost, CacheRecord, PruneOptions};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn mtime(p: &Path) -> i64 {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A step result in the cache index: its record, image id and index file.
struct StepRecord {
    record: CacheRecord,
    image: String,
    file: PathBuf,
}

impl Engine {
    /// The cache index's entries that still name an image.
    fn step_records(&self) -> Vec<StepRecord> {
        let dir = self.build_dirs().cache;
        let store = self.images();
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return out;
        };
        for e in rd.flatten() {
            let file = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !file.is_file() {
                continue;
            }
            let Ok(id) = std::fs::read_to_string(&file) else {
                continue;
            };
            let Ok(img) = store.get(id.trim()) else {
                continue;
            };
            let last = img.config.history.last();
            let layer = last.is_some_and(|h| !h.empty_layer);
            let size = if layer {
                store
                    .image_layers(&img.id)
                    .ok()
                    .and_then(|l| l.last().map(|l| l.size))
                    .unwrap_or(0)
            } else {
                0
            };
            let desc = last.and_then(|h| h.created_by.clone()).unwrap_or_default();
            let t = mtime(&file);
            out.push(StepRecord {
                record: CacheRecord {
                    id: name[..name.len().min(25)].to_string(),
                    kind: "regular".into(),
                    description: if layer {
                        format!("mount / from exec {desc}")
                    } else {
                        desc
                    },
                    size,
                    created: t,
                    last_used: t,
                    usage_count: 1,
                    in_use: false,
                    shared: !img.repo_tags.is_empty(),
                    mutable: false,
                },
                image: img.id,
                file,
            });
        }
        out
    }

    fn mount_records(&self) -> Vec<CacheRecord> {
        cache_mounts_usage(&self.build_dirs().cache_mounts)
            .into_iter()
            .map(|u| CacheRecord {
                id: u
                    .dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                kind: "exec.cachemount".into(),
                description: format!("cached mount {}", u.id.trim_start_matches('/')),
                size: u.size,
                created: u.created,
                last_used: u.last_used,
                usage_count: u.uses,
                in_use: u.in_use,
                shared: false,
                mutable: true,
            })
            .collect()
    }

    /// Removes what `opts` selects from the build cache: index entries, the step images only
    /// the cache kept (untagged, without children or containers), cache mounts not in use.
    pub(crate) fn prune_build_cache(&self, opts: &PruneOptions) -> Vec<CacheRecord> {
        let now = chrono::Utc::now().timestamp();
        let mut gone = Vec::new();
        let mut images = BTreeSet::new();
        for s in self.step_records() {
            if !opts.all && s.record.shared {
                continue;
            }
            if opts.selects(&s.record, now) && std::fs::remove_file(&s.file).is_ok() {
                images.insert(s.image);
                gone.push(s.record);
            }
        }
        let mounts = self.mount_records();
        let root = self.build_dirs().cache_mounts;
        let removed = prune_cache_mounts(&root, &|u| {
            let name = u
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            mounts
                .iter()
                .find(|r| r.id == name)
                .is_none_or(|r| !opts.selects(r, now))
        });
        for u in removed {
            let name = u
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(r) = mounts.iter().find(|r| r.id == name) {
                gone.push(r.clone());
            }
        }
        self.remove_step_images(images);
        gone
    }

    /// Deletes the BuildKit step results only the cache kept (no exporter made them images:
    /// untagged, without children or containers), children first: their parents may become
    /// removable in turn. Images of their own, legacy builds' included, are `rmi`'s business.
    fn remove_step_images(&self, mut images: BTreeSet<String>) {
        let rt = tokio::runtime::Handle::current();
        let store = self.images();
        let dirs = self.build_dirs();
        loop {
            let parents = berth_build::builder::parent_ids(&dirs.parents);
            let cache_only = berth_build::builder::cache_image_ids(&dirs.cache_images);
            let doomed: Vec<String> = images
                .iter()
                .filter(|id| {
                    cache_only.contains(*id)
                        && store.get(id).is_ok_and(|i| i.repo_tags.is_empty())
                        && !parents.contains(*id)
                        && self.image_user(id).is_none()
                })
                .cloned()
                .collect();
            if doomed.is_empty() {
                return;
            }
            for id in doomed {
                images.remove(&id);
                match rt.block_on(self.image_remove(&id, false, true)) {
                    Ok(_) => {
                        let hex = id.strip_prefix("sha256:").unwrap_or(&id);
                        let _ = std::fs::remove_file(dirs.cache_images.join(hex));
                        // Its parent, if only the cache kept it, may go now.
                        if let Ok(p) = std::fs::read_to_string(dirs.parents.join(hex)) {
                            images.insert(p.trim().to_string());
                        }
                    }
                    Err(e) => tracing::debug!("build cache prune: {id}: {e}"),
                }
            }
        }
    }
}

impl BuildHost for Engine {
    fn build(
        &self,
        input: &BuildInput<'_>,
        opts: &BuildOptions,
        progress: &dyn Progress,
        cancel: Arc<AtomicBool>,
    ) -> Result<String, BuildError> {
        self.with_builder(Cancel::Flag(cancel), true, |b| {
            b.build_dockerfile(input, opts, progress)
        })
    }

    fn tag(&self, image: &str, names: &[String]) -> Result<(), BuildError> {
        let store = self.images();
        let hex = image.strip_prefix("sha256:").unwrap_or(image);
        let _ = std::fs::remove_file(self.build_dirs().cache_images.join(hex));
        for n in names {
            let r = berth_image::Reference::parse(n)
                .map_err(|e| BuildError::BadRequest(format!("invalid tag {n:?}: {e}")))?;
            store
                .add_reference(&r, image)
                .map_err(|e| BuildError::Failed(format!("tagging {n}: {e}")))?;
            self.emit("image", "tag", image, &[("name", r.familiar())]);
        }
        Ok(())
    }

    fn with_rootfs(
        &self,
        image: &str,
        f: &mut dyn FnMut(&Path) -> Result<(), BuildError>,
    ) -> Result<(), BuildError> {
        let store = self.images();
        let sid = format!("export-{}", crate::util::new_id());
        let fail = |e: berth_image::ImageError| BuildError::Failed(format!("mounting image: {e}"));
        store.create_image_snapshot(&sid, image).map_err(fail)?;
        let r = match store.mount_snapshot(&sid) {
            Ok(p) => f(&p),
            Err(e) => Err(fail(e)),
        };
        let _ = store.unmount_snapshot(&sid);
        let _ = store.remove_snapshot(&sid);
        r
    }

    fn image_config(&self, image: &str) -> Result<Vec<u8>, BuildError> {
        self.images()
            .config_bytes(image)
            .map_err(|e| BuildError::Failed(format!("reading image config: {e}")))
    }

    fn state_dir(&self) -> PathBuf {
        self.config().data_root.join("buildkit")
    }

    fn cache_usage(&self) -> Vec<CacheRecord> {
        let mut v: Vec<CacheRecord> = self.step_records().into_iter().map(|s| s.record).collect();
        v.extend(self.mount_records());
        v
    }

    fn cache_prune(&self, opts: &PruneOptions) -> Vec<CacheRecord> {
        self.prune_build_cache(opts)
    }

    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }
}
