//! Failures (upstream down or slow, reranker failing), metrics and health, with
//! secondpass on port 0 in front of the Qdrant double.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use secondpass::rerank::{Registry, RerankError, RerankFuture, RerankRequest, Reranker, ScoreKind};
use secondpass_it::qdrant_double::QdrantDouble;
use serde_json::{json, Value};
use support::{config, ids, promtool, query_vector, request, with_double, Proxy};

/// A reranker that always fails, to exercise `on_failure`.
struct Broken;

impl Reranker for Broken {
    fn model(&self) -> &str {
        "broken"
    }
    fn score_kind(&self) -> ScoreKind {
        ScoreKind::Logit
    }
    fn rerank(&self, _: RerankRequest) -> RerankFuture {
        Box::pin(async { Err(RerankError::Inference("model exploded".into())) })
    }
}

async fn broken_proxy(extra: &str) -> (QdrantDouble, Proxy) {
    let qdrant = QdrantDouble::start().await.unwrap();
    let mut registry = Registry::default();
    registry.insert("local", Arc::new(Broken));
    let proxy = Proxy::start_with(config(&qdrant.url(), &["docs"], extra), registry).await;
    proxy.seed("docs", false).await;
    (qdrant, proxy)
}

fn assert_qdrant_error(body: &Value, needle: &str) {
    let msg = body["status"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"));
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    assert!(body["time"].is_number());
}

#[tokio::test]
async fn failing_reranker_fails_open_visibly() {
    let (_qdrant, proxy) = broken_proxy("").await;
    let r = proxy
        .post(
            "/collections/docs/points/search",
            &[("x-rerank-query", "capital of Germany")],
            &json!({"vector": query_vector(), "limit": 2, "offset": 1, "with_payload": ["title"]}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-rerank-status"), Some("failed_open"));
    let body = r.json();
    assert_eq!(body["rerank"]["status"], "failed_open");
    assert!(body["rerank"]["reason"]
        .as_str()
        .unwrap()
        .contains("model exploded"));
    // Qdrant's order and scores, cut to the client's page, payload as asked
    let direct = proxy
        .post_direct(
            "/collections/docs/points/search",
            &json!({"vector": query_vector(), "limit": 2, "offset": 1, "with_payload": ["title"]}),
        )
        .await
        .json();
    assert_eq!(body["result"], direct["result"]);
    let metrics = String::from_utf8(proxy.get_admin("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("secondpass_fail_open_total{collection=\"docs\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("secondpass_rerank_errors_total{kind=\"inference\",reranker=\"local\"} 1")
    );
    assert!(metrics.contains(
        "secondpass_requests_total{collection=\"docs\",rerank_status=\"failed_open\",route=\"search\",transport=\"rest\"} 1"
    ));
}

#[tokio::test]
async fn failing_reranker_with_on_failure_error_is_a_502() {
    let (_qdrant, proxy) = broken_proxy("[collections.docs]\non_failure = \"error\"\n").await;
    let r = proxy
        .post(
            "/collections/docs/points/query",
            &[("x-rerank-query", "capital of Germany")],
            &json!({"query": query_vector(), "limit": 2}),
        )
        .await;
    assert_eq!(r.status, 502);
    assert_qdrant_error(&r.json(), "model exploded");
}

#[tokio::test]
async fn slow_upstream_is_a_504_and_a_dead_one_a_502() {
    let qdrant = QdrantDouble::start().await.unwrap();
    let mut cfg = config(&qdrant.url(), &["docs"], "");
    cfg.upstream.timeout_ms = 200;
    let proxy = Proxy::start(cfg).await;
    proxy.seed("docs", false).await;
    qdrant.set_delay(Some(Duration::from_secs(2)));
    let r = proxy
        .post(
            "/collections/docs/points/search",
            &[("x-rerank-query", "q")],
            &json!({"vector": query_vector(), "limit": 2}),
        )
        .await;
    assert_eq!(r.status, 504);
    assert_qdrant_error(&r.json(), "did not answer");
    let r = request(
        &proxy.client,
        Method::GET,
        &proxy.url("/collections"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 504);
    qdrant.set_delay(None);

    let ready = proxy.get_admin("/readyz").await;
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    qdrant.shutdown().await;
    let r = proxy
        .post(
            "/collections/docs/points/query",
            &[("x-rerank-query", "q")],
            &json!({"query": query_vector()}),
        )
        .await;
    assert_eq!(r.status, 502);
    assert_qdrant_error(&r.json(), "unreachable");
    let r = request(
        &proxy.client,
        Method::GET,
        &proxy.url("/collections/docs"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 502);
    let ready = proxy.get_admin("/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(String::from_utf8_lossy(&ready.body).contains("does not answer"));
    assert_eq!(proxy.get_admin("/healthz").await.status, 200);
    let metrics = String::from_utf8(proxy.get_admin("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("secondpass_upstream_errors_total{kind=\"timeout\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("secondpass_upstream_errors_total{kind=\"connect\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("secondpass_responses_total{code=\"5xx\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn metrics_cover_routes_and_pass_promtool() {
    let (_qdrant, proxy) = with_double(&["docs"], "").await;
    proxy.seed("docs", false).await;
    proxy
        .post(
            "/collections/docs/points/search",
            &[("x-rerank-query", "capital")],
            &json!({"vector": query_vector(), "limit": 3}),
        )
        .await;
    proxy
        .post(
            "/collections/docs/points/query",
            &[],
            &json!({"query": query_vector(), "limit": 3}),
        )
        .await;
    proxy
        .post(
            "/collections/unlisted/points/query",
            &[],
            &json!({"query": query_vector(), "limit": 3}),
        )
        .await;
    let r = proxy.get_admin("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    for needle in [
        "secondpass_requests_total{collection=\"docs\",rerank_status=\"applied\",route=\"search\",transport=\"rest\"} 1",
        "secondpass_requests_total{collection=\"docs\",rerank_status=\"skipped\",route=\"query\",transport=\"rest\"} 1",
        "secondpass_requests_total{collection=\"_other\",rerank_status=\"disabled\",route=\"query\",transport=\"rest\"} 1",
        "secondpass_requests_total{collection=\"_none\",rerank_status=\"none\",route=\"forward\",transport=\"rest\"}",
        "secondpass_upstream_duration_seconds_count{route=\"search\"} 1",
        "secondpass_rerank_duration_seconds_count{reranker=\"local\"} 1",
        "secondpass_rerank_candidates_count{collection=\"docs\"} 1",
        "secondpass_candidates_without_text_total{collection=\"docs\"} 1",
        "secondpass_request_duration_seconds_bucket",
        "secondpass_model_loaded 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    match promtool() {
        None => {
            println!("SKIPPED promtool check: promtool not installed (scripts/setup --promtool)")
        }
        Some(bin) => {
            let mut child = std::process::Command::new(bin)
                .args(["check", "metrics"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_refuses_new_ones() {
    let (qdrant, proxy) = with_double(&["docs"], "").await;
    proxy.seed("docs", false).await;
    qdrant.set_delay(Some(Duration::from_millis(400)));
    let url = proxy.url("/collections/docs/points/search");
    let client = proxy.client.clone();
    let in_flight = tokio::spawn(async move {
        request(
            &client,
            Method::POST,
            &url,
            &[("x-rerank-query", "capital of Germany")],
            Some(&json!({"vector": query_vector(), "limit": 2})),
        )
        .await
    });
    // wait until the request reached Qdrant, then stop
    while qdrant
        .request_log()
        .iter()
        .all(|r| !r.path.ends_with("/points/search"))
    {
        tokio::task::yield_now().await;
    }
    let addr = proxy.server.rest_addr;
    let readyz = proxy.admin("/readyz");
    let probe_client = proxy.client.clone();
    let shutdown = tokio::spawn(proxy.server.shutdown());
    // while the request drains, /readyz says so (the admin listener stays up)
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = request(&probe_client, Method::GET, &readyz, &[], None).await;
        if r.status == 503 {
            assert_eq!(&r.body[..], b"draining");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readyz never reported draining"
        );
        tokio::task::yield_now().await;
    }
    shutdown.await.unwrap();
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(ids(&r.json()["result"]).len(), 2);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "new connections must be refused"
    );
}
