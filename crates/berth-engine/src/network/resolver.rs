//! The embedded DNS resolver of user-defined networks: served per container, answering names of
//! the containers (and aliases, endpoint links) on the networks it shares.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use berth_net::dns;

use crate::error::Result;
use crate::network::links::parse_link;
use crate::network::{net_err, Endpoint, Networks};
use crate::Engine;

impl Engine {
    pub(crate) fn serve_dns(&self, id: &str, socks: dns::Sockets) -> Result<()> {
        let nets = self.inner.net.clone();
        let cid = id.to_string();
        let lookup: dns::Lookup = Arc::new(move |name: &str| nets.resolve(&cid, name));
        // `--dns` servers of the container, else the host's.
        let custom: Vec<Ipv4Addr> = self
            .lookup(id)
            .map(|c| c.snapshot().host_config.dns.clone().unwrap_or_default())
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        let upstream = if custom.is_empty() {
            self.nets().upstream.clone()
        } else {
            custom
        };
        let h = dns::serve(socks, lookup, upstream).map_err(net_err)?;
        if let Some(old) = self
            .nets()
            .lock()
            .dns
            .insert(id.to_string(), h.abort_handle())
        {
            old.abort();
        }
        Ok(())
    }
}

impl Networks {
    /// The embedded resolver's lookup for container `id`: names on the networks it shares.
    fn resolve(&self, id: &str, name: &str) -> Option<Vec<IpAddr>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let st = self.lock();
        let me = st.containers.get(id)?;
        let my_nets: Vec<&String> = me
            .sandbox
            .as_ref()?
            .endpoints
            .keys()
            .filter(|n| st.nets.get(*n).is_some_and(|r| !r.default_bridge))
            .collect();
        let mut out = Vec::new();
        // Endpoint links first: on a network, `alias` of this container's link names the
        // linked container there.
        for nid in &my_nets {
            let Some(att) = me.networks.get(*nid) else {
                continue;
            };
            for l in &att.links {
                let Ok((target, alias)) = parse_link(l) else {
                    continue;
                };
                if alias.to_ascii_lowercase() != name {
                    continue;
                }
                let target = target.to_ascii_lowercase();
                for c in st.containers.values() {
                    if c.name.to_ascii_lowercase() != target {
                        continue;
                    }
                    if let Some(ep) = c.sandbox.as_ref().and_then(|s| s.endpoints.get(*nid)) {
                        push_addrs(&mut out, ep);
                    }
                }
            }
        }
        if !out.is_empty() {
            return Some(out);
        }
        for (cid, c) in &st.containers {
            let Some(sb) = &c.sandbox else { continue };
            for nid in &my_nets {
                let Some(ep) = sb.endpoints.get(*nid) else {
                    continue;
                };
                let aliases = c
                    .networks
                    .get(*nid)
                    .map(|a| a.aliases.clone())
                    .unwrap_or_default();
                let hit = c.name.to_ascii_lowercase() == name
                    || (name.len() == 12 && cid.starts_with(&name))
                    || aliases.iter().any(|a| a.to_ascii_lowercase() == name);
                if hit {
                    push_addrs(&mut out, ep);
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// An endpoint's addresses, for the resolver (each once).
fn push_addrs(out: &mut Vec<IpAddr>, ep: &Endpoint) {
    for a in std::iter::once(IpAddr::V4(ep.ip)).chain(ep.ip6.map(IpAddr::V6)) {
        if !out.contains(&a) {
            out.push(a);
        }
    }
}
