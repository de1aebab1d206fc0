//! The builder's [`Backend`]: RUN steps go through the normal container path (create, start,
//! logs, wait, remove), base images through `image_pull`, ADD URLs through reqwest.

use crate::container::wait::WaitCondition;
use crate::{Engine, EngineError, LogsOptions, Transfer};
use berth_api::types::{
    ContainerConfig, ContainerCreateBody, HostConfig, Mount, TmpfsOptions, Ulimit,
};
use berth_build::builder::{Backend, BuildError, Credentials, RunEvent, RunMountKind, RunSpec};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// How a build learns its client is gone.
#[derive(Clone)]
pub(crate) enum Cancel {
    /// The legacy stream's channel: closed once the client is gone.
    Channel(mpsc::Sender<super::BuildMessage>),
    /// BuildKit's: set when the Solve call ends early.
    Flag(Arc<AtomicBool>),
}

impl Cancel {
    fn is_set(&self) -> bool {
        match self {
            Cancel::Channel(tx) => tx.is_closed(),
            Cancel::Flag(f) => f.load(Ordering::Relaxed),
        }
    }
    /// Resolves once the build is cancelled.
    async fn wait(&self) {
        match self {
            Cancel::Channel(tx) => tx.closed().await,
            Cancel::Flag(f) => {
                while !f.load(Ordering::Relaxed) {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

pub(crate) struct EngineBackend {
    pub engine: Engine,
    pub rt: tokio::runtime::Handle,
    pub cancel: Cancel,
}

/// `name=soft[:hard]` (`--ulimit`) as the API's type.
fn ulimit(s: &str) -> Result<Ulimit, BuildError> {
    let bad = || BuildError::BadRequest(format!("invalid ulimit argument: {s}"));
    let (name, v) = s.split_once('=').ok_or_else(bad)?;
    let (soft, hard) = match v.split_once(':') {
        Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
        None => {
            let n = v.parse().map_err(|_| bad())?;
            (n, n)
        }
    };
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

fn create_body(spec: &RunSpec) -> Result<ContainerCreateBody, BuildError> {
    let mounts: Vec<Mount> = spec
        .mounts
        .iter()
        .map(|m| match &m.kind {
            RunMountKind::Bind { source, readonly } => Mount {
                r#type: "bind".into(),
                source: source.to_string_lossy().into_owned(),
                target: m.target.clone(),
                read_only: *readonly,
                ..Default::default()
            },
            RunMountKind::Tmpfs { size } => Mount {
                r#type: "tmpfs".into(),
                target: m.target.clone(),
                tmpfs_options: Some(TmpfsOptions {
                    size_bytes: size.unwrap_or(0),
                    ..Default::default()
                }),
                ..Default::default()
            },
        })
        .collect();
    let ulimits = spec
        .ulimits
        .iter()
        .map(|u| ulimit(u))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ContainerCreateBody {
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
            network_mode: spec.network.as_deref().unwrap_or_default().into(),
            extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
            mounts: (!mounts.is_empty()).then_some(mounts),
            privileged: spec.insecure,
            shm_size: spec.shm_size.unwrap_or(0),
            ulimits: (!ulimits.is_empty()).then_some(ulimits),
            cgroup_parent: spec.cgroup_parent.clone().unwrap_or_default(),
            memory: spec.limits.memory,
            memory_swap: spec.limits.memory_swap,
            cpu_shares: spec.limits.cpu_shares,
            cpu_period: spec.limits.cpu_period,
            cpu_quota: spec.limits.cpu_quota,
            cpuset_cpus: spec.limits.cpuset_cpus.clone(),
            cpuset_mems: spec.limits.cpuset_mems.clone(),
            ..Default::default()
        }),
        networking_config: None,
    })
}

fn user_error(e: EngineError) -> BuildError {
    match e {
        EngineError::InvalidParameter(m) => BuildError::BadRequest(m),
        EngineError::NotFound(m) => BuildError::NotFound(m),
        other => BuildError::Failed(other.to_string()),
    }
}

impl Backend for EngineBackend {
    fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
        auth: Option<&Credentials>,
        out: &mut dyn FnMut(&str),
    ) -> Result<(), BuildError> {
        let auth = auth.map(|c| berth_registry::RegistryAuth {
            username: c.username.clone(),
            password: c.secret.clone(),
            ..Default::default()
        });
        let mut rx =
            self.engine
                .image_pull(reference.to_string(), platform.map(String::from), auth);
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
        let body = create_body(spec)?;
        let e = &self.engine;
        let (id, _) = self
            .rt
            .block_on(e.create_as(None, body, crate::container::Owner::BuildStep))
            .map_err(user_error)?;
        events(RunEvent::Created(&id));
        let be = |x: EngineError| BuildError::Failed(x.to_string());
        // Output is handed to `events` outside the runtime: the callback may block.
        let res: Result<i64, BuildError> = (|| {
            let (waiter, mut rx) = self.rt.block_on(async {
                let waiter = e.wait(&id, WaitCondition::NextExit).await.map_err(be)?;
                e.start(&id).await.map_err(user_error)?;
                let opts = LogsOptions {
                    stdout: true,
                    stderr: true,
                    follow: true,
                    ..Default::default()
                };
                let (_, rx) = e.logs(&id, opts).await.map_err(be)?;
                Ok::<_, BuildError>((waiter, rx))
            })?;
            // A cancelled build kills the step (the logs then end).
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            let cancel = self.cancel.clone();
            let (engine, cid) = (e.clone(), id.clone());
            self.rt.spawn(async move {
                tokio::select! {
                    _ = cancel.wait() => { let _ = engine.kill(&cid, Some("KILL")).await; }
                    _ = done_rx => {}
                }
            });
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
            let code = self.rt.block_on(waiter);
            let _ = done_tx.send(());
            if self.cancel.is_set() {
                return Err(BuildError::Cancelled);
            }
            Ok(code)
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
        self.cancel.is_set()
    }

    fn remove(&self, container_id: &str) {
        if let Err(e) = self
            .rt
            .block_on(self.engine.remove(container_id, true, true))
        {
            tracing::warn!("removing build container {container_id}: {e}");
        }
    }

    fn keep(&self, container_id: &str) {
        let kept = self
            .engine
            .lookup(container_id)
            .and_then(|c| Ok(c.update(|r| r.build_step = false)?));
        if let Err(e) = kept {
            tracing::warn!("keeping failed build container {container_id}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_parse() {
        let u = ulimit("nofile=1024:2048").expect("ok");
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        assert_eq!(ulimit("nproc=10").expect("ok").hard, 10);
        assert!(ulimit("nofile").is_err());
    }
}
