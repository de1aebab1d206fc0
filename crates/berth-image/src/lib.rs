//! berth-image: references, the content store, docker-save/OCI load and save, import, safe layer
//! extraction and overlay snapshots for containers.

pub mod blobs;
pub mod config;
pub mod error;
pub mod extract;
pub(crate) mod fsutil;
pub mod reference;
