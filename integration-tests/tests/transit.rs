//! Nothing lost in transit on the rewritten path: compressed REST answers and request
//! bodies (against the real Qdrant at QDRANT_URL), gRPC searches patched on the wire
//! (unknown fields reach the upstream; the real Qdrant at QDRANT_GRPC_URL still
//! answers), and gzip bombs bounded by `server.max_body_bytes`.

mod support;

use secondpass_it::real_qdrant::RealQdrant;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prost::Message;
use qdrant_client::qdrant::{
    query, value, vector_input, DenseVector, PointId, Query, QueryBatchPoints, QueryBatchResponse,
    QueryPoints, QueryResponse, ScoredPoint, VectorInput,
};
use secondpass::transport::grpc::{frame, wire};
use secondpass::transport::rest::encoding::{decode, encode, Coding};
use serde_json::{json, Value};
use support::{config, config_with_grpc, query_vector, Proxy};

const QUERY: &str = "capital%20of%20Germany";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    raw: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body, decoded as its `content-encoding` says.
    fn json(&self) -> Value {
        let plain = match self.header("content-encoding") {
            None => self.raw.to_vec(),
            Some("gzip") => decode(Coding::Gzip, &self.raw, usize::MAX).unwrap(),
            Some("deflate") => decode(Coding::Deflate, &self.raw, usize::MAX).unwrap(),
            Some("zstd") => decode(Coding::Zstd, &self.raw, usize::MAX).unwrap(),
            Some(other) => panic!("unexpected content-encoding {other}"),
        };
        serde_json::from_slice(&plain).unwrap_or_else(|e| panic!("{e}: {plain:?}"))
    }
}

async fn post(proxy: &Proxy, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(proxy.url(path))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = proxy
        .client
        .request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .expect("request");
    let (parts, body) = resp.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        raw: body.collect().await.unwrap().to_bytes(),
    }
}

fn ids(answer: &Value) -> Vec<Value> {
    answer["result"]["points"]
        .as_array()
        .unwrap_or_else(|| panic!("no points: {answer}"))
        .iter()
        .map(|p| p["id"].clone())
        .collect()
}

#[tokio::test]
async fn rest_answers_and_bodies_are_compressed_as_qdrant_does() {
    let qdrant = RealQdrant::shared();
    let coll = format!("secondpass_transit_{}", std::process::id());
    let proxy = Proxy::start(config(&qdrant.url, &[&coll], "")).await;
    proxy.seed(&coll, false).await;
    let path = format!("/collections/{coll}/points/query");
    let search = json!({"query": query_vector(), "limit": 3, "with_payload": ["title"]});
    let plain = serde_json::to_vec(&search).unwrap();
    let rerank = [("x-rerank-query", QUERY)];

    // Uncompressed, the reference answer.
    let base = post(&proxy, &path, &rerank, plain.clone()).await;
    assert_eq!(base.status, StatusCode::OK);
    assert_eq!(base.header("x-rerank-status"), Some("applied"));
    assert_eq!(base.header("content-encoding"), None);
    let expected = ids(&base.json());
    assert_eq!(expected.len(), 3);

    // The answer in each coding the client prefers, with a correct length and Vary.
    for (accept, coding) in [
        ("gzip, deflate", Some("gzip")),
        ("deflate", Some("deflate")),
        ("zstd, gzip", Some("zstd")),
        ("gzip, br", Some("gzip")),
        ("gzip;q=0.5, identity", None),
        ("identity", None),
    ] {
        let mut h = rerank.to_vec();
        h.push(("accept-encoding", accept));
        let a = post(&proxy, &path, &h, plain.clone()).await;
        assert_eq!(a.status, StatusCode::OK, "{accept}");
        assert_eq!(a.header("content-encoding"), coding, "{accept}");
        assert_eq!(a.header("x-rerank-status"), Some("applied"), "{accept}");
        assert_eq!(
            a.header("content-length")
                .map(|l| l.parse::<usize>().unwrap()),
            Some(a.raw.len()),
            "{accept}"
        );
        let vary = a.header("vary").unwrap_or("").to_ascii_lowercase();
        assert_eq!(
            vary.contains("accept-encoding"),
            coding.is_some(),
            "{accept}: {vary}"
        );
        let body = a.json();
        assert_eq!(ids(&body), expected, "{accept}");
        assert_eq!(body["rerank"]["status"], "applied");
    }

    // Qdrant's own error on the rewritten path is compressed too.
    let mut h = rerank.to_vec();
    h.push(("accept-encoding", "gzip"));
    let bad = json!({"query": [0.1, 0.2], "limit": 3});
    let a = post(&proxy, &path, &h, serde_json::to_vec(&bad).unwrap()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.header("content-encoding"), Some("gzip"));
    assert!(a.json()["status"]["error"].is_string());

    // Compressed request bodies are read and reranked, not skipped.
    for coding in [Coding::Gzip, Coding::Deflate, Coding::Zstd] {
        let mut h = rerank.to_vec();
        h.push(("content-encoding", coding.as_str()));
        let a = post(&proxy, &path, &h, encode(coding, &plain)).await;
        assert_eq!(a.status, StatusCode::OK, "{coding:?}");
        assert_eq!(a.header("x-rerank-status"), Some("applied"), "{coding:?}");
        assert_eq!(ids(&a.json()), expected, "{coding:?}");
    }

    // A corrupt body: Qdrant's own 400, in its own words.
    let mut h = rerank.to_vec();
    h.push(("content-encoding", "gzip"));
    let a = post(&proxy, &path, &h, plain.clone()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.header("x-rerank-status"), Some("skipped"));
    let err = a.json()["status"]["error"].as_str().unwrap().to_string();
    assert!(err.contains("invalid gzip header"), "{err}");

    // A gzip bomb (40 MiB of JSON in ~40 KiB): never decoded past the limit;
    // Qdrant answers with its own 400 for a body past its 32 MiB.
    let mut big = br#"{"limit": 3, "query": "#.to_vec();
    big.extend(serde_json::to_vec(&query_vector()).unwrap());
    big.extend(std::iter::repeat_n(b' ', 40 << 20));
    big.push(b'}');
    let bomb = encode(Coding::Gzip, &big);
    drop(big);
    assert!(bomb.len() < 1 << 20);
    let a = post(&proxy, &path, &h, bomb).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.header("x-rerank-status"), Some("skipped"));
    let err = a.json()["status"]["error"].as_str().unwrap().to_string();
    assert!(err.contains("exceeded limit"), "{err}");

    proxy.drop_collection(&coll).await;
}

// ---- gRPC on the wire ----

type H2 = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn h2() -> H2 {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

struct GrpcAnswer {
    headers: HeaderMap,
    trailers: Option<HeaderMap>,
    body: Bytes,
}

impl GrpcAnswer {
    fn status(&self) -> Option<u32> {
        frame::status(&self.headers, self.trailers.as_ref())
    }
    fn message<M: Message + Default>(&self) -> M {
        let m = frame::decode_unary(&self.body, None, usize::MAX).expect("one message");
        M::decode(&m[..]).unwrap()
    }
}

/// A unary gRPC call with a hand-made message body.
async fn grpc(
    c: &H2,
    base: &str,
    method: &str,
    body: Bytes,
    metadata: &[(&str, &str)],
) -> GrpcAnswer {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!("{base}/qdrant.Points/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in metadata {
        req = req.header(*k, *v);
    }
    let resp = c
        .request(req.body(Full::new(body)).unwrap())
        .await
        .expect("grpc call");
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.unwrap();
    GrpcAnswer {
        headers: parts.headers,
        trailers: collected.trailers().cloned(),
        body: collected.to_bytes(),
    }
}

/// Field 999 (no Qdrant message has it), a string.
const UNKNOWN: &[u8] = &[0xba, 0x3e, 6, b'f', b'u', b't', b'u', b'r', b'e'];

fn with_unknown(mut msg: Vec<u8>) -> Vec<u8> {
    msg.extend_from_slice(UNKNOWN);
    msg
}

fn has_unknown(msg: &[u8]) -> bool {
    wire::parse(msg)
        .unwrap()
        .iter()
        .any(|f| f.number == 999 && f.value == b"future")
}

fn dense_query() -> Option<Query> {
    Some(Query {
        variant: Some(query::Variant::Nearest(VectorInput {
            variant: Some(vector_input::Variant::Dense(DenseVector {
                data: vec![0.2, 0.1, 0.9, 0.7],
            })),
        })),
    })
}

fn point(id: u64, text: &str) -> ScoredPoint {
    ScoredPoint {
        id: Some(PointId::from(id)),
        score: 1.0 - id as f32 / 100.0,
        version: 1,
        payload: [(
            "text".to_string(),
            qdrant_client::qdrant::Value {
                kind: Some(value::Kind::StringValue(text.into())),
            },
        )]
        .into(),
        ..Default::default()
    }
}

/// `msg` (a Query or QueryBatch answer) with field 999 in itself and in every point.
fn with_unknown_in_points(msg: Vec<u8>, batch: bool) -> Vec<u8> {
    fn points(list: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in wire::parse(list).unwrap() {
            if f.number == 1 {
                let p = with_unknown(f.value.to_vec());
                wire::put_field(&mut out, 1, &wire::Value::Bytes(p));
            } else {
                out.extend_from_slice(f.raw);
            }
        }
        out
    }
    let out = if batch {
        let mut out = Vec::new();
        for f in wire::parse(&msg).unwrap() {
            if f.number == 1 {
                wire::put_field(&mut out, 1, &wire::Value::Bytes(points(f.value)));
            } else {
                out.extend_from_slice(f.raw);
            }
        }
        out
    } else {
        points(&msg)
    };
    with_unknown(out)
}

/// Each request's method path and message, as the upstream received them.
type Recorded = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An upstream that records each raw request message and answers `Query` and
/// `QueryBatch` with fixed points.
async fn recording_upstream() -> (String, Recorded) {
    let seen: Recorded = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let log = log.clone();
        async move {
            let path = req.uri().path().to_string();
            let raw = req.into_body().collect().await.unwrap().to_bytes();
            let msg = frame::decode_unary(&raw, None, usize::MAX).unwrap_or_default();
            log.lock().unwrap().push((path.clone(), msg));
            let points = vec![
                point(1, "Paris is the capital of France"),
                point(2, "Berlin is the capital of Germany"),
                point(3, "bananas are yellow"),
            ];
            let answer = if path.ends_with("QueryBatch") {
                QueryBatchResponse {
                    result: vec![
                        qdrant_client::qdrant::BatchResult {
                            result: points.clone(),
                        },
                        qdrant_client::qdrant::BatchResult { result: points },
                    ],
                    time: 0.001,
                    ..Default::default()
                }
                .encode_to_vec()
            } else {
                QueryResponse {
                    result: points,
                    time: 0.001,
                    ..Default::default()
                }
                .encode_to_vec()
            };
            // Qdrant of a later version: a field in the answer and in each point
            // that our stubs do not know.
            let answer = with_unknown_in_points(answer, path.ends_with("QueryBatch"));
            let mut h = HeaderMap::new();
            h.insert("content-type", HeaderValue::from_static("application/grpc"));
            let mut t = HeaderMap::new();
            t.insert("grpc-status", HeaderValue::from_static("0"));
            frame::response(h, frame::encode(&answer), Some(t))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn grpc_searches_keep_fields_newer_than_the_stubs() {
    let (upstream, seen) = recording_upstream().await;
    let proxy = Proxy::start(config_with_grpc(
        "http://127.0.0.1:1",
        &upstream,
        &["docs"],
        "[collections.docs]\npool = 20\n",
    ))
    .await;
    let base = format!("http://{}", proxy.server.grpc_addr);
    let c = h2();
    let meta = [("x-rerank-query", QUERY)];

    // One search: field 999 arrives as sent; limit, offset and payload are ours.
    let q = QueryPoints {
        collection_name: "docs".into(),
        query: dense_query(),
        limit: Some(1),
        offset: Some(1),
        ..Default::default()
    };
    let body = frame::encode(&with_unknown(q.encode_to_vec()));
    let a = grpc(&c, &base, "Query", body, &meta).await;
    assert_eq!(a.status(), Some(0));
    assert_eq!(a.headers["x-rerank-status"], "applied");
    let got: QueryResponse = a.message();
    assert_eq!(got.result.len(), 1);
    // Qdrant's fields we do not know come back too, in the answer and its points.
    let answer = frame::decode_unary(&a.body, None, usize::MAX).unwrap();
    assert!(has_unknown(&answer));
    let pts: Vec<_> = wire::parse(&answer)
        .unwrap()
        .into_iter()
        .filter(|f| f.number == 1)
        .collect();
    assert_eq!(pts.len(), 1);
    assert!(has_unknown(pts[0].value));
    {
        let log = seen.lock().unwrap();
        let (path, msg) = log.last().unwrap();
        assert_eq!(path, "/qdrant.Points/Query");
        assert!(has_unknown(msg), "field 999 reached the upstream");
        let sent = QueryPoints::decode(&msg[..]).unwrap();
        assert_eq!((sent.limit, sent.offset), (Some(20), None));
        assert_eq!(sent.collection_name, "docs");
        assert_eq!(sent.query, dense_query());
    }

    // A gzip message is read (within the limit), reranked and sent on plain.
    let z = encode(Coding::Gzip, &with_unknown(q.encode_to_vec()));
    let mut body = vec![1];
    body.extend_from_slice(&(z.len() as u32).to_be_bytes());
    body.extend_from_slice(&z);
    let gz_meta = [("x-rerank-query", QUERY), ("grpc-encoding", "gzip")];
    let a = grpc(&c, &base, "Query", Bytes::from(body), &gz_meta).await;
    assert_eq!(a.status(), Some(0));
    assert_eq!(a.headers["x-rerank-status"], "applied");
    {
        let log = seen.lock().unwrap();
        let (_, msg) = log.last().unwrap();
        assert!(has_unknown(msg));
        assert_eq!(QueryPoints::decode(&msg[..]).unwrap().limit, Some(20));
    }

    // A batch: the unknown field of each search and of the batch itself survive.
    let search = QueryPoints {
        collection_name: "docs".into(),
        query: dense_query(),
        limit: Some(2),
        ..Default::default()
    };
    let mut batch = Vec::new();
    for s in [&search, &search] {
        wire::put_field(
            &mut batch,
            2,
            &wire::Value::Bytes(with_unknown(s.encode_to_vec())),
        );
    }
    wire::put_field(&mut batch, 1, &wire::Value::Bytes(b"docs".to_vec()));
    let batch = with_unknown(batch);
    assert_eq!(
        QueryBatchPoints::decode(&batch[..])
            .unwrap()
            .query_points
            .len(),
        2
    );
    let a = grpc(&c, &base, "QueryBatch", frame::encode(&batch), &meta).await;
    assert_eq!(a.status(), Some(0));
    let got: QueryBatchResponse = a.message();
    assert_eq!(got.result.len(), 2);
    assert!(got.result.iter().all(|r| r.result.len() == 2));
    let answer = frame::decode_unary(&a.body, None, usize::MAX).unwrap();
    assert!(has_unknown(&answer));
    for r in wire::parse(&answer)
        .unwrap()
        .iter()
        .filter(|f| f.number == 1)
    {
        let pts = wire::parse(r.value).unwrap();
        assert_eq!(pts.len(), 2);
        assert!(pts.iter().all(|p| has_unknown(p.value)));
    }
    let log = seen.lock().unwrap();
    let (path, msg) = log.last().unwrap();
    assert_eq!(path, "/qdrant.Points/QueryBatch");
    assert!(has_unknown(msg));
    let fields = wire::parse(msg).unwrap();
    let searches: Vec<_> = fields.iter().filter(|f| f.number == 2).collect();
    assert_eq!(searches.len(), 2);
    for s in searches {
        assert!(has_unknown(s.value));
        assert_eq!(QueryPoints::decode(s.value).unwrap().limit, Some(20));
    }
}

#[tokio::test]
async fn grpc_gzip_bombs_are_resource_exhausted() {
    let (upstream, seen) = recording_upstream().await;
    let mut cfg = config_with_grpc("http://127.0.0.1:1", &upstream, &["docs"], "");
    cfg.server.max_body_bytes = 1 << 20;
    let proxy = Proxy::start(cfg).await;
    let base = format!("http://{}", proxy.server.grpc_addr);
    // 8 MiB of unknown-field padding in a ~8 KiB compressed message.
    let mut msg = QueryPoints {
        collection_name: "docs".into(),
        query: dense_query(),
        ..Default::default()
    }
    .encode_to_vec();
    wire::put_field(&mut msg, 999, &wire::Value::Bytes(vec![0; 8 << 20]));
    let z = encode(Coding::Gzip, &msg);
    let mut body = vec![1];
    body.extend_from_slice(&(z.len() as u32).to_be_bytes());
    body.extend_from_slice(&z);
    let meta = [("x-rerank-query", QUERY), ("grpc-encoding", "gzip")];
    let a = grpc(&h2(), &base, "Query", Bytes::from(body), &meta).await;
    assert_eq!(a.status(), Some(8), "RESOURCE_EXHAUSTED");
    let message = a.headers["grpc-message"].to_str().unwrap();
    assert!(message.contains("1048576"), "{message}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn grpc_unknown_fields_through_to_a_real_qdrant() {
    let qdrant = RealQdrant::shared();
    let coll = format!("secondpass_transit_grpc_{}", std::process::id());
    let proxy = Proxy::start(config_with_grpc(
        &qdrant.url,
        &qdrant.grpc_url,
        &[&coll],
        "",
    ))
    .await;
    proxy.seed(&coll, false).await;
    let base = format!("http://{}", proxy.server.grpc_addr);
    let q = QueryPoints {
        collection_name: coll.clone(),
        query: dense_query(),
        limit: Some(3),
        ..Default::default()
    };
    let c = h2();
    let meta = [("x-rerank-query", QUERY)];
    let plain = grpc(&c, &base, "Query", frame::encode(&q.encode_to_vec()), &meta).await;
    let body = frame::encode(&with_unknown(q.encode_to_vec()));
    let newer = grpc(&c, &base, "Query", body, &meta).await;
    for a in [&plain, &newer] {
        assert_eq!(a.status(), Some(0), "{:?}", a.headers);
        assert_eq!(a.headers["x-rerank-status"], "applied");
    }
    let ids = |a: &GrpcAnswer| -> Vec<Option<PointId>> {
        a.message::<QueryResponse>()
            .result
            .into_iter()
            .map(|p| p.id)
            .collect()
    };
    assert_eq!(ids(&plain).len(), 3);
    assert_eq!(ids(&plain), ids(&newer));
    proxy.drop_collection(&coll).await;
}

/// An HTTP/2 prior-knowledge client (`curl --http2-prior-knowledge`) on the REST port:
/// its requests reach the real Qdrant over HTTP/1.1 and the answers come back, a plain
/// forward and a reranked search alike (before, every one was a 502).
#[tokio::test]
async fn http2_clients_on_the_rest_port_reach_qdrant() {
    let qdrant = RealQdrant::shared();
    let coll = format!("secondpass_transit_h2_{}", std::process::id());
    let proxy = Proxy::start(config(&qdrant.url, &[&coll], "")).await;
    proxy.seed(&coll, false).await;
    let client = h2();
    let send = |method: Method,
                path: String,
                headers: Vec<(&'static str, &'static str)>,
                body: Vec<u8>| {
        let mut req = Request::builder()
            .method(method)
            .uri(proxy.url(&path))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let client = client.clone();
        async move {
            let resp = client.request(req).await.expect("h2 request");
            assert_eq!(resp.version(), http::Version::HTTP_2);
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                headers,
                serde_json::from_slice::<Value>(&body).unwrap(),
            )
        }
    };

    let (status, _, body) = send(Method::GET, format!("/collections/{coll}"), vec![], vec![]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["status"], "green", "{body}");

    let search = json!({"query": query_vector(), "limit": 3});
    let path = format!("/collections/{coll}/points/query");
    let (status, headers, body) = send(
        Method::POST,
        path.clone(),
        vec![("x-rerank-query", QUERY)],
        serde_json::to_vec(&search).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers.get("x-rerank-status").unwrap(), "applied");
    // the same ranking as an HTTP/1.1 client gets
    let h1 = post(
        &proxy,
        &path,
        &[("x-rerank-query", QUERY)],
        serde_json::to_vec(&search).unwrap(),
    )
    .await;
    assert_eq!(ids(&body), ids(&h1.json()));
    proxy.drop_collection(&coll).await;
}

/// Qdrant answers a POST to a path it does not have with 404 without reading the body,
/// then closes the connection without a `connection: close`. secondpass must not send
/// another request down that connection: 8 callers each send refused POSTs and searches
/// in turn, and every answer must be Qdrant's own 404 or 200 (before, some were 502
/// "connection closed before message completed").
#[tokio::test]
async fn a_refused_post_does_not_break_the_next_request() {
    let qdrant = RealQdrant::shared();
    let coll = format!("secondpass_transit_refused_{}", std::process::id());
    let proxy = Arc::new(Proxy::start(config(&qdrant.url, &[], "")).await);
    proxy.seed(&coll, false).await;
    let search = serde_json::to_vec(&json!({"query": query_vector(), "limit": 3})).unwrap();
    let refused = serde_json::to_vec(&json!({"query": "x", "documents": ["a", "b"]})).unwrap();
    let path = format!("/collections/{coll}/points/query");
    let mut callers = Vec::new();
    for _ in 0..8 {
        let (proxy, path, search, refused) =
            (proxy.clone(), path.clone(), search.clone(), refused.clone());
        callers.push(tokio::spawn(async move {
            let mut wrong = Vec::new();
            for _ in 0..40 {
                let r = post(&proxy, "/no_such_path", &[], refused.clone()).await;
                if r.status != StatusCode::NOT_FOUND {
                    wrong.push(format!("refused POST: {}", r.status));
                }
                let s = post(&proxy, &path, &[], search.clone()).await;
                if s.status != StatusCode::OK {
                    wrong.push(format!("search: {}", s.status));
                }
            }
            wrong
        }));
    }
    let mut wrong = Vec::new();
    for c in callers {
        wrong.extend(c.await.unwrap());
    }
    assert!(
        wrong.is_empty(),
        "{} of 640 answers were not Qdrant's: {wrong:?}",
        wrong.len()
    );
    proxy.drop_collection(&coll).await;
}
