//! The builder: runs a Dockerfile's stages against an [`ImageStore`] and a [`Backend`] (the
//! engine, which runs RUN steps in containers and pulls base images), reporting to a
//! [`Progress`] (the legacy JSON stream or BuildKit's status stream), with a build cache.
//!
//! Every step yields an image (untagged unless it is the result), as Docker's legacy builder
//! does. The cache is an index under `cache_dir`: one file per key, the key being
//! sha256(parent image id, the step's cache string), the content the resulting image id. The
//! cache string is the instruction after substitution; for COPY/ADD it includes a digest of
//! the copied files' paths, content and metadata; for RUN the build args in effect.
//!
//! Layout: `plan` (the whole build: global ARGs, which stages, in which order or at once),
//! `stage` (one stage: its base, ONBUILD triggers, its instructions), `meta` (instructions
//! that only change the config), `exec` and `mounts` (RUN and its `--mount`s), `copy`
//! (COPY/ADD), `cache` (keys, hits, recording a step's image), `layer` (layer tars),
//! `imagefs` (reading an image's files), `progress` (what a build reports).

mod cache;
mod copy;
mod exec;
mod imagefs;
mod layer;
mod meta;
mod mounts;
mod plan;
mod progress;
mod stage;
mod util;

#[cfg(test)]
mod tests;

pub use mounts::{cache_mounts_usage, prune_cache_mounts, CacheMountUsage};
pub use progress::{LegacyProgress, Progress, Vertex, VertexState};

use berth_image::ImageStore;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Bad input (Dockerfile syntax, arguments): HTTP 400.
    #[error("{0}")]
    BadRequest(String),
    /// A base image that does not exist: HTTP 404.
    #[error("{0}")]
    NotFound(String),
    #[error("The command '{cmd}' returned a non-zero code: {code}")]
    RunFailed { cmd: String, code: i64 },
    /// The client went away or cancelled the build.
    #[error("build cancelled: the client went away")]
    Cancelled,
    #[error("{0}")]
    Failed(String),
}

impl BuildError {
    pub fn status(&self) -> u16 {
        match self {
            BuildError::BadRequest(_) => 400,
            BuildError::NotFound(_) => 404,
            _ => 500,
        }
    }
    /// The error as BuildKit words it (its clients print it after "failed to solve: ").
    pub fn buildkit_message(&self) -> String {
        match self {
            BuildError::RunFailed { cmd, code } => {
                format!("process \"{cmd}\" did not complete successfully: exit code: {code}")
            }
            BuildError::Cancelled => "context canceled".into(),
            e => e.to_string(),
        }
    }
    /// The `errorDetail.code` of the JSON stream.
    pub fn code(&self) -> Option<i64> {
        match self {
            BuildError::RunFailed { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// What a RUN step's container needs.
#[derive(Clone, Debug, Default)]
pub struct RunSpec {
    pub image_id: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub workdir: String,
    pub network: Option<String>,
    /// `--add-host` entries ("host:ip") for the step's /etc/hosts.
    pub extra_hosts: Vec<String>,
    /// `RUN --mount`s, ready to mount.
    pub mounts: Vec<RunMount>,
    /// `RUN --security=insecure` (granted): the step runs privileged.
    pub insecure: bool,
    /// `--shm-size` in bytes.
    pub shm_size: Option<i64>,
    /// `--ulimit` values (`nofile=1024:2048`).
    pub ulimits: Vec<String>,
    pub cgroup_parent: Option<String>,
    pub limits: StepLimits,
}

/// The legacy `POST /build`'s resource options (`memory`, `memswap`, `cpushares`, …), for every
/// RUN step's container as dockerd's classic builder applies them. Zero/empty: unset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepLimits {
    pub memory: i64,
    /// Memory plus swap; -1 is unlimited swap.
    pub memory_swap: i64,
    pub cpu_shares: i64,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
}

/// One mount of a RUN step's container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunMount {
    /// Absolute path in the container.
    pub target: String,
    pub kind: RunMountKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunMountKind {
    /// A host file or directory.
    Bind { source: PathBuf, readonly: bool },
    /// A fresh tmpfs (`size` in bytes).
    Tmpfs { size: Option<i64> },
}

pub enum RunEvent<'a> {
    Created(&'a str),
    Output(&'a [u8]),
    /// What the step wrote to its stderr.
    Stderr(&'a [u8]),
}

/// Registry credentials (from the client's login, over a BuildKit session).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub secret: String,
}

/// The services the builder needs from the engine.
pub trait Backend: Send + Sync {
    /// Makes `reference` present in the store (a pull), reporting progress lines.
    fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
        auth: Option<&Credentials>,
        out: &mut dyn FnMut(&str),
    ) -> Result<(), BuildError>;
    /// Runs a container to its exit; the container (and its snapshot) stays until `remove`.
    /// Returns the container id and the exit code. A cancelled build stops it early.
    fn run(
        &self,
        spec: &RunSpec,
        events: &mut dyn FnMut(RunEvent<'_>),
    ) -> Result<(String, i64), BuildError>;
    fn remove(&self, container_id: &str);
    /// Leaves a failed step's container to the user: an ordinary container from now on.
    fn keep(&self, container_id: &str) {
        self.remove(container_id)
    }
    /// Downloads `url` (ADD of a URL) into the file `dest`. Returns the server's
    /// Last-Modified time (unix seconds) when it sent one.
    fn fetch(&self, url: &str, dest: &Path) -> Result<Option<i64>, BuildError>;
    /// Whether the client went away (the build then stops before its next step).
    fn cancelled(&self) -> bool {
        false
    }
}

/// What the client lends a build (BuildKit's session attachables): secrets, ssh agents,
/// registry logins. The legacy path has none.
pub trait Session: Send + Sync {
    /// The secret `id` (`--secret id=…`), `None` when the client has no such secret.
    fn secret(&self, id: &str) -> Result<Option<Vec<u8>>, BuildError>;
    /// Serves the client's ssh agent `id` (`--ssh id`) on a new unix socket at `path` until
    /// the returned guard is dropped; `None` when the client has no such agent.
    fn ssh_agent(
        &self,
        id: &str,
        path: &Path,
    ) -> Result<Option<Box<dyn std::any::Any + Send>>, BuildError>;
    /// The client's login for registry `host` (`registry-1.docker.io` for Docker Hub).
    fn credentials(&self, host: &str) -> Option<Credentials>;
}

/// A named build context (`--build-context name=…`): what `FROM name`, `COPY --from=name`
/// and `--mount=from=name` mean in this build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamedContext {
    /// A directory (a local context the client sent).
    Dir(PathBuf),
    /// Another image reference (`docker-image://alpine:3`).
    Image(String),
}

#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, Option<String>>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// BuildKit's `--no-cache-filter`: stages (by name) run without the cache.
    pub no_cache_stages: Vec<String>,
    /// `--cache-from`: when given, only these images (and their ancestors) are cache sources,
    /// as in Docker's classic builder; names that resolve to nothing are skipped.
    pub cache_from: Vec<String>,
    pub pull: bool,
    pub labels: BTreeMap<String, String>,
    pub network: Option<String>,
    /// `--add-host` ("host:ip"), for RUN steps.
    pub extra_hosts: Vec<String>,
    pub platform: Option<String>,
    pub quiet: bool,
    /// `--squash`: the target's own layers become one (over its FROM image).
    pub squash: bool,
    /// Independent stages run at once (BuildKit's semantics); the legacy path runs them in
    /// order, as its numbered `Step N/M` output needs.
    pub parallel: bool,
    /// `RUN --network=host` is allowed (the legacy builder allows it; BuildKit needs the
    /// `network.host` entitlement).
    pub allow_network_host: bool,
    /// `RUN --security=insecure` is allowed (the `security.insecure` entitlement).
    pub allow_insecure: bool,
    pub shm_size: Option<i64>,
    pub ulimits: Vec<String>,
    pub cgroup_parent: Option<String>,
    pub limits: StepLimits,
    /// The legacy builder without `forcerm`: a failed RUN step's container stays (visible to
    /// `ps -a`, for a look at what went wrong); otherwise it is removed like the others.
    pub keep_failed: bool,
    pub named_contexts: BTreeMap<String, NamedContext>,
}

pub enum Output {
    Stream(String),
    Aux(String),
}

pub struct Builder<'a> {
    pub store: &'a ImageStore,
    pub backend: &'a dyn Backend,
    /// The cache index: one file per step key, holding the resulting image id.
    pub cache_dir: PathBuf,
    /// Parent links of the images steps produce: one file per child (hex id), holding the
    /// parent's id. Untagged images with children are "intermediate" (see [`parent_ids`]).
    pub parents_dir: PathBuf,
    pub tmp_dir: PathBuf,
    /// `RUN --mount=type=cache` directories, kept across builds.
    pub cache_mounts_dir: PathBuf,
    /// When set (BuildKit's path), every image a step makes is recorded here (one file per
    /// image, named by its hex id): it is build cache, which `images` shows only with `-a`
    /// until an exporter makes it an image of its own.
    pub cache_images_dir: Option<PathBuf>,
}

/// A Dockerfile to build, and what it builds from.
pub struct BuildInput<'a> {
    /// The Dockerfile's text.
    pub dockerfile: &'a str,
    /// Its name, for messages (`Dockerfile`, `app.Dockerfile`).
    pub dockerfile_name: &'a str,
    /// The build context (an extracted or received directory).
    pub context: &'a Path,
    pub session: Option<&'a dyn Session>,
}

/// The ids of images that are the parent of a build step's image (`docker images` hides
/// them unless `-a` while they are untagged, as Docker does with intermediate images).
pub fn parent_ids(parents_dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir(parents_dir) {
        for e in rd.flatten() {
            if let Ok(p) = std::fs::read_to_string(e.path()) {
                out.insert(p.trim().to_string());
            }
        }
    }
    out
}

/// The images [`Builder::cache_images_dir`] records.
pub fn cache_image_ids(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default()
}

/// Docker's daemon-side use of `.dockerignore`: once the Dockerfile is read, `.dockerignore`
/// and the Dockerfile leave the context when its patterns exclude them (docker-py sends an
/// out-of-context Dockerfile under a generated name listed in a generated `.dockerignore`).
fn remove_ignored_dockerfile(context: &Path, dockerfile: &str) {
    let Ok(text) = std::fs::read_to_string(context.join(".dockerignore")) else {
        return;
    };
    let ignore = crate::dockerignore::Ignore::parse(&text);
    for name in [".dockerignore", dockerfile] {
        if ignore.excluded(name) {
            if let Ok(p) = berth_fs::secure_join(context, name) {
                if p.starts_with(context) && p != context {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
    }
}

impl Builder<'_> {
    /// The legacy path: builds `context` (an extracted context tar) with the Dockerfile it
    /// holds, reporting as the classic builder does. Returns the image id.
    pub fn build(
        &self,
        context: &Path,
        opts: &BuildOptions,
        out: &(dyn Fn(Output) + Sync),
    ) -> Result<String, BuildError> {
        let name = if opts.dockerfile.is_empty() {
            "Dockerfile"
        } else {
            opts.dockerfile.as_str()
        };
        let src = match berth_fs::secure_join(context, name).and_then(std::fs::read) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => {
                return Err(BuildError::BadRequest(format!(
                    "Cannot locate specified Dockerfile: {name}"
                )))
            }
        };
        remove_ignored_dockerfile(context, name);
        let progress = LegacyProgress {
            out,
            quiet: opts.quiet,
        };
        let input = BuildInput {
            dockerfile: &src,
            dockerfile_name: name,
            context,
            session: None,
        };
        self.build_dockerfile(&input, opts, &progress)
    }

    /// Builds a Dockerfile (both paths). Returns the image id, tagged with `opts.tags`.
    pub fn build_dockerfile(
        &self,
        input: &BuildInput<'_>,
        opts: &BuildOptions,
        progress: &dyn Progress,
    ) -> Result<String, BuildError> {
        plan::Run::new(self, input, opts, progress)?.go()
    }

    /// The `cache_from` images and every ancestor the parent links record.
    fn cache_sources(&self, opts: &BuildOptions) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for name in &opts.cache_from {
            let Ok(mut id) = self.store.resolve_id(name) else {
                continue;
            };
            while out.insert(id.clone()) {
                let hex = id.strip_prefix("sha256:").unwrap_or(&id);
                match std::fs::read_to_string(self.parents_dir.join(hex)) {
                    Ok(p) if !p.trim().is_empty() => id = p.trim().to_string(),
                    _ => break,
                }
            }
        }
        out
    }
}

/// The registry host BuildKit's auth session is asked about for an image reference.
pub fn registry_host(reference: &str) -> String {
    match berth_image::Reference::parse(reference) {
        Ok(r) if r.domain == "docker.io" => "registry-1.docker.io".into(),
        Ok(r) => r.domain,
        Err(_) => String::new(),
    }
}
