//! The whole build: the Dockerfile parsed, the global ARGs, the stages the target needs, run in
//! order (legacy) or at once where independent (BuildKit), then the result (squash, tags).

use super::stage::StageRun;
use super::util::{expand, failed, shell_quote, short};
use super::{BuildError, BuildInput, BuildOptions, Builder, NamedContext, Progress, Session};
use crate::instructions::{parse_stages, Command, CopySpec, Kind, Stages};
use crate::parser;
use crate::shell::Lexer;
use berth_image::Reference;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

pub(super) const PROXY_ARGS: &[&str] = &[
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

/// A finished stage.
#[derive(Clone, Debug)]
pub(super) struct StageResult {
    pub image: String,
    /// Its FROM image (`None` for scratch): what `--squash` merges onto.
    pub base: Option<String>,
}

/// A build's shared state; stages running at once share it.
pub(super) struct Run<'b, 'a> {
    pub b: &'b Builder<'a>,
    pub opts: &'b BuildOptions,
    pub context: &'b Path,
    pub session: Option<&'b dyn Session>,
    pub progress: &'b dyn Progress,
    pub stages: Stages,
    /// The Dockerfile's escape token (`# escape=`).
    pub escape: char,
    /// The Dockerfile's name, for error messages.
    pub df_name: String,
    /// Global ARGs (before the first FROM) as `k=v`, for FROM lines.
    pub meta_env: Vec<String>,
    pub meta_values: BTreeMap<String, Option<String>>,
    /// `SOURCE_DATE_EPOCH`: clamps mtimes and `created`.
    pub epoch: Option<i64>,
    /// With `cache_from`: the images a cache hit may come from.
    pub cache_sources: Option<BTreeSet<String>>,
    /// Legacy `Step N/M` numbering.
    pub step: AtomicUsize,
    pub total: AtomicUsize,
    /// Build args some ARG consumed.
    pub consumed: Mutex<BTreeSet<String>>,
    /// Finished stages by index; `Err` for a stage that failed.
    results: Mutex<BTreeMap<usize, Result<StageResult, ()>>>,
    results_cv: Condvar,
    /// Set when a stage failed: the others stop at their next step.
    pub failed: AtomicBool,
    first_error: Mutex<Option<BuildError>>,
    /// Makes this build's vertex ids unique.
    pub nonce: String,
    /// The stages this build runs.
    planned: std::sync::OnceLock<BTreeSet<usize>>,
}

/// The `# syntax=` directive: Berth's own Dockerfile frontend stands for docker/dockerfile
/// (any version); other frontends are refused.
fn check_syntax(syntax: &str) -> Result<(), BuildError> {
    let s = syntax.trim();
    let name = s.split('@').next().unwrap_or(s);
    let repo = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    };
    let repo = repo
        .strip_prefix("docker.io/")
        .or_else(|| repo.strip_prefix("index.docker.io/"))
        .unwrap_or(repo);
    if matches!(repo, "docker/dockerfile" | "docker/dockerfile-upstream") {
        return Ok(());
    }
    Err(BuildError::BadRequest(format!(
        "unsupported frontend {s:?} in the syntax directive: this builder only runs its own Dockerfile frontend (docker/dockerfile)"
    )))
}

impl<'b, 'a> Run<'b, 'a> {
    pub fn new(
        b: &'b Builder<'a>,
        input: &'b BuildInput<'b>,
        opts: &'b BuildOptions,
        progress: &'b dyn Progress,
    ) -> Result<Self, BuildError> {
        let name = input.dockerfile_name;
        let base_name = Path::new(name)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string());
        let df = parser::parse(input.dockerfile).map_err(|e| {
            BuildError::BadRequest(format!(
                "{base_name} parse error line {}: {}",
                e.start_line, e.message
            ))
        })?;
        if let Some(s) = &df.syntax {
            check_syntax(s)?;
        }
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
            b,
            opts,
            context: input.context,
            session: input.session,
            progress,
            stages,
            escape: df.escape,
            df_name: base_name,
            meta_env: Vec::new(),
            meta_values: BTreeMap::new(),
            epoch,
            cache_sources: (!opts.cache_from.is_empty()).then(|| b.cache_sources(opts)),
            step: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            consumed: Mutex::new(BTreeSet::new()),
            results: Mutex::new(BTreeMap::new()),
            results_cv: Condvar::new(),
            failed: AtomicBool::new(false),
            first_error: Mutex::new(None),
            nonce: super::util::unique_suffix(),
            planned: std::sync::OnceLock::new(),
        };
        run.global_args()?;
        Ok(run)
    }

    pub fn lexer(&self) -> Lexer {
        Lexer::new(self.escape)
    }

    /// Global ARGs first: FROM lines may use them.
    fn global_args(&mut self) -> Result<(), BuildError> {
        let lx = self.lexer();
        for c in &self.stages.meta_args {
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
                    self.meta_values.insert(k.clone(), v);
                }
            }
        }
        Ok(())
    }

    pub fn say(&self, s: &str) {
        self.progress.text(s);
    }

    /// The stage a name refers to (a stage name or index) when it is defined before `before`.
    pub fn stage_ref(&self, name: &str, before: usize) -> Option<usize> {
        self.stages.find(name).filter(|&j| j < before)
    }

    /// Stages the target depends on (through FROM, COPY --from and RUN --mount from=), in
    /// order.
    fn needed(&self, target: usize) -> Result<Vec<usize>, BuildError> {
        let mut need = BTreeSet::new();
        let mut todo = vec![target];
        let lx = self.lexer();
        while let Some(i) = todo.pop() {
            if !need.insert(i) {
                continue;
            }
            let s = &self.stages.stages[i];
            let base = expand(&lx, &s.base, &self.meta_env)?;
            if let Some(j) = self.stage_ref(&base, i) {
                if self.stages.stages[j].name.is_some() {
                    todo.push(j);
                }
            }
            for c in &s.commands {
                let froms: Vec<String> = match &c.kind {
                    Kind::Copy(CopySpec { from: Some(f), .. }) => vec![f.clone()],
                    Kind::Run { mounts, .. } => mounts
                        .iter()
                        .filter_map(|m| super::mounts::mount_from(m))
                        .collect(),
                    _ => Vec::new(),
                };
                for f in froms {
                    if let Some(j) = self.stage_ref(&f, i) {
                        todo.push(j);
                    }
                }
            }
        }
        Ok(need.into_iter().collect())
    }

    pub fn go(&self) -> Result<String, BuildError> {
        let target = match &self.opts.target {
            Some(t) if !t.is_empty() => self.stages.find(t).ok_or_else(|| {
                BuildError::BadRequest(format!("failed to reach build target {t} in Dockerfile"))
            })?,
            _ => self.stages.stages.len() - 1,
        };
        let needed = self.needed(target)?;
        let _ = self.planned.set(needed.iter().copied().collect());
        let labels_step = !self.opts.labels.is_empty();
        self.total.store(
            self.stages.meta_args.len()
                + needed
                    .iter()
                    .map(|&i| 1 + self.stages.stages[i].commands.len())
                    .sum::<usize>()
                + usize::from(labels_step),
            Ordering::Relaxed,
        );
        for c in &self.stages.meta_args {
            self.begin_step(&c.original)?;
        }
        let extra = if labels_step {
            vec![self.labels_command()]
        } else {
            Vec::new()
        };
        let stage_extra = |i: usize| if i == target { &extra[..] } else { &[][..] };
        if self.opts.parallel && needed.len() > 1 {
            std::thread::scope(|s| {
                for &i in &needed {
                    let ex = stage_extra(i);
                    s.spawn(move || self.finish_stage(i, StageRun::new(self, i).run(ex)));
                }
            });
        } else {
            for &i in &needed {
                self.finish_stage(i, StageRun::new(self, i).run(stage_extra(i)));
                if self.failed.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
        if let Some(e) = self.first_error.lock().map_err(|_| poisoned())?.take() {
            return Err(e);
        }
        let res = self.stage_result(target, usize::MAX)?;
        self.warn_unused_args();
        let mut last = res.image;
        if self.opts.squash {
            last = self
                .b
                .store
                .squash(&last, res.base.as_deref())
                .map_err(|e| failed("squashing", e))?;
        }
        self.progress.aux(&last);
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

    /// The `--label`s as a LABEL instruction after the target's own (the legacy builder
    /// shows it as a step).
    fn labels_command(&self) -> Command {
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
        Command {
            kind: Kind::Label(
                pairs
                    .iter()
                    .map(|(k, v)| (shell_quote(k), shell_quote(v)))
                    .collect(),
            ),
            original: format!("LABEL {text}"),
            line: 0,
        }
    }

    fn warn_unused_args(&self) {
        let consumed = self.consumed.lock().map(|c| c.clone()).unwrap_or_default();
        let unused: Vec<String> = self
            .opts
            .build_args
            .keys()
            .filter(|k| {
                !consumed.contains(*k)
                    && !self.meta_values.contains_key(*k)
                    && !PROXY_ARGS.contains(&k.as_str())
                    && k.as_str() != "SOURCE_DATE_EPOCH"
                    && !k.starts_with("BUILDKIT_")
            })
            .cloned()
            .collect();
        if !unused.is_empty() {
            self.progress.warning(&format!(
                "[Warning] One or more build-args [{}] were not consumed",
                unused.join(" ")
            ));
        }
    }

    /// Records a stage's outcome and wakes the stages waiting for it.
    fn finish_stage(&self, idx: usize, r: Result<StageResult, BuildError>) {
        let entry = match r {
            Ok(res) => Ok(res),
            Err(e) => {
                if let Ok(mut first) = self.first_error.lock() {
                    // A stage stopped because another failed reports nothing of its own.
                    let secondary = matches!(e, BuildError::Cancelled)
                        && self.failed.load(Ordering::Relaxed)
                        && !self.b.backend.cancelled();
                    if first.is_none() && !secondary {
                        *first = Some(e);
                    }
                }
                self.failed.store(true, Ordering::Relaxed);
                Err(())
            }
        };
        if let Ok(mut m) = self.results.lock() {
            m.insert(idx, entry);
        }
        self.results_cv.notify_all();
    }

    /// A finished stage's result, waiting for it while it runs (stages run at once).
    pub fn stage_result(&self, idx: usize, from: usize) -> Result<StageResult, BuildError> {
        let planned = self.planned.get().is_some_and(|p| p.contains(&idx));
        let mut m = self.results.lock().map_err(|_| poisoned())?;
        loop {
            match m.get(&idx) {
                Some(Ok(r)) => return Ok(r.clone()),
                Some(Err(())) => return Err(BuildError::Cancelled),
                None if self.failed.load(Ordering::Relaxed) => return Err(BuildError::Cancelled),
                None if !planned || !self.opts.parallel || from == usize::MAX => {
                    let name = self.stages.stages[idx]
                        .name
                        .clone()
                        .unwrap_or_else(|| idx.to_string());
                    return Err(BuildError::Failed(format!("stage {name} was not built")));
                }
                None => m = self.results_cv.wait(m).map_err(|_| poisoned())?,
            }
        }
    }

    /// Counts and shows a legacy step (`Step N/M : …`); stops a cancelled build.
    pub fn begin_step(&self, original: &str) -> Result<(), BuildError> {
        if self.b.backend.cancelled() || self.failed.load(Ordering::Relaxed) {
            return Err(BuildError::Cancelled);
        }
        let n = self.step.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.total.load(Ordering::Relaxed);
        self.say(&format!("Step {n}/{total} : {original}\n"));
        Ok(())
    }

    /// A named context given for `name`, unless a stage has that name.
    pub fn named_context(&self, name: &str, before: usize) -> Option<&NamedContext> {
        if self.stage_ref(name, before).is_some() {
            return None;
        }
        self.opts.named_contexts.get(name)
    }
}

fn poisoned() -> BuildError {
    BuildError::Failed("build state lock poisoned".into())
}
