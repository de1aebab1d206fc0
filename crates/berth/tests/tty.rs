//! Interactive sessions through a real pseudo-terminal: `run -it` typed into, resized and
//! detached with ctrl-p ctrl-q; `attach` back; daemon-side detach keys on a raw API attach;
//! attach over a WebSocket.

mod common;
use common::*;

use std::io::{Read, Write};
use std::process::Command;

use berth_testkit::pty::Pty;

/// `berth -H <daemon> <args>` on a pty of `rows`×`cols`.
fn berth_pty(d: &Daemon, args: &[&str], rows: u16, cols: u16) -> Pty {
    let mut cmd = Command::new(d.bin());
    cmd.arg("-H").arg(d.host()).args(args);
    Pty::spawn(cmd, rows, cols)
}

#[test]
fn run_it_types_resizes_detaches_and_attaches_back() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("tty");
    rm.add(&name);
    let mut p = berth_pty(d, &["run", "-it", "--name", &name, "busybox", "sh"], 30, 90);
    p.expect("# ");
    // The window size at start.
    p.send("stty size\r");
    p.expect("30 90");
    // Raw mode on the client: the shell echoes what we type, arithmetic runs in the container.
    p.send("echo $((6*7))\r");
    p.expect("42");
    // A resize on our side reaches the container's terminal.
    p.resize(41, 123);
    let deadline = Instant::now() + DEADLINE;
    loop {
        p.send("stty size\r");
        let before = p.seen.len();
        std::thread::sleep(Duration::from_millis(200));
        let mut buf = [0u8; 4096];
        while let Ok(n) = p.master.read(&mut buf) {
            if n == 0 {
                break;
            }
            p.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        if p.seen[before.min(p.seen.len())..].contains("41 123") || p.seen.contains("41 123") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "resize never arrived: {:?}",
            p.seen
        );
    }
    p.seen.clear();
    // ctrl-p ctrl-q: the client leaves, the container keeps running.
    p.send("\x10\x11");
    assert_eq!(p.wait(), Some(0), "detach exit status; output {:?}", p.seen);
    assert_eq!(fmt(d, &name, "{{.State.Status}}"), "running");

    // attach: the same shell, then exit ends the session with the container.
    let mut a = berth_pty(d, &["attach", &name], 30, 90);
    a.send("echo back-$((1+1))\r");
    a.expect("back-2");
    a.send("exit 3\r");
    assert_eq!(a.wait(), Some(3), "attach exit status; output {:?}", a.seen);
    assert!(d.wait_status(&name, "exited", DEADLINE));

    // start -ai on a pty.
    let mut s = berth_pty(d, &["start", "-ai", &name], 30, 90);
    s.expect("# ");
    s.send("echo again\r");
    s.expect("again");
    s.send("exit\r");
    assert_eq!(s.wait(), Some(0));
}

#[test]
fn stdin_closes_on_eof() {
    let d = d();
    let out = d.cli_in(&["run", "--rm", "-i", "busybox", "cat"], b"hi\n");
    assert_eq!(out.stdout, "hi\n", "{out:?}");
    assert!(out.success());
}

/// The daemon itself ends an attachment on the detach keys (`detachKeys`), leaving the
/// container and its stdin alone.
#[test]
fn daemon_side_detach_keys_on_a_raw_attach() {
    use std::os::unix::net::UnixStream;
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("dk");
    rm.add(&name);
    assert!(d
        .cli(&["run", "-d", "-it", "--name", &name, "busybox", "sh"])
        .success());
    let attach = |keys: &str| {
        let mut s = UnixStream::connect(d.socket()).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let q = if keys.is_empty() {
            String::new()
        } else {
            format!("&detachKeys={keys}")
        };
        write!(
            s,
            "POST /containers/{name}/attach?stream=1&stdin=1&stdout=1&stderr=1{q} HTTP/1.1\r\nHost: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
        )
        .expect("request");
        s
    };
    let read_until = |s: &mut UnixStream, needle: &str| -> (String, bool) {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return (seen, true),
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(_) => {}
            }
            if !needle.is_empty() && seen.contains(needle) {
                return (seen, false);
            }
            if Instant::now() > deadline {
                return (seen, false);
            }
        }
    };
    let mut s = attach("ctrl-a,x");
    let (head, _) = read_until(&mut s, "\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"echo via-$((2+3))\n").expect("stdin");
    let (seen, _) = read_until(&mut s, "via-5");
    assert!(seen.contains("via-5"), "{seen}");
    // A lone ctrl-a is passed on; ctrl-a x detaches.
    s.write_all(b"\x01x").expect("keys");
    let (_, closed) = read_until(&mut s, "");
    assert!(closed, "the daemon did not end the attachment");
    assert_eq!(fmt(d, &name, "{{.State.Status}}"), "running");
    // The container's stdin is still open: a new attach with default keys works.
    let mut s = attach("");
    read_until(&mut s, "\r\n\r\n");
    s.write_all(b"echo still-$((3+4))\n").expect("stdin");
    let (seen, _) = read_until(&mut s, "still-7");
    assert!(seen.contains("still-7"), "{seen}");
    s.write_all(b"\x10\x11").expect("keys");
    let (_, closed) = read_until(&mut s, "");
    assert!(closed, "default keys did not detach");
    assert_eq!(fmt(d, &name, "{{.State.Status}}"), "running");
    // Invalid keys are a 400.
    let r = d.api(
        "POST",
        &format!("/containers/{name}/attach?stream=1&stdin=1&detachKeys=ctrl-xx"),
    );
    assert_eq!(r.status, 400);
}

/// `attach?logs=1&stream=0` hijacked, as docker-py asks for it: the logs, then the end.
#[test]
fn attach_logs_without_stream() {
    use std::os::unix::net::UnixStream;
    let d = d();
    let mut rm = Rm(d, vec![]);
    let name = unique("al");
    rm.add(&name);
    assert!(d
        .cli(&["run", "--name", &name, "busybox", "echo", "hello"])
        .success());
    let mut s = UnixStream::connect(d.socket()).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(
        s,
        "POST /containers/{name}/attach?logs=1&stream=0&stdout=1&stderr=1 HTTP/1.1\r\nHost: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("request");
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read to the end");
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(
        all.ends_with(b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n"),
        "{text}"
    );
}

/// A WebSocket client over `stream`: sends the upgrade for `path`, checks the 101 and its
/// `Sec-WebSocket-Accept`; returns whatever followed the headers.
fn ws_handshake<S: std::io::Read + std::io::Write>(s: &mut S, path: &str) -> Vec<u8> {
    // RFC 6455's example key and its accept value.
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://localhost\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("send upgrade");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).expect("read 101");
        assert!(
            n > 0,
            "closed during handshake: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
    let head = String::from_utf8_lossy(&got[..end]).to_string();
    let lower = head.to_lowercase();
    assert!(lower.starts_with("http/1.1 101"), "{head}");
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(
        lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=")
            && head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    got[end..].to_vec()
}

/// Reads server frames until a close frame: the binary messages' payloads.
fn ws_messages<S: std::io::Read>(s: &mut S, mut pending: Vec<u8>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // A whole frame in `pending`?
        if pending.len() >= 2 {
            assert_eq!(pending[1] & 0x80, 0, "server frames are not masked");
            let (len, hdr) = match pending[1] & 0x7f {
                126 if pending.len() >= 4 => {
                    (u16::from_be_bytes([pending[2], pending[3]]) as usize, 4)
                }
                127 if pending.len() >= 10 => (
                    u64::from_be_bytes(pending[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n if n < 126 => (n as usize, 2),
                _ => (usize::MAX, 0),
            };
            if len != usize::MAX && pending.len() >= hdr + len {
                let op = pending[0] & 0x0f;
                let payload = pending[hdr..hdr + len].to_vec();
                pending.drain(..hdr + len);
                match op {
                    0x8 => return out,
                    0x2 => out.push(payload),
                    other => panic!("unexpected opcode {other}"),
                }
                continue;
            }
        }
        let n = s.read(&mut buf).expect("read frame");
        if n == 0 {
            return out;
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn attach_over_websocket_streams_output_and_takes_stdin() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    // Output only, attached before start (docker-py's test_run_container_reading_socket_ws).
    let name = unique("ws");
    d.cli(&[
        "create",
        "--name",
        &name,
        "busybox",
        "printf",
        "hi there, words!",
    ])
    .ok();
    rm.add(&name);
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let rest = ws_handshake(
        &mut s,
        &format!("/v1.45/containers/{name}/attach/ws?stdout=1&stream=1&logs=1"),
    );
    d.cli(&["start", &name]).ok();
    let msgs = ws_messages(&mut s, rest);
    assert_eq!(msgs, vec![b"hi there, words!".to_vec()]);

    // stdin: a masked client message reaches the process.
    let name = unique("wsin");
    d.cli(&[
        "create", "-i", "--name", &name, "busybox", "head", "-c", "5",
    ])
    .ok();
    rm.add(&name);
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let rest = ws_handshake(
        &mut s,
        &format!("/v1.45/containers/{name}/attach/ws?stdin=1&stdout=1&stream=1"),
    );
    d.cli(&["start", &name]).ok();
    let payload = b"hello";
    let mask = [9u8, 8, 7, 6];
    let mut f = vec![0x82, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    std::io::Write::write_all(&mut s, &f).expect("send stdin");
    let msgs = ws_messages(&mut s, rest);
    assert_eq!(msgs.concat(), b"hello".to_vec());

    // Not a websocket handshake: Docker's 400.
    let r = d.api(
        "GET",
        &format!("/v1.45/containers/{name}/attach/ws?stream=1"),
    );
    assert_eq!(r.status, 400, "{}", r.text());
}
