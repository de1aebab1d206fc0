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
