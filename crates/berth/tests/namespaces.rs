//! Namespace and cgroup options (`--pid`, `--ipc`, `--uts`, `--userns`, `--cgroupns`,
//! `--cgroup-parent`, `--oom-score-adj`) seen from inside and outside the container, and
//! pod-like sharing of one container's namespaces by others (top, exec, stop as in Docker).

mod common;
use common::*;

/// The host's namespace of `kind`, as the test process (on the host) sees it.
fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A running container's namespace of `kind`, seen from outside through its init pid.
fn ns_of(d: &Daemon, name: &str, kind: &str) -> String {
    let pid = fmt(d, name, "{{.State.Pid}}");
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("ns {kind} of {name} (pid {pid}): {e}"))
}

/// `create` through the API; returns (status, body).
fn create_api(d: &Daemon, body: Value) -> (u16, Value) {
    let b = body.to_string();
    let r = d
        .api_with(
            "POST",
            "/containers/create",
            &[("Content-Type", "application/json")],
            Some(b.as_bytes()),
        )
        .expect("create");
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

#[test]
fn pid_host_sees_host_processes() {
    let d = d();
    // `docker run --pid=host busybox ps`: the host's processes, among them the daemon.
    let o = d.cli(&[
        "run",
        "--rm",
        "--pid=host",
        "busybox",
        "ps",
        "-o",
        "pid,comm",
    ]);
    o.ok();
    let daemon_pid = d.pid().expect("daemon pid").to_string();
    assert!(
        o.out()
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&daemon_pid)),
        "the daemon's pid {daemon_pid} is not listed: {o}"
    );
    let inside = sh(d, &["--pid=host"], "readlink /proc/self/ns/pid");
    assert_eq!(inside, host_ns("pid"));
}

#[test]
fn pid_and_ipc_of_another_container() {
    let d = d();
    let a = unique("nsa");
    let b = unique("nsb");
    let mut rm = Rm(d, vec![a.clone(), b.clone()]);
    run_d(
        d,
        &[
            "--name",
            &a,
            "--ipc",
            "shareable",
            "busybox",
            "sleep",
            "300",
        ],
    );
    run_d(
        d,
        &[
            "--name",
            &b,
            "--pid",
            &format!("container:{a}"),
            "--ipc",
            &format!("container:{a}"),
            "busybox",
            "sleep",
            "301",
        ],
    );
    for kind in ["pid", "ipc"] {
        assert_eq!(ns_of(d, &a, kind), ns_of(d, &b, kind), "{kind} not shared");
    }
    assert_ne!(ns_of(d, &a, "pid"), host_ns("pid"));
    assert_ne!(ns_of(d, &a, "mnt"), ns_of(d, &b, "mnt"));
    // b sees a's process; a's pid 1 is its sleep.
    let o = d.cli(&["exec", &b, "ps", "-o", "pid,args"]);
    o.ok();
    assert!(
        o.out().contains("sleep 300") && o.out().contains("sleep 301"),
        "{o}"
    );
    // /dev/shm is shared too.
    d.cli(&["exec", &a, "sh", "-c", "echo shared > /dev/shm/f"])
        .ok();
    assert_eq!(
        d.cli(&["exec", &b, "cat", "/dev/shm/f"]).ok().out(),
        "shared"
    );
    // top shows each container's own processes, as Docker's does.
    let ta = d.cli(&["top", &a]);
    ta.ok();
    assert!(
        ta.out().contains("sleep 300") && !ta.out().contains("sleep 301"),
        "{ta}"
    );
    let tb = d.cli(&["top", &b]);
    tb.ok();
    assert!(
        tb.out().contains("sleep 301") && !tb.out().contains("sleep 300"),
        "{tb}"
    );
    // Stopping the namespace's owner ends the pid namespace, and with it b.
    d.cli(&["stop", "-t", "1", &a]).ok();
    expect_status(d, &b, "exited");
    rm.add(&a);
}

#[test]
fn joining_needs_a_running_shareable_container() {
    let d = d();
    let p = unique("nsp");
    let _rm = Rm(d, vec![p.clone()]);
    run_d(d, &["--name", &p, "busybox", "sleep", "300"]);
    assert_eq!(fmt(d, &p, "{{.HostConfig.IpcMode}}"), "private");
    let o = d.cli(&[
        "run",
        "--rm",
        "--ipc",
        &format!("container:{p}"),
        "busybox",
        "true",
    ]);
    o.fails();
    assert!(
        o.stderr
            .contains("non-shareable IPC (hint: use IpcMode:shareable for the donor container)"),
        "{o}"
    );
    let o = d.cli(&[
        "run",
        "--rm",
        "--pid",
        "container:nosuchcontainer",
        "busybox",
        "true",
    ]);
    o.fails();
    assert!(o.stderr.contains("failed to join PID namespace"), "{o}");
    let (st, body) = create_api(
        d,
        json!({"Image": "busybox", "HostConfig": {"PidMode": "bogus"}}),
    );
    assert_eq!(
        (st, body["message"].as_str()),
        (400, Some("invalid PID mode: bogus"))
    );
    let (st, body) = create_api(
        d,
        json!({"Image": "busybox", "HostConfig": {"IpcMode": "bogus"}}),
    );
    assert_eq!(
        (st, body["message"].as_str()),
        (400, Some("invalid IPC mode: bogus"))
    );
    let (st, body) = create_api(
        d,
        json!({"Image": "busybox", "HostConfig": {"UTSMode": "x"}}),
    );
    assert_eq!(
        (st, body["message"].as_str()),
        (400, Some("invalid UTS mode: x"))
    );
    let (st, body) = create_api(
        d,
        json!({"Image": "busybox", "HostConfig": {"CgroupnsMode": "x"}}),
    );
    assert_eq!(
        (st, body["message"].as_str()),
        (400, Some("invalid cgroup namespace mode: x"))
    );
}

#[test]
fn ipc_host_none_and_private() {
    let d = d();
    let inside = sh(d, &["--ipc", "host"], "readlink /proc/self/ns/ipc");
    assert_eq!(inside, host_ns("ipc"));
    let inside = sh(d, &[], "readlink /proc/self/ns/ipc");
    assert_ne!(inside, host_ns("ipc"));
    // none: no /dev/shm mount at all.
    let o = sh(
        d,
        &["--ipc", "none"],
        "grep -c ' /dev/shm ' /proc/mounts || true",
    );
    assert_eq!(o, "0");
    // private: its own 64 MiB tmpfs; --shm-size sizes it.
    let o = sh(d, &["--shm-size", "8m"], "df -k /dev/shm | tail -1");
    assert!(o.split_whitespace().nth(1) == Some("8192"), "{o}");
}

#[test]
fn uts_host_and_userns_host() {
    let d = d();
    let host = nix_hostname();
    assert_eq!(sh(d, &["--uts", "host"], "hostname"), host);
    assert_eq!(
        sh(d, &["--uts", "host"], "readlink /proc/self/ns/uts"),
        host_ns("uts")
    );
    // The host keeps its name whatever the container is called.
    let o = d.cli(&["run", "--rm", "--uts", "host", "-h", "x", "busybox", "true"]);
    o.fails();
    assert!(
        o.stderr
            .contains("conflicting options: hostname and the UTS mode"),
        "{o}"
    );
    assert_eq!(nix_hostname(), host);
    // --network host takes the host's name as the container's hostname (dockerd).
    assert_eq!(sh(d, &["--network", "host"], "cat /etc/hostname"), host);
    // --userns host is accepted (there is no remapping to opt out of).
    assert_eq!(sh(d, &["--userns", "host"], "echo ok"), "ok");
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn cgroupns_modes() {
    let d = d();
    let private = sh(
        d,
        &["--cgroupns", "private"],
        "readlink /proc/self/ns/cgroup",
    );
    assert_ne!(private, host_ns("cgroup"));
    // Inside a private cgroup namespace the container's cgroup is the root.
    let own = sh(
        d,
        &["--cgroupns", "private"],
        "grep ':memory:' /proc/self/cgroup",
    );
    assert!(own.ends_with(":/"), "{own}");
    let host = sh(d, &["--cgroupns", "host"], "readlink /proc/self/ns/cgroup");
    assert_eq!(host, host_ns("cgroup"));
    let c = run_d(d, &["--rm", "busybox", "sleep", "30"]);
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(
        fmt(d, &c, "{{.HostConfig.CgroupnsMode}}"),
        if v2 { "private" } else { "host" }
    );
    d.rm_f(&[&c]);
}

#[test]
fn cgroup_parent_places_the_container() {
    let d = d();
    let parent = format!("/berth-t-{}", std::process::id());
    let c = run_d(d, &["--cgroup-parent", &parent, "busybox", "sleep", "300"]);
    let pid = fmt(d, &c, "{{.State.Pid}}");
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let dir = if v2 {
        format!("/sys/fs/cgroup{parent}/{c}")
    } else {
        format!("/sys/fs/cgroup/memory{parent}/{c}")
    };
    let procs = std::fs::read_to_string(format!("{dir}/cgroup.procs")).unwrap_or_default();
    assert!(procs.lines().any(|l| l == pid), "{dir}: {procs:?}");
    // From inside (host cgroupns): the path below the parent.
    let own = d.cli(&["exec", &c, "cat", "/proc/self/cgroup"]);
    own.ok();
    assert!(own.out().contains(&format!("{parent}/{c}")), "{own}");
    // top, stats and pause find it there.
    assert!(d.cli(&["top", &c]).ok().out().contains("sleep 300"));
    d.cli(&["pause", &c]).ok();
    d.cli(&["unpause", &c]).ok();
    d.rm_f(&[&c]);
    // Removing the container removes its cgroup; the parent stays (as with Docker): clean it.
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup root")
        .flatten()
    {
        let p = h.path().join(parent.trim_start_matches('/'));
        assert!(!p.join(&c).exists(), "{} left behind", p.join(&c).display());
        let _ = std::fs::remove_dir(&p);
    }
    let _ = std::fs::remove_dir(format!("/sys/fs/cgroup{parent}"));
}

#[test]
fn oom_score_adj_applied_and_refusals_reported() {
    let d = d();
    let c = run_d(
        d,
        &["--rm", "--oom-score-adj", "500", "busybox", "sleep", "30"],
    );
    let pid = fmt(d, &c, "{{.State.Pid}}");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .expect("oom_score_adj")
            .trim(),
        "500"
    );
    assert_eq!(
        d.cli(&["exec", &c, "cat", "/proc/self/oom_score_adj"])
            .ok()
            .out(),
        "500"
    );
    assert_eq!(fmt(d, &c, "{{.HostConfig.OomScoreAdj}}"), "500");
    d.rm_f(&[&c]);
    let (st, body) = create_api(
        d,
        json!({"Image": "busybox", "HostConfig": {"OomScoreAdj": 1001}}),
    );
    assert_eq!(
        (st, body["message"].as_str()),
        (
            400,
            Some("Invalid value 1001, range for oom score adj is [-1000, 1000]")
        )
    );
    // Lowering it needs CAP_SYS_RESOURCE. Where the daemon lacks it, the kernel's refusal is
    // the start's error, in plain words (dockerd: a 400, exit code 126 for `run`).
    let has_sys_resource = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|m| m & (1 << 24) != 0);
    let o = d.cli(&[
        "run",
        "--rm",
        "--oom-score-adj",
        "-500",
        "busybox",
        "cat",
        "/proc/self/oom_score_adj",
    ]);
    if has_sys_resource {
        o.ok();
        assert_eq!(o.out(), "-500");
    } else {
        o.code_is(126);
        assert!(
            o.stderr.contains("oom_score_adj: permission denied")
                && o.stderr.contains("CAP_SYS_RESOURCE"),
            "{o}"
        );
    }
}

#[test]
fn pod_shares_network_ipc_and_pid() {
    let d = d();
    let pod = unique("pod");
    let web = unique("podweb");
    let side = unique("podside");
    let _rm = Rm(d, vec![side.clone(), web.clone(), pod.clone()]);
    run_d(
        d,
        &[
            "--name",
            &pod,
            "--ipc",
            "shareable",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    let join = format!("container:{pod}");
    run_d(
        d,
        &[
            "--name",
            &web,
            "--network",
            &join,
            "--ipc",
            &join,
            "--pid",
            &join,
            "busybox",
            "httpd",
            "-f",
            "-p",
            "8080",
        ],
    );
    run_d(
        d,
        &[
            "--name",
            &side,
            "--network",
            &join,
            "--ipc",
            &join,
            "--pid",
            &join,
            "busybox",
            "sleep",
            "1001",
        ],
    );
    for kind in ["net", "ipc", "pid"] {
        assert_eq!(ns_of(d, &pod, kind), ns_of(d, &web, kind), "{kind}");
        assert_eq!(ns_of(d, &pod, kind), ns_of(d, &side, kind), "{kind}");
    }
    // The sidecar reaches the web server on localhost and sees every process of the pod.
    let reached = wait_until(DEADLINE, || {
        let o = d.cli(&[
            "exec",
            &side,
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:8080/",
        ]);
        o.success() || o.stderr.contains("404")
    });
    assert!(reached, "web not reachable from the sidecar");
    let ps = d.cli(&["exec", &side, "ps", "-o", "args"]);
    ps.ok();
    for p in ["sleep 1000", "httpd -f -p 8080", "sleep 1001"] {
        assert!(ps.out().contains(p), "{p} missing: {ps}");
    }
    // Stopping a member stops only it.
    d.cli(&["stop", "-t", "1", &web]).ok();
    assert_eq!(fmt(d, &web, "{{.State.Status}}"), "exited");
    assert_eq!(fmt(d, &side, "{{.State.Status}}"), "running");
    let ps = d.cli(&["exec", &side, "ps", "-o", "args"]);
    assert!(!ps.out().contains("httpd"), "{ps}");
    // Stopping the pod ends its pid namespace, and every member with it.
    d.cli(&["stop", "-t", "1", &pod]).ok();
    expect_status(d, &side, "exited");
    // A member cannot start while the pod is down.
    let o = d.cli(&["start", &web]);
    o.fails();
    assert!(o.stderr.contains("non running container"), "{o}");
}
