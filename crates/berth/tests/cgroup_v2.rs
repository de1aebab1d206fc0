//! cgroup v2: each limit lands in the container's cgroup files, is seen from inside the
//! container, and (systemd driver) in its scope's unit properties; update, stats, pause, OOM,
//! cgroupns modes, live restore, networking, exec and build on a v2-only host. Most tests run
//! once per cgroup driver (`<test>::cgroupfs`, `<test>::systemd`).
//!
//! They skip, with one line, on a host that is not cgroup v2 only (the systemd ones also where
//! systemd is not PID 1): `tests/vm/run.sh` runs them in a VM that is both.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Driver {
    Cgroupfs,
    Systemd,
}

/// A test's daemon and the driver it uses.
struct T {
    d: &'static Daemon,
    driver: Driver,
}

fn v2_host() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn systemd_pid1() -> bool {
    std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd")
        && Path::new("/run/systemd/system").is_dir()
}

/// Why this host cannot run the test, if it cannot.
fn skip_reason(driver: Driver) -> Option<&'static str> {
    if !v2_host() {
        return Some("/sys/fs/cgroup is not cgroup v2 only (tests/vm/run.sh runs these)");
    }
    if driver == Driver::Systemd && !systemd_pid1() {
        return Some("systemd is not PID 1 here (tests/vm/run.sh runs these)");
    }
    None
}

static CGROUPFS: OnceLock<&'static Daemon> = OnceLock::new();
static SYSTEMD: OnceLock<&'static Daemon> = OnceLock::new();

/// The shared daemon of a driver, or None (with the skip line printed). The systemd one is
/// started without any exec-opt: systemd is the default on a systemd host with cgroup v2.
fn setup(driver: Driver) -> Option<T> {
    if let Some(why) = skip_reason(driver) {
        eprintln!("skipped: {why}");
        return None;
    }
    let d = match driver {
        Driver::Cgroupfs => *CGROUPFS.get_or_init(|| {
            Daemon::start_with_args(BIN, &["--exec-opt", "native.cgroupdriver=cgroupfs"]).keep()
        }),
        Driver::Systemd => *SYSTEMD.get_or_init(|| Daemon::start(BIN).keep()),
    };
    d.load_busybox();
    Some(T { d, driver })
}

/// One test per driver: `mod name { fn cgroupfs(); fn systemd(); }`.
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn cgroupfs() {
                if let Some(t) = setup(Driver::Cgroupfs) {
                    ($body)(&t)
                }
            }
            #[test]
            fn systemd() {
                if let Some(t) = setup(Driver::Systemd) {
                    ($body)(&t)
                }
            }
        }
    };
}

fn id_of(d: &Daemon, name: &str) -> String {
    fmt(d, name, "{{.Id}}")
}

/// The container's cgroup, from its main process (/proc/<pid>/cgroup, as the host sees it).
fn cgroup_dir(d: &Daemon, name: &str) -> PathBuf {
    v2_cgroup_of(&fmt(d, name, "{{.State.Pid}}"))
}

/// Where the driver puts a container (no --cgroup-parent).
fn expected_dir(t: &T, id: &str) -> PathBuf {
    match t.driver {
        Driver::Cgroupfs => PathBuf::from(format!("/sys/fs/cgroup/berth/{id}")),
        Driver::Systemd => PathBuf::from(format!("/sys/fs/cgroup/system.slice/berth-{id}.scope")),
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// `exec <name> sh -c <script>`, trimmed stdout.
fn inside(d: &Daemon, name: &str, script: &str) -> String {
    let o = d.cli(&["exec", name, "sh", "-c", script]);
    o.ok();
    o.out().to_string()
}

/// A unit property of the container's scope (`systemctl show -p P --value`).
fn unit_prop(id: &str, prop: &str) -> String {
    let o = std::process::Command::new("systemctl")
        .args(["show", "-p", prop, "--value", &format!("berth-{id}.scope")])
        .output()
        .expect("systemctl");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Starts `busybox sleep` with `flags` under a unique name; returns (name, id, cgroup dir),
/// after checking the cgroup is where the driver puts it.
fn run_sleep(t: &T, rm: &mut Rm, flags: &[&str]) -> (String, String, PathBuf) {
    let name = unique("cg");
    rm.add(&name);
    let mut args = vec!["--name", name.as_str()];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sleep", "1000"]);
    let id = run_d(t.d, &args);
    expect_status(t.d, &name, "running");
    let dir = cgroup_dir(t.d, &name);
    assert_eq!(dir, expected_dir(t, &id), "the container's cgroup");
    (name, id, dir)
}

/// A block device of this host (the VM's disk), as /dev/<name>, major and minor.
fn a_disk() -> Option<(String, u32, u32)> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("zram"))
        .collect();
    names.sort();
    let n = names.into_iter().next()?;
    let dev = std::fs::read_to_string(format!("/sys/block/{n}/dev")).ok()?;
    let (ma, mi) = dev.trim().split_once(':')?;
    Some((format!("/dev/{n}"), ma.parse().ok()?, mi.parse().ok()?))
}

#[test]
fn info_reports_v2_and_the_driver() {
    if let Some(why) = skip_reason(Driver::Cgroupfs) {
        eprintln!("skipped: {why}");
        return;
    }
    let t = setup(Driver::Cgroupfs).expect("setup");
    let info = |d: &Daemon| d.cli(&["info", "--format", "{{.CgroupVersion}} {{.CgroupDriver}}"]);
    assert_eq!(info(t.d).out(), "2 cgroupfs");
    let out = t.d.cli(&["info"]);
    assert!(out.out().contains(" Cgroup Driver: cgroupfs\n"), "{out}");
    // daemon.json exec-opts, as dockerd takes them.
    let mut m = serde_json::Map::new();
    m.insert("exec-opts".into(), json!(["native.cgroupdriver=cgroupfs"]));
    let d = Daemon::try_start_with(BIN, berth_testkit::Startup::ConfigFile(m))
        .expect("daemon with exec-opts in daemon.json");
    assert_eq!(info(&d).out(), "2 cgroupfs");
    drop(d);
    let e = Daemon::try_start_with_args(BIN, &["--exec-opt", "native.cgroupdriver=bogus"])
        .err()
        .expect("a bogus driver is refused");
    assert!(
        e.contains("native.cgroupdriver option bogus not supported"),
        "{e}"
    );
    if systemd_pid1() {
        let t = setup(Driver::Systemd).expect("setup");
        assert_eq!(
            info(t.d).out(),
            "2 systemd",
            "systemd is the default driver here"
        );
        let out = t.d.cli(&["info"]);
        assert!(out.out().contains(" Cgroup Driver: systemd\n"), "{out}");
    }
}

both!(memory_and_swap, |t: &T| {
    let mut rm = Rm(t.d, vec![]);
    let (name, id, dir) = run_sleep(
        t,
        &mut rm,
        &[
            "--memory",
            "64m",
            "--memory-swap",
            "96m",
            "--memory-reservation",
            "32m",
        ],
    );
    assert_eq!(read(&dir, "memory.max"), "67108864");
    assert_eq!(read(&dir, "memory.low"), "33554432");
    assert_eq!(
        inside(t.d, &name, "cat /sys/fs/cgroup/memory.max"),
        "67108864"
    );
    let swap = dir.join("memory.swap.max").exists();
    if swap {
        assert_eq!(read(&dir, "memory.swap.max"), "33554432");
        assert_eq!(
            inside(t.d, &name, "cat /sys/fs/cgroup/memory.swap.max"),
            "33554432"
        );
    } else {
        eprintln!("note: no swap accounting in this kernel; swap limit not checked");
    }
    if t.driver == Driver::Systemd {
        assert_eq!(unit_prop(&id, "MemoryMax"), "67108864");
        assert_eq!(unit_prop(&id, "MemoryLow"), "33554432");
        if swap {
            assert_eq!(unit_prop(&id, "MemorySwapMax"), "33554432");
        }
    }
});

both!(cpu_quota_weight_and_cpuset, |t: &T| {
    let mut rm = Rm(t.d, vec![]);
    let (name, id, dir) = run_sleep(
        t,
        &mut rm,
        &[
            "--cpus",
            "0.5",
            "--cpu-shares",
            "512",
            "--cpuset-cpus",
            "0",
            "--cpuset-mems",
            "0",
        ],
    );
    assert_eq!(read(&dir, "cpu.max"), "50000 100000");
    // Shares to weight as runc 1.3.2+ converts them (dockerd passes the shares to runc): 1024
    // is the default weight 100, 512 is 59 (runc before 1.3.2 made it 20).
    assert_eq!(read(&dir, "cpu.weight"), "59");
    assert_eq!(read(&dir, "cpuset.cpus"), "0");
    assert_eq!(read(&dir, "cpuset.mems"), "0");
    assert_eq!(
        inside(t.d, &name, "cat /sys/fs/cgroup/cpu.max"),
        "50000 100000"
    );
    assert_eq!(
        inside(
            t.d,
            &name,
            "grep Cpus_allowed_list /proc/self/status | cut -f2"
        ),
        "0"
    );
    assert_eq!(inside(t.d, &name, "nproc"), "1");
    if t.driver == Driver::Systemd {
        assert_eq!(unit_prop(&id, "CPUQuotaPerSecUSec"), "500ms");
        assert_eq!(unit_prop(&id, "CPUWeight"), "59");
        assert_eq!(unit_prop(&id, "AllowedCPUs"), "0");
    }
    let (_, _, dir) = run_sleep(
        t,
        &mut rm,
        &["--cpu-quota", "20000", "--cpu-period", "50000"],
    );
    assert_eq!(read(&dir, "cpu.max"), "20000 50000");
});

both!(pids_limit, |t: &T| {
    let mut rm = Rm(t.d, vec![]);
    let (name, id, dir) = run_sleep(t, &mut rm, &["--pids-limit", "10"]);
    assert_eq!(read(&dir, "pids.max"), "10");
    assert_eq!(inside(t.d, &name, "cat /sys/fs/cgroup/pids.max"), "10");
    // Twenty background sleeps: inside, the fork past the limit fails (and ash, a
    // non-interactive shell, exits at it); outside, the cgroup never counts more than 10.
    let o = t.d.cli(&[
        "exec",
        &name,
        "sh",
        "-c",
        "for i in $(seq 1 20); do sleep 30 & done; echo all-forked",
    ]);
    assert!(
        !o.out().contains("all-forked"),
        "the limit stopped no fork: {o}"
    );
    assert!(
        o.stderr.contains("fork") || o.stderr.contains("Resource temporarily unavailable"),
        "{o}"
    );
    let current: u32 = read(&dir, "pids.current").parse().unwrap_or(99);
    assert!(current <= 10, "pids.current {current} over the limit: {o}");
    assert!(
        read(&dir, "pids.events").contains("max "),
        "pids.events: {}",
        read(&dir, "pids.events")
    );
    let max_hits: u64 = read(&dir, "pids.events")
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(max_hits > 0, "the limit was never hit");
    if t.driver == Driver::Systemd {
        assert_eq!(unit_prop(&id, "TasksMax"), "10");
    }
});

both!(io_weight_and_device_limits, |t: &T| {
    let Some((disk, ma, mi)) = a_disk() else {
        eprintln!("skipped: no block device");
        return;
    };
    let mut rm = Rm(t.d, vec![]);
    let rbps = format!("{disk}:1mb");
    let wiops = format!("{disk}:100");
    let wdev = format!("{disk}:200");
    let (name, id, dir) = run_sleep(
        t,
        &mut rm,
        &[
            "--blkio-weight",
            "300",
            "--blkio-weight-device",
            &wdev,
            "--device-read-bps",
            &rbps,
            "--device-write-iops",
            &wiops,
        ],
    );
    let io_max = format!("{ma}:{mi} rbps=1048576 wbps=max riops=max wiops=100");
    assert_eq!(read(&dir, "io.max"), io_max);
    assert_eq!(inside(t.d, &name, "cat /sys/fs/cgroup/io.max"), io_max);
    // io.weight takes 1..10000: 1 + (w - 10) * 9999 / 990 (BFQ takes 300 as is). A device's
    // own weight needs BFQ scheduling it (as runc: io.weight's device lines need iocost).
    let bfq_dev = std::fs::read_to_string(format!("/sys/dev/block/{ma}:{mi}/queue/scheduler"))
        .is_ok_and(|s| s.contains("[bfq]"));
    let (file, w) = if dir.join("io.bfq.weight").exists() {
        ("io.bfq.weight", 300)
    } else {
        ("io.weight", 2930)
    };
    let weights = read(&dir, file);
    assert!(
        weights.contains(&format!("default {w}")),
        "{file}: {weights}"
    );
    assert_eq!(
        weights.contains(&format!("{ma}:{mi} 200")),
        bfq_dev,
        "{file}: {weights}"
    );
    assert_eq!(
        inside(t.d, &name, &format!("cat /sys/fs/cgroup/{file}")),
        weights
    );
    if t.driver == Driver::Systemd {
        assert_eq!(unit_prop(&id, "IOWeight"), "2930");
        if bfq_dev {
            assert_eq!(unit_prop(&id, "IODeviceWeight"), format!("{disk} 1920"));
        }
        assert_eq!(
            unit_prop(&id, "IOReadBandwidthMax"),
            format!("{disk} 1048576")
        );
        assert_eq!(unit_prop(&id, "IOWriteIOPSMax"), format!("{disk} 100"));
    }
    let o = t.d.cli(&[
        "run",
        "--rm",
        "--device-read-bps",
        "/dev/null:1mb",
        "busybox",
        "true",
    ]);
    o.fails();
    assert!(o.stderr.contains("/dev/null is not a block device"), "{o}");
});

both!(device_filter_keeps_host_disks_out, |t: &T| {
    let Some((_, ma, mi)) = a_disk() else {
        eprintln!("skipped: no block device");
        return;
    };
    // The default capability set has MKNOD and the device rules allow mknod, not reads.
    let script = format!("mknod /tmp/disk b {ma} {mi} && head -c 512 /tmp/disk >/dev/null");
    let o = t.d.cli(&["run", "--rm", "busybox", "sh", "-c", &script]);
    o.fails();
    assert!(o.stderr.contains("Operation not permitted"), "{o}");
    let o = t.d.cli(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo x >/dev/null && head -c 4 /dev/zero | wc -c",
    ]);
    o.ok();
    assert_eq!(o.out(), "4");
    let o = t.d.cli(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    o.ok();
});

both!(update_a_running_container, |t: &T| {
    let mut rm = Rm(t.d, vec![]);
    let (name, id, dir) = run_sleep(t, &mut rm, &["--memory", "64m", "--pids-limit", "20"]);
    let o = t.d.cli(&[
        "update",
        "--memory",
        "128m",
        "--memory-swap",
        "256m",
        "--cpus",
        "1.5",
        "--cpu-shares",
        "2048",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "50",
        "--blkio-weight",
        "500",
        &name,
    ]);
    o.ok();
    assert_eq!(read(&dir, "memory.max"), "134217728");
    assert_eq!(read(&dir, "cpu.max"), "150000 100000");
    assert_eq!(read(&dir, "cpu.weight"), "174");
    assert_eq!(read(&dir, "cpuset.cpus"), "0");
    assert_eq!(read(&dir, "pids.max"), "50");
    assert_eq!(
        inside(t.d, &name, "cat /sys/fs/cgroup/memory.max"),
        "134217728"
    );
    assert_eq!(inside(t.d, &name, "cat /sys/fs/cgroup/pids.max"), "50");
    if dir.join("memory.swap.max").exists() {
        assert_eq!(read(&dir, "memory.swap.max"), "134217728");
    }
    if dir.join("io.weight").exists() && !dir.join("io.bfq.weight").exists() {
        assert!(read(&dir, "io.weight").contains("default 4950"));
    }
    assert_eq!(fmt(t.d, &name, "{{.HostConfig.Memory}}"), "134217728");
    assert_eq!(fmt(t.d, &name, "{{.HostConfig.PidsLimit}}"), "50");
    if t.driver == Driver::Systemd {
        assert_eq!(unit_prop(&id, "MemoryMax"), "134217728");
        assert_eq!(unit_prop(&id, "TasksMax"), "50");
        assert_eq!(unit_prop(&id, "CPUQuotaPerSecUSec"), "1.500000s");
        assert_eq!(unit_prop(&id, "IOWeight"), "4950");
    }
    // Unlimited again.
    t.d.cli(&["update", "--pids-limit", "-1", &name]).ok();
    assert_eq!(read(&dir, "pids.max"), "max");
});

both!(stats_agree_with_the_cgroup_files, |t: &T| {
    let mut rm = Rm(t.d, vec![]);
    let (name, _, dir) = run_sleep(t, &mut rm, &["--memory", "64m", "--pids-limit", "30"]);
    inside(t.d, &name, "sleep 100 & sleep 100 & true");
    let usage_before: u64 = read(&dir, "cpu.stat")
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.parse().ok())
        .expect("usage_usec");
    let r = t.d.api(
        "GET",
        &format!("/containers/{name}/stats?stream=false&one-shot=true"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json().expect("stats json");
    let usage_after: u64 = read(&dir, "cpu.stat")
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.parse().ok())
        .expect("usage_usec");
    assert_eq!(v["memory_stats"]["limit"], 67108864, "{v}");
    assert_eq!(v["pids_stats"]["limit"], 30, "{v}");
    assert_eq!(
        v["pids_stats"]["current"].as_u64(),
        read(&dir, "pids.current").parse::<u64>().ok(),
        "{v}"
    );
    let total = v["cpu_stats"]["cpu_usage"]["total_usage"]
        .as_u64()
        .expect("cpu usage");
    assert!(
        usage_before * 1000 <= total && total <= usage_after * 1000,
        "cpu usage {total} ns outside [{usage_before}, {usage_after}] µs"
    );
    let mem = v["memory_stats"]["usage"].as_u64().expect("memory usage");
    let cur: u64 = read(&dir, "memory.current")
        .parse()
        .expect("memory.current");
    assert!(
        mem > 0 && mem.abs_diff(cur) < cur / 2 + (1 << 20),
        "usage {mem} vs memory.current {cur}"
    );
    let file = v["memory_stats"]["stats"]["file"].as_u64();
    assert!(file.is_some(), "memory.stat keys: {v}");
    // The CLI's table shows the same limit.
    let o = t.d.cli(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}} {{.PIDs}}",
        &name,
    ]);
    o.ok();
    assert!(o.out().contains("/ 64MiB"), "{o}");
});

both!(pause_uses_the_v2_freezer, |t: &T| {
    let mut rm = Rm(t.d, vec![]);
    let name = unique("cg");
    rm.add(&name);
    run_d(
        t.d,
        &[
            "--name",
            &name,
            "busybox",
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i >/tmp/n; sleep 0.05; done",
        ],
    );
    expect_status(t.d, &name, "running");
    let dir = cgroup_dir(t.d, &name);
    t.d.cli(&["pause", &name]).ok();
    assert_eq!(fmt(t.d, &name, "{{.State.Status}}"), "paused");
    assert_eq!(read(&dir, "cgroup.freeze"), "1");
    assert!(read(&dir, "cgroup.events").contains("frozen 1"));
    // Read from the host: an exec cannot join a frozen cgroup.
    let pid = fmt(t.d, &name, "{{.State.Pid}}");
    let count = || std::fs::read_to_string(format!("/proc/{pid}/root/tmp/n")).unwrap_or_default();
    let a = count();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(count(), a, "the counter moved while paused");
    t.d.cli(&["unpause", &name]).ok();
    assert_eq!(read(&dir, "cgroup.freeze"), "0");
    assert!(read(&dir, "cgroup.events").contains("frozen 0"));
    assert_eq!(fmt(t.d, &name, "{{.State.Status}}"), "running");
    assert!(
        wait_until(DEADLINE, || count() != a),
        "the counter stayed after unpause"
    );
});

both!(oom_kill_is_reported, |t: &T| {
    let mut rm = Rm(t.d, vec![]);
    let name = unique("cg");
    rm.add(&name);
    let o = t.d.cli(&[
        "run",
        "--name",
        &name,
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 67108864 /dev/zero | tr '\\0' x); echo survived",
    ]);
    assert_eq!(o.code, 137, "{o}");
    assert_eq!(fmt(t.d, &name, "{{.State.OOMKilled}}"), "true");
    assert_eq!(fmt(t.d, &name, "{{.State.ExitCode}}"), "137");
});

both!(cgroupns_modes, |t: &T| {
    let mut rm = Rm(t.d, vec![]);
    let (name, id, dir) = run_sleep(t, &mut rm, &[]);
    // Private by default on v2: the container's cgroup is its root.
    assert_eq!(inside(t.d, &name, "cat /proc/self/cgroup"), "0::/");
    assert!(inside(t.d, &name, "ls /sys/fs/cgroup").contains("memory.max"));
    // Filled in at create, as dockerd does: the daemon's default, private on v2.
    assert_eq!(fmt(t.d, &name, "{{.HostConfig.CgroupnsMode}}"), "private");
    let (host, hid, hdir) = run_sleep(t, &mut rm, &["--cgroupns", "host"]);
    let rel = hdir.strip_prefix("/sys/fs/cgroup").expect("under the root");
    assert_eq!(
        inside(t.d, &host, "cat /proc/self/cgroup"),
        format!("0::/{}", rel.display())
    );
    assert_ne!(hid, id);
    // The host's hierarchy is visible (read-only) in host mode.
    let top = rel.components().next().expect("a first component");
    let listing = inside(t.d, &host, "ls /sys/fs/cgroup");
    assert!(
        listing.contains(top.as_os_str().to_str().unwrap_or("")),
        "{listing}"
    );
    let o =
        t.d.cli(&["exec", &host, "sh", "-c", "mkdir /sys/fs/cgroup/x"]);
    o.fails();
    assert!(dir.exists());
    let o =
        t.d.cli(&["run", "--rm", "--cgroupns", "shared", "busybox", "true"]);
    o.fails();
    assert!(
        o.stderr.contains("invalid cgroup namespace mode: shared"),
        "{o}"
    );
});

#[test]
fn daemon_default_cgroupns_mode() {
    if let Some(why) = skip_reason(Driver::Cgroupfs) {
        eprintln!("skipped: {why}");
        return;
    }
    let d = Daemon::start_with_args(
        BIN,
        &[
            "--exec-opt",
            "native.cgroupdriver=cgroupfs",
            "--default-cgroupns-mode",
            "host",
        ],
    );
    d.load_busybox();
    let o = d.cli(&["run", "--rm", "busybox", "cat", "/proc/self/cgroup"]);
    o.ok();
    assert!(o.out().starts_with("0::/berth/"), "{o}");
    let o = d.cli(&[
        "run",
        "--rm",
        "--cgroupns",
        "private",
        "busybox",
        "cat",
        "/proc/self/cgroup",
    ]);
    o.ok();
    assert_eq!(o.out(), "0::/");
}

/// Live restore with limits: the daemon is killed and started again; the container keeps
/// running in its cgroup, and stats, update and pause still reach it.
fn live_restore(driver: Driver) {
    if let Some(why) = skip_reason(driver) {
        eprintln!("skipped: {why}");
        return;
    }
    let args: &[&str] = match driver {
        Driver::Cgroupfs => &["--exec-opt", "native.cgroupdriver=cgroupfs"],
        Driver::Systemd => &["--exec-opt", "native.cgroupdriver=systemd"],
    };
    let d = Daemon::start_with_args(BIN, args).keep();
    d.load_busybox();
    let t = T { d, driver };
    let mut rm = Rm(t.d, vec![]);
    let (name, id, dir) = run_sleep(&t, &mut rm, &["--memory", "64m", "-p", "127.0.0.1::80"]);
    let pid = fmt(t.d, &name, "{{.State.Pid}}");
    t.d.kill9();
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the container died with the daemon"
    );
    assert_eq!(
        read(&dir, "cgroup.procs").lines().next(),
        Some(pid.as_str())
    );
    if driver == Driver::Systemd {
        assert_eq!(unit_prop(&id, "ActiveState"), "active");
    }
    t.d.restart();
    expect_status(t.d, &name, "running");
    let r = t.d.api(
        "GET",
        &format!("/containers/{name}/stats?stream=false&one-shot=true"),
    );
    assert_eq!(r.json().expect("stats")["memory_stats"]["limit"], 67108864);
    t.d.cli(&["update", "--memory", "96m", &name]).ok();
    assert_eq!(read(&dir, "memory.max"), "100663296");
    t.d.cli(&["pause", &name]).ok();
    assert_eq!(read(&dir, "cgroup.freeze"), "1");
    t.d.cli(&["unpause", &name]).ok();
    t.d.cli(&["rm", "-f", &name]).ok();
    assert!(
        wait_until(DEADLINE, || !dir.exists()),
        "{} stayed",
        dir.display()
    );
    drop(rm);
    t.d.cleanup();
}

#[test]
fn live_restore_cgroupfs() {
    live_restore(Driver::Cgroupfs)
}

#[test]
fn live_restore_systemd() {
    live_restore(Driver::Systemd)
}

both!(published_port_and_user_network_dns, |t: &T| {
    use std::io::{Read, Write};
    let mut rm = Rm(t.d, vec![]);
    let web = unique("web");
    rm.add(&web);
    run_d(
        t.d,
        &[
            "--name",
            &web,
            "-p",
            "127.0.0.1::80",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ],
    );
    expect_status(t.d, &web, "running");
    let port = fmt(
        t.d,
        &web,
        "{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}",
    );
    let get = || -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().ok()?)).ok()?;
        s.write_all(b"GET /hostname HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.contains("200 OK").then_some(out)
    };
    let mut body = None;
    wait_until(DEADLINE, || {
        body = get();
        body.is_some()
    });
    let body = body.expect("the published port answers");
    assert!(body.contains(&id_of(t.d, &web)[..12]), "{body}");
    let net = unique("net");
    t.d.cli(&["network", "create", &net]).ok();
    let srv = unique("srv");
    rm.add(&srv);
    run_d(
        t.d,
        &[
            "--name",
            &srv,
            "--network",
            &net,
            "busybox",
            "sleep",
            "1000",
        ],
    );
    expect_status(t.d, &srv, "running");
    let ip = fmt(
        t.d,
        &srv,
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
    );
    let o = t.d.cli(&[
        "run",
        "--rm",
        "--network",
        &net,
        "busybox",
        "nslookup",
        &srv,
    ]);
    o.ok();
    assert!(o.out().contains(&ip), "{o}");
    drop(rm);
    t.d.cli(&["network", "rm", &net]).ok();
});

both!(exec_joins_the_container_cgroup, |t: &T| {
    let mut rm = Rm(t.d, vec![]);
    let (name, id, dir) = run_sleep(t, &mut rm, &[]);
    assert_eq!(inside(t.d, &name, "cat /proc/self/cgroup"), "0::/");
    t.d.cli(&["exec", "-d", &name, "sleep", "999"]).ok();
    assert!(
        wait_until(DEADLINE, || read(&dir, "cgroup.procs").lines().count() >= 2),
        "cgroup.procs: {}",
        read(&dir, "cgroup.procs")
    );
    let top = t.d.cli(&["top", &name]);
    top.ok();
    assert!(top.out().contains("sleep 999"), "{top}");
    if t.driver == Driver::Systemd {
        let o = std::process::Command::new("systemctl")
            .args(["status", "--no-pager", &format!("berth-{id}.scope")])
            .output()
            .expect("systemctl");
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(s.contains("sleep 999") && s.contains("sleep 1000"), "{s}");
    }
});

both!(build_runs_its_steps_on_v2, |t: &T| {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM busybox\nRUN cat /proc/self/cgroup >/cg && test -f /sys/fs/cgroup/cgroup.controllers\nCMD [\"cat\", \"/cg\"]\n",
    )
    .expect("write");
    let tag = format!("{}:v2", unique("cgbuild"));
    let o = t.d.cli(&[
        "build",
        "-q",
        "-t",
        &tag,
        dir.path().to_str().expect("utf-8"),
    ]);
    o.ok();
    let o = t.d.cli(&["run", "--rm", &tag]);
    o.ok();
    assert_eq!(o.out(), "0::/", "the RUN step had its own cgroup namespace");
    t.d.cli(&["rmi", &tag]).ok();
});

#[test]
fn systemd_scope_lifecycle_and_slices() {
    let Some(t) = setup(Driver::Systemd) else {
        return;
    };
    let mut rm = Rm(t.d, vec![]);
    let (name, id, dir) = run_sleep(&t, &mut rm, &[]);
    let unit = format!("berth-{id}.scope");
    let o = std::process::Command::new("systemctl")
        .args(["status", "--no-pager", &unit])
        .output()
        .expect("systemctl");
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "systemctl status {unit}: {s}");
    assert!(s.contains(&unit) && s.contains("active (running)"), "{s}");
    assert!(s.contains("sleep 1000"), "{s}");
    assert_eq!(unit_prop(&id, "Slice"), "system.slice");
    assert_eq!(unit_prop(&id, "Delegate"), "yes");
    t.d.cli(&["rm", "-f", &name]).ok();
    assert!(
        wait_until(DEADLINE, || !dir.exists()),
        "the scope's cgroup stayed"
    );
    let o = std::process::Command::new("systemctl")
        .args(["status", "--no-pager", &unit])
        .output()
        .expect("systemctl");
    assert!(!o.status.success(), "the scope is still known after rm");

    // --cgroup-parent takes a slice, nested the systemd way.
    let (_, id, dir) = run_sleep_in(&t, &mut rm, "berth-test.slice");
    assert_eq!(
        dir,
        PathBuf::from(format!(
            "/sys/fs/cgroup/berth.slice/berth-test.slice/berth-{id}.scope"
        ))
    );
    assert_eq!(unit_prop(&id, "Slice"), "berth-test.slice");
    let o = t.d.cli(&[
        "run",
        "--rm",
        "--cgroup-parent",
        "/not/a/slice",
        "busybox",
        "true",
    ]);
    o.fails();
    assert!(
        o.stderr.contains(
            "cgroup-parent for systemd cgroup should be a valid slice named as \"xxx.slice\""
        ),
        "{o}"
    );
}

/// `run_sleep` with `--cgroup-parent`, without the default-place check.
fn run_sleep_in(t: &T, rm: &mut Rm, parent: &str) -> (String, String, PathBuf) {
    let name = unique("cg");
    rm.add(&name);
    let id = run_d(
        t.d,
        &[
            "--name",
            &name,
            "--cgroup-parent",
            parent,
            "busybox",
            "sleep",
            "1000",
        ],
    );
    expect_status(t.d, &name, "running");
    (name.clone(), id, cgroup_dir(t.d, &name))
}

#[test]
fn cgroupfs_cgroup_parent() {
    let Some(t) = setup(Driver::Cgroupfs) else {
        return;
    };
    let mut rm = Rm(t.d, vec![]);
    let (_, id, dir) = run_sleep_in(&t, &mut rm, "/berth-parent-test");
    assert_eq!(
        dir,
        PathBuf::from(format!("/sys/fs/cgroup/berth-parent-test/{id}"))
    );
}
