//! The engine's side of the builder: `POST /build` (the legacy path: the context tar
//! unpacked, the builder run on a blocking thread, its messages streamed), the builder's
//! [`Backend`](berth_build::builder::Backend) (`backend.rs`), and the
//! [`BuildHost`](berth_build::host::BuildHost) BuildKit's front end drives (`host.rs`).
//! Both paths run the one builder.

mod backend;
mod host;

use crate::{Engine, EngineError};
use backend::{Cancel, EngineBackend};
use berth_build::builder::{BuildError, BuildOptions, Builder, Output};
use std::io::Read;
use std::path::PathBuf;
use tokio::sync::mpsc;

/// One message of the build's JSON stream.
pub enum BuildMessage {
    Stream(String),
    Aux(String),
    Failed(BuildError),
}

/// Where the builder keeps its state under the data root.
pub(crate) struct BuildDirs {
    pub cache: PathBuf,
    pub parents: PathBuf,
    pub tmp: PathBuf,
    pub cache_mounts: PathBuf,
    /// Step results of BuildKit builds: build cache, not images of their own.
    pub cache_images: PathBuf,
}

impl Engine {
    pub(crate) fn build_dirs(&self) -> BuildDirs {
        let root = &self.config().data_root;
        BuildDirs {
            cache: root.join("build-cache"),
            parents: root.join("build-parents"),
            tmp: root.join("tmp"),
            cache_mounts: root.join("build-cache-mounts"),
            cache_images: root.join("build-cache-images"),
        }
    }

    /// Runs the builder with the engine as its backend. `buildkit`: its step images are
    /// build cache (recorded in `build-cache-images/`) until an exporter makes one an image.
    pub(crate) fn with_builder<T>(
        &self,
        cancel: Cancel,
        buildkit: bool,
        f: impl FnOnce(&Builder<'_>) -> Result<T, BuildError>,
    ) -> Result<T, BuildError> {
        let dirs = self.build_dirs();
        let store = self.images();
        let backend = EngineBackend {
            engine: self.clone(),
            rt: tokio::runtime::Handle::current(),
            cancel,
        };
        let builder = Builder {
            store: &store,
            backend: &backend,
            cache_dir: dirs.cache,
            parents_dir: dirs.parents,
            tmp_dir: dirs.tmp,
            cache_mounts_dir: dirs.cache_mounts,
            cache_images_dir: buildkit.then_some(dirs.cache_images),
        };
        f(&builder)
    }

    /// Runs a build of the context tar `context`; messages come on the returned channel.
    pub fn build(
        &self,
        mut context: Box<dyn Read + Send>,
        opts: BuildOptions,
    ) -> mpsc::Receiver<BuildMessage> {
        let (tx, rx) = mpsc::channel(256);
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let tmp = engine.build_dirs().tmp;
            let dir = tmp.join(format!("build-{}", crate::util::new_id()));
            let result = (|| {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| BuildError::Failed(format!("creating context dir: {e}")))?;
                berth_build::context::extract(&mut context, &dir)
                    .map_err(BuildError::BadRequest)?;
                let out = |o: Output| {
                    let m = match o {
                        Output::Stream(s) => BuildMessage::Stream(s),
                        Output::Aux(id) => BuildMessage::Aux(id),
                    };
                    let _ = tx.blocking_send(m);
                };
                engine.with_builder(Cancel::Channel(tx.clone()), false, |b| {
                    b.build(&dir, &opts, &out)
                })
            })();
            let _ = std::fs::remove_dir_all(&dir);
            if let Err(e) = result {
                let _ = tx.blocking_send(BuildMessage::Failed(e));
            }
        });
        rx
    }

    /// `POST /build/prune`: the build cache (step results and `RUN --mount=type=cache`
    /// directories). Returns the records removed and the bytes reclaimed.
    pub async fn build_prune(&self) -> crate::Result<(Vec<String>, u64)> {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let gone = engine.prune_build_cache(&berth_build::host::PruneOptions {
                all: true,
                ..Default::default()
            });
            let bytes = gone.iter().map(|r| r.size).sum();
            Ok((gone.into_iter().map(|r| r.id).collect(), bytes))
        })
        .await
        .map_err(EngineError::internal)?
    }

    /// Images `images` hides without `-a` while untagged: those that are the parent of a
    /// build step's image (as Docker hides intermediate images), and BuildKit builds' step
    /// results no exporter made images of their own (build cache, as BuildKit keeps them).
    pub(crate) fn intermediate_parents(&self) -> std::collections::BTreeSet<String> {
        let dirs = self.build_dirs();
        let mut ids = berth_build::builder::parent_ids(&dirs.parents);
        ids.extend(berth_build::builder::cache_image_ids(&dirs.cache_images));
        ids
    }

    /// Records `parent` as the parent image of `child` (`docker commit`), in the file the
    /// builder keeps for its steps' images.
    pub(crate) fn record_parent(&self, child: &str, parent: &str) {
        let dir = self.build_dirs().parents;
        let name = child.strip_prefix("sha256:").unwrap_or(child);
        let _ = std::fs::create_dir_all(&dir);
        let _ = crate::util::write_atomic(&dir.join(name), parent.as_bytes());
    }

    /// The parent image id of `id` (`Parent` in image inspect), or "" when it has none.
    pub(crate) fn image_parent(&self, id: &str) -> String {
        let name = id.strip_prefix("sha256:").unwrap_or(id);
        std::fs::read_to_string(self.build_dirs().parents.join(name))
            .map(|p| p.trim().to_string())
            .unwrap_or_default()
    }
}
