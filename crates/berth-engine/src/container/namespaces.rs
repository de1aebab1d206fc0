//! The namespaces a start gives a container besides its network's: `--pid`, `--ipc`, `--uts`,
//! `--cgroupns`, and the /dev/shm that follows the IPC mode (dockerd's rules). A container that
//! joins another's namespace needs it running; `--ipc container:x` also needs `x` shareable
//! (`shareable` or `host`), whose /dev/shm it binds.

use std::path::{Path, PathBuf};

use berth_runtime::spec::{CgroupNs, Isolation, Namespace, Shm, DEFAULT_SHM_SIZE};

use crate::container::ContainerRecord;
use crate::error::{EngineError, Result};
use crate::Engine;

/// How deep `--ipc container:` chains are followed to find the /dev/shm they share.
const MAX_IPC_CHAIN: usize = 8;

impl Engine {
    /// The namespaces and /dev/shm of `rec` for this start. Mounts the shareable /dev/shm tmpfs
    /// of an `--ipc shareable` container (kept until it stops: see `release_shm`).
    pub(crate) fn isolation(&self, rec: &ContainerRecord) -> Result<Isolation> {
        let hc = &rec.host_config;
        let shm_size = if hc.shm_size > 0 {
            hc.shm_size
        } else {
            DEFAULT_SHM_SIZE
        };
        let pid = match hc.pid_mode.as_str() {
            "host" => Namespace::Host,
            m => match m.strip_prefix("container:") {
                Some(target) => {
                    let pid = self.joined_pid(target, "PID")?;
                    Namespace::Path(format!("/proc/{pid}/ns/pid").into())
                }
                None => Namespace::New,
            },
        };
        let (ipc, shm) = match hc.ipc_mode.as_str() {
            "host" => {
                if !Path::new("/dev/shm").is_dir() {
                    return Err(EngineError::Internal(
                        "/dev/shm is not mounted, but must be for --ipc=host".into(),
                    ));
                }
                (Namespace::Host, Shm::Bind("/dev/shm".into()))
            }
            "none" => (Namespace::New, Shm::None),
            "shareable" => {
                let dir = self.shm_dir(&rec.id);
                mount_shm(&dir, shm_size)?;
                (Namespace::New, Shm::Bind(dir))
            }
            m => match m.strip_prefix("container:") {
                Some(target) => {
                    let pid = self.joined_pid(target, "IPC")?;
                    let donor = self.lookup(target)?.snapshot();
                    let Some(src) = self.shm_source(&donor).filter(|p| p.is_dir()) else {
                        return Err(EngineError::InvalidParameter(format!(
                            "failed to join IPC namespace: container {target}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)"
                        )));
                    };
                    (
                        Namespace::Path(format!("/proc/{pid}/ns/ipc").into()),
                        Shm::Bind(src),
                    )
                }
                // "" and "private".
                None => (Namespace::New, Shm::Tmpfs(shm_size)),
            },
        };
        let uts = if hc.uts_mode == "host" {
            Namespace::Host
        } else {
            Namespace::New
        };
        let cgroupns = match hc.cgroupns_mode.as_str() {
            "private" => CgroupNs::Private,
            "host" => CgroupNs::Host,
            _ => CgroupNs::HostDefault,
        };
        Ok(Isolation {
            pid,
            ipc,
            uts,
            cgroupns,
            shm,
        })
    }

    /// The init pid of the running container `target` whose `kind` namespace a start joins.
    fn joined_pid(&self, target: &str, kind: &str) -> Result<i64> {
        let c = self.lookup(target).map_err(|e| {
            EngineError::InvalidParameter(format!("failed to join {kind} namespace: {e}"))
        })?;
        let rec = c.snapshot();
        if !rec.state.status.is_running() || rec.state.pid <= 0 {
            return Err(EngineError::Conflict(format!(
                "failed to join {kind} namespace: Container {} is not running",
                rec.id
            )));
        }
        Ok(rec.state.pid)
    }

    /// Where a container's shareable /dev/shm is mounted on the host.
    pub(crate) fn shm_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("mounts").join("shm")
    }

    /// The host directory a container's /dev/shm comes from, if others may share it.
    fn shm_source(&self, rec: &ContainerRecord) -> Option<PathBuf> {
        let mut rec = rec.clone();
        for _ in 0..MAX_IPC_CHAIN {
            match rec.host_config.ipc_mode.as_str() {
                "shareable" => return Some(self.shm_dir(&rec.id)),
                "host" => return Some("/dev/shm".into()),
                m => {
                    let target = m.strip_prefix("container:")?;
                    rec = self.lookup(target).ok()?.snapshot();
                }
            }
        }
        None
    }

    /// Unmounts a shareable /dev/shm once its container no longer runs (containers that joined
    /// its IPC namespace keep their bind of it).
    pub(crate) fn release_shm(&self, id: &str) {
        let dir = self.shm_dir(id);
        if is_mount_point(&dir) {
            if let Err(e) = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!("unmount {}: {e}", dir.display());
            }
        }
    }
}

/// A tmpfs for a shareable /dev/shm, as dockerd mounts it (kept if already there: a restart).
fn mount_shm(dir: &Path, size: i64) -> Result<()> {
    use nix::mount::MsFlags;
    std::fs::create_dir_all(dir)?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let data = format!("mode=1777,size={size}");
    nix::mount::mount(
        Some("shm"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| EngineError::Internal(format!("mounting shm tmpfs: {e}")))
}

fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) {
        (Ok(d), Some(Ok(p))) => d.dev() != p.dev(),
        _ => false,
    }
}
