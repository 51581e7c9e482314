//! Large bodies against the real Qdrant. `upstream.max_rewrite_bytes`: a widened
//! search whose answer (vectors returned for the whole pool) is past the cap is answered
//! with Qdrant's own answer to the client's search, marked `skipped` with the reason,
//! REST and gRPC. Bodies past Qdrant's own request limit get Qdrant's 400, not a 502.

mod support;

use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::{
    query, vector_input, with_payload_selector, with_vectors_selector, Query, QueryPoints,
    QueryResponse, VectorInput, WithPayloadSelector, WithVectorsSelector,
};
use serde_json::{json, Value};
use support::{config_with_grpc, qdrant, query_vector, send_raw, Proxy};

const POOL: u64 = 20;

/// secondpass in front of the shared Qdrant with `pool = POOL` on `coll` and the cap.
async fn capped(coll: &str, max_rewrite_bytes: usize) -> Proxy {
    let q = qdrant();
    let extra = format!("[collections.{coll}]\npool = {POOL}\n");
    let mut cfg = config_with_grpc(&q.url, &q.grpc_url, &[coll], &extra);
    cfg.upstream.max_rewrite_bytes = max_rewrite_bytes;
    Proxy::start(cfg).await
}

fn search(limit: u64) -> Value {
    json!({"query": query_vector(), "limit": limit, "with_vector": true, "with_payload": true})
}

/// How many times `secondpass_upstream_errors_total{kind="too_large"}` was counted.
async fn too_large_count(proxy: &Proxy) -> u64 {
    let text = String::from_utf8_lossy(&proxy.get_admin("/metrics").await.body).to_string();
    text.lines()
        .find(|l| l.starts_with("secondpass_upstream_errors_total{kind=\"too_large\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_widened_rest_answer_past_the_cap_gets_qdrants_answer_marked_skipped() {
    let docs = qdrant().collection("cap");
    let seeder = capped(&docs, 64 << 20).await;
    seeder.seed(&docs, false).await;
    let path = format!("/collections/{docs}/points/query");
    // What Qdrant answers to the widened search and to the client's: the cap between.
    let widened = seeder.post_direct(&path, &search(POOL)).await;
    let own = seeder.post_direct(&path, &search(1)).await;
    assert_eq!(widened.status, 200, "{:?}", widened.body);
    assert!(
        own.raw.len() * 2 < widened.raw.len(),
        "{} vs {} bytes",
        own.raw.len(),
        widened.raw.len()
    );
    let cap = (own.raw.len() + widened.raw.len()) / 2;
    let mut body = search(1);
    body["rerank"] = json!({"query": "capital of Germany"});

    // Without a cap in the way, the search is reranked (the guard of this test).
    let r = seeder.post(&path, &[], &body).await;
    assert_eq!(r.json()["rerank"]["status"], "applied", "{:?}", r.json());

    let proxy = capped(&docs, cap).await;
    let r = proxy.post(&path, &[], &body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("x-rerank-status"), Some("skipped"));
    let got = r.json();
    assert_eq!(got["rerank"]["status"], "skipped", "{got}");
    let reason = got["rerank"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("max_rewrite_bytes"), "{reason}");
    // Qdrant's own answer to the client's search: one point, its vector included.
    assert_eq!(got["result"], own.json()["result"]);
    assert!(got["result"]["points"][0]["vector"].is_array(), "{got}");
    assert_eq!(too_large_count(&proxy).await, 1);
    let metrics = String::from_utf8_lossy(&proxy.get_admin("/metrics").await.body).to_string();
    assert!(
        metrics.contains("rerank_status=\"skipped\",route=\"query\",transport=\"rest\"} 1"),
        "{metrics}"
    );

    // A cap under even the client's own answer: that answer goes through as it is.
    let tiny = capped(&docs, 16).await;
    let r = tiny.post(&path, &[], &body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("x-rerank-status"), Some("skipped"));
    assert_eq!(r.json()["result"], own.json()["result"]);
    assert_eq!(too_large_count(&tiny).await, 2, "both answers were past it");
}

fn grpc_query(coll: &str, limit: u64) -> QueryPoints {
    QueryPoints {
        collection_name: coll.to_string(),
        query: Some(Query {
            variant: Some(query::Variant::Nearest(VectorInput {
                variant: Some(vector_input::Variant::Dense(
                    qdrant_client::qdrant::DenseVector {
                        data: vec![0.2, 0.1, 0.9, 0.7],
                    },
                )),
            })),
        }),
        limit: Some(limit),
        with_vectors: Some(WithVectorsSelector {
            selector_options: Some(with_vectors_selector::SelectorOptions::Enable(true)),
        }),
        with_payload: Some(WithPayloadSelector {
            selector_options: Some(with_payload_selector::SelectorOptions::Enable(true)),
        }),
        ..Default::default()
    }
}

async fn grpc(url: String) -> PointsClient<tonic::transport::Channel> {
    PointsClient::connect(url).await.expect("connect")
}

#[tokio::test]
async fn a_widened_grpc_answer_past_the_cap_gets_qdrants_answer_marked_skipped() {
    use prost::Message;
    let docs = qdrant().collection("capgrpc");
    let seeder = capped(&docs, 64 << 20).await;
    seeder.seed(&docs, false).await;
    let mut direct = grpc(qdrant().grpc_url.clone()).await;
    let size = |r: &QueryResponse| r.encoded_len() + 5;
    let widened = direct.query(grpc_query(&docs, POOL)).await.unwrap();
    let own = direct
        .query(grpc_query(&docs, 1))
        .await
        .unwrap()
        .into_inner();
    let (own_len, widened_len) = (size(&own), size(widened.get_ref()));
    assert!(
        own_len * 2 < widened_len,
        "{own_len} vs {widened_len} bytes"
    );
    let with_query = || {
        let mut r = tonic::Request::new(grpc_query(&docs, 1));
        r.metadata_mut()
            .insert("x-rerank-query", "capital%20of%20Germany".parse().unwrap());
        r
    };

    let mut via = grpc(format!("http://{}", seeder.server.grpc_addr)).await;
    let r = via.query(with_query()).await.unwrap();
    assert_eq!(r.metadata().get("x-rerank-status").unwrap(), "applied");

    let proxy = capped(&docs, (own_len + widened_len) / 2).await;
    let mut via = grpc(format!("http://{}", proxy.server.grpc_addr)).await;
    let r = via.query(with_query()).await.unwrap();
    assert_eq!(r.metadata().get("x-rerank-status").unwrap(), "skipped");
    let reason = r
        .metadata()
        .get("x-rerank-reason")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(reason.contains("max_rewrite_bytes"), "{reason}");
    let got = r.into_inner();
    assert_eq!(got.result, own.result, "Qdrant's own answer to the call");
    assert!(got.result[0].vectors.is_some());
    assert_eq!(too_large_count(&proxy).await, 1);
}

/// JSON of about `bytes` bytes: `{"points":[...]}` for an upsert, a search otherwise.
fn big_json(bytes: usize, upsert: bool) -> Vec<u8> {
    let filler = "x".repeat(bytes);
    let v = if upsert {
        json!({"points": [{"id": 1, "vector": [0.2, 0.1, 0.9, 0.7], "payload": {"t": filler}}]})
    } else {
        json!({"query": query_vector(), "limit": 1,
               "filter": {"must": [{"key": "t", "match": {"value": filler}}]}})
    };
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn bodies_over_qdrants_request_limit_get_qdrants_400_not_502() {
    // Qdrant's own limit at 1 MB keeps the bodies small; it answers 400 as soon as it has
    // the headers and closes without reading the body.
    let q = secondpass_it::real_qdrant::RealQdrant::own(&[(
        "QDRANT__SERVICE__MAX_REQUEST_SIZE_MB",
        "1",
    )]);
    let coll = "limits";
    let extra = format!("[collections.{coll}]\npool = {POOL}\n");
    let proxy = Proxy::start(config_with_grpc(&q.url, &q.grpc_url, &[coll], &extra)).await;
    proxy.seed(coll, false).await;
    const TRIES: usize = 12;
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for (mb, upsert) in [(1.1, true), (3.0, true), (1.1, false), (3.0, false)] {
        let body = big_json((mb * 1048576.0) as usize, upsert);
        let (method, path) = if upsert {
            ("PUT", format!("/collections/{coll}/points?wait=true"))
        } else {
            ("POST", format!("/collections/{coll}/points/query"))
        };
        for _ in 0..TRIES {
            let answer = send_raw(proxy.server.rest_addr, method, &path, body.clone()).await;
            let status = answer.lines().next().unwrap_or("no answer");
            let what = format!("{method} {mb} MB: {status}");
            if status.starts_with("HTTP/1.1 400") {
                assert!(answer.contains("larger than allowed"), "{what}: {answer}");
            }
            *tally.entry(what).or_default() += 1;
        }
    }
    println!("{tally:#?}");
    let not_400: Vec<_> = tally.iter().filter(|(k, _)| !k.contains(" 400 ")).collect();
    assert!(
        not_400.is_empty(),
        "Qdrant's 400 was due every time: {tally:#?}"
    );
}
