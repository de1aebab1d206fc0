//! berth-cli: the docker-compatible command line.

pub mod format;
pub mod template;
pub mod value;
