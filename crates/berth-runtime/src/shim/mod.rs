//! The per-container shim (`berth shim`).
//!
//! `spawn_shim` (called by the engine) re-executes the berth binary as `berth shim`; that
//! process forks once more and exits, so the shim is detached (own session, reparented away
//! from the daemon) and survives a daemon restart. The shim creates the container with
//! libcontainer, reports "created" back through an inherited pipe, then serves the protocol on
//! `<runtime_dir>/shim.sock` from a single-threaded poll loop until the container exits.
//!
//! Protocol (typed in `protocol`: `ShimRequest`, `ShimReply` with a `ShimErrorKind`): one JSON
//! request line per connection, one JSON reply line:
//! - `{"op":"start"}` -> `{"ok":true}` | `{"ok":false,"error":".."}`
//! - `{"op":"attach","stdin":b,"stdout":b,"stderr":b}` -> `{"ok":true}`, then stdcopy frames
//!   (8-byte header, stream 1/2; TTY output is all stream 1) until the container exits; bytes
//!   sent after the request line go to stdin (with open_stdin); half-close + stdin_once closes it.
//!   A client that falls 4 MiB behind is dropped.
//! - `{"op":"wait"}` -> `{"exit_code":N,"finished_at":"..","oom_killed":b}` once exited.
//! - `{"op":"kill","signal":N}` -> `{"ok":..}` ("container ID is not running" after exit).
//! - `{"op":"resize","height":H,"width":W}` -> `{"ok":..}`.
//! - `{"op":"state"}` -> `{"pid":N,"status":"created"|"running"|"exited","exit_code":N|null}`.
//! - `{"op":"reopen_log"}` -> `{"ok":..}`: the log file is opened again (the kubelet rotates CRI
//!   logs by renaming them, then asks for this).
//!
//! Exec mode (`exec` set in shim.json, see `crate::exec`): the same protocol for one process
//! joined to a running container; no `start` (it runs once created), no log, and the exit
//! leaves the container's state and cgroups alone.
//!
//! On exit: exit.json (atomic) first, then libcontainer state removal, then replies; then
//! shim.sock and shim.pid disappear. A client that cannot connect reads exit.json.
//! `spawn_shim` blocks: call it from `spawn_blocking` in async code.

mod executor;
mod log;
pub mod protocol;
mod server;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{RuntimeError, StartFault};
use berth_fs::write_replace;

/// The shim's socket, in its runtime directory.
pub const SOCK: &str = "shim.sock";
pub(crate) const PIDFILE: &str = "shim.pid";
pub(crate) const EXITFILE: &str = "exit.json";
pub(crate) const OPTSFILE: &str = "shim.json";
pub(crate) const CONSOLE_SOCK: &str = "console.sock";
pub(crate) const SHIM_LOG: &str = "shim.log";
const CREATE_TIMEOUT_MS: i32 = 120_000;

/// How the engine asks for one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub state_root: PathBuf,
    pub runtime_dir: PathBuf,
    pub log_path: PathBuf,
    pub log_max_size: u64,
    pub log_max_file: u32,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    /// json-file (Docker's) or the CRI format; an empty `log_path` means no log at all.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Set for an exec's shim: join the running container `id` instead of creating it.
    #[serde(default)]
    pub exec: Option<crate::exec::ExecShimOptions>,
}

/// How a container's output is logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    #[default]
    JsonFile,
    Cri,
}

/// A created container: init is waiting for `{"op":"start"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimStarted {
    pub shim_pid: i32,
    pub init_pid: i32,
}

/// Contents of `exit.json`, and the `wait` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    pub exit_code: i32,
    pub finished_at: String,
    pub oom_killed: bool,
}

/// The line the shim writes to the ready pipe.
#[derive(Serialize, Deserialize)]
struct Ready {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// What the shim typed a failure as (absent: internal).
    #[serde(default)]
    fault: StartFault,
    #[serde(default)]
    shim_pid: i32,
    #[serde(default)]
    init_pid: i32,
}

/// Writes the bundle, starts `berth shim` and blocks until the container is created (or not).
/// On failure nothing is left running and the runtime leftovers are removed.
pub fn spawn_shim(
    berth_exe: &Path,
    opts: &ShimOptions,
    spec: &oci_spec::runtime::Spec,
) -> Result<ShimStarted, RuntimeError> {
    // Docker's start-time errors, before any process exists.
    if let (Some(root), Some(process)) = (spec.root(), spec.process()) {
        let args = process.args().clone().unwrap_or_default();
        let env = process.env().clone().unwrap_or_default();
        match args.first() {
            Some(arg0) => crate::spec::resolve_executable(root.path(), arg0, &env)?,
            None => {
                return Err(RuntimeError::Create {
                    message: "no command specified".into(),
                    fault: StartFault::User,
                })
            }
        }
    }
    fs::create_dir_all(&opts.bundle).map_err(|e| RuntimeError::io("create bundle", e))?;
    fs::create_dir_all(&opts.runtime_dir).map_err(|e| RuntimeError::io("create runtime dir", e))?;
    fs::create_dir_all(&opts.state_root).map_err(|e| RuntimeError::io("create state root", e))?;
    let spec_json = serde_json::to_vec(spec).map_err(|e| RuntimeError::Spec(e.to_string()))?;
    // The exec root holds what no reboot keeps (processes, namespaces): its files need to
    // survive a daemon's crash, which the page cache gives, not a power loss. No fsync.
    write_replace(&opts.bundle.join("config.json"), &spec_json)
        .map_err(|e| RuntimeError::io("write config.json", e))?;
    let opts_json = serde_json::to_vec(opts).map_err(|e| RuntimeError::Shim(e.to_string()))?;
    write_replace(&opts.runtime_dir.join(OPTSFILE), &opts_json)
        .map_err(|e| RuntimeError::io("write shim.json", e))?;

    match launch(berth_exe, &opts.runtime_dir)? {
        Ok(started) => Ok(started),
        Err(Some((message, fault))) => {
            cleanup(&opts.runtime_dir, &opts.state_root, &opts.id);
            Err(RuntimeError::Create { message, fault })
        }
        Err(None) => {
            let log = fs::read_to_string(opts.runtime_dir.join(SHIM_LOG)).unwrap_or_default();
            cleanup(&opts.runtime_dir, &opts.state_root, &opts.id);
            Err(RuntimeError::Shim(format!(
                "shim exited before creating the container: {}",
                log.trim()
            )))
        }
    }
}

/// A container's (or exec's) process joins its cgroups by a write to `cgroup.procs`, and the
/// first such migration after a quiet spell waits for an RCU grace period (the kernel switches
/// `cgroup_threadgroup_rwsem`'s readers to their slow path): 7–15 ms on an idle host, half of an
/// exec. A migration of this process into the cgroup it is already in (a no-op) is started now,
/// on a thread of its own, so that wait runs while the shim starts and the exec's own join finds
/// the switch made. Failures do not matter: at worst the exec waits as before.
fn prime_cgroup_migration() {
    let spawned = std::thread::Builder::new()
        .name("cgroup-prime".into())
        .spawn(|| {
            let Ok(own) = fs::read_to_string("/proc/self/cgroup") else {
                return;
            };
            let root = Path::new("/sys/fs/cgroup");
            let v2 = root.join("cgroup.controllers").exists();
            for line in own.lines() {
                let mut f = line.splitn(3, ':');
                let (_, controllers, path) = match (f.next(), f.next(), f.next()) {
                    (Some(a), Some(b), Some(c)) => (a, b, c),
                    _ => continue,
                };
                let dir = match (v2, controllers) {
                    (true, "") => root.to_path_buf(),
                    (false, "pids") => root.join("pids"),
                    _ => continue,
                };
                let procs = dir.join(path.trim_start_matches('/')).join("cgroup.procs");
                let _ = fs::write(procs, std::process::id().to_string());
                return;
            }
        });
    drop(spawned);
}

/// Runs `berth shim --runtime-dir D` (whose `shim.json` is written) and blocks until it
/// reports on the ready pipe: `Ok(Ok(pids))`, `Ok(Err(Some((error, fault))))` for a reported
/// failure, `Ok(Err(None))` when the shim died without a word.
pub(crate) fn launch(
    berth_exe: &Path,
    runtime_dir: &Path,
) -> Result<Result<ShimStarted, Option<(String, StartFault)>>, RuntimeError> {
    prime_cgroup_migration();
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::io("pipe", e.into()))?;
    let shim_log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(runtime_dir.join(SHIM_LOG))
        .map_err(|e| RuntimeError::io("open shim.log", e))?;
    let ready_w = fs::File::from(ready_w);
    let devnull = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| RuntimeError::io("open /dev/null", e))?;
    let args = [
        "shim".as_ref(),
        "--runtime-dir".as_ref(),
        runtime_dir.as_os_str(),
        "--ready-fd".as_ref(),
        "3".as_ref(),
    ];
    let pid = spawn(berth_exe, &args, [&devnull, &devnull, &shim_log, &ready_w])
        .map_err(|e| RuntimeError::io(format!("start shim {}", berth_exe.display()), e))?;
    drop((shim_log, ready_w));
    // The first shim process forks the real shim and exits at once.
    while let Err(nix::errno::Errno::EINTR) =
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)
    {}

    // A wedged shim must not wedge the daemon forever.
    let line = read_ready_line(ready_r, CREATE_TIMEOUT_MS).unwrap_or_else(|| {
        serde_json::json!({"ok": false, "error": "timed out waiting for the shim to create the container"}).to_string()
    });
    let ready: Option<Ready> = serde_json::from_str(line.trim()).ok();
    Ok(match ready {
        Some(Ready {
            ok: true,
            shim_pid,
            init_pid,
            ..
        }) => Ok(ShimStarted { shim_pid, init_pid }),
        Some(Ready { error, fault, .. }) => Err(Some((error.unwrap_or_default(), fault))),
        None => Err(None),
    })
}

/// The readiness line a spawned helper writes on `ready_r` (shim or pod infra), or `None` when
/// nothing came within `timeout_ms`: a wedged child must not wedge the daemon.
pub(crate) fn read_ready_line(ready_r: OwnedFd, timeout_ms: i32) -> Option<String> {
    let mut pfd = libc::pollfd {
        fd: ready_r.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, timeout_ms) } <= 0 {
        return None;
    }
    let mut line = String::new();
    let _ = BufReader::new(fs::File::from(ready_r)).read_line(&mut line);
    Some(line)
}

/// Starts `exe args` with `fds` as its fds 0, 1, 2, 3 (everything else the daemon opens is
/// close-on-exec), via posix_spawn: glibc runs it with `CLONE_VM | CLONE_VFORK`, where
/// `Command` with a `pre_exec` hook would fork the whole daemon (copying the page tables of
/// all its mappings: milliseconds per exec and per container start).
pub(crate) fn spawn(
    exe: &Path,
    args: &[&std::ffi::OsStr],
    fds: [&fs::File; 4],
) -> std::io::Result<i32> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let cstr = |s: &std::ffi::OsStr| {
        CString::new(s.as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let path = cstr(exe.as_os_str())?;
    let mut argv_owned = vec![path.clone()];
    for a in args {
        argv_owned.push(cstr(a)?);
    }
    let mut argv: Vec<*mut libc::c_char> = argv_owned
        .iter()
        .map(|a| a.as_ptr() as *mut libc::c_char)
        .collect();
    argv.push(std::ptr::null_mut());
    // Sources at 10 and above, so no dup2 onto 0..=3 overwrites a source still to be used;
    // dup2 clears CLOEXEC on the target only.
    let mut high = Vec::with_capacity(4);
    for f in fds {
        // SAFETY: fcntl on a valid fd; the result is a new fd we own.
        let fd = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        high.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    // SAFETY: the file actions and attributes are initialised before use and destroyed after;
    // argv is NULL-terminated and its strings outlive the call; environ is the process's own.
    unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut fa);
        libc::posix_spawnattr_init(&mut attr);
        let mut r = 0;
        for (target, fd) in high.iter().enumerate() {
            if r == 0 {
                r = libc::posix_spawn_file_actions_adddup2(&mut fa, fd.as_raw_fd(), target as i32);
            }
        }
        // As Command does: an empty signal mask, and SIGPIPE (ignored by the Rust runtime) back
        // to its default.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        if r == 0 {
            r = libc::posix_spawnattr_setsigmask(&mut attr, &empty);
        }
        if r == 0 {
            r = libc::posix_spawnattr_setsigdefault(&mut attr, &pipe);
        }
        if r == 0 {
            r = libc::posix_spawnattr_setflags(
                &mut attr,
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
            );
        }
        extern "C" {
            static environ: *const *mut libc::c_char;
        }
        let mut pid: libc::pid_t = 0;
        if r == 0 {
            r = libc::posix_spawn(&mut pid, path.as_ptr(), &fa, &attr, argv.as_ptr(), environ);
        }
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::posix_spawnattr_destroy(&mut attr);
        if r != 0 {
            return Err(std::io::Error::from_raw_os_error(r));
        }
        Ok(pid)
    }
}

/// Parses `<runtime_dir>/exit.json` if the container has exited.
pub fn read_exit(runtime_dir: &Path) -> Option<ExitStatus> {
    let data = fs::read(runtime_dir.join(EXITFILE)).ok()?;
    serde_json::from_slice(&data).ok()
}

/// `shim.pid` names a live (not zombie) shim process.
pub fn shim_alive(runtime_dir: &Path) -> bool {
    let Some(pid) = fs::read_to_string(runtime_dir.join(PIDFILE))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
    else {
        return false;
    };
    pid_is_shim(pid)
}

/// `pid` is a live (not zombie) `berth shim` process.
fn pid_is_shim(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the last ')' of the command name.
    let zombie = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
        .unwrap_or(true);
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let is_shim = cmdline
        .split(|b| *b == 0)
        .any(|a| a == b"shim" || a.ends_with(b"shim"));
    !zombie && is_shim
}

/// Ends a shim whose container's start failed, whatever state it is in, for when asking it
/// over its socket (`kill`) did not do it: SIGKILL to the container's init while it is still
/// the shim's child (so its pid cannot have been reused), then to the shim itself if it
/// lingers; returns once the shim is gone (or after a few seconds). Blocking.
pub fn abort(runtime_dir: &Path, started: ShimStarted) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    // Gone means the process, not only its pid file (removed last, but before it exits).
    let gone = |deadline: std::time::Instant| loop {
        if !pid_is_shim(started.shim_pid) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let soon = |ms| std::time::Instant::now() + std::time::Duration::from_millis(ms);
    if parent_of(started.init_pid) == Some(started.shim_pid) {
        let _ = kill(Pid::from_raw(started.init_pid), Signal::SIGKILL);
    }
    // With its container gone the shim records the exit and leaves on its own.
    if gone(soon(2_000)) {
        return;
    }
    // Still there: its pid file names it, or (removed last, just before the exit) the shim
    // process of that pid is still alive seconds after `started` — on a loaded machine its
    // own teardown can take that long. (Another shim with a reused pid would need the pid
    // space to wrap within those seconds.)
    if shim_alive_pid(runtime_dir, started.shim_pid) || pid_is_shim(started.shim_pid) {
        let _ = kill(Pid::from_raw(started.shim_pid), Signal::SIGKILL);
    }
    gone(soon(5_000));
}

/// The parent of a live (not zombie) process.
fn parent_of(pid: i32) -> Option<i32> {
    if pid <= 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = stat.rsplit_once(')')?.1.split_whitespace();
    if matches!(f.next(), Some("Z") | Some("X")) {
        return None;
    }
    f.next()?.parse().ok()
}

/// `shim_alive`, and the live shim is `pid` (not a later one of the same directory).
fn shim_alive_pid(runtime_dir: &Path, pid: i32) -> bool {
    let recorded = fs::read_to_string(runtime_dir.join(PIDFILE))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    // The shim writes its pid file before it reports ready, and removes it last.
    recorded == Some(pid) && pid_is_shim(pid)
}

/// Best-effort removal of a dead container's runtime leftovers: the shim's files in
/// `runtime_dir` (config.json and exit.json stay for the engine) and libcontainer's state
/// and cgroups.
pub fn cleanup(runtime_dir: &Path, state_root: &Path, id: &str) {
    for f in [SOCK, PIDFILE, CONSOLE_SOCK, OPTSFILE] {
        let _ = fs::remove_file(runtime_dir.join(f));
    }
    server::delete_container_state(state_root, id);
    // The bundle usually is the runtime dir; its spec names the cgroup to sweep.
    server::remove_cgroup_dirs(&server::cgroups_path_of(runtime_dir));
}

/// Entry point of `berth shim <args>`. Returns the process exit code.
pub fn main(args: Vec<String>) -> i32 {
    let mut runtime_dir = None;
    let mut ready_fd: Option<i32> = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runtime-dir" => runtime_dir = it.next().map(PathBuf::from),
            "--ready-fd" => ready_fd = it.next().and_then(|s| s.parse().ok()),
            _ => {}
        }
    }
    let Some(runtime_dir) = runtime_dir else {
        eprintln!("berth shim: --runtime-dir is required");
        return 2;
    };
    // SAFETY: the fd number was handed to us by spawn_shim; we own it from here on.
    let ready = ready_fd
        .filter(|fd| *fd >= 0)
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    if let Some(r) = &ready {
        let _ = nix::fcntl::fcntl(
            r.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
    let opts: ShimOptions = match fs::read(runtime_dir.join(OPTSFILE))
        .map_err(|e| e.to_string())
        .and_then(|d| serde_json::from_slice(&d).map_err(|e| e.to_string()))
    {
        Ok(o) => o,
        Err(e) => {
            server::report(ready, Err(format!("shim: read {OPTSFILE}: {e}").into()));
            return 1;
        }
    };
    // Second fork: the process the daemon started exits now, the shim lives on in its own
    // session, so the daemon never reaps it and its death does not touch us.
    // SAFETY: single-threaded at this point.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => unsafe { libc::_exit(0) },
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            server::report(ready, Err(format!("shim: fork: {e}").into()));
            return 1;
        }
    }
    let _ = nix::unistd::setsid();
    server::run(opts, ready)
}
