//! `top`: `ps` on the host, rows kept for the container's processes.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::Engine;

/// `GET /containers/{id}/top`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct TopResponse {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
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

/// The processes in the pid namespace of `init` (a rootless container without a cgroup of its
/// own: its processes are those of its pid namespace). None when that namespace is the
/// daemon's own (`--pid=host`), where it would be every process on the host.
fn pid_ns_members(init: i64) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let ns = |p: &str| {
        std::fs::metadata(format!("/proc/{p}/ns/pid"))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    let Some(want) = ns(&init.to_string()) else {
        return Vec::new();
    };
    if init <= 0 || ns("self") == Some(want) {
        return Vec::new();
    }
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|p| ns(&p.to_string()) == Some(want))
        .collect()
}

impl Engine {
    pub async fn top(&self, name: &str, ps_args: &str) -> Result<TopResponse> {
        let c = self.running_entry(name)?;
        let pids: HashSet<i32> = if crate::container::resources::rootless_without_cgroups() {
            pid_ns_members(c.snapshot().state.pid)
        } else {
            self.cgroup(&c.id).map(|cg| cg.pids()).unwrap_or_default()
        }
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
