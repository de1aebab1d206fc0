//! berth-image: references, the content store, docker-save/OCI load and save, import, safe layer
//! extraction and overlay snapshots for containers.
//!
//! On disk, under `<data-root>/image`:
//! ```text
//! blobs/sha256/<hex>        configs and uncompressed layer tars, verified on write
//! images/<id-hex>.json      one record per image (its layers); written before any tag names it
//! repositories.json         tag and digest index {"Repositories": {name: {full-ref: id}}}
//! layers/<chain-hex>/       diff/ (extracted once, shared) + layer.json
//! l/<16 hex>                short symlink -> ../layers/<chain-hex>/diff (mount options)
//! snapshots/<container-id>/ upper/ work/ merged/ empty/ + snapshot.json
//! tmp/                      staging of loads and commits, emptied at open
//! ```
//! Every metadata file is written temp + fsync + rename. Layers are extracted into a temp dir and
//! renamed into place. Removal deletes a layer only when no image and no snapshot uses it; a
//! shared `gc` lock keeps removals from racing with loads.

pub mod archive;
pub(crate) mod blobs;
pub mod config;
pub mod diff;
pub mod error;
pub mod extract;
pub(crate) mod fsutil;
pub mod import;
pub mod layers;
pub mod oci;
pub mod reference;
pub mod snapshot;
pub mod store;

pub use config::{ContainerConfig, ImageConfig};
pub use diff::{Change, CommitOptions, SnapshotPaths};
pub use error::{ErrorKind, ImageError};
pub use fsutil::chain_ids;
pub use layers::LayerInfo;
pub use reference::Reference;
pub use store::{DeleteItem, HistoryItem, Image, ImageStore};

#[cfg(test)]
mod tests;
