//! The Qdrant-compatible REST listener: intercepted searches, everything else forwarded.

pub mod body;
pub mod encoding;
pub mod explain;
mod shadow;

use std::sync::Arc;
use std::time::Instant;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use crate::app::AppState;

use crate::error::{qdrant_error_response, Error};
use crate::plan::query_text::{self, Directive};
use crate::plan::{Decision, RerankStatus};
use body::{apply, candidates, marker, prepare, Endpoint, PrepareError};
use encoding::{BodyCoding, Coding};

pub const QUERY_HEADER: &str = "x-rerank-query";
pub const STATUS_HEADER: &str = "x-rerank-status";
pub const MODEL_HEADER: &str = "x-rerank-model";
/// Configured name of the reranker that answered (differs from the first of the
/// chain after a fallback).
pub const RERANKER_HEADER: &str = "x-rerank-reranker";

pub fn router(state: Arc<AppState>) -> Router {
    let intercept = |ep: Endpoint| {
        post(
            move |State(s): State<Arc<AppState>>, Path(c): Path<String>, req: Request| async move {
                handle(s, ep, c, req).await
            },
        )
        .fallback(forward)
    };
    let mut router = Router::new();
    for (ep, suffix) in Endpoint::ALL {
        router = router.route(
            &format!("/collections/{{name}}/points/{suffix}"),
            intercept(ep),
        );
    }
    if state.config().rerank_api.enabled {
        router = router.merge(crate::transport::rerank_api::routes());
    }
    router
        .fallback(forward)
        .layer(axum::middleware::from_fn(
            crate::transport::request_id::layer,
        ))
        .with_state(state)
}

/// Everything that is not an intercepted search: straight through.
async fn forward(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let resp = match state.upstream.forward(req).await {
        Ok(resp) => resp,
        Err(e) => error_response(e, started),
    };
    state.record("forward", "_none", "none", &resp, started);
    resp
}

fn with_status(mut resp: Response, status: RerankStatus) -> Response {
    resp.headers_mut()
        .insert(STATUS_HEADER, HeaderValue::from_static(status.as_str()));
    resp
}

/// Qdrant answers that may come from widening: the client's mistakes (4xx) and 500
/// (Qdrant's answer to some invalid values); not 502/503/504 (overload, restarts).
fn refused(status: StatusCode) -> bool {
    status.is_client_error() || status == StatusCode::INTERNAL_SERVER_ERROR
}

/// A request head with the same method, URI, version and headers.
fn error_response(e: Error, started: Instant) -> Response {
    qdrant_error_response(
        e.http_status(),
        &e.to_string(),
        started.elapsed().as_secs_f64(),
    )
}

async fn handle(state: Arc<AppState>, ep: Endpoint, collection: String, req: Request) -> Response {
    let started = Instant::now();
    let route = ep.route();
    let label = state.metrics.collection_label(&collection).to_string();
    let settings = state.collection(&collection);
    if settings.enabled && settings.mode == crate::config::Mode::Shadow {
        return shadow::live(state, ep, collection, label, settings, req, started).await;
    }
    if !settings.enabled {
        let resp = match state.upstream.forward(req).await {
            Ok(r) => with_status(r, RerankStatus::Disabled),
            Err(e) => error_response(e, started),
        };
        state.record(route, &label, "disabled", &resp, started);
        return resp;
    }
    let (mut parts, body) = req.into_parts();
    let headers = &parts.headers;
    let from_headers = parts
        .headers
        .get(QUERY_HEADER)
        .map(|v| query_text::decode_header(v.as_bytes()))
        .transpose()
        .and_then(|q| {
            Ok((
                q,
                Directive::from_headers(|n| headers.get(n).map(|v| v.as_bytes()))?,
            ))
        });
    let from_headers = from_headers.and_then(|(q, d)| {
        if let Some(q) = &q {
            query_text::check_len(q, settings.max_query_bytes)?;
        }
        Ok((q, d))
    });
    let (header_query, header_directive) = match from_headers {
        Ok(found) => found,
        Err(why) => {
            let resp = error_response(Error::BadRequest(why), started);
            state.record(route, &label, "error", &resp, started);
            return resp;
        }
    };
    let max = state.config().server.max_body_bytes;
    let coding = encoding::request_coding(&parts.headers);
    let too_big = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|n| n > max);
    if coding == BodyCoding::Other || too_big {
        // Not ours to rewrite: Qdrant gets it exactly as sent.
        let resp = match state
            .upstream
            .forward(Request::from_parts(parts, body))
            .await
        {
            Ok(r) => with_status(r, RerankStatus::Skipped),
            Err(e) => error_response(e, started),
        };
        state.record(route, &label, "skipped", &resp, started);
        return resp;
    }
    let bytes = match to_bytes(body, max).await {
        Ok(b) => b,
        Err(_) => {
            let resp = error_response(Error::PayloadTooLarge(max), started);
            state.record(route, &label, "error", &resp, started);
            return resp;
        }
    };
    let unchanged =
        |parts: http::request::Parts, bytes: Bytes| Request::from_parts(parts, Body::from(bytes));
    let bytes = match coding {
        BodyCoding::Known(c) => match encoding::decode(c, &bytes, max) {
            Ok(plain) => {
                // Qdrant gets the plain body (it reads either).
                parts.headers.remove(header::CONTENT_ENCODING);
                parts.headers.remove(header::CONTENT_LENGTH);
                Bytes::from(plain)
            }
            Err(_) => {
                // Corrupt, or larger than the limit once decoded: Qdrant gets the
                // body as sent and answers in its own words (its 400 for a body past
                // its limit); secondpass never holds more than the limit.
                let resp = match state.upstream.forward(unchanged(parts, bytes)).await {
                    Ok(r) => with_status(r, RerankStatus::Skipped),
                    Err(e) => error_response(e, started),
                };
                state.record(route, &label, "skipped", &resp, started);
                return resp;
            }
        },
        _ => bytes,
    };
    let prepared = match serde_json::from_slice::<Value>(&bytes) {
        // Malformed JSON: Qdrant's own error message is the right answer.
        Err(_) => Err(PrepareError::NotOurs),
        Ok(v) => prepare(
            v,
            ep,
            &settings,
            header_query.as_deref(),
            header_directive.as_ref(),
        ),
    };
    let mut prepared = match prepared {
        Ok(p) => p,
        Err(PrepareError::NotOurs) => {
            let resp = match state.upstream.forward(unchanged(parts, bytes)).await {
                Ok(r) => with_status(r, RerankStatus::Skipped),
                Err(e) => error_response(e, started),
            };
            state.record(route, &label, "skipped", &resp, started);
            return resp;
        }
        Err(PrepareError::BadRequest(why)) => {
            let resp = error_response(Error::BadRequest(why), started);
            state.record(route, &label, "error", &resp, started);
            return resp;
        }
    };
    crate::transport::strip_rerank_headers(&mut parts.headers);
    parts.headers.remove(header::CONTENT_LENGTH);
    let all_disabled = prepared
        .searches
        .iter()
        .all(|s| s.decision == Decision::Disabled);
    if all_disabled {
        // Nothing to rerank: Qdrant's answer goes back byte for byte.
        let body = if prepared.changed {
            Bytes::from(serde_json::to_vec(&prepared.body).expect("json serializes"))
        } else {
            bytes
        };
        let resp = match state.upstream.forward(unchanged(parts, body)).await {
            Ok(r) => with_status(r, RerankStatus::Disabled),
            Err(e) => error_response(e, started),
        };
        state.record(route, &label, "disabled", &resp, started);
        return resp;
    }
    // Qdrant's own answer to the client's own values, should it refuse the widened ones.
    let replay_parts = parts.clone();
    // We read and rewrite the answer: ask for it uncompressed, and compress it for
    // the client as Qdrant would have.
    let answer_coding = encoding::negotiate(&parts.headers);
    parts.headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    // What Qdrant gets: the widened body; when nothing was widened (every search
    // skipped), the client's, less any `rerank` objects.
    let differs = prepared.widened || prepared.unwidened.is_some();
    let out = if prepared.widened {
        Bytes::from(serde_json::to_vec(&prepared.body).expect("json serializes"))
    } else {
        prepared
            .unwidened
            .take()
            .map_or_else(|| bytes.clone(), Bytes::from)
    };
    let upstream = match state.upstream.call(parts, out).await {
        Ok(u) => u,
        Err(e) => {
            let resp = error_response(e, started);
            state.record(route, &label, "error", &resp, started);
            return resp;
        }
    };
    if differs && refused(upstream.status) {
        // Qdrant refused what secondpass made of the request (a value it rejects, a
        // format error whose column moved): ask again with the client's bytes, so that
        // the client gets Qdrant's own answer to them. Searches do not change data, and
        // Qdrant ignores the unknown top-level `rerank` field.
        let resp = match state.upstream.forward(unchanged(replay_parts, bytes)).await {
            Ok(r) if r.status().is_success() => with_status(r, RerankStatus::Skipped),
            Ok(r) => r,
            Err(e) => error_response(e, started),
        };
        let status = if resp.status().is_success() {
            "skipped"
        } else {
            "error"
        };
        state.record(route, &label, status, &resp, started);
        return resp;
    }
    state
        .metrics
        .upstream_duration
        .with_label_values(&[route])
        .observe(upstream.elapsed.as_secs_f64());
    if !upstream.status.is_success() {
        // Qdrant's error, as Qdrant said it.
        let mut headers = upstream.headers;
        let body = if headers.contains_key(header::CONTENT_ENCODING) {
            upstream.body.to_vec() // already encoded by Qdrant: as it came
        } else {
            encoding::finish(&mut headers, upstream.body.to_vec(), answer_coding)
        };
        let mut resp = (upstream.status, body).into_response();
        *resp.headers_mut() = headers;
        state.record(route, &label, "error", &resp, started);
        return resp;
    }
    let ctx = Rewrite {
        state: &state,
        ep,
        collection: &collection,
        settings: &settings,
        started,
        coding: answer_coding,
    };
    let resp = match ctx
        .finish(&prepared, upstream.headers, &upstream.body)
        .await
    {
        Ok((resp, status)) => {
            state.record(route, &label, status.as_str(), &resp, started);
            resp
        }
        Err(e) => {
            let resp = error_response(e, started);
            state.record(route, &label, "error", &resp, started);
            resp
        }
    };
    resp
}

/// Reranks the candidates in Qdrant's answer and writes the client's response.
struct Rewrite<'a> {
    state: &'a AppState,
    ep: Endpoint,
    collection: &'a str,
    settings: &'a crate::config::CollectionSettings,
    started: Instant,
    /// How the client wants the answer compressed.
    coding: Option<Coding>,
}

impl Rewrite<'_> {
    async fn finish(
        &self,
        prepared: &body::Prepared,
        mut headers: HeaderMap,
        raw: &[u8],
    ) -> Result<(Response, RerankStatus), Error> {
        let mut answer = decode_json(&headers, raw)?;
        let result = answer
            .get_mut("result")
            .ok_or_else(|| Error::UpstreamInvalid("no `result` in Qdrant's answer".into()))?;
        let field = &self.settings.text_source();
        let mut texts = Vec::with_capacity(prepared.searches.len());
        let mut group_sizes = Vec::with_capacity(prepared.searches.len());
        for (i, planned) in prepared.searches.iter().enumerate() {
            let (t, sizes) = match &planned.decision {
                Decision::Rerank(_) => {
                    let (t, sizes) = candidates(result, self.ep, i, field).ok_or_else(|| {
                        Error::UpstreamInvalid(format!(
                            "answer for search {i} is not in the expected shape"
                        ))
                    })?;
                    (Some(t), sizes)
                }
                _ => (None, Vec::new()),
            };
            texts.push(t);
            group_sizes.push(sizes);
        }
        let decisions: Vec<&Decision> = prepared.searches.iter().map(|p| &p.decision).collect();
        let engine = &self.state.engine;
        let (outcomes, rerank_time) = engine
            .rerank_request(self.collection, self.settings, &decisions, texts)
            .await?;
        let mut explained = vec![None; outcomes.len()];
        for (i, (planned, outcome)) in prepared.searches.iter().zip(&outcomes).enumerate() {
            if let Decision::Rerank(plan) = &planned.decision {
                let before = planned
                    .explain
                    .then(|| explain::snapshot(result, self.ep, i));
                let moved = apply(
                    result,
                    self.ep,
                    i,
                    plan,
                    outcome,
                    &planned.restore,
                    &group_sizes[i],
                );
                engine.record_displacement(self.collection, moved);
                explained[i] = before.map(|b| explain::entries(result, self.ep, i, &b, outcome));
            }
        }
        let status = RerankStatus::combine(outcomes.iter().map(|o| o.status));
        let model = outcomes.iter().find_map(|o| o.model.clone());
        if let Some(obj) = answer.as_object_mut() {
            obj.insert("time".into(), json!(self.started.elapsed().as_secs_f64()));
            let mut m = marker(&outcomes, self.ep, rerank_time);
            add_explain(&mut m, self.ep, explained);
            obj.insert("rerank".into(), m);
        }
        let body = serde_json::to_vec(&answer).expect("json serializes");
        let body = encoding::finish(&mut headers, body, self.coding);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(STATUS_HEADER, HeaderValue::from_static(status.as_str()));
        if let Some(m) = model.and_then(|m| HeaderValue::from_str(&m).ok()) {
            headers.insert(MODEL_HEADER, m);
        }
        let reranker = outcomes.iter().find_map(|o| o.reranker.clone());
        if let Some(r) = reranker.and_then(|r| HeaderValue::from_str(&r).ok()) {
            headers.insert(RERANKER_HEADER, r);
        }
        let mut resp = (StatusCode::OK, body).into_response();
        *resp.headers_mut() = headers;
        Ok((resp, status))
    }
}

/// Puts explain entries into the `rerank` object: `explain` for one search, each
/// search's `explain` under `searches` for a batch.
fn add_explain(marker: &mut Value, ep: Endpoint, explained: Vec<Option<Value>>) {
    for (i, e) in explained.into_iter().enumerate() {
        let Some(e) = e else { continue };
        let target = if ep.is_batch() {
            marker.get_mut("searches").and_then(|s| s.get_mut(i))
        } else {
            Some(&mut *marker)
        };
        if let Some(Value::Object(o)) = target {
            o.insert("explain".into(), e);
        }
    }
}

/// Parses Qdrant's JSON answer, decoding it if Qdrant compressed it anyway.
fn decode_json(headers: &HeaderMap, raw: &[u8]) -> Result<Value, Error> {
    let parsed = match encoding::request_coding(headers) {
        BodyCoding::Identity => serde_json::from_slice(raw),
        // Qdrant is trusted: its answer is not bounded like a client's body.
        BodyCoding::Known(c) => {
            let text = encoding::decode(c, raw, usize::MAX)
                .map_err(|e| Error::UpstreamInvalid(format!("bad {} body: {e:?}", c.as_str())))?;
            serde_json::from_slice(&text)
        }
        BodyCoding::Other => {
            return Err(Error::UpstreamInvalid(
                "answer in a content-encoding secondpass does not read".into(),
            ))
        }
    };
    parsed.map_err(|e| Error::UpstreamInvalid(format!("answer is not JSON: {e}")))
}

#[cfg(test)]
mod tests;
