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
pub(crate) fn validate_container_network_mode(c: &ContainerConfig, hc: &HostConfig) -> Result<()> {
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
