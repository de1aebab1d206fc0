//! berth-daemon: serves the Docker Engine API on a unix socket. Routes call the engine and
//! nothing else; this crate holds no business logic.

mod archive;
mod containers;
mod error;
mod events;
mod exec;
mod images;
mod ops;
mod params;
mod server;
mod stream;
mod system;
mod volumes;

pub use server::{run, DaemonOptions};
