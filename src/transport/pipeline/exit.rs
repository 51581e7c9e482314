//! How a request ends: the [`Exit`] its steps chose, performed by [`finish`], recorded
//! once through its [`Call`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::response::Response;
use http::{HeaderValue, StatusCode};

use crate::error::{grpc_http_equivalent, Error};
use crate::metrics::Metrics;
use crate::plan::RerankStatus;
use crate::state::AppState;
use crate::transport::headers;
use crate::upstream::Protocol;

/// Background work of shadow mode, started once Qdrant answered the live request.
pub type ShadowJob = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How a request ends. Every step of a handler returns `Result<T, Exit>`; [`finish`]
/// performs the exit.
pub enum Exit {
    /// Qdrant answers the request as it stands, streamed back. `Some(status)` is
    /// stamped on Qdrant's answer as `x-rerank-status`; `None`: a route secondpass never
    /// intercepts.
    Forward(Request, Option<RerankStatus>),
    /// [`Exit::Forward`] with more to say: `headers` (gRPC: metadata such as why the
    /// search was not reranked) are added to Qdrant's answer beside the status.
    ForwardWith(Request, RerankStatus, http::HeaderMap),
    /// Qdrant refused what secondpass made of the request: the client's own request
    /// goes again, and Qdrant's answer to it back (marked `skipped` when it is a success).
    Replay(Request),
    /// Shadow mode: Qdrant answers the request untouched; the job (sampled requests
    /// only) reranks a copy in the background once Qdrant answered without error.
    Shadow(Request, Option<ShadowJob>),
    /// secondpass's own error, rendered by the transport's edge (Qdrant's JSON
    /// envelope, or a trailers-only gRPC status).
    Fail(Error),
    /// Qdrant's error answer to the rewritten request, as Qdrant sent it.
    Upstream(Response),
    /// The reranked answer and its status.
    Reranked(Response, RerankStatus),
}

impl From<Error> for Exit {
    fn from(e: Error) -> Exit {
        Exit::Fail(e)
    }
}

impl Exit {
    /// The client's mistake in secondpass's own options.
    pub fn bad_request(why: String) -> Exit {
        Exit::Fail(Error::BadRequest(why))
    }
}

/// The `grpc-status` of a gRPC answer whose status travels in trailers secondpass
/// built (a response extension: never sent), so that [`finish`] can count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcStatus(pub u32);

/// `rerank_status` of a request whose client went away before it was answered.
pub const CANCELLED: &str = "cancelled";
/// `rerank_status` of an error secondpass answered, or Qdrant's refusal of what
/// secondpass made of a request.
pub const ERROR: &str = "error";
/// `rerank_status` of a route secondpass never intercepts.
pub const NONE: &str = "none";

/// Performs `exit`, records the request once and returns the client's answer.
///
/// The label comes from this one `match`: `error` where secondpass made the error
/// answer (its own, or Qdrant unreachable) or Qdrant refused the request secondpass
/// rewrote; otherwise what secondpass did: `none` (a plain forward), `disabled` or
/// `skipped` (Qdrant answered the client's own request, whatever it said), `shadow`,
/// or the rerank status (`applied`, `failed_open`, ...). Whether the client got an
/// error shows in `secondpass_responses_total{code}`.
pub async fn finish(state: &AppState, mut call: Call, exit: Exit) -> Response {
    let upstream = state.upstream_for(call.protocol);
    let (answer, label) = match exit {
        Exit::Forward(req, mark) => (
            upstream.forward(req).await.map(|r| stamp(r, mark)),
            mark.map_or(NONE, RerankStatus::as_str),
        ),
        Exit::ForwardWith(req, status, extra) => (
            upstream.forward(req).await.map(|mut r| {
                r.headers_mut().extend(extra);
                stamp(r, Some(status))
            }),
            status.as_str(),
        ),
        Exit::Replay(req) => (
            upstream.forward(req).await.map(|r| {
                let ok = r.status().is_success();
                stamp(r, ok.then_some(RerankStatus::Skipped))
            }),
            RerankStatus::Skipped.as_str(),
        ),
        Exit::Shadow(req, job) => {
            let answer = upstream.forward(req).await;
            let answered = answer.as_ref().is_ok_and(|r| !failed(call.protocol, r));
            if let Some(job) = job.filter(|_| answered) {
                state.shadow.submit(&call.collection, job);
            }
            (answer, "shadow")
        }
        Exit::Fail(e) => (Err(e), ERROR),
        Exit::Upstream(resp) => (Ok(resp), ERROR),
        Exit::Reranked(resp, status) => (Ok(stamp(resp, Some(status))), status.as_str()),
    };
    let (resp, label) = match answer {
        Ok(resp) => (resp, label),
        Err(e) => match call.protocol {
            Protocol::Rest => (e.rest_response(call.started.elapsed().as_secs_f64()), ERROR),
            Protocol::Grpc => (e.grpc_response(), ERROR),
        },
    };
    call.record(label, Some(effective_status(call.protocol, &resp)));
    resp
}

fn stamp(mut resp: Response, status: Option<RerankStatus>) -> Response {
    if let Some(s) = status {
        resp.headers_mut()
            .insert(headers::STATUS, HeaderValue::from_static(s.as_str()));
    }
    resp
}

fn is_error(status: StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}

fn failed(protocol: Protocol, resp: &Response) -> bool {
    is_error(effective_status(protocol, resp))
}

/// The HTTP status an answer stands for: its own, or for a gRPC answer the HTTP
/// equivalent of its `grpc-status` where secondpass can see it (a trailers-only
/// answer, or trailers secondpass built; a status in trailers streamed from Qdrant
/// after a message is not seen, and counts as its HTTP status).
fn effective_status(protocol: Protocol, resp: &Response) -> StatusCode {
    let grpc = || {
        resp.extensions()
            .get::<GrpcStatus>()
            .map(|s| s.0)
            .or_else(|| {
                resp.headers()
                    .get("grpc-status")?
                    .to_str()
                    .ok()?
                    .parse()
                    .ok()
            })
    };
    match protocol {
        Protocol::Grpc if resp.status().is_success() => {
            grpc().map_or(resp.status(), grpc_http_equivalent)
        }
        _ => resp.status(),
    }
}

/// One request on its way: how it is labelled and when it started. It is recorded
/// exactly once: by [`finish`], or, when the request is dropped before (the client went
/// away), as `cancelled`.
pub struct Call {
    metrics: Arc<Metrics>,
    protocol: Protocol,
    route: &'static str,
    /// Collection label (bounded: see [`Metrics::collection_label`]).
    collection: String,
    started: Instant,
    recorded: bool,
    /// The request's span (see [`crate::transport::request_id`]), filled in only when
    /// traces are exported: the log output stays as it was.
    span: Option<tracing::Span>,
}

impl Call {
    /// A request on `route`, its collection not known yet (`_none`).
    pub fn start(state: &AppState, protocol: Protocol, route: &'static str) -> Call {
        let span = crate::telemetry::enabled().then(tracing::Span::current);
        if let Some(s) = &span {
            s.record("protocol", protocol.as_str());
            s.record("endpoint", route);
        }
        Call {
            metrics: state.metrics.clone(),
            protocol,
            route,
            collection: "_none".into(),
            started: Instant::now(),
            recorded: false,
            span,
        }
    }

    /// Names the request's collection.
    pub fn collection(&mut self, name: &str) {
        self.collection = self.metrics.collection_label(name).to_string();
        if let Some(s) = &self.span {
            s.record("collection", name);
        }
    }

    /// The collection's metric label.
    pub fn label(&self) -> &str {
        &self.collection
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub fn route(&self) -> &'static str {
        self.route
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// `status`: what the client was answered (`None`: nothing was).
    fn record(&mut self, label: &str, status: Option<StatusCode>) {
        self.recorded = true;
        if let Some(span) = &self.span {
            span.record("rerank_status", label);
            if let Some(s) = status {
                span.record("status_code", i64::from(s.as_u16()));
                if s.is_server_error() {
                    span.record("otel.status_code", "ERROR");
                }
            }
        }
        let m = &self.metrics;
        m.requests
            .with_label_values(&[self.protocol.as_str(), self.route, &self.collection, label])
            .inc();
        m.request_duration
            .with_label_values(&[self.route])
            .observe(self.started.elapsed().as_secs_f64());
        if let Some(s) = status {
            m.responses
                .with_label_values(&[Metrics::class(s.as_u16())])
                .inc();
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.recorded {
            self.record(CANCELLED, None);
        }
    }
}
