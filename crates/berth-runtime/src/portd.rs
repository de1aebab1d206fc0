//! The rootless daemon's TCP port forwarder (`berth rootless portd`), rootlesskit's "builtin"
//! port driver in shape: a process in the host's network namespace listens on each published
//! host port and, per connection, connects to `127.0.0.1:<port>` inside the daemon's network
//! namespace (where the daemon's DNAT takes it to the container), then copies bytes both ways
//! in the kernel-side socket buffers of two ordinary sockets. slirp4netns's forwards pass every
//! byte through its user-mode TCP/IP stack instead (about 8× slower here; `bench/rootless.sh`).
//!
//! How it reaches both namespaces: it joins the holder's user namespace while single-threaded
//! (the user owns it: every capability there), which lets one thread `setns` into the holder's
//! network namespace — a per-thread attribute — and create sockets there, while the other
//! threads stay in the host's, where unprivileged ports (≥ 1024) need no capability.
//!
//! It speaks slirp4netns's API on its socket (`add_hostfwd`, `remove_hostfwd`, `list_hostfwd`,
//! one JSON request per connection), so `berth_net::slirp` drives both. It outlives the daemon
//! (live restore), as slirp4netns does.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

/// Set in its environment: the API socket's path.
pub const SOCK_ENV: &str = "_BERTH_PORTD_SOCK";

type Connect = (u16, mpsc::Sender<std::io::Result<TcpStream>>);

struct Fwd {
    host_addr: Ipv4Addr,
    host_port: u16,
    guest_port: u16,
    listener: TcpListener,
}

/// `berth rootless portd`: started by the outer rootless process only.
pub fn main() -> i32 {
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth rootless portd: {e}");
            1
        }
    }
}

fn run() -> Result<(), String> {
    let holder: i32 = std::env::var(crate::rootless::JOIN_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or("started by `berth daemon` only")?;
    let sock = std::env::var_os(SOCK_ENV).ok_or("no API socket path")?;
    let open = |ns: &str| {
        std::fs::File::open(format!("/proc/{holder}/ns/{ns}"))
            .map_err(|e| format!("open the holder's {ns} namespace: {e}"))
    };
    let (user, net) = (open("user")?, open("net")?);
    use nix::sched::{setns, CloneFlags};
    setns(&user, CloneFlags::CLONE_NEWUSER).map_err(|e| format!("setns(user): {e}"))?;
    let _ = std::fs::remove_file(&sock);
    let api = UnixListener::bind(&sock).map_err(|e| format!("bind {sock:?}: {e}"))?;
    // The connector: one thread in the daemon's network namespace.
    let (tx, rx) = mpsc::channel::<Connect>();
    std::thread::spawn(move || {
        if let Err(e) = setns(&net, CloneFlags::CLONE_NEWNET) {
            eprintln!("berth rootless portd: setns(net): {e}");
            return;
        }
        for (port, reply) in rx {
            let _ = reply.send(TcpStream::connect((Ipv4Addr::LOCALHOST, port)));
        }
    });
    // Ready: the outer process waits for this byte on fd 101.
    // SAFETY: fd 101 was handed to us by the outer process and is owned by nothing else here.
    let mut ready = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(101) };
    let _ = ready.write_all(b"1");
    drop(ready);
    let fwds: Arc<Mutex<HashMap<u64, Fwd>>> = Arc::default();
    let mut next = 1u64;
    for conn in api.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut body = String::new();
        let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
        if conn.read_to_string(&mut body).is_err() {
            continue;
        }
        let answer = handle(&body, &fwds, &mut next, &tx);
        let _ = conn.write_all(answer.to_string().as_bytes());
    }
    Ok(())
}

fn error(desc: String) -> serde_json::Value {
    serde_json::json!({"error": {"desc": desc}})
}

fn handle(
    body: &str,
    fwds: &Arc<Mutex<HashMap<u64, Fwd>>>,
    next: &mut u64,
    tx: &mpsc::Sender<Connect>,
) -> serde_json::Value {
    let Ok(req) = serde_json::from_str::<serde_json::Value>(body) else {
        return error("bad request: not JSON".into());
    };
    let args = &req["arguments"];
    let mut map = fwds.lock().unwrap_or_else(|e| e.into_inner());
    match req["execute"].as_str() {
        Some("add_hostfwd") => {
            if args["proto"].as_str() != Some("tcp") {
                return error("bad request: add_hostfwd: tcp only".into());
            }
            let host_addr = args["host_addr"]
                .as_str()
                .unwrap_or("0.0.0.0")
                .parse()
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            let (Some(host_port), Some(guest_port)) = (
                args["host_port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok()),
                args["guest_port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok()),
            ) else {
                return error("bad request: add_hostfwd: bad ports".into());
            };
            let listener = match TcpListener::bind((host_addr, host_port)) {
                Ok(l) => l,
                Err(e) => return error(format!("add_hostfwd: bind: {e}")),
            };
            let Ok(accepting) = listener.try_clone() else {
                return error("add_hostfwd: dup".into());
            };
            let id = *next;
            *next += 1;
            let tx = tx.clone();
            std::thread::spawn(move || accept_loop(accepting, guest_port, tx));
            map.insert(
                id,
                Fwd {
                    host_addr,
                    host_port,
                    guest_port,
                    listener,
                },
            );
            serde_json::json!({"return": {"id": id}})
        }
        Some("remove_hostfwd") => match args["id"].as_u64().and_then(|id| map.remove(&id)) {
            Some(f) => {
                // Wakes the accepting thread (accept fails with EINVAL), which then exits.
                // SAFETY: shutdown(2) on a listening socket we own.
                unsafe { libc::shutdown(f.listener.as_raw_fd(), libc::SHUT_RDWR) };
                serde_json::json!({"return": {}})
            }
            None => error("bad request: remove_hostfwd: bad arguments.id".into()),
        },
        Some("list_hostfwd") => {
            let entries: Vec<_> = map
                .iter()
                .map(|(id, f)| {
                    serde_json::json!({"id": id, "proto": "tcp",
                        "host_addr": f.host_addr.to_string(), "host_port": f.host_port,
                        "guest_addr": "127.0.0.1", "guest_port": f.guest_port})
                })
                .collect();
            serde_json::json!({"entries": entries})
        }
        _ => error("bad request: unknown execute".into()),
    }
}

fn accept_loop(l: TcpListener, guest_port: u16, tx: mpsc::Sender<Connect>) {
    loop {
        let client = match l.accept() {
            Ok((c, _)) => c,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            // Shut down by remove_hostfwd.
            Err(_) => return,
        };
        let (rtx, rrx) = mpsc::channel();
        if tx.send((guest_port, rtx)).is_err() {
            return;
        }
        let Ok(Ok(upstream)) = rrx.recv() else {
            // Nothing to reach inside: the client sees the connection close.
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        pipe(client, upstream);
    }
}

/// Copies both ways on two threads; each direction's end half-closes the other side.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let one = |mut from: TcpStream, mut to: TcpStream| {
        move || {
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Write);
            let _ = from.shutdown(Shutdown::Read);
        }
    };
    std::thread::spawn(one(a, b2));
    std::thread::spawn(one(b, a2));
}

/// Whether `sock` answers as an API (the outer process's liveness check besides the pid file).
pub fn answers(sock: &std::path::Path) -> bool {
    UnixStream::connect(sock).is_ok()
}
