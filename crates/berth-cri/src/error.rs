//! The CRI layer's error, and its gRPC status: the engine's NotFound is NOT_FOUND (the
//! kubelet tells a gone object by it), a bad request INVALID_ARGUMENT, a conflict
//! FAILED_PRECONDITION, anything else UNKNOWN.

use berth_engine::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    DeadlineExceeded(String),
}

impl CriError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        CriError::InvalidArgument(msg.into())
    }

    pub fn message(&self) -> String {
        self.to_string()
    }
}

impl From<CriError> for tonic::Status {
    fn from(e: CriError) -> Self {
        match e {
            CriError::Engine(EngineError::NotFound(m)) => tonic::Status::not_found(m),
            CriError::Engine(EngineError::InvalidParameter(m)) => {
                tonic::Status::invalid_argument(m)
            }
            CriError::Engine(EngineError::Conflict(m)) => tonic::Status::failed_precondition(m),
            CriError::Engine(EngineError::Forbidden(m)) => tonic::Status::permission_denied(m),
            CriError::Engine(e) => tonic::Status::unknown(e.to_string()),
            CriError::InvalidArgument(m) => tonic::Status::invalid_argument(m),
            CriError::Unimplemented(m) => tonic::Status::unimplemented(m),
            CriError::DeadlineExceeded(m) => tonic::Status::deadline_exceeded(m),
        }
    }
}

pub type Result<T, E = CriError> = std::result::Result<T, E>;
