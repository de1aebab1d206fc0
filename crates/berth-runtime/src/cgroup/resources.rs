//! A container's limits, as Docker's HostConfig gives them (`--memory`, `--cpus`, `--cpuset-cpus`,
//! `--pids-limit`, `--blkio-weight`, `--device-read-bps`...), turned into the spec's
//! `linux.resources`, into cgroup files (v1 or v2) for `update`, and into systemd unit
//! properties for the systemd driver.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::dbus::Prop;
use super::ContainerCgroup;
use crate::RuntimeError;

/// `BlkioWeightDevice`: a relative weight (10 to 1000) for one block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightDevice {
    pub major: i64,
    pub minor: i64,
    pub weight: u16,
}

/// `BlkioDeviceReadBps` and the like: a rate (bytes or operations per second) for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleDevice {
    pub major: i64,
    pub minor: i64,
    pub rate: u64,
}

/// The major and minor number of a block device path (Docker's checks and words).
pub fn block_device(path: &str) -> Result<(i64, i64), RuntimeError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md =
        std::fs::metadata(path).map_err(|e| RuntimeError::Invalid(format!("stat {path}: {e}")))?;
    if !md.file_type().is_block_device() {
        return Err(RuntimeError::Invalid(format!(
            "{path} is not a block device"
        )));
    }
    let rdev = md.rdev();
    Ok((
        nix::sys::stat::major(rdev) as i64,
        nix::sys::stat::minor(rdev) as i64,
    ))
}

impl WeightDevice {
    pub fn from_path(path: &str, weight: u16) -> Result<WeightDevice, RuntimeError> {
        if !(10..=1000).contains(&weight) {
            return Err(RuntimeError::Invalid(format!(
                "invalid weight for device: {weight}: blkio weight-device must be in the range [10, 1000]"
            )));
        }
        let (major, minor) = block_device(path)?;
        Ok(WeightDevice {
            major,
            minor,
            weight,
        })
    }
}

impl ThrottleDevice {
    pub fn from_path(path: &str, rate: u64) -> Result<ThrottleDevice, RuntimeError> {
        let (major, minor) = block_device(path)?;
        Ok(ThrottleDevice { major, minor, rate })
    }
}

/// A container's resource limits. Zero (or empty, or `None`) means "not set", as in Docker's
/// HostConfig.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub memory: i64,
    /// Memory plus swap: 0 = twice the memory, -1 = unlimited.
    pub memory_swap: i64,
    pub memory_reservation: i64,
    pub memory_swappiness: Option<i64>,
    pub oom_kill_disable: bool,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub pids_limit: Option<i64>,
    pub blkio_weight: u16,
    pub blkio_weight_device: Vec<WeightDevice>,
    pub device_read_bps: Vec<ThrottleDevice>,
    pub device_write_bps: Vec<ThrottleDevice>,
    pub device_read_iops: Vec<ThrottleDevice>,
    pub device_write_iops: Vec<ThrottleDevice>,
}

/// The annotation that carries to the shim the limits it applies itself after create (see
/// `super::after_create`): a `Resources` with only those set.
pub(crate) const DEFERRED_ANNOTATION: &str = "org.berth.cgroup-deferred";

impl Resources {
    /// Clears the limits of the cgroup v2 controllers `keep` refuses (rootless: the ones not
    /// delegated to the daemon).
    pub fn retain_controllers(&mut self, keep: impl Fn(&str) -> bool) {
        if !keep("memory") {
            self.memory = 0;
            self.memory_swap = 0;
            self.memory_reservation = 0;
            self.memory_swappiness = None;
            self.oom_kill_disable = false;
        }
        if !keep("cpu") {
            self.nano_cpus = 0;
            self.cpu_shares = 0;
            self.cpu_period = 0;
            self.cpu_quota = 0;
        }
        if !keep("cpuset") {
            self.cpuset_cpus.clear();
            self.cpuset_mems.clear();
        }
        if !keep("pids") {
            self.pids_limit = None;
        }
        if !keep("io") {
            self.blkio_weight = 0;
            self.blkio_weight_device.clear();
            self.device_read_bps.clear();
            self.device_write_bps.clear();
            self.device_read_iops.clear();
            self.device_write_iops.clear();
        }
    }

    /// The deferred limits an annotation map carries (none when absent or unreadable).
    pub(crate) fn from_annotations(a: Option<&HashMap<String, String>>) -> Option<Resources> {
        a.and_then(|a| a.get(DEFERRED_ANNOTATION))
            .and_then(|s| serde_json::from_str(s).ok())
    }
}

/// v1 CPU shares (2..262144) to the v2 weight (1..10000), as runc 1.3.2+ (opencontainers/cgroups
/// 0.0.3+), crun 1.23+ and libcontainer 0.7 convert them, so Docker's default of 1024 shares is
/// the v2 default weight of 100 (the older linear formula made it 39): a curve through
/// (2, 1), (1024, 100) and (262144, 10000) in log space.
pub fn shares_to_weight(shares: i64) -> u64 {
    match shares {
        s if s <= 0 => 100,
        s if s <= 2 => 1,
        s if s >= 262_144 => 10_000,
        s => {
            let l = (s as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            (10f64.powf(exponent).ceil() as u64).clamp(1, 10_000)
        }
    }
}

/// A blkio weight (10..1000) to an io.weight (1..10000), as runc converts it.
pub fn blkio_to_io_weight(w: u16) -> u64 {
    let w = u64::from(w.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// `0-2,4` → the bytes of a CPU (or NUMA node) bitmask, lowest CPU in the first byte's lowest
/// bit: systemd's `AllowedCPUs` as D-Bus takes it.
pub fn cpu_list_mask(list: &str) -> Result<Vec<u8>, RuntimeError> {
    let bad = || RuntimeError::Invalid(format!("invalid value {list} for cpuset cpus"));
    let mut mask: Vec<u8> = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let a: usize = a.parse().map_err(|_| bad())?;
        let b: usize = b.parse().map_err(|_| bad())?;
        if a > b || b >= 8192 {
            return Err(bad());
        }
        for cpu in a..=b {
            if mask.len() <= cpu / 8 {
                mask.resize(cpu / 8 + 1, 0);
            }
            mask[cpu / 8] |= 1 << (cpu % 8);
        }
    }
    Ok(mask)
}

/// `/dev/<name>` of a block device number, as systemd wants it in IO properties.
fn device_node(major: i64, minor: i64) -> Option<String> {
    let link = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    Some(format!("/dev/{}", link.file_name()?.to_string_lossy()))
}

impl Resources {
    /// The CFS (quota, period) in µs, from `--cpus` or `--cpu-quota`/`--cpu-period`.
    pub fn cfs(&self) -> (Option<i64>, Option<i64>) {
        // Checked arithmetic (crate::limits): the engine refuses out-of-range values at
        // create, so an overflow here leaves the CPU unlimited rather than wrapping.
        match crate::limits::cfs(self.nano_cpus, self.cpu_period, self.cpu_quota) {
            Some((period, quota)) => (quota, period),
            None => (None, None),
        }
    }

    /// Memory plus swap, as the spec takes it (None = not limited by us).
    fn swap_total(&self) -> Option<i64> {
        if self.memory > 0 {
            crate::limits::memory_swap(self.memory, self.memory_swap).flatten()
        } else if self.memory_swap < 0 {
            Some(-1)
        } else {
            None
        }
    }

    /// The spec's `linux.resources` (without devices), and the limits the shim applies
    /// itself after libcontainer created the container: on v2 the block IO weights
    /// (libcontainer's conversion overflows above 16), and with the systemd driver the cpuset
    /// (libcontainer sends AllowedCPUs with a type systemd refuses). `v2`: the host's cgroups
    /// are v2 only; `swap_limit`: swap can be limited; `systemd`: the systemd driver.
    pub(crate) fn to_spec(
        &self,
        v2: bool,
        swap_limit: bool,
        systemd: bool,
    ) -> (Value, Option<Resources>) {
        let mut deferred = Resources::default();
        let mut r = json!({});
        let mut mem = serde_json::Map::new();
        if self.memory > 0 {
            mem.insert("limit".into(), json!(self.memory));
        }
        if swap_limit {
            if let Some(s) = self.swap_total() {
                if self.memory > 0 || s < 0 {
                    mem.insert("swap".into(), json!(s));
                }
            }
        }
        if self.memory_reservation > 0 {
            mem.insert("reservation".into(), json!(self.memory_reservation));
        }
        // Neither exists on v2 (Docker discards them there).
        if !v2 {
            if let Some(s) = self.memory_swappiness.filter(|s| (0..=100).contains(s)) {
                mem.insert("swappiness".into(), json!(s));
            }
            if self.oom_kill_disable {
                mem.insert("disableOOMKiller".into(), json!(true));
            }
        }
        if !mem.is_empty() {
            r["memory"] = Value::Object(mem);
        }
        let mut cpu = serde_json::Map::new();
        if self.cpu_shares > 0 {
            cpu.insert(
                "shares".into(),
                json!(crate::limits::cpu_shares(self.cpu_shares)),
            );
        }
        let (quota, period) = self.cfs();
        if let Some(q) = quota {
            cpu.insert("quota".into(), json!(q));
        }
        if let Some(p) = period {
            cpu.insert("period".into(), json!(p));
        }
        if systemd {
            deferred.cpuset_cpus = self.cpuset_cpus.clone();
            deferred.cpuset_mems = self.cpuset_mems.clone();
        } else {
            if !self.cpuset_cpus.is_empty() {
                cpu.insert("cpus".into(), json!(self.cpuset_cpus));
            }
            if !self.cpuset_mems.is_empty() {
                cpu.insert("mems".into(), json!(self.cpuset_mems));
            }
        }
        if !cpu.is_empty() {
            r["cpu"] = Value::Object(cpu);
        }
        if let Some(p) = self.pids_limit.filter(|p| *p > 0) {
            r["pids"] = json!({ "limit": p });
        }
        let throttle = |l: &[ThrottleDevice]| -> Value {
            l.iter()
                .map(|d| json!({ "major": d.major, "minor": d.minor, "rate": d.rate }))
                .collect()
        };
        let mut bio = serde_json::Map::new();
        for (key, list) in [
            ("throttleReadBpsDevice", &self.device_read_bps),
            ("throttleWriteBpsDevice", &self.device_write_bps),
            ("throttleReadIOPSDevice", &self.device_read_iops),
            ("throttleWriteIOPSDevice", &self.device_write_iops),
        ] {
            if !list.is_empty() {
                bio.insert(key.into(), throttle(list));
            }
        }
        if v2 {
            deferred.blkio_weight = self.blkio_weight;
            deferred.blkio_weight_device = self.blkio_weight_device.clone();
        } else {
            if self.blkio_weight > 0 {
                bio.insert("weight".into(), json!(self.blkio_weight));
            }
            if !self.blkio_weight_device.is_empty() {
                let l: Vec<Value> = self
                    .blkio_weight_device
                    .iter()
                    .map(|d| json!({ "major": d.major, "minor": d.minor, "weight": d.weight }))
                    .collect();
                bio.insert("weightDevice".into(), Value::Array(l));
            }
        }
        if !bio.is_empty() {
            r["blockIO"] = Value::Object(bio);
        }
        (r, (deferred != Resources::default()).then_some(deferred))
    }

    /// systemd's unit properties for these limits (the systemd driver's `update`, and the
    /// weights after create). `dir` is the unit's cgroup, to know which files the kernel has.
    pub(crate) fn unit_properties(
        &self,
        dir: PathBuf,
    ) -> Result<Vec<(&'static str, Prop)>, RuntimeError> {
        let mut p = Vec::new();
        let inf = u64::MAX;
        if self.memory > 0 {
            p.push(("MemoryMax", Prop::U64(self.memory as u64)));
        }
        if dir.join("memory.swap.max").exists() {
            match self.swap_total() {
                Some(-1) => p.push(("MemorySwapMax", Prop::U64(inf))),
                Some(s) if self.memory > 0 => {
                    p.push(("MemorySwapMax", Prop::U64((s - self.memory).max(0) as u64)))
                }
                _ => {}
            }
        }
        if self.memory_reservation > 0 {
            p.push(("MemoryLow", Prop::U64(self.memory_reservation as u64)));
        }
        if self.cpu_shares > 0 {
            p.push(("CPUWeight", Prop::U64(shares_to_weight(self.cpu_shares))));
        }
        let (quota, period) = self.cfs();
        let period_us = period.unwrap_or(100_000).max(1) as u64;
        if let Some(q) = quota {
            // systemd keeps quotas per second in 10 ms steps (runc rounds up the same way).
            let per_sec = (q as u64 * 1_000_000).div_ceil(period_us).div_ceil(10_000) * 10_000;
            p.push(("CPUQuotaPerSecUSec", Prop::U64(per_sec)));
        }
        if let Some(per) = period {
            p.push(("CPUQuotaPeriodUSec", Prop::U64(per as u64)));
        }
        if !self.cpuset_cpus.is_empty() {
            p.push((
                "AllowedCPUs",
                Prop::Bytes(cpu_list_mask(&self.cpuset_cpus)?),
            ));
        }
        if !self.cpuset_mems.is_empty() {
            p.push((
                "AllowedMemoryNodes",
                Prop::Bytes(cpu_list_mask(&self.cpuset_mems)?),
            ));
        }
        match self.pids_limit {
            Some(n) if n > 0 => p.push(("TasksMax", Prop::U64(n as u64))),
            Some(_) => p.push(("TasksMax", Prop::U64(inf))),
            None => {}
        }
        if self.blkio_weight > 0 {
            p.push(("IOWeight", Prop::U64(blkio_to_io_weight(self.blkio_weight))));
        }
        let devs = |l: &[(i64, i64, u64)]| -> Result<Vec<(String, u64)>, RuntimeError> {
            l.iter()
                .map(|(ma, mi, v)| {
                    device_node(*ma, *mi)
                        .map(|n| (n, *v))
                        .ok_or_else(|| RuntimeError::Invalid(format!("no block device {ma}:{mi}")))
                })
                .collect()
        };
        // Per-device weights only for devices BFQ schedules (see `write_io_weights`).
        let weights: Vec<(i64, i64, u64)> = self
            .blkio_weight_device
            .iter()
            .filter(|d| bfq_schedules(d.major, d.minor))
            .map(|d| (d.major, d.minor, blkio_to_io_weight(d.weight)))
            .collect();
        if !weights.is_empty() {
            p.push(("IODeviceWeight", Prop::DevU64(devs(&weights)?)));
        }
        for (name, list) in [
            ("IOReadBandwidthMax", &self.device_read_bps),
            ("IOWriteBandwidthMax", &self.device_write_bps),
            ("IOReadIOPSMax", &self.device_read_iops),
            ("IOWriteIOPSMax", &self.device_write_iops),
        ] {
            if !list.is_empty() {
                let l: Vec<(i64, i64, u64)> =
                    list.iter().map(|d| (d.major, d.minor, d.rate)).collect();
                p.push((name, Prop::DevU64(devs(&l)?)));
            }
        }
        Ok(p)
    }

    /// Writes every limit into the container's cgroup files (v1 or v2): `update` of a running
    /// container. Unset limits are written as unlimited where Docker's update resets them.
    pub(crate) fn write_files(&self, cg: &ContainerCgroup) -> std::io::Result<()> {
        let v2 = cg.is_v2();
        let lim = |v: i64| {
            if v <= 0 {
                if v2 {
                    "max".to_string()
                } else {
                    "-1".to_string()
                }
            } else {
                v.to_string()
            }
        };
        if v2 {
            cg.write("", "memory.max", &lim(self.memory))?;
            if cg.dir("").join("memory.swap.max").exists() {
                match self.swap_total() {
                    Some(-1) => cg.write("", "memory.swap.max", "max")?,
                    Some(s) if self.memory > 0 => {
                        cg.write("", "memory.swap.max", &(s - self.memory).max(0).to_string())?
                    }
                    _ => {}
                }
            }
            cg.write(
                "",
                "memory.low",
                &self.memory_reservation.max(0).to_string(),
            )?;
        } else {
            let memsw = cg
                .dir("memory")
                .join("memory.memsw.limit_in_bytes")
                .exists();
            let cur_memsw = cg
                .read_u64("memory", "memory.memsw.limit_in_bytes")
                .unwrap_or(u64::MAX);
            let new_swap = self.swap_total().map(lim);
            // memsw must stay >= the memory limit: order the writes accordingly.
            if memsw && self.memory > 0 && (self.memory as u64) > cur_memsw {
                if let Some(s) = &new_swap {
                    cg.write("memory", "memory.memsw.limit_in_bytes", s)?;
                }
                cg.write("memory", "memory.limit_in_bytes", &lim(self.memory))?;
            } else {
                cg.write("memory", "memory.limit_in_bytes", &lim(self.memory))?;
                if memsw {
                    if let Some(s) = &new_swap {
                        cg.write("memory", "memory.memsw.limit_in_bytes", s)?;
                    }
                }
            }
            cg.write(
                "memory",
                "memory.soft_limit_in_bytes",
                &lim(self.memory_reservation),
            )?;
        }
        let (quota, period) = self.cfs();
        let period = period.unwrap_or(100_000);
        if v2 {
            let q = quota.map_or("max".to_string(), |q| q.to_string());
            cg.write("", "cpu.max", &format!("{q} {period}"))?;
            if self.cpu_shares > 0 {
                cg.write(
                    "",
                    "cpu.weight",
                    &shares_to_weight(self.cpu_shares).to_string(),
                )?;
            }
        } else {
            cg.write("cpu", "cpu.cfs_period_us", &period.to_string())?;
            cg.write("cpu", "cpu.cfs_quota_us", &quota.unwrap_or(-1).to_string())?;
            if self.cpu_shares > 0 {
                cg.write("cpu", "cpu.shares", &self.cpu_shares.to_string())?;
            }
        }
        let cpuset = if v2 { "" } else { "cpuset" };
        if !self.cpuset_cpus.is_empty() {
            cg.write(cpuset, "cpuset.cpus", &self.cpuset_cpus)?;
        }
        if !self.cpuset_mems.is_empty() {
            cg.write(cpuset, "cpuset.mems", &self.cpuset_mems)?;
        }
        if let Some(p) = self.pids_limit {
            let v = if p > 0 { p.to_string() } else { "max".into() };
            cg.write(if v2 { "" } else { "pids" }, "pids.max", &v)?;
        }
        self.write_io_weights(cg)?;
        if v2 {
            for d in self.io_max_lines() {
                cg.write("", "io.max", &d)?;
            }
        } else {
            for (file, list) in [
                ("blkio.throttle.read_bps_device", &self.device_read_bps),
                ("blkio.throttle.write_bps_device", &self.device_write_bps),
                ("blkio.throttle.read_iops_device", &self.device_read_iops),
                ("blkio.throttle.write_iops_device", &self.device_write_iops),
            ] {
                for d in list {
                    cg.write(
                        "blkio",
                        file,
                        &format!("{}:{} {}", d.major, d.minor, d.rate),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Writes the limits `to_spec` deferred (cpuset, block IO weights) into the cgroup files.
    pub(crate) fn write_deferred(&self, cg: &ContainerCgroup) -> std::io::Result<()> {
        let cpuset = if cg.is_v2() { "" } else { "cpuset" };
        if !self.cpuset_cpus.is_empty() {
            cg.write(cpuset, "cpuset.cpus", &self.cpuset_cpus)?;
        }
        if !self.cpuset_mems.is_empty() {
            cg.write(cpuset, "cpuset.mems", &self.cpuset_mems)?;
        }
        self.write_io_weights(cg)
    }

    /// `io.max` lines, one per device (`8:0 rbps=1048576 wiops=100`).
    fn io_max_lines(&self) -> Vec<String> {
        let mut by_dev: Vec<((i64, i64), Vec<String>)> = Vec::new();
        for (key, list) in [
            ("rbps", &self.device_read_bps),
            ("wbps", &self.device_write_bps),
            ("riops", &self.device_read_iops),
            ("wiops", &self.device_write_iops),
        ] {
            for d in list {
                let k = (d.major, d.minor);
                let item = format!("{key}={}", d.rate);
                match by_dev.iter_mut().find(|(dev, _)| *dev == k) {
                    Some((_, items)) => items.push(item),
                    None => by_dev.push((k, vec![item])),
                }
            }
        }
        by_dev
            .into_iter()
            .map(|((ma, mi), items)| format!("{ma}:{mi} {}", items.join(" ")))
            .collect()
    }

    /// Block IO weights: io.bfq.weight when BFQ schedules (it takes Docker's 10..1000 as is),
    /// else io.weight (1..10000, converted); blkio.weight{,_device} on v1.
    pub(crate) fn write_io_weights(&self, cg: &ContainerCgroup) -> std::io::Result<()> {
        if self.blkio_weight == 0 && self.blkio_weight_device.is_empty() {
            return Ok(());
        }
        if !cg.is_v2() {
            if self.blkio_weight > 0 {
                cg.write("blkio", "blkio.weight", &self.blkio_weight.to_string())?;
            }
            for d in &self.blkio_weight_device {
                cg.write(
                    "blkio",
                    "blkio.weight_device",
                    &format!("{}:{} {}", d.major, d.minor, d.weight),
                )?;
            }
            return Ok(());
        }
        let bfq = cg.dir("").join("io.bfq.weight").exists();
        let (file, conv): (&str, fn(u16) -> u64) = if bfq {
            ("io.bfq.weight", u64::from)
        } else {
            ("io.weight", blkio_to_io_weight)
        };
        if !bfq && !Path::new(&cg.dir("").join("io.weight")).exists() {
            return Err(std::io::Error::other(
                "Your kernel does not support Block I/O weight or the cgroup is not mounted",
            ));
        }
        if self.blkio_weight > 0 {
            cg.write("", file, &format!("default {}", conv(self.blkio_weight)))?;
        }
        // Only BFQ weighs a device's IO per cgroup (io.weight's per-device lines need iocost
        // enabled on the device, and fail otherwise): as runc, per-device weights go to
        // io.bfq.weight for the devices BFQ schedules and are left out for the others.
        for d in self.blkio_weight_device.iter() {
            if bfq && bfq_schedules(d.major, d.minor) {
                cg.write(
                    "",
                    "io.bfq.weight",
                    &format!("{}:{} {}", d.major, d.minor, d.weight),
                )?;
            }
        }
        Ok(())
    }
}

/// The block device `major:minor` is scheduled by BFQ (`[bfq]` in its queue's scheduler).
pub(crate) fn bfq_schedules(major: i64, minor: i64) -> bool {
    std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/queue/scheduler"))
        .is_ok_and(|s| s.contains("[bfq]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_cgroup(t: &Path) -> ContainerCgroup {
        std::fs::write(t.join("cgroup.controllers"), "cpu memory pids io\n").expect("w");
        let cg = ContainerCgroup::at(t, "/berth/c").expect("cg");
        std::fs::create_dir_all(cg.dir("")).expect("mkdir");
        cg
    }

    #[test]
    fn conversions_match_runc() {
        // As runc 1.3.2+ computes them.
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(512), 59);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(3), 2);
        assert_eq!(shares_to_weight(2048), 174);
        assert_eq!(shares_to_weight(262_143), 10_000);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
        assert_eq!(cpu_list_mask("0").unwrap(), vec![1]);
        assert_eq!(cpu_list_mask("0-2,9").unwrap(), vec![0b111, 0b10]);
        assert!(cpu_list_mask("3-1").is_err());
        assert!(cpu_list_mask("x").is_err());
    }

    #[test]
    fn spec_resources_on_v1_and_v2() {
        let r = Resources {
            memory: 64 << 20,
            memory_reservation: 32 << 20,
            memory_swappiness: Some(10),
            nano_cpus: 500_000_000,
            cpu_shares: 512,
            cpuset_cpus: "0".into(),
            pids_limit: Some(20),
            blkio_weight: 300,
            device_read_bps: vec![ThrottleDevice {
                major: 8,
                minor: 0,
                rate: 1 << 20,
            }],
            ..Default::default()
        };
        let (v1, deferred) = r.to_spec(false, true, false);
        assert!(deferred.is_none());
        assert_eq!(v1["memory"]["limit"], 64 << 20);
        assert_eq!(v1["memory"]["swap"], 128 << 20);
        assert_eq!(v1["memory"]["swappiness"], 10);
        assert_eq!(v1["cpu"]["quota"], 50_000);
        assert_eq!(v1["cpu"]["period"], 100_000);
        assert_eq!(v1["cpu"]["cpus"], "0");
        assert_eq!(v1["blockIO"]["weight"], 300);
        assert_eq!(v1["blockIO"]["throttleReadBpsDevice"][0]["rate"], 1 << 20);
        let (v2, deferred) = r.to_spec(true, true, false);
        assert!(v2["memory"].get("swappiness").is_none());
        assert!(v2["blockIO"].get("weight").is_none());
        assert_eq!(v2["cpu"]["cpus"], "0");
        let d = deferred.expect("deferred weights");
        assert_eq!((d.blkio_weight, d.cpuset_cpus.as_str()), (300, ""));
        let (sd, deferred) = r.to_spec(true, true, true);
        assert!(sd["cpu"].get("cpus").is_none());
        let text = serde_json::to_string(&deferred).expect("json");
        let back = Resources::from_annotations(Some(&HashMap::from([(
            DEFERRED_ANNOTATION.to_string(),
            text,
        )])))
        .expect("deferred");
        assert_eq!((back.blkio_weight, back.cpuset_cpus.as_str()), (300, "0"));
    }

    #[test]
    fn update_writes_v2_files() {
        let t = tempfile::tempdir().expect("tmp");
        let cg = v2_cgroup(t.path());
        std::fs::write(cg.dir("").join("memory.swap.max"), "max").expect("w");
        std::fs::write(cg.dir("").join("io.weight"), "default 100").expect("w");
        let r = Resources {
            memory: 128 << 20,
            memory_swap: 192 << 20,
            cpu_quota: 20_000,
            cpu_period: 50_000,
            cpu_shares: 1024,
            pids_limit: Some(-1),
            blkio_weight: 500,
            device_read_bps: vec![ThrottleDevice {
                major: 254,
                minor: 0,
                rate: 1000,
            }],
            device_write_iops: vec![ThrottleDevice {
                major: 254,
                minor: 0,
                rate: 10,
            }],
            ..Default::default()
        };
        r.write_files(&cg).expect("write");
        let rd = |f: &str| std::fs::read_to_string(cg.dir("").join(f)).expect(f);
        assert_eq!(rd("memory.max"), (128u64 << 20).to_string());
        assert_eq!(rd("memory.swap.max"), (64u64 << 20).to_string());
        assert_eq!(rd("cpu.max"), "20000 50000");
        assert_eq!(rd("cpu.weight"), "100");
        assert_eq!(rd("pids.max"), "max");
        assert_eq!(rd("io.weight"), "default 4950");
        assert_eq!(rd("io.max"), "254:0 rbps=1000 wiops=10");
    }

    #[test]
    fn unit_properties_follow_runc() {
        let t = tempfile::tempdir().expect("tmp");
        let r = Resources {
            memory: 64 << 20,
            nano_cpus: 1_500_000_000,
            cpuset_cpus: "1".into(),
            pids_limit: Some(30),
            blkio_weight: 10,
            ..Default::default()
        };
        let p = r.unit_properties(t.path().to_path_buf()).expect("props");
        let get = |n: &str| p.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        assert_eq!(get("MemoryMax"), Some(Prop::U64(64 << 20)));
        assert_eq!(
            get("MemorySwapMax"),
            None,
            "no memory.swap.max in the cgroup"
        );
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(Prop::U64(1_500_000)));
        assert_eq!(get("CPUQuotaPeriodUSec"), Some(Prop::U64(100_000)));
        assert_eq!(get("AllowedCPUs"), Some(Prop::Bytes(vec![2])));
        assert_eq!(get("TasksMax"), Some(Prop::U64(30)));
        assert_eq!(get("IOWeight"), Some(Prop::U64(1)));
        let q = Resources {
            cpu_quota: 33_333,
            ..Default::default()
        };
        let p = q.unit_properties(t.path().to_path_buf()).expect("props");
        assert_eq!(p[0], ("CPUQuotaPerSecUSec", Prop::U64(340_000)));
    }
}
