//! berth-image: references, the content store, docker-save/OCI load and save, import, safe layer
//! extraction and overlay snapshots for containers.

pub mod archive;
pub mod blobs;
pub mod config;
pub mod diff;
pub mod error;
pub mod extract;
pub(crate) mod fsutil;
pub mod layers;
pub mod reference;
pub mod store;

pub use config::{ContainerConfig, ImageConfig};
pub use diff::{Change, CommitOptions, SnapshotPaths};
pub use error::{ErrorKind, ImageError};
pub use layers::LayerInfo;
pub use reference::Reference;
pub use store::{DeleteItem, HistoryItem, Image, ImageStore};
pub mod import;
pub mod snapshot;

#[cfg(test)]
mod tests;
