//! What `create` merges and checks: the image's config under the user's, the daemon's default
//! log options, and Docker's validation of the host config and network mode.

use berth_api::types::{ContainerConfig, HostConfig};

use crate::error::{EngineError, Result};

/// Merges the image's config under the user's, as Docker does at create time.
pub(crate) fn merge_config(
    user: &ContainerConfig,
    img: Option<&ContainerConfig>,
) -> ContainerConfig {
    let mut c = user.clone();
    let Some(img) = img else {
        reset_empty_entrypoint(&mut c);
        return c;
    };
    // Env: image first, user's values override by key.
    let mut env: Vec<String> = img.env.clone().unwrap_or_default();
    for kv in c.env.clone().unwrap_or_default() {
        let key = kv.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next().unwrap_or("") != key);
        env.push(kv);
    }
    c.env = Some(env);
    // Docker: an empty user entrypoint takes the image's cmd when the user gave none; a nil
    // one (not given at all) also takes the image's entrypoint. `--entrypoint ""` ([""], reset
    // to nil after the merge) takes neither.
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
    c.working_dir = clean_working_dir(&c.working_dir);
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
    reset_empty_entrypoint(&mut c);
    c
}

/// dockerd cleans the working directory lexically (`/a/../..` is `/`) before making it.
fn clean_working_dir(wd: &str) -> String {
    if !wd.starts_with('/') {
        return wd.to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in wd.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// dockerd's rule after the merge: an entrypoint of [""] (`--entrypoint ""`) is nil.
pub(crate) fn reset_empty_entrypoint(c: &mut ContainerConfig) {
    if c.entrypoint
        .as_ref()
        .is_some_and(|v| v.len() == 1 && v[0].is_empty())
    {
        c.entrypoint = None;
    }
}

/// Docker's rule: a container on the default log driver gets the daemon's log options it does
/// not set itself (and shows them in inspect).
pub(crate) fn merge_default_log_opts(hc: &mut HostConfig, defaults: &berth_api::types::StringMap) {
    if defaults.is_empty() || !matches!(hc.log_config.r#type.as_str(), "" | "json-file") {
        return;
    }
    let opts = hc.log_config.config.get_or_insert_with(Default::default);
    for (k, v) in defaults {
        opts.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

pub(crate) fn validate_host_config(hc: &HostConfig) -> Result<()> {
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
    // Resources (memory, CPU, PIDs, blkio): `container::resources`.
    validate_namespace_modes(hc)
}

/// The create-time checks of the container's own config and of the host config's non-resource
/// options, with dockerd's 400 and words (resources: `container::resources`). What dockerd
/// lets through to fail at start with a 500 (a NUL in a value, a tmpfs size that is not a
/// size, a seccomp profile that is not JSON) is refused here too, in words of the same kind.
pub(crate) fn validate_config(c: &ContainerConfig, hc: &HostConfig) -> Result<()> {
    let bad = |m: String| Err(EngineError::InvalidParameter(m));
    if !c.working_dir.is_empty() && !c.working_dir.starts_with('/') {
        return bad(format!(
            "the working directory '{}' is invalid, it needs to be an absolute path",
            c.working_dir
        ));
    }
    for e in c.env.iter().flatten() {
        if e.is_empty() || e.starts_with('=') {
            return bad(format!("invalid environment variable: {e}"));
        }
        if e.contains('\0') {
            return bad(format!(
                "invalid environment variable: value can't contain null(\\x00): {e:?}"
            ));
        }
    }
    if c.hostname.len() > MAX_HOSTNAME {
        return bad(format!(
            "hostname {:?} is too long (maximum {MAX_HOSTNAME} bytes)",
            c.hostname
        ));
    }
    if c.domainname.len() > MAX_HOSTNAME {
        return bad(format!(
            "domainname {:?} is too long (maximum {MAX_HOSTNAME} bytes)",
            c.domainname
        ));
    }
    for (what, v) in [
        ("hostname", &c.hostname),
        ("domainname", &c.domainname),
        ("user", &c.user),
        ("working directory", &c.working_dir),
    ] {
        if v.chars().any(|ch| ch.is_control()) {
            return bad(format!("invalid {what} {v:?}: control characters"));
        }
    }
    for arg in c.cmd.iter().chain(c.entrypoint.iter()).flatten() {
        if arg.contains('\0') {
            return bad(format!("invalid argument {arg:?}: contains a NUL byte"));
        }
    }
    if !c.stop_signal.is_empty() {
        crate::container::signal::parse_signal(&c.stop_signal)?;
    }
    if let Some(h) = &c.healthcheck {
        for (name, v) in [
            ("Interval", h.interval),
            ("Timeout", h.timeout),
            ("StartPeriod", h.start_period),
            ("StartInterval", h.start_interval),
        ] {
            if v != 0 && v < MIN_HEALTH_DURATION {
                return bad(format!("{name} in Healthcheck cannot be less than 1ms"));
            }
        }
        if h.retries < 0 {
            return bad("Retries in Healthcheck cannot be negative".into());
        }
    }
    for key in c.exposed_ports.iter().flat_map(|m| m.keys()) {
        berth_net::ports::parse_port_key(key).map_err(|_| {
            EngineError::InvalidParameter(format!("invalid port specification: {key:?}"))
        })?;
    }
    berth_runtime::spec::check_capabilities(
        hc.cap_add.as_deref().unwrap_or_default(),
        hc.cap_drop.as_deref().unwrap_or_default(),
    )
    .map_err(|e| EngineError::InvalidParameter(e.to_string()))?;
    for g in hc.group_add.iter().flatten() {
        if g.is_empty() || g.contains(['\0', ':']) {
            return bad(format!("invalid group {g:?}"));
        }
    }
    for h in hc.extra_hosts.iter().flatten() {
        validate_extra_host(h)?;
    }
    for (key, binds) in hc.port_bindings.iter().flatten() {
        berth_net::ports::parse_port_key(key).map_err(|_| {
            EngineError::InvalidParameter(format!("invalid port specification: {key:?}"))
        })?;
        for b in binds.iter().flatten() {
            crate::network::parse_host_ports(&b.host_port).map_err(|_| {
                EngineError::InvalidParameter(format!(
                    "invalid port specification: {:?}",
                    b.host_port
                ))
            })?;
            if !matches!(b.host_ip.as_str(), "" | "0.0.0.0" | "::")
                && b.host_ip.parse::<std::net::Ipv4Addr>().is_err()
            {
                return bad(format!("invalid host IP: {}", b.host_ip));
            }
        }
    }
    for d in hc.dns.iter().flatten() {
        if d.parse::<std::net::IpAddr>().is_err() {
            return bad(format!("{d} is not an ip address"));
        }
    }
    validate_security_opts(hc.security_opt.as_deref().unwrap_or_default())?;
    for p in hc
        .masked_paths
        .iter()
        .flatten()
        .chain(hc.readonly_paths.iter().flatten())
    {
        if !p.starts_with('/') || p.contains('\0') {
            return bad(format!(
                "invalid path {p:?}: it needs to be an absolute path"
            ));
        }
    }
    if !matches!(hc.runtime.as_str(), "" | "runc" | "io.containerd.runc.v2") {
        return bad(format!("unknown or invalid runtime name: {}", hc.runtime));
    }
    if !matches!(hc.isolation.as_str(), "" | "default") {
        return bad(format!(
            "invalid isolation ({}): linux only supports 'default'",
            hc.isolation
        ));
    }
    Ok(())
}

/// Longest hostname the kernel takes (HOST_NAME_MAX).
const MAX_HOSTNAME: usize = 64;
/// dockerd's shortest healthcheck duration: 1 ms, in nanoseconds.
const MIN_HEALTH_DURATION: i64 = 1_000_000;

/// `--add-host host:ip` (or `host=ip`): dockerd's format and words; `host-gateway` is allowed.
fn validate_extra_host(h: &str) -> Result<()> {
    let bad = |m: String| Err(EngineError::InvalidParameter(m));
    let Some((name, ip)) = h.split_once('=').or_else(|| h.split_once(':')) else {
        return bad(format!("bad format for add-host: {h:?}"));
    };
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad(format!("bad format for add-host: {h:?}"));
    }
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if ip != "host-gateway" && ip.parse::<std::net::IpAddr>().is_err() {
        return bad(format!("invalid IP address in add-host: {ip:?}"));
    }
    Ok(())
}

/// `SecurityOpt` as dockerd parses it at create; a seccomp profile must be one (its JSON is
/// decoded here, not at start).
fn validate_security_opts(opts: &[String]) -> Result<()> {
    for opt in opts {
        if opt == "no-new-privileges" || opt == "disable" {
            continue;
        }
        let kv = opt.split_once('=').or_else(|| opt.split_once(':'));
        let Some((k, v)) = kv else {
            return Err(EngineError::InvalidParameter(format!(
                "invalid --security-opt 1: {opt:?}"
            )));
        };
        let bool_ok = matches!(
            v,
            "1" | "t"
                | "T"
                | "true"
                | "TRUE"
                | "True"
                | "0"
                | "f"
                | "F"
                | "false"
                | "FALSE"
                | "False"
        );
        match k {
            "label" | "apparmor" => {}
            "no-new-privileges" | "writable-cgroups" if bool_ok => {}
            "seccomp" if v == "unconfined" || v == "builtin" => {}
            "seccomp" => berth_runtime::seccomp::check_profile(v).map_err(|e| {
                EngineError::InvalidParameter(format!("Decoding seccomp profile failed: {e}"))
            })?,
            _ => {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid --security-opt 2: {opt:?}"
                )))
            }
        }
    }
    Ok(())
}

/// dockerd's checks of the namespace modes and the options that go with them.
fn validate_namespace_modes(hc: &HostConfig) -> Result<()> {
    let bad = |m: String| Err(EngineError::InvalidParameter(m));
    let joins = |mode: &str| {
        mode.strip_prefix("container:")
            .is_some_and(|t| !t.is_empty())
    };
    match hc.ipc_mode.as_str() {
        "" | "none" | "private" | "host" | "shareable" => {}
        m if m.starts_with("container:") => {}
        m => return bad(format!("invalid IPC mode: {m}")),
    }
    match hc.pid_mode.as_str() {
        "" | "host" => {}
        m if joins(m) => {}
        m => return bad(format!("invalid PID mode: {m}")),
    }
    if !matches!(hc.uts_mode.as_str(), "" | "host") {
        return bad(format!("invalid UTS mode: {}", hc.uts_mode));
    }
    if !matches!(hc.cgroupns_mode.as_str(), "" | "private" | "host") {
        return bad(format!(
            "invalid cgroup namespace mode: {}",
            hc.cgroupns_mode
        ));
    }
    if hc.shm_size < 0 {
        return bad("SHM size can not be less than 0".into());
    }
    if !(-1000..=1000).contains(&hc.oom_score_adj) {
        return bad(format!(
            "Invalid value {}, range for oom score adj is [-1000, 1000]",
            hc.oom_score_adj
        ));
    }
    crate::cgroups::parent_path(&hc.cgroup_parent)
        .map(|_| ())
        .map_err(EngineError::InvalidParameter)
}

/// What dockerd fills in at create when the client left it empty (inspect shows it): the
/// IPC mode (`private`), the cgroup namespace mode (`private` on a cgroup v2 host, else
/// `host`) and the /dev/shm size (64 MiB).
pub(crate) fn fill_host_config_defaults(hc: &mut HostConfig, cgroupns: crate::CgroupnsMode) {
    if hc.ipc_mode.is_empty() {
        hc.ipc_mode = "private".into();
    }
    if hc.cgroupns_mode.is_empty() {
        // The daemon's --default-cgroupns-mode (Docker's default: private on v2, host on v1).
        hc.cgroupns_mode = cgroupns.to_string();
    }
    if hc.shm_size == 0 {
        hc.shm_size = berth_runtime::spec::DEFAULT_SHM_SIZE;
    }
}

/// `--network container:<name|id>` shares that container's network namespace and /etc files:
/// what would configure a network of the container's own conflicts (dockerd's checks, words).
pub(crate) fn validate_container_network_mode(c: &ContainerConfig, hc: &HostConfig) -> Result<()> {
    if hc.uts_mode == "host" && !c.hostname.is_empty() {
        return Err(EngineError::InvalidParameter(
            "conflicting options: hostname and the UTS mode".into(),
        ));
    }
    let Some(target) = hc.network_mode.container() else {
        if hc.network_mode.is_host() && !c.mac_address.is_empty() {
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

pub(crate) fn restart_policy(hc: &HostConfig) -> (String, i64) {
    (
        hc.restart_policy.name.clone(),
        hc.restart_policy.maximum_retry_count,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(c: ContainerConfig, hc: HostConfig) -> String {
        match validate_config(&c, &hc)
            .and_then(|_| validate_host_config(&hc))
            .and_then(|_| validate_container_network_mode(&c, &hc))
        {
            Err(EngineError::InvalidParameter(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    fn cfg(f: impl FnOnce(&mut ContainerConfig)) -> ContainerConfig {
        let mut c = ContainerConfig::default();
        f(&mut c);
        c
    }

    fn host(f: impl FnOnce(&mut HostConfig)) -> HostConfig {
        let mut h = HostConfig::default();
        f(&mut h);
        h
    }

    #[test]
    fn dockerd_create_time_refusals() {
        let none = HostConfig::default;
        let c0 = ContainerConfig::default;
        for (c, h, want) in [
            (
                cfg(|c| c.working_dir = "rel".into()),
                none(),
                "the working directory 'rel' is invalid, it needs to be an absolute path",
            ),
            (
                cfg(|c| c.env = Some(vec!["=x".into()])),
                none(),
                "invalid environment variable: =x",
            ),
            (
                cfg(|c| c.env = Some(vec!["".into()])),
                none(),
                "invalid environment variable: ",
            ),
            (
                cfg(|c| c.hostname = "h".repeat(65)),
                none(),
                &format!(
                    "hostname \"{}\" is too long (maximum 64 bytes)",
                    "h".repeat(65)
                ),
            ),
            (
                cfg(|c| c.stop_signal = "SIGFOO".into()),
                none(),
                "Invalid signal: SIGFOO",
            ),
            (
                cfg(|c| {
                    c.healthcheck = Some(berth_api::types::HealthConfig {
                        interval: -1,
                        ..Default::default()
                    })
                }),
                none(),
                "Interval in Healthcheck cannot be less than 1ms",
            ),
            (
                cfg(|c| {
                    c.healthcheck = Some(berth_api::types::HealthConfig {
                        retries: -1,
                        ..Default::default()
                    })
                }),
                none(),
                "Retries in Healthcheck cannot be negative",
            ),
            (
                c0(),
                host(|h| h.cap_add = Some(vec!["BOGUS".into()])),
                "invalid CapAdd: unknown capability: \"CAP_BOGUS\"",
            ),
            (
                c0(),
                host(|h| h.cap_drop = Some(vec!["".into()])),
                "invalid CapDrop: unknown capability: \"CAP_\"",
            ),
            (
                c0(),
                host(|h| h.extra_hosts = Some(vec!["nocolon".into()])),
                "bad format for add-host: \"nocolon\"",
            ),
            (
                c0(),
                host(|h| h.extra_hosts = Some(vec!["h:notanip".into()])),
                "invalid IP address in add-host: \"notanip\"",
            ),
            (
                c0(),
                host(|h| h.security_opt = Some(vec!["bogus".into()])),
                "invalid --security-opt 1: \"bogus\"",
            ),
            (
                c0(),
                host(|h| h.security_opt = Some(vec!["x=y".into()])),
                "invalid --security-opt 2: \"x=y\"",
            ),
            (
                c0(),
                host(|h| h.ipc_mode = "bogus".into()),
                "invalid IPC mode: bogus",
            ),
            (
                c0(),
                host(|h| h.oom_score_adj = -1001),
                "Invalid value -1001, range for oom score adj is [-1000, 1000]",
            ),
            (c0(), host(|h| h.uts_mode = "host".into()), ""),
        ] {
            if want.is_empty() {
                assert!(validate_config(&c, &h).is_ok());
                continue;
            }
            assert_eq!(refused(c, h), want);
        }
        assert!(refused(
            c0(),
            host(|h| h.security_opt = Some(vec!["seccomp=/x".into()]))
        )
        .starts_with("Decoding seccomp profile failed: "));
        assert!(
            refused(cfg(|c| c.env = Some(vec!["A=b\0c".into()])), none())
                .contains("can't contain null")
        );
        assert!(refused(
            c0(),
            host(|h| {
                h.port_bindings = Some(
                    [(
                        "80/tcp".to_string(),
                        Some(vec![berth_api::types::PortBinding {
                            host_ip: String::new(),
                            host_port: "abc".into(),
                        }]),
                    )]
                    .into_iter()
                    .collect(),
                )
            })
        )
        .contains("invalid port specification: \"abc\""));
        // Accepted as dockerd accepts them.
        for h in ["h:1.2.3.4", "h=::1", "h:host-gateway", "h:[::1]"] {
            assert!(validate_extra_host(h).is_ok(), "{h}");
        }
        assert!(validate_security_opts(&[
            "no-new-privileges".into(),
            "no-new-privileges:true".into(),
            "seccomp=unconfined".into(),
            "label=disable".into(),
            "apparmor=unconfined".into()
        ])
        .is_ok());
    }

    #[test]
    fn working_dir_is_cleaned_and_empty_entrypoint_is_null() {
        let c = merge_config(
            &cfg(|c| {
                c.working_dir = "/a/../../b/./c/".into();
                c.entrypoint = Some(vec![String::new()]);
                c.cmd = Some(vec!["x".into()]);
            }),
            Some(&ContainerConfig::default()),
        );
        assert_eq!(c.working_dir, "/b/c");
        assert_eq!(c.entrypoint, None);
        let c = merge_config(
            &cfg(|c| c.entrypoint = Some(vec![])),
            Some(&cfg(|c| {
                c.entrypoint = Some(vec!["/e".into()]);
                c.cmd = Some(vec!["d".into()]);
            })),
        );
        assert_eq!(
            (c.entrypoint, c.cmd),
            (Some(vec![]), Some(vec!["d".into()]))
        );
    }
}
