//! Just enough D-Bus to change a systemd unit's properties: `SetUnitProperties(s name,
//! b runtime, a(sv) properties)` on the system bus, with the property types the cgroup limits
//! need. libcontainer's systemd manager talks to systemd itself when it creates a container's
//! scope; this is for what it does not set (block IO weights) and for `update`. And, for
//! rootless mode, `StartTransientUnit` on the user's own systemd manager: a scope with
//! `Delegate=yes` for the namespace holder (`crate::rootless`).
//!
//! The wire format (D-Bus specification, "Message Protocol"): little-endian messages of a
//! 12-byte fixed header, an array of header fields `a(yv)`, padding to 8, and the body; every
//! value aligned to its type's size; strings as u32 length, bytes and a NUL.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::RuntimeError;

const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";

/// A property value: `t`, `ay` or `a(st)` (a device path and a number).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Prop {
    U64(u64),
    Bytes(Vec<u8>),
    DevU64(Vec<(String, u64)>),
    Bool(bool),
    Str(String),
    U32s(Vec<u32>),
}

#[derive(Default)]
struct Buf(Vec<u8>);

impl Buf {
    fn pad(&mut self, align: usize) {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.pad(8);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn string(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
    }
    fn signature(&mut self, s: &str) {
        self.u8(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
    }
    /// An array: the u32 byte length is patched once `fill` wrote the elements, which start
    /// at `elem_align` (the length excludes that padding).
    fn array(&mut self, elem_align: usize, fill: impl FnOnce(&mut Buf)) {
        self.pad(4);
        let at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        self.pad(elem_align);
        let start = self.0.len();
        fill(self);
        let len = (self.0.len() - start) as u32;
        self.0[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    fn variant(&mut self, p: &Prop) {
        match p {
            Prop::U64(v) => {
                self.signature("t");
                self.u64(*v);
            }
            Prop::Bytes(b) => {
                self.signature("ay");
                self.array(1, |a| a.0.extend_from_slice(b));
            }
            Prop::Bool(b) => {
                self.signature("b");
                self.u32(u32::from(*b));
            }
            Prop::Str(v) => {
                self.signature("s");
                self.string(v);
            }
            Prop::U32s(l) => {
                self.signature("au");
                self.array(4, |a| {
                    for v in l {
                        a.u32(*v);
                    }
                });
            }
            Prop::DevU64(l) => {
                self.signature("a(st)");
                self.array(8, |a| {
                    for (path, v) in l {
                        a.pad(8);
                        a.string(path);
                        a.u64(*v);
                    }
                });
            }
        }
    }
}

/// A method call message with `body` of signature `sig`.
fn method_call(
    serial: u32,
    dest: &str,
    path: &str,
    iface: &str,
    member: &str,
    sig: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut m = Buf::default();
    m.0.extend_from_slice(&[b'l', 1, 0, 1]);
    m.u32(body.len() as u32);
    m.u32(serial);
    m.array(8, |a| {
        let mut field = |code: u8, sig: &str, val: &str| {
            a.pad(8);
            a.u8(code);
            a.signature(sig);
            if sig == "g" {
                a.signature(val);
            } else {
                a.string(val);
            }
        };
        field(1, "o", path);
        field(2, "s", iface);
        field(3, "s", member);
        field(6, "s", dest);
        if !sig.is_empty() {
            field(8, "g", sig);
        }
    });
    m.pad(8);
    m.0.extend_from_slice(body);
    m.0
}

/// The body of `SetUnitProperties(unit, true, props)`.
fn set_properties_body(unit: &str, props: &[(&str, Prop)]) -> Vec<u8> {
    let mut b = Buf::default();
    b.string(unit);
    b.u32(1); // runtime: gone at reboot, as the scope is
    b.array(8, |a| {
        for (name, v) in props {
            a.pad(8);
            a.string(name);
            a.variant(v);
        }
    });
    b.0
}

/// The body of `StartTransientUnit(unit, "fail", props, [])`.
fn start_transient_body(unit: &str, props: &[(&str, Prop)]) -> Vec<u8> {
    let mut b = Buf::default();
    b.string(unit);
    b.string("fail");
    b.array(8, |a| {
        for (name, v) in props {
            a.pad(8);
            a.string(name);
            a.variant(v);
        }
    });
    // No auxiliary units: an empty a(sa(sv)).
    b.array(8, |_| {});
    b.0
}

/// A reply read off the bus: its type (2 return, 3 error, 4 signal), the serial it answers,
/// the error name and the body's first string (an error's message).
#[derive(Debug, Default)]
struct Reply {
    kind: u8,
    reply_serial: u32,
    error: String,
    message: String,
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn align(n: usize, a: usize) -> usize {
    n.div_ceil(a) * a
}

/// Reads a string (u32 length, bytes, NUL) at `at` (aligned to 4 first); returns it and the
/// offset after it.
fn read_string(b: &[u8], at: usize) -> Option<(String, usize)> {
    let at = align(at, 4);
    let len = le_u32(b, at)? as usize;
    let s = b.get(at + 4..at + 4 + len)?;
    Some((String::from_utf8_lossy(s).into_owned(), at + 4 + len + 1))
}

fn read_message(r: &mut impl Read) -> Result<Reply, RuntimeError> {
    let err = |e: std::io::Error| RuntimeError::Runtime(format!("systemd over D-Bus: {e}"));
    let mut fixed = [0u8; 16];
    r.read_exact(&mut fixed).map_err(err)?;
    if fixed[0] != b'l' {
        return Err(RuntimeError::Runtime(
            "systemd over D-Bus: a big-endian message".into(),
        ));
    }
    let body_len = le_u32(&fixed, 4).unwrap_or(0) as usize;
    let fields_len = le_u32(&fixed, 12).unwrap_or(0) as usize;
    if body_len + fields_len > 1 << 24 {
        return Err(RuntimeError::Runtime(
            "systemd over D-Bus: message too large".into(),
        ));
    }
    let rest = align(16 + fields_len, 8) - 16 + body_len;
    let mut msg = fixed.to_vec();
    msg.resize(16 + rest, 0);
    r.read_exact(&mut msg[16..]).map_err(err)?;
    let mut reply = Reply {
        kind: fixed[1],
        ..Default::default()
    };
    let mut at = 16;
    let end = 16 + fields_len;
    while at < end {
        at = align(at, 8);
        let code = msg[at];
        let sig_len = msg[at + 1] as usize;
        let sig = String::from_utf8_lossy(&msg[at + 2..at + 2 + sig_len]).into_owned();
        at += 2 + sig_len + 1;
        match sig.as_str() {
            "u" => {
                at = align(at, 4);
                if code == 5 {
                    reply.reply_serial = le_u32(&msg, at).unwrap_or(0);
                }
                at += 4;
            }
            "s" | "o" => {
                let Some((s, next)) = read_string(&msg, at) else {
                    break;
                };
                if code == 4 {
                    reply.error = s;
                }
                at = next;
            }
            "g" => {
                let l = msg.get(at).copied().unwrap_or(0) as usize;
                at += 1 + l + 1;
            }
            _ => break,
        }
    }
    if reply.kind == 3 {
        let body = align(16 + fields_len, 8);
        if let Some((s, _)) = read_string(&msg, body) {
            reply.message = s;
        }
    }
    Ok(reply)
}

/// Calls a method and waits for its reply (skipping signals and other replies).
fn call(
    stream: &mut BufReader<UnixStream>,
    serial: u32,
    msg: &[u8],
) -> Result<Reply, RuntimeError> {
    let err = |e: std::io::Error| RuntimeError::Runtime(format!("systemd over D-Bus: {e}"));
    stream.get_mut().write_all(msg).map_err(err)?;
    loop {
        let r = read_message(stream)?;
        if (r.kind == 2 || r.kind == 3) && r.reply_serial == serial {
            return Ok(r);
        }
    }
}

/// A connection to a bus (`hello`: a bus daemon, which wants `Hello` first) or straight to a
/// systemd manager's private socket (no bus daemon: no `Hello`), authenticated as our uid.
fn connect(path: &std::path::Path, hello: bool) -> Result<BufReader<UnixStream>, RuntimeError> {
    let err = |e: std::io::Error| RuntimeError::Runtime(format!("systemd over D-Bus: {e}"));
    let sock = UnixStream::connect(path).map_err(|e| {
        RuntimeError::Runtime(format!("systemd over D-Bus: {}: {e}", path.display()))
    })?;
    sock.set_read_timeout(Some(Duration::from_secs(25)))
        .map_err(err)?;
    let mut stream = BufReader::new(sock);
    // SASL EXTERNAL: our uid, hex-encoded as ASCII digits.
    let uid = nix::unistd::getuid().as_raw().to_string();
    let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
    stream
        .get_mut()
        .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())
        .map_err(err)?;
    let mut line = String::new();
    stream.read_line(&mut line).map_err(err)?;
    if !line.starts_with("OK ") {
        return Err(RuntimeError::Runtime(format!(
            "systemd over D-Bus: authentication refused: {}",
            line.trim()
        )));
    }
    stream.get_mut().write_all(b"BEGIN\r\n").map_err(err)?;
    if hello {
        let bus = "org.freedesktop.DBus";
        let hello = method_call(1, bus, "/org/freedesktop/DBus", bus, "Hello", "", &[]);
        let r = call(&mut stream, 1, &hello)?;
        if r.kind == 3 {
            return Err(RuntimeError::Runtime(format!(
                "systemd over D-Bus: Hello: {}",
                r.message
            )));
        }
    }
    Ok(stream)
}

/// Calls a method of systemd's manager object.
fn manager_call(
    stream: &mut BufReader<UnixStream>,
    member: &str,
    sig: &str,
    body: &[u8],
) -> Result<Reply, RuntimeError> {
    let msg = method_call(
        2,
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        member,
        sig,
        body,
    );
    call(stream, 2, &msg)
}

/// Sets `props` on `unit` (for the runtime only), as `systemctl set-property --runtime` does.
pub(crate) fn set_unit_properties(unit: &str, props: &[(&str, Prop)]) -> Result<(), RuntimeError> {
    let mut stream = connect(std::path::Path::new(SYSTEM_BUS), true)?;
    let body = set_properties_body(unit, props);
    let r = manager_call(&mut stream, "SetUnitProperties", "sba(sv)", &body)?;
    if r.kind == 3 {
        return Err(RuntimeError::Runtime(format!(
            "systemd: setting properties of {unit}: {}: {}",
            r.error, r.message
        )));
    }
    Ok(())
}

/// Asks the calling user's systemd manager for a transient scope `unit` holding `pid`, with
/// `Delegate=yes` (the cgroup subtree and its controllers are the user's to manage), as
/// `systemd-run --user --scope -p Delegate=yes` does. The user's bus when there is one
/// (`$DBUS_SESSION_BUS_ADDRESS`, `$XDG_RUNTIME_DIR/bus`: dbus-user-session), else the
/// manager's own socket `$XDG_RUNTIME_DIR/systemd/private`, which `systemctl --user` uses too.
/// Returns when systemd accepted the job; the move of `pid` follows shortly.
pub(crate) fn start_user_scope(unit: &str, pid: u32, what: &str) -> Result<(), RuntimeError> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .ok_or_else(|| RuntimeError::Runtime("XDG_RUNTIME_DIR is not set".into()))?;
    let mut ways: Vec<(std::path::PathBuf, bool)> = Vec::new();
    if let Some(p) = std::env::var("DBUS_SESSION_BUS_ADDRESS")
        .ok()
        .and_then(|a| {
            a.strip_prefix("unix:path=")
                .map(|p| p.split(',').next().unwrap_or(p).to_string())
        })
    {
        ways.push((p.into(), true));
    }
    ways.push((runtime.join("bus"), true));
    ways.push((runtime.join("systemd/private"), false));
    let mut last = RuntimeError::Runtime("no systemd user manager".into());
    for (path, hello) in ways {
        if !path.exists() {
            continue;
        }
        let mut stream = match connect(&path, hello) {
            Ok(s) => s,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let body = start_transient_body(
            unit,
            &[
                ("Description", Prop::Str(what.into())),
                ("PIDs", Prop::U32s(vec![pid])),
                ("Delegate", Prop::Bool(true)),
                ("CollectMode", Prop::Str("inactive-or-failed".into())),
            ],
        );
        let r = manager_call(&mut stream, "StartTransientUnit", "ssa(sv)a(sa(sv))", &body)?;
        if r.kind == 3 {
            return Err(RuntimeError::Runtime(format!(
                "systemd --user: starting {unit}: {}: {}",
                r.error, r.message
            )));
        }
        return Ok(());
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_set_unit_properties() {
        let body = set_properties_body(
            "a.scope",
            &[
                ("MemoryMax", Prop::U64(0x0102)),
                ("AllowedCPUs", Prop::Bytes(vec![3])),
                ("IOWeight", Prop::U64(7)),
            ],
        );
        let mut want: Vec<u8> = Vec::new();
        want.extend_from_slice(&7u32.to_le_bytes());
        want.extend_from_slice(b"a.scope\0");
        want.extend_from_slice(&1u32.to_le_bytes()); // runtime (offset 12)
        want.extend_from_slice(&0u32.to_le_bytes()); // array length, patched below (16)
                                                     // first struct at 24 (8-aligned): "MemoryMax", variant "t", pad, u64
        want.extend_from_slice(&[0; 4]);
        want.extend_from_slice(&9u32.to_le_bytes());
        want.extend_from_slice(b"MemoryMax\0"); // 28..38
        want.extend_from_slice(&[1, b't', 0]); // 38..41
        want.extend_from_slice(&[0; 7]); // to 48
        want.extend_from_slice(&0x0102u64.to_le_bytes()); // 48..56
                                                          // second struct at 56
        want.extend_from_slice(&11u32.to_le_bytes());
        want.extend_from_slice(b"AllowedCPUs\0"); // 60..72
        want.extend_from_slice(&[2, b'a', b'y', 0]); // 72..76
        want.extend_from_slice(&1u32.to_le_bytes()); // 76..80
        want.push(3); // 80
        want.extend_from_slice(&[0; 7]); // to 88
        want.extend_from_slice(&8u32.to_le_bytes());
        want.extend_from_slice(b"IOWeight\0"); // 92..101
        want.extend_from_slice(&[1, b't', 0]); // 101..104
        want.extend_from_slice(&7u64.to_le_bytes()); // 104..112
        let len = (want.len() - 24) as u32;
        want[16..20].copy_from_slice(&len.to_le_bytes());
        assert_eq!(body, want);
    }

    #[test]
    fn encodes_start_transient_unit() {
        let body = start_transient_body(
            "s.scope",
            &[
                ("PIDs", Prop::U32s(vec![7])),
                ("Delegate", Prop::Bool(true)),
            ],
        );
        let mut want: Vec<u8> = Vec::new();
        want.extend_from_slice(&7u32.to_le_bytes());
        want.extend_from_slice(b"s.scope\0"); // ..12
        want.extend_from_slice(&4u32.to_le_bytes());
        want.extend_from_slice(b"fail\0"); // 12..21
        want.extend_from_slice(&[0; 3]); // to 24
        want.extend_from_slice(&0u32.to_le_bytes()); // array length (24), patched below
        want.extend_from_slice(&[0; 4]); // first struct at 32
        want.extend_from_slice(&4u32.to_le_bytes());
        want.extend_from_slice(b"PIDs\0"); // 36..41
        want.extend_from_slice(&[2, b'a', b'u', 0]); // 41..45
        want.extend_from_slice(&[0; 3]); // to 48
        want.extend_from_slice(&4u32.to_le_bytes()); // 48..52
        want.extend_from_slice(&7u32.to_le_bytes()); // 52..56
        want.extend_from_slice(&8u32.to_le_bytes()); // second struct at 56
        want.extend_from_slice(b"Delegate\0"); // 60..69
        want.extend_from_slice(&[1, b'b', 0]); // 69..72
        want.extend_from_slice(&1u32.to_le_bytes()); // 72..76
        let len = (want.len() - 32) as u32;
        want[24..28].copy_from_slice(&len.to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes()); // the empty a(sa(sv)) at 76, 80 aligned
        assert_eq!(body, want);
    }

    #[test]
    fn reads_an_error_reply() {
        // An error reply to serial 2: fields REPLY_SERIAL (5, u) and ERROR_NAME (4, s),
        // SIGNATURE (8, g) "s"; body a string.
        let mut body = Buf::default();
        body.string("no such unit");
        let mut m = Buf::default();
        m.0.extend_from_slice(&[b'l', 3, 1, 1]);
        m.u32(body.0.len() as u32);
        m.u32(9);
        m.array(8, |a| {
            a.pad(8);
            a.u8(4);
            a.signature("s");
            a.string("org.x.Error");
            a.pad(8);
            a.u8(5);
            a.signature("u");
            a.u32(2);
            a.pad(8);
            a.u8(8);
            a.signature("g");
            a.signature("s");
        });
        m.pad(8);
        m.0.extend_from_slice(&body.0);
        let m = m.0;
        let r = read_message(&mut std::io::Cursor::new(m)).expect("parse");
        assert_eq!(r.kind, 3);
        assert_eq!(r.reply_serial, 2);
        assert_eq!(r.error, "org.x.Error");
        assert_eq!(r.message, "no such unit");
    }
}
