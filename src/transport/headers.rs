//! The `x-rerank-*` names, for both transports (gRPC metadata are HTTP/2 headers).

use http::{HeaderMap, HeaderValue};

/// Request options, read by [`crate::plan::query_text::Directive::from_headers`].
/// `x-rerank-reranker` also names response metadata (the reranker that answered, which
/// differs from the first of the chain after a fallback), and `x-rerank-explain` gRPC's
/// explain lines.
pub use crate::plan::query_text::{
    ENABLED_HEADER as ENABLED, EXPLAIN_HEADER as EXPLAIN, POOL_HEADER as POOL,
    RERANKER_HEADER as RERANKER, THRESHOLD_HEADER as THRESHOLD,
};

/// Request: the query text, percent-encoded.
pub const QUERY: &str = "x-rerank-query";
/// Request (gRPC): the query text as binary metadata (base64 of UTF-8).
pub const QUERY_BIN: &str = "x-rerank-query-bin";
/// Response: what secondpass did (`applied`, `skipped`, `disabled`, `failed_open`).
pub const STATUS: &str = "x-rerank-status";
/// Response: the model that scored.
pub const MODEL: &str = "x-rerank-model";
/// Response (gRPC): per-search statuses of a batch, comma-separated.
pub const STATUSES: &str = "x-rerank-statuses";
/// Response (gRPC): candidates scored.
pub const CANDIDATES: &str = "x-rerank-candidates";
/// Response (gRPC): seconds in the rerank step.
pub const TIME: &str = "x-rerank-time";
/// Response (gRPC): `prefetch` when the query text came from the prefetch of a hybrid
/// query (a batch: each search's source, comma-separated).
pub const QUERY_SOURCE: &str = "x-rerank-query-source";
/// Response (gRPC): why one search was not reranked.
pub const REASON: &str = "x-rerank-reason";

/// Removes the headers (gRPC: metadata) that carry secondpass's per-request options:
/// they are for secondpass, not for Qdrant.
pub fn strip_rerank_headers(headers: &mut HeaderMap) {
    for h in [
        QUERY, QUERY_BIN, ENABLED, POOL, THRESHOLD, EXPLAIN, RERANKER,
    ] {
        headers.remove(h);
    }
}

/// Sets `name` to `value` with anything outside printable ASCII replaced by `?`, so
/// that a name from the configuration never drops the header.
pub fn set_text(headers: &mut HeaderMap, name: &'static str, value: &str) {
    let clean: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&clean) {
        headers.insert(name, v);
    }
}
