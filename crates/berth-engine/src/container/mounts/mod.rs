//! A container's mounts: `HostConfig.Binds`, `Mounts`, `Tmpfs`, `VolumesFrom` and the anonymous
//! volumes of `Config.Volumes` (the user's `-v /path` and the image's `VOLUME`), resolved once at
//! create into [`MountPoint`] records, and turned into OCI mounts at each start.

pub mod copyup;
mod parse;
mod plan;

pub(crate) use parse::validate_tmpfs;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

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

/// An OCI bind mount of `src` at `dest` with `opts`, plus `ro` when read-only.
pub(crate) fn oci_bind(
    dest: &str,
    src: impl AsRef<std::path::Path>,
    opts: &[&str],
    ro: bool,
) -> crate::error::Result<oci_spec::runtime::Mount> {
    let mut options: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
    if ro {
        options.push("ro".into());
    }
    oci_spec::runtime::MountBuilder::default()
        .destination(dest)
        .source(src.as_ref())
        .typ("bind")
        .options(options)
        .build()
        .map_err(|e| crate::error::EngineError::Internal(e.to_string()))
}
