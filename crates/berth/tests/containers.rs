//! Container lifecycle through the berth CLI, as Docker documents it: create/run/start/stop/kill/
//! restart/rm/ps/inspect/logs/wait/rename, run flags, restart policies and exit codes.

mod common;
use common::*;

// ---------------------------------------------------------------- run, streams, exit codes

#[test]
fn run_streams_stdout() {
    let o = d().cli(&["run", "--rm", "busybox", "echo", "hello"]);
    o.ok();
    assert_eq!(o.stdout, "hello\n", "{o}");
}

#[test]
fn run_streams_stdout_and_stderr_separately() {
    let o = d().cli(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; echo out2",
    ]);
    o.ok();
    assert_eq!(o.stdout, "out\nout2\n", "{o}");
    assert!(o.stderr.contains("err"), "{o}");
    assert!(!o.stdout.contains("err"), "{o}");
}

#[test]
fn run_returns_the_container_exit_code() {
    d().cli(&["run", "--rm", "busybox", "sh", "-c", "exit 3"])
        .code_is(3);
    d().cli(&["run", "--rm", "busybox", "false"]).code_is(1);
}

#[test]
fn exit_125_on_unknown_flag() {
    let o = d().cli(&["run", "--no-such-flag", "busybox", "true"]);
    o.code_is(125);
    assert!(o.stderr.contains("unknown flag"), "{o}");
}

#[test]
fn exit_125_on_engine_error() {
    // No such image (and nothing to pull from offline): the engine fails.
    d().cli(&[
        "run",
        "--rm",
        &format!("{}:v0", unique("nosuchimage")),
        "true",
    ])
    .code_is(125);
    // A name that is already taken.
    let d = d();
    let name = unique("dup");
    let _rm = Rm(d, vec![name.clone()]);
    d.cli(&["create", "--name", &name, "busybox", "true"]).ok();
    let o = d.cli(&["run", "--name", &name, "busybox", "true"]);
    o.code_is(125);
    assert!(o.stderr.contains("is already in use"), "{o}");
}

#[test]
fn exit_126_when_not_executable() {
    let o = d().cli(&["run", "--rm", "busybox", "/etc"]);
    o.code_is(126);
}

#[test]
fn exit_127_when_command_not_found() {
    let o = d().cli(&["run", "--rm", "busybox", "nosuchcmd"]);
    o.code_is(127);
}

/// The image has the command but the container's own mounts hide it: found missing inside
/// the container (by the shim, typed there), still Docker's 127 and 126.
#[test]
fn exit_127_and_126_when_mounts_hide_the_command() {
    let o = d().cli(&[
        "run", "--rm", "--tmpfs", "/bin", "busybox", "/bin/sh", "-c", "true",
    ]);
    o.code_is(127);
    let f = std::env::temp_dir().join(unique("noexec"));
    std::fs::write(&f, "#!/bin/sh\n").unwrap();
    let bind = format!("{}:/bin/sh:ro", f.display());
    let o = d().cli(&[
        "run", "--rm", "-v", &bind, "busybox", "/bin/sh", "-c", "true",
    ]);
    let _ = std::fs::remove_file(&f);
    o.code_is(126);
}

#[test]
fn run_without_command_uses_image_cmd() {
    // busybox's Cmd is ["sh"]; with no stdin attached it reads EOF and exits 0.
    d().cli(&["run", "--rm", "busybox"]).ok();
}

#[test]
fn hello_world_runs() {
    let d = d();
    d.load_hello();
    let o = d.cli(&["run", "--rm", "hello-world"]);
    o.ok();
    assert!(o.stdout.contains("Hello from Berth!"), "{o}");
}

// ---------------------------------------------------------------- run flags

#[test]
fn run_detached_prints_full_id_and_name_works() {
    let d = d();
    let name = unique("det");
    let _rm = Rm(d, vec![name.clone()]);
    let id = run_d(d, &["--name", &name, "busybox", "sleep", "30"]);
    expect_status(d, &name, "running");
    assert_eq!(fmt(d, &name, "{{.Id}}"), id);
    assert_eq!(fmt(d, &name, "{{.Name}}"), format!("/{name}"));
    let o = d.cli(&[
        "ps",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Names}}",
    ]);
    o.ok();
    assert_eq!(o.out(), name, "{o}");
}

#[test]
fn generated_names_are_unique() {
    let d = d();
    let a = d.cli(&["create", "busybox", "true"]);
    let b = d.cli(&["create", "busybox", "true"]);
    a.ok();
    b.ok();
    let _rm = Rm(d, vec![a.out().to_string(), b.out().to_string()]);
    let na = fmt(d, a.out(), "{{.Name}}");
    let nb = fmt(d, b.out(), "{{.Name}}");
    assert!(na.len() > 1 && nb.len() > 1, "{na} {nb}");
    assert_ne!(na, nb);
}

#[test]
fn env_flags() {
    let out = sh(
        d(),
        &["-e", "FOO=bar", "--env", "SPACED=a b"],
        "echo \"$FOO|$SPACED|$PATH\"",
    );
    assert_eq!(
        out,
        "bar|a b|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
}

#[test]
fn env_from_the_client_environment() {
    // `-e NAME` without a value takes the client's value; an unset one is left out.
    let d = d();
    let host = d.host();
    let o = d.cli_env(
        &[
            "-H",
            &host,
            "run",
            "--rm",
            "-e",
            "FROM_CLIENT",
            "-e",
            "UNSET_IN_CLIENT",
            "busybox",
            "sh",
            "-c",
            "echo \"$FROM_CLIENT|${UNSET_IN_CLIENT-unset}\"",
        ],
        &[("FROM_CLIENT", "yes")],
    );
    o.ok();
    assert_eq!(o.out(), "yes|unset", "{o}");
}

#[test]
fn env_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("env.list");
    std::fs::write(&f, "# a comment\nA=1\n\nB=two words\n").expect("write env file");
    let out = sh(d(), &["--env-file", &f.to_string_lossy()], "echo \"$A|$B\"");
    assert_eq!(out, "1|two words");
}

#[test]
fn rm_flag_leaves_nothing() {
    let d = d();
    let name = unique("rm");
    d.cli(&[
        "run", "--rm", "--name", &name, "busybox", "sh", "-c", "exit 3",
    ])
    .code_is(3);
    assert!(
        wait_until(Duration::from_secs(5), || !d
            .cli(&["inspect", &name])
            .success()),
        "container {name} still exists after run --rm"
    );
    let o = d.cli(&["ps", "-a", "-q", "--filter", &format!("name={name}")]);
    o.ok();
    assert_eq!(o.out(), "", "{o}");
    // Nothing on disk mentions it any more.
    for root in [
        d.data_root().join("containers"),
        d.exec_root().join("containers"),
    ] {
        for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let cfg = std::fs::read_to_string(e.path().join("container.json")).unwrap_or_default();
            assert!(
                !cfg.contains(&name),
                "{} still holds {name}",
                e.path().display()
            );
        }
    }
}

#[test]
fn workdir() {
    assert_eq!(sh(d(), &["-w", "/tmp"], "pwd"), "/tmp");
    assert_eq!(sh(d(), &["-w", "/new/dir"], "pwd"), "/new/dir");
}

#[test]
fn user() {
    assert_eq!(sh(d(), &["-u", "nobody"], "id -u"), "65534");
    assert_eq!(sh(d(), &["-u", "postgres"], "id -u; id -g"), "999\n999");
    assert_eq!(
        sh(d(), &["--user", "1234:5678"], "id -u; id -g"),
        "1234\n5678"
    );
    assert_eq!(sh(d(), &[], "id -u"), "0");
}

#[test]
fn entrypoint() {
    let o = d().cli(&[
        "run",
        "--rm",
        "--entrypoint",
        "echo",
        "busybox",
        "hi",
        "there",
    ]);
    o.ok();
    assert_eq!(o.out(), "hi there", "{o}");
}

#[test]
fn hostname() {
    assert_eq!(sh(d(), &["--hostname", "box1"], "hostname"), "box1");
    // Default: the first 12 characters of the id.
    let d = d();
    let name = unique("host");
    let _rm = Rm(d, vec![name.clone()]);
    let id = run_d(d, &["--name", &name, "busybox", "hostname"]);
    d.cli(&["wait", &name]).ok();
    assert_eq!(d.cli(&["logs", &name]).out(), &id[..12]);
}

#[test]
fn labels() {
    let d = d();
    let name = unique("lbl");
    let key = unique("berth.test");
    let _rm = Rm(d, vec![name.clone()]);
    let o = d.cli(&[
        "create",
        "--name",
        &name,
        "-l",
        &format!("{key}=1"),
        "--label",
        "other=two words",
        "busybox",
        "true",
    ]);
    o.ok();
    let labels: Value =
        serde_json::from_str(&fmt(d, &name, "{{json .Config.Labels}}")).expect("labels JSON");
    assert_eq!(labels[&key], "1");
    assert_eq!(labels["other"], "two words");
    let hit = d.cli(&[
        "ps",
        "-a",
        "-q",
        "--no-trunc",
        "-f",
        &format!("label={key}=1"),
    ]);
    assert_eq!(hit.out(), o.out(), "{hit}");
    let key_only = d.cli(&[
        "ps",
        "-a",
        "-q",
        "--no-trunc",
        "-f",
        &format!("label={key}"),
    ]);
    assert_eq!(key_only.out(), o.out(), "{key_only}");
    let miss = d.cli(&["ps", "-a", "-q", "-f", &format!("label={key}=2")]);
    miss.ok();
    assert_eq!(miss.out(), "", "{miss}");
}

#[test]
fn read_only_rootfs_refuses_writes() {
    let o = d().cli(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    o.fails();
    assert!(o.stderr.contains("Read-only file system"), "{o}");
    assert_eq!(
        sh(d(), &["--read-only"], "cat /etc/passwd | head -n 1"),
        "root:x:0:0:root:/root:/bin/sh"
    );
}

/// Prints the first readable of the container's cgroup files for `controller`.
fn cgroup_script(controller: &str, v1_file: &str, v2_file: &str) -> String {
    format!(
        "p=$(grep -E ':([^:]*,)?{controller}(,[^:]*)?:' /proc/self/cgroup | head -n 1 | cut -d: -f3); \
         for f in /sys/fs/cgroup/{controller}/{v1_file} /sys/fs/cgroup/{controller}$p/{v1_file} \
                  /sys/fs/cgroup/cpu,cpuacct/{v1_file} /sys/fs/cgroup/{v2_file}; do \
           if [ -r \"$f\" ]; then cat \"$f\"; exit 0; fi; done; \
         cat /proc/self/cgroup; ls -R /sys/fs/cgroup | head -n 50; exit 1"
    )
}

#[test]
fn memory_limit_visible_in_cgroup() {
    let d = d();
    let out = sh(
        d,
        &["--memory", "64m"],
        &cgroup_script("memory", "memory.limit_in_bytes", "memory.max"),
    );
    assert_eq!(out, "67108864");
    let name = unique("mem");
    let _rm = Rm(d, vec![name.clone()]);
    d.cli(&["create", "--name", &name, "-m", "64m", "busybox", "true"])
        .ok();
    assert_eq!(fmt(d, &name, "{{.HostConfig.Memory}}"), "67108864");
}

#[test]
fn ulimits_and_cpusets_applied() {
    let d = d();
    let out = sh(
        d,
        &["--ulimit", "nofile=1000:2000", "--ulimit", "core=0"],
        "echo $(ulimit -n) $(ulimit -Hn) $(ulimit -c)",
    );
    assert_eq!(out, "1000 2000 0");
    // Without --ulimit nofile, the default stays.
    let out = sh(d, &["--ulimit", "core=0"], "ulimit -n");
    assert_ne!(out, "1000");
    let out = sh(
        d,
        &["--cpuset-cpus", "0"],
        &cgroup_script("cpuset", "cpuset.cpus", "cpuset.cpus.effective"),
    );
    assert_eq!(out, "0");
    // Refused at create, in dockerd's words (go-units' for ulimits), not a 500 at start.
    for (args, want) in [
        (
            &["--cpuset-cpus", "0-999"][..],
            "Requested CPUs are not available",
        ),
        (
            &["--cpuset-cpus", "x"][..],
            "Invalid value x for cpuset cpus",
        ),
    ] {
        let mut a = vec!["create"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "true"]);
        let o = d.cli(&a);
        assert!(!o.success() && o.stderr.contains(want), "{args:?}: {o}");
    }
    for (hc, want) in [
        (
            json!({"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]}),
            "invalid ulimit type: bogus",
        ),
        (
            json!({"CpusetMems": "77"}),
            "Requested memory nodes are not available",
        ),
    ] {
        let body = json!({"Image": "busybox", "HostConfig": hc});
        let r = d
            .api_with(
                "POST",
                "/containers/create",
                &[("Content-Type", "application/json")],
                Some(body.to_string().as_bytes()),
            )
            .expect("create");
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains(want), "{}", r.text());
    }
}

#[test]
fn pids_limit_visible_in_cgroup() {
    let out = sh(
        d(),
        &["--pids-limit", "20"],
        &cgroup_script("pids", "pids.max", "pids.max"),
    );
    assert_eq!(out, "20");
    // A limit of one works as with runc (the runtime's create needs two processes for a moment).
    let out = sh(
        d(),
        &["--pids-limit", "1"],
        "read x < /sys/fs/cgroup/pids/pids.max 2>/dev/null || read x < /sys/fs/cgroup/pids.max; echo $x",
    );
    assert_eq!(out, "1");
}

#[test]
fn cpus_limit() {
    let d = d();
    let out = sh(
        d,
        &["--cpus", "0.5"],
        &cgroup_script("cpu", "cpu.cfs_quota_us", "cpu.max"),
    );
    assert!(out.starts_with("50000"), "cpu quota: {out}");
    let name = unique("cpu");
    let _rm = Rm(d, vec![name.clone()]);
    d.cli(&[
        "create", "--name", &name, "--cpus", "0.5", "busybox", "true",
    ])
    .ok();
    assert_eq!(fmt(d, &name, "{{.HostConfig.NanoCpus}}"), "500000000");
}

fn cap_eff(extra: &[&str]) -> String {
    sh(d(), extra, "grep CapEff /proc/self/status | cut -f2")
}

#[test]
fn cap_add_and_drop() {
    assert_eq!(cap_eff(&[]), "00000000a80425fb");
    // CHOWN is bit 0.
    assert_eq!(cap_eff(&["--cap-drop", "CHOWN"]), "00000000a80425fa");
    // NET_ADMIN is bit 12.
    assert_eq!(
        cap_eff(&["--cap-drop", "ALL", "--cap-add", "NET_ADMIN"]),
        "0000000000001000"
    );
    assert_eq!(
        cap_eff(&["--cap-add", "CAP_SYS_PTRACE"]),
        format!("{:016x}", 0xa80425fbu64 | 1 << 19)
    );
}

#[test]
fn no_new_privileges() {
    let nnp = "grep NoNewPrivs /proc/self/status | cut -f2";
    assert_eq!(sh(d(), &[], nnp), "0");
    assert_eq!(sh(d(), &["--security-opt", "no-new-privileges"], nnp), "1");
    assert_eq!(
        sh(d(), &["--security-opt", "no-new-privileges:true"], nnp),
        "1"
    );
}

// ---------------------------------------------------------------- restart policies

#[test]
fn restart_on_failure_n() {
    let d = d();
    let name = unique("onfail");
    let _rm = Rm(d, vec![name.clone()]);
    run_d(
        d,
        &[
            "--name",
            &name,
            "--restart",
            "on-failure:2",
            "busybox",
            "sh",
            "-c",
            "exit 1",
        ],
    );
    let ok = wait_until(DEADLINE, || {
        fmt(d, &name, "{{.RestartCount}} {{.State.Status}}") == "2 exited"
    });
    assert!(
        ok,
        "on-failure:2 should restart twice then stay exited: {}",
        d.cli(&["inspect", &name])
    );
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        fmt(d, &name, "{{.RestartCount}} {{.State.ExitCode}}"),
        "2 1"
    );
    assert_eq!(
        fmt(
            d,
            &name,
            "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "on-failure 2"
    );
}

#[test]
fn restart_always_until_stopped() {
    let d = d();
    let name = unique("always");
    let _rm = Rm(d, vec![name.clone()]);
    run_d(
        d,
        &[
            "--name",
            &name,
            "--restart",
            "always",
            "busybox",
            "sh",
            "-c",
            "sleep 0.2; exit 0",
        ],
    );
    assert!(
        wait_until(DEADLINE, || fmt(d, &name, "{{.RestartCount}}")
            .parse::<u32>()
            .unwrap_or(0)
            >= 2),
        "always should restart a container that exits 0: {}",
        d.cli(&["inspect", &name])
    );
    d.cli(&["stop", "-t", "1", &name]).ok();
    expect_status(d, &name, "exited");
    let n = fmt(d, &name, "{{.RestartCount}}");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        fmt(d, &name, "{{.State.Status}} {{.RestartCount}}"),
        format!("exited {n}"),
        "a stopped container stays stopped"
    );
}

#[test]
fn restart_no_and_unless_stopped() {
    let d = d();
    let (no, us) = (unique("rno"), unique("runless"));
    let _rm = Rm(d, vec![no.clone(), us.clone()]);
    run_d(
        d,
        &[
            "--name",
            &no,
            "--restart",
            "no",
            "busybox",
            "sh",
            "-c",
            "exit 1",
        ],
    );
    run_d(
        d,
        &[
            "--name",
            &us,
            "--restart",
            "unless-stopped",
            "busybox",
            "sleep",
            "60",
        ],
    );
    expect_status(d, &no, "exited");
    expect_status(d, &us, "running");
    d.cli(&["stop", "-t", "1", &us]).ok();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        fmt(d, &no, "{{.State.Status}} {{.RestartCount}}"),
        "exited 0"
    );
    assert_eq!(
        fmt(d, &us, "{{.State.Status}} {{.RestartCount}}"),
        "exited 0"
    );
    assert_eq!(
        fmt(d, &us, "{{.HostConfig.RestartPolicy.Name}}"),
        "unless-stopped"
    );
}

// ---------------------------------------------------------------- create / start / stop / kill / restart / rm

#[test]
fn create_then_start() {
    let d = d();
    let name = unique("create");
    let _rm = Rm(d, vec![name.clone()]);
    let o = d.cli(&["create", "--name", &name, "busybox", "sleep", "30"]);
    o.ok();
    assert!(is_hex(o.out(), 64), "create prints the full id: {o}");
    assert_eq!(fmt(d, &name, "{{.State.Status}}"), "created");
    let ps = d.cli(&[
        "ps",
        "-a",
        "-f",
        &format!("name={name}"),
        "--format",
        "{{.Status}}",
    ]);
    assert_eq!(ps.out(), "Created", "{ps}");
    let s = d.cli(&["start", &name]);
    s.ok();
    assert_eq!(s.out(), name, "start echoes its argument: {s}");
    expect_status(d, &name, "running");
    assert!(fmt(d, &name, "{{.State.Pid}}").parse::<u32>().unwrap_or(0) > 0);
}

#[test]
fn start_attach() {
    let d = d();
    let name = unique("starta");
    let _rm = Rm(d, vec![name.clone()]);
    d.cli(&[
        "create",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "echo hi; echo err >&2; exit 4",
    ])
    .ok();
    let o = d.cli(&["start", "-a", &name]);
    o.code_is(4);
    assert_eq!(o.stdout, "hi\n", "{o}");
    assert!(o.stderr.contains("err"), "{o}");
}

#[test]
fn stop_sends_sigterm_first() {
    let d = d();
    let name = unique("stopterm");
    let _rm = Rm(d, vec![name.clone()]);
    run_d(
        d,
        &[
            "--name",
            &name,
            "busybox",
            "sh",
            "-c",
            "trap 'exit 7' TERM; while :; do sleep 0.1; done",
        ],
    );
    expect_status(d, &name, "running");
    let o = d.cli(&["stop", &name]);
    o.ok();
    assert_eq!(o.out(), name);
    assert!(
        o.elapsed < Duration::from_secs(8),
        "SIGTERM should end it quickly: {o}"
    );
    assert_eq!(
        fmt(d, &name, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 7"
    );
}

#[test]
fn stop_timeout_then_sigkill() {
    let d = d();
    let name = unique("stopkill");
    let _rm = Rm(d, vec![name.clone()]);
    run_d(
        d,
        &[
            "--name",
            &name,
            "busybox",
            "sh",
            "-c",
            "trap '' TERM; while :; do sleep 0.1; done",
        ],
    );
    expect_status(d, &name, "running");
    let o = d.cli(&["stop", "-t", "1", &name]);
    o.ok();
    assert!(
        o.elapsed >= Duration::from_millis(900),
        "stop -t 1 should wait ~1 s before SIGKILL: {o}"
    );
    assert!(o.elapsed < Duration::from_secs(8), "{o}");
    assert_eq!(
        fmt(d, &name, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
}

#[test]
fn kill_with_signal() {
    let d = d();
    let (a, b) = (unique("killusr"), unique("killdef"));
    let _rm = Rm(d, vec![a.clone(), b.clone()]);
    run_d(
        d,
        &[
            "--name",
            &a,
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-usr1; exit 5' USR1; echo ready; while :; do sleep 0.1; done",
        ],
    );
    run_d(d, &["--name", &b, "busybox", "sleep", "60"]);
    assert!(
        wait_until(DEADLINE, || d.cli(&["logs", &a]).stdout.contains("ready")),
        "never ready"
    );
    d.cli(&["kill", "-s", "USR1", &a]).ok();
    assert_eq!(d.cli(&["wait", &a]).out(), "5");
    assert!(d.cli(&["logs", &a]).stdout.contains("got-usr1"));
    expect_status(d, &b, "running");
    d.cli(&["kill", &b]).ok();
    expect_status(d, &b, "exited");
    assert_eq!(fmt(d, &b, "{{.State.ExitCode}}"), "137");
    let o = d.cli(&["kill", &b]);
    o.fails();
    assert!(o.stderr.contains("is not running"), "{o}");
}

#[test]
fn restart_command() {
    let d = d();
    let name = unique("restart");
    let _rm = Rm(d, vec![name.clone()]);
    run_d(d, &["--name", &name, "busybox", "sleep", "60"]);
    expect_status(d, &name, "running");
    let (pid1, started1) = (
        fmt(d, &name, "{{.State.Pid}}"),
        fmt(d, &name, "{{.State.StartedAt}}"),
    );
    let o = d.cli(&["restart", "-t", "1", &name]);
    o.ok();
    assert_eq!(o.out(), name);
    expect_status(d, &name, "running");
    assert_ne!(fmt(d, &name, "{{.State.Pid}}"), pid1);
    assert_ne!(fmt(d, &name, "{{.State.StartedAt}}"), started1);
}

#[test]
fn rm_refuses_running_without_force() {
    let d = d();
    let name = unique("rmrun");
    let _rm = Rm(d, vec![name.clone()]);
    run_d(d, &["--name", &name, "busybox", "sleep", "60"]);
    expect_status(d, &name, "running");
    let o = d.cli(&["rm", &name]);
    o.code_is(1);
    assert!(o.stderr.contains("container is running"), "{o}");
    assert!(o.stderr.contains("force"), "{o}");
    expect_status(d, &name, "running");
    let f = d.cli(&["rm", "-f", &name]);
    f.ok();
    assert_eq!(f.out(), name);
    assert!(!d.cli(&["inspect", &name]).success());
    // rm -v on an exited container
    let e = unique("rmv");
    d.cli(&["run", "--name", &e, "busybox", "true"]).ok();
    d.cli(&["rm", "-v", &e]).ok();
    assert!(!d.cli(&["inspect", &e]).success());
}

#[test]
fn no_such_container_messages() {
    let d = d();
    for cmd in [
        "stop", "start", "rm", "logs", "inspect", "kill", "wait", "restart",
    ] {
        let o = d.cli(&[cmd, "nosuch-container-xyz"]);
        o.code_is(1);
        assert!(
            o.stderr.contains("No such") && o.stderr.contains("nosuch-container-xyz"),
            "{cmd}: {o}"
        );
    }
}

// ---------------------------------------------------------------- ps

#[test]
fn ps_flags_and_formats() {
    let d = d();
    let key = unique("pslabel");
    let lbl = format!("{key}=1");
    let (r, e, c) = (unique("psrun"), unique("psexit"), unique("pscreated"));
    let _rm = Rm(d, vec![r.clone(), e.clone(), c.clone()]);
    let rid = run_d(d, &["--name", &r, "-l", &lbl, "busybox", "sleep", "60"]);
    let eid = run_d(
        d,
        &["--name", &e, "-l", &lbl, "busybox", "sh", "-c", "exit 3"],
    );
    let co = d.cli(&["create", "--name", &c, "-l", &lbl, "busybox", "true"]);
    co.ok();
    let cid = co.out().to_string();
    expect_status(d, &r, "running");
    expect_status(d, &e, "exited");
    let f = format!("label={lbl}");

    let q = d.cli(&["ps", "-q", "--no-trunc", "-f", &f]);
    assert_eq!(q.lines(), vec![rid.as_str()], "ps shows only running: {q}");
    let mut all = d
        .cli(&["ps", "-a", "-q", "--no-trunc", "-f", &f])
        .lines()
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>();
    all.sort();
    let mut want = vec![rid.clone(), eid.clone(), cid.clone()];
    want.sort();
    assert_eq!(all, want);
    let short = d.cli(&["ps", "-a", "-q", "-f", &f]);
    assert_eq!(short.lines().len(), 3, "{short}");
    assert!(
        short.lines().iter().all(|l| is_hex(l, 12)),
        "-q prints 12-hex ids: {short}"
    );
    // Newest first.
    assert_eq!(short.lines()[0], &cid[..12], "{short}");

    let by_status = |s: &str| {
        d.cli(&[
            "ps",
            "-a",
            "-f",
            &f,
            "-f",
            &format!("status={s}"),
            "--format",
            "{{.Names}}",
        ])
        .out()
        .to_string()
    };
    assert_eq!(by_status("running"), r);
    assert_eq!(by_status("exited"), e);
    assert_eq!(by_status("created"), c);
    let by_name = d.cli(&[
        "ps",
        "-a",
        "-f",
        &format!("name={e}"),
        "--format",
        "{{.Names}} {{.Image}} {{.Command}}",
    ]);
    assert_eq!(
        by_name.out(),
        format!("{e} busybox \"sh -c exit 3\""),
        "{by_name}"
    );

    let t = d.cli(&[
        "ps",
        "-a",
        "-f",
        &f,
        "--format",
        "table {{.ID}}\\t{{.Status}}",
    ]);
    t.ok();
    let lines = t.lines();
    assert!(
        lines[0].starts_with("CONTAINER ID") && lines[0].contains("STATUS"),
        "{t}"
    );
    assert_eq!(lines.len(), 4, "{t}");
    let row = |id: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&id[..12]))
            .map(|l| l.to_string())
            .unwrap_or_default()
    };
    assert!(row(&rid).contains("Up "), "{t}");
    assert!(
        row(&eid).contains("Exited (3)") && row(&eid).contains("ago"),
        "{t}"
    );
    assert!(row(&cid).contains("Created"), "{t}");

    let def = d.cli(&["ps", "-a", "-f", &f]);
    let head = def.lines()[0].to_string();
    for col in [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ] {
        assert!(head.contains(col), "header lacks {col}: {def}");
    }
    assert!(
        def.stdout.contains(&r) && def.stdout.contains("busybox"),
        "{def}"
    );
    let nt = d.cli(&["ps", "--no-trunc", "-f", &f]);
    assert!(nt.stdout.contains(&rid), "{nt}");
}

// ---------------------------------------------------------------- inspect

#[test]
fn inspect_formats_and_fields() {
    let d = d();
    let name = unique("insp");
    let _rm = Rm(d, vec![name.clone()]);
    let id = run_d(d, &["--name", &name, "-e", "X=1", "busybox", "sleep", "30"]);
    expect_status(d, &name, "running");
    assert_eq!(fmt(d, &name, "{{.State.Status}}"), "running");
    assert_eq!(fmt(d, &name, "{{.State.Running}}"), "true");
    let cfg: Value =
        serde_json::from_str(&fmt(d, &name, "{{json .Config}}")).expect("{{json .Config}} is JSON");
    assert_eq!(cfg["Image"], "busybox");
    assert_eq!(cfg["Cmd"], json!(["sleep", "30"]));
    assert!(
        cfg["Env"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("X=1"))),
        "{cfg}"
    );
    let full = d.cli(&["inspect", &name]);
    let v = full.json();
    let c = &v[0];
    assert!(v.as_array().is_some_and(|a| a.len() == 1), "{full}");
    assert_eq!(c["Id"], json!(id));
    assert_eq!(c["Name"], json!(format!("/{name}")));
    assert!(c["State"]["Pid"].as_u64().unwrap_or(0) > 0, "{full}");
    assert!(
        c["Created"].as_str().is_some_and(|s| s.contains('T')),
        "{full}"
    );
    assert!(
        c["Image"]
            .as_str()
            .is_some_and(|s| s.starts_with("sha256:")),
        "{full}"
    );
    assert!(
        c["HostConfig"].is_object() && c["Mounts"].is_array(),
        "{full}"
    );
    // Two at once.
    let two = d.cli(&["inspect", "--format", "{{.Name}}", &name, &id]);
    assert_eq!(
        two.lines(),
        vec![format!("/{name}"), format!("/{name}")],
        "{two}"
    );
    let miss = d.cli(&["inspect", "nosuch-xyz"]);
    miss.code_is(1);
    assert!(miss.stderr.contains("No such"), "{miss}");
}

#[test]
fn id_prefixes_work() {
    let d = d();
    let o = d.cli(&["create", "busybox", "sleep", "30"]);
    o.ok();
    let id = o.out().to_string();
    let _rm = Rm(d, vec![id.clone()]);
    assert_eq!(fmt(d, &id[..12], "{{.Id}}"), id);
    assert_eq!(fmt(d, &id[..7], "{{.Id}}"), id);
    d.cli(&["start", &id[..10]]).ok();
    expect_status(d, &id, "running");
    d.cli(&["rm", "-f", &id[..9]]).ok();
    assert!(!d.cli(&["inspect", &id]).success());
}

// ---------------------------------------------------------------- logs, wait, rename

#[test]
fn logs_variants() {
    let d = d();
    let name = unique("logs");
    let _rm = Rm(d, vec![name.clone()]);
    run_d(
        d,
        &[
            "--name",
            &name,
            "busybox",
            "sh",
            "-c",
            "echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three",
        ],
    );
    d.cli(&["wait", &name]).ok();
    let all = d.cli(&["logs", &name]);
    all.ok();
    assert_eq!(all.stdout, "one\nthree\n", "{all}");
    assert_eq!(all.stderr, "two\n", "{all}");
    let tail = d.cli(&["logs", "--tail", "1", &name]);
    assert_eq!(
        (tail.stdout.as_str(), tail.stderr.as_str()),
        ("three\n", ""),
        "{tail}"
    );
    let ts = d.cli(&["logs", "-t", &name]);
    for l in ts.stdout.lines() {
        let (t, rest) = l.split_once(' ').unwrap_or(("", ""));
        assert!(
            t.len() >= 20 && t.as_bytes()[4] == b'-' && t.contains('T') && t.ends_with('Z'),
            "timestamp: {ts}"
        );
        assert!(rest == "one" || rest == "three", "{ts}");
    }
    let future = d.cli(&["logs", "--since", "2999-01-01T00:00:00Z", &name]);
    future.ok();
    assert_eq!(future.stdout, "", "{future}");
    let past = d.cli(&["logs", "--since", "2000-01-01T00:00:00Z", &name]);
    assert_eq!(past.stdout, "one\nthree\n", "{past}");
    let rel = d.cli(&["logs", "--since", "1h", &name]);
    assert_eq!(rel.stdout, "one\nthree\n", "{rel}");
}

#[test]
fn logs_follow() {
    let d = d();
    let name = unique("follow");
    let _rm = Rm(d, vec![name.clone()]);
    run_d(
        d,
        &[
            "--name",
            &name,
            "busybox",
            "sh",
            "-c",
            "for i in 1 2 3; do echo line$i; sleep 0.3; done",
        ],
    );
    let mut child = d.spawn_cli(&["logs", "-f", &name]).expect("spawn logs -f");
    let ended = wait_until(Duration::from_secs(15), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("logs -f output");
    assert!(ended, "logs -f did not end when the container exited");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "line1\nline2\nline3\n"
    );
}

#[test]
fn json_file_log_with_rotation() {
    let d = d();
    let name = unique("jsonlog");
    let _rm = Rm(d, vec![name.clone()]);
    let id = run_d(
        d,
        &[
            "--name",
            &name,
            "--log-opt",
            "max-size=10k",
            "--log-opt",
            "max-file=2",
            "busybox",
            "sh",
            "-c",
            "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done",
        ],
    );
    d.cli(&["wait", &name]).ok();
    let dir = d.data_root().join("containers").join(&id);
    let log = std::fs::read_to_string(dir.join(format!("{id}-json.log"))).expect("json-file log");
    let last = log.lines().last().expect("a log line");
    let v: Value = serde_json::from_str(last).expect("json-file line is JSON");
    assert_eq!(v["log"], "line-1999\n");
    assert_eq!(v["stream"], "stdout");
    assert!(
        v["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{last}"
    );
    let files: Vec<String> = std::fs::read_dir(&dir)
        .expect("container dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-json.log"))
        .collect();
    assert!(
        files.len() <= 2 && files.iter().any(|f| f.ends_with(".log.1")),
        "rotation to max-file=2: {files:?}"
    );
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(total < 40 * 1024, "rotated logs too large: {total}");
    assert_eq!(d.cli(&["logs", "--tail", "1", &name]).stdout, "line-1999\n");
}

#[test]
fn wait_prints_exit_code() {
    let d = d();
    let name = unique("wait");
    let _rm = Rm(d, vec![name.clone()]);
    run_d(
        d,
        &["--name", &name, "busybox", "sh", "-c", "sleep 0.3; exit 6"],
    );
    let o = d.cli(&["wait", &name]);
    o.ok();
    assert_eq!(o.out(), "6");
}

#[test]
fn rename_container() {
    let d = d();
    let (a, b) = (unique("rena"), unique("renb"));
    let _rm = Rm(d, vec![a.clone(), b.clone()]);
    d.cli(&["create", "--name", &a, "busybox", "true"]).ok();
    d.cli(&["rename", &a, &b]).ok();
    assert_eq!(fmt(d, &b, "{{.Name}}"), format!("/{b}"));
    assert!(!d.cli(&["inspect", &a]).success());
    // The old name is free again, the new one is taken.
    d.cli(&["create", "--name", &a, "busybox", "true"]).ok();
    let o = d.cli(&["rename", &a, &b]);
    o.fails();
    assert!(o.stderr.contains("already in use"), "{o}");
}

// ---------------------------------------------------------------- the API's status codes

#[test]
fn api_status_codes() {
    let d = d();
    let name = unique("api");
    let _rm = Rm(d, vec![name.clone()]);
    let create = |n: &str| {
        d.api_with(
            "POST",
            &format!("/v1.45/containers/create?name={n}"),
            &[("Content-Type", "application/json")],
            Some(br#"{"Image":"busybox","Cmd":["sleep","30"]}"#),
        )
        .expect("POST /containers/create")
    };
    let r = create(&name);
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json().expect("JSON")["Id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(is_hex(&id, 64), "{}", r.text());
    let r = create(&name);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.json().expect("JSON")["message"]
            .as_str()
            .is_some_and(|m| m.contains("is already in use")),
        "{}",
        r.text()
    );

    let post = |path: &str| d.api_with("POST", path, &[], None).expect("POST");
    assert_eq!(post(&format!("/containers/{name}/start")).status, 204);
    assert_eq!(
        post(&format!("/containers/{name}/start")).status,
        304,
        "start of a running container"
    );
    let r = d.api("DELETE", &format!("/containers/{name}"));
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json().expect("JSON")["message"]
        .as_str()
        .is_some_and(|m| m.contains("container is running")));
    assert_eq!(post(&format!("/containers/{name}/stop?t=1")).status, 204);
    assert_eq!(
        post(&format!("/containers/{name}/stop?t=1")).status,
        304,
        "stop of a stopped container"
    );
    let r = post(&format!("/containers/{}/wait", &id[..12]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().expect("JSON")["StatusCode"], 137);
    let r = post("/containers/nosuch-xyz/start");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json().expect("JSON")["message"],
        "No such container: nosuch-xyz"
    );
    let list = d.api("GET", "/containers/json?all=1");
    assert_eq!(list.status, 200);
    assert!(list
        .json()
        .expect("JSON")
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c["Id"] == json!(id))));
    assert_eq!(
        d.api("DELETE", &format!("/containers/{name}?force=1"))
            .status,
        204
    );
    assert_eq!(
        d.api("GET", &format!("/containers/{name}/json")).status,
        404
    );
}

#[test]
fn api_logs_use_the_multiplexed_stream() {
    let d = d();
    let name = unique("mux");
    let _rm = Rm(d, vec![name.clone()]);
    run_d(
        d,
        &[
            "--name",
            &name,
            "busybox",
            "sh",
            "-c",
            "echo out; sleep 0.1; echo err >&2",
        ],
    );
    d.cli(&["wait", &name]).ok();
    let r = d.api(
        "GET",
        &format!("/v1.45/containers/{name}/logs?stdout=1&stderr=1"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.body.first(),
        Some(&1u8),
        "first frame is stdout: {:?}",
        r.body
    );
    let (out, err) = berth_testkit::http::demux(&r.body);
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
    let only_err = d.api("GET", &format!("/containers/{name}/logs?stderr=1"));
    assert_eq!(
        berth_testkit::http::demux(&only_err.body),
        (Vec::new(), b"err\n".to_vec())
    );
}

/// The docker CLI sends `wait` and `start` on separate connections, so a fast container can
/// exit (and an `--rm` one be removed) before its wait arrives: the wait must still answer.
#[test]
fn a_wait_that_arrives_after_the_exit_still_answers() {
    let d = d();
    let create = |body: &[u8]| {
        let r = d
            .api_with(
                "POST",
                "/v1.45/containers/create",
                &[("Content-Type", "application/json")],
                Some(body),
            )
            .expect("POST /containers/create");
        assert_eq!(r.status, 201, "{}", r.text());
        r.json().expect("JSON")["Id"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    let id = create(br#"{"Image":"busybox","Cmd":["sh","-c","exit 4"]}"#);
    let _rm = Rm(d, vec![id.clone()]);
    assert_eq!(
        d.api("POST", &format!("/v1.45/containers/{id}/start"))
            .status,
        204
    );
    assert!(wait_until(DEADLINE, || d.fmt(&id, "{{.State.Status}}") == "exited"));
    let t = Instant::now();
    let w = d.api(
        "POST",
        &format!("/v1.45/containers/{id}/wait?condition=next-exit"),
    );
    assert_eq!(w.status, 200, "{}", w.text());
    assert_eq!(w.json().expect("JSON")["StatusCode"], 4, "{}", w.text());
    assert!(t.elapsed() < Duration::from_secs(3), "answered at once");

    let rm_id = create(
        br#"{"Image":"busybox","Cmd":["sh","-c","exit 5"],"HostConfig":{"AutoRemove":true}}"#,
    );
    assert_eq!(
        d.api("POST", &format!("/v1.45/containers/{rm_id}/start"))
            .status,
        204
    );
    assert!(wait_until(DEADLINE, || d
        .api("GET", &format!("/v1.45/containers/{rm_id}/json"))
        .status
        == 404));
    let w = d.api(
        "POST",
        &format!("/v1.45/containers/{rm_id}/wait?condition=removed"),
    );
    assert_eq!(w.status, 200, "{}", w.text());
    assert_eq!(w.json().expect("JSON")["StatusCode"], 5, "{}", w.text());
    // Not for ever, and not for a plain `wait`, which reports a missing container as Docker does.
    let plain = d.api("POST", &format!("/v1.45/containers/{rm_id}/wait"));
    assert_eq!(plain.status, 404);
}

#[test]
fn group_add_gives_the_process_more_groups() {
    let d = d();
    // Numbers as they are; names through the image's /etc/group (postgres = 999 there).
    let out = sh(
        d,
        &[
            "--group-add",
            "1000",
            "--group-add",
            "1001",
            "--group-add",
            "postgres",
        ],
        "id -G",
    );
    let groups: Vec<&str> = out.split_whitespace().collect();
    assert!(groups.contains(&"1000"), "{out}");
    assert!(groups.contains(&"1001"), "{out}");
    assert!(groups.contains(&"999"), "{out}");
    assert_eq!(groups[0], "0", "the primary group stays: {out}");
    // A name the image does not know is an error at start, as in Docker.
    let o = d.cli(&[
        "run",
        "--rm",
        "--group-add",
        "nosuchgroup",
        "busybox",
        "true",
    ]);
    o.fails();
    assert!(o.stderr.contains("Unable to find group nosuchgroup"), "{o}");
    // dockerd resolves it at start, in the image; a 400, not a 500.
    let r = d.api_with(
        "POST",
        "/containers/create",
        &[("Content-Type", "application/json")],
        Some(br#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"GroupAdd":["nosuchgroup"]}}"#),
    );
    let id: Value = serde_json::from_slice(&r.expect("create").body).expect("json");
    let id = id["Id"].as_str().expect("id").to_string();
    let r = d.api("POST", &format!("/containers/{id}/start"));
    assert_eq!(r.status, 400, "{}", r.text());
    d.rm_f(&[&id]);
}
