//! Pod sandboxes (a Kubernetes node runtime's unit): a network namespace wired by CNI plugins,
//! an infra process holding the shared IPC/UTS(/PID) namespaces, the pod's /etc files, and the
//! containers that join them. One file per operation: `run`, `stop`, `remove`, `status` (list
//! and inspect), `container` (a pod's containers: create and their run spec), `recover`
//! (after a daemon restart), `portforward`.
//!
//! On disk: `<data-root>/pods/<id>/pod.json` (the record, atomic rewrite) with the pod's
//! `hostname`, `hosts` and `resolv.conf`; `<exec-root>/pods/<id>/netns`, the pinned network
//! namespace.

mod container;
mod portforward;
mod recover;
mod remove;
mod run;
pub mod spec;
mod status;
mod stop;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_runtime::infra::Infra;
use serde::{Deserialize, Serialize};

use crate::container::resources::has_sys_resource;
use crate::error::{EngineError, Result};
use crate::Engine;

pub use container::POD_LABEL;
pub use spec::{
    ContainerSpec, DeviceSpec, DnsSpec, MountSpec, Namespaces, NsMode, PodContainer, PodSpec,
    PortSpec, Propagation, Resources, SeccompSpec, SecuritySpec,
};
pub use status::PodView;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodState {
    Ready,
    NotReady,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    /// Unix nanoseconds.
    pub created: i64,
    pub spec: PodSpec,
    pub state: PodState,
    /// The pinned network namespace; `None` for a host-network pod.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// The CNI result of the pod's network (kept for its DEL); `None` once torn down.
    #[serde(default)]
    pub cni_result: Option<serde_json::Value>,
    /// The pod's addresses, IPv4 first.
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub infra: Option<Infra>,
}

impl PodRecord {
    fn save(&self, dir: &Path) -> std::io::Result<()> {
        let data = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::util::write_atomic(&dir.join("pod.json"), &data)
    }

    fn load(dir: &Path) -> std::io::Result<PodRecord> {
        let data = std::fs::read(dir.join("pod.json"))?;
        serde_json::from_slice(&data).map_err(std::io::Error::other)
    }

    pub fn host_network(&self) -> bool {
        self.spec.namespaces.network == NsMode::Node
    }

    /// Ready, and its infra process still there.
    pub fn ready(&self) -> bool {
        self.state == PodState::Ready && self.infra.is_some_and(|i| i.alive())
    }

    /// `name_namespace_uid_attempt`: unique among the pods, as the kubelet expects.
    fn key(spec: &PodSpec) -> String {
        format!(
            "{}_{}_{}_{}",
            spec.name, spec.namespace, spec.uid, spec.attempt
        )
    }
}

pub struct PodEntry {
    pub id: String,
    dir: PathBuf,
    record: Mutex<PodRecord>,
    /// Serialises run/stop/remove and container creation on one pod.
    op: tokio::sync::Mutex<()>,
}

impl PodEntry {
    pub fn snapshot(&self) -> PodRecord {
        match self.record.lock() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut PodRecord)) -> Result<PodRecord> {
        let mut g = match self.record.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g);
        g.save(&self.dir)?;
        Ok(g.clone())
    }
}

#[derive(Default)]
pub(crate) struct PodIndex {
    by_id: HashMap<String, Arc<PodEntry>>,
    /// `PodRecord::key` -> id
    keys: HashMap<String, String>,
}

impl Engine {
    fn pods_index(&self) -> std::sync::MutexGuard<'_, PodIndex> {
        match self.inner.pods.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn pod_dir(&self, id: &str) -> PathBuf {
        self.inner.cfg.data_root.join("pods").join(id)
    }

    fn pod_run_dir(&self, id: &str) -> PathBuf {
        self.inner.cfg.exec_root.join("pods").join(id)
    }

    /// A pod by full id or unique id prefix.
    pub(crate) fn pod_lookup(&self, id: &str) -> Result<Arc<PodEntry>> {
        let idx = self.pods_index();
        if let Some(p) = idx.by_id.get(id) {
            return Ok(p.clone());
        }
        if !id.is_empty() {
            let mut found = idx.by_id.iter().filter(|(k, _)| k.starts_with(id));
            if let (Some((_, p)), None) = (found.next(), found.next()) {
                return Ok(p.clone());
            }
        }
        Err(EngineError::NotFound(format!(
            "an error occurred when try to find sandbox: not found: {id}"
        )))
    }

    /// The pod's containers (ids), from the container index.
    pub(crate) fn pod_container_ids(&self, pod_id: &str) -> Vec<String> {
        self.all_entries()
            .into_iter()
            .filter(|c| {
                c.record
                    .lock()
                    .map(|r| r.pod.as_ref().is_some_and(|p| p.pod_id == pod_id))
                    .unwrap_or(false)
            })
            .map(|c| c.id.clone())
            .collect()
    }
}

/// What the host lets us give a process as `oom_score_adj`: without CAP_SYS_RESOURCE no value
/// below our own. containerd's `restrict_oom_score_adj`: the wanted value, raised to ours.
pub fn clamp_oom_score_adj(want: i64) -> i32 {
    let own = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let floor = if has_sys_resource() { -1000 } else { own };
    want.clamp(floor, 1000) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_score_adj_is_clamped_to_what_the_host_allows() {
        let own: i64 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(clamp_oom_score_adj(2000), 1000);
        assert_eq!(clamp_oom_score_adj(1000), 1000);
        let low = clamp_oom_score_adj(-998) as i64;
        if has_sys_resource() {
            assert_eq!(low, -998);
        } else {
            assert_eq!(low, own.max(-998));
        }
    }
}
