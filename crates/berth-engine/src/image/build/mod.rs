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
}

impl Engine {
    pub(crate) fn build_dirs(&self) -> BuildDirs {
        let root = &self.config().data_root;
        BuildDirs {
            cache: root.join("build-cache"),
            parents: root.join("build-parents"),
            tmp: root.join("tmp"),
            cache_mounts: root.join("build-cache-mounts"),
        }
    }

    /// Runs the builder with the engine as its backend.
    pub(crate) fn with_builder<T>(
        &self,
        cancel: Cancel,
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
                engine.with_builder(Cancel::Channel(tx.clone()), |b| b.build(&dir, &opts, &out))
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

    /// Untagged images that are the parent of a build step's image (hidden by `images`
    /// without `-a`, as Docker hides intermediate images).
    pub(crate) fn intermediate_parents(&self) -> std::collections::BTreeSet<String> {
        berth_build::builder::parent_ids(&self.build_dirs().parents)
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
