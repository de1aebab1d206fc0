//! The CLI's error type and how each kind maps to docker's exit codes.

use berth_api::ApiError;

use crate::template::TemplateError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Bad flag values: exit 125, like a flag parse error.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Message(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// Already reported; exit with this status.
    #[error("exit status {0}")]
    Exit(i32),
}

impl CliError {
    pub fn msg(s: impl Into<String>) -> CliError {
        CliError::Message(s.into())
    }
}
