//! Shadow mode (the client gets Qdrant's answer byte for byte; the background
//! comparison shows up in metrics and the shadow log) and explain, over REST and gRPC,
//! against the real Qdrant; the byte-for-byte check uses a stub whose answer no
//! re-serialisation would keep.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use http::Method;
use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::{
    point_id, query, vector_input, PointId, Query, QueryPoints, VectorInput,
};
use serde_json::{json, Value};
use support::{config, ids, proxy, qdrant, query_vector, request, Proxy};

const QUERY: &str = "capital of Germany";

/// Qdrant's answer as a stub sends it: odd spacing and key order that any
/// re-serialization would change.
const ANSWER: &str = "{\"result\" : {\"points\":[{\"id\":1,\"version\":3,\"score\":0.90000004,\"payload\":{\"text\":\"Paris is the capital of France.\"}},{\"id\":2,\"version\":3,\"score\":0.5,\"payload\":{\"text\":\"Bananas are yellow.\"}},{\"id\":3,\"version\":3,\"score\":0.25,\"payload\":{\"text\":\"Berlin is the capital of Germany.\"}}]},\"status\":\"ok\",  \"time\":1.5e-5}";

/// An upstream that answers every request with [`ANSWER`] and keeps the bodies.
async fn stub() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let s = s.clone();
        async move {
            s.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            ([("content-type", "application/json")], ANSWER)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

/// Polls the metrics until `line` appears (bounded).
async fn wait_for_metric(p: &Proxy, line: &str) -> String {
    let mut text = String::new();
    for _ in 0..200 {
        text = String::from_utf8_lossy(&p.get_admin("/metrics").await.body).into_owned();
        if text.contains(line) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("metric `{line}` never appeared:\n{text}");
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sp-shadow-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn rest_shadow_answers_byte_for_byte_and_compares_in_the_background() {
    let (upstream, seen) = stub().await;
    let dir = temp_dir("rest");
    let log = dir.join("shadow.jsonl");
    let _ = std::fs::remove_file(&log);
    std::fs::write(dir.join("token"), "tok\n").unwrap();
    let extra = format!(
        "[admin]\ntoken_file = \"{}\"\n[shadow]\nlog_file = \"{}\"\n[collections.docs]\npool = 3\n",
        dir.join("token").display(),
        log.display()
    );
    let p = Proxy::start(config(&upstream, &["docs"], &extra)).await;
    // switched to shadow at run time, through the admin API
    let r = request(
        &p.client,
        Method::PATCH,
        &p.admin("/admin/collections/docs"),
        &[("authorization", "Bearer tok")],
        Some(&json!({"mode": "shadow"})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["settings"]["mode"], "shadow", "{}", r.json());

    let body = json!({"query": {"text": QUERY, "model": "m"}, "limit": 2});
    let r = p.post("/collections/docs/points/query", &[], &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        &r.raw[..],
        ANSWER.as_bytes(),
        "the client gets Qdrant's bytes"
    );
    assert!(r.header("x-rerank-status").is_none());

    let metrics = wait_for_metric(
        &p,
        "secondpass_shadow_searches_total{collection=\"docs\"} 1",
    )
    .await;
    assert!(metrics.contains("secondpass_shadow_overlap_count{collection=\"docs\"} 1"));
    assert!(metrics.contains("secondpass_shadow_rank_displacement_count{collection=\"docs\"} 1"));
    assert!(
        metrics.contains("secondpass_shadow_rerank_duration_seconds_count{collection=\"docs\"} 1")
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.len(),
            2,
            "the live search and one widened shadow search"
        );
        assert_eq!(seen[0], body, "the live search goes as sent");
        assert_eq!(seen[1]["limit"], 3, "the shadow search asks for the pool");
    }
    // the sampled log: Qdrant's page and the reranked page, for `secondpass eval`
    let line = std::fs::read_to_string(&log).unwrap();
    let entry: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(entry["query"], QUERY);
    assert_eq!(entry["collection"], "docs");
    assert_eq!(entry["qdrant_ids"], json!([1, 2]));
    assert_eq!(entry["reranked_ids"].as_array().unwrap().len(), 2);
    assert_eq!(entry["rerank_scores"].as_array().unwrap().len(), 2);
    // secondpass's own `rerank` object is taken out (Qdrant would refuse it); the
    // answer is still Qdrant's bytes
    let with_directive = json!({"query": {"text": QUERY, "model": "m"}, "limit": 2,
                                "rerank": {"pool": 3}});
    let r = p
        .post("/collections/docs/points/query", &[], &with_directive)
        .await;
    assert_eq!(&r.raw[..], ANSWER.as_bytes());
    assert_eq!(seen.lock().unwrap()[2], body);
    // top-1 changed exactly when the logged pages start differently
    let changed = entry["qdrant_ids"][0] != entry["reranked_ids"][0];
    assert_eq!(
        metrics.contains("secondpass_shadow_top1_changed_total{collection=\"docs\"} 1"),
        changed
    );
}

fn vector_query() -> Option<Query> {
    Some(Query {
        variant: Some(query::Variant::Nearest(VectorInput {
            variant: Some(vector_input::Variant::Dense(
                qdrant_client::qdrant::DenseVector {
                    data: vec![0.2, 0.1, 0.9, 0.7],
                },
            )),
        })),
    })
}

fn id_json(id: &Option<PointId>) -> Value {
    match id.as_ref().and_then(|i| i.point_id_options.as_ref()) {
        Some(point_id::PointIdOptions::Num(n)) => json!(n),
        Some(point_id::PointIdOptions::Uuid(u)) => json!(u),
        None => Value::Null,
    }
}

fn search(coll: &str, explain: bool) -> tonic::Request<QueryPoints> {
    let mut r = tonic::Request::new(QueryPoints {
        collection_name: coll.into(),
        query: vector_query(),
        limit: Some(3),
        ..Default::default()
    });
    r.metadata_mut()
        .insert("x-rerank-query", QUERY.replace(' ', "%20").parse().unwrap());
    if explain {
        r.metadata_mut()
            .insert("x-rerank-explain", "true".parse().unwrap());
    }
    r
}

#[tokio::test]
async fn grpc_shadow_answers_as_qdrant_and_explain_reports_ranks() {
    let (docs, shadowed) = (qdrant().collection("docs"), qdrant().collection("shadowed"));
    let shadow = format!("[collections.{shadowed}]\nmode = \"shadow\"\n");
    let p = proxy(&[&docs, &shadowed], &shadow).await;
    p.seed(&docs, false).await;
    p.seed(&shadowed, false).await;
    let mut via = PointsClient::connect(format!("http://{}", p.server.grpc_addr))
        .await
        .unwrap();
    let mut direct = PointsClient::connect(qdrant().grpc_url.clone())
        .await
        .unwrap();

    // shadow: Qdrant's points exactly, no rerank metadata; the comparison follows
    let got = via.query(search(&shadowed, false)).await.unwrap();
    assert!(got.metadata().get("x-rerank-status").is_none());
    let want = direct
        .query(search(&shadowed, false))
        .await
        .unwrap()
        .into_inner()
        .result;
    assert_eq!(got.into_inner().result, want);
    wait_for_metric(
        &p,
        &format!("secondpass_shadow_searches_total{{collection=\"{shadowed}\"}} 1"),
    )
    .await;

    // explain: compact metadata, one entry per returned point, ranks from Qdrant's list
    let all = direct
        .query(QueryPoints {
            collection_name: docs.to_string(),
            query: vector_query(),
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .result;
    let resp = via.query(search(&docs, true)).await.unwrap();
    let explain = resp
        .metadata()
        .get("x-rerank-explain")
        .expect("explain metadata")
        .to_str()
        .unwrap()
        .to_string();
    let points = resp.into_inner().result;
    let entries: Vec<&str> = explain.split(',').collect();
    assert_eq!(entries.len(), points.len());
    for (e, point) in entries.iter().zip(&points) {
        let f: Vec<&str> = e.split(':').collect();
        assert_eq!(f[0], id_json(&point.id).to_string().trim_matches('"'));
        let rank: usize = f[1].parse().unwrap();
        assert_eq!(id_json(&all[rank - 1].id), id_json(&point.id));
        assert!((f[2].parse::<f32>().unwrap() - all[rank - 1].score).abs() < 1e-6);
        assert!((f[3].parse::<f32>().unwrap() - point.score).abs() < 1e-6);
    }
    // off by default
    let resp = via.query(search(&docs, false)).await.unwrap();
    assert!(resp.metadata().get("x-rerank-explain").is_none());
}

#[tokio::test]
async fn rest_explain_pairs_each_point_with_its_qdrant_rank() {
    let docs = qdrant().collection("docs");
    let p = proxy(&[&docs], "").await;
    p.seed(&docs, false).await;
    let path = format!("/collections/{docs}/points/query");
    let all = p
        .post_direct(&path, &json!({"query": query_vector(), "limit": 100}))
        .await
        .json();
    let qdrant = all["result"]["points"].as_array().unwrap().clone();
    let body = json!({"query": query_vector(), "limit": 3,
                      "rerank": {"query": QUERY, "explain": true}});
    let r = p.post(&path, &[], &body).await.json();
    let points = &r["result"]["points"];
    let explain = r["rerank"]["explain"].as_array().expect("explain").clone();
    assert_eq!(ids(&r["rerank"]["explain"]), ids(points));
    for (e, point) in explain.iter().zip(points.as_array().unwrap()) {
        let rank = e["qdrant_rank"].as_u64().unwrap() as usize;
        assert_eq!(qdrant[rank - 1]["id"], e["id"]);
        assert_eq!(qdrant[rank - 1]["score"], e["qdrant_score"]);
        assert_eq!(e["rerank_score"], point["score"]);
    }
    // off by default; the header turns it on; a batch explains each search
    let plain = json!({"query": query_vector(), "limit": 3, "rerank": {"query": QUERY}});
    let r = p.post(&path, &[], &plain).await.json();
    assert!(r["rerank"].get("explain").is_none(), "{}", r["rerank"]);
    let r = p
        .post(&path, &[("x-rerank-explain", "true")], &plain)
        .await
        .json();
    assert_eq!(r["rerank"]["explain"].as_array().unwrap().len(), 3);
    let batch = json!({"searches": [plain.clone(), {"query": query_vector(), "limit": 2,
                       "rerank": {"query": QUERY, "explain": true}}]});
    let r = p.post(&format!("{path}/batch"), &[], &batch).await.json();
    let searches = r["rerank"]["searches"].as_array().unwrap();
    assert!(searches[0].get("explain").is_none());
    assert_eq!(searches[1]["explain"].as_array().unwrap().len(), 2);
}
