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

/// A shell function `get URL` that retries for ~5 s (a server just started may not listen yet).
const GET: &str = "get() { for i in $(seq 1 25); do timeout 3 wget -q -O - \"$1\" && return 0; sleep 0.2; done; echo FAIL $1; }; ";

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
    let alloc = || {
        std::fs::read_dir(d.data_root().join("network/ipam"))
            .expect("ipam dir")
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect::<String>()
    };
    let held = |ip: &str| alloc().contains(&format!("\"{ip}\":"));
    // Released in the background right after the exit.
    assert!(
        wait_until(Duration::from_secs(5), || !held(&ips[0]) && !held(&ips[1])),
        "{}",
        alloc()
    );
    assert!(held(&ips[2]) && held(&ips[3]), "{}", alloc());
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

    // Outbound NAT to the Debian mirror apt uses, where the machine reaches it at all.
    let Some((mirror, hostport)) = berth_testkit::debian_mirror() else {
        eprintln!("SKIPPED outbound NAT: apt names no plain-HTTP Debian mirror");
        return;
    };
    let host_can = std::net::ToSocketAddrs::to_socket_addrs(&hostport.as_str())
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok());
    if host_can {
        let out = sh(
            d,
            &[],
            &format!("wget -q -O - {mirror}/dists/stable/Release | head -n 3"),
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
    // 0.0.0.0 as a destination means this host.
    assert_eq!(
        http_get(&format!("0.0.0.0:{port}")).as_deref(),
        Some("published")
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
    let by_publish = d.cli(&[
        "ps",
        "-q",
        "--filter",
        "publish=80",
        "--filter",
        "network=bridge",
        "--filter",
        "name=pw",
    ]);
    assert_eq!(by_publish.out().lines().count(), 1, "{by_publish}");
    let by_other = d.cli(&[
        "ps",
        "-q",
        "--filter",
        "publish=81/udp",
        "--filter",
        "name=pw",
    ]);
    assert_eq!(by_other.out(), "", "{by_other}");
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

/// A user network named `name` (removed on drop, with its containers first).
struct Net<'a>(&'a Daemon, String);
impl Drop for Net<'_> {
    fn drop(&mut self) {
        let _ = self.0.cli(&["network", "rm", &self.1]);
    }
}

#[test]
fn user_network_containers_resolve_each_other_by_name_and_alias() {
    let d = d();
    let net = unique("un");
    let (srv, cli) = (unique("srv"), unique("cli"));
    d.cli(&["network", "create", &net]).ok();
    let _n = Net(d, net.clone());
    let _rm = Rm(d, vec![srv.clone(), cli.clone()]);
    let sid = web(
        d,
        &srv,
        "by-name",
        &["--network", &net, "--network-alias", "webalias"],
    );
    let base = format!("--network={net}");
    let out = sh(
        d,
        &[&base, "--name", &cli],
        &format!(
            "{GET}cat /etc/resolv.conf; for h in {srv} webalias {}; do get http://$h/index.html; done",
            &sid[..12]
        ),
    );
    assert!(out.contains("nameserver 127.0.0.11"), "{out}");
    assert_eq!(out.matches("by-name").count(), 3, "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    // inspect shows the network with its aliases; network inspect lists the container.
    let aliases = fmt(
        d,
        &srv,
        &format!("{{{{json (index .NetworkSettings.Networks \"{net}\").Aliases}}}}"),
    );
    assert!(aliases.contains("webalias"), "{aliases}");
    let ps = d.cli(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("network={net}"),
    ]);
    assert_eq!(ps.out(), sid, "{ps}");
    let ni = d.cli(&["network", "inspect", &net]);
    ni.ok();
    assert!(ni.out().contains(&sid), "{ni}");
    // Unknown names are forwarded to the host's resolver (answered, even if NXDOMAIN).
    let o = d.cli(&[
        "run",
        "--rm",
        &base,
        "busybox",
        "nslookup",
        "no-such-name.invalid",
    ]);
    assert!(
        o.stdout.contains("Server:") && o.stdout.contains("127.0.0.11"),
        "{o}"
    );
    // A rename is resolvable at once.
    let renamed = unique("renamed");
    d.cli(&["rename", &srv, &renamed]).ok();
    let out = sh(
        d,
        &[&base],
        &format!("{GET}get http://{renamed}/index.html"),
    );
    assert_eq!(out, "by-name");
    d.cli(&["rename", &renamed, &srv]).ok();
    // The network can't be removed while a container is on it: Docker's 403.
    let r = d.api("DELETE", &format!("/networks/{net}"));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("has active endpoints"), "{}", r.text());
}

#[test]
fn networks_are_isolated_and_internal_ones_stay_inside() {
    let d = d();
    let (a, b, i) = (unique("na"), unique("nb"), unique("ni"));
    d.cli(&["network", "create", &a]).ok();
    let _na = Net(d, a.clone());
    d.cli(&["network", "create", &b]).ok();
    let _nb = Net(d, b.clone());
    d.cli(&["network", "create", "--internal", &i]).ok();
    let _ni = Net(d, i.clone());
    let wa = unique("wa");
    let _rm = Rm(d, vec![wa.clone()]);
    web(d, &wa, "net-a", &["--network", &a]);
    let ip = fmt(
        d,
        &wa,
        &format!("{{{{(index .NetworkSettings.Networks \"{a}\").IPAddress}}}}"),
    );
    assert!(!ip.is_empty());
    // Same network: reachable by address. Other network: not, and not by name either.
    let same = sh(
        d,
        &["--network", &a],
        &format!("{GET}get http://{ip}/index.html"),
    );
    assert_eq!(same, "net-a");
    let other = sh(d, &["--network", &b], &format!("timeout 3 wget -q -O - http://{ip}/index.html || echo FAIL; nslookup {wa} >/dev/null 2>&1 && echo RESOLVED || echo UNKNOWN"));
    assert!(
        other.contains("FAIL") && other.contains("UNKNOWN"),
        "{other}"
    );
    // Internal: no default route, the host's gateway address is not a way out.
    let l = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    l.set_nonblocking(true).ok();
    let out = sh(
        d,
        &["--network", &i],
        &format!(
            "ip route; echo x | nc -w 2 {} {port} && echo SENT || echo NOPE",
            d.gateway()
        ),
    );
    assert!(!out.contains("default"), "{out}");
    assert!(out.contains("NOPE"), "{out}");
}

#[test]
fn network_commands_and_errors() {
    let d = d();
    let n = unique("cmds");
    let o = d.cli(&[
        "network",
        "create",
        "--subnet",
        "10.250.77.0/24",
        "--gateway",
        "10.250.77.254",
        "--label",
        "k=v",
        &n,
    ]);
    o.ok();
    let id = o.out().to_string();
    let _n = Net(d, n.clone());
    assert!(is_hex(&id, 64), "{o}");
    // Duplicate name: 409; overlapping subnet: 403.
    let dup = d.cli(&["network", "create", &n]);
    dup.fails();
    assert!(
        dup.stderr
            .contains(&format!("network with name {n} already exists")),
        "{dup}"
    );
    let ov = d.cli(&[
        "network",
        "create",
        "--subnet",
        "10.250.77.128/25",
        &unique("ov"),
    ]);
    ov.fails();
    assert!(
        ov.stderr
            .contains("Pool overlaps with other one on this address space"),
        "{ov}"
    );
    // ls shows the predefined networks and ours; filters work.
    let ls = d.cli(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    ls.ok();
    for want in [
        "bridge bridge",
        "host host",
        "none null",
        &format!("{n} bridge"),
    ] {
        assert!(ls.out().lines().any(|l| l == want), "{want}: {ls}");
    }
    let f = d.cli(&["network", "ls", "-q", "--no-trunc", "--filter", "label=k=v"]);
    assert_eq!(f.out(), id);
    // inspect: Docker's shape.
    let v: Value = serde_json::from_str(d.cli(&["network", "inspect", &n]).out()).expect("json");
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "10.250.77.0/24");
    assert_eq!(v[0]["IPAM"]["Config"][0]["Gateway"], "10.250.77.254");
    assert_eq!(v[0]["Labels"]["k"], "v");
    // A container gets an address of the subnet; --ip is honoured.
    let c = unique("ipc");
    let _rm = Rm(d, vec![c.clone()]);
    let out = sh(
        d,
        &["--network", &n, "--ip", "10.250.77.9", "--name", &c],
        "ip -4 addr show eth0; ip route",
    );
    assert!(out.contains("inet 10.250.77.9/24"), "{out}");
    assert!(out.contains("default via 10.250.77.254"), "{out}");
    // Errors.
    let bad = d.cli(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.name=x\"y",
        &unique("bad"),
    ]);
    bad.fails();
    assert!(bad.stderr.contains("invalid bridge name"), "{bad}");
    let r = d.api("GET", "/networks/nope-nope");
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("network nope-nope not found"),
        "{}",
        r.text()
    );
    let r = d.api("DELETE", "/networks/bridge");
    assert_eq!(r.status, 403, "{}", r.text());
    let o = d.cli(&["run", "--rm", "--network", "nope-nope", "busybox", "true"]);
    o.fails();
    assert!(o.stderr.contains("network nope-nope not found"), "{o}");
    // rm removes the bridge and its rules.
    let bridge = format!("br-{}", &id[..12]);
    assert!(links().contains(&bridge));
    d.cli(&["network", "rm", &n]).ok();
    assert!(!links().contains(&bridge), "bridge {bridge} left");
    let t = std::process::Command::new("nft")
        .args(["list", "table", "ip", &d.nft_table()])
        .output()
        .expect("nft");
    assert!(!String::from_utf8_lossy(&t.stdout).contains(&bridge));
    // prune removes unused networks only; filters pick which (a label also keeps this test off
    // the networks other tests of the shared daemon are about to use).
    let tag = unique("prl");
    let (p, q) = (unique("pr"), unique("pq"));
    d.cli(&["network", "create", "--label", &format!("t={tag}"), &p])
        .ok();
    d.cli(&["network", "create", &q]).ok();
    let _q = Net(d, q.clone());
    let label = format!("label=t={tag}");
    // Created just now: `until=1h` (only what is older than an hour) spares it.
    let pr = d.cli(&[
        "network", "prune", "-f", "--filter", &label, "--filter", "until=1h",
    ]);
    pr.ok();
    assert!(!pr.out().contains(&p), "{pr}");
    let pr = d.cli(&["network", "prune", "-f", "--filter", &label]);
    pr.ok();
    assert!(pr.out().contains(&p) && !pr.out().contains(&q), "{pr}");
    assert!(d.cli(&["network", "inspect", &p]).code != 0);
    let bad = d.cli(&["network", "prune", "-f", "--filter", "bogus=1"]);
    bad.fails();
    assert!(bad.stderr.contains("invalid filter 'bogus'"), "{bad}");
}

#[test]
fn connect_and_disconnect_a_running_container() {
    let d = d();
    let n = unique("cn");
    d.cli(&["network", "create", &n]).ok();
    let _n = Net(d, n.clone());
    let w = unique("cw");
    let _rm = Rm(d, vec![w.clone()]);
    web(d, &w, "connected", &[]);
    let probe = |host: &str| {
        sh(
            d,
            &["--network", &n],
            &format!("timeout 3 wget -q -O - http://{host}/index.html || echo FAIL"),
        )
    };
    assert!(probe(&w).contains("FAIL"), "not on the network yet");
    let resolv = || {
        d.cli(&["exec", &w, "cat", "/etc/resolv.conf"])
            .stdout
            .clone()
    };
    assert!(!resolv().contains("127.0.0.11"), "{}", resolv());
    d.cli(&["network", "connect", "--alias", "wal", &n, &w])
        .ok();
    let ip = fmt(
        d,
        &w,
        &format!("{{{{(index .NetworkSettings.Networks \"{n}\").IPAddress}}}}"),
    );
    assert!(!ip.is_empty());
    // Its first user-defined network gives it the embedded resolver at once, as in Docker.
    assert!(
        resolv().starts_with("nameserver 127.0.0.11\n"),
        "{}",
        resolv()
    );
    let o = d.cli(&["exec", &w, "nslookup", "wal"]);
    assert!(o.stdout.contains(&ip), "{o}");
    let after = sh(
        d,
        &["--network", &n],
        &format!("{GET}get http://wal/index.html; get http://{w}/index.html"),
    );
    assert_eq!(after.matches("connected").count(), 2, "{after}");
    // Still on the default bridge too.
    assert!(!fmt(d, &w, "{{.NetworkSettings.IPAddress}}").is_empty());
    d.cli(&["network", "disconnect", &n, &w]).ok();
    assert!(probe("wal").contains("FAIL"));
    assert!(probe(&ip).contains("FAIL"));
    // Disconnected, the network can go although the container runs.
    d.cli(&["network", "rm", &n]).ok();
    // Off its last network too, it restarts with loopback only.
    d.cli(&["network", "disconnect", "bridge", &w]).ok();
    d.cli(&["restart", "-t", "0", &w]).ok();
    assert_eq!(fmt(d, &w, "{{.NetworkSettings.IPAddress}}"), "");
    assert_eq!(
        fmt(d, &w, "{{len .NetworkSettings.Networks}}"),
        "0",
        "{}",
        d.cli(&["inspect", &w])
    );
}

/// Host-side veths whose peer is in a netns pinned under `exec_root` — approximated by the
/// count of pinned namespaces (each holds its container's veths).
fn pinned_netns(d: &Daemon) -> usize {
    std::fs::read_dir(d.exec_root().join("netns"))
        .map(|rd| rd.flatten().count())
        .unwrap_or(0)
}

#[test]
fn nothing_is_left_after_network_rm_and_daemon_shutdown() {
    let d = Daemon::start(BIN);
    d.load_busybox();
    let before: std::collections::BTreeSet<String> = links().into_iter().collect();
    assert!(before.contains(&d.bridge()), "the daemon made its bridge");
    assert!(nft_has_table(&d.nft_table()));
    let n = unique("gone");
    let id = d.cli(&["network", "create", &n]).ok().out().to_string();
    let br = format!("br-{}", &id[..12]);
    assert!(links().contains(&br));
    run_d(
        &d,
        &[
            "--name",
            "p1",
            "-p",
            "127.0.0.1::80",
            "busybox",
            "sleep",
            "60",
        ],
    );
    run_d(
        &d,
        &["--name", "p2", "--network", &n, "busybox", "sleep", "60"],
    );
    assert_eq!(pinned_netns(&d), 2);
    // The host ends of the containers' veths, from the daemon's own records.
    let mut veths = Vec::new();
    for e in std::fs::read_dir(d.exec_root().join("network"))
        .expect("dir")
        .flatten()
    {
        let v: Value =
            serde_json::from_slice(&std::fs::read(e.path()).expect("read")).expect("json");
        for ep in v["endpoints"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
        {
            veths.push(ep["host_veth"].as_str().unwrap_or_default().to_string());
        }
    }
    assert_eq!(veths.len(), 2, "one veth per container");
    for v in &veths {
        assert!(links().contains(v), "{v} exists");
    }
    d.cli(&["rm", "-f", "p1", "p2"]).ok();
    assert!(
        wait_until(DEADLINE, || pinned_netns(&d) == 0),
        "netns unpinned on rm"
    );
    d.cli(&["network", "rm", &n]).ok();
    assert!(!links().contains(&br), "network rm deletes its bridge");
    assert!(d.stop(Duration::from_secs(15)).is_some_and(|s| s.success()));
    // Host veths are deleted in the background after an exit; they go within moments.
    assert!(wait_until(Duration::from_secs(5), || {
        let l = links();
        veths.iter().all(|v| !l.contains(v))
    }));
    let after = links();
    assert!(
        !after.contains(&d.bridge()),
        "shutdown deletes the default bridge"
    );
    assert!(
        !nft_has_table(&d.nft_table()),
        "shutdown deletes our nftables table"
    );
    let left: Vec<&String> = veths.iter().filter(|v| after.contains(*v)).collect();
    assert!(left.is_empty(), "veths left: {left:?}");
    // The host's own tables are untouched.
    let t = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .expect("nft");
    let t = String::from_utf8_lossy(&t.stdout);
    assert!(
        t.lines()
            .all(|l| l != format!("table ip {}", d.nft_table())),
        "{t}"
    );
}

#[test]
fn kill9_of_the_daemon_keeps_networking_ports_and_names() {
    let d = Daemon::start(BIN);
    d.load_busybox();
    let n = unique("live");
    d.cli(&["network", "create", &n]).ok();
    let port = TcpListener::bind("0.0.0.0:0")
        .expect("bind")
        .local_addr()
        .expect("a")
        .port();
    web(
        &d,
        "web",
        "alive",
        &["--network", &n, "-p", &format!("{port}:80")],
    );
    run_d(&d, &["--name", "asker", "--network", &n, "busybox", "sh", "-c",
        "while :; do if nslookup web 127.0.0.11 >/dev/null 2>&1; then echo OK; else echo NO; fi; sleep 0.2; done"]);
    run_d(
        &d,
        &[
            "--name",
            "shortlived",
            "-p",
            "127.0.0.1::80",
            "busybox",
            "sleep",
            "2",
        ],
    );
    let short_ip = fmt(&d, "shortlived", "{{.NetworkSettings.IPAddress}}");
    assert!(wait_until(DEADLINE, || http_get(&format!(
        "127.0.0.1:{port}"
    ))
    .as_deref()
        == Some("alive")));
    assert!(wait_until(DEADLINE, || d
        .cli(&["logs", "asker"])
        .stdout
        .contains("OK")));

    d.kill9();
    // The kernel keeps forwarding while the daemon is gone.
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}")).as_deref(),
        Some("alive")
    );
    std::thread::sleep(Duration::from_secs(3)); // shortlived exits meanwhile
    d.restart();
    // Ports, forwarding and the held host port are back.
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}")).as_deref(),
        Some("alive")
    );
    if let Some(ip) = host_ip() {
        assert_eq!(http_get(&format!("{ip}:{port}")).as_deref(), Some("alive"));
    }
    assert!(
        TcpListener::bind(("0.0.0.0", port)).is_err(),
        "the host port is held again"
    );
    // The running container's resolver answers again.
    let lines_before = d.cli(&["logs", "asker"]).stdout.lines().count();
    assert!(
        wait_until(DEADLINE, || {
            let l = d.cli(&["logs", "asker"]).stdout;
            l.lines().skip(lines_before).any(|x| x == "OK")
        }),
        "resolver re-bound after restart\n{}",
        d.log_text()
    );
    // New containers resolve the old ones.
    let out = sh(
        &d,
        &["--network", &n],
        &format!("{GET}get http://web/index.html"),
    );
    assert_eq!(out, "alive");
    // The container that died meanwhile gave its address and namespace back.
    expect_status(&d, "shortlived", "exited");
    assert_eq!(fmt(&d, "shortlived", "{{.NetworkSettings.IPAddress}}"), "");
    let alloc: String = std::fs::read_dir(d.data_root().join("network/ipam"))
        .expect("ipam")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(!alloc.contains(&format!("\"{short_ip}\":")), "{alloc}");
    assert_eq!(pinned_netns(&d), 2);
    // A SIGTERM restart with containers running keeps them networked too.
    d.restart();
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}")).as_deref(),
        Some("alive")
    );
    d.cli(&["rm", "-f", "web", "asker", "shortlived"]).ok();
    d.cli(&["network", "rm", &n]).ok();
}

#[test]
fn the_docker_cli_drives_networks_and_ports() {
    let d = d();
    if d.docker(&["version"]).is_none() {
        eprintln!("no docker CLI: skipped");
        return;
    }
    let dk = |a: &[&str]| d.docker(a).expect("docker CLI");
    let n = unique("dkn");
    let c = unique("dkc");
    let _rm = Rm(d, vec![c.clone()]);
    dk(&["network", "create", "--label", "via=docker", &n]).ok();
    let _n = Net(d, n.clone());
    let ls = dk(&[
        "network",
        "ls",
        "--filter",
        "label=via=docker",
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(ls.ok().out(), n);
    let insp = dk(&[
        "network",
        "inspect",
        "--format",
        "{{.Driver}} {{.Scope}} {{.Internal}}",
        &n,
    ]);
    assert_eq!(insp.ok().out(), "bridge local false");
    dk(&[
        "run",
        "-d",
        "--name",
        &c,
        "--network",
        &n,
        "-p",
        "127.0.0.1::80",
        "busybox",
        "sleep",
        "60",
    ])
    .ok();
    let p = dk(&["port", &c, "80"]);
    assert!(p.ok().out().starts_with("127.0.0.1:"), "{p}");
    let ps = dk(&[
        "ps",
        "--filter",
        &format!("name={c}"),
        "--format",
        "{{.Ports}} {{.Networks}}",
    ]);
    assert!(ps.ok().out().contains("->80/tcp"), "{ps}");
    assert!(ps.out().contains(&n), "{ps}");
    let ip = dk(&[
        "inspect",
        "--format",
        &format!("{{{{(index .NetworkSettings.Networks \"{n}\").IPAddress}}}}"),
        &c,
    ]);
    assert!(!ip.ok().out().is_empty(), "{ip}");
    let rm = dk(&["network", "rm", &n]);
    rm.fails();
    assert!(rm.stderr.contains("has active endpoints"), "{rm}");
}

#[test]
fn host_and_none_network_modes() {
    let d = d();
    let host = sh(d, &["--network", "host"], "ip -o link show");
    assert!(host.contains(&d.bridge()), "the host's interfaces: {host}");
    let none = sh(d, &["--network", "none"], "ip -o link show; ip -4 addr");
    assert!(none.contains("lo:") && !none.contains("eth0"), "{none}");
    assert!(!none.contains(&d.bridge()));
    // inspect names the mode's network.
    let c = unique("nonec");
    let _rm = Rm(d, vec![c.clone()]);
    run_d(
        d,
        &["--name", &c, "--network", "none", "busybox", "sleep", "30"],
    );
    assert_eq!(fmt(d, &c, "{{.HostConfig.NetworkMode}}"), "none");
    assert_eq!(fmt(d, &c, "{{.NetworkSettings.IPAddress}}"), "");
    let nets = fmt(
        d,
        &c,
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
    );
    assert_eq!(nets.trim(), "none");
    // Aliases are for user networks only.
    let o = d.cli(&["run", "--rm", "--network-alias", "x", "busybox", "true"]);
    o.fails();
    assert!(
        o.stderr
            .contains("network-scoped aliases are only supported for user-defined networks"),
        "{o}"
    );
}

#[test]
fn dns_options_shape_resolv_conf() {
    let d = d();
    let out = sh(
        d,
        &[
            "--dns",
            "10.255.255.53",
            "--dns-search",
            "example.test",
            "--dns-option",
            "timeout:2",
        ],
        "cat /etc/resolv.conf",
    );
    assert!(out.contains("nameserver 10.255.255.53"), "{out}");
    assert!(out.contains("search example.test"), "{out}");
    assert!(out.contains("options timeout:2"), "{out}");
    let n = unique("dnsn");
    d.cli(&["network", "create", &n]).ok();
    let _n = Net(d, n.clone());
    let out = sh(
        d,
        &["--network", &n, "--dns-search", "example.test"],
        "cat /etc/resolv.conf",
    );
    assert!(out.contains("nameserver 127.0.0.11"), "{out}");
    assert!(!out.contains("10.255.255.53"), "{out}");
    assert!(out.contains("search example.test"), "{out}");
    assert!(out.contains("options ndots:0"), "{out}");
}

#[test]
fn a_container_reaches_its_own_published_port_through_the_host() {
    let d = d();
    let port = TcpListener::bind("0.0.0.0:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let gw = d.gateway();
    let out = sh(
        d,
        &["-p", &format!("{port}:80")],
        &format!(
            "{GET}mkdir -p /www && echo hairpin > /www/index.html && httpd -p 80 -h /www && get http://{gw}:{port}/index.html"
        ),
    );
    assert_eq!(out, "hairpin");
}

/// A /24 of 10.251.0.0/16 for this test process (test daemons lease 10.200-239.x.x).
fn own_subnet(k: u32) -> String {
    format!("10.251.{}", (std::process::id() * 3 + k) % 256)
}

#[test]
fn ip_ranges_aux_addresses_macs_and_link_local_addresses() {
    let d = d();
    let n = unique("rng");
    let p = own_subnet(0);
    d.cli(&[
        "network",
        "create",
        "--subnet",
        &format!("{p}.0/24"),
        "--ip-range",
        &format!("{p}.128/25"),
        "--gateway",
        &format!("{p}.1"),
        "--aux-address",
        &format!("router={p}.129"),
        &n,
    ])
    .ok();
    let _n = Net(d, n.clone());
    let v: Value = serde_json::from_str(d.cli(&["network", "inspect", &n]).out()).expect("json");
    let cfg = &v[0]["IPAM"]["Config"][0];
    assert_eq!(cfg["IPRange"], format!("{p}.128/25"), "{v}");
    assert_eq!(
        cfg["AuxiliaryAddresses"]["router"],
        format!("{p}.129"),
        "{v}"
    );
    // Dynamic addresses come from the range and skip the auxiliary one.
    let (a, b) = (unique("rga"), unique("rgb"));
    let _rm = Rm(d, vec![a.clone(), b.clone()]);
    let out = sh(
        d,
        &[
            "--network",
            &n,
            "--name",
            &a,
            "--mac-address",
            "02:42:de:ad:be:ef",
            "--link-local-ip",
            "169.254.7.7",
        ],
        "ip addr show eth0",
    );
    assert!(out.contains(&format!("inet {p}.130/24")), "{out}");
    assert!(out.contains("link/ether 02:42:de:ad:be:ef"), "{out}");
    assert!(out.contains("inet 169.254.7.7/16"), "{out}");
    // The container-wide MAC on the default bridge; inspect shows it and the echoes.
    run_d(
        d,
        &[
            "--name",
            &b,
            "--mac-address",
            "02:42:0a:0b:0c:0d",
            "busybox",
            "sleep",
            "60",
        ],
    );
    assert_eq!(
        fmt(d, &b, "{{.NetworkSettings.MacAddress}}"),
        "02:42:0a:0b:0c:0d"
    );
    let o = d.cli(&["exec", &b, "cat", "/sys/class/net/eth0/address"]);
    o.ok();
    assert_eq!(o.out(), "02:42:0a:0b:0c:0d");
    // network connect with an address and a MAC of its own.
    d.cli(&["network", "connect", "--ip", &format!("{p}.7"), &n, &b])
        .ok();
    let o = d.cli(&["exec", &b, "ip", "-4", "addr", "show", "eth1"]);
    o.ok();
    assert!(o.out().contains(&format!("inet {p}.7/24")), "{o}");
    let ipam = fmt(
        d,
        &b,
        &format!("{{{{json (index .NetworkSettings.Networks \"{n}\").IPAMConfig}}}}"),
    );
    assert!(
        ipam.contains(&format!("\"IPv4Address\":\"{p}.7\"")),
        "{ipam}"
    );
    // The auxiliary address is never given, not even when asked for.
    let bad = d.cli(&["network", "connect", "--ip", &format!("{p}.129"), &n, &a]);
    bad.fails();
    // Bad MACs are refused with a 400.
    let bad = d.cli(&["create", "--mac-address", "zz:42:0a:0b:0c:0d", "busybox"]);
    bad.fails();
    assert!(bad.stderr.contains("invalid MAC address"), "{bad}");
    // Addresses of one's own only on user networks; a malformed one is named with its family.
    let bad = d.cli(&["create", "--ip", &format!("{p}.9"), "busybox"]);
    bad.fails();
    assert!(
        bad.stderr
            .contains("user specified IP address is supported on user defined networks only"),
        "{bad}"
    );
    let bad = d.cli(&[
        "create",
        "--network",
        &n,
        "--ip6",
        "2001:db8::zz",
        "busybox",
    ]);
    bad.fails();
    assert!(bad.stderr.contains("invalid IPv6 address"), "{bad}");
}

#[test]
fn legacy_links_give_env_hosts_and_can_be_removed() {
    let d = d();
    let (srv, par) = (unique("lsrv"), unique("lpar"));
    let _rm = Rm(d, vec![srv.clone(), par.clone()]);
    run_d(
        d,
        &[
            "--name", &srv, "-e", "FOO=1", "--expose", "80", "busybox", "sleep", "60",
        ],
    );
    let ip = fmt(d, &srv, "{{.NetworkSettings.IPAddress}}");
    assert!(!ip.is_empty());
    let out = sh(
        d,
        &["--link", &format!("{srv}:db")],
        "env | sort; echo ---; cat /etc/hosts",
    );
    for want in [
        "DB_ENV_FOO=1".to_string(),
        format!("DB_PORT=tcp://{ip}:80"),
        format!("DB_PORT_80_TCP_ADDR={ip}"),
        "DB_PORT_80_TCP_PROTO=tcp".to_string(),
        format!("{ip}\tdb {}", &fmt(d, &srv, "{{.Config.Hostname}}")),
    ] {
        assert!(out.contains(&want), "{want}: {out}");
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("DB_NAME=/") && l.ends_with("/db")),
        "{out}"
    );
    // A link to a missing container is refused at create; to a stopped one at start.
    let bad = d.cli(&["create", "--link", "no-such-container-x:db", "busybox"]);
    bad.fails();
    assert!(
        bad.stderr
            .contains("Could not get container for no-such-container-x"),
        "{bad}"
    );
    // rm --link drops the parent's link; both containers stay.
    d.cli(&[
        "create",
        "--name",
        &par,
        "--link",
        &format!("{srv}:db"),
        "busybox",
    ])
    .ok();
    assert!(fmt(d, &par, "{{json .HostConfig.Links}}").contains("db"));
    d.cli(&["rm", "--link", &format!("{par}/db")]).ok();
    assert_eq!(fmt(d, &par, "{{json .HostConfig.Links}}"), "[]");
    let r = d.api("DELETE", &format!("/containers/{par}/db?link=1"));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(d.inspect(&srv).is_some() && d.inspect(&par).is_some());
}

#[test]
fn endpoint_links_and_undeclared_networks() {
    let d = d();
    let n = unique("eln");
    d.cli(&["network", "create", &n]).ok();
    let _n = Net(d, n.clone());
    let (up, c) = (unique("up"), unique("elc"));
    let _rm = Rm(d, vec![up.clone(), c.clone()]);
    run_d(
        d,
        &["--name", &up, "--network", &n, "busybox", "sleep", "60"],
    );
    let ip = fmt(
        d,
        &up,
        &format!("{{{{(index .NetworkSettings.Networks \"{n}\").IPAddress}}}}"),
    );
    let out = sh(
        d,
        &["--network", &n, "--link", &format!("{up}:bar")],
        "nslookup bar 2>&1",
    );
    assert!(out.contains(&ip), "bar resolves to {ip}: {out}");
    // network connect --link (after a disconnect, as docker-py does), and inspect's Links.
    run_d(
        d,
        &["--name", &c, "--network", &n, "busybox", "sleep", "60"],
    );
    d.cli(&["network", "disconnect", &n, &c]).ok();
    d.cli(&["network", "connect", "--link", &format!("{up}:baz"), &n, &c])
        .ok();
    let links = fmt(
        d,
        &c,
        &format!("{{{{json (index .NetworkSettings.Networks \"{n}\").Links}}}}"),
    );
    assert_eq!(links, format!("[\"{up}:baz\"]"));
    let o = d.cli(&["exec", &c, "nslookup", "baz"]);
    assert!(o.stdout.contains(&ip), "{o}");
    // Create with an endpoint on a network that does not exist yet: dockerd accepts it (and
    // shows it in inspect); the start is its 404 until the network exists.
    let late = unique("late-net");
    let body = json!({
        "Image": "busybox",
        "Cmd": ["sleep", "300"],
        "HostConfig": {"NetworkMode": n},
        "NetworkingConfig": {"EndpointsConfig": {
            n.clone(): {"Aliases": ["x"], "DriverOpts": {"k": "v"}},
            late.clone(): {"Aliases": ["lateal"], "IPAMConfig": {"IPv4Address": null, "IPv6Address": null}}
        }}
    })
    .to_string();
    let r = d
        .api_with(
            "POST",
            "/containers/create",
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
        .expect("create");
    assert_eq!(r.status, 201, "{}", r.text());
    let id = serde_json::from_slice::<Value>(&r.body).expect("json")["Id"]
        .as_str()
        .expect("id")
        .to_string();
    let _rm = Rm(d, vec![id.clone()]);
    assert_eq!(
        fmt(
            d,
            &id,
            &format!("{{{{json (index .NetworkSettings.Networks \"{late}\").Aliases}}}}")
        ),
        "[\"lateal\"]"
    );
    let r = d.api("POST", &format!("/containers/{id}/start"));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.text().contains(&format!("network {late} not found")),
        "{}",
        r.text()
    );
    d.cli(&["network", "create", &late]).ok();
    d.cli(&["start", &id]).ok();
    let ip = fmt(
        d,
        &id,
        &format!("{{{{(index .NetworkSettings.Networks \"{late}\").IPAddress}}}}"),
    );
    assert!(!ip.is_empty(), "not attached to {late} once it exists");
    d.rm_f(&[&id]);
    d.cli(&["network", "rm", &late]).ok();
}

#[test]
fn ipv6_networks_are_dual_stack() {
    let d = d();
    let n = unique("v6n");
    let pre = format!("fd42:{:x}:{:x}", std::process::id() % 0xffff, 0xb6);
    let p4 = own_subnet(1);
    d.cli(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        &format!("{p4}.0/24"),
        "--subnet",
        &format!("{pre}::/64"),
        "--aux-address",
        &format!("r6={pre}::2"),
        &n,
    ])
    .ok();
    let _n = Net(d, n.clone());
    let v: Value = serde_json::from_str(d.cli(&["network", "inspect", &n]).out()).expect("json");
    assert_eq!(v[0]["EnableIPv6"], true, "{v}");
    assert_eq!(
        v[0]["IPAM"]["Config"][1]["Subnet"],
        format!("{pre}::/64"),
        "{v}"
    );
    assert_eq!(
        v[0]["IPAM"]["Config"][1]["Gateway"],
        format!("{pre}::1"),
        "{v}"
    );
    let (a, b) = (unique("v6a"), unique("v6b"));
    let _rm = Rm(d, vec![a.clone(), b.clone()]);
    run_d(
        d,
        &[
            "--name",
            &a,
            "--network",
            &n,
            "--ip6",
            &format!("{pre}::a"),
            "busybox",
            "sleep",
            "60",
        ],
    );
    let key = format!("(index .NetworkSettings.Networks \"{n}\")");
    assert_eq!(
        fmt(d, &a, &format!("{{{{{key}.GlobalIPv6Address}}}}")),
        format!("{pre}::a")
    );
    assert_eq!(
        fmt(d, &a, &format!("{{{{{key}.IPv6Gateway}}}}")),
        format!("{pre}::1")
    );
    // The other container: a dynamic address of each family, a route, and ping over IPv6
    // to the first one and to the gateway on the bridge.
    let out = sh(
        d,
        &["--name", &b, "--network", &n],
        &format!(
            "ip -6 addr show eth0; ip -4 addr show eth0; ip -6 route; ping -6 -c 1 -W 5 {pre}::a && echo PING-A-OK; ping -6 -c 1 -W 5 {pre}::1 && echo PING-GW-OK; nslookup {a} 2>&1"
        ),
    );
    // ::2 is an aux address: never given.
    assert!(out.contains(&format!("inet6 {pre}::3/64")), "{out}");
    assert!(out.contains(&format!("inet {p4}.")), "{out}");
    assert!(
        out.contains(&format!("default via {pre}::1 dev eth0")),
        "{out}"
    );
    assert!(
        out.contains("PING-A-OK") && out.contains("PING-GW-OK"),
        "{out}"
    );
    // The resolver answers AAAA with the IPv6 address.
    assert!(out.contains(&format!("Address: {pre}::a")), "{out}");
    // An address outside the subnet is refused; so is --ipv6 without an IPv6 subnet.
    let bad = d.cli(&[
        "run",
        "--rm",
        "--network",
        &n,
        "--ip6",
        "fd43::5",
        "busybox",
        "true",
    ]);
    bad.fails();
    let bad = d.cli(&["network", "create", "--ipv6", &unique("v6x")]);
    bad.fails();
    // The ip6 table lives as long as a dual-stack network does.
    let ip6_table = |d: &Daemon| {
        std::process::Command::new("nft")
            .args(["list", "table", "ip6", &d.nft_table()])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    assert!(ip6_table(d));
    d.rm_f(&[&a]);
    d.cli(&["network", "rm", &n]).ok();
    assert!(!ip6_table(d));
}

/// `--network container:<x>`: the container joins x's network namespace (its localhost is x's)
/// and takes x's hostname and /etc files; what would configure a network of its own is refused
/// with dockerd's words, and so is joining a container that does not run.
#[test]
fn container_network_mode_shares_the_namespace() {
    let d = d();
    let w = unique("cnw");
    let mut rm = Rm(d, vec![w.clone()]);
    web(d, &w, "shared-ns", &[]);
    let mode = format!("container:{w}");
    let out = sh(
        d,
        &["--network", &mode],
        &format!("{GET}get http://127.0.0.1/index.html; hostname; cat /etc/hosts"),
    );
    assert!(out.starts_with("shared-ns\n"), "{out}");
    let w_host = fmt(d, &w, "{{.Config.Hostname}}");
    let w_hosts = d.cli(&["exec", &w, "cat", "/etc/hosts"]).stdout.clone();
    assert!(
        out.contains(&format!("shared-ns\n{w_host}\n{}", w_hosts.trim())),
        "{out}"
    );
    // Its interfaces are w's: the same eth0 address.
    let ip = fmt(d, &w, "{{.NetworkSettings.IPAddress}}");
    assert!(sh(d, &["--network", &mode], "ip -4 addr").contains(&ip));
    let j = unique("cnj");
    rm.add(&j);
    run_d(
        d,
        &["--name", &j, "--network", &mode, "busybox", "sleep", "30"],
    );
    assert_eq!(fmt(d, &j, "{{.HostConfig.NetworkMode}}"), mode);
    assert_eq!(fmt(d, &j, "{{.NetworkSettings.IPAddress}}"), "");

    for (extra, words) in [
        (
            vec!["-p", "8080:80"],
            "conflicting options: port publishing and the container type network mode",
        ),
        (
            vec!["--hostname", "x"],
            "conflicting options: hostname and the network mode",
        ),
        (
            vec!["--dns", "1.1.1.1"],
            "conflicting options: dns and the network mode",
        ),
        (
            vec!["--add-host", "a:1.2.3.4"],
            "conflicting options: custom host-to-IP mapping and the network mode",
        ),
    ] {
        let mut a = vec!["create", "--network", &mode];
        a.extend(extra.iter().copied());
        a.extend(["busybox", "true"]);
        let o = d.cli(&a);
        o.fails();
        assert!(o.stderr.contains(words), "{extra:?}: {o}");
    }
    let s = unique("cns");
    rm.add(&s);
    d.cli(&["create", "--name", &s, "busybox", "true"]).ok();
    let o = d.cli(&[
        "run",
        "--rm",
        "--network",
        &format!("container:{s}"),
        "busybox",
        "true",
    ]);
    o.fails();
    assert!(
        o.stderr.contains(&format!(
            "cannot join network of a non running container: {s}"
        )),
        "{o}"
    );
    let o = d.cli(&["run", "--rm", "--network", "container:", "busybox", "true"]);
    o.fails();
    assert!(
        o.stderr
            .contains("invalid container format container:<name|id>"),
        "{o}"
    );
}
