//! The engine's side of the runtime: the client of the per-container shim (`berth shim`).

pub mod shim;
