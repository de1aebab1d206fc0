//! Networking as the API shows it: a container's `NetworkSettings`, `ps` ports and filters, and a
//! network's inspect view.

use std::collections::BTreeMap;

use berth_api::network::{Ipam as ApiIpam, IpamConfig, NetworkContainer, NetworkInspect};
use berth_api::types::{
    EndpointSettings, NetworkMode, NetworkSettings, Port, PortBinding, PortMap,
};
use berth_net::ports;

use crate::container::ContainerRecord;
use crate::error::Result;
use crate::network::ports::filter_ports;
use crate::network::NetworkRecord;
use crate::Engine;

impl Engine {
    /// NetworkSettings of inspect.
    pub(crate) fn net_settings(&self, rec: &ContainerRecord) -> NetworkSettings {
        let nets = self.nets();
        let st = nets.lock();
        let cn = st.containers.get(&rec.id).cloned().unwrap_or_default();
        let mut ns = NetworkSettings::default();
        let mut ports: PortMap = BTreeMap::new();
        for k in rec.config.exposed_ports.clone().unwrap_or_default().keys() {
            ports.insert(k.clone(), None);
        }
        let mut networks = BTreeMap::new();
        let sb = cn.sandbox.clone();
        if let Some(sb) = &sb {
            ns.sandbox_key = sb.netns.display().to_string();
            ns.sandbox_id = rec.id.clone();
            for p in &sb.ports {
                let key = format!("{}/{}", p.container_port, p.proto);
                let e = ports
                    .entry(key)
                    .or_insert(None)
                    .get_or_insert_with(Vec::new);
                e.push(PortBinding {
                    host_ip: p
                        .host_ip
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    host_port: p.host_port.to_string(),
                });
            }
        }
        let mode = &rec.host_config.network_mode;
        if matches!(mode, NetworkMode::Host | NetworkMode::None) {
            let mode = mode.to_string();
            if let Some(n) = st.nets.values().find(|n| n.name == mode) {
                networks.insert(
                    n.name.clone(),
                    EndpointSettings {
                        network_id: n.id.clone(),
                        ..Default::default()
                    },
                );
            }
        }
        for (nid, att) in &cn.networks {
            let Some(n) = st.nets.get(nid) else { continue };
            let mut es = EndpointSettings {
                network_id: n.id.clone(),
                aliases: (!att.aliases.is_empty()).then(|| att.aliases.clone()),
                ipam_config: att.ipam_config.clone(),
                links: (!att.links.is_empty()).then(|| att.links.clone()),
                driver_opts: (!att.driver_opts.is_empty()).then(|| att.driver_opts.clone()),
                mac_address: att.mac.clone().unwrap_or_default(),
                ..Default::default()
            };
            if !n.default_bridge {
                let mut dn = vec![cn.name.clone(), rec.id[..12].to_string()];
                dn.extend(att.aliases.iter().cloned());
                es.dns_names = Some(dn);
            }
            if let Some(ep) = sb.as_ref().and_then(|s| s.endpoints.get(nid)) {
                es.endpoint_id = ep.endpoint_id.clone();
                es.ip_address = ep.ip.to_string();
                es.ip_prefix_len = ep.prefix as i64;
                es.gateway = n.gateway.map(|g| g.to_string()).unwrap_or_default();
                es.mac_address = ep.mac_string();
                if let Some(a) = ep.ip6 {
                    es.global_ipv6_address = a.to_string();
                    es.global_ipv6_prefix_len = ep.prefix6 as i64;
                    es.ipv6_gateway = n.gateway6.map(|g| g.to_string()).unwrap_or_default();
                }
                if n.default_bridge {
                    ns.ip_address = es.ip_address.clone();
                    ns.ip_prefix_len = es.ip_prefix_len;
                    ns.gateway = es.gateway.clone();
                    ns.mac_address = es.mac_address.clone();
                    ns.endpoint_id = es.endpoint_id.clone();
                }
            }
            networks.insert(n.name.clone(), es);
        }
        // Named at create, not there yet: shown as given, as dockerd does.
        for (name, ep) in &cn.pending {
            networks.entry(name.clone()).or_insert_with(|| ep.clone());
        }
        ns.ports = Some(ports);
        ns.networks = Some(networks);
        ns
    }

    /// `Ports` of ps, as Docker lists them.
    pub(crate) fn net_ps_ports(&self, rec: &ContainerRecord) -> Vec<Port> {
        let st = self.nets().lock();
        let sb = st.containers.get(&rec.id).and_then(|c| c.sandbox.clone());
        let mut out = Vec::new();
        let mut published = std::collections::BTreeSet::new();
        if let Some(sb) = &sb {
            for p in &sb.ports {
                published.insert((p.container_port, p.proto.clone()));
                out.push(Port {
                    ip: p
                        .host_ip
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    private_port: p.container_port,
                    public_port: Some(p.host_port),
                    r#type: p.proto.clone(),
                });
            }
        }
        for k in rec.config.exposed_ports.clone().unwrap_or_default().keys() {
            if let Ok((port, proto)) = ports::parse_port_key(k) {
                if !published.contains(&(port, proto.clone())) {
                    out.push(Port {
                        private_port: port,
                        r#type: proto,
                        ..Default::default()
                    });
                }
            }
        }
        out
    }

    /// `SummaryNetworkSettings.Networks` of ps.
    pub(crate) fn net_summary(&self, rec: &ContainerRecord) -> BTreeMap<String, EndpointSettings> {
        self.net_settings(rec).networks.unwrap_or_default()
    }

    /// ps filters `network`, `publish`, `expose` (Docker matches the container's ports).
    pub(crate) fn net_filters_match(
        &self,
        rec: &ContainerRecord,
        filters: &std::collections::HashMap<String, Vec<String>>,
    ) -> Result<bool> {
        if let Some(want) = filters.get("network") {
            let nets = self.nets();
            let st = nets.lock();
            let mut mine: Vec<(&str, &str)> = Vec::new();
            if let Some(c) = st.containers.get(&rec.id) {
                for nid in c.networks.keys() {
                    if let Some(n) = st.nets.get(nid) {
                        mine.push((n.name.as_str(), n.id.as_str()));
                    }
                }
            }
            let mode = rec.host_config.network_mode.to_string();
            if let Some(n) = st
                .nets
                .values()
                .find(|n| n.name == mode && n.is_predefined())
            {
                mine.push((n.name.as_str(), n.id.as_str()));
            }
            if !want.iter().any(|w| {
                mine.iter()
                    .any(|(name, id)| name == w || (!w.is_empty() && id.starts_with(w.as_str())))
            }) {
                return Ok(false);
            }
        }
        for (key, ports) in [
            (
                "publish",
                rec.host_config
                    .port_bindings
                    .clone()
                    .map(|m| m.keys().cloned().collect::<Vec<_>>()),
            ),
            (
                "expose",
                rec.config
                    .exposed_ports
                    .clone()
                    .map(|m| m.keys().cloned().collect::<Vec<_>>()),
            ),
        ] {
            let Some(want) = filters.get(key) else {
                continue;
            };
            let have: Vec<(u16, String)> = ports
                .unwrap_or_default()
                .iter()
                .filter_map(|k| ports::parse_port_key(k).ok())
                .collect();
            let mut hit = false;
            for w in want {
                if filter_ports(w)?.iter().any(|p| have.contains(p)) {
                    hit = true;
                }
            }
            if !hit {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Engine {
    pub(crate) fn network_view(&self, n: &NetworkRecord) -> NetworkInspect {
        let st = self.nets().lock();
        let mut containers = BTreeMap::new();
        for (cid, c) in &st.containers {
            if let Some(ep) = c.sandbox.as_ref().and_then(|s| s.endpoints.get(&n.id)) {
                containers.insert(
                    cid.clone(),
                    NetworkContainer {
                        name: c.name.clone(),
                        endpoint_id: ep.endpoint_id.clone(),
                        mac_address: ep.mac_string(),
                        ipv4_address: format!("{}/{}", ep.ip, ep.prefix),
                        ipv6_address: ep
                            .ip6
                            .map(|a| format!("{a}/{}", ep.prefix6))
                            .unwrap_or_default(),
                    },
                );
            }
        }
        let config = match (n.subnet, n.gateway) {
            _ if !n.ipam_config.is_empty() => Some(n.ipam_config.clone()),
            (Some(s), Some(g)) => Some(vec![IpamConfig {
                subnet: s.to_string(),
                gateway: g.to_string(),
                ..Default::default()
            }]),
            _ => Some(Vec::new()),
        };
        NetworkInspect {
            name: n.name.clone(),
            id: n.id.clone(),
            created: n.created.clone(),
            scope: "local".into(),
            driver: n.driver.clone(),
            ipam: ApiIpam {
                driver: "default".into(),
                options: None,
                config,
            },
            internal: n.internal,
            attachable: n.attachable,
            enable_ipv6: n.ipv6,
            containers,
            options: n.options.clone(),
            labels: n.labels.clone(),
            ..Default::default()
        }
    }
}
