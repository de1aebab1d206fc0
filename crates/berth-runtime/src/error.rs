use std::io;

use serde::{Deserialize, Serialize};

/// The one error type of the crate. Messages follow Docker's wording where clients parse them.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Clients map this to exit code 127.
    #[error("exec: \"{0}\": executable file not found in $PATH")]
    ExecNotFound(String),
    /// An explicit path that does not exist (also 127 for clients).
    #[error("exec: \"{0}\": stat {0}: no such file or directory")]
    ExecNoSuchFile(String),
    /// Clients map this to exit code 126.
    #[error("exec: \"{0}\": permission denied")]
    ExecPermission(String),
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UserNotFound(String),
    /// dockerd's words (capitalised, unlike runc's user message).
    #[error("Unable to find group {0}: no matching entries in group file")]
    GroupNotFound(String),
    #[error("invalid {field}: unknown capability: \"{cap}\"")]
    InvalidCapability { field: &'static str, cap: String },
    /// A setting this host or driver cannot take (Docker's words; a 400 for API clients).
    #[error("{0}")]
    Invalid(String),
    #[error("invalid runtime spec: {0}")]
    Spec(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The shim could not create the container; `fault` is what the shim typed it as.
    #[error("OCI runtime create failed: {message}")]
    Create { message: String, fault: StartFault },
    #[error("{0}")]
    Runtime(String),
    #[error("OCI runtime exec failed: {message}")]
    Exec { message: String, fault: StartFault },
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("shim: {0}")]
    Shim(String),
    /// A prerequisite of rootless mode is missing; `fix` says what to do about it.
    #[error("{problem}\n  fix: {fix}")]
    RootlessSetup { problem: String, fix: String },
}

impl RuntimeError {
    /// A create failure that is the host's or Berth's, not the user's (a 500).
    pub(crate) fn create_internal(message: impl Into<String>) -> Self {
        RuntimeError::Create {
            message: message.into(),
            fault: StartFault::Internal,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        RuntimeError::Io {
            context: context.into(),
            source,
        }
    }
}

/// What a failed create or start means to a client (Docker's exit codes 127 and 126). Typed
/// where the failure happens: the daemon's own checks, and in the shim from the errno in the OCI
/// runtime's error chain; it crosses the shim protocol as this enum, never as words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFault {
    /// The executable (or a path the process needs) does not exist: 127.
    NotFound,
    /// It exists but cannot be executed: 126.
    PermissionDenied,
    /// The user's other mistakes (an unknown user).
    User,
    #[default]
    Internal,
}

impl StartFault {
    /// A failed execve's errno: ENOENT and ENOTDIR (the command, or its interpreter, is not
    /// there) are 127, EACCES and ENOEXEC (it cannot be run) 126.
    pub fn from_errno(errno: i32) -> StartFault {
        match errno {
            libc::ENOENT | libc::ENOTDIR => StartFault::NotFound,
            libc::EACCES | libc::ENOEXEC => StartFault::PermissionDenied,
            _ => StartFault::Internal,
        }
    }

    /// Any other runtime failure, by the first errno along its source chain (`io::Error` or
    /// nix's `Errno`, which is how libcontainer carries syscall failures): Docker's rules that
    /// hold whatever failed (dockerd's `translateContainerdStartErr`: EACCES is 126, ENOTDIR —
    /// a file mounted onto a directory or the reverse — 127; an ENOENT is 127 there only when
    /// the message names the command, which is the executor's case above). `Internal` without
    /// an errno.
    pub fn of_error(e: &(dyn std::error::Error + 'static)) -> StartFault {
        let mut cur = Some(e);
        while let Some(x) = cur {
            let errno = x
                .downcast_ref::<io::Error>()
                .and_then(|io| io.raw_os_error())
                .or_else(|| x.downcast_ref::<nix::errno::Errno>().map(|n| *n as i32));
            if let Some(n) = errno {
                return match n {
                    libc::EACCES => StartFault::PermissionDenied,
                    libc::ENOTDIR => StartFault::NotFound,
                    _ => StartFault::Internal,
                };
            }
            cur = x.source();
        }
        StartFault::Internal
    }
}

impl RuntimeError {
    /// By type alone: the daemon's own checks know their cause, and the shim's failures carry
    /// the fault it found.
    pub fn start_fault(&self) -> StartFault {
        match self {
            RuntimeError::ExecNotFound(_) | RuntimeError::ExecNoSuchFile(_) => StartFault::NotFound,
            RuntimeError::ExecPermission(_) => StartFault::PermissionDenied,
            // dockerd resolves `GroupAdd` at start, in the image: a 400 too.
            RuntimeError::UserNotFound(_) | RuntimeError::GroupNotFound(_) => StartFault::User,
            RuntimeError::Create { fault, .. } | RuntimeError::Exec { fault, .. } => *fault,
            _ => StartFault::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner(#[source] nix::errno::Errno);

    #[test]
    fn faults_by_errno_along_the_chain() {
        let e = Outer(Inner(nix::errno::Errno::ENOTDIR));
        assert_eq!(StartFault::of_error(&e), StartFault::NotFound);
        // ENOENT of anything but the command is the runtime's own trouble.
        let e = Outer(Inner(nix::errno::Errno::ENOENT));
        assert_eq!(StartFault::of_error(&e), StartFault::Internal);
        assert_eq!(StartFault::from_errno(libc::ENOENT), StartFault::NotFound);
        assert_eq!(
            StartFault::from_errno(libc::ENOEXEC),
            StartFault::PermissionDenied
        );
        let e = Outer(Inner(nix::errno::Errno::EACCES));
        assert_eq!(StartFault::of_error(&e), StartFault::PermissionDenied);
        let e = Outer(Inner(nix::errno::Errno::EBUSY));
        assert_eq!(StartFault::of_error(&e), StartFault::Internal);
        let io = io::Error::from_raw_os_error(libc::ENOTDIR);
        assert_eq!(StartFault::of_error(&io), StartFault::NotFound);
        // A message alone says nothing, whatever its words.
        let e = RuntimeError::Runtime("no such file or directory".into());
        assert_eq!(e.start_fault(), StartFault::Internal);
        let e = RuntimeError::Create {
            message: "x".into(),
            fault: StartFault::PermissionDenied,
        };
        assert_eq!(e.start_fault(), StartFault::PermissionDenied);
    }
}
