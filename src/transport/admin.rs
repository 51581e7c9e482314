//! The admin listener: `/metrics`, `/healthz`, `/readyz`. Kept apart from the REST
//! port so that Qdrant's own `/healthz` and `/readyz` pass through unchanged there.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::app::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Ready when every reranker is loaded, Qdrant answers, and we are not draining.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response();
    }
    if state.metrics.model_loaded.get() != 1 {
        return (StatusCode::SERVICE_UNAVAILABLE, "rerankers not loaded").into_response();
    }
    if !state.upstream.probe().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("upstream {} does not answer", state.upstream.base()),
        )
            .into_response();
    }
    (StatusCode::OK, "ready").into_response()
}
