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

/// Why a body is not a message we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Not exactly one well-formed message, a compression we do not read, or corrupt.
    NotOurs,
    /// Decompressed, the message would pass the limit.
    TooLarge,
}

/// The single message of a unary request or response, decompressed to at most `max`
/// bytes (a small compressed message can expand without bound).
pub fn decode_unary(
    body: &[u8],
    encoding: Option<&str>,
    max: usize,
) -> Result<Vec<u8>, Unreadable> {
    if body.len() < 5 {
        return Err(Unreadable::NotOurs);
    }
    let compressed = body[0] == 1;
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body.len() != 5 + len {
        return Err(Unreadable::NotOurs);
    }
    let msg = &body[5..];
    if !compressed {
        return Ok(msg.to_vec());
    }
    match encoding {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(msg)
                .take((max as u64).saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|_| Unreadable::NotOurs)?;
            if out.len() > max {
                return Err(Unreadable::TooLarge);
            }
            Ok(out)
        }
        _ => Err(Unreadable::NotOurs),
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
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from((code as u8) as u16));
    let msg = percent_encoding::utf8_percent_encode(message, GRPC_MESSAGE).to_string();
    if let Ok(v) = HeaderValue::from_str(&msg) {
        h.insert("grpc-message", v);
    }
    response(h, Bytes::new(), None)
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
        assert_eq!(decode_unary(&f, None, 5).unwrap(), b"hello");
        assert_eq!(decode_unary(&f[..6], None, 5), Err(Unreadable::NotOurs));
        assert_eq!(decode_unary(b"\0\0\0", None, 5), Err(Unreadable::NotOurs));
        let mut two = f.to_vec();
        two.extend_from_slice(&f);
        assert_eq!(
            decode_unary(&two, None, 100),
            Err(Unreadable::NotOurs),
            "streams are not unary"
        );
    }

    fn gzip_frame(msg: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(msg).unwrap();
        let z = gz.finish().unwrap();
        let mut frame = vec![1];
        frame.extend_from_slice(&(z.len() as u32).to_be_bytes());
        frame.extend_from_slice(&z);
        frame
    }

    #[test]
    fn gzip_messages_are_read() {
        let frame = gzip_frame(b"payload");
        assert_eq!(decode_unary(&frame, Some("gzip"), 7).unwrap(), b"payload");
        assert_eq!(
            decode_unary(&frame, Some("zstd"), 7),
            Err(Unreadable::NotOurs)
        );
        let mut corrupt = frame.clone();
        corrupt[5] ^= 0xff; // the gzip magic
        assert_eq!(
            decode_unary(&corrupt, Some("gzip"), 100),
            Err(Unreadable::NotOurs)
        );
    }

    #[test]
    fn gzip_bombs_stop_at_the_limit() {
        // 16 MiB of zeros in a ~16 KiB message: decoding stops just past 1 MiB.
        let frame = gzip_frame(&vec![0u8; 16 << 20]);
        assert!(frame.len() < 64 << 10);
        assert_eq!(
            decode_unary(&frame, Some("gzip"), 1 << 20),
            Err(Unreadable::TooLarge)
        );
        assert_eq!(
            decode_unary(&frame, Some("gzip"), 16 << 20).map(|m| m.len()),
            Ok(16 << 20)
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
