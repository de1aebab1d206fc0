//! A container's mount points: planned and reserved at create, prepared (volumes mounted, copy-up
//! done) at each start, released when it stops.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::types::{ContainerConfig, HostConfig};

use crate::container::mounts::parse::{
    check_source_propagation, clean_destination, invalid, parse_api_mount, parse_bind,
    tmpfs_options, Wanted,
};
use crate::container::mounts::{depth, oci_mount, MountKind, MountPoint};
use crate::container::Entry;
use crate::error::{EngineError, Result};
use crate::volume::ANONYMOUS_LABEL;
use crate::Engine;

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
            if from.is_empty() {
                return Err(invalid(
                    "volumes-from specification cannot be an empty string",
                ));
            }
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
                        crate::container::mounts::copyup::copy_up(rootfs, &mp.destination, &data)
                            .map_err(|e| {
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
            let resolved = berth_fs::resolve_in_root(rootfs, dest).map_err(|e| {
                EngineError::Internal(format!("resolving mount destination {dest}: {e}"))
            })?;
            let mk = if dir {
                resolved.as_path()
            } else {
                resolved.parent().unwrap_or(Path::new("/"))
            };
            berth_fs::mkdir_in_root(rootfs, mk).map_err(|e| {
                EngineError::InvalidParameter(format!(
                    "failed to create mountpoint for {dest} mount: {e}"
                ))
            })?;
            Ok(resolved.display().to_string())
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
        self.release_shm(id);
        for mp in mounts {
            if mp.kind == MountKind::Volume {
                self.volumes().release(&mp.name, id);
            }
        }
    }
}
