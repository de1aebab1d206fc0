//! Containers: one file per operation. The record and its in-memory entry (`record`), the index
//! by id and name (`index`), and create, start, stop/kill/restart, remove, wait, rename, attach,
//! logs, list and inspect, the exit monitor with restart policies, and live restore (`recover`).

pub mod archive;
pub mod attach;
mod config;
mod create;
pub mod health;
mod index;
mod inspect;
#[cfg(test)]
mod lifecycle_tests;
pub mod list;
pub mod logs;
mod monitor;
pub mod mounts;
mod names;
mod namespaces;
mod prune;
mod record;
mod recover;
mod remove;
mod rename;
pub(crate) mod resources;
mod runspec;
pub mod signal;
mod start;
pub mod stats;
mod stop;
pub mod wait;

pub(crate) use index::ContainerIndex;
pub use record::{ContainerRecord, Entry, Signal, StateRecord, Status};

/// Who a new container is for.
pub(crate) enum Owner {
    /// A Docker API client.
    User,
    /// A build's RUN step (see `ContainerRecord::build_step`).
    BuildStep,
    /// A pod's container (the CRI's).
    Pod(Box<crate::pod::PodContainer>),
}
