//! OCI runtime spec generation with Docker's defaults.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};
use serde_json::{json, Value};

use crate::cgroup::Resources;
use crate::user::resolve_user;
use crate::RuntimeError;
use berth_fs::secure_join;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How a container gets one kind of namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Namespace {
    /// A fresh namespace (for the network: loopback only until berth-net plugs a veth in).
    #[default]
    New,
    /// The host's namespace: none is created.
    Host,
    /// Join an existing namespace (a bind-mounted nsfs file or /proc/<pid>/ns/<kind>).
    Path(PathBuf),
}

/// Network namespace of a container.
pub type NetworkMode = Namespace;

/// `--cgroupns`: Docker's default is private on a cgroup v2 host, the host's on v1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CgroupNs {
    #[default]
    HostDefault,
    Private,
    Host,
}

/// What the container gets at /dev/shm, which follows its IPC mode (as with dockerd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shm {
    /// Its own tmpfs of this many bytes (IPC mode `private`).
    Tmpfs(i64),
    /// A bind of a directory the engine prepared: the container's own shareable tmpfs, the
    /// host's /dev/shm (`host`), or that of the container whose IPC namespace it joins.
    Bind(PathBuf),
    /// Nothing (IPC mode `none`).
    None,
}

impl Default for Shm {
    fn default() -> Shm {
        Shm::Tmpfs(DEFAULT_SHM_SIZE)
    }
}

/// Docker's default /dev/shm size (64 MiB).
pub const DEFAULT_SHM_SIZE: i64 = 64 * 1024 * 1024;

/// The namespaces besides the network's (`--pid`, `--ipc`, `--uts`, `--cgroupns`) and /dev/shm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Isolation {
    pub pid: Namespace,
    pub ipc: Namespace,
    /// `New` or `Host` (`--uts host`: no namespace, the host's hostname).
    pub uts: Namespace,
    pub cgroupns: CgroupNs,
    pub shm: Shm,
}

/// One `--ulimit`: Docker's name (`nofile`) and the limits (-1 is unlimited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// Everything the engine resolved for one `docker run`.
#[derive(Debug, Clone)]
pub struct ContainerRunConfig {
    pub id: String,
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    /// `HostConfig.GroupAdd`: more supplementary groups, by name (the image's /etc/group) or id.
    pub group_add: Vec<String>,
    pub hostname: String,
    pub tty: bool,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub no_new_privileges: bool,
    /// Memory, CPU (quota, weight, cpusets), pids and block IO limits: the cgroup's.
    pub resources: Resources,
    /// `HostConfig.Ulimits` (checked at create); a `nofile` one replaces the default.
    pub ulimits: Vec<Ulimit>,
    pub mounts: Vec<Mount>,
    /// From `CgroupDriver::cgroups_path`: `/berth/<id>` (cgroupfs) or `system.slice:berth:<id>`.
    pub cgroups_path: String,
    pub network: NetworkMode,
    pub isolation: Isolation,
    /// `HostConfig.OomScoreAdj` (-1000..1000, checked at create).
    pub oom_score_adj: i64,
    pub seccomp: SeccompMode,
    /// A pod's container: shared namespaces and Kubernetes' settings (`spec_extras`).
    pub extras: crate::spec_extras::SpecExtras,
}

/// `--security-opt seccomp=...`: Docker's default profile, none, or a profile of the user's
/// (Docker's JSON format, as in `default.json`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum SeccompMode {
    #[default]
    Default,
    Unconfined,
    Profile(String),
}

/// Facts about the host that shape the spec; probed for real, injected in tests.
#[derive(Debug, Clone)]
pub(crate) struct HostInfo {
    /// /sys/fs/cgroup is a cgroup2 mount (unified only); hybrid hosts count as v1.
    pub cgroup_v2: bool,
    /// Hard RLIMIT_NOFILE of this process: a container may never get more (no CAP_SYS_RESOURCE).
    pub nofile_hard: u64,
    /// Swap limits are enforceable (memsw on v1).
    pub swap_limit: bool,
    /// Capabilities in our own bounding set: what "ALL" can mean here.
    pub bounding: Vec<String>,
    pub kernel: (u32, u32),
    /// Rootless (`crate::rootless::Mode`): only the limits of the delegated controllers can
    /// be applied (`rootless_controllers`; none on a v1 host or without delegation).
    pub rootless: bool,
    pub rootless_controllers: Vec<String>,
    /// The top of `net.ipv4.ping_group_range`: every gid, or (rootless) the highest gid the
    /// user namespace maps, as the kernel refuses unmapped ones.
    pub ping_group_max: u32,
}

impl HostInfo {
    pub(crate) fn probe() -> HostInfo {
        let cgroup_v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
            .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            .unwrap_or(false);
        let nofile_hard =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .map(|(_, hard)| hard)
                .unwrap_or(1024);
        let swap_limit = if cgroup_v2 {
            v2_swap_accounting()
        } else {
            Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        };
        HostInfo {
            cgroup_v2,
            nofile_hard,
            swap_limit,
            bounding: own_bounding_set(),
            kernel: crate::seccomp::kernel_version(),
            rootless: crate::rootless::Mode::current().is_rootless(),
            rootless_controllers: if crate::rootless::Mode::current().is_rootless() {
                crate::rootless::Cgroups::probe().controllers
            } else {
                Vec::new()
            },
            ping_group_max: crate::rootless::mapped_gid_max().unwrap_or(2147483647),
        }
    }
}

/// The container's oom_score_adj. Rootless, never below our own (as dockerd's rootless spec
/// conversion does): lowering it needs CAP_SYS_RESOURCE in the initial user namespace, and a
/// systemd user manager starts its services at 100 or 200, so Docker's default of 0 would fail
/// every create there.
fn oom_score_adj(want: i64, host: &HostInfo) -> i64 {
    if !host.rootless {
        return want;
    }
    let own = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0);
    want.max(own)
}

/// memory.swap.max exists in the cgroups of a v2 host (swap accounting is on): in our own
/// cgroup, or else in one of the root's children (the root itself has no such file).
fn v2_swap_accounting() -> bool {
    let root = Path::new("/sys/fs/cgroup");
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("0::")
                    .map(|p| p.trim_start_matches('/').to_string())
            })
        })
        .filter(|p| !p.is_empty());
    if let Some(own) = own {
        return root.join(own).join("memory.swap.max").exists();
    }
    std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.path().join("memory.swap.max").exists())
        })
        .unwrap_or(false)
}

/// Capability names by number (CAP_CHOWN = 0 ... CAP_CHECKPOINT_RESTORE = 40).
const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's 14 default capabilities.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

pub(crate) fn own_bounding_set() -> Vec<String> {
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

fn normalize_cap(field: &'static str, c: &str) -> Result<String, RuntimeError> {
    let up = c.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let name = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if ALL_CAPS.contains(&name.as_str()) {
        Ok(name)
    } else {
        // dockerd names the normalised capability: `unknown capability: "CAP_BOGUS"`.
        Err(RuntimeError::InvalidCapability { field, cap: name })
    }
}

/// `CapAdd`/`CapDrop` as dockerd checks them at create: every name a capability (with or
/// without `CAP_`, any case) or `ALL`.
pub fn check_capabilities(add: &[String], drop: &[String]) -> Result<(), RuntimeError> {
    for c in add {
        normalize_cap("CapAdd", c)?;
    }
    for c in drop {
        normalize_cap("CapDrop", c)?;
    }
    Ok(())
}

/// Docker's TweakCapabilities: privileged or `--cap-add ALL` get every capability the host
/// can grant; `--cap-drop ALL` keeps only the added ones.
fn capabilities(cfg: &ContainerRunConfig, host: &HostInfo) -> Result<Vec<String>, RuntimeError> {
    let add = cfg
        .cap_add
        .iter()
        .map(|c| normalize_cap("CapAdd", c))
        .collect::<Result<Vec<_>, _>>()?;
    let drop = cfg
        .cap_drop
        .iter()
        .map(|c| normalize_cap("CapDrop", c))
        .collect::<Result<Vec<_>, _>>()?;
    let all = || host.bounding.clone();
    let mut caps: Vec<String> = if cfg.privileged {
        all()
    } else if add.iter().any(|c| c == "ALL") {
        all().into_iter().filter(|c| !drop.contains(c)).collect()
    } else if drop.iter().any(|c| c == "ALL") {
        add.clone()
    } else {
        let mut v: Vec<String> = DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drop.contains(c))
            .collect();
        v.extend(add.iter().cloned());
        v
    };
    let mut seen = std::collections::HashSet::new();
    caps.retain(|c| seen.insert(c.clone()));
    Ok(caps)
}

/// Replace-or-append of KEY=VALUE entries, as Docker merges env lists.
pub(crate) fn set_env(env: &mut Vec<String>, kv: String) {
    let key = kv.split('=').next().unwrap_or("").to_string();
    match env
        .iter_mut()
        .find(|e| e.split('=').next().unwrap_or("") == key)
    {
        Some(slot) => *slot = kv,
        None => env.push(kv),
    }
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Value {
    json!({ "destination": dest, "type": typ, "source": source, "options": options })
}

fn device(typ: &str, major: Option<i64>, minor: Option<i64>, access: &str, allow: bool) -> Value {
    let mut d = json!({ "allow": allow, "type": typ, "access": access });
    if let Some(m) = major {
        d["major"] = json!(m);
    }
    if let Some(m) = minor {
        d["minor"] = json!(m);
    }
    d
}

/// Docker's device cgroup: deny everything, then the runc allowlist. Given in full because
/// libcontainer leaves the parent's "a *:* rwm" in place when the list is empty.
fn device_rules(privileged: bool) -> Vec<Value> {
    if privileged {
        return vec![json!({ "allow": true, "access": "rwm" })];
    }
    vec![
        json!({ "allow": false, "access": "rwm" }),
        device("c", None, None, "m", true),
        device("b", None, None, "m", true),
        device("c", Some(1), Some(3), "rwm", true), // null
        device("c", Some(1), Some(8), "rwm", true), // random
        device("c", Some(1), Some(7), "rwm", true), // full
        device("c", Some(5), Some(0), "rwm", true), // tty
        device("c", Some(1), Some(5), "rwm", true), // zero
        device("c", Some(1), Some(9), "rwm", true), // urandom
        device("c", Some(136), None, "rwm", true),  // pts
        device("c", Some(5), Some(2), "rwm", true), // ptmx
        device("c", Some(10), Some(200), "rwm", true), // tun
    ]
}

/// The host's device nodes, given to privileged containers as Docker does (containerd's
/// HostDevices: everything under /dev but pts, shm, mqueue, fd, console and dot dirs).
fn host_devices() -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from("/dev")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = md.file_type();
            if ft.is_dir() {
                if dir == Path::new("/dev")
                    && (matches!(name.as_str(), "pts" | "shm" | "mqueue" | "fd")
                        || name.starts_with('.'))
                {
                    continue;
                }
                stack.push(path);
                continue;
            }
            let typ = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            if path == Path::new("/dev/console") {
                continue;
            }
            let rdev = md.rdev();
            out.push(json!({
                "path": path, "type": typ,
                "major": nix::sys::stat::major(rdev), "minor": nix::sys::stat::minor(rdev),
                "fileMode": md.mode() & 0o7777, "uid": md.uid(), "gid": md.gid(),
            }));
        }
    }
    out
}

/// Builds the OCI spec for `cfg` with Docker's defaults on this host.
pub fn build_spec(cfg: &ContainerRunConfig) -> Result<Spec, RuntimeError> {
    build_spec_for(cfg, &HostInfo::probe())
}

pub(crate) fn build_spec_for(
    cfg: &ContainerRunConfig,
    host: &HostInfo,
) -> Result<Spec, RuntimeError> {
    if cfg.args.is_empty() {
        return Err(RuntimeError::Spec("no command specified".into()));
    }
    let mut user = resolve_user(&cfg.rootfs, &cfg.user)?;
    for gid in crate::user::additional_groups(&cfg.rootfs, &cfg.group_add)? {
        if !user.additional_gids.contains(&gid) {
            user.additional_gids.push(gid);
        }
    }

    let cwd = if cfg.cwd.is_empty() {
        "/"
    } else {
        cfg.cwd.as_str()
    };
    if !cwd.starts_with('/') {
        return Err(RuntimeError::Spec(format!(
            "the working directory '{cwd}' is invalid, it needs to be an absolute path"
        )));
    }
    // Docker creates a missing working directory in the container's filesystem.
    let host_cwd =
        secure_join(&cfg.rootfs, cwd).map_err(|e| RuntimeError::io("working directory", e))?;
    // The host side of the rootfs is writable even for --read-only, as for Docker.
    if !host_cwd.exists() {
        std::fs::create_dir_all(&host_cwd)
            .map_err(|e| RuntimeError::io(format!("mkdir {cwd}"), e))?;
        let _ = std::fs::set_permissions(&host_cwd, std::fs::Permissions::from_mode(0o755));
    }

    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={}", cfg.hostname),
    ];
    if cfg.tty {
        env.push("TERM=xterm".to_string());
    }
    for kv in &cfg.env {
        set_env(&mut env, kv.clone());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }

    let caps = capabilities(cfg, host)?;
    let nofile = host.nofile_hard.min(1_048_576);
    let mut rlimits = Vec::new();
    for u in &cfg.ulimits {
        let kind = crate::limits::RLIMITS
            .iter()
            .find(|(n, _, _)| *n == u.name)
            .map(|(_, k, _)| *k)
            .ok_or_else(|| RuntimeError::Spec(format!("invalid ulimit type: {}", u.name)))?;
        let (soft, hard) = crate::limits::rlimit_value(u.soft)
            .zip(crate::limits::rlimit_value(u.hard))
            .ok_or_else(|| RuntimeError::Spec(format!("invalid ulimit value for {}", u.name)))?;
        rlimits.push(json!({ "type": kind, "hard": hard, "soft": soft }));
    }
    if !cfg.ulimits.iter().any(|u| u.name == "nofile") {
        rlimits.push(json!({ "type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile }));
    }

    let mut process = json!({
        "terminal": cfg.tty,
        "user": { "uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids },
        "args": cfg.args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps,
        },
        "rlimits": rlimits,
        "oomScoreAdj": oom_score_adj(cfg.oom_score_adj, host),
    });
    // Only ever `true`: libcontainer treats a present `false` like `true` when ordering
    // seccomp after the capability drop, and the filter then fails to load.
    if cfg.no_new_privileges {
        process["noNewPrivileges"] = json!(true);
    }
    if cfg.tty {
        process["consoleSize"] = json!({ "height": 24, "width": 80 });
    }

    // Default mounts, unless the engine mounts something on the same destination.
    let taken = |d: &str| cfg.mounts.iter().any(|m| m.destination() == Path::new(d));
    let sys_opts: &[&str] = if cfg.privileged {
        &["nosuid", "noexec", "nodev"]
    } else {
        &["nosuid", "noexec", "nodev", "ro"]
    };
    let cgroup_opts: &[&str] = if cfg.privileged {
        &["nosuid", "noexec", "nodev", "relatime"]
    } else {
        &["ro", "nosuid", "noexec", "nodev", "relatime"]
    };
    // Rootless in the host's pid namespace: a new proc needs CAP_SYS_ADMIN over that pid
    // namespace's owner (the initial user namespace), so /proc is the host's, bound (as
    // rootless dockerd does since moby#41893, and nerdctl).
    let proc = if host.rootless && cfg.isolation.pid == Namespace::Host {
        mount(
            "/proc",
            "bind",
            "/proc",
            &["rbind", "nosuid", "noexec", "nodev"],
        )
    } else {
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])
    };
    let defaults = [
        proc,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount("/sys", "sysfs", "sysfs", sys_opts),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", cgroup_opts),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
    ];
    let mut mounts: Vec<Value> = defaults
        .into_iter()
        .filter(|m| !taken(m["destination"].as_str().unwrap_or("")))
        .collect();
    if !taken("/dev/shm") {
        match &cfg.isolation.shm {
            Shm::Tmpfs(size) => {
                let size = format!("size={size}");
                mounts.push(mount(
                    "/dev/shm",
                    "tmpfs",
                    "shm",
                    &["nosuid", "noexec", "nodev", "mode=1777", &size],
                ));
            }
            Shm::Bind(src) => mounts.push(json!({
                "destination": "/dev/shm", "type": "bind", "source": src,
                "options": ["rbind", "rprivate", "nosuid", "noexec", "nodev"],
            })),
            Shm::None => {}
        }
    }
    for m in &cfg.mounts {
        mounts.push(serde_json::to_value(m).map_err(|e| RuntimeError::Spec(e.to_string()))?);
    }

    let iso = &cfg.isolation;
    let mut namespaces = vec![json!({ "type": "mount" })];
    for (kind, mode) in [
        ("uts", &iso.uts),
        ("ipc", &iso.ipc),
        ("pid", &iso.pid),
        ("network", &cfg.network),
    ] {
        match mode {
            Namespace::New => namespaces.push(json!({ "type": kind })),
            Namespace::Path(p) => namespaces.push(json!({ "type": kind, "path": p })),
            Namespace::Host => {}
        }
    }
    // Docker's default cgroupns mode is "private" on v2 and "host" on v1.
    let cgroupns = match iso.cgroupns {
        CgroupNs::HostDefault => host.cgroup_v2,
        CgroupNs::Private => true,
        CgroupNs::Host => false,
    };
    if cgroupns {
        namespaces.push(json!({ "type": "cgroup" }));
    }

    // Rootless: only the limits of the delegated controllers (the engine warned about the
    // others at create); the device rules stay, the namespace's device access is the user's
    // anyway.
    let cfg = &if host.rootless {
        let mut resources = cfg.resources.clone();
        resources.retain_controllers(|c| host.rootless_controllers.iter().any(|h| h == c));
        ContainerRunConfig {
            resources,
            ..cfg.clone()
        }
    } else {
        cfg.clone()
    };
    // Limits are computed with checked arithmetic (crate::limits): an out-of-range value is an
    // error here, never a wrapped limit (the engine refuses such values at create already).
    let out_of_range = |what: &str| RuntimeError::Spec(format!("{what} out of range"));
    let r = &cfg.resources;
    crate::limits::memory_swap(r.memory, r.memory_swap)
        .ok_or_else(|| out_of_range("memory swap limit"))?;
    crate::limits::cfs(r.nano_cpus, r.cpu_period, r.cpu_quota)
        .ok_or_else(|| out_of_range("CPU quota"))?;
    if r.pids_limit.is_some_and(|p| p > crate::limits::MAX_PIDS) {
        return Err(out_of_range("PIDs limit"));
    }
    let systemd = !cfg.cgroups_path.starts_with('/');
    let (mut resources, deferred) = cfg
        .resources
        .to_spec(host.cgroup_v2, host.swap_limit, systemd);
    resources["devices"] = json!(device_rules(cfg.privileged));

    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": cfg.cgroups_path,
    });
    if !cfg.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        let seccomp = match &cfg.seccomp {
            SeccompMode::Default => Some(crate::seccomp::default_profile(&caps, host.kernel)?),
            SeccompMode::Unconfined => None,
            SeccompMode::Profile(json) => {
                Some(crate::seccomp::profile_from_json(json, &caps, host.kernel)?)
            }
        };
        if let Some(seccomp) = seccomp {
            linux["seccomp"] =
                serde_json::to_value(seccomp).map_err(|e| RuntimeError::Spec(e.to_string()))?;
        }
    }
    if cfg.privileged {
        linux["devices"] = json!(host_devices());
    }
    // A shared bind needs the container's mounts to be peers of the host's (so it joins its
    // source's peer group); a slave one the default, slave. As runc is given them by dockerd.
    let has = |modes: &[&str]| {
        cfg.mounts.iter().any(|m| {
            m.options()
                .as_ref()
                .is_some_and(|o| o.iter().any(|x| modes.contains(&x.as_str())))
        })
    };
    if has(&["shared", "rshared"]) {
        linux["rootfsPropagation"] = json!("shared");
    }
    if cfg.network != NetworkMode::Host {
        // As dockerd does for containers with their own network namespace.
        linux["sysctl"] = json!({
            "net.ipv4.ip_unprivileged_port_start": "0",
            "net.ipv4.ping_group_range": format!("0 {}", host.ping_group_max),
        });
    }

    let mut spec = json!({
        "ociVersion": "1.0.2",
        "root": { "path": cfg.rootfs, "readonly": cfg.readonly_rootfs },
        "process": process,
        "mounts": mounts,
        "linux": linux,
    });
    // Without a UTS namespace of its own, setting one would rename the host.
    if !cfg.hostname.is_empty() && iso.uts != Namespace::Host {
        spec["hostname"] = json!(cfg.hostname);
    }
    if let Some(d) = deferred {
        let text = serde_json::to_string(&d).map_err(|e| RuntimeError::Spec(e.to_string()))?;
        spec["annotations"] = json!({ crate::cgroup::DEFERRED_ANNOTATION: text });
    }
    cfg.extras.apply(&mut spec, cfg.privileged)?;
    serde_json::from_value(spec).map_err(|e| RuntimeError::Spec(e.to_string()))
}

fn is_executable(p: &Path) -> Option<bool> {
    let md = std::fs::metadata(p).ok()?;
    Some(md.is_file() && md.permissions().mode() & 0o111 != 0)
}

/// Checks that `arg0` names an executable inside `rootfs`, resolving symlinks inside it, and
/// fails with Docker's start-time wording otherwise.
pub fn resolve_executable(rootfs: &Path, arg0: &str, env: &[String]) -> Result<(), RuntimeError> {
    if arg0.is_empty() {
        return Err(RuntimeError::ExecNotFound(arg0.to_string()));
    }
    if arg0.contains('/') {
        let p = secure_join(rootfs, arg0).map_err(|_| RuntimeError::ExecNoSuchFile(arg0.into()))?;
        return match is_executable(&p) {
            None => Err(RuntimeError::ExecNoSuchFile(arg0.to_string())),
            Some(false) => Err(RuntimeError::ExecPermission(arg0.to_string())),
            Some(true) => Ok(()),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = format!("{}/{}", dir.trim_end_matches('/'), arg0);
        if let Ok(p) = secure_join(rootfs, &candidate) {
            if is_executable(&p) == Some(true) {
                return Ok(());
            }
        }
    }
    Err(RuntimeError::ExecNotFound(arg0.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    pub(crate) fn test_config(rootfs: &Path) -> ContainerRunConfig {
        ContainerRunConfig {
            id: "c1".into(),
            rootfs: rootfs.to_path_buf(),
            args: vec!["sh".into()],
            env: vec![],
            cwd: String::new(),
            user: String::new(),
            group_add: vec![],
            hostname: "c1host".into(),
            tty: false,
            readonly_rootfs: false,
            privileged: false,
            cap_add: vec![],
            cap_drop: vec![],
            no_new_privileges: false,
            resources: Resources::default(),
            ulimits: vec![],
            mounts: vec![],
            cgroups_path: "/berth/c1".into(),
            network: NetworkMode::New,
            isolation: Isolation::default(),
            oom_score_adj: 0,
            seccomp: Default::default(),
            extras: Default::default(),
        }
    }

    fn host(v2: bool) -> HostInfo {
        HostInfo {
            cgroup_v2: v2,
            nofile_hard: 20000,
            swap_limit: true,
            bounding: ALL_CAPS.iter().map(|s| s.to_string()).collect(),
            kernel: (6, 1),
            rootless: false,
            rootless_controllers: Vec::new(),
            ping_group_max: 2147483647,
        }
    }

    fn caps_of(spec: &Spec) -> Vec<String> {
        let v = serde_json::to_value(spec).unwrap();
        let mut c: Vec<String> = v["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        c.sort();
        c
    }

    #[test]
    fn docker_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        cfg.cwd = "/work/dir".into();
        cfg.tty = true;
        cfg.env = vec!["FOO=bar".into(), "PATH=/custom".into()];
        let spec = build_spec_for(&cfg, &host(false)).unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert!(dir.path().join("work/dir").is_dir());
        assert_eq!(v["process"]["cwd"], "/work/dir");
        let env: Vec<&str> = v["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(
            env,
            [
                "PATH=/custom",
                "HOSTNAME=c1host",
                "TERM=xterm",
                "FOO=bar",
                "HOME=/"
            ]
        );
        let mut want: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(caps_of(&spec), want);
        assert_eq!(v["process"]["rlimits"][0]["hard"], 20000);
        assert_eq!(v["process"]["oomScoreAdj"], 0);
        assert_eq!(v["linux"]["maskedPaths"].as_array().unwrap().len(), 11);
        assert_eq!(v["linux"]["readonlyPaths"].as_array().unwrap().len(), 5);
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["linux"]["cgroupsPath"], "/berth/c1");
        let devs = v["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(devs[0]["allow"], false);
        assert_eq!(devs[0]["access"], "rwm");
        assert!(devs.len() > 5);
        let ns: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["mount", "uts", "ipc", "pid", "network"]);
        let dests: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm"
            ]
        );
        assert_eq!(v["hostname"], "c1host");
        assert_eq!(v["process"]["terminal"], true);
    }

    #[test]
    fn v2_resources_and_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        cfg.resources = Resources {
            memory: 64 << 20,
            nano_cpus: 1_500_000_000,
            cpu_shares: 512,
            pids_limit: Some(10),
            blkio_weight: 300,
            ..Default::default()
        };
        cfg.isolation.cgroupns = CgroupNs::Private;
        cfg.network = NetworkMode::Host;
        cfg.readonly_rootfs = true;
        let v = serde_json::to_value(build_spec_for(&cfg, &host(true)).unwrap()).unwrap();
        let r = &v["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["memory"]["swap"], 128 << 20);
        assert_eq!(r["cpu"]["quota"], 150_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(r["cpu"]["shares"], 512);
        assert_eq!(r["pids"]["limit"], 10);
        assert!(r["blockIO"].is_null(), "weights go to the shim on v2: {r}");
        assert!(v["annotations"]["org.berth.cgroup-deferred"].is_string());
        assert_eq!(v["linux"]["cgroupsPath"], "/berth/c1");
        let ns: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["mount", "uts", "ipc", "pid", "cgroup"]);
        assert_eq!(v["root"]["readonly"], true);
        assert!(v["linux"].get("sysctl").is_none());
    }

    #[test]
    fn namespace_modes_shm_and_oom_score() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        cfg.isolation = Isolation {
            pid: Namespace::Host,
            ipc: Namespace::Path("/proc/42/ns/ipc".into()),
            uts: Namespace::Host,
            cgroupns: CgroupNs::Private,
            shm: Shm::Bind("/x/shm".into()),
        };
        cfg.oom_score_adj = 500;
        let v = serde_json::to_value(build_spec_for(&cfg, &host(false)).unwrap()).unwrap();
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        let kinds: Vec<&str> = ns.iter().map(|n| n["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["mount", "ipc", "network", "cgroup"]);
        assert_eq!(ns[1]["path"], "/proc/42/ns/ipc");
        assert!(
            v.get("hostname").is_none(),
            "uts=host must not rename the host"
        );
        assert_eq!(v["process"]["oomScoreAdj"], 500);
        let shm: Vec<&Value> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["destination"] == "/dev/shm")
            .collect();
        assert_eq!(shm.len(), 1);
        assert_eq!(shm[0]["type"], "bind");
        assert_eq!(shm[0]["source"], "/x/shm");

        cfg.isolation.shm = Shm::None;
        cfg.isolation.cgroupns = CgroupNs::Host;
        let v = serde_json::to_value(build_spec_for(&cfg, &host(true)).unwrap()).unwrap();
        assert!(!v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/dev/shm"));
        assert!(!v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "cgroup"));

        cfg.isolation.shm = Shm::Tmpfs(1 << 30);
        let v = serde_json::to_value(build_spec_for(&cfg, &host(true)).unwrap()).unwrap();
        let m = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/dev/shm")
            .unwrap()
            .clone();
        assert!(m["options"]
            .as_array()
            .unwrap()
            .contains(&json!("size=1073741824")));
    }

    #[test]
    fn out_of_range_limits_are_errors_not_wrapped_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        cfg.resources.memory = 1 << 62;
        assert!(build_spec_for(&cfg, &host(false)).is_err());
        cfg.resources.memory_swap = -1;
        let v = serde_json::to_value(build_spec_for(&cfg, &host(false)).unwrap()).unwrap();
        assert_eq!(v["linux"]["resources"]["memory"]["swap"], -1);
        cfg.resources.memory = 0;
        cfg.resources.nano_cpus = 92_233_720_368_548;
        assert!(build_spec_for(&cfg, &host(false)).is_err());
        cfg.resources.nano_cpus = 0;
        cfg.resources.pids_limit = Some(i64::MAX);
        assert!(build_spec_for(&cfg, &host(false)).is_err());
        cfg.resources.pids_limit = None;
        // CpuPeriod/CpuQuota reach the spec; huge shares are clamped as Docker does.
        cfg.resources.cpu_period = 50_000;
        cfg.resources.cpu_quota = 25_000;
        cfg.resources.cpu_shares = 1 << 62;
        let v = serde_json::to_value(build_spec_for(&cfg, &host(false)).unwrap()).unwrap();
        let c = &v["linux"]["resources"]["cpu"];
        assert_eq!(c["period"], 50_000);
        assert_eq!(c["quota"], 25_000);
        assert_eq!(c["shares"], 262_144);
    }

    #[test]
    fn capability_tweaks_and_privileged() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        cfg.cap_add = vec!["net_admin".into(), "CAP_SYS_ADMIN".into()];
        cfg.cap_drop = vec!["MKNOD".into()];
        let caps = caps_of(&build_spec_for(&cfg, &host(false)).unwrap());
        assert!(
            caps.contains(&"CAP_NET_ADMIN".to_string()) && !caps.contains(&"CAP_MKNOD".to_string())
        );
        assert_eq!(caps.len(), 15);
        cfg.cap_drop = vec!["ALL".into()];
        cfg.cap_add = vec!["CHOWN".into()];
        assert_eq!(
            caps_of(&build_spec_for(&cfg, &host(false)).unwrap()),
            ["CAP_CHOWN"]
        );
        cfg.cap_add = vec!["BOGUS".into()];
        assert_eq!(
            build_spec_for(&cfg, &host(false)).unwrap_err().to_string(),
            "invalid CapAdd: unknown capability: \"CAP_BOGUS\""
        );
        cfg.cap_add.clear();
        cfg.privileged = true;
        let spec = build_spec_for(&cfg, &host(false)).unwrap();
        assert_eq!(caps_of(&spec).len(), 41);
        let v = serde_json::to_value(&spec).unwrap();
        assert!(v["linux"].get("seccomp").is_none() && v["linux"].get("maskedPaths").is_none());
    }

    #[test]
    fn unknown_user_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        cfg.user = "ghost".into();
        assert_eq!(
            build_spec_for(&cfg, &host(false)).unwrap_err().to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
    }

    #[test]
    fn executable_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("usr/bin")).unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            r.join("usr/bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(r.join("usr/bin/data"), "x").unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        symlink("/usr/bin/tool", r.join("usr/bin/link")).unwrap();
        let env = vec![];
        assert!(resolve_executable(r, "tool", &env).is_ok());
        assert!(resolve_executable(r, "link", &env).is_ok());
        assert!(resolve_executable(r, "/bin/tool", &env).is_ok());
        assert_eq!(
            resolve_executable(r, "nope", &env).unwrap_err().to_string(),
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(
            resolve_executable(r, "data", &env).unwrap_err().to_string(),
            "exec: \"data\": executable file not found in $PATH"
        );
        assert_eq!(
            resolve_executable(r, "/etc", &env).unwrap_err().to_string(),
            "exec: \"/etc\": permission denied"
        );
        assert!(resolve_executable(r, "/nope", &env)
            .unwrap_err()
            .to_string()
            .contains("no such file or directory"));
        assert!(resolve_executable(r, "tool", &["PATH=/sbin".into()]).is_err());
    }
}
