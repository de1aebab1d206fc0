//! Volumes: the `local` driver's store under `<data-root>/volumes/<name>/` (`_data` holds the
//! data, `volume.json` the metadata, written atomically), and the engine's `/volumes` operations.
//!
//! A volume created with driver options (`type=tmpfs`, `o=bind,device=/x`, ...) is mounted on its
//! `_data` when the first container using it starts and unmounted when the last one stops.

mod api;
mod mount;
mod store;

pub use mount::{dir_size, is_mount_point, mount_propagation};
pub use store::{invalid_name_error, valid_name, VolumeMeta, VolumeStore, ANONYMOUS_LABEL};
