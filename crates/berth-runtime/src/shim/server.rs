//! The shim process proper: create the container, then a single-threaded poll loop over the
//! container's stdio, `shim.sock` clients and a signalfd for SIGCHLD.

use std::fs::{self, File};
use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{self, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::{json, Value};

use super::executor::{exec_filter, FaultPipe, ShimExecutor};
use super::log::{now_rfc3339_nano, JsonLog};
use super::protocol::{ProcessStatus, ShimErrorKind, ShimReply, ShimRequest, ShimState};
use super::{ExitStatus, Ready, ShimOptions, CONSOLE_SOCK, EXITFILE, PIDFILE, SOCK};
use crate::StartFault;
use berth_fs::write_replace;

/// Output queued for one client beyond this means it is not keeping up: drop it.
const MAX_CLIENT_BACKLOG: usize = 4 << 20;
/// Stdin buffered towards the container; past it we stop reading from stdin clients.
const MAX_STDIN_BUF: usize = 256 << 10;
const READ_CHUNK: usize = 32 << 10;
/// After init exits, how long we wait for the stdio pipes to reach EOF.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// After an exec's exit, how long its held output waits for the client that started it.
const HOLD_TIMEOUT: Duration = Duration::from_secs(10);
/// After exit, how long attached clients get to take the rest of the output.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed create: its message, and its fault as typed where it happened.
pub(crate) struct Failure {
    message: String,
    fault: StartFault,
}

impl From<String> for Failure {
    /// The shim's own trouble (a pipe, a socket): internal.
    fn from(message: String) -> Self {
        Failure {
            message,
            fault: StartFault::Internal,
        }
    }
}

impl Failure {
    /// libcontainer's failure: the fault the container's process wrote to the fault pipe
    /// (its command is missing or not executable), else by the errno in the error's chain.
    fn runtime(e: libcontainer::error::LibcontainerError, faults: &FaultPipe) -> Failure {
        Failure {
            fault: faults.take().unwrap_or_else(|| StartFault::of_error(&e)),
            message: e.to_string(),
        }
    }
}

/// Writes the one ready line for spawn_shim.
pub(crate) fn report(ready: Option<OwnedFd>, res: Result<(i32, i32), Failure>) {
    let Some(fd) = ready else { return };
    let msg = match res {
        Ok((shim_pid, init_pid)) => Ready {
            ok: true,
            error: None,
            fault: StartFault::Internal,
            shim_pid,
            init_pid,
        },
        Err(e) => Ready {
            ok: false,
            error: Some(e.message),
            fault: e.fault,
            shim_pid: 0,
            init_pid: 0,
        },
    };
    let mut line = serde_json::to_string(&msg).unwrap_or_default();
    line.push('\n');
    let _ = File::from(fd).write_all(line.as_bytes());
}

/// Removes libcontainer's state dir (and through it the cgroups) of `id`; kills what is left.
pub(crate) fn delete_container_state(state_root: &Path, id: &str) {
    let dir = state_root.join(id);
    if !dir.exists() {
        return;
    }
    if let Ok(mut c) = Container::load(dir.clone()) {
        if let Err(e) = c.delete(true) {
            eprintln!("berth shim: delete container state: {e}");
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

/// rmdir of the container's cgroup, for when libcontainer's state (which knows it) is already
/// gone. Only empty cgroups can be removed, so this is harmless.
pub(crate) fn remove_cgroup_dirs(cgroups_path: &str) {
    if let Some(cg) = crate::cgroup::ContainerCgroup::from_cgroups_path(cgroups_path) {
        cg.remove_dirs();
    }
}

/// Sets the spec's `oomScoreAdj` on the shim itself (init inherits it), before libcontainer
/// does the same, so that the kernel's refusal reaches the user in plain words: lowering the
/// score below the current one needs CAP_SYS_RESOURCE, which a daemon may lack.
fn apply_oom_score_adj(bundle: &Path) -> Result<(), Failure> {
    let Ok(spec) = oci_spec::runtime::Spec::load(bundle.join("config.json")) else {
        return Ok(());
    };
    let Some(adj) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) else {
        return Ok(());
    };
    let file = "/proc/self/oom_score_adj";
    let current = fs::read_to_string(file).unwrap_or_default();
    if current.trim() == adj.to_string() {
        return Ok(());
    }
    fs::write(file, adj.to_string()).map_err(|e| {
        let (why, fault) = match e.raw_os_error() {
            // dockerd: a 400, exit code 126 for `run`.
            Some(libc::EACCES) | Some(libc::EPERM) => (
                format!(
                    "permission denied (the kernel refuses to lower it from {} to {adj} \
                     without CAP_SYS_RESOURCE, which the daemon does not have)",
                    current.trim()
                ),
                StartFault::PermissionDenied,
            ),
            _ => (e.to_string(), StartFault::Internal),
        };
        Failure {
            message: format!("write {file}: {why}"),
            fault,
        }
    })
}

/// libcontainer's intermediate process and the container's init are both in the cgroup while
/// it is created: a pids limit below two fails the create ("failed to launch init process"),
/// where runc manages with one. Such a limit is relaxed in the bundle's spec for the create
/// and written to the cgroup once init is the only process left.
struct TightPids {
    limit: i64,
    original: Vec<u8>,
}

const CREATE_PIDS: i64 = 2;

fn relax_pids_limit(bundle: &Path) -> Result<Option<TightPids>, String> {
    let path = bundle.join("config.json");
    let original = fs::read(&path).map_err(|e| format!("read spec: {e}"))?;
    let Ok(mut spec) = serde_json::from_slice::<Value>(&original) else {
        return Ok(None);
    };
    let limit = match spec["linux"]["resources"]["pids"]["limit"].as_i64() {
        Some(n) if n > 0 && n < CREATE_PIDS => n,
        _ => return Ok(None),
    };
    spec["linux"]["resources"]["pids"]["limit"] = json!(CREATE_PIDS);
    fs::write(&path, spec.to_string()).map_err(|e| format!("write spec: {e}"))?;
    Ok(Some(TightPids { limit, original }))
}

impl TightPids {
    fn restore_spec(&self, bundle: &Path) {
        let _ = fs::write(bundle.join("config.json"), &self.original);
    }

    /// Writes the real limit into the container's pids cgroup (v1 or v2).
    fn apply(&self, bundle: &Path) -> Result<(), String> {
        let rel = cgroups_path_of(bundle);
        let rel = rel.trim_start_matches('/');
        let root = Path::new("/sys/fs/cgroup");
        let file = if root.join("cgroup.controllers").exists() {
            root.join(rel).join("pids.max")
        } else {
            root.join("pids").join(rel).join("pids.max")
        };
        fs::write(&file, self.limit.to_string())
            .map_err(|e| format!("write {}: {e}", file.display()))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Created,
    Running,
    Exited,
}

#[derive(PartialEq, Eq)]
enum Kind {
    Request,
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Wait,
    Done,
}

struct Client {
    sock: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_off: usize,
    kind: Kind,
    read_closed: bool,
    close_after_flush: bool,
    dead: bool,
}

impl Client {
    fn pending(&self) -> usize {
        self.out.len() - self.out_off
    }

    fn queue(&mut self, data: &[u8]) {
        if self.dead {
            return;
        }
        if self.pending() + data.len() > MAX_CLIENT_BACKLOG {
            self.dead = true;
            return;
        }
        self.out.extend_from_slice(data);
        self.flush();
    }

    fn reply(&mut self, v: &impl serde::Serialize) {
        let mut line = serde_json::to_string(v).unwrap_or_default();
        line.push('\n');
        self.queue(line.as_bytes());
    }

    fn flush(&mut self) {
        while self.out_off < self.out.len() && !self.dead {
            match self.sock.write(&self.out[self.out_off..]) {
                Ok(0) => self.dead = true,
                Ok(n) => self.out_off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.dead = true,
            }
        }
        if self.out_off == self.out.len() {
            self.out.clear();
            self.out_off = 0;
        } else if self.out_off > READ_CHUNK {
            self.out.drain(..self.out_off);
            self.out_off = 0;
        }
    }

    fn finished(&self) -> bool {
        self.dead || (self.close_after_flush && self.pending() == 0)
    }
}

struct Shim {
    opts: ShimOptions,
    init_pid: i32,
    status: Status,
    cgroups_path: String,
    /// stdout pipe, or the pty master for a TTY container.
    out: Option<File>,
    err: Option<File>,
    /// Where client stdin goes: the stdin pipe, or a dup of the pty master.
    stdin: Option<File>,
    master: Option<RawFd>,
    stdin_buf: Vec<u8>,
    stdin_close: bool,
    listener: Option<UnixListener>,
    clients: Vec<Client>,
    /// The json-file log; an exec has none (Docker does not log exec output).
    log: Option<JsonLog>,
    /// Exec mode: output stays in the pipes until the first attach.
    hold_output: bool,
    sfd: SignalFd,
    /// Readable when init exits. Needed because libcontainer clones init with CLONE_PARENT and
    /// exit_signal 0: until it execs, its death raises no SIGCHLD.
    pidfd: Option<OwnedFd>,
    exit_code: Option<i32>,
    exited_at: Option<Instant>,
    finished_at: Option<String>,
    done: Option<Instant>,
    exit: Option<ExitStatus>,
    /// A request ran since the last drop_code_pages().
    code_touched: bool,
    /// inotify on the container's v2 `memory.events`: an OOM kill is seen as it happens, as a
    /// systemd scope's cgroup (and its counters) goes away once its last process is gone.
    oom_watch: Option<OwnedFd>,
    oom_seen: bool,
}

fn set_nonblocking(fd: RawFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        );
    }
}

/// libcontainer 0.7 mounts binds with open_tree/move_mount and leaves their propagation as
/// inherited (slave of the host's, from the rslave root). The spec's per-mount mode (Docker's
/// `rprivate` unless `-v …:rshared`, `:rslave`, …) is applied here, in the created container's
/// mount namespace before its process starts, as runc applies it after each mount.
fn apply_bind_propagation(bundle: &Path, init_pid: i32) -> Result<(), String> {
    use nix::mount::MsFlags as F;
    let spec: Value = fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or(Value::Null);
    let mut todo: Vec<(std::ffi::CString, F)> = Vec::new();
    for m in spec["mounts"].as_array().into_iter().flatten() {
        let opts: Vec<&str> = m["options"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if m["type"] != "bind" && !opts.iter().any(|o| *o == "bind" || *o == "rbind") {
            continue;
        }
        // Nothing mounts on a file: the /etc/hosts family costs no extra process.
        let src = m["source"].as_str().unwrap_or("");
        if fs::metadata(src).is_ok_and(|md| !md.is_dir()) {
            continue;
        }
        let mut flags = F::empty();
        for o in &opts {
            flags |= match *o {
                "private" => F::MS_PRIVATE,
                "rprivate" => F::MS_PRIVATE | F::MS_REC,
                "shared" => F::MS_SHARED,
                "rshared" => F::MS_SHARED | F::MS_REC,
                "slave" => F::MS_SLAVE,
                "rslave" => F::MS_SLAVE | F::MS_REC,
                "unbindable" => F::MS_UNBINDABLE,
                "runbindable" => F::MS_UNBINDABLE | F::MS_REC,
                _ => F::empty(),
            };
        }
        let dest = m["destination"].as_str().unwrap_or("");
        if flags.is_empty() || dest.is_empty() {
            continue;
        }
        let dest = std::ffi::CString::new(dest).map_err(|e| e.to_string())?;
        todo.push((dest, flags));
    }
    if todo.is_empty() {
        return Ok(());
    }
    let ns = File::open(format!("/proc/{init_pid}/ns/mnt"))
        .map_err(|e| format!("bind propagation: open mount namespace: {e}"))?;
    // A child of its own joins the namespace (setns needs an unshared fs struct) and does only
    // syscalls; errno comes back as the exit status.
    // SAFETY: the child makes only async-signal-safe calls (setns, mount, _exit).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: raw syscalls on valid fds and NUL-terminated strings, then _exit.
            unsafe {
                if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
                    libc::_exit(*libc::__errno_location() & 0x7f | 0x80);
                }
                for (dest, flags) in &todo {
                    let r = libc::mount(
                        std::ptr::null(),
                        dest.as_ptr(),
                        std::ptr::null(),
                        flags.bits(),
                        std::ptr::null(),
                    );
                    if r != 0 {
                        libc::_exit(*libc::__errno_location() & 0x7f);
                    }
                }
                libc::_exit(0);
            }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
                Ok(WaitStatus::Exited(_, code)) => {
                    let what = if code & 0x80 != 0 { "setns" } else { "mount" };
                    return Err(format!(
                        "bind propagation: {what}: {}",
                        nix::errno::Errno::from_raw(code & 0x7f)
                    ));
                }
                Err(nix::errno::Errno::EINTR) => continue,
                other => return Err(format!("bind propagation: {other:?}")),
            }
        },
        Err(e) => Err(format!("bind propagation: fork: {e}")),
    }
}

pub(crate) fn cgroups_path_of(bundle: &Path) -> String {
    crate::cgroup::cgroups_path_of(bundle)
}

/// Receives the pty master that libcontainer sends over the console socket.
/// Binds `name` in the current directory (the runtime dir, whatever its length: the name is
/// relative) for the shim's user alone, whatever the daemon's umask: whoever connects may
/// attach to, signal or hand a terminal to the container. The umask is process-wide; the
/// shim has no other thread creating files now, and restores it at once (the container's
/// process must get the usual one).
fn bind_private(name: &str) -> io::Result<UnixListener> {
    let _ = fs::remove_file(name);
    // SAFETY: umask only swaps the process's file mode mask.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(name);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    l
}

fn receive_master(listener: &UnixListener) -> Result<OwnedFd, String> {
    set_nonblocking(listener.as_raw_fd());
    let deadline = Instant::now() + Duration::from_secs(10);
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(format!("console socket: {e}")),
        }
    };
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("console socket: {e}"))?;
    for c in msg.cmsgs().map_err(|e| format!("console socket: {e}"))? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: SCM_RIGHTS just installed this fd in our table; nobody else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err("console socket: no pty master received".into())
}

/// `consoleSize` of an exec's process.json.
fn exec_console_size(dir: &Path) -> Option<(u16, u16)> {
    let v: Value =
        serde_json::from_slice(&fs::read(dir.join(crate::exec::PROCESS_FILE)).ok()?).ok()?;
    let h = v["consoleSize"]["height"].as_u64()?;
    let w = v["consoleSize"]["width"].as_u64()?;
    Some((h.min(u16::MAX as u64) as u16, w.min(u16::MAX as u64) as u16))
}

fn set_winsize(fd: RawFd, height: u16, width: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer; fd is an open pty master.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An inotify fd that is readable when the v2 cgroup's `memory.events` changes (None on v1, or
/// when the cgroup has no memory controller).
fn watch_memory_events(cgroups_path: &str) -> Option<OwnedFd> {
    use std::os::unix::ffi::OsStringExt;
    let cg = crate::cgroup::ContainerCgroup::from_cgroups_path(cgroups_path)?;
    if !cg.is_v2() {
        return None;
    }
    let file = std::ffi::CString::new(cg.dir("").join("memory.events").into_os_string().into_vec())
        .ok()?;
    // SAFETY: inotify_init1 takes flags and returns a new fd or -1.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a new fd the kernel handed us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: fd is our inotify fd; file is a NUL-terminated path that outlives the call.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), file.as_ptr(), libc::IN_MODIFY) };
    (wd >= 0).then_some(fd)
}

fn open_pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: on success the fd is new and ours.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Unmaps file pages that only container creation (or start) used: libcontainer, libseccomp,
/// serde of the spec... Only read-only file mappings without private (anonymous) pages are
/// touched, so nothing is lost: whatever the poll loop needs faults back in from the page
/// cache, and the shim's RSS becomes its real working set.
fn drop_code_pages() {
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some((a, b)) = first.split_once('-') {
            let perms = f.next().unwrap_or("");
            let path = f.nth(3).unwrap_or("");
            current = None;
            if perms.starts_with('r')
                && perms.as_bytes().get(1) == Some(&b'-')
                && path.starts_with('/')
            {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    current = Some((a, b - a));
                }
            }
        } else if first == "Anonymous:" {
            if let (Some(r), Some("0")) = (current.take(), f.next()) {
                ranges.push(r);
            }
        }
    }
    drop(smaps);
    // Parse first, unmap last: code that runs after the madvise calls faults back in.
    for &(addr, len) in &ranges {
        // SAFETY: a private, read-only file mapping with no private pages:
        // MADV_DONTNEED only drops page-table entries; contents come back from the file.
        unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    }
}

/// Real-time signals back to SIG_DFL, through the raw syscall because glibc refuses to touch
/// 32 and 33 (its own), which a posix_spawn()ed parent can leave ignored.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn reset_rt_signals() {
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let act = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 32..=64 {
        // SAFETY: rt_sigaction with a valid kernel sigaction and 8-byte mask; no handler code.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &act as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn reset_rt_signals() {}

/// Creates the container and serves it until it exits. Returns the process exit code.
pub(crate) fn run(opts: ShimOptions, ready: Option<OwnedFd>) -> i32 {
    let shim = match create(opts.clone()) {
        Ok(s) => s,
        Err(e) => {
            delete_container_state(&opts.state_root, &opts.id);
            let _ = fs::remove_file(opts.runtime_dir.join(CONSOLE_SOCK));
            report(ready, Err(e));
            return 1;
        }
    };
    let mut shim = shim;
    if let Err(e) = shim.listen() {
        delete_container_state(&shim.opts.state_root, &shim.opts.id);
        report(ready, Err(e.into()));
        return 1;
    }
    report(ready, Ok((std::process::id() as i32, shim.init_pid)));
    shim.serve();
    0
}

fn create(opts: ShimOptions) -> Result<Shim, Failure> {
    macro_rules! fail {
        ($e:expr) => {{
            return Err(Failure::from($e));
        }};
    }
    // libcontainer clones init with CLONE_PARENT, so it is our child; being a subreaper also
    // hands us anything else that libcontainer's intermediate process leaves behind.
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // A relative bind path keeps the console socket under the 108-byte sun_path limit.
    if let Err(e) = std::env::set_current_dir(&opts.runtime_dir) {
        fail!(format!("chdir {}: {e}", opts.runtime_dir.display()));
    }
    let log = if opts.exec.is_some() {
        None
    } else {
        let opened = match opts.log_format {
            _ if opts.log_path.as_os_str().is_empty() => Ok(None),
            super::LogFormat::Cri => JsonLog::open_cri(&opts.log_path).map(Some),
            super::LogFormat::JsonFile => {
                JsonLog::open(&opts.log_path, opts.log_max_size, opts.log_max_file).map(Some)
            }
        };
        match opened {
            Ok(l) => l,
            Err(e) => fail!(format!("open log {}: {e}", opts.log_path.display())),
        }
    };
    // init is cloned from us and keeps ignored dispositions across exec: the Rust runtime
    // ignores SIGPIPE and the daemon may ignore others. Containers start with the defaults.
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: SIG_DFL installs no handler code.
            let _ = unsafe { signal::signal(sig, signal::SigHandler::SigDfl) };
        }
    }
    reset_rt_signals();
    let faults = FaultPipe::new()?;
    let builder = match ContainerBuilder::new(opts.id.clone(), SyscallType::default())
        .with_root_path(&opts.state_root)
    {
        Ok(b) => b,
        Err(e) => return Err(Failure::runtime(e, &faults)),
    };
    let pipe =
        || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
    let mut console = None;
    let (mut out, mut err, mut stdin) = (None, None, None);
    let builder = if opts.tty {
        match bind_private(CONSOLE_SOCK) {
            Ok(l) => console = Some(l),
            Err(e) => fail!(format!("console socket: {e}")),
        }
        builder.with_console_socket(Some(opts.runtime_dir.join(CONSOLE_SOCK)))
    } else {
        // Always pipes: libcontainer mishandles a host /dev/null as the container's stdio.
        let ((or, ow), (er, ew), (ir, iw)) = match (pipe(), pipe(), pipe()) {
            (Ok(o), Ok(e), Ok(i)) => (o, e, i),
            _ => fail!("pipe: too many open files".to_string()),
        };
        out = Some(File::from(or));
        err = Some(File::from(er));
        // Without open_stdin the container reads EOF at once, as with Docker.
        if opts.open_stdin {
            stdin = Some(File::from(iw));
        }
        builder.with_stdin(ir).with_stdout(ow).with_stderr(ew)
    };
    // An exec runs as soon as it is built: take the pty master on a thread while building,
    // so the console size is set before the process gets far (libcontainer ignores it).
    let mut master_thread = None;
    if opts.exec.is_some() {
        if let Some(l) = console.take() {
            let size = exec_console_size(&opts.runtime_dir);
            master_thread = Some(std::thread::spawn(move || {
                let m = receive_master(&l)?;
                if let Some((h, w)) = size {
                    let _ = set_winsize(m.as_raw_fd(), h, w);
                }
                Ok::<OwnedFd, String>(m)
            }));
        }
    }
    let init_pid = if let Some(exec) = &opts.exec {
        let filter = if exec.privileged {
            None
        } else {
            exec_filter(&opts.bundle)
        };
        let built = builder
            .with_executor(ShimExecutor {
                filter,
                fault_fd: faults.writer(),
            })
            .as_tenant()
            .with_process(Some(opts.runtime_dir.join(crate::exec::PROCESS_FILE)))
            .with_detach(true)
            .build();
        match built {
            Ok(pid) => pid.as_raw(),
            Err(e) => {
                if let Some(t) = master_thread.take() {
                    // Wake the thread's accept; it then fails without a master.
                    let _ = std::os::unix::net::UnixStream::connect(CONSOLE_SOCK);
                    let _ = t.join();
                }
                return Err(Failure::runtime(e, &faults));
            }
        }
    } else {
        apply_oom_score_adj(&opts.bundle)?;
        // Rootless too: in a delegated subtree (elsewhere the create fails and libcontainer
        // leaves the container in the daemon's cgroup).
        if let Some(cg) = crate::cgroup::ContainerCgroup::of_bundle(&opts.bundle) {
            cg.create_parent();
        }
        let tight_pids = match relax_pids_limit(&opts.bundle) {
            Ok(t) => t,
            Err(e) => fail!(e),
        };
        let container = builder
            .with_executor(ShimExecutor {
                filter: None,
                fault_fd: faults.writer(),
            })
            .as_init(&opts.bundle)
            // A systemd cgroupsPath (<slice>:<prefix>:<name>) makes libcontainer ask systemd
            // for the scope; an absolute one is a cgroupfs path.
            .with_systemd(!cgroups_path_of(&opts.bundle).starts_with('/'))
            .with_detach(true)
            .build();
        if let Some(t) = &tight_pids {
            t.restore_spec(&opts.bundle);
        }
        let container = match container {
            Ok(c) => c,
            Err(e) => return Err(Failure::runtime(e, &faults)),
        };
        if let Some(t) = tight_pids {
            if let Err(e) = t.apply(&opts.bundle) {
                if let Some(pid) = container.pid() {
                    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                }
                fail!(e)
            }
        }
        let Some(init_pid) = container.pid().map(|p| p.as_raw()) else {
            fail!("container has no init process".to_string());
        };
        if let Err(e) = apply_bind_propagation(&opts.bundle, init_pid) {
            let _ = nix::sys::signal::kill(Pid::from_raw(init_pid), Signal::SIGKILL);
            fail!(e)
        }
        // What libcontainer leaves undone on v2 (device filter, IO weights), before start.
        let after = oci_spec::runtime::Spec::load(opts.bundle.join("config.json"))
            .map_err(|e| e.to_string())
            .and_then(|spec| crate::cgroup::after_create(&spec).map_err(|e| e.to_string()));
        if let Err(e) = after {
            let _ = nix::sys::signal::kill(Pid::from_raw(init_pid), Signal::SIGKILL);
            fail!(e)
        }
        init_pid
    };
    let mut master = None;
    let received = match (console, master_thread) {
        (Some(l), _) => Some(receive_master(&l)),
        (None, Some(t)) => Some(
            t.join()
                .unwrap_or_else(|_| Err("console socket: receiver failed".to_string())),
        ),
        (None, None) => None,
    };
    if let Some(received) = received {
        let m = match received {
            Ok(m) => File::from(m),
            Err(e) => fail!(e),
        };
        let _ = fs::remove_file(CONSOLE_SOCK);
        if opts.open_stdin {
            match m.try_clone() {
                Ok(s) => stdin = Some(s),
                Err(e) => fail!(format!("dup pty: {e}")),
            }
        }
        master = Some(m.as_raw_fd());
        out = Some(m);
    }
    // SIGCHLD is blocked only now: init was cloned before, so it does not inherit the mask.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    if let Err(e) = mask.thread_block() {
        fail!(format!("sigprocmask: {e}"));
    }
    let sfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => fail!(format!("signalfd: {e}")),
    };
    // A gone client must surface as EPIPE, not kill the shim.
    // SAFETY: setting a disposition to SIG_IGN runs no handler code.
    unsafe {
        let _ = signal::signal(Signal::SIGPIPE, signal::SigHandler::SigIgn);
    }
    for f in [&out, &err, &stdin].into_iter().flatten() {
        set_nonblocking(f.as_raw_fd());
    }
    // libcontainer's allocations are dead weight from here on; hand them back to the OS.
    // SAFETY: glibc call without preconditions.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
    drop_code_pages();
    let cgroups_path = cgroups_path_of(&opts.bundle);
    let mut shim = Shim {
        hold_output: opts.exec.as_ref().is_some_and(|e| e.hold_output),
        status: if opts.exec.is_some() {
            Status::Running
        } else {
            Status::Created
        },
        opts,
        init_pid,
        cgroups_path,
        out,
        err,
        stdin,
        master,
        stdin_buf: Vec::new(),
        stdin_close: false,
        listener: None,
        clients: Vec::new(),
        log,
        sfd,
        pidfd: open_pidfd(init_pid),
        exit_code: None,
        exited_at: None,
        finished_at: None,
        done: None,
        exit: None,
        code_touched: false,
        oom_watch: None,
        oom_seen: false,
    };
    if shim.opts.exec.is_none() {
        shim.oom_watch = watch_memory_events(&shim.cgroups_path);
    }
    // init may already have died before SIGCHLD was blocked.
    shim.reap();
    Ok(shim)
}

impl Shim {
    fn listen(&mut self) -> Result<(), String> {
        let l = bind_private(SOCK).map_err(|e| format!("listen {SOCK}: {e}"))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        self.listener = Some(l);
        // Exec-root files are not fsynced (see `spawn_shim`): no reboot keeps a shim.
        write_replace(
            &self.opts.runtime_dir.join(PIDFILE),
            std::process::id().to_string().as_bytes(),
        )
        .map_err(|e| format!("write {PIDFILE}: {e}"))?;
        Ok(())
    }

    fn serve(&mut self) {
        enum Tag {
            Sig,
            Pidfd,
            Oom,
            Listen,
            Out,
            Err,
            Stdin,
            Client(usize),
        }
        loop {
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(8 + self.clients.len());
            let mut tags = Vec::with_capacity(fds.capacity());
            let mut add = |fd: RawFd, events: i16, tag: Tag| {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                tags.push(tag);
            };
            add(self.sfd.as_fd().as_raw_fd(), libc::POLLIN, Tag::Sig);
            if let (Some(p), None) = (&self.pidfd, self.exit_code) {
                add(p.as_raw_fd(), libc::POLLIN, Tag::Pidfd);
            }
            if let Some(w) = &self.oom_watch {
                add(w.as_raw_fd(), libc::POLLIN, Tag::Oom);
            }
            if let Some(l) = &self.listener {
                add(l.as_raw_fd(), libc::POLLIN, Tag::Listen);
            }
            if !self.hold_output {
                if let Some(f) = &self.out {
                    add(f.as_raw_fd(), libc::POLLIN, Tag::Out);
                }
                if let Some(f) = &self.err {
                    add(f.as_raw_fd(), libc::POLLIN, Tag::Err);
                }
            }
            if let Some(f) = &self.stdin {
                if !self.stdin_buf.is_empty() {
                    add(f.as_raw_fd(), libc::POLLOUT, Tag::Stdin);
                }
            }
            let stdin_room = self.stdin_buf.len() < MAX_STDIN_BUF;
            for (i, c) in self.clients.iter().enumerate() {
                let mut ev = 0;
                let wants_read = match c.kind {
                    Kind::Attach { .. } => stdin_room,
                    _ => true,
                };
                if !c.read_closed && wants_read {
                    ev |= libc::POLLIN;
                }
                if c.pending() > 0 {
                    ev |= libc::POLLOUT;
                }
                add(c.sock.as_raw_fd(), ev, Tag::Client(i));
            }
            // Requests fault in code (serde, libcontainer's start): once the last client is
            // gone, unmap it again so an idle shim keeps only its poll loop resident.
            if self.code_touched && self.clients.is_empty() && self.exit_code.is_none() {
                self.code_touched = false;
                drop_code_pages();
            }
            let timeout = if self.done.is_some() {
                100
            } else if self.exit_code.is_some() {
                20
            } else if self.pidfd.is_none() {
                // No pidfd (kernel < 5.3): poll for an exit SIGCHLD would not announce.
                500
            } else {
                -1
            };
            // SAFETY: fds is a valid, exclusively borrowed array of pollfd.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break;
            }
            for (pfd, tag) in fds.iter().zip(tags) {
                if pfd.revents == 0 {
                    continue;
                }
                match tag {
                    Tag::Sig => {
                        while let Ok(Some(_)) = self.sfd.read_signal() {}
                        self.reap();
                    }
                    Tag::Pidfd => self.reap(),
                    Tag::Oom => self.memory_event(),
                    Tag::Listen => self.accept(),
                    Tag::Out => self.pump(1),
                    Tag::Err => self.pump(2),
                    Tag::Stdin => self.write_stdin(),
                    Tag::Client(i) => self.client_event(i, pfd.revents),
                }
            }
            if self.stdin_close && self.stdin_buf.is_empty() {
                self.close_stdin();
            }
            if let (Some(at), None) = (self.exited_at, self.done) {
                // Held output waits for its client a while after the exit, then goes.
                if self.hold_output && at.elapsed() > HOLD_TIMEOUT {
                    self.hold_output = false;
                }
                let drained = self.out.is_none() && self.err.is_none();
                if !self.hold_output && (drained || at.elapsed() > DRAIN_TIMEOUT) {
                    self.finish();
                }
            }
            // After `finish`, which usually flushes every client at once: a client whose last
            // bytes are out is closed now, not after another poll's timeout (that was 100 ms on
            // the tail of every exec and every attached run).
            self.clients.retain(|c| !c.finished());
            if let Some(done) = self.done {
                if self.clients.is_empty() || done.elapsed() > FLUSH_TIMEOUT {
                    break;
                }
            }
        }
    }

    /// `memory.events` changed: drain the inotify fd and look for an OOM kill.
    fn memory_event(&mut self) {
        if let Some(w) = &self.oom_watch {
            let mut buf = [0u8; 1024];
            // SAFETY: reads into a buffer we own, of its length, from our nonblocking fd.
            while unsafe { libc::read(w.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        }
        if !self.oom_seen && self.oom_killed() {
            self.oom_seen = true;
        }
        if self.exit_code.is_some() {
            // The cgroup may go now (a systemd scope): nothing more to watch.
            self.oom_watch = None;
        }
    }

    fn reap(&mut self) {
        loop {
            // __WALL: init is a "clone" child (exit_signal 0) until it execs.
            match waitpid(
                Pid::from_raw(-1),
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
            ) {
                Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == self.init_pid => {
                    self.on_exit(code)
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == self.init_pid => {
                    self.on_exit(128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
    }

    fn on_exit(&mut self, code: i32) {
        if self.exit_code.is_none() {
            // Before the cgroup can go (see `oom_watch`).
            self.oom_seen = self.oom_seen || self.oom_killed();
            self.exit_code = Some(code);
            self.exited_at = Some(Instant::now());
            self.finished_at = Some(now_rfc3339_nano());
            self.status = Status::Exited;
        }
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        loop {
            match l.accept() {
                Ok((sock, _)) => {
                    let _ = sock.set_nonblocking(true);
                    self.clients.push(Client {
                        sock,
                        inbuf: Vec::new(),
                        out: Vec::new(),
                        out_off: 0,
                        kind: Kind::Request,
                        read_closed: false,
                        close_after_flush: false,
                        dead: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    /// Reads container output, logs it and fans it out to attached clients.
    fn pump(&mut self, stream: u8) {
        let mut buf = vec![0u8; READ_CHUNK];
        // Bounded per wakeup so a chatty container cannot starve the socket.
        for _ in 0..8 {
            let src = if stream == 1 {
                &mut self.out
            } else {
                &mut self.err
            };
            let Some(f) = src.as_mut() else { return };
            match f.read(&mut buf) {
                Ok(0) => {
                    *src = None;
                    return;
                }
                Ok(n) => self.deliver(stream, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EIO: the last pty slave is closed.
                Err(_) => {
                    *src = None;
                    return;
                }
            }
        }
    }

    fn deliver(&mut self, stream: u8, data: &[u8]) {
        if let Some(log) = self.log.as_mut() {
            log.write(stream, data);
        }
        let mut frame = Vec::with_capacity(8 + data.len());
        frame.extend_from_slice(&[stream, 0, 0, 0]);
        frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
        frame.extend_from_slice(data);
        for c in &mut self.clients {
            if let Kind::Attach { stdout, stderr, .. } = c.kind {
                if (stream == 1 && stdout) || (stream == 2 && stderr) {
                    c.queue(&frame);
                }
            }
        }
    }

    fn write_stdin(&mut self) {
        let Some(f) = self.stdin.as_mut() else {
            self.stdin_buf.clear();
            return;
        };
        while !self.stdin_buf.is_empty() {
            match f.write(&self.stdin_buf) {
                Ok(n) => {
                    self.stdin_buf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The container closed its stdin.
                    self.stdin = None;
                    self.stdin_buf.clear();
                    return;
                }
            }
        }
    }

    fn close_stdin(&mut self) {
        self.stdin_close = false;
        if let Some(mut f) = self.stdin.take() {
            if self.opts.tty {
                // The pty master is also the output: send EOF (^D) rather than close it.
                let _ = f.write(&[4]);
            }
        }
    }

    fn client_event(&mut self, i: usize, revents: i16) {
        if revents & libc::POLLOUT != 0 {
            self.clients[i].flush();
        }
        // Fully closed peer (POLLHUP is reported whatever we ask for): once its last bytes
        // were read, drop it, or poll would spin on it.
        if revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
            && self.clients[i].read_closed
        {
            self.clients[i].dead = true;
            return;
        }
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
            && !self.clients[i].read_closed
        {
            let mut buf = vec![0u8; READ_CHUNK];
            let c = &mut self.clients[i];
            match c.sock.read(&mut buf) {
                Ok(0) => {
                    c.read_closed = true;
                    // Closed before sending a whole request.
                    if c.kind == Kind::Request {
                        c.dead = true;
                    }
                    if let Kind::Attach { stdin: true, .. } = c.kind {
                        // Docker's rule: StdinOnce closes stdin when its attach ends, but
                        // not for a TTY, whose attach may end by a detach.
                        if self.opts.stdin_once && !self.opts.tty {
                            self.stdin_close = true;
                        }
                    }
                }
                Ok(n) => self.client_data(i, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => c.dead = true,
            }
        }
    }

    fn client_data(&mut self, i: usize, data: &[u8]) {
        match self.clients[i].kind {
            Kind::Request => {
                let c = &mut self.clients[i];
                c.inbuf.extend_from_slice(data);
                let Some(nl) = c.inbuf.iter().position(|&b| b == b'\n') else {
                    if c.inbuf.len() > 64 << 10 {
                        c.dead = true;
                    }
                    return;
                };
                let line: Vec<u8> = c.inbuf.drain(..=nl).collect();
                let rest = std::mem::take(&mut c.inbuf);
                self.request(i, &line);
                if !rest.is_empty() {
                    self.client_data(i, &rest);
                }
            }
            Kind::Attach { stdin: true, .. } if self.stdin.is_some() && !self.stdin_close => {
                self.stdin_buf.extend_from_slice(data);
                self.write_stdin();
            }
            // Anything else a client sends after its request is ignored.
            _ => {}
        }
    }

    fn request(&mut self, i: usize, line: &[u8]) {
        self.code_touched = true;
        let req: ShimRequest = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                let c = &mut self.clients[i];
                c.reply(&ShimReply::err(
                    ShimErrorKind::InvalidRequest,
                    format!("invalid request: {e}"),
                ));
                c.kind = Kind::Done;
                c.close_after_flush = true;
                return;
            }
        };
        let reply: Option<Value> = match req {
            ShimRequest::Start => Some(json!(self.op_start())),
            ShimRequest::Attach {
                stdin,
                stdout,
                stderr,
            } => {
                let c = &mut self.clients[i];
                c.kind = Kind::Attach {
                    stdin: stdin && self.opts.open_stdin,
                    stdout,
                    stderr,
                };
                c.reply(&ShimReply::ok());
                self.hold_output = false;
                if self.done.is_some() {
                    c.close_after_flush = true;
                }
                return;
            }
            ShimRequest::Wait => match &self.exit {
                Some(e) => Some(json!(e)),
                None => {
                    self.clients[i].kind = Kind::Wait;
                    return;
                }
            },
            ShimRequest::Kill { signal } => Some(json!(self.op_kill(signal))),
            ShimRequest::Resize { height, width } => Some(json!(self.op_resize(height, width))),
            ShimRequest::ReopenLog => Some(json!(match self.log.as_mut().map(|l| l.reopen()) {
                Some(Ok(())) => ShimReply::ok(),
                Some(Err(e)) => ShimReply::err(ShimErrorKind::Internal, format!("reopen log: {e}")),
                None => ShimReply::err(ShimErrorKind::NoLog, "the container has no log file"),
            })),
            ShimRequest::State => {
                let status = match self.status {
                    Status::Created => ProcessStatus::Created,
                    Status::Running => ProcessStatus::Running,
                    Status::Exited => ProcessStatus::Exited,
                };
                Some(json!(ShimState {
                    pid: self.init_pid,
                    status,
                    exit_code: self.exit_code,
                }))
            }
        };
        let c = &mut self.clients[i];
        if let Some(r) = reply {
            c.reply(&r);
        }
        c.kind = Kind::Done;
        c.close_after_flush = true;
    }

    fn op_start(&mut self) -> ShimReply {
        if self.status != Status::Created {
            return if self.status == Status::Exited {
                ShimReply::err(
                    ShimErrorKind::NotRunning,
                    format!("container {} is not running", self.opts.id),
                )
            } else {
                ShimReply::err(
                    ShimErrorKind::AlreadyRunning,
                    format!("container {} is already running", self.opts.id),
                )
            };
        }
        let res =
            Container::load(self.opts.state_root.join(&self.opts.id)).and_then(|mut c| c.start());
        match res {
            Ok(()) => {
                self.status = Status::Running;
                ShimReply::ok()
            }
            Err(e) => ShimReply::start_failed(
                StartFault::of_error(&e),
                format!("OCI runtime start failed: {e}"),
            ),
        }
    }

    fn op_kill(&mut self, sig: i64) -> ShimReply {
        if self.exit_code.is_some() {
            return ShimReply::err(
                ShimErrorKind::NotRunning,
                format!("container {} is not running", self.opts.id),
            );
        }
        let sig = match i32::try_from(sig)
            .ok()
            .and_then(|s| Signal::try_from(s).ok())
        {
            Some(s) => s,
            None => {
                return ShimReply::err(
                    ShimErrorKind::InvalidSignal,
                    format!("invalid signal: {sig}"),
                )
            }
        };
        match signal::kill(Pid::from_raw(self.init_pid), sig) {
            Ok(()) => ShimReply::ok(),
            Err(e) => ShimReply::err(ShimErrorKind::Internal, format!("kill: {e}")),
        }
    }

    fn op_resize(&mut self, height: u64, width: u64) -> ShimReply {
        let Some(fd) = self.master.filter(|_| self.out.is_some()) else {
            return ShimReply::err(ShimErrorKind::NoTty, "container has no tty");
        };
        let ws = libc::winsize {
            ws_row: height.min(u16::MAX as u64) as u16,
            ws_col: width.min(u16::MAX as u64) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer; fd is our open pty master.
        let r = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
        if r < 0 {
            ShimReply::err(
                ShimErrorKind::Internal,
                io::Error::last_os_error().to_string(),
            )
        } else {
            ShimReply::ok()
        }
    }

    /// Memory cgroup reports an OOM kill (v1 memory.oom_control or v2 memory.events).
    fn oom_killed(&self) -> bool {
        if self.opts.exec.is_some() {
            return false;
        }
        self.oom_seen
            || crate::cgroup::ContainerCgroup::from_cgroups_path(&self.cgroups_path)
                .is_some_and(|cg| cg.oom_killed())
    }

    /// The container is gone: record, clean up, tell everyone, and get ready to exit.
    fn finish(&mut self) {
        // Whatever is still buffered in the pipes.
        self.pump(1);
        self.pump(2);
        self.out = None;
        self.err = None;
        self.stdin = None;
        if let Some(log) = self.log.as_mut() {
            log.flush_partial();
        }
        let exit = ExitStatus {
            exit_code: self.exit_code.unwrap_or(-1),
            finished_at: self.finished_at.clone().unwrap_or_else(now_rfc3339_nano),
            oom_killed: self.oom_killed(),
        };
        let data = serde_json::to_vec(&exit).unwrap_or_default();
        // No fsync: exit.json must outlive the daemon (the page cache keeps it), not a reboot,
        // which ends the container anyway; the daemon copies the exit into its durable record.
        if let Err(e) = write_replace(&self.opts.runtime_dir.join(EXITFILE), &data) {
            eprintln!("berth shim: write {EXITFILE}: {e}");
        }
        let reply = json!(exit);
        self.exit = Some(exit);
        // Before anyone hears of the exit: a waiter may start the container again at once
        // (restart, a restart policy), and its new shim creates state and cgroups under the
        // same names, which a teardown after the reply would delete from under it.
        if self.opts.exec.is_none() {
            delete_container_state(&self.opts.state_root, &self.opts.id);
            remove_cgroup_dirs(&self.cgroups_path);
        }
        for c in &mut self.clients {
            match c.kind {
                Kind::Wait => {
                    c.reply(&reply);
                    c.close_after_flush = true;
                }
                Kind::Attach { .. } => c.close_after_flush = true,
                _ => {}
            }
            c.flush();
        }
        // Serve whoever already connected; later connects fail and read exit.json instead.
        self.accept();
        self.listener = None;
        let _ = fs::remove_file(self.opts.runtime_dir.join(SOCK));
        let _ = fs::remove_file(self.opts.runtime_dir.join(PIDFILE));
        self.done = Some(Instant::now());
    }
}
