//! The end-to-end REST rerank scenario against the real Qdrant (rerank_rest.rs).
//! Checks only what a client sees.

use serde_json::{json, Value};

use super::{ids, model_order, query_vector, Proxy};

const QUERY: &str = "capital of Germany";

/// A group id with its hits in the model's order (score `None`: no text).
type RankedGroup = (Value, Vec<(Value, Option<f32>)>);

/// All candidates in Qdrant's order for the test vector.
async fn qdrant_order(p: &Proxy, coll: &str) -> Vec<Value> {
    let r = p
        .post_direct(
            &format!("/collections/{coll}/points/search"),
            &json!({"vector": query_vector(), "limit": 100}),
        )
        .await;
    ids(&r.json()["result"])
}

/// Runs every client-visible check on collection `coll` (reranking on, `docs` data).
pub async fn run(p: &Proxy, coll: &str) {
    p.seed(coll, false).await;
    let candidates = qdrant_order(p, coll).await;
    assert_eq!(candidates.len(), 8);
    let expected = model_order(QUERY, &candidates).await;
    let expected_ids: Vec<Value> = expected.iter().map(|(id, _)| id.clone()).collect();
    assert_ne!(
        expected_ids, candidates,
        "the model must change Qdrant's order for this test to mean anything"
    );

    // Legacy search, query text in the header: top 3 in the model's order, sigmoid scores.
    let r = p
        .post(
            &format!("/collections/{coll}/points/search"),
            &[("x-rerank-query", "capital%20of%20Germany")],
            &json!({"vector": query_vector(), "limit": 3}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("x-rerank-status"), Some("applied"));
    let body = r.json();
    assert_eq!(ids(&body["result"]), expected_ids[..3].to_vec());
    for (point, (_, score)) in body["result"].as_array().unwrap().iter().zip(&expected) {
        let got = point["score"].as_f64().unwrap() as f32;
        assert!(
            (got - score.unwrap()).abs() < 1e-5,
            "score {got} vs {score:?}"
        );
        assert!(
            point.get("payload").is_none(),
            "payload was not asked for: {point}"
        );
        assert_eq!(point["version"], 1);
    }
    assert_eq!(body["status"], "ok");
    assert!(body["time"].is_number());
    assert_eq!(body["rerank"]["status"], "applied");
    assert_eq!(body["rerank"]["candidates"], 7); // one point has no text
    assert!(body["rerank"]["model"].is_string());

    // Query API, body extension, offset: the page is a slice of the full reranked list.
    let r = p
        .post(
            &format!("/collections/{coll}/points/query"),
            &[],
            &json!({"query": query_vector(), "limit": 3, "offset": 2, "rerank": {"query": QUERY}}),
        )
        .await;
    let body = r.json();
    assert_eq!(ids(&body["result"]["points"]), expected_ids[2..5].to_vec());

    // The point without text comes after every scored one.
    let r = p
        .post(
            &format!("/collections/{coll}/points/query"),
            &[("x-rerank-query", QUERY)],
            &json!({"query": query_vector(), "limit": 8}),
        )
        .await;
    let body = r.json();
    assert_eq!(ids(&body["result"]["points"]), expected_ids);
    assert_eq!(body["result"]["points"][7]["id"], 5);

    // Every with_payload form: the payloads are those Qdrant gives for that selector.
    for selector in [
        json!(true),
        json!(false),
        json!(["title"]),
        json!(["meta.body"]),
        json!({"include": ["title", "group"]}),
        json!({"exclude": ["text"]}),
        json!({"exclude": ["meta"]}),
    ] {
        let direct = p
            .post_direct(
                &format!("/collections/{coll}/points/search"),
                &json!({"vector": query_vector(), "limit": 100, "with_payload": selector}),
            )
            .await
            .json();
        let r = p
            .post(
                &format!("/collections/{coll}/points/search"),
                &[("x-rerank-query", QUERY)],
                &json!({"vector": query_vector(), "limit": 8, "with_payload": selector}),
            )
            .await
            .json();
        assert_eq!(ids(&r["result"]), expected_ids, "order with {selector}");
        for point in r["result"].as_array().unwrap() {
            let want = direct["result"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["id"] == point["id"])
                .unwrap();
            assert_eq!(
                point.get("payload"),
                want.get("payload"),
                "payload with {selector}"
            );
        }
    }

    // Batches keep their shapes; a search without text in a batch is left as Qdrant answered.
    let r = p
        .post(
            &format!("/collections/{coll}/points/search/batch"),
            &[],
            &json!({"searches": [
                {"vector": query_vector(), "limit": 2, "rerank": {"query": QUERY}},
                {"vector": query_vector(), "limit": 2}
            ]}),
        )
        .await;
    let body = r.json();
    assert_eq!(ids(&body["result"][0]), expected_ids[..2].to_vec());
    assert_eq!(ids(&body["result"][1]), candidates[..2].to_vec());
    assert_eq!(body["rerank"]["status"], "applied");
    assert_eq!(body["rerank"]["searches"][1]["status"], "skipped");

    let r = p
        .post(
            &format!("/collections/{coll}/points/query/batch"),
            &[("x-rerank-query", QUERY)],
            &json!({"searches": [
                {"query": query_vector(), "limit": 2},
                {"query": query_vector(), "limit": 1, "offset": 1, "with_payload": ["title"]}
            ]}),
        )
        .await;
    let body = r.json();
    assert_eq!(
        ids(&body["result"][0]["points"]),
        expected_ids[..2].to_vec()
    );
    assert_eq!(
        ids(&body["result"][1]["points"]),
        expected_ids[1..2].to_vec()
    );
    assert!(body["result"][1]["points"][0]["payload"]["title"].is_string());
    assert!(body["result"][1]["points"][0]["payload"]
        .get("text")
        .is_none());

    // No query text: Qdrant's answer, marked skipped.
    let r = p
        .post(
            &format!("/collections/{coll}/points/query"),
            &[],
            &json!({"query": query_vector(), "limit": 3}),
        )
        .await;
    assert_eq!(r.header("x-rerank-status"), Some("skipped"));
    let body = r.json();
    assert_eq!(ids(&body["result"]["points"]), candidates[..3].to_vec());
    assert_eq!(body["rerank"]["status"], "skipped");
    assert!(body["rerank"]["reason"]
        .as_str()
        .unwrap()
        .contains("no query text"));

    // Turned off by the request: Qdrant's answer, no marker in the body.
    let r = p
        .post(
            &format!("/collections/{coll}/points/query"),
            &[("x-rerank-query", QUERY)],
            &json!({"query": query_vector(), "limit": 3, "rerank": {"enabled": false}}),
        )
        .await;
    assert_eq!(r.header("x-rerank-status"), Some("disabled"));
    let body = r.json();
    assert!(body.get("rerank").is_none());
    assert_eq!(ids(&body["result"]["points"]), candidates[..3].to_vec());

    // Rerank threshold: only candidates scoring at least 0.5 remain.
    let r = p
        .post(
            &format!("/collections/{coll}/points/query"),
            &[("x-rerank-query", QUERY)],
            &json!({"query": query_vector(), "limit": 8, "rerank": {"score_threshold": 0.5}}),
        )
        .await;
    let body = r.json();
    let kept: Vec<Value> = expected
        .iter()
        .filter(|(_, s)| s.is_none_or(|s| s >= 0.5))
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(ids(&body["result"]["points"]), kept);

    // Recommend and discover: the same reranking over their candidates.
    for (path, body) in [
        (
            "recommend",
            json!({"positive": [1], "negative": [4], "limit": 3}),
        ),
        (
            "discover",
            json!({"target": query_vector(), "context": [{"positive": 1, "negative": 4}], "limit": 3}),
        ),
    ] {
        let mut wide = body.clone();
        wide["limit"] = json!(100);
        let direct = p
            .post_direct(&format!("/collections/{coll}/points/{path}"), &wide)
            .await
            .json();
        let order = model_order(QUERY, &ids(&direct["result"])).await;
        let want: Vec<Value> = order.iter().take(3).map(|(id, _)| id.clone()).collect();
        let r = p
            .post(
                &format!("/collections/{coll}/points/{path}"),
                &[("x-rerank-query", QUERY)],
                &body,
            )
            .await;
        let got = r.json();
        assert_eq!(ids(&got["result"]), want, "{path}: {got}");
        assert_eq!(got["rerank"]["status"], "applied");
        // and the batch form
        let r = p
            .post(
                &format!("/collections/{coll}/points/{path}/batch"),
                &[("x-rerank-query", QUERY)],
                &json!({"searches": [body, body]}),
            )
            .await
            .json();
        assert_eq!(ids(&r["result"][1]), want, "{path}/batch: {r}");
    }

    // Groups: hits reranked inside each group, groups ordered by their best hit.
    for path in ["search/groups", "query/groups", "recommend/groups"] {
        let body = match path {
            "search/groups" => {
                json!({"vector": query_vector(), "group_by": "group", "limit": 2, "group_size": 2})
            }
            "query/groups" => {
                json!({"query": query_vector(), "group_by": "group", "limit": 2, "group_size": 2})
            }
            _ => json!({"positive": [1], "group_by": "group", "limit": 2, "group_size": 2}),
        };
        let mut all = body.clone();
        all["limit"] = json!(100);
        let direct = p
            .post_direct(&format!("/collections/{coll}/points/{path}"), &all)
            .await
            .json();
        let mut expected_groups: Vec<RankedGroup> = Vec::new();
        for g in direct["result"]["groups"].as_array().unwrap() {
            expected_groups.push((g["id"].clone(), model_order(QUERY, &ids(&g["hits"])).await));
        }
        expected_groups.retain(|(_, hits)| !hits.is_empty());
        expected_groups.sort_by(|a, b| {
            let best = |h: &Vec<(Value, Option<f32>)>| h[0].1.unwrap_or(f32::NEG_INFINITY);
            best(&b.1).total_cmp(&best(&a.1))
        });
        let r = p
            .post(
                &format!("/collections/{coll}/points/{path}"),
                &[("x-rerank-query", QUERY)],
                &body,
            )
            .await;
        let got = r.json();
        assert_eq!(got["rerank"]["status"], "applied", "{path}: {got}");
        let groups = got["result"]["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 2, "{path}: {got}");
        for (g, (want_id, want_hits)) in groups.iter().zip(&expected_groups) {
            assert_eq!(&g["id"], want_id, "{path}: {got}");
            let want: Vec<Value> = want_hits.iter().take(2).map(|(id, _)| id.clone()).collect();
            assert_eq!(ids(&g["hits"]), want, "{path}: {got}");
            assert!(g["hits"][0].get("payload").is_none());
        }
    }

    // Qdrant's errors come back as Qdrant said them.
    let r = p
        .post(
            &format!("/collections/{coll}/points/search"),
            &[("x-rerank-query", QUERY)],
            &json!({"vector": [1, 2], "limit": 3}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["status"]["error"]
        .as_str()
        .unwrap()
        .contains("dimension"));
}
