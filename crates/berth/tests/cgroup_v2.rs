//! cgroup v2: limits land in the unified hierarchy and are seen from inside the container.
//! Skips (one line) on a host that is not cgroup v2 only; tests/vm/run.sh runs it in a VM.

mod common;
use common::*;

fn v2_host() -> bool {
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if !v2 {
        eprintln!("skipped: /sys/fs/cgroup is not cgroup v2 only (tests/vm/run.sh runs these)");
    }
    v2
}

#[test]
fn info_reports_v2() {
    if !v2_host() {
        return;
    }
    let d = d();
    assert_eq!(d.cli(&["info", "--format", "{{.CgroupVersion}}"]).out(), "2");
    let out = sh(d, &["--memory", "64m"], "cat /sys/fs/cgroup/memory.max");
    assert_eq!(out, "67108864");
}
