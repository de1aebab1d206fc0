//! Address management for one network: a persisted map of address -> owner. An allocation is on
//! disk (write temp, fsync, rename) before the address is handed out, so a crash at any point
//! never gives one address to two containers.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;
use crate::{NetError, Result};

#[derive(Default, Serialize, Deserialize)]
struct State {
    /// address -> owner (a container id)
    allocated: BTreeMap<Ipv4Addr, String>,
    /// The last address handed out: the next search starts after it, so a freed address is not
    /// reused at once (Docker does the same).
    last: Option<Ipv4Addr>,
}

pub struct Ipam {
    path: PathBuf,
    subnet: Cidr,
    gateway: Ipv4Addr,
    state: State,
}

/// Writes `data` to `path` atomically: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
        rand::random::<u32>()
    ));
    let r = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

impl Ipam {
    /// Opens (or starts) the allocation file at `path` for `subnet`.
    pub fn open(path: &Path, subnet: Cidr, gateway: Ipv4Addr) -> Result<Ipam> {
        let state = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| NetError::Ipam(format!("reading {}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(NetError::Ipam(format!("reading {}: {e}", path.display()))),
        };
        Ok(Ipam {
            path: path.to_path_buf(),
            subnet: subnet.normalized(),
            gateway,
            state,
        })
    }

    fn save(&self) -> Result<()> {
        let b = serde_json::to_vec(&self.state)
            .map_err(|e| NetError::Ipam(format!("encoding allocations: {e}")))?;
        write_atomic(&self.path, &b)
            .map_err(|e| NetError::Ipam(format!("writing {}: {e}", self.path.display())))
    }

    fn usable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(ip)
            && ip != self.gateway
            && (self.subnet.prefix >= 31
                || (ip != self.subnet.network() && ip != self.subnet.broadcast()))
    }

    /// Allocates `want` (it must be free and in the subnet) or the next free address, for
    /// `owner`; persisted before it returns.
    pub fn allocate(&mut self, owner: &str, want: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
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
                let base = u32::from(self.subnet.network());
                let size = self.subnet.size().min(1 << 24) as u32;
                let start = self
                    .state
                    .last
                    .filter(|l| self.subnet.contains(*l))
                    .map(|l| u32::from(l) - base + 1)
                    .unwrap_or(1);
                let mut found = None;
                for k in 0..size {
                    let off = (start + k) % size;
                    let ip = Ipv4Addr::from(base + off);
                    if self.usable(ip) && !self.state.allocated.contains_key(&ip) {
                        found = Some(ip);
                        break;
                    }
                }
                found.ok_or_else(|| {
                    NetError::Ipam(format!(
                        "no available IPv4 addresses on this network's address pools: {}",
                        self.subnet
                    ))
                })?
            }
        };
        self.state.allocated.insert(ip, owner.to_string());
        self.state.last = Some(ip);
        if let Err(e) = self.save() {
            self.state.allocated.remove(&ip);
            return Err(e);
        }
        Ok(ip)
    }

    /// Frees `ip` if `owner` holds it (a later allocation of the same owner stays).
    pub fn release(&mut self, ip: Ipv4Addr, owner: &str) -> Result<()> {
        if self.state.allocated.get(&ip).map(String::as_str) == Some(owner) {
            self.state.allocated.remove(&ip);
            self.save()?;
        }
        Ok(())
    }

    /// Frees every address of `owner`.
    pub fn release_owner(&mut self, owner: &str) -> Result<()> {
        let before = self.state.allocated.len();
        self.state.allocated.retain(|_, o| o != owner);
        if self.state.allocated.len() != before {
            self.save()?;
        }
        Ok(())
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

    pub fn owner(&self, ip: Ipv4Addr) -> Option<&str> {
        self.state.allocated.get(&ip).map(String::as_str)
    }

    pub fn allocated(&self) -> impl Iterator<Item = (Ipv4Addr, &str)> {
        self.state.allocated.iter().map(|(k, v)| (*k, v.as_str()))
    }

    pub fn remove_file(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
