//! Container lifecycle: create, start, stop, kill, restart, remove, wait, rename; the exit
//! monitor, restart policies and recovery after a daemon restart.

use std::sync::Arc;
use std::time::Duration;

use berth_api::types::{ContainerConfig, ContainerCreateBody, HostConfig};
use berth_runtime::cgroup::CgroupnsMode;
use berth_runtime::shim::{ShimOptions, ShimStarted};
use berth_runtime::spec::{ContainerRunConfig, NetworkMode, SeccompMode};

use crate::container::{ContainerRecord, Entry, StateRecord, Status};
use crate::error::{EngineError, Result};
use crate::shim_client;
use crate::util::{self, now_rfc3339};
use crate::{io_err, Engine};

const DEFAULT_LOG_MAX_SIZE: u64 = 20 * 1024 * 1024;
const DEFAULT_LOG_MAX_FILE: u32 = 5;
const DEFAULT_STOP_TIMEOUT: i64 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

impl WaitCondition {
    pub fn parse(s: &str) -> Result<WaitCondition> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(EngineError::InvalidParameter(format!(
                "invalid condition: \"{other}\""
            ))),
        }
    }
}

/// Parses "SIGTERM", "TERM", "term" or "15".
pub fn parse_signal(s: &str) -> Result<i32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        if n > 0 && n < 65 {
            return Ok(n);
        }
        return Err(EngineError::InvalidParameter(format!(
            "Invalid signal: {s}"
        )));
    }
    let up = t.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" | "IOT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "STKFLT" => 16,
        "CHLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "URG" => 23,
        "XCPU" => 24,
        "XFSZ" => 25,
        "VTALRM" => 26,
        "PROF" => 27,
        "WINCH" => 28,
        "IO" | "POLL" => 29,
        "PWR" => 30,
        "SYS" => 31,
        _ => {
            if let Some(rest) = name.strip_prefix("RTMIN+") {
                if let Ok(k) = rest.parse::<i32>() {
                    if (0..=30).contains(&k) {
                        return Ok(34 + k);
                    }
                }
            }
            return Err(EngineError::InvalidParameter(format!(
                "Invalid signal: {s}"
            )));
        }
    };
    Ok(n)
}

/// Merges the image's config under the user's, as Docker does at create time.
fn merge_config(user: &ContainerConfig, img: Option<&ContainerConfig>) -> ContainerConfig {
    let mut c = user.clone();
    let Some(img) = img else { return c };
    // Env: image first, user's values override by key.
    let mut env: Vec<String> = img.env.clone().unwrap_or_default();
    for kv in c.env.clone().unwrap_or_default() {
        let key = kv.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next().unwrap_or("") != key);
        env.push(kv);
    }
    c.env = Some(env);
    // `--entrypoint ""` arrives as [""]: an explicit reset.
    if c.entrypoint
        .as_ref()
        .map(|v| v.len() == 1 && v[0].is_empty())
        .unwrap_or(false)
    {
        c.entrypoint = Some(Vec::new());
    }
    // Docker: an empty user entrypoint takes the image's cmd when the user gave none; a nil
    // one (not given at all) also takes the image's entrypoint.
    if c.entrypoint.as_ref().map(|v| v.is_empty()).unwrap_or(true) {
        if c.cmd.as_ref().map(|v| v.is_empty()).unwrap_or(true) {
            c.cmd = img.cmd.clone();
        }
        if c.entrypoint.is_none() {
            c.entrypoint = img.entrypoint.clone();
        }
    }
    if c.working_dir.is_empty() {
        c.working_dir = img.working_dir.clone();
    }
    if c.user.is_empty() {
        c.user = img.user.clone();
    }
    if let Some(labels) = &img.labels {
        let mut merged = labels.clone();
        merged.extend(c.labels.clone().unwrap_or_default());
        c.labels = Some(merged);
    }
    if let Some(ports) = &img.exposed_ports {
        let mut merged = c.exposed_ports.clone().unwrap_or_default();
        for (k, v) in ports {
            merged.entry(k.clone()).or_insert_with(|| v.clone());
        }
        c.exposed_ports = Some(merged);
    }
    if let Some(vols) = &img.volumes {
        let mut merged = c.volumes.clone().unwrap_or_default();
        for (k, v) in vols {
            merged.entry(k.clone()).or_insert_with(|| v.clone());
        }
        c.volumes = Some(merged);
    }
    if c.stop_signal.is_empty() {
        c.stop_signal = img.stop_signal.clone();
    }
    if c.healthcheck.is_none() {
        c.healthcheck = img.healthcheck.clone();
    }
    if c.shell.is_none() {
        c.shell = img.shell.clone();
    }
    if c.on_build.is_none() {
        c.on_build = img.on_build.clone();
    }
    c
}

/// Docker's rule: a container on the default log driver gets the daemon's log options it does
/// not set itself (and shows them in inspect).
fn merge_default_log_opts(hc: &mut HostConfig, defaults: &berth_api::types::StringMap) {
    if defaults.is_empty() || !matches!(hc.log_config.r#type.as_str(), "" | "json-file") {
        return;
    }
    let opts = hc.log_config.config.get_or_insert_with(Default::default);
    for (k, v) in defaults {
        opts.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

fn validate_host_config(hc: &HostConfig) -> Result<()> {
    match hc.log_config.r#type.as_str() {
        "" | "json-file" | "none" => {}
        other => {
            return Err(EngineError::InvalidParameter(format!(
                "logger: no log driver named '{other}' is registered"
            )))
        }
    }
    let rp = &hc.restart_policy;
    let name = rp.name.as_str();
    match name {
        "" | "no" | "always" | "unless-stopped" | "on-failure" => {}
        other => {
            return Err(EngineError::InvalidParameter(format!(
                "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
            )))
        }
    }
    if name != "on-failure" && rp.maximum_retry_count != 0 {
        return Err(EngineError::InvalidParameter(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'".into(),
        ));
    }
    if rp.maximum_retry_count < 0 {
        return Err(EngineError::InvalidParameter(
            "invalid restart policy: maximum retry count cannot be negative".into(),
        ));
    }
    if hc.auto_remove && !matches!(name, "" | "no") {
        return Err(EngineError::InvalidParameter(
            "conflicting options: cannot specify both --restart and --rm".into(),
        ));
    }
    if hc.memory != 0 && hc.memory < 6 * 1024 * 1024 {
        return Err(EngineError::InvalidParameter(
            "Minimum memory limit allowed is 6MB".into(),
        ));
    }
    if hc.nano_cpus < 0 {
        return Err(EngineError::InvalidParameter(
            "Range of CPUs is from 0.01 to the number of CPUs available".into(),
        ));
    }
    Ok(())
}

/// `--network container:<name|id>` shares that container's network namespace and /etc files:
/// what would configure a network of the container's own conflicts (dockerd's checks, words).
fn validate_container_network_mode(c: &ContainerConfig, hc: &HostConfig) -> Result<()> {
    let Some(target) = hc.network_mode.strip_prefix("container:") else {
        if hc.network_mode == "host" && !c.mac_address.is_empty() {
            return Err(EngineError::InvalidParameter(
                "conflicting options: mac-address and the network mode".into(),
            ));
        }
        return Ok(());
    };
    let conflict = |m: &str| {
        Err(EngineError::InvalidParameter(format!(
            "conflicting options: {m}"
        )))
    };
    if target.is_empty() {
        return Err(EngineError::InvalidParameter(
            "Invalid network mode: invalid container format container:<name|id>".into(),
        ));
    }
    if !c.hostname.is_empty() {
        return conflict("hostname and the network mode");
    }
    if hc.links.as_ref().is_some_and(|l| !l.is_empty()) {
        return conflict("container type network can't be used with links. This would result in undefined behavior");
    }
    if hc.dns.as_ref().is_some_and(|d| !d.is_empty()) {
        return conflict("dns and the network mode");
    }
    if hc.extra_hosts.as_ref().is_some_and(|h| !h.is_empty()) {
        return conflict("custom host-to-IP mapping and the network mode");
    }
    if !c.mac_address.is_empty() {
        return conflict("mac-address and the network mode");
    }
    if hc.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) || hc.publish_all_ports {
        return conflict("port publishing and the container type network mode");
    }
    if c.exposed_ports.as_ref().is_some_and(|p| !p.is_empty()) {
        return conflict("port exposing and the container type network mode");
    }
    Ok(())
}

fn restart_policy(hc: &HostConfig) -> (String, i64) {
    (
        hc.restart_policy.name.clone(),
        hc.restart_policy.maximum_retry_count,
    )
}

impl Engine {
    pub async fn create(
        &self,
        name: Option<&str>,
        body: ContainerCreateBody,
    ) -> Result<(String, Vec<String>)> {
        self.create_as(name, body, false).await
    }

    /// `create`, for a build's RUN step when `build_step` (see `ContainerRecord::build_step`).
    pub(crate) async fn create_as(
        &self,
        name: Option<&str>,
        body: ContainerCreateBody,
        build_step: bool,
    ) -> Result<(String, Vec<String>)> {
        let mut config = body.config.clone();
        let mut host_config = body.host_config.clone().unwrap_or_default();
        validate_host_config(&host_config)?;
        let warnings = crate::cgroups::check(&host_config, self.config().cgroup_driver)?;
        validate_container_network_mode(&config, &host_config)?;
        merge_default_log_opts(&mut host_config, &self.inner.cfg.log_opts);
        crate::mounts::validate_tmpfs(&host_config)?;
        let image_name = config.image.clone();
        if image_name.is_empty() {
            return Err(EngineError::InvalidParameter(
                "config cannot be empty in order to create a container".into(),
            ));
        }
        let images = self.images();
        let lookup = image_name.clone();
        let image = tokio::task::spawn_blocking(move || images.get(&lookup))
            .await
            .map_err(EngineError::internal)?
            .map_err(crate::images::image_err)?;
        let image_cfg: Option<ContainerConfig> = image
            .config
            .config
            .as_ref()
            .and_then(|c| serde_json::to_value(c).ok())
            .and_then(|v| serde_json::from_value(v).ok());
        config = merge_config(&config, image_cfg.as_ref());
        config.image = image_name;
        let mut argv: Vec<String> = config.entrypoint.clone().unwrap_or_default();
        argv.extend(config.cmd.clone().unwrap_or_default());
        if argv.is_empty() {
            return Err(EngineError::InvalidParameter("no command specified".into()));
        }

        let id = util::new_id();
        let short = id[..12].to_string();
        if config.hostname.is_empty() {
            config.hostname = short.clone();
        }
        // Reserve the name first: two concurrent creates with one name must not both win.
        let name = {
            let mut reg = self.write_registry();
            let name = match name.filter(|n| !n.is_empty()) {
                Some(n) => crate::names::validate(n).map_err(EngineError::InvalidParameter)?,
                None => crate::names::generate(|n| reg.names.contains_key(n)),
            };
            if let Some(other) = reg.names.get(&name) {
                return Err(EngineError::Conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            reg.names.insert(name.clone(), id.clone());
            name
        };

        let net = self.net_create(&id, &name, &body);
        // Volumes are resolved (and created) and reserved for this container until it is
        // registered as their user, so no volume rm/prune can take them meanwhile.
        let result = match net {
            Ok(()) => match self.reserve_mounts(&id, &config, &host_config).await {
                Ok(mounts) => {
                    let r = self
                        .create_reserved(
                            &id,
                            &name,
                            config,
                            host_config,
                            &image.id,
                            argv,
                            mounts.clone(),
                            build_step,
                        )
                        .await;
                    self.settle_mounts(&id, &mounts, r.is_ok()).await;
                    r
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.net_forget(&id);
            let mut reg = self.write_registry();
            reg.names.remove(&name);
            reg.by_id.remove(&id);
        } else {
            self.emit_container(&id, "create", &[]);
        }
        result.map(|_| (id, warnings))
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_reserved(
        &self,
        id: &str,
        name: &str,
        config: ContainerConfig,
        host_config: HostConfig,
        image_id: &str,
        argv: Vec<String>,
        mount_points: Vec<crate::mounts::MountPoint>,
        build_step: bool,
    ) -> Result<()> {
        let dir = self.container_dir(id);
        std::fs::create_dir_all(&dir)?;
        let images = self.images();
        let (cid, iid) = (id.to_string(), image_id.to_string());
        let snap = tokio::task::spawn_blocking(move || images.create_snapshot(&cid, &iid))
            .await
            .map_err(EngineError::internal)?
            .map_err(crate::images::image_err);
        if let Err(e) = snap {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let rec = ContainerRecord {
            id: id.to_string(),
            name: name.to_string(),
            created: now_rfc3339(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            config,
            host_config,
            image_id: image_id.to_string(),
            state: StateRecord::default(),
            restart_count: 0,
            manually_stopped: false,
            log_path: dir.join(format!("{id}-json.log")).display().to_string(),
            hostname_path: dir.join("hostname").display().to_string(),
            hosts_path: dir.join("hosts").display().to_string(),
            resolv_conf_path: dir.join("resolv.conf").display().to_string(),
            mount_points,
            build_step,
        };
        if let Err(e) = rec.save(&dir) {
            let images = self.images();
            let cid = id.to_string();
            let _ = tokio::task::spawn_blocking(move || images.remove_snapshot(&cid)).await;
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
        self.write_registry()
            .by_id
            .insert(id.to_string(), Arc::new(Entry::new(rec, dir)));
        Ok(())
    }

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
    async fn start_locked(&self, c: &Arc<Entry>) -> Result<()> {
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
        let t0 = std::time::Instant::now();
        let runtime_dir = self.runtime_dir(&c.id);
        // Leftovers of a previous run (its shim is gone once the container exited).
        berth_runtime::shim::cleanup(&runtime_dir, &self.state_root(), &c.id);
        std::fs::create_dir_all(&runtime_dir)?;

        let images = self.images();
        let cid = c.id.clone();
        let rootfs = tokio::task::spawn_blocking(move || images.mount_snapshot(&cid))
            .await
            .map_err(EngineError::internal)?
            .map_err(crate::images::image_err)?;
        self.write_etc_files(&rec)?;
        let links = match self.legacy_links(&rec) {
            Ok(l) => l,
            Err(e) => return self.fail_start(c, e),
        };
        let network = match self.net_start(&rec).await {
            Ok(n) => n,
            Err(e) => return self.fail_start(c, e),
        };
        if let Err(e) = self.net_etc_files(&rec, &links) {
            return self.fail_start(c, e);
        }
        let t_mount = t0.elapsed();

        // Volume mounts and copy-up do file I/O: off the async workers.
        let (engine, c2, rf) = (self.clone(), c.clone(), rootfs.clone());
        let user_mounts = match tokio::task::spawn_blocking(move || engine.prepare_mounts(&c2, &rf))
            .await
            .map_err(EngineError::internal)
            .and_then(|r| r)
        {
            Ok(m) => m,
            Err(e) => return self.fail_start(c, e),
        };
        // `container:<x>`: its /etc files and hostname too, as dockerd gives them.
        let mut rec = rec;
        if let Some(target) = rec.host_config.network_mode.strip_prefix("container:") {
            match self.lookup(target) {
                Ok(t) => {
                    let t = t.snapshot();
                    rec.hostname_path = t.hostname_path;
                    rec.hosts_path = t.hosts_path;
                    rec.resolv_conf_path = t.resolv_conf_path;
                    rec.config.hostname = t.config.hostname;
                    rec.config.domainname = t.config.domainname;
                }
                Err(e) => return self.fail_start(c, e),
            }
        }
        let mut run = match self.run_config(&rec, rootfs, network) {
            Ok(r) => r,
            Err(e) => return self.fail_start(c, e),
        };
        if !links.is_empty() {
            // Link variables come first; the container's own variables win.
            let own: Vec<&str> = run
                .env
                .iter()
                .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
                .collect();
            let mut env: Vec<String> = crate::network::link_env(&rec.name, &links)
                .into_iter()
                .filter(|kv| kv.split_once('=').is_some_and(|(k, _)| !own.contains(&k)))
                .collect();
            env.append(&mut run.env);
            run.env = env;
        }
        run.mounts.extend(user_mounts);
        crate::mounts::sort_mounts(&mut run.mounts);
        let spec = berth_runtime::spec::build_spec(&run).map_err(|e| start_error(&e.to_string()));
        let spec = match spec {
            Ok(s) => s,
            Err(e) => return self.fail_start(c, e),
        };
        let opts_map = rec
            .host_config
            .log_config
            .config
            .clone()
            .unwrap_or_default();
        let log_max_size = opts_map
            .get("max-size")
            .and_then(|s| parse_size(s))
            .unwrap_or(DEFAULT_LOG_MAX_SIZE);
        let log_max_file = opts_map
            .get("max-file")
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|n| *n >= 1)
            .unwrap_or(DEFAULT_LOG_MAX_FILE);
        let opts = ShimOptions {
            id: c.id.clone(),
            bundle: runtime_dir.clone(),
            state_root: self.state_root(),
            runtime_dir: runtime_dir.clone(),
            log_path: rec.log_path.clone().into(),
            log_max_size,
            log_max_file,
            tty: rec.config.tty,
            open_stdin: rec.config.open_stdin,
            stdin_once: rec.config.stdin_once,
            exec: None,
        };
        let exe = self.inner.cfg.berth_exe.clone();
        let spawned: std::result::Result<ShimStarted, String> =
            tokio::task::spawn_blocking(move || {
                berth_runtime::shim::spawn_shim(&exe, &opts, &spec).map_err(|e| e.to_string())
            })
            .await
            .map_err(EngineError::internal)?;
        let started = match spawned {
            Ok(s) => s,
            Err(msg) => return self.fail_start(c, start_error(&msg)),
        };
        let t_created = t0.elapsed();

        // Clients that attached before start get their stream now, before the process runs.
        let pending = c.take_pending();
        for p in pending {
            let r =
                shim_client::attach(&runtime_dir, p.opts.stdin, p.opts.stdout, p.opts.stderr).await;
            let _ = p.tx.send(r);
        }
        if let Err(e) = shim_client::start(&runtime_dir).await {
            let _ = shim_client::kill(&runtime_dir, 9).await;
            return self.fail_start(c, start_error(&e.to_string()));
        }
        c.update(|r| {
            r.state.status = Status::Running;
            r.state.pid = started.init_pid as i64;
            r.state.exit_code = 0;
            r.state.error.clear();
            r.state.oom_killed = false;
            r.state.started_at = now_rfc3339();
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

    fn fail_start(&self, c: &Arc<Entry>, e: EngineError) -> Result<()> {
        self.release_mounts(&c.id, &c.snapshot().mount_points);
        self.nets().teardown(&c.id);
        let msg = e.to_string();
        let code = if msg.contains("executable file not found")
            || msg.contains("no such file or directory")
        {
            127
        } else if msg.contains("permission denied") {
            126
        } else {
            128
        };
        let _ = c.update(|r| {
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

    fn run_config(
        &self,
        rec: &ContainerRecord,
        rootfs: std::path::PathBuf,
        network: NetworkMode,
    ) -> Result<ContainerRunConfig> {
        let hc = &rec.host_config;
        let mut args = vec![rec.path.clone()];
        args.extend(rec.args.iter().cloned());
        let mut mounts = Vec::new();
        for (dest, src) in [
            ("/etc/hostname", &rec.hostname_path),
            ("/etc/hosts", &rec.hosts_path),
            ("/etc/resolv.conf", &rec.resolv_conf_path),
        ] {
            if let Ok(m) = oci_bind(dest, src, hc.readonly_rootfs) {
                mounts.push(m);
            }
        }
        let security = hc.security_opt.clone().unwrap_or_default();
        let mut seccomp = SeccompMode::Default;
        for opt in &security {
            // Docker accepts both "seccomp=x" and the older "seccomp:x".
            let val = opt
                .strip_prefix("seccomp=")
                .or_else(|| opt.strip_prefix("seccomp:"));
            if let Some(v) = val {
                seccomp = if v == "unconfined" {
                    SeccompMode::Unconfined
                } else {
                    SeccompMode::Profile(v.to_string())
                };
            }
        }
        let no_new_privileges = security.iter().any(|s| {
            s == "no-new-privileges"
                || s == "no-new-privileges=true"
                || s == "no-new-privileges:true"
        });
        Ok(ContainerRunConfig {
            id: rec.id.clone(),
            rootfs,
            args,
            env: rec.config.env.clone().unwrap_or_default(),
            cwd: rec.config.working_dir.clone(),
            user: rec.config.user.clone(),
            group_add: hc.group_add.clone().unwrap_or_default(),
            hostname: rec.config.hostname.clone(),
            tty: rec.config.tty,
            readonly_rootfs: hc.readonly_rootfs,
            privileged: hc.privileged,
            cap_add: hc.cap_add.clone().unwrap_or_default(),
            cap_drop: hc.cap_drop.clone().unwrap_or_default(),
            no_new_privileges,
            resources: crate::cgroups::resources(hc)?,
            mounts,
            cgroups_path: self.cgroups_path(hc, &rec.id)?,
            cgroupns: CgroupnsMode::parse(&hc.cgroupns_mode, self.config().default_cgroupns)
                .map_err(|e| EngineError::InvalidParameter(e.to_string()))?,
            network,
            seccomp,
        })
    }

    fn write_etc_files(&self, rec: &ContainerRecord) -> Result<()> {
        let hostname = rec.config.hostname.clone();
        // Written in place, not renamed: a bind mount keeps pointing at the inode it was given.
        std::fs::write(&rec.hostname_path, format!("{hostname}\n"))?;
        let mut hosts = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        if rec.host_config.network_mode != "host" {
            hosts.push_str(&format!("127.0.1.1\t{hostname}\n"));
        }
        for extra in rec.host_config.extra_hosts.clone().unwrap_or_default() {
            if let Some((h, ip)) = extra.split_once(':') {
                hosts.push_str(&format!("{ip}\t{h}\n"));
            }
        }
        std::fs::write(&rec.hosts_path, hosts)?;
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        std::fs::write(&rec.resolv_conf_path, resolv)?;
        Ok(())
    }

    fn spawn_monitor(&self, c: Arc<Entry>) {
        let engine = self.clone();
        tokio::spawn(async move {
            let rt = engine.runtime_dir(&c.id);
            let exit = match shim_client::wait(&rt).await {
                Ok(Some(e)) => Some(e),
                _ => None,
            };
            let exit = exit.or_else(|| shim_client::read_exit_file(&rt));
            engine.handle_exit(c, exit).await;
        });
    }

    async fn handle_exit(&self, c: Arc<Entry>, exit: Option<shim_client::ExitReply>) {
        let (code, finished, oom) = match exit {
            Some(e) => (
                e.exit_code,
                if e.finished_at.is_empty() {
                    now_rfc3339()
                } else {
                    e.finished_at
                },
                e.oom_killed,
            ),
            // The shim vanished without a word: Docker reports such a container as 255.
            None => (255, now_rfc3339(), false),
        };
        // Its addresses, ports and namespace go before anyone hears of the exit, so a client
        // that reacts at once (run the next container on the same port) finds them free. And
        // before the record says exited: from there to the exit signal below nothing may
        // await, or a `not-running` waiter woken by the record would claim the exit before the
        // signal makes it claimable (and `start -a` right after would be told of it).
        self.net_stop(&c.id).await;
        let record_exit = |r: &mut ContainerRecord| {
            r.state.status = Status::Exited;
            r.state.pid = 0;
            r.state.exit_code = code;
            r.state.finished_at = finished.clone();
            r.state.oom_killed = oom;
        };
        // An `--rm` container is about to go: if the daemon dies first, recovery finds the same
        // exit in exit.json, so its record need not be written.
        let rec = if c.snapshot().host_config.auto_remove {
            c.update_volatile(record_exit)
        } else {
            match c.update(record_exit) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("recording exit of {}: {e}", c.id);
                    c.snapshot()
                }
            }
        };
        // Restarting is recorded before waiters hear of the exit, so a client acting on its
        // wait (rm, inspect) never sees an always-restart container as plainly exited.
        if !rec.host_config.auto_remove && self.should_restart(&rec, code) {
            let _ = c.update_volatile(|r| r.state.status = Status::Restarting);
        }
        if oom {
            self.emit_container(&c.id, "oom", &[]);
        }
        self.emit_container(&c.id, "die", &[("exitCode", code.to_string())]);
        c.signal.send_modify(|s| {
            s.exits += 1;
            s.running = false;
            s.exit_code = code;
            s.last_exit = Some(std::time::Instant::now());
            s.exit_claimed = false;
        });
        if rec.host_config.auto_remove {
            let engine = self.clone();
            tokio::spawn(async move {
                let _ = engine.remove(&rec.id, true, true).await;
            });
            return;
        }
        let rt = self.runtime_dir(&c.id);
        let state_root = self.state_root();
        let id = c.id.clone();
        let _ = tokio::task::spawn_blocking(move || {
            berth_runtime::shim::cleanup(&rt, &state_root, &id)
        })
        .await;

        if self.should_restart(&rec, code) {
            let engine = self.clone();
            let delay = restart_delay(rec.restart_count);
            tokio::spawn(async move {
                // Restarting was recorded with the exit (above); a stop since then cleared it.
                if c.snapshot().state.status == Status::Restarting {
                    let _ = c.update(|r| r.state.status = Status::Restarting);
                }
                tokio::time::sleep(delay).await;
                let _g = c.op.lock().await;
                let cur = c.snapshot();
                // A stop, kill or rm during the delay cancels the restart.
                if cur.manually_stopped || cur.state.status != Status::Restarting {
                    return;
                }
                let _ = c.update(|r| {
                    r.restart_count += 1;
                    r.state.status = Status::Exited;
                });
                if let Err(e) = engine.start_locked(&c).await {
                    tracing::warn!("restarting {}: {e}", c.id);
                }
            });
        } else {
            // Under the op lock, and only if nothing restarted it meanwhile: a `restart` holds
            // the lock from its stop to its start, and must not lose its rootfs to this.
            let images = self.images();
            let c = c.clone();
            let engine = self.clone();
            tokio::spawn(async move {
                let _g = c.op.lock().await;
                let st = c.snapshot().state.status;
                if st.is_running() || c.removed.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let id = c.id.clone();
                engine.release_mounts(&id, &c.snapshot().mount_points);
                let _ = tokio::task::spawn_blocking(move || images.unmount_snapshot(&id)).await;
            });
        }
    }

    fn should_restart(&self, rec: &ContainerRecord, code: i64) -> bool {
        if rec.manually_stopped {
            return false;
        }
        let (name, max) = restart_policy(&rec.host_config);
        match name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => code != 0 && (max == 0 || rec.restart_count < max),
            _ => false,
        }
    }

    /// After a daemon restart: reconnect to a live shim, or record what happened meanwhile.
    pub(crate) async fn recover(&self, c: Arc<Entry>) {
        let rec = c.snapshot();
        let rt = self.runtime_dir(&c.id);
        let live = matches!(
            rec.state.status,
            Status::Running | Status::Paused | Status::Restarting
        );
        if live && rec.state.status != Status::Restarting && berth_runtime::shim::shim_alive(&rt) {
            for m in &rec.mount_points {
                self.volumes().adopt(&m.name, &c.id);
            }
            self.net_readopt(&c.id);
            self.start_health(&c);
            self.spawn_monitor(c);
            return;
        }
        if live && rec.state.status != Status::Restarting {
            let exit = shim_client::read_exit_file(&rt);
            self.handle_exit(c, exit).await;
            return;
        }
        // Not running: start it if its policy says so at daemon start.
        let (name, _) = restart_policy(&rec.host_config);
        // Docker: `always` comes back at daemon start even after a manual stop;
        // `unless-stopped` only if it was not stopped by hand.
        let wants = match name.as_str() {
            "always" => true,
            "unless-stopped" => !rec.manually_stopped,
            _ => rec.state.status == Status::Restarting && !rec.manually_stopped,
        };
        if wants && rec.state.started_at != util::ZERO_TIME {
            let engine = self.clone();
            tokio::spawn(async move {
                let _g = c.op.lock().await;
                // A restart the policy had scheduled when the daemon died still counts as one.
                let _ = c.update(|r| {
                    if r.state.status == Status::Restarting {
                        r.restart_count += 1;
                    }
                    r.state.status = Status::Exited;
                });
                if let Err(e) = engine.start_locked(&c).await {
                    tracing::warn!("restarting {} at daemon start: {e}", c.id);
                }
            });
        }
    }

    pub async fn stop(&self, name: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let c = self.lookup(name)?;
        let _g = c.op.lock().await;
        self.stop_locked(&c, timeout, signal).await?;
        self.emit_container(&c.id, "stop", &[]);
        Ok(())
    }

    async fn stop_locked(
        &self,
        c: &Arc<Entry>,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let rec = c.snapshot();
        if rec.state.status == Status::Restarting {
            c.update(|r| {
                r.manually_stopped = true;
                r.state.status = Status::Exited;
            })?;
            return Ok(());
        }
        if !rec.state.status.is_running() {
            return Err(EngineError::NotModified);
        }
        if rec.state.status == Status::Paused {
            // A frozen process cannot act on a signal: thaw first, as Docker does.
            self.thaw(c).await?;
        }
        c.update(|r| r.manually_stopped = true)?;
        let sig = match signal.filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(s)?,
            None => match Some(rec.config.stop_signal.as_str()).filter(|s| !s.is_empty()) {
                Some(s) => parse_signal(s).unwrap_or(15),
                None => 15,
            },
        };
        let timeout = timeout
            .or(rec.config.stop_timeout)
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        let rt = self.runtime_dir(&c.id);
        let mut rx = c.signal.subscribe();
        let exits = rx.borrow().exits;
        if sig != 9 {
            self.emit_container(&c.id, "kill", &[("signal", sig.to_string())]);
            let _ = shim_client::kill(&rt, sig).await;
            let waited = wait_exit(
                &mut rx,
                exits,
                (timeout >= 0).then(|| Duration::from_secs(timeout as u64)),
            )
            .await;
            if waited {
                return Ok(());
            }
        }
        self.emit_container(&c.id, "kill", &[("signal", "9".to_string())]);
        let _ = shim_client::kill(&rt, 9).await;
        if !wait_exit(&mut rx, exits, Some(Duration::from_secs(30))).await {
            return Err(EngineError::Internal(format!(
                "container {} did not exit after SIGKILL",
                c.id
            )));
        }
        Ok(())
    }

    pub async fn kill(&self, name: &str, signal: Option<&str>) -> Result<()> {
        let c = self.lookup(name)?;
        let sig = match signal.filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(s)?,
            None => 9,
        };
        let rec = c.snapshot();
        if !rec.state.status.is_running() {
            return Err(EngineError::Conflict(format!(
                "Cannot kill container: {name}: Container {} is not running",
                rec.id
            )));
        }
        if sig == 9 || sig == 15 {
            c.update(|r| r.manually_stopped = true)?;
        }
        self.emit_container(&c.id, "kill", &[("signal", sig.to_string())]);
        let mut rx = c.signal.subscribe();
        let exits = rx.borrow().exits;
        shim_client::kill(&self.runtime_dir(&c.id), sig).await?;
        if rec.state.status == Status::Paused && sig == 9 {
            self.thaw(&c).await?;
        }
        if sig == 9 {
            // Docker: a SIGKILL answers once the container is down (or after 2 s).
            wait_exit(&mut rx, exits, Some(Duration::from_secs(2))).await;
        }
        Ok(())
    }

    pub async fn restart(
        &self,
        name: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let c = self.lookup(name)?;
        let _g = c.op.lock().await;
        match self.stop_locked(&c, timeout, signal).await {
            Ok(()) | Err(EngineError::NotModified) => {}
            Err(e) => return Err(e),
        }
        c.update(|r| {
            r.manually_stopped = false;
            if r.state.status == Status::Restarting {
                r.state.status = Status::Exited;
            }
        })?;
        self.start_locked(&c).await
    }

    pub async fn remove(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.lookup(name)?;
        let _g = c.op.lock().await;
        let rec = c.snapshot();
        if rec.state.status == Status::Restarting && !force {
            return Err(EngineError::Conflict(format!(
                "cannot remove container \"/{}\": container is restarting: stop the container before removing or force remove",
                rec.name
            )));
        }
        if rec.state.status.is_running() {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    rec.name
                )));
            }
            c.update(|r| r.manually_stopped = true)?;
            let mut rx = c.signal.subscribe();
            let exits = rx.borrow().exits;
            let _ = shim_client::kill(&self.runtime_dir(&c.id), 9).await;
            if rec.state.status == Status::Paused {
                let _ = self.thaw(&c).await;
            }
            if !wait_exit(&mut rx, exits, Some(Duration::from_secs(30))).await {
                return Err(EngineError::Internal(format!(
                    "could not kill running container {}, cannot remove",
                    rec.id
                )));
            }
        }
        c.update_volatile(|r| r.state.status = Status::Removing);
        c.removed.store(true, std::sync::atomic::Ordering::SeqCst);
        // The commit point: a container directory without its record is a removal in progress,
        // which `restore` finishes if the daemon dies before the cleanup below does.
        match std::fs::remove_file(c.dir.join("container.json")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                c.removed.store(false, std::sync::atomic::Ordering::SeqCst);
                let _ = c.update(|r| r.state.status = Status::Exited);
                return Err(io_err("removing container record", e));
            }
        }
        // Unmounting syncs the filesystem, which can take a while on a busy disk: nobody needs
        // to wait for it once the record is gone.
        let engine = self.clone();
        let id = c.id.clone();
        tokio::task::spawn_blocking(move || engine.purge_files(&id));
        {
            let mut reg = self.write_registry();
            reg.by_id.remove(&c.id);
            if reg.names.get(&rec.name) == Some(&c.id) {
                reg.names.remove(&rec.name);
            }
        }
        for p in c.take_pending() {
            let _ =
                p.tx.send(Err(EngineError::Conflict("container removed".into())));
        }
        self.inner.execs.remove_container(&c.id);
        self.emit_container_rec(&rec, "destroy");
        self.release_mounts(&c.id, &rec.mount_points);
        if volumes {
            self.remove_anonymous_volumes(&rec.mount_points).await;
        }
        self.remember_removed(&c.id, c.snapshot().state.exit_code);
        c.signal.send_modify(|s| {
            s.removed = true;
            s.running = false;
        });
        Ok(())
    }

    /// Removes what a deleted container left: its filesystem, runtime leftovers, directories.
    pub(crate) fn purge_files(&self, id: &str) {
        self.net_forget(id);
        if let Err(e) = self.images().remove_snapshot(id) {
            tracing::warn!("removing filesystem of container {id}: {e}");
            return;
        }
        berth_runtime::shim::cleanup(&self.runtime_dir(id), &self.state_root(), id);
        let _ = std::fs::remove_dir_all(self.runtime_dir(id));
        if let Err(e) = std::fs::remove_dir_all(self.container_dir(id)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("removing directory of container {id}: {e}");
            }
        }
    }

    /// Blocks until `cond`; returns the exit code. Registers before returning from the lookup,
    /// so a `wait` sent before `start` sees the exit that follows.
    pub async fn wait(
        &self,
        name: &str,
        cond: WaitCondition,
    ) -> Result<impl std::future::Future<Output = i64>> {
        let c = match self.lookup(name) {
            Ok(c) => c,
            Err(e) => {
                // The docker CLI sends `wait` and `start` on separate connections; an `--rm`
                // container may be gone before its wait arrives. Its exit is still known.
                if cond != WaitCondition::NotRunning {
                    if let Some(code) = self.recently_removed(name) {
                        return Ok(futures_ready(code));
                    }
                }
                return Err(e);
            }
        };
        let rx = c.signal.subscribe();
        let start = rx.borrow().clone();
        if cond == WaitCondition::NextExit && !start.running && !start.exit_claimed {
            // Same race for `next-exit`: an exit nobody has been told of, moments ago, is the
            // one this waiter was sent for.
            if start
                .last_exit
                .is_some_and(|t| t.elapsed() < UNCLAIMED_EXIT_WINDOW)
            {
                c.signal.send_modify(|s| s.exit_claimed = true);
                return Ok(futures_ready(start.exit_code));
            }
        }
        Ok(futures_wait(c, rx, start, cond))
    }

    /// Remembers a removed container's exit code for a short while (see `wait`).
    fn remember_removed(&self, id: &str, code: i64) {
        let mut m = match self.inner.removed.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.retain(|_, (_, t)| t.elapsed() < UNCLAIMED_EXIT_WINDOW);
        m.insert(id.to_string(), (code, std::time::Instant::now()));
    }

    fn recently_removed(&self, id: &str) -> Option<i64> {
        let m = match self.inner.removed.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.get(id)
            .filter(|(_, t)| t.elapsed() < UNCLAIMED_EXIT_WINDOW)
            .map(|(c, _)| *c)
    }

    pub async fn rename(&self, name: &str, new_name: &str) -> Result<()> {
        let c = self.lookup(name)?;
        let new = crate::names::validate(new_name).map_err(EngineError::InvalidParameter)?;
        let old = c.snapshot().name;
        if old == new {
            return Err(EngineError::Conflict(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        {
            let mut reg = self.write_registry();
            if let Some(other) = reg.names.get(&new) {
                return Err(EngineError::Conflict(format!(
                    "Conflict. The container name \"/{new}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            reg.names.remove(&old);
            reg.names.insert(new.clone(), c.id.clone());
        }
        c.update(|r| r.name = new.clone())?;
        self.net_rename(&c.id, &new);
        self.emit_container(&c.id, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    pub async fn resize(&self, name: &str, height: u32, width: u32) -> Result<()> {
        let c = self.lookup(name)?;
        if !c.snapshot().state.status.is_running() {
            return Err(EngineError::Conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        shim_client::resize(&self.runtime_dir(&c.id), height, width).await
    }
}

/// How long an exit nobody waited for, or a removal, still answers a late `wait`.
const UNCLAIMED_EXIT_WINDOW: Duration = Duration::from_secs(5);

fn futures_ready(code: i64) -> std::pin::Pin<Box<dyn std::future::Future<Output = i64> + Send>> {
    Box::pin(async move { code })
}

fn futures_wait(
    c: Arc<Entry>,
    mut rx: tokio::sync::watch::Receiver<crate::container::Signal>,
    start: crate::container::Signal,
    cond: WaitCondition,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = i64> + Send>> {
    Box::pin(async move {
        if cond == WaitCondition::NotRunning && !start.running {
            return start.exit_code;
        }
        loop {
            {
                let s = rx.borrow_and_update().clone();
                let done = match cond {
                    WaitCondition::NotRunning => !s.running || s.removed,
                    WaitCondition::NextExit => s.exits > start.exits || s.removed,
                    WaitCondition::Removed => s.removed,
                };
                if done {
                    // A waiter that saw the exit happen (attach, start -a) has been told of it;
                    // a later `next-exit` must not be answered with it.
                    if cond == WaitCondition::NextExit || start.running {
                        c.signal.send_modify(|s| s.exit_claimed = true);
                    }
                    return s.exit_code;
                }
            }
            if rx.changed().await.is_err() {
                return rx.borrow().exit_code;
            }
        }
    })
}

/// Waits for an exit past `seen`; false on timeout.
async fn wait_exit(
    rx: &mut tokio::sync::watch::Receiver<crate::container::Signal>,
    seen: u64,
    timeout: Option<Duration>,
) -> bool {
    let fut = async {
        loop {
            if rx.borrow_and_update().exits > seen {
                return true;
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, fut).await.unwrap_or(false),
        None => fut.await,
    }
}

/// Docker's backoff: 100 ms doubling, capped at one minute.
fn restart_delay(count: i64) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << count.clamp(0, 10));
    Duration::from_millis(ms.min(60_000))
}

/// Start failures that clients map to exit codes keep their text; they are the user's fault.
fn start_error(msg: &str) -> EngineError {
    if msg.contains("executable file not found")
        || msg.contains("no such file or directory")
        || msg.contains("permission denied")
        || msg.contains("unable to find user")
    {
        EngineError::InvalidParameter(format!(
            "failed to create task for container: OCI runtime create failed: {msg}: unknown"
        ))
    } else {
        EngineError::Internal(format!("failed to start container: {msg}"))
    }
}

pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1024u64),
        'm' => (&s[..s.len() - 1], 1024 * 1024),
        'g' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        'b' => (&s[..s.len() - 1], 1),
        _ => (&s[..], 1),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .map(|n| (n * mult as f64) as u64)
}

fn oci_bind(
    dest: &str,
    src: &str,
    ro: bool,
) -> std::result::Result<oci_spec::runtime::Mount, String> {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    if ro {
        options.push("ro".into());
    }
    oci_spec::runtime::MountBuilder::default()
        .destination(dest)
        .source(src)
        .typ("bind")
        .options(options)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("kill").unwrap(), 9);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert_eq!(parse_signal("SIGRTMIN+3").unwrap(), 37);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10m"), Some(10 * 1024 * 1024));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("300"), Some(300));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn restart_backoff() {
        assert_eq!(restart_delay(0), Duration::from_millis(100));
        assert_eq!(restart_delay(3), Duration::from_millis(800));
        assert_eq!(restart_delay(40), Duration::from_millis(60_000));
    }
}
