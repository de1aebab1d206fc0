//! `start`: mount the rootfs, set up networking and mounts, spawn the shim and run the process.
//! Every failure after the checks goes through one rollback point (`fail_start`).

use std::sync::Arc;

use berth_runtime::shim::ShimStarted;

use crate::container::{ContainerRecord, Entry, Status};
use crate::error::{EngineError, Result, StartFailure};
use crate::util::now_rfc3339;
use crate::Engine;

impl Engine {
    pub async fn start(&self, name: &str) -> Result<()> {
        let c = self.lookup(name)?;
        let _g = c.op.lock().await;
        let res = self.start_locked(&c).await;
        if res.is_err() {
            let rec = c.snapshot();
            if rec.host_config.auto_remove && !rec.state.status.is_running() {
                drop(_g);
                let _ = self.remove(&rec.id, true, true).await;
            }
        }
        res
    }

    /// The caller holds `c.op`.
    pub(crate) async fn start_locked(&self, c: &Arc<Entry>) -> Result<()> {
        let rec = c.snapshot();
        match rec.state.status {
            Status::Running => return Err(EngineError::NotModified),
            Status::Paused => {
                return Err(EngineError::Conflict(
                    "cannot start a paused container, try unpause instead".into(),
                ))
            }
            Status::Removing | Status::Dead => {
                return Err(EngineError::Conflict(
                    "container is marked for removal and cannot be started".into(),
                ))
            }
            _ => {}
        }
        let mut spawned = None;
        let before = rec.state.clone();
        match self.start_inner(c, rec, &mut spawned).await {
            Ok(()) => Ok(()),
            Err(e) => self.fail_start(c, e, spawned, before).await,
        }
    }

    /// Everything a start does once its checks passed. Any error returns to `start_locked`,
    /// which rolls back in one place; `spawned` tells it which shim is up, if one is.
    async fn start_inner(
        &self,
        c: &Arc<Entry>,
        rec: ContainerRecord,
        spawned: &mut Option<ShimStarted>,
    ) -> Result<()> {
        let t0 = std::time::Instant::now();
        let runtime_dir = self.runtime_dir(&c.id);
        // Leftovers of a previous run (its shim is gone once the container exited).
        self.runtime()
            .cleanup(&runtime_dir, &self.state_root(), &c.id);
        std::fs::create_dir_all(&runtime_dir)?;

        let images = self.images();
        let cid = c.id.clone();
        let rootfs = tokio::task::spawn_blocking(move || images.mount_snapshot(&cid))
            .await
            .map_err(EngineError::internal)?
            .map_err(crate::image::image_err)?;
        let spec = match &rec.pod {
            Some(pc) => {
                let run = self.pod_run_config(&rec, pc, rootfs)?;
                berth_runtime::spec::build_spec(&run).map_err(start_error)?
            }
            None => self.docker_spec(c, &rec, rootfs).await?,
        };
        let t_mount = t0.elapsed();
        let opts = self.shim_options(&rec, &runtime_dir);
        let started: ShimStarted = self
            .runtime()
            .spawn(opts, spec)
            .await
            .map_err(start_error)?;
        *spawned = Some(started);
        let t_created = t0.elapsed();

        // Clients that attached before start get their stream now, before the process runs.
        let pending = c.take_pending();
        for p in pending {
            let r = self
                .runtime()
                .attach(&runtime_dir, p.opts.stdin, p.opts.stdout, p.opts.stderr)
                .await;
            let _ = p.tx.send(r);
        }
        // The record says running before the process runs: if it cannot be written (a full
        // disk), the created container is killed before any of its code ran, and a process
        // only ever runs under a record that says so (what recovery relies on).
        c.update(|r| {
            r.state.status = Status::Running;
            r.state.pid = started.init_pid as i64;
            r.state.exit_code = 0;
            r.state.error.clear();
            r.state.oom_killed = false;
            r.state.started_at = now_rfc3339();
        })?;
        self.runtime()
            .start(&runtime_dir)
            .await
            .map_err(|e| match e {
                EngineError::Start(f) => EngineError::Start(f),
                other => start_error(berth_runtime::RuntimeError::Runtime(other.to_string())),
            })?;
        self.spawn_monitor(c.clone());
        self.emit_container(&c.id, "start", &[]);
        self.start_health(c);
        tracing::debug!(
            "started {}: rootfs {:?}, created {:?}, running {:?}",
            c.id,
            t_mount,
            t_created,
            t0.elapsed()
        );
        Ok(())
    }

    /// A Docker container's spec: its /etc files, networks, links and volume mounts.
    async fn docker_spec(
        &self,
        c: &Arc<Entry>,
        rec: &ContainerRecord,
        rootfs: std::path::PathBuf,
    ) -> Result<oci_spec::runtime::Spec> {
        self.write_etc_files(rec)?;
        let links = self.legacy_links(rec)?;
        let network = self.net_start(rec).await?;
        self.net_etc_files(rec, &links)?;
        // Volume mounts and copy-up do file I/O: off the async workers.
        let (engine, c2, rf) = (self.clone(), c.clone(), rootfs.clone());
        let user_mounts = tokio::task::spawn_blocking(move || engine.prepare_mounts(&c2, &rf))
            .await
            .map_err(EngineError::internal)??;
        // `container:<x>`: its /etc files and hostname too, as dockerd gives them.
        let mut rec = rec.clone();
        if let Some(target) = rec.host_config.network_mode.container().map(str::to_string) {
            let t = self.lookup(&target)?.snapshot();
            rec.hostname_path = t.hostname_path;
            rec.hosts_path = t.hosts_path;
            rec.resolv_conf_path = t.resolv_conf_path;
            rec.config.hostname = t.config.hostname;
            rec.config.domainname = t.config.domainname;
        }
        let isolation = self.isolation(&rec)?;
        let mut run = self.run_config(&rec, rootfs, network, isolation)?;
        add_link_env(&mut run.env, &rec.name, &links);
        run.mounts.extend(user_mounts);
        crate::container::mounts::sort_mounts(&mut run.mounts);
        berth_runtime::spec::build_spec(&run).map_err(start_error)
    }

    /// The rollback point of a start: ends a shim it spawned (and its container's process),
    /// releases mounts, the rootfs and networking, records the failure on the state from
    /// `before` the start (best effort: the process is gone whatever the disk says) and tells
    /// attached clients and waiters. Nothing of the attempt stays running or mounted.
    async fn fail_start(
        &self,
        c: &Arc<Entry>,
        e: EngineError,
        spawned: Option<ShimStarted>,
        before: crate::container::StateRecord,
    ) -> Result<()> {
        if let Some(started) = spawned {
            let dir = self.runtime_dir(&c.id);
            // The orderly way first (the shim records the exit), then by pid if it did not go.
            let _ = self.runtime().kill(&dir, 9).await;
            self.runtime().abort(&dir, started).await;
            let (runtime, state_root, id) =
                (self.inner.runtime.clone(), self.state_root(), c.id.clone());
            let _ =
                tokio::task::spawn_blocking(move || runtime.cleanup(&dir, &state_root, &id)).await;
        }
        self.release_mounts(&c.id, &c.snapshot().mount_points);
        let (images, id) = (self.images(), c.id.clone());
        let _ = tokio::task::spawn_blocking(move || images.unmount_snapshot(&id)).await;
        self.nets().teardown(&c.id);
        let msg = e.to_string();
        let code = match &e {
            EngineError::Start(f) => f.exit_code(),
            _ => 128,
        };
        let _ = c.record(|r| {
            r.state = before;
            r.state.error = msg.clone();
            r.state.exit_code = code;
        });
        let pending = c.take_pending();
        for p in pending {
            let _ = p.tx.send(Err(EngineError::Conflict(msg.clone())));
        }
        // Wake `wait` callers: the start they waited for is not going to happen.
        c.signal.send_modify(|s| {
            s.exits += 1;
            s.exit_code = code;
            s.last_exit = Some(std::time::Instant::now());
            s.exit_claimed = false;
        });
        Err(e)
    }
}

/// A runtime error of a start, typed for the API (400 or 500) and the exit code (127, 126).
fn start_error(e: berth_runtime::RuntimeError) -> EngineError {
    EngineError::Start(StartFailure::from_runtime(&e))
}

/// Legacy links' variables come first; the container's own variables win.
fn add_link_env(env: &mut Vec<String>, name: &str, links: &[crate::network::LegacyLink]) {
    if links.is_empty() {
        return;
    }
    let own: Vec<String> = env
        .iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
        .collect();
    let mut merged: Vec<String> = crate::network::link_env(name, links)
        .into_iter()
        .filter(|kv| {
            kv.split_once('=')
                .is_some_and(|(k, _)| !own.iter().any(|o| o == k))
        })
        .collect();
    merged.append(env);
    *env = merged;
}
