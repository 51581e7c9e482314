//! Failures (upstream down or slow, reranker failing), metrics and health, with
//! secondpass on port 0 in front of the real Qdrant (through a relay where Qdrant must
//! be slow or gone).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use secondpass::rerank::{Registry, RerankError, RerankFuture, RerankRequest, Reranker, ScoreKind};
use secondpass_it::real_qdrant::Collection;
use secondpass_it::relay::{Fault, Relay, Seen};
use serde_json::{json, Value};
use support::{config, ids, proxy, qdrant, query_vector, relayed, request, Proxy};

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

async fn broken_proxy(extra: &str) -> (Collection<'static>, Proxy) {
    let docs = qdrant().collection("docs");
    let mut registry = Registry::default();
    registry.insert("local", Arc::new(Broken));
    let extra = extra.replace("DOCS", &docs);
    let proxy = Proxy::start_with(config(&qdrant().url, &[&docs], &extra), registry).await;
    proxy.seed(&docs, false).await;
    (docs, proxy)
}

fn assert_qdrant_error(body: &Value, needle: &str) {
    let msg = body["status"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"));
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    assert!(body["time"].is_number());
}

async fn metrics(p: &Proxy) -> String {
    String::from_utf8(p.get_admin("/metrics").await.body.to_vec()).unwrap()
}

#[tokio::test]
async fn failing_reranker_fails_open_visibly() {
    let (docs, proxy) = broken_proxy("").await;
    let body =
        json!({"vector": query_vector(), "limit": 2, "offset": 1, "with_payload": ["title"]});
    let path = format!("/collections/{docs}/points/search");
    let r = proxy
        .post(&path, &[("x-rerank-query", "capital of Germany")], &body)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-rerank-status"), Some("failed_open"));
    let got = r.json();
    assert_eq!(got["rerank"]["status"], "failed_open");
    assert!(got["rerank"]["reason"]
        .as_str()
        .unwrap()
        .contains("model exploded"));
    // Qdrant's order and scores, cut to the client's page, payload as asked
    let direct = proxy.post_direct(&path, &body).await.json();
    assert_eq!(got["result"], direct["result"]);
    let m = metrics(&proxy).await;
    for line in [
        format!("secondpass_fail_open_total{{collection=\"{docs}\"}} 1"),
        "secondpass_rerank_errors_total{kind=\"inference\",reranker=\"local\"} 1".into(),
        format!("secondpass_requests_total{{collection=\"{docs}\",rerank_status=\"failed_open\",route=\"search\",transport=\"rest\"}} 1"),
    ] {
        assert!(m.contains(&line), "missing {line} in\n{m}");
    }
}

#[tokio::test]
async fn failing_reranker_with_on_failure_error_is_a_502() {
    let (docs, proxy) = broken_proxy("[collections.DOCS]\non_failure = \"error\"\n").await;
    let r = proxy
        .post(
            &format!("/collections/{docs}/points/query"),
            &[("x-rerank-query", "capital of Germany")],
            &json!({"query": query_vector(), "limit": 2}),
        )
        .await;
    assert_eq!(r.status, 502);
    assert_qdrant_error(&r.json(), "model exploded");
}

#[tokio::test]
async fn slow_upstream_is_a_504_and_a_dead_one_a_502() {
    let docs = qdrant().collection("docs");
    // seeded with the usual timeout: creating a collection takes Qdrant about 200 ms
    proxy(&[], "").await.seed(&docs, false).await;
    let relay = Relay::start(&qdrant().url).await;
    let mut cfg = config(&relay.url(), &[&docs], "");
    cfg.upstream.timeout_ms = 200;
    let proxy = Proxy::start(cfg).await;
    relay.on(|_| true, Fault::Delay(Duration::from_secs(2)));
    let r = proxy
        .post(
            &format!("/collections/{docs}/points/search"),
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
    relay.clear_faults();

    let ready = proxy.get_admin("/readyz").await;
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    relay.stop();
    let r = proxy
        .post(
            &format!("/collections/{docs}/points/query"),
            &[("x-rerank-query", "q")],
            &json!({"query": query_vector()}),
        )
        .await;
    assert_eq!(r.status, 502);
    assert_qdrant_error(&r.json(), "unreachable");
    let r = request(
        &proxy.client,
        Method::GET,
        &proxy.url(&format!("/collections/{docs}")),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 502);
    let ready = proxy.get_admin("/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(String::from_utf8_lossy(&ready.body).contains("does not answer"));
    assert_eq!(proxy.get_admin("/healthz").await.status, 200);
    let m = metrics(&proxy).await;
    for line in [
        "secondpass_upstream_errors_total{kind=\"timeout\"} 2",
        "secondpass_upstream_errors_total{kind=\"connect\"}",
        "secondpass_responses_total{code=\"5xx\"}",
    ] {
        assert!(m.contains(line), "missing {line} in\n{m}");
    }
}

/// `promtool check metrics` on `text`: `Ok`, or what promtool said. `None` when there
/// is no promtool, which under CI (`CI` set and not `false`) is a failure instead.
fn promtool_check(text: &str) -> Option<Result<(), String>> {
    use std::io::Write;
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("promtool"))
            .find(|p| p.is_file())
    })?;
    let mut child = std::process::Command::new(found)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    })
}

#[tokio::test]
async fn metrics_cover_routes_and_pass_promtool() {
    let docs = qdrant().collection("docs");
    let proxy = proxy(&[&docs], "").await;
    proxy.seed(&docs, false).await;
    let path = |route: &str| format!("/collections/{docs}/points/{route}");
    let searched = proxy
        .post(
            &path("search"),
            &[("x-rerank-query", "capital")],
            &json!({"vector": query_vector(), "limit": 3}),
        )
        .await;
    assert_eq!(searched.json()["rerank"]["status"], "applied");
    proxy
        .post(
            &path("query"),
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
        format!("secondpass_requests_total{{collection=\"{docs}\",rerank_status=\"applied\",route=\"search\",transport=\"rest\"}} 1"),
        format!("secondpass_requests_total{{collection=\"{docs}\",rerank_status=\"skipped\",route=\"query\",transport=\"rest\"}} 1"),
        "secondpass_requests_total{collection=\"_other\",rerank_status=\"disabled\",route=\"query\",transport=\"rest\"} 1".into(),
        "secondpass_requests_total{collection=\"_none\",rerank_status=\"none\",route=\"forward\",transport=\"rest\"}".into(),
        "secondpass_upstream_duration_seconds_count{route=\"search\"} 1".into(),
        "secondpass_rerank_duration_seconds_count{reranker=\"local\"} 1".into(),
        format!("secondpass_rerank_candidates_count{{collection=\"{docs}\"}} 1"),
        format!("secondpass_candidates_without_text_total{{collection=\"{docs}\"}} 1"),
        "secondpass_request_duration_seconds_bucket".into(),
        "secondpass_model_loaded 1".into(),
    ] {
        assert!(text.contains(&needle), "missing {needle} in\n{text}");
    }
    let Some(verdict) = promtool_check(&text) else {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(
            !ci,
            "promtool is required under CI (scripts/setup --promtool installs it)"
        );
        println!("SKIPPED promtool check: promtool not installed (scripts/setup --promtool)");
        return;
    };
    verdict.unwrap_or_else(|e| panic!("promtool check metrics failed:\n{e}"));
    // The check can fail: the same text with a counter's `_total` suffix dropped (a
    // naming regression) is refused.
    let broken = text.replace("secondpass_requests_total", "secondpass_requests");
    assert!(
        promtool_check(&broken).unwrap().is_err(),
        "promtool accepted a counter without _total"
    );
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_refuses_new_ones() {
    let docs = qdrant().collection("docs");
    let (relay, proxy) = relayed(&[&docs], "").await;
    proxy.seed(&docs, false).await;
    relay.on(
        |r| r.path.ends_with("/points/search"),
        Fault::Delay(Duration::from_millis(400)),
    );
    let url = proxy.url(&format!("/collections/{docs}/points/search"));
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
    // wait (bounded) until the request reached Qdrant, then stop
    relay
        .wait_for("/points/search", Duration::from_secs(10))
        .await;
    let addr = proxy.server.rest_addr;
    let readyz = proxy.admin("/readyz");
    let probe_client = proxy.client.clone();
    let shutdown = tokio::spawn(proxy.server.shutdown());
    // while the request drains, /readyz says so (the admin listener stays up)
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = request(&probe_client, Method::GET, &readyz, &[], None).await;
        if r.status == 503 {
            assert_eq!(&r.body[..], b"draining");
            break;
        }
        assert!(Instant::now() < deadline, "readyz never reported draining");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown ends once the request drained")
        .unwrap();
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["rerank"]["status"], "applied");
    assert_eq!(ids(&r.json()["result"]).len(), 2);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "new connections must be refused"
    );
}

/// Answers a real Qdrant gives only when something is wrong, to a reranked search
/// (from the relay, for the searches only): its 503 comes back as it said it, asked
/// once; a body that is not JSON is a 502 in Qdrant's error format; a 400 for the
/// widened request alone is asked again with the client's own bytes, whose answer the
/// client gets, marked skipped.
#[tokio::test]
async fn broken_answers_to_a_reranked_search() {
    let docs = qdrant().collection("docs");
    let (relay, proxy) = relayed(&[&docs], "").await;
    proxy.seed(&docs, false).await;
    let path = format!("/collections/{docs}/points/search");
    let body = json!({"vector": query_vector(), "limit": 2});
    let searches = |r: &Seen| r.path.ends_with("/points/search");

    const OVERLOADED: &str =
        r#"{"status":{"error":"Service internal error: overloaded"},"time":0.001}"#;
    relay.on(
        searches,
        Fault::Answer(StatusCode::SERVICE_UNAVAILABLE, OVERLOADED),
    );
    relay.forget();
    let r = proxy
        .post(&path, &[("x-rerank-query", "capital")], &body)
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(&r.body[..], OVERLOADED.as_bytes(), "Qdrant's words");
    assert_eq!(relay.seen().len(), 1, "a 503 is not asked again");

    relay.clear_faults();
    relay.on(
        searches,
        Fault::Answer(StatusCode::OK, r#"{"result":[{"id":1,"version":1,"sco"#),
    );
    let r = proxy
        .post(&path, &[("x-rerank-query", "capital")], &body)
        .await;
    assert_eq!(r.status, 502);
    assert_qdrant_error(&r.json(), "cannot read");

    relay.clear_faults();
    relay.on(
        move |r| searches(r) && r.json()["limit"] != 2,
        Fault::Answer(
            StatusCode::BAD_REQUEST,
            r#"{"status":{"error":"Bad request: no"},"time":0.0}"#,
        ),
    );
    relay.forget();
    let r = proxy
        .post(&path, &[("x-rerank-query", "capital")], &body)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("x-rerank-status"), Some("skipped"));
    let direct = proxy.post_direct(&path, &body).await.json();
    assert_eq!(
        r.json()["result"],
        direct["result"],
        "Qdrant's answer to the client's bytes"
    );
    let sent: Vec<Value> = relay
        .seen_at("/points/search")
        .iter()
        .map(Seen::json)
        .collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0]["limit"], 100);
    assert_eq!(sent[1], body);
}

/// The same over gRPC: a trailers-only error keeps its code and message; a message
/// that does not decode is INTERNAL.
#[tokio::test]
async fn broken_grpc_answers_to_a_reranked_search() {
    use qdrant_client::qdrant::points_client::PointsClient;
    use qdrant_client::qdrant::QueryPoints;
    let docs = qdrant().collection("docs");
    let relay = Relay::start(&qdrant().grpc_url).await;
    let proxy = Proxy::start(support::config_with_grpc(
        &qdrant().url,
        &relay.url(),
        &[&docs],
        "",
    ))
    .await;
    proxy.seed(&docs, false).await;
    let mut via = PointsClient::connect(format!("http://{}", proxy.server.grpc_addr))
        .await
        .unwrap();
    let query = || {
        let mut r = tonic::Request::new(QueryPoints {
            collection_name: docs.to_string(),
            query: Some(qdrant_client::qdrant::Query::new_nearest(vec![
                0.2, 0.1, 0.9, 0.7,
            ])),
            limit: Some(2),
            ..Default::default()
        });
        r.metadata_mut()
            .insert("x-rerank-query", "capital".parse().unwrap());
        r
    };
    assert_eq!(
        via.query(query()).await.unwrap().into_inner().result.len(),
        2
    );

    relay.on(|_| true, Fault::GrpcTrailersOnly(14, "the shard is moving"));
    let e = via.query(query()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert_eq!(e.message(), "the shard is moving");

    relay.clear_faults();
    relay.on(|_| true, Fault::GrpcMessage(b"\x0a\xff\xff\xff"));
    let e = via.query(query()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal, "{e:?}");
}

/// A refusal the client's own request would get as well (a rate limit, a timeout,
/// authentication) goes back as Qdrant said it, `Retry-After` included, after one
/// request to Qdrant: sending the client's bytes again would only double the load
/// Qdrant just refused. Here the relay plays Qdrant's 429, 408, 403 and 503.
#[tokio::test]
async fn refusals_the_widening_did_not_cause_are_not_sent_again() {
    let docs = qdrant().collection("docs");
    let (relay, proxy) = relayed(&[&docs], "").await;
    proxy.seed(&docs, false).await;
    let path = format!("/collections/{docs}/points/search");
    let body = json!({"vector": query_vector(), "limit": 2});
    const LIMITED: &str = r#"{"status":{"error":"Too many requests"},"time":0.0}"#;
    for (status, headers) in [
        (StatusCode::TOO_MANY_REQUESTS, &[("retry-after", "7")][..]),
        (StatusCode::REQUEST_TIMEOUT, &[][..]),
        (StatusCode::FORBIDDEN, &[][..]),
        (StatusCode::SERVICE_UNAVAILABLE, &[("retry-after", "3")][..]),
    ] {
        relay.clear_faults();
        relay.on(
            |r: &Seen| r.path.ends_with("/points/search"),
            Fault::AnswerWith(status, headers, LIMITED),
        );
        relay.forget();
        let r = proxy
            .post(&path, &[("x-rerank-query", "capital")], &body)
            .await;
        assert_eq!(r.status, status);
        assert_eq!(&r.body[..], LIMITED.as_bytes(), "Qdrant's words");
        for (name, value) in headers {
            assert_eq!(r.header(name), Some(*value), "{status}: {name}");
        }
        assert_eq!(
            relay.seen_at("/points/search").len(),
            1,
            "{status} reached Qdrant once"
        );
    }
}

/// Against a real Qdrant with an API key: a search without the key, or with a wrong
/// one, gets Qdrant's own refusal after one request to Qdrant, not two.
#[tokio::test]
async fn an_unauthorized_search_reaches_qdrant_once() {
    let own = secondpass_it::real_qdrant::RealQdrant::own(&[(
        "QDRANT__SERVICE__API_KEY",
        "it-qdrant-key",
    )]);
    let relay = Relay::start(&own.url).await;
    let proxy = Proxy::start(config(&relay.url(), &["docs"], "")).await;
    let path = "/collections/docs/points/search";
    let body = json!({"vector": query_vector(), "limit": 2});
    for key in [None, Some("wrong-key")] {
        let headers: Vec<(&str, &str)> = key.map(|k| ("api-key", k)).into_iter().collect();
        let direct = request(
            &support::client(),
            Method::POST,
            &format!("{}{path}", own.url),
            &headers,
            Some(&body),
        )
        .await;
        assert!(
            matches!(direct.status.as_u16(), 401 | 403),
            "{key:?}: Qdrant answered {}",
            direct.status
        );
        relay.forget();
        let mut with_query = headers.clone();
        with_query.push(("x-rerank-query", "capital"));
        let r = proxy.post(path, &with_query, &body).await;
        assert_eq!(r.status, direct.status, "{key:?}");
        assert_eq!(
            relay.seen_at("/points/search").len(),
            1,
            "{key:?}: {} reached Qdrant once",
            r.status
        );
    }
}
