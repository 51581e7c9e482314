//! Transport adapters. They decode and encode; planning and reranking live elsewhere.

pub mod admin;
pub mod early_answer;
pub mod grpc;
pub mod request_id;
pub mod rerank_api;
pub mod rest;
pub mod upstream;
