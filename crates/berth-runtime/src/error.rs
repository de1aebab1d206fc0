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
    #[error("unable to find group {0}: no matching entries in group file")]
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
