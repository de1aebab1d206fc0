//! Container operations beyond the lifecycle: pause/unpause (freezer), top, changes (diff),
//! export, commit and update.

use std::collections::HashSet;
use std::sync::Arc;

use berth_api::types::{ContainerConfig, RestartPolicy};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::cgroups::Cgroup;
use crate::container::{Entry, Status};
use crate::error::{EngineError, Result};

/// `GET /containers/{id}/top`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct TopResponse {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

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

/// Options of `POST /commit`.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    pub container: String,
    pub repo: String,
    pub tag: String,
    pub comment: String,
    pub author: String,
    pub pause: bool,
    pub changes: Vec<String>,
    pub config: Option<ContainerConfig>,
}

/// Splits one `ps` output line into `n` columns (the last one keeps its spaces).
fn split_ps_line(line: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut rest = line.trim_start();
    while out.len() + 1 < n {
        match rest.find(char::is_whitespace) {
            Some(i) => {
                out.push(rest[..i].to_string());
                rest = rest[i..].trim_start();
            }
            None => {
                out.push(rest.to_string());
                rest = "";
                break;
            }
        }
    }
    if !rest.is_empty() || out.len() + 1 == n {
        out.push(rest.trim_end().to_string());
    }
    out
}

/// Keeps the rows of a host `ps` output whose PID is one of `pids` (Docker's approach).
pub fn filter_ps(output: &str, pids: &HashSet<i32>) -> Result<TopResponse> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or("");
    let titles: Vec<String> = header.split_whitespace().map(str::to_string).collect();
    let Some(pid_col) = titles.iter().position(|t| t == "PID") else {
        return Err(EngineError::InvalidParameter(
            "Couldn't find PID field in ps output".into(),
        ));
    };
    let mut processes = Vec::new();
    for l in lines {
        if l.trim().is_empty() {
            continue;
        }
        let cols = split_ps_line(l, titles.len());
        let Some(pid) = cols.get(pid_col).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pids.contains(&pid) {
            processes.push(cols);
        }
    }
    Ok(TopResponse { titles, processes })
}

fn not_running(id: &str) -> EngineError {
    EngineError::Conflict(format!("Container {id} is not running"))
}

impl crate::Engine {
    fn running_entry(&self, name: &str) -> Result<Arc<Entry>> {
        let c = self.lookup(name)?;
        let st = c.snapshot().state.status;
        if !(st.is_running() || st == Status::Paused) {
            return Err(not_running(&c.id));
        }
        Ok(c)
    }

    /// The cgroup of a container that runs (or is paused).
    fn running_cgroup(&self, id: &str) -> Result<Cgroup> {
        self.cgroup(id)
            .ok_or_else(|| EngineError::Internal(format!("container {id} has no cgroup")))
    }

    pub async fn pause(&self, name: &str) -> Result<()> {
        let c = self.lookup(name)?;
        let _g = c.op.lock().await;
        let st = c.snapshot().state.status;
        if st == Status::Paused {
            return Err(EngineError::Conflict(format!(
                "Container {} is already paused",
                c.id
            )));
        }
        if !st.is_running() {
            return Err(not_running(&c.id));
        }
        let cg = self.running_cgroup(&c.id)?;
        tokio::task::spawn_blocking(move || {
            cg.freeze(true)?;
            if !cg.wait_frozen(true) {
                let _ = cg.freeze(false);
                return Err(std::io::Error::other("timed out freezing the container"));
            }
            Ok(())
        })
        .await
        .map_err(EngineError::internal)?
        .map_err(|e| EngineError::Internal(format!("Cannot pause container {}: {e}", c.id)))?;
        c.update(|r| r.state.status = Status::Paused)?;
        self.emit_container(&c.id, "pause", &[]);
        Ok(())
    }

    pub async fn unpause(&self, name: &str) -> Result<()> {
        let c = self.lookup(name)?;
        let _g = c.op.lock().await;
        if c.snapshot().state.status != Status::Paused {
            return Err(EngineError::Conflict(format!(
                "Container {} is not paused",
                c.id
            )));
        }
        self.thaw(&c).await?;
        self.emit_container(&c.id, "unpause", &[]);
        Ok(())
    }

    /// Thaws a paused container and records it running again.
    pub(crate) async fn thaw(&self, c: &Arc<Entry>) -> Result<()> {
        let cg = self.running_cgroup(&c.id)?;
        tokio::task::spawn_blocking(move || {
            cg.freeze(false)?;
            cg.wait_frozen(false);
            Ok::<(), std::io::Error>(())
        })
        .await
        .map_err(EngineError::internal)?
        .map_err(|e| EngineError::Internal(format!("Cannot unpause container {}: {e}", c.id)))?;
        if c.snapshot().state.status == Status::Paused {
            c.update(|r| r.state.status = Status::Running)?;
        }
        Ok(())
    }

    pub async fn top(&self, name: &str, ps_args: &str) -> Result<TopResponse> {
        let c = self.running_entry(name)?;
        let pids: HashSet<i32> = self
            .cgroup(&c.id)
            .map(|cg| cg.pids())
            .unwrap_or_default()
            .into_iter()
            .collect();
        let args: Vec<String> = if ps_args.trim().is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.split_whitespace().map(str::to_string).collect()
        };
        let out = tokio::process::Command::new("ps")
            .args(&args)
            .output()
            .await
            .map_err(|e| EngineError::Internal(format!("Error running ps: {e}")))?;
        if !out.status.success() {
            return Err(EngineError::Internal(format!(
                "ps: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        filter_ps(&String::from_utf8_lossy(&out.stdout), &pids)
    }

    /// `GET /containers/{id}/changes`.
    pub async fn changes(&self, name: &str) -> Result<Vec<berth_image::diff::Change>> {
        let c = self.lookup(name)?;
        let images = self.images();
        let id = c.id.clone();
        tokio::task::spawn_blocking(move || images.snapshot_changes(&id))
            .await
            .map_err(EngineError::internal)?
            .map_err(crate::images::image_err)
    }

    /// `GET /containers/{id}/export`: the container's filesystem as a tar stream.
    pub async fn export(&self, name: &str) -> Result<mpsc::Receiver<Bytes>> {
        let c = self.lookup(name)?;
        let images = self.images();
        let id = c.id.clone();
        let was_mounted_for_us =
            !c.snapshot().state.status.is_running() && c.snapshot().state.status != Status::Paused;
        let i2 = images.clone();
        let root = tokio::task::spawn_blocking(move || i2.mount_snapshot(&id))
            .await
            .map_err(EngineError::internal)?
            .map_err(crate::images::image_err)?;
        let (tx, rx) = mpsc::channel(8);
        let id = c.id.clone();
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = crate::archive::export_root(&root, tx) {
                tracing::debug!("export of {id}: {e}");
            }
            if was_mounted_for_us {
                let still_stopped = engine
                    .lookup(&id)
                    .map(|c| !c.snapshot().state.status.is_running())
                    .unwrap_or(true);
                if still_stopped {
                    let _ = images.unmount_snapshot(&id);
                }
            }
        });
        self.emit_container(&c.id, "export", &[]);
        Ok(rx)
    }

    /// `POST /commit`: the container's changes become a new image layer.
    pub async fn commit(&self, req: CommitRequest) -> Result<String> {
        let c = self.lookup(&req.container)?;
        let reference = if req.repo.is_empty() {
            None
        } else if req.tag.is_empty() {
            Some(req.repo.clone())
        } else {
            Some(format!("{}:{}", req.repo, req.tag))
        };
        let rec = c.snapshot();
        let status = rec.state.status;
        // Best effort, as the container may be exiting right now (then nothing writes anyway).
        let pause = req.pause && status == Status::Running && self.pause(&c.id).await.is_ok();
        let opts = berth_image::diff::CommitOptions {
            reference: reference.clone(),
            changes: req.changes.clone(),
            comment: (!req.comment.is_empty()).then(|| req.comment.clone()),
            author: (!req.author.is_empty()).then(|| req.author.clone()),
            config: req.config.as_ref().and_then(|cfg| {
                serde_json::to_value(cfg)
                    .ok()
                    .and_then(|v| serde_json::from_value(v).ok())
            }),
            created_by: None,
            container: Some((
                c.id.clone(),
                serde_json::to_value(&rec.config).unwrap_or_default(),
            )),
        };
        let images = self.images();
        let id = c.id.clone();
        let res = tokio::task::spawn_blocking(move || images.commit_snapshot(&id, &opts))
            .await
            .map_err(EngineError::internal);
        if pause {
            let _ = self.unpause(&c.id).await;
        }
        let image_id = res?.map_err(crate::images::image_err)?;
        self.record_parent(&image_id, &rec.image_id);
        self.emit_container(&c.id, "commit", &[]);
        if let Some(r) = reference {
            self.emit("image", "tag", &image_id, &[("name", r)]);
        }
        Ok(image_id)
    }

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
        if u.nano_cpus.is_some_and(|n| n > 0)
            && (u.cpu_quota.is_some_and(|q| q > 0) || u.cpu_period.is_some_and(|p| p > 0))
        {
            return Err(EngineError::InvalidParameter(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set".into(),
            ));
        }
        if let Some(m) = u.memory.filter(|m| *m > 0) {
            if m < 6 * 1024 * 1024 {
                return Err(EngineError::InvalidParameter(
                    "Minimum memory limit allowed is 6MB".into(),
                ));
            }
        }
        let mut hc = rec.host_config.clone();
        if let Some(m) = u.memory {
            hc.memory = m;
            // Docker: a new memory limit without a swap setting keeps swap at twice it.
            if u.memory_swap.is_none() && hc.memory_swap > 0 && hc.memory_swap < m {
                hc.memory_swap = 2 * m;
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
        let res = crate::cgroups::resources(&hc)?;
        if rec.state.status.is_running() || rec.state.status == Status::Paused {
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
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_rows_are_filtered_by_pid() {
        let out = "UID        PID  PPID  C STIME TTY          TIME CMD\n\
                   root         1     0  0 08:00 ?        00:00:01 /sbin/init splash\n\
                   root      4242     1  0 08:01 ?        00:00:00 sleep 300\n";
        let t = filter_ps(out, &HashSet::from([4242])).expect("ps");
        assert_eq!(t.titles.len(), 8);
        assert_eq!(t.processes.len(), 1);
        assert_eq!(t.processes[0][1], "4242");
        assert_eq!(t.processes[0][7], "sleep 300");
        assert!(filter_ps("USER CMD\n", &HashSet::new()).is_err());
    }
}
