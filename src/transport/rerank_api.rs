//! secondpass as a rerank server: Cohere's `POST /v2/rerank` and `/v1/rerank` and TEI's
//! `POST /rerank`, backed by the configured chain of rerankers, with those APIs'
//! request validation and error shapes. Mounted on the REST listener (Qdrant has no
//! such paths).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{RerankApiConfig, ScoreMode};
use crate::rerank::{apply_score_mode, Priority, RerankError, RerankRequest};
use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/v2/rerank",
            post(|s: State<Arc<AppState>>, h: HeaderMap, b: Bytes| cohere(s, h, b, Version::V2)),
        )
        .route(
            "/v1/rerank",
            post(|s: State<Arc<AppState>>, h: HeaderMap, b: Bytes| cohere(s, h, b, Version::V1)),
        )
        .route("/rerank", post(tei))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// The two error dialects.
#[derive(Clone, Copy)]
enum Dialect {
    /// `{"message": "..."}`
    Cohere,
    /// `{"error": "...", "error_type": "..."}`
    Tei,
}

fn fail(d: Dialect, status: StatusCode, message: &str) -> Response {
    let body = match d {
        Dialect::Cohere => json!({ "message": message }),
        Dialect::Tei => {
            let kind = match status {
                StatusCode::UNAUTHORIZED => "Unauthorized",
                StatusCode::UNPROCESSABLE_ENTITY => "Validation",
                StatusCode::TOO_MANY_REQUESTS => "Overloaded",
                _ => "Backend",
            };
            json!({ "error": message, "error_type": kind })
        }
    };
    (status, Json(body)).into_response()
}

/// `Authorization: Bearer <token>` when `rerank_api.token_env` or `token_file` is
/// set (validation requires one unless the REST listener is loopback). The token is
/// read on every call, so a rotated secret takes effect without a restart; an
/// unreadable one refuses every call.
fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let cfg = state.config();
    let api = &cfg.rerank_api;
    if !api.token_required() {
        return true;
    }
    match api.token() {
        Ok(Some(token)) => crate::transport::auth::bearer_matches(headers, &token),
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(error = %e, "rerank API token unreadable: call refused");
            false
        }
    }
}

/// Scores `documents` with the API's chain: one raw score each, and the scale.
async fn score(
    state: &AppState,
    d: Dialect,
    query: String,
    documents: Vec<String>,
) -> Result<(Vec<f32>, crate::rerank::ScoreKind), Response> {
    let cfg = state.config();
    let api = &cfg.rerank_api;
    let names = api.chain();
    let request = RerankRequest::new(query, documents);
    // Other services' batch work: a share of the local queue, so that proxied
    // searches keep room (see `rerank::Priority`).
    let chain = state.engine.chain();
    let run = chain.run(&names, request, Duration::from_millis(api.timeout_ms));
    match Priority::Api.scope(run).await {
        Ok(a) => Ok((a.raw, a.kind)),
        Err(e) => {
            let status = match e.error() {
                RerankError::Overloaded => StatusCode::TOO_MANY_REQUESTS,
                RerankError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            tracing::warn!(errors = %e.describe(), "rerank API: every reranker failed");
            Err(fail(d, status, &format!("rerank failed: {}", e.describe())))
        }
    }
}

/// Indices by score, descending (ties in input order).
fn ranking(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

#[derive(Deserialize)]
struct CohereRequest {
    model: Option<String>,
    query: Option<String>,
    documents: Option<Vec<Value>>,
    top_n: Option<i64>,
    #[serde(default)]
    return_documents: bool,
    #[allow(dead_code)]
    max_tokens_per_doc: Option<i64>,
}

async fn cohere(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
    v: Version,
) -> Response {
    let d = Dialect::Cohere;
    if !authorized(&state, &headers) {
        return fail(d, StatusCode::UNAUTHORIZED, "invalid api token");
    }
    let ask = serde_json::from_slice::<CohereRequest>(&body)
        .map_err(|e| e.to_string())
        .and_then(|req| req.validate(&state.config().rerank_api, v));
    let mut ask = match ask {
        Ok(a) => a,
        Err(why) => {
            return fail(
                d,
                StatusCode::BAD_REQUEST,
                &format!("invalid request: {why}"),
            );
        }
    };
    let (raw, kind) =
        match score(&state, d, std::mem::take(&mut ask.query), ask.texts.clone()).await {
            Ok(s) => s,
            Err(resp) => return resp,
        };
    let relevance: Vec<f32> = raw
        .iter()
        .map(|&r| apply_score_mode(r, kind, ScoreMode::Sigmoid))
        .collect();
    Json(ask.answer(&relevance, v)).into_response()
}

/// What a valid Cohere-style request asks for.
struct CohereAsk {
    query: String,
    texts: Vec<String>,
    top_n: usize,
    return_documents: bool,
}

impl CohereRequest {
    /// Cohere's checks, in its order; `Err`: what the 400 says after "invalid request: ".
    fn validate(self, limits: &RerankApiConfig, v: Version) -> Result<CohereAsk, String> {
        if self.model.as_deref().is_none_or(|m| m.trim().is_empty()) {
            return Err("model must be specified".into());
        }
        let Some(query) = self.query.filter(|q| !q.trim().is_empty()) else {
            return Err("query must not be empty".into());
        };
        crate::plan::query_text::check_len(&query, limits.max_query_bytes)?;
        let docs = self.documents.unwrap_or_default();
        if docs.is_empty() {
            return Err("list of documents must not be empty".into());
        }
        let max = limits.max_documents;
        if docs.len() > max {
            let n = docs.len();
            return Err(format!("too many documents, got {n}, max is {max}"));
        }
        let texts = cohere_texts(&docs, v)?;
        let top_n = match self.top_n {
            None => texts.len(),
            Some(n) if n >= 1 => (n as usize).min(texts.len()),
            Some(_) => return Err("top_n must be at least 1".into()),
        };
        Ok(CohereAsk {
            query,
            texts,
            top_n,
            return_documents: self.return_documents,
        })
    }
}

/// The documents' texts: v2 takes strings; v1 also objects with a "text" field.
fn cohere_texts(docs: &[Value], v: Version) -> Result<Vec<String>, String> {
    docs.iter()
        .enumerate()
        .map(|(i, doc)| match (doc, v) {
            (Value::String(s), _) => Ok(s.clone()),
            (Value::Object(o), Version::V1) => o
                .get("text")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("document {i} has no text field")),
            _ => Err(format!("document {i} must be a string")),
        })
        .collect()
}

impl CohereAsk {
    /// Cohere's answer: the best `top_n` by relevance (0..1), v1 with the documents
    /// when asked.
    fn answer(&self, relevance: &[f32], v: Version) -> Value {
        let results: Vec<Value> = ranking(relevance)
            .into_iter()
            .take(self.top_n)
            .map(|i| {
                let mut r = json!({"index": i, "relevance_score": relevance[i]});
                if v == Version::V1 && self.return_documents {
                    r["document"] = json!({"text": self.texts[i]});
                }
                r
            })
            .collect();
        let version = if v == Version::V1 { "1" } else { "2" };
        json!({
            "id": crate::transport::request_id::new_id(),
            "results": results,
            "meta": {"api_version": {"version": version}, "billed_units": {"search_units": 1}},
        })
    }
}

#[derive(Deserialize)]
struct TeiRequest {
    query: Option<String>,
    texts: Option<Vec<String>>,
    #[serde(default)]
    raw_scores: bool,
    #[serde(default)]
    return_text: bool,
    #[allow(dead_code)]
    truncate: Option<bool>,
    #[allow(dead_code)]
    truncation_direction: Option<String>,
}

async fn tei(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let d = Dialect::Tei;
    if !authorized(&state, &headers) {
        return fail(d, StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let req: TeiRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return fail(
                d,
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("Failed to deserialize the JSON body: {e}"),
            )
        }
    };
    let Some(query) = req.query else {
        return fail(d, StatusCode::UNPROCESSABLE_ENTITY, "missing field `query`");
    };
    let max_query = state.config().rerank_api.max_query_bytes;
    if let Err(why) = crate::plan::query_text::check_len(&query, max_query) {
        // TEI's validation errors are 422s.
        return fail(d, StatusCode::UNPROCESSABLE_ENTITY, &why);
    }
    let texts = req.texts.unwrap_or_default();
    if texts.is_empty() {
        return fail(
            d,
            StatusCode::UNPROCESSABLE_ENTITY,
            "`texts` cannot be empty",
        );
    }
    let max = state.config().rerank_api.max_documents;
    if texts.len() > max {
        return fail(
            d,
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "batch size {} > maximum allowed batch size {max}",
                texts.len()
            ),
        );
    }
    let (raw, kind) = match score(&state, d, query, texts.clone()).await {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let mode = if req.raw_scores {
        ScoreMode::Raw
    } else {
        ScoreMode::Sigmoid
    };
    let scores: Vec<f32> = raw
        .iter()
        .map(|&r| apply_score_mode(r, kind, mode))
        .collect();
    let out: Vec<Value> = ranking(&scores)
        .into_iter()
        .map(|i| {
            let mut r = json!({"index": i, "score": scores[i]});
            if req.return_text {
                r["text"] = json!(texts[i]);
            }
            r
        })
        .collect();
    Json(Value::Array(out)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::rerank::{Registry, RerankFuture, Reranker, ScoreKind};
    use axum::body::{to_bytes, Body};
    use tower::ServiceExt;

    /// Scores a document by its length (as a logit).
    struct ByLength;

    impl Reranker for ByLength {
        fn model(&self) -> &str {
            "by-length"
        }
        fn score_kind(&self) -> ScoreKind {
            ScoreKind::Logit
        }
        fn rerank(&self, r: RerankRequest) -> RerankFuture {
            Box::pin(async move { Ok(r.documents.iter().map(|d| d.len() as f32 - 3.0).collect()) })
        }
    }

    fn app(extra: &str) -> Router {
        let cfg = Config::from_toml(&format!(
            "[server]\nrest_listen = \"127.0.0.1:0\"\n\
             [rerankers.local]\nkind = \"onnx\"\nmodel_dir = \"/unused\"\n\
             [rerank_api]\nenabled = true\nmax_documents = 3\n{extra}"
        ))
        .unwrap();
        let mut reg = Registry::default();
        reg.insert("local", Arc::new(ByLength));
        let state = Arc::new(AppState::new(cfg, reg).unwrap());
        routes().with_state(state)
    }

    async fn post(app: Router, path: &str, body: Value, auth: Option<&str>) -> (StatusCode, Value) {
        let mut req = http::Request::post(path).header("content-type", "application/json");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = app
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn cohere_v2_sorts_cuts_and_scores_in_0_1() {
        let (s, v) = post(
            app(""),
            "/v2/rerank",
            json!({"model": "m", "query": "q", "documents": ["a", "ccccc", "bbb"], "top_n": 2}),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let idx: Vec<u64> = v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["index"].as_u64().unwrap())
            .collect();
        assert_eq!(idx, vec![1, 2]);
        let top = v["results"][0]["relevance_score"].as_f64().unwrap();
        assert!((top - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-6);
        assert_eq!(v["meta"]["api_version"]["version"], "2");
        assert!(v["id"].is_string());
    }

    #[tokio::test]
    async fn cohere_v1_takes_objects_and_returns_documents() {
        let (s, v) = post(
            app(""),
            "/v1/rerank",
            json!({"model": "m", "query": "q", "documents": [{"text": "a"}, "bbbb"], "return_documents": true}),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["results"][0]["document"]["text"], "bbbb");
        assert_eq!(v["meta"]["api_version"]["version"], "1");
    }

    #[tokio::test]
    async fn cohere_errors() {
        for (body, needle) in [
            (
                json!({"model": "m", "query": "q", "documents": []}),
                "documents must not be empty",
            ),
            (json!({"model": "m", "documents": ["a"]}), "query"),
            (json!({"query": "q", "documents": ["a"]}), "model"),
            (
                json!({"model": "m", "query": "q", "documents": ["a", "b", "c", "d"]}),
                "too many documents",
            ),
            (
                json!({"model": "m", "query": "q", "documents": ["a"], "top_n": 0}),
                "top_n",
            ),
            (
                json!({"model": "m", "query": "q", "documents": [{"text": "a"}]}),
                "must be a string",
            ),
        ] {
            let (s, v) = post(app(""), "/v2/rerank", body, None).await;
            assert_eq!(s, StatusCode::BAD_REQUEST);
            assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
        }
    }

    #[tokio::test]
    async fn tei_shape_errors_and_raw_scores() {
        let (s, v) = post(app(""), "/rerank", json!({"query": "q", "texts": ["a", "bbbbbb"], "raw_scores": true, "return_text": true}), None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v[0]["index"], 1);
        assert_eq!(v[0]["score"], 3.0);
        assert_eq!(v[0]["text"], "bbbbbb");
        let (s, v) = post(app(""), "/rerank", json!({"query": "q", "texts": []}), None).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(v["error_type"], "Validation");
        assert_eq!(v["error"], "`texts` cannot be empty");
        let (s, v) = post(
            app(""),
            "/rerank",
            json!({"query": "q", "texts": ["a", "b", "c", "d"]}),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(v["error"]
            .as_str()
            .unwrap()
            .contains("maximum allowed batch size 3"));
    }

    #[tokio::test]
    async fn bearer_token_is_required_when_configured() {
        std::env::set_var("SP_TEST_RERANK_TOKEN", "s3cret");
        let extra = "token_env = \"SP_TEST_RERANK_TOKEN\"\n";
        let body = json!({"model": "m", "query": "q", "documents": ["a"]});
        let (s, _) = post(app(extra), "/v2/rerank", body.clone(), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = post(app(extra), "/v2/rerank", body.clone(), Some("Bearer wrong")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = post(app(extra), "/v2/rerank", body, Some("Bearer s3cret")).await;
        assert_eq!(s, StatusCode::OK);
        let (s, v) = post(
            app(extra),
            "/rerank",
            json!({"query": "q", "texts": ["a"]}),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(v["error_type"], "Unauthorized");
    }

    /// A token file (a mounted Secret) is read on every call: a rotated one takes
    /// effect at once, and the old token stops working.
    #[tokio::test]
    async fn token_file_is_read_on_every_call() {
        let file = std::env::temp_dir().join(format!("sp-rerank-token-{}", std::process::id()));
        std::fs::write(&file, "first\n").unwrap();
        let app = app(&format!("token_file = {:?}\n", file.display().to_string()));
        let body = json!({"query": "q", "texts": ["a"]});
        let (s, _) = post(app.clone(), "/rerank", body.clone(), Some("Bearer first")).await;
        assert_eq!(s, StatusCode::OK);
        std::fs::write(&file, "second").unwrap();
        let (s, _) = post(app.clone(), "/rerank", body.clone(), Some("Bearer first")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = post(app, "/rerank", body, Some("Bearer second")).await;
        assert_eq!(s, StatusCode::OK);
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn ranking_is_descending_and_stable() {
        assert_eq!(ranking(&[0.1, 0.9, 0.5, 0.9]), vec![1, 3, 2, 0]);
    }
}
