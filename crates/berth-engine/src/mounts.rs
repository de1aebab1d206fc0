//! A container's mounts: `HostConfig.Binds`, `Mounts`, `Tmpfs`, `VolumesFrom` and the anonymous
//! volumes of `Config.Volumes` (the user's `-v /path` and the image's `VOLUME`), resolved once at
//! create into [`MountPoint`] records, and turned into OCI mounts at each start.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use berth_api::types::{ContainerConfig, HostConfig, Mount as ApiMount};
use serde::{Deserialize, Serialize};

use crate::container::Entry;
use crate::error::{EngineError, Result};
use crate::volumes::{valid_name, ANONYMOUS_LABEL};
use crate::Engine;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

impl MountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

/// One mount of a container, as recorded in `container.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MountPoint {
    pub kind: MountKind,
    /// Volume name (volumes only).
    #[serde(default)]
    pub name: String,
    /// Host path of a bind; a volume's `_data`; empty for tmpfs.
    #[serde(default)]
    pub source: String,
    pub destination: String,
    #[serde(default)]
    pub driver: String,
    /// The mode string as the user gave it (`-v`), shown by inspect.
    #[serde(default)]
    pub mode: String,
    pub rw: bool,
    #[serde(default)]
    pub propagation: String,
    /// The user named the volume: `rm -v` leaves it.
    #[serde(default)]
    pub named: bool,
    /// Fill the volume from the image's content at the destination when it is empty; cleared
    /// after the first start, so the copy happens once.
    #[serde(default)]
    pub copy_data: bool,
    /// `bind-nonrecursive`.
    #[serde(default)]
    pub non_recursive: bool,
    /// `-v /host:/x` creates a missing host directory, at create and at every start.
    #[serde(default)]
    pub create_source: bool,
    /// tmpfs: `size=`, `mode=` as kernel mount data.
    #[serde(default)]
    pub tmpfs_data: Vec<String>,
    /// `bind-recursive=writable` (`ReadOnlyNonRecursive`): read-only on top only; otherwise a
    /// read-only bind is read-only all the way down, as Docker does since 25.
    #[serde(default)]
    pub ro_non_recursive: bool,
}

impl MountPoint {
    pub fn to_api(&self) -> berth_api::types::MountPoint {
        berth_api::types::MountPoint {
            r#type: self.kind.as_str().into(),
            name: self.name.clone(),
            source: self.source.clone(),
            destination: self.destination.clone(),
            driver: self.driver.clone(),
            mode: self.mode.clone(),
            rw: self.rw,
            propagation: self.propagation.clone(),
        }
    }
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter(msg.into())
}

/// Lexically cleans an absolute container path; `Err` with Docker's words otherwise.
fn clean_destination(dest: &str, kind: &str) -> Result<String> {
    if !dest.starts_with('/') {
        return Err(invalid(format!(
            "invalid mount config for type \"{kind}\": invalid mount path: '{dest}' mount path must be absolute"
        )));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(dest).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        return Err(invalid("invalid specification: destination can't be '/'"));
    }
    Ok(format!("/{}", parts.join("/")))
}

fn clean_host_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

const PROPAGATIONS: [&str; 6] = [
    "shared", "rshared", "slave", "rslave", "private", "rprivate",
];

/// Binds take every mode; volumes stay private (their directory is the daemon's own).
fn supported_propagation(kind: &str, p: &str) -> Result<()> {
    if p == "private" || p == "rprivate" || kind == "bind" {
        return Ok(());
    }
    Err(invalid(format!(
        "invalid mount config for type \"{kind}\": propagation mode \"{p}\" is not supported for volumes"
    )))
}

/// Docker's start-time check: a shared bind needs its source on a shared mount (or nothing
/// would propagate back), a slave bind a shared or slave one.
fn check_source_propagation(source: &str, p: &str) -> Result<()> {
    let want_shared = matches!(p, "shared" | "rshared");
    let want_slave = matches!(p, "slave" | "rslave");
    if !want_shared && !want_slave {
        return Ok(());
    }
    let canon = std::fs::canonicalize(source).unwrap_or_else(|_| PathBuf::from(source));
    let Some((mp, shared, slave)) = crate::volumes::mount_propagation(&canon) else {
        return Ok(());
    };
    if want_shared && !shared {
        return Err(EngineError::Internal(format!(
            "path {source} is mounted on {mp} but it is not a shared mount"
        )));
    }
    if want_slave && !shared && !slave {
        return Err(EngineError::Internal(format!(
            "path {source} is mounted on {mp} but it is not a shared or slave mount"
        )));
    }
    Ok(())
}

/// The parsed mode of a `-v` spec.
#[derive(Default)]
struct BindMode {
    rw: bool,
    propagation: String,
    nocopy: bool,
}

fn parse_mode(mode: &str) -> Option<BindMode> {
    let mut m = BindMode {
        rw: true,
        ..Default::default()
    };
    let (mut rwset, mut label, mut prop, mut copy, mut cons) = (false, false, false, false, false);
    for tok in mode.split(',') {
        match tok {
            "rw" | "ro" if !rwset => {
                rwset = true;
                m.rw = tok == "rw";
            }
            "z" | "Z" if !label => label = true,
            "nocopy" if !copy => {
                copy = true;
                m.nocopy = true;
            }
            "consistent" | "cached" | "delegated" if !cons => cons = true,
            p if PROPAGATIONS.contains(&p) && !prop => {
                prop = true;
                m.propagation = p.to_string();
            }
            _ => return None,
        }
    }
    Some(m)
}

/// What a `-v` / `--mount` / image `VOLUME` asks for before volumes exist.
struct Wanted {
    mp: MountPoint,
    /// A volume to create if missing: (labels, driver options); `None` name means anonymous.
    create: Option<(BTreeMap<String, String>, BTreeMap<String, String>)>,
}

/// `HostConfig.Binds` entry → mount point (volumes not yet created).
fn parse_bind(spec: &str) -> Result<Wanted> {
    let bad = || invalid(format!("invalid volume specification: '{spec}'"));
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [a, b] => {
            if !b.starts_with('/') && parse_mode(b).is_some() {
                ("", *a, *b)
            } else {
                (*a, *b, "")
            }
        }
        [a, b, c] => (*a, *b, *c),
        _ => return Err(bad()),
    };
    if dst.is_empty() {
        return Err(bad());
    }
    let kind = if src.starts_with('/') {
        "bind"
    } else {
        "volume"
    };
    let destination = clean_destination(dst, kind).map_err(|e| {
        if e.to_string().starts_with("invalid mount config") {
            invalid(format!("invalid volume specification: '{spec}': {e}"))
        } else {
            e
        }
    })?;
    let m = if mode.is_empty() {
        BindMode {
            rw: true,
            ..Default::default()
        }
    } else {
        parse_mode(mode).ok_or_else(|| invalid(format!("invalid mode: {mode}")))?
    };
    if src.starts_with('/') {
        if m.nocopy {
            return Err(invalid(format!("invalid mode: {mode}")));
        }
        let propagation = if m.propagation.is_empty() {
            "rprivate".to_string()
        } else {
            m.propagation.clone()
        };
        supported_propagation("bind", &propagation)?;
        return Ok(Wanted {
            mp: MountPoint {
                kind: MountKind::Bind,
                name: String::new(),
                source: clean_host_path(src),
                destination,
                driver: String::new(),
                mode: mode.to_string(),
                rw: m.rw,
                propagation,
                named: false,
                copy_data: false,
                non_recursive: false,
                create_source: true,
                tmpfs_data: Vec::new(),
                ro_non_recursive: false,
            },
            create: None,
        });
    }
    if !src.is_empty() && !valid_name(src) {
        return Err(crate::volumes::invalid_name_error(src));
    }
    if !m.propagation.is_empty() {
        supported_propagation("volume", &m.propagation)?;
    }
    Ok(Wanted {
        mp: MountPoint {
            kind: MountKind::Volume,
            name: src.to_string(),
            source: String::new(),
            destination,
            driver: "local".into(),
            mode: if src.is_empty() {
                mode.to_string()
            } else if mode.is_empty() {
                "z".into()
            } else {
                mode.to_string()
            },
            rw: m.rw,
            propagation: String::new(),
            named: !src.is_empty(),
            copy_data: !m.nocopy,
            non_recursive: false,
            create_source: false,
            tmpfs_data: Vec::new(),
            ro_non_recursive: false,
        },
        create: Some((BTreeMap::new(), BTreeMap::new())),
    })
}

fn tmpfs_data(size: i64, mode: Option<u32>) -> Vec<String> {
    let mut d = Vec::new();
    if size > 0 {
        d.push(format!("size={size}"));
    }
    if let Some(m) = mode {
        d.push(format!("mode={m:o}"));
    }
    d
}

/// `HostConfig.Mounts` entry → mount point.
fn parse_api_mount(m: &ApiMount) -> Result<Wanted> {
    let kind = m.r#type.as_str();
    let bad = |msg: &str| invalid(format!("invalid mount config for type \"{kind}\": {msg}"));
    if m.target.is_empty() {
        return Err(bad("field Target must not be empty"));
    }
    let destination = clean_destination(&m.target, kind)?;
    match kind {
        "bind" => {
            if m.source.is_empty() {
                return Err(bad("field Source must not be empty"));
            }
            if !m.source.starts_with('/') {
                return Err(bad(&format!(
                    "invalid mount path: '{}' mount path must be absolute",
                    m.source
                )));
            }
            if m.volume_options.is_some() {
                return Err(bad("field VolumeOptions must not be specified"));
            }
            if m.tmpfs_options.is_some() {
                return Err(bad("field TmpfsOptions must not be specified"));
            }
            let bo = m.bind_options.clone().unwrap_or_default();
            let source = clean_host_path(&m.source);
            if !Path::new(&source).exists() {
                if bo.create_mountpoint {
                    std::fs::create_dir_all(&source).map_err(|e| {
                        bad(&format!("error creating bind source path {source}: {e}"))
                    })?;
                } else {
                    return Err(bad(&format!("bind source path does not exist: {source}")));
                }
            }
            let propagation = if bo.propagation.is_empty() {
                "rprivate".to_string()
            } else if PROPAGATIONS.contains(&bo.propagation.as_str()) {
                supported_propagation("bind", &bo.propagation)?;
                bo.propagation.clone()
            } else {
                return Err(bad(&format!(
                    "invalid propagation mode: {}",
                    bo.propagation
                )));
            };
            Ok(Wanted {
                mp: MountPoint {
                    kind: MountKind::Bind,
                    name: String::new(),
                    source,
                    destination,
                    driver: String::new(),
                    mode: String::new(),
                    rw: !m.read_only,
                    propagation,
                    named: false,
                    copy_data: false,
                    non_recursive: bo.non_recursive,
                    create_source: false,
                    tmpfs_data: Vec::new(),
                    ro_non_recursive: bo.read_only_non_recursive,
                },
                create: None,
            })
        }
        "volume" => {
            if m.bind_options.is_some() {
                return Err(bad("field BindOptions must not be specified"));
            }
            if m.tmpfs_options.is_some() {
                return Err(bad("field TmpfsOptions must not be specified"));
            }
            if !m.source.is_empty() && !valid_name(&m.source) {
                return Err(crate::volumes::invalid_name_error(&m.source));
            }
            let vo = m.volume_options.clone().unwrap_or_default();
            if !vo.subpath.is_empty() {
                return Err(bad("volume subpaths are not supported"));
            }
            let driver = vo
                .driver_config
                .as_ref()
                .map(|d| d.name.clone())
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "local".into());
            let opts = vo
                .driver_config
                .as_ref()
                .and_then(|d| d.options.clone())
                .unwrap_or_default();
            Ok(Wanted {
                mp: MountPoint {
                    kind: MountKind::Volume,
                    name: m.source.clone(),
                    source: String::new(),
                    destination,
                    driver,
                    mode: String::new(),
                    rw: !m.read_only,
                    propagation: String::new(),
                    named: !m.source.is_empty(),
                    copy_data: !vo.no_copy,
                    non_recursive: false,
                    create_source: false,
                    tmpfs_data: Vec::new(),
                    ro_non_recursive: false,
                },
                create: Some((vo.labels.clone().unwrap_or_default(), opts)),
            })
        }
        "tmpfs" => {
            if !m.source.is_empty() {
                return Err(bad("field Source must not be specified"));
            }
            if m.bind_options.is_some() {
                return Err(bad("field BindOptions must not be specified"));
            }
            if m.volume_options.is_some() {
                return Err(bad("field VolumeOptions must not be specified"));
            }
            let to = m.tmpfs_options.clone().unwrap_or_default();
            if to.size_bytes < 0 {
                return Err(bad("invalid size"));
            }
            Ok(Wanted {
                mp: MountPoint {
                    kind: MountKind::Tmpfs,
                    name: String::new(),
                    source: String::new(),
                    destination,
                    driver: String::new(),
                    mode: String::new(),
                    rw: !m.read_only,
                    propagation: String::new(),
                    named: false,
                    copy_data: false,
                    non_recursive: false,
                    create_source: false,
                    tmpfs_data: tmpfs_data(to.size_bytes, to.mode),
                    ro_non_recursive: false,
                },
                create: None,
            })
        }
        "" => Err(invalid("invalid mount config: mount type unknown")),
        other => Err(invalid(format!(
            "invalid mount config: mount type unknown: \"{other}\""
        ))),
    }
}

/// `--tmpfs /x:size=64m,mode=1777`: (flags, data) kept apart; the kernel parses the data.
fn tmpfs_options(opts: &str) -> Result<Vec<String>> {
    let mut flags: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
    let mut data = Vec::new();
    for o in opts.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let opposite = |a: &str, b: &str, flags: &mut Vec<String>| {
            flags.retain(|f| f != a && f != b);
            flags.push(a.to_string());
        };
        match o {
            "exec" => opposite("exec", "noexec", &mut flags),
            "noexec" => opposite("noexec", "exec", &mut flags),
            "suid" => opposite("suid", "nosuid", &mut flags),
            "nosuid" => opposite("nosuid", "suid", &mut flags),
            "dev" => opposite("dev", "nodev", &mut flags),
            "nodev" => opposite("nodev", "dev", &mut flags),
            "ro" => opposite("ro", "rw", &mut flags),
            "rw" => opposite("rw", "ro", &mut flags),
            "noatime" | "relatime" | "strictatime" | "nodiratime" | "sync" | "async"
            | "dirsync" | "mand" | "nomand" | "atime" | "diratime" => flags.push(o.to_string()),
            kv if kv.contains('=') => {
                let (k, _) = kv.split_once('=').unwrap_or((kv, ""));
                match k {
                    "size" | "mode" | "uid" | "gid" | "nr_inodes" | "nr_blocks" | "mpol"
                    | "huge" | "inode64" => data.push(kv.to_string()),
                    _ => return Err(invalid(format!("invalid tmpfs option [\"{kv}\"]"))),
                }
            }
            other => return Err(invalid(format!("invalid tmpfs option [\"{other}\"]"))),
        }
    }
    flags.extend(data);
    Ok(flags)
}

fn oci_mount(
    dest: &str,
    src: &str,
    typ: &str,
    options: Vec<String>,
) -> Result<oci_spec::runtime::Mount> {
    oci_spec::runtime::MountBuilder::default()
        .destination(dest)
        .source(src)
        .typ(typ)
        .options(options)
        .build()
        .map_err(|e| EngineError::Internal(format!("building mount {dest}: {e}")))
}

fn depth(p: &str) -> usize {
    p.split('/').filter(|s| !s.is_empty()).count()
}

/// Parents before children (a volume on `/etc` must not hide the `/etc/hosts` bind); stable, so
/// mounts of equal depth keep their order.
pub(crate) fn sort_mounts(m: &mut [oci_spec::runtime::Mount]) {
    m.sort_by_key(|m| depth(&m.destination().to_string_lossy()));
}

impl Engine {
    /// Resolves the mounts of a container being created, creating the volumes it names.
    /// The caller holds `volume_lock` until the container is registered. On error, the
    /// anonymous volumes made here are removed again.
    pub(crate) fn plan_mounts(
        &self,
        self_id: &str,
        config: &ContainerConfig,
        hc: &HostConfig,
    ) -> Result<Vec<MountPoint>> {
        let mut created_anon: Vec<String> = Vec::new();
        let res = self.plan_mounts_inner(self_id, config, hc, &mut created_anon);
        if res.is_err() {
            for n in created_anon {
                let _ = self.volumes().delete(&n);
            }
        }
        res
    }

    fn plan_mounts_inner(
        &self,
        self_id: &str,
        config: &ContainerConfig,
        hc: &HostConfig,
        created_anon: &mut Vec<String>,
    ) -> Result<Vec<MountPoint>> {
        // destination -> mount, in Docker's precedence: volumes-from, then binds and mounts
        // (which may not collide with each other), then anonymous volumes where nothing is.
        let mut by_dest: BTreeMap<String, Wanted> = BTreeMap::new();
        for from in hc.volumes_from.clone().unwrap_or_default() {
            let (cname, mode) = match from.rsplit_once(':') {
                Some((c, m)) if m == "ro" || m == "rw" => (c, Some(m)),
                Some((_, m)) => return Err(invalid(format!("invalid mode: {m}"))),
                None => (from.as_str(), None),
            };
            let other = self.lookup(cname)?;
            if other.id == self_id {
                return Err(invalid("cannot mount volumes from itself"));
            }
            for mut mp in other.snapshot().mount_points {
                if mp.kind == MountKind::Tmpfs {
                    continue;
                }
                if let Some(m) = mode {
                    mp.rw = m == "rw";
                    mp.mode = m.to_string();
                }
                mp.copy_data = false;
                by_dest.insert(mp.destination.clone(), Wanted { mp, create: None });
            }
        }
        let mut user: HashSet<String> = HashSet::new();
        let mut wanted: Vec<Wanted> = Vec::new();
        // `--volume-driver` applies to the volumes of `-v` and `Config.Volumes`.
        let default_driver = if hc.volume_driver.is_empty() {
            "local".to_string()
        } else {
            hc.volume_driver.clone()
        };
        for b in hc.binds.clone().unwrap_or_default() {
            let mut w = parse_bind(&b)?;
            if w.mp.kind == MountKind::Volume {
                w.mp.driver = default_driver.clone();
            }
            wanted.push(w);
        }
        for m in hc.mounts.clone().unwrap_or_default() {
            wanted.push(parse_api_mount(&m)?);
        }
        for w in wanted {
            if !user.insert(w.mp.destination.clone()) {
                return Err(invalid(format!(
                    "Duplicate mount point: {}",
                    w.mp.destination
                )));
            }
            by_dest.insert(w.mp.destination.clone(), w);
        }
        let mut tmpfs_dests = HashSet::new();
        for dest in hc.tmpfs.clone().unwrap_or_default().keys() {
            let d = clean_destination(dest, "tmpfs")?;
            if user.contains(&d) {
                return Err(invalid(format!("Duplicate mount point: {d}")));
            }
            tmpfs_dests.insert(d);
        }
        for dest in config.volumes.clone().unwrap_or_default().keys() {
            let d = clean_destination(dest, "volume")?;
            if by_dest.contains_key(&d) || tmpfs_dests.contains(&d) {
                continue;
            }
            by_dest.insert(
                d.clone(),
                Wanted {
                    mp: MountPoint {
                        kind: MountKind::Volume,
                        name: String::new(),
                        source: String::new(),
                        destination: d,
                        driver: default_driver.clone(),
                        mode: String::new(),
                        rw: true,
                        propagation: String::new(),
                        named: false,
                        copy_data: true,
                        non_recursive: false,
                        create_source: false,
                        tmpfs_data: Vec::new(),
                        ro_non_recursive: false,
                    },
                    create: Some((BTreeMap::new(), BTreeMap::new())),
                },
            );
        }
        // Now the side effects: host directories for `-v` binds, and volumes.
        let mut out = Vec::new();
        for (_, w) in by_dest {
            let mut mp = w.mp;
            match mp.kind {
                MountKind::Bind => {
                    if mp.create_source && !Path::new(&mp.source).exists() {
                        std::fs::create_dir_all(&mp.source).map_err(|e| {
                            EngineError::Internal(format!(
                                "error while creating mount source path '{}': {e}",
                                mp.source
                            ))
                        })?;
                    }
                }
                MountKind::Volume => {
                    if let Some((mut labels, opts)) = w.create {
                        let anonymous = mp.name.is_empty();
                        if anonymous {
                            labels.insert(ANONYMOUS_LABEL.into(), String::new());
                        }
                        let meta = self.volumes().create(
                            (!anonymous).then_some(mp.name.as_str()),
                            &mp.driver,
                            labels,
                            opts,
                        )?;
                        if anonymous {
                            created_anon.push(meta.name.clone());
                        }
                        mp.name = meta.name.clone();
                        mp.driver = meta.driver.clone();
                    } else if self.volumes().get(&mp.name).is_none() {
                        return Err(EngineError::NotFound(format!(
                            "get {}: no such volume",
                            mp.name
                        )));
                    }
                    mp.source = self.volumes().data_path(&mp.name).display().to_string();
                }
                MountKind::Tmpfs => {}
            }
            out.push(mp);
        }
        Ok(out)
    }

    /// `plan_mounts` under the volume lock (only taken when the container has mounts), then
    /// reserves the volumes for `id` until [`Engine::settle_mounts`].
    pub(crate) async fn reserve_mounts(
        &self,
        id: &str,
        config: &ContainerConfig,
        hc: &HostConfig,
    ) -> Result<Vec<MountPoint>> {
        let any = hc.binds.as_ref().is_some_and(|v| !v.is_empty())
            || hc.mounts.as_ref().is_some_and(|v| !v.is_empty())
            || hc.volumes_from.as_ref().is_some_and(|v| !v.is_empty())
            || config.volumes.as_ref().is_some_and(|v| !v.is_empty());
        if !any {
            return Ok(Vec::new());
        }
        let _g = self.inner.volume_lock.lock().await;
        let mounts = self.plan_mounts(id, config, hc)?;
        self.volumes().reserve(
            id,
            mounts
                .iter()
                .filter(|m| m.kind == MountKind::Volume)
                .map(|m| m.name.clone())
                .collect(),
        );
        Ok(mounts)
    }

    /// Ends the reservation of [`Engine::reserve_mounts`]; when the create failed, the anonymous
    /// volumes it made (and nobody else uses) go again.
    pub(crate) async fn settle_mounts(&self, id: &str, mounts: &[MountPoint], created: bool) {
        if mounts.is_empty() {
            return;
        }
        let _g = self.inner.volume_lock.lock().await;
        self.volumes().unreserve(id);
        if created {
            return;
        }
        for m in mounts {
            if m.kind == MountKind::Volume && !m.named && self.volume_users(&m.name).is_empty() {
                let _ = self.volumes().delete(&m.name);
            }
        }
    }

    /// At start: mounts volumes that have driver options, fills empty volumes from the image
    /// (once), and returns the OCI mounts in parent-before-child order.
    pub(crate) fn prepare_mounts(
        &self,
        c: &Arc<Entry>,
        rootfs: &Path,
    ) -> Result<Vec<oci_spec::runtime::Mount>> {
        let rec = c.snapshot();
        let mut copied = Vec::new();
        for mp in &rec.mount_points {
            match mp.kind {
                MountKind::Volume => {
                    self.volumes().acquire(&mp.name, &c.id)?;
                    if mp.copy_data {
                        // Two containers starting on one new volume must not both fill it.
                        let _copying = self.volumes().copy_lock();
                        let data = PathBuf::from(&mp.source);
                        crate::copyup::copy_up(rootfs, &mp.destination, &data).map_err(|e| {
                            EngineError::Internal(format!(
                                "failed to copy image content of {} to volume {}: {e}",
                                mp.destination, mp.name
                            ))
                        })?;
                        copied.push(mp.destination.clone());
                    }
                }
                MountKind::Bind => {
                    if mp.create_source && !Path::new(&mp.source).exists() {
                        std::fs::create_dir_all(&mp.source)?;
                    }
                }
                MountKind::Tmpfs => {}
            }
        }
        if !copied.is_empty() {
            c.update(|r| {
                for mp in r.mount_points.iter_mut() {
                    if copied.contains(&mp.destination) {
                        mp.copy_data = false;
                    }
                }
            })?;
        }
        // Destinations are resolved in the rootfs here (symlinks in the image followed the way
        // the container would, never out of it) and created, so the runtime mounts on a plain
        // directory inside the rootfs.
        let place = |dest: &str, dir: bool| -> Result<String> {
            let resolved = crate::copyup::resolve_in_root(rootfs, dest).map_err(|e| {
                EngineError::Internal(format!("resolving mount destination {dest}: {e}"))
            })?;
            let mk = if dir {
                resolved.clone()
            } else {
                Path::new(&resolved)
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "/".into())
            };
            crate::copyup::mkdir_in_root(rootfs, &mk).map_err(|e| {
                EngineError::InvalidParameter(format!(
                    "failed to create mountpoint for {dest} mount: {e}"
                ))
            })?;
            Ok(resolved)
        };
        let mut mounts: Vec<(String, oci_spec::runtime::Mount)> = Vec::new();
        for mp in &rec.mount_points {
            let m = match mp.kind {
                MountKind::Bind | MountKind::Volume => {
                    let is_dir = std::fs::metadata(&mp.source)
                        .map(|m| m.is_dir())
                        .unwrap_or(true);
                    let dest = place(&mp.destination, is_dir)?;
                    let mut o = vec![if mp.non_recursive { "bind" } else { "rbind" }.to_string()];
                    if mp.kind == MountKind::Bind {
                        check_source_propagation(&mp.source, &mp.propagation)?;
                    }
                    o.push(if mp.propagation.is_empty() {
                        "rprivate".into()
                    } else {
                        mp.propagation.clone()
                    });
                    if !mp.rw {
                        o.push("ro".into());
                        if !mp.non_recursive && !mp.ro_non_recursive {
                            o.push("rro".into());
                        }
                    }
                    (dest.clone(), oci_mount(&dest, &mp.source, "bind", o)?)
                }
                MountKind::Tmpfs => {
                    let dest = place(&mp.destination, true)?;
                    let mut o: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
                    if !mp.rw {
                        o.push("ro".into());
                    }
                    o.extend(mp.tmpfs_data.iter().cloned());
                    (dest.clone(), oci_mount(&dest, "tmpfs", "tmpfs", o)?)
                }
            };
            mounts.push(m);
        }
        for (dest, opts) in rec.host_config.tmpfs.clone().unwrap_or_default() {
            let d = clean_destination(&dest, "tmpfs")?;
            let o = tmpfs_options(&opts)?;
            let d = place(&d, true)?;
            mounts.push((d.clone(), oci_mount(&d, "tmpfs", "tmpfs", o)?));
        }
        mounts.sort_by_key(|(d, _)| depth(d));
        Ok(mounts.into_iter().map(|(_, m)| m).collect())
    }

    /// The container no longer holds its volumes' driver mounts (it stopped or is removed).
    pub(crate) fn release_mounts(&self, id: &str, mounts: &[MountPoint]) {
        for mp in mounts {
            if mp.kind == MountKind::Volume {
                self.volumes().release(&mp.name, id);
            }
        }
    }
}

/// Validates `HostConfig.Tmpfs` at create (the options are used at start).
pub(crate) fn validate_tmpfs(hc: &HostConfig) -> Result<()> {
    for (dest, opts) in hc.tmpfs.clone().unwrap_or_default() {
        clean_destination(&dest, "tmpfs")?;
        tmpfs_options(&opts)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds() {
        let w = parse_bind("data:/d:ro").expect("named");
        assert_eq!(w.mp.kind, MountKind::Volume);
        assert_eq!(
            (w.mp.name.as_str(), w.mp.rw, w.mp.named),
            ("data", false, true)
        );
        let w = parse_bind("/h/../x:/d/").expect("bind");
        assert_eq!(w.mp.kind, MountKind::Bind);
        assert_eq!(
            (w.mp.source.as_str(), w.mp.destination.as_str()),
            ("/x", "/d")
        );
        assert_eq!(w.mp.propagation, "rprivate");
        let w = parse_bind("/anon").expect("anon");
        assert!(w.mp.name.is_empty() && !w.mp.named && w.mp.copy_data);
        let w = parse_bind("v1:/d:nocopy").expect("nocopy");
        assert!(!w.mp.copy_data);
        assert_eq!(
            parse_bind("relative/path:/x").err().map(|e| e.to_string()),
            Some("create relative/path: \"relative/path\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path".to_string())
        );
        assert!(parse_bind("v1:/d:bogus").is_err());
        assert!(parse_bind("v1:rel").is_err());
        assert!(parse_bind("v1:/").is_err());
        assert!(parse_bind("a:b:c:d").is_err());
        assert!(parse_bind("/h:/d:nocopy").is_err());
        assert!(parse_bind("/h:/d:rprivate").is_ok());
        let w = parse_bind("/h:/d:ro,rslave").expect("rslave bind");
        assert_eq!((w.mp.propagation.as_str(), w.mp.rw), ("rslave", false));
        let e = parse_bind("v1:/d:rshared").err().map(|e| e.to_string());
        assert!(
            e.is_some_and(|e| e.contains("not supported for volumes")),
            "volume"
        );
    }

    #[test]
    fn api_mounts() {
        let m = ApiMount {
            r#type: "bind".into(),
            source: "/definitely/not/here".into(),
            target: "/x".into(),
            ..Default::default()
        };
        assert_eq!(
            parse_api_mount(&m).err().map(|e| e.to_string()),
            Some("invalid mount config for type \"bind\": bind source path does not exist: /definitely/not/here".into())
        );
        let m = ApiMount {
            r#type: "tmpfs".into(),
            target: "/t".into(),
            tmpfs_options: Some(berth_api::types::TmpfsOptions {
                size_bytes: 1 << 20,
                mode: Some(0o1777),
                options: None,
            }),
            ..Default::default()
        };
        let w = parse_api_mount(&m).expect("tmpfs");
        assert_eq!(w.mp.tmpfs_data, vec!["size=1048576", "mode=1777"]);
        let m = ApiMount {
            r#type: "nope".into(),
            target: "/t".into(),
            ..Default::default()
        };
        assert!(parse_api_mount(&m).is_err());
    }

    #[test]
    fn tmpfs_opts() {
        let o = tmpfs_options("size=64m,mode=1777").expect("opts");
        assert_eq!(
            o,
            vec!["nosuid", "nodev", "noexec", "size=64m", "mode=1777"]
        );
        let o = tmpfs_options("exec").expect("exec");
        assert!(o.contains(&"exec".to_string()) && !o.contains(&"noexec".to_string()));
        assert!(tmpfs_options("bogus").is_err());
    }

    #[test]
    fn destinations() {
        assert_eq!(
            clean_destination("/a/./b/../c/", "volume").expect("ok"),
            "/a/c"
        );
        assert!(clean_destination("/..", "volume").is_err());
        assert!(clean_destination("x", "volume").is_err());
    }
}
