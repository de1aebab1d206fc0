//! Shared helpers of Berth's integration tests (each test file does `mod common;`).
#![allow(dead_code, unused_imports)]

pub use berth_testkit::image::{self, SaveFormat};
pub use berth_testkit::{is_hex, unique, wait_until, Daemon, Image, Layer, Out, RawTar};
pub use serde_json::{json, Value};
pub use std::time::{Duration, Instant};

/// The berth binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// Generous deadline for state changes.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// This test file's shared daemon, with `busybox:latest` loaded.
pub fn d() -> &'static Daemon {
    let d = Daemon::shared(BIN);
    d.load_busybox();
    d
}

/// `rm -f` of the containers on drop, so a failing test leaves nothing running.
pub struct Rm<'a>(pub &'a Daemon, pub Vec<String>);

impl Rm<'_> {
    pub fn add(&mut self, name: &str) {
        self.1.push(name.to_string());
    }
}

impl Drop for Rm<'_> {
    fn drop(&mut self) {
        for n in &self.1 {
            let _ = self.0.cli(&["rm", "-f", n]);
        }
    }
}

/// `run -d <args>`; asserts success and that the output is a full id, returns it.
#[track_caller]
pub fn run_d(d: &Daemon, args: &[&str]) -> String {
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(args);
    let o = d.cli(&a);
    o.ok();
    let id = o.out().to_string();
    assert!(is_hex(&id, 64), "run -d should print a 64-hex id: {o}");
    id
}

/// `inspect --format <fmt> <name>`, asserting success.
#[track_caller]
pub fn fmt(d: &Daemon, name: &str, f: &str) -> String {
    let o = d.cli(&["inspect", "--format", f, name]);
    o.ok();
    o.out().to_string()
}

/// Waits until the container's status is `status`, panics with its inspect output otherwise.
#[track_caller]
pub fn expect_status(d: &Daemon, name: &str, status: &str) {
    if !d.wait_status(name, status, DEADLINE) {
        panic!(
            "container {name} did not reach status {status}: {}",
            d.cli(&["inspect", name])
        );
    }
}

/// `run --rm busybox sh -c <script>`, asserting success; returns trimmed stdout.
#[track_caller]
pub fn sh(d: &Daemon, extra: &[&str], script: &str) -> String {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(extra);
    a.extend_from_slice(&["busybox", "sh", "-c", script]);
    let o = d.cli(&a);
    o.ok();
    o.out().to_string()
}

/// busybox saved as an OCI tar at `tar`, readable by everyone (rootless tests load it as
/// another user).
pub fn write_busybox_tar(tar: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(
        tar,
        image::busybox_image()
            .expect("busybox image")
            .save_tar(SaveFormat::Oci),
    )
    .expect("write image");
    std::fs::set_permissions(tar, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}

/// The cgroup v2 directory (host path) of a process, from its /proc/<pid>/cgroup.
pub fn v2_cgroup_of(pid: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup of pid");
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a v2 cgroup line");
    std::path::Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'))
}
