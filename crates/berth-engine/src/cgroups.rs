//! A container's cgroup directories, for stats, top, pause and update. The runtime puts every
//! container at `<parent>/<id>` (`/berth/<id>` unless `--cgroup-parent`): in each v1 hierarchy
//! on a v1/hybrid host, or in the unified tree on a cgroup v2 host.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub enum Cgroup {
    V1 { root: PathBuf, rel: String },
    V2 { dir: PathBuf },
}

/// The host is cgroup v2 only (`/sys/fs/cgroup` is the unified mount).
pub fn host_is_v2(root: &Path) -> bool {
    root.join("cgroup.controllers").exists()
}

/// The cgroup under which a container goes, from `HostConfig.CgroupParent`: `/berth` when
/// empty; a path (relative ones from the root, `..` cleaned away as runc does) on either cgroup
/// version; a systemd slice name (`a-b.slice`) expands to systemd's path for it
/// (`/a.slice/a-b.slice`), as there is no systemd here to ask.
pub fn parent_path(parent: &str) -> Result<String, String> {
    if parent.is_empty() {
        return Ok("/berth".into());
    }
    if parent.contains('\0') || parent.contains('\n') {
        return Err(format!("invalid cgroup parent {parent:?}"));
    }
    if !parent.contains('/') && parent.len() > 6 && parent.ends_with(".slice") {
        let name = parent.trim_end_matches(".slice");
        if name == "-" {
            return Ok("/".into());
        }
        if name.is_empty() || name.starts_with('-') || name.ends_with('-') || name.contains("--") {
            return Err(format!("invalid slice name: {parent}"));
        }
        let mut path = String::new();
        let mut prefix = String::new();
        for part in name.split('-') {
            if !prefix.is_empty() {
                prefix.push('-');
            }
            prefix.push_str(part);
            path.push('/');
            path.push_str(&prefix);
            path.push_str(".slice");
        }
        return Ok(path);
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in parent.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The container's cgroups path (the OCI spec's `cgroupsPath`).
pub fn container_path(id: &str, cgroup_parent: &str) -> String {
    let parent = parent_path(cgroup_parent).unwrap_or_else(|_| "/berth".into());
    format!("{}/{id}", parent.trim_end_matches('/'))
}

impl Cgroup {
    /// The cgroup of a container (its record's id and `CgroupParent`).
    pub fn of(container_id: &str, cgroup_parent: &str) -> Cgroup {
        Self::at(
            Path::new("/sys/fs/cgroup"),
            &container_path(container_id, cgroup_parent),
        )
    }

    /// The cgroup at `cgroups_path` below the cgroup root `root`.
    pub fn at(root: &Path, cgroups_path: &str) -> Cgroup {
        let rel = cgroups_path.trim_start_matches('/').to_string();
        if host_is_v2(root) {
            Cgroup::V2 {
                dir: root.join(rel),
            }
        } else {
            Cgroup::V1 {
                root: root.to_path_buf(),
                rel,
            }
        }
    }

    /// The directory of a v1 controller (or the v2 directory).
    pub fn dir(&self, controller: &str) -> PathBuf {
        match self {
            Cgroup::V1 { root, rel } => root.join(controller).join(rel),
            Cgroup::V2 { dir } => dir.clone(),
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
            Cgroup::V1 { .. } => "pids",
            Cgroup::V2 { .. } => "",
        };
        self.read(ctl, "cgroup.procs")
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Freezes or thaws every process of the container.
    pub fn freeze(&self, frozen: bool) -> std::io::Result<()> {
        match self {
            Cgroup::V1 { .. } => self.write(
                "freezer",
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
            ),
            Cgroup::V2 { .. } => self.write("", "cgroup.freeze", if frozen { "1" } else { "0" }),
        }
    }

    /// Waits (briefly) until the freezer reports the state reached.
    pub fn wait_frozen(&self, frozen: bool) -> bool {
        for _ in 0..200 {
            let done = match self {
                Cgroup::V1 { .. } => self
                    .read("freezer", "freezer.state")
                    .map(|s| s.trim() == if frozen { "FROZEN" } else { "THAWED" })
                    .unwrap_or(false),
                Cgroup::V2 { .. } => self
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
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_layouts() {
        let t = tempfile::tempdir().expect("tmp");
        let c = Cgroup::at(t.path(), &container_path("abc", ""));
        assert_eq!(c.dir("memory"), t.path().join("memory/berth/abc"));
        std::fs::write(t.path().join("cgroup.controllers"), "cpu memory pids\n").expect("w");
        let c = Cgroup::at(t.path(), "/berth/abc");
        assert_eq!(c.dir("memory"), t.path().join("berth/abc"));
        std::fs::create_dir_all(t.path().join("berth/abc")).expect("mkdir");
        std::fs::write(t.path().join("berth/abc/cgroup.procs"), "12\n34\n").expect("w");
        assert_eq!(c.pids(), vec![12, 34]);
        c.freeze(true).expect("freeze");
        assert_eq!(
            std::fs::read_to_string(t.path().join("berth/abc/cgroup.freeze")).expect("r"),
            "1"
        );
    }

    #[test]
    fn cgroup_parents() {
        assert_eq!(container_path("c", ""), "/berth/c");
        assert_eq!(container_path("c", "/a/b/"), "/a/b/c");
        assert_eq!(container_path("c", "rel"), "/rel/c");
        assert_eq!(container_path("c", "../../x/./y"), "/x/y/c");
        assert_eq!(container_path("c", "/"), "/c");
        assert_eq!(container_path("c", "app.slice"), "/app.slice/c");
        assert_eq!(
            container_path("c", "my-app-web.slice"),
            "/my.slice/my-app.slice/my-app-web.slice/c"
        );
        assert!(parent_path("bad--name.slice").is_err());
        assert!(parent_path("nul\0").is_err());
    }
}
