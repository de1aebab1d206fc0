//! berth-api: the Docker Engine API as Rust types, the multiplexed stream framing, and an async
//! client for it.

pub mod client;
pub mod detach;
pub mod endpoints;
pub mod network;
pub mod stdcopy;
pub mod tls;
pub mod types;
pub mod units;
pub mod volume;

/// The API version Berth speaks and advertises.
pub const API_VERSION: &str = "1.45";
/// The oldest API version Berth accepts.
pub const MIN_API_VERSION: &str = "1.24";
pub use client::{ApiError, Body, Client, Host};
