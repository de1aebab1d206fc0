//! One stage: its base image, the base's ONBUILD triggers, then its instructions. Also the
//! stage's view of BuildKit's vertexes (`[stage 2/4] RUN …`).

use super::imagefs::ImageFs;
use super::plan::{Run, StageResult};
use super::util::{expand, failed, sha_hex, short};
use super::{BuildError, NamedContext, Vertex, VertexState};
use crate::instructions::{parse_stages, Command, Kind, Stage};
use crate::parser;
use berth_image::{ContainerConfig, ImageConfig, Reference};
use std::collections::BTreeMap;

/// Per-stage build state.
pub(super) struct StageState {
    pub image_id: Option<String>,
    pub config: ImageConfig,
    /// Declared ARGs and their values.
    pub args: BTreeMap<String, Option<String>>,
    pub cmd_set: bool,
}

impl StageState {
    pub fn cc(&mut self) -> &mut ContainerConfig {
        self.config.config.get_or_insert_with(Default::default)
    }
    pub fn env_list(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
    }
    /// The variables substitution sees: ARG values, overridden by ENV.
    pub fn subst_env(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
        v.extend(self.env_list());
        v
    }
    pub fn workdir(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }
    pub fn shell(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.shell.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }
}

/// One stage being built.
pub(super) struct StageRun<'r, 'b, 'a> {
    pub run: &'r Run<'b, 'a>,
    pub idx: usize,
    pub st: StageState,
    /// The step's vertex id while a BuildKit-visible step runs, else empty.
    pub vertex: String,
    vertex_name: String,
    /// BuildKit's numbering: `[name i/n]`.
    vertex_prefix: String,
    vertex_index: usize,
    vertex_total: usize,
    /// `--no-cache`, or this stage is in `--no-cache-filter`.
    pub no_cache: bool,
}

/// What BuildKit counts as a stage's numbered steps: FROM an image, and every RUN, COPY,
/// ADD and WORKDIR.
fn vertex_total(stage: &Stage, base_is_image: bool) -> usize {
    usize::from(base_is_image)
        + stage
            .commands
            .iter()
            .filter(|c| matches!(c.kind, Kind::Run { .. } | Kind::Copy(_) | Kind::Workdir(_)))
            .count()
}

impl<'r, 'b, 'a> StageRun<'r, 'b, 'a> {
    pub fn new(run: &'r Run<'b, 'a>, idx: usize) -> Self {
        let stage = &run.stages.stages[idx];
        let name = match &stage.name {
            _ if run.stages.stages.len() == 1 => String::new(),
            Some(n) => n.clone(),
            None => format!("stage-{idx}"),
        };
        let no_cache = run.opts.no_cache
            || stage
                .name
                .as_ref()
                .is_some_and(|n| run.opts.no_cache_stages.iter().any(|s| s == n));
        StageRun {
            run,
            idx,
            st: StageState {
                image_id: None,
                config: ImageConfig::default(),
                args: BTreeMap::new(),
                cmd_set: false,
            },
            vertex: String::new(),
            vertex_name: String::new(),
            vertex_prefix: name,
            vertex_index: 0,
            vertex_total: 0,
            no_cache,
        }
    }

    pub fn say(&self, s: &str) {
        self.run.say(s);
    }

    /// A vertex that is not a numbered step (`[internal] load metadata for …`).
    pub fn plain_vertex(&self, name: &str) -> String {
        let id = format!(
            "sha256:{}",
            sha_hex(format!("{}\n{}\n{name}", self.run.nonce, self.idx).as_bytes())
        );
        self.run.progress.vertex(&Vertex {
            id: id.clone(),
            name: name.to_string(),
            state: VertexState::Started,
        });
        id
    }

    pub fn end_vertex(&self, id: &str, name: &str, state: VertexState) {
        self.run.progress.vertex(&Vertex {
            id: id.to_string(),
            name: name.to_string(),
            state,
        });
    }

    /// Starts the step's vertex, named as BuildKit names it: the instruction with its
    /// variables expanded (quotes gone), numbered within the stage.
    pub fn start_vertex(&mut self, text: &str) {
        self.vertex_index += 1;
        let width = self.vertex_total.max(1).to_string().len();
        let num = format!(
            "{:>width$}/{}",
            self.vertex_index,
            self.vertex_total,
            width = width
        );
        let name = if self.vertex_total == 0 {
            text.to_string()
        } else if self.vertex_prefix.is_empty() {
            format!("[{num}] {text}")
        } else {
            format!("[{} {num}] {text}", self.vertex_prefix)
        };
        self.vertex = format!(
            "sha256:{}",
            sha_hex(
                format!(
                    "{}\n{}\n{}\n{name}",
                    self.run.nonce, self.idx, self.vertex_index
                )
                .as_bytes()
            )
        );
        self.vertex_name = name.clone();
        self.run.progress.vertex(&Vertex {
            id: self.vertex.clone(),
            name,
            state: VertexState::Started,
        });
    }

    /// Ends the running step's vertex (if any).
    pub fn finish_vertex(&mut self, state: VertexState) {
        if self.vertex.is_empty() {
            return;
        }
        self.run.progress.vertex(&Vertex {
            id: std::mem::take(&mut self.vertex),
            name: std::mem::take(&mut self.vertex_name),
            state,
        });
    }

    /// The instruction as BuildKit shows it: variables expanded, quotes removed, the
    /// keyword upper-cased.
    fn display(&self, c: &Command) -> String {
        let env = self.st.subst_env();
        let first = c.original.lines().next().unwrap_or("");
        let text = self
            .run
            .lexer()
            .process_word(first, &env)
            .unwrap_or_else(|_| first.to_string());
        match text.split_once(' ') {
            Some((k, rest)) => format!("{} {rest}", k.to_ascii_uppercase()),
            None => text.to_ascii_uppercase(),
        }
    }

    pub fn run(mut self, extra: &[Command]) -> Result<StageResult, BuildError> {
        let stage = self.run.stages.stages[self.idx].clone();
        let r = self.run_stage(&stage, extra);
        if let Err(e) = &r {
            self.finish_vertex(VertexState::Failed(e.buildkit_message()));
        }
        r
    }

    fn run_stage(&mut self, stage: &Stage, extra: &[Command]) -> Result<StageResult, BuildError> {
        self.run.begin_step(&stage.original)?;
        let lx = self.run.lexer();
        let base = expand(&lx, &stage.base, &self.run.meta_env)?;
        if base.is_empty() {
            return Err(BuildError::BadRequest(format!(
                "base name ({}) should not be blank",
                stage.base
            )));
        }
        let platform = stage
            .platform
            .clone()
            .or_else(|| self.run.opts.platform.clone());
        let base_stage = self
            .run
            .stage_ref(&base, self.idx)
            .filter(|&j| self.run.stages.stages[j].name.is_some());
        let is_image = !base.eq_ignore_ascii_case("scratch") && base_stage.is_none();
        self.vertex_total = vertex_total(stage, is_image);
        let base_id = self.base_image(&base, base_stage, platform.as_deref())?;
        let config = match &base_id {
            Some(id) => {
                self.say(&format!(" ---> {}\n", short(id)));
                self.run
                    .b
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
        self.st.image_id = base_id.clone();
        self.st.config = config;
        // ONBUILD triggers of the base image run first.
        let triggers = self
            .st
            .config
            .config
            .as_mut()
            .and_then(|c| c.on_build.take())
            .unwrap_or_default();
        if !triggers.is_empty() {
            self.run_triggers(&triggers)?;
        }
        for c in stage.commands.iter().chain(extra) {
            self.run.begin_step(&c.original)?;
            if matches!(c.kind, Kind::Run { .. } | Kind::Copy(_) | Kind::Workdir(_)) {
                let text = self.display(c);
                self.start_vertex(&text);
            }
            self.dispatch(c).map_err(|e| match e {
                // Word-processing errors (quotes, `${VAR?}`) name the line.
                BuildError::BadRequest(m) if m.starts_with("failed to process") => {
                    BuildError::BadRequest(format!("{} line {}: {m}", self.run.df_name, c.line))
                }
                e => e,
            })?;
            self.finish_vertex(VertexState::Done);
        }
        let image = match self.st.image_id.clone() {
            Some(id) => id,
            // A scratch stage without instructions: an image with no layers.
            None => self.store_config()?,
        };
        Ok(StageResult {
            image,
            base: base_id,
        })
    }

    fn run_triggers(&mut self, triggers: &[String]) -> Result<(), BuildError> {
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
            let s = parse_stages(&fake)
                .map_err(|e| BuildError::BadRequest(format!("ONBUILD trigger: {}", e.message)))?;
            for c in &s.stages[0].commands {
                self.dispatch(c)?;
            }
        }
        Ok(())
    }

    fn base_image(
        &mut self,
        base: &str,
        base_stage: Option<usize>,
        platform: Option<&str>,
    ) -> Result<Option<String>, BuildError> {
        if base.eq_ignore_ascii_case("scratch") {
            return Ok(None);
        }
        if let Some(j) = base_stage {
            return self.run.stage_result(j, self.idx).map(|r| Some(r.image));
        }
        let base = match self.run.named_context(base, self.idx) {
            Some(NamedContext::Image(r)) => r.clone(),
            Some(NamedContext::Dir(_)) => {
                return Err(BuildError::BadRequest(format!(
                    "a local named context cannot be a stage's base: FROM {base}"
                )))
            }
            None => base.to_string(),
        };
        let full = Reference::parse(&base)
            .map(|r| r.full())
            .unwrap_or_else(|_| base.clone());
        let meta_name = format!("[internal] load metadata for {full}");
        let meta = self.plain_vertex(&meta_name);
        let id = self.image(&base, platform);
        self.end_vertex(
            &meta,
            &meta_name,
            match &id {
                Ok(_) => VertexState::Done,
                Err(e) => VertexState::Failed(e.buildkit_message()),
            },
        );
        let id = id?;
        self.start_vertex(&format!("FROM {full}"));
        self.finish_vertex(VertexState::Done);
        Ok(Some(id))
    }

    /// An image by name: the local store first, the registry otherwise (or always with
    /// --pull), with the client's login for its registry when a session lends one.
    pub fn image(&mut self, name: &str, platform: Option<&str>) -> Result<String, BuildError> {
        let b = self.run.b;
        let local = b.store.resolve_id(name).ok();
        if let (Some(id), false) = (&local, self.run.opts.pull) {
            return Ok(id.clone());
        }
        let auth = self
            .run
            .session
            .and_then(|s| s.credentials(&super::registry_host(name)));
        let mut lines = Vec::new();
        let r = b.backend.pull(name, platform, auth.as_ref(), &mut |l| {
            lines.push(l.to_string())
        });
        for l in lines {
            self.say(&format!("{l}\n"));
        }
        if let Err(e) = r {
            if let Some(id) = local {
                return Ok(id);
            }
            return Err(e);
        }
        b.store.resolve_id(name).map_err(|_| {
            BuildError::NotFound(format!(
                "pull access denied for {name}, repository does not exist or may require 'docker login'"
            ))
        })
    }

    /// The image of a stage or named image for `COPY --from` / `--mount=from=`.
    pub fn source_image(&mut self, from: &str, what: &str) -> Result<String, BuildError> {
        match self.run.stage_ref(from, self.idx) {
            Some(j) => self
                .run
                .stage_result(j, self.idx)
                .map(|r| r.image)
                .map_err(|e| match e {
                    BuildError::Failed(_) => BuildError::BadRequest(format!(
                        "invalid from flag value {from}: stage not built before this one"
                    )),
                    e => e,
                }),
            None if self.run.stages.find(from).is_some() => Err(BuildError::BadRequest(format!(
                "{what} from stage {from:?}: it needs to be defined before the current stage"
            ))),
            None => match self.run.named_context(from, self.idx) {
                Some(NamedContext::Image(r)) => {
                    let r = r.clone();
                    self.image(&r, None)
                }
                _ => self.image(from, None),
            },
        }
    }

    pub fn image_fs(&self) -> Result<ImageFs, BuildError> {
        let dirs = match &self.st.image_id {
            Some(id) if !self.st.config.rootfs.diff_ids.is_empty() => self
                .run
                .b
                .store
                .image_layer_dirs(id)
                .map_err(|e| failed("reading image layers", e))?,
            _ => Vec::new(),
        };
        Ok(ImageFs { dirs })
    }

    pub fn ensure_image(&mut self) -> Result<String, BuildError> {
        if let Some(id) = &self.st.image_id {
            return Ok(id.clone());
        }
        let id = self.store_config()?;
        self.st.image_id = Some(id.clone());
        Ok(id)
    }

    /// Dispatches one instruction.
    fn dispatch(&mut self, c: &Command) -> Result<(), BuildError> {
        match &c.kind {
            Kind::Run {
                args,
                json,
                heredocs,
                network,
                mounts,
                security,
            } => self.run_step(
                args,
                *json,
                heredocs,
                network.clone(),
                mounts,
                security.as_deref(),
            ),
            Kind::Copy(spec) => {
                let env = self.st.subst_env();
                self.copy_step(spec, &env)
            }
            _ => self.meta(c),
        }
    }
}
