//! The engine's error type. Each variant maps to the HTTP status Docker uses for it, so the
//! daemon never has to guess.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    /// 404: "No such container: x", "No such image: y", ...
    #[error("{0}")]
    NotFound(String),
    /// 409: name in use, container running, image in use.
    #[error("{0}")]
    Conflict(String),
    /// 400: the request itself is wrong.
    #[error("{0}")]
    InvalidParameter(String),
    /// 403: the operation is not allowed on this object (a predefined network or one with
    /// active endpoints, a read-only rootfs).
    #[error("{0}")]
    Forbidden(String),
    /// 304: start of a started container, stop of a stopped one.
    #[error("not modified")]
    NotModified,
    /// 500: something failed inside.
    #[error("{0}")]
    Internal(String),
    /// A container's process could not be created or started: the runtime's typed error,
    /// carried to the API (400 for the user's faults, 500 otherwise) and to the exit code.
    #[error("{}", .0.message)]
    Start(StartFailure),
}

/// What a failed start means to a client: Docker's exit codes 127 (not found) and 126 (not
/// executable), the user's other mistakes, or an internal failure. Typed in berth-runtime where
/// the failure happens (the daemon's checks, the shim), carried here as is.
pub use berth_runtime::StartFault;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartFailure {
    pub fault: StartFault,
    pub message: String,
}

impl StartFailure {
    /// `what` is the runtime's message; the words around it are dockerd's.
    pub fn new(fault: StartFault, what: &str) -> StartFailure {
        let message = match fault {
            StartFault::Internal => format!("failed to start container: {what}"),
            _ => format!(
                "failed to create task for container: OCI runtime create failed: {what}: unknown"
            ),
        };
        StartFailure { fault, message }
    }

    /// A runtime error, by its type (`RuntimeError::start_fault`): no message is read.
    pub fn from_runtime(e: &berth_runtime::RuntimeError) -> StartFailure {
        StartFailure::new(e.start_fault(), &e.to_string())
    }

    /// The container's exit code, as Docker reports a start that failed.
    pub fn exit_code(&self) -> i64 {
        match self.fault {
            StartFault::NotFound => 127,
            StartFault::PermissionDenied => 126,
            StartFault::User | StartFault::Internal => 128,
        }
    }
}

impl EngineError {
    pub fn status(&self) -> u16 {
        match self {
            EngineError::NotFound(_) => 404,
            EngineError::Conflict(_) => 409,
            EngineError::InvalidParameter(_) => 400,
            EngineError::Forbidden(_) => 403,
            EngineError::NotModified => 304,
            EngineError::Internal(_) => 500,
            EngineError::Start(f) if f.fault == StartFault::Internal => 500,
            EngineError::Start(_) => 400,
        }
    }

    pub fn no_such_container(name: &str) -> Self {
        EngineError::NotFound(format!("No such container: {name}"))
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        EngineError::Internal(e.to_string())
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        EngineError::Internal(e.to_string())
    }
}

impl From<serde_json::Error> for EngineError {
    fn from(e: serde_json::Error) -> Self {
        EngineError::Internal(e.to_string())
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
