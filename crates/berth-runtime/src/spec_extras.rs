//! What a Kubernetes pod's container needs beyond a Docker container's spec: namespaces shared
//! with the pod (or the host), the pod's masked/read-only paths and sysctls instead of Docker's,
//! an OOM score, devices, CPU quota/period and cpusets as given. Applied to the finished spec
//! (`build_spec_for` calls [`SpecExtras::apply`] last), so the Docker path is untouched when
//! they are all at their defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::RuntimeError;

/// Where a container's IPC, UTS or PID namespace comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NsJoin {
    /// A namespace of its own (Docker's default).
    #[default]
    New,
    /// The host's.
    Host,
    /// An existing one: `/proc/<pid>/ns/<kind>` of the pod's infra process, or a pinned file.
    Path(PathBuf),
}

/// A host device node made available in the container (CRI `Device`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceMap {
    pub host_path: PathBuf,
    pub container_path: String,
    /// Cgroup access: some of `r`, `w`, `m`.
    pub permissions: String,
}

#[derive(Clone, Debug, Default)]
pub struct SpecExtras {
    pub ipc: NsJoin,
    pub uts: NsJoin,
    pub pid: NsJoin,
    /// Replace Docker's masked / read-only paths (unprivileged containers only).
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    /// Replace Docker's default sysctls.
    pub sysctls: Option<BTreeMap<String, String>>,
    pub oom_score_adj: Option<i32>,
    pub devices: Vec<DeviceMap>,
    /// cgroup v2 files written as given (`resources.unified`).
    pub unified: BTreeMap<String, String>,
    /// Kubernetes' supplemental groups: `Some` puts the primary gid and these into the
    /// process's groups (sorted), with the image's groups of the user unless `strict_groups`.
    pub supplemental_groups: Option<Vec<u32>>,
    pub strict_groups: bool,
}

impl SpecExtras {
    /// Applies the extras to a spec built with Docker's defaults.
    pub(crate) fn apply(&self, spec: &mut Value, privileged: bool) -> Result<(), RuntimeError> {
        let linux = &mut spec["linux"];
        if let Some(ns) = linux["namespaces"].as_array_mut() {
            for (kind, join) in [("ipc", &self.ipc), ("uts", &self.uts), ("pid", &self.pid)] {
                match join {
                    NsJoin::New => {}
                    NsJoin::Host => ns.retain(|n| n["type"] != kind),
                    NsJoin::Path(p) => {
                        for n in ns.iter_mut().filter(|n| n["type"] == kind) {
                            n["path"] = json!(p);
                        }
                    }
                }
            }
        }
        if !privileged {
            if let Some(p) = &self.masked_paths {
                linux["maskedPaths"] = json!(p);
            }
            if let Some(p) = &self.readonly_paths {
                linux["readonlyPaths"] = json!(p);
            }
        }
        if let Some(s) = &self.sysctls {
            match linux.as_object_mut() {
                Some(l) if s.is_empty() => {
                    l.remove("sysctl");
                }
                _ => linux["sysctl"] = json!(s),
            }
        }
        if !self.devices.is_empty() {
            let mut nodes = linux["devices"].as_array().cloned().unwrap_or_default();
            let mut rules = linux["resources"]["devices"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for d in &self.devices {
                let (node, rule) = device(d)?;
                nodes.retain(|n| n["path"] != node["path"]);
                nodes.push(node);
                rules.push(rule);
            }
            linux["devices"] = json!(nodes);
            linux["resources"]["devices"] = json!(rules);
        }
        if !self.unified.is_empty() {
            linux["resources"]["unified"] = json!(self.unified);
        }
        if let Some(extra) = &self.supplemental_groups {
            let user = &mut spec["process"]["user"];
            let mut gids: Vec<u64> = if self.strict_groups {
                Vec::new()
            } else {
                user["additionalGids"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default()
            };
            gids.extend(user["gid"].as_u64());
            gids.extend(extra.iter().map(|g| *g as u64));
            gids.sort_unstable();
            gids.dedup();
            user["additionalGids"] = json!(gids);
        }
        if let Some(adj) = self.oom_score_adj {
            spec["process"]["oomScoreAdj"] = json!(adj);
        }
        // Joining the pod's (or the host's) UTS namespace: its hostname is already set, and
        // setting it again from a host-network pod would rename the host.
        if self.uts != NsJoin::New {
            if let Some(s) = spec.as_object_mut() {
                s.remove("hostname");
            }
        }
        Ok(())
    }
}

/// The spec's device node and cgroup rule for a host device.
fn device(d: &DeviceMap) -> Result<(Value, Value), RuntimeError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::metadata(&d.host_path)
        .map_err(|e| RuntimeError::io(format!("device {}", d.host_path.display()), e))?;
    let typ = if md.file_type().is_char_device() {
        "c"
    } else if md.file_type().is_block_device() {
        "b"
    } else {
        return Err(RuntimeError::Spec(format!(
            "{} is not a device node",
            d.host_path.display()
        )));
    };
    if !d.container_path.starts_with('/') {
        return Err(RuntimeError::Spec(format!(
            "device path {:?} must be absolute",
            d.container_path
        )));
    }
    let access: String = d
        .permissions
        .chars()
        .filter(|c| matches!(c, 'r' | 'w' | 'm'))
        .collect();
    let access = if access.is_empty() {
        "rwm".to_string()
    } else {
        access
    };
    let (major, minor) = (
        nix::sys::stat::major(md.rdev()),
        nix::sys::stat::minor(md.rdev()),
    );
    Ok((
        json!({
            "path": d.container_path, "type": typ, "major": major, "minor": minor,
            "fileMode": md.mode() & 0o7777, "uid": md.uid(), "gid": md.gid(),
        }),
        json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({
            "hostname": "h",
            "process": {"oomScoreAdj": 0, "user": {"uid": 1000, "gid": 1000, "additionalGids": [50000]}},
            "linux": {
                "namespaces": [{"type":"mount"},{"type":"uts"},{"type":"ipc"},{"type":"pid"},{"type":"network"}],
                "maskedPaths": ["/proc/kcore"],
                "readonlyPaths": ["/proc/sys"],
                "sysctl": {"net.ipv4.ping_group_range": "0 2147483647"},
                "resources": {"devices": [{"allow": false, "access": "rwm"}]}
            }
        })
    }

    #[test]
    fn defaults_change_nothing() {
        let mut v = base();
        SpecExtras::default().apply(&mut v, false).unwrap();
        assert_eq!(v, base());
    }

    #[test]
    fn pod_namespaces_paths_and_sysctls() {
        let mut v = base();
        let x = SpecExtras {
            ipc: NsJoin::Path("/proc/7/ns/ipc".into()),
            uts: NsJoin::Path("/proc/7/ns/uts".into()),
            pid: NsJoin::Host,
            masked_paths: Some(vec!["/bin/ls".into()]),
            readonly_paths: Some(vec![]),
            sysctls: Some([("kernel.shm_rmid_forced".to_string(), "1".to_string())].into()),
            oom_score_adj: Some(500),
            devices: vec![DeviceMap {
                host_path: "/dev/null".into(),
                container_path: "/dev/mynull".into(),
                permissions: "rw".into(),
            }],
            ..Default::default()
        };
        x.apply(&mut v, false).unwrap();
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert_eq!(ns.len(), 4);
        assert_eq!(ns[1], json!({"type":"uts","path":"/proc/7/ns/uts"}));
        assert_eq!(ns[2], json!({"type":"ipc","path":"/proc/7/ns/ipc"}));
        assert!(ns.iter().all(|n| n["type"] != "pid"));
        assert!(
            v.get("hostname").is_none(),
            "a joined UTS namespace keeps its name"
        );
        assert_eq!(v["linux"]["maskedPaths"], json!(["/bin/ls"]));
        assert_eq!(v["linux"]["readonlyPaths"], json!([]));
        assert_eq!(v["linux"]["sysctl"], json!({"kernel.shm_rmid_forced": "1"}));
        assert_eq!(v["process"]["oomScoreAdj"], 500);
        let d = &v["linux"]["devices"][0];
        assert_eq!(
            (d["path"].as_str(), d["major"].as_u64()),
            (Some("/dev/mynull"), Some(1))
        );
        assert_eq!(v["linux"]["resources"]["devices"][1]["access"], "rw");
    }

    #[test]
    fn supplemental_groups_merge_or_strict() {
        let mut v = base();
        let x = SpecExtras {
            supplemental_groups: Some(vec![1234, 1000]),
            ..Default::default()
        };
        x.apply(&mut v, false).unwrap();
        assert_eq!(
            v["process"]["user"]["additionalGids"],
            json!([1000, 1234, 50000])
        );
        let mut v = base();
        let x = SpecExtras {
            supplemental_groups: Some(vec![1234]),
            strict_groups: true,
            ..Default::default()
        };
        x.apply(&mut v, false).unwrap();
        assert_eq!(v["process"]["user"]["additionalGids"], json!([1000, 1234]));
    }

    #[test]
    fn privileged_keeps_its_paths_and_bad_devices_fail() {
        let mut v = base();
        let x = SpecExtras {
            masked_paths: Some(vec!["/x".into()]),
            sysctls: Some(BTreeMap::new()),
            ..Default::default()
        };
        x.apply(&mut v, true).unwrap();
        assert_eq!(v["linux"]["maskedPaths"], json!(["/proc/kcore"]));
        assert!(v["linux"].get("sysctl").is_none());
        let x = SpecExtras {
            devices: vec![DeviceMap {
                host_path: "/etc/hostname".into(),
                container_path: "/dev/x".into(),
                permissions: "r".into(),
            }],
            ..Default::default()
        };
        assert!(x
            .apply(&mut base(), false)
            .unwrap_err()
            .to_string()
            .contains("not a device"));
    }
}
