//! The API over TCP, safe to expose: TLS as dockerd (the docker CLI 28, docker-py, compose and
//! berth connect with client certificates; a client without one, or with another CA's, is
//! refused), plain TCP refused on a non-loopback address without `--tls=false`, and request
//! hygiene on every listener (Content-Type of JSON bodies, `Origin` on TCP, header and body
//! timeouts). Certificates come from `berth daemon --tls-generate`.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_testkit::pty::Pty;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `berth daemon --tls-generate dir`, asserting success.
fn generate(dir: &Path) {
    let out = berth_testkit::run_with_timeout(
        {
            let mut c = Command::new(BIN);
            c.args(["daemon", "--tls-generate"]).arg(dir);
            c
        },
        None,
        Duration::from_secs(30),
    );
    out.ok();
    assert!(out.stdout.contains("--tlsverify"), "{out}");
}

/// A client cert dir: `ca.pem` of `ca_from`, and (when given) `cert.pem`/`key.pem` of
/// `client_from` — what `DOCKER_CERT_PATH` points at.
fn cert_dir(at: &Path, ca_from: &Path, client_from: Option<&Path>) -> PathBuf {
    std::fs::create_dir_all(at).expect("mkdir");
    std::fs::copy(ca_from.join("ca.pem"), at.join("ca.pem")).expect("ca");
    if let Some(c) = client_from {
        std::fs::copy(c.join("cert.pem"), at.join("cert.pem")).expect("cert");
        std::fs::copy(c.join("key.pem"), at.join("key.pem")).expect("key");
    }
    at.to_path_buf()
}

/// A daemon whose TCP listener (on every address) speaks TLS and verifies client certificates.
struct TlsDaemon {
    d: Daemon,
    port: u16,
    /// The generated files (server and client pairs, CA).
    certs: PathBuf,
    _tmp: tempfile::TempDir,
}

impl TlsDaemon {
    fn start(extra: &[&str]) -> TlsDaemon {
        let tmp = tempfile::tempdir().expect("tmp");
        let certs = tmp.path().join("certs");
        generate(&certs);
        let port = free_port();
        let f = |n: &str| certs.join(n).display().to_string();
        let host = format!("tcp://0.0.0.0:{port}");
        let (ca, cert, key) = (f("ca.pem"), f("server-cert.pem"), f("server-key.pem"));
        let mut args = vec![
            "-H",
            host.as_str(),
            "--tlsverify",
            "--tlscacert",
            ca.as_str(),
            "--tlscert",
            cert.as_str(),
            "--tlskey",
            key.as_str(),
        ];
        args.extend_from_slice(extra);
        let d = Daemon::start_with_args(BIN, &args);
        d.load_busybox();
        TlsDaemon {
            d,
            port,
            certs,
            _tmp: tmp,
        }
    }

    fn tcp_host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The environment the docker CLI, docker-py and compose read.
    fn env(&self, cert_path: &Path) -> Vec<(String, String)> {
        vec![
            ("DOCKER_HOST".into(), self.tcp_host()),
            ("DOCKER_TLS_VERIFY".into(), "1".into()),
            ("DOCKER_CERT_PATH".into(), cert_path.display().to_string()),
            (
                "DOCKER_CONFIG".into(),
                self.d.root().join("docker-config").display().to_string(),
            ),
            ("DOCKER_CLI_HINTS".into(), "false".into()),
        ]
    }

    fn command(&self, prog: &Path, cert_path: &Path) -> Command {
        let mut c = Command::new(prog);
        c.envs(self.env(cert_path))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            // This machine's environment points requests at the proxy's CA bundle, which
            // requests then prefers over docker-py's own CA (requests issue 3829).
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE");
        c
    }

    fn docker(&self, cert_path: &Path, args: &[&str]) -> Option<Out> {
        let docker = berth_testkit::which("docker")?;
        let mut c = self.command(&docker, cert_path);
        c.args(args);
        Some(berth_testkit::run_with_timeout(
            c,
            None,
            Duration::from_secs(120),
        ))
    }
}

/// `docker exec -it <name> sh` on a pseudo-terminal: types a command only the shell can
/// answer, reads the answer, exits 0.
fn docker_exec_it(t: &TlsDaemon, docker: &Path, name: &str) {
    let mut cmd = t.command(docker, &t.certs);
    cmd.args(["exec", "-it", name, "sh"]);
    let mut p = Pty::spawn(cmd, 24, 80);
    p.expect("# ");
    p.send("echo tls-$((6*7))\r");
    p.expect("tls-42");
    p.send("exit\r");
    assert_eq!(p.wait(), Some(0), "exec -it exit: {:?}", p.seen);
}

#[test]
fn docker_cli_over_tlsverify_with_client_certificates() {
    let t = TlsDaemon::start(&[]);
    let Some(o) = t.docker(&t.certs, &["version", "--format", "{{.Server.APIVersion}}"]) else {
        eprintln!("SKIPPED: no `docker` CLI on PATH");
        return;
    };
    o.ok();
    assert_eq!(o.out(), "1.45", "{o}");
    let docker = berth_testkit::which("docker").expect("docker");
    let dk = |args: &[&str]| t.docker(&t.certs, args).expect("docker");

    dk(&["ps", "-a"]).ok();
    // The same with the flags instead of the environment.
    let f = |n: &str| t.certs.join(n).display().to_string();
    let mut c = Command::new(&docker);
    c.env("DOCKER_CONFIG", t.d.root().join("docker-config"))
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .args(["--tlsverify", "--tlscacert", &f("ca.pem")])
        .args(["--tlscert", &f("cert.pem"), "--tlskey", &f("key.pem")])
        .args(["-H", &t.tcp_host(), "ps", "-a"]);
    berth_testkit::run_with_timeout(c, None, Duration::from_secs(60)).ok();
    let o = dk(&["run", "--rm", "busybox", "echo", "over-tls"]);
    o.ok();
    assert_eq!(o.stdout, "over-tls\n", "{o}");

    // The legacy builder (BuildKit goes through buildx, another piece of work).
    let ctx = tempfile::tempdir().expect("ctx");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nRUN echo built-over-tls > /msg\nCMD [\"cat\", \"/msg\"]\n",
    )
    .expect("Dockerfile");
    let tag = unique("tlsbuild");
    let mut c = t.command(&docker, &t.certs);
    c.env("DOCKER_BUILDKIT", "0")
        .args(["build", "-t", &tag])
        .arg(ctx.path());
    berth_testkit::run_with_timeout(c, None, Duration::from_secs(120)).ok();
    let o = dk(&["run", "--rm", &tag]);
    o.ok();
    assert_eq!(o.stdout, "built-over-tls\n", "{o}");

    let name = unique("tlsx");
    let _rm = Rm(&t.d, vec![name.clone()]);
    dk(&["run", "-d", "--name", &name, "busybox", "sleep", "300"]).ok();
    docker_exec_it(&t, &docker, &name);

    // The berth CLI: the same environment, then the flags.
    let env = t.env(&t.certs);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let o =
        t.d.cli_env(&["run", "--rm", "busybox", "echo", "berth-tls"], &env);
    o.ok();
    assert_eq!(o.stdout, "berth-tls\n", "{o}");
    let o = t.d.cli_env(
        &[
            "-H",
            &t.tcp_host(),
            "--tlsverify",
            "--tlscacert",
            &f("ca.pem"),
            "--tlscert",
            &f("cert.pem"),
            "--tlskey",
            &f("key.pem"),
            "ps",
            "--format",
            "{{.Names}}",
        ],
        &[],
    );
    o.ok();
    assert!(o.stdout.contains(&name), "{o}");

    // Refused: no client certificate; one from another CA; plain HTTP.
    let tmp = tempfile::tempdir().expect("tmp");
    let only_ca = cert_dir(&tmp.path().join("only-ca"), &t.certs, None);
    let other = tmp.path().join("other");
    generate(&other);
    let foreign = cert_dir(&tmp.path().join("foreign"), &t.certs, Some(&other));
    for (what, dir) in [
        ("no client certificate", &only_ca),
        ("another CA's", &foreign),
    ] {
        let o = t.docker(dir, &["ps"]).expect("docker");
        o.fails();
        assert!(o.stderr.contains("tls:"), "{what}: {o}");
        let env = t.env(dir);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let o = t.d.cli_env(&["ps"], &env);
        o.fails();
        // A refused client never reaches a handler: nothing was created by a run.
        let o = t.docker(dir, &["run", "--name", &unique("nope"), "busybox", "true"]);
        o.expect("docker").fails();
    }
    let mut c = Command::new(&docker);
    c.env("DOCKER_HOST", t.tcp_host())
        .env("DOCKER_CONFIG", t.d.root().join("docker-config"))
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .arg("ps");
    berth_testkit::run_with_timeout(c, None, Duration::from_secs(30)).fails();
    let all = dk(&["ps", "-a", "--format", "{{.Names}}"]);
    all.ok();
    assert!(
        !all.stdout.contains("nope"),
        "a refused client created: {all}"
    );
    assert!(t.d.ping(), "the daemon still answers after the refusals");
}

#[test]
fn docker_py_and_compose_over_tlsverify() {
    let t = TlsDaemon::start(&[]);
    let probe = Command::new("python3")
        .args(["-c", "import docker"])
        .output();
    if probe.map(|o| o.status.success()).unwrap_or(false) {
        let mut c = t.command(Path::new("python3"), &t.certs);
        c.args([
            "-c",
            "import docker\n\
             c = docker.from_env()\n\
             assert c.ping()\n\
             print(c.containers.run('busybox', ['echo', 'py-over-tls'], remove=True).decode().strip())\n\
             print(c.version()['ApiVersion'])\n",
        ]);
        let o = berth_testkit::run_with_timeout(c, None, Duration::from_secs(60));
        o.ok();
        assert_eq!(o.lines(), ["py-over-tls", "1.45"], "{o}");
    } else {
        eprintln!("SKIPPED docker-py part: python3 cannot import docker (pip install docker)");
    }
    let Some(compose) = berth_testkit::which("docker-compose") else {
        eprintln!("SKIPPED compose part: no docker-compose on PATH");
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("docker-compose.yml"),
        "services:\n  hello:\n    image: busybox\n    command: echo compose-over-tls\n",
    )
    .expect("compose file");
    let project = unique("tlsc");
    let run = |args: &[&str]| {
        let mut c = t.command(&compose, &t.certs);
        c.current_dir(dir.path()).args(["-p", &project]).args(args);
        berth_testkit::run_with_timeout(c, None, Duration::from_secs(120))
    };
    let up = run(&["up", "--no-color"]);
    let down = run(&["down"]);
    up.ok();
    assert!(up.stdout.contains("compose-over-tls"), "{up}");
    down.ok();
}

#[test]
fn plain_tcp_on_a_non_loopback_address_needs_tls_false() {
    let port = free_port();
    let host = format!("tcp://0.0.0.0:{port}");
    let e = match Daemon::try_start_with_args(BIN, &["-H", &host]) {
        Ok(_) => panic!("plain TCP on 0.0.0.0 was accepted without --tls=false"),
        Err(e) => e,
    };
    assert!(
        e.contains(&format!(
            "refusing to listen on tcp://0.0.0.0:{port} without TLS"
        )),
        "{e}"
    );
    // Said explicitly, it is the user's choice (Docker's opt-out); loopback needs no flag.
    let d = Daemon::start_with_args(BIN, &["-H", &host, "--tls=false"]);
    let (status, _, _) = raw_http(
        port,
        b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    drop(d);
    let lo = free_port();
    let _d = Daemon::start_with_args(BIN, &["-H", &format!("tcp://127.0.0.1:{lo}")]);
    let (status, _, _) = raw_http(
        lo,
        b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
}

/// One raw HTTP/1.1 exchange over TCP: (status, headers lower-cased, body).
fn raw_http(port: u16, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request).expect("send");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn create_request(name: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /v1.45/containers/create?name={name} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn cross_site_creates_are_refused_and_create_nothing() {
    let port = free_port();
    let d = Daemon::start_with_args(BIN, &["-H", &format!("tcp://127.0.0.1:{port}")]);
    d.load_busybox();
    // What a web page could send: a host bind mount, as a "simple" text/plain request.
    let body = json!({
        "Image": "busybox",
        "Cmd": ["sh", "-c", "echo pwned > /host/pwned"],
        "HostConfig": {"Binds": [format!("{}:/host", d.root().display())]},
    })
    .to_string();
    let name = unique("csrf");
    let (status, _, text) = raw_http(
        port,
        &create_request(&name, "Content-Type: text/plain;charset=UTF-8\r\n", &body),
    );
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains(
            "unsupported Content-Type header (text/plain;charset=UTF-8): must be 'application/json'"
        ),
        "{text}"
    );
    // A body without any Content-Type (a Blob without a type) is refused too.
    let (status, _, text) = raw_http(port, &create_request(&name, "", &body));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("malformed Content-Type header"), "{text}");
    // application/json, but carrying a web page's Origin.
    let (status, _, text) = raw_http(
        port,
        &create_request(
            &name,
            "Content-Type: application/json\r\nOrigin: http://evil.example\r\n",
            &body,
        ),
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("--api-cors-header"), "{text}");
    // The CORS preflight is refused as well.
    let (status, _, _) = raw_http(
        port,
        b"OPTIONS /v1.45/containers/create HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 403);
    assert_eq!(
        d.api("GET", &format!("/containers/{name}/json")).status,
        404,
        "a refused create left a container"
    );
    assert!(!d.root().join("pwned").exists());
    // The Content-Type rule holds on the unix socket too; Origin does not matter there.
    let r = d
        .api_with(
            "POST",
            &format!("/containers/create?name={name}"),
            &[("Content-Type", "text/plain")],
            Some(body.as_bytes()),
        )
        .expect("create");
    assert_eq!(r.status, 400, "{}", r.text());
    let ok_name = unique("jsonok");
    let _rm = Rm(&d, vec![ok_name.clone()]);
    let (status, _, text) = raw_http(
        port,
        &create_request(
            &ok_name,
            "Content-Type: application/json\r\n",
            r#"{"Image":"busybox","Cmd":["true"]}"#,
        ),
    );
    assert_eq!(status, 201, "a proper client is served: {text}");
    drop(_rm);
    drop(d);

    // --api-cors-header lets that origin in, with dockerd's CORS headers; others stay out.
    let port = free_port();
    let d = Daemon::start_with_args(
        BIN,
        &[
            "-H",
            &format!("tcp://127.0.0.1:{port}"),
            "--api-cors-header",
            "http://ui.example",
        ],
    );
    d.load_busybox();
    let (status, head, _) = raw_http(
        port,
        b"OPTIONS /v1.45/containers/create HTTP/1.1\r\nHost: x\r\nOrigin: http://ui.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(
        head.contains("access-control-allow-origin: http://ui.example"),
        "{head}"
    );
    assert!(head.contains("access-control-allow-methods:"), "{head}");
    let allowed = unique("cors");
    let _rm = Rm(&d, vec![allowed.clone()]);
    let (status, head, text) = raw_http(
        port,
        &create_request(
            &allowed,
            "Content-Type: application/json\r\nOrigin: http://ui.example\r\n",
            r#"{"Image":"busybox","Cmd":["true"]}"#,
        ),
    );
    assert_eq!(status, 201, "{text}");
    assert!(
        head.contains("access-control-allow-origin: http://ui.example"),
        "{head}"
    );
    let (status, _, _) = raw_http(
        port,
        &create_request(
            &unique("cors"),
            "Content-Type: application/json\r\nOrigin: http://evil.example\r\n",
            r#"{"Image":"busybox","Cmd":["true"]}"#,
        ),
    );
    assert_eq!(status, 403);
}

/// Whether the peer has closed each connection: polls them (non-blocking) until all are
/// closed or `deadline`; returns how many are still open.
fn wait_closed(conns: &mut Vec<TcpStream>, deadline: Instant) -> usize {
    for c in conns.iter() {
        c.set_nonblocking(true).expect("nonblocking");
    }
    let mut buf = [0u8; 1024];
    while !conns.is_empty() && Instant::now() < deadline {
        conns.retain_mut(|c| match c.read(&mut buf) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
            Err(_) => false,
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    conns.len()
}

/// 1,000 half-open connections (silent, or a request head never finished) are closed at the
/// header timeout while the daemon answers others; a request body that stalls is ended at the
/// body timeout and creates nothing; a TLS listener's silent connections (no handshake) are
/// closed at the same timeout.
#[test]
fn half_open_connections_are_closed_at_the_header_timeout() {
    let port = free_port();
    let d = Daemon::start_with_args(
        BIN,
        &[
            "-H",
            &format!("tcp://127.0.0.1:{port}"),
            "--api-header-timeout",
            "2s",
            "--api-body-timeout",
            "2s",
        ],
    );
    let mut conns = Vec::new();
    for i in 0..1000 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        if i % 2 == 1 {
            s.write_all(b"GET /v1.45/containers/json HTTP/1.1\r\nHost: x\r\n")
                .expect("partial head");
        }
        conns.push(s);
    }
    let opened = Instant::now();
    // Meanwhile, everyone else is served: the unix socket and a fresh TCP connection.
    assert!(d.ping(), "unix socket answers while 1000 connections hang");
    let (status, _, _) = raw_http(
        port,
        b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "TCP answers while 1000 connections hang");
    let left = wait_closed(&mut conns, opened + Duration::from_secs(20));
    assert_eq!(left, 0, "half-open connections still open after 20s");
    eprintln!(
        "1000 half-open connections closed after {:?}",
        opened.elapsed()
    );

    // A body that stops: the request ends, nothing is created.
    let name = unique("slow");
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(
        format!("POST /v1.45/containers/create?name={name} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"Image\":")
            .as_bytes(),
    )
    .expect("partial body");
    let mut one = vec![s];
    assert_eq!(
        wait_closed(&mut one, Instant::now() + Duration::from_secs(20)),
        0,
        "a stalled body held its connection"
    );
    assert_eq!(
        d.api("GET", &format!("/containers/{name}/json")).status,
        404
    );
    drop(d);

    // TLS: a connection that never starts its handshake is closed too.
    let t = TlsDaemon::start(&["--api-header-timeout", "2s"]);
    let mut conns: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(("127.0.0.1", t.port)).expect("connect"))
        .collect();
    assert_eq!(
        wait_closed(&mut conns, Instant::now() + Duration::from_secs(20)),
        0,
        "silent TLS connections still open"
    );
    assert!(t.d.ping());
}

/// The default header timeout is 60 s: connections are not cut early, and are closed by then.
#[test]
fn default_header_timeout_is_sixty_seconds() {
    let port = free_port();
    let d = Daemon::start_with_args(BIN, &["-H", &format!("tcp://127.0.0.1:{port}")]);
    let mut conns = Vec::new();
    for i in 0..20 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        if i % 2 == 1 {
            s.write_all(b"GET /_ping HTTP/1.1\r\n")
                .expect("partial head");
        }
        conns.push(s);
    }
    let opened = Instant::now();
    assert_eq!(
        wait_closed(&mut conns, opened + Duration::from_secs(30)),
        20,
        "connections closed before the default header timeout"
    );
    assert_eq!(
        wait_closed(&mut conns, opened + Duration::from_secs(75)),
        0,
        "connections still open after the default header timeout (60s)"
    );
    assert!(d.ping());
}
