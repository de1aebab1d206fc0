//! What BuildKit's front end (the `berth-buildkit` crate, serving `/grpc` and `/session`)
//! needs from the engine: run a build with the one builder, tag and read its result, and
//! report and prune the build cache. The engine implements it, so the front end depends on
//! this crate and not on the engine.

use crate::builder::{BuildError, BuildInput, BuildOptions, Progress};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A build-cache record as `docker buildx du` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheRecord {
    pub id: String,
    /// BuildKit's record type: `regular` (a step's result), `exec.cachemount`
    /// (`RUN --mount=type=cache`), `source.local` (a received context).
    pub kind: String,
    pub description: String,
    pub size: u64,
    /// Unix seconds.
    pub created: i64,
    pub last_used: i64,
    pub usage_count: i64,
    pub in_use: bool,
    pub shared: bool,
    pub mutable: bool,
}

/// `docker buildx prune` / `docker builder prune` options.
#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    /// `--all`: also records an image or tag still uses.
    pub all: bool,
    /// `--filter until=…` / keep-duration: keep what was used within this many seconds.
    pub keep_duration: Option<i64>,
    /// `--filter type=…`: only records of these types.
    pub types: Vec<String>,
    /// `--filter id=…`: only these records.
    pub ids: Vec<String>,
}

impl PruneOptions {
    /// Whether a record is to be pruned (before in-use checks).
    pub fn selects(&self, r: &CacheRecord, now: i64) -> bool {
        if !self.types.is_empty() && !self.types.iter().any(|t| t == &r.kind) {
            return false;
        }
        if !self.ids.is_empty() && !self.ids.iter().any(|i| r.id.starts_with(i.as_str())) {
            return false;
        }
        if let Some(d) = self.keep_duration {
            if now - r.last_used < d {
                return false;
            }
        }
        true
    }
}

pub trait BuildHost: Send + Sync + 'static {
    /// Runs a build on the calling thread (a blocking one). The build stops when `cancel`
    /// is set: the step running is killed, its container removed.
    fn build(
        &self,
        input: &BuildInput<'_>,
        opts: &BuildOptions,
        progress: &dyn Progress,
        cancel: Arc<AtomicBool>,
    ) -> Result<String, BuildError>;
    /// Makes `image` an image of its own (not only build cache) and tags it with each name
    /// (`docker.io/library/x:latest` forms): the image exporter.
    fn tag(&self, image: &str, names: &[String]) -> Result<(), BuildError>;
    /// Runs `f` with the image's root filesystem mounted read-only.
    fn with_rootfs(
        &self,
        image: &str,
        f: &mut dyn FnMut(&Path) -> Result<(), BuildError>,
    ) -> Result<(), BuildError>;
    /// The image's config, as stored (its digest is the image id).
    fn image_config(&self, image: &str) -> Result<Vec<u8>, BuildError>;
    /// A directory for what sessions send (contexts, kept between builds).
    fn state_dir(&self) -> PathBuf;
    /// The build cache's records (step results, cache mounts).
    fn cache_usage(&self) -> Vec<CacheRecord>;
    /// Prunes the build cache; returns the records removed.
    fn cache_prune(&self, opts: &PruneOptions) -> Vec<CacheRecord>;
    /// The engine's version (BuildKit's Info answers with it).
    fn version(&self) -> String;
}
