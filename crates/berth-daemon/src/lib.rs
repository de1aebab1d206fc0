//! berth-daemon
