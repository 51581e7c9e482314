//! Replays the 15 gRPC exchanges recorded from a real Qdrant 1.18.3 against the gRPC double,
//! with the generated tonic clients of `qdrant-client`, after seeding the shared store over REST
//! exactly as the REST recordings did (`create-collection`, `upsert`, `hybrid-create`,
//! `hybrid-upsert-bm25-documents`).
//!
//! Each request is built by hand per recording name and first checked against the recorded
//! request (so the replay sends what the real server received); each response is compared with
//! the recorded protobuf JSON: ids, scores (within 1e-5), versions, payloads (as maps), order, the
//! `next_page_offset`, counts; `time` is ignored. The two error exchanges compare the status code
//! and message. Protobuf JSON leaves out default values and quotes 64-bit integers, so both sides
//! drop defaults (outside oneofs) and a quoted integer equals the same number.

// Search, SearchBatch, SearchGroups and Recommend are deprecated in the client in favour of
// Query, but they are recorded and a proxy must still serve them.
#![allow(deprecated)]

use std::path::PathBuf;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use qdrant_client::qdrant::{
    self as pb, points_client::PointsClient, qdrant_client::QdrantClient, Document, Query,
};
use secondpass_it::grpc_double::{message_json, start_pair, GrpcDouble};
use serde_json::{json, Value};
use tonic::transport::Channel;

fn shared_dir() -> PathBuf {
    match std::env::var_os("SECONDPASS_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")),
    }
}

fn load(file: &str) -> Vec<Value> {
    let path = shared_dir().join("qdrant/recordings-v1.18.3").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (set SECONDPASS_SHARED_DIR)",
            path.display()
        )
    });
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Sends one REST request to the REST double; status and JSON body.
async fn rest(base: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let c: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::builder()
        .method(method.parse::<Method>().unwrap())
        .uri(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Seeds the store over REST with the four recorded bodies, in recorded order.
async fn seed(rest_url: &str) {
    let recs = load("rest.jsonl");
    for name in [
        "create-collection",
        "upsert",
        "hybrid-create",
        "hybrid-upsert-bm25-documents",
    ] {
        let rec = recs
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no REST recording {name}"));
        let (status, body) = rest(
            rest_url,
            rec["method"].as_str().unwrap(),
            rec["path"].as_str().unwrap(),
            &rec["request"],
        )
        .await;
        assert_eq!(status, 200, "{name}: {body}");
    }
}

// ---------------------------------------------------------------- comparison

/// Oneof members: protobuf JSON writes them even when they hold a default value.
const ONEOF_KEYS: &[&str] = &[
    "null_value",
    "double_value",
    "integer_value",
    "string_value",
    "bool_value",
    "num",
    "uuid",
    "unsigned_value",
    "enable",
];
/// Map fields: protobuf JSON leaves empty maps out.
const MAP_KEYS: &[&str] = &["payload", "fields", "options"];

fn is_default(key: &str, v: &Value) -> bool {
    if ONEOF_KEYS.contains(&key) {
        return false;
    }
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty() && MAP_KEYS.contains(&key),
    }
}

/// Drops `time`, defaults and empty maps, recursively.
fn norm(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "time")
                .map(|(k, x)| (k.clone(), norm(x)))
                .filter(|(k, x)| !is_default(k, x))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
        other => other.clone(),
    }
}

fn compare(want: &Value, got: &Value, path: &str, diffs: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => compare(wv, gv, &format!("{path}.{k}"), diffs),
                    None => diffs.push(format!("{path}.{k}: missing (want {wv})")),
                }
            }
            for k in g.keys().filter(|k| !w.contains_key(*k)) {
                diffs.push(format!("{path}.{k}: unexpected {}", g[k]));
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            if w.len() != g.len() {
                diffs.push(format!("{path}: {} items, want {}", g.len(), w.len()));
            }
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                compare(wv, gv, &format!("{path}[{i}]"), diffs);
            }
        }
        (Value::Number(w), Value::Number(g)) => {
            let same = match (w.as_i64(), g.as_i64(), w.as_u64(), g.as_u64()) {
                (Some(a), Some(b), _, _) => a == b,
                (_, _, Some(a), Some(b)) => a == b,
                _ => (w.as_f64().unwrap() - g.as_f64().unwrap()).abs() <= 1e-5,
            };
            if !same {
                diffs.push(format!("{path}: {g}, want {w}"));
            }
        }
        // protobuf JSON quotes 64-bit integers
        (Value::String(w), Value::Number(g)) if g.is_u64() || g.is_i64() => {
            if w.parse::<i128>().ok() != g.to_string().parse::<i128>().ok() {
                diffs.push(format!("{path}: {g}, want {w:?}"));
            }
        }
        _ => {
            if want != got {
                diffs.push(format!("{path}: {got}, want {want}"));
            }
        }
    }
}

fn diff(want: &Value, got: &Value) -> Vec<String> {
    let mut d = Vec::new();
    compare(&norm(want), &norm(got), "", &mut d);
    d
}

fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

// ---------------------------------------------------------------- requests per recording

const QV: [f32; 4] = [0.2, 0.1, 0.9, 0.7];

fn enable_payload() -> Option<pb::WithPayloadSelector> {
    Some(true.into())
}

fn nearest(v: &[f32]) -> Option<Query> {
    Some(Query::new_nearest(v.to_vec()))
}

enum Call {
    Search(pb::SearchPoints),
    SearchBatch(pb::SearchBatchPoints),
    SearchGroups(pb::SearchPointGroups),
    Query(pb::QueryPoints),
    QueryBatch(pb::QueryBatchPoints),
    QueryGroups(pb::QueryPointGroups),
    Recommend(pb::RecommendPoints),
    Scroll(pb::ScrollPoints),
    Count(pb::CountPoints),
    Health(pb::HealthCheckRequest),
}

fn call_for(name: &str) -> Call {
    let search = |limit, with_payload| pb::SearchPoints {
        collection_name: "docs".into(),
        vector: QV.to_vec(),
        limit,
        with_payload,
        ..Default::default()
    };
    let query = |coll: &str, q, limit| pb::QueryPoints {
        collection_name: coll.into(),
        query: q,
        limit: Some(limit),
        ..Default::default()
    };
    match name {
        "grpc-search" => Call::Search(search(3, enable_payload())),
        "grpc-search-include" => Call::Search(search(3, Some(vec!["title"].into()))),
        "grpc-search-offset" => Call::Search(pb::SearchPoints {
            offset: Some(2),
            ..search(2, None)
        }),
        "grpc-search-batch" => Call::SearchBatch(pb::SearchBatchPoints {
            collection_name: "docs".into(),
            search_points: vec![search(2, None)],
            ..Default::default()
        }),
        "grpc-query" => Call::Query(pb::QueryPoints {
            with_payload: enable_payload(),
            ..query("docs", nearest(&QV), 3)
        }),
        "grpc-query-batch" => Call::QueryBatch(pb::QueryBatchPoints {
            collection_name: "docs".into(),
            query_points: vec![query("docs", nearest(&QV), 2)],
            ..Default::default()
        }),
        "grpc-query-groups" => Call::QueryGroups(pb::QueryPointGroups {
            collection_name: "docs".into(),
            query: nearest(&QV),
            with_payload: enable_payload(),
            limit: Some(2),
            group_size: Some(2),
            group_by: "group".into(),
            ..Default::default()
        }),
        "grpc-search-groups" => Call::SearchGroups(pb::SearchPointGroups {
            collection_name: "docs".into(),
            vector: QV.to_vec(),
            limit: 2,
            group_by: "group".into(),
            group_size: 2,
            ..Default::default()
        }),
        "grpc-recommend" => Call::Recommend(pb::RecommendPoints {
            collection_name: "docs".into(),
            positive: vec![1u64.into()],
            limit: 3,
            ..Default::default()
        }),
        "grpc-query-bm25-document" => Call::Query(pb::QueryPoints {
            using: Some("bm25".into()),
            with_payload: enable_payload(),
            ..query(
                "hybrid",
                Some(Query::new_nearest(Document {
                    text: "capital of Germany".into(),
                    model: "qdrant/bm25".into(),
                    options: Default::default(),
                })),
                3,
            )
        }),
        "grpc-err-missing-collection" => Call::Search(pb::SearchPoints {
            collection_name: "nope".into(),
            ..search(3, None)
        }),
        "grpc-err-wrong-dimension" => Call::Query(query("docs", nearest(&[1.0, 2.0]), 3)),
        "grpc-scroll" => Call::Scroll(pb::ScrollPoints {
            collection_name: "docs".into(),
            limit: Some(2),
            ..Default::default()
        }),
        "grpc-count" => Call::Count(pb::CountPoints {
            collection_name: "docs".into(),
            exact: Some(true),
            ..Default::default()
        }),
        "grpc-health" => Call::Health(pb::HealthCheckRequest {}),
        other => panic!("no request for recording {other}"),
    }
}

struct Clients {
    points: PointsClient<Channel>,
    qdrant: QdrantClient<Channel>,
}

impl Clients {
    async fn connect(grpc: &GrpcDouble) -> Clients {
        let ch = Channel::from_shared(grpc.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        Clients {
            points: PointsClient::new(ch.clone()),
            qdrant: QdrantClient::new(ch),
        }
    }

    /// Sends the call; the request and the response as JSON.
    async fn send(&mut self, call: Call) -> (Value, Result<Value, tonic::Status>) {
        macro_rules! go {
            ($client:ident . $m:ident ($r:expr)) => {{
                let r = $r;
                let req = message_json(&r);
                let res = self.$client.$m(r).await;
                (req, res.map(|resp| message_json(resp.get_ref())))
            }};
        }
        match call {
            Call::Search(r) => go!(points.search(r)),
            Call::SearchBatch(r) => go!(points.search_batch(r)),
            Call::SearchGroups(r) => go!(points.search_groups(r)),
            Call::Query(r) => go!(points.query(r)),
            Call::QueryBatch(r) => go!(points.query_batch(r)),
            Call::QueryGroups(r) => go!(points.query_groups(r)),
            Call::Recommend(r) => go!(points.recommend(r)),
            Call::Scroll(r) => go!(points.scroll(r)),
            Call::Count(r) => go!(points.count(r)),
            Call::Health(r) => go!(qdrant.health_check(r)),
        }
    }
}

#[tokio::test]
async fn replay_all_grpc_recordings() {
    let recs = load("grpc.jsonl");
    assert_eq!(recs.len(), 15, "expected 15 recorded gRPC exchanges");
    let (rest_double, grpc) = start_pair().await.unwrap();
    seed(&rest_double.url()).await;
    let mut clients = Clients::connect(&grpc).await;

    let mut failures = Vec::new();
    for rec in &recs {
        let name = rec["name"].as_str().unwrap();
        let (req, res) = clients.send(call_for(name)).await;
        let mut diffs: Vec<String> = diff(&rec["request"], &req)
            .into_iter()
            .map(|d| format!("request{d}"))
            .collect();
        let method = format!(
            "/{}/{}",
            rec["service"].as_str().unwrap(),
            rec["method"].as_str().unwrap()
        );
        let logged = grpc.request_log().pop().expect("the call is logged");
        if logged.method != method {
            diffs.push(format!("logged method {} != {method}", logged.method));
        }
        if logged.request != req {
            diffs.push(format!("logged request {} != sent {req}", logged.request));
        }
        let want_code = rec["code"].as_str().unwrap();
        match res {
            Ok(got) => {
                if want_code != "OK" {
                    diffs.push(format!("answered OK, want {want_code}"));
                } else {
                    diffs.extend(
                        diff(&rec["response"], &got)
                            .into_iter()
                            .map(|d| format!("response{d}")),
                    );
                }
            }
            Err(status) => {
                let got_code = code_name(status.code());
                if got_code != want_code {
                    diffs.push(format!(
                        "code {got_code} ({}), want {want_code}",
                        status.message()
                    ));
                }
                if let Some(details) = rec["details"].as_str() {
                    if status.message() != details {
                        diffs.push(format!("message {:?}, want {details:?}", status.message()));
                    }
                }
            }
        }
        if !diffs.is_empty() {
            failures.push(format!("{name}:\n  {}", diffs.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} gRPC recordings differ:\n{}",
        failures.len(),
        recs.len(),
        failures.join("\n")
    );
    grpc.shutdown().await;
    rest_double.shutdown().await;
}

/// The comparison itself is not vacuous: a changed score, a missing payload key, a reordered
/// result and a wrong id are all reported.
#[test]
fn the_comparison_catches_differences() {
    let want = json!({"result": [
        {"id": {"num": "4"}, "payload": {"a": {"integer_value": "0"}}, "score": 0.99248314, "version": "1"},
        {"id": {"uuid": "5c56"}, "score": 0.5, "version": "1"}], "time": 0.1});
    let same = json!({"result": [
        {"id": {"num": 4}, "payload": {"a": {"integer_value": 0}}, "score": 0.992483, "version": 1,
         "shard_key": null},
        {"id": {"uuid": "5c56"}, "payload": {}, "score": 0.5, "version": 1}], "time": 7, "usage": null});
    assert_eq!(diff(&want, &same), Vec::<String>::new());
    let mut changed = same.clone();
    changed["result"][0]["score"] = json!(0.9924);
    assert_eq!(diff(&want, &changed).len(), 1);
    let mut changed = same.clone();
    changed["result"][0]["payload"] = json!({});
    assert_eq!(diff(&want, &changed).len(), 1);
    let mut changed = same.clone();
    changed["result"].as_array_mut().unwrap().reverse();
    assert!(!diff(&want, &changed).is_empty());
    let mut changed = same.clone();
    changed["result"][0]["id"] = json!({"num": 5});
    assert_eq!(diff(&want, &changed).len(), 1);
}
