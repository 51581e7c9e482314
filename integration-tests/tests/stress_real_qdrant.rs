//! Stress against the real Qdrant: thousands of mixed REST and gRPC calls through
//! secondpass, each made again directly to Qdrant and compared. A large share are
//! requests Qdrant rejects (bad dimension, missing collection, bad filter, invalid
//! JSON, formulas that fail with INVALID_ARGUMENT: the load that once hung the raw gRPC
//! pass-through), plus searches on collections with reranking off and on (some really
//! reranked, with a small pool: the CPU model is slow) and upserts.
//!
//! Every call has a timeout, so a hang is counted rather than waited for; the test
//! asserts 0 hangs and 0 differences. Bounded: `SECONDPASS_STRESS_CALLS` calls (default
//! 4000) over `SECONDPASS_STRESS_CONCURRENCY` tasks (default 12), loopback only.
//!
//! Compared: the HTTP status (gRPC code) and body, ignoring `time`, the upserts'
//! `operation_id` and secondpass's `rerank` marker; for reranked searches the shape,
//! that the ids are distinct and among Qdrant's top `pool`, their payloads, and that
//! scores are sigmoids in descending order (the model's order is checked elsewhere).
//! Half the REST calls accept gzip, as Python `requests`, httpx and Node's fetch do by
//! default, on both sides; compressed answers are decoded before the comparison. A
//! quarter reach secondpass over HTTP/2 (prior knowledge); some POST to a path Qdrant
//! does not have (its 404 closes the connection).

// The legacy Search method is deprecated in the client but still served.
#![allow(deprecated)]

mod support;

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::{
    expression, query, vector_input, DenseVector, DivExpression, Expression, Formula, PointStruct,
    PointsOperationResponse, PrefetchQuery, Query, QueryPoints, QueryResponse, ScoredPoint,
    SearchPoints, SearchResponse, SumExpression, UpsertPoints, VectorInput, WithPayloadSelector,
};
use secondpass_it::real_qdrant::RealQdrant;
use serde_json::{json, Value};
use support::{client, config_with_grpc, HttpClient, Proxy};
use tonic::transport::Channel;

const POOL: usize = 8;
const POINTS: u64 = 100;
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// REST answers that came gzip-encoded (through secondpass or directly).
static GZIPPED: AtomicUsize = AtomicUsize::new(0);
const QUERY_TEXT: &str = "wing flutter at supersonic speed";
const WORDS: [&str; 12] = [
    "wing",
    "flutter",
    "boundary",
    "layer",
    "shock",
    "heat",
    "supersonic",
    "panel",
    "buckling",
    "jet",
    "noise",
    "laminar",
];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: deterministic per call index, no dependency.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn vector(&mut self) -> Vec<f32> {
        (0..4).map(|_| self.unit() * 2.0 - 1.0).collect()
    }
}

struct Names {
    on: String,
    off: String,
    writes: String,
    missing: String,
}

struct Ctx {
    names: Names,
    proxy_rest: String,
    direct_rest: String,
    http: HttpClient,
    /// HTTP/2 prior knowledge, as `curl --http2-prior-knowledge` (secondpass only)
    h2: HttpClient,
    proxy_grpc: PointsClient<Channel>,
    direct_grpc: PointsClient<Channel>,
}

enum Outcome {
    Same,
    Differs(String),
    Hang(String),
}

// ---------- REST ----------

async fn http_call(
    c: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Value), String> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let resp = c.request(req).await.map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let gzip = resp
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let mut raw = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    if gzip {
        GZIPPED.fetch_add(1, Ordering::Relaxed);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut plain)
            .map_err(|e| format!("gzip body: {e}"))?;
        raw = Bytes::from(plain);
    }
    let mut body = serde_json::from_slice::<Value>(&raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
    if let Some(o) = body.as_object_mut() {
        o.remove("time");
        o.remove("rerank"); // secondpass's marker on rerank-enabled collections
        if let Some(r) = o.get_mut("result").and_then(Value::as_object_mut) {
            if r.contains_key("operation_id") {
                r.insert("operation_id".into(), json!(0));
            }
        }
    }
    Ok((status, body))
}

struct RestCall {
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    /// query text for the proxied call: reranked (compared by shape)
    rerank: bool,
    /// `accept-encoding: gzip` on both calls
    gzip: bool,
    /// the proxied call over HTTP/2 (prior knowledge), the direct one over HTTP/1.1
    h2: bool,
}

fn rest_points(rng: &mut Rng, n: usize, dim: usize) -> Value {
    let points: Vec<Value> = (0..n)
        .map(|_| {
            json!({"id": 1000 + rng.below(500), "vector": (0..dim).map(|_| rng.unit()).collect::<Vec<_>>(),
                   "payload": {"text": WORDS[rng.below(12) as usize], "a": rng.below(10)}})
        })
        .collect();
    json!({ "points": points })
}

fn formula_failing(rng: &mut Rng) -> Value {
    match rng.below(3) {
        0 => json!({"div": {"left": 1, "right": 0}}),
        1 => json!({"ln": 0}),
        _ => json!({"sum": ["$score", "no_such_field"]}),
    }
}

fn rest_call(rng: &mut Rng, n: &Names) -> RestCall {
    let vector = rng.vector();
    let limit = 1 + rng.below(POOL as u64);
    let with_payload = match rng.below(3) {
        0 => json!(false),
        1 => json!(true),
        _ => json!(["text"]),
    };
    let post = |path: String, body: Value| RestCall {
        method: Method::POST,
        path,
        body: Some(serde_json::to_vec(&body).unwrap()),
        rerank: false,
        gzip: false,
        h2: false,
    };
    match rng.below(100) {
        0..=9 => post(
            format!("/collections/{}/points/search", n.off),
            json!({"vector": vector, "limit": limit, "with_payload": with_payload}),
        ),
        10..=17 => post(
            format!("/collections/{}/points/query", n.off),
            json!({"query": vector, "limit": limit, "with_payload": with_payload,
                   "filter": {"must": [{"key": "a", "range": {"gte": rng.below(5)}}]}}),
        ),
        18..=23 => post(
            format!("/collections/{}/points/query", n.on),
            json!({"query": vector, "limit": limit, "with_payload": with_payload}),
        ),
        24..=25 => RestCall {
            rerank: true,
            ..post(
                format!("/collections/{}/points/query", n.on),
                json!({"query": vector, "limit": limit, "with_payload": with_payload}),
            )
        },
        // Qdrant 1.19's `slice` condition and `match.prefix` (1.18.3: its own 400).
        26..=27 => RestCall {
            rerank: true,
            ..post(
                format!("/collections/{}/points/query", n.on),
                json!({"query": vector, "limit": limit, "with_payload": with_payload,
                       "filter": {"should": [{"slice": {"total": 2, "index": rng.below(2)}},
                                             {"key": "text", "match": {"prefix": "w"}}]}}),
            )
        },
        28..=35 => RestCall {
            method: Method::PUT,
            path: format!("/collections/{}/points?wait=true", n.writes),
            body: Some(serde_json::to_vec(&rest_points(rng, 3, 4)).unwrap()),
            rerank: false,
            gzip: false,
            h2: false,
        },
        36..=39 => RestCall {
            method: Method::PUT,
            path: format!("/collections/{}/points?wait=true", n.writes),
            body: Some(serde_json::to_vec(&rest_points(rng, 2, 3)).unwrap()),
            rerank: false,
            gzip: false,
            h2: false,
        },
        // Qdrant answers 404 without reading the body and closes the connection
        // unannounced: the next call must not be sent down it.
        45..=47 => post(
            "/no_such_path".to_string(),
            json!({"query": vector, "limit": limit}),
        ),
        40..=44 => post(
            format!("/collections/{}/points/search", n.off),
            json!({"vector": [1.0, 2.0], "limit": limit}),
        ),
        48..=51 => RestCall {
            rerank: true,
            ..post(
                format!("/collections/{}/points/query", n.on),
                json!({"query": [1.0, 2.0, 3.0], "limit": limit}),
            )
        },
        52..=58 => post(
            format!("/collections/{}/points/query", n.missing),
            json!({"query": vector, "limit": limit}),
        ),
        59..=65 => post(
            format!("/collections/{}/points/query", n.off),
            json!({"query": vector, "filter": {"must": [{"key": "a", "range": {"gt": "x"}}]}}),
        ),
        66..=72 => RestCall {
            body: Some(br#"{"query": [0.1, 0.2, "#.to_vec()),
            ..post(format!("/collections/{}/points/query", n.off), json!(null))
        },
        73..=86 => post(
            format!("/collections/{}/points/query", n.off),
            json!({"prefetch": {"query": vector, "limit": 50},
                   "query": {"formula": formula_failing(rng)}, "limit": limit}),
        ),
        87..=92 => post(
            format!("/collections/{}/points/query", n.off),
            json!({"prefetch": {"query": vector, "limit": 50},
                   "query": {"formula": {"sum": ["$score", {"mult": [0.1, "a"]}]}}, "limit": limit}),
        ),
        93..=96 => RestCall {
            method: Method::GET,
            path: format!(
                "/collections/{}/points/{}",
                n.off,
                1 + rng.below(POINTS + 5)
            ),
            body: None,
            rerank: false,
            gzip: false,
            h2: false,
        },
        _ => RestCall {
            rerank: true,
            ..post(
                format!("/collections/{}/points/query", n.on),
                json!({"prefetch": {"query": vector, "limit": 50},
                       "query": {"formula": formula_failing(rng)}, "limit": limit}),
            )
        },
    }
}

async fn run_rest(ctx: &Ctx, call: RestCall) -> Outcome {
    let accept: &[(&str, &str)] = if call.gzip {
        &[("accept-encoding", "gzip")]
    } else {
        &[]
    };
    let mut hdr = accept.to_vec();
    if call.rerank {
        hdr.push(("x-rerank-query", "wing%20flutter%20at%20supersonic%20speed"));
    }
    let what = format!("REST {} {}", call.method, call.path);
    let via = tokio::time::timeout(
        CALL_TIMEOUT,
        http_call(
            if call.h2 { &ctx.h2 } else { &ctx.http },
            call.method.clone(),
            &format!("{}{}", ctx.proxy_rest, call.path),
            &hdr,
            call.body.clone(),
        ),
    )
    .await;
    let via = match via {
        Err(_) => return Outcome::Hang(what),
        Ok(Err(e)) => return Outcome::Differs(format!("{what}: through secondpass: {e}")),
        Ok(Ok(v)) => v,
    };
    let mut direct_body = call.body.clone();
    if call.rerank && via.0 == StatusCode::OK {
        // Qdrant's candidates: the same request at the pool size.
        let mut b: Value = serde_json::from_slice(call.body.as_ref().unwrap()).unwrap();
        b["limit"] = json!(POOL);
        direct_body = Some(serde_json::to_vec(&b).unwrap());
    }
    let direct = tokio::time::timeout(
        CALL_TIMEOUT,
        http_call(
            &ctx.http,
            call.method,
            &format!("{}{}", ctx.direct_rest, call.path),
            accept,
            direct_body,
        ),
    )
    .await;
    let direct = match direct {
        Ok(Ok(d)) => d,
        other => return Outcome::Differs(format!("{what}: direct call failed: {other:?}")),
    };
    if call.rerank && via.0 == StatusCode::OK {
        let body = call
            .body
            .as_ref()
            .map(|b| serde_json::from_slice::<Value>(b).unwrap());
        let limit = body.as_ref().unwrap()["limit"].as_u64().unwrap() as usize;
        return reranked_rest(&what, &via.1, &direct.1, limit);
    }
    if via == direct {
        Outcome::Same
    } else {
        Outcome::Differs(format!("{what}: {via:?} != direct {direct:?}"))
    }
}

/// A reranked page: distinct ids among Qdrant's top `POOL`, their payloads as Qdrant
/// gives them, sigmoid scores in descending order, `min(limit, candidates)` of them.
fn reranked_rest(what: &str, got: &Value, direct: &Value, limit: usize) -> Outcome {
    let (Some(points), Some(cands)) = (
        got["result"]["points"].as_array(),
        direct["result"]["points"].as_array(),
    ) else {
        return Outcome::Differs(format!("{what}: shape {got} vs direct {direct}"));
    };
    if got["status"] != "ok" || points.len() != limit.min(cands.len()) {
        return Outcome::Differs(format!(
            "{what}: {} points, want {limit}: {got}",
            points.len()
        ));
    }
    let mut seen = Vec::new();
    let mut last = f64::INFINITY;
    for p in points {
        let Some(c) = cands.iter().find(|c| c["id"] == p["id"]) else {
            return Outcome::Differs(format!("{what}: {} is not a candidate", p["id"]));
        };
        if seen.contains(&&p["id"]) || p.get("payload") != c.get("payload") {
            return Outcome::Differs(format!("{what}: {p} vs candidate {c}"));
        }
        seen.push(&p["id"]);
        let s = p["score"].as_f64().unwrap_or(-1.0);
        if !(0.0..=1.0).contains(&s) || s > last {
            return Outcome::Differs(format!("{what}: scores out of order: {got}"));
        }
        last = s;
    }
    Outcome::Same
}

// ---------- gRPC ----------

fn nearest(v: Vec<f32>) -> Option<Query> {
    Some(Query {
        variant: Some(query::Variant::Nearest(VectorInput {
            variant: Some(vector_input::Variant::Dense(DenseVector { data: v })),
        })),
    })
}

fn expr(v: expression::Variant) -> Option<Expression> {
    Some(Expression { variant: Some(v) })
}

fn formula_query(rng: &mut Rng, fails: bool) -> Option<Query> {
    use expression::Variant as E;
    let score = || expr(E::Variable("$score".into()));
    let e = match (fails, rng.below(3)) {
        (true, 0) => E::Div(Box::new(DivExpression {
            left: expr(E::Constant(1.0)).map(Box::new),
            right: expr(E::Constant(0.0)).map(Box::new),
            by_zero_default: None,
        })),
        (true, 1) => E::Ln(Box::new(expr(E::Constant(0.0)).unwrap())),
        (true, _) => E::Sum(SumExpression {
            sum: vec![
                score().unwrap(),
                expr(E::Variable("no_such_field".into())).unwrap(),
            ],
        }),
        (false, _) => E::Sum(SumExpression {
            sum: vec![score().unwrap(), expr(E::Variable("a".into())).unwrap()],
        }),
    };
    Some(Query {
        variant: Some(query::Variant::Formula(Formula {
            expression: expr(e),
            defaults: Default::default(),
        })),
    })
}

#[allow(clippy::large_enum_variant)] // short-lived, one per call
enum GrpcCall {
    Query(QueryPoints, bool),
    Search(SearchPoints),
    Upsert(UpsertPoints),
}

fn grpc_points(rng: &mut Rng, n: usize, dim: usize) -> Vec<PointStruct> {
    (0..n)
        .map(|_| {
            PointStruct::new(
                2000 + rng.below(500),
                (0..dim).map(|_| rng.unit()).collect::<Vec<f32>>(),
                [("text", WORDS[rng.below(12) as usize].into())],
            )
        })
        .collect()
}

fn grpc_call(rng: &mut Rng, n: &Names) -> GrpcCall {
    let limit = Some(1 + rng.below(POOL as u64));
    let payload = Some(WithPayloadSelector::from(rng.below(2) == 0));
    let prefetch = |rng: &mut Rng| {
        vec![PrefetchQuery {
            query: nearest(rng.vector()),
            limit: Some(50),
            ..Default::default()
        }]
    };
    let q = |coll: &str, query, prefetch, rerank| {
        GrpcCall::Query(
            QueryPoints {
                collection_name: coll.into(),
                prefetch,
                query,
                limit,
                with_payload: payload.clone(),
                ..Default::default()
            },
            rerank,
        )
    };
    match rng.below(100) {
        // the congruence suite's hang: failing formulas through the raw pass-through
        0..=74 => q(&n.off, formula_query(rng, true), prefetch(rng), false),
        75..=79 => q(&n.off, formula_query(rng, false), prefetch(rng), false),
        80..=82 => q(&n.off, nearest(rng.vector()), vec![], false),
        83..=85 => q(&n.on, nearest(rng.vector()), vec![], false),
        86..=87 => q(&n.on, nearest(rng.vector()), vec![], true),
        88..=89 => q(&n.on, formula_query(rng, true), prefetch(rng), true),
        90..=92 => q(&n.missing, nearest(rng.vector()), vec![], false),
        93..=95 => GrpcCall::Search(SearchPoints {
            collection_name: n.off.clone(),
            vector: vec![1.0, 2.0],
            limit: 3,
            ..Default::default()
        }),
        96..=98 => GrpcCall::Upsert(UpsertPoints {
            collection_name: n.writes.clone(),
            wait: Some(true),
            points: grpc_points(rng, 3, 4),
            ..Default::default()
        }),
        _ => GrpcCall::Upsert(UpsertPoints {
            collection_name: n.writes.clone(),
            wait: Some(true),
            points: grpc_points(rng, 2, 5),
            ..Default::default()
        }),
    }
}

fn with_text<T>(msg: T, rerank: bool) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if rerank {
        r.metadata_mut().insert(
            "x-rerank-query",
            QUERY_TEXT.replace(' ', "%20").parse().unwrap(),
        );
    }
    r
}

/// A gRPC answer with `time` (and upserts' `operation_id`) cleared.
#[derive(Debug, PartialEq)]
enum GrpcOk {
    Query(QueryResponse),
    Search(SearchResponse),
    Upsert(PointsOperationResponse),
}

type GrpcResult = Result<GrpcOk, (tonic::Code, String)>;

fn status(s: tonic::Status) -> (tonic::Code, String) {
    (s.code(), s.message().to_string())
}

async fn send_grpc(mut c: PointsClient<Channel>, call: &GrpcCall, rerank: bool) -> GrpcResult {
    Ok(match call {
        GrpcCall::Query(q, _) => {
            let mut r = c
                .query(with_text(q.clone(), rerank))
                .await
                .map_err(status)?
                .into_inner();
            r.time = 0.0;
            GrpcOk::Query(r)
        }
        GrpcCall::Search(s) => {
            let mut r = c
                .search(with_text(s.clone(), rerank))
                .await
                .map_err(status)?
                .into_inner();
            r.time = 0.0;
            GrpcOk::Search(r)
        }
        GrpcCall::Upsert(u) => {
            let mut r = c.upsert(u.clone()).await.map_err(status)?.into_inner();
            r.time = 0.0;
            if let Some(res) = r.result.as_mut() {
                res.operation_id = None;
            }
            GrpcOk::Upsert(r)
        }
    })
}

fn pid(p: &ScoredPoint) -> String {
    format!("{:?}", p.id)
}

async fn run_grpc(ctx: &Ctx, mut call: GrpcCall) -> Outcome {
    let what = match &call {
        GrpcCall::Query(q, r) => format!("gRPC Query {} (rerank {r})", q.collection_name),
        GrpcCall::Search(s) => format!("gRPC Search {}", s.collection_name),
        GrpcCall::Upsert(u) => format!("gRPC Upsert {}", u.collection_name),
    };
    let rerank = matches!(call, GrpcCall::Query(_, true));
    let via = match tokio::time::timeout(
        CALL_TIMEOUT,
        send_grpc(ctx.proxy_grpc.clone(), &call, rerank),
    )
    .await
    {
        Err(_) => return Outcome::Hang(what),
        Ok(v) => v,
    };
    let limit = match &mut call {
        GrpcCall::Query(q, true) if via.is_ok() => {
            let l = q.limit.unwrap_or(10) as usize;
            q.limit = Some(POOL as u64);
            l
        }
        _ => 0,
    };
    let Ok(direct) = tokio::time::timeout(
        CALL_TIMEOUT,
        send_grpc(ctx.direct_grpc.clone(), &call, false),
    )
    .await
    else {
        return Outcome::Differs(format!("{what}: the direct call timed out"));
    };
    if limit == 0 {
        return if via == direct {
            Outcome::Same
        } else {
            Outcome::Differs(format!("{what}: {via:?} != direct {direct:?}"))
        };
    }
    // reranked: the same checks as REST
    let (Ok(GrpcOk::Query(got)), Ok(GrpcOk::Query(cands))) = (via, direct) else {
        return Outcome::Differs(format!("{what}: the direct call failed"));
    };
    let (got, cands) = (got.result, cands.result);
    if got.len() != limit.min(cands.len()) {
        return Outcome::Differs(format!("{what}: {} points, want {limit}", got.len()));
    }
    let mut last = f32::INFINITY;
    for (i, p) in got.iter().enumerate() {
        let Some(c) = cands.iter().find(|c| c.id == p.id) else {
            return Outcome::Differs(format!("{what}: {} is not a candidate", pid(p)));
        };
        if got[..i].iter().any(|q| q.id == p.id) || p.payload != c.payload {
            return Outcome::Differs(format!("{what}: {p:?} vs candidate {c:?}"));
        }
        if !(0.0..=1.0).contains(&p.score) || p.score > last {
            return Outcome::Differs(format!("{what}: scores out of order: {got:?}"));
        }
        last = p.score;
    }
    Outcome::Same
}

// ---------- setup and the run ----------

async fn seed(http: &HttpClient, base: &str, coll: &str, with_points: bool) {
    let url = format!("{base}/collections/{coll}");
    let _ = http_call(http, Method::DELETE, &url, &[], None).await;
    let create = json!({"vectors": {"size": 4, "distance": "Cosine"}});
    let (s, b) = http_call(
        http,
        Method::PUT,
        &url,
        &[],
        Some(serde_json::to_vec(&create).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::OK, "create {coll}: {b}");
    if !with_points {
        return;
    }
    let mut rng = Rng::new(7);
    let points: Vec<Value> = (1..=POINTS)
        .map(|id| {
            let text: Vec<&str> = (0..6).map(|_| WORDS[rng.below(12) as usize]).collect();
            json!({"id": id, "vector": rng.vector(), "payload": {"text": text.join(" "), "a": id % 10}})
        })
        .collect();
    let (s, b) = http_call(
        http,
        Method::PUT,
        &format!("{url}/points?wait=true"),
        &[],
        Some(serde_json::to_vec(&json!({ "points": points })).unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(s, StatusCode::OK, "upsert {coll}: {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_calls_through_secondpass_answer_like_qdrant() {
    let qdrant = RealQdrant::shared();
    let calls = env_usize("SECONDPASS_STRESS_CALLS", 4000);
    let concurrency = env_usize("SECONDPASS_STRESS_CONCURRENCY", 12);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let tag = format!("{}_{nanos}", std::process::id());
    let names = Names {
        on: format!("stress_on_{tag}"),
        off: format!("stress_off_{tag}"),
        writes: format!("stress_w_{tag}"),
        missing: format!("stress_missing_{tag}"),
    };
    let extra = format!("[collections.{}]\npool = {POOL}\n", names.on);
    let proxy = Proxy::start(config_with_grpc(
        &qdrant.url,
        &qdrant.grpc_url,
        &[&names.on],
        &extra,
    ))
    .await;
    let http = client();
    for (coll, pts) in [
        (&names.on, true),
        (&names.off, true),
        (&names.writes, false),
    ] {
        seed(&http, &qdrant.url, coll, pts).await;
    }
    let channel = |url: String| async move {
        PointsClient::new(
            Channel::from_shared(url)
                .unwrap()
                .connect()
                .await
                .expect("gRPC connect"),
        )
    };
    let ctx = Arc::new(Ctx {
        proxy_rest: proxy.url(""),
        direct_rest: qdrant.url.clone(),
        proxy_grpc: channel(format!("http://{}", proxy.server.grpc_addr)).await,
        direct_grpc: channel(qdrant.grpc_url.clone()).await,
        http,
        h2: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http(),
        names,
    });

    let next = Arc::new(AtomicUsize::new(0));
    let hangs = Arc::new(Mutex::new(Vec::<String>::new()));
    let diffs = Arc::new(Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (ctx, next, hangs, diffs) = (ctx.clone(), next.clone(), hangs.clone(), diffs.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    return;
                }
                let mut rng = Rng::new(i as u64 + 1);
                // 60% gRPC, most of it failing formula queries (see grpc_call)
                let outcome = if rng.below(100) < 40 {
                    let mut call = rest_call(&mut rng, &ctx.names);
                    call.gzip = rng.below(2) == 0;
                    call.h2 = rng.below(4) == 0;
                    run_rest(&ctx, call).await
                } else {
                    let call = grpc_call(&mut rng, &ctx.names);
                    run_grpc(&ctx, call).await
                };
                match outcome {
                    Outcome::Same => {}
                    Outcome::Hang(w) => hangs.lock().unwrap().push(format!("#{i} {w}")),
                    Outcome::Differs(d) => diffs.lock().unwrap().push(format!("#{i} {d}")),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("stress task");
    }
    let took = started.elapsed();
    for coll in [&ctx.names.on, &ctx.names.off, &ctx.names.writes] {
        let url = format!("{}/collections/{coll}", ctx.direct_rest);
        let _ = http_call(&ctx.http, Method::DELETE, &url, &[], None).await;
    }
    let metrics = String::from_utf8(proxy.get_admin("/metrics").await.body.to_vec()).unwrap();
    let applied: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("secondpass_requests_total{") && l.contains("rerank_status=\"applied\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let (hangs, diffs) = (hangs.lock().unwrap(), diffs.lock().unwrap());
    eprintln!(
        "stress: {calls} calls (each also made directly), concurrency {concurrency}, {:.1} s, \
         {applied} reranked, {} gzip answers, {} hangs, {} differences",
        took.as_secs_f64(),
        GZIPPED.load(Ordering::Relaxed),
        hangs.len(),
        diffs.len()
    );
    for line in hangs.iter().chain(diffs.iter()).take(20) {
        eprintln!("  {line}");
    }
    assert!(
        hangs.is_empty(),
        "{} calls hung (> {CALL_TIMEOUT:?})",
        hangs.len()
    );
    assert!(
        diffs.is_empty(),
        "{} answers differ from Qdrant's",
        diffs.len()
    );
    assert!(
        GZIPPED.load(Ordering::Relaxed) >= calls / 50,
        "too few REST answers came compressed: {}",
        GZIPPED.load(Ordering::Relaxed)
    );
    assert!(
        applied >= (calls / 100) as f64,
        "too few searches were really reranked: {applied}"
    );
}
