//! The exchanges recorded from a real Qdrant 1.18.3 (58 REST, 15 gRPC; see
//! `secondpass_it::recordings`), replayed through secondpass (reranking off) and
//! straight to the real Qdrant: the answers must be the same (status or gRPC code,
//! the headers that describe the body, the body), `time` aside. When the server is
//! Qdrant 1.18.3 both must also be the recorded answers, which shows the replay asks
//! what was recorded; against another version only the first check applies.
//!
//! REST exchanges run in recorded order (they build on each other), each side on its
//! own copies of the recorded collections `docs` and `hybrid`. Two of them are not
//! deterministic on a real server (the recordings' README: tied fused scores in either
//! order, and so fused scores that differ): `query-prefetch-rrf` and `hybrid-query-rrf`
//! are compared with their points sorted by id and without scores (ids, versions and
//! payloads still in full).

// Search, SearchBatch, SearchGroups and Recommend are deprecated in the client in favour of
// Query, but they are recorded and a proxy must still serve them.
#![allow(deprecated)]

mod support;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use qdrant_client::qdrant::{
    self as pb, points_client::PointsClient, qdrant_client::QdrantClient, Document, Query,
};
use secondpass_it::grpc_json::{groups, id_json, point_json, scored};
use secondpass_it::real_qdrant::Collection;
use secondpass_it::recordings::{
    self, assert_none_differ, compare, compare_loose, plain, python_json,
};
use serde_json::{json, Value};
use support::{client, proxy, qdrant, HttpClient};
use tonic::transport::Channel;

/// Exchanges whose point order (and so fused scores) is not deterministic on a real
/// server.
const ORDER_INSENSITIVE: &[&str] = &["query-prefetch-rrf", "hybrid-query-rrf"];

/// Points sorted by id, scores left out (for [`ORDER_INSENSITIVE`] exchanges).
fn without_order(body: &mut Value) {
    if let Some(points) = body
        .pointer_mut("/result/points")
        .and_then(Value::as_array_mut)
    {
        points.sort_by_key(|p| p["id"].to_string());
        points.iter_mut().for_each(|p| p["score"] = Value::Null);
    }
}

/// Whether the server is the one the recordings were made with.
async fn recorded_version(c: &HttpClient) -> bool {
    let root = support::request(c, Method::GET, &qdrant().url, &[], None).await;
    let version = root.json()["version"].as_str().unwrap_or("").to_string();
    if version != "1.18.3" {
        println!("Qdrant {version}: the recorded answers (1.18.3) are not compared");
    }
    version == "1.18.3"
}

/// One side of the REST replay: a base URL and its copies of the collections.
struct Side {
    base: String,
    names: [(&'static str, Collection<'static>); 2],
}

impl Side {
    fn new(base: String) -> Side {
        let q = qdrant();
        Side {
            base,
            names: [
                ("docs", q.collection("rec_docs")),
                ("hybrid", q.collection("rec_hybrid")),
            ],
        }
    }

    /// The recorded path on this side's collections.
    fn path(&self, recorded: &str) -> String {
        let (path, query) = recorded.split_once('?').unwrap_or((recorded, ""));
        let mut parts: Vec<String> = path.split('/').map(String::from).collect();
        if parts.len() > 2 && parts[1] == "collections" {
            if let Some((_, c)) = self.names.iter().find(|(n, _)| *n == parts[2]) {
                parts[2] = c.to_string();
            }
        }
        let path = parts.join("/");
        if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        }
    }

    /// An answer as if made on the recorded collections: their names in messages, and
    /// of a listing only this side's collections (others share the server).
    fn recorded_names(&self, v: &mut Value) {
        match v {
            Value::String(s) => {
                for (name, c) in &self.names {
                    *s = s.replace(&**c, name);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.recorded_names(x)),
            Value::Object(m) => {
                if let Some(Value::Array(list)) = m.get_mut("collections") {
                    list.retain(|c| {
                        let n = c["name"].as_str().unwrap_or("");
                        self.names.iter().any(|(_, mine)| n == &**mine)
                    });
                }
                m.values_mut().for_each(|x| self.recorded_names(x));
            }
            _ => {}
        }
    }
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    /// JSON, or the text as a JSON string
    body: Value,
}

/// Sends the recorded request (gzip accepted, as recorded) on `side`.
async fn send(c: &HttpClient, side: &Side, rec: &Value) -> Answer {
    let name = rec["name"].as_str().unwrap();
    let mut req = Request::builder()
        .method(rec["method"].as_str().unwrap().parse::<Method>().unwrap())
        .uri(format!(
            "{}{}",
            side.base,
            side.path(rec["path"].as_str().unwrap())
        ))
        .header("accept-encoding", "gzip, deflate");
    let body = match (
        &rec["request"],
        rec["request_is_raw_text"].as_bool().unwrap(),
    ) {
        (Value::Null, _) => Bytes::new(),
        (Value::String(s), true) => {
            // raw bodies: malformed JSON sent as JSON; the "wrong content type" one as text
            let ct = if name == "err-wrong-content-type" {
                "text/plain"
            } else {
                "application/json"
            };
            req = req.header("content-type", ct);
            Bytes::from(s.clone())
        }
        (v, _) => {
            req = req.header("content-type", "application/json");
            Bytes::from(python_json(v))
        }
    };
    let resp = c.request(req.body(Full::new(body)).unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let raw = support::gunzip(&parts.headers, body.collect().await.unwrap().to_bytes());
    let mut body = serde_json::from_slice(&raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
    side.recorded_names(&mut body);
    if ORDER_INSENSITIVE.contains(&name) {
        without_order(&mut body);
    }
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// What differs between `got` and `want` (status, three headers, body).
fn differences(got: &Answer, want_status: u16, want_headers: &Value, want: &Value) -> Vec<String> {
    let mut diffs = Vec::new();
    if got.status != want_status {
        diffs.push(format!("status {} != {want_status}", got.status));
    }
    for h in ["content-type", "content-encoding", "vary"] {
        let (g, w) = (
            got.headers.get(h).and_then(|v| v.to_str().ok()),
            want_headers.get(h).and_then(Value::as_str),
        );
        if g != w {
            diffs.push(format!("header {h}: {g:?} != {w:?}"));
        }
    }
    compare("$", &got.body, want, &mut diffs);
    diffs
}

fn headers_json(h: &HeaderMap) -> Value {
    h.iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[tokio::test]
async fn every_recorded_rest_exchange_passes_through_unchanged() {
    let recs = recordings::load("rest.jsonl");
    assert_eq!(recs.len(), 58, "expected 58 recorded exchanges");
    let proxy = proxy(&[], "").await;
    let c = client();
    let as_recorded = recorded_version(&c).await;
    let (via, direct) = (Side::new(proxy.url("")), Side::new(qdrant().url.clone()));
    let mut failures = Vec::new();
    for rec in &recs {
        let name = rec["name"].as_str().unwrap();
        let d = send(&c, &direct, rec).await;
        let v = send(&c, &via, rec).await;
        let mut diffs: Vec<String> = differences(&v, d.status, &headers_json(&d.headers), &d.body)
            .into_iter()
            .map(|x| format!("through secondpass vs direct: {x}"))
            .collect();
        if as_recorded {
            let mut want = rec["response"].clone();
            if ORDER_INSENSITIVE.contains(&name) {
                without_order(&mut want);
            }
            let mut d = d;
            if name == "root" {
                // the recording leaves out the build's commit hash
                d.body.as_object_mut().unwrap().remove("commit");
            }
            let status = rec["status"].as_u64().unwrap() as u16;
            diffs.extend(
                differences(&d, status, &rec["headers"], &want)
                    .into_iter()
                    .map(|x| format!("direct vs recorded: {x}")),
            );
        }
        if !diffs.is_empty() {
            failures.push(format!("{name}:\n    {}", diffs.join("\n    ")));
        }
    }
    assert_none_differ(&failures, recs.len(), "exchanges");
}

// ---------------------------------------------------------------- gRPC

const QV: [f32; 4] = [0.2, 0.1, 0.9, 0.7];

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

/// The request of recording `name`, on collections `docs` and `hybrid`.
fn call_for(name: &str, docs: &str, hybrid: &str) -> Call {
    let all: Option<pb::WithPayloadSelector> = Some(true.into());
    let nearest = |v: &[f32]| Some(Query::new_nearest(v.to_vec()));
    let search = |limit, with_payload| pb::SearchPoints {
        collection_name: docs.into(),
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
        "grpc-search" => Call::Search(search(3, all)),
        "grpc-search-include" => Call::Search(search(3, Some(vec!["title"].into()))),
        "grpc-search-offset" => Call::Search(pb::SearchPoints {
            offset: Some(2),
            ..search(2, None)
        }),
        "grpc-search-batch" => Call::SearchBatch(pb::SearchBatchPoints {
            collection_name: docs.into(),
            search_points: vec![search(2, None)],
            ..Default::default()
        }),
        "grpc-query" => Call::Query(pb::QueryPoints {
            with_payload: all,
            ..query(docs, nearest(&QV), 3)
        }),
        "grpc-query-batch" => Call::QueryBatch(pb::QueryBatchPoints {
            collection_name: docs.into(),
            query_points: vec![query(docs, nearest(&QV), 2)],
            ..Default::default()
        }),
        "grpc-query-groups" => Call::QueryGroups(pb::QueryPointGroups {
            collection_name: docs.into(),
            query: nearest(&QV),
            with_payload: all,
            limit: Some(2),
            group_size: Some(2),
            group_by: "group".into(),
            ..Default::default()
        }),
        "grpc-search-groups" => Call::SearchGroups(pb::SearchPointGroups {
            collection_name: docs.into(),
            vector: QV.to_vec(),
            limit: 2,
            group_by: "group".into(),
            group_size: 2,
            ..Default::default()
        }),
        "grpc-recommend" => Call::Recommend(pb::RecommendPoints {
            collection_name: docs.into(),
            positive: vec![1u64.into()],
            limit: 3,
            ..Default::default()
        }),
        "grpc-query-bm25-document" => Call::Query(pb::QueryPoints {
            using: Some("bm25".into()),
            with_payload: all,
            ..query(
                hybrid,
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
        "grpc-err-wrong-dimension" => Call::Query(query(docs, nearest(&[1.0, 2.0]), 3)),
        "grpc-scroll" => Call::Scroll(pb::ScrollPoints {
            collection_name: docs.into(),
            limit: Some(2),
            ..Default::default()
        }),
        "grpc-count" => Call::Count(pb::CountPoints {
            collection_name: docs.into(),
            exact: Some(true),
            ..Default::default()
        }),
        "grpc-health" => Call::Health(pb::HealthCheckRequest {}),
        other => panic!("no request for recording {other}"),
    }
}

/// `time` set to 0: the one field two answers to the same call may differ in.
trait Untimed {
    fn untimed(self) -> Self;
}

macro_rules! untimed {
    ($($t:ty),*) => {$(
        impl Untimed for $t {
            fn untimed(mut self) -> Self {
                self.time = 0.0;
                self
            }
        }
    )*};
}
untimed!(
    pb::SearchResponse,
    pb::SearchBatchResponse,
    pb::SearchGroupsResponse,
    pb::QueryResponse,
    pb::QueryBatchResponse,
    pb::QueryGroupsResponse,
    pb::RecommendResponse,
    pb::ScrollResponse,
    pb::CountResponse
);
impl Untimed for pb::HealthCheckReply {
    fn untimed(self) -> Self {
        self
    }
}

struct Clients {
    points: PointsClient<Channel>,
    qdrant: QdrantClient<Channel>,
}

impl Clients {
    async fn connect(url: &str) -> Clients {
        let ch = Channel::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
            .unwrap();
        Clients {
            points: PointsClient::new(ch.clone()),
            qdrant: QdrantClient::new(ch),
        }
    }
}

/// The call through secondpass and direct: how the two answers differ, and the direct
/// answer as plain JSON (or the error's code and message).
async fn both(
    via: &mut Clients,
    direct: &mut Clients,
    call: Call,
) -> (Vec<String>, Result<Value, tonic::Status>) {
    macro_rules! go {
        ($client:ident . $m:ident ($r:expr), $json:expr) => {{
            let r = $r;
            let v = via
                .$client
                .$m(r.clone())
                .await
                .map(|x| x.into_inner().untimed());
            let d = direct.$client.$m(r).await.map(|x| x.into_inner().untimed());
            let diffs = match (&v, &d) {
                (Ok(a), Ok(b)) if a == b => vec![],
                (Err(a), Err(b)) if a.code() == b.code() && a.message() == b.message() => vec![],
                _ => vec![format!("through secondpass {v:?}\n  direct {d:?}")],
            };
            (diffs, d.map(|x| $json(&x)))
        }};
    }
    match call {
        Call::Search(r) => go!(
            points.search(r),
            |x: &pb::SearchResponse| json!({"result": scored(&x.result)})
        ),
        Call::Recommend(r) => go!(
            points.recommend(r),
            |x: &pb::RecommendResponse| json!({"result": scored(&x.result)})
        ),
        Call::Query(r) => go!(
            points.query(r),
            |x: &pb::QueryResponse| json!({"result": scored(&x.result)})
        ),
        Call::SearchBatch(r) => go!(points.search_batch(r), |x: &pb::SearchBatchResponse| {
            json!({"result": x.result.iter().map(|b| json!({"result": scored(&b.result)})).collect::<Vec<_>>()})
        }),
        Call::QueryBatch(r) => go!(points.query_batch(r), |x: &pb::QueryBatchResponse| {
            json!({"result": x.result.iter().map(|b| json!({"result": scored(&b.result)})).collect::<Vec<_>>()})
        }),
        Call::SearchGroups(r) => go!(points.search_groups(r), |x: &pb::SearchGroupsResponse| {
            groups(&x.result)
        }),
        Call::QueryGroups(r) => go!(
            points.query_groups(r),
            |x: &pb::QueryGroupsResponse| groups(&x.result)
        ),
        Call::Scroll(r) => go!(points.scroll(r), |x: &pb::ScrollResponse| {
            let points: Vec<Value> = x
                .result
                .iter()
                .map(|p| point_json(&p.id, &p.payload, None, 0))
                .collect();
            json!({"next_page_offset": id_json(&x.next_page_offset), "result": points})
        }),
        Call::Count(r) => go!(points.count(r), |x: &pb::CountResponse| {
            json!({"result": {"count": x.result.as_ref().map_or(0, |c| c.count)}})
        }),
        Call::Health(r) => go!(qdrant.health_check(r), |x: &pb::HealthCheckReply| {
            json!({"title": x.title, "version": x.version})
        }),
    }
}

fn code_name(c: tonic::Code) -> String {
    // "NotFound" -> "NOT_FOUND", as the recordings write codes
    let mut out = String::new();
    for (i, ch) in format!("{c:?}").chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[tokio::test]
async fn every_recorded_grpc_exchange_passes_through_unchanged() {
    let recs = recordings::load("grpc.jsonl");
    assert_eq!(recs.len(), 15, "expected 15 recorded gRPC exchanges");
    let (docs, hybrid) = (
        qdrant().collection("rec_docs"),
        qdrant().collection("rec_hybrid"),
    );
    let proxy = proxy(&[], "").await;
    proxy.seed(&docs, false).await;
    proxy.seed(&hybrid, true).await;
    let as_recorded = recorded_version(&client()).await;
    let mut via = Clients::connect(&format!("http://{}", proxy.server.grpc_addr)).await;
    let mut direct = Clients::connect(&qdrant().grpc_url).await;

    let mut failures = Vec::new();
    for rec in &recs {
        let name = rec["name"].as_str().unwrap();
        let (mut diffs, answer) = both(&mut via, &mut direct, call_for(name, &docs, &hybrid)).await;
        if as_recorded {
            let want_code = rec["code"].as_str().unwrap();
            match answer {
                Ok(got) if want_code == "OK" => {
                    compare_loose("", &got, &plain(&rec["response"]), &mut diffs)
                }
                Ok(_) => diffs.push(format!("answered OK, recorded {want_code}")),
                Err(status) => {
                    let got = code_name(status.code());
                    if got != want_code || Some(status.message()) != rec["details"].as_str() {
                        diffs.push(format!(
                            "{got} {:?}, recorded {want_code} {}",
                            status.message(),
                            rec["details"]
                        ));
                    }
                }
            }
        }
        if !diffs.is_empty() {
            failures.push(format!("{name}:\n  {}", diffs.join("\n  ")));
        }
    }
    assert_none_differ(&failures, recs.len(), "gRPC recordings");
}

#[test]
fn grpc_code_names_are_written_as_recorded() {
    assert_eq!(code_name(tonic::Code::NotFound), "NOT_FOUND");
    assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
    assert_eq!(code_name(tonic::Code::Ok), "OK");
}
