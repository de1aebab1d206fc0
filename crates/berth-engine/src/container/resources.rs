//! The checks of a container's resource settings (`HostConfig` memory, CPU, PIDs, blkio), in
//! Docker's words and with its 400: the one place they live. `create` and `update` call
//! [`validate`] (update with the record's settings merged with the request's), so a value
//! refused at create is refused at update too.
//!
//! Beyond Docker: values whose scaled limit would overflow (`Memory` whose default swap, twice
//! it, does not fit; `NanoCpus` times the CFS period) and values the kernel refuses at start
//! (`PidsLimit` above `PID_MAX_LIMIT`, `NanoCpus` under 0.01 CPU) are refused here instead of
//! giving a wrapped limit or a 500 at start. The arithmetic is `berth_runtime::limits`, the
//! same the runtime spec uses.

use berth_api::types::HostConfig;
use berth_runtime::limits;

use crate::error::{EngineError, Result};

/// Which request the settings come from: a few of Docker's rules apply at create only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    Create,
    Update,
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter(msg.into())
}

/// CPUs this process may run on (Go's `runtime.NumCPU`, which dockerd's range check uses).
fn num_cpus() -> i64 {
    // SAFETY: sched_getaffinity fills the zeroed cpu_set_t we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let n = libc::CPU_COUNT(&set) as i64;
            if n > 0 {
                return n;
            }
        }
    }
    std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1)
}

/// Checks `hc`'s resources and normalises what Docker normalises (`CpuShares` clamped into the
/// kernel's range). An error is the message the client gets, with status 400.
pub(crate) fn validate(hc: &mut HostConfig, when: When) -> Result<()> {
    validate_with(hc, when, num_cpus())?;
    let online = |v1: &str, sys: &str| {
        std::fs::read_to_string(v1)
            .or_else(|_| std::fs::read_to_string(sys))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "0".into())
    };
    cpuset(
        &hc.cpuset_cpus,
        &online(
            "/sys/fs/cgroup/cpuset/cpuset.cpus",
            "/sys/devices/system/cpu/online",
        ),
        "cpus",
        "CPUs",
    )?;
    cpuset(
        &hc.cpuset_mems,
        &online(
            "/sys/fs/cgroup/cpuset/cpuset.mems",
            "/sys/devices/system/node/online",
        ),
        "mems",
        "memory nodes",
    )?;
    ulimits(hc, &limits::own_hard_limit, has_sys_resource())
}

/// `CpusetCpus`/`CpusetMems`: a list the kernel parses, of CPUs (nodes) the host has, in
/// dockerd's words.
fn cpuset(requested: &str, available: &str, what: &str, things: &str) -> Result<()> {
    let Some(want) = limits::parse_cpuset(requested) else {
        return Err(invalid(format!(
            "Invalid value {requested} for cpuset {what}"
        )));
    };
    let have = limits::parse_cpuset(available).unwrap_or_default();
    if !want.is_subset(&have) {
        return Err(invalid(format!(
            "Requested {things} are not available - requested {requested}, available: {available}"
        )));
    }
    Ok(())
}

/// Whether this process has CAP_SYS_RESOURCE (needed to raise a hard rlimit).
pub(crate) fn has_sys_resource() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 24) != 0) // CAP_SYS_RESOURCE
}

/// `Ulimits`: names setrlimit knows, soft under hard (go-units' words), and, without
/// CAP_SYS_RESOURCE, no hard limit above the daemon's own (the kernel would refuse it at
/// start, a 500 there).
fn ulimits(
    hc: &HostConfig,
    own_hard: &dyn Fn(libc::__rlimit_resource_t) -> u64,
    may_raise: bool,
) -> Result<()> {
    for u in hc.ulimits.iter().flatten() {
        let Some((_, _, resource)) = limits::RLIMITS.iter().find(|(n, _, _)| *n == u.name) else {
            return Err(invalid(format!("invalid ulimit type: {}", u.name)));
        };
        let (Some(soft), Some(hard)) = (limits::rlimit_value(u.soft), limits::rlimit_value(u.hard))
        else {
            return Err(invalid(format!(
                "invalid ulimit argument: {}={}:{} (-1 is unlimited, no other value is negative)",
                u.name, u.soft, u.hard
            )));
        };
        if soft > hard {
            return Err(invalid(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                u.soft, u.hard
            )));
        }
        let own = own_hard(*resource);
        if !may_raise && hard > own {
            return Err(invalid(format!(
                "ulimit {}: hard limit {} is above the daemon's own ({}); raising it needs CAP_SYS_RESOURCE, which the daemon does not have",
                u.name,
                u.hard,
                if own == u64::MAX { "unlimited".to_string() } else { own.to_string() }
            )));
        }
    }
    Ok(())
}

fn validate_with(hc: &mut HostConfig, when: When, ncpu: i64) -> Result<()> {
    // Memory.
    if hc.memory != 0 && hc.memory < limits::MIN_MEMORY {
        return Err(invalid("Minimum memory limit allowed is 6MB"));
    }
    if hc.memory > limits::MAX_MEMORY {
        return Err(invalid(format!(
            "Maximum memory limit allowed is {} bytes",
            limits::MAX_MEMORY
        )));
    }
    if hc.memory > 0 && hc.memory_swap > 0 && hc.memory_swap < hc.memory {
        return Err(invalid(
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ));
    }
    if when == When::Create && hc.memory == 0 && hc.memory_swap > 0 {
        return Err(invalid(
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ));
    }
    if let Some(s) = hc.memory_swappiness {
        // -1 is the API's "not set".
        if s != -1 && !(0..=100).contains(&s) {
            return Err(invalid(format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            )));
        }
    }
    if hc.memory_reservation > 0 && hc.memory_reservation < limits::MIN_MEMORY {
        return Err(invalid("Minimum memory reservation allowed is 6MB"));
    }
    if hc.memory > 0 && hc.memory_reservation > 0 && hc.memory < hc.memory_reservation {
        return Err(invalid(
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ));
    }
    if limits::memory_swap(hc.memory, hc.memory_swap).is_none() {
        return Err(invalid(format!(
            "Maximum memory limit allowed is {} bytes",
            limits::MAX_MEMORY
        )));
    }

    // PIDs: 0 or -1 is unlimited; the kernel refuses more than PID_MAX_LIMIT.
    if let Some(p) = hc.pids_limit {
        if p > limits::MAX_PIDS {
            return Err(invalid(format!(
                "Maximum PIDs limit allowed is {} (0 or -1 means unlimited)",
                limits::MAX_PIDS
            )));
        }
    }

    // CPU.
    if hc.nano_cpus > 0 && hc.cpu_period > 0 {
        return Err(invalid(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ));
    }
    if hc.nano_cpus > 0 && hc.cpu_quota > 0 {
        return Err(invalid(
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        ));
    }
    // Docker leaves the lower bound to the kernel; a quota under its 1 ms minimum fails the
    // start there, so it is refused here with the same words.
    let max_nano = ncpu.saturating_mul(1_000_000_000);
    if hc.nano_cpus < 0
        || hc.nano_cpus > max_nano
        || (hc.nano_cpus > 0 && hc.nano_cpus < limits::MIN_NANO_CPUS)
    {
        return Err(invalid(format!(
            "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )));
    }
    if hc.cpu_period != 0
        && (hc.cpu_period < limits::MIN_CFS_PERIOD || hc.cpu_period > limits::MAX_CFS_PERIOD)
    {
        return Err(invalid(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ));
    }
    if hc.cpu_quota > 0 && hc.cpu_quota < limits::MIN_CFS_QUOTA {
        return Err(invalid(
            "CPU cfs quota can not be less than 1ms (i.e. 1000)",
        ));
    }
    // Docker leaves this bound to the kernel too, whose refusal would be a 500 at start.
    if hc.cpu_quota > limits::MAX_CFS_QUOTA {
        return Err(invalid(format!(
            "CPU cfs quota can not be larger than {} (the kernel's limit)",
            limits::MAX_CFS_QUOTA
        )));
    }
    if limits::cfs(hc.nano_cpus, hc.cpu_period, hc.cpu_quota).is_none() {
        return Err(invalid(format!(
            "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )));
    }
    // Docker clamps shares into the kernel's range (with a warning) rather than refusing.
    if hc.cpu_shares != 0 {
        let clamped = limits::cpu_shares(hc.cpu_shares);
        if clamped != hc.cpu_shares {
            tracing::warn!(
                "changing requested CpuShares of {} to {clamped}",
                hc.cpu_shares
            );
            hc.cpu_shares = clamped;
        }
    }

    // Block I/O.
    if hc.blkio_weight > 0 && !(10..=1000).contains(&hc.blkio_weight) {
        return Err(invalid("Range of blkio weight is from 10 to 1000"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl FnOnce(&mut HostConfig)) -> Result<HostConfig> {
        let mut hc = HostConfig::default();
        f(&mut hc);
        validate_with(&mut hc, When::Create, 2).map(|_| hc)
    }

    #[test]
    fn cpusets_and_ulimits() {
        assert!(cpuset("", "0-1", "cpus", "CPUs").is_ok());
        assert!(cpuset("0,1", "0-1", "cpus", "CPUs").is_ok());
        assert!(cpuset("1-1", "0-1", "cpus", "CPUs").is_ok());
        for bad in ["abc", "1-0", ",", "-1", "0-", "99999"] {
            assert_eq!(
                msg(cpuset(bad, "0-1", "cpus", "CPUs").map(|_| HostConfig::default())),
                format!("Invalid value {bad} for cpuset cpus")
            );
        }
        assert_eq!(
            msg(cpuset("0-3", "0-1", "cpus", "CPUs").map(|_| HostConfig::default())),
            "Requested CPUs are not available - requested 0-3, available: 0-1"
        );
        let with = |name: &str, soft: i64, hard: i64, may_raise: bool| {
            let hc = HostConfig {
                ulimits: Some(vec![berth_api::types::Ulimit {
                    name: name.into(),
                    soft,
                    hard,
                }]),
                ..Default::default()
            };
            ulimits(&hc, &|_| 4096, may_raise).map(|_| hc)
        };
        assert!(with("nofile", 1000, 2000, false).is_ok());
        assert!(with("nofile", 4096, 4096, false).is_ok());
        assert!(with("core", 0, 0, false).is_ok());
        assert!(with("nofile", 1, 8192, true).is_ok());
        assert!(with("nofile", 1, -1, true).is_ok());
        assert_eq!(
            msg(with("bogus", 1, 1, false)),
            "invalid ulimit type: bogus"
        );
        assert!(msg(with("nofile", 3, 2, false)).contains("soft limit must be less"));
        assert!(msg(with("nofile", -1, 5, true)).contains("soft limit must be less"));
        assert!(msg(with("nofile", -2, 5, false)).contains("invalid ulimit argument"));
        assert!(msg(with("nofile", 1, 8192, false)).contains("CAP_SYS_RESOURCE"));
        assert!(msg(with("nofile", 1, -1, false)).contains("CAP_SYS_RESOURCE"));
    }

    fn msg(r: Result<HostConfig>) -> String {
        match r {
            Err(EngineError::InvalidParameter(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn the_issue_values_are_refused() {
        assert_eq!(
            msg(check(|h| h.memory = 1 << 62)),
            "Maximum memory limit allowed is 4611686018427387903 bytes"
        );
        assert_eq!(
            msg(check(|h| h.nano_cpus = 1 << 60)),
            "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"
        );
        assert_eq!(
            msg(check(|h| h.nano_cpus = 92_233_720_368_548)),
            "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"
        );
        assert_eq!(
            msg(check(|h| h.cpu_period = 1)),
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        );
        assert_eq!(
            msg(check(|h| h.pids_limit = Some(i64::MAX))),
            "Maximum PIDs limit allowed is 4194304 (0 or -1 means unlimited)"
        );
    }

    #[test]
    fn dockers_rules() {
        assert!(check(|h| h.memory = 5 << 20).is_err());
        assert!(check(|h| {
            h.memory = 64 << 20;
            h.memory_swap = 32 << 20;
        })
        .is_err());
        assert!(check(|h| h.memory_swap = 64 << 20).is_err());
        let mut hc = HostConfig {
            memory_swap: 64 << 20,
            ..Default::default()
        };
        assert!(validate_with(&mut hc, When::Update, 2).is_ok());
        assert!(check(|h| h.memory_swappiness = Some(101)).is_err());
        assert!(check(|h| h.memory_swappiness = Some(-1)).is_ok());
        assert!(check(|h| h.memory_reservation = 1 << 20).is_err());
        assert!(check(|h| {
            h.memory = 64 << 20;
            h.memory_reservation = 128 << 20;
        })
        .is_err());
        assert!(check(|h| {
            h.nano_cpus = 1_000_000_000;
            h.cpu_period = 100_000;
        })
        .is_err());
        assert!(check(|h| {
            h.nano_cpus = 1_000_000_000;
            h.cpu_quota = 50_000;
        })
        .is_err());
        assert!(check(|h| h.nano_cpus = -1).is_err());
        assert!(check(|h| h.nano_cpus = 1).is_err());
        assert!(check(|h| h.cpu_period = 2_000_000).is_err());
        assert!(check(|h| h.cpu_quota = 999).is_err());
        assert!(check(|h| h.cpu_quota = -1).is_ok());
        assert!(check(|h| h.cpu_quota = limits::MAX_CFS_QUOTA).is_ok());
        assert!(check(|h| h.cpu_quota = limits::MAX_CFS_QUOTA + 1).is_err());
        assert!(check(|h| h.cpu_quota = i64::MAX).is_err());
        assert!(check(|h| h.blkio_weight = 5).is_err());
        assert!(check(|h| h.pids_limit = Some(-1)).is_ok());
        assert!(check(|h| h.pids_limit = Some(limits::MAX_PIDS)).is_ok());
    }

    #[test]
    fn good_values_pass_and_shares_are_clamped() {
        let hc = check(|h| {
            h.memory = 64 << 20;
            h.memory_swap = -1;
            h.nano_cpus = 1_500_000_000;
            h.cpu_shares = 1 << 62;
            h.pids_limit = Some(100);
        })
        .expect("valid");
        assert_eq!(hc.cpu_shares, limits::MAX_CPU_SHARES);
        let hc = check(|h| h.memory = limits::MAX_MEMORY).expect("largest memory");
        assert_eq!(hc.memory, limits::MAX_MEMORY);
        assert!(check(|h| {
            h.cpu_period = 50_000;
            h.cpu_quota = 25_000;
        })
        .is_ok());
    }
}

/// Rootless: the limits whose cgroup controller is not delegated to the daemon (all of them on
/// a v1/hybrid host, or without a delegated subtree) are discarded, each with dockerd's warning
/// for a host that lacks the controller, rather than failing the create.
pub fn discard_rootless_limits(hc: &mut HostConfig) -> Vec<String> {
    if !berth_runtime::rootless::Mode::current().is_rootless() {
        return Vec::new();
    }
    let cg = berth_runtime::rootless::Cgroups::probe();
    discard_limits(hc, &|c| cg.has(c))
}

/// Whether containers get no cgroup of their own: rootless where no controller is delegated
/// to the daemon (a v1/hybrid host, or no delegated subtree). Update, pause and top then make
/// do without one.
pub fn rootless_without_cgroups() -> bool {
    berth_runtime::rootless::Mode::current().is_rootless()
        && berth_runtime::rootless::Cgroups::probe()
            .controllers
            .is_empty()
}

fn discard_limits(hc: &mut HostConfig, delegated: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut w = Vec::new();
    let mut gone = |controller: &str, on: bool, what: &str| {
        let discard = on && !delegated(controller);
        if discard {
            w.push(format!(
                "Your kernel does not support {what} or the cgroup is not mounted. Limitation discarded (rootless mode: the {controller} cgroup controller is not delegated to this user)."
            ));
        }
        discard
    };
    if gone(
        "memory",
        hc.memory != 0 || hc.memory_reservation != 0 || hc.memory_swap != 0,
        "memory limit capabilities",
    ) {
        hc.memory = 0;
        hc.memory_reservation = 0;
        hc.memory_swap = 0;
    }
    if gone(
        "cpu",
        hc.cpu_shares != 0 || hc.cpu_period != 0 || hc.cpu_quota != 0 || hc.nano_cpus != 0,
        "CPU CFS scheduler",
    ) {
        hc.cpu_shares = 0;
        hc.cpu_period = 0;
        hc.cpu_quota = 0;
        hc.nano_cpus = 0;
    }
    if gone(
        "cpuset",
        !hc.cpuset_cpus.is_empty() || !hc.cpuset_mems.is_empty(),
        "cpuset",
    ) {
        hc.cpuset_cpus.clear();
        hc.cpuset_mems.clear();
    }
    if gone(
        "pids",
        hc.pids_limit.is_some_and(|p| p > 0),
        "pids limit capabilities",
    ) {
        hc.pids_limit = None;
    }
    if gone("io", hc.blkio_weight != 0, "Block I/O weight") {
        hc.blkio_weight = 0;
    }
    w
}

#[cfg(test)]
mod rootless_tests {
    use super::*;

    #[test]
    fn limits_are_discarded_with_a_warning_each() {
        let mut hc = HostConfig {
            memory: 64 << 20,
            nano_cpus: 500_000_000,
            pids_limit: Some(10),
            ..Default::default()
        };
        let w = discard_limits(&mut hc.clone(), &|_| false);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].contains("memory limit"));
        let mut none = hc.clone();
        discard_limits(&mut none, &|_| false);
        assert_eq!((none.memory, none.nano_cpus, none.pids_limit), (0, 0, None));
        assert!(discard_limits(&mut HostConfig::default(), &|_| false).is_empty());
        // memory and pids delegated (systemd's default for user@.service): only --cpus goes.
        let w = discard_limits(&mut hc, &|c| c == "memory" || c == "pids");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("CPU CFS") && w[0].contains("cpu cgroup controller"));
        assert_eq!(
            (hc.memory, hc.nano_cpus, hc.pids_limit),
            (64 << 20, 0, Some(10))
        );
    }
}
