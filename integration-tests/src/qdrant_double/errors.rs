//! Qdrant's error envelope: `{"status": {"error": "..."}, "time": ...}` with the status codes and
//! message prefixes a real Qdrant 1.18 uses.

use std::fmt::Display;

use http::StatusCode;

/// An error answered with Qdrant's error envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Qdrant reports `"time": 0.0` for errors raised while parsing the body (the handler never ran).
    pub zero_time: bool,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            zero_time: false,
        }
    }

    /// 404 `Not found: ...`
    pub fn not_found(msg: impl Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("Not found: {msg}"))
    }

    /// 400 `Wrong input: ...`
    pub fn wrong_input(msg: impl Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, format!("Wrong input: {msg}"))
    }

    /// 409 `Wrong input: ...` (Qdrant words conflicts as wrong input)
    pub fn conflict(msg: impl Display) -> Self {
        Self::new(StatusCode::CONFLICT, format!("Wrong input: {msg}"))
    }

    /// 500 `Service internal error: ...`
    pub fn internal(msg: impl Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Service internal error: {msg}"),
        )
    }

    /// 400 `Format error in JSON body: ...`, as actix's JSON extractor reports serde errors.
    pub fn format(msg: impl Display) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("Format error in JSON body: {msg}"),
            zero_time: true,
        }
    }

    /// 422 `Validation error in JSON body: [...]`
    pub fn validation(msg: impl Display) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: format!("Validation error in JSON body: [{msg}]"),
            zero_time: true,
        }
    }

    pub fn collection_not_found(name: &str) -> Self {
        Self::not_found(format!("Collection `{name}` doesn't exist!"))
    }

    pub fn point_not_found(id: impl Display) -> Self {
        Self::not_found(format!("No point with id {id} found"))
    }

    pub fn dimension(expected: usize, got: usize) -> Self {
        Self::wrong_input(format!(
            "Vector dimension error: expected dim: {expected}, got {got}"
        ))
    }

    pub fn vector_name(name: &str) -> Self {
        Self::wrong_input(format!("Not existing vector name error: {name}"))
    }

    pub fn inference_not_configured() -> Self {
        Self::internal(
            "InferenceService URL not configured - please provide valid address in config",
        )
    }

    /// Something real Qdrant supports but this double does not.
    pub fn unsupported(what: impl Display) -> Self {
        Self::wrong_input(format!("qdrant-double does not support {what}"))
    }
}

impl Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for ApiError {}
