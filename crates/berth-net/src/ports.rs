//! Published ports: parsing Docker's port keys and holding the host port while a container
//! runs. The daemon binds (never listens on, never accepts from) a socket on the host port, so a
//! port taken by someone else is refused at start and nothing else can take it meanwhile; the
//! traffic itself is forwarded by the kernel (DNAT).

use std::net::Ipv4Addr;
use std::os::fd::{FromRawFd, OwnedFd};

use crate::{NetError, Result};

/// "80", "80/tcp", "53/udp" -> (port, proto)
pub fn parse_port_key(key: &str) -> Result<(u16, String)> {
    let (p, proto) = match key.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (key, "tcp".to_string()),
    };
    if proto != "tcp" && proto != "udp" {
        return Err(NetError::InvalidParameter(format!(
            "invalid proto: {proto}"
        )));
    }
    let port: u16 = p
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| NetError::InvalidParameter(format!("invalid containerPort: {p}")))?;
    Ok((port, proto))
}

/// A host port held by the daemon.
#[derive(Debug)]
pub struct Held {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub proto: String,
    /// Rootless with slirp4netns: the same port opened on the host (fields drop in order: the
    /// host side goes first).
    _fwd: Option<crate::slirp::HostFwd>,
    _fd: OwnedFd,
}

/// Set by a rootless daemon behind pasta: no host port can be opened. pasta has no API to add
/// a forward to a running namespace, and the `-t auto` detection of listening ports finds none
/// in a namespace joined by path with Debian 12's passt (2023-03; tried: nothing is bound on
/// the host), so `-p` fails with the reason rather than publishing nothing.
static NO_HOST_PORTS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn refuse_host_ports() {
    NO_HOST_PORTS.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// The address a published port is held and DNATed at in the daemon's own network namespace.
/// Rootless behind slirp4netns, the host side (`host_ip`) is opened on the host by the
/// forwarder, and the traffic comes into the namespace at another address: `127.0.0.1` from
/// `berth rootless portd` (TCP), the slirp guest address from slirp4netns (UDP). So inside it
/// is every address, as rootlesskit's docker-proxy does for dockerd; the host address the user
/// named only exists outside (binding it inside would fail, a DNAT on it would never match).
pub fn namespace_ip(host_ip: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
    if crate::slirp::forwarder().is_some() {
        None
    } else {
        host_ip
    }
}

/// Binds `ip:port` (`port` 0: the kernel picks one from `ip_local_port_range`).
pub fn hold(host_ip: Option<Ipv4Addr>, port: u16, proto: &str) -> std::io::Result<Held> {
    if NO_HOST_PORTS.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "published ports need the rootless daemon's default network: restart it without \
             --rootless-net=pasta (pasta cannot forward host ports to a running daemon)",
        ));
    }
    let ty = if proto == "udp" {
        libc::SOCK_DGRAM
    } else {
        libc::SOCK_STREAM
    };
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor we own.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let ip = namespace_ip(host_ip).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sa is a valid sockaddr_in of the size passed.
    let r = unsafe {
        libc::bind(
            fd,
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: out/len describe a writable sockaddr_in.
    let r = unsafe {
        libc::getsockname(
            fd,
            &mut out as *mut libc::sockaddr_in as *mut libc::sockaddr,
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let host_port = u16::from_be(out.sin_port);
    let fwd = match crate::slirp::forwarder() {
        Some(f) => Some(crate::slirp::add(f, proto, host_ip, host_port)?),
        None => None,
    };
    Ok(Held {
        host_ip,
        host_port,
        proto: proto.to_string(),
        _fwd: fwd,
        _fd: owned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(parse_port_key("80").unwrap(), (80, "tcp".into()));
        assert_eq!(parse_port_key("53/udp").unwrap(), (53, "udp".into()));
        assert!(parse_port_key("0/tcp").is_err());
        assert!(parse_port_key("x/tcp").is_err());
        assert!(parse_port_key("80/sctpx").is_err());
    }

    #[test]
    fn a_held_port_is_taken() {
        let a = hold(Some(Ipv4Addr::LOCALHOST), 0, "tcp").unwrap();
        assert!(a.host_port > 0);
        let e = hold(Some(Ipv4Addr::LOCALHOST), a.host_port, "tcp").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
        let l = std::net::TcpListener::bind(("127.0.0.1", a.host_port));
        assert!(l.is_err());
        drop(a);
    }
}
