//! One row per way a request ends, REST and gRPC: the status the client gets (gRPC:
//! its `grpc-status`), `x-rerank-status`, the `rerank_status` label, the class in
//! `secondpass_responses_total`, and that the request was counted exactly once.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use http_body_util::BodyExt;
use prometheus::core::Collector;
use prometheus::IntCounterVec;

use super::{finish, Call, Exit};
use crate::error::{qdrant_error_response, Code, Error};
use crate::plan::RerankStatus;
use crate::state::test_state;
use crate::transport::grpc::frame;
use crate::transport::headers;
use crate::upstream::Protocol;

/// A purpose-built Qdrant on port 0: a few fixed answers, REST and gRPC (h2c).
async fn qdrant() -> SocketAddr {
    fn grpc(code: Code) -> Response {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from((code as u8) as u16));
        frame::response(h, frame::encode(b""), Some(t))
    }
    let app = Router::new()
        .route(
            "/ok",
            any(|| async { r#"{"result":[],"status":"ok","time":0}"# }),
        )
        .route(
            "/refused",
            any(|| async { qdrant_error_response(StatusCode::BAD_REQUEST, "refused", 0.0) }),
        )
        .route(
            "/qdrant.Points/Invalid",
            any(|| async { frame::error(Code::InvalidArgument, "no").into_response() }),
        )
        .route("/qdrant.Points/Ok", any(|| async { grpc(Code::Ok) }))
        .route("/slow", any(std::future::pending::<Response>));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn request(protocol: Protocol, path: &str) -> Request {
    let r = Request::post(path);
    let r = match protocol {
        Protocol::Rest => r.header("content-type", "application/json"),
        Protocol::Grpc => r
            .header("content-type", "application/grpc")
            .header("te", "trailers"),
    };
    r.body(Body::from(frame::encode(b""))).unwrap()
}

fn total(c: &IntCounterVec) -> u64 {
    c.collect()[0]
        .get_metric()
        .iter()
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

fn count(c: &IntCounterVec, labels: &[&str]) -> u64 {
    c.with_label_values(labels).get()
}

/// What the client got: HTTP status, or the `grpc-status` (head or trailers).
async fn answered(protocol: Protocol, resp: Response) -> (u32, Option<String>) {
    let text = |name: &str| Some(resp.headers().get(name)?.to_str().unwrap().to_string());
    // `status (reason)` where secondpass also said why.
    let marker = match (text("x-rerank-status"), text("x-rerank-reason")) {
        (Some(s), Some(r)) => Some(format!("{s} ({r})")),
        (s, _) => s,
    };
    if protocol == Protocol::Rest {
        return (resp.status().as_u16() as u32, marker);
    }
    assert_eq!(resp.status(), StatusCode::OK, "gRPC answers are HTTP 200");
    let head = resp.headers().get("grpc-status").cloned();
    let body = resp.into_body().collect().await.unwrap();
    let code = head
        .or_else(|| body.trailers()?.get("grpc-status").cloned())
        .expect("a grpc-status");
    (code.to_str().unwrap().parse().unwrap(), marker)
}

struct Row {
    protocol: Protocol,
    exit: Exit,
    /// Qdrant answers (`false`: nothing listens).
    live: bool,
    /// HTTP status (gRPC: `grpc-status`).
    status: u32,
    marker: Option<&'static str>,
    label: &'static str,
    class: &'static str,
}

const LIVE: bool = true;
const DEAD: bool = false;

fn row(
    protocol: Protocol,
    exit: Exit,
    live: bool,
    (status, marker): (u32, Option<&'static str>),
    (label, class): (&'static str, &'static str),
) -> Row {
    Row {
        protocol,
        exit,
        live,
        status,
        marker,
        label,
        class,
    }
}

fn fwd(p: Protocol, path: &str, mark: Option<RerankStatus>) -> Exit {
    Exit::Forward(request(p, path), mark)
}

/// A gRPC forward with metadata added: the rows check the metadata arrives too.
fn fwd_with(path: &str, status: RerankStatus) -> Exit {
    let mut extra = HeaderMap::new();
    extra.insert(headers::REASON, HeaderValue::from_static("why"));
    Exit::ForwardWith(request(Protocol::Grpc, path), status, extra)
}

/// A gRPC answer whose status travels in trailers.
fn grpc_answer(code: &'static str) -> Response {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static(code));
    frame::response(h, frame::encode(b""), Some(t))
}

#[rustfmt::skip]
fn rest_rows() -> Vec<Row> {
    use Protocol::Rest;
    use RerankStatus::{Applied, Disabled, FailedOpen, Skipped};
    let ok = || StatusCode::OK.into_response();
    vec![
        row(Rest, fwd(Rest, "/ok", None), LIVE, (200, None), ("none", "2xx")),
        row(Rest, fwd(Rest, "/ok", Some(Disabled)), LIVE, (200, Some("disabled")), ("disabled", "2xx")),
        // Qdrant's answer to the client's own request: labelled by what secondpass did
        row(Rest, fwd(Rest, "/refused", Some(Skipped)), LIVE, (400, Some("skipped")), ("skipped", "4xx")),
        // Qdrant unreachable: secondpass's own 502
        row(Rest, fwd(Rest, "/ok", Some(Disabled)), DEAD, (502, None), ("error", "5xx")),
        row(Rest, fwd(Rest, "/ok", None), DEAD, (502, None), ("error", "5xx")),
        row(Rest, Exit::Replay(request(Rest, "/ok")), LIVE, (200, Some("skipped")), ("skipped", "2xx")),
        row(Rest, Exit::Replay(request(Rest, "/refused")), LIVE, (400, None), ("skipped", "4xx")),
        row(Rest, Exit::Replay(request(Rest, "/ok")), DEAD, (502, None), ("error", "5xx")),
        row(Rest, Exit::Shadow(request(Rest, "/ok"), None), LIVE, (200, None), ("shadow", "2xx")),
        row(Rest, Exit::Shadow(request(Rest, "/refused"), None), LIVE, (400, None), ("shadow", "4xx")),
        row(Rest, Exit::Shadow(request(Rest, "/ok"), None), DEAD, (502, None), ("error", "5xx")),
        row(Rest, Exit::bad_request("bad".into()), LIVE, (400, None), ("error", "4xx")),
        row(Rest, Error::PayloadTooLarge(1).into(), LIVE, (413, None), ("error", "4xx")),
        row(Rest, Error::UpstreamTimeout(5).into(), LIVE, (504, None), ("error", "5xx")),
        row(Rest, Exit::Upstream(StatusCode::NOT_FOUND.into_response()), LIVE, (404, None), ("error", "4xx")),
        row(Rest, Exit::Reranked(ok(), Applied), LIVE, (200, Some("applied")), ("applied", "2xx")),
        row(Rest, Exit::Reranked(ok(), FailedOpen), LIVE, (200, Some("failed_open")), ("failed_open", "2xx")),
    ]
}

/// gRPC errors are HTTP 200 with a `grpc-status`, counted by that status.
#[rustfmt::skip]
fn grpc_rows() -> Vec<Row> {
    use Protocol::Grpc;
    use RerankStatus::{Applied, Disabled, Skipped};
    const OK: &str = "/qdrant.Points/Ok";
    const INVALID: &str = "/qdrant.Points/Invalid";
    vec![
        row(Grpc, fwd(Grpc, OK, None), LIVE, (0, None), ("none", "2xx")),
        row(Grpc, fwd(Grpc, OK, Some(Skipped)), LIVE, (0, Some("skipped")), ("skipped", "2xx")),
        row(Grpc, fwd_with(OK, Skipped), LIVE, (0, Some("skipped (why)")), ("skipped", "2xx")),
        row(Grpc, fwd_with(INVALID, Disabled), LIVE, (3, Some("disabled (why)")), ("disabled", "4xx")),
        row(Grpc, fwd(Grpc, INVALID, Some(Disabled)), LIVE, (3, Some("disabled")), ("disabled", "4xx")),
        row(Grpc, fwd(Grpc, OK, Some(Disabled)), DEAD, (14, None), ("error", "5xx")),
        row(Grpc, Exit::Shadow(request(Grpc, OK), None), LIVE, (0, None), ("shadow", "2xx")),
        row(Grpc, Exit::Shadow(request(Grpc, INVALID), None), LIVE, (3, None), ("shadow", "4xx")),
        row(Grpc, Exit::bad_request("bad".into()), LIVE, (3, None), ("error", "4xx")),
        row(Grpc, Error::PayloadTooLarge(1).into(), LIVE, (8, None), ("error", "4xx")),
        row(Grpc, Error::UpstreamTimeout(5).into(), LIVE, (4, None), ("error", "5xx")),
        row(Grpc, Error::UpstreamInvalid("x".into()).into(), LIVE, (13, None), ("error", "5xx")),
        row(Grpc, Exit::Upstream(grpc_answer("5")), LIVE, (5, None), ("error", "4xx")),
        row(Grpc, Exit::Reranked(grpc_answer("0"), Applied), LIVE, (0, Some("applied")), ("applied", "2xx")),
    ]
}

#[tokio::test]
async fn every_exit_answers_marks_and_counts_once() {
    let addr = qdrant().await.to_string();
    let live = test_state(&addr, "");
    let dead = test_state("127.0.0.1:1", "");
    for (i, r) in rest_rows().into_iter().chain(grpc_rows()).enumerate() {
        let state = if r.live { &live } else { &dead };
        let m = &state.metrics;
        let labels = [r.protocol.as_str(), "search", "docs", r.label];
        let (before, all, class) = (
            count(&m.requests, &labels),
            total(&m.requests),
            count(&m.responses, &[r.class]),
        );
        let mut call = Call::start(state, r.protocol, "search");
        call.collection("docs");
        let resp = finish(state, call, r.exit).await;
        let (status, marker) = answered(r.protocol, resp).await;
        assert_eq!(status, r.status, "row {i}: status");
        assert_eq!(marker.as_deref(), r.marker, "row {i}: x-rerank-status");
        assert_eq!(
            count(&m.requests, &labels),
            before + 1,
            "row {i}: label {}",
            r.label
        );
        assert_eq!(total(&m.requests), all + 1, "row {i}: counted once");
        assert_eq!(count(&m.responses, &[r.class]), class + 1, "row {i}: class");
    }
}

#[tokio::test]
async fn a_request_dropped_before_its_answer_counts_as_cancelled() {
    let addr = qdrant().await.to_string();
    let state = test_state(&addr, "");
    let m = &state.metrics;
    let cancelled = ["rest", "search", "docs", "cancelled"];
    let (all, answered) = (total(&m.requests), total(&m.responses));
    let mut call = Call::start(&state, Protocol::Rest, "search");
    call.collection("docs");
    let slow = finish(
        &state,
        call,
        Exit::Forward(request(Protocol::Rest, "/slow"), None),
    );
    // The client goes away while Qdrant thinks: hyper drops the handler's future.
    assert!(tokio::time::timeout(Duration::from_millis(200), slow)
        .await
        .is_err());
    assert_eq!(count(&m.requests, &cancelled), 1);
    assert_eq!(total(&m.requests), all + 1, "counted once");
    assert_eq!(total(&m.responses), answered, "no answer was sent");
    // A step that gives up before `finish` (the call dropped with it) counts the same.
    drop(Call::start(&state, Protocol::Rest, "search"));
    assert_eq!(
        count(&m.requests, &["rest", "search", "_none", "cancelled"]),
        1
    );
}
