//! The one error type that reaches clients, and its two renderings: HTTP (Qdrant's
//! error envelope) and gRPC (a trailers-only status).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
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
    /// Qdrant's answer to a search secondpass rewrites is past `upstream.max_rewrite_bytes`;
    /// the transports answer with Qdrant's answer to the client's own request instead.
    #[error("upstream Qdrant's answer is larger than upstream.max_rewrite_bytes ({0} bytes)")]
    UpstreamTooLarge(usize),
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
            Error::UpstreamUnreachable(_)
            | Error::UpstreamInvalid(_)
            | Error::UpstreamTooLarge(_) => StatusCode::BAD_GATEWAY,
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

    pub fn grpc_code(&self) -> Code {
        match self {
            Error::UpstreamUnreachable(_) => Code::Unavailable,
            Error::UpstreamTimeout(_) => Code::DeadlineExceeded,
            Error::UpstreamInvalid(_) | Error::Internal(_) => Code::Internal,
            Error::BadRequest(_) => Code::InvalidArgument,
            Error::PayloadTooLarge(_)
            | Error::DecompressedTooLarge(_)
            | Error::UpstreamTooLarge(_) => Code::ResourceExhausted,
            Error::Rerank(RerankError::Overloaded) => Code::ResourceExhausted,
            Error::Rerank(_) => Code::Unavailable,
        }
    }

    /// The REST answer: Qdrant's error envelope, `time` in seconds.
    pub fn rest_response(&self, time_secs: f64) -> Response {
        qdrant_error_response(self.http_status(), &self.to_string(), time_secs)
    }

    /// The gRPC answer: a trailers-only status.
    pub fn grpc_response(&self) -> Response {
        grpc_error_response(self.grpc_code(), &self.to_string())
    }
}

/// gRPC status codes secondpass produces itself (Qdrant's pass through as sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    ResourceExhausted = 8,
    Internal = 13,
    Unavailable = 14,
}

/// The HTTP status a gRPC status code stands for (the mapping of `google.rpc.Code`):
/// how a gRPC answer is counted in `secondpass_responses_total{code}`.
pub fn grpc_http_equivalent(code: u32) -> StatusCode {
    match code {
        0 => StatusCode::OK,
        1 => StatusCode::from_u16(499).expect("499 is a valid status"), // CANCELLED
        3 | 9 | 11 => StatusCode::BAD_REQUEST, // INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
        4 => StatusCode::GATEWAY_TIMEOUT,
        5 => StatusCode::NOT_FOUND,
        6 | 10 => StatusCode::CONFLICT, // ALREADY_EXISTS, ABORTED
        7 => StatusCode::FORBIDDEN,
        8 => StatusCode::TOO_MANY_REQUESTS,
        12 => StatusCode::NOT_IMPLEMENTED,
        14 => StatusCode::SERVICE_UNAVAILABLE,
        16 => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR, // UNKNOWN, INTERNAL, DATA_LOSS, others
    }
}

/// `grpc-status` and `grpc-message`, for trailers or a trailers-only response.
pub fn grpc_status_headers(code: Code, message: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", HeaderValue::from((code as u8) as u16));
    let msg = percent_encoding::utf8_percent_encode(message, GRPC_MESSAGE).to_string();
    if let Ok(v) = HeaderValue::from_str(&msg) {
        h.insert("grpc-message", v);
    }
    h
}

/// gRPC percent-encodes `grpc-message` outside printable ASCII and `%`.
const GRPC_MESSAGE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%').add(0x7f);

/// A trailers-only error response, as gRPC servers send them: the status in the
/// headers and an empty body that ends the stream on the HEADERS frame (an empty
/// DATA frame instead makes grpc-core clients report UNKNOWN "Stream removed").
pub fn grpc_error_response(code: Code, message: &str) -> Response {
    let mut h = grpc_status_headers(code, message);
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    let mut resp = Response::new(Body::empty());
    *resp.headers_mut() = h;
    resp
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
    fn grpc_codes_and_their_http_class() {
        assert_eq!(
            Error::UpstreamUnreachable("x".into()).grpc_code(),
            Code::Unavailable
        );
        assert_eq!(
            Error::BadRequest("x".into()).grpc_code(),
            Code::InvalidArgument
        );
        assert_eq!(
            Error::Rerank(RerankError::Overloaded).grpc_code(),
            Code::ResourceExhausted
        );
        assert_eq!(grpc_http_equivalent(0), StatusCode::OK);
        assert_eq!(grpc_http_equivalent(5), StatusCode::NOT_FOUND);
        assert_eq!(grpc_http_equivalent(14), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(grpc_http_equivalent(2), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn envelope_shape() {
        let body: serde_json::Value =
            serde_json::from_slice(&qdrant_error_body("boom", 0.5)).unwrap();
        assert_eq!(body["status"]["error"], "boom");
        assert_eq!(body["time"], 0.5);
    }
}
