//! `update`: resources and restart policy of a container, applied to its cgroup when it runs.

use berth_api::types::RestartPolicy;
use serde::Deserialize;

use crate::container::Status;
use crate::error::{EngineError, Result};
use crate::Engine;

/// `POST /containers/{id}/update` body: the resources Docker lets one change live.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateConfig {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub blkio_weight: Option<u16>,
    pub pids_limit: Option<i64>,
    pub restart_policy: Option<RestartPolicy>,
}

impl Engine {
    /// `POST /containers/{id}/update`: new limits go to the running cgroup and the record.
    pub async fn update(&self, name: &str, u: UpdateConfig) -> Result<Vec<String>> {
        let c = self.lookup(name)?;
        let _g = c.op.lock().await;
        let rec = c.snapshot();
        if let Some(rp) = &u.restart_policy {
            if rec.host_config.auto_remove && !rp.name.is_empty() && rp.name != "no" {
                return Err(EngineError::InvalidParameter(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container"
                        .into(),
                ));
            }
            if !["", "no", "always", "unless-stopped", "on-failure"].contains(&rp.name.as_str()) {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid restart policy '{}'",
                    rp.name
                )));
            }
        }
        let mut hc = rec.host_config.clone();
        if let Some(m) = u.memory {
            // The merged settings are validated below; a memory above the maximum fails there.
            hc.memory = m;
            // Docker: a new memory limit without a swap setting keeps swap at twice it.
            if u.memory_swap.is_none() && hc.memory_swap > 0 && hc.memory_swap < m {
                hc.memory_swap = berth_runtime::limits::memory_swap(m, 0)
                    .flatten()
                    .unwrap_or(-1);
            }
        }
        if let Some(s) = u.memory_swap {
            hc.memory_swap = s;
        }
        if let Some(r) = u.memory_reservation {
            hc.memory_reservation = r;
        }
        if let Some(n) = u.nano_cpus {
            hc.nano_cpus = n;
        }
        if let Some(s) = u.cpu_shares {
            hc.cpu_shares = s;
        }
        if let Some(p) = u.cpu_period {
            hc.cpu_period = p;
        }
        if let Some(q) = u.cpu_quota {
            hc.cpu_quota = q;
        }
        if let Some(cs) = &u.cpuset_cpus {
            hc.cpuset_cpus = cs.clone();
        }
        if let Some(cs) = &u.cpuset_mems {
            hc.cpuset_mems = cs.clone();
        }
        if let Some(w) = u.blkio_weight {
            hc.blkio_weight = w;
        }
        if let Some(p) = u.pids_limit {
            hc.pids_limit = Some(p);
        }
        if let Some(rp) = &u.restart_policy {
            hc.restart_policy = rp.clone();
        }
        crate::container::resources::validate(&mut hc, crate::container::resources::When::Update)?;
        // Rootless: the limits of controllers not delegated are discarded with dockerd's
        // warnings, as at create (the record's own were discarded then, so each warning names a
        // limit of this update), and the rest is updated; without any delegation the container
        // has no cgroup of its own to write.
        let no_cgroup = crate::container::resources::rootless_without_cgroups();
        let warnings = crate::container::resources::discard_rootless_limits(&mut hc);
        let res = crate::cgroups::resources(&hc)?;
        if !no_cgroup && (rec.state.status.is_running() || rec.state.status == Status::Paused) {
            let cg = self.running_cgroup(&c.id)?;
            tokio::task::spawn_blocking(move || cg.update(&res))
                .await
                .map_err(EngineError::internal)?
                .map_err(|e| {
                    EngineError::Internal(format!("Cannot update container {}: {e}", c.id))
                })?;
        }
        c.update(|r| r.host_config = hc)?;
        self.emit_container(&c.id, "update", &[]);
        Ok(warnings)
    }
}
