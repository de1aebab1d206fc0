//! Networks as part of the engine's state: the predefined `bridge`, `host` and `none`, user
//! networks, and each container's attachments. The kernel side is `berth-net`.
//!
//! On disk, under `<data-root>/network/`:
//! - `networks.json`: the networks (atomic rewrite);
//! - `ipam/<network id>.json`: each network's allocations (see `berth_net::ipam`);
//! - `containers/<container id>.json`: the networks a container is attached to (with aliases),
//!   and while it runs its sandbox: netns path, addresses, host veths, published ports.
//!
//! A container's namespace is pinned at `<exec-root>/netns/<id>`, so it outlives the daemon.

mod api;
mod endpoints;
mod etc_files;
mod links;
mod ports;
mod resolver;
mod sandbox;
mod state;
mod view;

pub(crate) use endpoints::attach_from;
pub(crate) use links::{link_env, LegacyLink};
pub(crate) use ports::parse_host_ports;
pub(crate) use state::{find_in, State};
pub use state::{Attach, ContainerNet, Endpoint, NetworkRecord, Networks, Published, Sandbox};

pub use berth_net::cni::CniConfig;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use berth_net::cidr::Cidr;
use berth_net::NetError;

use crate::error::EngineError;
use crate::Engine;

/// Daemon flags that shape networking.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// `--bridge`: the default bridge's interface.
    pub bridge: String,
    /// `--bip`: the default bridge's gateway/prefix; chosen from the pools when unset.
    pub bip: Option<Cidr>,
    /// `--default-address-pool base=CIDR,size=N`: where user networks' subnets come from.
    pub pools: Vec<(Cidr, u8)>,
    /// The host's resolv.conf (read once at start).
    pub resolv_conf: PathBuf,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            bridge: "berth0".into(),
            bip: None,
            pools: default_pools(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

/// Docker's defaults: 172.17.0.0/16 to 172.31.0.0/16, then 192.168.0.0/16 in /20s.
pub fn default_pools() -> Vec<(Cidr, u8)> {
    let mut v: Vec<(Cidr, u8)> = (17..=31)
        .filter_map(|b| Cidr::new(Ipv4Addr::new(172, b, 0, 0), 16).map(|c| (c, 16)))
        .collect();
    if let Some(c) = Cidr::new(Ipv4Addr::new(192, 168, 0, 0), 16) {
        v.push((c, 20));
    }
    v
}

/// Subnets in use on the host besides its routes: docker0's default when Docker is installed
/// (its bridge may be down, or dockerd not started yet, and still claim 172.17.0.0/16).
fn reserved_subnets() -> Vec<Cidr> {
    let mut v = Vec::new();
    if Path::new("/sys/class/net/docker0").exists() {
        v.extend(Cidr::new(Ipv4Addr::new(172, 17, 0, 0), 16));
    }
    v
}

/// Parses `base=10.10.0.0/16,size=24`.
pub fn parse_pool(s: &str) -> std::result::Result<(Cidr, u8), String> {
    let mut base = None;
    let mut size = None;
    for kv in s.split(',') {
        match kv.split_once('=') {
            Some(("base", v)) => base = Some(v.parse::<Cidr>()?),
            Some(("size", v)) => {
                size = Some(
                    v.parse::<u8>()
                        .ok()
                        .filter(|n| *n <= 32)
                        .ok_or_else(|| format!("invalid size: {v}"))?,
                )
            }
            _ => return Err(format!("invalid default address pool: {s}")),
        }
    }
    let base = base.ok_or_else(|| format!("invalid default address pool {s}: no base"))?;
    let size = size.unwrap_or(24);
    if size < base.prefix {
        return Err(format!(
            "invalid default address pool {s}: size {size} is shorter than the base"
        ));
    }
    Ok((base.normalized(), size))
}

pub(crate) fn net_err(e: NetError) -> EngineError {
    match e {
        NetError::InvalidParameter(m) => EngineError::InvalidParameter(m),
        NetError::Conflict(m) => EngineError::Conflict(m),
        other => EngineError::Internal(other.to_string()),
    }
}

fn not_found(name: &str) -> EngineError {
    EngineError::NotFound(format!("network {name} not found"))
}

impl Engine {
    pub(crate) fn nets(&self) -> &Networks {
        &self.inner.net
    }
}

#[cfg(test)]
mod tests {
    use super::ports::parse_host_ports;
    use super::*;

    #[test]
    fn pools_and_host_ports() {
        let (c, n) = parse_pool("base=10.10.0.0/16,size=24").unwrap();
        assert_eq!((c.to_string().as_str(), n), ("10.10.0.0/16", 24));
        assert!(parse_pool("base=10.10.0.0/16,size=8").is_err());
        assert!(parse_pool("size=24").is_err());
        assert!(parse_pool("base=nope,size=24").is_err());
        assert!(parse_pool("what=1").is_err());
        assert_eq!(parse_host_ports("").unwrap(), (0, 0));
        assert_eq!(parse_host_ports("8080").unwrap(), (8080, 8080));
        assert_eq!(parse_host_ports("8000-8010").unwrap(), (8000, 8010));
        assert!(parse_host_ports("9-1").is_err());
        assert!(parse_host_ports("x").is_err());
        assert!(parse_host_ports("70000").is_err());
        let d = default_pools();
        assert_eq!(d[0].0.to_string(), "172.17.0.0/16");
        assert_eq!(d.len(), 16);
    }
}
