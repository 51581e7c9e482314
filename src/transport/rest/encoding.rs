//! Content codings on the rewritten REST path, as Qdrant (actix-web) handles them: a
//! compressed search body is read (never past the body limit), and a rewritten answer
//! is compressed the way the client's `Accept-Encoding` asks. Pure functions; the
//! handler does the I/O.

use std::io::{Read, Write};

use axum::http::{header, HeaderMap, HeaderValue};

/// The codings secondpass reads and writes (Qdrant also does `br`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Zstd,
    Gzip,
    /// zlib-wrapped deflate, as HTTP's `deflate` and Qdrant mean it.
    Deflate,
}

impl Coding {
    /// Preference among equal q-values: Qdrant's order, without `br`.
    const PREFERENCE: [Coding; 3] = [Coding::Zstd, Coding::Gzip, Coding::Deflate];

    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }

    fn from_token(token: &str) -> Option<Coding> {
        Coding::PREFERENCE
            .into_iter()
            .find(|c| token.eq_ignore_ascii_case(c.as_str()))
    }
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCoding {
    Identity,
    Known(Coding),
    /// `br`, stacked codings, or a value that is not text: not ours to read.
    Other,
}

/// The request's `Content-Encoding`. Names Qdrant does not know either are plain
/// bodies to it (it reads `foo` as identity), so they are to us.
pub fn request_coding(headers: &HeaderMap) -> BodyCoding {
    let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
    let (Some(v), None) = (values.next(), values.next()) else {
        return if headers.contains_key(header::CONTENT_ENCODING) {
            BodyCoding::Other
        } else {
            BodyCoding::Identity
        };
    };
    let Ok(v) = v.to_str() else {
        return BodyCoding::Other;
    };
    let v = v.trim();
    if v.contains(',') || v.eq_ignore_ascii_case("br") {
        return BodyCoding::Other;
    }
    Coding::from_token(v).map_or(BodyCoding::Identity, BodyCoding::Known)
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Decoded, the body would exceed the limit.
    TooLarge,
    Corrupt(String),
}

/// Decodes `body`, stopping as soon as the output passes `max` bytes.
pub fn decode(coding: Coding, body: &[u8], max: usize) -> Result<Vec<u8>, DecodeError> {
    let limit = (max as u64).saturating_add(1);
    let mut out = Vec::new();
    let read = match coding {
        Coding::Gzip => flate2::read::GzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        Coding::Deflate => flate2::read::ZlibDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        Coding::Zstd => match ruzstd::decoding::StreamingDecoder::new(body) {
            Ok(d) => d.take(limit).read_to_end(&mut out),
            Err(e) => return Err(DecodeError::Corrupt(e.to_string())),
        },
    };
    read.map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if out.len() > max {
        return Err(DecodeError::TooLarge);
    }
    Ok(out)
}

/// The coding for an answer to a request with these headers, chosen as Qdrant
/// chooses: the highest q-value wins, ties go by [`Coding::PREFERENCE`]; no coding
/// when `identity` is preferred, none we do is acceptable, or the client sent no
/// `Accept-Encoding`. (`*` and `br` are not offered: Qdrant answers `*` uncompressed.)
pub fn negotiate(headers: &HeaderMap) -> Option<Coding> {
    let mut best: Option<(Coding, f32)> = None;
    let mut identity: f32 = 0.0;
    let entries = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for entry in entries {
        let mut parts = entry.split(';');
        let name = parts.next().unwrap_or("").trim();
        let mut q = Some(1.0f32);
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            if k.trim().eq_ignore_ascii_case("q") {
                q = v.trim().parse().ok().filter(|q| (0.0..=1.0).contains(q));
            }
        }
        let Some(q) = q else { continue };
        if name.eq_ignore_ascii_case("identity") {
            identity = identity.max(q);
            continue;
        }
        let Some(c) = Coding::from_token(name) else {
            continue;
        };
        let rank = |c: Coding| Coding::PREFERENCE.iter().position(|p| *p == c);
        let better = match best {
            None => true,
            Some((b, bq)) => q > bq || (q == bq && rank(c) < rank(b)),
        };
        if q > 0.0 && better {
            best = Some((c, q));
        }
    }
    best.filter(|(_, q)| *q >= identity).map(|(c, _)| c)
}

/// `body` encoded with `coding`.
pub fn encode(coding: Coding, body: &[u8]) -> Vec<u8> {
    let level = flate2::Compression::fast();
    let written = match coding {
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(body).and_then(|()| e.finish())
        }
        Coding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
            e.write_all(body).and_then(|()| e.finish())
        }
        Coding::Zstd => Ok(ruzstd::encoding::compress_to_vec(
            body,
            ruzstd::encoding::CompressionLevel::Fastest,
        )),
    };
    written.expect("writing to memory does not fail")
}

/// Sets `body` as the answer's content under `coding`: `Content-Encoding`, `Vary`
/// (`accept-encoding` first, as Qdrant writes it) and no stale length or framing
/// (the server writes the new `Content-Length`).
pub fn finish(headers: &mut HeaderMap, body: Vec<u8>, coding: Option<Coding>) -> Vec<u8> {
    for h in [
        header::CONTENT_LENGTH,
        header::CONTENT_ENCODING,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(h);
    }
    let Some(coding) = coding else {
        return body;
    };
    let vary: Vec<&str> = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let has = vary.iter().any(|v| {
        v.split(',')
            .any(|n| n.trim().eq_ignore_ascii_case("accept-encoding") || n.trim() == "*")
    });
    if !has {
        let joined = std::iter::once("accept-encoding")
            .chain(vary)
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(v) = HeaderValue::from_str(&joined) {
            headers.insert(header::VARY, v);
        }
    }
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.as_str()),
    );
    encode(coding, &body)
}

#[cfg(test)]
#[path = "encoding_tests.rs"]
mod tests;
