//! Findings of the external fault and fuzz probe, end to end (secondpass on port 0 in
//! front of the real Qdrant, REST and gRPC, with the real model): the query-size cap on every
//! way in, finite scores whatever a hosted reranker answers, and one collection's
//! timeouts not opening the breaker for the others.

mod support;

use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::{query, vector_input, DenseVector, Query, QueryPoints, VectorInput};
use secondpass::config::OnnxConfig;
use secondpass::rerank::onnx::OnnxReranker;
use secondpass::rerank::Registry;
use secondpass_it::provider_stubs::{Api, Behaviour, ProviderStub, StubOptions};
use serde_json::{json, Value};
use std::sync::Arc;
use support::{config, config_text, proxy, qdrant, query_vector, relayed, request, Proxy};

const QUERY: &str = "capital of Germany";

fn vector_query() -> Option<Query> {
    Some(Query {
        variant: Some(query::Variant::Nearest(VectorInput {
            variant: Some(vector_input::Variant::Dense(DenseVector {
                data: vec![0.2, 0.1, 0.9, 0.7],
            })),
        })),
    })
}

fn grpc_query(coll: &str, text: &str) -> tonic::Request<QueryPoints> {
    let mut r = tonic::Request::new(QueryPoints {
        collection_name: coll.into(),
        query: vector_query(),
        limit: Some(4),
        ..Default::default()
    });
    r.metadata_mut().insert_bin(
        "x-rerank-query-bin",
        tonic::metadata::MetadataValue::from_bytes(text.as_bytes()),
    );
    r
}

async fn metrics(p: &Proxy) -> String {
    String::from_utf8(p.get_admin("/metrics").await.body.to_vec()).unwrap()
}

/// A reranked search of `coll` for `query`: the answer's body.
async fn search(p: &Proxy, coll: &str, query: &str) -> Value {
    p.post(
        &format!("/collections/{coll}/points/search"),
        &[("x-rerank-query", query)],
        &json!({"vector": query_vector(), "limit": 4}),
    )
    .await
    .json()
}

/// secondpass with its own copy of the shared model as `local` (a small queue, say),
/// reranking `docs` (seeded), with `extra` configuration.
async fn own_model_proxy(docs: &str, model: OnnxConfig, extra: &str) -> Proxy {
    let own = OnnxReranker::load(&model).expect("load the shared model");
    let mut registry = Registry::default();
    registry.insert("local", Arc::new(own));
    let p = Proxy::start_with(config(&qdrant().url, &[docs], extra), registry).await;
    p.seed(docs, false).await;
    p
}

#[tokio::test]
async fn query_text_beyond_max_query_bytes_is_refused_on_every_way_in() {
    let (docs, big) = (qdrant().collection("docs"), qdrant().collection("big"));
    let extra =
        format!("[collections.{docs}]\nmax_query_bytes = 64\n[rerank_api]\nenabled = true\n");
    let proxy = proxy(&[&docs, &big], &extra).await;
    proxy.seed(&docs, false).await;
    proxy.seed(&big, false).await;
    let long = "capital-".repeat(9); // 72 bytes
    let path = &format!("/collections/{docs}/points/search");

    // REST header: 400 in Qdrant's error format
    let r = proxy
        .post(
            path,
            &[("x-rerank-query", &long)],
            &json!({"vector": query_vector(), "limit": 3}),
        )
        .await;
    assert_eq!(r.status, 400);
    let err = r.json()["status"]["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("max_query_bytes (64)") && err.contains("72 bytes"),
        "{err}"
    );
    // REST body `rerank.query`, in a batch too
    let r = proxy
        .post(
            path,
            &[],
            &json!({"vector": query_vector(), "limit": 3, "rerank": {"query": long}}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = proxy
        .post(
            &format!("/collections/{docs}/points/search/batch"),
            &[],
            &json!({"searches": [{"vector": query_vector(), "limit": 3, "rerank": {"query": long}}]}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    // at the cap it reranks
    let ok = "capital-".repeat(8);
    let r = proxy
        .post(
            path,
            &[("x-rerank-query", &ok)],
            &json!({"vector": query_vector(), "limit": 3}),
        )
        .await;
    assert_eq!(r.json()["rerank"]["status"], "applied");

    // gRPC metadata: INVALID_ARGUMENT
    let mut via = PointsClient::connect(format!("http://{}", proxy.server.grpc_addr))
        .await
        .unwrap();
    let e = via.query(grpc_query(&docs, &long)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("max_query_bytes"), "{e:?}");
    let ok_resp = via.query(grpc_query(&docs, &ok)).await.unwrap();
    assert_eq!(
        ok_resp.metadata().get("x-rerank-status").unwrap(),
        "applied"
    );

    // The probe's 10 MB query, under the default cap (16 KiB): refused at once
    let huge = "capital of Germany ".repeat(10 * 1024 * 1024 / 19);
    let r = proxy
        .post(
            &format!("/collections/{big}/points/search"),
            &[],
            &json!({"vector": query_vector(), "limit": 3, "rerank": {"query": huge}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["status"]["error"]
        .as_str()
        .unwrap()
        .contains("max_query_bytes (16384)"));
    // the own rerank API (bodies up to 2 MB): Cohere's 400, TEI's 422
    let huge = "capital of Germany ".repeat(6000);
    let r = proxy
        .post(
            "/v2/rerank",
            &[],
            &json!({"model": "m", "query": huge, "documents": ["a"]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("max_query_bytes"));
    let r = proxy
        .post("/rerank", &[], &json!({"query": huge, "texts": ["a"]}))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["error_type"], "Validation");
}

#[tokio::test]
async fn a_long_document_query_is_searched_but_not_reranked() {
    let hybrid = qdrant().collection("hybrid");
    let extra = format!("[collections.{hybrid}]\nmax_query_bytes = 8\n");
    let (relay, proxy) = relayed(&[&hybrid], &extra).await;
    proxy.seed(&hybrid, true).await;
    // A Document query's text is Qdrant's business: no 400, just no reranking.
    let doc_query = json!({"text": "capital of Germany", "model": "qdrant/bm25"});
    let body = json!({"query": doc_query, "using": "bm25", "limit": 2});
    relay.forget();
    let r = proxy
        .post(&format!("/collections/{hybrid}/points/query"), &[], &body)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let got = r.json();
    assert_eq!(got["rerank"]["status"], "skipped", "{got}");
    assert!(
        got["rerank"]["reason"]
            .as_str()
            .unwrap()
            .contains("max_query_bytes"),
        "{got}"
    );
    // sent as it came: not widened
    assert_eq!(relay.seen()[0].json(), body);
}

#[tokio::test]
async fn scores_beyond_f32_come_back_finite_on_rest_grpc_and_the_rerank_api() {
    let stub = ProviderStub::start(
        Api::Cohere,
        StubOptions {
            api_key: Some("k-nonfinite".into()),
            behaviour: Behaviour::ScoresBeyondF32,
            ..Default::default()
        },
    )
    .await;
    let key = std::env::temp_dir().join(format!("secondpass-nonfinite-{}.key", std::process::id()));
    std::fs::write(&key, "k-nonfinite\n").unwrap();
    let docs = qdrant().collection("docs");
    let extra = format!(
        "[rerankers.co]\nkind = \"cohere\"\nmodel = \"rerank-v3.5\"\nbase_url = \"{}\"\n\
         api_key_file = \"{}\"\n[collections.{docs}]\nreranker = \"co\"\n\
         [rerank_api]\nenabled = true\nrerankers = [\"co\"]\n",
        stub.url(),
        key.display()
    );
    let proxy = proxy(&[&docs], &extra).await;
    std::fs::remove_file(&key).unwrap();
    proxy.seed(&docs, false).await;

    // REST: numbers, never null; the 1e39 is f32::MAX, the -1e39 the lowest
    let r = proxy
        .post(
            &format!("/collections/{docs}/points/search"),
            &[("x-rerank-query", QUERY)],
            &json!({"vector": query_vector(), "limit": 8}),
        )
        .await;
    let body = r.json();
    assert_eq!(body["rerank"]["status"], "applied", "{body}");
    let scores: Vec<&Value> = body["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["score"])
        .collect();
    assert!(scores.iter().all(|s| s.is_number()), "{body}");
    assert_eq!(scores[0].as_f64().unwrap() as f32, f32::MAX, "{body}");
    assert!(
        scores
            .iter()
            .any(|s| s.as_f64().unwrap() as f32 == f32::MIN),
        "{body}"
    );

    // gRPC: finite floats
    let mut via = PointsClient::connect(format!("http://{}", proxy.server.grpc_addr))
        .await
        .unwrap();
    let resp = via.query(grpc_query(&docs, QUERY)).await.unwrap();
    assert_eq!(resp.metadata().get("x-rerank-status").unwrap(), "applied");
    let points = resp.into_inner().result;
    assert!(points.iter().all(|p| p.score.is_finite()), "{points:?}");
    assert_eq!(points[0].score, f32::MAX);

    // the rerank API, Cohere and TEI shapes (raw scores too)
    let docs = json!(["Berlin is the capital of Germany", "Bananas", "capital"]);
    let r = proxy
        .post(
            "/v2/rerank",
            &[],
            &json!({"model": "m", "query": QUERY, "documents": docs}),
        )
        .await;
    let body = r.json();
    let results = body["results"].as_array().unwrap();
    assert!(
        results.iter().all(|r| r["relevance_score"].is_number()),
        "{body}"
    );
    let r = proxy
        .post(
            "/rerank",
            &[],
            &json!({"query": QUERY, "texts": docs, "raw_scores": true}),
        )
        .await;
    let body = r.json();
    assert!(
        body.as_array()
            .unwrap()
            .iter()
            .all(|r| r["score"].is_number()),
        "{body}"
    );

    let m = metrics(&proxy).await;
    assert!(
        m.contains("secondpass_nonfinite_scores_total{reranker=\"co\"}"),
        "{m}"
    );
}

#[tokio::test]
async fn one_collections_timeouts_do_not_open_the_breaker_for_the_others() {
    let (docs, tiny) = (qdrant().collection("docs"), qdrant().collection("tiny"));
    let extra = format!("[collections.{tiny}]\ntimeout_ms = 1\n");
    let proxy = proxy(&[&docs, &tiny], &extra).await;
    proxy.seed(&docs, false).await;
    proxy.seed(&tiny, false).await;
    // The local breaker opens after 5 consecutive failures: give it three times that
    // many timeouts (each a distinct query, so no cache could answer).
    let mut timeouts = 0;
    for i in 0..60 {
        if timeouts == 15 {
            break;
        }
        let q = format!("{QUERY} {i}");
        let r = proxy
            .post(
                &format!("/collections/{tiny}/points/search"),
                &[("x-rerank-query", &q)],
                &json!({"vector": query_vector(), "limit": 4}),
            )
            .await;
        let body = r.json();
        if body["rerank"]["status"] == "failed_open" {
            let reason = body["rerank"]["reason"].as_str().unwrap();
            assert!(reason.contains("timed out"), "{body}");
            timeouts += 1;
        }
    }
    assert_eq!(timeouts, 15, "a 1 ms budget should time out");
    // Another collection still reranks with the same reranker.
    let r = proxy
        .post(
            &format!("/collections/{docs}/points/search"),
            &[("x-rerank-query", QUERY)],
            &json!({"vector": query_vector(), "limit": 4}),
        )
        .await;
    let body = r.json();
    assert_eq!(body["rerank"]["status"], "applied", "{body}");
    let m = metrics(&proxy).await;
    assert!(
        m.contains("secondpass_breaker_state{reranker=\"local\"} 0"),
        "{m}"
    );
}

/// Qdrant's answer to a path it does not have: 404 (secondpass does not reuse the
/// connection Qdrant then closes: transit.rs `a_refused_post_does_not_break_the_next_request`).
fn qdrants(status: u16) -> bool {
    status == 404
}

/// The rerank API is opt-in: on the default config `/v1/rerank`, `/v2/rerank` and
/// `/rerank` are not secondpass's (they reach Qdrant, which has no such paths), so a
/// client port is no unauthenticated compute. Turned on with a token, a call without
/// it or with a wrong one is refused before any scoring.
#[tokio::test]
async fn rerank_api_is_opt_in_and_its_token_is_checked() {
    let cohere = json!({"model": "m", "query": QUERY, "documents": ["Berlin", "Bananas"]});
    let tei = json!({"query": QUERY, "texts": ["Berlin", "Bananas"]});
    let calls = [
        ("/v1/rerank", &cohere),
        ("/v2/rerank", &cohere),
        ("/rerank", &tei),
    ];
    let off = proxy(&[], "").await;
    for (path, body) in calls {
        let r = off.post(path, &[], body).await;
        assert!(
            qdrants(r.status.as_u16()),
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }

    std::env::set_var("SP_IT_RERANK_API_TOKEN", "it-s3cret");
    let on = proxy(
        &[],
        "[rerank_api]\nenabled = true\ntoken_env = \"SP_IT_RERANK_API_TOKEN\"\n",
    )
    .await;
    for (path, body) in calls {
        for auth in [None, Some("Bearer wrong"), Some("Bearer it-s3cre")] {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("authorization", a)).into_iter().collect();
            let r = on.post(path, &headers, body).await;
            assert_eq!(
                r.status,
                401,
                "{path} {auth:?}: {}",
                String::from_utf8_lossy(&r.body)
            );
        }
        let r = on
            .post(path, &[("authorization", "Bearer it-s3cret")], body)
            .await;
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

/// A reload turns the rerank API off (its paths are Qdrant's again) and on, and a
/// rotated token file takes effect without one: the token is read on every call.
#[tokio::test]
async fn rerank_api_follows_reload_and_a_rotated_token() {
    let dir = std::env::temp_dir().join(format!("sp-rerank-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (file, api_token, admin_token) = (
        dir.join("secondpass.toml"),
        dir.join("rerank-token"),
        dir.join("admin-token"),
    );
    std::fs::write(&api_token, "first\n").unwrap();
    std::fs::write(&admin_token, "adm1n\n").unwrap();
    let write = |enabled: bool| {
        let extra = format!(
            "[admin]\ntoken_file = {:?}\n[rerank_api]\nenabled = {enabled}\ntoken_file = {:?}\n",
            admin_token.display().to_string(),
            api_token.display().to_string()
        );
        std::fs::write(&file, config_text(&qdrant().url, &extra)).unwrap();
    };
    write(true);
    let p = Proxy::start_from_file(&file).await;
    let body = json!({"query": QUERY, "texts": ["Berlin", "Bananas"]});
    let status = |auth: &'static str| {
        let (p, body) = (&p, &body);
        async move {
            p.post("/rerank", &[("authorization", auth)], body)
                .await
                .status
        }
    };
    let reload = || async {
        let r = request(
            &p.client,
            http::Method::POST,
            &p.admin("/admin/reload"),
            &[("authorization", "Bearer adm1n")],
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    };
    assert_eq!(status("Bearer first").await, 200);

    std::fs::write(&api_token, "second").unwrap();
    assert_eq!(
        status("Bearer first").await,
        401,
        "the old token after rotation"
    );
    assert_eq!(status("Bearer second").await, 200);

    write(false);
    reload().await;
    let off = status("Bearer second").await.as_u16();
    assert!(
        qdrants(off),
        "off after the reload: Qdrant's path, not {off}"
    );

    write(true);
    reload().await;
    assert_eq!(
        status("Bearer second").await,
        200,
        "on again after the reload"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A burst of large rerank API calls that overflows the local queue (one caller's
/// doing) is refused call by call (429) but does not open the local breaker: the
/// searches of every collection keep being reranked. Before, five overloads in a row
/// opened it and every search failed open for 30 s.
#[tokio::test]
async fn a_burst_that_overflows_the_local_queue_does_not_open_its_breaker() {
    let docs = qdrant().collection("docs");
    // A 1 ms budget for the API: the calls that get into the queue time out (which is
    // neutral for the breaker) instead of succeeding later, which would close it and
    // hide what the overloads did.
    let model = OnnxConfig {
        queue_capacity: 1,
        workers: 1,
        ..support::model_config()
    };
    let p = own_model_proxy(
        &docs,
        model,
        "[rerank_api]\nenabled = true\ntimeout_ms = 1\n",
    )
    .await;

    let texts: Vec<String> = (0..64)
        .map(|i| format!("passage {i} about Berlin"))
        .collect();
    let calls = (0..24).map(|i| {
        let body = json!({"query": format!("{QUERY} {i}"), "texts": texts});
        let p = &p;
        async move { p.post("/rerank", &[], &body).await.status }
    });
    let statuses = futures_util::future::join_all(calls).await;
    let overloaded = statuses.iter().filter(|s| s.as_u16() == 429).count();
    assert!(
        overloaded >= 5,
        "the burst should overflow the queue: {statuses:?}"
    );

    // Once the worker has drained what the burst left in the queue, searches are
    // reranked again (well before the 30 s an open breaker would take).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let body = search(&p, &docs, QUERY).await;
        if body["rerank"]["status"] == "applied" {
            break;
        }
        let reason = body["rerank"]["reason"].as_str().unwrap_or_default();
        assert!(
            !reason.contains("circuit"),
            "the burst opened the breaker: {body}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "never reranked again: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let m = metrics(&p).await;
    assert!(
        m.contains("secondpass_breaker_state{reranker=\"local\"} 0"),
        "{m}"
    );
}

/// A provider refusing one request's content (422) is that request's problem: the
/// breaker stays closed and the next search asks the provider again.
#[tokio::test]
async fn a_providers_refusal_of_one_request_does_not_open_its_breaker() {
    let stub = ProviderStub::start(
        Api::Tei,
        StubOptions {
            behaviour: Behaviour::Reject422,
            ..Default::default()
        },
    )
    .await;
    let docs = qdrant().collection("docs");
    let extra = format!(
        "[rerankers.h]\nkind = \"tei\"\nbase_url = \"{}\"\nmax_retries = 0\n\
         breaker_failures = 1\n[collections.{docs}]\nrerankers = [\"h\"]\n",
        stub.url()
    );
    let p = proxy(&[&docs], &extra).await;
    p.seed(&docs, false).await;
    for n in 1..=3 {
        let body = search(&p, &docs, &format!("{QUERY} {n}")).await;
        assert_eq!(body["rerank"]["status"], "failed_open", "{body}");
        assert!(
            !body["rerank"]["reason"]
                .as_str()
                .unwrap()
                .contains("circuit"),
            "{body}"
        );
        assert_eq!(stub.calls(), n, "search {n} asked the provider");
    }
    let m = metrics(&p).await;
    assert!(
        m.contains("secondpass_breaker_state{reranker=\"h\"} 0"),
        "{m}"
    );
}

/// The local queue is bounded by pairs, and the rerank API gets half of it: a burst of
/// large API calls is refused (429) long before `queue_capacity` jobs wait, while a
/// proxied search sent in the middle of it still gets in and is reranked.
#[tokio::test]
async fn the_local_queue_is_bounded_by_pairs_and_the_api_gets_half() {
    let docs = qdrant().collection("docs");
    let model = OnnxConfig {
        queue_capacity: 64,
        queue_pairs: 100,
        workers: 1,
        ..support::model_config()
    };
    let p = own_model_proxy(&docs, model, "[rerank_api]\nenabled = true\n").await;

    let texts: Vec<String> = (0..40)
        .map(|i| format!("passage {i} about Berlin"))
        .collect();
    let burst = futures_util::future::join_all((0..10).map(|i| {
        let body = json!({"query": format!("{QUERY} {i}"), "texts": texts});
        let p = &p;
        async move {
            let r = p.post("/rerank", &[], &body).await;
            (
                r.status.as_u16(),
                String::from_utf8_lossy(&r.body).into_owned(),
            )
        }
    }));
    let (answers, body) = tokio::join!(burst, search(&p, &docs, QUERY));
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert!(
        !refused.is_empty(),
        "10 jobs of 40 pairs fit 64 jobs but not 50 pairs: {statuses:?}"
    );
    assert!(
        refused.iter().all(|(_, b)| b.contains("queue is full")),
        "{refused:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    assert_eq!(body["rerank"]["status"], "applied", "{body}");
}
