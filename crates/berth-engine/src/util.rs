//! Small shared helpers: atomic writes, timestamps, ids.

/// Docker's "zero time", used for StartedAt/FinishedAt that never happened.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if s.is_empty() || s == ZERO_TIME {
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Write-temp, fsync, rename (one implementation, in berth-fs).
pub use berth_fs::write_atomic;

pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}
