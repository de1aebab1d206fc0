//! The networks' state and its store: network records, each container's attachments and sandbox,
//! IPAM, the predefined networks, bridges and the firewall table.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use berth_api::network::IpamConfig;
use berth_api::types::EndpointIpamConfig;
use berth_net::cidr::{Cidr, Cidr6};
use berth_net::ipam::{Ipam, Ipam6};
use berth_net::netlink::Netlink;
use berth_net::nft::{Firewall, NetRules};
use berth_net::{dns, ports, setup};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::network::ports::port_rules;
use crate::network::sandbox::{spawn_reaper, Reap};
use crate::network::{net_err, not_found, reserved_subnets, NetConfig};
use crate::util::{self, now_rfc3339};

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
    /// Networks named at create that did not exist yet (name as given -> endpoint settings):
    /// dockerd accepts them and looks them up at start (`docker-compose create` relies on it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending: BTreeMap<String, berth_api::types::EndpointSettings>,
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
    pub(crate) ipams: Arc<Mutex<HashMap<String, Ipam>>>,
    /// network id -> its IPv6 allocations (dual-stack networks).
    pub(crate) ipams6: Arc<Mutex<HashMap<String, Ipam6>>>,
    /// Slow teardown work off the exit path: deleting host veths, releasing addresses.
    pub(crate) reaper: Mutex<std::sync::mpsc::Sender<Reap>>,
    pub(crate) upstream: Vec<Ipv4Addr>,
    pub(crate) host_resolv: String,
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
                berth_fs::write_replace(&path, &serde_json::to_vec(sb)?)?;
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
        let open = || {
            let (Some(subnet), Some(gw)) = (net.subnet, net.gateway) else {
                return Err(EngineError::Internal(format!(
                    "network {} has no subnet",
                    net.name
                )));
            };
            let path = self.dir.join("ipam").join(format!("{}.json", net.id));
            Ok(Ipam::open(&path, subnet, gw)
                .map_err(net_err)?
                .with_limits(net.ip_range, net.aux.values().copied().collect()))
        };
        with_opened(&self.ipams, &net.id, open, f)
    }

    /// Runs `f` on the IPv6 allocations of a dual-stack `net`.
    pub(crate) fn with_ipam6<T>(
        &self,
        net: &NetworkRecord,
        f: impl FnOnce(&mut Ipam6) -> Result<T>,
    ) -> Result<T> {
        let open = || {
            let (Some(subnet), Some(gw)) = (net.subnet6, net.gateway6) else {
                return Err(EngineError::Internal(format!(
                    "network {} has no IPv6 subnet",
                    net.name
                )));
            };
            let path = self.dir.join("ipam").join(format!("{}.v6.json", net.id));
            Ok(Ipam6::open(&path, subnet, gw)
                .map_err(net_err)?
                .with_limits(net.ip_range6, net.aux6.values().copied().collect()))
        };
        with_opened(&self.ipams6, &net.id, open, f)
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
        berth_net::slirp::keep_forwards();
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

/// Runs `f` on the entry `id` of `map`, opened with `open` on first use.
fn with_opened<I, T>(
    map: &Mutex<HashMap<String, I>>,
    id: &str,
    open: impl FnOnce() -> Result<I>,
    f: impl FnOnce(&mut I) -> Result<T>,
) -> Result<T> {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    let entry = match m.entry(id.to_string()) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => e.insert(open()?),
    };
    f(entry)
}
