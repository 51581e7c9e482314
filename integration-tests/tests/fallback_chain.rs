//! Fallback chains end to end: secondpass A reranks through a hosted-API reranker
//! pointed at secondpass B's own `/rerank` (a real server with the real model), with a
//! failing reranker ahead of it in the chain, and breakers that open and close.

mod support;

use std::time::{Duration, Instant};

use secondpass_it::provider_stubs::{Api, Behaviour, ProviderStub, StubOptions};
use serde_json::{json, Value};
use support::{ids, model_order, query_vector, with_double, Proxy};

const QUERY: &str = "capital of Germany";

async fn metrics(p: &Proxy) -> String {
    String::from_utf8(p.get_admin("/metrics").await.body.to_vec()).unwrap()
}

async fn search(p: &Proxy, limit: usize) -> Value {
    p.post(
        "/collections/docs/points/search",
        &[("x-rerank-query", QUERY)],
        &json!({"vector": query_vector(), "limit": limit}),
    )
    .await
    .json()
}

#[tokio::test]
async fn a_hosted_reranker_pointed_at_another_secondpass_reranks_end_to_end() {
    // B: a plain secondpass whose /rerank (TEI shape) is backed by the local model.
    let (_qb, b) = with_double(&[], "").await;
    let extra = format!(
        "[rerankers.remote]\nkind = \"tei\"\nbase_url = \"http://{}\"\n\
         [rerankers.down]\nkind = \"tei\"\nbase_url = \"http://127.0.0.1:1\"\nmax_retries = 0\n\
         [collections.docs]\nrerankers = [\"down\", \"remote\"]\n",
        b.server.rest_addr
    );
    let (qa, a) = with_double(&["docs"], &extra).await;
    a.seed("docs", false).await;
    let all = a
        .post_direct(
            "/collections/docs/points/search",
            &json!({"vector": query_vector(), "limit": 100}),
        )
        .await
        .json();
    let expected: Vec<Value> = model_order(QUERY, &ids(&all["result"]))
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();

    let r = a
        .post(
            "/collections/docs/points/search",
            &[("x-rerank-query", QUERY)],
            &json!({"vector": query_vector(), "limit": 4}),
        )
        .await;
    assert_eq!(r.header("x-rerank-reranker"), Some("remote"));
    let body = r.json();
    assert_eq!(body["rerank"]["status"], "applied", "{body}");
    assert_eq!(body["rerank"]["reranker"], "remote");
    assert_eq!(body["rerank"]["fallback"][0]["reranker"], "down");
    assert!(
        body["rerank"]["fallback"][0]["error"]
            .as_str()
            .unwrap()
            .len()
            > 3
    );
    // TEI raw scores are logits; score_mode sigmoid gives the same probabilities as local
    assert_eq!(ids(&body["result"]), expected[..4].to_vec());
    let m = metrics(&a).await;
    assert!(
        m.contains("secondpass_fallback_total{from=\"down\",to=\"remote\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("secondpass_rerank_errors_total{kind=\"connect\",reranker=\"down\"} 1"),
        "{m}"
    );
    // B really served the rerank call
    let mb = metrics(&b).await;
    assert!(
        mb.contains("secondpass_rerank_duration_seconds_count{reranker=\"local\"} 1"),
        "{mb}"
    );
    let _ = qa;
}

#[tokio::test]
async fn exhausted_chain_fails_open_and_says_why() {
    let extra =
        "[rerankers.down]\nkind = \"tei\"\nbase_url = \"http://127.0.0.1:1\"\nmax_retries = 0\n\
                 [collections.docs]\nrerankers = [\"down\"]\n";
    let (_q, a) = with_double(&["docs"], extra).await;
    a.seed("docs", false).await;
    let direct = a
        .post_direct(
            "/collections/docs/points/search",
            &json!({"vector": query_vector(), "limit": 3}),
        )
        .await
        .json();
    let body = search(&a, 3).await;
    assert_eq!(body["rerank"]["status"], "failed_open");
    assert!(
        body["rerank"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("down:"),
        "{body}"
    );
    assert_eq!(ids(&body["result"]), ids(&direct["result"]));
    let m = metrics(&a).await;
    assert!(
        m.contains("secondpass_fallback_total{from=\"down\",to=\"none\"} 1"),
        "{m}"
    );
    assert!(m.contains("secondpass_fail_open_total{collection=\"docs\"} 1"));
}

#[tokio::test]
async fn breaker_opens_skips_and_closes_after_a_good_probe() {
    // A stub that fails once, then answers: the first failure opens the breaker.
    let stub = ProviderStub::start(
        Api::Tei,
        StubOptions {
            behaviour: Behaviour::ServerErrorThenOk,
            ..Default::default()
        },
    )
    .await;
    let extra = format!(
        "[rerankers.flaky]\nkind = \"tei\"\nbase_url = \"{}\"\nmax_retries = 0\nbreaker_failures = 1\nbreaker_open_ms = 3000\n\
         [collections.docs]\nrerankers = [\"flaky\", \"local\"]\n",
        stub.url()
    );
    let (_q, a) = with_double(&["docs"], &extra).await;
    a.seed("docs", false).await;

    let first = search(&a, 2).await;
    assert_eq!(first["rerank"]["reranker"], "local", "{first}");
    assert_eq!(stub.calls(), 1);
    // open: flaky is skipped without a call
    let second = search(&a, 2).await;
    assert_eq!(second["rerank"]["reranker"], "local");
    assert!(second["rerank"]["fallback"][0]["error"]
        .as_str()
        .unwrap()
        .contains("circuit breaker open"));
    assert_eq!(stub.calls(), 1);
    assert!(metrics(&a)
        .await
        .contains("secondpass_breaker_state{reranker=\"flaky\"} 1"));
    // after the open period (long enough that a slow local rerank on a busy machine
    // does not outlast it) a probe goes through, succeeds, and the breaker closes
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = search(&a, 2).await;
        if body["rerank"]["reranker"] == "flaky" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "breaker never let a probe through"
        );
        tokio::task::yield_now().await;
    }
    assert!(metrics(&a)
        .await
        .contains("secondpass_breaker_state{reranker=\"flaky\"} 0"));
    assert_eq!(search(&a, 2).await["rerank"]["reranker"], "flaky");
}

#[tokio::test]
async fn rerank_api_uses_its_own_chain() {
    let (_q, b) = with_double(&[], "").await;
    let r = support::request(
        &b.client,
        http::Method::POST,
        &b.url("/v2/rerank"),
        &[],
        Some(&json!({"model": "x", "query": QUERY, "documents": ["Berlin is the capital of Germany.", "Mount Everest is high."]})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["results"][0]["index"], 0);
}
