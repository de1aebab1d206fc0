//! berth-engine: containers and images as one consistent state.
//!
//! The engine owns the container records, names and lifecycle, drives the image store for root
//! filesystems and the runtime's shims for processes, and recovers all of it after a restart.

pub mod archive;
pub mod attach;
pub mod build;
pub mod cgroups;
pub mod container;
mod copyup;
pub mod error;
pub mod events;
pub mod exec;
pub mod health;
pub mod images;
mod lifecycle;
pub mod logs;
pub mod mounts;
mod names;
pub mod network;
mod network_api;
pub mod ops;
mod prune;
mod query;
pub mod shim_client;
pub mod stats;
mod util;
pub mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

pub use attach::{AttachFuture, AttachOptions, AttachStream};
pub use berth_runtime::cgroup::{CgroupDriver, CgroupnsMode};
pub use error::{EngineError, Result};
pub use images::{RegistryConfig, Transfer};
pub use lifecycle::WaitCondition;
pub use logs::LogsOptions;
pub use query::{parse_filters, ListOptions};

use container::Entry;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// The berth binary, re-executed as `berth shim`.
    pub berth_exe: PathBuf,
    pub registry: images::RegistryConfig,
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
}

#[derive(Default)]
struct Registry {
    by_id: HashMap<String, Arc<Entry>>,
    /// name (no slash) -> id
    names: HashMap<String, String>,
}

pub struct Inner {
    cfg: EngineConfig,
    /// Stable identity of this daemon's state (`ID` in /info), kept in `<data-root>/engine-id`.
    id: String,
    images: Arc<berth_image::ImageStore>,
    registry: RwLock<Registry>,
    registry_config: images::RegistryConfig,
    /// id -> (exit code, when): removed containers a late `wait` may still ask about.
    removed: std::sync::Mutex<HashMap<String, (i64, std::time::Instant)>>,
    volumes: volumes::VolumeStore,
    /// Held by volume rm/prune and by container create from resolving its mounts to
    /// registering it, so a volume is never removed while a container is taking it.
    volume_lock: tokio::sync::Mutex<()>,
    net: Arc<network::Networks>,
    /// Exec instances (in memory, as in Docker).
    execs: exec::ExecTable,
    events: events::EventBus,
    health: health::HealthTable,
}

/// Cheap to clone; every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Opens the stores and recovers containers left by a previous daemon (live restore).
    pub async fn open(cfg: EngineConfig) -> Result<Engine> {
        for d in [
            cfg.data_root.join("containers"),
            cfg.exec_root.join("containers"),
            cfg.exec_root.join("runtime"),
        ] {
            std::fs::create_dir_all(&d)?;
        }
        let images = berth_image::ImageStore::open(&cfg.data_root.join("image"))
            .map_err(|e| EngineError::Internal(format!("opening image store: {e}")))?;
        let id = load_or_create_id(&cfg.data_root.join("engine-id"))?;
        let volumes = volumes::VolumeStore::open(&cfg.data_root.join("volumes"))?;
        let net = network::Networks::open(&cfg.data_root, &cfg.exec_root, cfg.network.clone())?;
        net.bring_up()?;
        let engine = Engine {
            inner: Arc::new(Inner {
                id,
                registry_config: cfg.registry.clone(),
                removed: std::sync::Mutex::new(HashMap::new()),
                cfg,
                images: Arc::new(images),
                registry: RwLock::new(Registry::default()),
                volumes,
                volume_lock: tokio::sync::Mutex::new(()),
                net: Arc::new(net),
                execs: exec::ExecTable::default(),
                events: events::EventBus::default(),
                health: health::HealthTable::default(),
            }),
        };
        engine.restore().await?;
        engine.volumes().sweep_mounts();
        Ok(engine)
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Daemon shutdown: networking keeps what running containers need, drops the rest.
    pub fn shutdown(&self) {
        self.inner.net.shutdown();
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    pub fn images(&self) -> Arc<berth_image::ImageStore> {
        self.inner.images.clone()
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

    fn read_registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        match self.inner.registry.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn write_registry(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        match self.inner.registry.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Docker's lookup order: full id, exact name, then a unique id prefix.
    fn lookup(&self, name_or_id: &str) -> Result<Arc<Entry>> {
        let reg = self.read_registry();
        if let Some(c) = reg.by_id.get(name_or_id) {
            return Ok(c.clone());
        }
        let bare = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
        if let Some(id) = reg.names.get(bare) {
            if let Some(c) = reg.by_id.get(id) {
                return Ok(c.clone());
            }
        }
        if !name_or_id.is_empty() && name_or_id.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut found = reg
                .by_id
                .iter()
                .filter(|(id, _)| id.starts_with(name_or_id));
            if let Some((_, c)) = found.next() {
                if found.next().is_some() {
                    return Err(EngineError::NotFound(format!(
                        "multiple IDs found with provided prefix: {name_or_id}"
                    )));
                }
                return Ok(c.clone());
            }
        }
        Err(EngineError::no_such_container(name_or_id))
    }

    fn all_entries(&self) -> Vec<Arc<Entry>> {
        self.read_registry().by_id.values().cloned().collect()
    }

    /// Reads every container record and reconnects to the shims of those still running.
    async fn restore(&self) -> Result<()> {
        let dir = self.inner.cfg.data_root.join("containers");
        let mut loaded = Vec::new();
        for ent in std::fs::read_dir(&dir)? {
            let ent = match ent {
                Ok(e) => e,
                Err(_) => continue,
            };
            let path = ent.path();
            if !path.join("container.json").exists() {
                // A removal the previous daemon did not finish.
                if let Some(id) = path.file_name().and_then(|n| n.to_str()) {
                    let engine = self.clone();
                    let id = id.to_string();
                    tokio::task::spawn_blocking(move || engine.purge_files(&id));
                }
                continue;
            }
            match container::ContainerRecord::load(&path) {
                Ok(rec) => loaded.push((rec, path)),
                Err(e) => {
                    tracing::warn!(
                        "skipping unreadable container record {}: {e}",
                        path.display()
                    )
                }
            }
        }
        {
            let mut reg = self.write_registry();
            for (rec, path) in &loaded {
                reg.names.insert(rec.name.clone(), rec.id.clone());
                reg.by_id.insert(
                    rec.id.clone(),
                    Arc::new(Entry::new(rec.clone(), path.clone())),
                );
            }
        }
        self.net_sweep();
        for (rec, _) in loaded {
            if let Ok(c) = self.lookup(&rec.id) {
                self.recover(c).await;
            }
            if rec.build_step {
                // Its build died with the previous daemon: nothing will ever remove it.
                if let Err(e) = self.remove(&rec.id, true, true).await {
                    tracing::warn!("removing build container {}: {e}", rec.id);
                }
            }
        }
        Ok(())
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
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    let id = format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
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
