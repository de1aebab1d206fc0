//! The device cgroup on v2: an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to
//! the container's cgroup, compiled from the spec's device rules (v2 has no `devices.allow`
//! file; runc and crun do the same). Without it a container could `mknod` any host device and
//! read or write it.
//!
//! The kernel calls the program for each device access with `struct bpf_cgroup_dev_ctx {
//! u32 access_type /* access << 16 | type */; u32 major; u32 minor; }` in r1; it returns 1 to
//! allow, 0 to deny. Rules apply in order, a later one overriding an earlier one, so the
//! program tests them last to first and the first match decides; no match allows (the state of
//! a cgroup without rules).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::RuntimeError;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One eBPF instruction.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

const LDX_W: u8 = 0x61; // r_dst = *(u32 *)(r_src + off)
const MOV_X: u8 = 0xbf; // r_dst = r_src
const MOV_K: u8 = 0xb7; // r_dst = imm
const AND_K: u8 = 0x57; // r_dst &= imm
const RSH_K: u8 = 0x77; // r_dst >>= imm
const JNE_K: u8 = 0x55; // if r_dst != imm goto +off
const JEQ_K: u8 = 0x15; // if r_dst == imm goto +off
const EXIT: u8 = 0x95;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}

fn access_bits(access: &str) -> i32 {
    access.chars().fold(0, |a, c| {
        a | match c {
            'm' => ACC_MKNOD,
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            _ => 0,
        }
    })
}

/// The program for `rules`.
fn compile(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    // r2 = access, r3 = type, r4 = major, r5 = minor.
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(MOV_X, 3, 2, 0, 0),
        insn(AND_K, 3, 0, 0, 0xffff),
        insn(RSH_K, 2, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        let typ = match rule.typ() {
            None | Some(LinuxDeviceType::A) => None,
            Some(LinuxDeviceType::B) => Some(DEV_BLOCK),
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => Some(DEV_CHAR),
            // FIFOs are not devices the cgroup controls.
            Some(LinuxDeviceType::P) => continue,
        };
        let access = access_bits(rule.access().as_deref().unwrap_or("rwm"));
        let all = ACC_MKNOD | ACC_READ | ACC_WRITE;
        // Conditions jump past the block to the next rule; their offsets are set below.
        let mut block: Vec<Insn> = Vec::new();
        if let Some(t) = typ {
            block.push(insn(JNE_K, 3, 0, 0, t));
        }
        if access != all {
            block.push(insn(MOV_X, 0, 2, 0, 0));
            if rule.allow() {
                // An allow rule covers an access wholly within its own.
                block.push(insn(AND_K, 0, 0, 0, !access & all));
                block.push(insn(JNE_K, 0, 0, 0, 0));
            } else {
                // A deny rule refuses any access that asks for one of its bits.
                block.push(insn(AND_K, 0, 0, 0, access));
                block.push(insn(JEQ_K, 0, 0, 0, 0));
            }
        }
        if let Some(m) = rule.major().filter(|m| *m >= 0) {
            block.push(insn(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = rule.minor().filter(|m| *m >= 0) {
            block.push(insn(JNE_K, 5, 0, 0, m as i32));
        }
        block.push(insn(MOV_K, 0, 0, 0, i32::from(rule.allow())));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let n = block.len();
        let unconditional = n == 2;
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K || ins.code == JEQ_K {
                ins.off = (n - i - 1) as i16;
            }
        }
        p.extend(block);
        // A rule matching every access decides alone: what would follow is unreachable,
        // which the verifier refuses.
        if unconditional {
            return p;
        }
    }
    p.push(insn(MOV_K, 0, 0, 0, 1));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

fn encode(p: &[Insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len() * 8);
    for i in p {
        out.push(i.code);
        out.push((i.src << 4) | (i.dst & 0x0f));
        out.extend_from_slice(&i.off.to_le_bytes());
        out.extend_from_slice(&i.imm.to_le_bytes());
    }
    out
}

/// The filter for `rules`, loaded into the kernel.
fn load(rules: &[LinuxDeviceCgroup]) -> Result<OwnedFd, RuntimeError> {
    const NAME: &[u8] = b"berth_devices"; // at most 15 bytes and a NUL
    let code = encode(&compile(rules));
    let license = b"Apache\0";
    let mut log = vec![0u8; 4096];
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_DEVICE.to_le_bytes());
    attr[4..8].copy_from_slice(&((code.len() / 8) as u32).to_le_bytes());
    attr[8..16].copy_from_slice(&(code.as_ptr() as u64).to_le_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_le_bytes());
    attr[24..28].copy_from_slice(&1u32.to_le_bytes()); // log_level
    attr[28..32].copy_from_slice(&(log.len() as u32).to_le_bytes());
    attr[32..40].copy_from_slice(&(log.as_mut_ptr() as u64).to_le_bytes());
    attr[48..48 + NAME.len()].copy_from_slice(NAME);
    attr[68..72].copy_from_slice(&BPF_CGROUP_DEVICE.to_le_bytes());
    match bpf(BPF_PROG_LOAD, &mut attr) {
        // SAFETY: a new fd the kernel handed us.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        Err(e) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            Err(RuntimeError::create_internal(format!(
                "loading the device cgroup filter: {e}: {}",
                String::from_utf8_lossy(&log[..end]).trim()
            )))
        }
    }
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> Result<libc::c_long, std::io::Error> {
    // SAFETY: attr is a zeroed bpf_attr of 128 bytes that outlives the call; the pointers set
    // in it point at buffers the caller keeps alive.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Loads the filter for `rules` and attaches it to the cgroup directory `dir`. Nothing to do
/// when the rules allow everything (privileged containers).
pub(crate) fn attach(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), RuntimeError> {
    let allows_all = rules.last().is_some_and(|r| {
        r.allow()
            && matches!(r.typ(), None | Some(LinuxDeviceType::A))
            && r.major().is_none_or(|m| m < 0)
            && r.minor().is_none_or(|m| m < 0)
            && access_bits(r.access().as_deref().unwrap_or("rwm")) == 7
    });
    if rules.is_empty() || allows_all {
        return Ok(());
    }
    let prog = load(rules)?;
    let cg = std::fs::File::open(dir)
        .map_err(|e| RuntimeError::io(format!("open {}", dir.display()), e))?;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(cg.as_raw_fd() as u32).to_le_bytes());
    attr[4..8].copy_from_slice(&(prog.as_raw_fd() as u32).to_le_bytes());
    attr[8..12].copy_from_slice(&BPF_CGROUP_DEVICE.to_le_bytes());
    attr[12..16].copy_from_slice(&BPF_F_ALLOW_MULTI.to_le_bytes());
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| {
        RuntimeError::create_internal(format!(
            "attaching the device cgroup filter to {}: {e}",
            dir.display()
        ))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    /// Runs the subset of eBPF `compile` emits.
    fn run(p: &[Insn], typ: i32, access: i32, major: i32, minor: i32) -> u64 {
        let ctx = [((access << 16) | typ) as u32, major as u32, minor as u32];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (d, s) = (i.dst as usize, i.src as usize);
            pc += 1;
            match i.code {
                LDX_W => {
                    assert_eq!(s, 1);
                    r[d] = u64::from(ctx[i.off as usize / 4]);
                }
                MOV_X => r[d] = r[s],
                MOV_K => r[d] = i.imm as u64,
                AND_K => r[d] &= i.imm as u64,
                RSH_K => r[d] >>= i.imm,
                JNE_K => {
                    if r[d] != i.imm as u64 {
                        pc += i.off as usize;
                    }
                }
                JEQ_K => {
                    if r[d] == i.imm as u64 {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        maj: Option<i64>,
        min: Option<i64>,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(acc.to_string());
        if let Some(m) = maj {
            b = b.major(m);
        }
        if let Some(m) = min {
            b = b.minor(m);
        }
        b.build().expect("rule")
    }

    #[test]
    fn docker_default_rules() {
        use LinuxDeviceType::{A, B, C};
        let rules = vec![
            rule(false, A, None, None, "rwm"),
            rule(true, C, None, None, "m"),
            rule(true, B, None, None, "m"),
            rule(true, C, Some(1), Some(3), "rwm"),
            rule(true, C, Some(136), None, "rwm"),
        ];
        let p = compile(&rules);
        let (r, w, m) = (ACC_READ, ACC_WRITE, ACC_MKNOD);
        // /dev/null read and write.
        assert_eq!(run(&p, DEV_CHAR, r | w, 1, 3), 1);
        // A host disk: mknod yes, read or write no.
        assert_eq!(run(&p, DEV_BLOCK, m, 254, 0), 1);
        assert_eq!(run(&p, DEV_BLOCK, r, 254, 0), 0);
        assert_eq!(run(&p, DEV_BLOCK, w, 8, 0), 0);
        // Any pty, but not /dev/mem.
        assert_eq!(run(&p, DEV_CHAR, r | w, 136, 7), 1);
        assert_eq!(run(&p, DEV_CHAR, r, 1, 1), 0);
        // mknod plus read of a char device is more than "c *:* m" gives.
        assert_eq!(run(&p, DEV_CHAR, m | r, 1, 1), 0);
        assert_eq!(encode(&p).len(), p.len() * 8);
    }

    #[test]
    fn the_kernel_verifier_takes_the_program() {
        use LinuxDeviceType::{A, B, C};
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: loading BPF programs needs root");
            return;
        }
        let rules = vec![
            rule(false, A, None, None, "rwm"),
            rule(true, C, None, None, "m"),
            rule(true, B, None, None, "m"),
            rule(true, C, Some(1), Some(3), "rwm"),
            rule(false, C, Some(1), Some(3), "w"),
        ];
        load(&rules).expect("the verifier accepts the filter");
    }

    /// The filter on a real cgroup2 (the unified mount of a hybrid host, or a v2 root): a
    /// process in it may read /dev/null but not the host's disk.
    #[test]
    fn attached_filter_refuses_a_host_disk() {
        use LinuxDeviceType::{A, B, C};
        let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(Path::new)
            .find(|p| {
                nix::sys::statfs::statfs(*p)
                    .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            });
        let disk = std::fs::read_dir("/sys/block").ok().and_then(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.starts_with("vd") || n.starts_with("sd") || n.starts_with("nvme"))
        });
        let (Some(root), Some(disk), true) = (root, disk, nix::unistd::geteuid().is_root()) else {
            eprintln!("skipped: needs root, a cgroup2 mount and a disk");
            return;
        };
        let dir = root.join(format!("berth-devtest-{}", std::process::id()));
        std::fs::create_dir(&dir).expect("mkdir cgroup");
        let rules = vec![
            rule(false, A, None, None, "rwm"),
            rule(true, C, None, None, "m"),
            rule(true, B, None, None, "m"),
            rule(true, C, Some(1), Some(3), "rwm"),
        ];
        let attached = attach(&dir, &rules);
        let run = |path: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "echo $$ > {}/cgroup.procs && exec head -c 1 {path} >/dev/null",
                    dir.display()
                ))
                .output()
                .expect("sh")
        };
        let null = run("/dev/null");
        let host_disk = run(&format!("/dev/{disk}"));
        let _ = std::fs::remove_dir(&dir);
        attached.expect("attach");
        assert!(null.status.success(), "{null:?}");
        assert!(
            !host_disk.status.success(),
            "read the host's disk: {host_disk:?}"
        );
        assert!(
            String::from_utf8_lossy(&host_disk.stderr).contains("Operation not permitted"),
            "{host_disk:?}"
        );
    }

    #[test]
    fn later_rules_win_and_no_rule_allows() {
        use LinuxDeviceType::{A, C};
        let p = compile(&[
            rule(true, C, Some(1), Some(3), "rwm"),
            rule(false, C, Some(1), Some(3), "w"),
        ]);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 1, 3), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 1);
        let p = compile(&[rule(false, A, None, None, "rwm")]);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 0);
    }
}
