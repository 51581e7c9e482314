//! A relay in front of the real Qdrant, for what a test must see or change on the way:
//! it forwards every request (HTTP/1.1 REST, or HTTP/2 gRPC without TLS) unchanged and
//! its answer as it streams back, trailers included, and keeps a copy of each request,
//! so a test can check what secondpass sent upstream (the widened limit, the headers
//! it kept or dropped). A test can name [`Fault`]s for the requests it picks: the
//! answers a real Qdrant does not give on demand. Everything else is Qdrant's own.
//!
//! ```no_run
//! # async fn demo(qdrant: &secondpass_it::real_qdrant::RealQdrant) {
//! use secondpass_it::relay::{Fault, Relay};
//! let relay = Relay::start(&qdrant.url).await; // point secondpass at relay.url()
//! relay.on(|r| r.path.ends_with("/points/search"), Fault::Delay(std::time::Duration::from_secs(2)));
//! let sent = relay.seen(); // every request, oldest first
//! # let _ = sent; }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Body = BoxBody<Bytes, hyper::Error>;

/// One request as the relay received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// path and query, e.g. `/collections/docs/points?wait=true`
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: body is not JSON ({e}): {:?}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the relay does instead of (or before) passing Qdrant's answer on.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Holds the request this long, then forwards it.
    Delay(Duration),
    /// Answers itself: this status, `content-type: application/json`, this body.
    Answer(StatusCode, &'static str),
    /// [`Fault::Answer`] with these headers too (a `Retry-After`, say).
    AnswerWith(
        StatusCode,
        &'static [(&'static str, &'static str)],
        &'static str,
    ),
    /// A gRPC answer of headers only (`grpc-status`, `grpc-message`): how gRPC servers
    /// fail a call before any message.
    GrpcTrailersOnly(i32, &'static str),
    /// A gRPC answer whose one message is these bytes, then `grpc-status: 0`.
    GrpcMessage(&'static [u8]),
}

type Matcher = Box<dyn Fn(&Seen) -> bool + Send + Sync>;

struct Shared {
    upstream: String,
    seen: Mutex<Vec<Seen>>,
    faults: Mutex<Vec<(Matcher, Fault)>>,
    http1: Client<HttpConnector, Full<Bytes>>,
    http2: Client<HttpConnector, Full<Bytes>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running relay; dropping it (or [`Relay::stop`]) closes the port and every
/// connection, so that the upstream looks dead to secondpass.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// A relay on `127.0.0.1:0` in front of `upstream` (`http://host:port`, REST or gRPC).
    pub async fn start(upstream: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let mut h2 = Client::builder(TokioExecutor::new());
        h2.http2_only(true);
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            seen: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            http1: Client::builder(TokioExecutor::new()).build_http(),
            http2: h2.build_http(),
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            // Connection tasks live in this set: aborting the accept task drops it,
            // which closes every connection.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let s = s.clone();
                conns.spawn(async move {
                    let service = hyper::service::service_fn(move |req| relay(s.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Relay {
            addr,
            shared,
            accept,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    /// The requests received so far whose path (without the query) ends with `suffix`.
    pub fn seen_at(&self, suffix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.split('?').next().unwrap_or("").ends_with(suffix))
            .collect()
    }

    pub fn forget(&self) {
        lock(&self.shared.seen).clear();
    }

    /// Waits (polling, up to `within`) until a request with a path ending with
    /// `suffix` arrived; panics when none does.
    pub async fn wait_for(&self, suffix: &str, within: Duration) -> Seen {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.seen_at(suffix).pop() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no request to ...{suffix} within {within:?}; seen: {:?}",
                self.seen().iter().map(|s| &s.path).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// From now on, requests for which `when` holds get `fault` (the first rule that
    /// matches applies).
    pub fn on(&self, when: impl Fn(&Seen) -> bool + Send + Sync + 'static, fault: Fault) {
        lock(&self.shared.faults).push((Box::new(when), fault));
    }

    /// Drops every fault: Qdrant's answers again.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Closes the port and every open connection.
    pub fn stop(&self) {
        self.accept.abort();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(s: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(answer(StatusCode::BAD_GATEWAY, &format!("relay: {e}"))),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let seen = Seen {
        method: parts.method.clone(),
        path: path.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    };
    let fault = lock(&s.faults)
        .iter()
        .find(|(when, _)| when(&seen))
        .map(|(_, f)| f.clone());
    lock(&s.seen).push(seen);
    match fault {
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Answer(status, body)) => return Ok(answer(status, body)),
        Some(Fault::AnswerWith(status, headers, body)) => {
            let mut r = answer(status, body);
            for (name, value) in headers {
                r.headers_mut()
                    .insert(*name, HeaderValue::from_static(value));
            }
            return Ok(r);
        }
        Some(Fault::GrpcTrailersOnly(code, message)) => return Ok(grpc_error(code, message)),
        Some(Fault::GrpcMessage(bytes)) => return Ok(grpc_message(bytes)),
        None => {}
    }
    parts.uri = format!("{}{path}", s.upstream)
        .parse()
        .expect("upstream URI");
    // The body was read whole: it goes with a length, not as it was framed.
    for h in [header::HOST, header::TRANSFER_ENCODING, header::CONNECTION] {
        parts.headers.remove(h);
    }
    let client = if parts.version == Version::HTTP_2 {
        &s.http2
    } else {
        &s.http1
    };
    parts.version = Version::HTTP_11; // the client picks its own
    match client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(resp) => Ok(resp.map(BodyExt::boxed)),
        Err(e) => Ok(answer(StatusCode::BAD_GATEWAY, &format!("relay: {e}"))),
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

fn answer(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn grpc_error(code: i32, message: &str) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    h.insert("grpc-message", HeaderValue::from_str(message).unwrap());
    r
}

fn grpc_message(message: &'static [u8]) -> Response<Body> {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = Full::new(Bytes::from(framed))
        .map_err(|e| match e {})
        .with_trailers(async move { Some(Ok(trailers)) });
    let mut r = Response::new(body.boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    r
}
