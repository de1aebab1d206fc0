//! Error bodies as Docker sends them: `{"message": "..."}` with Docker's status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_engine::EngineError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        ApiError::new(e.status(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::NOT_MODIFIED {
            return StatusCode::NOT_MODIFIED.into_response();
        }
        let body = serde_json::json!({ "message": self.message });
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            format!("{body}\n"),
        )
            .into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
