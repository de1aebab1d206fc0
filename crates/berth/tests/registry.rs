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
        Registry::start_with(&[])
    }

    fn start_with(extra: &[&std::ffi::OsStr]) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(BIN)
            .args(["registry", "serve", "--addr", &addr, "--storage"])
            .arg(dir.path().join("storage"))
            .args(extra)
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

#[test]
fn login_push_pull_logout_with_stored_credentials() {
    let d = d();
    let auth_dir = tempfile::tempdir().expect("tempdir");
    let ht = auth_dir.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    std::fs::write(&ht, format!("alice:{hash}\n")).expect("htpasswd");
    let reg = Registry::start_with(&[std::ffi::OsStr::new("--htpasswd"), ht.as_os_str()]);
    let cfg_dir = auth_dir.path().join("docker-config");
    let cfg_env = cfg_dir.to_string_lossy().to_string();
    let host = d.host();
    let cli = |args: &[&str]| {
        let mut all = vec!["-H", host.as_str()];
        all.extend_from_slice(args);
        d.cli_env(&all, &[("DOCKER_CONFIG", cfg_env.as_str())])
    };
    let name = format!("{}/private/bb:{}", reg.addr, unique("t"));
    d.cli(&["tag", "busybox", &name]).ok();

    let push_denied = cli(&["push", &name]);
    push_denied.code_is(1);
    assert!(
        push_denied
            .stderr
            .contains("unauthorized: authentication required"),
        "{push_denied}"
    );

    let bad = cli(&["login", &reg.addr, "-u", "alice", "-p", "wrong"]);
    bad.code_is(1);
    assert!(
        bad.stderr
            .contains("Error response from daemon: login attempt to")
            && bad.stderr.contains("401 Unauthorized"),
        "{bad}"
    );
    assert!(!cfg_dir.join("config.json").exists(), "nothing stored");

    let login = cli(&["login", &reg.addr, "-u", "alice", "-p", "s3cret"]);
    login.ok();
    assert!(login.stdout.contains("Login Succeeded"), "{login}");
    let cfg_path = cfg_dir.join("config.json");
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).expect("config.json")).expect("json");
    // base64("alice:s3cret")
    assert_eq!(
        cfg["auths"][reg.addr.as_str()]["auth"],
        json!("YWxpY2U6czNjcmV0"),
        "{cfg}"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cfg_path)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let push = cli(&["push", &name]);
    push.ok();
    assert!(push.stdout.contains("digest: sha256:"), "{push}");
    d.cli(&["rmi", &name]).ok();
    let pull = cli(&["pull", &name]);
    pull.ok();
    assert!(pull.stdout.contains("Downloaded newer image"), "{pull}");
    d.cli(&["rmi", &name]).ok();
    // run's implicit pull sends the credentials too.
    let run = cli(&["run", "--rm", &name, "echo", "authed"]);
    run.ok();
    assert_eq!(run.out(), "authed", "{run}");
    d.cli(&["rmi", &name]).ok();

    let logout = cli(&["logout", &reg.addr]);
    logout.ok();
    assert!(
        logout
            .stdout
            .contains(&format!("Removing login credentials for {}", reg.addr)),
        "{logout}"
    );
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).expect("config.json")).expect("json");
    assert!(cfg["auths"].get(reg.addr.as_str()).is_none(), "{cfg}");
    let pull = cli(&["pull", &name]);
    pull.code_is(1);
    assert!(d.cli(&["image", "inspect", &name]).code != 0);

    // --password-stdin, as scripts log in.
    let mut c = Command::new(BIN);
    c.args([
        "-H",
        &host,
        "login",
        "-u",
        "alice",
        "--password-stdin",
        &reg.addr,
    ])
    .env("DOCKER_CONFIG", &cfg_dir);
    let login = berth_testkit::run_with_timeout(c, Some(b"s3cret\n".to_vec()), DEADLINE);
    login.ok();
    assert!(login.stdout.contains("Login Succeeded"), "{login}");
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).expect("config.json")).expect("json");
    assert_eq!(
        cfg["auths"][reg.addr.as_str()]["auth"],
        json!("YWxpY2U6czNjcmV0"),
        "{cfg}"
    );
}
