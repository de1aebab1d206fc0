//! A running container's sandbox: its network namespace, plugged into its networks at start and torn
//! down at exit (slow parts on the reaper thread); readoption and sweeping after a daemon restart.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_net::ipam::{Ipam, Ipam6};
use berth_net::netlink::Netlink;
use berth_net::{dns, netns, ports, setup};

use crate::container::ContainerRecord;
use crate::error::{EngineError, Result};
use crate::network::ports::{hold_ports, port_rules, wanted_ports};
use crate::network::state::find_in;
use crate::network::{net_err, not_found, Attach, Endpoint, NetworkRecord, Networks, Sandbox};
use crate::util;
use crate::Engine;

impl Engine {
    /// At start: the namespace the container joins (with its networks plugged in).
    pub(crate) async fn net_start(
        &self,
        rec: &ContainerRecord,
    ) -> Result<berth_runtime::spec::NetworkMode> {
        use berth_runtime::spec::NetworkMode;
        let mode = &rec.host_config.network_mode;
        if mode.is_host() {
            return Ok(NetworkMode::Host);
        }
        if let Some(target) = mode.container() {
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
        if mode.network().is_none() {
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
        self.resolve_pending(&rec.id, &mut cn)?;
        if legacy && rec.host_config.network_mode.network() == Some("bridge") {
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
            let primary = (rec.host_config.network_mode.network())
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
                    ) && self.runtime().alive(&self.runtime_dir(id))
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
}

/// Work the reaper thread does after a teardown.
pub(crate) struct Reap {
    owner: String,
    veths: Vec<String>,
    addresses: Vec<(NetworkRecord, Ipv4Addr)>,
    addresses6: Vec<(String, Ipv6Addr)>,
}

type Ipams6 = Mutex<HashMap<String, Ipam6>>;

pub(crate) fn spawn_reaper(
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
