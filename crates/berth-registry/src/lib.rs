//! Registries: a distribution client (pull/push) and `berth registry serve`.

pub mod cli;
pub mod client;
pub mod error;
pub mod hosts;
pub mod server;
pub mod storage;

pub use cli::{command, main, serve_main};
pub use client::{
    inspect_distribution, login, pull, push, search, DistributionInspect, Progress, PullOptions,
    PushOptions, PushResult, RegistryAuth, SearchResult,
};
pub use error::{ErrorCode, RegistryError};
pub use storage::random_uuid;
