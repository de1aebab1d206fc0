//! Detach key sequences: the matcher lives in berth-api, shared with the daemon.

pub use berth_api::detach::{parse_keys, EscapeMatcher, DEFAULT_KEYS};
