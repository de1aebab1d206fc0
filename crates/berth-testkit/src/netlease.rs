//! A bridge name and a /20 of 10.0.0.0/8 per test daemon, unique on the machine while the
//! daemon lives (a lock file per block under the temp dir), and removal of everything a
//! daemon's networking made (its nftables table, the FORWARD rules it tagged, its bridges) even
//! when the daemon was killed.

use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One leased block: 10.a.(b*16).0/20.
#[derive(Debug)]
pub struct NetLease {
    pub a: u8,
    pub b: u8,
    lock: PathBuf,
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("berth-test-nets")
}

/// Host IPv4 routes (dest, mask) from /proc/net/route.
fn routes() -> Vec<(u32, u32)> {
    let text = fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let d = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let m = u32::from_str_radix(f.get(7)?, 16).ok()?;
            Some((u32::from_be(d.to_be()).swap_bytes(), m.swap_bytes()))
        })
        .filter(|(_, m)| *m != 0)
        .collect()
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks.
    pid > 0 && unsafe { libc::kill(pid, 0) == 0 }
}

impl NetLease {
    pub fn take() -> Result<NetLease, String> {
        let dir = lock_dir();
        fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let rs = routes();
        let seed = std::process::id() as usize
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as usize)
                .unwrap_or(0);
        for k in 0..640usize {
            let n = (seed + k * 7) % 640;
            let (a, b) = (200 + (n / 16) as u8, (n % 16) as u8);
            let net = u32::from(Ipv4Addr::new(10, a, b * 16, 0));
            let mask = 0xffff_f000u32;
            if rs.iter().any(|(d, m)| (d & m & mask) == (net & m & mask)) {
                continue;
            }
            let lock = dir.join(format!("10.{a}.{}", b * 16));
            // A lease of a dead test process: clean what it left and take it over.
            if let Ok(s) = fs::read_to_string(&lock) {
                if s.trim().parse::<i32>().map(pid_alive).unwrap_or(false) {
                    continue;
                }
                let stale = NetLease {
                    a,
                    b,
                    lock: lock.clone(),
                };
                cleanup_network(&stale.bridge(), None);
                let _ = fs::remove_file(&lock);
            }
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(mut f) => {
                    let _ = write!(f, "{}", std::process::id());
                    return Ok(NetLease { a, b, lock });
                }
                Err(_) => continue,
            }
        }
        Err("no free 10.x.y.0/20 block for a test daemon".into())
    }

    /// The default bridge's name (≤ 15 chars).
    pub fn bridge(&self) -> String {
        format!("btn{}_{}", self.a, self.b)
    }
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.a, self.b * 16, 1)
    }
    pub fn bip(&self) -> String {
        format!("{}/24", self.gateway())
    }
    pub fn pool(&self) -> String {
        format!("base=10.{}.{}.0/20,size=24", self.a, self.b * 16)
    }
    /// The daemon's nftables table.
    pub fn table(&self) -> String {
        format!("berth_{}", self.bridge())
    }

    pub fn release(&self, data_root: Option<&Path>) {
        cleanup_network(&self.bridge(), data_root);
        let _ = fs::remove_file(&self.lock);
    }
}

/// Bridges a daemon's networks.json lists.
pub fn bridges_of(data_root: &Path) -> Vec<String> {
    let Ok(b) = fs::read(data_root.join("network/networks.json")) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.get("bridge").and_then(|b| b.as_str()).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the table `berth_<bridge>`, the FORWARD rules tagged with it, and the bridges.
pub fn cleanup_network(bridge: &str, data_root: Option<&Path>) {
    let table = format!("berth_{bridge}");
    for family in ["ip", "ip6"] {
        let _ = Command::new("nft")
            .args(["delete", "table", family, &table])
            .stderr(std::process::Stdio::null())
            .status();
    }
    if let Ok(out) = Command::new("nft")
        .args(["-a", "list", "chain", "ip", "filter", "FORWARD"])
        .stderr(std::process::Stdio::null())
        .output()
    {
        let tag = format!("comment \"berth:{table}\"");
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if l.contains(&tag) {
                if let Some(h) = l.rsplit("# handle ").next() {
                    let _ = Command::new("nft")
                        .args([
                            "delete",
                            "rule",
                            "ip",
                            "filter",
                            "FORWARD",
                            "handle",
                            h.trim(),
                        ])
                        .status();
                }
            }
        }
    }
    let mut bridges = vec![bridge.to_string()];
    if let Some(d) = data_root {
        bridges.extend(bridges_of(d));
    }
    for b in bridges {
        if Path::new("/sys/class/net").join(&b).exists() {
            let _ = Command::new("ip").args(["link", "del", &b]).status();
        }
    }
}
