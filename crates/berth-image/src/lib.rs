//! berth-image: references, the content store, docker-save/OCI load and save, import, safe layer
//! extraction and overlay snapshots for containers.

pub mod blobs;
pub mod config;
pub mod error;
pub mod extract;
pub(crate) mod fsutil;
pub mod reference;
pub mod archive;
pub mod layers;
pub mod store;

pub use config::{ContainerConfig, ImageConfig};
pub use error::{ErrorKind, ImageError};
pub use layers::LayerInfo;
pub use reference::Reference;
pub use store::{DeleteItem, HistoryItem, Image, ImageStore};
pub mod snapshot;
pub mod import;

#[cfg(test)]
mod tests;
