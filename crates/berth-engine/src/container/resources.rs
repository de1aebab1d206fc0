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
    validate_with(hc, when, num_cpus())
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
