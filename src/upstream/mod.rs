//! The client side toward Qdrant (REST and gRPC): streaming pass-through, buffered
//! calls for the answers secondpass rewrites, deadlines, and Qdrant's early answers.
//! Below the transports: it knows nothing of how clients reach secondpass.

pub mod early_answer;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tracing::Instrument;

use crate::config::UpstreamConfig;
use crate::error::{grpc_status_headers as status_headers, Code, Error};
use crate::http_client::{self, describe, Versions};
use crate::metrics::Metrics;
use early_answer::EarlyAnswer;
use std::future::Future;

type Connector = EarlyAnswer<HttpsConnector<HttpConnector>>;

/// Headers that describe one connection, not the message: never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

/// Which of Qdrant's APIs: the protocol of an upstream, and of the listener a request
/// came in on (each listener speaks to its twin upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Qdrant's REST API: HTTP/1.1 (or HTTP/2 over TLS when offered).
    Rest,
    /// Qdrant's gRPC API: HTTP/2 only (h2c over http://).
    Grpc,
}

impl Protocol {
    /// Metric label (`transport`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rest => "rest",
            Protocol::Grpc => "grpc",
        }
    }
}

#[derive(Clone)]
pub struct Upstream {
    client: Client<Connector, Body>,
    protocol: Protocol,
    /// `scheme://authority` plus any path prefix, without a trailing slash.
    base: String,
    timeout: Duration,
    snapshot_timeout: Duration,
    /// Largest answer [`Upstream::call`] buffers (`upstream.max_rewrite_bytes`).
    max_buffered: usize,
    metrics: std::sync::Arc<Metrics>,
}

/// A buffered upstream answer.
pub struct Buffered {
    pub status: http::StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// HTTP trailers (gRPC's `grpc-status` lives here).
    pub trailers: Option<HeaderMap>,
    pub elapsed: Duration,
}

impl Upstream {
    /// A client for Qdrant's REST (`cfg.url`) or gRPC (`cfg.grpc_url`) endpoint.
    pub fn new(
        cfg: &UpstreamConfig,
        protocol: Protocol,
        metrics: std::sync::Arc<Metrics>,
    ) -> Result<Upstream, Error> {
        let versions = match protocol {
            Protocol::Rest => Versions::Any,
            Protocol::Grpc => Versions::Http2Only,
        };
        let connector = http_client::https_connector(
            Duration::from_millis(cfg.connect_timeout_ms),
            cfg.ca_file.as_deref(),
            versions,
        )
        .map_err(Error::Internal)?;
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_millis(cfg.pool_idle_timeout_ms))
            // Pings find a dead HTTP/2 connection to Qdrant so it is replaced, not
            // reused; idle ones too, since one connection carries every gRPC call.
            .http2_keep_alive_interval(Duration::from_secs(10))
            .http2_keep_alive_timeout(Duration::from_secs(5))
            .http2_keep_alive_while_idle(true)
            // Qdrant is trusted: cancelled calls (clients that give up) must not add up
            // to h2's "too many internal resets" GOAWAY on the one shared connection.
            .http2_max_local_error_reset_streams(None)
            .http2_only(versions == Versions::Http2Only);
        let client = builder.build(EarlyAnswer(connector));
        let url = match protocol {
            Protocol::Rest => &cfg.url,
            Protocol::Grpc => &cfg.grpc_url,
        };
        Ok(Upstream {
            client,
            protocol,
            base: url.trim_end_matches('/').to_string(),
            timeout: Duration::from_millis(cfg.timeout_ms),
            snapshot_timeout: Duration::from_millis(cfg.snapshot_timeout_ms),
            max_buffered: cfg.max_rewrite_bytes,
            metrics,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn uri(&self, path_and_query: &str) -> Result<Uri, Error> {
        format!("{}{}", self.base, path_and_query)
            .parse()
            .map_err(|e| Error::Internal(format!("cannot build upstream URI: {e}")))
    }

    /// Sends `req` to Qdrant unchanged (but for hop-by-hop headers and `Host`) and
    /// streams the answer back. The whole exchange, the answer's body included, ends
    /// by the deadline (see [`Upstream::deadline`]): a body still streaming then is cut
    /// (gRPC: ended with DEADLINE_EXCEEDED).
    pub async fn forward(&self, mut req: Request<Body>) -> Result<Response<Body>, Error> {
        let span = self.span(req.method(), req.uri());
        crate::telemetry::inject_unless_the_client_sent_one(&span, req.headers_mut());
        self.forward_head(req)
            .instrument(span.clone())
            .await
            .inspect(|r| {
                span.record("status_code", i64::from(r.status().as_u16()));
            })
    }

    /// The span of one call to Qdrant: until the answer's head arrives (forwarded
    /// answers stream on after it), or its whole body (answers secondpass rewrites).
    fn span(&self, method: &Method, uri: &Uri) -> tracing::Span {
        crate::telemetry::span!(
            "qdrant",
            otel.kind = "client",
            protocol = self.protocol.as_str(),
            method = %method,
            path = uri.path(),
            status_code = tracing::field::Empty,
        )
    }

    async fn forward_head(&self, req: Request<Body>) -> Result<Response<Body>, Error> {
        let (mut parts, body) = req.into_parts();
        let (deadline, budget) = self.aim(&mut parts)?;
        // A request without a body can be sent again when a pooled connection turns out
        // to be closing; one with a streamed body cannot.
        let replay = (matches!(parts.method, Method::GET | Method::HEAD)).then(|| parts.clone());
        let resp = match self
            .send(Request::from_parts(parts, body), deadline, budget)
            .await
        {
            Err(e) if e.closed_early => match replay {
                Some(parts) => {
                    self.send(Request::from_parts(parts, Body::empty()), deadline, budget)
                        .await
                }
                None => Err(e),
            },
            other => other,
        }
        .map_err(|e| e.error)?;
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = Deadline {
            inner: body,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            protocol: self.protocol,
            budget,
            metrics: self.metrics.clone(),
            done: false,
        };
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// Sends a request with a buffered body and reads the whole answer (for responses
    /// we rewrite), up to `upstream.max_rewrite_bytes` ([`Error::UpstreamTooLarge`] past
    /// it, counted as `too_large`). Read-only searches, so one that met a pooled
    /// connection Qdrant was closing is sent once more.
    pub async fn call(
        &self,
        mut parts: http::request::Parts,
        body: Bytes,
    ) -> Result<Buffered, Error> {
        let span = self.span(&parts.method, &parts.uri);
        crate::telemetry::inject_unless_the_client_sent_one(&span, &mut parts.headers);
        self.call_whole(parts, body)
            .instrument(span.clone())
            .await
            .inspect(|b| {
                span.record("status_code", i64::from(b.status.as_u16()));
            })
    }

    async fn call_whole(
        &self,
        mut parts: http::request::Parts,
        body: Bytes,
    ) -> Result<Buffered, Error> {
        let started = Instant::now();
        let (deadline, budget) = self.aim(&mut parts)?;
        let again = parts.clone();
        let resp = match self
            .send(
                Request::from_parts(parts, Body::from(body.clone())),
                deadline,
                budget,
            )
            .await
        {
            Err(e) if e.closed_early => {
                self.send(
                    Request::from_parts(again, Body::from(body)),
                    deadline,
                    budget,
                )
                .await
            }
            other => other,
        }
        .map_err(|e| e.error)?;
        let (mut parts, body) = resp.into_parts();
        let collected = tokio::time::timeout_at(deadline, self.collect(&parts.headers, body))
            .await
            .map_err(|_| {
                self.count_error("timeout");
                Error::UpstreamTimeout(budget.as_millis() as u64)
            })??;
        let trailers = collected.trailers().cloned();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Buffered {
            status: parts.status,
            headers: parts.headers,
            body: collected.to_bytes(),
            trailers,
            elapsed: started.elapsed(),
        })
    }

    /// Reads a whole answer body of at most `max_buffered` bytes: one announced larger
    /// is not read at all, one that grows past it is dropped mid-way.
    async fn collect(
        &self,
        headers: &HeaderMap,
        body: hyper::body::Incoming,
    ) -> Result<http_body_util::Collected<Bytes>, Error> {
        let max = self.max_buffered;
        let announced = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let too_large = || {
            self.count_error("too_large");
            Error::UpstreamTooLarge(max)
        };
        if announced.is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        http_body_util::Limited::new(body, max)
            .collect()
            .await
            .map_err(
                |e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                    Some(_) => too_large(),
                    None => Error::UpstreamUnreachable(format!("reading the response: {e}")),
                },
            )
    }

    /// Points a request at Qdrant: the same path and query on this upstream, without
    /// connection-level headers. Returns when the exchange must be over, and its budget.
    fn aim(
        &self,
        parts: &mut http::request::Parts,
    ) -> Result<(tokio::time::Instant, Duration), Error> {
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        let (deadline, budget) = self.deadline(parts.uri.path(), &parts.headers);
        parts.uri = self.uri(&pq)?;
        self.prepare_headers(&mut parts.headers);
        // The client's HTTP version is its own connection's, not Qdrant's: an HTTP/2
        // client's request on the HTTP/1.1 connection to a plain-HTTP Qdrant would be
        // refused (`UserUnsupportedVersion`). Over TLS, ALPN still picks HTTP/2 when
        // Qdrant offers it; gRPC is HTTP/2 only.
        parts.version = match self.protocol {
            Protocol::Rest => http::Version::HTTP_11,
            Protocol::Grpc => http::Version::HTTP_2,
        };
        Ok((deadline, budget))
    }

    /// When the exchange must be over: `timeout_ms` (snapshot transfers:
    /// `snapshot_timeout_ms`), or a gRPC client's shorter `grpc-timeout`. `path` is
    /// the request's path, without its query.
    fn deadline(&self, path: &str, headers: &HeaderMap) -> (tokio::time::Instant, Duration) {
        let base = if is_snapshot(path) {
            self.snapshot_timeout
        } else {
            self.timeout
        };
        let budget = budget(base, self.protocol, headers);
        (crate::deadline::tokio_in(budget), budget)
    }

    fn count_error(&self, kind: &str) {
        self.metrics
            .upstream_errors
            .with_label_values(&[kind])
            .inc();
    }

    /// Connection-level headers go; gRPC keeps `te: trailers`, which it requires.
    fn prepare_headers(&self, headers: &mut HeaderMap) {
        let te = headers.get(header::TE).cloned();
        strip_hop_by_hop(headers);
        headers.remove(header::HOST);
        if self.protocol == Protocol::Grpc {
            if let Some(te) = te.filter(|v| v.as_bytes() == b"trailers") {
                headers.insert(header::TE, te);
            }
        }
    }

    async fn send(
        &self,
        req: Request<Body>,
        deadline: tokio::time::Instant,
        budget: Duration,
    ) -> Result<Response<hyper::body::Incoming>, SendError> {
        let mut req = req;
        let connection = may_leave_body_unread(self.protocol, &req)
            .then(|| hyper_util::client::legacy::connect::capture_connection(&mut req));
        match tokio::time::timeout_at(deadline, self.client.request(req)).await {
            Err(_) => {
                self.count_error("timeout");
                Err(SendError {
                    error: Error::UpstreamTimeout(budget.as_millis() as u64),
                    closed_early: false,
                })
            }
            Ok(Err(e)) => {
                self.count_error(if e.is_connect() { "connect" } else { "other" });
                Err(SendError {
                    closed_early: closed_before_answer(&e),
                    error: Error::UpstreamUnreachable(describe(&e)),
                })
            }
            Ok(Ok(resp)) => {
                self.metrics
                    .upstream_responses
                    .with_label_values(&[Metrics::class(resp.status().as_u16())])
                    .inc();
                // Qdrant refuses some requests (an unknown path: 404) without reading
                // their body, then closes the connection without saying so; the next
                // request to pick it from the pool would fail as a 502. Not reused.
                if let Some(c) = connection.filter(|_| resp.status().as_u16() >= 400) {
                    if let Some(meta) = c.connection_metadata().as_ref() {
                        meta.poison();
                    }
                }
                Ok(resp)
            }
        }
    }

    /// Whether Qdrant answers at all (any HTTP status counts).
    pub async fn probe(&self) -> bool {
        let path = match self.protocol {
            Protocol::Rest => "/readyz",
            Protocol::Grpc => "/qdrant.Qdrant/HealthCheck",
        };
        let Ok(uri) = self.uri(path) else {
            return false;
        };
        let req = Request::get(uri)
            .body(Body::empty())
            .expect("static request");
        let probe = self.client.request(req);
        matches!(
            tokio::time::timeout(self.timeout.min(Duration::from_secs(2)), probe).await,
            Ok(Ok(_))
        )
    }
}

struct SendError {
    error: Error,
    /// The connection closed before any of the answer arrived (a pooled connection
    /// Qdrant was closing): safe to send a replayable request again.
    closed_early: bool,
}

/// A REST request with a body (HTTP/1: the connection is reused only if Qdrant read
/// the whole body). gRPC is HTTP/2, where a refused stream leaves the connection sound.
fn may_leave_body_unread(protocol: Protocol, req: &Request<Body>) -> bool {
    use http_body::Body as _;
    protocol == Protocol::Rest && req.body().size_hint().exact() != Some(0)
}

fn closed_before_answer(e: &hyper_util::client::legacy::Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            return h.is_incomplete_message() || h.is_canceled();
        }
        src = s.source();
    }
    false
}

/// Whether `path` (no query string) is one of Qdrant's snapshot calls, which move
/// whole collections and get the long budget: REST `/snapshots/...`,
/// `/collections/{name}/snapshots/...` and `/collections/{name}/shards/{id}/snapshots/...`,
/// and gRPC's `/qdrant.Snapshots/...`. Matched by segment, so that a collection
/// named `snapshots` (or `snapshots_x`) searched is not a snapshot.
fn is_snapshot(path: &str) -> bool {
    if path.starts_with("/qdrant.Snapshots/") {
        return true;
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["snapshots", ..]
            | ["collections", _, "snapshots", ..]
            | ["collections", _, "shards", _, "snapshots", ..]
    )
}

/// The time an exchange may take: `base`, or a gRPC client's shorter `grpc-timeout`
/// (REST has no such header; a malformed one is ignored).
fn budget(base: Duration, protocol: Protocol, headers: &HeaderMap) -> Duration {
    match headers.get("grpc-timeout").and_then(grpc_timeout) {
        Some(t) if protocol == Protocol::Grpc => base.min(t),
        _ => base,
    }
}

/// gRPC's `grpc-timeout` header: digits and a unit (H, M, S, m, u, n).
fn grpc_timeout(v: &HeaderValue) -> Option<Duration> {
    let v = v.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// An upstream answer body that ends at the exchange's deadline. REST: an error, so the
/// client's connection is cut rather than left waiting; gRPC: trailers with
/// DEADLINE_EXCEEDED, so the client gets a proper status. Either way the upstream
/// stream is dropped, which closes (HTTP/1) or resets (HTTP/2) it.
struct Deadline {
    inner: hyper::body::Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
    protocol: Protocol,
    budget: Duration,
    metrics: std::sync::Arc<Metrics>,
    done: bool,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) if this.protocol == Protocol::Grpc => {
                this.done = true;
                this.metrics
                    .upstream_errors
                    .with_label_values(&["other"])
                    .inc();
                let msg = format!("upstream Qdrant broke off its answer: {e}");
                return Poll::Ready(Some(Ok(Frame::trailers(status_headers(
                    Code::Unavailable,
                    &msg,
                )))));
            }
            Poll::Ready(Some(r)) => return Poll::Ready(Some(r.map_err(Into::into))),
            Poll::Ready(None) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if this.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.done = true;
        this.metrics
            .upstream_errors
            .with_label_values(&["timeout"])
            .inc();
        let msg = format!(
            "upstream Qdrant did not finish its answer within {} ms",
            this.budget.as_millis()
        );
        tracing::warn!("{msg}; cutting the answer");
        Poll::Ready(Some(match this.protocol {
            Protocol::Grpc => Ok(Frame::trailers(status_headers(
                Code::DeadlineExceeded,
                &msg,
            ))),
            Protocol::Rest => Err(msg.into()),
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-custom".parse().unwrap());
        h.insert("x-custom", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("api-key", "secret".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("api-key"));
    }

    #[test]
    fn snapshot_calls_are_told_by_their_path_alone() {
        for path in [
            "/snapshots",
            "/snapshots/full.snapshot",
            "/snapshots/upload",
            "/collections/docs/snapshots",
            "/collections/docs/snapshots/upload",
            "/collections/docs/snapshots/recover",
            "/collections/docs/snapshots/docs-1.snapshot",
            "/collections/docs/shards/0/snapshots",
            "/collections/docs/shards/3/snapshots/upload",
            "/qdrant.Snapshots/Create",
            "/qdrant.Snapshots/CreateFull",
            "/qdrant.Snapshots/List",
        ] {
            assert!(is_snapshot(path), "{path}");
        }
        for path in [
            "/collections/docs/points/search",
            "/collections/snapshots/points/search",
            "/collections/snapshots_2024/points/query",
            "/collections/docs/points/scroll",
            "/qdrant.Points/Search",
            "/qdrant.Collections/List",
            "/collections",
            "/",
        ] {
            assert!(!is_snapshot(path), "{path}");
        }
    }

    /// The budget an upstream gives a request for `uri`.
    fn budget_of(protocol: Protocol, uri: &str) -> Duration {
        let cfg = UpstreamConfig {
            timeout_ms: 1_000,
            snapshot_timeout_ms: 60_000,
            ..UpstreamConfig::default()
        };
        let up = Upstream::new(&cfg, protocol, std::sync::Arc::new(Metrics::new(&[]))).unwrap();
        let (mut parts, ()) = Request::post(uri).body(()).unwrap().into_parts();
        up.aim(&mut parts).unwrap().1
    }

    /// gRPC snapshot calls get the long budget; the query string never picks it.
    #[test]
    fn snapshot_budget_by_path_on_both_apis() {
        let long = Duration::from_secs(60);
        let short = Duration::from_secs(1);
        assert_eq!(
            budget_of(Protocol::Grpc, "/qdrant.Snapshots/CreateFull"),
            long
        );
        assert_eq!(budget_of(Protocol::Grpc, "/qdrant.Points/Search"), short);
        assert_eq!(
            budget_of(Protocol::Rest, "/collections/docs/snapshots?wait=true"),
            long
        );
        assert_eq!(
            budget_of(
                Protocol::Rest,
                "/collections/docs/points/search?x=/snapshots"
            ),
            short
        );
        assert_eq!(
            budget_of(Protocol::Rest, "/collections/snapshots_x/points/search"),
            short
        );
    }

    fn timeout(v: &str) -> Option<Duration> {
        grpc_timeout(&HeaderValue::from_str(v).unwrap())
    }

    #[test]
    fn grpc_timeout_reads_every_unit() {
        assert_eq!(timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(timeout("4S"), Some(Duration::from_secs(4)));
        assert_eq!(timeout("200m"), Some(Duration::from_millis(200)));
        assert_eq!(timeout("250u"), Some(Duration::from_micros(250)));
        assert_eq!(timeout("999n"), Some(Duration::from_nanos(999)));
        assert_eq!(timeout("0m"), Some(Duration::ZERO));
        // what tonic's Request::set_timeout sends for 200 ms
        assert_eq!(timeout("200000u"), Some(Duration::from_millis(200)));
    }

    #[test]
    fn grpc_timeout_refuses_bad_values() {
        for bad in [
            "", "S", "m", "5", "12", "5x", "5s ", " 5S", "5 S", "abcS", "-5S", "1.5S", "5h", "5SS",
            "0x5S", "5é",
        ] {
            assert_eq!(
                grpc_timeout(&HeaderValue::from_bytes(bad.as_bytes()).unwrap()),
                None,
                "`{bad}`"
            );
        }
        // not valid UTF-8 / visible ASCII
        assert_eq!(
            grpc_timeout(&HeaderValue::from_bytes(b"5\xffS").unwrap()),
            None
        );
    }

    #[test]
    fn grpc_timeout_has_at_most_eight_digits_and_never_overflows() {
        // The spec allows 8 digits: the largest value of the largest unit still fits.
        assert_eq!(
            timeout("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        assert_eq!(timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        // A ninth digit is refused, so no value can overflow the multiplication.
        assert_eq!(timeout("100000000H"), None);
        assert_eq!(timeout("184467440737095516160S"), None);
        // The huge budget it gives still makes a deadline (capped, no panic).
        let now = Instant::now();
        let far = crate::deadline::after(now, timeout("99999999H").unwrap());
        assert_eq!(far, now + crate::deadline::FAR);
    }

    #[test]
    fn a_grpc_clients_shorter_timeout_wins() {
        let base = Duration::from_secs(10);
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-timeout", HeaderValue::from_str(v).unwrap());
            h
        };
        let grpc = |v: &str| budget(base, Protocol::Grpc, &with(v));
        assert_eq!(grpc("200m"), Duration::from_millis(200));
        assert_eq!(grpc("9999m"), Duration::from_millis(9999));
        // a longer one never extends the proxy's own timeout
        assert_eq!(grpc("11S"), base);
        assert_eq!(grpc("1H"), base);
        // malformed: the proxy's timeout applies
        assert_eq!(grpc("soon"), base);
        assert_eq!(budget(base, Protocol::Grpc, &HeaderMap::new()), base);
        // REST has no grpc-timeout: the header means nothing there
        assert_eq!(budget(base, Protocol::Rest, &with("200m")), base);
    }
}
