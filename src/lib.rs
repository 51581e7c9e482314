//! secondpass: a reranking sidecar for Qdrant.
//!
//! Requests arrive at a transport adapter ([`transport`]), searches on collections
//! with reranking on are planned ([`plan`]), sent to Qdrant, scored by the
//! [`engine`] with a [`rerank`]er, and cut back to what the client asked for.

pub mod app;
pub mod config;
pub mod deadline;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod eval;
pub mod http_client;
pub mod metrics;
pub mod plan;
pub mod reload;
pub mod rerank;
pub mod secrets;
pub mod shadow;
pub mod state;
pub mod telemetry;
pub mod transport;
pub mod upstream;

#[cfg(test)]
mod layering;

pub use app::Server;
pub use config::Config;
pub use state::AppState;
