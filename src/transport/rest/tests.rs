//! Router tests with `oneshot`: what the REST adapter answers before (or without)
//! reaching Qdrant. End-to-end behaviour is in integration-tests/.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use super::router;
use crate::state::AppState;

/// Reranking on for `docs`, Qdrant at a port nothing listens on; `server` adds
/// keys to the `[server]` section.
fn app(server: &str) -> axum::Router {
    router(state(server))
}

fn state(server: &str) -> Arc<AppState> {
    crate::state::test_state("127.0.0.1:1", server)
}

async fn send(app: axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, json)
}

fn search(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn assert_qdrant_error(json: &Value, needle: &str) {
    let msg = json["status"]["error"].as_str().unwrap_or_default();
    assert!(
        msg.contains(needle),
        "error {msg:?} should mention {needle:?}"
    );
    assert!(json["time"].is_number(), "{json}");
}

#[tokio::test]
async fn invalid_query_header_is_a_400_in_qdrant_format() {
    let mut req = search(
        "/collections/docs/points/search",
        r#"{"vector":[1],"limit":1}"#,
    );
    req.headers_mut()
        .insert("x-rerank-query", "%FF%FE".parse().unwrap());
    let (status, json) = send(app(""), req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_qdrant_error(&json, "x-rerank-query");
}

#[tokio::test]
async fn invalid_rerank_object_is_a_400() {
    let req = search(
        "/collections/docs/points/query",
        r#"{"query":[1],"rerank":{"pool":"lots"}}"#,
    );
    let (status, json) = send(app(""), req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_qdrant_error(&json, "rerank");
}

#[tokio::test]
async fn invalid_rerank_object_in_a_batch_is_a_400() {
    let req = search(
        "/collections/docs/points/search/batch",
        r#"{"searches":[{"vector":[1],"limit":1,"rerank":{"bogus":1}}]}"#,
    );
    let (status, json) = send(app(""), req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_qdrant_error(&json, "bogus");
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_for_forwards_and_searches() {
    let req = Request::get("/collections").body(Body::empty()).unwrap();
    let (status, json) = send(app(""), req).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_qdrant_error(&json, "unreachable");

    let req = search(
        "/collections/docs/points/search",
        r#"{"vector":[1],"limit":1,"rerank":{"query":"q"}}"#,
    );
    let (status, json) = send(app(""), req).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_qdrant_error(&json, "unreachable");

    // a collection with reranking off takes the plain forwarding path
    let req = search(
        "/collections/other/points/search",
        r#"{"vector":[1],"limit":1}"#,
    );
    let (status, _) = send(app(""), req).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn oversized_body_without_length_is_a_413() {
    let req = search(
        "/collections/docs/points/search",
        r#"{"vector":[1,2,3,4],"limit":10,"rerank":{"query":"long enough"}}"#,
    );
    let (status, json) = send(app("max_body_bytes = 16"), req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_qdrant_error(&json, "16 bytes");
}

#[tokio::test]
async fn every_request_is_counted_once_with_its_label() {
    let state = state("");
    let app = router(state.clone());
    let mut bad = search(
        "/collections/docs/points/search",
        r#"{"vector":[1],"limit":1}"#,
    );
    bad.headers_mut()
        .insert("x-rerank-pool", "many".parse().unwrap());
    assert_eq!(send(app.clone(), bad).await.0, StatusCode::BAD_REQUEST);
    let get = Request::get("/collections").body(Body::empty()).unwrap();
    assert_eq!(send(app.clone(), get).await.0, StatusCode::BAD_GATEWAY);
    let off = search("/collections/other/points/query", r#"{"query":[1]}"#);
    assert_eq!(send(app.clone(), off).await.0, StatusCode::BAD_GATEWAY);
    let text = state.metrics.render();
    let line = |collection: &str, route: &str| {
        format!("secondpass_requests_total{{collection=\"{collection}\",rerank_status=\"error\",route=\"{route}\",transport=\"rest\"}} 1")
    };
    for needle in [
        line("docs", "search"),
        line("_none", "forward"),
        line("_other", "query"),
        "secondpass_responses_total{code=\"4xx\"} 1".to_string(),
        "secondpass_responses_total{code=\"5xx\"} 2".to_string(),
        "secondpass_request_duration_seconds_count{route=\"search\"} 1".to_string(),
    ] {
        assert!(text.contains(&needle), "missing {needle} in\n{text}");
    }
    let requests = text
        .lines()
        .filter(|l| l.starts_with("secondpass_requests_total{"))
        .count();
    assert_eq!(requests, 3, "{text}");
}

/// Only what widening may have caused sends the client's own request again; a
/// refusal the client's request would get as well goes back as it is.
#[test]
fn only_what_widening_may_cause_is_replayed() {
    for s in [400, 413, 422, 500] {
        assert!(super::refused(StatusCode::from_u16(s).unwrap()), "{s}");
    }
    for s in [401, 403, 404, 405, 408, 429, 502, 503, 504, 507] {
        assert!(!super::refused(StatusCode::from_u16(s).unwrap()), "{s}");
    }
}
