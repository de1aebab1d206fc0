//! Resource limits as the kernel takes them, computed from a container's settings with checked
//! arithmetic: a user value that would overflow when scaled yields `None`, never a wrapped
//! (negative or tiny) limit. The engine's create/update validation uses the same functions,
//! so a value it accepts is one the spec can express.

/// Docker's smallest memory limit (and memory reservation): 6 MiB.
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;
/// The largest memory limit: the default swap limit is twice the memory and must fit in an
/// i64 (the kernel's own ceiling, `PAGE_COUNTER_MAX` pages, is above this anyway).
pub const MAX_MEMORY: i64 = i64::MAX / 2;
/// The CFS period Docker uses with `NanoCpus` (100 ms).
pub const DEFAULT_CFS_PERIOD: i64 = 100_000;
/// The kernel's CFS period range: 1 ms to 1 s.
pub const MIN_CFS_PERIOD: i64 = 1_000;
pub const MAX_CFS_PERIOD: i64 = 1_000_000;
/// The kernel's smallest CFS quota: 1 ms.
pub const MIN_CFS_QUOTA: i64 = 1_000;
/// The kernel's largest CFS quota (`max_cfs_runtime`: 2^44-1 µs, about 203 days); a larger
/// one is EINVAL at the cgroup write.
pub const MAX_CFS_QUOTA: i64 = (1 << 44) - 1;
/// The smallest `NanoCpus`: 0.01 CPU, whose quota at the default period is the 1 ms minimum.
pub const MIN_NANO_CPUS: i64 = 10_000_000;
/// `pids.max` takes at most `PID_MAX_LIMIT` (4 Mi on 64-bit kernels).
pub const MAX_PIDS: i64 = 4 * 1024 * 1024;
/// The cpu.shares range the kernel honours; Docker clamps to it.
pub const MIN_CPU_SHARES: i64 = 2;
pub const MAX_CPU_SHARES: i64 = 262_144;

/// The memory+swap limit for `memory` and `MemorySwap`: 0 means twice the memory (Docker's
/// default), a negative value unlimited (-1). `Some(None)` when there is no memory limit,
/// `None` when the default would overflow.
pub fn memory_swap(memory: i64, memory_swap: i64) -> Option<Option<i64>> {
    if memory <= 0 {
        return Some(None);
    }
    match memory_swap {
        0 => memory.checked_mul(2).map(Some),
        s if s < 0 => Some(Some(-1)),
        s => Some(Some(s)),
    }
}

/// The CFS quota (µs per period) that gives `nano_cpus` billionths of a CPU at `period` µs;
/// `None` when the product overflows.
pub fn cfs_quota(nano_cpus: i64, period: i64) -> Option<i64> {
    nano_cpus.checked_mul(period).map(|q| q / 1_000_000_000)
}

/// CFS period and quota for `NanoCpus`, or else `CpuPeriod`/`CpuQuota` as given (0 = unset,
/// a negative quota = unlimited). `None` when the quota overflows.
pub fn cfs(nano_cpus: i64, cpu_period: i64, cpu_quota: i64) -> Option<(Option<i64>, Option<i64>)> {
    if nano_cpus > 0 {
        let period = if cpu_period > 0 {
            cpu_period
        } else {
            DEFAULT_CFS_PERIOD
        };
        return cfs_quota(nano_cpus, period).map(|q| (Some(period), Some(q)));
    }
    Some((
        (cpu_period > 0).then_some(cpu_period),
        (cpu_quota != 0).then_some(cpu_quota),
    ))
}

/// `--ulimit` names (Docker's, from go-units) and the resource each sets.
pub const RLIMITS: [(&str, &str, libc::__rlimit_resource_t); 16] = [
    ("as", "RLIMIT_AS", libc::RLIMIT_AS),
    ("core", "RLIMIT_CORE", libc::RLIMIT_CORE),
    ("cpu", "RLIMIT_CPU", libc::RLIMIT_CPU),
    ("data", "RLIMIT_DATA", libc::RLIMIT_DATA),
    ("fsize", "RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
    ("locks", "RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
    ("memlock", "RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("msgqueue", "RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("nice", "RLIMIT_NICE", libc::RLIMIT_NICE),
    ("nofile", "RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ("nproc", "RLIMIT_NPROC", libc::RLIMIT_NPROC),
    ("rss", "RLIMIT_RSS", libc::RLIMIT_RSS),
    ("rtprio", "RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
    ("rttime", "RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
    ("sigpending", "RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("stack", "RLIMIT_STACK", libc::RLIMIT_STACK),
];

/// A ulimit value as setrlimit takes it: -1 is unlimited (RLIM_INFINITY), other negatives
/// are no value.
pub fn rlimit_value(v: i64) -> Option<u64> {
    match v {
        -1 => Some(u64::MAX),
        v if v >= 0 => Some(v as u64),
        _ => None,
    }
}

/// The hard limit of `resource` this process has: what a container may get at most without
/// CAP_SYS_RESOURCE (raising a hard limit needs it).
pub fn own_hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the rlimit we own.
    if unsafe { libc::getrlimit(resource, &mut r) } == 0 {
        r.rlim_max
    } else {
        u64::MAX
    }
}

/// A cpuset list (`0-3,5`): the numbers it names, `None` when it is not one. Empty is none.
pub fn parse_cpuset(s: &str) -> Option<std::collections::BTreeSet<u32>> {
    let mut out = std::collections::BTreeSet::new();
    if s.is_empty() {
        return Some(out);
    }
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
        // Bounded: the kernel's NR_CPUS is at most 8192, MAX_NUMNODES far less.
        if a > b || b >= 8192 {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

/// cpu.shares as the kernel can take them: 0 (unset) stays 0, anything else is clamped into
/// 2..=262144 (the kernel scales shares by 1024, so a huge value would wrap).
pub fn cpu_shares(shares: i64) -> i64 {
    if shares == 0 {
        0
    } else {
        shares.clamp(MIN_CPU_SHARES, MAX_CPU_SHARES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_defaults_to_twice_the_memory_and_never_wraps() {
        assert_eq!(memory_swap(0, 0), Some(None));
        assert_eq!(memory_swap(64 << 20, 0), Some(Some(128 << 20)));
        assert_eq!(memory_swap(64 << 20, -1), Some(Some(-1)));
        assert_eq!(memory_swap(64 << 20, 100 << 20), Some(Some(100 << 20)));
        assert_eq!(memory_swap(MAX_MEMORY, 0), Some(Some(MAX_MEMORY * 2)));
        assert_eq!(memory_swap(1 << 62, 0), None);
        assert_eq!(memory_swap(i64::MAX, 0), None);
    }

    #[test]
    fn quota_is_checked() {
        assert_eq!(cfs_quota(1_500_000_000, 100_000), Some(150_000));
        assert_eq!(cfs_quota(92_233_720_368_548, 100_000), None);
        assert_eq!(cfs_quota(1 << 60, 100_000), None);
        assert_eq!(
            cfs(1_000_000_000, 0, 0),
            Some((Some(100_000), Some(100_000)))
        );
        assert_eq!(cfs(0, 50_000, 25_000), Some((Some(50_000), Some(25_000))));
        assert_eq!(cfs(0, 0, -1), Some((None, Some(-1))));
        assert_eq!(cfs(0, 0, 0), Some((None, None)));
        assert_eq!(cfs(i64::MAX, 0, 0), None);
    }

    #[test]
    fn shares_are_clamped() {
        assert_eq!(cpu_shares(0), 0);
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(cpu_shares(-5), 2);
        assert_eq!(cpu_shares(1024), 1024);
        assert_eq!(cpu_shares(1 << 62), MAX_CPU_SHARES);
    }
}
