//! A container's cgroup directories, for stats, top, pause and update. The runtime puts every
//! container at `/berth/<id>` (a pod's container under its pod's cgroup parent, see
//! `ContainerRecord::cgroup_rel`): in each v1 hierarchy on a v1/hybrid host, or in the unified
//! tree on a cgroup v2 host.

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

impl Cgroup {
    /// The cgroup at `rel` (relative to the hierarchy roots, e.g. `berth/<id>`).
    pub fn of(rel: &str) -> Cgroup {
        Self::at(Path::new("/sys/fs/cgroup"), rel)
    }

    pub fn at(root: &Path, rel: &str) -> Cgroup {
        let rel = rel.trim_matches('/').to_string();
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
        let c = Cgroup::at(t.path(), "abc");
        assert_eq!(c.dir("memory"), t.path().join("memory/berth/abc"));
        std::fs::write(t.path().join("cgroup.controllers"), "cpu memory pids\n").expect("w");
        let c = Cgroup::at(t.path(), "abc");
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
}
