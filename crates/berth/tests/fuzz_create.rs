//! A create/start fuzz run: generated configurations whose every value has the right JSON type
//! but is absurd (negative limits, impossible ranges, unknown names, malformed specs) go through
//! `POST /containers/create` and `POST /containers/{id}/start`. A refusal must be a 400 with a
//! message, never a 500 (dockerd's create-time validation), and the daemon must stay up.
//!
//! `BERTH_FUZZ_N` sets the number of configurations (default 1500) and `BERTH_FUZZ_SEED` the
//! seed (default fixed, so a failure reproduces); the failing configurations are printed.

mod common;
use common::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Integers that break naive arithmetic and range checks.
const INTS: &[i64] = &[
    -1,
    -2,
    0,
    1,
    2,
    3,
    999,
    1000,
    1001,
    -1001,
    1 << 31,
    (1 << 31) - 1,
    1 << 32,
    1 << 62,
    i64::MAX,
    i64::MIN,
    i64::MAX / 1000,
    -1_000_000_000,
    6 * 1024 * 1024 - 1,
];

/// Strings that no field expects.
fn strings(rng: &mut Rng) -> Value {
    let long = "x".repeat(5000);
    let v = [
        "",
        " ",
        "-1",
        "abc",
        "0-999",
        "99999",
        "1-0",
        ",",
        "a\u{1}b",
        "../../..",
        "/",
        "relative/path",
        "container:",
        "container:nosuchcontainer",
        "host",
        "none",
        "private",
        "\u{0}",
        "SIGFOO",
        "0",
        "nosuch:thing:here",
        long.as_str(),
    ];
    json!(rng.pick(&v))
}

fn int(rng: &mut Rng) -> Value {
    json!(rng.pick(INTS))
}

/// One absurd (field path, value): the field is in `Config` unless the path starts with `H.`.
fn mutation(rng: &mut Rng) -> (&'static str, Value) {
    let long_host = "h".repeat(65);
    match rng.below(64) {
        0 => (
            "WorkingDir",
            json!(rng.pick(&["relative/dir", "//", "/a/../..", "\u{1}", "./x"])),
        ),
        1 => (
            "Env",
            json!([rng.pick(&["A=b\u{0}c", "=x", "", "NOEQUALS", "\u{0}=1"])]),
        ),
        2 => (
            "Hostname",
            json!(rng.pick(&[long_host.as_str(), "bad_host!", "-x", "a..b", "\u{0}"])),
        ),
        3 => ("Domainname", strings(rng)),
        4 => (
            "User",
            json!(rng.pick(&[
                "nosuchuser",
                "99999999999",
                "-1",
                "root:nosuchgroup",
                "a:b:c",
                ":"
            ])),
        ),
        5 => (
            "StopSignal",
            json!(rng.pick(&["SIGFOO", "999", "-1", "0", "SIG", "RTMIN+99"])),
        ),
        6 => (
            "Healthcheck",
            json!({"Test": ["CMD", "true"], rng.pick(&["Interval", "Timeout", "StartPeriod", "StartInterval"]).to_string(): rng.pick(&[-1i64, -1_000_000, 1, 999_999, i64::MIN])}),
        ),
        7 => (
            "Healthcheck",
            json!({"Test": rng.pick(&[json!([]), json!(["BOGUS"]), json!(["CMD"]), json!(["CMD-SHELL"]), json!([""])]), "Retries": int(rng)}),
        ),
        8 => (
            "ExposedPorts",
            json!({rng.pick(&["99999/tcp", "abc", "80/sctpx", "-1", "0/tcp", "80-70/tcp", "/tcp"]).to_string(): {}}),
        ),
        9 => (
            "Cmd",
            json!(rng.pick(&[
                json!([""]),
                json!(["/nonexistent"]),
                json!(["/etc"]),
                json!([])
            ])),
        ),
        10 => (
            "Entrypoint",
            json!(rng.pick(&[json!([""]), json!(["/nonexistent"]), json!(["/etc/passwd"])])),
        ),
        11 => ("StopTimeout", int(rng)),
        12 => (
            "MacAddress",
            json!(rng.pick(&["zz", "01:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "1:2:3"])),
        ),
        13 => (
            "Volumes",
            json!({rng.pick(&["relative", "", "/", "/dev", "/proc/x", "/etc/hosts"]).to_string(): {}}),
        ),
        14 => ("H.Memory", int(rng)),
        15 => ("H.MemorySwap", int(rng)),
        16 => ("H.MemoryReservation", int(rng)),
        17 => ("H.MemorySwappiness", int(rng)),
        18 => ("H.CpuShares", int(rng)),
        19 => ("H.CpuPeriod", int(rng)),
        20 => ("H.CpuQuota", int(rng)),
        21 => ("H.CpuRealtimePeriod", int(rng)),
        22 => ("H.CpuRealtimeRuntime", int(rng)),
        23 => ("H.NanoCpus", int(rng)),
        24 => ("H.CpusetCpus", strings(rng)),
        25 => ("H.CpusetMems", strings(rng)),
        26 => (
            "H.BlkioWeight",
            json!(rng.pick(&[1u16, 5, 9, 1001, 5000, 65535])),
        ),
        27 => (
            "H.BlkioWeightDevice",
            json!([{"Path": rng.pick(&["/dev/nonexistent", "relative", ""]), "Weight": rng.pick(&[0u16, 5, 65535])}]),
        ),
        28 => (
            "H.BlkioDeviceReadBps",
            json!([{"Path": rng.pick(&["/dev/nonexistent", "relative"]), "Rate": int(rng).as_i64().unwrap_or(0).unsigned_abs()}]),
        ),
        29 => ("H.PidsLimit", int(rng)),
        30 => ("H.OomScoreAdj", int(rng)),
        31 => ("H.ShmSize", int(rng)),
        32 => (
            "H.Ulimits",
            json!([{"Name": rng.pick(&["nofile", "bogus", "", "nproc", "core"]), "Soft": int(rng), "Hard": int(rng)}]),
        ),
        33 => (
            "H.CapAdd",
            json!([rng.pick(&["BOGUS", "ALL", "", "CAP_", "cap_sys_admin", "SYS_BOGUS"])]),
        ),
        34 => (
            "H.CapDrop",
            json!([rng.pick(&["BOGUS", "ALL", "", "CAP_"])]),
        ),
        35 => (
            "H.GroupAdd",
            json!([rng.pick(&["nosuchgroup", "-1", "99999999999", "", "root:x"])]),
        ),
        36 => (
            "H.Dns",
            json!([rng.pick(&["not-an-ip", "", "1.2.3.4.5", "::zz"])]),
        ),
        37 => (
            "H.ExtraHosts",
            json!([rng.pick(&[
                "nocolon",
                "host:notanip",
                ":1.2.3.4",
                "h:",
                "h:1.2.3.4:5",
                "a b:1.2.3.4"
            ])]),
        ),
        38 => (
            "H.Tmpfs",
            json!({rng.pick(&["/x", "relative", "", "/"]).to_string(): rng.pick(&["size=abc", "bogusopt", "mode=999999", "size=-1", "uid=x", "", "nr_inodes=zz"])}),
        ),
        39 => (
            "H.PortBindings",
            json!({rng.pick(&["99999/tcp", "80/tcp", "abc", "80/bogus", "0/tcp"]).to_string(): [{"HostPort": rng.pick(&["abc", "99999", "-1", "70-60", ""]), "HostIp": rng.pick(&["", "bad", "1.2.3.4.5", "::1"])}]}),
        ),
        40 => (
            "H.RestartPolicy",
            json!({"Name": rng.pick(&["bogus", "on-failure", "always", ""]), "MaximumRetryCount": int(rng)}),
        ),
        41 => (
            "H.LogConfig",
            json!({"Type": rng.pick(&["bogus", "json-file", "none", ""]), "Config": {rng.pick(&["max-size", "max-file", "bogus", "compress"]).to_string(): rng.pick(&["abc", "-1", "0", "1k", "99999999999999999999"])}}),
        ),
        42 => (
            "H.SecurityOpt",
            json!([rng.pick(&[
                "bogus",
                "seccomp=notjson",
                "seccomp=/nonexistent",
                "seccomp={}",
                "label=disable",
                "apparmor=x",
                "no-new-privileges=maybe",
                "seccomp",
                "=",
                "systempaths=unconfined"
            ])]),
        ),
        43 => (
            "H.Sysctls",
            json!({rng.pick(&["kernel.bogus", "net.ipv4.ip_forward", "", "vm.swappiness", "net.bogus.x", "kernel.shmmax"]).to_string(): rng.pick(&["1", "abc", "", "-1"])}),
        ),
        44 => (
            "H.Devices",
            json!([{"PathOnHost": rng.pick(&["/dev/nonexistent", "relative", "", "/dev/null"]), "PathInContainer": rng.pick(&["/dev/x", "relative", ""]), "CgroupPermissions": rng.pick(&["rwm", "xyz", ""])}]),
        ),
        45 => (
            "H.DeviceCgroupRules",
            json!([rng.pick(&["bogus", "c *:* rwm", "b 1:x r", ""])]),
        ),
        46 => (
            "H.Binds",
            json!([rng.pick(&[
                "relative:/x",
                "/x",
                ":/x",
                "/tmp:/x:badmode",
                "/tmp:relative",
                "/tmp:/x:ro,rw",
                "vol:/x:z,Z"
            ])]),
        ),
        47 => (
            "H.Mounts",
            json!([{"Type": rng.pick(&["bogus", "bind", "volume", "tmpfs", "npipe"]), "Source": rng.pick(&["/nonexistent-berth-fuzz", "", "relative"]), "Target": rng.pick(&["/x", "relative", "", "/"])}]),
        ),
        48 => (
            "H.VolumesFrom",
            json!([rng.pick(&["nonexistent", "", ":ro", "x:bogus"])]),
        ),
        49 => (
            "H.Links",
            json!([rng.pick(&["nonexistent:x", "", ":", "a:b:c"])]),
        ),
        50 => ("H.PidMode", strings(rng)),
        51 => ("H.IpcMode", strings(rng)),
        52 => ("H.UTSMode", strings(rng)),
        53 => ("H.CgroupnsMode", strings(rng)),
        54 => ("H.UsernsMode", strings(rng)),
        55 => (
            "H.CgroupParent",
            json!(rng.pick(&[
                "berth-fuzz/../..",
                "berth-fuzz.slice",
                "bad--name.slice",
                "berth-fuzz/x",
                "-.slice"
            ])),
        ),
        56 => (
            "H.Runtime",
            json!(rng.pick(&["bogus", "runc", "io.containerd.runc.v2", ""])),
        ),
        57 => (
            "H.Isolation",
            json!(rng.pick(&["bogus", "default", "hyperv", "process"])),
        ),
        58 => (
            "H.StorageOpt",
            json!({rng.pick(&["size", "bogus"]).to_string(): rng.pick(&["1G", "abc"])}),
        ),
        59 => (
            "H.ConsoleSize",
            json!([
                rng.pick(&[0u64, 1, 99999, u32::MAX as u64]),
                rng.pick(&[0u64, 99999])
            ]),
        ),
        60 => (
            "H.MaskedPaths",
            json!([rng.pick(&["relative", "", "/proc/../etc", "/nonexistent"])]),
        ),
        61 => (
            "H.ReadonlyPaths",
            json!([rng.pick(&["relative", "", "/nonexistent"])]),
        ),
        62 => (
            "H.NetworkMode",
            json!(rng.pick(&[
                "none",
                "host",
                "default",
                "bridge",
                "container:",
                "container:nosuchcontainer"
            ])),
        ),
        _ => ("H.OomKillDisable", json!(true)),
    }
}

fn config(rng: &mut Rng) -> (Value, Vec<String>) {
    let mut body = json!({"Image": "busybox", "Cmd": ["true"], "HostConfig": {}});
    let mut what = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let (field, value) = mutation(rng);
        what.push(format!("{field}={}", shorten(&value.to_string())));
        match field.strip_prefix("H.") {
            Some(h) => body["HostConfig"][h] = value,
            None => body[field] = value,
        }
    }
    (body, what)
}

fn shorten(s: &str) -> String {
    if s.len() > 80 {
        format!("{}...({} bytes)", &s[..60], s.len())
    } else {
        s.to_string()
    }
}

/// A refusal as dockerd gives it: a 400 with a message, or the 404 of an object the
/// configuration names that does not exist (`VolumesFrom`, `container:<name>`), whose status
/// clients rely on.
fn refusal(st: u16, text: &str) -> bool {
    let msg = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_default();
    !msg.is_empty() && (st == 400 || (st == 404 && msg.starts_with("No such container: ")))
}

fn post(d: &Daemon, path: &str, body: Option<&[u8]>) -> (u16, String) {
    let headers: &[(&str, &str)] = if body.is_some() {
        &[("Content-Type", "application/json")]
    } else {
        &[]
    };
    match d.api_with("POST", path, headers, body) {
        Ok(r) => (r.status, r.text()),
        Err(e) => (0, e.to_string()),
    }
}

#[test]
fn absurd_create_and_start_configs_are_400s_never_500s() {
    let d = d();
    let n: usize = std::env::var("BERTH_FUZZ_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let seed: u64 = std::env::var("BERTH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x05ee_db16);
    let next = AtomicUsize::new(0);
    let problems: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let counts: Mutex<std::collections::BTreeMap<String, usize>> = Mutex::default();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let mut rng = Rng(seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let (body, what) = config(&mut rng);
                let (st, text) = post(d, "/containers/create", Some(body.to_string().as_bytes()));
                let mut outcome = format!("create {st}");
                let bad = |phase: &str, st: u16, text: &str| {
                    problems.lock().expect("lock").push(format!(
                        "#{i} {phase} answered {st}: {}\n    config: {}",
                        text.trim(),
                        what.join(" ")
                    ));
                };
                if st == 201 {
                    let id = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v["Id"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    let (st, text) = post(d, &format!("/containers/{id}/start"), None);
                    outcome = format!("start {st}");
                    if st != 204 && !refusal(st, &text) {
                        bad("start", st, &text);
                    }
                    let _ = d.api("DELETE", &format!("/containers/{id}?force=1&v=1"));
                } else if !refusal(st, &text) {
                    bad("create", st, &text);
                }
                *counts.lock().expect("lock").entry(outcome).or_default() += 1;
            });
        }
    });
    assert!(d.ping(), "the daemon died; log:\n{}", d.log_text());
    // What the run was, for the record.
    eprintln!(
        "fuzz: {n} configurations, seed {seed}: {:?}",
        counts.lock().expect("lock")
    );
    // Cgroup parents the configurations named (below /berth-fuzz or the slices) stay, empty.
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        for p in [
            "berth-fuzz/x",
            "berth-fuzz",
            "berth.slice/berth-fuzz.slice",
            "berth.slice",
        ] {
            let _ = std::fs::remove_dir(h.path().join(p));
        }
    }
    let problems = problems.into_inner().expect("lock");
    assert!(
        problems.is_empty(),
        "{} of {n} configurations got a non-400 refusal:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
