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
