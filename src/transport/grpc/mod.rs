//! The Qdrant-compatible gRPC listener. Reranked `qdrant.Points` methods are decoded
//! and go through the same planner and engine as REST; every other method (and any
//! request we do not understand) is forwarded as undecoded HTTP/2 frames, metadata
//! and trailers untouched.

pub mod answer;
pub mod convert;
pub mod explain;
pub mod frame;
pub mod points;
pub mod shadow;
pub mod wire;

use std::sync::Arc;
use std::time::Instant;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use prost::Message;

use crate::app::AppState;
use crate::engine::Outcome;
use crate::error::Error;
use crate::plan::payload::{rewrite_all, Restore};
use crate::plan::query_text::{self, Directive};
use crate::plan::{
    decide, displacement, order_groups, order_page, Cut, Decision, Ranked, RerankPlan,
    RerankStatus, SearchInput,
};
use answer::Order;
use frame::Code;
use points::{Hits, Method, SearchItem};

pub(crate) const QUERY_BIN_HEADER: &str = "x-rerank-query-bin";

pub fn router(state: Arc<AppState>) -> Router {
    fn route<M: Method>(r: Router<Arc<AppState>>, name: &str) -> Router<Arc<AppState>> {
        r.route(
            &format!("/qdrant.Points/{name}"),
            post(|State(s): State<Arc<AppState>>, req: Request| handle::<M>(s, req)),
        )
    }
    let mut r = Router::new();
    r = route::<points::Search>(r, "Search");
    r = route::<points::SearchBatch>(r, "SearchBatch");
    r = route::<points::SearchGroups>(r, "SearchGroups");
    r = route::<points::Query_>(r, "Query");
    r = route::<points::QueryBatch>(r, "QueryBatch");
    r = route::<points::QueryGroups>(r, "QueryGroups");
    r = route::<points::Recommend>(r, "Recommend");
    r = route::<points::RecommendBatch>(r, "RecommendBatch");
    r = route::<points::RecommendGroups>(r, "RecommendGroups");
    r = route::<points::Discover>(r, "Discover");
    r = route::<points::DiscoverBatch>(r, "DiscoverBatch");
    r.fallback(forward)
        .layer(axum::middleware::from_fn(
            crate::transport::request_id::layer,
        ))
        .with_state(state)
}

/// gRPC status for our own errors (Qdrant's pass through as Qdrant sent them).
fn error_response(e: &Error) -> Response {
    let code = match e {
        Error::UpstreamUnreachable(_) => Code::Unavailable,
        Error::UpstreamTimeout(_) => Code::DeadlineExceeded,
        Error::UpstreamInvalid(_) | Error::Internal(_) => Code::Internal,
        Error::BadRequest(_) => Code::InvalidArgument,
        Error::PayloadTooLarge(_) | Error::DecompressedTooLarge(_) => Code::ResourceExhausted,
        Error::Rerank(crate::rerank::RerankError::Overloaded) => Code::ResourceExhausted,
        Error::Rerank(_) => Code::Unavailable,
    };
    frame::error(code, &e.to_string())
}

async fn forward(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let resp = match state.grpc_upstream.forward(req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    state.record("grpc_forward", "_none", "none", &resp, started);
    resp
}

fn marked(mut resp: Response, status: RerankStatus) -> Response {
    resp.headers_mut().insert(
        crate::transport::rest::STATUS_HEADER,
        HeaderValue::from_static(status.as_str()),
    );
    resp
}

/// The query text from metadata: `x-rerank-query` (percent-encoded) or
/// `x-rerank-query-bin` (binary metadata: base64 of UTF-8), plus header options.
fn metadata(headers: &HeaderMap) -> Result<(Option<String>, Option<Directive>), String> {
    let query = match (
        headers.get(crate::transport::rest::QUERY_HEADER),
        headers.get(QUERY_BIN_HEADER),
    ) {
        (Some(v), _) => Some(query_text::decode_header(v.as_bytes())?),
        (None, Some(v)) => {
            let raw = v.as_bytes();
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(
                    raw.strip_suffix(b"==")
                        .or(raw.strip_suffix(b"="))
                        .unwrap_or(raw),
                )
                .map_err(|_| format!("{QUERY_BIN_HEADER} is not base64"))?;
            Some(String::from_utf8(bytes).map_err(|_| format!("{QUERY_BIN_HEADER} is not UTF-8"))?)
        }
        (None, None) => None,
    };
    let directive = Directive::from_headers(|n| headers.get(n).map(|v| v.as_bytes()))?;
    Ok((query, directive))
}

struct Planned {
    decision: Decision,
    restore: Restore,
    explain: bool,
}

/// Plans every search of a request: what to do with it and, for the ones to rerank,
/// the edit that widens it on the wire (shared by the live path and shadow mode).
fn plan_items<M: Method>(
    request: &M::Req,
    settings: &crate::config::CollectionSettings,
    header_query: Option<String>,
    directive: Option<&Directive>,
) -> (Vec<Planned>, Vec<Option<wire::Edit>>) {
    let mut planned = Vec::new();
    let mut edits = Vec::new();
    for item in M::items(request) {
        let query = header_query.clone().or_else(|| item.document_text());
        let mut decision = decide(SearchInput {
            settings,
            query: query.as_deref(),
            directive,
            shape: item.shape(),
        });
        let mut restore = Restore::Keep;
        let mut edit = None;
        if let Decision::Rerank(plan) = &decision {
            let current = convert::selector_to_json(item.selector());
            match rewrite_all(current.as_ref(), &settings.text_source().paths())
                .and_then(|rw| Some((convert::selector_from_json(&rw.selector)?, rw.restore)))
            {
                Some((selector, r)) => {
                    edit = Some(<M::Item as SearchItem>::widen(plan.cut.fetch(), &selector));
                    restore = r;
                }
                None => decision = Decision::Skip("with_payload not understood".into()),
            }
        }
        planned.push(Planned {
            decision,
            restore,
            explain: directive.and_then(|d| d.explain) == Some(true),
        });
        edits.push(edit);
    }
    (planned, edits)
}

/// The request message with every planned edit applied to its bytes.
fn patch<M: Method>(
    message: &[u8],
    edits: Vec<Option<wire::Edit>>,
) -> Result<Vec<u8>, wire::WireError> {
    match M::ITEMS {
        None => edits
            .into_iter()
            .next()
            .flatten()
            .unwrap_or_default()
            .apply(message),
        Some(field) => wire::Edit::new().each(field, edits).apply(message),
    }
}

/// One search's explain line: its hits put in `order` on a copy, next to Qdrant's.
fn explain_line(hits: &Hits<'_>, order: &Order<'_>, outcome: &Outcome) -> String {
    if matches!(order, Order::Keep) {
        return String::new();
    }
    let before = explain::snapshot(hits);
    match hits {
        Hits::Points(points) => {
            let mut copy = (**points).clone();
            let mut h = Hits::Points(&mut copy);
            apply(&mut h, order);
            explain::line(&h, &before, outcome)
        }
        Hits::Groups(groups) => {
            let mut copy = (**groups).clone();
            let mut h = Hits::Groups(&mut copy);
            apply(&mut h, order);
            explain::line(&h, &before, outcome)
        }
    }
}

async fn handle<M: Method>(state: Arc<AppState>, req: Request) -> Response {
    let started = Instant::now();
    let route = M::ROUTE;
    let (mut parts, body) = req.into_parts();
    let max = state.config().server.max_body_bytes;
    let Ok(bytes) = to_bytes(body, max).await else {
        let resp = error_response(&Error::PayloadTooLarge(max));
        state.record(route, "_none", "error", &resp, started);
        return resp;
    };
    let encoding = parts
        .headers
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let message = match frame::decode_unary(&bytes, encoding.as_deref(), max) {
        Ok(m) => Some(m),
        Err(frame::Unreadable::TooLarge) => {
            let resp = error_response(&Error::DecompressedTooLarge(max));
            state.record(route, "_none", "error", &resp, started);
            return resp;
        }
        Err(frame::Unreadable::NotOurs) => None,
    };
    let decoded = message.as_deref().and_then(|m| M::Req::decode(m).ok());
    let (Some(message), Some(request)) = (message, decoded) else {
        // Not a message we can read: Qdrant answers it.
        return forward_as_is(
            &state,
            route,
            "_none",
            parts,
            bytes,
            RerankStatus::Skipped,
            started,
        )
        .await;
    };
    let collection = M::collection(&request).to_string();
    let label = state.metrics.collection_label(&collection).to_string();
    let settings = state.collection(&collection);
    if settings.enabled && settings.mode == crate::config::Mode::Shadow {
        return shadow::live::<M>(
            state, collection, label, settings, parts, bytes, request, started,
        )
        .await;
    }
    if !settings.enabled {
        return forward_as_is(
            &state,
            route,
            &label,
            parts,
            bytes,
            RerankStatus::Disabled,
            started,
        )
        .await;
    }
    let checked = metadata(&parts.headers).and_then(|(q, d)| {
        if let Some(q) = &q {
            query_text::check_len(q, settings.max_query_bytes)?;
        }
        crate::plan::check_directive(&settings, d.as_ref())?;
        Ok((q, d))
    });
    let (header_query, directive) = match checked {
        Ok(m) => m,
        Err(why) => {
            let resp = error_response(&Error::BadRequest(why));
            state.record(route, &label, "error", &resp, started);
            return resp;
        }
    };
    let (planned, edits) = plan_items::<M>(&request, &settings, header_query, directive.as_ref());
    if !planned
        .iter()
        .any(|p| matches!(p.decision, Decision::Rerank(_)))
    {
        let status = RerankStatus::combine(planned.iter().map(|p| match p.decision {
            Decision::Disabled => RerankStatus::Disabled,
            _ => RerankStatus::Skipped,
        }));
        return forward_as_is(&state, route, &label, parts, bytes, status, started).await;
    }
    // Only the fields we must change are rewritten, on the client's own bytes: fields
    // newer than our stubs reach Qdrant as sent.
    let patched = patch::<M>(&message, edits);
    let widened = match patched {
        Ok(w) => w,
        // prost read it, so this does not happen; if it did, Qdrant still answers.
        Err(e) => {
            tracing::warn!(error = %e, "cannot patch a gRPC search; forwarded as sent");
            return forward_as_is(
                &state,
                route,
                &label,
                parts,
                bytes,
                RerankStatus::Skipped,
                started,
            )
            .await;
        }
    };
    crate::transport::strip_rerank_headers(&mut parts.headers);
    for h in ["grpc-encoding", "content-length"] {
        parts.headers.remove(h);
    }
    // We read the answer: ask for it uncompressed.
    parts
        .headers
        .insert("grpc-accept-encoding", HeaderValue::from_static("identity"));
    let upstream = match state
        .grpc_upstream
        .call(parts, frame::encode(&widened))
        .await
    {
        Ok(u) => u,
        Err(e) => {
            let resp = error_response(&e);
            state.record(route, &label, "error", &resp, started);
            return resp;
        }
    };
    state
        .metrics
        .upstream_duration
        .with_label_values(&[route])
        .observe(upstream.elapsed.as_secs_f64());
    let grpc_status = frame::status(&upstream.headers, upstream.trailers.as_ref());
    if !upstream.status.is_success() || grpc_status != Some(0) {
        // Qdrant's error (code, message, trailers), as Qdrant sent it.
        let resp = frame::response(upstream.headers, upstream.body, upstream.trailers);
        state.record(route, &label, "error", &resp, started);
        return resp;
    }
    let rewrite = Rewrite {
        state: &state,
        collection: &collection,
        settings: &settings,
        started,
    };
    let resp = match rewrite.finish::<M>(&planned, upstream).await {
        Ok((resp, status)) => {
            state.record(route, &label, status.as_str(), &resp, started);
            resp
        }
        Err(e) => {
            let resp = error_response(&e);
            state.record(route, &label, "error", &resp, started);
            resp
        }
    };
    resp
}

async fn forward_as_is(
    state: &AppState,
    route: &str,
    label: &str,
    parts: http::request::Parts,
    bytes: Bytes,
    status: RerankStatus,
    started: Instant,
) -> Response {
    let resp = match state
        .grpc_upstream
        .forward(Request::from_parts(parts, Body::from(bytes)))
        .await
    {
        Ok(r) => marked(r, status),
        Err(e) => error_response(&e),
    };
    state.record(route, label, status.as_str(), &resp, started);
    resp
}

struct Rewrite<'a> {
    state: &'a AppState,
    collection: &'a str,
    settings: &'a crate::config::CollectionSettings,
    started: Instant,
}

fn hit_texts(
    points: &[qdrant_client::qdrant::ScoredPoint],
    field: &crate::plan::template::TextSource,
) -> Vec<Option<String>> {
    points
        .iter()
        .map(|p| convert::source_text(&p.payload, field))
        .collect()
}

/// Reorders `points` as `ranked` says, with new scores and the client's payload.
fn reorder(
    points: &mut Vec<qdrant_client::qdrant::ScoredPoint>,
    ranked: &[Ranked],
    restore: &Restore,
) {
    let mut taken: Vec<Option<_>> = std::mem::take(points).into_iter().map(Some).collect();
    for r in ranked {
        if let Some(mut p) = taken.get_mut(r.index).and_then(Option::take) {
            if let Some(s) = r.score {
                p.score = s;
            }
            convert::restore_payload(&mut p.payload, restore);
            points.push(p);
        }
    }
}

impl Rewrite<'_> {
    async fn finish<M: Method>(
        &self,
        planned: &[Planned],
        upstream: crate::transport::upstream::Buffered,
    ) -> Result<(Response, RerankStatus), Error> {
        let encoding = upstream
            .headers
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok());
        // Qdrant is trusted (and asked for identity): its answer is not bounded.
        let message = frame::decode_unary(&upstream.body, encoding, usize::MAX).ok();
        let mut answer = message
            .as_deref()
            .and_then(|m| M::Resp::decode(m).ok())
            .ok_or_else(|| Error::UpstreamInvalid("cannot decode Qdrant's gRPC answer".into()))?;
        let message = message.unwrap_or_default();
        let field = &self.settings.text_source();
        let mut answers = M::answers(&mut answer);
        if answers.len() != planned.len() {
            return Err(Error::UpstreamInvalid(format!(
                "{} answers for {} searches",
                answers.len(),
                planned.len()
            )));
        }
        let mut texts = Vec::with_capacity(planned.len());
        let mut sizes = Vec::with_capacity(planned.len());
        for (p, hits) in planned.iter().zip(answers.iter()) {
            let (t, group_sizes) = match (&p.decision, hits) {
                (Decision::Rerank(_), Hits::Points(points)) => {
                    (Some(hit_texts(points, field)), Vec::new())
                }
                (Decision::Rerank(_), Hits::Groups(groups)) => (
                    Some(
                        groups
                            .iter()
                            .flat_map(|g| hit_texts(&g.hits, field))
                            .collect(),
                    ),
                    groups.iter().map(|g| g.hits.len()).collect(),
                ),
                _ => (None, Vec::new()),
            };
            texts.push(t);
            sizes.push(group_sizes);
        }
        let decisions: Vec<&Decision> = planned.iter().map(|p| &p.decision).collect();
        let engine = &self.state.engine;
        let (outcomes, rerank_time) = engine
            .rerank_request(self.collection, self.settings, &decisions, texts)
            .await?;
        let mut orders = Vec::with_capacity(planned.len());
        let mut explained = Vec::new();
        for ((p, hits), (outcome, group_sizes)) in planned
            .iter()
            .zip(answers.iter())
            .zip(outcomes.iter().zip(&sizes))
        {
            let order = match &p.decision {
                Decision::Rerank(plan) => {
                    let (order, moved) = ranking(hits, plan, outcome, &p.restore, group_sizes);
                    engine.record_displacement(self.collection, moved);
                    order
                }
                _ => Order::Keep,
            };
            if p.explain {
                explained.push(explain_line(hits, &order, outcome));
            }
            orders.push(order);
        }
        let time = self.started.elapsed().as_secs_f64();
        // On Qdrant's bytes, so that fields newer than our stubs reach the client.
        let body = match answer::rewrite(&message, M::LAYOUT, &orders, time) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "gRPC answer rewritten from the decoded message");
                for (hits, order) in answers.iter_mut().zip(&orders) {
                    apply(hits, order);
                }
                drop(answers);
                M::set_time(&mut answer, time);
                answer.encode_to_vec()
            }
        };
        let status = RerankStatus::combine(outcomes.iter().map(|o| o.status));
        let mut headers = upstream.headers;
        for h in ["content-length", "grpc-encoding"] {
            headers.remove(h);
        }
        marker(&mut headers, &outcomes, status, rerank_time);
        if explained.iter().any(|e| !e.is_empty()) {
            if let Ok(v) = HeaderValue::from_str(&explained.join(";")) {
                headers.insert(explain::HEADER, v);
            }
        }
        let trailers = upstream.trailers;
        Ok((
            frame::response(headers, frame::encode(&body), trailers),
            status,
        ))
    }
}

/// How one search's hits are to be ordered, and the page's rank displacement when
/// scores were applied.
fn ranking<'a>(
    hits: &Hits<'_>,
    plan: &RerankPlan,
    outcome: &Outcome,
    restore: &'a Restore,
    sizes: &[usize],
) -> (Order<'a>, Option<f64>) {
    let scores = outcome.scores.as_deref();
    match (hits, plan.cut) {
        (Hits::Points(points), Cut::Page(w)) => {
            let ranked = order_page(
                scores,
                outcome.tiers.as_deref(),
                points.len(),
                plan.threshold,
                w,
            );
            let moved = scores.and(displacement(&ranked, w));
            (Order::Page(ranked, restore), moved)
        }
        (Hits::Groups(_), Cut::Groups(w)) => {
            let ranked = order_groups(scores, outcome.tiers.as_deref(), sizes, plan.threshold, w);
            (Order::Groups(ranked, restore), None)
        }
        // A page plan always meets a points answer, a groups plan a groups answer.
        _ => (Order::Keep, None),
    }
}

/// Writes one search's order into its decoded hits (when the bytes cannot be patched).
fn apply(hits: &mut Hits<'_>, order: &Order<'_>) {
    match (hits, order) {
        (Hits::Points(points), Order::Page(ranked, restore)) => reorder(points, ranked, restore),
        (Hits::Groups(groups), Order::Groups(ranked, restore)) => {
            let mut taken: Vec<Option<_>> = std::mem::take(*groups).into_iter().map(Some).collect();
            for g in ranked {
                if let Some(mut group) = taken.get_mut(g.index).and_then(Option::take) {
                    reorder(&mut group.hits, &g.hits, restore);
                    groups.push(group);
                }
            }
        }
        _ => {}
    }
}

/// Response metadata: `x-rerank-status`, `-model`, `-candidates`, `-time`, and for
/// one search its `-reason`; a batch lists each search's status in `x-rerank-statuses`.
fn marker(headers: &mut HeaderMap, outcomes: &[Outcome], status: RerankStatus, time: f64) {
    let mut set = |name: &'static str, value: String| {
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
    };
    set("x-rerank-status", status.as_str().into());
    if let Some(m) = outcomes.iter().find_map(|o| o.model.clone()) {
        set("x-rerank-model", m);
    }
    if let Some(r) = outcomes.iter().find_map(|o| o.reranker.clone()) {
        set("x-rerank-reranker", r);
    }
    set(
        "x-rerank-candidates",
        outcomes
            .iter()
            .map(|o| o.candidates)
            .sum::<usize>()
            .to_string(),
    );
    set("x-rerank-time", format!("{time:.6}"));
    if let [one] = outcomes {
        if let Some(r) = &one.reason {
            set("x-rerank-reason", r.clone());
        }
    } else {
        set(
            "x-rerank-statuses",
            outcomes
                .iter()
                .map(|o| o.status.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
}
