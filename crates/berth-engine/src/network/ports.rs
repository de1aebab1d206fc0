//! Published ports: what a container asks for, the host ports held for it, its DNAT rules, and the
//! `publish`/`expose` filter values of `ps`.

use std::net::Ipv4Addr;

use berth_api::types::PortBinding;
use berth_net::nft::PortRule;
use berth_net::ports;

use crate::container::ContainerRecord;
use crate::error::{EngineError, Result};
use crate::network::{net_err, Published, Sandbox};

pub(crate) fn port_rules(sb: &Sandbox) -> Vec<PortRule> {
    let Some(ep) = sb.primary() else {
        return Vec::new();
    };
    sb.ports
        .iter()
        .map(|p| PortRule {
            proto: p.proto.clone(),
            host_ip: ports::namespace_ip(p.host_ip),
            host_port: p.host_port,
            ip: ep.ip,
            port: p.container_port,
        })
        .collect()
}

/// What a start asks for: port bindings resolved from HostConfig.
/// (container port, proto, host ip, host port range; (0, 0) for any)
type Wanted = (u16, String, Option<Ipv4Addr>, (u16, u16));

pub(crate) fn wanted_ports(rec: &ContainerRecord) -> Result<Vec<Wanted>> {
    let hc = &rec.host_config;
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (key, binds) in hc.port_bindings.clone().unwrap_or_default() {
        let (port, proto) = ports::parse_port_key(&key).map_err(net_err)?;
        let binds = binds.unwrap_or_default();
        let binds = if binds.is_empty() {
            vec![PortBinding::default()]
        } else {
            binds
        };
        for b in binds {
            let ip =
                match b.host_ip.as_str() {
                    "" | "0.0.0.0" => None,
                    "::" => None,
                    s => Some(s.parse::<Ipv4Addr>().map_err(|_| {
                        EngineError::InvalidParameter(format!("invalid host IP: {s}"))
                    })?),
                };
            let range = parse_host_ports(&b.host_port)?;
            out.push((port, proto.clone(), ip, range));
            seen.insert((port, proto.clone()));
        }
    }
    if hc.publish_all_ports {
        for key in rec.config.exposed_ports.clone().unwrap_or_default().keys() {
            let (port, proto) = ports::parse_port_key(key).map_err(net_err)?;
            if seen.insert((port, proto.clone())) {
                out.push((port, proto, None, (0, 0)));
            }
        }
    }
    Ok(out)
}

pub(crate) fn parse_host_ports(s: &str) -> Result<(u16, u16)> {
    let bad = || EngineError::InvalidParameter(format!("invalid hostPort: {s}"));
    if s.is_empty() {
        return Ok((0, 0));
    }
    match s.split_once('-') {
        Some((a, b)) => {
            let a: u16 = a.parse().map_err(|_| bad())?;
            let b: u16 = b.parse().map_err(|_| bad())?;
            if a > b {
                return Err(bad());
            }
            Ok((a, b))
        }
        None => {
            let p: u16 = s.parse().map_err(|_| bad())?;
            Ok((p, p))
        }
    }
}

/// Binds each wanted host port; Docker's wording when one is taken.
pub(crate) fn hold_ports(
    rec: &ContainerRecord,
    wanted: &[Wanted],
) -> Result<(Vec<ports::Held>, Vec<Published>)> {
    let mut held = Vec::new();
    let mut publ = Vec::new();
    for (cport, proto, ip, (lo, hi)) in wanted {
        let shown_ip = ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "0.0.0.0".into());
        let fail = |port: String, e: std::io::Error| {
            let why = if e.raw_os_error() == Some(libc::EADDRINUSE) {
                "port is already allocated".to_string()
            } else {
                e.to_string()
            };
            EngineError::Internal(format!(
                "driver failed programming external connectivity on endpoint {} ({}): Bind for {shown_ip}:{port} failed: {why}",
                rec.name, rec.id
            ))
        };
        let h = if *lo == *hi {
            ports::hold(*ip, *lo, proto).map_err(|e| fail(lo.to_string(), e))?
        } else {
            let mut got = None;
            let mut last = None;
            for p in *lo..=*hi {
                match ports::hold(*ip, p, proto) {
                    Ok(h) => {
                        got = Some(h);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            match got {
                Some(h) => h,
                None => {
                    return Err(fail(
                        format!("{lo}-{hi}"),
                        last.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EADDRINUSE)),
                    ))
                }
            }
        };
        publ.push(Published {
            proto: proto.clone(),
            host_ip: *ip,
            host_port: h.host_port,
            container_port: *cport,
        });
        held.push(h);
    }
    Ok((held, publ))
}

/// `80`, `80/udp`, `8000-8080/tcp` -> the (port, proto) pairs a ps filter names.
pub(crate) fn filter_ports(v: &str) -> Result<Vec<(u16, String)>> {
    let bad = || EngineError::InvalidParameter(format!("invalid filter value: {v}"));
    let (range, proto) = match v.split_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (v, "tcp".to_string()),
    };
    let (lo, hi) = match range.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = range.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if lo > hi || hi - lo > 4096 {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| (p, proto.clone())).collect())
}
