//! Rootless mode: `berth daemon` started by an ordinary user.
//!
//! The shape is rootlesskit's: the process the user started (the *outer* process) stays in the
//! host's namespaces, checks the prerequisites, and re-executes the same binary as the *inner*
//! daemon in a new user namespace. The outer process writes the inner one's uid/gid maps with
//! the setuid `newuidmap`/`newgidmap` (the user's own id as 0, the `/etc/subuid` and
//! `/etc/subgid` ranges as 1..); the inner daemon then becomes 0 in that namespace, unshares a
//! mount, network and cgroup namespace, and runs the ordinary engine code: there it is "root"
//! over everything it made, and the kernel keeps it the user everywhere else.
//!
//! [`Mode::current`] is the one place that tells the rest of the code whether it runs rootless;
//! [`Cgroups::probe`] says which cgroup controllers it may use there (spec generation drops the
//! limits of the others, the engine warns about them).
//!
//! Cgroups: on a cgroup v2 host with a systemd user manager, the outer process asks that
//! manager (D-Bus, `StartTransientUnit`) for a scope with `Delegate=yes` holding the namespace
//! holder, before the holder makes its cgroup namespace: the scope is then the root of the
//! daemon's `/sys/fs/cgroup`. The holder moves into the leaf `/daemon` (cgroup v2 allows no
//! processes in a cgroup that hands controllers to its children), where each daemon and its
//! shims join it; it enables the delegated controllers in the scope's `cgroup.subtree_control`,
//! and containers get cgroupfs cgroups `/berth/<id>` beside that leaf, limits and all. A scope,
//! not the `berth.service` unit's own cgroup: systemd starts a restarted unit's process in the
//! unit's cgroup, which it cannot do while that cgroup hands controllers down (EBUSY), and
//! containers outlive daemon restarts here (live restore).

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::RuntimeError;

/// Set (to "1") in the inner daemon's environment by the outer process.
pub const INNER_ENV: &str = "_BERTH_ROOTLESS_INNER";

/// Whether this process runs as root on the host or inside a rootless user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The initial user namespace: real root, cgroups and host networking available.
    Rootful,
    /// A user namespace whose 0 is an ordinary user on the host: no cgroup limits (on this
    /// cgroup v1/hybrid host nothing is delegated), no host network configuration.
    Rootless,
}

impl Mode {
    /// Probed once per process: a uid map other than the initial namespace's identity map
    /// means a user namespace, which for Berth means rootless.
    pub fn current() -> Mode {
        static MODE: OnceLock<Mode> = OnceLock::new();
        *MODE.get_or_init(|| match std::fs::read_to_string("/proc/self/uid_map") {
            Ok(m) if is_initial_map(&m) => Mode::Rootful,
            Ok(_) => Mode::Rootless,
            Err(_) => Mode::Rootful,
        })
    }

    pub fn is_rootless(self) -> bool {
        self == Mode::Rootless
    }
}

fn is_initial_map(map: &str) -> bool {
    let f: Vec<&str> = map.split_whitespace().collect();
    f == ["0", "0", "4294967295"]
}

/// Rootless: the highest gid of the contiguous range from 0 that this user namespace maps
/// (`None` when rootful).
pub fn mapped_gid_max() -> Option<u32> {
    if !Mode::current().is_rootless() {
        return None;
    }
    let map = std::fs::read_to_string("/proc/self/gid_map").ok()?;
    let mut ranges: Vec<(u64, u64)> = map
        .lines()
        .filter_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() == 3).then(|| (f[0], f[2]))
        })
        .collect();
    ranges.sort();
    let mut top = 0u64;
    for (inside, count) in ranges {
        if inside > top {
            break;
        }
        top = top.max(inside + count);
    }
    u32::try_from(top.checked_sub(1)?).ok()
}

/// The cgroup v2 controllers that carry container limits, and the flags that need each.
pub const LIMIT_CONTROLLERS: [(&str, &str); 5] = [
    ("cpu", "--cpus, --cpu-shares, --cpu-quota"),
    ("cpuset", "--cpuset-cpus, --cpuset-mems"),
    ("io", "--blkio-weight, --device-read-bps and the like"),
    ("memory", "--memory, --memory-reservation, --memory-swap"),
    ("pids", "--pids-limit"),
];

/// The leaf cgroup of the holder, the daemon and its shims, beside the containers' `/berth`
/// in the delegated subtree (the root of the daemon's cgroup namespace).
pub const CGROUP_LEAF: &str = "daemon";

/// What the administrator runs to delegate every limit controller to users (the drop-in
/// rootless Docker documents; systemd 252 delegates only cpu, memory and pids by default).
pub const DELEGATE_FIX: &str = "as root: mkdir -p /etc/systemd/system/user@.service.d && printf \
    '[Service]\\nDelegate=cpu cpuset io memory pids\\n' > \
    /etc/systemd/system/user@.service.d/delegate.conf && systemctl daemon-reload; then log in \
    again (or restart user@UID.service)";

/// Rootless: the cgroups this daemon may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cgroups {
    /// The host mounts cgroup v2 only (no v1 hierarchies beside it).
    pub v2: bool,
    /// The controllers enabled for containers in the delegated subtree (empty: nothing is
    /// delegated, no limits).
    pub controllers: Vec<String>,
}

impl Cgroups {
    /// From this process's view (the daemon or a shim, inside the namespaces): the host's
    /// cgroup v1 mounts stay listed in mountinfo under our cgroup2 mount; a delegated subtree
    /// is one whose root (`/sys/fs/cgroup` here) hands controllers to its children while we sit
    /// in a cgroup below it.
    pub fn probe() -> Cgroups {
        let v1 = std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
            m.lines().any(|l| {
                l.split(" - ")
                    .nth(1)
                    .and_then(|t| t.split_whitespace().next())
                    == Some("cgroup")
            })
        });
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            })
            .unwrap_or_default();
        let inside = own.starts_with('/') && own != "/" && !own.starts_with("/..");
        let controllers = if inside && !v1 {
            std::fs::read_to_string("/sys/fs/cgroup/cgroup.subtree_control")
                .map(|s| s.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Cgroups {
            v2: !v1,
            controllers,
        }
    }

    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// `info`'s cgroup driver: ours inside the delegated scope, or none.
    pub fn driver(&self) -> &'static str {
        if self.controllers.is_empty() {
            "none"
        } else {
            "cgroupfs"
        }
    }

    /// The limit controllers that are not delegated.
    pub fn missing(&self) -> Vec<&'static str> {
        LIMIT_CONTROLLERS
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| !self.has(c))
            .collect()
    }

    /// The warning given (daemon log, `/info`) for the limits that are not applied, if any.
    pub fn warning(&self) -> Option<String> {
        let missing = self.missing();
        if missing.is_empty() {
            return None;
        }
        if self.controllers.is_empty() {
            let why = if self.v2 {
                "Rootless limits need a cgroup delegated by the systemd user manager: start the \
                 daemon in a systemd user session (`berth rootless setup` installs the unit)"
            } else {
                "Rootless limits need cgroup v2 with delegation (boot with \
                 systemd.unified_cgroup_hierarchy=1)"
            };
            return Some(format!(
                "Running in rootless mode without cgroups: resource limits (--memory, --cpus, \
                 --pids-limit, ...) are not supported and are not applied. {why}"
            ));
        }
        let flags: Vec<&str> = LIMIT_CONTROLLERS
            .iter()
            .filter(|(c, _)| missing.contains(c))
            .map(|(_, f)| *f)
            .collect();
        Some(format!(
            "Running in rootless mode with the cgroup controllers {} only: the {} controllers \
             are not delegated to this user, so {} are not applied. To delegate them, {DELEGATE_FIX}",
            self.controllers.join(" "),
            missing.join(" "),
            flags.join("; ")
        ))
    }
}

/// Our cgroup v2 path on the host (`/proc/<pid>/cgroup`'s `0::` line).
fn cgroup_of(pid: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
}

/// The host mounts cgroup v2 only and was booted with systemd, and we run under the user's
/// systemd manager (`systemctl --user start berth`, `systemd-run --user`): a scope it makes
/// for us is then in a subtree whose every cgroup the user owns, so the daemon can join it. A
/// daemon started from a login shell sits in the session's scope, owned by root, from where
/// it could not.
fn delegation_possible() -> bool {
    let uid = nix::unistd::getuid().as_raw();
    crate::cgroup::host_is_v2(Path::new(crate::cgroup::ROOT))
        && crate::cgroup::systemd_booted()
        && cgroup_of("self").is_some_and(|c| {
            c.starts_with(&format!("/user.slice/user-{uid}.slice/user@{uid}.service/"))
        })
}

/// The outer process, for a new holder: asks the user's systemd manager for a delegated scope
/// holding it, and waits until the holder is in it.
fn delegate_scope(pid: u32) -> Result<String, RuntimeError> {
    let unit = format!("berth-rootless-{pid}.scope");
    crate::cgroup::start_user_scope(&unit, pid, "Berth rootless namespaces and containers")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match cgroup_of(&pid.to_string()) {
            Some(cg) if cg.ends_with(&format!("/{unit}")) => return Ok(cg),
            _ if Instant::now() > deadline => {
                return Err(RuntimeError::Runtime(format!(
                    "systemd did not move the holder into {unit}"
                )))
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The holder, in a delegated scope at the root of its new cgroup namespace: moves into the
/// leaf [`CGROUP_LEAF`] and enables the delegated controllers for the containers' cgroups.
fn enter_cgroup_leaf() -> Result<(), RuntimeError> {
    let root = Path::new(crate::cgroup::ROOT);
    let leaf = root.join(CGROUP_LEAF);
    match std::fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(RuntimeError::io(format!("create {}", leaf.display()), e)),
    }
    let procs = leaf.join("cgroup.procs");
    std::fs::write(&procs, "0")
        .map_err(|e| RuntimeError::io(format!("write {}", procs.display()), e))?;
    enable_controllers();
    Ok(())
}

/// Enables every controller the delegated root has in its `cgroup.subtree_control` (one at a
/// time: one the kernel refuses does not stop the others; what is enabled is what
/// [`Cgroups::probe`] reports). The daemon calls it at each start too, from the leaf only.
pub fn enable_controllers() {
    let root = Path::new(crate::cgroup::ROOT);
    if cgroup_of("self").as_deref() != Some(&format!("/{CGROUP_LEAF}")) {
        return;
    }
    let Ok(have) = std::fs::read_to_string(root.join("cgroup.controllers")) else {
        return;
    };
    for c in have.split_whitespace() {
        let _ = std::fs::write(root.join("cgroup.subtree_control"), format!("+{c}"));
    }
}

/// The outer process: the holder's cgroup.procs when the holder sits in its delegated leaf
/// (the daemon joins it there: inside the cgroup namespace's root, beside the containers).
fn holder_leaf(holder: i32) -> Result<Option<std::fs::File>, RuntimeError> {
    let Some(cg) = cgroup_of(&holder.to_string()) else {
        return Ok(None);
    };
    if !cg.ends_with(&format!("/{CGROUP_LEAF}")) || Some(&cg) == cgroup_of("self").as_ref() {
        return Ok(None);
    }
    let procs = format!("{}{cg}/cgroup.procs", crate::cgroup::ROOT);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&procs)
        .map(Some)
        .map_err(|e| RuntimeError::io(format!("open {procs} (the rootless cgroup)"), e))
}

/// `berth rootless setup`'s cgroup line (as the user, on the host): which limit controllers a
/// user manager delegates here.
fn delegation_check(uid: u32) -> Check {
    let what = |s: String| format!("cgroup limits: {s}");
    if !crate::cgroup::host_is_v2(Path::new(crate::cgroup::ROOT)) {
        return Check {
            what: what("this host mounts cgroup v1: limits are not applied rootless".into()),
            fix: Some(
                "boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2) and systemd".into(),
            ),
            required: false,
        };
    }
    let user = format!(
        "{}/user.slice/user-{uid}.slice/user@{uid}.service/cgroup.controllers",
        crate::cgroup::ROOT
    );
    let Ok(have) = std::fs::read_to_string(&user) else {
        return Check {
            what: what("no systemd user manager (user@UID.service): limits are not applied".into()),
            fix: Some(
                "run the daemon in a systemd login session (or as root: loginctl enable-linger USER)"
                    .into(),
            ),
            required: false,
        };
    };
    let have: Vec<&str> = have.split_whitespace().collect();
    let missing: Vec<&str> = LIMIT_CONTROLLERS
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| !have.contains(c))
        .collect();
    if missing.is_empty() {
        return Check {
            what: what(format!(
                "cgroup v2, delegated controllers: {}",
                have.join(" ")
            )),
            fix: None,
            required: false,
        };
    }
    let flags: Vec<&str> = LIMIT_CONTROLLERS
        .iter()
        .filter(|(c, _)| missing.contains(c))
        .map(|(_, f)| *f)
        .collect();
    Check {
        what: what(format!(
            "cgroup v2, but the {} controllers are not delegated to you ({} are not applied)",
            missing.join(" "),
            flags.join("; ")
        )),
        fix: Some(DELEGATE_FIX.replace("user@UID", &format!("user@{uid}"))),
        required: false,
    }
}

/// A subordinate id range from `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

/// The first range of `user` (by name or numeric id) in a subuid/subgid file's text.
pub fn find_range(text: &str, user: &str, id: u32) -> Option<IdRange> {
    let id = id.to_string();
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != user && who != id {
            return None;
        }
        let r = IdRange {
            start: start.trim().parse().ok()?,
            count: count.trim().parse().ok()?,
        };
        (r.count > 0).then_some(r)
    })
}

/// The user's places, Docker rootless's: everything the daemon owns is the user's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `$XDG_RUNTIME_DIR/berth`: the exec-root, with the socket and the pid file.
    pub exec_root: PathBuf,
    pub socket: PathBuf,
    /// `$XDG_DATA_HOME/berth`, default `~/.local/share/berth`.
    pub data_root: PathBuf,
    /// `$XDG_CONFIG_HOME/berth/daemon.json`, default `~/.config/berth/daemon.json`.
    pub config_file: PathBuf,
}

impl Paths {
    pub fn from_env() -> Result<Paths, RuntimeError> {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let runtime = var("XDG_RUNTIME_DIR").ok_or_else(|| RuntimeError::RootlessSetup {
            problem: "XDG_RUNTIME_DIR is not set: rootless berth keeps its socket and runtime \
                      state there"
                .into(),
            fix: format!(
                "log in through a session that sets it (systemd-logind), or: mkdir -m 700 -p \
                 /tmp/berth-{uid} && export XDG_RUNTIME_DIR=/tmp/berth-{uid}",
                uid = nix::unistd::getuid()
            ),
        })?;
        let home = var("HOME").ok_or_else(|| RuntimeError::RootlessSetup {
            problem: "HOME is not set".into(),
            fix: "set HOME to your home directory".into(),
        })?;
        let exec_root = runtime.join("berth");
        let socket = exec_root.join("berth.sock");
        // sockaddr_un's sun_path is 108 bytes with its NUL. Shim sockets are reached through
        // their directory at any length (berth_fs::SocketPath); the sockets named by path are
        // the daemon's own and slirp4netns's API socket, the longer of the two.
        let longest = exec_root.join("slirp4netns.sock").as_os_str().len();
        if longest >= 108 {
            return Err(RuntimeError::RootlessSetup {
                problem: format!(
                    "XDG_RUNTIME_DIR {} is too long: the sockets under {} would exceed the 107 bytes a unix socket path may have",
                    runtime.display(),
                    exec_root.display()
                ),
                fix: format!("use an XDG_RUNTIME_DIR of at most {} bytes (such as /run/user/{})", 107 - (longest - runtime.as_os_str().len()), nix::unistd::getuid()),
            });
        }
        let data = var("XDG_DATA_HOME").unwrap_or_else(|| home.join(".local/share"));
        let config = var("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config"));
        Ok(Paths {
            exec_root,
            socket,
            data_root: data.join("berth"),
            config_file: config.join("berth/daemon.json"),
        })
    }
}

/// The calling user's name and subordinate ranges, or the fix when one is missing.
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    pub subuid: IdRange,
    pub subgid: IdRange,
}

const SUBUID: &str = "/etc/subuid";
const SUBGID: &str = "/etc/subgid";

pub fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

fn sub_range(file: &str, name: &str, id: u32) -> Result<IdRange, RuntimeError> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    find_range(&text, name, id).ok_or_else(|| {
        let (kind, flag) = if file == SUBUID {
            ("subordinate user ids", "--add-subuids")
        } else {
            ("subordinate group ids", "--add-subgids")
        };
        RuntimeError::RootlessSetup {
            problem: format!("no {kind} for {name} in {file}: rootless berth maps them into its user namespace"),
            fix: format!("as root: usermod {flag} 100000-165535 {name}   (a range of 65536 ids no other user has)"),
        }
    })
}

impl Identity {
    pub fn probe() -> Result<Identity, RuntimeError> {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let name = user_name(uid);
        Ok(Identity {
            subuid: sub_range(SUBUID, &name, uid)?,
            subgid: sub_range(SUBGID, &name, uid)?,
            uid,
            gid,
            name,
        })
    }
}

/// A setuid helper on PATH (`newuidmap`, `newgidmap`), or the fix.
pub fn find_helper(name: &str) -> Result<PathBuf, RuntimeError> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    let found = std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    let missing = |problem: String| RuntimeError::RootlessSetup {
        problem,
        fix: "as root: apt-get install uidmap   (it provides the setuid newuidmap and newgidmap)"
            .into(),
    };
    let p = found.ok_or_else(|| missing(format!("{name} not found on PATH")))?;
    let meta = std::fs::metadata(&p).map_err(|e| missing(format!("{}: {e}", p.display())))?;
    use std::os::unix::fs::MetadataExt;
    let setuid_root = meta.uid() == 0 && meta.permissions().mode() & 0o4000 != 0;
    let has_caps = xattr_present(&p, "security.capability");
    if !setuid_root && !has_caps {
        return Err(RuntimeError::RootlessSetup {
            problem: format!(
                "{} is neither setuid root nor has file capabilities",
                p.display()
            ),
            fix: format!("as root: chmod u+s {}   (or reinstall uidmap)", p.display()),
        });
    }
    Ok(p)
}

fn xattr_present(p: &Path, name: &str) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (Ok(path), Ok(name)) = (
        std::ffi::CString::new(p.as_os_str().as_bytes()),
        std::ffi::CString::new(name),
    ) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated; a zero-length buffer only asks for the size.
    unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
}

/// Everything the outer process needs before it starts anything: checked first so that a
/// missing piece leaves no state behind.
pub struct Plan {
    pub paths: Paths,
    pub id: Identity,
    pub newuidmap: PathBuf,
    pub newgidmap: PathBuf,
}

impl Plan {
    pub fn check() -> Result<Plan, RuntimeError> {
        let paths = Paths::from_env()?;
        let id = Identity::probe()?;
        let newuidmap = find_helper("newuidmap")?;
        let newgidmap = find_helper("newgidmap")?;
        Ok(Plan {
            paths,
            id,
            newuidmap,
            newgidmap,
        })
    }
}

/// Set in the inner daemon's environment by the outer process: the pid of the namespace holder
/// whose user, mount, network and cgroup namespaces the daemon joins.
pub const JOIN_ENV: &str = "_BERTH_ROOTLESS_JOIN";

/// The namespace holder's, slirp4netns's and pasta's pid files (`<pid> <start time>`), in the
/// exec-root.
const HOLDER_PID: &str = "rootless-ns.pid";
const SLIRP_PID: &str = "slirp4netns.pid";
const PASTA_PID: &str = "pasta.pid";
const PORTD_PID: &str = "portd.pid";

/// Set in the daemon's environment to the TCP port forwarder's API socket
/// ([`crate::portd`]), when it runs.
pub const PORTD_ENV: &str = "_BERTH_ROOTLESS_PORTD";

/// The TCP port forwarder's API socket, when this rootless daemon has one.
pub fn portd_api() -> Option<PathBuf> {
    if !Mode::current().is_rootless() {
        return None;
    }
    std::env::var_os(PORTD_ENV).map(PathBuf::from)
}

/// Set (to "pasta") in the daemon's environment when pasta gives its namespace its network.
pub const NET_ENV: &str = "_BERTH_ROOTLESS_NET";

/// What connects the daemon's network namespace to the host (`berth daemon --rootless-net`).
///
/// slirp4netns is the default: its API socket adds and removes each host forward while it
/// runs, at the host address `-p` names, and reports a host port someone else holds, so `-p`
/// behaves as Docker's ("port is already allocated", `-p 127.0.0.1:8080:80` on loopback only).
/// pasta (passt) moves data with less copying (it splices loopback connections), but has no
/// API to add forwards to a running namespace: they are fixed at start or found by its `-t auto`
/// scan of listening ports, which in Debian 12's passt (2023-03) finds none in a namespace
/// joined by path. So with pasta containers get outbound network only, and `-p` fails saying so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetDriver {
    Slirp4netns,
    Pasta,
}

impl std::str::FromStr for NetDriver {
    type Err = String;
    fn from_str(s: &str) -> Result<NetDriver, String> {
        match s {
            "slirp4netns" => Ok(NetDriver::Slirp4netns),
            "pasta" => Ok(NetDriver::Pasta),
            other => Err(format!(
                "invalid --rootless-net {other:?}: slirp4netns (the default) or pasta"
            )),
        }
    }
}

/// The daemon's network driver, as the outer process chose it (`None` rootful or without one).
pub fn net_driver() -> Option<NetDriver> {
    if !Mode::current().is_rootless() {
        return None;
    }
    if std::env::var_os(NET_ENV).is_some_and(|v| v == "pasta") {
        return Some(NetDriver::Pasta);
    }
    slirp_api().map(|_| NetDriver::Slirp4netns)
}

/// A process's start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`): with the
/// pid it names one process, never a later one that reuses the pid.
fn start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..].split(' ').nth(19)?.parse().ok()
}

fn record_pid(path: &Path, pid: i32) -> Result<(), RuntimeError> {
    let t = start_time(pid).unwrap_or(0);
    std::fs::write(path, format!("{pid} {t}\n"))
        .map_err(|e| RuntimeError::io(format!("write {}", path.display()), e))
}

/// The process a pid file names, if it still runs (same start time) as this user.
fn recorded_pid(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut f = text.split_whitespace();
    let pid: i32 = f.next()?.parse().ok()?;
    let t: u64 = f.next()?.parse().ok()?;
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(format!("/proc/{pid}")).ok()?.uid();
    (start_time(pid) == Some(t) && uid == nix::unistd::getuid().as_raw()).then_some(pid)
}

/// The live namespace holder of this user's rootless berth, if any (`None` after a reboot, a
/// `berth rootless uninstall`, or when nothing ever started).
pub fn live_holder(paths: &Paths) -> Option<i32> {
    recorded_pid(&paths.exec_root.join(HOLDER_PID))
}

/// The outer process. The namespaces live in a *holder* process (`berth rootless holder`, in a
/// session of its own) that outlives every daemon, as Podman's pause process does: a daemon
/// restart joins them again and finds its containers, their mounts, network namespaces,
/// bridges and firewall where it left them (live restore). The first start creates the holder
/// (mapping its ids) and slirp4netns on its network namespace; later starts reuse both. Then the
/// daemon (`exe` with `args`) starts, joins the holder's namespaces, and this process forwards
/// SIGTERM/SIGINT/SIGHUP to it and returns its exit code, reaping the orphans (shim
/// intermediates) it collects as subreaper meanwhile.
pub fn run_outer(
    plan: &Plan,
    exe: &Path,
    args: &[OsString],
    net: NetDriver,
) -> Result<i32, RuntimeError> {
    let mut created = Vec::new();
    for dir in [&plan.paths.exec_root, &plan.paths.data_root] {
        if !dir.exists() {
            created.push(dir.clone());
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| RuntimeError::io(format!("create {}", dir.display()), e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| RuntimeError::io(format!("chmod {}", dir.display()), e))?;
    }
    // Orphaned shims (they double-fork) come back to us while we run, not to the host's init.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let slirp_pid_file = plan.paths.exec_root.join(SLIRP_PID);
    let slirp_api = plan.paths.exec_root.join("slirp4netns.sock");
    let (holder, fresh) = match live_holder(&plan.paths) {
        Some(pid) => (pid, false),
        None => match start_holder(plan, exe, true) {
            Ok(pid) => (pid, true),
            Err(e) => {
                // Nothing left behind: the directories this start made go (empty ones only).
                for d in created {
                    let _ = std::fs::remove_dir(d);
                }
                return Err(e);
            }
        },
    };
    let pasta_pid_file = plan.paths.exec_root.join(PASTA_PID);
    let (mine, other) = match net {
        NetDriver::Slirp4netns => (&slirp_pid_file, &pasta_pid_file),
        NetDriver::Pasta => (&pasta_pid_file, &slirp_pid_file),
    };
    // The other driver's process, from a start with the other flag: its namespace gets ours.
    if let Some(pid) = recorded_pid(other) {
        // SAFETY: our own slirp4netns or pasta, by pid (same start time, our uid).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        wait_gone(pid);
    }
    let _ = std::fs::remove_file(other);
    let mut network = false;
    match recorded_pid(mine) {
        // The driver of these namespaces: keeps the containers' connections across restarts.
        Some(_) if !fresh && (net == NetDriver::Pasta || slirp_api.exists()) => network = true,
        old => {
            if let Some(pid) = old {
                // Attached to namespaces that are gone.
                // SAFETY: our own slirp4netns or pasta, by pid (same start time, our uid).
                unsafe { libc::kill(pid, libc::SIGTERM) };
                wait_gone(pid);
            }
            let _ = std::fs::remove_file(mine);
            let started = match net {
                NetDriver::Slirp4netns => start_slirp(plan, holder as u32).map(|p| p as i32),
                NetDriver::Pasta => start_pasta(plan, holder),
            };
            match started {
                Ok(pid) => {
                    record_pid(mine, pid)?;
                    network = true;
                }
                Err(e) => eprintln!("WARNING: rootless: containers have no outbound network: {e}"),
            }
        }
    }
    // TCP host ports through our own forwarder (slirp4netns keeps UDP and outbound).
    let portd_sock = plan.paths.exec_root.join("portd.sock");
    let portd_pid_file = plan.paths.exec_root.join(PORTD_PID);
    let mut portd = false;
    if network && net == NetDriver::Slirp4netns {
        match recorded_pid(&portd_pid_file) {
            Some(_) if !fresh && crate::portd::answers(&portd_sock) => portd = true,
            old => {
                if let Some(pid) = old {
                    // SAFETY: our own forwarder, by pid (same start time, our uid).
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                    wait_gone(pid);
                }
                match start_portd(exe, holder, &portd_sock) {
                    Ok(pid) => {
                        record_pid(&portd_pid_file, pid)?;
                        portd = true;
                    }
                    Err(e) => eprintln!(
                        "WARNING: rootless: TCP host ports go through slirp4netns (slower): {e}"
                    ),
                }
            }
        }
    }
    // The daemon joins the holder's leaf cgroup (in its pre-exec: before it can start
    // anything), inside the delegated subtree its containers' cgroups are made in.
    let leaf = holder_leaf(holder)?;
    let leaf_fd = leaf.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    let mut cmd = Command::new(exe);
    cmd.args(args).env(JOIN_ENV, holder.to_string());
    if portd {
        cmd.env(PORTD_ENV, &portd_sock);
    }
    match net {
        NetDriver::Slirp4netns if network => {
            cmd.env(SLIRP_API_ENV, &slirp_api);
        }
        NetDriver::Pasta if network => {
            cmd.env(NET_ENV, "pasta");
        }
        _ => {}
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Should the outer process die, the daemon shuts down as on `kill`.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
            if let Some(fd) = leaf_fd {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| match &leaf {
        // The pre-exec's move into the holder's leaf, from a cgroup outside the user manager.
        Some(_) if e.raw_os_error() == Some(libc::EACCES) => RuntimeError::Runtime(format!(
            "cannot join the rootless namespaces' cgroup from here ({e}): they were started \
             by the systemd user unit; use `systemctl --user start berth`, or stop them first \
             (`berth rootless uninstall`)"
        )),
        _ => RuntimeError::io(format!("start {}", exe.display()), e),
    })?;
    drop(leaf);
    let pid = child.id();
    forward_signals(pid);
    let code = loop {
        let mut status = 0;
        // SAFETY: waits for any child into a local.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(RuntimeError::io("wait for the rootless daemon", e));
        }
        if r == pid as i32 {
            break if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
        }
    };
    drop(child);
    Ok(code)
}

/// Starts the namespace holder: `exe rootless holder` unshares a user namespace, which we map
/// with newuidmap/newgidmap, then its mount, network and cgroup namespaces; it says so on a
/// pipe and sleeps. `delegate`: in a delegated scope of the user's systemd manager where the
/// host has one (see the module's doc; not for `purge_data`'s short-lived holder). Nothing is
/// left behind when any step fails.
fn start_holder(plan: &Plan, exe: &Path, delegate: bool) -> Result<i32, RuntimeError> {
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| RuntimeError::io("pipe", e.into()))
    };
    let (map_rd, map_wr) = pipe()?;
    let (ready_rd, ready_wr) = pipe()?;
    let (m, r) = (
        std::os::fd::AsRawFd::as_raw_fd(&map_rd),
        std::os::fd::AsRawFd::as_raw_fd(&ready_wr),
    );
    let mut cmd = Command::new(exe);
    cmd.args(["rootless", "holder"])
        .env(INNER_ENV, "100")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    // The pipes survive the exec as fds 100 and 101 (dup2 clears CLOEXEC). A session of its
    // own: a ^C to the daemon's terminal must not reach it.
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(m, 100) < 0 || libc::dup2(r, 101) < 0 || libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| RuntimeError::io(format!("start {}", exe.display()), e))?;
    drop((map_rd, ready_wr));
    let pid = child.id();
    let fail = |child: &mut std::process::Child, e: RuntimeError| {
        let _ = child.kill();
        let _ = child.wait();
        Err(e)
    };
    let mut map_wr = std::fs::File::from(map_wr);
    if let Err(e) = map_ids(plan, pid) {
        // The holder sees the pipe close without a byte and exits.
        drop(map_wr);
        return fail(&mut child, e);
    }
    // A delegated scope first, so that the holder's cgroup namespace is rooted there. Not
    // on this host: the warning, and no limits (the daemon says so again).
    let mut delegated = false;
    if delegate && delegation_possible() {
        match delegate_scope(pid) {
            Ok(_) => delegated = true,
            Err(e) => eprintln!(
                "WARNING: rootless: no delegated cgroup, resource limits are not applied: {e}"
            ),
        }
    }
    use std::io::Write;
    let _ = map_wr.write_all(if delegated { b"2" } else { b"1" });
    drop(map_wr);
    let mut b = [0u8; 1];
    if std::fs::File::from(ready_rd).read(&mut b).unwrap_or(0) != 1 {
        return fail(
            &mut child,
            RuntimeError::Runtime(
                "the rootless namespace holder could not set up its namespaces".into(),
            ),
        );
    }
    // Its exit is reaped by whoever is its parent then (us, or init once we are gone).
    std::mem::forget(child);
    let pid = pid as i32;
    if let Err(e) = record_pid(&plan.paths.exec_root.join(HOLDER_PID), pid) {
        // SAFETY: the holder we just started, by pid.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        return Err(e);
    }
    Ok(pid)
}

/// `berth rootless holder`: the process that keeps the rootless namespaces (see [`run_outer`]).
pub fn holder_main() -> i32 {
    let fd = std::env::var(INNER_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok());
    let Some(fd) = fd else {
        eprintln!("berth rootless holder: started by `berth daemon` only");
        return 125;
    };
    if let Err(e) = enter_inner(fd) {
        eprintln!("berth rootless holder: {e}");
        return 1;
    }
    // SAFETY: fd 101 was handed to us by the outer process; owned by nothing else here.
    let mut ready = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(101) };
    use std::io::Write;
    let _ = ready.write_all(b"1");
    drop(ready);
    loop {
        // SAFETY: pause only waits for a signal.
        unsafe { libc::pause() };
    }
}

/// The daemon, first thing in `main` while single-threaded: join the holder's user namespace
/// (as its root: the user owns it), then its mount, network and cgroup namespaces.
pub fn join_inner(holder: i32) -> Result<(), RuntimeError> {
    use nix::sched::{setns, CloneFlags};
    let open = |ns: &str| {
        std::fs::File::open(format!("/proc/{holder}/ns/{ns}"))
            .map_err(|e| RuntimeError::io(format!("open the namespace holder's {ns} namespace"), e))
    };
    let (user, mnt, net, cg) = (open("user")?, open("mnt")?, open("net")?, open("cgroup")?);
    let sys = |what: &str, e: nix::Error| RuntimeError::io(what.to_string(), e.into());
    setns(&user, CloneFlags::CLONE_NEWUSER).map_err(|e| sys("setns(user)", e))?;
    let root = nix::unistd::Gid::from_raw(0);
    nix::unistd::setgroups(&[]).map_err(|e| sys("setgroups", e))?;
    nix::unistd::setresgid(root, root, root).map_err(|e| sys("setresgid(0)", e))?;
    let uroot = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresuid(uroot, uroot, uroot).map_err(|e| sys("setresuid(0)", e))?;
    setns(&mnt, CloneFlags::CLONE_NEWNS).map_err(|e| sys("setns(mnt)", e))?;
    setns(&net, CloneFlags::CLONE_NEWNET).map_err(|e| sys("setns(net)", e))?;
    setns(&cg, CloneFlags::CLONE_NEWCGROUP).map_err(|e| sys("setns(cgroup)", e))?;
    std::env::set_current_dir("/").map_err(|e| RuntimeError::io("chdir /", e))?;
    std::env::remove_var(JOIN_ENV);
    Ok(())
}

/// Ends this user's rootless namespaces: every process in the holder's user namespace (the
/// holder, shims, containers) and slirp4netns. For `berth rootless uninstall`, with the daemon
/// stopped. Returns how many processes were signalled.
pub fn stop_namespaces(paths: &Paths) -> usize {
    let mut n = 0;
    let mut signalled = Vec::new();
    if let Some(holder) = live_holder(paths) {
        if let Ok(ns) = std::fs::read_link(format!("/proc/{holder}/ns/user")) {
            for pid in all_pids() {
                if std::fs::read_link(format!("/proc/{pid}/ns/user"))
                    .ok()
                    .as_ref()
                    == Some(&ns)
                {
                    // SAFETY: a process of our own user namespace, by pid.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    signalled.push(pid);
                    n += 1;
                }
            }
        }
    }
    for f in [SLIRP_PID, PASTA_PID, PORTD_PID] {
        if let Some(pid) = recorded_pid(&paths.exec_root.join(f)) {
            // SAFETY: our own slirp4netns or pasta, by pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            signalled.push(pid);
            n += 1;
        }
    }
    // Gone before we return: the caller then removes the unit, and systemd removes a stopped
    // unit's cgroup only once it is empty.
    for pid in signalled {
        wait_gone(pid);
    }
    for f in [
        HOLDER_PID,
        SLIRP_PID,
        PASTA_PID,
        PORTD_PID,
        "slirp4netns.sock",
        "portd.sock",
    ] {
        let _ = std::fs::remove_file(paths.exec_root.join(f));
    }
    n
}

/// Removes the data root, whose files belong to the user's subordinate ids as well as to the
/// user: `exe rootless purge-data` runs as root of a fresh holder's namespaces (the daemon's
/// mapping), where it may remove them all. For `berth rootless uninstall --purge`, with the
/// namespaces stopped.
pub fn purge_data(plan: &Plan, exe: &Path) -> Result<(), RuntimeError> {
    if !plan.paths.data_root.exists() {
        return Ok(());
    }
    let holder = start_holder(plan, exe, false)?;
    let out = Command::new(exe)
        .args(["rootless", "purge-data"])
        .env(JOIN_ENV, holder.to_string())
        .output();
    // SAFETY: the holder we just started, by pid.
    unsafe { libc::kill(holder, libc::SIGKILL) };
    let _ = std::fs::remove_file(plan.paths.exec_root.join(HOLDER_PID));
    let out = out.map_err(|e| RuntimeError::io(format!("start {}", exe.display()), e))?;
    if !out.status.success() {
        return Err(RuntimeError::Runtime(format!(
            "removing {}: {}",
            plan.paths.data_root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// `berth rootless purge-data`, started by [`purge_data`] only.
pub fn purge_data_main() -> i32 {
    let holder = std::env::var(JOIN_ENV).ok().and_then(|v| v.parse().ok());
    let Some(holder) = holder else {
        eprintln!("berth rootless purge-data: started by `berth rootless uninstall --purge` only");
        return 125;
    };
    // The paths before joining: the environment is the user's.
    let paths = match Paths::from_env() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if let Err(e) = join_inner(holder) {
        eprintln!("{e}");
        return 1;
    }
    match std::fs::remove_dir_all(&paths.data_root) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}: {e}", paths.data_root.display());
            1
        }
    }
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

/// Set in the inner daemon's environment to slirp4netns's API socket when slirp4netns gives
/// its network namespace outbound connectivity (and takes port forwards).
pub const SLIRP_API_ENV: &str = "_BERTH_ROOTLESS_SLIRP_API";

/// slirp4netns's API socket, when this rootless daemon's network goes through it.
pub fn slirp_api() -> Option<PathBuf> {
    if !Mode::current().is_rootless() {
        return None;
    }
    std::env::var_os(SLIRP_API_ENV).map(PathBuf::from)
}

/// The inner daemon's address on slirp4netns's network (its default `--cidr`): port forwards
/// from the host arrive here.
pub const SLIRP_GUEST_ADDR: &str = "10.0.2.100";

/// Starts the TCP port forwarder ([`crate::portd`]) on the holder's namespaces, in a session
/// of its own (it outlives the daemon); ready when it writes a byte on fd 101.
fn start_portd(exe: &Path, holder: i32, sock: &Path) -> Result<i32, RuntimeError> {
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::io("pipe", e.into()))?;
    let w = std::os::fd::AsRawFd::as_raw_fd(&wr);
    let mut cmd = Command::new(exe);
    cmd.args(["rootless", "portd"])
        .env(JOIN_ENV, holder.to_string())
        .env(crate::portd::SOCK_ENV, sock)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(w, 101) < 0 || libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| RuntimeError::io(format!("start {}", exe.display()), e))?;
    drop(wr);
    let mut b = [0u8; 1];
    if std::fs::File::from(rd).read(&mut b).unwrap_or(0) != 1 {
        let _ = child.kill();
        let _ = child.wait();
        return Err(RuntimeError::Runtime(
            "the port forwarder exited before it was ready".into(),
        ));
    }
    let pid = child.id() as i32;
    // Reaped by whoever is its parent when it exits (us, or init once we are gone).
    std::mem::forget(child);
    Ok(pid)
}

/// Waits (briefly) until `pid` is gone, so its tap device is gone before another driver's.
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        // Our own child while we run: reap it, or it stays a zombie in /proc.
        // SAFETY: WNOHANG never blocks; a pid that is not our child only fails.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The network through pasta (`--rootless-net=pasta`, see [`NetDriver`]): joined to the
/// holder's user and network namespaces, it configures a tap device there (`--config-net`,
/// slirp4netns's 10.0.2.100/24 via 10.0.2.2) for outbound traffic. No port forwarding either
/// way (`-t none -u none -T none -U none`: `auto` would also expose whatever listens in the
/// namespace, such as the CRI streaming server) and no gateway mapped to the host's loopback
/// (`--no-map-gw`): containers reach the host's loopback no more than through slirp4netns's
/// `--disable-host-loopback`. pasta forks into the background once the namespace is
/// configured: its exit status is the readiness.
fn start_pasta(plan: &Plan, holder: i32) -> Result<i32, RuntimeError> {
    tun_access().map_err(|e| match e {
        RuntimeError::RootlessSetup { problem, fix } => {
            RuntimeError::Runtime(format!("{problem}; fix: {fix}"))
        }
        other => other,
    })?;
    let pidfile = plan.paths.exec_root.join("pasta.pid.new");
    let _ = std::fs::remove_file(&pidfile);
    let mut cmd = Command::new("pasta");
    cmd.args([
        "--config-net",
        // Not the host's interface name (eth0 here): the daemon makes containers' eth0 in
        // this namespace before moving them. tap0, as slirp4netns's.
        "--ns-ifname",
        "tap0",
        // slirp4netns's addresses rather than a copy of the host's: with the host's own
        // address inside, the host itself would be unreachable from the namespace.
        "--address",
        SLIRP_GUEST_ADDR,
        "--netmask",
        "24",
        "--gateway",
        "10.0.2.2",
        "--no-map-gw",
        "--quiet",
        "-t",
        "none",
        "-u",
        "none",
        "-T",
        "none",
        "-U",
        "none",
    ])
    .arg("--pid")
    .arg(&pidfile)
    .arg("--userns")
    .arg(format!("/proc/{holder}/ns/user"))
    .arg("--netns")
    .arg(format!("/proc/{holder}/ns/net"))
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // A session of its own: it outlives this daemon (and a ^C to its terminal).
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().map_err(|e| {
        RuntimeError::Runtime(format!(
            "cannot start pasta ({e}); fix: as root: apt-get install passt"
        ))
    })?;
    let pid = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok());
    let _ = std::fs::remove_file(&pidfile);
    match pid {
        Some(pid) if out.status.success() => Ok(pid),
        _ => Err(RuntimeError::Runtime(format!(
            "pasta failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// Outbound connectivity for the inner daemon's network namespace: slirp4netns (a user-mode
/// TCP/IP stack on a tap device) joined to the daemon's user and network namespaces; the
/// default driver (why: [`NetDriver`]).
fn start_slirp(plan: &Plan, pid: u32) -> Result<u32, RuntimeError> {
    tun_access().map_err(|e| match e {
        RuntimeError::RootlessSetup { problem, fix } => {
            RuntimeError::Runtime(format!("{problem}; fix: {fix}"))
        }
        other => other,
    })?;
    let own = std::fs::read_link("/proc/self/ns/net")
        .map_err(|e| RuntimeError::io("read /proc/self/ns/net", e))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .ok()
        .as_ref()
        == Some(&own)
    {
        if Instant::now() > deadline {
            return Err(RuntimeError::Runtime(
                "the daemon made no network namespace".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::io("pipe", e.into()))?;
    let wr_raw = std::os::fd::AsRawFd::as_raw_fd(&wr);
    let api = plan.paths.exec_root.join("slirp4netns.sock");
    let _ = std::fs::remove_file(&api);
    let mut cmd = Command::new("slirp4netns");
    cmd.args([
        "--configure",
        "--mtu=65520",
        "--disable-host-loopback",
        "--ready-fd=101",
    ])
    .arg(format!("--api-socket={}", api.display()))
    .arg(format!("--userns-path=/proc/{pid}/ns/user"))
    .args(["--netns-type=path"])
    .arg(format!("/proc/{pid}/ns/net"))
    .arg("tap0")
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // A session of its own: it outlives this daemon (and a ^C to its terminal).
            if libc::dup2(wr_raw, 101) < 0 || libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| {
        RuntimeError::Runtime(format!(
            "cannot start slirp4netns ({e}); fix: as root: apt-get install slirp4netns"
        ))
    })?;
    drop(wr);
    // slirp4netns writes "1" once tap0 is configured (or exits, closing the pipe).
    let mut f = std::fs::File::from(rd);
    let mut b = [0u8; 1];
    if f.read(&mut b).unwrap_or(0) != 1 {
        return Err(RuntimeError::Runtime(format!(
            "slirp4netns (pid {}) exited before configuring the network",
            child.id()
        )));
    }
    let pid = child.id();
    // Reaped by whoever is its parent when it exits (us, or init once we are gone).
    std::mem::forget(child);
    Ok(pid)
}

/// Waits until `pid` is in a user namespace of its own, then writes its maps.
fn map_ids(plan: &Plan, pid: u32) -> Result<(), RuntimeError> {
    let own = std::fs::read_link("/proc/self/ns/user")
        .map_err(|e| RuntimeError::io("read /proc/self/ns/user", e))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::read_link(format!("/proc/{pid}/ns/user")) {
            Ok(ns) if ns != own => break,
            Ok(_) => {}
            Err(e) => {
                return Err(RuntimeError::Runtime(format!(
                    "rootless daemon exited before its user namespace was set up: {e}"
                )))
            }
        }
        if Instant::now() > deadline {
            return Err(RuntimeError::Runtime(
                "rootless daemon did not create its user namespace in 10s".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let run = |tool: &Path, own: u32, r: IdRange| -> Result<(), RuntimeError> {
        let out = Command::new(tool)
            .arg(pid.to_string())
            .args(["0", &own.to_string(), "1"])
            .args(["1", &r.start.to_string(), &r.count.to_string()])
            .output()
            .map_err(|e| RuntimeError::io(format!("run {}", tool.display()), e))?;
        if !out.status.success() {
            return Err(RuntimeError::RootlessSetup {
                problem: format!(
                    "{} failed: {}",
                    tool.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                fix: format!(
                    "check that {} and {} give this user ranges no other user overlaps, and that {} is setuid root",
                    SUBUID, SUBGID, tool.display()
                ),
            });
        }
        Ok(())
    };
    run(&plan.newuidmap, plan.id.uid, plan.id.subuid)?;
    run(&plan.newgidmap, plan.id.gid, plan.id.subgid)
}

static INNER_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = INNER_PID.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

fn forward_signals(pid: u32) {
    INNER_PID.store(pid as i32, std::sync::atomic::Ordering::SeqCst);
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler only reads an atomic and calls kill.
        unsafe {
            libc::signal(
                sig,
                forward as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

/// The namespace holder, first thing while single-threaded: enter a new user namespace, wait
/// for the outer process to map it, become its root, and make the private mount, network and
/// cgroup namespaces every daemon of this user then joins (`join_inner`).
pub fn enter_inner(fd: i32) -> Result<(), RuntimeError> {
    use nix::sched::{unshare, CloneFlags};
    let sys = |what: &str, e: nix::Error| RuntimeError::io(what.to_string(), e.into());
    unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| sys("unshare(CLONE_NEWUSER)", e))?;
    // SAFETY: fd was handed to us by the outer process and is owned by nothing else here.
    let mut pipe = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut b = [0u8; 1];
    if pipe.read(&mut b).unwrap_or(0) != 1 {
        return Err(RuntimeError::Runtime(
            "the outer rootless process did not map our user namespace".into(),
        ));
    }
    drop(pipe);
    // "2": we are in a delegated scope (`delegate_scope`).
    let delegated = b[0] == b'2';
    std::env::remove_var(INNER_ENV);
    let root = nix::unistd::Gid::from_raw(0);
    nix::unistd::setgroups(&[]).map_err(|e| sys("setgroups", e))?;
    nix::unistd::setresgid(root, root, root).map_err(|e| sys("setresgid(0)", e))?;
    let uroot = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresuid(uroot, uroot, uroot).map_err(|e| sys("setresuid(0)", e))?;
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| sys("unshare(mount, net, cgroup)", e))?;
    use nix::mount::{mount, MsFlags};
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| sys("make / private", e))?;
    // A cgroup2 file system at /sys/fs/cgroup (ours to mount in our cgroup namespace): the
    // runtime then treats cgroups as v2, where libcontainer leaves a rootless process in its
    // parent cgroup instead of failing on the host's v1 hierarchies it may not write. On a v2
    // host /sys/fs/cgroup is already the root of a cgroup2 mount, and the kernel refuses the
    // same file system on the same mount point (EBUSY): a tmpfs goes between.
    if crate::cgroup::host_is_v2(Path::new(crate::cgroup::ROOT)) {
        if let Err(e) = mount(
            Some("tmpfs"),
            "/sys/fs/cgroup",
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        ) {
            eprintln!("WARNING: rootless: cannot mount a tmpfs on /sys/fs/cgroup: {e}");
        }
    }
    if let Err(e) = mount(
        Some("cgroup2"),
        "/sys/fs/cgroup",
        Some("cgroup2"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    ) {
        eprintln!("WARNING: rootless: cannot mount cgroup2 on /sys/fs/cgroup: {e}");
    } else if delegated {
        if let Err(e) = enter_cgroup_leaf() {
            eprintln!("WARNING: rootless: resource limits are not applied: {e}");
        }
    }
    loopback_up()
}

/// `ip link set lo up` in the fresh network namespace.
fn loopback_up() -> Result<(), RuntimeError> {
    // SAFETY: a plain socket used for one ioctl on a zeroed, NUL-terminated ifreq.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(RuntimeError::io("socket", std::io::Error::last_os_error()));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            r = libc::ioctl(s, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(s);
        if r != 0 {
            return Err(RuntimeError::io("bring up lo", err));
        }
    }
    Ok(())
}

/// One line of `berth rootless check`.
#[derive(Debug, Clone)]
pub struct Check {
    pub what: String,
    /// None when satisfied; else what to do.
    pub fix: Option<String>,
    /// Whether the daemon cannot start without it (`/dev/net/tun` only costs the network).
    pub required: bool,
}

/// Every prerequisite of rootless mode for the calling user, each with its fix.
pub fn check_all() -> Vec<Check> {
    let mut out = Vec::new();
    let mut push = |what: &str, r: Result<String, RuntimeError>| match r {
        Ok(detail) => out.push(Check {
            what: format!("{what}: {detail}"),
            fix: None,
            required: true,
        }),
        Err(RuntimeError::RootlessSetup { problem, fix }) => out.push(Check {
            what: format!("{what}: {problem}"),
            fix: Some(fix),
            required: true,
        }),
        Err(e) => out.push(Check {
            what: format!("{what}: {e}"),
            fix: Some("see the error".into()),
            required: true,
        }),
    };
    let uid = nix::unistd::getuid().as_raw();
    let name = user_name(uid);
    push(
        "subordinate uids",
        sub_range(SUBUID, &name, uid)
            .map(|r| format!("{}-{}", r.start, r.start as u64 + r.count as u64 - 1)),
    );
    push(
        "subordinate gids",
        sub_range(SUBGID, &name, uid)
            .map(|r| format!("{}-{}", r.start, r.start as u64 + r.count as u64 - 1)),
    );
    for tool in ["newuidmap", "newgidmap"] {
        push(tool, find_helper(tool).map(|p| p.display().to_string()));
    }
    push("unprivileged user namespaces", userns_sysctls());
    push(
        "XDG_RUNTIME_DIR",
        Paths::from_env().map(|p| format!("socket {}", p.socket.display())),
    );
    push("/dev/net/tun", tun_access());
    push("overlayfs in a user namespace", overlay_in_userns());
    out.push(delegation_check(uid));
    // Without a tap device the daemon runs with no outbound network and no host ports.
    if let Some(c) = out.iter_mut().find(|c| c.what.starts_with("/dev/net/tun")) {
        c.required = false;
    }
    out
}

fn userns_sysctls() -> Result<String, RuntimeError> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if let Some(v) = read("/proc/sys/kernel/unprivileged_userns_clone") {
        if v == "0" {
            return Err(RuntimeError::RootlessSetup {
                problem: "kernel.unprivileged_userns_clone is 0".into(),
                fix: "as root: sysctl -w kernel.unprivileged_userns_clone=1 (and put it in /etc/sysctl.d/)".into(),
            });
        }
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Err(RuntimeError::RootlessSetup {
            problem: "user.max_user_namespaces is 0".into(),
            fix: "as root: sysctl -w user.max_user_namespaces=28633 (and put it in /etc/sysctl.d/)"
                .into(),
        });
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Err(RuntimeError::RootlessSetup {
            problem: "kernel.apparmor_restrict_unprivileged_userns is 1".into(),
            fix: "as root: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0".into(),
        });
    }
    Ok("enabled".into())
}

fn tun_access() -> Result<String, RuntimeError> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        Ok(_) => Ok("accessible".into()),
        Err(e) => Err(RuntimeError::RootlessSetup {
            problem: format!("cannot open /dev/net/tun ({e}): containers get no outbound network (slirp4netns needs a tap device)"),
            fix: "as root: chmod 0666 /dev/net/tun   (the usual mode; opening it grants nothing by itself)".into(),
        }),
    }
}

/// Mounts an overlay in a throwaway user+mount namespace (a forked child), so the answer is
/// the kernel's own.
fn overlay_in_userns() -> Result<String, RuntimeError> {
    let dir = std::env::temp_dir().join(format!("berth-ovl-check-{}", std::process::id()));
    let fail = |problem: String| RuntimeError::RootlessSetup {
        problem,
        fix: "use a kernel >= 5.11 (overlayfs in user namespaces), or install fuse-overlayfs"
            .into(),
    };
    for d in ["l", "u", "w", "m"] {
        std::fs::create_dir_all(dir.join(d))
            .map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    }
    let opts = format!("lowerdir={0}/l,upperdir={0}/u,workdir={0}/w", dir.display());
    let target = dir.join("m");
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    // SAFETY: the child only makes syscalls and exits.
    let r = match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            use nix::sched::{unshare, CloneFlags};
            // A process may map its own ids into its new namespace without a helper.
            let ok = unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).is_ok()
                && std::fs::write("/proc/self/setgroups", "deny").is_ok()
                && std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")).is_ok()
                && std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")).is_ok()
                && nix::mount::mount(
                    Some("overlay"),
                    &target,
                    Some("overlay"),
                    nix::mount::MsFlags::empty(),
                    Some(opts.as_str()),
                )
                .is_ok();
            // SAFETY: leave the forked child without running the parent's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => nix::sys::wait::waitpid(child, None),
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&dir);
    match r {
        Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok("works".into()),
        _ => Err(fail(
            "the kernel refused an overlay mount in a user namespace".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_by_name_or_id() {
        let t = "alice:100000:65536\n1001:200000:10\nbob:1:0\n";
        assert_eq!(
            find_range(t, "alice", 1000),
            Some(IdRange {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(
            find_range(t, "carol", 1001),
            Some(IdRange {
                start: 200000,
                count: 10
            })
        );
        assert_eq!(find_range(t, "bob", 7), None, "an empty range is no range");
        assert_eq!(find_range(t, "dave", 9), None);
    }

    #[test]
    fn initial_map() {
        assert!(is_initial_map("         0          0 4294967295\n"));
        assert!(!is_initial_map("0 1000 1\n1 100000 65536\n"));
    }
}
