//! Transport adapters. They decode and encode; planning and reranking live elsewhere,
//! and what REST and gRPC share (the request pipeline and its one exit) is in
//! [`pipeline`].

pub mod admin;
pub mod auth;
pub mod grpc;
pub mod headers;
pub mod pipeline;
pub mod request_id;
pub mod rerank_api;
pub mod rest;
