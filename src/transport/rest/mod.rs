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
use http::request::Parts;
use serde_json::{json, Value};

use crate::error::Error;
use crate::plan::{Decision, RerankStatus};
use crate::state::AppState;
use crate::transport::headers;
use crate::transport::pipeline::{
    ask, ask_unwidened, finish, rerank, skipped_all, too_large_reason, Call, Exit, Gate, Options,
};
use crate::upstream::{Buffered, Protocol};
use body::{apply, candidates, marker, prepare, Endpoint, PrepareError, Prepared};
use encoding::{BodyCoding, Coding};

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
    let gate = axum::middleware::from_fn_with_state(state.clone(), rerank_api_gate);
    router = router.merge(crate::transport::rerank_api::routes().route_layer(gate));
    router
        .fallback(forward)
        .layer(axum::middleware::from_fn(
            crate::transport::request_id::layer,
        ))
        .with_state(state)
}

/// Everything that is not an intercepted search: straight through.
async fn forward(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let call = Call::start(&state, Protocol::Rest, "forward");
    finish(&state, call, Exit::Forward(req, None)).await
}

/// The rerank API's paths are secondpass's while `rerank_api.enabled` is on, read per
/// call so that a reload turns the API on or off; otherwise they are Qdrant's.
async fn rerank_api_gate(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    if state.config().rerank_api.enabled {
        next.run(req).await
    } else {
        forward(State(state), req).await
    }
}

/// An intercepted search. Every step below ends in an [`Exit`], performed by
/// [`finish`].
async fn handle(state: Arc<AppState>, ep: Endpoint, collection: String, req: Request) -> Response {
    let mut call = Call::start(&state, Protocol::Rest, ep.route());
    call.collection(&collection);
    let exit = match search(&state, &call, ep, &collection, req).await {
        Ok(exit) | Err(exit) => exit,
    };
    finish(&state, call, exit).await
}

/// gate → read options → read body → plan → ask Qdrant → rerank and cut → answer.
async fn search(
    state: &Arc<AppState>,
    call: &Call,
    ep: Endpoint,
    collection: &str,
    req: Request,
) -> Result<Exit, Exit> {
    let settings = match Gate::of(state.collection(collection)) {
        Gate::Off => return Err(Exit::Forward(req, Some(RerankStatus::Disabled))),
        Gate::Shadow(s) => return shadow::live(state, call, ep, collection, s, req).await,
        Gate::Live(s) => s,
    };
    let options =
        Options::read(req.headers(), Protocol::Rest, &settings).map_err(Exit::bad_request)?;
    let read = Read::body(state, req).await?;
    let sent = read.plan(ep, &settings, &options)?.outgoing();
    let answer = match ask(state, call, sent.parts, sent.body).await {
        Err(Error::UpstreamTooLarge(max)) => {
            let searches = sent.prepared.searches.len();
            return unwidened(state, call, ep, sent.own, sent.coding, searches, max).await;
        }
        answer => answer?,
    };
    let replay = sent
        .differs
        .then(|| Request::from_parts(sent.own.0, Body::from(sent.own.1)));
    let answer = accepted(answer, replay, sent.coding)?;
    let rewrite = Rewrite {
        state,
        ep,
        collection,
        settings: &settings,
        started: call.started(),
        coding: sent.coding,
    };
    let (resp, status) = rewrite.answer(&sent.prepared, answer).await?;
    Ok(Exit::Reranked(resp, status))
}

/// The client's request with its body read (and decoded): what goes to Qdrant when
/// secondpass leaves the request alone.
struct Read {
    parts: Parts,
    bytes: Bytes,
}

impl Read {
    /// Reads the body, up to `server.max_body_bytes` (past it: 413). A body secondpass
    /// does not read goes to Qdrant exactly as sent, marked `skipped`: a coding it does
    /// not know, a `content-length` past the limit, a compressed body that is corrupt
    /// or past the limit once decoded (Qdrant answers in its own words, and secondpass
    /// never holds more than the limit).
    async fn body(state: &AppState, req: Request) -> Result<Read, Exit> {
        let max = state.config().server.max_body_bytes;
        let (mut parts, body) = req.into_parts();
        let coding = encoding::request_coding(&parts.headers);
        let too_big = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .is_some_and(|n| n > max);
        if coding == BodyCoding::Other || too_big {
            let req = Request::from_parts(parts, body);
            return Err(Exit::Forward(req, Some(RerankStatus::Skipped)));
        }
        let bytes = to_bytes(body, max)
            .await
            .map_err(|_| Error::PayloadTooLarge(max))?;
        let BodyCoding::Known(c) = coding else {
            return Ok(Read { parts, bytes });
        };
        match encoding::decode(c, &bytes, max) {
            Ok(plain) => {
                // Qdrant gets the plain body (it reads either).
                parts.headers.remove(header::CONTENT_ENCODING);
                parts.headers.remove(header::CONTENT_LENGTH);
                Ok(Read {
                    parts,
                    bytes: Bytes::from(plain),
                })
            }
            Err(_) => Err(Read { parts, bytes }.forward(RerankStatus::Skipped)),
        }
    }

    fn forward(self, status: RerankStatus) -> Exit {
        let req = Request::from_parts(self.parts, Body::from(self.bytes));
        Exit::Forward(req, Some(status))
    }

    /// Plans every search of the body. Malformed JSON or a body in a shape secondpass
    /// does not know goes to Qdrant as sent (Qdrant's own error message is the right
    /// answer); a body with nothing to rerank goes without its `rerank` objects, and
    /// Qdrant's answer back byte for byte.
    // The `Err` side carries the request on purpose: it is what gets forwarded.
    #[allow(clippy::result_large_err)]
    fn plan(
        mut self,
        ep: Endpoint,
        settings: &crate::config::CollectionSettings,
        options: &Options,
    ) -> Result<Search, Exit> {
        let prepared = match serde_json::from_slice::<Value>(&self.bytes) {
            Err(_) => Err(PrepareError::NotOurs),
            Ok(v) => prepare(
                v,
                ep,
                settings,
                options.query.as_deref(),
                options.directive.as_ref(),
            ),
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(PrepareError::NotOurs) => return Err(self.forward(RerankStatus::Skipped)),
            Err(PrepareError::BadRequest(why)) => return Err(Exit::bad_request(why)),
        };
        headers::strip_rerank_headers(&mut self.parts.headers);
        self.parts.headers.remove(header::CONTENT_LENGTH);
        let all_disabled = prepared
            .searches
            .iter()
            .all(|s| s.decision == Decision::Disabled);
        if all_disabled {
            if prepared.changed {
                self.bytes =
                    Bytes::from(serde_json::to_vec(&prepared.body).expect("json serializes"));
            }
            return Err(self.forward(RerankStatus::Disabled));
        }
        Ok(Search {
            read: self,
            prepared,
        })
    }
}

/// A search with something to rerank.
struct Search {
    read: Read,
    prepared: Prepared,
}

/// What goes to Qdrant for a search secondpass rewrites, and what it keeps to answer.
struct Outgoing {
    parts: Parts,
    body: Bytes,
    /// The client's own request (less `rerank` headers), to send again should Qdrant
    /// refuse what secondpass made of it, or answer it past `upstream.max_rewrite_bytes`.
    own: (Parts, Bytes),
    /// Whether `body` differs from the client's (else a refusal is Qdrant's answer to
    /// the client's request already).
    differs: bool,
    /// How the client wants the answer compressed.
    coding: Option<Coding>,
    prepared: Prepared,
}

impl Search {
    /// The widened body (when nothing was widened, every search skipped: the client's,
    /// less any `rerank` objects), asking for an uncompressed answer: secondpass reads
    /// and rewrites it, and compresses it for the client as Qdrant would have.
    fn outgoing(self) -> Outgoing {
        let Search {
            read: Read { mut parts, bytes },
            mut prepared,
        } = self;
        let differs = prepared.widened || prepared.unwidened.is_some();
        // Searches do not change data, and Qdrant ignores the unknown top-level
        // `rerank` field: sending the client's bytes again is safe.
        let own = (parts.clone(), bytes.clone());
        let coding = encoding::negotiate(&parts.headers);
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let body = if prepared.widened {
            Bytes::from(serde_json::to_vec(&prepared.body).expect("json serializes"))
        } else {
            prepared.unwidened.take().map_or(bytes, Bytes::from)
        };
        Outgoing {
            parts,
            body,
            own,
            differs,
            coding,
            prepared,
        }
    }
}

/// Qdrant's answer to the widened search was past `upstream.max_rewrite_bytes`: the
/// client gets Qdrant's answer to its own request (`own`), marked `skipped` with the
/// reason in the `rerank` object; streamed as it is (marked by its header only) when
/// that answer is past the cap too.
async fn unwidened(
    state: &AppState,
    call: &Call,
    ep: Endpoint,
    own: (Parts, Bytes),
    coding: Option<Coding>,
    searches: usize,
    max: usize,
) -> Result<Exit, Exit> {
    let (parts, bytes) = own;
    let mut plain = parts.clone();
    plain.headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    let Some(answer) = ask_unwidened(state, call, plain, bytes.clone(), max).await? else {
        let req = Request::from_parts(parts, Body::from(bytes));
        return Ok(Exit::Forward(req, Some(RerankStatus::Skipped)));
    };
    if !answer.status.is_success() {
        return Err(Exit::Upstream(qdrant_error(answer, coding)));
    }
    let mut json = decode_json(&answer.headers, &answer.body)?;
    if let Some(obj) = json.as_object_mut() {
        let m = marker(&skipped_all(searches, &too_large_reason(max)), ep, 0.0);
        obj.insert("rerank".into(), m);
    }
    let resp = json_response(answer.headers, &json, coding);
    Ok(Exit::Reranked(resp, RerankStatus::Skipped))
}

/// A JSON answer for the client, compressed as it asked.
fn json_response(mut headers: HeaderMap, answer: &Value, coding: Option<Coding>) -> Response {
    let body = serde_json::to_vec(answer).expect("json serializes");
    let body = encoding::finish(&mut headers, body, coding);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut resp = (StatusCode::OK, body).into_response();
    *resp.headers_mut() = headers;
    resp
}

/// Qdrant's answer, when it is one to rerank. Should Qdrant refuse what secondpass
/// made of the request (a value it rejects, a format error whose column moved), the
/// client's own request goes again, so that the client gets Qdrant's own answer to it;
/// any other error goes back as Qdrant said it.
// The `Err` side carries the request on purpose: it is what gets forwarded.
#[allow(clippy::result_large_err)]
fn accepted(
    answer: Buffered,
    replay: Option<Request>,
    coding: Option<Coding>,
) -> Result<Buffered, Exit> {
    match replay {
        Some(replay) if refused(answer.status) => Err(Exit::Replay(replay)),
        _ if !answer.status.is_success() => Err(Exit::Upstream(qdrant_error(answer, coding))),
        _ => Ok(answer),
    }
}

/// Qdrant answers that widening may have caused: a value or format it rejects (400,
/// 422), a body grown past its limit (413), and 500 (Qdrant's answer to some invalid
/// values). Not what the client's own request would get as well: authentication (401,
/// 403), a timeout (408), a rate limit (429, with its `Retry-After`), a missing
/// collection (404), a method it lacks (405), overload and restarts (502/503/504), a
/// full disk (507). Those go back as Qdrant said them; sending them again would only
/// double the load Qdrant just refused.
pub fn refused(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNPROCESSABLE_ENTITY
            | StatusCode::INTERNAL_SERVER_ERROR
    )
}

/// Qdrant's error, as Qdrant said it (compressed for the client as it asked, unless
/// Qdrant compressed it already).
fn qdrant_error(answer: Buffered, coding: Option<Coding>) -> Response {
    let mut headers = answer.headers;
    let body = if headers.contains_key(header::CONTENT_ENCODING) {
        answer.body.to_vec()
    } else {
        encoding::finish(&mut headers, answer.body.to_vec(), coding)
    };
    let mut resp = (answer.status, body).into_response();
    *resp.headers_mut() = headers;
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
    async fn answer(
        &self,
        prepared: &Prepared,
        upstream: Buffered,
    ) -> Result<(Response, RerankStatus), Error> {
        let mut answer = decode_json(&upstream.headers, &upstream.body)?;
        let result = answer
            .get_mut("result")
            .ok_or_else(|| Error::UpstreamInvalid("no `result` in Qdrant's answer".into()))?;
        let (texts, group_sizes) = self.candidates(prepared, result)?;
        let (outcomes, mark) = rerank(
            self.state,
            self.collection,
            self.settings,
            &prepared.searches,
            texts,
        )
        .await?;
        let explained = self.reorder(prepared, result, &outcomes, &group_sizes);
        if let Some(obj) = answer.as_object_mut() {
            obj.insert("time".into(), json!(self.started.elapsed().as_secs_f64()));
            let mut m = marker(&outcomes, self.ep, mark.time);
            add_explain(&mut m, self.ep, explained);
            add_query_source(&mut m, self.ep, &prepared.searches);
            obj.insert("rerank".into(), m);
        }
        let mut headers = upstream.headers;
        mark.stamp(&mut headers);
        Ok((json_response(headers, &answer, self.coding), mark.status))
    }

    /// Each search's candidate texts (`Some` where it is reranked) and, for groups,
    /// the hit count of each group.
    #[allow(clippy::type_complexity)]
    fn candidates(
        &self,
        prepared: &Prepared,
        result: &mut Value,
    ) -> Result<(Vec<Option<Vec<Option<String>>>>, Vec<Vec<usize>>), Error> {
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
        Ok((texts, group_sizes))
    }

    /// Writes each reranked search's order into the answer; returns each search's
    /// explain entries, where asked for.
    fn reorder(
        &self,
        prepared: &Prepared,
        result: &mut Value,
        outcomes: &[crate::engine::Outcome],
        group_sizes: &[Vec<usize>],
    ) -> Vec<Option<Value>> {
        let mut explained = vec![None; outcomes.len()];
        for (i, (planned, outcome)) in prepared.searches.iter().zip(outcomes).enumerate() {
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
                self.state
                    .engine
                    .record_displacement(self.collection, moved);
                explained[i] = before.map(|b| explain::entries(result, self.ep, i, &b, outcome));
            }
        }
        explained
    }
}

/// Puts explain entries into the `rerank` object: `explain` for one search, each
/// search's `explain` under `searches` for a batch.
fn add_explain(marker: &mut Value, ep: Endpoint, explained: Vec<Option<Value>>) {
    for (i, e) in explained.into_iter().enumerate() {
        if let Some(e) = e {
            insert_for(marker, ep, i, "explain", e);
        }
    }
}

/// `query_source: "prefetch"` for each reranked search whose query text came from its
/// prefetch (a hybrid query), so that the client sees which text was used.
fn add_query_source(marker: &mut Value, ep: Endpoint, searches: &[crate::plan::Planned]) {
    for (i, planned) in searches.iter().enumerate() {
        if let Decision::Rerank(plan) = &planned.decision {
            if let Some(source) = plan.query_source.reported() {
                insert_for(marker, ep, i, "query_source", json!(source));
            }
        }
    }
}

/// Sets `key` in search `i`'s part of the `rerank` object (the object itself for one
/// search, its entry under `searches` for a batch).
fn insert_for(marker: &mut Value, ep: Endpoint, i: usize, key: &str, value: Value) {
    let target = if ep.is_batch() {
        marker.get_mut("searches").and_then(|s| s.get_mut(i))
    } else {
        Some(&mut *marker)
    };
    if let Some(Value::Object(o)) = target {
        o.insert(key.into(), value);
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
