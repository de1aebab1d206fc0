//! What runs inside the container's process before execve: the check that the executable is
//! there (in the container's own view, after its mounts), the exec's seccomp filter, and the
//! execve itself. A failure here is typed ([`StartFault`]) and written to a pipe the shim
//! reads, since libcontainer carries the process's errors back only as text.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use libcontainer::workload::{ExecutorError, ExecutorValidationError};

use crate::StartFault;

/// A pipe from the container's process to the shim, carrying the fault of a failed check or
/// execve as its JSON name. The write end is inherited by the process (libcontainer only marks
/// it close-on-exec), so a successful execve closes it.
pub(super) struct FaultPipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl FaultPipe {
    pub(super) fn new() -> Result<FaultPipe, String> {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(|e| format!("pipe: {e}"))?;
        Ok(FaultPipe { read, write })
    }

    pub(super) fn writer(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// The fault the process reported, if it did (the process has reported its failure to
    /// libcontainer, which has returned: whatever it wrote is in the pipe).
    pub(super) fn take(&self) -> Option<StartFault> {
        let mut buf = [0u8; 64];
        let n = nix::unistd::read(self.read.as_raw_fd(), &mut buf).ok()?;
        serde_json::from_slice(&buf[..n]).ok()
    }
}

fn report(fd: RawFd, fault: StartFault) {
    if let Ok(b) = serde_json::to_vec(&fault) {
        // SAFETY: a write of an owned buffer to an fd; a closed fd only fails.
        unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
    }
}

/// The container's seccomp profile, from its bundle.
fn container_seccomp(bundle: &Path) -> Option<oci_spec::runtime::LinuxSeccomp> {
    let spec = oci_spec::runtime::Spec::load(bundle.join("config.json")).ok()?;
    spec.linux().as_ref()?.seccomp().clone()
}
/// The filter an exec loads: the container's profile compiled to BPF (cached in its bundle,
/// see `crate::seccomp_bpf`), or the profile itself for libcontainer to compile in the
/// process when it cannot be cached (notify actions) or compiling here failed.
#[derive(Clone)]
pub(super) enum ExecFilter {
    Bpf(crate::seccomp_bpf::Program),
    Profile(oci_spec::runtime::LinuxSeccomp),
}

impl ExecFilter {
    fn load(&self) -> Result<(), String> {
        match self {
            ExecFilter::Bpf(p) => crate::seccomp_bpf::load(p).map_err(|e| e.to_string()),
            ExecFilter::Profile(s) => libcontainer::seccomp::initialize_seccomp(s)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }
}

/// The exec's filter for the container's profile (None: the container has none).
pub(super) fn exec_filter(bundle: &Path) -> Option<ExecFilter> {
    let s = container_seccomp(bundle)?;
    if crate::seccomp_bpf::cacheable(&s) {
        match crate::seccomp_bpf::cached_program(bundle, &s) {
            Ok(p) => return Some(ExecFilter::Bpf(p)),
            Err(e) => eprintln!("berth shim: seccomp program: {e}; compiling in the process"),
        }
    }
    Some(ExecFilter::Profile(s))
}

/// The shim's executor, for the container's init and for execs. Init gets no filter (its own
/// seccomp is libcontainer's business); libcontainer's tenant builder keeps only namespaces and
/// cgroups of the container's `linux` section, so an exec would run without the container's
/// seccomp filter: it is loaded here right before execve. Capabilities are dropped by then, so
/// loading a filter needs no_new_privs unless the process kept CAP_SYS_ADMIN: it is set only
/// then.
#[derive(Clone)]
pub(super) struct ShimExecutor {
    pub(super) filter: Option<ExecFilter>,
    /// The write end of the shim's [`FaultPipe`].
    pub(super) fault_fd: RawFd,
}

fn process_args(spec: &oci_spec::runtime::Spec) -> (Vec<String>, Vec<String>) {
    let p = spec.process().as_ref();
    (
        p.and_then(|p| p.args().clone()).unwrap_or_default(),
        p.and_then(|p| p.env().clone()).unwrap_or_default(),
    )
}

impl libcontainer::workload::Executor for ShimExecutor {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        if let Some(f) = &self.filter {
            if f.load().is_err() {
                // SAFETY: prctl with integer arguments.
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                if let Err(e) = f.load() {
                    return Err(ExecutorError::Other(format!("load seccomp filter: {e}")));
                }
            }
        }
        let (args, _) = process_args(spec);
        let cargs: Vec<std::ffi::CString> = args
            .iter()
            .map(|a| std::ffi::CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| ExecutorError::InvalidArg)?;
        let Some(arg0) = cargs.first() else {
            return Err(ExecutorError::InvalidArg);
        };
        // execvp only returns on failure; its errno is the fault (ENOENT for a missing
        // interpreter, EACCES...).
        let errno = match nix::unistd::execvp(arg0, &cargs) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        report(self.fault_fd, StartFault::from_errno(errno as i32));
        Err(ExecutorError::Other(format!(
            "exec {}: {}",
            args[0],
            errno.desc()
        )))
    }

    /// In the container's own view (after its mounts, which may hide what the daemon saw in
    /// the image): Docker's words and exit codes for a missing or non-executable command.
    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorValidationError> {
        let (args, env) = process_args(spec);
        let arg0 = args.first().map(String::as_str).unwrap_or("");
        crate::spec::resolve_executable(Path::new("/"), arg0, &env).map_err(|e| {
            report(self.fault_fd, e.start_fault());
            ExecutorValidationError::ArgValidationError(e.to_string())
        })
    }
}
