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

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use berth_api::network::IpamConfig;
use berth_api::types::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, NetworkSettings, Port, PortBinding,
    PortMap,
};
use berth_net::cidr::{Cidr, Cidr6};
use berth_net::ipam::{Ipam, Ipam6};
use berth_net::netlink::Netlink;
use berth_net::nft::{Firewall, NetRules, PortRule};
use berth_net::{dns, netns, ports, setup, NetError};
use serde::{Deserialize, Serialize};

use crate::container::ContainerRecord;
use crate::error::{EngineError, Result};
use crate::util::{self, now_rfc3339};
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

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    /// "bridge", "host" or "null"
    pub driver: String,
    pub subnet: Option<Cidr>,
    pub gateway: Option<Ipv4Addr>,
    /// The Linux bridge (bridge driver only).
    pub bridge: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// The predefined default bridge: no name resolution, no aliases.
    pub default_bridge: bool,
    /// `--ip-range`: where dynamic IPv4 addresses come from.
    pub ip_range: Option<Cidr>,
    /// `--aux-address`es of the IPv4 subnet: never given to a container.
    pub aux: BTreeMap<String, Ipv4Addr>,
    /// `EnableIPv6`: containers also get an address of `subnet6`.
    pub ipv6: bool,
    pub subnet6: Option<Cidr6>,
    pub gateway6: Option<Ipv6Addr>,
    pub ip_range6: Option<Cidr6>,
    /// `--aux-address`es of the IPv6 subnet.
    pub aux6: BTreeMap<String, Ipv6Addr>,
    /// `IPAM.Config` as inspect shows it (empty for networks made before it was kept).
    pub ipam_config: Vec<IpamConfig>,
}

impl NetworkRecord {
    pub fn is_predefined(&self) -> bool {
        self.default_bridge || self.driver == "host" || self.driver == "null"
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Attach {
    pub aliases: Vec<String>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// `IPAMConfig` as the client gave it (inspect echoes it).
    pub ipam_config: Option<EndpointIpamConfig>,
    /// A requested MAC address (`--mac-address`).
    pub mac: Option<String>,
    /// Endpoint links `name:alias`: `alias` resolves to container `name` for this container.
    pub links: Vec<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub link_local: Vec<IpAddr>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Endpoint {
    pub endpoint_id: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub host_veth: String,
    pub ifname: String,
    /// Empty: Docker's 02:42:<ip>.
    #[serde(default)]
    pub mac: String,
    #[serde(default)]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default)]
    pub prefix6: u8,
    #[serde(default)]
    pub gateway6: Option<Ipv6Addr>,
}

impl Endpoint {
    pub fn mac_string(&self) -> String {
        if self.mac.is_empty() {
            setup::mac_string(setup::mac_for(self.ip))
        } else {
            self.mac.clone()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub proto: String,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sandbox {
    pub netns: PathBuf,
    /// network id -> endpoint
    pub endpoints: BTreeMap<String, Endpoint>,
    pub ports: Vec<Published>,
    pub dns: bool,
}

impl Sandbox {
    /// eth0's endpoint: the container's address in /etc/hosts and for published ports.
    pub fn primary(&self) -> Option<&Endpoint> {
        self.endpoints
            .values()
            .find(|e| e.ifname == "eth0")
            .or_else(|| self.endpoints.values().next())
    }
}

/// `<data-root>/network/containers/<id>.json`; the sandbox lives apart, in
/// `<exec-root>/network/<id>.json` (runtime state, like the pinned namespace it describes).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ContainerNet {
    pub name: String,
    /// network id -> attachment
    pub networks: BTreeMap<String, Attach>,
    #[serde(skip)]
    pub sandbox: Option<Sandbox>,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) nets: BTreeMap<String, NetworkRecord>,
    pub(crate) containers: HashMap<String, ContainerNet>,
    pub(crate) held: HashMap<String, Vec<ports::Held>>,
    pub(crate) dns: HashMap<String, tokio::task::AbortHandle>,
}

pub struct Networks {
    cfg: NetConfig,
    pub(crate) dir: PathBuf,
    pub(crate) netns_dir: PathBuf,
    /// `<exec-root>/network`: sandbox records.
    run_dir: PathBuf,
    state: Mutex<State>,
    host_nl: Mutex<Option<Netlink>>,
    pub(crate) fw: Firewall,
    /// network id -> its allocations; shared with the reaper thread.
    ipams: Arc<Mutex<HashMap<String, Ipam>>>,
    /// network id -> its IPv6 allocations (dual-stack networks).
    ipams6: Arc<Mutex<HashMap<String, Ipam6>>>,
    /// Slow teardown work off the exit path: deleting host veths, releasing addresses.
    reaper: Mutex<std::sync::mpsc::Sender<Reap>>,
    upstream: Vec<Ipv4Addr>,
    host_resolv: String,
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

/// The host's IPv4 routes (destination prefixes), to keep our subnets off them.
fn host_routes(nl: &mut Netlink) -> Vec<Cidr> {
    nl.routes()
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, p)| *p > 0)
        .filter_map(|(a, p)| Cidr::new(a, p))
        .chain(reserved_subnets())
        .collect()
}

impl Networks {
    pub(crate) fn open(data_root: &Path, exec_root: &Path, cfg: NetConfig) -> Result<Networks> {
        let dir = data_root.join("network");
        std::fs::create_dir_all(dir.join("containers"))?;
        std::fs::create_dir_all(dir.join("ipam"))?;
        if !cfg.bridge.is_empty()
            && (cfg.bridge.len() > 15
                || !cfg
                    .bridge
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'))
        {
            return Err(EngineError::InvalidParameter(format!(
                "invalid bridge name: {}",
                cfg.bridge
            )));
        }
        let host_resolv = std::fs::read_to_string(&cfg.resolv_conf).unwrap_or_default();
        let upstream = dns::nameservers(&host_resolv);
        let table = format!("berth_{}", cfg.bridge.replace(['-', '.'], "_"));
        let mut st = State::default();
        if let Ok(b) = std::fs::read(dir.join("networks.json")) {
            let nets: Vec<NetworkRecord> = serde_json::from_slice(&b)?;
            for n in nets {
                st.nets.insert(n.id.clone(), n);
            }
        }
        if let Ok(rd) = std::fs::read_dir(dir.join("containers")) {
            for e in rd.flatten() {
                let p = e.path();
                let Some(id) = p.file_stem().and_then(|s| s.to_str()).map(String::from) else {
                    continue;
                };
                if p.extension().and_then(|s| s.to_str()) != Some("json") {
                    continue;
                }
                match std::fs::read(&p).map(|b| serde_json::from_slice::<ContainerNet>(&b)) {
                    Ok(Ok(c)) => {
                        st.containers.insert(id, c);
                    }
                    _ => tracing::warn!("skipping unreadable {}", p.display()),
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(exec_root.join("network")) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().and_then(|s| s.to_str()) != Some("json") {
                    continue;
                }
                let Some(id) = p.file_stem().and_then(|s| s.to_str()).map(String::from) else {
                    continue;
                };
                match std::fs::read(&p).map(|b| serde_json::from_slice::<Sandbox>(&b)) {
                    Ok(Ok(sb)) => st.containers.entry(id).or_default().sandbox = Some(sb),
                    _ => tracing::warn!("skipping unreadable {}", p.display()),
                }
            }
        }
        let ipams: Arc<Mutex<HashMap<String, Ipam>>> = Arc::default();
        let ipams6: Arc<Mutex<HashMap<String, Ipam6>>> = Arc::default();
        let nets = Networks {
            reaper: Mutex::new(spawn_reaper(ipams.clone(), ipams6.clone())),
            ipams,
            ipams6,
            netns_dir: exec_root.join("netns"),
            run_dir: exec_root.join("network"),
            fw: Firewall::new(&table),
            cfg,
            dir,
            state: Mutex::new(st),
            host_nl: Mutex::new(None),
            upstream,
            host_resolv,
        };
        nets.init_predefined()?;
        Ok(nets)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn with_nl<T>(&self, f: impl FnOnce(&mut Netlink) -> Result<T>) -> Result<T> {
        let mut g = self.host_nl.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(Netlink::open().map_err(net_err)?);
        }
        match g.as_mut() {
            Some(nl) => f(nl),
            None => Err(EngineError::Internal("netlink socket".into())),
        }
    }

    pub(crate) fn save_networks(&self, st: &State) -> Result<()> {
        let v: Vec<&NetworkRecord> = st.nets.values().collect();
        util::write_atomic(
            &self.dir.join("networks.json"),
            &serde_json::to_vec_pretty(&v)?,
        )?;
        Ok(())
    }

    pub(crate) fn container_file(&self, id: &str) -> PathBuf {
        self.dir.join("containers").join(format!("{id}.json"))
    }

    /// Writes the attachments (fsynced: configuration) and the sandbox.
    pub(crate) fn save_container(&self, id: &str, c: &ContainerNet) -> Result<()> {
        util::write_atomic(&self.container_file(id), &serde_json::to_vec(c)?)?;
        self.save_sandbox(id, c.sandbox.as_ref())
    }

    fn sandbox_file(&self, id: &str) -> PathBuf {
        self.run_dir.join(format!("{id}.json"))
    }

    /// Writes (or, for None, removes) the sandbox record: write and rename, no fsync — it lives
    /// in the exec root and describes a namespace no reboot keeps either.
    pub(crate) fn save_sandbox(&self, id: &str, sb: Option<&Sandbox>) -> Result<()> {
        let path = self.sandbox_file(id);
        match sb {
            None => match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            },
            Some(sb) => {
                std::fs::create_dir_all(&self.run_dir)?;
                let tmp = self.run_dir.join(format!(".{id}.tmp"));
                std::fs::write(&tmp, serde_json::to_vec(sb)?)?;
                std::fs::rename(&tmp, &path)?;
                Ok(())
            }
        }
    }

    /// Runs `f` on the allocations of `net` (opened on first use).
    pub(crate) fn with_ipam<T>(
        &self,
        net: &NetworkRecord,
        f: impl FnOnce(&mut Ipam) -> Result<T>,
    ) -> Result<T> {
        let mut m = self.ipams.lock().unwrap_or_else(|p| p.into_inner());
        if !m.contains_key(&net.id) {
            let (Some(subnet), Some(gw)) = (net.subnet, net.gateway) else {
                return Err(EngineError::Internal(format!(
                    "network {} has no subnet",
                    net.name
                )));
            };
            let ipam = Ipam::open(
                &self.dir.join("ipam").join(format!("{}.json", net.id)),
                subnet,
                gw,
            )
            .map_err(net_err)?
            .with_limits(net.ip_range, net.aux.values().copied().collect());
            m.insert(net.id.clone(), ipam);
        }
        match m.get_mut(&net.id) {
            Some(i) => f(i),
            None => Err(EngineError::Internal("ipam".into())),
        }
    }

    /// Runs `f` on the IPv6 allocations of a dual-stack `net`.
    pub(crate) fn with_ipam6<T>(
        &self,
        net: &NetworkRecord,
        f: impl FnOnce(&mut Ipam6) -> Result<T>,
    ) -> Result<T> {
        let mut m = self.ipams6.lock().unwrap_or_else(|p| p.into_inner());
        if !m.contains_key(&net.id) {
            let (Some(subnet), Some(gw)) = (net.subnet6, net.gateway6) else {
                return Err(EngineError::Internal(format!(
                    "network {} has no IPv6 subnet",
                    net.name
                )));
            };
            let ipam = Ipam6::open(
                &self.dir.join("ipam").join(format!("{}.v6.json", net.id)),
                subnet,
                gw,
            )
            .map_err(net_err)?
            .with_limits(net.ip_range6, net.aux6.values().copied().collect());
            m.insert(net.id.clone(), ipam);
        }
        match m.get_mut(&net.id) {
            Some(i) => f(i),
            None => Err(EngineError::Internal("ipam".into())),
        }
    }

    /// Forgets a removed network's allocations (and their file).
    pub(crate) fn drop_ipam(&self, net_id: &str) {
        {
            let mut m6 = self.ipams6.lock().unwrap_or_else(|p| p.into_inner());
            match m6.remove(net_id) {
                Some(i) => i.remove_file(),
                None => {
                    let _ = std::fs::remove_file(
                        self.dir.join("ipam").join(format!("{net_id}.v6.json")),
                    );
                }
            }
        }
        let mut m = self.ipams.lock().unwrap_or_else(|p| p.into_inner());
        match m.remove(net_id) {
            Some(i) => i.remove_file(),
            None => {
                let _ = std::fs::remove_file(self.dir.join("ipam").join(format!("{net_id}.json")));
            }
        }
    }

    /// A subnet from the pools that overlaps no host route and no other network of ours.
    pub(crate) fn pick_subnet(&self, st: &State, pools: &[(Cidr, u8)]) -> Result<Cidr> {
        // Routes of our own bridges are covered by `taken`.
        let routes = self.with_nl(|nl| Ok(host_routes(nl)))?;
        let taken: Vec<Cidr> = st.nets.values().filter_map(|n| n.subnet).collect();
        for (base, size) in pools {
            for s in base.subnets(*size) {
                if taken.iter().any(|t| t.overlaps(&s)) || routes.iter().any(|r| r.overlaps(&s)) {
                    continue;
                }
                return Ok(s);
            }
        }
        Err(EngineError::Internal(
            "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into(),
        ))
    }

    fn init_predefined(&self) -> Result<()> {
        let mut st = self.lock();
        let mut changed = false;
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if !st.nets.values().any(|n| n.name == name) {
                let id = util::new_id();
                st.nets.insert(
                    id.clone(),
                    NetworkRecord {
                        id,
                        name: name.into(),
                        created: now_rfc3339(),
                        driver: driver.into(),
                        ..Default::default()
                    },
                );
                changed = true;
            }
        }
        if self.cfg.bridge == "none" {
            // `--bridge none`: no default bridge (unit tests, or a daemon without one).
            if changed {
                self.save_networks(&st)?;
            }
            return Ok(());
        }
        let existing = st.nets.values().find(|n| n.default_bridge).cloned();
        let want_bip = self.cfg.bip;
        let rebuild = match (&existing, want_bip) {
            (None, _) => true,
            (Some(n), Some(b)) => n.subnet != Some(b.normalized()) || n.gateway != Some(b.addr),
            (Some(n), None) => n.bridge.as_deref() != Some(self.cfg.bridge.as_str()),
        };
        if rebuild {
            let (subnet, gw) = match want_bip {
                Some(b) => {
                    let gw = if b.addr == b.network() {
                        b.first_host()
                    } else {
                        b.addr
                    };
                    (b.normalized(), gw)
                }
                None => {
                    let mut tmp = State::default();
                    for n in st.nets.values().filter(|n| !n.default_bridge) {
                        tmp.nets.insert(n.id.clone(), n.clone());
                    }
                    // Our own bridge's route may still be up from a previous run: not a clash.
                    let s = self.pick_subnet_excluding_bridge(&tmp)?;
                    (s, s.first_host())
                }
            };
            let id = existing
                .as_ref()
                .map(|n| n.id.clone())
                .unwrap_or_else(util::new_id);
            let mut options = BTreeMap::new();
            options.insert(
                "com.docker.network.bridge.name".to_string(),
                self.cfg.bridge.clone(),
            );
            options.insert(
                "com.docker.network.bridge.default_bridge".to_string(),
                "true".to_string(),
            );
            options.insert(
                "com.docker.network.bridge.enable_ip_masquerade".to_string(),
                "true".to_string(),
            );
            st.nets.insert(
                id.clone(),
                NetworkRecord {
                    id,
                    name: "bridge".into(),
                    created: existing
                        .as_ref()
                        .map(|n| n.created.clone())
                        .unwrap_or_else(now_rfc3339),
                    driver: "bridge".into(),
                    subnet: Some(subnet),
                    gateway: Some(gw),
                    bridge: Some(self.cfg.bridge.clone()),
                    default_bridge: true,
                    options,
                    ..Default::default()
                },
            );
            changed = true;
        }
        if changed {
            self.save_networks(&st)?;
        }
        Ok(())
    }

    fn pick_subnet_excluding_bridge(&self, st: &State) -> Result<Cidr> {
        // Routes on our default bridge (left by a previous run) are not the host's.
        let own = self.cfg.bridge.clone();
        let routes = self.with_nl(|nl| {
            let own_up = nl.link_index(&own).map_err(net_err)?.is_some();
            let mut r = host_routes(nl);
            if own_up {
                // Without per-route devices here, drop the routes this daemon's networks own.
                r.retain(|c| !st.nets.values().any(|n| n.subnet == Some(c.normalized())));
            }
            Ok((r, own_up))
        })?;
        let (routes, own_up) = routes;
        let taken: Vec<Cidr> = st.nets.values().filter_map(|n| n.subnet).collect();
        for (base, size) in &self.cfg.pools {
            for s in base.subnets(*size) {
                if taken.iter().any(|t| t.overlaps(&s)) {
                    continue;
                }
                // A route exactly equal to the candidate on our own surviving bridge is ours.
                let clash = routes
                    .iter()
                    .any(|r| r.overlaps(&s) && !(own_up && r.normalized() == s));
                if !clash {
                    return Ok(s);
                }
            }
        }
        Err(EngineError::Internal(
            "could not find an available, non-overlapping IPv4 address pool for the default bridge (set --bip)".into(),
        ))
    }

    /// Brings bridges and the nftables table in line with the networks (daemon start).
    pub(crate) fn bring_up(&self) -> Result<()> {
        let nets: Vec<NetworkRecord> = self.lock().nets.values().cloned().collect();
        if !nets.iter().any(|n| n.bridge.is_some()) {
            return Ok(());
        }
        for n in &nets {
            self.ensure_bridge(n)?;
        }
        // Adopt published ports of containers that still run (live restore): they are
        // written back into the freshly generated table.
        {
            let st = self.lock();
            for (id, c) in &st.containers {
                if let Some(sb) = &c.sandbox {
                    self.fw.adopt_ports(id, port_rules(sb));
                }
            }
        }
        self.sync_firewall()
    }

    pub(crate) fn ensure_bridge(&self, n: &NetworkRecord) -> Result<()> {
        if let (Some(br), Some(subnet), Some(gw)) = (&n.bridge, n.subnet, n.gateway) {
            self.with_nl(|nl| setup::ensure_bridge(nl, br, gw, subnet).map_err(net_err))?;
            if let (true, Some(s6), Some(gw6)) = (n.ipv6, n.subnet6, n.gateway6) {
                self.with_nl(|nl| setup::ensure_bridge6(nl, br, gw6, s6.prefix).map_err(net_err))?;
            }
        }
        Ok(())
    }

    pub(crate) fn sync_firewall(&self) -> Result<()> {
        let rules: Vec<NetRules> = self
            .lock()
            .nets
            .values()
            .filter_map(|n| {
                Some(NetRules {
                    bridge: n.bridge.clone()?,
                    subnet: n.subnet?,
                    internal: n.internal,
                    subnet6: n.subnet6.filter(|_| n.ipv6),
                })
            })
            .collect();
        self.fw.set_networks(rules).map_err(net_err)
    }

    /// Daemon shutdown: with no container networked, removes our table, rules and bridges;
    /// otherwise leaves everything the running containers need.
    pub fn shutdown(&self) {
        let st = self.lock();
        for h in st.dns.values() {
            h.abort();
        }
        if st.containers.values().any(|c| c.sandbox.is_some()) {
            tracing::info!("containers still networked: keeping bridges and rules");
            return;
        }
        let bridges: Vec<String> = st.nets.values().filter_map(|n| n.bridge.clone()).collect();
        drop(st);
        if bridges.is_empty() {
            return;
        }
        self.fw.destroy();
        let _ = self.with_nl(|nl| {
            for b in &bridges {
                let _ = nl.delete_link(b);
            }
            Ok(())
        });
    }

    pub(crate) fn pools(&self) -> Vec<(Cidr, u8)> {
        self.cfg.pools.clone()
    }

    pub fn find(&self, name_or_id: &str) -> Result<NetworkRecord> {
        let st = self.lock();
        find_in(&st, name_or_id).cloned()
    }

    pub fn list(&self) -> Vec<NetworkRecord> {
        self.lock().nets.values().cloned().collect()
    }
}

pub(crate) fn find_in<'a>(st: &'a State, name_or_id: &str) -> Result<&'a NetworkRecord> {
    if let Some(n) = st.nets.get(name_or_id) {
        return Ok(n);
    }
    if let Some(n) = st.nets.values().find(|n| n.name == name_or_id) {
        return Ok(n);
    }
    if !name_or_id.is_empty() {
        let mut m = st.nets.values().filter(|n| n.id.starts_with(name_or_id));
        if let Some(n) = m.next() {
            if m.next().is_some() {
                return Err(EngineError::NotFound(format!(
                    "network {name_or_id} is ambiguous"
                )));
            }
            return Ok(n);
        }
    }
    Err(not_found(name_or_id))
}

fn port_rules(sb: &Sandbox) -> Vec<PortRule> {
    let Some(ep) = sb.primary() else {
        return Vec::new();
    };
    sb.ports
        .iter()
        .map(|p| PortRule {
            proto: p.proto.clone(),
            host_ip: p.host_ip,
            host_port: p.host_port,
            ip: ep.ip,
            port: p.container_port,
        })
        .collect()
}

/// The network a container's `NetworkMode` names: None for host/none/container:.
fn mode_network(mode: &str) -> Option<&str> {
    match mode {
        "" | "default" | "bridge" => Some("bridge"),
        "host" | "none" => None,
        m if m.starts_with("container:") => None,
        m => Some(m),
    }
}

/// What a start asks for: port bindings resolved from HostConfig.
/// (container port, proto, host ip, host port range; (0, 0) for any)
type Wanted = (u16, String, Option<Ipv4Addr>, (u16, u16));

fn wanted_ports(rec: &ContainerRecord) -> Result<Vec<Wanted>> {
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

fn parse_host_ports(s: &str) -> Result<(u16, u16)> {
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
fn hold_ports(
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

impl Engine {
    pub(crate) fn nets(&self) -> &Networks {
        &self.inner.net
    }

    /// At create: checks the networks named and records the attachments.
    pub(crate) fn net_create(
        &self,
        id: &str,
        name: &str,
        body: &ContainerCreateBody,
    ) -> Result<()> {
        let hc = body.host_config.clone().unwrap_or_default();
        let mode = hc.network_mode.as_str();
        let endpoints = body
            .networking_config
            .as_ref()
            .and_then(|n| n.endpoints_config.clone())
            .unwrap_or_default();
        let mut cn = ContainerNet {
            name: name.to_string(),
            ..Default::default()
        };
        if let Some(netname) = mode_network(mode) {
            let net = self.nets().find(netname)?;
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
                let other = self.nets().find(key)?;
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
        } else if (mode == "host" || mode == "none")
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

    /// At start: the namespace the container joins (with its networks plugged in).
    pub(crate) async fn net_start(
        &self,
        rec: &ContainerRecord,
    ) -> Result<berth_runtime::spec::NetworkMode> {
        use berth_runtime::spec::NetworkMode;
        let mode = rec.host_config.network_mode.as_str();
        if mode == "host" {
            return Ok(NetworkMode::Host);
        }
        if let Some(target) = mode.strip_prefix("container:") {
            // The namespace of that container's process, whatever its own mode.
            let t = self.lookup(target)?.snapshot();
            if t.id == rec.id {
                return Err(EngineError::InvalidParameter(
                    "cannot join own network".into(),
                ));
            }
            if !t.state.status.is_running() || t.state.pid <= 0 {
                return Err(EngineError::Conflict(format!(
                    "cannot join network of a non running container: {target}"
                )));
            }
            return Ok(NetworkMode::Path(
                format!("/proc/{}/ns/net", t.state.pid).into(),
            ));
        }
        if mode_network(mode).is_none() {
            return Ok(NetworkMode::New);
        }
        let engine = self.clone();
        let rec2 = rec.clone();
        let r = tokio::task::spawn_blocking(move || engine.net_start_blocking(&rec2))
            .await
            .map_err(EngineError::internal)?;
        match r {
            Ok((path, socks)) => {
                if let Some(socks) = socks {
                    self.serve_dns(&rec.id, socks)?;
                }
                Ok(NetworkMode::Path(path))
            }
            Err(e) => Err(e),
        }
    }

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

    fn net_start_blocking(&self, rec: &ContainerRecord) -> Result<(PathBuf, Option<dns::Sockets>)> {
        let nets = self.nets();
        let t0 = std::time::Instant::now();
        // Leftovers of a previous run (a crash between exit and teardown).
        nets.teardown(&rec.id);
        let wanted = wanted_ports(rec)?;
        let (held, published) = hold_ports(rec, &wanted)?;
        let known = nets.lock().containers.get(&rec.id).cloned();
        let legacy = known.is_none();
        let mut cn = known.unwrap_or_default();
        cn.name = rec.name.clone();
        if legacy && mode_network(&rec.host_config.network_mode) == Some("bridge") {
            // A container made before networking existed: the default bridge. (One
            // disconnected from all its networks keeps none: loopback only.)
            let st = nets.lock();
            if let Some(n) = st.nets.values().find(|n| n.default_bridge) {
                cn.networks.insert(n.id.clone(), Attach::default());
            }
        }
        let list: Vec<(NetworkRecord, Attach)> = {
            let st = nets.lock();
            let mut v = Vec::new();
            for (nid, att) in &cn.networks {
                match st.nets.get(nid) {
                    Some(n) => v.push((n.clone(), att.clone())),
                    None => return Err(not_found(nid)),
                }
            }
            // The network NetworkMode names is eth0 and carries the default route.
            let primary = mode_network(&rec.host_config.network_mode)
                .and_then(|m| find_in(&st, m).ok())
                .map(|n| n.id.clone());
            v.sort_by_key(|(n, _)| Some(&n.id) != primary.as_ref());
            v
        };
        let with_dns = list.iter().any(|(n, _)| !n.default_bridge);
        let path = nets.netns_dir.join(&rec.id);
        let (mut inner, socks) = setup::create_sandbox(&path, with_dns).map_err(net_err)?;
        let mut sb = Sandbox {
            netns: path.clone(),
            ports: published,
            dns: with_dns,
            ..Default::default()
        };
        let r = (|| {
            let mut have_gw = false;
            for (i, (net, att)) in list.iter().enumerate() {
                let ep = nets.plug(&rec.id, &mut inner, &path, net, att, i, !have_gw)?;
                have_gw |= ep.gateway.is_some();
                sb.endpoints.insert(net.id.clone(), ep);
            }
            cn.sandbox = Some(sb.clone());
            if legacy {
                nets.save_container(&rec.id, &cn)?;
            } else {
                nets.save_sandbox(&rec.id, Some(&sb))?;
            }
            nets.lock().containers.insert(rec.id.clone(), cn.clone());
            let rules = port_rules(&sb);
            if !rules.is_empty() {
                nets.fw.add_ports(&rec.id, rules).map_err(net_err)?;
            }
            Ok(())
        })();
        if let Err(e) = r {
            {
                let mut st = nets.lock();
                if let Some(c) = st.containers.get_mut(&rec.id) {
                    c.sandbox = Some(sb);
                }
            }
            nets.teardown(&rec.id);
            return Err(e);
        }
        nets.lock().held.insert(rec.id.clone(), held);
        tracing::debug!("network of {} set up in {:?}", rec.id, t0.elapsed());
        Ok((path, socks))
    }

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

    /// The embedded resolver answers to the new name at once.
    pub(crate) fn net_rename(&self, id: &str, name: &str) {
        let nets = self.nets();
        let c = {
            let mut st = nets.lock();
            let Some(c) = st.containers.get_mut(id) else {
                return;
            };
            c.name = name.to_string();
            c.clone()
        };
        if let Err(e) = nets.save_container(id, &c) {
            tracing::warn!("container {id}: saving network state: {e}");
        }
    }

    /// After the container's exit: everything its sandbox held goes.
    pub(crate) async fn net_stop(&self, id: &str) {
        let engine = self.clone();
        let id = id.to_string();
        let _ = tokio::task::spawn_blocking(move || engine.nets().teardown(&id)).await;
    }

    /// At removal: teardown and forget the attachments.
    pub(crate) fn net_forget(&self, id: &str) {
        let nets = self.nets();
        nets.teardown(id);
        nets.lock().containers.remove(id);
        let _ = std::fs::remove_file(nets.container_file(id));
        let _ = nets.save_sandbox(id, None);
    }

    /// After a daemon restart, for a container whose shim is alive: take its sandbox back.
    pub(crate) fn net_readopt(&self, id: &str) {
        let nets = self.nets();
        let sb = nets
            .lock()
            .containers
            .get(id)
            .and_then(|c| c.sandbox.clone());
        let Some(sb) = sb else { return };
        // The ports were re-published when the table was rebuilt (bring_up); hold them again.
        let mut held = Vec::new();
        for p in &sb.ports {
            match ports::hold(p.host_ip, p.host_port, &p.proto) {
                Ok(h) => held.push(h),
                Err(e) => tracing::warn!(
                    "container {id}: holding port {}/{} again: {e}",
                    p.host_port,
                    p.proto
                ),
            }
        }
        nets.lock().held.insert(id.to_string(), held);
        if sb.dns {
            match dns::bind_in(&sb.netns) {
                Ok(socks) => {
                    if let Err(e) = self.serve_dns(id, socks) {
                        tracing::warn!("container {id}: resolver: {e}");
                    }
                }
                Err(e) => tracing::warn!("container {id}: binding resolver again: {e}"),
            }
        }
    }

    /// At daemon start, before recovery: sandboxes of containers that no longer run are torn
    /// down, addresses of containers without a sandbox freed, stray namespaces unpinned.
    pub(crate) fn net_sweep(&self) {
        let known: std::collections::HashSet<String> =
            self.all_entries().iter().map(|e| e.id.clone()).collect();
        let nets = self.nets();
        let orphans: Vec<String> = nets
            .lock()
            .containers
            .keys()
            .filter(|id| !known.contains(*id))
            .cloned()
            .collect();
        for id in orphans {
            self.net_forget(&id);
        }
        // Sandboxes of containers that stopped while no daemon watched (or whose teardown a
        // crash interrupted): torn down now, before recovery starts anything.
        let stale: Vec<String> = nets
            .lock()
            .containers
            .iter()
            .filter(|(_, c)| c.sandbox.is_some())
            .map(|(id, _)| id.clone())
            .filter(|id| {
                let alive = self.lookup(id).is_ok_and(|e| {
                    matches!(
                        e.snapshot().state.status,
                        crate::container::Status::Running | crate::container::Status::Paused
                    ) && berth_runtime::shim::shim_alive(&self.runtime_dir(id))
                });
                !alive
            })
            .collect();
        for id in stale {
            nets.teardown(&id);
        }
        let st = nets.lock();
        let live: std::collections::HashSet<String> = st
            .containers
            .iter()
            .filter(|(_, c)| c.sandbox.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        let ids: Vec<NetworkRecord> = st
            .nets
            .values()
            .filter(|n| n.subnet.is_some())
            .cloned()
            .collect();
        drop(st);
        for n in ids {
            let _ = nets.with_ipam(&n, |ipam| {
                ipam.retain(|o| live.contains(o)).map_err(net_err)
            });
            if n.ipv6 && n.subnet6.is_some() {
                let _ = nets.with_ipam6(&n, |ipam| {
                    ipam.retain(|o| live.contains(o)).map_err(net_err)
                });
            }
        }
        // Namespaces pinned for containers that are gone.
        if let Ok(rd) = std::fs::read_dir(&nets.netns_dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !live.contains(&name) {
                    netns::remove(&e.path());
                }
            }
        }
    }

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
        let mode = rec.host_config.network_mode.as_str();
        if mode == "host" || mode == "none" {
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
}

/// A legacy link (`--link name:alias` on the default bridge) as a start resolves it.
pub(crate) struct LegacyLink {
    pub alias: String,
    pub name: String,
    pub hostname: String,
    pub ip: Option<Ipv4Addr>,
    pub env: Vec<String>,
    /// (port, proto), sorted.
    pub ports: Vec<(u16, String)>,
}

impl Engine {
    /// `DELETE /containers/{parent}/{alias}?link=1`: forgets the parent's link `alias`.
    pub async fn remove_link(&self, parent: &str, alias: &str) -> Result<()> {
        let full = format!("{parent}/{alias}");
        let c = self
            .lookup(parent)
            .map_err(|_| EngineError::NotFound(format!("No such container: {full}")))?;
        let _g = c.op.lock().await;
        let rec = c.snapshot();
        let links = rec.host_config.links.clone().unwrap_or_default();
        let keep: Vec<String> = links
            .iter()
            .filter(|l| parse_link(l).map(|(_, a)| a != alias).unwrap_or(true))
            .cloned()
            .collect();
        if keep.len() == links.len() {
            return Err(EngineError::NotFound(format!("No such container: {full}")));
        }
        c.update(|r| r.host_config.links = Some(keep))?;
        Ok(())
    }

    /// At create: every legacy link names an existing container that has a network namespace
    /// of its own.
    pub(crate) fn check_legacy_links(&self, hc: &berth_api::types::HostConfig) -> Result<()> {
        for l in hc.links.clone().unwrap_or_default() {
            let (name, _) = parse_link(&l)?;
            let child = self.lookup(&name).map_err(|_| {
                EngineError::InvalidParameter(format!("Could not get container for {name}"))
            })?;
            if child.snapshot().host_config.network_mode == "host" {
                return Err(EngineError::InvalidParameter(
                    "conflicting options: host type networking can't be used with links. This would result in undefined behavior".into(),
                ));
            }
        }
        Ok(())
    }

    /// At start, on the default bridge: the linked containers, which must be running.
    /// (`DELETE /containers/{parent}/{alias}?link=1` removes one: see [`Engine::remove_link`].)
    pub(crate) fn legacy_links(&self, rec: &ContainerRecord) -> Result<Vec<LegacyLink>> {
        if mode_network(&rec.host_config.network_mode) != Some("bridge") {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for l in rec.host_config.links.clone().unwrap_or_default() {
            let (name, alias) = parse_link(&l)?;
            let child = self.lookup(&name).map_err(|_| {
                EngineError::InvalidParameter(format!("Could not get container for {name}"))
            })?;
            let c = child.snapshot();
            if !c.state.status.is_running() {
                return Err(EngineError::Internal(format!(
                    "Cannot link to a non running container: /{} AS /{}/{alias}",
                    c.name, rec.name
                )));
            }
            let ip = {
                let st = self.nets().lock();
                let bridge = st
                    .nets
                    .values()
                    .find(|n| n.default_bridge)
                    .map(|n| n.id.clone());
                st.containers
                    .get(&c.id)
                    .and_then(|cn| cn.sandbox.as_ref())
                    .and_then(|sb| bridge.and_then(|b| sb.endpoints.get(&b)))
                    .map(|ep| ep.ip)
            };
            let mut ports: Vec<(u16, String)> = c
                .config
                .exposed_ports
                .clone()
                .unwrap_or_default()
                .keys()
                .filter_map(|k| ports::parse_port_key(k).ok())
                .collect();
            ports.sort();
            out.push(LegacyLink {
                alias,
                name: c.name.clone(),
                hostname: c.config.hostname.clone(),
                ip,
                env: c.config.env.clone().unwrap_or_default(),
                ports,
            });
        }
        Ok(out)
    }
}

/// The environment Docker gives a container for its legacy links (`DB_NAME`, `DB_PORT_5432_TCP`,
/// `DB_ENV_*`...).
pub(crate) fn link_env(parent: &str, links: &[LegacyLink]) -> Vec<String> {
    let mut env = Vec::new();
    for l in links {
        let a = l.alias.to_ascii_uppercase().replace('-', "_");
        let ip = l.ip.map(|i| i.to_string()).unwrap_or_default();
        if let Some((p, proto)) = l.ports.first() {
            env.push(format!("{a}_PORT={proto}://{ip}:{p}"));
        }
        for (p, proto) in &l.ports {
            let up = proto.to_ascii_uppercase();
            env.push(format!("{a}_PORT_{p}_{up}={proto}://{ip}:{p}"));
            env.push(format!("{a}_PORT_{p}_{up}_ADDR={ip}"));
            env.push(format!("{a}_PORT_{p}_{up}_PORT={p}"));
            env.push(format!("{a}_PORT_{p}_{up}_PROTO={proto}"));
        }
        env.push(format!("{a}_NAME=/{parent}/{}", l.alias));
        for kv in &l.env {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            if k == "HOME" || k == "PATH" {
                continue;
            }
            env.push(format!("{a}_ENV_{k}={v}"));
        }
    }
    env
}

/// `80`, `80/udp`, `8000-8080/tcp` -> the (port, proto) pairs a ps filter names.
fn filter_ports(v: &str) -> Result<Vec<(u16, String)>> {
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

impl Engine {
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
            let mode = rec.host_config.network_mode.as_str();
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

/// A MAC address as given, checked.
fn valid_mac(s: &str) -> Result<String> {
    match setup::parse_mac(s) {
        Some(m) if m[0] & 1 == 0 => Ok(setup::mac_string(m)),
        _ => Err(EngineError::InvalidParameter(format!(
            "invalid MAC address: {s}"
        ))),
    }
}

/// `name:alias` (or `name`) of a link, Docker's `ParseLink`.
pub(crate) fn parse_link(s: &str) -> Result<(String, String)> {
    let bad = || EngineError::InvalidParameter(format!("invalid link format: {s}"));
    let (name, alias) = match s.split_once(':') {
        Some((n, a)) => (n, a),
        None => (s, s),
    };
    let name = name.trim_start_matches('/');
    // Docker's own form: `/child:/parent/alias`.
    let alias = alias.rsplit('/').next().unwrap_or(alias);
    if name.is_empty() || alias.is_empty() || alias.contains(':') {
        return Err(bad());
    }
    Ok((name.to_string(), alias.to_string()))
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

impl Networks {
    /// Allocates an address and plugs one interface in.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn plug(
        &self,
        owner: &str,
        inner: &mut Netlink,
        ns: &Path,
        net: &NetworkRecord,
        att: &Attach,
        index: usize,
        want_gw: bool,
    ) -> Result<Endpoint> {
        let (Some(subnet), Some(bridge)) = (net.subnet, net.bridge.clone()) else {
            return Err(EngineError::Internal(format!(
                "network {} cannot take containers",
                net.name
            )));
        };
        let ip = self.with_ipam(net, |ipam| ipam.allocate(owner, att.ipv4).map_err(net_err))?;
        let ip6 = if net.ipv6 && net.subnet6.is_some() {
            match self.with_ipam6(net, |ipam| ipam.allocate(owner, att.ipv6).map_err(net_err)) {
                Ok(a) => Some(a),
                Err(e) => {
                    let _ = self.with_ipam(net, |ipam| ipam.release(ip, owner).map_err(net_err));
                    return Err(e);
                }
            }
        } else {
            None
        };
        let prefix6 = net.subnet6.map(|s| s.prefix).unwrap_or(0);
        let gateway = if want_gw && !net.internal {
            net.gateway
        } else {
            None
        };
        let gateway6 = if want_gw && !net.internal && ip6.is_some() {
            net.gateway6
        } else {
            None
        };
        let mac = match &att.mac {
            Some(m) => setup::parse_mac(m).unwrap_or_else(|| setup::mac_for(ip)),
            None => setup::mac_for(ip),
        };
        // eth0, eth1...: the next free name in the sandbox.
        let ifname = {
            let mut i = index;
            loop {
                let n = format!("eth{i}");
                match inner.link_index(&n) {
                    Ok(Some(_)) => i += 1,
                    _ => break n,
                }
            }
        };
        let veth = setup::veth_name();
        let ep = Endpoint {
            endpoint_id: util::new_id(),
            ip,
            prefix: subnet.prefix,
            gateway,
            host_veth: veth.clone(),
            ifname: ifname.clone(),
            mac: setup::mac_string(mac),
            ip6,
            prefix6,
            gateway6,
        };
        let r = self.with_nl(|host| {
            setup::attach(
                host,
                inner,
                ns,
                &setup::Endpoint {
                    bridge: &bridge,
                    host_veth: &veth,
                    ifname: &ifname,
                    ip,
                    prefix: subnet.prefix,
                    gateway,
                    mtu: 0,
                    mac,
                    ip6: ip6.map(|a| (a, prefix6)),
                    gateway6,
                    link_local: att.link_local.clone(),
                },
            )
            .map_err(net_err)
        });
        if let Err(e) = r {
            let _ = self.with_ipam(net, |ipam| ipam.release(ip, owner).map_err(net_err));
            if let Some(a) = ip6 {
                let _ = self.with_ipam6(net, |ipam| ipam.release(a, owner).map_err(net_err));
            }
            return Err(e);
        }
        Ok(ep)
    }

    /// Undoes a sandbox: resolver, held ports, DNAT elements, veths, namespace, addresses.
    /// Idempotent; the attachments themselves stay (a restart plugs them in again).
    pub(crate) fn teardown(&self, id: &str) {
        let t0 = std::time::Instant::now();
        let (sb, dns, _held) = {
            let mut st = self.lock();
            let sb = st.containers.get_mut(id).and_then(|c| c.sandbox.take());
            (sb, st.dns.remove(id), st.held.remove(id))
        };
        if let Some(h) = dns {
            h.abort();
        }
        let Some(sb) = sb else {
            // Nothing recorded, but a pinned namespace may be left by a crash.
            let p = self.netns_dir.join(id);
            if p.exists() {
                netns::remove(&p);
            }
            return;
        };
        if !sb.ports.is_empty() {
            if let Err(e) = self.fw.remove_ports(id) {
                tracing::warn!("container {id}: withdrawing published ports: {e}");
            }
        }
        netns::remove(&sb.netns);
        if let Err(e) = self.save_sandbox(id, None) {
            tracing::warn!("container {id}: removing sandbox record: {e}");
        }
        // Deleting a veth waits for the kernel (RCU) for 10-30 ms; releasing an address is an
        // fsynced write. Neither has to delay the exit: the reaper does them. A crash before it
        // does leaks nothing: the veth dies with its namespace, and the restart's sweep frees
        // addresses of containers that do not run.
        let job = Reap {
            owner: id.to_string(),
            veths: sb.endpoints.values().map(|e| e.host_veth.clone()).collect(),
            addresses: {
                let st = self.lock();
                sb.endpoints
                    .iter()
                    .filter_map(|(nid, ep)| st.nets.get(nid).map(|n| (n.clone(), ep.ip)))
                    .collect()
            },
            addresses6: sb
                .endpoints
                .iter()
                .filter_map(|(nid, ep)| ep.ip6.map(|a| (nid.clone(), a)))
                .collect(),
        };
        let sent = self
            .reaper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job);
        if let Err(std::sync::mpsc::SendError(job)) = sent {
            reap(&self.ipams, &self.ipams6, &mut None, job);
        }
        tracing::debug!("network of {id} torn down in {:?}", t0.elapsed());
    }

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

/// Work the reaper thread does after a teardown.
pub(crate) struct Reap {
    owner: String,
    veths: Vec<String>,
    addresses: Vec<(NetworkRecord, Ipv4Addr)>,
    addresses6: Vec<(String, Ipv6Addr)>,
}

type Ipams6 = Mutex<HashMap<String, Ipam6>>;

fn spawn_reaper(
    ipams: Arc<Mutex<HashMap<String, Ipam>>>,
    ipams6: Arc<Ipams6>,
) -> std::sync::mpsc::Sender<Reap> {
    let (tx, rx) = std::sync::mpsc::channel::<Reap>();
    let r = std::thread::Builder::new()
        .name("berth-net-reaper".into())
        .spawn(move || {
            let mut nl = None;
            for job in rx {
                reap(&ipams, &ipams6, &mut nl, job);
            }
        });
    if let Err(e) = r {
        tracing::warn!("starting the network reaper: {e}");
    }
    tx
}

fn reap(
    ipams: &Mutex<HashMap<String, Ipam>>,
    ipams6: &Ipams6,
    nl: &mut Option<Netlink>,
    job: Reap,
) {
    if nl.is_none() {
        *nl = Netlink::open().ok();
    }
    if let Some(nl) = nl.as_mut() {
        for v in &job.veths {
            if let Err(e) = nl.delete_link(v) {
                tracing::warn!("container {}: deleting {v}: {e}", job.owner);
            }
        }
    }
    {
        let mut m6 = ipams6.lock().unwrap_or_else(|p| p.into_inner());
        for (nid, ip) in &job.addresses6 {
            if let Some(ipam) = m6.get_mut(nid) {
                if let Err(e) = ipam.release(*ip, &job.owner) {
                    tracing::warn!("container {}: releasing {ip}: {e}", job.owner);
                }
            }
        }
    }
    let mut m = ipams.lock().unwrap_or_else(|p| p.into_inner());
    for (net, ip) in &job.addresses {
        if let Some(ipam) = m.get_mut(&net.id) {
            if let Err(e) = ipam.release(*ip, &job.owner) {
                tracing::warn!("container {}: releasing {ip}: {e}", job.owner);
            }
        }
    }
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

    #[test]
    fn links_parse_and_give_dockers_env() {
        assert_eq!(
            parse_link("db:alias").unwrap(),
            ("db".to_string(), "alias".to_string())
        );
        assert_eq!(
            parse_link("/db:/web/alias").unwrap(),
            ("db".to_string(), "alias".to_string())
        );
        assert_eq!(
            parse_link("db").unwrap(),
            ("db".to_string(), "db".to_string())
        );
        assert!(parse_link(":x").is_err());
        assert!(parse_link("a:").is_err());
        let env = link_env(
            "web",
            &[LegacyLink {
                alias: "my-db".into(),
                name: "db".into(),
                hostname: "h".into(),
                ip: Some(Ipv4Addr::new(10, 0, 0, 5)),
                env: vec!["FOO=1".into(), "PATH=/bin".into(), "BAR=a=b".into()],
                ports: vec![(5432, "tcp".into()), (9000, "udp".into())],
            }],
        );
        for want in [
            "MY_DB_PORT=tcp://10.0.0.5:5432",
            "MY_DB_PORT_5432_TCP=tcp://10.0.0.5:5432",
            "MY_DB_PORT_5432_TCP_ADDR=10.0.0.5",
            "MY_DB_PORT_5432_TCP_PORT=5432",
            "MY_DB_PORT_9000_UDP_PROTO=udp",
            "MY_DB_NAME=/web/my-db",
            "MY_DB_ENV_FOO=1",
            "MY_DB_ENV_BAR=a=b",
        ] {
            assert!(env.iter().any(|e| e == want), "{want}: {env:?}");
        }
        assert!(!env.iter().any(|e| e.starts_with("MY_DB_ENV_PATH")));
    }

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

    #[test]
    fn network_modes() {
        assert_eq!(mode_network(""), Some("bridge"));
        assert_eq!(mode_network("default"), Some("bridge"));
        assert_eq!(mode_network("host"), None);
        assert_eq!(mode_network("none"), None);
        assert_eq!(mode_network("container:x"), None);
        assert_eq!(mode_network("mynet"), Some("mynet"));
    }
}
