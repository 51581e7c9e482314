//! The admin listener: `/metrics`, `/healthz`, `/readyz`, and — when a token is
//! configured — the admin API under `/admin`. Kept apart from the REST port so that
//! Qdrant's own `/healthz` and `/readyz` pass through unchanged there.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::config::{CollectionOverrides, CollectionSettings};
use crate::state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    let r = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    // Always routed: whether the API answers depends on the token in force, which a
    // reload re-reads (without one, 404 as if absent).
    if state.admin_token().is_none() {
        tracing::info!("no admin token configured: the admin API is off");
    }
    let api = Router::new()
        .route("/admin/status", get(status))
        .route(
            "/admin/collections/{name}",
            get(get_collection)
                .put(|s: State<Arc<AppState>>, p: Path<String>, b: Bytes| change(s, p, b, true))
                .patch(|s: State<Arc<AppState>>, p: Path<String>, b: Bytes| change(s, p, b, false))
                .delete(reset_collection),
        )
        .route("/admin/reload", post(reload))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ));
    r.merge(api).with_state(state)
}

async fn authorize(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(token) = state.admin_token() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if crate::transport::auth::bearer_matches(req.headers(), &token) {
        next.run(req).await
    } else {
        let mut resp = (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "missing or wrong bearer token"})),
        )
            .into_response();
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        resp
    }
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

fn settings_json(s: &CollectionSettings) -> Value {
    json!({
        "enabled": s.enabled,
        "mode": s.mode.as_str(),
        "text_field": s.text_field,
        "pool": s.pool,
        "max_pool": s.max_pool,
        "rerankers": s.chain(),
        "max_length": s.max_length,
        "score_mode": s.score_mode,
        "score_threshold": s.score_threshold,
        "on_failure": s.on_failure,
        "timeout_ms": s.timeout.as_millis() as u64,
        "cache": s.cache,
        "text_template": s.text_template,
        "long_documents": s.long_documents,
        "chunk_tokens": s.chunk_tokens,
        "chunk_overlap": s.chunk_overlap,
        "max_chunks_per_doc": s.max_chunks_per_doc,
        "chunk_aggregate": s.chunk_aggregate,
        "hosted_chunks": s.hosted_chunks,
        "stages": s.stages,
        "allowed_rerankers": s.allowed_rerankers,
        "instruction": s.instruction,
    })
}

/// Effective configuration (API keys are never part of it: only the names of the
/// variables or files holding them), rerankers with their breaker state, collections,
/// and which generation of each secret is live (a counter and a short fingerprint).
async fn status(State(state): State<Arc<AppState>>) -> Response {
    let cfg = state.config();
    let chain = state.engine.chain();
    let breakers: std::collections::BTreeMap<String, &str> = chain
        .breaker_states()
        .into_iter()
        .map(|(n, s)| (n, s.as_str()))
        .collect();
    let rerankers: Vec<Value> = cfg
        .rerankers
        .iter()
        .map(|(name, rc)| {
            json!({
                "name": name,
                "config": rc,
                "model": chain.registry.get(name).map(|r| r.model().to_string()),
                "execution": chain.registry.get(name).and_then(|r| r.execution()),
                "breaker": breakers.get(name),
            })
        })
        .collect();
    let overrides = state.overrides();
    let mut names: Vec<String> = cfg.named_collections();
    names.extend(overrides.keys().cloned());
    names.sort();
    names.dedup();
    let collections: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| (n.clone(), settings_json(&state.collection(n))))
        .collect();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "draining": state.draining.load(Ordering::Relaxed),
        "config": &*cfg,
        "rerankers": rerankers,
        "collections": collections,
        "default": settings_json(&state.collection(crate::config::DEFAULT_COLLECTION)),
        "runtime_changes": overrides,
        "secrets": state.secrets.snapshot(),
    }))
    .into_response()
}

async fn get_collection(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    Json(json!({
        "collection": name,
        "settings": settings_json(&state.collection(&name)),
        "runtime_change": state.overrides().get(&name),
    }))
    .into_response()
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn change(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
    replace: bool,
) -> Response {
    let change: CollectionOverrides = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return bad_request(format!("invalid collection settings: {e}")),
    };
    match state.update_collection(&name, change, replace) {
        Ok(()) => {
            tracing::info!(collection = %name, "collection settings changed at run time");
            get_collection(State(state), Path(name)).await
        }
        Err(e) => bad_request(e),
    }
}

async fn reset_collection(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Response {
    match state.reset_collection(&name) {
        Ok(true) => get_collection(State(state), Path(name)).await,
        Ok(false) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("collection {name} has no run-time changes")})),
        )
            .into_response(),
        Err(e) => bad_request(e),
    }
}

async fn reload(State(state): State<Arc<AppState>>) -> Response {
    match state.reload().await {
        Ok(restart_needed) => {
            Json(json!({"reloaded": true, "restart_needed": restart_needed})).into_response()
        }
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"reloaded": false, "error": e})),
        )
            .into_response(),
    }
}
