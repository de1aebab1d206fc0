//! berth-engine: containers and images as one consistent state.
//!
//! The engine owns the container records, names and lifecycle, drives the image store for root
//! filesystems and the runtime's shims for processes, and recovers all of it after a restart.
//!
//! One folder per resource, one file per operation: `container/` (create, start, stop, remove,
//! wait, monitor, recover, ...), `network/`, `image/`, `volume/`, `exec/`, `ops/` (pause, top,
//! update, commit, export), `pod/` (the CRI's pod sandboxes); `runtime/` is the client of the
//! shims.

pub mod cgroups;
pub mod container;
pub mod disk;
pub mod error;
pub mod events;
pub mod exec;
mod filters;
pub mod image;
pub mod network;
pub mod ops;
pub mod pod;
pub mod runtime;
mod sweep;
mod system;
mod util;
pub mod volume;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

pub use berth_runtime::cgroup::{CgroupDriver, CgroupnsMode};
pub use berth_runtime::rootless::Cgroups as RootlessCgroups;
pub use container::attach::{AttachFuture, AttachOptions, AttachStream};
pub use container::list::ListOptions;
pub use container::logs::LogsOptions;
pub use container::wait::WaitCondition;
pub use error::{EngineError, Result};
pub use filters::parse_filters;
pub use image::{RegistryConfig, Transfer};

use container::ContainerIndex;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// The berth binary, re-executed as `berth shim`.
    pub berth_exe: PathBuf,
    pub registry: image::RegistryConfig,
    /// Bridge, subnets and pools (`--bridge`, `--bip`, `--default-address-pool`).
    pub network: network::NetConfig,
    /// The daemon's default json-file log options (`--log-opt`, daemon.json `log-opts`): a
    /// container created with the default log driver gets each one it does not set itself.
    pub log_opts: berth_api::types::StringMap,
    /// `--experimental`: reported in /info and /version; allows `build --squash`.
    pub experimental: bool,
    /// `--exec-opt native.cgroupdriver=`: cgroupfs, or systemd (scopes made over D-Bus).
    pub cgroup_driver: CgroupDriver,
    /// `--default-cgroupns-mode`: for containers that do not say.
    pub default_cgroupns: CgroupnsMode,
    /// Pod networking: the CNI configuration directory and plugin directories.
    pub cni: berth_net::cni::CniConfig,
}

pub struct Inner {
    cfg: EngineConfig,
    /// Stable identity of this daemon's state (`ID` in /info), kept in `<data-root>/engine-id`.
    id: String,
    images: Arc<berth_image::ImageStore>,
    containers: RwLock<ContainerIndex>,
    registry_config: image::RegistryConfig,
    /// id -> (exit code, when): removed containers a late `wait` may still ask about.
    removed: std::sync::Mutex<HashMap<String, (i64, std::time::Instant)>>,
    volumes: volume::VolumeStore,
    /// Held by volume rm/prune and by container create from resolving its mounts to
    /// registering it, so a volume is never removed while a container is taking it.
    volume_lock: tokio::sync::Mutex<()>,
    net: Arc<network::Networks>,
    /// Exec instances (in memory, as in Docker).
    execs: exec::ExecTable,
    events: events::EventBus,
    health: container::health::HealthTable,
    /// Pod sandboxes (the CRI's).
    pods: std::sync::Mutex<pod::PodIndex>,
    /// The shims (a fake in unit tests).
    runtime: Arc<dyn runtime::Runtime>,
    /// The data root's free space and the writer of container records (`disk.rs`).
    disk: Arc<disk::DiskGuard>,
}

/// Cheap to clone; every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Opens the stores and recovers containers left by a previous daemon (live restore).
    /// Running rootless (`berth_runtime::rootless::Mode`): no cgroup limits, no host network.
    pub fn rootless(&self) -> bool {
        berth_runtime::rootless::Mode::current().is_rootless()
    }

    pub async fn open(cfg: EngineConfig) -> Result<Engine> {
        // Rootless behind pasta: no host ports (`berth_net::ports::refuse_host_ports`).
        if berth_runtime::rootless::net_driver() == Some(berth_runtime::rootless::NetDriver::Pasta)
        {
            berth_net::ports::refuse_host_ports();
        }
        // Rootless behind slirp4netns: every held host port is also forwarded from the host.
        if let Some(api) = berth_runtime::rootless::slirp_api() {
            if let Ok(guest) = berth_runtime::rootless::SLIRP_GUEST_ADDR.parse() {
                berth_net::slirp::set_forwarder(berth_net::slirp::Forwarder {
                    api,
                    guest,
                    tcp_api: berth_runtime::rootless::portd_api(),
                });
            }
        }
        let runtime = Arc::new(runtime::shim::ShimRuntime {
            berth_exe: cfg.berth_exe.clone(),
        });
        Engine::open_with(cfg, runtime).await
    }

    /// `open` with the runtime given: unit tests pass a fake.
    pub(crate) async fn open_with(
        cfg: EngineConfig,
        runtime: Arc<dyn runtime::Runtime>,
    ) -> Result<Engine> {
        for d in [
            cfg.data_root.join("containers"),
            cfg.exec_root.join("containers"),
            cfg.exec_root.join("runtime"),
        ] {
            std::fs::create_dir_all(&d)?;
        }
        // Before anything uses them: what a killed daemon left in its temp areas.
        sweep::sweep(&cfg.data_root, &cfg.exec_root);
        let images = berth_image::ImageStore::open(&cfg.data_root.join("image"))
            .map_err(|e| EngineError::Internal(format!("opening image store: {e}")))?;
        let id = load_or_create_id(&cfg.data_root.join("engine-id"))?;
        let volumes = volume::VolumeStore::open(&cfg.data_root.join("volumes"))?;
        let net = network::Networks::open(&cfg.data_root, &cfg.exec_root, cfg.network.clone())?;
        net.bring_up()?;
        let disk = Arc::new(disk::DiskGuard::new(&cfg.data_root));
        let engine = Engine {
            inner: Arc::new(Inner {
                id,
                registry_config: cfg.registry.clone(),
                removed: std::sync::Mutex::new(HashMap::new()),
                cfg,
                images: Arc::new(images),
                containers: RwLock::new(ContainerIndex::default()),
                volumes,
                volume_lock: tokio::sync::Mutex::new(()),
                net: Arc::new(net),
                execs: exec::ExecTable::default(),
                events: events::EventBus::default(),
                health: container::health::HealthTable::default(),
                pods: Default::default(),
                runtime,
                disk,
            }),
        };
        engine.restore_pods()?;
        engine.restore().await?;
        engine.volumes().sweep_mounts();
        engine.spawn_disk_watch();
        Ok(engine)
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Daemon shutdown: networking keeps what running containers need, drops the rest.
    pub fn shutdown(&self) {
        self.inner.net.shutdown();
    }

    pub(crate) fn runtime(&self) -> &dyn runtime::Runtime {
        self.inner.runtime.as_ref()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    pub fn images(&self) -> Arc<berth_image::ImageStore> {
        self.inner.images.clone()
    }

    /// A container's in-memory entry, its record written through the data root's guard.
    pub(crate) fn new_entry(
        &self,
        rec: container::ContainerRecord,
        dir: PathBuf,
    ) -> container::Entry {
        container::Entry::new(rec, dir, self.inner.disk.clone())
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.inner.cfg.data_root.join("containers").join(id)
    }

    fn runtime_dir(&self, id: &str) -> PathBuf {
        self.inner.cfg.exec_root.join("containers").join(id)
    }

    fn state_root(&self) -> PathBuf {
        self.inner.cfg.exec_root.join("runtime")
    }
}

pub(crate) fn io_err(ctx: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("{ctx}: {e}"))
}

fn load_or_create_id(path: &std::path::Path) -> Result<String> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim();
        if !s.is_empty() {
            return Ok(s.to_string());
        }
    }
    let id = berth_registry::random_uuid();
    util::write_atomic(path, id.as_bytes())?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(root: &std::path::Path) -> EngineConfig {
        EngineConfig {
            data_root: root.join("data"),
            exec_root: root.join("exec"),
            berth_exe: PathBuf::from("/nonexistent/berth"),
            registry: RegistryConfig::default(),
            network: network::NetConfig {
                bridge: "none".into(),
                ..Default::default()
            },
            log_opts: Default::default(),
            experimental: false,
            cgroup_driver: Default::default(),
            default_cgroupns: CgroupnsMode::Host,
            cni: Default::default(),
        }
    }

    #[tokio::test]
    async fn restore_finishes_an_interrupted_removal_and_skips_bad_records() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = config(tmp.path());
        let gone = cfg.data_root.join("containers").join("a".repeat(64));
        std::fs::create_dir_all(&gone).expect("mkdir");
        std::fs::write(gone.join("a-json.log"), b"{}\n").expect("log");
        let corrupt = cfg.data_root.join("containers").join("b".repeat(64));
        std::fs::create_dir_all(&corrupt).expect("mkdir");
        std::fs::write(corrupt.join("container.json"), b"{not json").expect("record");

        let engine = Engine::open(cfg).await.expect("open");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while gone.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(!gone.exists(), "a directory without its record is removed");
        assert!(
            corrupt.exists(),
            "an unreadable record is left for a human, not deleted"
        );
        assert_eq!(engine.counts().0, 0);
        assert!(engine.inspect(&"b".repeat(64), false).await.is_err());
    }

    #[tokio::test]
    async fn engine_id_is_stable_across_opens() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = Engine::open(config(tmp.path()))
            .await
            .expect("open")
            .id()
            .to_string();
        let b = Engine::open(config(tmp.path()))
            .await
            .expect("open")
            .id()
            .to_string();
        assert_eq!(a, b);
        assert_eq!(a.len(), 36);
    }
}
