//! The `/networks` operations: create, list, inspect, remove, connect, disconnect, prune.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use berth_api::network::{
    IpamConfig, NetworkConnectRequest, NetworkCreateRequest, NetworkCreateResponse,
    NetworkDisconnectRequest, NetworkInspect, NetworkPruneResponse,
};
use berth_net::cidr::{Cidr, Cidr6, Subnet};
use berth_net::setup;

use crate::error::{EngineError, Result};
use crate::network::{attach_from, find_in, net_err, NetworkRecord, State};
use crate::util::{self, now_rfc3339};
use crate::Engine;

/// Docker (libnetwork) takes any non-empty name for a network, spaces included; control
/// characters and `/` would only make trouble in names and paths.
fn valid_name(n: &str) -> bool {
    !n.is_empty() && !n.chars().any(|ch| ch.is_control() || ch == '/')
}

/// One entry of `IPAM.Config`, checked: the subnet, the gateway (given, or the subnet's first
/// address), the range, the auxiliary addresses.
struct Pool<C, A> {
    subnet: C,
    gateway: A,
    range: Option<C>,
    aux: BTreeMap<String, A>,
}

fn parse_pool<S: Subnet>(c: &IpamConfig, s: S) -> Result<Pool<S, S::Addr>> {
    if s.addr() != s.network() {
        return Err(EngineError::InvalidParameter(format!(
            "invalid subnet {s}: it should be {}",
            s.normalized()
        )));
    }
    if s.prefix() > S::MAX_PREFIX {
        return Err(EngineError::InvalidParameter(format!(
            "invalid subnet {s}: too small"
        )));
    }
    let in_subnet = |what: &str, v: &str| -> Result<S::Addr> {
        let a: S::Addr = v
            .parse()
            .map_err(|_| EngineError::InvalidParameter(format!("invalid {what} address {v}")))?;
        if !s.contains(a) {
            return Err(EngineError::InvalidParameter(format!(
                "no matching subnet for {what} {a}"
            )));
        }
        Ok(a)
    };
    let gateway = if c.gateway.is_empty() {
        s.first_host()
    } else {
        let g = in_subnet("gateway", &c.gateway)?;
        if s.reserved(g) {
            return Err(EngineError::InvalidParameter(format!(
                "no matching subnet for gateway {g}"
            )));
        }
        g
    };
    let range = if c.ip_range.is_empty() {
        None
    } else {
        let r: S = c.ip_range.parse().map_err(EngineError::InvalidParameter)?;
        if !s.contains(r.network()) || r.prefix() < s.prefix() {
            return Err(EngineError::InvalidParameter(format!(
                "no matching subnet for range {r}"
            )));
        }
        Some(r.normalized())
    };
    let mut aux = BTreeMap::new();
    for (k, v) in c.auxiliary_addresses.clone().unwrap_or_default() {
        aux.insert(k, in_subnet("aux-address", &v)?);
    }
    Ok(Pool {
        subnet: s,
        gateway,
        range,
        aux,
    })
}

/// The name, driver and IPAM driver of a create request: Docker's checks and words.
fn check_create_request(req: &NetworkCreateRequest) -> Result<()> {
    let name = &req.name;
    if name.trim().is_empty() {
        return Err(EngineError::InvalidParameter(
            "invalid name: name is empty".into(),
        ));
    }
    if !valid_name(name) {
        return Err(EngineError::InvalidParameter(format!(
            "invalid network name {name:?}"
        )));
    }
    let driver = if req.driver.is_empty() {
        "bridge"
    } else {
        req.driver.as_str()
    };
    if driver != "bridge" {
        if driver == "host" || driver == "null" {
            return Err(EngineError::Forbidden(format!(
                "only one instance of \"{driver}\" network is allowed"
            )));
        }
        return Err(EngineError::NotFound(format!(
            "plugin \"{driver}\" not found"
        )));
    }
    if let Some(d) = req.ipam.as_ref().map(|i| i.driver.as_str()) {
        if !d.is_empty() && d != "default" {
            return Err(EngineError::NotFound(format!("plugin \"{d}\" not found")));
        }
    }
    Ok(())
}

type Pool6 = (IpamConfig, Pool<Cidr6, Ipv6Addr>);

/// `IPAM.Config` split by family: at most one IPv4 entry (unchecked yet) and one IPv6 pool.
fn split_pools(req: &NetworkCreateRequest) -> Result<(Option<IpamConfig>, Option<Pool6>)> {
    let cfg = req
        .ipam
        .as_ref()
        .and_then(|i| i.config.clone())
        .unwrap_or_default();
    let mut cfg4: Vec<IpamConfig> = Vec::new();
    let mut pool6: Option<Pool6> = None;
    for c in &cfg {
        if c.subnet.contains(':') {
            if pool6.is_some() {
                return Err(EngineError::InvalidParameter(
                    "only one IPv6 subnet per network is supported".into(),
                ));
            }
            let s: Cidr6 = c.subnet.parse().map_err(EngineError::InvalidParameter)?;
            pool6 = Some((c.clone(), parse_pool(c, s)?));
        } else if c.subnet.is_empty() && (c.gateway.contains(':') || c.ip_range.contains(':')) {
            return Err(EngineError::InvalidParameter(
                "gateway must be specified with a subnet".into(),
            ));
        } else {
            cfg4.push(c.clone());
        }
    }
    if cfg4.len() > 1 {
        return Err(EngineError::InvalidParameter(
            "only one IPv4 subnet per network is supported".into(),
        ));
    }
    Ok((cfg4.into_iter().next(), pool6))
}

/// The Linux bridge of a new network: `com.docker.network.bridge.name`, or `br-<short id>`;
/// unique among the networks.
fn bridge_name(options: &BTreeMap<String, String>, id: &str, st: &State) -> Result<String> {
    let bridge = match options.get("com.docker.network.bridge.name") {
        Some(b) => {
            if b.len() > 15
                || b.is_empty()
                || !b
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
            {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid bridge name {b}"
                )));
            }
            b.clone()
        }
        None => format!("br-{}", &id[..12]),
    };
    if st
        .nets
        .values()
        .any(|n| n.bridge.as_deref() == Some(bridge.as_str()))
    {
        return Err(EngineError::Conflict(format!(
            "bridge name {bridge} already in use"
        )));
    }
    Ok(bridge)
}

impl Engine {
    pub fn network_inspect(&self, name: &str) -> Result<NetworkInspect> {
        let n = self.nets().find(name)?;
        Ok(self.network_view(&n))
    }

    pub fn network_list(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<NetworkInspect>> {
        for k in filters.keys() {
            if !matches!(
                k.as_str(),
                "name" | "id" | "driver" | "type" | "label" | "scope" | "dangling"
            ) {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid filter '{k}'"
                )));
            }
        }
        let mut out = Vec::new();
        for n in self.nets().list() {
            let any = |key: &str, f: &dyn Fn(&str) -> bool| {
                filters
                    .get(key)
                    .map(|vs| vs.iter().any(|v| f(v)))
                    .unwrap_or(true)
            };
            if !any("name", &|v| n.name.contains(v))
                || !any("id", &|v| n.id.starts_with(v))
                || !any("driver", &|v| n.driver == v)
                || !any("scope", &|v| v == "local")
                || !any("type", &|v| match v {
                    "custom" => !n.is_predefined(),
                    "builtin" => n.is_predefined(),
                    _ => false,
                })
                || !filters
                    .get("label")
                    .map(|vs| {
                        vs.iter().all(|v| match v.split_once('=') {
                            Some((k, val)) => n.labels.get(k).map(|x| x == val).unwrap_or(false),
                            None => n.labels.contains_key(v.as_str()),
                        })
                    })
                    .unwrap_or(true)
            {
                continue;
            }
            let mut v = self.network_view(&n);
            // Docker's list leaves the containers out.
            v.containers.clear();
            out.push(v);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub async fn network_create(&self, req: NetworkCreateRequest) -> Result<NetworkCreateResponse> {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || engine.network_create_blocking(req))
            .await
            .map_err(EngineError::internal)?
    }

    fn network_create_blocking(&self, req: NetworkCreateRequest) -> Result<NetworkCreateResponse> {
        check_create_request(&req)?;
        let (cfg4, pool6) = split_pools(&req)?;
        let ipv6 = req.enable_ipv6 == Some(true);
        if ipv6 && pool6.is_none() {
            return Err(EngineError::Forbidden(
                "could not find an available, non-overlapping IPv6 address pool among the defaults to assign to the network: give the network an IPv6 subnet".into(),
            ));
        }
        let name = req.name.clone();
        let nets = self.nets();
        let mut st = nets.lock();
        if st.nets.values().any(|n| n.name == name) {
            return Err(EngineError::Conflict(format!(
                "network with name {name} already exists"
            )));
        }
        if let Some((_, p6)) = &pool6 {
            if st
                .nets
                .values()
                .filter_map(|n| n.subnet6)
                .any(|o| o.overlaps(&p6.subnet))
            {
                return Err(EngineError::Forbidden(
                    "Pool overlaps with other one on this address space".into(),
                ));
            }
        }
        let (v4, echo4) = self.pool4(&st, cfg4.as_ref())?;
        let mut echo = vec![echo4];
        if let Some((c, p)) = &pool6 {
            echo.push(IpamConfig {
                subnet: p.subnet.to_string(),
                ip_range: c.ip_range.clone(),
                gateway: p.gateway.to_string(),
                auxiliary_addresses: c.auxiliary_addresses.clone().filter(|m| !m.is_empty()),
            });
        }
        let id = util::new_id();
        let mut options = req.options.clone().unwrap_or_default();
        let bridge = bridge_name(&options, &id, &st)?;
        options.retain(|k, _| !k.is_empty());
        let rec = NetworkRecord {
            id: id.clone(),
            name,
            created: now_rfc3339(),
            driver: "bridge".into(),
            subnet: Some(v4.subnet),
            gateway: Some(v4.gateway),
            bridge: Some(bridge.clone()),
            internal: req.internal,
            attachable: req.attachable,
            labels: req.labels.clone().unwrap_or_default(),
            options,
            default_bridge: false,
            ip_range: v4.range,
            aux: v4.aux,
            ipv6,
            subnet6: pool6.as_ref().map(|(_, p)| p.subnet),
            gateway6: pool6.as_ref().map(|(_, p)| p.gateway),
            ip_range6: pool6.as_ref().and_then(|(_, p)| p.range),
            aux6: pool6
                .as_ref()
                .map(|(_, p)| p.aux.clone())
                .unwrap_or_default(),
            ipam_config: echo,
        };
        st.nets.insert(id.clone(), rec.clone());
        if let Err(e) = nets.save_networks(&st) {
            st.nets.remove(&id);
            return Err(e);
        }
        drop(st);
        let r = nets.ensure_bridge(&rec).and_then(|_| nets.sync_firewall());
        if let Err(e) = r {
            let mut st = nets.lock();
            st.nets.remove(&id);
            let _ = nets.save_networks(&st);
            drop(st);
            let _ = nets.with_nl(|nl| nl.delete_link(&bridge).map_err(net_err));
            let _ = nets.sync_firewall();
            return Err(e);
        }
        Ok(NetworkCreateResponse {
            id,
            warning: String::new(),
        })
    }

    /// The IPv4 pool of a new network: the one asked for (checked against the other networks),
    /// or one picked from the daemon's pools; and its `IPAM.Config` entry as inspect shows it.
    fn pool4(
        &self,
        st: &State,
        c: Option<&IpamConfig>,
    ) -> Result<(Pool<Cidr, Ipv4Addr>, IpamConfig)> {
        match c {
            Some(c) if !c.subnet.is_empty() => {
                let s: Cidr = c.subnet.parse().map_err(EngineError::InvalidParameter)?;
                let p = parse_pool(c, s)?;
                if st
                    .nets
                    .values()
                    .filter_map(|n| n.subnet)
                    .any(|o| o.overlaps(&s))
                {
                    return Err(EngineError::Forbidden(
                        "Pool overlaps with other one on this address space".into(),
                    ));
                }
                let echo = IpamConfig {
                    subnet: s.to_string(),
                    ip_range: c.ip_range.clone(),
                    gateway: p.gateway.to_string(),
                    auxiliary_addresses: c.auxiliary_addresses.clone().filter(|m| !m.is_empty()),
                };
                Ok((p, echo))
            }
            Some(c) if !c.gateway.is_empty() => Err(EngineError::InvalidParameter(
                "gateway must be specified with a subnet".into(),
            )),
            _ => {
                let pools = nets_pools(self);
                let s = self.nets().pick_subnet(st, &pools)?;
                let echo = IpamConfig {
                    subnet: s.to_string(),
                    gateway: s.first_host().to_string(),
                    ..Default::default()
                };
                let p = Pool {
                    subnet: s,
                    gateway: s.first_host(),
                    range: None,
                    aux: BTreeMap::new(),
                };
                Ok((p, echo))
            }
        }
    }

    pub async fn network_remove(&self, name: &str) -> Result<()> {
        let engine = self.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || engine.network_remove_blocking(&name))
            .await
            .map_err(EngineError::internal)?
    }

    fn network_remove_blocking(&self, name: &str) -> Result<()> {
        let nets = self.nets();
        let mut st = nets.lock();
        let n = find_in(&st, name)?.clone();
        if n.is_predefined() {
            return Err(EngineError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        let active = st.containers.values().any(|c| {
            c.sandbox
                .as_ref()
                .is_some_and(|s| s.endpoints.contains_key(&n.id))
        });
        if active {
            return Err(EngineError::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        st.nets.remove(&n.id);
        nets.save_networks(&st)?;
        drop(st);
        nets.drop_ipam(&n.id);
        nets.sync_firewall()?;
        if let Some(b) = &n.bridge {
            nets.with_nl(|nl| nl.delete_link(b).map_err(net_err))?;
        }
        Ok(())
    }

    pub async fn network_prune(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<NetworkPruneResponse> {
        crate::filters::check_keys(filters, &["until", "label", "label!"])?;
        let until = crate::filters::until_filter(filters)?;
        let candidates: Vec<NetworkRecord> = {
            let st = self.nets().lock();
            st.nets
                .values()
                .filter(|n| !n.is_predefined())
                .filter(|n| {
                    !st.containers.values().any(|c| {
                        c.sandbox
                            .as_ref()
                            .is_some_and(|s| s.endpoints.contains_key(&n.id))
                    })
                })
                .filter(|n| {
                    let labels: HashMap<String, String> = n
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    crate::filters::labels_match(filters, &labels)
                })
                .filter(|n| {
                    // Docker: networks created before `until`.
                    let created = chrono::DateTime::parse_from_rfc3339(&n.created)
                        .map(|t| t.timestamp())
                        .unwrap_or(0);
                    until.is_none_or(|u| created < u)
                })
                .cloned()
                .collect()
        };
        let mut deleted = Vec::new();
        for n in candidates {
            if self.network_remove(&n.id).await.is_ok() {
                deleted.push(n.name);
            }
        }
        Ok(NetworkPruneResponse {
            networks_deleted: Some(deleted),
        })
    }

    pub async fn network_connect(&self, net: &str, req: NetworkConnectRequest) -> Result<()> {
        let c = self.lookup(&req.container)?;
        let _g = c.op.lock().await;
        let rec = c.snapshot();
        let n = self.nets().find(net)?;
        if n.driver == "host" || n.driver == "null" {
            return Err(EngineError::Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        if rec.host_config.network_mode.shares_namespace() {
            return Err(EngineError::Forbidden(
                "container sharing network namespace with another container or host cannot be connected to any other network"
                    .into(),
            ));
        }
        let att = attach_from(&n, &req.endpoint_config.clone().unwrap_or_default())?;
        let engine = self.clone();
        let id = rec.id.clone();
        let running = rec.state.status.is_running();
        let socks =
            tokio::task::spawn_blocking(move || engine.connect_blocking(&id, &n, att, running))
                .await
                .map_err(EngineError::internal)??;
        if let Some(s) = socks {
            self.serve_dns(&rec.id, s)?;
            self.write_resolv_conf(&rec, true)?;
        }
        Ok(())
    }

    fn connect_blocking(
        &self,
        id: &str,
        n: &NetworkRecord,
        att: crate::network::Attach,
        running: bool,
    ) -> Result<Option<berth_net::dns::Sockets>> {
        let nets = self.nets();
        let mut cn = nets.lock().containers.get(id).cloned().unwrap_or_default();
        // Named at create before it existed: this connect is that attachment.
        take_pending(&mut cn, n);
        if cn.networks.contains_key(&n.id) {
            return Err(EngineError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                cn.name, n.name
            )));
        }
        let mut socks = None;
        if running {
            if let Some(mut sb) = cn.sandbox.clone() {
                let mut inner = setup::open_sandbox(&sb.netns).map_err(net_err)?;
                let ep = nets.plug(
                    id,
                    &mut inner,
                    &sb.netns,
                    n,
                    &att,
                    sb.endpoints.len(),
                    false,
                )?;
                sb.endpoints.insert(n.id.clone(), ep);
                if !sb.dns && !n.default_bridge {
                    sb.dns = true;
                    socks = Some(berth_net::dns::bind_in(&sb.netns).map_err(net_err)?);
                }
                cn.sandbox = Some(sb);
            }
        }
        cn.networks.insert(n.id.clone(), att);
        nets.save_container(id, &cn)?;
        nets.lock().containers.insert(id.to_string(), cn);
        Ok(socks)
    }

    pub async fn network_disconnect(&self, net: &str, req: NetworkDisconnectRequest) -> Result<()> {
        let c = match self.lookup(&req.container) {
            Ok(c) => c,
            Err(e) => return Err(e),
        };
        let _g = c.op.lock().await;
        let n = self.nets().find(net)?;
        if n.driver == "host" || n.driver == "null" {
            return Err(EngineError::Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        let engine = self.clone();
        let id = c.id.clone();
        tokio::task::spawn_blocking(move || engine.disconnect_blocking(&id, &n))
            .await
            .map_err(EngineError::internal)?
    }

    fn disconnect_blocking(&self, id: &str, n: &NetworkRecord) -> Result<()> {
        let nets = self.nets();
        let mut cn = nets.lock().containers.get(id).cloned().unwrap_or_default();
        if cn.networks.remove(&n.id).is_none() && !take_pending(&mut cn, n) {
            return Err(EngineError::Forbidden(format!(
                "container {id} is not connected to network {}",
                n.name
            )));
        }
        if let Some(sb) = cn.sandbox.as_mut() {
            if let Some(ep) = sb.endpoints.remove(&n.id) {
                let _ = nets.with_nl(|nl| nl.delete_link(&ep.host_veth).map_err(net_err));
                let _ = nets.with_ipam(n, |ipam| ipam.release(ep.ip, id).map_err(net_err));
                if let Some(a) = ep.ip6 {
                    let _ = nets.with_ipam6(n, |ipam| ipam.release(a, id).map_err(net_err));
                }
            }
        }
        nets.save_container(id, &cn)?;
        nets.lock().containers.insert(id.to_string(), cn);
        Ok(())
    }
}

/// Drops the container's pending attachment to `n` (named at create by its name or id before
/// it existed); whether there was one.
fn take_pending(cn: &mut crate::network::ContainerNet, n: &NetworkRecord) -> bool {
    let before = cn.pending.len();
    cn.pending.retain(|k, _| k != &n.name && k != &n.id);
    cn.pending.len() != before
}

fn nets_pools(e: &Engine) -> Vec<(Cidr, u8)> {
    e.nets().pools()
}
