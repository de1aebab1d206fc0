//! A container's attachments, checked and recorded at create (`NetworkingConfig.EndpointsConfig`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use berth_api::types::{ContainerCreateBody, EndpointSettings, NetworkMode};
use berth_net::setup;

use crate::error::{EngineError, Result};
use crate::network::links::parse_link;
use crate::network::{Attach, ContainerNet, NetworkRecord};
use crate::Engine;

impl Engine {
    /// At start: the attachments to networks that did not exist at create, looked up now (a
    /// network still missing is dockerd's 404) and recorded as attachments from here on.
    pub(crate) fn resolve_pending(&self, id: &str, cn: &mut ContainerNet) -> Result<()> {
        if cn.pending.is_empty() {
            return Ok(());
        }
        let nets = self.nets();
        for (name, ep) in std::mem::take(&mut cn.pending) {
            let net = nets.find(&name)?;
            if net.driver == "host" || net.driver == "null" || cn.networks.contains_key(&net.id) {
                continue;
            }
            let mut att = attach_from(&net, &ep)?;
            if att.mac.is_none() && !ep.mac_address.is_empty() {
                att.mac = Some(valid_mac(&ep.mac_address)?);
            }
            cn.networks.insert(net.id.clone(), att);
        }
        nets.save_container(id, cn)?;
        nets.lock().containers.insert(id.to_string(), cn.clone());
        Ok(())
    }

    /// At create: checks the networks named and records the attachments.
    pub(crate) fn net_create(
        &self,
        id: &str,
        name: &str,
        body: &ContainerCreateBody,
    ) -> Result<()> {
        let hc = body.host_config.clone().unwrap_or_default();
        let mode_s = hc.network_mode.to_string();
        let mode = mode_s.as_str();
        let endpoints = body
            .networking_config
            .as_ref()
            .and_then(|n| n.endpoints_config.clone())
            .unwrap_or_default();
        let mut cn = ContainerNet {
            name: name.to_string(),
            ..Default::default()
        };
        if let Some(netname) = hc.network_mode.network() {
            let net = match self.nets().find(netname) {
                Ok(n) => n,
                // Not there yet: dockerd accepts the create and looks the networks up at start.
                Err(EngineError::NotFound(_)) => {
                    for (key, ep) in &endpoints {
                        cn.pending.insert(key.clone(), ep.clone());
                    }
                    let ep = cn.pending.entry(netname.to_string()).or_default();
                    let mac = body.config.mac_address.trim();
                    if ep.mac_address.is_empty() && !mac.is_empty() {
                        ep.mac_address = valid_mac(mac)?;
                    }
                    let nets = self.nets();
                    nets.save_container(id, &cn)?;
                    nets.lock().containers.insert(id.to_string(), cn);
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let primary_keys = [mode, netname, net.name.as_str(), net.id.as_str()];
            if net.driver == "host" || net.driver == "null" {
                // `--network <id of host>`: nothing to attach.
            } else {
                let ep = primary_keys
                    .iter()
                    .find_map(|k| endpoints.get(*k))
                    .cloned()
                    .unwrap_or_default();
                let mut att = attach_from(&net, &ep)?;
                // The container-wide MacAddress (API < 1.44 puts it there) is the primary
                // endpoint's.
                let mac = body.config.mac_address.trim();
                if att.mac.is_none() && !mac.is_empty() {
                    att.mac = Some(valid_mac(mac)?);
                }
                cn.networks.insert(net.id.clone(), att);
            }
            // Further endpoints (API 1.44+ takes several at create): each must exist.
            for (key, ep) in &endpoints {
                if primary_keys.contains(&key.as_str()) {
                    continue;
                }
                let other = match self.nets().find(key) {
                    Ok(n) => n,
                    Err(EngineError::NotFound(_)) => {
                        cn.pending.insert(key.clone(), ep.clone());
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if other.driver == "host" || other.driver == "null" {
                    return Err(EngineError::InvalidParameter(format!(
                        "container cannot be connected to network endpoints: {mode}, {key}"
                    )));
                }
                if cn.networks.contains_key(&other.id) {
                    continue;
                }
                let att = attach_from(&other, ep)?;
                cn.networks.insert(other.id.clone(), att);
            }
            if net.default_bridge {
                self.check_legacy_links(&hc)?;
            }
        } else if matches!(hc.network_mode, NetworkMode::Host | NetworkMode::None)
            && endpoints
                .values()
                .any(|e| e.aliases.as_ref().is_some_and(|a| !a.is_empty()))
        {
            return Err(EngineError::InvalidParameter(
                "network-scoped aliases are only supported for user-defined networks".into(),
            ));
        }
        let nets = self.nets();
        nets.save_container(id, &cn)?;
        nets.lock().containers.insert(id.to_string(), cn);
        Ok(())
    }
}

/// A MAC address as given, checked.
fn valid_mac(s: &str) -> Result<String> {
    match setup::parse_mac(s) {
        Some(m) if m[0] & 1 == 0 => Ok(setup::mac_string(m)),
        _ => Err(EngineError::InvalidParameter(format!(
            "invalid MAC address: {s}"
        ))),
    }
}

pub(crate) fn attach_from(net: &NetworkRecord, ep: &EndpointSettings) -> Result<Attach> {
    let aliases = ep.aliases.clone().unwrap_or_default();
    if net.default_bridge && !aliases.is_empty() {
        return Err(EngineError::InvalidParameter(
            "network-scoped aliases are only supported for user-defined networks".into(),
        ));
    }
    let ipam = ep.ipam_config.as_ref();
    let ipv4: Option<Ipv4Addr> = requested_address(
        ipam.map(|c| c.ipv4_address.as_str()),
        net.default_bridge,
        "IPv4",
    )?;
    let ipv6: Option<Ipv6Addr> = requested_address(
        ipam.map(|c| c.ipv6_address.as_str()),
        net.default_bridge,
        "IPv6",
    )?;
    let mut link_local = Vec::new();
    for a in ep
        .ipam_config
        .as_ref()
        .and_then(|c| c.link_local_ips.clone())
        .unwrap_or_default()
    {
        let ip: IpAddr = a.parse().map_err(|_| {
            EngineError::InvalidParameter(format!("invalid link-local IP address: {a}"))
        })?;
        let ok = match ip {
            IpAddr::V4(v) => v.is_link_local(),
            IpAddr::V6(v) => v.segments()[0] & 0xffc0 == 0xfe80,
        };
        if !ok {
            return Err(EngineError::InvalidParameter(format!(
                "invalid link-local IP address: {a}"
            )));
        }
        link_local.push(ip);
    }
    let mac = match ep.mac_address.trim() {
        "" => None,
        m => Some(valid_mac(m)?),
    };
    let links = ep.links.clone().unwrap_or_default();
    for l in &links {
        parse_link(l)?;
    }
    let ipam_config = ep.ipam_config.clone().filter(|c| {
        !c.ipv4_address.is_empty() || !c.ipv6_address.is_empty() || c.link_local_ips.is_some()
    });
    Ok(Attach {
        aliases,
        ipv4,
        ipv6,
        ipam_config,
        mac,
        links,
        driver_opts: ep.driver_opts.clone().unwrap_or_default(),
        link_local,
    })
}

/// An endpoint's requested address of one family (`IPAMConfig.IPv4Address` / `IPv6Address`):
/// none when empty; refused on the default bridge, as Docker does.
fn requested_address<T: std::str::FromStr>(
    s: Option<&str>,
    default_bridge: bool,
    family: &str,
) -> Result<Option<T>> {
    let Some(s) = s.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if default_bridge {
        return Err(EngineError::InvalidParameter(
            "user specified IP address is supported on user defined networks only".into(),
        ));
    }
    s.parse::<T>()
        .map(Some)
        .map_err(|_| EngineError::InvalidParameter(format!("invalid {family} address: {s}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_settings_are_checked() {
        let user = NetworkRecord {
            name: "u".into(),
            ..Default::default()
        };
        let bridge = NetworkRecord {
            name: "bridge".into(),
            default_bridge: true,
            ..Default::default()
        };
        let ep: EndpointSettings = serde_json::from_str(
            r#"{"IPAMConfig":{"IPv4Address":null,"IPv6Address":"2001:db8::5","LinkLocalIPs":["169.254.1.1"]},
                "MacAddress":"02:42:AC:11:00:0A","Links":["a:b"],"DriverOpts":{"k":"v"}}"#,
        )
        .unwrap();
        let a = attach_from(&user, &ep).unwrap();
        assert_eq!(a.mac.as_deref(), Some("02:42:ac:11:00:0a"));
        assert_eq!(a.ipv6, Some("2001:db8::5".parse().unwrap()));
        assert_eq!(a.links, vec!["a:b"]);
        assert_eq!(a.driver_opts.get("k").map(String::as_str), Some("v"));
        // An address on the default bridge is refused; a link-local one is fine.
        assert!(attach_from(&bridge, &ep).is_err());
        let ll: EndpointSettings =
            serde_json::from_str(r#"{"IPAMConfig":{"LinkLocalIPs":["169.254.8.8"]}}"#).unwrap();
        assert!(attach_from(&bridge, &ll).is_ok());
        for bad in [
            r#"{"MacAddress":"03:42:ac:11:00:0a"}"#,
            r#"{"MacAddress":"nope"}"#,
            r#"{"IPAMConfig":{"LinkLocalIPs":["10.0.0.1"]}}"#,
            r#"{"IPAMConfig":{"IPv6Address":"x"}}"#,
            r#"{"Links":[":x"]}"#,
        ] {
            let ep: EndpointSettings = serde_json::from_str(bad).unwrap();
            assert!(
                matches!(
                    attach_from(&user, &ep),
                    Err(EngineError::InvalidParameter(_))
                ),
                "{bad}"
            );
        }
    }
}
