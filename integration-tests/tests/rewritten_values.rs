//! What secondpass rewrites in a reranked search (limit, offset, payload selector) must
//! not change Qdrant's answer to values Qdrant refuses: `limit: 0`, negative or huge
//! numbers, wrong types. Every case is sent, with reranking on, through secondpass and
//! straight to a real Qdrant (QDRANT_URL; scripts/test starts one); the status and body
//! must match (ignoring `time`, and the `rerank` marker secondpass adds to answers).

mod support;

use secondpass_it::real_qdrant::RealQdrant;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use support::{client, config, recorded_request, request, HttpClient, Proxy};

/// POSTs `body` as the exact bytes given: status, body without `time` and `rerank`, and
/// the `rerank` marker.
async fn post_raw(
    c: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value, Value) {
    let mut req = Request::post(url).header("content-type", "application/json");
    if let Ok(key) = std::env::var("QDRANT_API_KEY") {
        req = req.header("api-key", key);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = c
        .request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .expect("request");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let mut v: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    let mut marker = Value::Null;
    if let Some(o) = v.as_object_mut() {
        o.remove("time");
        marker = o.remove("rerank").unwrap_or_default();
    }
    (status, v, marker)
}

#[tokio::test]
async fn values_qdrant_refuses_get_qdrants_own_answer() {
    let qdrant = RealQdrant::shared();
    let url = qdrant.url.clone();
    let coll = format!("secondpass_limits_{}", std::process::id());
    let c = client();
    let at = |path: &str| format!("{url}/collections/{coll}{path}");
    let _ = request(&c, Method::DELETE, &at(""), &[], None).await;
    let r = request(
        &c,
        Method::PUT,
        &at(""),
        &[],
        Some(&recorded_request("create-collection")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = request(
        &c,
        Method::PUT,
        &at("/points?wait=true"),
        &[],
        Some(&recorded_request("upsert")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    let proxy = Proxy::start(config(&url, &[&coll], "")).await;
    let v = "[0.2, 0.1, 0.9, 0.7]";
    let max = u64::MAX;
    // (endpoint, body): spaces kept on purpose, Qdrant's format errors name a column
    let cases: Vec<(&str, String)> = vec![
        ("search", format!(r#"{{"vector": {v}, "limit": 0}}"#)),
        ("search", format!(r#"{{"vector": {v}, "limit": -1}}"#)),
        (
            "search",
            format!(r#"{{"vector": {v}, "limit": 3, "offset": -1}}"#),
        ),
        ("search", format!(r#"{{"vector": {v}, "limit": 2.5}}"#)),
        ("search", format!(r#"{{"vector": {v}, "limit": "3"}}"#)),
        ("search", format!(r#"{{"vector": {v}, "limit": {max}}}"#)),
        (
            "search",
            format!(r#"{{"vector": {v}, "limit": 100000000000}}"#),
        ),
        (
            "search",
            format!(r#"{{"vector": {v}, "limit": 3, "offset": {max}}}"#),
        ),
        (
            "search",
            format!(r#"{{"vector": {v}, "limit": 3, "with_payload": "yes"}}"#),
        ),
        // widened (limit, payload) before Qdrant sees the bad filter
        (
            "search",
            format!(r#"{{"vector": {v}, "limit": 3, "filter": {{"must": [], "bogus": 1}}}}"#),
        ),
        ("search", r#"{"vector": [1, 2], "limit": 3}"#.to_string()),
        (
            "search",
            format!(r#"{{"vector": {v}, "limit": 0, "rerank": {{"query": "capital"}}}}"#),
        ),
        (
            "search",
            format!(r#"{{"vector": {v}, "limit": -1, "rerank": {{"query": "capital"}}}}"#),
        ),
        ("query", format!(r#"{{"query": {v}, "limit": 0}}"#)),
        ("query", format!(r#"{{"query": {v}, "limit": -1}}"#)),
        (
            "query",
            format!(r#"{{"query": {v}, "limit": 3, "offset": {max}}}"#),
        ),
        ("query", format!(r#"{{"query": {v}, "limit": {max}}}"#)),
        (
            "query",
            format!(r#"{{"query": {v}, "limit": 3, "filter": {{"bogus": 1}}}}"#),
        ),
        (
            "query/groups",
            format!(r#"{{"query": {v}, "limit": 0, "group_by": "group"}}"#),
        ),
        (
            "query/groups",
            format!(r#"{{"query": {v}, "group_size": 0, "group_by": "group"}}"#),
        ),
        (
            "query/groups",
            format!(r#"{{"query": {v}, "limit": -2, "group_by": "group"}}"#),
        ),
        (
            "search/groups",
            format!(r#"{{"vector": {v}, "limit": 0, "group_size": 2, "group_by": "group"}}"#),
        ),
        (
            "search/groups",
            format!(r#"{{"vector": {v}, "limit": 2, "group_size": 0, "group_by": "group"}}"#),
        ),
        (
            "search/groups",
            format!(
                r#"{{"vector": {v}, "limit": 4294967296, "group_size": 1, "group_by": "group"}}"#
            ),
        ),
        (
            "search/batch",
            format!(
                r#"{{"searches": [{{"vector": {v}, "limit": 2}}, {{"vector": {v}, "limit": 0}}]}}"#
            ),
        ),
        (
            "query/batch",
            format!(
                r#"{{"searches": [{{"query": {v}, "limit": 2}}, {{"query": {v}, "limit": -3}}]}}"#
            ),
        ),
        ("recommend", r#"{"positive": [1], "limit": 0}"#.to_string()),
        ("discover", r#"{"target": 1, "limit": 0}"#.to_string()),
    ];
    for (ep, body) in &cases {
        let path = format!("/collections/{coll}/points/{ep}");
        let via = post_raw(
            &c,
            &proxy.url(&path),
            &[("x-rerank-query", "capital")],
            body,
        )
        .await;
        let direct = post_raw(&c, &format!("{url}{path}"), &[], body).await;
        assert_eq!(
            via.0, direct.0,
            "{ep} {body}: status {} vs Qdrant's {}: {}",
            via.0, direct.0, via.1
        );
        if direct.0.is_success() {
            // Qdrant takes these (huge limit or offset): beyond max_pool, not reranked
            assert_eq!(via.2["status"], "skipped", "{ep} {body}: {}", via.2);
            assert_eq!(via.1, direct.1, "{ep} {body}: secondpass vs Qdrant");
        } else {
            assert_eq!(via.1, direct.1, "{ep} {body}: secondpass vs Qdrant");
        }
    }
    let _ = request(&c, Method::DELETE, &at(""), &[], None).await;
}
