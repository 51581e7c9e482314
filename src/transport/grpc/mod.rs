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
use http::request::Parts;
use prost::Message;

use crate::config::CollectionSettings;
use crate::engine::Outcome;
use crate::error::Error;
use crate::plan::payload::{rewrite_all, Restore};
use crate::plan::query_text::{Picked, QuerySource};
use crate::plan::{
    decide, displacement, order_groups, order_page, Cut, Decision, Planned, Ranked, RerankPlan,
    RerankStatus, SearchInput,
};
use crate::state::AppState;
use crate::transport::headers;
use crate::transport::pipeline::{
    ask, ask_unwidened, finish, rerank, skipped_all, too_large_reason, Call, Exit, Gate, Marker,
    Options,
};
use crate::upstream::{Buffered, Protocol};
use answer::Order;
use points::{Hits, Method, SearchItem};

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

/// Every other method: straight through, frames untouched.
async fn forward(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let call = Call::start(&state, Protocol::Grpc, "grpc_forward");
    finish(&state, call, Exit::Forward(req, None)).await
}

/// A reranked method. Every step below ends in an [`Exit`], performed by [`finish`].
async fn handle<M: Method>(state: Arc<AppState>, req: Request) -> Response {
    let mut call = Call::start(&state, Protocol::Grpc, M::ROUTE);
    let exit = match search::<M>(&state, &mut call, req).await {
        Ok(exit) | Err(exit) => exit,
    };
    finish(&state, call, exit).await
}

/// read message → gate → read options → plan → ask Qdrant → rerank and cut → answer.
async fn search<M: Method>(
    state: &Arc<AppState>,
    call: &mut Call,
    req: Request,
) -> Result<Exit, Exit> {
    let read = Read::<M>::message(state, req).await?;
    let collection = M::collection(&read.request).to_string();
    call.collection(&collection);
    let settings = match Gate::of(state.collection(&collection)) {
        Gate::Off => return Err(read.forward(RerankStatus::Disabled)),
        Gate::Shadow(s) => return Err(shadow::live(state, call, collection, s, read)),
        Gate::Live(s) => s,
    };
    let options = Options::read(&read.parts.headers, Protocol::Grpc, &settings)
        .and_then(|o| crate::plan::check_directive(&settings, o.directive.as_ref()).map(|()| o))
        .map_err(Exit::bad_request)?;
    let (planned, edits) = plan_items::<M>(&read.request, &settings, &options);
    let own = (read.parts.clone(), read.bytes.clone());
    let (parts, widened) = read.widen(&planned, edits)?;
    let answer = match ask(state, call, parts, frame::encode(&widened)).await {
        Err(Error::UpstreamTooLarge(max)) => {
            return unwidened(state, call, own, planned.len(), max).await
        }
        answer => accepted(answer?)?,
    };
    let rewrite = Rewrite {
        state,
        collection: &collection,
        settings: &settings,
        started: call.started(),
    };
    let (resp, status) = rewrite.answer::<M>(&planned, answer).await?;
    Ok(Exit::Reranked(resp, status))
}

/// Qdrant's answer to the widened search was past `upstream.max_rewrite_bytes`: the
/// client gets Qdrant's answer to its own call (`own`), marked `skipped` with the
/// reason in `x-rerank-reason`; streamed as it is when that answer is past the cap too.
async fn unwidened(
    state: &AppState,
    call: &Call,
    own: (Parts, Bytes),
    searches: usize,
    max: usize,
) -> Result<Exit, Exit> {
    let (parts, bytes) = own;
    let Some(answer) = ask_unwidened(state, call, parts.clone(), bytes.clone(), max).await? else {
        return Err(as_sent(parts, bytes, RerankStatus::Skipped));
    };
    let mut answer = accepted(answer)?;
    let mark = Marker {
        status: RerankStatus::Skipped,
        model: None,
        reranker: None,
        candidates: 0,
        time: 0.0,
    };
    let reason = too_large_reason(max);
    marker(&mut answer.headers, &skipped_all(searches, &reason), &mark);
    let resp = frame::response(answer.headers, answer.body, answer.trailers);
    Ok(Exit::Reranked(resp, RerankStatus::Skipped))
}

/// Qdrant's answer, when it is one to rerank; its error (code, message, trailers)
/// goes back as Qdrant sent it.
// The `Err` side carries the request on purpose: it is what gets forwarded.
#[allow(clippy::result_large_err)]
fn accepted(answer: Buffered) -> Result<Buffered, Exit> {
    let grpc_status = frame::status(&answer.headers, answer.trailers.as_ref());
    if answer.status.is_success() && grpc_status == Some(0) {
        return Ok(answer);
    }
    let resp = frame::response(answer.headers, answer.body, answer.trailers);
    Err(Exit::Upstream(resp))
}

/// The client's call with its message read and decoded.
struct Read<M: Method> {
    parts: Parts,
    /// The body as the client sent it (one frame, maybe compressed).
    bytes: Bytes,
    /// The message, decompressed.
    message: Vec<u8>,
    request: M::Req,
}

impl<M: Method> Read<M> {
    /// Reads the unary message, up to `server.max_body_bytes` (past it: 413, or
    /// RESOURCE_EXHAUSTED when it only grows past it decompressed). A message secondpass
    /// cannot read goes to Qdrant as sent, marked `skipped`: Qdrant answers it.
    async fn message(state: &AppState, req: Request) -> Result<Read<M>, Exit> {
        let max = state.config().server.max_body_bytes;
        let (parts, body) = req.into_parts();
        let bytes = to_bytes(body, max)
            .await
            .map_err(|_| Error::PayloadTooLarge(max))?;
        let encoding = parts
            .headers
            .get("grpc-encoding")
            .and_then(|v| v.to_str().ok());
        let message = match frame::decode_unary(&bytes, encoding, max) {
            Ok(m) => m,
            Err(frame::Unreadable::TooLarge) => return Err(Error::DecompressedTooLarge(max).into()),
            Err(frame::Unreadable::NotOurs) => {
                return Err(as_sent(parts, bytes, RerankStatus::Skipped))
            }
        };
        match M::Req::decode(&message[..]) {
            Ok(request) => Ok(Read {
                parts,
                bytes,
                message,
                request,
            }),
            Err(_) => Err(as_sent(parts, bytes, RerankStatus::Skipped)),
        }
    }

    fn forward(self, status: RerankStatus) -> Exit {
        as_sent(self.parts, self.bytes, status)
    }

    /// No search of the call is reranked: Qdrant answers it as sent, with the status
    /// and, as on a reranked answer, the reason (one search) or each search's status
    /// (a batch) in the metadata.
    fn forward_unreranked(self, planned: &[Planned]) -> Exit {
        let outcomes: Vec<Outcome> = planned
            .iter()
            .map(|p| match &p.decision {
                Decision::Skip(why) => {
                    Outcome::not_applied(RerankStatus::Skipped, Some(why.clone()))
                }
                _ => Outcome::not_applied(RerankStatus::Disabled, None),
            })
            .collect();
        let status = RerankStatus::combine(outcomes.iter().map(|o| o.status));
        let mut extra = HeaderMap::new();
        not_applied(&mut extra, &outcomes);
        let req = Request::from_parts(self.parts, Body::from(self.bytes));
        Exit::ForwardWith(req, status, extra)
    }

    /// The call for Qdrant: only the fields secondpass must change are rewritten, on
    /// the client's own bytes (fields newer than our stubs reach Qdrant as sent), and
    /// the answer is asked for uncompressed: secondpass reads it. With nothing to
    /// rerank, Qdrant answers the call as sent.
    // The `Err` side carries the request on purpose: it is what gets forwarded.
    #[allow(clippy::result_large_err)]
    fn widen(
        mut self,
        planned: &[Planned],
        edits: Vec<Option<wire::Edit>>,
    ) -> Result<(Parts, Vec<u8>), Exit> {
        if !planned
            .iter()
            .any(|p| matches!(p.decision, Decision::Rerank(_)))
        {
            return Err(self.forward_unreranked(planned));
        }
        let widened = match patch::<M>(&self.message, edits) {
            Ok(w) => w,
            // prost read it, so this does not happen; if it did, Qdrant still answers.
            Err(e) => {
                tracing::warn!(error = %e, "cannot patch a gRPC search; forwarded as sent");
                return Err(self.forward(RerankStatus::Skipped));
            }
        };
        headers::strip_rerank_headers(&mut self.parts.headers);
        for h in ["grpc-encoding", "content-length"] {
            self.parts.headers.remove(h);
        }
        self.parts
            .headers
            .insert("grpc-accept-encoding", HeaderValue::from_static("identity"));
        Ok((self.parts, widened))
    }
}

/// The client's call, to Qdrant as it came.
fn as_sent(parts: Parts, bytes: Bytes, status: RerankStatus) -> Exit {
    Exit::Forward(Request::from_parts(parts, Body::from(bytes)), Some(status))
}

/// Plans every search of a request: what to do with it and, for the ones to rerank,
/// the edit that widens it on the wire (shared by the live path and shadow mode).
fn plan_items<M: Method>(
    request: &M::Req,
    settings: &CollectionSettings,
    options: &Options,
) -> (Vec<Planned>, Vec<Option<wire::Edit>>) {
    let directive = options.directive.as_ref();
    let mut planned = Vec::new();
    let mut edits = Vec::new();
    for item in M::items(request) {
        let query = Picked::resolve(options.query.clone(), item.document_text(), || {
            item.prefetch_texts()
        });
        let mut decision = decide(SearchInput {
            settings,
            query: &query,
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

/// Qdrant's answer message, decoded (Qdrant is trusted, and asked for identity: its
/// answer is not bounded), with its bytes.
fn decode_answer<M: Method>(upstream: &Buffered) -> Option<(Vec<u8>, M::Resp)> {
    let encoding = upstream
        .headers
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok());
    let message = frame::decode_unary(&upstream.body, encoding, usize::MAX).ok()?;
    let answer = M::Resp::decode(&message[..]).ok()?;
    Some((message, answer))
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

/// Reranks the candidates in Qdrant's answer and writes the client's response.
struct Rewrite<'a> {
    state: &'a AppState,
    collection: &'a str,
    settings: &'a CollectionSettings,
    started: Instant,
}

impl Rewrite<'_> {
    async fn answer<M: Method>(
        &self,
        planned: &[Planned],
        upstream: Buffered,
    ) -> Result<(Response, RerankStatus), Error> {
        let (message, mut answer) = decode_answer::<M>(&upstream)
            .ok_or_else(|| Error::UpstreamInvalid("cannot decode Qdrant's gRPC answer".into()))?;
        let mut answers = M::answers(&mut answer);
        if answers.len() != planned.len() {
            return Err(Error::UpstreamInvalid(format!(
                "{} answers for {} searches",
                answers.len(),
                planned.len()
            )));
        }
        let (texts, sizes) = candidates(planned, &answers, &self.settings.text_source());
        let (outcomes, mark) =
            rerank(self.state, self.collection, self.settings, planned, texts).await?;
        let (orders, explained) = self.orders(planned, &answers, &outcomes, &sizes);
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
        let mut headers = upstream.headers;
        for h in ["content-length", "grpc-encoding"] {
            headers.remove(h);
        }
        marker(&mut headers, &outcomes, &mark);
        query_source(&mut headers, planned);
        if explained.iter().any(|e| !e.is_empty()) {
            headers::set_text(&mut headers, headers::EXPLAIN, &explained.join(";"));
        }
        let resp = frame::response(headers, frame::encode(&body), upstream.trailers);
        Ok((resp, mark.status))
    }

    /// How each search's hits are to be ordered, and its explain line where asked for.
    fn orders<'p>(
        &self,
        planned: &'p [Planned],
        answers: &[Hits<'_>],
        outcomes: &[Outcome],
        sizes: &[Vec<usize>],
    ) -> (Vec<Order<'p>>, Vec<String>) {
        let mut orders = Vec::with_capacity(planned.len());
        let mut explained = Vec::new();
        for (i, (p, hits)) in planned.iter().zip(answers).enumerate() {
            let order = match &p.decision {
                Decision::Rerank(plan) => {
                    let (order, moved) = ranking(hits, plan, &outcomes[i], &p.restore, &sizes[i]);
                    self.state
                        .engine
                        .record_displacement(self.collection, moved);
                    order
                }
                _ => Order::Keep,
            };
            if p.explain {
                explained.push(explain_line(hits, &order, &outcomes[i]));
            }
            orders.push(order);
        }
        (orders, explained)
    }
}

/// Each search's candidate texts (`Some` where it is reranked; groups: every group's
/// hits in order) and, for groups, the hit count of each group.
#[allow(clippy::type_complexity)]
fn candidates(
    planned: &[Planned],
    answers: &[Hits<'_>],
    field: &crate::plan::template::TextSource,
) -> (Vec<Option<Vec<Option<String>>>>, Vec<Vec<usize>>) {
    let mut texts = Vec::with_capacity(planned.len());
    let mut sizes = Vec::with_capacity(planned.len());
    for (p, hits) in planned.iter().zip(answers) {
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
    (texts, sizes)
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

/// `x-rerank-query-source: prefetch` when a reranked search's query text came from its
/// prefetch (a hybrid query); a batch lists each search's source (`-`: not reranked).
fn query_source(h: &mut HeaderMap, planned: &[Planned]) {
    let sources: Vec<Option<QuerySource>> = planned
        .iter()
        .map(|p| match &p.decision {
            Decision::Rerank(plan) => Some(plan.query_source),
            _ => None,
        })
        .collect();
    if !sources.iter().flatten().any(|s| s.reported().is_some()) {
        return;
    }
    let list: Vec<&str> = sources
        .iter()
        .map(|s| s.map_or("-", QuerySource::as_str))
        .collect();
    headers::set_text(h, headers::QUERY_SOURCE, &list.join(","));
}

/// Response metadata beside `x-rerank-status`: `-model`, `-reranker`, `-candidates`,
/// `-time`, and for one search its `-reason`; a batch lists each search's status in
/// `x-rerank-statuses`.
fn marker(h: &mut HeaderMap, outcomes: &[Outcome], mark: &Marker) {
    mark.stamp(h);
    headers::set_text(h, headers::CANDIDATES, &mark.candidates.to_string());
    headers::set_text(h, headers::TIME, &format!("{:.6}", mark.time));
    not_applied(h, outcomes);
}

/// `x-rerank-reason` of one search, or `x-rerank-statuses` of a batch.
fn not_applied(h: &mut HeaderMap, outcomes: &[Outcome]) {
    if let [one] = outcomes {
        if let Some(r) = &one.reason {
            headers::set_text(h, headers::REASON, r);
        }
    } else {
        let statuses: Vec<&str> = outcomes.iter().map(|o| o.status.as_str()).collect();
        headers::set_text(h, headers::STATUSES, &statuses.join(","));
    }
}
