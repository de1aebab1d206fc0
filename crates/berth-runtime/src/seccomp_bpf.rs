//! A container's seccomp profile compiled once into the kernel's BPF program and cached in
//! its bundle, so each exec loads the program with one seccomp(2) call instead of building the
//! filter with libseccomp again (Docker's profile: several hundred rules, milliseconds of work
//! in every exec'd process, twice when the first load is refused for want of no_new_privs).
//!
//! The translation from the OCI profile to libseccomp calls is libcontainer's (the one its
//! `initialize_seccomp` makes at container start), so the container's init and its execs run
//! under the same program: `seccomp_export_bpf` writes exactly what `seccomp_load` installs.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

/// The cache file in the container's bundle.
pub(crate) const CACHE_FILE: &str = "seccomp.bpf";
const MAGIC: &[u8; 8] = b"berthbpf";
/// `struct sock_filter` is 8 bytes.
const INSN: usize = 8;

/// A compiled filter: the program and the seccomp(2) flags the profile asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub flags: u32,
    pub insns: Vec<u8>,
}

/// Whether the profile can be loaded from a cached program: not with notify actions (their
/// listener fd comes out of the load itself).
pub fn cacheable(s: &LinuxSeccomp) -> bool {
    !s.syscalls()
        .iter()
        .flatten()
        .any(|r| r.action() == LinuxSeccompAction::ScmpActNotify)
}

fn key(s: &LinuxSeccomp) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_vec(s).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// The program for `s`, from `<bundle>/seccomp.bpf` when it was compiled from this very
/// profile, else compiled now and cached there (tmp + rename; a crash leaves the old file or
/// none, and a stale one is recognised by its key).
pub fn cached_program(bundle: &Path, s: &LinuxSeccomp) -> Result<Program, String> {
    let k = key(s);
    let path = bundle.join(CACHE_FILE);
    if let Ok(data) = fs::read(&path) {
        if let Some(p) = decode(&data, k) {
            return Ok(p);
        }
    }
    let p = compile(s)?;
    let mut data = Vec::with_capacity(20 + p.insns.len());
    data.extend_from_slice(MAGIC);
    data.extend_from_slice(&k.to_le_bytes());
    data.extend_from_slice(&p.flags.to_le_bytes());
    data.extend_from_slice(&p.insns);
    // A cache: a failed write only costs the next exec a compile.
    let _ = berth_fs::write_replace(&path, &data);
    Ok(p)
}

fn decode(data: &[u8], k: u64) -> Option<Program> {
    let (head, insns) = data.split_at_checked(20)?;
    if &head[..8] != MAGIC || head[8..16] != k.to_le_bytes() {
        return None;
    }
    if insns.is_empty() || insns.len() % INSN != 0 || insns.len() / INSN > u16::MAX as usize {
        return None;
    }
    let flags = u32::from_le_bytes(head[16..20].try_into().ok()?);
    Some(Program {
        flags,
        insns: insns.to_vec(),
    })
}

/// Compiles the profile with libseccomp (libcontainer's translation) into a BPF program.
pub fn compile(s: &LinuxSeccomp) -> Result<Program, String> {
    let ctx = filter_context(s)?;
    let mut f = tempfile_in_memory()?;
    ctx.export_bpf(&f)
        .map_err(|e| format!("export seccomp filter: {e}"))?;
    let mut insns = Vec::new();
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.read_to_end(&mut insns))
        .map_err(|e| format!("read seccomp filter: {e}"))?;
    if insns.is_empty() || insns.len() % INSN != 0 {
        return Err(format!("seccomp filter of {} bytes", insns.len()));
    }
    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            // Only meaningful with a notify listener, which is never cached.
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
        } as u32;
    }
    Ok(Program { flags, insns })
}

fn tempfile_in_memory() -> Result<fs::File, String> {
    let fd = nix::sys::memfd::memfd_create(
        c"berth-seccomp",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(|e| format!("memfd_create: {e}"))?;
    Ok(fs::File::from(fd))
}

/// Installs the program in the calling thread (seccomp(2), SECCOMP_SET_MODE_FILTER). Needs
/// no_new_privs or CAP_SYS_ADMIN, like any filter load.
pub fn load(p: &Program) -> io::Result<()> {
    #[repr(C)]
    struct SockFprog {
        len: libc::c_ushort,
        filter: *const u8,
    }
    let prog = SockFprog {
        len: (p.insns.len() / INSN) as libc::c_ushort,
        filter: p.insns.as_ptr(),
    };
    // SAFETY: prog points at p.insns, a whole number of sock_filter instructions that outlive
    // the call; the kernel copies the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            p.flags as libc::c_ulong,
            &prog as *const SockFprog,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn translate_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

fn translate_action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, String> {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    Ok(match action {
        LinuxSeccompAction::ScmpActKill => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(
            errno
                .try_into()
                .map_err(|_| format!("seccomp trace errno {errno} out of range"))?,
        ),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
    })
}

fn translate_op(op: LinuxSeccompOperator, datum_b: Option<u64>) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(datum_b.unwrap_or(0)),
    }
}

/// libcontainer's `initialize_seccomp` up to (not including) the load.
fn filter_context(s: &LinuxSeccomp) -> Result<ScmpFilterContext, String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: libseccomp::error::SeccompError| format!("seccomp: {what}: {err}")
    };
    if s.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err("SCMP_ACT_NOTIFY cannot be used as default action".into());
    }
    let default_action = translate_action(s.default_action(), s.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default_action).map_err(e("new filter"))?;
    for flag in s.flags().iter().flatten() {
        match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => ctx.set_ctl_waitkill(true),
        }
        .map_err(e("set filter flag"))?;
    }
    for &arch in s.architectures().iter().flatten() {
        ctx.add_arch(translate_arch(arch)).map_err(e("add arch"))?;
    }
    ctx.set_ctl_nnp(false).map_err(e("set nnp"))?;
    for rule in s.syscalls().iter().flatten() {
        let action = translate_action(rule.action(), rule.errno_ret())?;
        if action == default_action {
            continue;
        }
        for name in rule.names() {
            // A name this libseccomp does not know is skipped, as libcontainer does.
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            match rule.args() {
                Some(args) => {
                    let cmps: Vec<ScmpArgCompare> = args
                        .iter()
                        .map(|a| {
                            ScmpArgCompare::new(
                                a.index() as u32,
                                translate_op(a.op(), a.value_two()),
                                a.value(),
                            )
                        })
                        .collect();
                    let mut seen = HashSet::new();
                    let dup = args.iter().any(|a| !seen.insert(a.index()));
                    if dup {
                        for c in &cmps {
                            ctx.add_rule_conditional(action, sc, std::slice::from_ref(c))
                                .map_err(e("add rule"))?;
                        }
                    } else {
                        ctx.add_rule_conditional(action, sc, &cmps)
                            .map_err(e("add rule"))?;
                    }
                }
                None => {
                    ctx.add_rule(action, sc).map_err(e("add rule"))?;
                }
            }
        }
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> LinuxSeccomp {
        crate::seccomp::default_profile(&["CAP_CHOWN".into()], crate::seccomp::kernel_version())
            .expect("profile")
    }

    #[test]
    fn cache_is_keyed_by_the_profile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = profile();
        let first = cached_program(dir.path(), &p).expect("compile");
        assert!(first.insns.len() > 100 * INSN, "a real program");
        assert_eq!(first, compile(&p).expect("compile again"));
        assert_eq!(cached_program(dir.path(), &p).expect("cached"), first);
        // Another profile in the same bundle is compiled, not served from the old file.
        let admin = crate::seccomp::default_profile(
            &["CAP_SYS_ADMIN".into()],
            crate::seccomp::kernel_version(),
        )
        .expect("profile");
        let other = cached_program(dir.path(), &admin).expect("compile other");
        assert_ne!(other, first);
        assert_eq!(other, compile(&admin).expect("compile"));
        // A damaged cache file is never loaded.
        let mut data = fs::read(dir.path().join(CACHE_FILE)).expect("read");
        data.truncate(data.len() - 3);
        fs::write(dir.path().join(CACHE_FILE), &data).expect("write");
        assert_eq!(
            cached_program(dir.path(), &admin).expect("recompile"),
            other
        );
    }

    /// The cached program filters like Docker's profile: in a child with no_new_privs, a
    /// syscall the profile refuses without CAP_SYS_ADMIN fails with EPERM, others work.
    #[test]
    fn loaded_program_enforces_the_profile() {
        let p = compile(&profile()).expect("compile");
        // SAFETY: the child only makes raw syscalls and _exits.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                if load(&p).is_err() {
                    libc::_exit(10);
                }
                if libc::unshare(libc::CLONE_NEWUTS) == 0 {
                    libc::_exit(11);
                }
                if *libc::__errno_location() != libc::EPERM {
                    libc::_exit(12);
                }
                if libc::getpid() <= 0 {
                    libc::_exit(13);
                }
                libc::_exit(0);
            },
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).expect("wait");
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
