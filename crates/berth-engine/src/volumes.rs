//! Volumes: the `local` driver's store under `<data-root>/volumes/<name>/` (`_data` holds the
//! data, `volume.json` the metadata, written atomically), and the engine's `/volumes` operations.
//!
//! A volume created with driver options (`type=tmpfs`, `o=bind,device=/x`, ...) is mounted on its
//! `_data` when the first container using it starts and unmounted when the last one stops.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_api::volume::Volume;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::util;
use crate::Engine;

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

fn no_such_volume(name: &str) -> EngineError {
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
    fn reservations(&self) -> Vec<(String, String)> {
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

/// The local driver's mount: `type`, `device` and `o` as `mount -t type -o o device _data`.
fn mount_local(meta: &VolumeMeta, target: &Path) -> std::result::Result<(), String> {
    use nix::mount::MsFlags;
    let typ = meta.options.get("type").cloned().unwrap_or_default();
    let mut device = meta.options.get("device").cloned().unwrap_or_default();
    let o = meta.options.get("o").cloned().unwrap_or_default();
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        match opt {
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            other => data.push(other.to_string()),
        }
    }
    if device.is_empty() {
        device = typ.clone();
    }
    if device.is_empty() {
        return Err("missing required option: \"device\"".into());
    }
    let bind = flags.contains(MsFlags::MS_BIND);
    let fstype = (!bind && !typ.is_empty() && typ != "none").then_some(typ.as_str());
    let data_s = data.join(",");
    let res = nix::mount::mount(
        Some(device.as_str()),
        target,
        fstype,
        flags,
        (!data_s.is_empty()).then_some(data_s.as_str()),
    );
    let desc = format!(
        "failed to mount local volume: mount {device}:{}, flags: {:#x}, data: {data_s}",
        target.display(),
        flags.bits()
    );
    res.map_err(|e| format!("{desc}: {}", e.desc().to_lowercase()))?;
    // A read-only bind needs a remount to take.
    if bind && flags.contains(MsFlags::MS_RDONLY) {
        nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| format!("{desc}: remount read-only: {e}"))?;
    }
    Ok(())
}

/// Whether `path` is a mount point, from /proc/self/mountinfo.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.display().to_string();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .map(|mp| unescape_mountinfo(mp) == want)
            .unwrap_or(false)
    })
}

/// The mount holding `path` (canonical) and its propagation peers: (mount point, shared, slave),
/// from the optional fields of /proc/self/mountinfo (`shared:N`, `master:N`).
pub fn mount_propagation(path: &Path) -> Option<(String, bool, bool)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.display().to_string();
    let mut best: Option<(String, bool, bool)> = None;
    for l in info.lines() {
        let fields: Vec<&str> = l.split(' ').collect();
        let Some(mp) = fields.get(4).map(|m| unescape_mountinfo(m)) else {
            continue;
        };
        let inside =
            mp == "/" || want == mp || want.starts_with(&format!("{}/", mp.trim_end_matches('/')));
        if !inside || best.as_ref().is_some_and(|(b, _, _)| b.len() > mp.len()) {
            continue;
        }
        let opt = fields.iter().skip(6).take_while(|f| **f != "-");
        let (mut shared, mut slave) = (false, false);
        for f in opt {
            shared |= f.starts_with("shared:");
            slave |= f.starts_with("master:");
        }
        // A later line for the same mount point is a mount on top of the earlier one.
        best = Some((mp, shared, slave));
    }
    best
}

/// The first mount point strictly inside `dir`, if any.
fn mounts_below(dir: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let prefix = format!("{}/", dir.display());
    info.lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape_mountinfo))
        .find(|mp| mp.starts_with(&prefix))
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bytes used under `path` (not following symlinks, not crossing into other filesystems).
pub fn dir_size(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let dev = top.dev();
    let mut seen = HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&p) else {
            continue;
        };
        for ent in rd.flatten() {
            let Ok(md) = ent.metadata() else { continue };
            if md.dev() != dev {
                continue;
            }
            if md.is_dir() {
                stack.push(ent.path());
            } else if md.nlink() <= 1 || seen.insert(md.ino()) {
                total += md.len();
            }
        }
    }
    total
}

/// `filters` for volume list and prune.
fn label_filter(labels: &BTreeMap<String, String>, f: &str) -> bool {
    match f.split_once('=') {
        Some((k, v)) => labels.get(k).map(|x| x == v).unwrap_or(false),
        None => labels.contains_key(f),
    }
}

fn bool_filter(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

impl Engine {
    pub(crate) fn volumes(&self) -> &VolumeStore {
        &self.inner.volumes
    }

    /// Ids of the containers whose mounts name volume `name`.
    pub(crate) fn volume_users(&self, name: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .all_entries()
            .iter()
            .filter(|e| {
                e.snapshot()
                    .mount_points
                    .iter()
                    .any(|m| m.kind == crate::mounts::MountKind::Volume && m.name == name)
            })
            .map(|e| e.id.clone())
            .collect();
        for (c, n) in self.volumes().reservations() {
            if n == name && !ids.contains(&c) {
                ids.push(c);
            }
        }
        ids.sort();
        ids
    }

    pub async fn volume_create(
        &self,
        opts: berth_api::volume::VolumeCreateOptions,
    ) -> Result<Volume> {
        let _g = self.inner.volume_lock.lock().await;
        let mut labels = opts.labels.unwrap_or_default();
        // Docker: a volume created without a name is anonymous (pruned without `all`).
        if opts.name.is_empty() {
            labels.insert(ANONYMOUS_LABEL.into(), String::new());
        }
        let m = self.volumes().create(
            Some(opts.name.as_str()),
            &opts.driver,
            labels,
            opts.driver_opts.unwrap_or_default(),
        )?;
        let v = self.volumes().to_api(&m);
        self.emit("volume", "create", &v.name, &[("driver", v.driver.clone())]);
        Ok(v)
    }

    pub async fn volume_inspect(&self, name: &str) -> Result<Volume> {
        let m = self
            .volumes()
            .get(name)
            .ok_or_else(|| no_such_volume(name))?;
        Ok(self.volumes().to_api(&m))
    }

    pub async fn volume_list(&self, filters: &HashMap<String, Vec<String>>) -> Result<Vec<Volume>> {
        for (k, vals) in filters {
            match k.as_str() {
                "name" | "driver" | "label" => {}
                "dangling" => {
                    for v in vals {
                        if bool_filter(v).is_none() {
                            return Err(EngineError::InvalidParameter(format!(
                                "invalid filter 'dangling={v}'"
                            )));
                        }
                    }
                }
                other => {
                    return Err(EngineError::InvalidParameter(format!(
                        "invalid filter '{other}'"
                    )))
                }
            }
        }
        let used = self.used_volumes();
        let mut out = Vec::new();
        for m in self.volumes().all() {
            if let Some(names) = filters.get("name") {
                if !names.iter().any(|n| m.name.contains(n.as_str())) {
                    continue;
                }
            }
            if let Some(ds) = filters.get("driver") {
                if !ds.iter().any(|d| &m.driver == d) {
                    continue;
                }
            }
            if let Some(ls) = filters.get("label") {
                if !ls.iter().all(|l| label_filter(&m.labels, l)) {
                    continue;
                }
            }
            if let Some(ds) = filters.get("dangling") {
                let dangling = !used.contains(&m.name);
                if !ds.iter().any(|d| bool_filter(d) == Some(dangling)) {
                    continue;
                }
            }
            out.push(self.volumes().to_api(&m));
        }
        Ok(out)
    }

    fn used_volumes(&self) -> HashSet<String> {
        let mut used = HashSet::new();
        for e in self.all_entries() {
            for m in e.snapshot().mount_points {
                if m.kind == crate::mounts::MountKind::Volume {
                    used.insert(m.name);
                }
            }
        }
        used.extend(self.volumes().reservations().into_iter().map(|(_, n)| n));
        used
    }

    pub async fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        let _g = self.inner.volume_lock.lock().await;
        if self.volumes().get(name).is_none() {
            if force {
                return Ok(());
            }
            return Err(no_such_volume(name));
        }
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        let vols = self.clone();
        let n = name.to_string();
        tokio::task::spawn_blocking(move || vols.volumes().delete(&n))
            .await
            .map_err(EngineError::internal)??;
        self.emit("volume", "destroy", name, &[("driver", "local".into())]);
        Ok(())
    }

    /// Removes unused volumes: anonymous ones only, unless the `all` filter is true.
    pub async fn volume_prune(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<(Vec<String>, u64)> {
        let mut all = false;
        for (k, vals) in filters {
            match k.as_str() {
                "label" | "label!" => {}
                "all" => {
                    for v in vals {
                        all = bool_filter(v).ok_or_else(|| {
                            EngineError::InvalidParameter(format!("invalid filter 'all={v}'"))
                        })?;
                    }
                }
                other => {
                    return Err(EngineError::InvalidParameter(format!(
                        "invalid filter '{other}'"
                    )))
                }
            }
        }
        let _g = self.inner.volume_lock.lock().await;
        let used = self.used_volumes();
        let mut victims = Vec::new();
        for m in self.volumes().all() {
            if used.contains(&m.name) || (!all && !m.is_anonymous()) {
                continue;
            }
            if let Some(ls) = filters.get("label") {
                if !ls.iter().all(|l| label_filter(&m.labels, l)) {
                    continue;
                }
            }
            if let Some(ls) = filters.get("label!") {
                if ls.iter().any(|l| label_filter(&m.labels, l)) {
                    continue;
                }
            }
            victims.push(m.name);
        }
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut deleted = Vec::new();
            let mut space = 0;
            for n in victims {
                match engine.volumes().delete(&n) {
                    Ok(s) => {
                        space += s;
                        deleted.push(n);
                    }
                    Err(e) => tracing::warn!("prune: {e}"),
                }
            }
            (deleted, space)
        })
        .await
        .map_err(EngineError::internal)
    }

    /// `rm -v` / `--rm`: removes the anonymous volumes of a removed container that nobody else
    /// uses. Named volumes always outlive their containers.
    pub(crate) async fn remove_anonymous_volumes(&self, mounts: &[crate::mounts::MountPoint]) {
        let _g = self.inner.volume_lock.lock().await;
        for m in mounts {
            if m.kind != crate::mounts::MountKind::Volume || m.named {
                continue;
            }
            if !self.volume_users(&m.name).is_empty() {
                continue;
            }
            let engine = self.clone();
            let n = m.name.clone();
            let r = tokio::task::spawn_blocking(move || engine.volumes().delete(&n)).await;
            if let Ok(Err(e)) = r {
                tracing::warn!("removing anonymous volume {}: {e}", m.name);
            }
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

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
