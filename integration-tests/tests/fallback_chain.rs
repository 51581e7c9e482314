//! Fallback chains end to end: secondpass A reranks through a hosted-API reranker
//! pointed at secondpass B's own `/rerank` (a real server with the real model), with a
//! failing reranker ahead of it in the chain, and breakers that open and close.

mod support;

use std::time::{Duration, Instant};

use secondpass_it::provider_stubs::{expected_score, Api, Behaviour, ProviderStub, StubOptions};
use serde_json::{json, Value};
use support::{ids, model_order, proxy, qdrant, query_vector, Proxy};

const QUERY: &str = "capital of Germany";

async fn metrics(p: &Proxy) -> String {
    String::from_utf8(p.get_admin("/metrics").await.body.to_vec()).unwrap()
}

async fn search(p: &Proxy, docs: &str, limit: usize) -> Value {
    p.post(
        &format!("/collections/{docs}/points/search"),
        &[("x-rerank-query", QUERY)],
        &json!({"vector": query_vector(), "limit": limit}),
    )
    .await
    .json()
}

#[tokio::test]
async fn a_hosted_reranker_pointed_at_another_secondpass_reranks_end_to_end() {
    // B: a plain secondpass whose /rerank (TEI shape) is backed by the local model.
    let b = proxy(&[], "[rerank_api]\nenabled = true\n").await;
    let docs = qdrant().collection("docs");
    let extra = format!(
        "[rerankers.remote]\nkind = \"tei\"\nbase_url = \"http://{}\"\n\
         [rerankers.down]\nkind = \"tei\"\nbase_url = \"http://127.0.0.1:1\"\nmax_retries = 0\n\
         [collections.{docs}]\nrerankers = [\"down\", \"remote\"]\n",
        b.server.rest_addr
    );
    let a = proxy(&[&docs], &extra).await;
    a.seed(&docs, false).await;
    let all = a
        .post_direct(
            &format!("/collections/{docs}/points/search"),
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
            &format!("/collections/{docs}/points/search"),
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
}

#[tokio::test]
async fn exhausted_chain_fails_open_and_says_why() {
    let docs = qdrant().collection("docs");
    let extra = format!(
        "[rerankers.down]\nkind = \"tei\"\nbase_url = \"http://127.0.0.1:1\"\nmax_retries = 0\n\
         [collections.{docs}]\nrerankers = [\"down\"]\n"
    );
    let a = proxy(&[&docs], &extra).await;
    a.seed(&docs, false).await;
    let direct = a
        .post_direct(
            &format!("/collections/{docs}/points/search"),
            &json!({"vector": query_vector(), "limit": 3}),
        )
        .await
        .json();
    let body = search(&a, &docs, 3).await;
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
    assert!(m.contains(&format!(
        "secondpass_fail_open_total{{collection=\"{docs}\"}} 1"
    )));
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
    let docs = qdrant().collection("docs");
    let extra = format!(
        "[rerankers.flaky]\nkind = \"tei\"\nbase_url = \"{}\"\nmax_retries = 0\nbreaker_failures = 1\nbreaker_open_ms = 3000\n\
         [collections.{docs}]\nrerankers = [\"flaky\", \"local\"]\n",
        stub.url()
    );
    let a = proxy(&[&docs], &extra).await;
    a.seed(&docs, false).await;

    let first = search(&a, &docs, 2).await;
    assert_eq!(first["rerank"]["reranker"], "local", "{first}");
    assert_eq!(stub.calls(), 1);
    // open: flaky is skipped without a call
    let second = search(&a, &docs, 2).await;
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
        let body = search(&a, &docs, 2).await;
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
    assert_eq!(search(&a, &docs, 2).await["rerank"]["reranker"], "flaky");
}

/// The rerank API runs its own chain (`rerank_api.rerankers`), not `local` and not a
/// collection's: here an unreachable reranker, then a TEI stub whose scores (word
/// overlap) no model gives.
#[tokio::test]
async fn rerank_api_uses_its_own_chain() {
    let stub = ProviderStub::start(Api::Tei, StubOptions::default()).await;
    let docs = qdrant().collection("docs");
    let extra = format!(
        "[rerankers.down]\nkind = \"tei\"\nbase_url = \"http://127.0.0.1:1\"\nmax_retries = 0\n\
         [rerankers.stub]\nkind = \"tei\"\nbase_url = \"{}\"\n\
         [rerank_api]\nenabled = true\nrerankers = [\"down\", \"stub\"]\n\
         [collections.{docs}]\nrerankers = [\"local\"]\n",
        stub.url()
    );
    let b = proxy(&[&docs], &extra).await;
    let texts = [
        "Mount Everest is high.",
        "Berlin is the capital of Germany.",
        "Germany",
    ];
    let r = b
        .post(
            "/rerank",
            &[],
            &json!({"query": QUERY, "texts": texts, "raw_scores": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut want: Vec<(usize, f32)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (i, expected_score(Api::Tei, QUERY, t)))
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    let got: Vec<(usize, f32)> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["index"].as_u64().unwrap() as usize,
                x["score"].as_f64().unwrap() as f32,
            )
        })
        .collect();
    assert_eq!(got.len(), want.len());
    for ((gi, gs), (wi, ws)) in got.iter().zip(&want) {
        assert_eq!(gi, wi, "the stub's order: {got:?} vs {want:?}");
        assert!(
            (gs - ws).abs() < 1e-5,
            "the stub's score: {got:?} vs {want:?}"
        );
    }
    assert_eq!(stub.calls(), 1, "the stub answered");
    let m = metrics(&b).await;
    assert!(
        m.contains("secondpass_fallback_total{from=\"down\",to=\"stub\"} 1"),
        "{m}"
    );
    assert!(
        !m.contains("secondpass_rerank_duration_seconds_count{reranker=\"local\"}"),
        "local must not have run: {m}"
    );
}

/// A half-open probe whose client goes away mid-call (the search's connection
/// dropped while the provider hangs) frees the probe slot: once the provider
/// recovers, the next search probes and reranking resumes. Before, the abandoned
/// probe held the slot for good and every later search failed open.
#[tokio::test]
async fn an_abandoned_probe_does_not_leave_the_breaker_stuck() {
    let stub = ProviderStub::start(
        Api::Tei,
        StubOptions {
            behaviour: Behaviour::AlwaysServerError,
            ..Default::default()
        },
    )
    .await;
    let docs = qdrant().collection("docs");
    let extra = format!(
        "[rerankers.flaky]\nkind = \"tei\"\nbase_url = \"{}\"\nmax_retries = 0\ntimeout_ms = 60000\n\
         breaker_failures = 1\nbreaker_open_ms = 200\n\
         [collections.{docs}]\nrerankers = [\"flaky\"]\ntimeout_ms = 60000\n",
        stub.url()
    );
    let a = proxy(&[&docs], &extra).await;
    a.seed(&docs, false).await;

    // a 500 opens the breaker
    let first = search(&a, &docs, 2).await;
    assert_eq!(first["rerank"]["status"], "failed_open", "{first}");
    assert_eq!(stub.calls(), 1);

    // the provider hangs; once the breaker lets a probe through, its client goes away
    stub.set_behaviour(Behaviour::Slow(Duration::from_secs(600)));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "no probe reached the provider");
        let probe_reached_the_stub = async {
            while stub.calls() < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            // still open: failed open without a call; try again
            _ = search(&a, &docs, 2) => continue,
            // the probe is in flight: leaving drops the search mid-call
            _ = probe_reached_the_stub => break,
        }
    }

    // the provider recovers: reranking resumes (a probe goes through and closes it)
    stub.set_behaviour(Behaviour::Normal);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = search(&a, &docs, 2).await;
        if body["rerank"]["status"] == "applied" {
            assert_eq!(body["rerank"]["reranker"], "flaky", "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reranking never resumed after the abandoned probe: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics(&a)
        .await
        .contains("secondpass_breaker_state{reranker=\"flaky\"} 0"));
}
