//! The daemon against `berth registry serve` (the same binary): push through the API, pull
//! with the CLI, and `run` of an image that is not present pulls it first.

mod common;
use common::*;

use std::process::{Child, Command, Stdio};

/// `berth registry serve` on a free loopback port, killed on drop.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(BIN)
            .args(["registry", "serve", "--addr", &addr, "--storage"])
            .arg(dir.path().join("storage"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn registry");
        assert!(
            wait_until(DEADLINE, || std::net::TcpStream::connect(&addr).is_ok()),
            "registry did not listen on {addr}"
        );
        Registry {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn push_pull_and_run_pulls_a_missing_image() {
    let d = d();
    let reg = Registry::start();
    let name = format!("{}/tools/bb:{}", reg.addr, unique("t"));
    d.cli(&["tag", "busybox", &name]).ok();
    let id = d.fmt(&name, "{{.Id}}");

    let push = d.cli(&["push", &name]);
    push.ok();
    assert!(
        push.stdout.contains("Pushed") && push.stdout.contains("digest: sha256:"),
        "{push}"
    );
    // Through the API too, as docker-py does: every blob is there now.
    let (repo, tag) = name.rsplit_once(':').expect("tag");
    let again = d.api("POST", &format!("/v1.45/images/{repo}/push?tag={tag}"));
    assert_eq!(again.status, 200);
    let text = String::from_utf8_lossy(&again.body);
    assert!(text.contains("Layer already exists"), "{text}");
    assert!(!text.contains("errorDetail"), "{text}");

    d.cli(&["rmi", &name]).ok();
    let pull = d.cli(&["pull", &name]);
    pull.ok();
    // busybox still holds the layer locally, so only the image itself is new.
    assert!(pull.stdout.contains("Downloaded newer image"), "{pull}");
    assert_eq!(
        d.fmt(&name, "{{.Id}}"),
        id,
        "the pulled image is the pushed one"
    );

    // Present now: a second pull changes nothing.
    let again = d.cli(&["pull", &name]);
    again.ok();
    assert!(again.stdout.contains("Image is up to date"), "{again}");

    d.cli(&["rmi", &name]).ok();
    let run = d.cli(&["run", "--rm", &name, "echo", "pulled-and-ran"]);
    run.ok();
    assert_eq!(run.out(), "pulled-and-ran", "{run}");
    assert!(run.stderr.contains("Unable to find image"), "{run}");
    d.cli(&["rmi", &name]).ok();
}

#[test]
fn pull_of_an_unknown_image_is_a_clear_error() {
    let d = d();
    let reg = Registry::start();
    let o = d.cli(&["pull", &format!("{}/nope/nothing:1", reg.addr)]);
    o.code_is(1);
    assert!(o.stderr.contains("not found"), "{o}");
}

#[test]
fn docker_cli_pushes_to_and_pulls_from_berth_registry() {
    let d = d();
    let reg = Registry::start();
    let name = format!("{}/dockercli/bb:{}", reg.addr, unique("t"));
    d.cli(&["tag", "busybox", &name]).ok();
    let Some(push) = d.docker(&["push", &name]) else {
        eprintln!("SKIPPED: no docker CLI on PATH");
        return;
    };
    push.ok();
    assert!(push.stdout.contains("digest: sha256:"), "{push}");
    d.cli(&["rmi", &name]).ok();
    let pull = d.docker(&["pull", &name]).expect("docker CLI");
    pull.ok();
    assert!(pull.stdout.contains("Downloaded newer image"), "{pull}");
    let run = d
        .docker(&["run", "--rm", &name, "echo", "via-docker"])
        .expect("docker CLI");
    run.ok();
    assert_eq!(run.out(), "via-docker", "{run}");
    d.cli(&["rmi", &name]).ok();
}

#[test]
fn distribution_inspect_and_auth() {
    let d = d();
    let reg = Registry::start();
    let name = format!("{}/dist/bb:{}", reg.addr, unique("t"));
    d.cli(&["tag", "busybox", &name]).ok();
    let push = d.cli(&["push", &name]);
    push.ok();
    let digest = push
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .expect("digest in push output")
        .to_string();

    let r = d.api("GET", &format!("/v1.45/distribution/{name}/json"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["Descriptor"]["digest"], json!(digest), "{v}");
    assert!(
        v["Platforms"].as_array().is_some_and(|p| !p.is_empty()),
        "{v}"
    );
    let missing = d.api(
        "GET",
        &format!("/v1.45/distribution/{}/dist/nothing:1/json", reg.addr),
    );
    assert_eq!(missing.status, 404);

    // An open registry accepts any credentials, as distribution does.
    let body = json!({"username": "u", "password": "p", "serveraddress": reg.addr}).to_string();
    let a = d
        .api_with(
            "POST",
            "/v1.45/auth",
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
        .expect("POST /auth");
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let v: Value = serde_json::from_slice(&a.body).expect("json");
    assert_eq!(v["Status"], "Login Succeeded");
    let bad = d
        .api_with("POST", "/v1.45/auth", &[], Some(b"{nope"))
        .expect("POST /auth");
    assert_eq!(bad.status, 400);
    d.cli(&["rmi", &name]).ok();
}
