//! Rootless Berth on a cgroup v2 host with systemd, as its users run it: a throwaway user with
//! subordinate ids gets a systemd user manager (`user@UID.service`); a daemon it starts by
//! hand, outside that manager, has no delegated cgroup (limits discarded with the warning);
//! then it runs `berth rootless setup` (which installs the user unit and runs `systemctl --user enable --now berth` for
//! real), and the daemon applies limits in the cgroup the user manager delegates: first with
//! systemd's default delegation (systemd 252: cpu, memory and pids; `--cpuset-cpus` is
//! discarded with a warning), then with the administrator's drop-in delegating cpuset and io
//! too. Each limit is read from
//! the container's cgroup files on the host and inside the container, and `update` changes
//! them. `uninstall` stops the unit and leaves no process, scope or unit file behind.
//!
//! It skips, with one line, where the host is not cgroup v2 only with systemd as PID 1:
//! `tests/vm/run.sh rootless_cgroup_v2` runs it in the test VM.

mod common;
use common::*;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The administrator's drop-in (rootless Docker documents the same).
const DROP_IN: &str = "/etc/systemd/system/user@.service.d/berth-test-delegate.conf";

fn skip_reason() -> Option<String> {
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return Some("/sys/fs/cgroup is not cgroup v2 only (tests/vm/run.sh runs it)".into());
    }
    if !std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd") {
        return Some("systemd is not PID 1 here (tests/vm/run.sh runs it)".into());
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: cannot create a test user".into());
    }
    for t in [
        "/usr/sbin/useradd",
        "/usr/sbin/userdel",
        "/usr/sbin/runuser",
        "/usr/bin/newuidmap",
        "/usr/bin/slirp4netns",
    ] {
        if !Path::new(t).exists() {
            return Some(format!("{t} missing"));
        }
    }
    None
}

fn run(cmd: Command) -> Out {
    berth_testkit::run_with_timeout(cmd, None, berth_testkit::slow(Duration::from_secs(60)))
}

fn root(program: &str, args: &[&str]) -> Out {
    let mut c = Command::new(program);
    c.args(args);
    run(c)
}

/// A user with subordinate ids and a running systemd user manager; `Drop` stops the manager
/// and removes the user, its lines and the drop-in.
struct SessionUser {
    name: String,
    uid: u32,
    home: PathBuf,
    line: String,
}

impl SessionUser {
    fn new() -> SessionUser {
        let pid = std::process::id();
        let name = format!("brc{pid}");
        let home = PathBuf::from(format!("/tmp/rc.{pid}"));
        let _ = std::fs::remove_dir_all(&home);
        root(
            "/usr/sbin/useradd",
            &[
                "-m",
                "-d",
                &home.display().to_string(),
                "-K",
                "SUB_UID_COUNT=0",
                "-K",
                "SUB_GID_COUNT=0",
                "-s",
                "/bin/sh",
                &name,
            ],
        )
        .ok();
        let uid = root("id", &["-u", &name])
            .ok()
            .stdout
            .trim()
            .parse()
            .expect("uid");
        assert!(home.is_dir(), "useradd -m made no {}", home.display());
        let line = format!(
            "{name}:{}:65536",
            1_000_000_000u64 + u64::from(pid % 4000) * 65_536
        );
        for f in ["/etc/subuid", "/etc/subgid"] {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(f)
                .expect("open subid file");
            writeln!(file, "{line}").expect("append subid line");
        }
        SessionUser {
            name,
            uid,
            home,
            line,
        }
    }

    fn manager(&self) -> String {
        format!("user@{}.service", self.uid)
    }

    /// The user manager's cgroup on the host.
    fn manager_cgroup(&self) -> PathBuf {
        PathBuf::from(format!(
            "/sys/fs/cgroup/user.slice/user-{0}.slice/user@{0}.service",
            self.uid
        ))
    }

    /// `program args` as the user, in its session's environment.
    fn run(&self, program: &str, args: &[&str]) -> Out {
        let mut c = Command::new("/usr/sbin/runuser");
        c.args(["-u", &self.name, "--", "env", "-i"])
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!("XDG_RUNTIME_DIR=/run/user/{}", self.uid))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .arg(program)
            .args(args)
            .current_dir("/");
        run(c)
    }

    fn berth(&self, args: &[&str]) -> Out {
        self.run(BIN, args)
    }

    /// The processes of the user (pid, command).
    fn processes(&self) -> Vec<(i32, String)> {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir("/proc")
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                        (e.metadata().ok()?.uid() == self.uid).then(|| {
                            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                                .unwrap_or_default();
                            (pid, comm.trim().to_string())
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Where the user's processes are (for failure messages).
    fn diag(&self) -> String {
        let mut out = String::new();
        for (pid, comm) in self.processes() {
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            out.push_str(&format!("{pid} {comm} [{cmd}] {}\n", cg.trim()));
        }
        let log = root(
            "journalctl",
            &["--no-pager", "-o", "cat", &format!("_UID={}", self.uid)],
        );
        out.push_str(&format!("journal of the user:\n{}\n", log.stdout));
        for d in berth_cgroups(&self.manager_cgroup()) {
            out.push_str(&format!(
                "{}: controllers [{}] subtree_control [{}]\n",
                d.display(),
                read(&d.join("cgroup.controllers")),
                read(&d.join("cgroup.subtree_control"))
            ));
        }
        out
    }

    fn wait_daemon(&self) {
        assert!(
            wait_until(Duration::from_secs(60), || self.berth(&["version"]).code
                == 0),
            "the daemon did not answer: {}\n{}",
            self.berth(&["version"]),
            self.run("systemctl", &["--user", "status", "berth", "--no-pager"])
        );
    }
}

impl Drop for SessionUser {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(DROP_IN);
        let _ = root("systemctl", &["daemon-reload"]);
        let _ = root("systemctl", &["stop", &self.manager()]);
        for f in ["/etc/subuid", "/etc/subgid"] {
            if let Ok(t) = std::fs::read_to_string(f) {
                let kept: String = t
                    .lines()
                    .filter(|l| *l != self.line)
                    .map(|l| format!("{l}\n"))
                    .collect();
                let _ = std::fs::write(f, kept);
            }
        }
        for (pid, _) in self.processes() {
            // SAFETY: a process of our throwaway user, by pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = root("/usr/sbin/userdel", &["-r", &self.name]);
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// The cgroups named berth* under `dir` (the user manager's tree).
fn berth_cgroups(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if e.file_name().to_string_lossy().starts_with("berth") {
                out.push(e.path());
            } else {
                out.extend(berth_cgroups(&e.path()));
            }
        }
    }
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| format!("({}: {e})", p.display()))
        .trim()
        .to_string()
}

/// A container with `--memory 64m --pids-limit 50 --cpus 0.5 --cpuset-cpus 0`: its limits on
/// the host and inside; `--cpus` and `--cpuset-cpus` applied exactly when their controller is
/// delegated (`have`: the user manager's controllers), else discarded with the create's
/// warning.
fn limits_apply(u: &SessionUser, name: &str, have: &str) {
    let has = |c: &str| have.split_whitespace().any(|h| h == c);
    let (cpu, cpuset) = (has("cpu"), has("cpuset"));
    let out = u.berth(&[
        "run",
        "-d",
        "--name",
        name,
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "--cpuset-cpus",
        "0",
        "busybox",
        "sleep",
        "600",
    ]);
    out.ok();
    assert_eq!(
        out.stderr.contains("CPU CFS scheduler"),
        !cpu,
        "the --cpus warning exactly when cpu is not delegated: {out}"
    );
    assert_eq!(
        out.stderr
            .contains("the cpuset cgroup controller is not delegated"),
        !cpuset,
        "the --cpuset-cpus warning exactly when cpuset is not delegated: {out}"
    );
    assert!(!out.stderr.contains("memory limit"), "{out}");
    let id = out.stdout.trim().to_string();
    let pid = u
        .berth(&["inspect", "-f", "{{.State.Pid}}", name])
        .ok()
        .stdout
        .trim()
        .to_string();
    let dir = v2_cgroup_of(&pid);
    // In the user's delegated scope, beside the daemon's leaf.
    let scope = dir.parent().and_then(Path::parent).expect("scope");
    assert!(
        dir.starts_with(u.manager_cgroup())
            && dir.ends_with(format!("berth/{id}"))
            && scope
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("berth-rootless-")),
        "container cgroup {}\n{}",
        dir.display(),
        u.diag()
    );
    assert_eq!(read(&dir.join("memory.max")), "67108864");
    assert_eq!(read(&dir.join("pids.max")), "50");
    let inside = u.berth(&[
        "exec",
        name,
        "sh",
        "-c",
        "cat /proc/self/cgroup /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; \
         cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo no-cpu; \
         cat /sys/fs/cgroup/cpuset.cpus 2>/dev/null || echo no-cpuset",
    ]);
    let lines: Vec<&str> = inside.ok().stdout.lines().collect();
    // A cgroup namespace of its own: its cgroup is its root.
    assert_eq!(lines[..3], ["0::/", "67108864", "50"], "{inside}");
    if cpu {
        assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
        assert_eq!(lines[3], "50000 100000", "{inside}");
    } else {
        assert!(!dir.join("cpu.max").exists());
        assert_eq!(lines[3], "no-cpu", "{inside}");
    }
    if cpuset {
        assert_eq!(read(&dir.join("cpuset.cpus")), "0");
        assert_eq!(lines[4], "0", "{inside}");
    } else {
        assert!(!dir.join("cpuset.cpus").exists());
        assert_eq!(lines[4], "no-cpuset", "{inside}");
    }
    // The kernel enforces it: 60 processes do not start under a limit of 50.
    let fork = u.berth(&[
        "exec",
        name,
        "sh",
        "-c",
        "for i in $(seq 60); do sleep 30 & done 2>/dev/null; wait 2>/dev/null; true",
    ]);
    assert!(
        read(&dir.join("pids.events")).starts_with("max ")
            && !read(&dir.join("pids.events")).ends_with(" 0"),
        "pids.events: {} ({fork})",
        read(&dir.join("pids.events"))
    );
    // update: the delegated limits change in place; --cpus without cpu is discarded, not an
    // error.
    u.berth(&[
        "update",
        "--memory",
        "128m",
        "--memory-swap",
        "256m",
        "--cpus",
        "1",
        name,
    ])
    .ok();
    assert_eq!(read(&dir.join("memory.max")), "134217728");
    if cpu {
        assert_eq!(read(&dir.join("cpu.max")), "100000 100000");
    }
    u.berth(&["rm", "-f", name]).ok();
    assert!(
        wait_until(DEADLINE, || !dir.exists()),
        "cgroup {} left after rm",
        dir.display()
    );
}

#[test]
fn rootless_limits_in_the_user_session() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let u = SessionUser::new();
    // The journal (the VM boots without it) keeps the daemon's log for failure messages.
    let _ = root("systemctl", &["start", "systemd-journald.service"]);
    // The user manager, as a login would start it (logind is not running in the VM: started
    // by root directly, as `loginctl enable-linger` would at boot).
    root("systemctl", &["start", &u.manager()]).ok();
    let delegated = read(&u.manager_cgroup().join("cgroup.controllers"));
    assert!(
        delegated.contains("memory") && delegated.contains("pids"),
        "{delegated}"
    );

    let tar = PathBuf::from(format!("/tmp/rc-{}.tar", std::process::id()));
    write_busybox_tar(&tar);

    // cgroup v2 without delegation: a daemon started outside the user manager (here from the
    // test's own cgroup, as from a login shell) runs, warns, and discards limits.
    let mut manual = Command::new("/usr/sbin/runuser");
    manual
        .args(["-u", &u.name, "--", "env", "-i"])
        .arg(format!("HOME={}", u.home.display()))
        .arg(format!("XDG_RUNTIME_DIR=/run/user/{}", u.uid))
        .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .args([BIN, "daemon"])
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    let log_path = PathBuf::from(format!("/tmp/rc-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).expect("daemon log");
    manual.stderr(log);
    let mut manual = manual.spawn().expect("start a daemon by hand");
    assert!(
        wait_until(Duration::from_secs(60), || u.berth(&["version"]).code == 0),
        "the daemon started by hand did not answer: {}\n{}",
        read(&log_path),
        u.diag()
    );
    let info = u.berth(&[
        "info",
        "--format",
        "{{.CgroupDriver}} {{.CgroupVersion}} {{.MemoryLimit}} {{json .Warnings}}",
    ]);
    assert!(
        info.ok().stdout.starts_with("none 2 false ") && info.stdout.contains("without cgroups"),
        "{info}"
    );
    u.berth(&["load", "-i", &tar.display().to_string()]).ok();
    let r = u.berth(&["run", "--rm", "--memory", "64m", "busybox", "echo", "ok"]);
    assert_eq!(r.ok().stdout.trim(), "ok");
    assert!(r.stderr.contains("memory limit"), "{r}");
    u.berth(&["rootless", "uninstall"]).ok();
    let _ = manual.wait();
    let _ = std::fs::remove_file(&log_path);

    // Setup for real: the unit, `systemctl --user enable --now berth`, and the missing
    // delegation named with the administrator's step.
    let setup = u.berth(&["rootless", "setup"]);
    setup.ok();
    assert!(
        setup.stdout.contains("Enabled and started berth.service"),
        "{setup}"
    );
    let all = |have: &str| {
        ["cpu", "cpuset", "io", "memory", "pids"]
            .iter()
            .all(|c| have.split_whitespace().any(|h| h == *c))
    };
    let cpu_default = delegated.split_whitespace().any(|c| c == "cpu");
    if !all(&delegated) {
        assert!(
            setup.stdout.contains("not delegated to you")
                && setup.stdout.contains("Delegate=cpu cpuset io memory pids"),
            "{setup}"
        );
    }
    let enabled = u.run("systemctl", &["--user", "is-enabled", "berth"]);
    assert_eq!(enabled.stdout.trim(), "enabled", "{enabled}");
    u.wait_daemon();
    let info = u.berth(&[
        "info",
        "--format",
        "{{.CgroupDriver}} {{.CgroupVersion}} {{.MemoryLimit}} {{.PidsLimit}} {{.CpuCfsQuota}} {{.CPUSet}} {{json .Warnings}}",
    ]);
    let info_line = info.ok().stdout.trim().to_string();
    assert!(
        info_line.starts_with(&format!(
            "cgroupfs 2 true true {cpu_default} {}",
            delegated.split_whitespace().any(|c| c == "cpuset")
        )),
        "{info_line}\n{}",
        u.diag()
    );
    assert_eq!(
        info_line.contains("not delegated"),
        !all(&delegated),
        "{info_line}"
    );
    u.berth(&["load", "-i", &tar.display().to_string()]).ok();
    let rm = u.berth(&["run", "--rm", "busybox", "echo", "hello"]);
    assert_eq!(rm.ok().stdout.trim(), "hello");
    limits_apply(&u, "lim1", &delegated);

    // A restart of the unit keeps the container and its limits (live restore), and the new
    // daemon joins the delegated leaf: systemd starts it in berth.service, which hands no
    // controllers down (the containers' cgroups are in the holder's scope).
    u.berth(&[
        "run", "-d", "--name", "kept", "--memory", "32m", "busybox", "sleep", "600",
    ])
    .ok();
    let pid = u
        .berth(&["inspect", "-f", "{{.State.Pid}}", "kept"])
        .ok()
        .stdout
        .clone();
    let restart = u.run("systemctl", &["--user", "restart", "berth"]);
    restart.ok();
    u.wait_daemon();
    assert_eq!(
        u.berth(&["inspect", "-f", "{{.State.Pid}}", "kept"])
            .ok()
            .stdout
            .clone(),
        pid,
        "the container survived the restart"
    );
    assert_eq!(
        read(&v2_cgroup_of(pid.trim()).join("memory.max")),
        "33554432"
    );
    let info = u.berth(&["info", "--format", "{{.CgroupDriver}}"]);
    assert_eq!(info.ok().stdout.trim(), "cgroupfs", "{}", u.diag());
    // With a cgroup of its own, pause uses the v2 freezer and top lists its processes.
    let kept = v2_cgroup_of(pid.trim());
    u.berth(&["pause", "kept"]).ok();
    assert_eq!(read(&kept.join("cgroup.freeze")), "1");
    u.berth(&["unpause", "kept"]).ok();
    assert_eq!(read(&kept.join("cgroup.freeze")), "0");
    let top = u.berth(&["top", "kept"]);
    assert!(top.ok().stdout.contains("sleep 600"), "{top}");
    u.berth(&["rm", "-f", "kept"]).ok();

    // The administrator delegates every controller: a new user manager (as at the next
    // login) starts the enabled unit, whose new scope has them all.
    if !all(&delegated) {
        std::fs::create_dir_all(Path::new(DROP_IN).parent().expect("dir")).expect("drop-in dir");
        std::fs::write(DROP_IN, "[Service]\nDelegate=cpu cpuset io memory pids\n")
            .expect("drop-in");
        root("systemctl", &["daemon-reload"]).ok();
        root("systemctl", &["restart", &u.manager()]).ok();
        let now = read(&u.manager_cgroup().join("cgroup.controllers"));
        assert!(all(&now), "{now}");
        u.wait_daemon();
        let info = u.berth(&[
            "info",
            "--format",
            "{{.CpuCfsQuota}} {{.CPUSet}} {{json .Warnings}}",
        ]);
        assert!(
            info.ok().stdout.starts_with("true true ") && !info.stdout.contains("not delegated"),
            "{info}\n{}",
            u.diag()
        );
        limits_apply(&u, "lim2", &now);
    }

    // Uninstall: the unit stopped and gone, the scope and every process of the user gone.
    let out = u.berth(&["rootless", "uninstall", "--purge"]);
    out.ok();
    assert!(
        out.stdout.contains("Stopped and disabled berth.service"),
        "{out}"
    );
    let unit = u.home.join(".config/systemd/user/berth.service");
    assert!(!unit.exists(), "unit left: {out}");
    let state = u.run("systemctl", &["--user", "is-active", "berth"]);
    assert_ne!(state.stdout.trim(), "active", "{state}");
    let scopes = || berth_cgroups(&u.manager_cgroup());
    assert!(
        wait_until(DEADLINE, || scopes().is_empty()),
        "cgroups left: {:?}\n{out}\n{}",
        scopes(),
        u.diag()
    );
    // Only the user manager itself (and its sd-pam) may remain.
    let left = || {
        u.processes()
            .into_iter()
            .filter(|(_, c)| c != "systemd" && c != "(sd-pam)")
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(DEADLINE, || left().is_empty()),
        "left: {:?}",
        left()
    );
    assert!(!u.home.join(".local/share/berth").exists(), "data purged");
    let _ = std::fs::remove_file(&tar);
}
