//! What a start hands the runtime: the container's run configuration (security options, resources,
//! the /etc bind mounts) and the shim's log options.

use std::path::Path;

use berth_runtime::shim::ShimOptions;
use berth_runtime::spec::{ContainerRunConfig, Isolation, NetworkMode, SeccompMode};

use crate::container::ContainerRecord;
use crate::Engine;

const DEFAULT_LOG_MAX_SIZE: u64 = 20 * 1024 * 1024;
const DEFAULT_LOG_MAX_FILE: u32 = 5;

impl Engine {
    /// The shim's options: where the bundle and logs go, the json-file rotation
    /// (`--log-opt max-size/max-file`), stdio.
    pub(crate) fn shim_options(&self, rec: &ContainerRecord, runtime_dir: &Path) -> ShimOptions {
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
        if let Some(pc) = &rec.pod {
            // The kubelet's log file in the CRI format (none when it gave no path).
            return ShimOptions {
                id: rec.id.clone(),
                bundle: runtime_dir.to_path_buf(),
                state_root: self.state_root(),
                runtime_dir: runtime_dir.to_path_buf(),
                log_path: pc.log_file.clone().into(),
                log_max_size: 0,
                log_max_file: 1,
                tty: rec.config.tty,
                open_stdin: rec.config.open_stdin,
                stdin_once: rec.config.stdin_once,
                log_format: berth_runtime::shim::LogFormat::Cri,
                exec: None,
            };
        }
        ShimOptions {
            id: rec.id.clone(),
            bundle: runtime_dir.to_path_buf(),
            state_root: self.state_root(),
            runtime_dir: runtime_dir.to_path_buf(),
            log_path: rec.log_path.clone().into(),
            log_max_size,
            log_max_file,
            tty: rec.config.tty,
            open_stdin: rec.config.open_stdin,
            stdin_once: rec.config.stdin_once,
            log_format: Default::default(),
            exec: None,
        }
    }

    pub(crate) fn run_config(
        &self,
        rec: &ContainerRecord,
        rootfs: std::path::PathBuf,
        network: NetworkMode,
        isolation: Isolation,
    ) -> crate::Result<ContainerRunConfig> {
        let hc = &rec.host_config;
        let mut args = vec![rec.path.clone()];
        args.extend(rec.args.iter().cloned());
        let mut mounts = Vec::new();
        for (dest, src) in [
            ("/etc/hostname", &rec.hostname_path),
            ("/etc/hosts", &rec.hosts_path),
            ("/etc/resolv.conf", &rec.resolv_conf_path),
        ] {
            if let Ok(m) = crate::container::mounts::oci_bind(
                dest,
                src,
                &["rbind", "rprivate"],
                hc.readonly_rootfs,
            ) {
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
            ulimits: hc
                .ulimits
                .iter()
                .flatten()
                .map(|u| berth_runtime::spec::Ulimit {
                    name: u.name.clone(),
                    soft: u.soft,
                    hard: u.hard,
                })
                .collect(),
            mounts,
            cgroups_path: self.cgroups_path(hc, &rec.id)?,
            network,
            isolation,
            oom_score_adj: hc.oom_score_adj,
            seccomp,
            extras: Default::default(),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10m"), Some(10 * 1024 * 1024));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("300"), Some(300));
        assert_eq!(parse_size("x"), None);
    }
}
