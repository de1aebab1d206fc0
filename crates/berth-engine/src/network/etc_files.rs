//! A container's /etc/hostname, /etc/hosts and /etc/resolv.conf, written at each start (in place:
//! bind mounts keep pointing at the inode they were given).

use crate::container::ContainerRecord;
use crate::error::Result;
use crate::network::links::LegacyLink;
use crate::Engine;

impl Engine {
    pub(crate) fn write_etc_files(&self, rec: &ContainerRecord) -> Result<()> {
        let hostname = rec.config.hostname.clone();
        // Written in place, not renamed: a bind mount keeps pointing at the inode it was given.
        std::fs::write(&rec.hostname_path, format!("{hostname}\n"))?;
        let mut hosts = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        if !rec.host_config.network_mode.is_host() {
            hosts.push_str(&format!("127.0.1.1\t{hostname}\n"));
        }
        for extra in rec.host_config.extra_hosts.clone().unwrap_or_default() {
            if let Some((h, ip)) = extra.split_once(':') {
                hosts.push_str(&format!("{ip}\t{h}\n"));
            }
        }
        std::fs::write(&rec.hosts_path, hosts)?;
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        std::fs::write(&rec.resolv_conf_path, resolv)?;
        Ok(())
    }
}

impl Engine {
    /// Writes /etc/hosts and /etc/resolv.conf for a networked container (after
    /// `write_etc_files`, which wrote the loopback-only versions).
    pub(crate) fn net_etc_files(&self, rec: &ContainerRecord, links: &[LegacyLink]) -> Result<()> {
        let nets = self.nets();
        let st = nets.lock();
        let Some(sb) = st.containers.get(&rec.id).and_then(|c| c.sandbox.clone()) else {
            return Ok(());
        };
        drop(st);
        let hostname = &rec.config.hostname;
        let mut hosts = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        for extra in rec.host_config.extra_hosts.clone().unwrap_or_default() {
            if let Some((h, ip)) = extra.split_once(':') {
                hosts.push_str(&format!("{ip}\t{h}\n"));
            }
        }
        for l in links {
            let Some(ip) = l.ip else { continue };
            let mut names = format!("{} {}", l.alias, l.hostname);
            if l.alias != l.name {
                names.push(' ');
                names.push_str(&l.name);
            }
            hosts.push_str(&format!("{ip}\t{names}\n"));
        }
        if let Some(ep) = sb.primary() {
            hosts.push_str(&format!("{}\t{hostname}\n", ep.ip));
            if let Some(a) = ep.ip6 {
                hosts.push_str(&format!("{a}\t{hostname}\n"));
            }
        }
        std::fs::write(&rec.hosts_path, hosts)?;
        self.write_resolv_conf(rec, sb.dns)
    }

    /// Writes the container's /etc/resolv.conf: the embedded resolver when `dns` (the container
    /// is on a user-defined network), else `--dns` servers or the host's. A container connected
    /// to its first user-defined network while running gets it rewritten, as Docker does.
    pub(crate) fn write_resolv_conf(&self, rec: &ContainerRecord, dns_on: bool) -> Result<()> {
        let nets = self.nets();
        let hc = &rec.host_config;
        let dns = hc.dns.clone().unwrap_or_default();
        let search = hc.dns_search.clone().unwrap_or_default();
        let opts = hc.dns_options.clone().unwrap_or_default();
        let host_lines = |key: &str| -> Vec<String> {
            nets.host_resolv
                .lines()
                .filter(|l| l.split_whitespace().next() == Some(key))
                .map(|l| l.to_string())
                .collect()
        };
        let mut s = String::new();
        if dns_on {
            // The embedded resolver; it forwards to `--dns` servers or the host's.
            s.push_str("nameserver 127.0.0.11\n");
        } else if !dns.is_empty() {
            for d in &dns {
                s.push_str(&format!("nameserver {d}\n"));
            }
        } else {
            for l in host_lines("nameserver") {
                let ip = l
                    .split_whitespace()
                    .nth(1)
                    .and_then(|a| a.parse::<std::net::IpAddr>().ok());
                if ip.is_some_and(|ip| !ip.is_loopback()) {
                    s.push_str(&l);
                    s.push('\n');
                }
            }
            if s.is_empty() {
                // Docker's fallback when the host only has a local resolver.
                s.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
            }
        }
        if !search.is_empty() {
            s.push_str(&format!("search {}\n", search.join(" ")));
        } else {
            for l in host_lines("search").into_iter().chain(host_lines("domain")) {
                s.push_str(&l);
                s.push('\n');
            }
        }
        let mut o: Vec<String> = Vec::new();
        if dns_on {
            o.push("ndots:0".into());
        }
        if !opts.is_empty() {
            o.extend(opts);
        } else {
            for l in host_lines("options") {
                o.extend(l.split_whitespace().skip(1).map(String::from));
            }
        }
        if !o.is_empty() {
            s.push_str(&format!("options {}\n", o.join(" ")));
        }
        let resolv = s;
        std::fs::write(&rec.resolv_conf_path, resolv)?;
        Ok(())
    }
}
