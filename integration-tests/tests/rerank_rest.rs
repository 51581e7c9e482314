//! secondpass (port 0) in front of the in-process Qdrant double, reranking with the
//! real shared model.

mod support;

use http::Method;
use serde_json::{json, Value};
use support::{ids, model_order, query_vector, request, scenario, with_double};

#[tokio::test]
async fn reranks_every_endpoint_like_the_model_says() {
    let (_qdrant, proxy) = with_double(&["docs"], "").await;
    scenario::run(&proxy, "docs").await;
}

#[tokio::test]
async fn widened_request_is_what_qdrant_receives() {
    let (qdrant, proxy) = with_double(&["docs"], "[collections.docs]\npool = 6\n").await;
    proxy.seed("docs", false).await;
    qdrant.clear_request_log();
    let r = proxy
        .post(
            "/collections/docs/points/search",
            &[("api-key", "secret-key"), ("authorization", "Bearer tok")],
            &json!({"vector": query_vector(), "limit": 2, "offset": 1, "with_payload": {"include": ["title"]},
                    "score_threshold": 0.1, "rerank": {"query": "capital of Germany"}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let log = qdrant.request_log();
    assert_eq!(log.len(), 1);
    let sent = log[0].json().unwrap();
    assert_eq!(
        sent,
        &json!({"vector": query_vector(), "limit": 6, "with_payload": {"include": ["title", "text"]},
                "score_threshold": 0.1})
    );
    assert_eq!(log[0].header("api-key"), Some("secret-key"));
    assert_eq!(log[0].header("authorization"), Some("Bearer tok"));
    assert!(log[0].header("x-rerank-query").is_none());

    // a requested pool is capped by max_pool and never below offset + limit
    qdrant.clear_request_log();
    proxy
        .post(
            "/collections/docs/points/query",
            &[("x-rerank-query", "q")],
            &json!({"query": query_vector(), "limit": 3, "offset": 2, "rerank": {"pool": 2}}),
        )
        .await;
    assert_eq!(qdrant.request_log()[0].json().unwrap()["limit"], 5);
}

#[tokio::test]
async fn no_text_forwards_the_body_unchanged() {
    let (qdrant, proxy) = with_double(&["docs"], "").await;
    proxy.seed("docs", false).await;
    qdrant.clear_request_log();
    let body = json!({"query": query_vector(), "limit": 3, "offset": 1, "with_payload": ["title"]});
    let r = proxy
        .post("/collections/docs/points/query", &[], &body)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(qdrant.request_log()[0].json().unwrap(), &body);
}

#[tokio::test]
async fn document_query_text_is_used_and_forwarded_as_is() {
    let (qdrant, proxy) = with_double(&["hybrid"], "").await;
    proxy.seed("hybrid", true).await;
    let doc_query = json!({"text": "capital of Germany", "model": "qdrant/bm25"});
    for query in [doc_query.clone(), json!({"nearest": doc_query})] {
        qdrant.clear_request_log();
        let r = proxy
            .post(
                "/collections/hybrid/points/query",
                &[],
                &json!({"query": query, "using": "bm25", "limit": 2, "with_payload": ["title"]}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let body = r.json();
        assert_eq!(body["rerank"]["status"], "applied", "{body}");
        let sent = qdrant.request_log()[0].json().unwrap().clone();
        assert_eq!(sent["query"], query);
        assert_eq!(sent["limit"], 100);
        // every point has the title only; scores are probabilities
        for p in body["result"]["points"].as_array().unwrap() {
            assert_eq!(p["payload"].as_object().unwrap().len(), 1, "{p}");
            let s = p["score"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&s));
        }
    }
}

#[tokio::test]
async fn collections_with_reranking_off_pass_through_unchanged() {
    let (qdrant, proxy) = with_double(&["docs"], "").await;
    proxy.seed("plain", false).await;
    let body = json!({"vector": query_vector(), "limit": 3, "with_payload": true});
    for gzip in [false, true] {
        let h: &[(&str, &str)] = if gzip {
            &[("accept-encoding", "gzip")]
        } else {
            &[]
        };
        let via = request(
            &proxy.client,
            Method::POST,
            &proxy.url("/collections/plain/points/search"),
            h,
            Some(&body),
        )
        .await;
        let direct = request(
            &proxy.client,
            Method::POST,
            &proxy.direct("/collections/plain/points/search"),
            h,
            Some(&body),
        )
        .await;
        assert_eq!(via.status, direct.status);
        assert_eq!(
            via.header("content-encoding"),
            direct.header("content-encoding")
        );
        assert_eq!(via.header("content-type"), direct.header("content-type"));
        assert_eq!(via.header("vary"), direct.header("vary"));
        let (mut a, mut b) = (via.json(), direct.json());
        a["time"] = Value::Null;
        b["time"] = Value::Null;
        assert_eq!(a, b);
    }
    // and every other endpoint too: scroll, count, retrieve, errors
    for (path, body) in [
        (
            "/collections/docs/points/scroll",
            json!({"limit": 2, "with_payload": true}),
        ),
        ("/collections/plain/points/count", json!({})),
        (
            "/collections/nope/points/search",
            json!({"vector": query_vector(), "limit": 3}),
        ),
    ] {
        let _ = &qdrant;
        let via = proxy.post(path, &[], &body).await;
        let direct = proxy.post_direct(path, &body).await;
        assert_eq!(via.status, direct.status, "{path}");
        let (mut a, mut b) = (via.json(), direct.json());
        a["time"] = Value::Null;
        b["time"] = Value::Null;
        assert_eq!(a, b, "{path}");
    }
    let via = request(
        &proxy.client,
        Method::GET,
        &proxy.url("/collections/plain/points/1?x=1"),
        &[],
        None,
    )
    .await;
    assert_eq!(via.status, 200);
    assert_eq!(via.json()["result"]["id"], 1);
    let via = request(
        &proxy.client,
        Method::GET,
        &proxy.url("/collections/plain/nothing-here"),
        &[],
        None,
    )
    .await;
    assert_eq!(via.status, 404);
}

#[tokio::test]
async fn malformed_json_gets_qdrants_own_error() {
    let (_qdrant, proxy) = with_double(&["docs"], "").await;
    proxy.seed("docs", false).await;
    let raw = "{\"vector\": [1,2,3,4], \"limit\": ";
    let req = http::Request::post(proxy.url("/collections/docs/points/search"))
        .header("content-type", "application/json")
        .header("x-rerank-query", "q")
        .body(http_body_util::Full::new(bytes::Bytes::from(raw)))
        .unwrap();
    let resp = proxy.client.request(req).await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = serde_json::from_slice(
        &http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    assert!(body["status"]["error"]
        .as_str()
        .unwrap()
        .starts_with("Format error in JSON body"));
}

#[tokio::test]
async fn gzip_accepting_clients_get_gzip_json_for_reranked_answers() {
    let (_qdrant, proxy) = with_double(&["docs"], "").await;
    proxy.seed("docs", false).await;
    let r = proxy
        .post(
            "/collections/docs/points/search",
            &[
                ("accept-encoding", "gzip"),
                ("x-rerank-query", "capital of Germany"),
            ],
            &json!({"vector": query_vector(), "limit": 2}),
        )
        .await;
    assert_eq!(r.status, 200);
    // Compressed as Qdrant would have (`request` gunzips `body`; `raw` is as sent).
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_ne!(r.raw, r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["rerank"]["status"], "applied");
}

#[tokio::test]
async fn dotted_text_field_and_raw_scores() {
    let extra = "[collections.docs]\ntext_field = \"meta.body\"\nscore_mode = \"raw\"\n";
    let (_qdrant, proxy) = with_double(&["docs"], extra).await;
    proxy.seed("docs", false).await;
    let r = proxy
        .post(
            "/collections/docs/points/search",
            &[("x-rerank-query", "how many inhabitants")],
            &json!({"vector": query_vector(), "limit": 8, "with_payload": ["title"]}),
        )
        .await;
    let body = r.json();
    // meta.body is text for 4 points (7 has a number, 5/6/uuid have none)
    assert_eq!(body["rerank"]["candidates"], 4, "{body}");
    let points = body["result"]["points"]
        .as_array()
        .or(body["result"].as_array())
        .unwrap();
    let scores: Vec<f64> = points
        .iter()
        .map(|p| p["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores[..4].iter().any(|s| !(0.0..=1.0).contains(s)),
        "raw logits expected: {scores:?}"
    );
    assert!(points.iter().all(|p| p["payload"].get("meta").is_none()));
    let _ = model_order; // (the order itself is checked in the scenario)
    let _ = ids;
}
