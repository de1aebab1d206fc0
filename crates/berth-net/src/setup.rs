//! Host-side plumbing: bridges, and a container's end of a network (veth pair, address, route).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// Gives the bridge `name` its IPv6 gateway address (a dual-stack network) and turns IPv6
/// forwarding on, as Docker does for IPv6 networks.
pub fn ensure_bridge6(nl: &mut Netlink, name: &str, gateway: Ipv6Addr, prefix: u8) -> Result<()> {
    let idx = nl
        .link_index(name)?
        .ok_or_else(|| NetError::Other(format!("bridge {name} does not exist")))?;
    sysctl(&format!("net/ipv6/conf/{name}/disable_ipv6"), "0")?;
    nl.add_address6(idx, gateway, prefix)?;
    sysctl("net/ipv6/conf/all/forwarding", "1")?;
    Ok(())
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        mac[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
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
    pub mac: [u8; 6],
    /// The IPv6 address and prefix length on a dual-stack network.
    pub ip6: Option<(Ipv6Addr, u8)>,
    /// The IPv6 default route.
    pub gateway6: Option<Ipv6Addr>,
    /// Extra link-local addresses (`--link-local-ip`).
    pub link_local: Vec<IpAddr>,
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
        inner.set_link(cidx, false, None, Some(ep.mac))?;
        let v6 = ep.ip6.is_some() || ep.link_local.iter().any(|a| a.is_ipv6());
        if v6 {
            // The sandbox made its interfaces IPv4-only; this one carries IPv6. No duplicate-
            // address detection: hairpin mode reflects the probe, which would fail it.
            let ifname = ep.ifname.to_string();
            netns::enter(ns, move || {
                for (k, v) in [("accept_dad", "0"), ("disable_ipv6", "0")] {
                    sysctl(&format!("net/ipv6/conf/{ifname}/{k}"), v)?;
                }
                Ok(())
            })?;
        }
        inner.add_address(cidx, ep.ip, ep.prefix)?;
        if let Some((ip6, prefix6)) = ep.ip6 {
            inner.add_address6(cidx, ip6, prefix6)?;
        }
        for a in &ep.link_local {
            match a {
                IpAddr::V4(a) => inner.add_address(cidx, *a, 16)?,
                IpAddr::V6(a) => inner.add_address6(cidx, *a, 64)?,
            }
        }
        inner.set_link(cidx, true, None, None)?;
        if let Some(gw) = ep.gateway {
            inner.add_default_route(gw)?;
        }
        if let Some(gw6) = ep.gateway6 {
            inner.add_default_route6(cidx, gw6)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:42:ac:11:00:0a"),
            Some([0x02, 0x42, 0xac, 0x11, 0x00, 0x0a])
        );
        assert_eq!(parse_mac("02:42:ac:11:00"), None);
        assert_eq!(parse_mac("02:42:ac:11:00:zz"), None);
        assert_eq!(parse_mac("2:42:ac:11:00:0a"), None);
        assert_eq!(
            mac_string(mac_for(Ipv4Addr::new(172, 17, 0, 2))),
            "02:42:ac:11:00:02"
        );
    }
}
