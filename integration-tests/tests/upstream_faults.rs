//! Upstream faults a real Qdrant cannot produce on demand: answers that stall or drip
//! after their headers, an early answer to a body still being sent, keep-alive
//! connections closed under a request. Every call through secondpass must end by its
//! deadline, and an answer Qdrant did send must reach the client.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::CountPoints;
use support::{client, config_with_grpc, send_raw, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TIMEOUT_MS: u64 = 400;
/// What "by the deadline" allows on a loaded 2-core test machine.
const MARGIN: Duration = Duration::from_secs(3);

/// A body that sends `first` and then nothing, forever.
fn stalling(first: &'static [u8]) -> Body {
    Body::from_stream(
        futures_util::stream::once(async move { Ok::<_, Infallible>(Bytes::from_static(first)) })
            .chain(futures_util::stream::pending()),
    )
}

/// One byte every 50 ms, for at most 20 s (a bounded drip).
fn dripping() -> Body {
    Body::from_stream(
        tokio_stream_interval(Duration::from_millis(50))
            .take(400)
            .map(|_| Ok::<_, Infallible>(Bytes::from_static(b"x"))),
    )
}

fn tokio_stream_interval(every: Duration) -> impl futures_util::Stream<Item = ()> {
    futures_util::stream::unfold((), move |()| async move {
        tokio::time::sleep(every).await;
        Some(((), ()))
    })
}

/// An upstream (REST and h2c gRPC on one port) whose answers start and then stall.
async fn stalling_upstream() -> SocketAddr {
    let app = Router::new()
        .route(
            "/stall",
            get(|| async { Response::new(stalling(b"{\"result\":")) }),
        )
        .route("/drip", get(|| async { Response::new(dripping()) }))
        .route(
            "/qdrant.Points/Count",
            post(|| async {
                let mut resp = Response::new(stalling(b"\0\0\0\0\x10"));
                resp.headers_mut()
                    .insert("content-type", "application/grpc".parse().unwrap());
                resp
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn proxy_to(addr: SocketAddr, collections: &[&str]) -> Proxy {
    let url = format!("http://{addr}");
    let mut cfg = config_with_grpc(&url, &url, collections, "");
    cfg.upstream.timeout_ms = TIMEOUT_MS;
    Proxy::start(cfg).await
}

/// Sends one request; the status and the body as JSON.
async fn send(method: Method, url: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client().request(req).await.expect("an answer");
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("a whole body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, json)
}

/// Reads a whole answer through secondpass; Err when the body was cut.
async fn get_all(url: &str) -> (u16, Result<Bytes, String>) {
    let req = Request::get(url).body(Full::new(Bytes::new())).unwrap();
    let resp = client().request(req).await.expect("answer headers");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await;
    (
        status,
        body.map(|b| b.to_bytes()).map_err(|e| e.to_string()),
    )
}

#[tokio::test]
async fn a_forwarded_answer_that_stalls_after_its_headers_is_cut_at_the_deadline() {
    let proxy = proxy_to(stalling_upstream().await, &[]).await;
    for path in ["/stall", "/drip"] {
        let started = Instant::now();
        let (status, body) = get_all(&proxy.url(path)).await;
        let took = started.elapsed();
        assert_eq!(status, 200, "{path}: headers pass through");
        assert!(
            body.is_err(),
            "{path}: the cut body must show as an error, got {body:?}"
        );
        assert!(
            took >= Duration::from_millis(TIMEOUT_MS)
                && took < Duration::from_millis(TIMEOUT_MS) + MARGIN,
            "{path}: took {took:?} with a {TIMEOUT_MS} ms timeout"
        );
    }
    let metrics = proxy.get_admin("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        text.contains("secondpass_upstream_errors_total{kind=\"timeout\"} 2"),
        "both cuts counted: {text}"
    );
}

/// Counts `docs` through `proxy`'s gRPC port, with `client_timeout` sent as
/// `grpc-timeout`; the error (a stalled answer cannot succeed) and how long it took.
async fn stalled_count(
    proxy: &Proxy,
    client_timeout: Option<Duration>,
) -> (tonic::Status, Duration) {
    let mut points = PointsClient::connect(format!("http://{}", proxy.server.grpc_addr))
        .await
        .unwrap();
    let mut req = tonic::Request::new(CountPoints {
        collection_name: "docs".into(),
        ..Default::default()
    });
    if let Some(t) = client_timeout {
        // only sets the grpc-timeout header: tonic's client enforces nothing itself
        req.set_timeout(t);
    }
    let started = Instant::now();
    let err = points
        .count(req)
        .await
        .expect_err("a stalled answer cannot succeed");
    (err, started.elapsed())
}

#[tokio::test]
async fn a_grpc_answer_that_stalls_ends_with_deadline_exceeded() {
    // Without grpc-timeout: the proxy's own timeout ends the call.
    let proxy = proxy_to(stalling_upstream().await, &[]).await;
    let (err, took) = stalled_count(&proxy, None).await;
    let budget = Duration::from_millis(TIMEOUT_MS);
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(
        err.message().contains(&format!("within {TIMEOUT_MS} ms")),
        "{err:?}"
    );
    assert!(
        took >= budget && took < budget + MARGIN,
        "took {took:?}, budget {budget:?}"
    );

    // With a client's 200 ms grpc-timeout, behind a proxy whose own timeout is far
    // beyond the bound asserted (200 ms + MARGIN): only the header can end it in time.
    const PROXY_TIMEOUT: Duration = Duration::from_secs(10);
    let client = Duration::from_millis(200);
    assert!(client + MARGIN < PROXY_TIMEOUT);
    let url = format!("http://{}", stalling_upstream().await);
    let mut cfg = config_with_grpc(&url, &url, &[], "");
    cfg.upstream.timeout_ms = PROXY_TIMEOUT.as_millis() as u64;
    let proxy = Proxy::start(cfg).await;
    let (err, took) = stalled_count(&proxy, Some(client)).await;
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    // The proxy cut the answer with the client's budget (its trailers say so).
    assert!(err.message().contains("within 200 ms"), "{err:?}");
    assert!(
        took >= client && took < client + MARGIN,
        "took {took:?}: the client's {client:?} must win over the proxy's {PROXY_TIMEOUT:?}"
    );
}

/// An upstream that answers 400 as soon as it has read the request's headers and
/// closes without reading the body (what Qdrant does with a body over its limit).
async fn early_answering_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body =
                    br#"{"status":{"error":"JSON payload is larger than allowed"},"time":0.0}"#;
                let resp = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.write_all(body).await;
                // dropped with the request body unread: the peer gets a reset
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_early_answer_to_a_large_body_reaches_the_client() {
    let proxy = proxy_to(early_answering_upstream().await, &[]).await;
    let big = vec![b' '; 8 * 1024 * 1024];
    for attempt in 0..8 {
        let answer = send_raw(
            proxy.server.rest_addr,
            "PUT",
            "/collections/docs/points",
            big.clone(),
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "attempt {attempt}: {}",
            answer.lines().next().unwrap_or("no answer")
        );
        assert!(
            answer.contains("larger than allowed"),
            "attempt {attempt}: Qdrant's own message: {answer}"
        );
    }
}

/// An upstream that answers the first request on each connection (keep-alive) and
/// closes the connection without an answer when a second one arrives on it: the race
/// of a pooled connection the server is closing.
async fn closing_keepalive_upstream(answers: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                    let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while seen.len() < end + 4 + len {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    if answers.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
                        return; // the second request on this connection: close, no answer
                    }
                    let body = br#"{"result":{"points":[]},"status":"ok","time":0.001}"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.write_all(body).await;
                    seen.drain(..end + 4 + len);
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_request_on_a_pooled_connection_the_upstream_closed_is_sent_again() {
    let seen = Arc::new(AtomicUsize::new(0));
    let proxy = proxy_to(closing_keepalive_upstream(seen.clone()).await, &["docs"]).await;
    for i in 0..4 {
        let (status, json) = send(Method::GET, &proxy.url("/collections"), Vec::new()).await;
        assert_eq!(status, 200, "forwarded GET {i}: {json}");
        let body = serde_json::to_vec(&serde_json::json!({
            "query": [0.1, 0.2, 0.3, 0.4], "limit": 3, "rerank": {"query": "anything"}
        }))
        .unwrap();
        let (status, json) = send(
            Method::POST,
            &proxy.url("/collections/docs/points/query"),
            body,
        )
        .await;
        assert_eq!(status, 200, "reranked search {i}: {json}");
    }
    assert!(
        seen.load(Ordering::SeqCst) > 8,
        "some requests met a closing connection"
    );
}

#[tokio::test]
async fn errors_made_by_secondpass_carry_the_elapsed_time() {
    // Accepts and never answers: 504 after the timeout.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let proxy = proxy_to(addr, &[]).await;
    let (status, json) = send(Method::GET, &proxy.url("/collections"), Vec::new()).await;
    assert_eq!(status, 504, "{json}");
    let time = json["time"].as_f64().unwrap();
    assert!(time >= TIMEOUT_MS as f64 / 1000.0, "time {time}");
}
