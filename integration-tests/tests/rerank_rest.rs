//! secondpass (port 0) in front of the real Qdrant, reranking with the real shared
//! model; where a test checks what Qdrant was sent, a relay in between records it.

mod support;

use http::Method;
use serde_json::{json, Value};
use support::{ids, model, proxy, qdrant, query_vector, relayed, request, scenario};

use secondpass::rerank::{RerankRequest, Reranker};

#[tokio::test]
async fn reranks_every_endpoint_like_the_model_says() {
    let docs = qdrant().collection("docs");
    let proxy = proxy(&[&docs], "").await;
    scenario::run(&proxy, &docs).await;
}

#[tokio::test]
async fn widened_request_is_what_qdrant_receives() {
    let docs = qdrant().collection("docs");
    let (relay, proxy) = relayed(&[&docs], &format!("[collections.{docs}]\npool = 6\n")).await;
    proxy.seed(&docs, false).await;
    relay.forget();
    let r = proxy
        .post(
            &format!("/collections/{docs}/points/search"),
            &[("api-key", "secret-key"), ("authorization", "Bearer tok")],
            &json!({"vector": query_vector(), "limit": 2, "offset": 1, "with_payload": {"include": ["title"]},
                    "score_threshold": 0.1, "rerank": {"query": "capital of Germany"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["rerank"]["status"], "applied");
    let log = relay.seen();
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].json(),
        json!({"vector": query_vector(), "limit": 6, "with_payload": {"include": ["title", "text"]},
                "score_threshold": 0.1})
    );
    assert_eq!(log[0].header("api-key"), Some("secret-key"));
    assert_eq!(log[0].header("authorization"), Some("Bearer tok"));
    assert!(log[0].header("x-rerank-query").is_none());

    // a requested pool is capped by max_pool and never below offset + limit
    relay.forget();
    let r = proxy
        .post(
            &format!("/collections/{docs}/points/query"),
            &[("x-rerank-query", "q")],
            &json!({"query": query_vector(), "limit": 3, "offset": 2, "rerank": {"pool": 2}}),
        )
        .await;
    assert_eq!(r.json()["rerank"]["status"], "applied");
    assert_eq!(relay.seen()[0].json()["limit"], 5);
}

#[tokio::test]
async fn no_text_forwards_the_body_unchanged() {
    let docs = qdrant().collection("docs");
    let (relay, proxy) = relayed(&[&docs], "").await;
    proxy.seed(&docs, false).await;
    relay.forget();
    let body = json!({"query": query_vector(), "limit": 3, "offset": 1, "with_payload": ["title"]});
    let r = proxy
        .post(&format!("/collections/{docs}/points/query"), &[], &body)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["rerank"]["status"], "skipped");
    assert_eq!(relay.seen()[0].json(), body);
}

#[tokio::test]
async fn document_query_text_is_used_and_forwarded_as_is() {
    let hybrid = qdrant().collection("hybrid");
    let (relay, proxy) = relayed(&[&hybrid], "").await;
    proxy.seed(&hybrid, true).await;
    let doc_query = json!({"text": "capital of Germany", "model": "qdrant/bm25"});
    for query in [doc_query.clone(), json!({"nearest": doc_query})] {
        relay.forget();
        let r = proxy
            .post(
                &format!("/collections/{hybrid}/points/query"),
                &[],
                &json!({"query": query, "using": "bm25", "limit": 2, "with_payload": ["title"]}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let body = r.json();
        assert_eq!(body["rerank"]["status"], "applied", "{body}");
        let sent = relay.seen()[0].json();
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

/// Status, the headers that describe the body, and the body without `time`.
fn same_answer(via: &support::Resp, direct: &support::Resp, what: &str) {
    assert_eq!(via.status, direct.status, "{what}");
    for h in ["content-encoding", "content-type", "vary"] {
        assert_eq!(via.header(h), direct.header(h), "{what}: {h}");
    }
    let (mut a, mut b) = (via.json(), direct.json());
    a["time"] = Value::Null;
    b["time"] = Value::Null;
    assert_eq!(a, b, "{what}");
}

#[tokio::test]
async fn collections_with_reranking_off_pass_through_unchanged() {
    let (docs, plain) = (qdrant().collection("docs"), qdrant().collection("plain"));
    let proxy = proxy(&[&docs], "").await;
    proxy.seed(&plain, false).await;
    let body = json!({"vector": query_vector(), "limit": 3, "with_payload": true});
    let path = format!("/collections/{plain}/points/search");
    for gzip in [false, true] {
        let h: &[(&str, &str)] = if gzip {
            &[("accept-encoding", "gzip")]
        } else {
            &[]
        };
        let via = request(
            &proxy.client,
            Method::POST,
            &proxy.url(&path),
            h,
            Some(&body),
        )
        .await;
        let direct = request(
            &proxy.client,
            Method::POST,
            &proxy.direct(&path),
            h,
            Some(&body),
        )
        .await;
        same_answer(&via, &direct, &format!("gzip {gzip}"));
        assert_eq!(via.header("content-encoding"), gzip.then_some("gzip"));
    }
    // and every other endpoint too: scroll, count, errors (a missing collection, even
    // one with reranking on), a point, an unknown path
    for (method, path, body) in [
        (
            Method::POST,
            format!("/collections/{plain}/points/scroll"),
            Some(json!({"limit": 2, "with_payload": true})),
        ),
        (
            Method::POST,
            format!("/collections/{plain}/points/count"),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/collections/{docs}/points/search"),
            Some(json!({"vector": query_vector(), "limit": 3})),
        ),
        (
            Method::GET,
            format!("/collections/{plain}/points/1?x=1"),
            None,
        ),
        (
            Method::GET,
            format!("/collections/{plain}/nothing-here"),
            None,
        ),
    ] {
        let via = request(
            &proxy.client,
            method.clone(),
            &proxy.url(&path),
            &[],
            body.as_ref(),
        )
        .await;
        let direct = request(
            &proxy.client,
            method,
            &proxy.direct(&path),
            &[],
            body.as_ref(),
        )
        .await;
        if via.header("content-type") == Some("application/json") {
            same_answer(&via, &direct, &path);
        } else {
            assert_eq!(
                (via.status, &via.body),
                (direct.status, &direct.body),
                "{path}"
            );
        }
    }
}

#[tokio::test]
async fn malformed_json_gets_qdrants_own_error() {
    let docs = qdrant().collection("docs");
    let proxy = proxy(&[&docs], "").await;
    proxy.seed(&docs, false).await;
    let raw = "{\"vector\": [1,2,3,4], \"limit\": ";
    let path = format!("/collections/{docs}/points/search");
    let mut answers = Vec::new();
    for url in [proxy.url(&path), proxy.direct(&path)] {
        let req = http::Request::post(url)
            .header("content-type", "application/json")
            .header("x-rerank-query", "q")
            .body(http_body_util::Full::new(bytes::Bytes::from(raw)))
            .unwrap();
        let resp = proxy.client.request(req).await.unwrap();
        let status = resp.status();
        let mut body: Value = serde_json::from_slice(
            &http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes(),
        )
        .unwrap();
        body["time"] = Value::Null;
        answers.push((status, body));
    }
    assert_eq!(answers[0].0, 400);
    assert!(answers[0].1["status"]["error"]
        .as_str()
        .unwrap()
        .starts_with("Format error in JSON body"));
    assert_eq!(answers[0], answers[1], "Qdrant's own words");
}

#[tokio::test]
async fn gzip_accepting_clients_get_gzip_json_for_reranked_answers() {
    let docs = qdrant().collection("docs");
    let proxy = proxy(&[&docs], "").await;
    proxy.seed(&docs, false).await;
    let r = proxy
        .post(
            &format!("/collections/{docs}/points/search"),
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
    let docs = qdrant().collection("docs");
    let extra = format!("[collections.{docs}]\ntext_field = \"meta.body\"\nscore_mode = \"raw\"\n");
    let proxy = proxy(&[&docs], &extra).await;
    proxy.seed(&docs, false).await;
    const QUERY: &str = "how many inhabitants";
    let r = proxy
        .post(
            &format!("/collections/{docs}/points/search"),
            &[("x-rerank-query", QUERY)],
            &json!({"vector": query_vector(), "limit": 8, "with_payload": ["title"]}),
        )
        .await;
    let body = r.json();
    // meta.body is text for points 1-4 (7 has a number, 5, 6 and the UUID none)
    assert_eq!(body["rerank"]["candidates"], 4, "{body}");
    let points = body["result"].as_array().unwrap();
    assert!(points.iter().all(|p| p["payload"].get("meta").is_none()));

    // The order: those four by the model's raw logit for their meta.body, then the
    // rest in Qdrant's order.
    let upsert = support::recorded_request("upsert");
    let body_of = |id: &Value| {
        upsert["points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| &p["id"] == id)
            .and_then(|p| p["payload"]["meta"]["body"].as_str().map(String::from))
    };
    let direct = proxy
        .post_direct(
            &format!("/collections/{docs}/points/search"),
            &json!({"vector": query_vector(), "limit": 8}),
        )
        .await
        .json();
    let qdrant_order = ids(&direct["result"]);
    let (with_body, without): (Vec<Value>, Vec<Value>) = qdrant_order
        .iter()
        .cloned()
        .partition(|id| body_of(id).is_some());
    let logits = model()
        .rerank(RerankRequest::new(
            QUERY,
            with_body.iter().map(|id| body_of(id).unwrap()).collect(),
        ))
        .await
        .unwrap();
    let mut scored: Vec<(Value, f32)> = with_body.into_iter().zip(logits).collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut want: Vec<Value> = scored.iter().map(|(id, _)| id.clone()).collect();
    want.extend(without);
    assert_ne!(want, qdrant_order, "the model must change the order here");
    assert_eq!(ids(&body["result"]), want, "{body}");
    for (p, (_, logit)) in points.iter().zip(&scored) {
        let got = p["score"].as_f64().unwrap() as f32;
        assert!((got - logit).abs() < 1e-4, "raw logit {logit}, got {got}");
    }
    assert!(
        scored.iter().any(|(_, s)| !(0.0..=1.0).contains(s)),
        "raw logits expected: {scored:?}"
    );
}
