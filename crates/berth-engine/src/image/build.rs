//! `POST /build`: the engine's side of the builder. It unpacks the context, runs the
//! `berth-build` builder on a blocking thread, and implements its [`Backend`]: RUN steps go
//! through the normal container path (create, start, logs, wait, remove), base images through
//! `image_pull`.

use std::io::Read;

use berth_api::types::{ContainerConfig, ContainerCreateBody, HostConfig};
use berth_build::builder::{Backend, BuildError, BuildOptions, Builder, Output, RunEvent, RunSpec};
use tokio::sync::mpsc;

use crate::container::wait::WaitCondition;
use crate::{Engine, EngineError, LogsOptions, Transfer};

/// One message of the build's JSON stream.
pub enum BuildMessage {
    Stream(String),
    Aux(String),
    Failed(BuildError),
}

struct EngineBackend {
    engine: Engine,
    rt: tokio::runtime::Handle,
    /// The build's message channel: closed once the client is gone.
    tx: mpsc::Sender<BuildMessage>,
}

impl Backend for EngineBackend {
    fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
        out: &mut dyn FnMut(&str),
    ) -> Result<(), BuildError> {
        let mut rx =
            self.engine
                .image_pull(reference.to_string(), platform.map(String::from), None);
        while let Some(t) = rx.blocking_recv() {
            match t {
                Transfer::Message(m) => {
                    if m.get("progressDetail")
                        .and_then(|p| p.get("current"))
                        .is_some()
                    {
                        continue;
                    }
                    if let Some(s) = m.get("status").and_then(|s| s.as_str()) {
                        match m.get("id").and_then(|i| i.as_str()) {
                            Some(id) => out(&format!("{id}: {s}")),
                            None => out(s),
                        }
                    }
                }
                Transfer::Failed(e) => {
                    return Err(match e {
                        EngineError::NotFound(m) => BuildError::NotFound(m),
                        other => BuildError::Failed(other.to_string()),
                    })
                }
            }
        }
        Ok(())
    }

    fn run(
        &self,
        spec: &RunSpec,
        events: &mut dyn FnMut(RunEvent<'_>),
    ) -> Result<(String, i64), BuildError> {
        let body = ContainerCreateBody {
            config: ContainerConfig {
                image: spec.image_id.clone(),
                cmd: Some(spec.cmd.clone()),
                entrypoint: Some(Vec::new()),
                env: Some(spec.env.clone()),
                user: spec.user.clone(),
                working_dir: spec.workdir.clone(),
                attach_stdout: true,
                attach_stderr: true,
                ..Default::default()
            },
            host_config: Some(HostConfig {
                network_mode: spec.network.clone().unwrap_or_default(),
                extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
                ..Default::default()
            }),
            networking_config: None,
        };
        let e = &self.engine;
        let be = |x: EngineError| BuildError::Failed(x.to_string());
        let (id, _) = self
            .rt
            .block_on(e.create_as(None, body, crate::container::Owner::BuildStep))
            .map_err(be)?;
        events(RunEvent::Created(&id));
        // Output is handed to `events` outside the runtime: the callback may block.
        let res: Result<i64, BuildError> = (|| {
            let (waiter, mut rx) = self.rt.block_on(async {
                let waiter = e.wait(&id, WaitCondition::NextExit).await.map_err(be)?;
                e.start(&id).await.map_err(be)?;
                let opts = LogsOptions {
                    stdout: true,
                    stderr: true,
                    follow: true,
                    ..Default::default()
                };
                let (_, rx) = e.logs(&id, opts).await.map_err(be)?;
                Ok::<_, BuildError>((waiter, rx))
            })?;
            let mut demux = berth_api::stdcopy::Demuxer::new();
            while let Some(chunk) = rx.blocking_recv() {
                demux.push(&chunk);
                while let Ok(Some((kind, payload))) = demux.next_frame() {
                    if matches!(kind, berth_api::stdcopy::StreamKind::Stderr) {
                        events(RunEvent::Stderr(&payload));
                    } else {
                        events(RunEvent::Output(&payload));
                    }
                }
            }
            Ok(self.rt.block_on(waiter))
        })();
        match res {
            Ok(code) => Ok((id, code)),
            Err(err) => {
                self.remove(&id);
                Err(err)
            }
        }
    }

    fn fetch(&self, url: &str, dest: &std::path::Path) -> Result<Option<i64>, BuildError> {
        let fail = |m: String| BuildError::Failed(format!("ADD failed: {m}"));
        self.rt.block_on(async {
            let client = reqwest::Client::builder()
                .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| fail(e.to_string()))?;
            let mut resp = client
                .get(url)
                .send()
                .await
                .map_err(|e| fail(format!("failed to GET {url}: {e}")))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(fail(format!(
                    "failed to GET {url} with status {status}: {}",
                    status.canonical_reason().unwrap_or("")
                )));
            }
            let modified = resp
                .headers()
                .get("last-modified")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
                .map(|t| t.timestamp());
            let mut f = tokio::fs::File::create(dest)
                .await
                .map_err(|e| fail(e.to_string()))?;
            use tokio::io::AsyncWriteExt;
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| fail(format!("failed to GET {url}: {e}")))?
            {
                f.write_all(&chunk).await.map_err(|e| fail(e.to_string()))?;
            }
            f.flush().await.map_err(|e| fail(e.to_string()))?;
            Ok(modified)
        })
    }

    fn cancelled(&self) -> bool {
        self.tx.is_closed()
    }

    fn remove(&self, container_id: &str) {
        if let Err(e) = self
            .rt
            .block_on(self.engine.remove(container_id, true, true))
        {
            tracing::warn!("removing build container {container_id}: {e}");
        }
    }
}

impl Engine {
    /// Runs a build of the context tar `context`; messages come on the returned channel.
    pub fn build(
        &self,
        mut context: Box<dyn Read + Send>,
        opts: BuildOptions,
    ) -> mpsc::Receiver<BuildMessage> {
        let (tx, rx) = mpsc::channel(256);
        let engine = self.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let root = engine.config().data_root.clone();
            let tmp = root.join("tmp");
            let dir = tmp.join(format!("build-{}", crate::util::new_id()));
            let result = (|| {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| BuildError::Failed(format!("creating context dir: {e}")))?;
                berth_build::context::extract(&mut context, &dir)
                    .map_err(BuildError::BadRequest)?;
                let store = engine.images();
                let backend = EngineBackend {
                    engine: engine.clone(),
                    rt,
                    tx: tx.clone(),
                };
                let builder = Builder {
                    store: &store,
                    backend: &backend,
                    cache_dir: root.join("build-cache"),
                    parents_dir: root.join("build-parents"),
                    tmp_dir: tmp.clone(),
                };
                let mut out = |o: Output| {
                    let m = match o {
                        Output::Stream(s) => BuildMessage::Stream(s),
                        Output::Aux(id) => BuildMessage::Aux(id),
                    };
                    let _ = tx.blocking_send(m);
                };
                builder.build(&dir, &opts, &mut out)
            })();
            let _ = std::fs::remove_dir_all(&dir);
            if let Err(e) = result {
                let _ = tx.blocking_send(BuildMessage::Failed(e));
            }
        });
        rx
    }

    /// `POST /build/prune`: forgets the build cache index. Returns the bytes reclaimed.
    pub async fn build_prune(&self) -> crate::Result<(Vec<String>, u64)> {
        let dir = self.config().data_root.join("build-cache");
        tokio::task::spawn_blocking(move || {
            let mut ids = Vec::new();
            let mut bytes = 0u64;
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten().filter(|e| e.path().is_file()) {
                    bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                    ids.push(e.file_name().to_string_lossy().into_owned());
                    let _ = std::fs::remove_file(e.path());
                }
            }
            Ok((ids, bytes))
        })
        .await
        .map_err(EngineError::internal)?
    }
}

impl Engine {
    /// Untagged images that are the parent of a build step's image (hidden by `images`
    /// without `-a`, as Docker hides intermediate images).
    pub(crate) fn intermediate_parents(&self) -> std::collections::BTreeSet<String> {
        berth_build::builder::parent_ids(&self.config().data_root.join("build-parents"))
    }

    /// Records `parent` as the parent image of `child` (`docker commit`), in the file the
    /// builder keeps for its steps' images.
    pub(crate) fn record_parent(&self, child: &str, parent: &str) {
        let dir = self.config().data_root.join("build-parents");
        let name = child.strip_prefix("sha256:").unwrap_or(child);
        let _ = std::fs::create_dir_all(&dir);
        let _ = crate::util::write_atomic(&dir.join(name), parent.as_bytes());
    }

    /// The parent image id of `id` (`Parent` in image inspect), or "" when it has none.
    pub(crate) fn image_parent(&self, id: &str) -> String {
        let name = id.strip_prefix("sha256:").unwrap_or(id);
        std::fs::read_to_string(self.config().data_root.join("build-parents").join(name))
            .map(|p| p.trim().to_string())
            .unwrap_or_default()
    }
}
