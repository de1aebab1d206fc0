//! The `local` driver's store: metadata, data directories, and which containers use each volume.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_api::volume::Volume;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::util;
use crate::volume::mount::{mount_local, mounts_below};
use crate::volume::{dir_size, is_mount_point};

/// Docker's label on anonymous volumes (API ≥ 1.42 prunes only these by default).
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// What `volume.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolumeMeta {
    pub name: String,
    pub driver: String,
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl VolumeMeta {
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

pub struct VolumeStore {
    root: PathBuf,
    vols: Mutex<BTreeMap<String, VolumeMeta>>,
    /// volume name -> containers whose start mounted it (volumes with driver options only).
    active: Mutex<HashMap<String, HashSet<String>>>,
    /// container id -> volumes it takes, while its create is in flight (not yet registered).
    reserved: Mutex<HashMap<String, Vec<String>>>,
    copying: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Docker's rule for local volume names.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    let rest: Vec<char> = chars.collect();
    !rest.is_empty()
        && rest
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub fn invalid_name_error(name: &str) -> EngineError {
    EngineError::InvalidParameter(format!(
        "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    ))
}

pub(crate) fn no_such_volume(name: &str) -> EngineError {
    EngineError::NotFound(format!("get {name}: no such volume"))
}

const VALID_OPTS: [&str; 4] = ["type", "device", "o", "size"];

impl VolumeStore {
    /// Loads every `volume.json`; a directory without one is a create that did not finish
    /// (nothing was ever given to a user), or a volume from an older layout: the former is
    /// removed only when its `_data` is empty.
    pub fn open(root: &Path) -> Result<VolumeStore> {
        std::fs::create_dir_all(root)?;
        // Canonical, because whether `_data` is a mount point is read from mountinfo, which
        // holds real paths; a data root behind a symlink must not make a mounted volume look
        // unmounted (and its device's content deletable).
        let root = &root.canonicalize()?;
        let mut vols = BTreeMap::new();
        for ent in std::fs::read_dir(root)?.flatten() {
            let path = ent.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(String::from) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            match std::fs::read(path.join("volume.json"))
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<VolumeMeta>(&b).map_err(|e| e.to_string()))
            {
                Ok(m) if m.name == name => {
                    vols.insert(name, m);
                }
                Ok(_) => tracing::warn!("volume {name}: metadata names another volume; skipped"),
                Err(e) => {
                    let data = path.join("_data");
                    let empty = std::fs::read_dir(&data)
                        .map(|mut d| d.next().is_none())
                        .unwrap_or(true);
                    if empty && !path.join("volume.json").exists() {
                        let _ = std::fs::remove_dir(&data);
                        let _ = std::fs::remove_dir(&path);
                    } else {
                        tracing::warn!("skipping unreadable volume {name}: {e}");
                    }
                }
            }
        }
        Ok(VolumeStore {
            root: root.to_path_buf(),
            vols: Mutex::new(vols),
            active: Mutex::new(HashMap::new()),
            reserved: Mutex::new(HashMap::new()),
            copying: Mutex::new(()),
        })
    }

    pub fn data_path(&self, name: &str) -> PathBuf {
        self.root.join(name).join("_data")
    }

    pub fn get(&self, name: &str) -> Option<VolumeMeta> {
        lock(&self.vols).get(name).cloned()
    }

    pub fn all(&self) -> Vec<VolumeMeta> {
        lock(&self.vols).values().cloned().collect()
    }

    pub fn to_api(&self, m: &VolumeMeta) -> Volume {
        Volume {
            name: m.name.clone(),
            driver: m.driver.clone(),
            mountpoint: self.data_path(&m.name).display().to_string(),
            created_at: m.created_at.clone(),
            labels: m.labels.clone(),
            scope: "local".into(),
            options: m.options.clone(),
            usage_data: None,
        }
    }

    /// Creates a volume, or returns the existing one of that name (Docker's create is
    /// idempotent for the same driver).
    pub fn create(
        &self,
        name: Option<&str>,
        driver: &str,
        labels: BTreeMap<String, String>,
        options: BTreeMap<String, String>,
    ) -> Result<VolumeMeta> {
        let driver = if driver.is_empty() { "local" } else { driver };
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                if !valid_name(n) {
                    return Err(invalid_name_error(n));
                }
                n.to_string()
            }
            None => util::new_id(),
        };
        if driver != "local" {
            return Err(EngineError::NotFound(format!(
                "create {name}: error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        for k in options.keys() {
            if !VALID_OPTS.contains(&k.as_str()) {
                return Err(EngineError::InvalidParameter(format!(
                    "create {name}: invalid option key: \"{k}\""
                )));
            }
        }
        if options.contains_key("size") {
            return Err(EngineError::InvalidParameter(format!(
                "create {name}: quota size requested but no quota support"
            )));
        }
        if !options.is_empty() && !options.contains_key("type") && !options.contains_key("device") {
            return Err(EngineError::InvalidParameter(format!(
                "create {name}: missing required option: \"device\""
            )));
        }
        let mut vols = lock(&self.vols);
        if let Some(existing) = vols.get(&name) {
            return Ok(existing.clone());
        }
        let meta = VolumeMeta {
            name: name.clone(),
            driver: driver.to_string(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels,
            options,
        };
        let dir = self.root.join(&name);
        let res = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(dir.join("_data"))?;
            let json = serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?;
            util::write_atomic(&dir.join("volume.json"), &json)
        })();
        if let Err(e) = res {
            let _ = std::fs::remove_dir(dir.join("_data"));
            let _ = std::fs::remove_dir(&dir);
            return Err(EngineError::Internal(format!(
                "create {name}: error while creating volume root path: {e}"
            )));
        }
        vols.insert(name, meta.clone());
        Ok(meta)
    }

    /// Deletes a volume's metadata and data. The caller has checked that nobody uses it.
    pub(crate) fn delete(&self, name: &str) -> Result<u64> {
        let dir = self.root.join(name);
        let data = dir.join("_data");
        if is_mount_point(&data) {
            if let Err(e) = nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH) {
                return Err(EngineError::Internal(format!(
                    "remove {name}: unmounting volume: {e}"
                )));
            }
            if is_mount_point(&data) {
                return Err(EngineError::Internal(format!(
                    "remove {name}: volume is still mounted"
                )));
            }
        }
        if let Some(m) = mounts_below(&dir) {
            return Err(EngineError::Internal(format!(
                "remove {name}: {m} is mounted inside the volume"
            )));
        }
        let size = dir_size(&data);
        // The metadata goes first: a crash after it leaves a directory `open` sweeps or reports,
        // never a listed volume with half its data.
        match std::fs::remove_file(dir.join("volume.json")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::Internal(format!("remove {name}: {e}"))),
        }
        lock(&self.vols).remove(name);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("removing data of volume {name}: {e}");
            }
        }
        Ok(size)
    }

    /// Serialises copy-ups (which check "empty" and then fill).
    pub fn copy_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        lock(&self.copying)
    }

    pub fn reserve(&self, container: &str, names: Vec<String>) {
        lock(&self.reserved).insert(container.to_string(), names);
    }

    pub fn unreserve(&self, container: &str) {
        lock(&self.reserved).remove(container);
    }

    /// (container, volume) pairs of creates in flight.
    pub(crate) fn reservations(&self) -> Vec<(String, String)> {
        lock(&self.reserved)
            .iter()
            .flat_map(|(c, ns)| ns.iter().map(move |n| (c.clone(), n.clone())))
            .collect()
    }

    /// A volume with driver options is mounted on its `_data` for its first user.
    pub fn acquire(&self, name: &str, container: &str) -> Result<()> {
        let Some(meta) = self.get(name) else {
            return Err(no_such_volume(name));
        };
        if meta.options.is_empty() {
            return Ok(());
        }
        let mut active = lock(&self.active);
        let users = active.entry(name.to_string()).or_default();
        let data = self.data_path(name);
        if !is_mount_point(&data) {
            mount_local(&meta, &data).map_err(|e| {
                EngineError::Internal(format!(
                    "error while mounting volume '{}': {e}",
                    data.display()
                ))
            })?;
        }
        users.insert(container.to_string());
        Ok(())
    }

    /// Notes that `container` no longer uses the volume; the last user unmounts it.
    pub fn release(&self, name: &str, container: &str) {
        let mut active = lock(&self.active);
        let Some(users) = active.get_mut(name) else {
            return;
        };
        users.remove(container);
        if users.is_empty() {
            active.remove(name);
            let data = self.data_path(name);
            if is_mount_point(&data) {
                if let Err(e) = nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH) {
                    tracing::warn!("unmounting volume {name}: {e}");
                }
            }
        }
    }

    /// After recovery: a driver mount left by a previous daemon whose containers are all gone.
    pub fn sweep_mounts(&self) {
        let active = lock(&self.active);
        for m in self.all().into_iter().filter(|m| !m.options.is_empty()) {
            let data = self.data_path(&m.name);
            if !active.contains_key(&m.name) && is_mount_point(&data) {
                if let Err(e) = nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH) {
                    tracing::warn!("unmounting unused volume {}: {e}", m.name);
                }
            }
        }
    }

    /// Records a user without mounting (a running container found at daemon start).
    pub fn adopt(&self, name: &str, container: &str) {
        if self.get(name).is_some_and(|m| !m.options.is_empty()) {
            lock(&self.active)
                .entry(name.to_string())
                .or_default()
                .insert(container.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("data"));
        assert!(valid_name("a1.b_c-d"));
        assert!(!valid_name("a"));
        assert!(!valid_name("relative/path"));
        assert!(!valid_name(".hidden"));
        assert!(!valid_name("_x"));
        assert!(!valid_name(""));
        let e = invalid_name_error("relative/path").to_string();
        assert_eq!(
            e,
            "create relative/path: \"relative/path\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        );
    }

    #[test]
    fn store_persists_and_is_idempotent() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = VolumeStore::open(d.path()).expect("open");
        let mut labels = BTreeMap::new();
        labels.insert("k".to_string(), "v".to_string());
        let a = s
            .create(Some("vol1"), "", labels, BTreeMap::new())
            .expect("create");
        assert_eq!(a.driver, "local");
        std::fs::write(s.data_path("vol1").join("f"), b"x").expect("write");
        let again = s
            .create(Some("vol1"), "local", BTreeMap::new(), BTreeMap::new())
            .expect("again");
        assert_eq!(again.labels.get("k").map(String::as_str), Some("v"));
        let anon = s
            .create(None, "local", BTreeMap::new(), BTreeMap::new())
            .expect("anon");
        assert!(anon.name.len() == 64 && anon.name.chars().all(|c| c.is_ascii_hexdigit()));
        drop(s);
        let s = VolumeStore::open(d.path()).expect("reopen");
        assert_eq!(s.all().len(), 2);
        assert_eq!(
            std::fs::read(s.data_path("vol1").join("f")).expect("read"),
            b"x"
        );
        assert_eq!(s.delete("vol1").expect("delete"), 1);
        assert!(!d.path().join("vol1").exists());
        assert!(s
            .create(Some("x/y"), "", BTreeMap::new(), BTreeMap::new())
            .is_err());
        let e = s
            .create(Some("vv"), "nfsplug", BTreeMap::new(), BTreeMap::new())
            .expect_err("plugin");
        assert_eq!(e.status(), 404);
        let mut bad = BTreeMap::new();
        bad.insert("nope".to_string(), "1".to_string());
        let e = s
            .create(Some("vv"), "", BTreeMap::new(), bad)
            .expect_err("opt");
        assert_eq!(e.to_string(), "create vv: invalid option key: \"nope\"");
    }

    #[test]
    fn half_created_volume_dirs_are_swept_only_when_empty() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("empty/_data")).expect("mkdir");
        std::fs::create_dir_all(d.path().join("full/_data")).expect("mkdir");
        std::fs::write(d.path().join("full/_data/keep"), b"1").expect("write");
        let s = VolumeStore::open(d.path()).expect("open");
        assert!(s.all().is_empty());
        assert!(!d.path().join("empty").exists());
        assert!(
            d.path().join("full/_data/keep").exists(),
            "data is never deleted"
        );
    }

    #[test]
    fn delete_never_reaches_into_mounts() {
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        let d = tempfile::tempdir().expect("tempdir");
        let s = VolumeStore::open(d.path()).expect("open");
        let device = d.path().join("device");
        std::fs::create_dir(&device).expect("mkdir");
        std::fs::write(device.join("precious"), b"1").expect("write");
        let mut opts = BTreeMap::new();
        opts.insert("type".to_string(), "none".to_string());
        opts.insert("o".to_string(), "bind".to_string());
        opts.insert("device".to_string(), device.display().to_string());
        s.create(Some("bound"), "", BTreeMap::new(), opts)
            .expect("create");
        s.acquire("bound", "c1").expect("mount");
        assert!(is_mount_point(&s.data_path("bound")));
        assert!(s.data_path("bound").join("precious").exists());
        // Something else mounted inside a volume: refused, nothing deleted.
        s.create(Some("plain"), "", BTreeMap::new(), BTreeMap::new())
            .expect("create");
        let inner = s.data_path("plain").join("sub");
        std::fs::create_dir(&inner).expect("mkdir");
        mount(
            Some(&device),
            &inner,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind");
        assert!(s.delete("plain").is_err());
        assert!(device.join("precious").exists());
        umount2(&inner, MntFlags::MNT_DETACH).expect("umount");
        s.delete("plain").expect("delete");
        // A driver mount is undone before the delete, and the device keeps its content.
        s.delete("bound").expect("delete");
        assert!(!is_mount_point(&d.path().join("bound/_data")));
        assert_eq!(std::fs::read(device.join("precious")).expect("kept"), b"1");
    }
}
