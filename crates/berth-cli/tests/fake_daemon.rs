//! End-to-end checks of the CLI against a scripted fake daemon on a unix socket: request order
//! of `run` (attach and wait before start) and docker's exit codes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

#[derive(Clone, Copy)]
enum Script {
    /// Container prints and exits with 3.
    Exit3,
    /// Start fails: command not found.
    NotFound,
    /// Create fails: no such image.
    NoImage,
}

struct Fake {
    log: Arc<Mutex<Vec<String>>>,
    started: Arc<Notify>,
    script: Script,
}

fn frame(kind: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![kind, 0, 0, 0];
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

async fn read_head(s: &mut UnixStream) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut b).await {
            Ok(1) => buf.push(b[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    // Drain a body if there is one.
    if let Some(len) = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
    }) {
        let mut body = vec![0u8; len];
        let _ = s.read_exact(&mut body).await;
    }
    head
}

async fn respond(s: &mut UnixStream, status: &str, body: &str) {
    let r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nApi-Version: 1.45\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(r.as_bytes()).await;
    let _ = s.shutdown().await;
}

async fn handle(f: Arc<Fake>, mut s: UnixStream, head: String) {
    let line = head.lines().next().unwrap_or("").to_string();
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let route = path.split('?').next().unwrap_or("").to_string();
    if route != "/_ping" {
        f.log
            .lock()
            .map(|mut l| l.push(format!("{method} {route}")))
            .ok();
    }
    let id = "4f66ad9a0b2e4f66ad9a0b2e4f66ad9a0b2e4f66ad9a0b2e4f66ad9a0b2e1234";
    match (method.as_str(), route.as_str()) {
        ("GET", "/_ping") => respond(&mut s, "200 OK", "OK").await,
        ("POST", "/v1.45/containers/create") => match f.script {
            Script::NoImage => {
                respond(&mut s, "404 Not Found", r#"{"message":"No such image: nope:latest"}"#).await
            }
            _ => respond(&mut s, "201 Created", &format!(r#"{{"Id":"{id}","Warnings":[]}}"#)).await,
        },
        ("POST", r) if r.ends_with("/exec") => {
            respond(&mut s, "201 Created", r#"{"Id":"e1"}"#).await
        }
        ("POST", "/v1.45/exec/e1/start") => {
            let _ = s
                .write_all(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
                .await;
            let _ = s.write_all(&frame(1, b"from exec\n")).await;
            let _ = s.shutdown().await;
        }
        ("GET", "/v1.45/exec/e1/json") => {
            respond(&mut s, "200 OK", r#"{"ID":"e1","Running":false,"ExitCode":7}"#).await
        }
        ("POST", r) if r.ends_with("/attach") => {
            let _ = s
                .write_all(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
                .await;
            f.started.notified().await;
            let _ = s.write_all(&frame(1, b"hello\n")).await;
            let _ = s.write_all(&frame(2, b"oops\n")).await;
            let _ = s.shutdown().await;
        }
        ("POST", r) if r.ends_with("/wait") => {
            // Like docker: headers once the wait is registered, the body at exit.
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
                .await;
            f.started.notified().await;
            let _ = s.write_all(br#"{"StatusCode":3}"#).await;
            let _ = s.shutdown().await;
        }
        ("POST", r) if r.ends_with("/start") => match f.script {
            Script::NotFound => {
                respond(
                    &mut s,
                    "400 Bad Request",
                    r#"{"message":"failed to create task: exec: \"nope\": executable file not found in $PATH"}"#,
                )
                .await
            }
            _ => {
                // Wake both the attach and the wait.
                f.started.notify_waiters();
                let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await;
                let _ = s.shutdown().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                f.started.notify_waiters();
            }
        },
        _ => respond(&mut s, "404 Not Found", r#"{"message":"page not found"}"#).await,
    }
}

/// Start a fake daemon on its own thread; returns its URL and the request log.
fn start_fake(script: Script) -> (String, Arc<Mutex<Vec<String>>>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "berth-cli-fake-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let sock = dir.join("d.sock");
    let log = Arc::new(Mutex::new(Vec::new()));
    let fake = Arc::new(Fake {
        log: log.clone(),
        started: Arc::new(Notify::new()),
        script,
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let sock2 = sock.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async move {
            let l = UnixListener::bind(&sock2).expect("bind");
            let _ = tx.send(());
            // Heads are read in accept order, so the log shows the order the client sent them.
            while let Ok((mut s, _)) = l.accept().await {
                let head = read_head(&mut s).await;
                tokio::spawn(handle(fake.clone(), s, head));
            }
        });
    });
    let _ = rx.recv();
    (format!("unix://{}", sock.display()), log, dir)
}

fn berth(args: &[&str]) -> i32 {
    berth_cli::run(
        std::iter::once("berth")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect(),
    )
}

#[test]
fn run_attaches_and_waits_before_start_and_exits_with_status() {
    let (url, log, dir) = start_fake(Script::Exit3);
    let code = berth(&[
        "-H", &url, "run", "--pull", "never", "busybox", "sh", "-c", "exit 3",
    ]);
    assert_eq!(code, 3);
    let log = log.lock().map(|l| l.clone()).unwrap_or_default();
    let pos = |p: &str| {
        log.iter()
            .position(|l| l.ends_with(p))
            .unwrap_or(usize::MAX)
    };
    assert!(pos("/containers/create") < pos("/attach"), "{log:?}");
    assert!(pos("/attach") < pos("/start"), "{log:?}");
    assert!(pos("/wait") < pos("/start"), "{log:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn exec_returns_the_command_exit_code() {
    let (url, log, dir) = start_fake(Script::Exit3);
    assert_eq!(berth(&["-H", &url, "exec", "web", "false"]), 7);
    let log = log.lock().map(|l| l.clone()).unwrap_or_default();
    assert_eq!(
        log,
        vec![
            "POST /v1.45/containers/web/exec",
            "POST /v1.45/exec/e1/start",
            "GET /v1.45/exec/e1/json"
        ]
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn start_error_maps_to_127() {
    let (url, _log, dir) = start_fake(Script::NotFound);
    assert_eq!(
        berth(&["-H", &url, "run", "--pull", "never", "busybox", "nope"]),
        127
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn create_error_is_125_and_missing_daemon_is_reported() {
    let (url, _log, dir) = start_fake(Script::NoImage);
    assert_eq!(berth(&["-H", &url, "run", "--pull", "never", "nope"]), 125);
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(berth(&["-H", "unix:///nonexistent/berth.sock", "ps"]), 1);
    assert_eq!(
        berth(&["-H", "unix:///nonexistent/berth.sock", "run", "x"]),
        125
    );
    assert_eq!(berth(&["ps", "--bogus-flag"]), 125);
    assert_eq!(berth(&["ps", "--help"]), 0);
}
