//! Live restore: the daemon is killed (`kill -9`) or stopped while containers run, then started
//! again on the same roots; containers keep running and stay fully manageable, and restart
//! policies are honoured. Each test owns its daemon.

mod common;
use common::*;

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].trim_start().chars().next())
                != Some('Z')
        })
        .unwrap_or(false)
}

#[test]
fn kill9_daemon_containers_survive_and_stay_manageable() {
    let d = Daemon::start(BIN);
    d.load_busybox();
    run_d(
        &d,
        &[
            "--name",
            "long",
            "busybox",
            "sh",
            "-c",
            "echo alive; trap 'exit 0' TERM; while :; do sleep 0.1; done",
        ],
    );
    run_d(
        &d,
        &[
            "--name",
            "short",
            "busybox",
            "sh",
            "-c",
            "echo before; sleep 1.5; echo after; exit 7",
        ],
    );
    run_d(&d, &["--name", "quiet", "busybox", "sleep", "300"]);
    expect_status(&d, "long", "running");
    expect_status(&d, "short", "running");
    assert!(wait_until(DEADLINE, || d
        .cli(&["logs", "long"])
        .stdout
        .contains("alive")));
    let long_pid: u32 = fmt(&d, "long", "{{.State.Pid}}").parse().expect("pid");
    let short_pid: u32 = fmt(&d, "short", "{{.State.Pid}}").parse().expect("pid");

    d.kill9();
    assert!(!d.is_running());
    assert!(pid_alive(long_pid), "container died with the daemon");
    // `short` exits while the daemon is down.
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(short_pid)),
        "short never exited"
    );

    d.restart();
    assert_eq!(
        fmt(&d, "long", "{{.State.Status}} {{.State.Pid}}"),
        format!("running {long_pid}")
    );
    expect_status(&d, "short", "exited");
    assert_eq!(fmt(&d, "short", "{{.State.ExitCode}}"), "7");
    assert!(fmt(&d, "short", "{{.State.FinishedAt}}").starts_with("20"));
    let logs = d.cli(&["logs", "short"]);
    assert_eq!(logs.stdout, "before\nafter\n", "{logs}");
    assert_eq!(d.cli(&["wait", "short"]).out(), "7");

    let ps = d.cli(&["ps", "--format", "{{.Names}}"]);
    let mut names = ps.lines();
    names.sort();
    assert_eq!(names, vec!["long", "quiet"], "{ps}");

    // Logs keep flowing into the restored log, and stop works through the restored shim.
    assert!(d.cli(&["logs", "long"]).stdout.contains("alive"));
    d.cli(&["stop", "long"]).ok();
    assert_eq!(
        fmt(&d, "long", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
    assert!(!pid_alive(long_pid));
    d.cli(&["rm", "-f", "quiet"]).ok();
    d.cli(&["rm", "long", "short"]).ok();
    let all = d.cli(&["ps", "-a", "-q"]);
    assert_eq!(all.out(), "", "{all}");

    // And new containers still run.
    let o = d.cli(&["run", "--rm", "busybox", "echo", "after-restart"]);
    o.ok();
    assert_eq!(o.out(), "after-restart");
}

#[test]
fn graceful_restart_keeps_state_and_running_containers() {
    let d = Daemon::start(BIN);
    let img = d.load_busybox();
    run_d(
        &d,
        &["--name", "keep", "-l", "k=v", "busybox", "sleep", "300"],
    );
    d.cli(&["create", "--name", "made", "busybox", "true"]).ok();
    d.cli(&["tag", "busybox", "mine:1"]).ok();
    expect_status(&d, "keep", "running");
    let pid = fmt(&d, "keep", "{{.State.Pid}}");

    d.restart();
    assert_eq!(
        fmt(&d, "keep", "{{.State.Status}} {{.State.Pid}}"),
        format!("running {pid}")
    );
    assert_eq!(fmt(&d, "keep", "{{json .Config.Labels}}"), r#"{"k":"v"}"#);
    assert_eq!(fmt(&d, "made", "{{.State.Status}}"), "created");
    assert_eq!(fmt(&d, "mine:1", "{{.Id}}"), img);
    d.cli(&["start", "-a", "made"]).ok();
    d.cli(&["rm", "-f", "keep", "made"]).ok();
}

#[test]
fn restart_policies_after_daemon_restart() {
    let d = Daemon::start(BIN);
    d.load_busybox();
    // Stopped by hand before the daemon goes down.
    for (name, policy) in [
        ("always-stopped", "always"),
        ("unless-stopped", "unless-stopped"),
    ] {
        run_d(
            &d,
            &[
                "--name",
                name,
                "--restart",
                policy,
                "busybox",
                "sleep",
                "300",
            ],
        );
        expect_status(&d, name, "running");
    }
    d.cli(&["stop", "-t", "1", "always-stopped", "unless-stopped"])
        .ok();
    // These exit (code 1) while the daemon is down.
    let script = "sleep 2; exit 1";
    for (name, policy) in [
        ("always", "always"),
        ("onfail", "on-failure:3"),
        ("unless", "unless-stopped"),
        ("never", "no"),
    ] {
        run_d(
            &d,
            &[
                "--name",
                name,
                "--restart",
                policy,
                "busybox",
                "sh",
                "-c",
                script,
            ],
        );
    }
    d.kill9();
    std::thread::sleep(Duration::from_millis(3000));
    d.restart();

    // Restarted: always, on-failure (exit 1), unless-stopped (not stopped by hand), and
    // always-stopped (Docker starts `always` containers when the daemon starts).
    for n in ["always", "onfail", "unless", "always-stopped"] {
        assert!(
            wait_until(DEADLINE, || {
                let s = fmt(&d, n, "{{.State.Status}} {{.RestartCount}}");
                s.starts_with("running") || (!s.is_empty() && !s.ends_with(" 0"))
            }),
            "{n} should have been restarted after the daemon restart: {}",
            d.cli(&["inspect", n])
        );
    }
    // Not restarted.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        fmt(
            &d,
            "never",
            "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}"
        ),
        "exited 1 0"
    );
    assert_eq!(fmt(&d, "unless-stopped", "{{.State.Status}}"), "exited");
    d.cli(&[
        "rm",
        "-f",
        "always",
        "onfail",
        "unless",
        "never",
        "always-stopped",
        "unless-stopped",
    ])
    .ok();
}

#[test]
fn drop_leaves_no_process_or_mount() {
    let root;
    let pid;
    let id;
    {
        let d = Daemon::start(BIN);
        d.load_busybox();
        run_d(&d, &["--name", "orphan", "busybox", "sleep", "300"]);
        expect_status(&d, "orphan", "running");
        pid = fmt(&d, "orphan", "{{.State.Pid}}")
            .parse::<u32>()
            .expect("pid");
        root = d.root().to_path_buf();
        id = fmt(&d, "orphan", "{{.Id}}");
        d.kill9();
    }
    assert!(
        !pid_alive(pid),
        "the harness must kill containers of a dropped daemon"
    );
    assert!(
        berth_testkit::cleanup::mounts_under(&root).is_empty(),
        "mounts left under {}",
        root.display()
    );
    assert!(!root.exists(), "{} not removed", root.display());
    let left = std::process::Command::new("find")
        .args([
            "/sys/fs/cgroup",
            "-maxdepth",
            "4",
            "-type",
            "d",
            "-name",
            &id,
        ])
        .output()
        .expect("find");
    assert!(
        left.stdout.is_empty(),
        "cgroups left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}
