//! Networking: the default bridge (addresses, routes, /etc files, NAT), published ports from
//! every side, user networks with name resolution and isolation, and what is left after
//! `network rm`, daemon shutdown and a `kill -9` of the daemon. Real bridges, veths, netns and
//! nftables; each daemon has its own bridge name and subnet (berth-testkit's NetLease).

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};

/// The host's address on its default route (the "external" address).
fn host_ip() -> Option<Ipv4Addr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.123:9").ok()?;
    match s.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_loopback() => Some(ip),
        _ => None,
    }
}

/// GET / from `addr` on the host; the body, or None.
fn http_get(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(3)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split("\r\n\r\n").nth(1).map(|b| b.trim().to_string())
}

/// A container serving `text` over HTTP on port 80 (busybox httpd), with `args` for run.
fn web(d: &Daemon, name: &str, text: &str, args: &[&str]) -> String {
    let script =
        format!("mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www");
    let mut a = vec!["--name", name];
    a.extend_from_slice(args);
    a.extend_from_slice(&["busybox", "sh", "-c", &script]);
    run_d(d, &a)
}

fn links() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn nft_has_table(t: &str) -> bool {
    std::process::Command::new("nft")
        .args(["list", "table", "ip", t])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn default_bridge_gives_address_route_and_etc_files() {
    let d = d();
    let _rm = Rm(d, vec!["nb1".into()]);
    let gw = d.gateway().to_string();
    let out = sh(
        d,
        &["--name", "nb1", "--hostname", "box1"],
        "ip -4 addr show eth0; ip route; echo ---; cat /etc/hosts; echo ---; cat /etc/resolv.conf; hostname",
    );
    let prefix = gw.rsplit_once('.').map(|(p, _)| p).unwrap_or("");
    assert!(out.contains(&format!("inet {prefix}.")), "{out}");
    assert!(out.contains(&format!("default via {gw} dev eth0")), "{out}");
    assert!(out.contains("\tbox1"), "hosts names the container: {out}");
    assert!(
        !out.contains("nameserver 127."),
        "no localhost resolver: {out}"
    );
    assert!(out.trim_end().ends_with("box1"));

    // inspect shows the address; ps shows it on the bridge network.
    let id = run_d(d, &["--name", "nb2", "busybox", "sleep", "60"]);
    let _rm2 = Rm(d, vec![id.clone()]);
    let ip = fmt(d, "nb2", "{{.NetworkSettings.IPAddress}}");
    assert!(ip.starts_with(prefix), "{ip}");
    assert_eq!(fmt(d, "nb2", "{{.NetworkSettings.Gateway}}"), gw);
    assert_eq!(
        fmt(d, "nb2", "{{.NetworkSettings.Networks.bridge.IPAddress}}"),
        ip
    );
    assert!(fmt(d, "nb2", "{{.NetworkSettings.MacAddress}}").starts_with("02:42:"));
    // The host reaches the container directly.
    let o = std::process::Command::new("ping")
        .args(["-c", "1", "-W", "2", &ip])
        .output();
    if let Ok(o) = o {
        assert!(o.status.success(), "host pings {ip}");
    }
}

#[test]
fn addresses_are_never_given_twice_and_come_back() {
    let d = d();
    let mut rm = Rm(d, vec![]);
    let mut ips = Vec::new();
    for i in 0..4 {
        let n = format!("ipam{i}");
        run_d(d, &["--name", &n, "busybox", "sleep", "60"]);
        rm.add(&n);
        let ip = fmt(d, &n, "{{.NetworkSettings.IPAddress}}");
        assert!(!ips.contains(&ip), "{ip} given twice");
        ips.push(ip);
    }
    // A stopped container has no address; its address goes back to the pool.
    d.cli(&["rm", "-f", "ipam0"]).ok();
    d.cli(&["stop", "-t", "0", "ipam1"]).ok();
    assert_eq!(fmt(d, "ipam1", "{{.NetworkSettings.IPAddress}}"), "");
    let alloc = std::fs::read_dir(d.data_root().join("network/ipam"))
        .expect("ipam dir")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    for (i, ip) in ips.iter().enumerate() {
        let held = alloc.contains(&format!("\"{ip}\":"));
        assert_eq!(held, i >= 2, "{ip} allocated: {alloc}");
    }
    // Started again, it gets an address nobody holds.
    d.cli(&["start", "ipam1"]).ok();
    let again = fmt(d, "ipam1", "{{.NetworkSettings.IPAddress}}");
    assert!(
        !again.is_empty() && again != ips[2] && again != ips[3],
        "{again}"
    );
}

#[test]
fn container_reaches_a_host_service_and_the_mirror() {
    let d = d();
    let l = TcpListener::bind("0.0.0.0:0").expect("listen");
    let port = l.local_addr().expect("addr").port();
    let gw = d.gateway();
    let t = std::thread::spawn(move || {
        l.set_nonblocking(false).ok();
        let (mut s, _) = l.accept().ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        Some(buf)
    });
    sh(d, &[], &format!("echo hello-host | nc -w 3 {gw} {port}"));
    let got = t.join().expect("join");
    assert_eq!(got.as_deref().map(str::trim), Some("hello-host"));

    // Outbound NAT to the Debian mirror, where the machine reaches it at all.
    let host_can = TcpStream::connect_timeout(
        &match std::net::ToSocketAddrs::to_socket_addrs(&("deb.debian.org", 80))
            .ok()
            .and_then(|mut a| a.next())
        {
            Some(a) => a,
            None => return,
        },
        Duration::from_secs(5),
    )
    .is_ok();
    if host_can {
        let out = sh(
            d,
            &[],
            "wget -q -O - http://deb.debian.org/debian/dists/stable/Release | head -n 3",
        );
        assert!(out.contains("Debian"), "{out}");
    }
}

#[test]
fn published_ports_from_loopback_external_address_and_containers() {
    let d = d();
    let _rm = Rm(d, vec!["pw".into(), "pw2".into()]);
    // A free host port for the test.
    let port = TcpListener::bind("0.0.0.0:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    web(d, "pw", "published", &["-p", &format!("{port}:80")]);
    let ok = wait_until(DEADLINE, || {
        http_get(&format!("127.0.0.1:{port}")).as_deref() == Some("published")
    });
    assert!(
        ok,
        "127.0.0.1:{port} reaches the container\n{}",
        d.log_text()
    );
    if let Some(ip) = host_ip() {
        assert_eq!(
            http_get(&format!("{ip}:{port}")).as_deref(),
            Some("published"),
            "external address {ip}"
        );
        // From another container, through the host's external address.
        let out = sh(
            d,
            &[],
            &format!("wget -q -O - http://{ip}:{port}/index.html"),
        );
        assert_eq!(out, "published");
    }
    // From another container through the bridge's gateway address too.
    let out = sh(
        d,
        &[],
        &format!("wget -q -O - http://{}:{port}/index.html", d.gateway()),
    );
    assert_eq!(out, "published");
    // ps and inspect show the binding as Docker does.
    let ps = d.cli(&["ps", "--filter", "name=pw", "--format", "{{.Ports}}"]);
    assert!(
        ps.out().contains(&format!("0.0.0.0:{port}->80/tcp")),
        "{ps}"
    );
    assert_eq!(
        fmt(
            d,
            "pw",
            "{{(index (index .NetworkSettings.Ports \"80/tcp\") 0).HostPort}}"
        ),
        port.to_string()
    );
    let p = d.cli(&["port", "pw"]);
    assert!(
        p.out().contains(&format!("80/tcp -> 0.0.0.0:{port}")),
        "{p}"
    );

    // The port is taken while pw runs: a second container is refused with Docker's words.
    let o = d.cli(&[
        "run",
        "-d",
        "--name",
        "pw2",
        "-p",
        &format!("{port}:80"),
        "busybox",
        "sleep",
        "30",
    ]);
    o.fails();
    assert!(
        o.stderr.contains(&format!(
            "Bind for 0.0.0.0:{port} failed: port is already allocated"
        )),
        "{o}"
    );
    assert!(
        o.stderr
            .contains("driver failed programming external connectivity on endpoint pw2"),
        "{o}"
    );
    // So is anything else on the host.
    assert!(TcpListener::bind(("0.0.0.0", port)).is_err());
    d.cli(&["rm", "-f", "pw"]).ok();
    // After the container goes, the port is free and no longer forwarded.
    assert!(wait_until(DEADLINE, || TcpListener::bind((
        "0.0.0.0", port
    ))
    .is_ok()));
}

#[test]
fn a_port_taken_on_the_host_is_refused_at_start() {
    let d = d();
    let _rm = Rm(d, vec!["taken".into()]);
    let l = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let o = d.cli(&[
        "run",
        "-d",
        "--name",
        "taken",
        "-p",
        &format!("{port}:80"),
        "busybox",
        "sleep",
        "30",
    ]);
    o.fails();
    assert!(
        o.stderr.contains(&format!(
            "Bind for 0.0.0.0:{port} failed: port is already allocated"
        )),
        "{o}"
    );
    // Docker's status for it: 500.
    let r = d.api("POST", "/containers/taken/start");
    assert_eq!(r.status, 500, "{}", r.text());
    drop(l);
    let r = d.api("POST", "/containers/taken/start");
    assert_eq!(r.status, 204, "{}", r.text());
}

#[test]
fn publish_all_and_port_command() {
    let d = d();
    let _rm = Rm(d, vec!["pall".into()]);
    web(
        d,
        "pall",
        "random",
        &["-P", "--expose", "80", "-p", "127.0.0.1::81/udp"],
    );
    let p = d.cli(&["port", "pall", "80/tcp"]);
    p.ok();
    let hp: u16 = p
        .out()
        .rsplit(':')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("port");
    let range =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut r = range
        .split_whitespace()
        .filter_map(|s| s.parse::<u16>().ok());
    let (lo, hi) = (r.next().unwrap_or(1), r.next().unwrap_or(65535));
    assert!((lo..=hi).contains(&hp), "{hp} in the ephemeral range");
    assert!(wait_until(DEADLINE, || http_get(&format!(
        "127.0.0.1:{hp}"
    ))
    .as_deref()
        == Some("random")));
    let all = d.cli(&["port", "pall"]);
    assert!(all.out().contains("81/udp -> 127.0.0.1:"), "{all}");
    let ps = d.cli(&["ps", "--filter", "name=pall", "--format", "{{.Ports}}"]);
    assert!(ps.out().contains(&format!("0.0.0.0:{hp}->80/tcp")), "{ps}");
    assert!(ps.out().contains("127.0.0.1:"), "{ps}");
    let no = d.cli(&["port", "pall", "9999"]);
    no.fails();
    assert!(
        no.stderr
            .contains("No public port '9999/tcp' published for pall"),
        "{no}"
    );
}
