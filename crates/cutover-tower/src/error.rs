//! Handler errors: a safe message for the client, the status that fits.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub message: String,
}

impl AppError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> AppError {
        AppError { status, message: message.into() }
    }
}

impl From<cutover_engine::EngineError> for AppError {
    fn from(e: cutover_engine::EngineError) -> AppError {
        use cutover_engine::store::StoreError;
        let status = match &e {
            cutover_engine::EngineError::Store(StoreError::NoSuchRun(_) | StoreError::NoSuchTarget { .. }) => {
                StatusCode::NOT_FOUND
            }
            cutover_engine::EngineError::Store(StoreError::Locked { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        AppError::new(status, e.to_string())
    }
}

impl From<cutover_engine::store::StoreError> for AppError {
    fn from(e: cutover_engine::store::StoreError) -> AppError {
        cutover_engine::EngineError::Store(e).into()
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AppError {}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}
