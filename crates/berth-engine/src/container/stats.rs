//! `GET /containers/{id}/stats`: Docker's stats JSON from the container's cgroup (v1 or v2
//! field shapes), `/proc/stat` for the system CPU time, and `/proc/<pid>/net/dev` for networks.

use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::cgroups::Cgroup;
use crate::error::Result;

const NS_PER_TICK: u64 = 10_000_000; // USER_HZ is 100 on Linux

fn kv_file(s: &str) -> Map<String, Value> {
    let mut m = Map::new();
    for l in s.lines() {
        let mut it = l.split_whitespace();
        if let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let Ok(n) = v.parse::<u64>() {
                m.insert(k.to_string(), json!(n));
            }
        }
    }
    m
}

/// Total host CPU time in ns (`system_cpu_usage`) and the number of online CPUs.
pub fn system_cpu(proc_stat: &str) -> (u64, u64) {
    let mut total = 0;
    let mut cpus = 0;
    for l in proc_stat.lines() {
        if let Some(rest) = l.strip_prefix("cpu ") {
            total = rest
                .split_whitespace()
                .take(7)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum::<u64>()
                * NS_PER_TICK;
        } else if l.starts_with("cpu") {
            cpus += 1;
        }
    }
    (total, cpus)
}

fn host_mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// `/proc/<pid>/net/dev` as Docker's `networks` map (loopback left out).
pub fn networks(net_dev: &str) -> Map<String, Value> {
    let mut m = Map::new();
    for l in net_dev.lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() < 12 {
            continue;
        }
        m.insert(
            name.to_string(),
            json!({
                "rx_bytes": f[0], "rx_packets": f[1], "rx_errors": f[2], "rx_dropped": f[3],
                "tx_bytes": f[8], "tx_packets": f[9], "tx_errors": f[10], "tx_dropped": f[11],
            }),
        );
    }
    m
}

fn blkio_v1(s: &str) -> Vec<Value> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (dev, op, v) = (it.next()?, it.next()?, it.next()?);
            let (maj, min) = dev.split_once(':')?;
            Some(json!({
                "major": maj.parse::<u64>().ok()?, "minor": min.parse::<u64>().ok()?,
                "op": op, "value": v.parse::<u64>().ok()?,
            }))
        })
        .collect()
}

fn blkio_v2(s: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for l in s.lines() {
        let mut it = l.split_whitespace();
        let Some((maj, min)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(maj), Ok(min)) = (maj.parse::<u64>(), min.parse::<u64>()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let op = match k {
                "rbytes" => "read",
                "wbytes" => "write",
                _ => continue,
            };
            if let Ok(v) = v.parse::<u64>() {
                out.push(json!({"major": maj, "minor": min, "op": op, "value": v}));
            }
        }
    }
    out
}

/// One sample of a running container.
pub fn sample(cg: &Cgroup, pid: i64) -> Value {
    let (system, online) = system_cpu(&std::fs::read_to_string("/proc/stat").unwrap_or_default());
    let mem_total = host_mem_total();
    let (cpu_usage, throttling, memory, blkio, pids) = match cg {
        Cgroup::V1 { .. } => {
            let total = cg.read_u64("cpuacct", "cpuacct.usage").unwrap_or(0);
            let percpu: Vec<u64> = cg
                .read("cpuacct", "cpuacct.usage_percpu")
                .map(|s| {
                    s.split_whitespace()
                        .filter_map(|v| v.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            let st = kv_file(&cg.read("cpuacct", "cpuacct.stat").unwrap_or_default());
            let user = st.get("user").and_then(Value::as_u64).unwrap_or(0) * NS_PER_TICK;
            let sys = st.get("system").and_then(Value::as_u64).unwrap_or(0) * NS_PER_TICK;
            let thr = kv_file(&cg.read("cpu", "cpu.stat").unwrap_or_default());
            let limit = cg.read_u64("memory", "memory.limit_in_bytes").unwrap_or(0);
            let limit = if limit == 0 || (mem_total > 0 && limit > mem_total) {
                mem_total
            } else {
                limit
            };
            let mut memory = json!({
                "usage": cg.read_u64("memory", "memory.usage_in_bytes").unwrap_or(0),
                "max_usage": cg.read_u64("memory", "memory.max_usage_in_bytes").unwrap_or(0),
                "failcnt": cg.read_u64("memory", "memory.failcnt").unwrap_or(0),
                "stats": kv_file(&cg.read("memory", "memory.stat").unwrap_or_default()),
                "limit": limit,
            });
            if memory["stats"].as_object().is_some_and(|m| m.is_empty()) {
                memory["stats"] = json!({});
            }
            let bytes = blkio_v1(
                &cg.read("blkio", "blkio.throttle.io_service_bytes_recursive")
                    .unwrap_or_default(),
            );
            let ios = blkio_v1(
                &cg.read("blkio", "blkio.throttle.io_serviced_recursive")
                    .unwrap_or_default(),
            );
            let pids_max = cg
                .read("pids", "pids.max")
                .and_then(|s| s.trim().parse::<u64>().ok());
            (
                json!({
                    "total_usage": total, "percpu_usage": percpu,
                    "usage_in_kernelmode": sys, "usage_in_usermode": user,
                }),
                json!({
                    "periods": thr.get("nr_periods").cloned().unwrap_or(json!(0)),
                    "throttled_periods": thr.get("nr_throttled").cloned().unwrap_or(json!(0)),
                    "throttled_time": thr.get("throttled_time").cloned().unwrap_or(json!(0)),
                }),
                memory,
                json!({
                    "io_service_bytes_recursive": bytes, "io_serviced_recursive": ios,
                    "io_queue_recursive": null, "io_service_time_recursive": null,
                    "io_wait_time_recursive": null, "io_merged_recursive": null,
                    "io_time_recursive": null, "sectors_recursive": null,
                }),
                json!({
                    "current": cg.read_u64("pids", "pids.current").unwrap_or(0),
                    "limit": pids_max,
                }),
            )
        }
        Cgroup::V2 { .. } => {
            let st = kv_file(&cg.read("", "cpu.stat").unwrap_or_default());
            let us = |k: &str| st.get(k).and_then(Value::as_u64).unwrap_or(0);
            let limit = cg
                .read("", "memory.max")
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(mem_total);
            let pids_max = cg
                .read("", "pids.max")
                .and_then(|s| s.trim().parse::<u64>().ok());
            (
                json!({
                    "total_usage": us("usage_usec") * 1000,
                    "usage_in_kernelmode": us("system_usec") * 1000,
                    "usage_in_usermode": us("user_usec") * 1000,
                }),
                json!({
                    "periods": us("nr_periods"), "throttled_periods": us("nr_throttled"),
                    "throttled_time": us("throttled_usec") * 1000,
                }),
                json!({
                    "usage": cg.read_u64("", "memory.current").unwrap_or(0),
                    "stats": kv_file(&cg.read("", "memory.stat").unwrap_or_default()),
                    "limit": limit,
                }),
                json!({
                    "io_service_bytes_recursive": blkio_v2(&cg.read("", "io.stat").unwrap_or_default()),
                    "io_serviced_recursive": null, "io_queue_recursive": null,
                    "io_service_time_recursive": null, "io_wait_time_recursive": null,
                    "io_merged_recursive": null, "io_time_recursive": null,
                    "sectors_recursive": null,
                }),
                json!({
                    "current": cg.read_u64("", "pids.current").unwrap_or(0),
                    "limit": pids_max,
                }),
            )
        }
    };
    let nets =
        networks(&std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default());
    let mut v = json!({
        "read": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "pids_stats": pids,
        "blkio_stats": blkio,
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": cpu_usage,
            "system_cpu_usage": system,
            "online_cpus": online,
            "throttling_data": throttling,
        },
        "memory_stats": memory,
    });
    if !nets.is_empty() {
        v["networks"] = Value::Object(nets);
    }
    v
}

fn empty_sample() -> Value {
    json!({
        "read": "0001-01-01T00:00:00Z",
        "preread": "0001-01-01T00:00:00Z",
        "pids_stats": {},
        "blkio_stats": {
            "io_service_bytes_recursive": null, "io_serviced_recursive": null,
            "io_queue_recursive": null, "io_service_time_recursive": null,
            "io_wait_time_recursive": null, "io_merged_recursive": null,
            "io_time_recursive": null, "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}, "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
        "precpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}, "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
        "memory_stats": {},
    })
}

fn with_pre(mut cur: Value, pre: Option<&Value>, name: &str, id: &str) -> Value {
    match pre {
        Some(p) => {
            cur["preread"] = p["read"].clone();
            cur["precpu_stats"] = p["cpu_stats"].clone();
        }
        None => {
            cur["preread"] = json!("0001-01-01T00:00:00Z");
            cur["precpu_stats"] = json!({"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}, "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}});
        }
    }
    cur["name"] = json!(format!("/{name}"));
    cur["id"] = json!(id);
    cur
}

impl crate::Engine {
    /// Stats samples: one (`stream=false`: after a second, so precpu is filled; `one-shot`:
    /// at once) or one per second until the client goes or the container stops.
    pub async fn stats(
        &self,
        name: &str,
        stream: bool,
        one_shot: bool,
    ) -> Result<mpsc::Receiver<Value>> {
        let c = self.lookup(name)?;
        let (tx, rx) = mpsc::channel(4);
        let engine = self.clone();
        tokio::spawn(async move {
            let mut prev: Option<Value> = None;
            loop {
                let rec = match engine.lookup(&c.id) {
                    Ok(c) => c.snapshot(),
                    Err(_) => return,
                };
                if !rec.state.status.is_running() {
                    let mut v = empty_sample();
                    v["name"] = json!(format!("/{}", rec.name));
                    v["id"] = json!(rec.id);
                    let _ = tx.send(v).await;
                    return;
                }
                let cg = engine.cgroup(&rec.id);
                let pid = rec.state.pid;
                let cur = match cg {
                    Some(cg) => tokio::task::spawn_blocking(move || sample(&cg, pid))
                        .await
                        .unwrap_or(Value::Null),
                    None => empty_sample(),
                };
                if !stream && !one_shot && prev.is_none() {
                    prev = Some(cur);
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
                let out = with_pre(cur.clone(), prev.as_ref(), &rec.name, &rec.id);
                if tx.send(out).await.is_err() || !stream {
                    return;
                }
                prev = Some(cur);
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_files() {
        let t = tempfile::tempdir().expect("tmp");
        // v2 layout.
        std::fs::write(t.path().join("cgroup.controllers"), "cpu memory pids io\n").expect("w");
        let dir = t.path().join("berth/c");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 3\nnr_throttled 1\nthrottled_usec 7\n").expect("w");
        std::fs::write(dir.join("memory.current"), "4096\n").expect("w");
        std::fs::write(dir.join("memory.max"), "1048576\n").expect("w");
        std::fs::write(dir.join("memory.stat"), "anon 1024\nfile 2048\n").expect("w");
        std::fs::write(dir.join("pids.current"), "3\n").expect("w");
        std::fs::write(dir.join("pids.max"), "max\n").expect("w");
        std::fs::write(
            dir.join("io.stat"),
            "8:0 rbytes=100 wbytes=200 rios=1 wios=2\n",
        )
        .expect("w");
        let v = sample(&Cgroup::at(t.path(), "/berth/c").expect("cg"), 0);
        assert_eq!(v["cpu_stats"]["cpu_usage"]["total_usage"], 1_500_000);
        assert_eq!(v["cpu_stats"]["throttling_data"]["throttled_time"], 7000);
        assert_eq!(v["memory_stats"]["usage"], 4096);
        assert_eq!(v["memory_stats"]["limit"], 1048576);
        assert_eq!(v["memory_stats"]["stats"]["file"], 2048);
        assert_eq!(v["pids_stats"]["current"], 3);
        assert_eq!(v["pids_stats"]["limit"], Value::Null);
        assert_eq!(
            v["blkio_stats"]["io_service_bytes_recursive"][1]["op"],
            "write"
        );
        assert_eq!(
            v["blkio_stats"]["io_service_bytes_recursive"][1]["value"],
            200
        );

        // v1 layout.
        let t = tempfile::tempdir().expect("tmp");
        for (ctl, file, val) in [
            ("cpuacct", "cpuacct.usage", "123456"),
            ("cpuacct", "cpuacct.usage_percpu", "100000 23456"),
            ("cpuacct", "cpuacct.stat", "user 2\nsystem 1\n"),
            ("memory", "memory.usage_in_bytes", "8192"),
            ("memory", "memory.limit_in_bytes", "9223372036854771712"),
            ("pids", "pids.current", "2"),
            ("pids", "pids.max", "50"),
            (
                "blkio",
                "blkio.throttle.io_service_bytes_recursive",
                "8:0 Read 10\n8:0 Write 20\nTotal 30\n",
            ),
        ] {
            let d = t.path().join(ctl).join("berth/c");
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join(file), val).expect("w");
        }
        let v = sample(&Cgroup::at(t.path(), "/berth/c").expect("cg"), 0);
        assert_eq!(v["cpu_stats"]["cpu_usage"]["total_usage"], 123456);
        assert_eq!(
            v["cpu_stats"]["cpu_usage"]["percpu_usage"],
            json!([100000, 23456])
        );
        assert_eq!(v["cpu_stats"]["cpu_usage"]["usage_in_usermode"], 20_000_000);
        assert_eq!(v["memory_stats"]["usage"], 8192);
        assert!(
            v["memory_stats"]["limit"].as_u64().unwrap_or(0) < 9223372036854771712,
            "unlimited shows the host's memory"
        );
        assert_eq!(v["pids_stats"]["limit"], 50);
        assert_eq!(
            v["blkio_stats"]["io_service_bytes_recursive"]
                .as_array()
                .map(|a| a.len()),
            Some(2)
        );
    }

    #[test]
    fn proc_files() {
        let (total, cpus) = system_cpu(
            "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 1 1 1 1 1 1\ncpu1 1 1 1 1 1 1 1\nintr 5\n",
        );
        assert_eq!(total, 28 * NS_PER_TICK);
        assert_eq!(cpus, 2);
        let dev = "Inter-|   Receive\n face |bytes\n    lo: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n  eth0: 100 2 0 0 0 0 0 0 300 4 0 0 0 0 0 0\n";
        let n = networks(dev);
        assert!(!n.contains_key("lo"));
        assert_eq!(n["eth0"]["rx_bytes"], 100);
        assert_eq!(n["eth0"]["tx_packets"], 4);
    }
}
