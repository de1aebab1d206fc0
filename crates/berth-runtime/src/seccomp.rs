//! Docker's default seccomp profile, specialised for the host arch, kernel and the container's
//! capabilities the way dockerd does it (includes/excludes by caps, arches, minKernel).

use oci_spec::runtime::LinuxSeccomp;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::RuntimeError;

/// Docker's profile, unchanged (Apache-2.0, see seccomp/LICENSE-moby).
const DEFAULT_PROFILE: &str = include_str!("../seccomp/default.json");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    arch_map: Vec<ArchMap>,
    #[serde(default, deserialize_with = "null_as_default")]
    syscalls: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default, deserialize_with = "null_as_default")]
    sub_architectures: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    names: Vec<String>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    args: Vec<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    includes: Filter,
    #[serde(default, deserialize_with = "null_as_default")]
    excludes: Filter,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default, deserialize_with = "null_as_default")]
    caps: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

/// Docker's file writes `null` for empty lists and filters.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// (seccomp native arch, Go's GOARCH name) of the build target; the profile speaks both.
fn host_arch() -> (&'static str, &'static str) {
    if cfg!(target_arch = "x86_64") {
        ("SCMP_ARCH_X86_64", "amd64")
    } else if cfg!(target_arch = "aarch64") {
        ("SCMP_ARCH_AARCH64", "arm64")
    } else if cfg!(target_arch = "riscv64") {
        ("SCMP_ARCH_RISCV64", "riscv64")
    } else if cfg!(target_arch = "s390x") {
        ("SCMP_ARCH_S390X", "s390x")
    } else if cfg!(target_arch = "powerpc64") {
        ("SCMP_ARCH_PPC64LE", "ppc64le")
    } else {
        ("SCMP_ARCH_X86", "386")
    }
}

fn parse_kernel(v: &str) -> (u32, u32) {
    let mut it = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// The running kernel's "major.minor", from uname.
pub(crate) fn kernel_version() -> (u32, u32) {
    nix::sys::utsname::uname()
        .map(|u| parse_kernel(&u.release().to_string_lossy()))
        .unwrap_or((0, 0))
}

/// Docker's default profile for a container whose bounding set is `caps` ("CAP_X" names).
///
/// One departure from dockerd: the x32 ABI is left out of the filter's architectures. Kernels
/// ship it disabled (`syscall.x32=n`), so no x32 program runs anyway; with it out, libseccomp
/// refuses x32 syscall numbers outright (stricter, never looser), and compiling one
/// architecture less takes about a third off its work at every container start. i386 stays,
/// so 32-bit programs keep working.
pub fn default_profile(caps: &[String], kernel: (u32, u32)) -> Result<LinuxSeccomp, RuntimeError> {
    resolve(DEFAULT_PROFILE, caps, kernel, &["SCMP_ARCH_X32"])
}

/// A profile in Docker's format (`--security-opt seccomp=profile.json`), resolved for this
/// container's capabilities, the host's architecture and kernel.
/// Whether `json` is a seccomp profile in Docker's format (checked at create; resolved at start).
pub fn check_profile(json: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<Profile>(json).map(|_| ())
}

pub fn profile_from_json(
    json: &str,
    caps: &[String],
    kernel: (u32, u32),
) -> Result<LinuxSeccomp, RuntimeError> {
    resolve(json, caps, kernel, &[])
}

fn resolve(
    json: &str,
    caps: &[String],
    kernel: (u32, u32),
    skip_arches: &[&str],
) -> Result<LinuxSeccomp, RuntimeError> {
    let profile: Profile = serde_json::from_str(json)
        .map_err(|e| RuntimeError::Spec(format!("decoding seccomp profile failed: {e}")))?;
    let (native, goarch) = host_arch();
    let mut arches = vec![native.to_string()];
    if let Some(m) = profile.arch_map.iter().find(|m| m.architecture == native) {
        arches.extend(
            m.sub_architectures
                .iter()
                .filter(|a| !skip_arches.contains(&a.as_str()))
                .cloned(),
        );
    }
    let has = |c: &String| caps.iter().any(|x| x == c);
    let mut syscalls = Vec::new();
    for rule in &profile.syscalls {
        let inc = &rule.includes;
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == goarch) {
            continue;
        }
        if !inc.caps.iter().all(has) {
            continue;
        }
        if let Some(min) = &inc.min_kernel {
            if kernel < parse_kernel(min) {
                continue;
            }
        }
        let exc = &rule.excludes;
        if exc.arches.iter().any(|a| a == goarch) || exc.caps.iter().any(has) {
            continue;
        }
        if let Some(min) = &exc.min_kernel {
            if kernel >= parse_kernel(min) {
                continue;
            }
        }
        let mut r = json!({ "names": rule.names, "action": rule.action });
        if let Some(e) = rule.errno_ret {
            r["errnoRet"] = json!(e);
        }
        if !rule.args.is_empty() {
            r["args"] = json!(rule.args);
        }
        syscalls.push(r);
    }
    let mut v = json!({
        "defaultAction": profile.default_action,
        "architectures": arches,
        "syscalls": syscalls,
    });
    if let Some(e) = profile.default_errno_ret {
        v["defaultErrnoRet"] = json!(e);
    }
    serde_json::from_value(v).map_err(|e| RuntimeError::Spec(format!("seccomp profile: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &LinuxSeccomp) -> Vec<String> {
        s.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .flat_map(|r| r.names().clone())
            .collect()
    }

    #[test]
    fn conditional_rules_follow_caps() {
        let plain = default_profile(&["CAP_CHOWN".into()], (6, 1)).unwrap();
        let n = names(&plain);
        assert!(n.contains(&"read".to_string()));
        assert!(!n.contains(&"unshare".to_string()));
        assert!(!n.contains(&"reboot".to_string()));
        // clone3 answers ENOSYS without CAP_SYS_ADMIN so libcs fall back to clone.
        assert!(n.contains(&"clone3".to_string()));
        let admin = default_profile(&["CAP_SYS_ADMIN".into()], (6, 1)).unwrap();
        let n = names(&admin);
        assert!(n.contains(&"unshare".to_string()) && n.contains(&"mount".to_string()));
        if cfg!(target_arch = "x86_64") {
            assert!(n.contains(&"arch_prctl".to_string()));
            // x86_64 and i386; x32 is left out of the default profile.
            assert_eq!(plain.architectures().as_ref().unwrap().len(), 2);
        }
        let old = default_profile(&[], (4, 4)).unwrap();
        assert!(!names(&old).contains(&"process_vm_readv".to_string()));
        assert_eq!(plain.default_errno_ret(), Some(1));
    }
}
