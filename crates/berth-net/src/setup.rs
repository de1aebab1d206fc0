//! Host-side plumbing: bridges, and a container's end of a network (veth pair, address, route).

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::cidr::Cidr;
use crate::netlink::Netlink;
use crate::{dns, netns, NetError, Result};

/// Writes a sysctl under /proc/sys.
pub fn sysctl(key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| NetError::Other(format!("writing {path}: {e}")))
}

/// Docker's MAC shape: 02:42 and the IPv4 address.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Creates (or adopts) the bridge `name` with `gateway/prefix` on it, up, with route_localnet
/// (so DNAT of 127.0.0.1 to its containers works) and IP forwarding on.
pub fn ensure_bridge(nl: &mut Netlink, name: &str, gateway: Ipv4Addr, subnet: Cidr) -> Result<()> {
    let idx = nl.ensure_bridge(name)?;
    nl.add_address(idx, gateway, subnet.prefix)?;
    nl.set_link(idx, true, None, None)?;
    sysctl(&format!("net/ipv4/conf/{name}/route_localnet"), "1")?;
    sysctl("net/ipv4/ip_forward", "1")?;
    Ok(())
}

/// One interface of a container on a network.
pub struct Endpoint<'a> {
    pub bridge: &'a str,
    pub host_veth: &'a str,
    /// Inside the container: eth0, eth1...
    pub ifname: &'a str,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// The default route (the container's first network that has one).
    pub gateway: Option<Ipv4Addr>,
    pub mtu: u32,
}

/// Creates the container's namespace pinned at `ns` (binding the DNS sockets in it when `dns`)
/// and returns a netlink socket into it.
pub fn create_sandbox(ns: &Path, with_dns: bool) -> Result<(Netlink, Option<dns::Sockets>)> {
    netns::create(ns, move |_| {
        // IPv4 only: interfaces made from now on in this namespace (the veths) get no IPv6,
        // so no link-local address and no duplicate-address detection (which hairpin mode,
        // below, would fail).
        let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
        let socks = if with_dns {
            Some(dns::bind_here()?)
        } else {
            None
        };
        Ok((Netlink::open()?, socks))
    })
}

/// A netlink socket into an existing pinned namespace.
pub fn open_sandbox(ns: &Path) -> Result<Netlink> {
    netns::enter(ns, Netlink::open)
}

/// Plugs `ep` into the namespace at `ns`: veth pair, bridge port, address, MAC, default route.
pub fn attach(host: &mut Netlink, inner: &mut Netlink, ns: &Path, ep: &Endpoint) -> Result<()> {
    let bridge = host
        .link_index(ep.bridge)?
        .ok_or_else(|| NetError::Other(format!("bridge {} does not exist", ep.bridge)))?;
    let nsf = std::fs::File::open(ns)
        .map_err(|e| NetError::Netns(format!("opening {}: {e}", ns.display())))?;
    host.create_veth(ep.host_veth, ep.ifname, nsf.as_raw_fd(), ep.mtu)?;
    let r = (|| {
        let hidx = host
            .link_index(ep.host_veth)?
            .ok_or_else(|| NetError::Other(format!("veth {} vanished", ep.host_veth)))?;
        host.set_link(hidx, true, Some(bridge), None)?;
        // Hairpin: with br_netfilter, a DNATed packet whose new destination sits on the bridge
        // port it came from (a container reaching its own published port) is bridged back out
        // of that port, which the bridge refuses unless the port is in hairpin mode.
        let _ = std::fs::write(
            format!("/sys/class/net/{}/brport/hairpin_mode", ep.host_veth),
            "1",
        );
        let cidx = inner
            .link_index(ep.ifname)?
            .ok_or_else(|| NetError::Other(format!("{} missing in the sandbox", ep.ifname)))?;
        inner.set_link(cidx, false, None, Some(mac_for(ep.ip)))?;
        inner.add_address(cidx, ep.ip, ep.prefix)?;
        inner.set_link(cidx, true, None, None)?;
        if let Some(gw) = ep.gateway {
            inner.add_default_route(gw)?;
        }
        Ok(())
    })();
    if r.is_err() {
        let _ = host.delete_link(ep.host_veth);
    }
    r
}

/// A fresh host-side veth name: "veth" and 7 hex digits, like Docker's.
pub fn veth_name() -> String {
    format!("veth{:07x}", rand::random::<u32>() & 0x0fff_ffff)
}
