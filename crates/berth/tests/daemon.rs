//! The daemon itself: the Engine API basics (`/_ping`, `/version`, `/info`, version prefixes,
//! error bodies), its socket, pidfile and shutdown, and the CLI's connection handling.

mod common;
use common::*;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};

fn shared() -> &'static Daemon {
    Daemon::shared(BIN)
}

#[test]
fn ping_get_with_headers() {
    let d = shared();
    for path in ["/_ping", "/v1.45/_ping", "/v1.24/_ping"] {
        let r = d.api("GET", path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.text(), "OK", "{path}");
        assert_eq!(
            r.header("Api-Version"),
            Some("1.45"),
            "{path}: {:?}",
            r.headers
        );
        assert_eq!(r.header("OSType"), Some("linux"), "{path}: {:?}", r.headers);
    }
}

#[test]
fn ping_head_with_headers() {
    let r = shared().api("HEAD", "/_ping");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("Api-Version"), Some("1.45"), "{:?}", r.headers);
    assert_eq!(r.header("OSType"), Some("linux"), "{:?}", r.headers);
}

#[test]
fn version_bare_and_prefixed() {
    let d = shared();
    for path in [
        "/version",
        "/v1.45/version",
        "/v1.24/version",
        "/v1.41/version",
    ] {
        let r = d.api("GET", path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(
            r.header("Content-Type")
                .is_some_and(|c| c.contains("application/json")),
            "{path}"
        );
        let v = r.json().expect("version JSON");
        assert_eq!(v["ApiVersion"], "1.45", "{path}: {v}");
        assert_eq!(v["MinAPIVersion"], "1.24", "{path}: {v}");
        assert_eq!(v["Os"], "linux", "{path}: {v}");
        assert_eq!(v["Arch"], "amd64", "{path}: {v}");
        assert!(
            v["Version"].as_str().is_some_and(|s| !s.is_empty()),
            "{path}: {v}"
        );
        assert!(
            v["KernelVersion"].as_str().is_some_and(|s| !s.is_empty()),
            "{path}: {v}"
        );
    }
}

#[test]
fn version_out_of_range_is_refused() {
    let d = shared();
    let old = d.api("GET", "/v1.12/version");
    assert_eq!(old.status, 400, "{}", old.text());
    let msg = old.json().expect("error JSON");
    assert!(
        msg["message"]
            .as_str()
            .is_some_and(|m| m.contains("too old") && m.contains("1.24")),
        "{msg}"
    );
    let new = d.api("GET", "/v1.99/version");
    assert_eq!(new.status, 400, "{}", new.text());
    assert!(new.json().expect("error JSON")["message"]
        .as_str()
        .is_some_and(|m| m.contains("too new")));
}

#[test]
fn info() {
    let d = shared();
    let r = d.api("GET", "/info");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json().expect("info JSON");
    for k in [
        "Containers",
        "ContainersRunning",
        "ContainersPaused",
        "ContainersStopped",
        "Images",
        "NCPU",
        "MemTotal",
    ] {
        assert!(v[k].is_u64(), "{k} in {v}");
    }
    assert_eq!(v["OSType"], "linux", "{v}");
    assert_eq!(
        v["DockerRootDir"],
        json!(d.data_root().to_string_lossy()),
        "{v}"
    );
    assert!(v["ID"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    assert!(
        v["ServerVersion"].as_str().is_some_and(|s| !s.is_empty()),
        "{v}"
    );
    assert!(v["Name"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    assert_eq!(d.api("GET", "/v1.45/info").status, 200);
}

#[test]
fn unknown_paths_are_404_json() {
    let d = shared();
    for path in [
        "/nosuch",
        "/v1.45/nosuch/thing",
        "/v1.45/containers/nosuch-xyz/json",
        "/images/nosuch-xyz/json",
    ] {
        let r = d.api("GET", path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        let v = r.json().unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{path}: {v}"
        );
    }
    let c = d
        .api("GET", "/containers/nosuch-xyz/json")
        .json()
        .expect("JSON");
    assert_eq!(c["message"], "No such container: nosuch-xyz");
    let i = d
        .api("GET", "/images/nosuch-xyz/json")
        .json()
        .expect("JSON");
    assert_eq!(i["message"], "No such image: nosuch-xyz:latest");
}

#[test]
fn bad_requests_are_400_json() {
    let d = shared();
    let r = d
        .api_with(
            "POST",
            "/containers/create",
            &[("Content-Type", "application/json")],
            Some(b"{not json"),
        )
        .expect("POST");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json().expect("error JSON")["message"].is_string());
    let r = d.api("GET", "/containers/json?filters=notjson");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(d.ping());
}

#[test]
fn socket_mode_0660() {
    let d = shared();
    let m = std::fs::metadata(d.socket()).expect("socket exists");
    assert!(m.file_type().is_socket());
    assert_eq!(
        m.permissions().mode() & 0o777,
        0o660,
        "socket mode {:o}",
        m.permissions().mode()
    );
}

#[test]
fn pidfile_holds_the_daemon_pid() {
    let d = shared();
    let pid = std::fs::read_to_string(d.exec_root().join("berth.pid"))
        .expect("pidfile <exec-root>/berth.pid");
    assert_eq!(
        pid.trim().parse::<u32>().ok(),
        d.pid(),
        "pidfile content {pid:?}"
    );
}

#[test]
fn sigterm_shuts_down_cleanly_and_restarts() {
    let d = Daemon::start(BIN);
    assert!(d.start_duration() < Duration::from_secs(5));
    let status = d
        .stop(Duration::from_secs(10))
        .expect("daemon exits within 10 s of SIGTERM");
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        d.log_text()
    );
    assert!(!d.socket().exists(), "socket removed on shutdown");
    assert!(
        !d.exec_root().join("berth.pid").exists(),
        "pidfile removed on shutdown"
    );
    d.restart();
    assert!(d.ping());
}

#[test]
fn second_daemon_on_same_roots_is_refused() {
    let d = Daemon::start(BIN);
    let o = berth_testkit::run_with_timeout(
        {
            let mut c = std::process::Command::new(BIN);
            c.arg("daemon")
                .arg("-H")
                .arg(format!("unix://{}/other.sock", d.root().display()))
                .arg("--data-root")
                .arg(d.data_root())
                .arg("--exec-root")
                .arg(d.exec_root());
            c
        },
        None,
        Duration::from_secs(10),
    );
    assert!(
        !o.timed_out && !o.success(),
        "a second daemon on the same roots must exit with an error: {o}"
    );
    assert!(d.ping());
}

// ---------------------------------------------------------------- CLI ↔ daemon

#[test]
fn cli_version_and_info() {
    let d = shared();
    let v = d.cli(&["version"]);
    v.ok();
    assert!(
        v.stdout.contains("Client") && v.stdout.contains("Server") && v.stdout.contains("1.45"),
        "{v}"
    );
    let i = d.cli(&["info"]);
    i.ok();
    assert!(
        i.stdout.contains("Containers:") && i.stdout.contains("Images:"),
        "{i}"
    );
    let f = d.cli(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(f.out(), "1.45", "{f}");
}

#[test]
fn cli_host_from_environment() {
    let d = shared();
    d.cli_env(&["ps"], &[("BERTH_HOST", &d.host())]).ok();
    d.cli_env(&["ps"], &[("DOCKER_HOST", &d.host())]).ok();
    d.cli_env(&["--host", &d.host(), "ps"], &[]).ok();
}

#[test]
fn cli_says_when_the_daemon_is_not_running() {
    let d = shared();
    let o = d.cli_env(&["-H", "unix:///nonexistent-berth/berth.sock", "ps"], &[]);
    o.code_is(1);
    assert!(
        o.stderr.contains("Cannot connect to the") && o.stderr.contains("daemon"),
        "{o}"
    );
    assert!(o.stderr.contains("/nonexistent-berth/berth.sock"), "{o}");
}

#[test]
fn help_for_every_command() {
    let d = shared();
    let top = d.cli(&["--help"]);
    top.ok();
    for cmd in [
        "create", "run", "start", "stop", "kill", "restart", "rm", "ps", "inspect", "logs", "wait",
        "rename", "images", "image", "load", "save", "import", "history", "tag", "rmi", "version",
        "info", "daemon",
    ] {
        // `daemon` is dispatched before the CLI's global flags, so no -H for it.
        let o = if cmd == "daemon" {
            d.cli_env(&[cmd, "--help"], &[])
        } else {
            d.cli(&[cmd, "--help"])
        };
        o.ok();
        assert!(
            o.stdout.contains("Usage") || o.stdout.contains("usage"),
            "{cmd} --help: {o}"
        );
        if cmd != "daemon" {
            assert!(
                top.stdout.contains(cmd),
                "top-level help lists {cmd}: {top}"
            );
        }
    }
    assert!(
        !top.stdout.contains("shim"),
        "the shim command is hidden: {top}"
    );
}

#[test]
fn swarm_endpoints_answer_as_an_engine_outside_a_swarm() {
    let d = shared();
    for (method, path, msg) in [
        (
            "POST",
            "/v1.45/swarm/leave?force=true",
            "This node is not part of a swarm",
        ),
        ("GET", "/v1.45/swarm", "This node is not a swarm manager."),
        (
            "GET",
            "/v1.45/services",
            "This node is not a swarm manager.",
        ),
        (
            "GET",
            "/v1.45/nodes/abc",
            "This node is not a swarm manager.",
        ),
        (
            "POST",
            "/v1.45/swarm/init",
            "swarm mode is not supported by Berth",
        ),
    ] {
        let r = d.api(method, path);
        assert_eq!(r.status, 503, "{method} {path}");
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json error body");
        let m = body["message"].as_str().unwrap_or_default();
        assert!(m.starts_with(msg), "{method} {path}: {m}");
    }
}

#[test]
fn listens_on_tcp_too() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let d = Daemon::start_with_args(BIN, &["-H", &format!("tcp://127.0.0.1:{port}")]);
    assert!(d.ping(), "the unix socket still answers");
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect over tcp");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /v1.45/version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"ApiVersion\":\"1.45\""), "{text}");
    // A malformed address is refused at start.
    let bad = Daemon::try_start_with_args(BIN, &["-H", "tcp://nohostport"]);
    assert!(bad.is_err());
}
