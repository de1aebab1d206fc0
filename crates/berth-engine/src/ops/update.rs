//! `update`: resources and restart policy of a container, applied to its cgroup when it runs.

use berth_api::types::RestartPolicy;
use serde::Deserialize;

use crate::cgroups::Cgroup;
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
    pub pids_limit: Option<i64>,
    pub restart_policy: Option<RestartPolicy>,
}

/// Docker's cpu.shares -> cgroup v2 cpu.weight conversion.
fn shares_to_weight(shares: i64) -> i64 {
    if shares <= 0 {
        return 100;
    }
    // Clamped into 2..=262144 first, so the product cannot overflow.
    1 + ((berth_runtime::limits::cpu_shares(shares) - 2) * 9999) / 262142
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
        if let Some(p) = u.pids_limit {
            hc.pids_limit = Some(p);
        }
        if let Some(rp) = &u.restart_policy {
            hc.restart_policy = rp.clone();
        }
        crate::container::resources::validate(&mut hc, crate::container::resources::When::Update)?;
        if rec.state.status.is_running() || rec.state.status == Status::Paused {
            let cg = c.cgroup();
            let u2 = u.clone();
            let hc2 = hc.clone();
            tokio::task::spawn_blocking(move || apply_limits(&cg, &u2, &hc2))
                .await
                .map_err(EngineError::internal)?
                .map_err(|e| {
                    EngineError::Internal(format!("Cannot update container {}: {e}", c.id))
                })?;
        }
        c.update(|r| r.host_config = hc)?;
        self.emit_container(&c.id, "update", &[]);
        Ok(Vec::new())
    }
}

/// Writes the changed limits into the container's cgroup (v1 or v2).
fn apply_limits(
    cg: &Cgroup,
    u: &UpdateConfig,
    hc: &berth_api::types::HostConfig,
) -> std::io::Result<()> {
    let v2 = matches!(cg, Cgroup::V2 { .. });
    let lim = |v: i64| {
        if v <= 0 {
            if v2 {
                "max".to_string()
            } else {
                "-1".to_string()
            }
        } else {
            v.to_string()
        }
    };
    if u.memory.is_some() || u.memory_swap.is_some() {
        if v2 {
            cg.write("", "memory.max", &lim(hc.memory))?;
            if hc.memory_swap != 0 {
                let swap = if hc.memory_swap < 0 {
                    "max".to_string()
                } else {
                    (hc.memory_swap - hc.memory).max(0).to_string()
                };
                let _ = cg.write("", "memory.swap.max", &swap);
            }
        } else {
            let memsw = cg
                .dir("memory")
                .join("memory.memsw.limit_in_bytes")
                .exists();
            let cur_memsw = cg
                .read_u64("memory", "memory.memsw.limit_in_bytes")
                .unwrap_or(u64::MAX);
            // memsw must stay >= the memory limit: order the writes accordingly.
            let new_swap = if hc.memory_swap != 0 {
                Some(lim(hc.memory_swap))
            } else {
                None
            };
            if memsw && hc.memory > 0 && (hc.memory as u64) > cur_memsw {
                if let Some(s) = &new_swap {
                    cg.write("memory", "memory.memsw.limit_in_bytes", s)?;
                }
                cg.write("memory", "memory.limit_in_bytes", &lim(hc.memory))?;
            } else {
                cg.write("memory", "memory.limit_in_bytes", &lim(hc.memory))?;
                if memsw {
                    if let Some(s) = &new_swap {
                        cg.write("memory", "memory.memsw.limit_in_bytes", s)?;
                    }
                }
            }
        }
    }
    if u.memory_reservation.is_some() {
        if v2 {
            cg.write(
                "",
                "memory.low",
                &lim(hc.memory_reservation).replace("max", "0"),
            )?;
        } else {
            cg.write(
                "memory",
                "memory.soft_limit_in_bytes",
                &lim(hc.memory_reservation),
            )?;
        }
    }
    if u.nano_cpus.is_some() || u.cpu_quota.is_some() || u.cpu_period.is_some() {
        // Checked arithmetic (validated before, so an overflow here is a bug, not a limit).
        let (period, quota) = berth_runtime::limits::cfs(hc.nano_cpus, hc.cpu_period, hc.cpu_quota)
            .ok_or_else(|| std::io::Error::other("CPU quota out of range"))?;
        let period = period.unwrap_or(berth_runtime::limits::DEFAULT_CFS_PERIOD);
        let quota = quota.filter(|q| *q > 0).unwrap_or(-1);
        if v2 {
            let q = if quota > 0 {
                quota.to_string()
            } else {
                "max".into()
            };
            cg.write("", "cpu.max", &format!("{q} {period}"))?;
        } else {
            cg.write("cpu", "cpu.cfs_period_us", &period.to_string())?;
            cg.write("cpu", "cpu.cfs_quota_us", &quota.to_string())?;
        }
    }
    if u.cpu_shares.is_some() {
        if v2 {
            cg.write(
                "",
                "cpu.weight",
                &shares_to_weight(hc.cpu_shares).to_string(),
            )?;
        } else if hc.cpu_shares > 0 {
            cg.write("cpu", "cpu.shares", &hc.cpu_shares.to_string())?;
        }
    }
    if u.cpuset_cpus.is_some() && !hc.cpuset_cpus.is_empty() {
        let ctl = if v2 { "" } else { "cpuset" };
        cg.write(ctl, "cpuset.cpus", &hc.cpuset_cpus)?;
    }
    if let Some(p) = u.pids_limit {
        let v = if p > 0 { p.to_string() } else { "max".into() };
        cg.write(if v2 { "" } else { "pids" }, "pids.max", &v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_weight_conversion() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262144), 10000);
    }
}
