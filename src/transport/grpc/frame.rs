//! gRPC over HTTP/2: length-prefixed messages, status in trailers.

use std::io::Read;

use axum::body::Body;
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body_util::StreamBody;
use hyper::body::Frame;

use crate::transport::pipeline::GrpcStatus;

pub use crate::error::{grpc_error_response as error, grpc_status_headers as status_headers, Code};

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

/// A response whose body is `data` followed by `trailers` (as HTTP/2 frames); the
/// status of the trailers goes along as a [`GrpcStatus`] extension, to be counted.
pub fn response(headers: HeaderMap, data: Bytes, trailers: Option<HeaderMap>) -> Response {
    let code = status(&headers, trailers.as_ref());
    let mut frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = Vec::new();
    if !data.is_empty() {
        frames.push(Ok(Frame::data(data)));
    }
    if let Some(t) = trailers {
        frames.push(Ok(Frame::trailers(t)));
    }
    // Nothing to send: an empty body ends the stream on the HEADERS frame (a
    // trailers-only response); an empty DATA frame instead makes grpc-core clients
    // (Python, ...) report UNKNOWN "Stream removed" rather than the status.
    let body = if frames.is_empty() {
        Body::empty()
    } else {
        Body::new(StreamBody::new(futures_util::stream::iter(frames)))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    *resp.headers_mut() = headers;
    if let Some(c) = code {
        resp.extensions_mut().insert(GrpcStatus(c));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
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
    fn errors_are_trailers_only() {
        use hyper::body::Body as _;
        let r = error(Code::ResourceExhausted, "too big: 100%");
        assert_eq!(r.headers()["grpc-status"], "8");
        assert_eq!(r.headers()["grpc-message"], "too big: 100%25");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.body().is_end_stream(), "END_STREAM on the headers");
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
