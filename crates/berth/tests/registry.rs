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

/// Bytes no compressor shrinks (xorshift), so a layer's size on the wire is its size.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A TCP proxy in front of a registry that slows its answers to `rate` bytes/s (so a pull can be
/// cut mid-blob), records every request line it forwards, and drops a client whose upstream
/// connection cannot be made (the registry is down).
struct SlowProxy {
    addr: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    served: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl SlowProxy {
    fn start(upstream: String, rate: u64) -> SlowProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = l.local_addr().expect("addr").to_string();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let served = Arc::new(AtomicU64::new(0));
        let (req2, served2) = (requests.clone(), served.clone());
        std::thread::spawn(move || {
            for client in l.incoming() {
                let Ok(mut client) = client else { continue };
                let Ok(mut server) = std::net::TcpStream::connect(&upstream) else {
                    continue; // dropping `client` closes it
                };
                let (mut c2, mut s2) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => continue,
                };
                let reqs = req2.clone();
                // client -> server: note request lines (GETs have no body to confuse this).
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        for line in String::from_utf8_lossy(&buf[..n]).lines() {
                            if line.ends_with(" HTTP/1.1") {
                                reqs.lock().unwrap().push(line.to_string());
                            }
                        }
                        if server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
                let served = served2.clone();
                // server -> client, `rate` bytes a second in 16 KiB steps.
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 16 * 1024];
                    let step = Duration::from_secs_f64(buf.len() as f64 / rate as f64);
                    loop {
                        let n = match s2.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if c2.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        served.fetch_add(n as u64, Ordering::SeqCst);
                        std::thread::sleep(step);
                    }
                    let _ = c2.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        SlowProxy {
            addr,
            requests,
            served,
        }
    }

    fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

/// The digests of an image manifest's layers, read from the registry directly.
fn manifest_layers(registry: &str, repo: &str, tag: &str) -> Vec<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(registry).expect("connect registry");
    write!(
        s,
        "GET /v2/{repo}/manifests/{tag} HTTP/1.1\r\nHost: {registry}\r\nAccept: application/vnd.docker.distribution.manifest.v2+json\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read");
    let resp = String::from_utf8_lossy(&resp);
    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    let m: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {resp}"));
    m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}

#[test]
fn a_pull_cut_by_killing_the_registry_resumes_without_fetching_verified_layers_again() {
    use std::sync::atomic::Ordering;
    let d = d();
    let mut reg = Registry::start();
    let proxy = SlowProxy::start(reg.addr.clone(), 8 << 20);
    let name = format!("{}/cut/app:v1", proxy.addr);
    let mut small1 = Layer::new();
    small1.file("small/one", 0o644, noise(1, 200 << 10));
    let mut big = Layer::new();
    big.file("big/blob", 0o644, noise(2, 24 << 20));
    let mut small2 = Layer::new();
    small2.file("small/two", 0o644, noise(3, 200 << 10));
    let img = Image::new(&name, json!({"Cmd": ["sh"]}))
        .layer("small one", &small1)
        .layer("big", &big)
        .layer("small two", &small2);
    d.load_image(&img, SaveFormat::Oci).ok();
    d.cli_timeout(&["push", &name], Duration::from_secs(120))
        .ok();
    d.cli(&["rmi", &name]).ok();
    let layers = manifest_layers(&reg.addr, "cut/app", "v1");
    assert_eq!(layers.len(), 3);
    let blob_gets = |reqs: &[String], digest: &str| {
        reqs.iter()
            .filter(|r| r.starts_with("GET ") && r.contains(&format!("/blobs/{digest} ")))
            .count()
    };

    // First try: the registry dies while the 24 MiB layer is on the wire (at 8 MiB/s, ~3 s).
    proxy.take_requests();
    proxy.served.store(0, Ordering::SeqCst);
    let pull = d.spawn_cli(&["pull", &name]).expect("spawn pull");
    assert!(
        wait_until(DEADLINE, || proxy.served.load(Ordering::SeqCst) > 8 << 20),
        "the pull did not get going"
    );
    let _ = reg.child.kill();
    let _ = reg.child.wait();
    let out = pull.wait_with_output().expect("pull output");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        !stderr.trim().is_empty(),
        "a failed pull says why: {stdout}"
    );
    let first = proxy.take_requests();
    for l in [&layers[0], &layers[2]] {
        assert_eq!(blob_gets(&first, l), 1, "{l} in {first:#?}");
    }
    assert!(d.inspect(&name).is_none(), "no partial image is visible");

    // The registry is back on the same address and storage: only the cut layer is fetched.
    let storage = reg._dir.path().join("storage");
    reg.child = Command::new(BIN)
        .args(["registry", "serve", "--addr", &reg.addr, "--storage"])
        .arg(&storage)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("respawn registry");
    assert!(wait_until(DEADLINE, || std::net::TcpStream::connect(
        &reg.addr
    )
    .is_ok()));
    let again = d.cli_timeout(&["pull", &name], Duration::from_secs(60));
    again.ok();
    let second = proxy.take_requests();
    assert_eq!(blob_gets(&second, &layers[1]), 1, "{second:#?}");
    for l in [&layers[0], &layers[2]] {
        assert_eq!(blob_gets(&second, l), 0, "{l} fetched again: {second:#?}");
    }
    assert_eq!(
        again.stdout.matches(": Already exists").count(),
        2,
        "{again}"
    );
    assert_eq!(d.fmt(&name, "{{.Id}}"), img.id());
    d.cli(&["rmi", &name]).ok();
}

#[test]
fn pull_policies_of_run_and_create() {
    let d = d();
    let reg = Registry::start();
    let name = format!("{}/policy/app:{}", reg.addr, unique("t"));
    let mut l = Layer::new();
    l.file("policy", 0o644, "v1\n");
    let img = Image::new(&name, json!({"Cmd": ["sh"]}))
        .layer("busybox", &image::busybox_layer().expect("busybox layer"))
        .layer("policy", &l);
    d.load_image(&img, SaveFormat::Oci).ok();
    d.cli(&["push", &name]).ok();
    d.cli(&["rmi", &name]).ok();

    // never: a missing image is an error, nothing is pulled.
    let o = d.cli(&["run", "--rm", "--pull", "never", &name, "true"]);
    o.code_is(125);
    assert!(o.stderr.contains(&format!("No such image: {name}")), "{o}");
    assert!(d.inspect(&name).is_none());
    // missing (the default): pulled once, then used as it is.
    let o = d.cli(&["create", "--pull", "missing", &name]);
    o.ok();
    assert!(o.stderr.contains("Unable to find image"), "{o}");
    d.rm_f(&[o.out()]);
    let o = d.cli(&["run", "--rm", &name, "cat", "/policy"]);
    o.ok();
    assert_eq!(o.out(), "v1");
    assert!(!o.stderr.contains("Pulling"), "{o}");

    // always: the registry is asked even though the image is here, and a newer one replaces it.
    let mut l2 = Layer::new();
    l2.file("policy", 0o644, "v2\n");
    let img2 = Image::new(&name, json!({"Cmd": ["sh"]}))
        .layer("busybox", &image::busybox_layer().expect("busybox layer"))
        .layer("policy", &l2);
    let other = Daemon::start(BIN);
    other.load_image(&img2, SaveFormat::Oci).ok();
    other.cli(&["push", &name]).ok();
    let o = d.cli(&["run", "--rm", &name, "cat", "/policy"]);
    o.ok();
    assert_eq!(o.out(), "v1", "missing keeps the local image");
    let o = d.cli(&["run", "--rm", "--pull", "always", &name, "cat", "/policy"]);
    o.ok();
    assert_eq!(o.out(), "v2", "{o}");
    assert!(o.stderr.contains("Downloaded newer image"), "{o}");
    let o = d.cli(&["create", "--pull", "always", &name]);
    o.ok();
    assert!(o.stderr.contains("Image is up to date"), "{o}");
    d.rm_f(&[o.out()]);
    let o = d.cli(&["run", "--pull", "sometimes", &name]);
    o.code_is(125);
    assert!(o.stderr.contains("invalid pull option: 'sometimes'"), "{o}");
    d.cli(&["rmi", &name]).ok();
}

#[test]
fn pull_on_a_terminal_draws_layer_lines_in_place() {
    let d = d();
    let reg = Registry::start();
    let name = format!("{}/tty/app:v1", reg.addr);
    let mut l = Layer::new();
    l.file("noise", 0o644, noise(7, 4 << 20));
    let img = Image::new(&name, json!({"Cmd": ["sh"]})).layer("noise", &l);
    d.load_image(&img, SaveFormat::Oci).ok();
    d.cli(&["push", &name]).ok();
    d.cli(&["rmi", &name]).ok();
    // `script` gives the CLI a pseudo-terminal for stdout.
    let cmd = format!("{BIN} -H {} pull {name}", d.host());
    let o = berth_testkit::run_with_timeout(
        {
            let mut c = Command::new("script");
            c.args(["-qec", &cmd, "/dev/null"]).env("COLUMNS", "120");
            c
        },
        None,
        DEADLINE,
    );
    o.ok();
    let out = o.stdout.clone();
    assert!(
        out.contains("\x1b[2K\r"),
        "lines are cleared and rewritten: {out:?}"
    );
    assert!(
        out.contains("\x1b[1A"),
        "the cursor goes back up to a layer's line: {out:?}"
    );
    assert!(out.contains("Downloading"), "{out:?}");
    assert!(
        out.contains("Downloading ") && out.contains("MB/4."),
        "a bar with the layer's size: {out:?}"
    );
    assert!(out.contains(": Pull complete\r"), "{out:?}");
    assert!(out.contains("Status: Downloaded newer image"), "{out:?}");
    d.cli(&["rmi", &name]).ok();
}

/// The image events of `/events` between two instants.
fn image_events(d: &Daemon, since: u64) -> Vec<Value> {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 1;
    let r = d.api(
        "GET",
        &format!("/v1.45/events?since={since}&until={until}&filters=%7B%22type%22%3A%5B%22image%22%5D%7D"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("event JSON"))
        .collect()
}

fn has_event(evs: &[Value], action: &str, name: &str) -> bool {
    evs.iter()
        .any(|e| e["Action"] == json!(action) && e["Actor"]["Attributes"]["name"] == json!(name))
}

#[test]
fn docker_hub_names_through_a_mirror() {
    let reg = Registry::start();
    let mirror = format!("http://{}", reg.addr);
    let own = Daemon::start_with_args(
        BIN,
        &[
            "--registry-mirror",
            &mirror,
            "--insecure-registry",
            &reg.addr,
        ],
    );
    let d = &own;
    d.load_busybox();
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let repo = unique("mbox").to_lowercase();
    let pushed = format!("{}/library/{repo}:1", reg.addr);
    d.cli(&["tag", "busybox", &pushed]).ok();
    d.cli(&["push", &pushed]).ok();
    let digest = d.fmt(&pushed, "{{index .RepoDigests 0}}");
    let digest = digest
        .rsplit_once('@')
        .expect("a repo digest")
        .1
        .to_string();

    // By tag and by digest, the mirror stands in for Docker Hub.
    d.cli(&["pull", &format!("{repo}:1")]).ok();
    let by_digest = format!("{repo}@{digest}");
    let r = d.api(
        "POST",
        &format!("/v1.45/images/create?fromImage={repo}&tag={digest}"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.text().contains("errorDetail"), "{}", r.text());
    let digests = d.fmt(&by_digest, "{{json .RepoDigests}}");
    assert!(digests.contains(&by_digest), "{digests}");

    // A repository the mirror does not have: Docker Hub's answer (docker-py: ImageNotFound).
    let missing = unique("nosuchrepo").to_lowercase();
    let r = d.api(
        "POST",
        &format!("/v1.45/images/create?fromImage={missing}&tag=latest"),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let msg = r.json().expect("json")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.starts_with(&format!(
            "pull access denied for {missing}, repository does not exist or may require 'docker login'"
        )),
        "{msg}"
    );
    // A tag the mirror lacks in a repository it has stays "manifest unknown".
    let r = d.api(
        "POST",
        &format!("/v1.45/images/create?fromImage={repo}&tag=nosuchtag"),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.text()
            .contains(&format!("manifest for {repo}:nosuchtag not found")),
        "{}",
        r.text()
    );

    let evs = image_events(d, since);
    assert!(has_event(&evs, "push", &pushed), "{evs:?}");
    assert!(has_event(&evs, "pull", &format!("{repo}:1")), "{evs:?}");
    assert!(has_event(&evs, "pull", &by_digest), "{evs:?}");
}

/// `search host:port/term` asks that registry's v1 search API, which `berth registry serve`
/// answers from its catalog; Docker's limit range and filters apply, and the docker CLI shows
/// the same.
#[test]
fn search_a_registry_by_name() {
    let d = d();
    let reg = Registry::start();
    let word = unique("srch");
    for repo in [
        format!("{word}/tools"),
        format!("other/{word}-x"),
        "unrelated/thing".into(),
    ] {
        let name = format!("{}/{repo}:1", reg.addr);
        d.cli(&["tag", "busybox", &name]).ok();
        d.cli(&["push", &name]).ok();
        d.cli(&["rmi", &name]).ok();
    }
    let o = d.cli(&["search", &format!("{}/{word}", reg.addr)]);
    o.ok();
    let lines = o.lines();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STARS"),
        "{o}"
    );
    assert_eq!(lines.len(), 3, "{o}");
    assert!(
        o.stdout.contains(&format!("{word}/tools"))
            && o.stdout.contains(&format!("other/{word}-x")),
        "{o}"
    );
    assert!(!o.stdout.contains("unrelated"), "{o}");
    let o = d.cli(&[
        "search",
        "--limit",
        "1",
        "--format",
        "{{.Name}}",
        &format!("{}/{word}", reg.addr),
    ]);
    assert_eq!(o.ok().lines().len(), 1, "{o}");
    let o = d.cli(&[
        "search",
        "--filter",
        "is-official=true",
        &format!("{}/{word}", reg.addr),
    ]);
    assert_eq!(o.ok().lines().len(), 1, "only the header: {o}");
    let o = d.cli(&["search", "--limit", "101", &format!("{}/{word}", reg.addr)]);
    o.fails();
    assert!(
        o.stderr
            .contains("limit 101 is outside the range of [1, 100]"),
        "{o}"
    );
    let o = d.cli(&[
        "search",
        "--filter",
        "stars=many",
        &format!("{}/{word}", reg.addr),
    ]);
    o.fails();
    assert!(o.stderr.contains("invalid filter 'stars=many'"), "{o}");
    if let Some(o) = d.docker(&[
        "search",
        "--format",
        "{{.Name}}",
        &format!("{}/{word}", reg.addr),
    ]) {
        o.ok();
        assert_eq!(o.lines().len(), 2, "{o}");
    }
}
