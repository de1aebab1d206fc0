//! The builder: runs a Dockerfile's stages against an [`ImageStore`] and a [`Backend`] (the
//! engine, which runs RUN steps in containers and pulls base images), printing the legacy
//! builder's output, with a build cache.
//!
//! Every step yields an image (untagged unless it is the result), as Docker's legacy builder
//! does. The cache is an index under `cache_dir`: one file per key, the key being
//! sha256(parent image id, the step's cache string), the content the resulting image id. The
//! cache string is the instruction after substitution; for COPY/ADD it includes a digest of
//! the copied files' paths, content and metadata; for RUN the build args in effect.

use crate::context::{clean_rel, resolve_in_root};
use crate::instructions::{parse_stages, Command, CopySpec, Kind, Stage, Stages};
use crate::parser::{self, Heredoc};
use crate::shell::Lexer;
use berth_image::config::{EmptyObject, HealthConfig, History};
use berth_image::{chain_ids, ContainerConfig, ImageConfig, ImageStore, Reference};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
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
    /// The `errorDetail.code` of the JSON stream.
    pub fn code(&self) -> Option<i64> {
        match self {
            BuildError::RunFailed { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> BuildError {
    BuildError::Failed(format!("{what}: {e}"))
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
}

pub enum RunEvent<'a> {
    Created(&'a str),
    Output(&'a [u8]),
    /// What the step wrote to its stderr.
    Stderr(&'a [u8]),
}

/// The services the builder needs from the engine.
pub trait Backend: Send + Sync {
    /// Makes `reference` present in the store (a pull), reporting progress lines.
    fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
        out: &mut dyn FnMut(&str),
    ) -> Result<(), BuildError>;
    /// Runs a container to its exit; the container (and its snapshot) stays until `remove`.
    /// Returns the container id and the exit code.
    fn run(
        &self,
        spec: &RunSpec,
        events: &mut dyn FnMut(RunEvent<'_>),
    ) -> Result<(String, i64), BuildError>;
    fn remove(&self, container_id: &str);
    /// Downloads `url` (ADD of a URL) into the file `dest`. Returns the server's
    /// Last-Modified time (unix seconds) when it sent one.
    fn fetch(&self, url: &str, dest: &Path) -> Result<Option<i64>, BuildError>;
    /// Whether the client went away (the build then stops before its next step).
    fn cancelled(&self) -> bool {
        false
    }
}

#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, Option<String>>,
    pub target: Option<String>,
    pub no_cache: bool,
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
            let p = crate::context::resolve_in_root(context, name);
            if p.starts_with(context) && p != context {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

fn short(id: &str) -> String {
    let h = id.strip_prefix("sha256:").unwrap_or(id);
    h[..h.len().min(12)].to_string()
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Read-only lookups in an image's filesystem through its extracted layers.
struct ImageFs {
    dirs: Vec<PathBuf>,
}

impl ImageFs {
    fn lookup(&self, path: &str) -> Option<(PathBuf, std::fs::Metadata)> {
        let rel = clean_rel(Path::new(path))?;
        for d in &self.dirs {
            let full = d.join(&rel);
            if let Ok(m) = std::fs::symlink_metadata(&full) {
                use std::os::unix::fs::FileTypeExt;
                if m.file_type().is_char_device() && m.rdev() == 0 {
                    return None; // whiteout
                }
                return Some((full, m));
            }
        }
        None
    }
    fn exists(&self, path: &str) -> bool {
        self.lookup(path).is_some()
    }
    fn is_dir(&self, path: &str) -> bool {
        self.lookup(path).is_some_and(|(_, m)| m.is_dir())
    }
    /// `path` with the symlinks of the image's directories followed inside the image (an
    /// absolute link restarts at the image's root, as in a chroot). The last element is
    /// followed only when it is a link to a directory.
    fn resolve(&self, path: &str) -> String {
        let mut out: Vec<String> = Vec::new();
        let mut pending: Vec<String> = path
            .split('/')
            .filter(|p| !p.is_empty())
            .rev()
            .map(String::from)
            .collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    out.pop();
                    continue;
                }
                _ => {}
            }
            let mut parts = out.clone();
            parts.push(part.clone());
            let cand = format!("/{}", parts.join("/"));
            match self.lookup(&cand) {
                Some((host, m)) if m.file_type().is_symlink() && hops < 40 => {
                    hops += 1;
                    let t = std::fs::read_link(&host)
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    let mut rest: Vec<String> = Vec::new();
                    if !t.starts_with('/') {
                        rest.extend(out.iter().cloned());
                    }
                    rest.extend(t.split('/').filter(|p| !p.is_empty()).map(String::from));
                    // The final element stays a link unless it leads to a directory.
                    if pending.is_empty() {
                        let target = self.resolve(&format!("/{}", rest.join("/")));
                        if !self.is_dir(&target) {
                            out.push(part);
                            continue;
                        }
                    }
                    out.clear();
                    pending.extend(rest.into_iter().rev());
                }
                _ => out.push(part),
            }
        }
        format!("/{}", out.join("/"))
    }

    fn read(&self, path: &str) -> Option<String> {
        let (p, m) = self.lookup(path)?;
        if !m.is_file() {
            return None;
        }
        std::fs::read_to_string(p).ok()
    }
}

/// Per-stage build state.
struct StageState {
    image_id: Option<String>,
    config: ImageConfig,
    /// Declared ARGs and their values.
    args: BTreeMap<String, Option<String>>,
    cmd_set: bool,
}

impl StageState {
    fn cc(&mut self) -> &mut ContainerConfig {
        self.config.config.get_or_insert_with(Default::default)
    }
    fn env_list(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
    }
    /// The variables substitution sees: ARG values, overridden by ENV.
    fn subst_env(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
        v.extend(self.env_list());
        v
    }
    fn workdir(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }
    fn shell(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.shell.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }
}

/// One entry of a layer tar being assembled.
struct Entry {
    path: String,
    kind: EntryKind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

enum EntryKind {
    Dir,
    File(PathBuf, u64),
    Inline(Vec<u8>),
    Symlink(PathBuf),
}

struct Run<'b, 'a> {
    b: &'b Builder<'a>,
    opts: &'b BuildOptions,
    context: &'b Path,
    out: &'b mut dyn FnMut(Output),
    step: usize,
    total: usize,
    epoch: Option<i64>,
    consumed: BTreeSet<String>,
    /// Results of finished stages, by index.
    stage_images: BTreeMap<usize, String>,
    /// Each built stage's FROM image (`None` for scratch): what `--squash` merges onto.
    stage_bases: BTreeMap<usize, Option<String>>,
    stages: Stages,
    meta_env: Vec<String>,
    /// The Dockerfile's name, for error messages.
    df_name: String,
    /// With `cache_from`: the images a cache hit may come from.
    cache_sources: Option<BTreeSet<String>>,
}

fn expand(lx: &Lexer, s: &str, env: &[String]) -> Result<String, BuildError> {
    lx.process_word(s, &env.to_vec())
        .map_err(|e| BuildError::BadRequest(e.to_string()))
}

impl Builder<'_> {
    /// Builds `context` (an extracted context directory). Returns the image id.
    pub fn build(
        &self,
        context: &Path,
        opts: &BuildOptions,
        out: &mut dyn FnMut(Output),
    ) -> Result<String, BuildError> {
        let name = if opts.dockerfile.is_empty() {
            "Dockerfile"
        } else {
            opts.dockerfile.as_str()
        };
        let path = resolve_in_root(context, name);
        let src = match std::fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => {
                return Err(BuildError::BadRequest(format!(
                    "Cannot locate specified Dockerfile: {name}"
                )))
            }
        };
        remove_ignored_dockerfile(context, name);
        let base_name = Path::new(name)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string());
        let df = parser::parse(&src).map_err(|e| {
            BuildError::BadRequest(format!(
                "{base_name} parse error line {}: {}",
                e.start_line, e.message
            ))
        })?;
        let stages = parse_stages(&df).map_err(|e| {
            BuildError::BadRequest(format!(
                "{base_name} parse error line {}: {}",
                e.line, e.message
            ))
        })?;
        let epoch = opts
            .build_args
            .get("SOURCE_DATE_EPOCH")
            .and_then(|v| v.as_deref())
            .and_then(|v| v.parse::<i64>().ok());
        let mut run = Run {
            b: self,
            opts,
            context,
            out,
            step: 0,
            total: 0,
            epoch,
            consumed: BTreeSet::new(),
            stage_images: BTreeMap::new(),
            stage_bases: BTreeMap::new(),
            stages,
            meta_env: Vec::new(),
            df_name: base_name.clone(),
            cache_sources: (!opts.cache_from.is_empty()).then(|| self.cache_sources(opts)),
        };
        run.go()
    }
}

impl Builder<'_> {
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

impl Run<'_, '_> {
    fn say(&mut self, s: &str) {
        if !self.opts.quiet {
            (self.out)(Output::Stream(s.to_string()));
        }
    }

    fn now(&self) -> String {
        match self.epoch {
            Some(e) => chrono::DateTime::from_timestamp(e, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            None => chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        }
    }

    fn mtime_default(&self) -> u64 {
        match self.epoch {
            Some(e) => e.max(0) as u64,
            None => chrono::Utc::now().timestamp().max(0) as u64,
        }
    }

    fn clamp(&self, t: i64) -> u64 {
        let t = t.max(0);
        match self.epoch {
            Some(e) if t > e => e.max(0) as u64,
            _ => t as u64,
        }
    }

    fn begin_step(&mut self, original: &str) -> Result<(), BuildError> {
        if self.b.backend.cancelled() {
            return Err(BuildError::Failed(
                "build cancelled: the client went away".into(),
            ));
        }
        self.step += 1;
        let s = format!("Step {}/{} : {}\n", self.step, self.total, original);
        self.say(&s);
        Ok(())
    }

    /// Stages the target depends on (through FROM and COPY --from), in order.
    fn needed(&self, target: usize) -> Result<Vec<usize>, BuildError> {
        let mut need = BTreeSet::new();
        let mut todo = vec![target];
        let lx = Lexer::new('\\');
        while let Some(i) = todo.pop() {
            if !need.insert(i) {
                continue;
            }
            let s = &self.stages.stages[i];
            let base = expand(&lx, &s.base, &self.meta_env)?;
            if let Some(j) = self.stages.find(&base).filter(|&j| j < i) {
                if self.stages.stages[j].name.is_some() {
                    todo.push(j);
                }
            }
            for c in &s.commands {
                if let Kind::Copy(CopySpec { from: Some(f), .. }) = &c.kind {
                    if let Some(j) = self.stages.find(f).filter(|&j| j < i) {
                        todo.push(j);
                    }
                }
            }
        }
        Ok(need.into_iter().collect())
    }

    fn go(&mut self) -> Result<String, BuildError> {
        let target = match &self.opts.target {
            Some(t) if !t.is_empty() => self.stages.find(t).ok_or_else(|| {
                BuildError::BadRequest(format!("failed to reach build target {t} in Dockerfile"))
            })?,
            _ => self.stages.stages.len() - 1,
        };
        // Global ARGs first: FROM lines may use them.
        let lx = Lexer::new('\\');
        let meta = self.stages.meta_args.clone();
        let mut meta_values: BTreeMap<String, Option<String>> = BTreeMap::new();
        for c in &meta {
            if let Kind::Arg(list) = &c.kind {
                for (k, d) in list {
                    let v = match self.opts.build_args.get(k) {
                        Some(Some(v)) => Some(v.clone()),
                        _ => match d {
                            Some(d) => Some(expand(&lx, d, &self.meta_env)?),
                            None => None,
                        },
                    };
                    if let Some(v) = &v {
                        self.meta_env.push(format!("{k}={v}"));
                    }
                    meta_values.insert(k.clone(), v);
                }
            }
        }
        let needed = self.needed(target)?;
        let labels_step = !self.opts.labels.is_empty();
        self.total = meta.len()
            + needed
                .iter()
                .map(|&i| 1 + self.stages.stages[i].commands.len())
                .sum::<usize>()
            + usize::from(labels_step);
        for c in &meta {
            self.begin_step(&c.original)?;
        }
        let mut last = String::new();
        for &i in &needed {
            let stage = self.stages.stages[i].clone();
            let mut extra = Vec::new();
            if i == target && labels_step {
                let pairs: Vec<(String, String)> = self
                    .opts
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let text = pairs
                    .iter()
                    .map(|(k, v)| format!("{}={}", parser::go_quote(k), parser::go_quote(v)))
                    .collect::<Vec<_>>()
                    .join(" ");
                extra.push(Command {
                    kind: Kind::Label(
                        pairs
                            .iter()
                            .map(|(k, v)| (shell_quote(k), shell_quote(v)))
                            .collect(),
                    ),
                    original: format!("LABEL {text}"),
                    line: 0,
                });
            }
            let id = self.run_stage(i, &stage, &meta_values, &extra)?;
            self.stage_images.insert(i, id.clone());
            last = id;
        }
        let unused: Vec<String> = self
            .opts
            .build_args
            .keys()
            .filter(|k| {
                !self.consumed.contains(*k)
                    && !meta_values.contains_key(*k)
                    && !PROXY_ARGS.contains(&k.as_str())
                    && k.as_str() != "SOURCE_DATE_EPOCH"
            })
            .cloned()
            .collect();
        if !unused.is_empty() {
            self.say(&format!(
                "[Warning] One or more build-args [{}] were not consumed\n",
                unused.join(" ")
            ));
        }
        if self.opts.squash {
            let base = self.stage_bases.get(&target).cloned().flatten();
            last = self
                .b
                .store
                .squash(&last, base.as_deref())
                .map_err(|e| failed("squashing", e))?;
        }
        (self.out)(Output::Aux(last.clone()));
        if self.opts.quiet {
            // Quiet: the stream carries just the id (the docker CLI prints it as is).
            (self.out)(Output::Stream(format!("{last}\n")));
        }
        self.say(&format!("Successfully built {}\n", short(&last)));
        for t in &self.opts.tags {
            let r = Reference::parse(t).map_err(|e| BuildError::BadRequest(e.to_string()))?;
            self.b
                .store
                .add_reference(&r, &last)
                .map_err(|e| failed("tagging", e))?;
            self.say(&format!("Successfully tagged {}\n", r.familiar()));
        }
        Ok(last)
    }

    fn base_image(
        &mut self,
        stage_idx: usize,
        base: &str,
        platform: Option<&str>,
    ) -> Result<Option<String>, BuildError> {
        if base.eq_ignore_ascii_case("scratch") {
            return Ok(None);
        }
        if let Some(j) = self.stages.find(base).filter(|&j| j < stage_idx) {
            if self.stages.stages[j].name.is_some() {
                return self
                    .stage_images
                    .get(&j)
                    .cloned()
                    .map(Some)
                    .ok_or_else(|| BuildError::Failed(format!("stage {base} was not built")));
            }
        }
        self.image(base, platform).map(Some)
    }

    /// An image by name: the local store first, the registry otherwise (or always with --pull).
    fn image(&mut self, name: &str, platform: Option<&str>) -> Result<String, BuildError> {
        let local = self.b.store.resolve_id(name).ok();
        if let (Some(id), false) = (&local, self.opts.pull) {
            return Ok(id.clone());
        }
        let mut lines = Vec::new();
        let r = self
            .b
            .backend
            .pull(name, platform, &mut |l| lines.push(l.to_string()));
        for l in lines {
            self.say(&format!("{l}\n"));
        }
        match r {
            Ok(()) => {}
            Err(e) => {
                if let Some(id) = local {
                    return Ok(id);
                }
                return Err(e);
            }
        }
        self.b.store.resolve_id(name).map_err(|_| {
            BuildError::NotFound(format!(
                "pull access denied for {name}, repository does not exist or may require 'docker login'"
            ))
        })
    }

    fn run_stage(
        &mut self,
        idx: usize,
        stage: &Stage,
        meta_values: &BTreeMap<String, Option<String>>,
        extra: &[Command],
    ) -> Result<String, BuildError> {
        self.begin_step(&stage.original)?;
        let lx = Lexer::new('\\');
        let base = expand(&lx, &stage.base, &self.meta_env)?;
        if base.is_empty() {
            return Err(BuildError::BadRequest(format!(
                "base name ({}) should not be blank",
                stage.base
            )));
        }
        let platform = stage
            .platform
            .clone()
            .or_else(|| self.opts.platform.clone());
        let base_id = self.base_image(idx, &base, platform.as_deref())?;
        self.stage_bases.insert(idx, base_id.clone());
        let config = match &base_id {
            Some(id) => {
                self.say(&format!(" ---> {}\n", short(id)));
                self.b
                    .store
                    .get(id)
                    .map_err(|e| failed("reading base image", e))?
                    .config
            }
            None => ImageConfig {
                architecture: berth_image::config::host_architecture().into(),
                os: "linux".into(),
                rootfs: berth_image::config::RootFs {
                    kind: "layers".into(),
                    ..Default::default()
                },
                ..Default::default()
            },
        };
        let mut st = StageState {
            image_id: base_id,
            config,
            args: BTreeMap::new(),
            cmd_set: false,
        };
        // A stage sees global ARGs only once it declares them again; their values carry over.
        let _ = meta_values;
        // ONBUILD triggers of the base image run first.
        let triggers = st
            .config
            .config
            .as_mut()
            .and_then(|c| c.on_build.take())
            .unwrap_or_default();
        if !triggers.is_empty() {
            self.say(&format!(
                "# Executing {} build trigger{}\n",
                triggers.len(),
                if triggers.len() == 1 { "" } else { "s" }
            ));
            let text = triggers.join("\n");
            let df = parser::parse(&text).map_err(|e| {
                BuildError::BadRequest(format!("parsing ONBUILD trigger: {}", e.message))
            })?;
            for n in &df.children {
                let fake = parser::Dockerfile {
                    children: vec![
                        parser::Node {
                            cmd: "FROM".into(),
                            args: vec![parser::Arg::Word("scratch".into())],
                            ..Default::default()
                        },
                        n.clone(),
                    ],
                    ..Default::default()
                };
                let s = parse_stages(&fake).map_err(|e| {
                    BuildError::BadRequest(format!("ONBUILD trigger: {}", e.message))
                })?;
                for c in &s.stages[0].commands {
                    self.dispatch(&mut st, c, meta_values, false)?;
                }
            }
        }
        for c in stage.commands.iter().chain(extra) {
            self.begin_step(&c.original)?;
            self.dispatch(&mut st, c, meta_values, true)
                .map_err(|e| match e {
                    // Word-processing errors (quotes, `${VAR?}`) name the line.
                    BuildError::BadRequest(m) if m.starts_with("failed to process") => {
                        BuildError::BadRequest(format!("{} line {}: {m}", self.df_name, c.line))
                    }
                    e => e,
                })?;
        }
        match st.image_id {
            Some(id) => Ok(id),
            None => {
                // A scratch stage without instructions: an image with no layers.
                let id = self.store_config(&st.config)?;
                Ok(id)
            }
        }
    }

    fn store_config(&self, cfg: &ImageConfig) -> Result<String, BuildError> {
        let bytes = serde_json::to_vec(cfg).map_err(|e| failed("image config", e))?;
        self.b
            .store
            .create_image(&bytes, &[])
            .map_err(|e| failed("storing image", e))
    }

    fn cache_key(&self, parent: &Option<String>, s: &str) -> String {
        sha_hex(format!("{}\n{}", parent.as_deref().unwrap_or(""), s).as_bytes())
    }

    fn cache_get(&self, key: &str) -> Option<String> {
        if self.opts.no_cache {
            return None;
        }
        let id = std::fs::read_to_string(self.b.cache_dir.join(key)).ok()?;
        let id = self.b.store.resolve_id(id.trim()).ok()?;
        match &self.cache_sources {
            Some(sources) if !sources.contains(&id) => None,
            _ => Some(id),
        }
    }

    fn cache_put(&self, key: &str, id: &str) {
        let _ = std::fs::create_dir_all(&self.b.cache_dir);
        let tmp = self.b.cache_dir.join(format!(".{key}.tmp"));
        if std::fs::write(&tmp, id).is_ok() {
            let _ = std::fs::rename(&tmp, self.b.cache_dir.join(key));
        }
    }

    /// A hit: the step's result is taken from the cache.
    fn try_cache(&mut self, st: &mut StageState, key: &str) -> Result<bool, BuildError> {
        let Some(id) = self.cache_get(key) else {
            return Ok(false);
        };
        let img = self
            .b
            .store
            .get(&id)
            .map_err(|e| failed("reading cached image", e))?;
        st.config = img.config;
        st.image_id = Some(id.clone());
        self.say(" ---> Using cache\n");
        self.say(&format!(" ---> {}\n", short(&id)));
        Ok(true)
    }

    /// Records the new config (and layer, if any) as the step's image.
    fn finish_step(
        &mut self,
        st: &mut StageState,
        key: &str,
        created_by: String,
        layer: Option<String>,
    ) -> Result<(), BuildError> {
        let created = self.now();
        st.config.created = Some(created.clone());
        if let Some(d) = &layer {
            st.config.rootfs.diff_ids.push(d.clone());
        }
        st.config.history.push(History {
            created: Some(created),
            created_by: Some(created_by),
            empty_layer: layer.is_none(),
            ..Default::default()
        });
        st.config.docker_version = Some(concat!("berth-", env!("CARGO_PKG_VERSION")).into());
        let id = self.store_config(&st.config)?;
        self.cache_put(key, &id);
        if let Some(parent) = &st.image_id {
            let _ = std::fs::create_dir_all(&self.b.parents_dir);
            let name = id.strip_prefix("sha256:").unwrap_or(&id);
            let tmp = self.b.parents_dir.join(format!(".{name}.tmp"));
            if std::fs::write(&tmp, parent).is_ok() {
                let _ = std::fs::rename(&tmp, self.b.parents_dir.join(name));
            }
        }
        st.image_id = Some(id.clone());
        self.say(&format!(" ---> {}\n", short(&id)));
        Ok(())
    }

    /// A step that only changes the config.
    fn meta_step(
        &mut self,
        st: &mut StageState,
        created_by: String,
        apply: impl FnOnce(&mut StageState),
    ) -> Result<(), BuildError> {
        let key = self.cache_key(&st.image_id, &created_by);
        if self.try_cache(st, &key)? {
            return Ok(());
        }
        apply(st);
        self.finish_step(st, &key, created_by, None)
    }

    fn nop(s: &str) -> String {
        format!("/bin/sh -c #(nop)  {s}")
    }

    fn dispatch(
        &mut self,
        st: &mut StageState,
        c: &Command,
        meta_values: &BTreeMap<String, Option<String>>,
        _counted: bool,
    ) -> Result<(), BuildError> {
        let lx = Lexer::new('\\');
        let env = st.subst_env();
        match &c.kind {
            Kind::Env(pairs) => {
                let mut kv = Vec::new();
                for (k, v) in pairs {
                    kv.push((expand(&lx, k, &env)?, expand(&lx, v, &env)?));
                }
                let text = kv
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                self.meta_step(st, Self::nop(&format!("ENV {text}")), |st| {
                    let cc = st.cc();
                    let mut list = cc.env.take().unwrap_or_default();
                    for (k, v) in kv {
                        list.retain(|e| e.split_once('=').map_or(e.as_str(), |p| p.0) != k);
                        list.push(format!("{k}={v}"));
                    }
                    cc.env = Some(list);
                })
            }
            Kind::Label(pairs) => {
                let mut kv = Vec::new();
                for (k, v) in pairs {
                    kv.push((expand(&lx, k, &env)?, expand(&lx, v, &env)?));
                }
                let text = kv
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                self.meta_step(st, Self::nop(&format!("LABEL {text}")), |st| {
                    let labels = st.cc().labels.get_or_insert_with(Default::default);
                    for (k, v) in kv {
                        labels.insert(k, v);
                    }
                })
            }
            Kind::Arg(list) => {
                let mut names = Vec::new();
                for (k, d) in list {
                    let v = match self.opts.build_args.get(k) {
                        Some(Some(v)) => {
                            self.consumed.insert(k.clone());
                            Some(v.clone())
                        }
                        Some(None) => {
                            self.consumed.insert(k.clone());
                            d.as_ref().map(|d| expand(&lx, d, &env)).transpose()?
                        }
                        None => match d {
                            Some(d) => Some(expand(&lx, d, &env)?),
                            // Re-declared global ARG: its global value.
                            None => meta_values.get(k).cloned().flatten(),
                        },
                    };
                    names.push(match d {
                        Some(d) => format!("{k}={d}"),
                        None => k.clone(),
                    });
                    st.args.insert(k.clone(), v);
                }
                let created_by = Self::nop(&format!("ARG {}", names.join(" ")));
                // The values are part of the cache key (they change what RUN sees).
                let vals: Vec<String> = st
                    .args
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("")))
                    .collect();
                let key = self.cache_key(&st.image_id, &format!("{created_by}|{}", vals.join("|")));
                if self.try_cache(st, &key)? {
                    return Ok(());
                }
                self.finish_step(st, &key, created_by, None)
            }
            Kind::Workdir(w) => {
                let w = expand(&lx, w, &env)?;
                let path = if w.starts_with('/') {
                    w.clone()
                } else {
                    format!("{}/{}", st.workdir().trim_end_matches('/'), w)
                };
                let path = format!(
                    "/{}",
                    clean_rel(Path::new(&path)).unwrap_or_default().display()
                );
                let created_by = Self::nop(&format!("WORKDIR {path}"));
                let fs = self.image_fs(st)?;
                let real = fs.resolve(&path);
                if fs.is_dir(&real) || real == "/" {
                    return self.meta_step(st, created_by, |st| st.cc().working_dir = Some(path));
                }
                let key = self.cache_key(&st.image_id, &format!("{created_by}|mkdir"));
                if self.try_cache(st, &key)? {
                    return Ok(());
                }
                let mut entries = Vec::new();
                self.parent_entries(&fs, &format!("{real}/x"), &mut entries);
                let diff = self.write_layer(st, entries)?;
                st.cc().working_dir = Some(path);
                self.finish_step(st, &key, created_by, Some(diff))
            }
            Kind::User(u) => {
                let u = expand(&lx, u, &env)?;
                self.meta_step(st, Self::nop(&format!("USER {u}")), |st| {
                    st.cc().user = Some(u)
                })
            }
            Kind::Cmd { args, json } => {
                let v = if *json {
                    args.clone()
                } else {
                    with_shell(&st.shell(), args)
                };
                let created_by = Self::nop(&format!("CMD {}", json_list(&v)));
                st.cmd_set = true;
                self.meta_step(st, created_by, |st| st.cc().cmd = Some(v))
            }
            Kind::Entrypoint { args, json } => {
                let v = if *json {
                    args.clone()
                } else {
                    with_shell(&st.shell(), args)
                };
                let created_by = Self::nop(&format!("ENTRYPOINT {}", json_list(&v)));
                let clear_cmd = !st.cmd_set;
                self.meta_step(st, created_by, |st| {
                    let cc = st.cc();
                    cc.entrypoint = Some(v);
                    if clear_cmd {
                        cc.cmd = None;
                    }
                })
            }
            Kind::Shell(v) => {
                let v = v.clone();
                self.meta_step(st, Self::nop(&format!("SHELL {}", json_list(&v))), |st| {
                    st.cc().shell = Some(v)
                })
            }
            Kind::Expose(ports) => {
                let mut list = Vec::new();
                for p in ports {
                    let p = expand(&lx, p, &env)?;
                    let (num, proto) = match p.split_once('/') {
                        Some((n, pr)) => (n.to_string(), pr.to_ascii_lowercase()),
                        None => (p.clone(), "tcp".to_string()),
                    };
                    let (lo, hi) = match num.split_once('-') {
                        Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
                        None => (num.parse::<u16>(), num.parse::<u16>()),
                    };
                    let (Ok(lo), Ok(hi)) = (lo, hi) else {
                        return Err(BuildError::BadRequest(format!(
                            "invalid containerPort: {num}"
                        )));
                    };
                    for port in lo..=hi.max(lo) {
                        list.push(format!("{port}/{proto}"));
                    }
                }
                let created_by = Self::nop(&format!("EXPOSE {}", list.join(" ")));
                self.meta_step(st, created_by, |st| {
                    let m = st.cc().exposed_ports.get_or_insert_with(Default::default);
                    for p in list {
                        m.insert(p, EmptyObject {});
                    }
                })
            }
            Kind::Volume(vols) => {
                let mut list = Vec::new();
                for v in vols {
                    list.push(expand(&lx, v, &env)?);
                }
                let created_by = Self::nop(&format!("VOLUME {}", json_list(&list)));
                self.meta_step(st, created_by, |st| {
                    let m = st.cc().volumes.get_or_insert_with(Default::default);
                    for v in list {
                        m.insert(v, EmptyObject {});
                    }
                })
            }
            Kind::StopSignal(s) => {
                let s = expand(&lx, s, &env)?;
                self.meta_step(st, Self::nop(&format!("STOPSIGNAL {s}")), |st| {
                    st.cc().stop_signal = Some(s)
                })
            }
            Kind::Healthcheck(h) => {
                let hc = HealthConfig {
                    test: Some(h.test.clone()),
                    interval: h.interval,
                    timeout: h.timeout,
                    start_period: h.start_period,
                    start_interval: h.start_interval,
                    retries: h.retries,
                    ..Default::default()
                };
                let created_by = Self::nop(&format!(
                    "HEALTHCHECK {}",
                    serde_json::to_string(&hc).unwrap_or_default()
                ));
                self.meta_step(st, created_by, |st| st.cc().healthcheck = Some(hc))
            }
            Kind::Onbuild(t) => {
                let t = t.clone();
                self.meta_step(st, Self::nop(&format!("ONBUILD {t}")), |st| {
                    st.cc().on_build.get_or_insert_with(Vec::new).push(t)
                })
            }
            Kind::Maintainer(m) => {
                let m = m.clone();
                self.meta_step(st, Self::nop(&format!("MAINTAINER {m}")), |st| {
                    st.config.author = Some(m)
                })
            }
            Kind::Run {
                args,
                json,
                heredocs,
                network,
                mounts,
            } => {
                if !mounts.is_empty() {
                    return Err(BuildError::BadRequest(
                        "RUN --mount is not supported by this builder".into(),
                    ));
                }
                self.run_step(st, args, *json, heredocs, network.clone())
            }
            Kind::Copy(spec) => self.copy_step(st, spec, &env),
        }
    }

    fn image_fs(&self, st: &StageState) -> Result<ImageFs, BuildError> {
        let dirs = match &st.image_id {
            Some(id) if !st.config.rootfs.diff_ids.is_empty() => self
                .b
                .store
                .image_layer_dirs(id)
                .map_err(|e| failed("reading image layers", e))?,
            _ => Vec::new(),
        };
        Ok(ImageFs { dirs })
    }

    fn ensure_image(&mut self, st: &mut StageState) -> Result<String, BuildError> {
        if let Some(id) = &st.image_id {
            return Ok(id.clone());
        }
        let id = self.store_config(&st.config)?;
        st.image_id = Some(id.clone());
        Ok(id)
    }

    fn run_step(
        &mut self,
        st: &mut StageState,
        args: &[String],
        json: bool,
        heredocs: &[Heredoc],
        network: Option<String>,
    ) -> Result<(), BuildError> {
        let cmd: Vec<String> = if json {
            args.to_vec()
        } else {
            let line = args.join(" ");
            let script = if heredocs.len() == 1 && is_only_heredoc(&line) {
                heredocs[0].content.clone()
            } else if heredocs.is_empty() {
                line
            } else {
                let mut s = line;
                s.push('\n');
                for h in heredocs {
                    s.push_str(&h.content);
                    s.push_str(&h.name);
                    s.push('\n');
                }
                s
            };
            let mut v = st.shell();
            v.push(script);
            v
        };
        // Build args in effect go to the container's env and into the cache key.
        let arg_env: Vec<String> = st
            .args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
        let config_env = st.env_list();
        let config_keys: BTreeSet<&str> = config_env
            .iter()
            .map(|e| e.split_once('=').map_or(e.as_str(), |p| p.0))
            .collect();
        let mut env: Vec<String> = arg_env
            .iter()
            .filter(|e| !config_keys.contains(e.split_once('=').map_or(e.as_str(), |p| p.0)))
            .cloned()
            .collect();
        for p in PROXY_ARGS {
            if let Some(Some(v)) = self.opts.build_args.get(*p) {
                if !st.args.contains_key(*p) {
                    env.push(format!("{p}={v}"));
                }
            }
        }
        env.extend(config_env.iter().cloned());
        let shown = cmd.join(" ");
        let created_by = if arg_env.is_empty() {
            shown.clone()
        } else {
            format!("|{} {} {}", arg_env.len(), arg_env.join(" "), shown)
        };
        let network = network.or_else(|| self.opts.network.clone());
        let key_src = format!("RUN {}|{}", json_list(&cmd), created_by) + &format!("|{network:?}");
        let key = self.cache_key(&st.image_id, &key_src);
        if self.try_cache(st, &key)? {
            return Ok(());
        }
        let image_id = self.ensure_image(st)?;
        let cc = st.config.config.clone().unwrap_or_default();
        let spec = RunSpec {
            image_id,
            cmd: cmd.clone(),
            env,
            user: cc.user.clone().unwrap_or_default(),
            workdir: cc.working_dir.clone().unwrap_or_default(),
            network,
            extra_hosts: self.opts.extra_hosts.clone(),
        };
        let quiet = self.opts.quiet;
        let out = &mut *self.out;
        let res = self.b.backend.run(&spec, &mut |ev| {
            if quiet {
                return;
            }
            match ev {
                RunEvent::Created(id) => {
                    out(Output::Stream(format!(" ---> Running in {}\n", short(id))))
                }
                RunEvent::Output(b) => out(Output::Stream(String::from_utf8_lossy(b).into_owned())),
                // Docker's classic builder shows stderr in red: each write is wrapped.
                RunEvent::Stderr(b) => out(Output::Stream(format!(
                    "\x1b[91m{}\x1b[0m",
                    String::from_utf8_lossy(b)
                ))),
            }
        });
        let (cid, code) = res?;
        if code != 0 {
            self.b.backend.remove(&cid);
            return Err(BuildError::RunFailed { cmd: shown, code });
        }
        let diff = self.commit_container(st, &cid);
        self.b.backend.remove(&cid);
        let diff = diff?;
        self.say(&format!(
            "Removing intermediate container {}\n",
            short(&cid)
        ));
        self.finish_step(st, &key, created_by, Some(diff))
    }

    fn parent_chain(st: &StageState) -> Option<String> {
        chain_ids(&st.config.rootfs.diff_ids).pop()
    }

    /// The container's changes as a layer on the stage's current top layer.
    fn commit_container(&self, st: &StageState, cid: &str) -> Result<String, BuildError> {
        std::fs::create_dir_all(&self.b.tmp_dir).map_err(|e| failed("temp dir", e))?;
        let mut f = tempfile_in(&self.b.tmp_dir)?;
        self.b
            .store
            .snapshot_diff(cid, &mut f)
            .map_err(|e| failed("committing container", e))?;
        f.rewind().map_err(|e| failed("layer", e))?;
        let mut f = match self.epoch {
            Some(e) => clamp_tar(f, e, &self.b.tmp_dir)?,
            None => f,
        };
        let parent = Self::parent_chain(st);
        let info = self
            .b
            .store
            .add_layer(parent.as_deref(), &mut std::io::BufReader::new(&mut f))
            .map_err(|e| failed("storing layer", e))?;
        Ok(info.diff_id)
    }

    /// Entries for the missing parent directories of `path` (absolute, in the image).
    fn parent_entries(&self, fs: &ImageFs, path: &str, out: &mut Vec<Entry>) {
        let rel = clean_rel(Path::new(path)).unwrap_or_default();
        let mut cur = PathBuf::new();
        let comps: Vec<_> = rel.components().collect();
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            cur.push(c);
            let p = cur.to_string_lossy().into_owned();
            if !fs.exists(&format!("/{p}")) && !out.iter().any(|e| e.path == p) {
                out.push(Entry {
                    path: p,
                    kind: EntryKind::Dir,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    mtime: self.mtime_default(),
                });
            }
        }
    }

    /// Writes entries as a layer tar (sorted, deterministic) and stores it. Returns the diff id.
    fn write_layer(&self, st: &StageState, mut entries: Vec<Entry>) -> Result<String, BuildError> {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries.dedup_by(|a, b| a.path == b.path);
        std::fs::create_dir_all(&self.b.tmp_dir).map_err(|e| failed("temp dir", e))?;
        let mut f = tempfile_in(&self.b.tmp_dir)?;
        {
            let mut tb = tar::Builder::new(std::io::BufWriter::new(&mut f));
            let werr = |e: std::io::Error| failed("writing layer", e);
            for e in &entries {
                let mut h = tar::Header::new_gnu();
                h.set_mode(e.mode);
                h.set_uid(e.uid);
                h.set_gid(e.gid);
                h.set_mtime(e.mtime);
                match &e.kind {
                    EntryKind::Dir => {
                        h.set_entry_type(tar::EntryType::Directory);
                        h.set_size(0);
                        tb.append_data(&mut h, format!("{}/", e.path), &[][..])
                            .map_err(werr)?;
                    }
                    EntryKind::File(p, size) => {
                        h.set_entry_type(tar::EntryType::Regular);
                        h.set_size(*size);
                        let file = std::fs::File::open(p).map_err(werr)?;
                        tb.append_data(&mut h, &e.path, file.take(*size))
                            .map_err(werr)?;
                    }
                    EntryKind::Inline(data) => {
                        h.set_entry_type(tar::EntryType::Regular);
                        h.set_size(data.len() as u64);
                        tb.append_data(&mut h, &e.path, &data[..]).map_err(werr)?;
                    }
                    EntryKind::Symlink(t) => {
                        h.set_entry_type(tar::EntryType::Symlink);
                        h.set_size(0);
                        tb.append_link(&mut h, &e.path, t).map_err(werr)?;
                    }
                }
            }
            tb.into_inner()
                .and_then(|mut w| w.flush())
                .map_err(|e| failed("writing layer", e))?;
        }
        f.rewind().map_err(|e| failed("layer", e))?;
        let parent = Self::parent_chain(st);
        let info = self
            .b
            .store
            .add_layer(parent.as_deref(), &mut std::io::BufReader::new(f))
            .map_err(|e| failed("storing layer", e))?;
        Ok(info.diff_id)
    }
}

fn tempfile_in(dir: &Path) -> Result<std::fs::File, BuildError> {
    let p = dir.join(format!(
        "layer-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&p)
        .map_err(|e| failed("temp file", e))?;
    let _ = std::fs::remove_file(&p);
    Ok(f)
}

/// Rewrites a tar with every mtime clamped to `epoch`.
fn clamp_tar(f: std::fs::File, epoch: i64, tmp: &Path) -> Result<std::fs::File, BuildError> {
    let mut out = tempfile_in(tmp)?;
    {
        let mut ar = tar::Archive::new(std::io::BufReader::new(f));
        let mut tb = tar::Builder::new(std::io::BufWriter::new(&mut out));
        let werr = |e: std::io::Error| failed("rewriting layer", e);
        for e in ar.entries().map_err(werr)? {
            let mut e = e.map_err(werr)?;
            let mut h = e.header().clone();
            let m = h.mtime().unwrap_or(0) as i64;
            if m > epoch {
                h.set_mtime(epoch.max(0) as u64);
            }
            let path = e.path().map_err(werr)?.into_owned();
            if let Some(l) = e.link_name().map_err(werr)?.map(|l| l.into_owned()) {
                tb.append_link(&mut h, &path, l).map_err(werr)?;
            } else {
                tb.append_data(&mut h, &path, &mut e).map_err(werr)?;
            }
        }
        tb.into_inner().and_then(|mut w| w.flush()).map_err(werr)?;
    }
    out.rewind().map_err(|e| failed("layer", e))?;
    Ok(out)
}

fn is_only_heredoc(line: &str) -> bool {
    let w: Vec<&str> = line.split_whitespace().collect();
    w.len() == 1
        && w[0]
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .starts_with("<<")
}

fn with_shell(shell: &[String], args: &[String]) -> Vec<String> {
    let mut v = shell.to_vec();
    v.push(args.join(" "));
    v
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Quotes a value so the shell lexer gives it back unchanged.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\"'\"'"))
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// A temp directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An image's filesystem mounted read-only for `COPY --from`; unmounted on drop.
struct Mounted<'s> {
    store: &'s ImageStore,
    id: String,
    path: PathBuf,
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = self.store.unmount_snapshot(&self.id);
        let _ = self.store.remove_snapshot(&self.id);
    }
}

fn is_tar_archive(p: &Path) -> bool {
    let Ok(f) = std::fs::File::open(p) else {
        return false;
    };
    let mut head = Vec::with_capacity(512);
    let mut r: Box<dyn Read> = Box::new(f);
    let mut magic = [0u8; 2];
    if r.read_exact(&mut magic).is_err() {
        return false;
    }
    let rest: Box<dyn Read> = Box::new(std::io::Cursor::new(magic.to_vec()).chain(r));
    let mut r: Box<dyn Read> = if magic == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(rest))
    } else {
        rest
    };
    if r.by_ref().take(512).read_to_end(&mut head).is_err() || head.len() < 262 {
        return false;
    }
    &head[257..262] == b"ustar"
}

fn open_maybe_gz(p: &Path) -> std::io::Result<Box<dyn Read>> {
    let mut f = std::fs::File::open(p)?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    f.rewind()?;
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)))
    } else {
        Box::new(std::io::BufReader::new(f))
    })
}

impl Run<'_, '_> {
    /// `user[:group]` as numbers, names looked up in the image's /etc/passwd and /etc/group.
    fn resolve_chown(&self, fs: &ImageFs, spec: &str) -> Result<(u64, u64), BuildError> {
        let (u, g) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let lookup = |file: &str, name: &str, col: usize| -> Option<u64> {
            fs.read(file)?.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&name)).then(|| f.get(col)?.parse().ok())?
            })
        };
        let uid = match u.parse::<u64>() {
            Ok(n) => n,
            Err(_) => lookup("/etc/passwd", u, 2).ok_or_else(|| {
                BuildError::BadRequest(format!("unable to convert uid/gid chown string to host mapping: can't find uid for user {u}: no such user: {u}"))
            })?,
        };
        let gid = match g {
            None => uid,
            Some(g) => match g.parse::<u64>() {
                Ok(n) => n,
                Err(_) => lookup("/etc/group", g, 2).ok_or_else(|| {
                    BuildError::BadRequest(format!("unable to convert uid/gid chown string to host mapping: can't find gid for group {g}: no such group: {g}"))
                })?,
            },
        };
        Ok((uid, gid))
    }

    /// Paths (relative to `root`) a source names, globs expanded.
    fn expand_source(&self, root: &Path, src: &str, cmd: &str) -> Result<Vec<PathBuf>, BuildError> {
        let Some(rel) = clean_rel(Path::new(src)) else {
            return Err(BuildError::BadRequest(format!(
                "{cmd} failed: forbidden path outside the build context: {src} ()"
            )));
        };
        if !has_glob(src) {
            return Ok(vec![rel]);
        }
        let mut cands = vec![PathBuf::new()];
        for comp in rel.components() {
            let c = comp.as_os_str().to_string_lossy().into_owned();
            let mut next = Vec::new();
            for base in &cands {
                if has_glob(&c) {
                    let dir = resolve_in_root(root, &base.to_string_lossy());
                    let Ok(rd) = std::fs::read_dir(&dir) else {
                        continue;
                    };
                    let mut names: Vec<String> = rd
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    for n in names {
                        if crate::dockerignore::glob(&c, &n) {
                            next.push(base.join(n));
                        }
                    }
                } else {
                    next.push(base.join(&c));
                }
            }
            cands = next;
        }
        cands.retain(|c| {
            std::fs::symlink_metadata(resolve_in_root(root, &c.to_string_lossy())).is_ok()
        });
        Ok(cands)
    }

    fn copy_step(
        &mut self,
        st: &mut StageState,
        spec: &CopySpec,
        env: &[String],
    ) -> Result<(), BuildError> {
        let lx = Lexer::new('\\');
        let cmd = if spec.add { "ADD" } else { "COPY" };
        let mut srcs = Vec::new();
        for s in &spec.srcs {
            srcs.push(expand(&lx, s, env)?);
        }
        let dest_raw = expand(&lx, &spec.dest, env)?;
        let chown = spec
            .chown
            .as_ref()
            .map(|c| expand(&lx, c, env))
            .transpose()?;
        let chmod = match &spec.chmod {
            None => None,
            Some(m) => {
                let m = expand(&lx, m, env)?;
                Some(
                    u32::from_str_radix(&m, 8)
                        .ok()
                        .filter(|v| *v <= 0o7777)
                        .ok_or_else(|| {
                            BuildError::BadRequest(format!("invalid chmod parameter: {m}"))
                        })?,
                )
            }
        };
        let is_url = |s: &str| s.starts_with("http://") || s.starts_with("https://");
        if !spec.add && srcs.iter().any(|s| is_url(s)) {
            return Err(BuildError::BadRequest(format!(
                "{cmd} failed: source can't be a URL for COPY"
            )));
        }
        let (urls, srcs): (Vec<String>, Vec<String>) = srcs.into_iter().partition(|s| is_url(s));
        let mount;
        let root: PathBuf = match &spec.from {
            None => self.context.to_path_buf(),
            Some(f) => {
                let f = expand(&lx, f, env)?;
                let image_id = match self.stages.find(&f) {
                    Some(j) => self.stage_images.get(&j).cloned().ok_or_else(|| {
                        BuildError::BadRequest(format!(
                            "invalid from flag value {f}: stage not built before this one"
                        ))
                    })?,
                    None => self.image(&f, None)?,
                };
                let sid = format!(
                    "build-{}",
                    &sha_hex(
                        format!(
                            "{image_id}{}{}",
                            std::process::id(),
                            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
                        )
                        .as_bytes()
                    )[..32]
                );
                self.b
                    .store
                    .create_snapshot(&sid, &image_id)
                    .map_err(|e| failed("mounting source image", e))?;
                let mut m = Mounted {
                    store: self.b.store,
                    id: sid.clone(),
                    path: PathBuf::new(),
                };
                m.path = self
                    .b
                    .store
                    .mount_snapshot(&sid)
                    .map_err(|e| failed("mounting source image", e))?;
                mount = m;
                mount.path.clone()
            }
        };
        let fs = self.image_fs(st)?;
        let (uid, gid) = match &chown {
            Some(c) => self.resolve_chown(&fs, c)?,
            None => (0, 0),
        };
        let wd = st.workdir();
        let dest_abs = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{}", wd.trim_end_matches('/'), dest_raw)
        };
        let dest_clean = fs.resolve(&format!(
            "/{}",
            clean_rel(Path::new(&dest_abs))
                .unwrap_or_default()
                .display()
        ));
        let ends_slash = dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
        let mut sources: Vec<(String, PathBuf)> = Vec::new();
        for s in &srcs {
            let found = self.expand_source(&root, s, cmd)?;
            if found.is_empty() {
                return Err(BuildError::BadRequest(format!(
                    "{cmd} failed: no source files were specified"
                )));
            }
            for rel in found {
                let host = resolve_in_root(&root, &rel.to_string_lossy());
                if std::fs::metadata(&host).is_err() {
                    return Err(BuildError::BadRequest(format!(
                        "{cmd} failed: file not found in build context or excluded by .dockerignore: stat {s}: file does not exist"
                    )));
                }
                sources.push((s.clone(), host));
            }
        }
        let count = sources.len() + spec.heredocs.len() + urls.len();
        let dest_is_dir = ends_slash || fs.is_dir(&dest_clean) || dest_clean == "/";
        if count > 1 && !dest_is_dir {
            return Err(BuildError::BadRequest(format!(
                "When using {cmd} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        let dest_rel = dest_clean.trim_start_matches('/').to_string();
        let join = |a: &str, b: &str| -> String {
            if a.is_empty() {
                b.to_string()
            } else if b.is_empty() {
                a.to_string()
            } else {
                format!("{a}/{b}")
            }
        };
        let tmp = TempDir(self.b.tmp_dir.join(format!(
            "copy-{}",
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        )));
        let mut entries: Vec<Entry> = Vec::new();
        let mut dir_target = dest_is_dir;
        for (_, host) in &sources {
            let m = std::fs::metadata(host).map_err(|e| failed("stat", e))?;
            if m.is_dir() {
                dir_target = true;
                self.walk_dir(host, &dest_rel, uid, gid, chmod, &mut entries)?;
            } else if spec.add && is_tar_archive(host) {
                dir_target = true;
                std::fs::create_dir_all(&tmp.0).map_err(|e| failed("temp dir", e))?;
                self.unpack_archive(host, &dest_rel, &tmp.0, &mut entries)?;
            } else {
                let target = if dest_is_dir {
                    join(
                        &dest_rel,
                        &host.file_name().unwrap_or_default().to_string_lossy(),
                    )
                } else {
                    dest_rel.clone()
                };
                entries.push(Entry {
                    path: target,
                    kind: EntryKind::File(host.clone(), m.len()),
                    mode: chmod.unwrap_or(m.mode() & 0o7777),
                    uid,
                    gid,
                    mtime: self.clamp(m.mtime()),
                });
            }
        }
        for (n, url) in urls.iter().enumerate() {
            std::fs::create_dir_all(&tmp.0).map_err(|e| failed("temp dir", e))?;
            let file = tmp.0.join(format!("url{n}"));
            let modified = self.b.backend.fetch(url, &file)?;
            if let Some(want) = &spec.checksum {
                let mut f = std::fs::File::open(&file).map_err(|e| failed("download", e))?;
                let mut h = Sha256::new();
                std::io::copy(&mut f, &mut h).map_err(|e| failed("download", e))?;
                let got = format!("sha256:{}", hex::encode(h.finalize()));
                if &got != want {
                    return Err(BuildError::BadRequest(format!(
                        "ADD failed: digest mismatch for {url}: expected {want}, got {got}"
                    )));
                }
            }
            let size = std::fs::metadata(&file)
                .map_err(|e| failed("download", e))?
                .len();
            let name = url
                .split(['?', '#'])
                .next()
                .unwrap_or("")
                .rsplit('/')
                .find(|p| !p.is_empty() && !p.contains(':'))
                .unwrap_or("")
                .to_string();
            let target = if dest_is_dir {
                if name.is_empty() {
                    return Err(BuildError::BadRequest(format!(
                        "cannot determine filename from url: {url}"
                    )));
                }
                join(&dest_rel, &name)
            } else {
                dest_rel.clone()
            };
            entries.push(Entry {
                path: target,
                kind: EntryKind::File(file, size),
                mode: chmod.unwrap_or(0o600),
                uid,
                gid,
                mtime: self.clamp(modified.unwrap_or(0)),
            });
        }
        for h in &spec.heredocs {
            let data = if h.expand {
                let raw = Lexer {
                    raw_quotes: true,
                    raw_escapes: true,
                    ..Lexer::new('\\')
                };
                raw.process_word(&h.content, &env.to_vec())
                    .map_err(|e| BuildError::BadRequest(e.to_string()))?
            } else {
                h.content.clone()
            };
            let target = if dest_is_dir {
                join(&dest_rel, &h.name)
            } else {
                dest_rel.clone()
            };
            entries.push(Entry {
                path: target,
                kind: EntryKind::Inline(data.into_bytes()),
                mode: chmod.unwrap_or(0o644),
                uid,
                gid,
                mtime: self.mtime_default(),
            });
        }
        if dir_target && !dest_rel.is_empty() && !fs.exists(&dest_clean) {
            entries.push(Entry {
                path: dest_rel.clone(),
                kind: EntryKind::Dir,
                mode: 0o755,
                uid,
                gid,
                mtime: self.mtime_default(),
            });
        }
        let first = entries
            .first()
            .map(|e| format!("/{}", e.path))
            .unwrap_or_default();
        self.parent_entries(&fs, &format!("{dest_clean}/x"), &mut entries);
        let _ = first;
        // The cache key: paths, metadata and content of everything copied.
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let mut h = Sha256::new();
        for e in &entries {
            h.update(e.path.as_bytes());
            h.update(format!("\0{:o}\0{}\0{}\0", e.mode, e.uid, e.gid).as_bytes());
            match &e.kind {
                EntryKind::Dir => h.update(b"d"),
                EntryKind::Symlink(t) => {
                    h.update(b"l");
                    h.update(t.to_string_lossy().as_bytes());
                }
                EntryKind::Inline(d) => {
                    h.update(b"f");
                    h.update(Sha256::digest(d));
                }
                EntryKind::File(p, size) => {
                    h.update(format!("f{size}").as_bytes());
                    let mut f = std::fs::File::open(p).map_err(|e| failed("reading source", e))?;
                    let mut fh = Sha256::new();
                    std::io::copy(&mut (&mut f).take(*size), &mut fh)
                        .map_err(|e| failed("reading source", e))?;
                    h.update(fh.finalize());
                }
            }
            h.update(b"\n");
        }
        let digest = hex::encode(h.finalize());
        let kind = if sources.len() == 1 && !dir_target {
            "file"
        } else {
            "dir"
        };
        let created_by = Self::nop(&format!("{cmd} {kind}:{digest} in {dest_raw} "));
        let key = self.cache_key(
            &st.image_id,
            &format!("{created_by}|{}|{:?}", entries.len(), spec.from),
        );
        if self.try_cache(st, &key)? {
            return Ok(());
        }
        let diff = self.write_layer(st, entries)?;
        drop(tmp);
        self.finish_step(st, &key, created_by, Some(diff))
    }

    /// A directory's contents (not the directory itself) under `dest`.
    fn walk_dir(
        &self,
        dir: &Path,
        dest: &str,
        uid: u64,
        gid: u64,
        chmod: Option<u32>,
        out: &mut Vec<Entry>,
    ) -> Result<(), BuildError> {
        let mut stack = vec![(dir.to_path_buf(), dest.to_string())];
        while let Some((d, target)) = stack.pop() {
            let rd = std::fs::read_dir(&d).map_err(|e| failed("reading source", e))?;
            for e in rd {
                let e = e.map_err(|e| failed("reading source", e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let path = e.path();
                let m = std::fs::symlink_metadata(&path).map_err(|e| failed("stat", e))?;
                let t = if target.is_empty() {
                    name.clone()
                } else {
                    format!("{target}/{name}")
                };
                let ft = m.file_type();
                let kind = if ft.is_dir() {
                    stack.push((path.clone(), t.clone()));
                    EntryKind::Dir
                } else if ft.is_symlink() {
                    EntryKind::Symlink(
                        std::fs::read_link(&path).map_err(|e| failed("readlink", e))?,
                    )
                } else if ft.is_file() {
                    EntryKind::File(path.clone(), m.len())
                } else {
                    continue;
                };
                let mode = match (&kind, chmod) {
                    (EntryKind::Symlink(_), _) => 0o777,
                    (_, Some(c)) => c,
                    _ => m.mode() & 0o7777,
                };
                out.push(Entry {
                    path: t,
                    kind,
                    mode,
                    uid,
                    gid,
                    mtime: self.clamp(m.mtime()),
                });
            }
        }
        Ok(())
    }

    /// ADD of a local tar archive: its entries under `dest` (paths confined to it).
    fn unpack_archive(
        &self,
        archive: &Path,
        dest: &str,
        tmp: &Path,
        out: &mut Vec<Entry>,
    ) -> Result<(), BuildError> {
        let r = open_maybe_gz(archive).map_err(|e| failed("reading archive", e))?;
        let mut ar = tar::Archive::new(r);
        let werr =
            |e: std::io::Error| BuildError::BadRequest(format!("ADD failed: reading archive: {e}"));
        let mut files: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
        for (n, e) in ar.entries().map_err(werr)?.enumerate() {
            let mut e = e.map_err(werr)?;
            let p = e.path().map_err(werr)?.into_owned();
            let Some(rel) = clean_rel(&p) else { continue };
            if rel.as_os_str().is_empty() {
                continue;
            }
            let target = if dest.is_empty() {
                rel.to_string_lossy().into_owned()
            } else {
                format!("{dest}/{}", rel.display())
            };
            let h = e.header().clone();
            let mode = h.mode().unwrap_or(0o644) & 0o7777;
            let uid = h.uid().unwrap_or(0);
            let gid = h.gid().unwrap_or(0);
            let mtime = self.clamp(h.mtime().unwrap_or(0) as i64);
            let t = h.entry_type();
            let kind = if t.is_dir() {
                EntryKind::Dir
            } else if t.is_symlink() {
                EntryKind::Symlink(
                    e.link_name()
                        .map_err(werr)?
                        .map(|l| l.into_owned())
                        .unwrap_or_default(),
                )
            } else if t.is_hard_link() {
                let l = e
                    .link_name()
                    .map_err(werr)?
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let Some(src) = clean_rel(&l).and_then(|l| files.get(&l).cloned()) else {
                    continue;
                };
                let size = std::fs::metadata(&src).map(|m| m.len()).unwrap_or(0);
                EntryKind::File(src, size)
            } else if t.is_file() || t == tar::EntryType::Continuous {
                let f = tmp.join(format!("f{n}"));
                let mut w = std::fs::File::create(&f).map_err(|e| failed("temp file", e))?;
                let size = std::io::copy(&mut e, &mut w).map_err(werr)?;
                files.insert(rel.clone(), f.clone());
                EntryKind::File(f, size)
            } else {
                continue;
            };
            out.push(Entry {
                path: target,
                kind,
                mode,
                uid,
                gid,
                mtime,
            });
        }
        Ok(())
    }
}
