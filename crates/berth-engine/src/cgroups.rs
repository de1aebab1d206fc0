//! Containers' cgroups, through berth-runtime's cgroup module: the engine turns a HostConfig
//! into `Resources` (device paths to numbers, with Docker's checks and words) and finds a
//! container's cgroup from its bundle (the spec's cgroupsPath names it, whichever driver made
//! it — so a daemon restarted with another driver still finds older containers).

use berth_api::types::HostConfig;
use berth_runtime::cgroup::{CgroupDriver, CgroupnsMode, Resources, ThrottleDevice, WeightDevice};
use serde_json::Value;

pub use berth_runtime::cgroup::ContainerCgroup as Cgroup;

use crate::error::{EngineError, Result};

fn invalid(e: berth_runtime::RuntimeError) -> EngineError {
    EngineError::InvalidParameter(e.to_string())
}

/// `[{"Path": "/dev/sda", "Rate": 1048576}]` (or `"Weight"`), as the API gives device lists.
fn device_list(list: &Option<Vec<Value>>, key: &str) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for v in list.iter().flatten() {
        let path = v["Path"].as_str().unwrap_or_default();
        let n = v[key].as_u64().ok_or_else(|| {
            EngineError::InvalidParameter(format!("invalid {key} for device {path}: {}", v[key]))
        })?;
        out.push((path.to_string(), n));
    }
    Ok(out)
}

fn throttle(list: &Option<Vec<Value>>) -> Result<Vec<ThrottleDevice>> {
    device_list(list, "Rate")?
        .into_iter()
        .map(|(p, r)| ThrottleDevice::from_path(&p, r).map_err(invalid))
        .collect()
}

/// The limits of a HostConfig.
pub(crate) fn resources(hc: &HostConfig) -> Result<Resources> {
    if hc.blkio_weight != 0 && !(10..=1000).contains(&hc.blkio_weight) {
        return Err(EngineError::InvalidParameter(format!(
            "Range of blkio weight is from 10 to 1000, got {}",
            hc.blkio_weight
        )));
    }
    let weight_device = device_list(&hc.blkio_weight_device, "Weight")?
        .into_iter()
        .map(|(p, w)| {
            WeightDevice::from_path(&p, u16::try_from(w).unwrap_or(u16::MAX)).map_err(invalid)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Resources {
        memory: hc.memory,
        memory_swap: hc.memory_swap,
        memory_reservation: hc.memory_reservation,
        memory_swappiness: hc.memory_swappiness.filter(|s| *s >= 0),
        oom_kill_disable: hc.oom_kill_disable.unwrap_or(false),
        nano_cpus: hc.nano_cpus,
        cpu_shares: hc.cpu_shares,
        cpu_period: hc.cpu_period,
        cpu_quota: hc.cpu_quota,
        cpuset_cpus: hc.cpuset_cpus.clone(),
        cpuset_mems: hc.cpuset_mems.clone(),
        pids_limit: hc.pids_limit,
        blkio_weight: hc.blkio_weight,
        blkio_weight_device: weight_device,
        device_read_bps: throttle(&hc.blkio_device_read_bps)?,
        device_write_bps: throttle(&hc.blkio_device_write_bps)?,
        device_read_iops: throttle(&hc.blkio_device_read_iops)?,
        device_write_iops: throttle(&hc.blkio_device_write_iops)?,
    })
}

/// Create-time checks of the cgroup settings (parent for the driver, cgroupns mode, devices)
/// and dockerd's warnings for limits a cgroup v2 host discards.
pub(crate) fn check(hc: &HostConfig, driver: CgroupDriver) -> Result<Vec<String>> {
    match driver {
        CgroupDriver::Cgroupfs => {
            parent_path(&hc.cgroup_parent).map_err(EngineError::InvalidParameter)?;
        }
        CgroupDriver::Systemd => {
            driver
                .cgroups_path(&hc.cgroup_parent, "x")
                .map_err(invalid)?;
        }
    }
    CgroupnsMode::parse(&hc.cgroupns_mode, CgroupnsMode::Private).map_err(invalid)?;
    resources(hc)?;
    let mut warnings = Vec::new();
    if berth_runtime::cgroup::host_is_v2(std::path::Path::new(berth_runtime::cgroup::ROOT)) {
        if hc.memory_swappiness.is_some_and(|s| s >= 0) {
            warnings.push(
                "Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded."
                    .to_string(),
            );
        }
        if hc.oom_kill_disable == Some(true) {
            warnings.push(
                "Your kernel does not support OomKillDisable. OomKillDisable discarded."
                    .to_string(),
            );
        }
    }
    Ok(warnings)
}

/// The cgroupfs driver's parent of a container, from `HostConfig.CgroupParent`: `/berth` when
/// empty; a path (relative ones from the root, `..` cleaned away as runc does); a systemd slice
/// name (`a-b.slice`) expands to systemd's path for it (`/a.slice/a-b.slice`), as there is no
/// systemd driver to ask.
pub fn parent_path(parent: &str) -> std::result::Result<String, String> {
    if parent.is_empty() {
        return Ok(berth_runtime::cgroup::DEFAULT_PARENT.into());
    }
    if parent.contains('\0') || parent.contains('\n') {
        return Err(format!("invalid cgroup parent {parent:?}"));
    }
    if !parent.contains('/') && parent.len() > 6 && parent.ends_with(".slice") {
        return berth_runtime::cgroup::expand_slice(parent)
            .map(|p| p.display().to_string())
            .map_err(|_| format!("invalid slice name: {parent}"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in parent.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The cgroupfs driver's cgroups path of a container under `cgroup_parent` (a pod's
/// containers go there whichever driver the daemon uses: the kubelet names their parent).
pub fn container_path(id: &str, cgroup_parent: &str) -> String {
    let parent =
        parent_path(cgroup_parent).unwrap_or_else(|_| berth_runtime::cgroup::DEFAULT_PARENT.into());
    format!("{}/{id}", parent.trim_end_matches('/'))
}

impl crate::Engine {
    /// The container's cgroup, as its bundle names it (None before its first start).
    pub fn cgroup(&self, id: &str) -> Option<Cgroup> {
        Cgroup::of_bundle(&self.runtime_dir(id))
    }

    /// The cgroups path of a container about to start, for this daemon's driver.
    pub(crate) fn cgroups_path(&self, hc: &HostConfig, id: &str) -> Result<String> {
        match self.config().cgroup_driver {
            CgroupDriver::Cgroupfs => {
                let parent =
                    parent_path(&hc.cgroup_parent).map_err(EngineError::InvalidParameter)?;
                Ok(format!("{}/{id}", parent.trim_end_matches('/')))
            }
            CgroupDriver::Systemd => CgroupDriver::Systemd
                .cgroups_path(&hc.cgroup_parent, id)
                .map_err(invalid),
        }
    }

    /// The cgroup of a container that runs (or is paused).
    pub(crate) fn running_cgroup(&self, id: &str) -> Result<Cgroup> {
        self.cgroup(id)
            .ok_or_else(|| EngineError::Internal(format!("container {id} has no cgroup")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_config_to_resources() {
        let hc = HostConfig {
            memory: 64 << 20,
            cpuset_cpus: "0".into(),
            blkio_weight: 300,
            pids_limit: Some(7),
            ..Default::default()
        };
        let r = resources(&hc).expect("resources");
        assert_eq!(r.memory, 64 << 20);
        assert_eq!(r.cpuset_cpus, "0");
        assert_eq!(r.blkio_weight, 300);
        assert_eq!(r.pids_limit, Some(7));
        let bad = HostConfig {
            blkio_weight: 5,
            ..Default::default()
        };
        assert!(resources(&bad).is_err());
        let not_block = HostConfig {
            blkio_device_read_bps: Some(vec![serde_json::json!({"Path": "/dev/null", "Rate": 1})]),
            ..Default::default()
        };
        assert_eq!(
            resources(&not_block).unwrap_err().to_string(),
            "/dev/null is not a block device"
        );
        let parent = HostConfig {
            cgroup_parent: "/not/a/slice".into(),
            ..Default::default()
        };
        assert!(check(&parent, CgroupDriver::Cgroupfs).is_ok());
        assert!(check(&parent, CgroupDriver::Systemd).is_err());
        let ns = HostConfig {
            cgroupns_mode: "bogus".into(),
            ..Default::default()
        };
        assert_eq!(
            check(&ns, CgroupDriver::Cgroupfs).unwrap_err().to_string(),
            "invalid cgroup namespace mode: bogus"
        );
    }
}
