//! `berth rootless setup` and `berth rootless uninstall`: what Docker's
//! `dockerd-rootless-setuptool.sh install|uninstall` does for rootless dockerd. Setup checks the
//! prerequisites (printing what an administrator must run for each missing one, and creating
//! nothing then), installs a systemd user unit (enabled and started when a user systemd
//! manager is reachable), and makes a `rootless` docker CLI context; it always prints the
//! `DOCKER_HOST` line. Uninstall undoes that and stops the daemon and its namespaces; the data
//! stays unless `--purge`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_runtime::rootless;

/// The CLI context's name, the one Docker's tool uses.
const CONTEXT: &str = "rootless";

/// `$XDG_CONFIG_HOME/systemd/user/berth.service` (default `~/.config/...`).
fn unit_path() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let config = var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|h| h.join(".config")))?;
    Some(config.join("systemd/user/berth.service"))
}

/// The user unit. `KillMode=process`: a stop or restart signals the daemon only; the namespace
/// holder, slirp4netns, shims and containers in the unit's cgroup keep running, so a restart is
/// a live restore (containerd's unit does the same for the same reason). `Delegate=yes` gives the
/// daemon its cgroup subtree where the host delegates cgroup v2.
pub fn unit_text(exe: &Path) -> String {
    let dir = exe
        .parent()
        .map(|d| format!("{}:", d.display()))
        .unwrap_or_default();
    format!(
        "[Unit]\n\
         Description=Berth container engine (rootless)\n\
         Documentation=man:berth(1)\n\
         \n\
         [Service]\n\
         Environment=PATH={dir}/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin\n\
         ExecStart={exe} daemon\n\
         ExecReload=/bin/kill -s HUP $MAINPID\n\
         Type=simple\n\
         KillMode=process\n\
         Delegate=yes\n\
         TimeoutSec=0\n\
         Restart=always\n\
         RestartSec=2\n\
         StartLimitBurst=3\n\
         StartLimitInterval=60s\n\
         LimitNOFILE=infinity\n\
         LimitNPROC=infinity\n\
         LimitCORE=infinity\n\
         TasksMax=infinity\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        exe = exe.display()
    )
}

/// Whether `systemctl --user` reaches a user manager (it does not in a plain `su`/`runuser`
/// shell, in containers, or on hosts whose PID 1 is not systemd).
fn systemd_user() -> bool {
    Command::new("systemctl")
        .args(["--user", "show-environment"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn systemctl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("systemctl")
        .arg("--user")
        .args(args)
        .output()
        .map_err(|e| format!("systemctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "systemctl --user {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The unit's cgroup directory as the user manager reports it (cgroup v2), while it is loaded.
fn unit_cgroup() -> Option<PathBuf> {
    let out = Command::new("systemctl")
        .args([
            "--user",
            "show",
            "-p",
            "ControlGroup",
            "--value",
            "berth.service",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let rel = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'));
    (!rel.is_empty() && dir.join("cgroup.procs").exists()).then_some(dir)
}

/// Removes the unit's cgroup once it is empty. systemd prunes a stopped unit's cgroup when its
/// last process (KillMode=process leaves the namespaces' processes there) exits, but not when
/// the unit was unloaded first: after our daemon-reload the empty directory can stay for good.
fn remove_unit_cgroup(dir: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while dir.exists() && std::time::Instant::now() < deadline {
        // Only an empty cgroup without children can be removed; anything else stays (EBUSY).
        if std::fs::remove_dir(dir).is_ok() {
            println!("[INFO] Removed the unit's empty cgroup {}", dir.display());
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if dir.exists() {
        println!(
            "[WARNING] The unit's cgroup {} is still there (not empty)",
            dir.display()
        );
    }
}

/// The docker CLI on PATH, if any.
fn docker_cli() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("docker"))
        .find(|p| p.is_file())
}

/// `docker <args>` with DOCKER_HOST and DOCKER_CONTEXT unset (they would override contexts).
fn docker(cli: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(cli)
        .args(args)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn context_host(cli: &Path) -> Option<String> {
    docker(
        cli,
        &[
            "context",
            "inspect",
            CONTEXT,
            "--format",
            "{{.Endpoints.docker.Host}}",
        ],
    )
}

fn refuse_root(what: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!(
            "[ERROR] berth rootless {what}: run it as the user who runs the rootless daemon, not as root"
        );
        return true;
    }
    false
}

pub fn setup(args: &[String]) -> i32 {
    if let Some(a) = args.first() {
        eprintln!("berth rootless setup: unexpected argument {a:?}");
        return 125;
    }
    if refuse_root("setup") {
        return 1;
    }
    let checks = rootless::check_all();
    let missing: Vec<_> = checks
        .iter()
        .filter(|c| c.required && c.fix.is_some())
        .collect();
    if !missing.is_empty() {
        println!(
            "[ERROR] Missing system requirements. Do the following, then run this tool again:"
        );
        for c in &missing {
            println!("  - {}", c.what);
            println!("    {}", c.fix.as_deref().unwrap_or_default());
        }
        return 1;
    }
    for c in checks.iter().filter(|c| c.fix.is_some()) {
        println!("[WARNING] {}", c.what);
        println!("          fix: {}", c.fix.as_deref().unwrap_or_default());
    }
    // Checked above: XDG_RUNTIME_DIR and HOME are set.
    let paths = match rootless::Paths::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("[ERROR] {e}");
            return 1;
        }
    };
    let host = format!("unix://{}", paths.socket.display());
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("[ERROR] cannot find own executable: {e}");
            return 1;
        }
    };
    let Some(unit) = unit_path() else {
        eprintln!("[ERROR] HOME is not set: set HOME to your home directory");
        return 1;
    };
    let write = unit
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&unit, unit_text(&exe)));
    if let Err(e) = write {
        eprintln!("[ERROR] {}: {e}", unit.display());
        return 1;
    }
    println!("[INFO] Installed {}", unit.display());
    if systemd_user() {
        if let Err(e) = systemctl(&["daemon-reload"])
            .and_then(|()| systemctl(&["enable", "--now", "berth.service"]))
        {
            eprintln!("[ERROR] {e}");
            return 1;
        }
        println!(
            "[INFO] Enabled and started berth.service (systemctl --user start|stop|restart berth)"
        );
        println!(
            "[INFO] To run it without a login session (at boot), as root: loginctl enable-linger {}",
            user_name()
        );
    } else {
        println!(
            "[INFO] No systemd user manager is reachable (`systemctl --user` fails): the unit \
             takes effect in a systemd login session, with `systemctl --user enable --now berth`."
        );
        println!(
            "[INFO] Until then start the daemon yourself: {} daemon",
            exe.display()
        );
    }
    match docker_cli() {
        Some(cli) => match context_host(&cli) {
            Some(h) if h == host => {
                println!("[INFO] CLI context \"{CONTEXT}\" already exists");
            }
            Some(h) => println!(
                "[WARNING] A CLI context \"{CONTEXT}\" already exists for {h}: left unchanged"
            ),
            None => {
                let made = docker(
                    &cli,
                    &[
                        "context",
                        "create",
                        CONTEXT,
                        "--description",
                        "Rootless Berth",
                        "--docker",
                        &format!("host={host}"),
                    ],
                );
                if made.is_none() {
                    eprintln!("[ERROR] docker context create {CONTEXT} failed");
                    return 1;
                }
                println!("[INFO] Created CLI context \"{CONTEXT}\"");
                if docker(&cli, &["context", "use", CONTEXT]).is_some() {
                    println!(
                        "[INFO] Made \"{CONTEXT}\" the current context (`docker context use default` goes back)"
                    );
                }
            }
        },
        None => println!("[INFO] No docker CLI on PATH: no CLI context made"),
    }
    println!("[INFO] Or set in your shell (~/.bashrc):");
    println!("export DOCKER_HOST={host}");
    0
}

fn user_name() -> String {
    rootless::user_name(my_uid())
}

fn my_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// The running daemon's pid (its pid file in the exec-root), if it is ours and alive.
fn daemon_pid(paths: &rootless::Paths) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(paths.exec_root.join("berth.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(format!("/proc/{pid}")).ok()?.uid();
    (uid == my_uid()).then_some(pid)
}

pub fn uninstall(args: &[String]) -> i32 {
    let purge = match args.first().map(String::as_str) {
        None => false,
        Some("--purge") => true,
        Some(a) => {
            eprintln!("berth rootless uninstall: unexpected argument {a:?} (--purge also removes the data)");
            return 125;
        }
    };
    if refuse_root("uninstall") {
        return 1;
    }
    let paths = match rootless::Paths::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("[ERROR] {e}");
            return 1;
        }
    };
    let host = format!("unix://{}", paths.socket.display());
    let unit = unit_path();
    let mut cgroup = None;
    if systemd_user() && unit.as_ref().is_some_and(|u| u.exists()) {
        cgroup = unit_cgroup();
        match systemctl(&["disable", "--now", "berth.service"]) {
            Ok(()) => println!("[INFO] Stopped and disabled berth.service"),
            Err(e) => println!("[WARNING] {e}"),
        }
    }
    // A daemon started by hand (or left running): stopped the way `kill` would.
    if let Some(pid) = daemon_pid(&paths) {
        // SAFETY: our own daemon, by pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        println!("[INFO] Stopped the daemon (pid {pid})");
    }
    let n = rootless::stop_namespaces(&paths);
    if n > 0 {
        println!(
            "[INFO] Stopped the rootless namespaces: {n} processes (their containers included)"
        );
    }
    if let Some(u) = &unit {
        if std::fs::remove_file(u).is_ok() {
            println!("[INFO] Removed {}", u.display());
            if systemd_user() {
                let _ = systemctl(&["daemon-reload"]);
            }
        }
    }
    if let Some(dir) = &cgroup {
        remove_unit_cgroup(dir);
    }
    if let Some(cli) = docker_cli() {
        if context_host(&cli).as_deref() == Some(host.as_str()) {
            if docker(&cli, &["context", "show"]).as_deref() == Some(CONTEXT) {
                let _ = docker(&cli, &["context", "use", "default"]);
            }
            if docker(&cli, &["context", "rm", "-f", CONTEXT]).is_some() {
                println!("[INFO] Removed CLI context \"{CONTEXT}\"");
            }
        }
    }
    if purge {
        let done = rootless::Plan::check().and_then(|plan| {
            let exe = std::env::current_exe().map_err(|e| {
                berth_runtime::RuntimeError::Runtime(format!("own executable: {e}"))
            })?;
            rootless::purge_data(&plan, &exe)
        });
        match done {
            Ok(()) => println!("[INFO] Removed {}", paths.data_root.display()),
            Err(e) => {
                eprintln!("[ERROR] {e}");
                return 1;
            }
        }
    } else {
        println!(
            "[INFO] Images, containers and volumes are kept in {} (`berth rootless uninstall --purge` removes them; files there belong to your subordinate ids too)",
            paths.data_root.display()
        );
    }
    println!("[INFO] Unset DOCKER_HOST if you set it for rootless berth");
    0
}
