//! Test harness for Berth's integration tests (dev/test only).
//!
//! - [`image`]: offline test images (`busybox`, `hello-world`, a layered image, hostile tars),
//!   written as `docker save` tarballs in the Docker ≥ 25 OCI layout or the legacy layout.
//! - [`Daemon`]: a `berth daemon` on private temporary roots, with a CLI runner, a raw HTTP client
//!   for the API, `kill9`/`restart`, and a cleanup that leaks no process, mount or directory.
//! - [`Out`], [`run_with_timeout`]: run a command with a deadline and capture its output.
//! - [`pty::Pty`]: a command on a pseudo-terminal of its own.

pub mod cleanup;
mod cmd;
pub mod cri;
mod daemon;
pub mod http;
pub mod image;
pub mod netlease;
pub mod pty;

pub use cmd::{run_with_timeout, Out};
pub use daemon::{Daemon, Startup};
pub use image::{Image, Layer, RawTar, SaveFormat};

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The testkit's error: a message.
#[derive(Debug, Clone)]
pub struct Error(pub String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
/// `d` times `BERTH_TEST_SLOW` (default 1): deadlines for slow machines, such as the test VM
/// under software emulation (tests/vm/run.sh sets it).
pub fn slow(d: Duration) -> Duration {
    static FACTOR: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let f = *FACTOR.get_or_init(|| {
        std::env::var("BERTH_TEST_SLOW")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|f| *f >= 1)
            .unwrap_or(1)
    });
    d * f
}

/// Polls `cond` until it holds (true) or `timeout` (scaled by [`slow`]) passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + slow(timeout);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A name unique in this machine for this run: `<prefix>-<pid>-<counter>-<nanos>`, lower case,
/// valid as a container name and an image repository.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), nanos & 0xffff)
}

/// Whether `s` is `len` lower-case hex digits.
pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Finds an executable on `PATH`.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The Debian mirror apt uses on this machine (`scripts/debian-mirror`), as a URL without a
/// trailing slash, and its `host:port`; `None` when apt names none. Tests that reach the outside
/// go there, so the repository names no package registry.
pub fn debian_mirror() -> Option<(String, String)> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/debian-mirror");
    let out = std::process::Command::new(script).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let url = String::from_utf8(out.stdout).ok()?.trim().to_string();
    let rest = url.strip_prefix("http://")?;
    let host = rest.split('/').next()?;
    let hostport = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    Some((url, hostport))
}
