//! berth-daemon: serves the Docker Engine API on a unix socket. Routes call the engine and
//! nothing else; this crate holds no business logic.

mod archive;
mod build;
pub mod config;
mod containers;
mod error;
mod events;
mod exec;
mod grpc;
pub mod hygiene;
mod images;
mod networks;
mod ops;
mod params;
mod server;
mod stream;
mod swarm;
mod system;
pub mod tls;
mod volumes;
mod ws;

pub use berth_engine::network::{parse_pool, NetConfig};
pub use server::{run, DaemonOptions};
