//! The embedded resolver of user-defined networks (Docker's shape): UDP and TCP sockets on
//! 127.0.0.11:53 inside the container's namespace, answering A records for the names the engine
//! knows and forwarding everything else to the host's nameservers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{netns, NetError, Result};

/// Name -> addresses, for the networks of one container. `None`: not ours, forward it.
/// A name of ours -> its addresses (IPv4 and, on dual-stack networks, IPv6).
pub type Lookup = Arc<dyn Fn(&str) -> Option<Vec<IpAddr>> + Send + Sync>;

pub const ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// Sockets bound inside a container's namespace.
pub struct Sockets {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
}

/// Binds 127.0.0.11:53 (UDP and TCP) inside the namespace pinned at `ns`.
pub fn bind_in(ns: &std::path::Path) -> Result<Sockets> {
    netns::enter(ns, bind_here)
}

/// Binds in the calling thread's namespace (used from inside `netns::create`).
pub fn bind_here() -> Result<Sockets> {
    let e = |e: std::io::Error| NetError::Dns(format!("binding {ADDR}:53: {e}"));
    let udp = std::net::UdpSocket::bind((ADDR, 53)).map_err(e)?;
    let tcp = std::net::TcpListener::bind((ADDR, 53)).map_err(e)?;
    udp.set_nonblocking(true).map_err(e)?;
    tcp.set_nonblocking(true).map_err(e)?;
    Ok(Sockets { udp, tcp })
}

/// The nameservers of a resolv.conf text, without loopback ones.
pub fn nameservers(resolv: &str) -> Vec<Ipv4Addr> {
    resolv
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|s| s.parse::<Ipv4Addr>().ok())
        .filter(|ip| !ip.is_loopback())
        .collect()
}

/// Serves the sockets until the returned handle is aborted (needs a tokio runtime).
pub fn serve(
    socks: Sockets,
    lookup: Lookup,
    upstream: Vec<Ipv4Addr>,
) -> Result<tokio::task::JoinHandle<()>> {
    let e = |e: std::io::Error| NetError::Dns(format!("resolver sockets: {e}"));
    let udp = Arc::new(tokio::net::UdpSocket::from_std(socks.udp).map_err(e)?);
    let tcp = tokio::net::TcpListener::from_std(socks.tcp).map_err(e)?;
    let upstream = Arc::new(upstream);
    Ok(tokio::spawn(async move {
        let u = {
            let (udp, lookup, upstream) = (udp.clone(), lookup.clone(), upstream.clone());
            async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let q = buf[..n].to_vec();
                    let (udp, lookup, upstream) = (udp.clone(), lookup.clone(), upstream.clone());
                    tokio::spawn(async move {
                        if let Some(ans) = answer(&q, &lookup, &upstream, false).await {
                            let _ = udp.send_to(&ans, peer).await;
                        }
                    });
                }
            }
        };
        let t = async move {
            loop {
                let Ok((mut s, _)) = tcp.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let (lookup, upstream) = (lookup.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), async {
                        loop {
                            let len = s.read_u16().await? as usize;
                            let mut q = vec![0u8; len];
                            s.read_exact(&mut q).await?;
                            let Some(ans) = answer(&q, &lookup, &upstream, true).await else {
                                return Ok::<(), std::io::Error>(());
                            };
                            s.write_u16(ans.len() as u16).await?;
                            s.write_all(&ans).await?;
                        }
                    })
                    .await;
                });
            }
        };
        tokio::join!(u, t);
    }))
}

/// The question of a query: (name lowercased without the final dot, qtype, end offset).
fn question(q: &[u8]) -> Option<(String, u16, usize)> {
    if q.len() < 12 || u16::from_be_bytes([q[4], q[5]]) != 1 || q[2] & 0x80 != 0 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let l = *q.get(i)? as usize;
        i += 1;
        if l == 0 {
            break;
        }
        if l > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + l)?).to_ascii_lowercase());
        i += l;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    Some((labels.join("."), qtype, i + 4))
}

/// The answer to `q`: from `lookup` for our names, else from the first upstream that answers,
/// asked the way the client asked (`tcp`): a client that got a truncated UDP answer retries
/// over TCP, and must get the whole answer then, as from Docker's resolver.
async fn answer(q: &[u8], lookup: &Lookup, upstream: &[Ipv4Addr], tcp: bool) -> Option<Vec<u8>> {
    let (name, qtype, end) = question(q)?;
    if end > q.len() {
        return None;
    }
    // A, AAAA and ANY for our names are answered here (AAAA with no records for a name
    // without an IPv6 address).
    if matches!(qtype, 1 | 28 | 255) {
        if let Some(ips) = lookup(&name) {
            let mut r = q[..end].to_vec();
            r[2] = 0x84 | (q[2] & 0x01); // QR, AA, keep RD
            r[3] = 0x80; // RA, NOERROR
            let ips: Vec<IpAddr> = ips
                .into_iter()
                .filter(|ip| match qtype {
                    1 => ip.is_ipv4(),
                    28 => ip.is_ipv6(),
                    _ => true,
                })
                .collect();
            r[6..8].copy_from_slice(&(ips.len() as u16).to_be_bytes());
            r[8..12].copy_from_slice(&[0, 0, 0, 0]);
            for ip in ips {
                let (rtype, data) = match ip {
                    IpAddr::V4(a) => (1u16, a.octets().to_vec()),
                    IpAddr::V6(a) => (28u16, a.octets().to_vec()),
                };
                r.extend_from_slice(&[0xc0, 0x0c]);
                r.extend_from_slice(&rtype.to_be_bytes());
                r.extend_from_slice(&[0, 1]);
                r.extend_from_slice(&600u32.to_be_bytes());
                r.extend_from_slice(&(data.len() as u16).to_be_bytes());
                r.extend_from_slice(&data);
            }
            return Some(r);
        }
    }
    for ns in upstream {
        let to = SocketAddr::from((*ns, 53));
        let r = if tcp {
            forward_tcp(q, to).await
        } else {
            forward(q, to).await
        };
        if let Some(r) = r {
            return Some(r);
        }
    }
    // SERVFAIL
    let mut r = q[..end].to_vec();
    r[2] = 0x80 | (q[2] & 0x01);
    r[3] = 0x82;
    r[6..12].copy_from_slice(&[0; 6]);
    Some(r)
}

async fn forward_tcp(q: &[u8], to: SocketAddr) -> Option<Vec<u8>> {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut s = tokio::net::TcpStream::connect(to).await.ok()?;
        s.write_u16(u16::try_from(q.len()).ok()?).await.ok()?;
        s.write_all(q).await.ok()?;
        let len = s.read_u16().await.ok()? as usize;
        let mut buf = vec![0u8; len];
        s.read_exact(&mut buf).await.ok()?;
        (len >= 12 && buf[..2] == q[..2]).then_some(buf)
    })
    .await
    .ok()?
}

async fn forward(q: &[u8], to: SocketAddr) -> Option<Vec<u8>> {
    let s = tokio::net::UdpSocket::bind(("0.0.0.0", 0)).await.ok()?;
    s.connect(to).await.ok()?;
    s.send(q).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    (n >= 12 && buf[..2] == q[..2]).then(|| buf[..n].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[tokio::test]
    async fn answers_known_names() {
        let lookup: Lookup =
            Arc::new(|n: &str| (n == "web").then(|| vec![Ipv4Addr::new(10, 1, 0, 2).into()]));
        let r = answer(&query("Web", 1), &lookup, &[], false).await.unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert_eq!(&r[r.len() - 4..], &[10, 1, 0, 2]);
        let r = answer(&query("web", 28), &lookup, &[], false)
            .await
            .unwrap();
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0);
        assert_eq!(r[3] & 0x0f, 0);
        // Unknown, and no upstream: SERVFAIL.
        let r = answer(&query("other.example", 1), &lookup, &[], false)
            .await
            .unwrap();
        assert_eq!(r[3] & 0x0f, 2);
        assert!(answer(&[1, 2, 3], &lookup, &[], false).await.is_none());
        // A dual-stack name: A gets the IPv4 address, AAAA the IPv6 one.
        let six: std::net::Ipv6Addr = "fd00::5".parse().unwrap();
        let lookup: Lookup = Arc::new(move |n: &str| {
            (n == "web").then(|| vec![Ipv4Addr::new(10, 1, 0, 2).into(), six.into()])
        });
        let r = answer(&query("web", 28), &lookup, &[], false)
            .await
            .unwrap();
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert_eq!(&r[r.len() - 16..], &six.octets());
        let r = answer(&query("web", 1), &lookup, &[], false).await.unwrap();
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert_eq!(&r[r.len() - 4..], &[10, 1, 0, 2]);
    }

    #[test]
    fn resolv_nameservers() {
        let r = "search x\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver ::1\n";
        assert_eq!(nameservers(r), vec![Ipv4Addr::new(10, 255, 255, 53)]);
    }
}

/// The resolver for real, in a throwaway namespace (root needed; skipped otherwise): UDP and
/// TCP queries for a known name are answered; an unknown name with an unreachable upstream gets
/// SERVFAIL rather than silence.
#[cfg(test)]
mod kernel_tests {
    use super::*;
    use std::io::{Read, Write};

    fn query(name: &str) -> Vec<u8> {
        let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    fn io(e: std::io::Error) -> NetError {
        NetError::Dns(e.to_string())
    }

    /// Asks the resolver at 127.0.0.11 over UDP from `u`; the answer.
    fn ask_udp(u: &std::net::UdpSocket, name: &str, wait: Duration) -> Result<Vec<u8>> {
        u.set_read_timeout(Some(wait)).map_err(io)?;
        u.send_to(&query(name), (ADDR, 53)).map_err(io)?;
        let mut b = [0u8; 512];
        let n = u.recv(&mut b).map_err(io)?;
        Ok(b[..n].to_vec())
    }

    /// Asks the resolver at 127.0.0.11 over TCP (length-prefixed); the answer.
    fn ask_tcp(name: &str, wait: Duration) -> Result<Vec<u8>> {
        let mut t = std::net::TcpStream::connect((ADDR, 53)).map_err(io)?;
        t.set_read_timeout(Some(wait)).map_err(io)?;
        let q = query(name);
        t.write_all(&(q.len() as u16).to_be_bytes()).map_err(io)?;
        t.write_all(&q).map_err(io)?;
        let mut len = [0u8; 2];
        t.read_exact(&mut len).map_err(io)?;
        let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
        t.read_exact(&mut r).map_err(io)?;
        Ok(r)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn udp_and_tcp_in_a_namespace() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let ns = tmp.path().join("ns");
        let socks = netns::create(&ns, |_| bind_here()).unwrap();
        let lookup: Lookup =
            Arc::new(|n: &str| (n == "db").then(|| vec![Ipv4Addr::new(10, 1, 2, 3).into()]));
        // 192.0.2.0/24 is TEST-NET: nothing answers there, and the namespace has no route anyway.
        let task = serve(socks, lookup, vec![Ipv4Addr::new(192, 0, 2, 53)]).unwrap();
        let p = ns.clone();
        let (udp, tcp, fail) = tokio::task::spawn_blocking(move || {
            netns::enter(&p, || {
                let u = std::net::UdpSocket::bind("127.0.0.1:0").map_err(io)?;
                let udp = ask_udp(&u, "db", Duration::from_secs(5))?;
                let tcp = ask_tcp("db", Duration::from_secs(5))?;
                let fail = ask_udp(&u, "unknown.example", Duration::from_secs(10))?;
                Ok((udp, tcp, fail))
            })
        })
        .await
        .unwrap()
        .unwrap();
        task.abort();
        netns::remove(&ns);
        for r in [&udp, &tcp] {
            assert_eq!(&r[..2], &[0xab, 0xcd]);
            assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
            assert_eq!(&r[r.len() - 4..], &[10, 1, 2, 3]);
        }
        assert_eq!(fail[3] & 0x0f, 2, "SERVFAIL");
    }

    /// A query the resolver cannot answer itself is asked upstream the way the client asked: a
    /// truncated UDP answer is relayed as is, and the client's retry over TCP gets the whole
    /// answer over TCP. The upstream here listens on 127.0.0.77:53 of the host.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tcp_queries_are_forwarded_over_tcp() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let up = Ipv4Addr::new(127, 0, 0, 77);
        let (Ok(utcp), Ok(uudp)) = (
            std::net::TcpListener::bind((up, 53)),
            std::net::UdpSocket::bind((up, 53)),
        ) else {
            eprintln!("skipped: {up}:53 is taken");
            return;
        };
        // The big answer: 40 A records, more than fits a 512-byte UDP answer.
        let big = |q: &[u8], truncated: bool| {
            let (_, _, end) = question(q).unwrap();
            let mut r = q[..end].to_vec();
            r[2] = 0x80 | if truncated { 0x02 } else { 0 };
            r[3] = 0x80;
            let n: u16 = if truncated { 0 } else { 40 };
            r[6..8].copy_from_slice(&n.to_be_bytes());
            for i in 0..n {
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 0]);
                r.push(i as u8);
            }
            r
        };
        std::thread::spawn(move || {
            let mut b = [0u8; 512];
            if let Ok((n, peer)) = uudp.recv_from(&mut b) {
                let _ = uudp.send_to(&big(&b[..n], true), peer);
            }
        });
        std::thread::spawn(move || {
            if let Ok((mut c, _)) = utcp.accept() {
                let mut len = [0u8; 2];
                if c.read_exact(&mut len).is_ok() {
                    let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                    if c.read_exact(&mut q).is_ok() {
                        let r = big(&q, false);
                        let _ = c.write_all(&(r.len() as u16).to_be_bytes());
                        let _ = c.write_all(&r);
                    }
                }
            }
        });
        let tmp = tempfile::tempdir().unwrap();
        let ns = tmp.path().join("ns");
        let socks = netns::create(&ns, |_| bind_here()).unwrap();
        let task = serve(socks, Arc::new(|_: &str| None), vec![up]).unwrap();
        let p = ns.clone();
        let (udp, tcp) = tokio::task::spawn_blocking(move || {
            netns::enter(&p, || {
                let u = std::net::UdpSocket::bind("127.0.0.1:0").map_err(io)?;
                let udp = ask_udp(&u, "big.example", Duration::from_secs(10))?;
                Ok((udp, ask_tcp("big.example", Duration::from_secs(10))?))
            })
        })
        .await
        .unwrap()
        .unwrap();
        task.abort();
        netns::remove(&ns);
        assert_eq!(udp[2] & 0x02, 0x02, "the truncated UDP answer is relayed");
        assert_eq!(
            u16::from_be_bytes([tcp[6], tcp[7]]),
            40,
            "all records over TCP"
        );
        assert!(tcp.len() > 512);
        assert_eq!(tcp[tcp.len() - 1], 39);
    }
}
