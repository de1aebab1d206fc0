use std::io;

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
    #[error("OCI runtime create failed: {0}")]
    Create(String),
    #[error("{0}")]
    Runtime(String),
    #[error("OCI runtime exec failed: {0}")]
    Exec(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("shim: {0}")]
    Shim(String),
}

impl RuntimeError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        RuntimeError::Io {
            context: context.into(),
            source,
        }
    }
}

/// What a failed create or start means to a client (Docker's exit codes 127 and 126).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFault {
    /// The executable (or a path the process needs) does not exist: 127.
    NotFound,
    /// It exists but cannot be executed: 126.
    PermissionDenied,
    /// The user's other mistakes (an unknown user).
    User,
    Internal,
}

impl RuntimeError {
    /// Typed for the errors this crate makes; the OCI runtime's own failures reach the daemon as
    /// text from the shim process, and are read here, the one place that knows its words.
    pub fn start_fault(&self) -> StartFault {
        match self {
            RuntimeError::ExecNotFound(_) | RuntimeError::ExecNoSuchFile(_) => StartFault::NotFound,
            RuntimeError::ExecPermission(_) => StartFault::PermissionDenied,
            // dockerd resolves `GroupAdd` at start, in the image: a 400 too.
            RuntimeError::UserNotFound(_) | RuntimeError::GroupNotFound(_) => StartFault::User,
            other => oci_runtime_fault(&other.to_string()),
        }
    }
}

fn oci_runtime_fault(msg: &str) -> StartFault {
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        StartFault::NotFound
    } else if msg.contains("permission denied") {
        StartFault::PermissionDenied
    } else if msg.contains("unable to find user") {
        StartFault::User
    } else {
        StartFault::Internal
    }
}
