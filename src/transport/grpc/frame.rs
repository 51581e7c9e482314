//! gRPC over HTTP/2: length-prefixed messages, status in trailers.

use std::io::Read;

use axum::body::Body;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::StreamBody;
use hyper::body::Frame;

/// Status codes we produce ourselves (the rest pass through from Qdrant).
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

/// The single message of a unary request or response. `None` when the body is not
/// exactly one well-formed message (or uses a compression we do not read).
pub fn decode_unary(body: &[u8], encoding: Option<&str>) -> Option<Vec<u8>> {
    if body.len() < 5 {
        return None;
    }
    let compressed = body[0] == 1;
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body.len() != 5 + len {
        return None;
    }
    let msg = &body[5..];
    if !compressed {
        return Some(msg.to_vec());
    }
    match encoding {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(msg)
                .read_to_end(&mut out)
                .ok()?;
            Some(out)
        }
        _ => None,
    }
}

/// One uncompressed message frame.
pub fn encode(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.put_u8(0);
    b.put_u32(msg.len() as u32);
    b.put_slice(msg);
    b.freeze()
}

/// `grpc-status` from trailers, or from headers for a trailers-only response.
pub fn status(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Option<u32> {
    trailers
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

/// A response whose body is `data` followed by `trailers` (as HTTP/2 frames).
pub fn response(headers: HeaderMap, data: Bytes, trailers: Option<HeaderMap>) -> Response {
    // Nothing to send after the headers: an empty body, so that HTTP/2 ends the stream on
    // the HEADERS frame (a real trailers-only answer). A stream body would add an empty
    // DATA frame with END_STREAM, which grpcio (the Python client) reports as UNKNOWN
    // "Stream removed" instead of the status in the headers.
    if data.is_empty() && trailers.is_none() {
        let mut resp = Response::new(Body::empty());
        *resp.headers_mut() = headers;
        return resp;
    }
    let mut frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = Vec::new();
    if !data.is_empty() {
        frames.push(Ok(Frame::data(data)));
    }
    if let Some(t) = trailers {
        frames.push(Ok(Frame::trailers(t)));
    }
    let body = Body::new(StreamBody::new(futures_util::stream::iter(frames)));
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    *resp.headers_mut() = headers;
    resp
}

/// A trailers-only error response, as gRPC servers send them.
pub fn error(code: Code, message: &str) -> Response {
    let mut h = status_headers(code, message);
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    response(h, Bytes::new(), None)
}

/// `grpc-status` and `grpc-message`, for trailers or a trailers-only response.
pub fn status_headers(code: Code, message: &str) -> HeaderMap {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn round_trip_and_malformed() {
        let f = encode(b"hello");
        assert_eq!(&f[..5], &[0, 0, 0, 0, 5]);
        assert_eq!(decode_unary(&f, None).unwrap(), b"hello");
        assert!(decode_unary(&f[..6], None).is_none());
        assert!(decode_unary(b"\0\0\0", None).is_none());
        let mut two = f.to_vec();
        two.extend_from_slice(&f);
        assert!(decode_unary(&two, None).is_none(), "streams are not unary");
    }

    #[test]
    fn gzip_messages_are_read() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"payload").unwrap();
        let z = gz.finish().unwrap();
        let mut frame = vec![1];
        frame.extend_from_slice(&(z.len() as u32).to_be_bytes());
        frame.extend_from_slice(&z);
        assert_eq!(decode_unary(&frame, Some("gzip")).unwrap(), b"payload");
        assert!(decode_unary(&frame, Some("zstd")).is_none());
    }

    #[test]
    fn errors_are_trailers_only() {
        use axum::body::HttpBody as _;
        let resp = error(Code::Unavailable, "upstream down");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["grpc-status"], "14");
        assert!(
            resp.body().is_end_stream(),
            "the stream must end on the HEADERS frame"
        );
    }

    #[test]
    fn status_prefers_trailers() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("5"));
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        assert_eq!(status(&h, Some(&t)), Some(0));
        assert_eq!(status(&h, None), Some(5));
        assert_eq!(status(&HeaderMap::new(), None), None);
    }
}
