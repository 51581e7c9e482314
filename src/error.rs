//! The one error type that reaches clients, and its mapping to HTTP (Qdrant's error
//! envelope). The gRPC mapping will live here too.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::rerank::RerankError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("upstream Qdrant is unreachable: {0}")]
    UpstreamUnreachable(String),
    #[error("upstream Qdrant did not answer within {0} ms")]
    UpstreamTimeout(u64),
    #[error("upstream Qdrant sent a response secondpass cannot read: {0}")]
    UpstreamInvalid(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A compressed message that expands past the body limit (tonic's wording).
    #[error("Error decompressing: size limit, of {0} bytes, exceeded while decompressing message")]
    DecompressedTooLarge(usize),
    #[error("rerank failed: {0}")]
    Rerank(#[from] RerankError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn http_status(&self) -> StatusCode {
        match self {
            Error::UpstreamUnreachable(_) | Error::UpstreamInvalid(_) => StatusCode::BAD_GATEWAY,
            Error::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::PayloadTooLarge(_) | Error::DecompressedTooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Error::Rerank(RerankError::Overloaded) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Rerank(_) => StatusCode::BAD_GATEWAY,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Qdrant's error body: `{"status":{"error":"..."},"time":...}`.
pub fn qdrant_error_body(message: &str, time_secs: f64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "status": { "error": message },
        "time": time_secs,
    }))
    .expect("a json value always serializes")
}

pub fn qdrant_error_response(status: StatusCode, message: &str, time_secs: f64) -> Response {
    let mut resp = (status, qdrant_error_body(message, time_secs)).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        qdrant_error_response(self.http_status(), &self.to_string(), 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(
            Error::UpstreamUnreachable("x".into()).http_status(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            Error::UpstreamTimeout(5).http_status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            Error::Rerank(RerankError::Overloaded).http_status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn envelope_shape() {
        let body: serde_json::Value =
            serde_json::from_slice(&qdrant_error_body("boom", 0.5)).unwrap();
        assert_eq!(body["status"]["error"], "boom");
        assert_eq!(body["time"], 0.5);
    }
}
