//! A daemon on roots longer than a unix socket address holds: `--exec-root` and `--data-root`
//! of 100 bytes, so every shim socket (`<exec-root>/containers/<64 hex>/shim.sock`, 191
//! bytes) and the default CRI socket are out of reach of a plain path. Run, exec, attach
//! (detach and back), a daemon restart with live restore, the CRI socket; a failed start leaves
//! no shim, process or mount; a `-H` path no client could reach is refused up front.
//! Each test owns its daemon.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_testkit::pty::Pty;

const LEN: usize = 100;

fn deep_daemon() -> Daemon {
    let d = Daemon::try_start_deep(BIN, LEN).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.exec_root().as_os_str().len(), LEN);
    assert_eq!(d.data_root().as_os_str().len(), LEN);
    d.load_busybox();
    d
}

/// `berth -H <daemon> <args>` on a pty.
fn berth_pty(d: &Daemon, args: &[&str]) -> Pty {
    let mut cmd = Command::new(d.bin());
    cmd.arg("-H").arg(d.host()).args(args);
    Pty::spawn(cmd, 24, 80)
}

fn shim_sock(d: &Daemon, id: &str) -> PathBuf {
    d.exec_root().join("containers").join(id).join("shim.sock")
}

/// The pid in `<runtime dir>/shim.pid`, if the file is there.
fn shim_pid(d: &Daemon, id: &str) -> Option<i32> {
    std::fs::read_to_string(d.exec_root().join("containers").join(id).join("shim.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// A live, not zombie, process.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !matches!(
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.trim_start().chars().next()),
                Some('Z' | 'X')
            )
        })
        .unwrap_or(false)
}

/// Live processes whose command line names `needle` (a runtime directory, a container id).
fn processes_naming(needle: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(needle) && alive(pid) {
            v.push(pid);
        }
    }
    v
}

#[test]
fn hundred_byte_roots_run_exec_attach_restart_and_cri() {
    let d = deep_daemon();

    // run: a container's whole life over its shim socket.
    let o = d.cli(&["run", "--rm", "busybox", "echo", "hello from deep"]);
    assert_eq!(o.ok().out(), "hello from deep", "{o}");
    let o = d.cli(&["run", "--name", "exit3", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(o.code, 3, "{o}");

    // run -d, and the socket really is beyond a plain socket address.
    let top = run_d(
        &d,
        &[
            "--name",
            "top",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 0.1; done",
        ],
    );
    let sock = shim_sock(&d, &top);
    assert!(sock.exists(), "no shim socket at {}", sock.display());
    assert!(
        sock.as_os_str().len() > 107,
        "{} fits a socket address",
        sock.display()
    );
    let pid = fmt(&d, "top", "{{.State.Pid}}");

    // exec, with and without a terminal (an exec's console socket is under the exec-root too).
    let o = d.cli(&["exec", "top", "sh", "-c", "echo exec-$((40+2))"]);
    assert_eq!(o.ok().out(), "exec-42", "{o}");
    let o = d.cli(&["exec", "-t", "top", "tty"]);
    assert!(o.ok().out().starts_with("/dev/pts/"), "{o}");
    let o = d.cli_in(&["exec", "-i", "top", "cat"], b"through stdin\n");
    assert_eq!(o.ok().out(), "through stdin", "{o}");

    // attach to a TTY container, detach with ctrl-p ctrl-q, attach back, end it.
    run_d(&d, &["-it", "--name", "shell", "busybox", "sh"]);
    let mut a = berth_pty(&d, &["attach", "shell"]);
    a.send("echo first-$((1+1))\r");
    a.expect("first-2");
    a.send("\x10\x11");
    assert_eq!(a.wait(), Some(0), "detach; output {:?}", a.seen);
    expect_status(&d, "shell", "running");
    let mut a = berth_pty(&d, &["attach", "shell"]);
    a.send("echo again-$((2+2))\r");
    a.expect("again-4");
    a.send("exit 5\r");
    assert_eq!(a.wait(), Some(5), "attach back; output {:?}", a.seen);
    expect_status(&d, "shell", "exited");

    // Restart the daemon: `top` is found again through its socket and stays manageable.
    d.restart();
    assert_eq!(
        fmt(&d, "top", "{{.State.Status}} {{.State.Pid}}"),
        format!("running {pid}")
    );
    let o = d.cli(&["exec", "top", "echo", "after restart"]);
    assert_eq!(o.ok().out(), "after restart", "{o}");
    let o = d.cli(&["stop", "-t", "5", "top"]);
    o.ok();
    expect_status(&d, "top", "exited");
    assert_eq!(fmt(&d, "top", "{{.State.ExitCode}}"), "0");
    assert!(!sock.exists(), "the shim socket outlived its shim");
    // And a container started after the restart.
    let o = d.cli(&["start", "-a", "exit3"]);
    assert_eq!(o.code, 3, "{o}");

    // The default CRI socket is under the exec-root too: served there, reached by a client
    // through a shorter path (a symlink), as no client can connect to the long one.
    let cri = d.exec_root().join("cri.sock");
    assert!(cri.exists(), "no CRI socket at {}", cri.display());
    match crictl() {
        None => {
            eprintln!("CRI part skipped (no crictl: set CRICTL or put cri-tools' crictl on PATH)")
        }
        Some(crictl) => {
            let link = d.root().join("c.sock");
            std::os::unix::fs::symlink(&cri, &link).expect("symlink");
            let out = Command::new(crictl)
                .arg("--runtime-endpoint")
                .arg(format!("unix://{}", link.display()))
                .args(["--timeout", "10s", "version"])
                .output()
                .expect("run crictl");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("RuntimeName:"),
                "crictl version: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn crictl() -> Option<PathBuf> {
    std::env::var_os("CRICTL").map(PathBuf::from).or_else(|| {
        berth_testkit::which("crictl").or_else(|| {
            Some(PathBuf::from("/var/tmp/berth-tools/bin/crictl")).filter(|p| p.is_file())
        })
    })
}

/// A start that fails once its shim is up (the image's /bin is hidden by a tmpfs, so the
/// entrypoint is only found missing inside the container) leaves nothing behind: no shim, no
/// container process, no rootfs mount; and the container can be removed.
#[test]
fn a_failed_start_leaves_no_shim_process_or_mount() {
    let d = deep_daemon();
    for (name, args) in [
        (
            "hidden-entrypoint",
            vec!["--tmpfs", "/bin", "busybox", "/bin/sleep", "60"],
        ),
        (
            "hidden-shell",
            vec!["--tmpfs", "/bin", "busybox", "sh", "-c", "sleep 60"],
        ),
    ] {
        let mut a = vec!["create", "--name", name];
        a.extend_from_slice(&args);
        let o = d.cli(&a);
        o.ok();
        let id = o.out().to_string();
        let o = d.cli(&["start", name]);
        assert!(!o.success(), "{name}: start should fail: {o}");
        assert!(!o.stderr.contains("SUN_LEN"), "{name}: {o}");
        assert_ne!(fmt(&d, name, "{{.State.Status}}"), "running");
        assert!(
            !fmt(&d, name, "{{.State.Error}}").is_empty(),
            "{name}: no error recorded"
        );

        // Nothing of the attempt runs: no shim, no process of the container.
        if let Some(p) = shim_pid(&d, &id) {
            assert!(!alive(p), "{name}: shim {p} still runs");
        }
        let left = processes_naming(&id);
        assert!(
            left.is_empty(),
            "{name}: processes {left:?} still name {id}"
        );
        assert!(!shim_sock(&d, &id).exists(), "{name}: shim socket left");
        let cgroup_procs: Vec<String> = glob_cgroup_procs(&id);
        assert!(
            cgroup_procs.is_empty(),
            "{name}: processes left in cgroups {cgroup_procs:?}"
        );
        // Nothing mounted for it: its rootfs, its tmpfs.
        let mounts: Vec<PathBuf> = berth_testkit::cleanup::mounts_under(d.root())
            .into_iter()
            .filter(|m| m.to_string_lossy().contains(&id))
            .collect();
        assert!(mounts.is_empty(), "{name}: still mounted: {mounts:?}");

        let o = d.cli(&["rm", name]);
        o.ok();
    }
}

/// Processes in the container's cgroups, in any hierarchy (v1 or v2).
fn glob_cgroup_procs(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) || p.is_symlink() {
                continue;
            }
            if e.file_name().to_string_lossy().contains(id) {
                let procs = std::fs::read_to_string(p.join("cgroup.procs")).unwrap_or_default();
                if !procs.trim().is_empty() {
                    found.push(format!("{}: {}", p.display(), procs.trim()));
                }
            } else if p.components().count() < 8 {
                stack.push(p);
            }
        }
    }
    found
}

/// A `-H` path no client could connect to is refused before anything starts, by `--validate`
/// too; a long exec-root (whose default CRI socket is long) is fine.
#[test]
fn an_unreachable_host_socket_is_refused_up_front() {
    let dir = tempfile::Builder::new()
        .prefix("blr")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "{}").expect("write");
    let long = |name: &str| -> PathBuf {
        let mut p = dir.path().to_path_buf();
        while p.as_os_str().len() < 120 {
            p.push("0123456789abcdef");
        }
        p.join(name)
    };
    let daemon = |extra: &[&str]| {
        let out = Command::new(BIN)
            .arg("daemon")
            .arg("--config-file")
            .arg(&empty)
            .args(extra)
            .env_remove("DOCKER_HOST")
            .output()
            .expect("run berth daemon");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let host = format!("unix://{}", long("b.sock").display());
    let exec_root = long("exec");
    let exec_root = exec_root.to_str().expect("utf-8");
    for validate in [true, false] {
        let mut args = vec!["-H", host.as_str(), "--exec-root", exec_root];
        if validate {
            args.push("--validate");
        }
        let (code, out) = daemon(&args);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains("more than a unix socket address holds (107 bytes)")
                && out.contains("-H unix://"),
            "{out}"
        );
    }
    assert!(!Path::new(&long("b.sock")).exists());
    let cri = format!("unix://{}", long("cri.sock").display());
    let (code, out) = daemon(&["--cri-socket", &cri, "--validate"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("--cri-socket unix://"), "{out}");
    let short = format!("unix://{}", dir.path().join("b.sock").display());
    let (code, out) = daemon(&["-H", &short, "--exec-root", exec_root, "--validate"]);
    assert_eq!((code, out.trim()), (Some(0), "configuration OK"));
}
