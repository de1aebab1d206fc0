//! Address management for one network: a persisted map of address -> owner. An allocation is on
//! disk (write temp, fsync, rename) before the address is handed out, so a crash at any point
//! never gives one address to two containers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cidr::{Cidr, Cidr6, Subnet};
use crate::{NetError, Result};

#[derive(Serialize, Deserialize)]
#[serde(bound = "A: Serialize + serde::de::DeserializeOwned + Ord")]
struct State<A> {
    /// address -> owner (a container id)
    allocated: BTreeMap<A, String>,
    /// The last address handed out dynamically: the next search starts after it, so a freed
    /// address is not reused at once (Docker does the same).
    last: Option<A>,
}

impl<A> Default for State<A> {
    fn default() -> Self {
        State {
            allocated: BTreeMap::new(),
            last: None,
        }
    }
}

/// The addresses of one network of one family.
pub struct AddrPool<S: Subnet> {
    path: PathBuf,
    subnet: S,
    gateway: S::Addr,
    /// `--ip-range`: where dynamic addresses come from (a requested one may lie anywhere in
    /// the subnet, as in Docker).
    range: Option<S>,
    /// `--aux-address`es: never handed out.
    reserved: Vec<S::Addr>,
    state: State<S::Addr>,
}

/// A network's IPv4 addresses.
pub type Ipam = AddrPool<Cidr>;
/// The IPv6 side of a dual-stack network.
pub type Ipam6 = AddrPool<Cidr6>;

/// Writes `data` to `path` atomically (berth-fs), creating its directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    berth_fs::write_atomic(path, data)
}

impl<S: Subnet> AddrPool<S> {
    /// Opens (or starts) the allocation file at `path` for `subnet`.
    pub fn open(path: &Path, subnet: S, gateway: S::Addr) -> Result<Self> {
        let state = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| NetError::Ipam(format!("reading {}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(NetError::Ipam(format!("reading {}: {e}", path.display()))),
        };
        Ok(AddrPool {
            path: path.to_path_buf(),
            subnet: subnet.normalized(),
            gateway,
            range: None,
            reserved: Vec::new(),
            state,
        })
    }

    /// Restricts dynamic allocation to `range` and keeps `reserved` out of every allocation.
    pub fn with_limits(mut self, range: Option<S>, reserved: Vec<S::Addr>) -> Self {
        self.range = range.map(|r| r.normalized());
        self.reserved = reserved;
        self
    }

    fn save(&self) -> Result<()> {
        let b = serde_json::to_vec(&self.state)
            .map_err(|e| NetError::Ipam(format!("encoding allocations: {e}")))?;
        write_atomic(&self.path, &b)
            .map_err(|e| NetError::Ipam(format!("writing {}: {e}", self.path.display())))
    }

    fn usable(&self, ip: S::Addr) -> bool {
        self.subnet.contains(ip)
            && ip != self.gateway
            && !self.reserved.contains(&ip)
            && !self.subnet.reserved(ip)
    }

    /// Allocates `want` (it must be free and in the subnet) or the next free address of the
    /// range (or subnet), for `owner`; persisted before it returns.
    pub fn allocate(&mut self, owner: &str, want: Option<S::Addr>) -> Result<S::Addr> {
        let ip = match want {
            Some(ip) => {
                if !self.usable(ip) {
                    return Err(NetError::InvalidParameter(format!(
                        "no configured subnet or ip-range contain the IP address {ip}"
                    )));
                }
                if let Some(o) = self.state.allocated.get(&ip) {
                    if o != owner {
                        return Err(NetError::Conflict(format!("Address already in use: {ip}")));
                    }
                }
                ip
            }
            None => {
                let pool = self.range.unwrap_or(self.subnet);
                let base = S::bits(pool.network());
                let span = (S::bits(pool.last()) - base).saturating_add(1);
                let start = self
                    .state
                    .last
                    .filter(|l| pool.contains(*l))
                    .map(|l| S::bits(l) - base + 1)
                    .unwrap_or(1);
                // Among this many consecutive candidates one is free unless all taken: each
                // allocation, reserved address, the gateway, network and broadcast block one.
                let tries = (self.state.allocated.len() as u128 + self.reserved.len() as u128 + 4)
                    .min(span);
                let found = (0..tries)
                    .map(|k| S::from_bits(base + (start + k) % span))
                    .find(|ip| self.usable(*ip) && !self.state.allocated.contains_key(ip));
                found.ok_or_else(|| {
                    NetError::Ipam(format!(
                        "no available {} addresses on this network's address pools: {pool}",
                        S::FAMILY
                    ))
                })?
            }
        };
        self.state.allocated.insert(ip, owner.to_string());
        let cursor = self.state.last;
        if want.is_none() {
            // A requested address does not move the cursor of dynamic ones.
            self.state.last = Some(ip);
        }
        if let Err(e) = self.save() {
            self.state.allocated.remove(&ip);
            self.state.last = cursor;
            return Err(e);
        }
        Ok(ip)
    }

    /// Frees `ip` if `owner` holds it (a later allocation of the same owner stays).
    pub fn release(&mut self, ip: S::Addr, owner: &str) -> Result<()> {
        if self.state.allocated.get(&ip).map(String::as_str) == Some(owner) {
            self.state.allocated.remove(&ip);
            self.save()?;
        }
        Ok(())
    }

    /// Frees every address of `owner`.
    pub fn release_owner(&mut self, owner: &str) -> Result<()> {
        self.retain(|o| o != owner)
    }

    /// Keeps only allocations whose owner `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) -> Result<()> {
        let before = self.state.allocated.len();
        self.state.allocated.retain(|_, o| keep(o));
        if self.state.allocated.len() != before {
            self.save()?;
        }
        Ok(())
    }

    pub fn owner(&self, ip: S::Addr) -> Option<&str> {
        self.state.allocated.get(&ip).map(String::as_str)
    }

    pub fn allocated(&self) -> impl Iterator<Item = (S::Addr, &str)> {
        self.state.allocated.iter().map(|(k, v)| (*k, v.as_str()))
    }

    pub fn remove_file(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn net() -> (Cidr, Ipv4Addr) {
        ("10.77.0.0/29".parse().unwrap(), Ipv4Addr::new(10, 77, 0, 1))
    }

    #[test]
    fn never_twice_and_survives_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("ipam.json");
        let (s, gw) = net();
        let mut a = Ipam::open(&p, s, gw).unwrap();
        let ip1 = a.allocate("c1", None).unwrap();
        let ip2 = a.allocate("c2", None).unwrap();
        assert_eq!(ip1, Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(ip2, Ipv4Addr::new(10, 77, 0, 3));
        // A "crash": a new instance reads what was committed.
        let mut b = Ipam::open(&p, s, gw).unwrap();
        let ip3 = b.allocate("c3", None).unwrap();
        assert!(ip3 != ip1 && ip3 != ip2);
        assert_eq!(b.owner(ip1), Some("c1"));
        // Freed addresses come back, but only after the rest of the range.
        b.release_owner("c1").unwrap();
        let mut got = vec![];
        while let Ok(ip) = b.allocate("x", None) {
            got.push(ip);
        }
        // /29: .0 network, .1 gateway, .7 broadcast -> .2..=.6 usable, 5 in all.
        assert_eq!(got.len() + 2, 5);
        assert_eq!(got.last(), Some(&ip1));
        assert!(b.allocate("y", None).is_err());
        let mut c = Ipam::open(&p, s, gw).unwrap();
        c.retain(|o| o != "x").unwrap();
        assert_eq!(c.allocated().count(), 2);
    }

    #[test]
    fn requested_addresses() {
        let tmp = tempfile::tempdir().unwrap();
        let (s, gw) = net();
        let mut a = Ipam::open(&tmp.path().join("i.json"), s, gw).unwrap();
        assert!(a.allocate("c", Some(gw)).is_err());
        assert!(a.allocate("c", Some(Ipv4Addr::new(10, 78, 0, 2))).is_err());
        let ip = Ipv4Addr::new(10, 77, 0, 5);
        assert_eq!(a.allocate("c", Some(ip)).unwrap(), ip);
        assert!(matches!(
            a.allocate("d", Some(ip)),
            Err(NetError::Conflict(_))
        ));
        // A requested address does not move the dynamic cursor, which skips it later.
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| a.allocate("e", None).ok()).collect();
        let host = |n| Ipv4Addr::new(10, 77, 0, n);
        assert_eq!(got, vec![host(2), host(3), host(4), host(6)]);
    }

    #[test]
    fn range_and_reserved() {
        let tmp = tempfile::tempdir().unwrap();
        let s: Cidr = "10.80.0.0/16".parse().unwrap();
        let range: Cidr = "10.80.5.0/30".parse().unwrap();
        let aux = Ipv4Addr::new(10, 80, 5, 2);
        let mut a = Ipam::open(&tmp.path().join("i.json"), s, Ipv4Addr::new(10, 80, 5, 254))
            .unwrap()
            .with_limits(Some(range), vec![aux]);
        // The range is .0-.3: .0 is not the subnet's network address, so it is usable.
        let got: Vec<Ipv4Addr> = std::iter::from_fn(|| a.allocate("c", None).ok()).collect();
        assert_eq!(
            got,
            vec![
                Ipv4Addr::new(10, 80, 5, 1),
                Ipv4Addr::new(10, 80, 5, 3),
                Ipv4Addr::new(10, 80, 5, 0)
            ]
        );
        // A requested address may lie outside the range, never on a reserved one.
        assert!(a.allocate("d", Some(Ipv4Addr::new(10, 80, 9, 9))).is_ok());
        assert!(a.allocate("d", Some(aux)).is_err());
    }

    #[test]
    fn ipv6_allocations() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("i6.json");
        let s: Cidr6 = "2001:db8::/64".parse().unwrap();
        let gw: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut a = Ipam6::open(&p, s, gw).unwrap();
        let x = a.allocate("c1", None).unwrap();
        assert_eq!(x.to_string(), "2001:db8::2");
        let want: Ipv6Addr = "2001:db8::f00d".parse().unwrap();
        assert_eq!(a.allocate("c2", Some(want)).unwrap(), want);
        assert!(a.allocate("c3", Some(want)).is_err());
        assert!(a.allocate("c3", Some(gw)).is_err());
        assert!(a
            .allocate("c3", Some("2001:db9::1".parse().unwrap()))
            .is_err());
        let mut b = Ipam6::open(&p, s, gw).unwrap();
        assert_eq!(b.allocate("c3", None).unwrap().to_string(), "2001:db8::3");
        b.release(x, "c1").unwrap();
        b.retain(|o| o != "c2").unwrap();
        assert_eq!(b.state.allocated.len(), 1);
    }
}
