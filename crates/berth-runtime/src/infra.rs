//! A pod's infra process (`berth pod-infra`): the holder of the namespaces a pod's containers
//! share — IPC, UTS (with the pod's hostname) and, when the pod asks, PID, where it is PID 1 and
//! reaps orphans. It stands in for the "pause" container of other runtimes, without an image:
//! it is the berth binary itself, detached (own session, reparented away from the daemon) so a
//! daemon restart leaves the pod's namespaces alone. The network namespace is not its business
//! (the engine pins that one with a bind mount).
//!
//! The daemon runs `berth pod-infra --ready-fd 3 ...`; that process unshares, forks the holder
//! and reports the holder's pid on the ready pipe, then exits.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use serde::{Deserialize, Serialize};

use crate::RuntimeError;

const READY_TIMEOUT_MS: i32 = 10_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InfraOptions {
    /// Its working directory (the pod's runtime directory: where to find whose it is).
    pub dir: std::path::PathBuf,
    pub hostname: String,
    pub new_ipc: bool,
    pub new_uts: bool,
    pub new_pid: bool,
    /// Written to its `oom_score_adj` (the caller clamps it to what the host allows).
    pub oom_score_adj: Option<i32>,
}

/// A running infra process, identified by pid and start time (pids get reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Infra {
    pub pid: i32,
    pub start_time: u64,
}

impl Infra {
    /// The process is still the one we started.
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }

    /// `/proc/<pid>/ns/<kind>` of the holder.
    pub fn ns_path(&self, kind: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/proc/{}/ns/{kind}", self.pid))
    }

    /// SIGKILL (it holds nothing that needs a clean exit); waits up to a second for it to go.
    pub fn kill(&self) {
        if !self.alive() {
            return;
        }
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), Signal::SIGKILL);
        for _ in 0..100 {
            if !self.alive() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Field 22 of `/proc/<pid>/stat` (clock ticks since boot), for a process that is not a zombie.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    if matches!(f.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    // After the command: state is field 3, start time field 22.
    f.get(19)?.parse().ok()
}

#[derive(Serialize, Deserialize)]
struct Ready {
    ok: bool,
    #[serde(default)]
    pid: i32,
    #[serde(default)]
    error: String,
}

/// Starts the infra process; blocks until it reports (call from `spawn_blocking`).
pub fn spawn_infra(berth_exe: &Path, opts: &InfraOptions) -> Result<Infra, RuntimeError> {
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::io("pipe", e.into()))?;
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| RuntimeError::io("open /dev/null", e))?;
    let ready_w = std::fs::File::from(ready_w);
    let mut args: Vec<String> = vec![
        "pod-infra".into(),
        "--ready-fd".into(),
        "3".into(),
        "--hostname".into(),
        opts.hostname.clone(),
        "--dir".into(),
        opts.dir.display().to_string(),
    ];
    for (on, flag) in [
        (opts.new_ipc, "--ipc"),
        (opts.new_uts, "--uts"),
        (opts.new_pid, "--pid"),
    ] {
        if on {
            args.push(flag.into());
        }
    }
    if let Some(adj) = opts.oom_score_adj {
        args.push("--oom-score-adj".into());
        args.push(adj.to_string());
    }
    let os_args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let pid = crate::shim::spawn(
        berth_exe,
        &os_args,
        [&devnull, &devnull, &devnull, &ready_w],
    )
    .map_err(|e| RuntimeError::io(format!("start {}", berth_exe.display()), e))?;
    drop(ready_w);
    while let Err(nix::errno::Errno::EINTR) =
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None)
    {}
    let line = crate::shim::read_ready_line(ready_r, READY_TIMEOUT_MS).unwrap_or_default();
    match serde_json::from_str::<Ready>(line.trim()) {
        Ok(Ready { ok: true, pid, .. }) => {
            let st = start_time(pid)
                .ok_or_else(|| infra_failed("the pod's infra process died at once".into()))?;
            Ok(Infra {
                pid,
                start_time: st,
            })
        }
        Ok(r) => Err(infra_failed(format!("pod infra: {}", r.error))),
        Err(_) => Err(infra_failed(
            "pod infra process exited without a word".into(),
        )),
    }
}

/// A pod's infra process that did not come up: a create failure of the daemon's own making.
fn infra_failed(message: String) -> RuntimeError {
    RuntimeError::Create {
        message,
        fault: crate::error::StartFault::Internal,
    }
}

/// Entry point of `berth pod-infra`. Must run single-threaded (before any runtime starts).
pub fn main(args: Vec<String>) -> i32 {
    let mut opts = InfraOptions::default();
    let mut ready_fd = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ready-fd" => ready_fd = it.next().and_then(|s| s.parse::<i32>().ok()),
            "--hostname" => opts.hostname = it.next().unwrap_or_default(),
            "--dir" => opts.dir = it.next().unwrap_or_default().into(),
            "--ipc" => opts.new_ipc = true,
            "--uts" => opts.new_uts = true,
            "--pid" => opts.new_pid = true,
            "--oom-score-adj" => opts.oom_score_adj = it.next().and_then(|s| s.parse().ok()),
            _ => {}
        }
    }
    // SAFETY: the daemon handed us this fd; we own it from here on.
    let mut ready = ready_fd
        .filter(|fd| *fd >= 0)
        .map(|fd| std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
    let mut report = |r: Ready| {
        if let Some(f) = ready.as_mut() {
            let mut line = serde_json::to_string(&r).unwrap_or_default();
            line.push('\n');
            let _ = f.write_all(line.as_bytes());
        }
    };
    if let Some(adj) = opts.oom_score_adj {
        let _ = std::fs::write("/proc/self/oom_score_adj", adj.to_string());
    }
    let mut flags = CloneFlags::empty();
    if opts.new_ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    if opts.new_uts {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    if opts.new_pid {
        flags |= CloneFlags::CLONE_NEWPID;
    }
    if let Err(e) = unshare(flags) {
        report(Ready {
            ok: false,
            pid: 0,
            error: format!("unshare: {e}"),
        });
        return 1;
    }
    if opts.new_uts && !opts.hostname.is_empty() {
        if let Err(e) = nix::unistd::sethostname(&opts.hostname) {
            report(Ready {
                ok: false,
                pid: 0,
                error: format!("sethostname {:?}: {e}", opts.hostname),
            });
            return 1;
        }
    }
    // SAFETY: single-threaded; the child only calls async-signal-safe functions until it loops.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            report(Ready {
                ok: true,
                pid: child.as_raw(),
                error: String::new(),
            });
            0
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(ready);
            hold(&opts.dir)
        }
        Err(e) => {
            report(Ready {
                ok: false,
                pid: 0,
                error: format!("fork: {e}"),
            });
            1
        }
    }
}

/// The holder's life: reap whatever is reparented to it, exit on SIGTERM/SIGINT.
fn hold(dir: &Path) -> i32 {
    let _ = nix::unistd::setsid();
    if std::env::set_current_dir(dir).is_err() {
        let _ = std::env::set_current_dir("/");
    }
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    let _ = set.thread_block();
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => {
                while let Ok(status) = nix::sys::wait::waitpid(
                    None,
                    Some(
                        nix::sys::wait::WaitPidFlag::WNOHANG | nix::sys::wait::WaitPidFlag::__WALL,
                    ),
                ) {
                    if status == nix::sys::wait::WaitStatus::StillAlive {
                        break;
                    }
                }
            }
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => return 0,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_self_and_of_nothing() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert_eq!(start_time(i32::MAX), None);
        let i = Infra {
            pid: me,
            start_time: start_time(me).unwrap(),
        };
        assert!(i.alive());
        assert!(!Infra {
            pid: me,
            start_time: i.start_time + 1
        }
        .alive());
        assert_eq!(
            i.ns_path("ipc"),
            std::path::PathBuf::from(format!("/proc/{me}/ns/ipc"))
        );
    }
}
