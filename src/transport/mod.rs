//! Transport adapters. They decode and encode; planning and reranking live elsewhere.

pub mod admin;
pub mod early_answer;
pub mod grpc;
pub mod request_id;
pub mod rerank_api;
pub mod rest;
pub mod upstream;

/// Removes the headers (gRPC: metadata) that carry secondpass's per-request options:
/// they are for secondpass, not for Qdrant.
pub fn strip_rerank_headers(headers: &mut http::HeaderMap) {
    use crate::plan::query_text;
    for h in [
        rest::QUERY_HEADER,
        grpc::QUERY_BIN_HEADER,
        query_text::ENABLED_HEADER,
        query_text::POOL_HEADER,
        query_text::THRESHOLD_HEADER,
        query_text::EXPLAIN_HEADER,
        query_text::RERANKER_HEADER,
    ] {
        headers.remove(h);
    }
}
