//! nftables: one table per daemon (`ip <name>`), generated from state and applied with
//! `nft -f -`. Networks change the whole table in one atomic transaction; published ports are
//! map elements added and deleted per container, so a container without published ports costs
//! no `nft` call at all.
//!
//! Outside that table Berth changes one thing: when the host's iptables-nft `ip filter FORWARD`
//! chain drops by policy (a Docker host), forwarded traffic of our bridges would die there, so
//! accept rules for our bridges are inserted at its top, tagged with a comment naming our table,
//! and exactly those are removed again.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::cidr::{Cidr, Cidr6};
use crate::{NetError, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetRules {
    pub bridge: String,
    pub subnet: Cidr,
    pub internal: bool,
    /// A dual-stack network's IPv6 subnet: the `ip6` table of the same name isolates and
    /// masquerades it as the `ip` one does the IPv4 side.
    pub subnet6: Option<Cidr6>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRule {
    /// "tcp" or "udp"
    pub proto: String,
    /// None: every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl PortRule {
    fn element(&self) -> (String, String) {
        let map = format!(
            "{}_{}",
            self.proto,
            if self.host_ip.is_some() { "ip" } else { "any" }
        );
        let key = match self.host_ip {
            Some(ip) => format!("{ip} . {}", self.host_port),
            None => self.host_port.to_string(),
        };
        (map, format!("{key} : {} . {}", self.ip, self.port))
    }
}

#[derive(Default)]
struct State {
    nets: BTreeMap<String, NetRules>,
    ports: BTreeMap<String, Vec<PortRule>>,
}

pub struct Firewall {
    table: String,
    state: Mutex<State>,
}

/// Runs `nft -f -` with `script`.
pub fn run_nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Nft(format!("running nft: {e}")))?;
    if let Some(mut sin) = child.stdin.take() {
        sin.write_all(script.as_bytes())
            .map_err(|e| NetError::Nft(format!("writing to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NetError::Nft(format!("waiting for nft: {e}")))?;
    if !out.status.success() {
        return Err(NetError::Nft(format!(
            "nft: {}\nscript:\n{script}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn nft_out(args: &[&str]) -> Option<String> {
    let out = Command::new("nft").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl Firewall {
    /// `table` must be a plain identifier (letters, digits, `_`, `-`).
    pub fn new(table: &str) -> Firewall {
        Firewall {
            table: table.to_string(),
            state: Mutex::new(State::default()),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn script(&self, st: &State) -> String {
        let t = &self.table;
        let mut s = String::new();
        s.push_str(&format!(
            "table ip {t} {{}}\ndelete table ip {t}\ntable ip {t} {{\n"
        ));
        let mut maps: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for rules in st.ports.values() {
            for r in rules {
                let (m, e) = r.element();
                maps.entry(m).or_default().push(e);
            }
        }
        for proto in ["tcp", "udp"] {
            for (kind, key) in [("any", "inet_service"), ("ip", "ipv4_addr . inet_service")] {
                let name = format!("{proto}_{kind}");
                s.push_str(&format!(
                    "  map {name} {{ type {key} : ipv4_addr . inet_service;"
                ));
                if let Some(els) = maps.get(&name) {
                    s.push_str(&format!(" elements = {{ {} }};", els.join(", ")));
                }
                s.push_str(" }\n");
            }
        }
        let bridges: Vec<String> = st.nets.keys().map(|b| format!("\"{b}\"")).collect();
        s.push_str("  set bridges { type ifname;");
        if !bridges.is_empty() {
            s.push_str(&format!(" elements = {{ {} }};", bridges.join(", ")));
        }
        s.push_str(" }\n");
        let nat: Vec<String> = st
            .nets
            .values()
            .filter(|n| !n.internal)
            .map(|n| n.subnet.normalized().to_string())
            .collect();
        s.push_str("  set nat_subnets { type ipv4_addr; flags interval;");
        if !nat.is_empty() {
            s.push_str(&format!(" elements = {{ {} }};", nat.join(", ")));
        }
        s.push_str(" }\n");
        push_isolation(&mut s, st.nets.values());
        s.push_str(concat!(
            "  chain ports {\n",
            "    dnat ip to ip daddr . tcp dport map @tcp_ip\n",
            "    dnat ip to tcp dport map @tcp_any\n",
            "    dnat ip to ip daddr . udp dport map @udp_ip\n",
            "    dnat ip to udp dport map @udp_any\n",
            "  }\n",
            "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n",
            "    fib daddr type local jump ports\n  }\n",
            "  chain output {\n    type nat hook output priority -100; policy accept;\n",
            "    fib daddr type local jump ports\n  }\n",
            "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
            "    oifname @bridges ip saddr 127.0.0.0/8 masquerade\n",
            "    oifname @bridges ct status dnat ip saddr @nat_subnets masquerade\n",
            "    ip saddr @nat_subnets oifname != @bridges masquerade\n  }\n",
            "  chain forward {\n    type filter hook forward priority filter; policy accept;\n",
            "    ct status dnat accept\n",
            "    iifname vmap @fwd_in\n",
            "    oifname vmap @fwd_out\n  }\n",
            "}\n"
        ));
        s.push_str(&self.script6(st));
        s
    }

    /// The `ip6` table: present only while a network is dual-stack. No published ports (they
    /// are IPv4, as Docker's are without its userland proxy).
    fn script6(&self, st: &State) -> String {
        let t = &self.table;
        let mut s = format!("table ip6 {t} {{}}\ndelete table ip6 {t}\n");
        let v6: Vec<&NetRules> = st.nets.values().filter(|n| n.subnet6.is_some()).collect();
        if v6.is_empty() {
            return s;
        }
        s.push_str(&format!("table ip6 {t} {{\n"));
        let bridges: Vec<String> = st.nets.keys().map(|b| format!("\"{b}\"")).collect();
        s.push_str(&format!(
            "  set bridges {{ type ifname; elements = {{ {} }}; }}\n",
            bridges.join(", ")
        ));
        let nat: Vec<String> = v6
            .iter()
            .filter(|n| !n.internal)
            .filter_map(|n| n.subnet6.map(|c| c.normalized().to_string()))
            .collect();
        s.push_str("  set nat_subnets { type ipv6_addr; flags interval;");
        if !nat.is_empty() {
            s.push_str(&format!(" elements = {{ {} }};", nat.join(", ")));
        }
        s.push_str(" }\n");
        push_isolation(&mut s, v6.iter().copied());
        s.push_str(concat!(
            "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
            "    ip6 saddr @nat_subnets oifname != @bridges masquerade\n  }\n",
            "  chain forward {\n    type filter hook forward priority filter; policy accept;\n",
            "    iifname vmap @fwd_in\n",
            "    oifname vmap @fwd_out\n  }\n",
            "}\n"
        ));
        s
    }

    /// Replaces the set of networks (and rewrites the whole table, ports included, atomically).
    pub fn set_networks(&self, nets: Vec<NetRules>) -> Result<()> {
        for n in &nets {
            if !valid_ifname(&n.bridge) {
                return Err(NetError::InvalidParameter(format!(
                    "invalid bridge name {:?}",
                    n.bridge
                )));
            }
        }
        let mut st = self.lock();
        let old = std::mem::take(&mut st.nets);
        st.nets = nets.into_iter().map(|n| (n.bridge.clone(), n)).collect();
        let script = self.script(&st);
        if let Err(e) = run_nft(&script) {
            st.nets = old;
            return Err(e);
        }
        let bridges: Vec<String> = st.nets.keys().cloned().collect();
        drop(st);
        self.sync_forward_compat(&bridges);
        Ok(())
    }

    /// Publishes `rules` for `owner` (replacing what it had).
    pub fn add_ports(&self, owner: &str, rules: Vec<PortRule>) -> Result<()> {
        let mut st = self.lock();
        let mut script = String::new();
        if let Some(old) = st.ports.get(owner) {
            for r in old {
                let (m, e) = r.element();
                script.push_str(&format!("delete element ip {} {m} {{ {e} }}\n", self.table));
            }
        }
        for r in &rules {
            let (m, e) = r.element();
            script.push_str(&format!("add element ip {} {m} {{ {e} }}\n", self.table));
        }
        if script.is_empty() {
            return Ok(());
        }
        run_nft(&script)?;
        if rules.is_empty() {
            st.ports.remove(owner);
        } else {
            st.ports.insert(owner.to_string(), rules);
        }
        Ok(())
    }

    /// Records `owner`'s rules as already present (re-adoption after a daemon restart).
    pub fn adopt_ports(&self, owner: &str, rules: Vec<PortRule>) {
        if !rules.is_empty() {
            self.lock().ports.insert(owner.to_string(), rules);
        }
    }

    /// Withdraws `owner`'s published ports.
    pub fn remove_ports(&self, owner: &str) -> Result<()> {
        let mut st = self.lock();
        let Some(old) = st.ports.remove(owner) else {
            return Ok(());
        };
        let mut script = String::new();
        for r in &old {
            let (m, e) = r.element();
            script.push_str(&format!("delete element ip {} {m} {{ {e} }}\n", self.table));
        }
        if run_nft(&script).is_err() {
            // Some were gone already: rewrite the table from state instead.
            run_nft(&self.script(&st))?;
        }
        Ok(())
    }

    /// Rewrites the table from the in-memory state (after adopting a previous daemon's).
    pub fn rewrite(&self) -> Result<()> {
        let st = self.lock();
        run_nft(&self.script(&st))
    }

    /// Deletes our table and the FORWARD accept rules we inserted.
    pub fn destroy(&self) {
        let _ = run_nft(&format!(
            "table ip {t} {{}}\ndelete table ip {t}\ntable ip6 {t} {{}}\ndelete table ip6 {t}\n",
            t = self.table
        ));
        self.sync_forward_compat(&[]);
        let mut st = self.lock();
        st.nets.clear();
        st.ports.clear();
    }

    fn tag(&self) -> String {
        format!("berth:{}", self.table)
    }

    /// Keeps accept rules for `bridges` (and only ours) at the top of `ip filter FORWARD` when
    /// that chain exists with policy drop; removes ours otherwise.
    fn sync_forward_compat(&self, bridges: &[String]) {
        let Some(listing) = nft_out(&["-a", "list", "chain", "ip", "filter", "FORWARD"]) else {
            return;
        };
        let tag = self.tag();
        let mut script = String::new();
        for line in listing.lines() {
            if !line.contains(&format!("comment \"{tag}\"")) {
                continue;
            }
            if let Some(h) = line
                .rsplit("# handle ")
                .next()
                .and_then(|h| h.trim().parse::<u64>().ok())
            {
                script.push_str(&format!("delete rule ip filter FORWARD handle {h}\n"));
            }
        }
        if listing.contains("policy drop") {
            for b in bridges {
                for dir in ["iifname", "oifname"] {
                    script.push_str(&format!(
                        "insert rule ip filter FORWARD {dir} \"{b}\" counter accept comment \"{tag}\"\n"
                    ));
                }
            }
        }
        if !script.is_empty() {
            if let Err(e) = run_nft(&script) {
                tracing::warn!("updating ip filter FORWARD: {e}");
            }
        }
    }

    /// Whether our table exists in the kernel.
    pub fn table_exists(&self) -> bool {
        nft_out(&["list", "table", "ip", &self.table]).is_some()
    }
}

/// Isolation between bridges, the same in both families: a chain per bridge (and an `out-`
/// chain for internal ones) and the `fwd_in`/`fwd_out` verdict maps the forward hook jumps by.
fn push_isolation<'a>(s: &mut String, nets: impl Iterator<Item = &'a NetRules>) {
    let mut fin = Vec::new();
    let mut fout = Vec::new();
    for n in nets {
        let b = &n.bridge;
        s.push_str(&format!(
            "  chain in-{b} {{\n    oifname != \"{b}\" oifname @bridges drop\n"
        ));
        if n.internal {
            s.push_str(&format!("    oifname != \"{b}\" drop\n"));
        }
        s.push_str("  }\n");
        fin.push(format!("\"{b}\" : jump in-{b}"));
        if n.internal {
            s.push_str(&format!(
                "  chain out-{b} {{\n    iifname != \"{b}\" drop\n  }}\n"
            ));
            fout.push(format!("\"{b}\" : jump out-{b}"));
        }
    }
    for (name, els) in [("fwd_in", &fin), ("fwd_out", &fout)] {
        s.push_str(&format!("  map {name} {{ type ifname : verdict;"));
        if !els.is_empty() {
            s.push_str(&format!(" elements = {{ {} }};", els.join(", ")));
        }
        s.push_str(" }\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_shape() {
        let fw = Firewall::new("berth_t");
        let mut st = State::default();
        st.nets.insert(
            "bt0".into(),
            NetRules {
                bridge: "bt0".into(),
                subnet: "10.5.0.0/24".parse().unwrap(),
                internal: false,
                subnet6: Some("fd00:5::/64".parse().unwrap()),
            },
        );
        st.nets.insert(
            "bt1".into(),
            NetRules {
                bridge: "bt1".into(),
                subnet: "10.5.1.0/24".parse().unwrap(),
                internal: true,
                subnet6: None,
            },
        );
        st.ports.insert(
            "c".into(),
            vec![PortRule {
                proto: "tcp".into(),
                host_ip: None,
                host_port: 8080,
                ip: Ipv4Addr::new(10, 5, 0, 2),
                port: 80,
            }],
        );
        let s = fw.script(&st);
        assert!(s.contains("elements = { 8080 : 10.5.0.2 . 80 }"));
        assert!(s.contains(
            "set nat_subnets { type ipv4_addr; flags interval; elements = { 10.5.0.0/24 }; }"
        ));
        assert!(s.contains("chain out-bt1"));
        assert!(!s.contains("chain out-bt0"));
        assert!(s.starts_with("table ip berth_t {}\ndelete table ip berth_t\n"));
        // The ip6 table: only the dual-stack network is masqueraded; isolation covers all.
        let six = s.split("table ip6 berth_t {\n").nth(1).expect("ip6 table");
        assert!(six.contains(
            "set nat_subnets { type ipv6_addr; flags interval; elements = { fd00:5::/64 }; }"
        ));
        assert!(six.contains("elements = { \"bt0\", \"bt1\" }"));
        assert!(six.contains("chain in-bt0") && !six.contains("chain in-bt1"));
    }
}

/// Against the kernel, inside a throwaway network namespace (root and `nft` needed; skipped
/// otherwise): a Docker-like `ip filter FORWARD` with policy drop gets accept rules for our
/// bridges, and exactly those go again; rules of others stay.
#[cfg(test)]
mod kernel_tests {
    use super::*;

    fn nft_in_ns(ns: &std::path::Path, args: &'static [&'static str]) -> String {
        crate::netns::enter(ns, move || {
            let o = Command::new("nft")
                .args(args)
                .output()
                .map_err(|e| NetError::Other(e.to_string()))?;
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        })
        .unwrap_or_default()
    }

    #[test]
    fn forward_drop_policy_gets_our_accept_rules_and_loses_only_them() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || Command::new("nft").arg("--version").output().is_err()
        {
            eprintln!("skipped: needs root and nft");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let ns = tmp.path().join("ns");
        crate::netns::create(&ns, |_| Ok(())).unwrap();
        let r = crate::netns::enter(&ns, || {
            run_nft(
                "table ip filter {\n chain FORWARD { type filter hook forward priority filter; policy drop;\n  iifname \"docker0\" accept\n }\n}\n",
            )?;
            let fw = Firewall::new("berth_kt0");
            fw.set_networks(vec![NetRules {
                bridge: "kt0".into(),
                subnet: "10.99.0.0/24".parse().unwrap(),
                internal: false,
                subnet6: None,
            }])?;
            fw.add_ports(
                "c1",
                vec![PortRule {
                    proto: "tcp".into(),
                    host_ip: None,
                    host_port: 8080,
                    ip: Ipv4Addr::new(10, 99, 0, 2),
                    port: 80,
                }],
            )?;
            Ok(fw)
        });
        let fw = match r {
            Ok(fw) => fw,
            Err(e) => {
                crate::netns::remove(&ns);
                panic!("{e}");
            }
        };
        let fwd = nft_in_ns(&ns, &["list", "chain", "ip", "filter", "FORWARD"]);
        assert!(
            fwd.contains(
                "iifname \"kt0\" counter packets 0 bytes 0 accept comment \"berth:berth_kt0\""
            ),
            "{fwd}"
        );
        assert!(fwd.contains("oifname \"kt0\""), "{fwd}");
        let ours = nft_in_ns(&ns, &["list", "table", "ip", "berth_kt0"]);
        assert!(ours.contains("8080 : 10.99.0.2 . 80"), "{ours}");
        crate::netns::enter(&ns, move || {
            fw.remove_ports("c1")?;
            let t = nft_out(&["list", "table", "ip", "berth_kt0"]).unwrap_or_default();
            assert!(!t.contains("8080"), "{t}");
            fw.destroy();
            Ok(())
        })
        .unwrap();
        let fwd = nft_in_ns(&ns, &["list", "chain", "ip", "filter", "FORWARD"]);
        assert!(!fwd.contains("berth"), "{fwd}");
        assert!(
            fwd.contains("iifname \"docker0\" accept"),
            "others' rules stay: {fwd}"
        );
        assert!(!nft_in_ns(&ns, &["list", "tables"]).contains("berth_kt0"));
        crate::netns::remove(&ns);
    }
}
