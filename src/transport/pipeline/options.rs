//! The rerank options a request carries in its headers (gRPC: metadata).

use base64::Engine as _;
use http::HeaderMap;

use crate::config::CollectionSettings;
use crate::plan::query_text::{self, Directive};
use crate::transport::headers::{QUERY, QUERY_BIN};
use crate::upstream::Protocol;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// The query text from `x-rerank-query` (gRPC also `x-rerank-query-bin`).
    pub query: Option<String>,
    /// The `x-rerank-*` options (enabled, pool, threshold, reranker, explain).
    pub directive: Option<Directive>,
}

impl Options {
    /// Reads the options. Malformed values and a query text longer than the
    /// collection's `max_query_bytes` are the client's mistake (400, gRPC
    /// INVALID_ARGUMENT): the message says which header.
    pub fn read(
        headers: &HeaderMap,
        protocol: Protocol,
        settings: &CollectionSettings,
    ) -> Result<Options, String> {
        let query = match (headers.get(QUERY), headers.get(QUERY_BIN), protocol) {
            (Some(v), _, _) => Some(query_text::decode_header(v.as_bytes())?),
            (None, Some(v), Protocol::Grpc) => Some(binary_text(v.as_bytes())?),
            _ => None,
        };
        if let Some(q) = &query {
            query_text::check_len(q, settings.max_query_bytes)?;
        }
        let directive = Directive::from_headers(|n| headers.get(n).map(|v| v.as_bytes()))?;
        Ok(Options { query, directive })
    }
}

/// gRPC binary metadata: base64 (padded or not) of UTF-8.
fn binary_text(raw: &[u8]) -> Result<String, String> {
    let unpadded = raw
        .strip_suffix(b"==")
        .or(raw.strip_suffix(b"="))
        .unwrap_or(raw);
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(unpadded)
        .map_err(|_| format!("{QUERY_BIN} is not base64"))?;
    String::from_utf8(bytes).map_err(|_| format!("{QUERY_BIN} is not UTF-8"))
}
