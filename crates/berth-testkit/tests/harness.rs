//! The harness against a stand-in daemon: start, ping, CLI, kill -9/restart, and a cleanup that
//! leaves no process, mount or directory.

use std::path::PathBuf;
use std::time::Duration;

use berth_testkit::{cleanup, http, Daemon};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-berth");

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].trim_start().chars().next())
                != Some('Z')
        })
        .unwrap_or(false)
}

#[test]
fn start_ping_restart_and_cleanup() {
    let root: PathBuf;
    let shim: i32;
    {
        let d = Daemon::start(FAKE);
        root = d.root().to_path_buf();
        assert!(d.ping());
        let r = d.api("HEAD", "/_ping");
        assert_eq!(r.header("api-version"), Some("1.45"));
        assert_eq!(d.api("GET", "/nosuch").status, 404);
        let o = d.cli(&["ps", "-a"]);
        o.ok();
        assert_eq!(o.out(), format!("-H {} ps -a", d.host()));
        shim = cleanup::shim_pids(d.exec_root())
            .first()
            .copied()
            .expect("fake shim pid");
        assert!(alive(shim));
        d.kill9();
        assert!(!d.is_running() && !d.ping());
        d.restart();
        assert!(d.ping());
        assert!(d.start_duration() < Duration::from_secs(10));
    }
    assert!(!alive(shim), "shim {shim} survived the cleanup");
    assert!(
        cleanup::mounts_under(&root).is_empty(),
        "mounts left under {}",
        root.display()
    );
    assert!(!root.exists(), "{} left behind", root.display());
}

#[test]
fn parallel_daemons_do_not_collide() {
    let a = Daemon::start(FAKE);
    let b = Daemon::start(FAKE);
    assert_ne!(a.socket(), b.socket());
    assert_ne!(a.data_root(), b.data_root());
    assert!(a.ping() && b.ping());
    drop(a);
    assert!(b.ping());
}

#[test]
fn a_daemon_that_exits_fails_fast_with_its_output() {
    let started = std::time::Instant::now();
    // `sh daemon -H …` exits at once, complaining that it cannot open `daemon`.
    let err = Daemon::try_start("/bin/sh").err().expect("start must fail");
    assert!(err.contains("exited") && err.contains("daemon"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn raw_http_against_a_closed_socket_is_an_error() {
    let d = tempfile::tempdir().expect("tempdir");
    let r = http::request(
        &d.path().join("none.sock"),
        "GET",
        "/_ping",
        &[],
        None,
        Duration::from_secs(1),
    );
    assert!(r.is_err());
}
