//! A container's cgroup: where it is (the cgroupfs or the systemd driver; v1/hybrid or v2
//! hosts), what it is limited to (`Resources`, written into the spec at creation and into the
//! cgroup files — and systemd's unit properties — by `update`), and what libcontainer leaves
//! undone on v2 (the device filter, block IO weights), done by the shim before the container
//! starts.
//!
//! The cgroupfs driver puts a container at `<parent>/<id>` (parent `/berth` by default) in each
//! v1 hierarchy or in the unified tree. The systemd driver (v2 only) asks systemd over D-Bus for
//! a transient scope `berth-<id>.scope` in a slice (`system.slice` by default), as dockerd's does
//! with `docker-<id>.scope`; the spec's cgroupsPath then reads `<slice>:berth:<id>`.

mod dbus;
mod devices;
mod resources;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub(crate) use resources::DEFERRED_ANNOTATION;
pub use resources::{Resources, ThrottleDevice, WeightDevice};

use crate::RuntimeError;

/// Where cgroup hierarchies are mounted.
pub const ROOT: &str = "/sys/fs/cgroup";
/// The cgroupfs driver's parent of containers when `--cgroup-parent` is not given.
pub const DEFAULT_PARENT: &str = "/berth";
/// The systemd driver's slice of containers when `--cgroup-parent` is not given.
pub const DEFAULT_SLICE: &str = "system.slice";
/// The prefix of the systemd driver's scopes: `berth-<id>.scope`.
pub const SCOPE_PREFIX: &str = "berth";

/// `--exec-opt native.cgroupdriver=<cgroupfs|systemd>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupDriver {
    #[default]
    Cgroupfs,
    Systemd,
}

impl FromStr for CgroupDriver {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self, RuntimeError> {
        match s {
            "cgroupfs" => Ok(CgroupDriver::Cgroupfs),
            "systemd" => Ok(CgroupDriver::Systemd),
            // dockerd's words.
            other => Err(RuntimeError::Invalid(format!(
                "native.cgroupdriver option {other} not supported"
            ))),
        }
    }
}

impl std::fmt::Display for CgroupDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupDriver::Cgroupfs => "cgroupfs",
            CgroupDriver::Systemd => "systemd",
        })
    }
}

/// The unified hierarchy alone is mounted at `root` (a v2 host; hybrid hosts are not).
pub fn host_is_v2(root: &Path) -> bool {
    root.join("cgroup.controllers").exists()
}

/// The machine was booted with systemd (systemd's own test: `sd_booted()`).
pub fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

impl CgroupDriver {
    /// Docker's default: systemd on a host booted with systemd whose cgroups are v2 only,
    /// cgroupfs elsewhere.
    pub fn host_default() -> CgroupDriver {
        if systemd_booted() && host_is_v2(Path::new(ROOT)) {
            CgroupDriver::Systemd
        } else {
            CgroupDriver::Cgroupfs
        }
    }

    /// Whether this host can use the driver; the daemon refuses to start otherwise.
    pub fn check_host(self) -> Result<(), RuntimeError> {
        if self == CgroupDriver::Cgroupfs {
            return Ok(());
        }
        if !systemd_booted() {
            return Err(RuntimeError::Invalid(
                "systemd cgroup driver: this host was not booted with systemd".into(),
            ));
        }
        if !host_is_v2(Path::new(ROOT)) {
            return Err(RuntimeError::Invalid(
                "systemd cgroup driver: Berth supports it on cgroup v2 hosts only (this host \
                 mounts cgroup v1 hierarchies); use native.cgroupdriver=cgroupfs"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The spec's `cgroupsPath` of container `id` under `parent` (`--cgroup-parent`, may be
    /// empty). Docker's errors for a parent the driver cannot take.
    pub fn cgroups_path(self, parent: &str, id: &str) -> Result<String, RuntimeError> {
        match self {
            CgroupDriver::Cgroupfs => {
                let parent = parent.trim_end_matches('/');
                let parent = if parent.is_empty() {
                    DEFAULT_PARENT
                } else {
                    parent
                };
                if parent.split('/').any(|c| c == ".." || c == ".") {
                    return Err(RuntimeError::Invalid(format!(
                        "invalid cgroup parent {parent:?}: it must not contain . or .. components"
                    )));
                }
                Ok(format!("/{}/{id}", parent.trim_start_matches('/')))
            }
            CgroupDriver::Systemd => {
                let slice = if parent.is_empty() {
                    DEFAULT_SLICE
                } else {
                    parent
                };
                expand_slice(slice)?;
                Ok(format!("{slice}:{SCOPE_PREFIX}:{id}"))
            }
        }
    }
}

/// `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`: where systemd puts a slice's cgroup.
pub fn expand_slice(slice: &str) -> Result<PathBuf, RuntimeError> {
    let bad = || {
        RuntimeError::Invalid(
            "cgroup-parent for systemd cgroup should be a valid slice named as \"xxx.slice\""
                .into(),
        )
    };
    let name = slice.strip_suffix(".slice").ok_or_else(bad)?;
    if name.is_empty() || slice.contains('/') || slice.contains(':') {
        return Err(bad());
    }
    if name == "-" {
        return Ok(PathBuf::from("/"));
    }
    let mut path = PathBuf::from("/");
    let mut prefix = String::new();
    for part in name.split('-') {
        if part.is_empty() {
            return Err(bad());
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
        prefix.push('-');
    }
    Ok(path)
}

/// `--cgroupns`: the container's own cgroup namespace, or the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupnsMode {
    Private,
    Host,
}

impl CgroupnsMode {
    /// `HostConfig.CgroupnsMode`; empty takes the daemon's default (`default`).
    pub fn parse(s: &str, default: CgroupnsMode) -> Result<CgroupnsMode, RuntimeError> {
        match s {
            "" => Ok(default),
            "private" => Ok(CgroupnsMode::Private),
            "host" => Ok(CgroupnsMode::Host),
            other => Err(RuntimeError::Invalid(format!(
                "invalid cgroup namespace mode: {other}"
            ))),
        }
    }

    /// Docker's default: private on v2 hosts, host on v1 and hybrid ones.
    pub fn host_default() -> CgroupnsMode {
        if host_is_v2(Path::new(ROOT)) {
            CgroupnsMode::Private
        } else {
            CgroupnsMode::Host
        }
    }
}

impl std::fmt::Display for CgroupnsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupnsMode::Private => "private",
            CgroupnsMode::Host => "host",
        })
    }
}

/// One container's cgroup: its directory in each v1 hierarchy, or its v2 directory (and its
/// systemd scope when the systemd driver made it).
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerCgroup {
    V1 { root: PathBuf, rel: String },
    V2 { dir: PathBuf, unit: Option<String> },
}

impl ContainerCgroup {
    /// The cgroup a spec's `cgroupsPath` names, under `/sys/fs/cgroup`.
    pub fn from_cgroups_path(cgroups_path: &str) -> Option<ContainerCgroup> {
        Self::at(Path::new(ROOT), cgroups_path)
    }

    /// The same under another root (tests).
    pub fn at(root: &Path, cgroups_path: &str) -> Option<ContainerCgroup> {
        if cgroups_path.starts_with('/') {
            let rel = cgroups_path.trim_start_matches('/').to_string();
            if rel.is_empty() || rel.split('/').any(|c| c == "..") {
                return None;
            }
            return Some(if host_is_v2(root) {
                ContainerCgroup::V2 {
                    dir: root.join(rel),
                    unit: None,
                }
            } else {
                ContainerCgroup::V1 {
                    root: root.to_path_buf(),
                    rel,
                }
            });
        }
        // systemd: <slice>:<prefix>:<name>, a scope (the driver only runs on v2 hosts).
        let mut parts = cgroups_path.split(':');
        let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || name.is_empty() || name.contains('/') {
            return None;
        }
        let slice = if slice.is_empty() {
            DEFAULT_SLICE
        } else {
            slice
        };
        let unit = format!("{prefix}-{name}.scope");
        let dir = root
            .join(expand_slice(slice).ok()?.strip_prefix("/").ok()?)
            .join(&unit);
        Some(ContainerCgroup::V2 {
            dir,
            unit: Some(unit),
        })
    }

    /// The cgroup of the container whose bundle is `bundle` (its config.json's cgroupsPath).
    pub fn of_bundle(bundle: &Path) -> Option<ContainerCgroup> {
        Self::from_cgroups_path(&cgroups_path_of(bundle))
    }

    /// Creates the parent directories of a v2 cgroupfs cgroup (`/sys/fs/cgroup/berth`).
    /// libcontainer creates each missing directory of the path after checking it is absent,
    /// so two containers starting at once raced on the first one's parent and one failed
    /// with "failed to create dir /sys/fs/cgroup/berth: File exists"; create_dir_all takes
    /// an existing directory as done. An error is left for libcontainer to report.
    pub fn create_parent(&self) {
        if let ContainerCgroup::V2 { dir, unit: None } = self {
            if let Some(parent) = dir.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
        }
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, ContainerCgroup::V2 { .. })
    }

    /// The systemd unit holding the container (systemd driver).
    pub fn unit(&self) -> Option<&str> {
        match self {
            ContainerCgroup::V2 { unit, .. } => unit.as_deref(),
            ContainerCgroup::V1 { .. } => None,
        }
    }

    /// The directory of a v1 controller (or the v2 directory, whatever `controller` says).
    pub fn dir(&self, controller: &str) -> PathBuf {
        match self {
            ContainerCgroup::V1 { root, rel } => root.join(controller).join(rel),
            ContainerCgroup::V2 { dir, .. } => dir.clone(),
        }
    }

    pub fn read(&self, controller: &str, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir(controller).join(file)).ok()
    }

    pub fn read_u64(&self, controller: &str, file: &str) -> Option<u64> {
        self.read(controller, file)?.trim().parse().ok()
    }

    pub fn write(&self, controller: &str, file: &str, value: &str) -> std::io::Result<()> {
        std::fs::write(self.dir(controller).join(file), value)
    }

    /// Process ids in the container's cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let ctl = match self {
            ContainerCgroup::V1 { .. } => "pids",
            ContainerCgroup::V2 { .. } => "",
        };
        self.read(ctl, "cgroup.procs")
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Freezes or thaws every process of the container (v1 freezer, v2 cgroup.freeze).
    pub fn freeze(&self, frozen: bool) -> std::io::Result<()> {
        match self {
            ContainerCgroup::V1 { .. } => self.write(
                "freezer",
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            ContainerCgroup::V2 { .. } => {
                self.write("", "cgroup.freeze", if frozen { "1" } else { "0" })
            }
        }
    }

    /// Waits (briefly) until the freezer reports the state reached.
    pub fn wait_frozen(&self, frozen: bool) -> bool {
        for _ in 0..400 {
            let done = match self {
                ContainerCgroup::V1 { .. } => self
                    .read("freezer", "freezer.state")
                    .map(|s| s.trim() == if frozen { "FROZEN" } else { "THAWED" })
                    .unwrap_or(false),
                ContainerCgroup::V2 { .. } => self
                    .read("", "cgroup.events")
                    .map(|s| {
                        s.lines()
                            .any(|l| l == if frozen { "frozen 1" } else { "frozen 0" })
                    })
                    .unwrap_or(false),
            };
            if done {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// The memory cgroup counted an OOM kill (v1 memory.oom_control, v2 memory.events).
    pub fn oom_killed(&self) -> bool {
        let text = match self {
            ContainerCgroup::V1 { .. } => self.read("memory", "memory.oom_control"),
            ContainerCgroup::V2 { .. } => self.read("", "memory.events"),
        };
        text.is_some_and(|s| {
            s.lines().any(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    }

    /// rmdir of the container's (empty) cgroup directories, for when libcontainer's state,
    /// which removes them, is gone. A systemd scope goes away by itself once empty.
    pub fn remove_dirs(&self) {
        match self {
            ContainerCgroup::V1 { root, rel } => {
                let _ = std::fs::remove_dir(root.join(rel));
                if let Ok(entries) = std::fs::read_dir(root) {
                    for e in entries.flatten() {
                        let _ = std::fs::remove_dir(e.path().join(rel));
                    }
                }
            }
            ContainerCgroup::V2 { dir, unit: None } => {
                let _ = std::fs::remove_dir(dir);
            }
            ContainerCgroup::V2 { unit: Some(_), .. } => {}
        }
    }

    /// Sets the limits of a running container: systemd's unit properties (systemd driver),
    /// then the cgroup files. Docker's wording for what the host cannot do.
    pub fn update(&self, res: &Resources) -> Result<(), RuntimeError> {
        if let Some(unit) = self.unit() {
            let props = res.unit_properties(self.dir(""))?;
            if !props.is_empty() {
                dbus::set_unit_properties(unit, &props)?;
            }
        }
        res.write_files(self)
            .map_err(|e| RuntimeError::Runtime(format!("{e}")))
    }
}

/// Rootless: asks the user's systemd manager for a transient scope `unit` holding `pid`, with
/// `Delegate=yes` (see `crate::rootless`).
pub fn start_user_scope(unit: &str, pid: u32, what: &str) -> Result<(), RuntimeError> {
    dbus::start_user_scope(unit, pid, what)
}

/// A bundle's cgroupsPath (empty when unreadable).
pub fn cgroups_path_of(bundle: &Path) -> String {
    #[derive(serde::Deserialize)]
    struct Spec {
        linux: Option<Linux>,
    }
    #[derive(serde::Deserialize)]
    struct Linux {
        #[serde(rename = "cgroupsPath")]
        cgroups_path: Option<String>,
    }
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice::<Spec>(&d).ok())
        .and_then(|s| s.linux?.cgroups_path)
        .unwrap_or_default()
}

/// What the shim does between libcontainer's create and the container's start, on v2 hosts:
/// the device filter (libcontainer applies none on v2 without its eBPF feature, which leaves
/// every host device readable through mknod) and the limits `Resources::to_spec` deferred
/// (block IO weights; the cpuset with the systemd driver), as unit properties too for a scope.
/// Rootless there is no device filter (loading one needs privileges the user does not have),
/// and without a delegated subtree nothing at all: the container has no cgroup of its own (it
/// stays in the daemon's).
pub fn after_create(spec: &oci_spec::runtime::Spec) -> Result<(), RuntimeError> {
    let rootless = crate::rootless::Mode::current().is_rootless();
    if rootless && crate::rootless::Cgroups::probe().controllers.is_empty() {
        return Ok(());
    }
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let Some(cgroups_path) = linux.cgroups_path() else {
        return Ok(());
    };
    let Some(cg) = ContainerCgroup::from_cgroups_path(&cgroups_path.to_string_lossy()) else {
        return Ok(());
    };
    if !cg.is_v2() {
        return Ok(());
    }
    if let Some(rules) = linux.resources().as_ref().and_then(|r| r.devices().clone()) {
        if !rootless {
            devices::attach(&cg.dir(""), &rules)?;
        }
    }
    if let Some(res) = Resources::from_annotations(spec.annotations().as_ref()) {
        if let Some(unit) = cg.unit() {
            let props = res.unit_properties(cg.dir(""))?;
            if !props.is_empty() {
                dbus::set_unit_properties(unit, &props)?;
            }
        }
        res.write_deferred(&cg)
            .map_err(|e| RuntimeError::create_internal(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_paths_of_both_drivers() {
        let fs = CgroupDriver::Cgroupfs;
        assert_eq!(fs.cgroups_path("", "abc").unwrap(), "/berth/abc");
        assert_eq!(
            fs.cgroups_path("/my/parent/", "abc").unwrap(),
            "/my/parent/abc"
        );
        assert_eq!(fs.cgroups_path("rel", "abc").unwrap(), "/rel/abc");
        assert!(fs.cgroups_path("/a/../b", "abc").is_err());
        let sd = CgroupDriver::Systemd;
        assert_eq!(
            sd.cgroups_path("", "abc").unwrap(),
            "system.slice:berth:abc"
        );
        assert_eq!(
            sd.cgroups_path("my-app.slice", "abc").unwrap(),
            "my-app.slice:berth:abc"
        );
        let e = sd.cgroups_path("/berth", "abc").unwrap_err().to_string();
        assert!(
            e.contains("should be a valid slice named as \"xxx.slice\""),
            "{e}"
        );
        assert!("bogus".parse::<CgroupDriver>().is_err());
        assert_eq!("systemd".parse::<CgroupDriver>().unwrap(), sd);
    }

    #[test]
    fn slices_expand_as_systemd_nests_them() {
        assert_eq!(
            expand_slice("system.slice").unwrap(),
            Path::new("/system.slice")
        );
        assert_eq!(
            expand_slice("a-b-c.slice").unwrap(),
            Path::new("/a.slice/a-b.slice/a-b-c.slice")
        );
        assert_eq!(expand_slice("-.slice").unwrap(), Path::new("/"));
        for bad in ["foo", ".slice", "a--b.slice", "a/b.slice", "-a.slice"] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parents_of_cgroupfs_cgroups_are_created_once_by_many() {
        let t = tempfile::tempdir().expect("tmp");
        std::fs::write(t.path().join("cgroup.controllers"), "cpu memory pids\n").expect("w");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let root = t.path().to_path_buf();
                std::thread::spawn(move || {
                    let c = ContainerCgroup::at(&root, &format!("/berth/sub/c{i}")).expect("v2");
                    c.create_parent();
                })
            })
            .collect();
        for th in threads {
            th.join().expect("thread");
        }
        assert!(t.path().join("berth/sub").is_dir());
        assert!(
            !t.path().join("berth/sub/c0").exists(),
            "the leaf is libcontainer's"
        );
        // A scope's parents are systemd's to create.
        let s = ContainerCgroup::at(t.path(), "a-b.slice:berth:abc").expect("systemd");
        s.create_parent();
        assert!(!t.path().join("a.slice").exists());
    }

    #[test]
    fn locates_v1_v2_and_systemd_cgroups() {
        let t = tempfile::tempdir().expect("tmp");
        let c = ContainerCgroup::at(t.path(), "/berth/abc").expect("v1");
        assert_eq!(c.dir("memory"), t.path().join("memory/berth/abc"));
        assert!(ContainerCgroup::at(t.path(), "/berth/../x").is_none());
        std::fs::write(t.path().join("cgroup.controllers"), "cpu memory pids\n").expect("w");
        let c = ContainerCgroup::at(t.path(), "/berth/abc").expect("v2");
        assert_eq!(c.dir("memory"), t.path().join("berth/abc"));
        assert_eq!(c.unit(), None);
        let s = ContainerCgroup::at(t.path(), "a-b.slice:berth:abc").expect("systemd");
        assert_eq!(
            s.dir(""),
            t.path().join("a.slice/a-b.slice/berth-abc.scope")
        );
        assert_eq!(s.unit(), Some("berth-abc.scope"));

        std::fs::create_dir_all(t.path().join("berth/abc")).expect("mkdir");
        std::fs::write(t.path().join("berth/abc/cgroup.procs"), "12\n34\n").expect("w");
        assert_eq!(c.pids(), vec![12, 34]);
        c.freeze(true).expect("freeze");
        assert_eq!(
            std::fs::read_to_string(t.path().join("berth/abc/cgroup.freeze")).expect("r"),
            "1"
        );
        std::fs::write(
            t.path().join("berth/abc/memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .expect("w");
        assert!(c.oom_killed());
    }

    #[test]
    fn cgroupns_modes() {
        assert_eq!(
            CgroupnsMode::parse("", CgroupnsMode::Host).unwrap(),
            CgroupnsMode::Host
        );
        assert_eq!(
            CgroupnsMode::parse("private", CgroupnsMode::Host).unwrap(),
            CgroupnsMode::Private
        );
        let e = CgroupnsMode::parse("shared", CgroupnsMode::Host).unwrap_err();
        assert_eq!(e.to_string(), "invalid cgroup namespace mode: shared");
    }
}
