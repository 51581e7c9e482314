//! The double's own behaviour beyond the recordings: gzip on/off, the request log, the
//! artificial delay, shutdown, a real search engine under any limit/offset, the bin.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use common::{client, post_json, put_json, send};
use http::{Method, StatusCode};
use secondpass_it::qdrant_double::{router, DoubleState, QdrantDouble, RecordedBody};
use serde_json::{json, Value};

/// 40 points in 4 dimensions with deterministic pseudo-random vectors.
fn vectors() -> Vec<[f32; 4]> {
    let mut x: u32 = 12345;
    (0..40)
        .map(|_| {
            let mut v = [0f32; 4];
            for c in &mut v {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *c = ((x >> 16) % 1000) as f32 / 1000.0 + 0.001;
            }
            v
        })
        .collect()
}

async fn seeded() -> (QdrantDouble, common::HttpClient) {
    let q = QdrantDouble::start().await.unwrap();
    let c = client();
    let r = put_json(
        &c,
        &format!("{}/collections/many", q.url()),
        &json!({"vectors": {"size": 4, "distance": "Cosine"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let points: Vec<Value> = vectors()
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"id": i + 1, "vector": v, "payload": {"n": i + 1, "parity": if i % 2 == 0 { "odd" } else { "even" }}}))
        .collect();
    let r = put_json(
        &c,
        &format!("{}/collections/many/points?wait=true", q.url()),
        &json!({ "points": points }),
    )
    .await;
    assert_eq!(
        r.json()["result"],
        json!({"operation_id": 1, "status": "completed"})
    );
    (q, c)
}

fn cosine(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let n = |v: &[f32; 4]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (n(a) * n(b))
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn any_limit_and_offset_is_answered_from_the_data() {
    let (q, c) = seeded().await;
    let query = [0.3f32, 0.9, 0.1, 0.4];
    let mut expected: Vec<(u64, f32)> = vectors()
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u64 + 1, cosine(&query, v)))
        .collect();
    expected.sort_by(|a, b| b.1.total_cmp(&a.1));

    // widened limit: everything, best first
    let url = format!("{}/collections/many/points/search", q.url());
    let all = post_json(
        &c,
        &url,
        &json!({"vector": query, "limit": 100, "offset": 0}),
    )
    .await
    .json();
    let got = &all["result"];
    assert_eq!(ids(got), expected.iter().map(|e| e.0).collect::<Vec<_>>());
    for (p, (_, s)) in got.as_array().unwrap().iter().zip(&expected) {
        assert!((p["score"].as_f64().unwrap() - f64::from(*s)).abs() < 1e-5);
        assert_eq!(p["version"], 1);
        assert!(p.get("payload").is_none(), "payload only when asked for");
    }
    // a page is a slice of the full ranking, in both APIs
    let page = post_json(&c, &url, &json!({"vector": query, "limit": 5, "offset": 7}))
        .await
        .json();
    assert_eq!(ids(&page["result"]), ids(got)[7..12]);
    let qurl = format!("{}/collections/many/points/query", q.url());
    let page = post_json(&c, &qurl, &json!({"query": query, "limit": 5, "offset": 7}))
        .await
        .json();
    assert_eq!(ids(&page["result"]["points"]), ids(got)[7..12]);
    // filters and thresholds apply before limit/offset
    let body = json!({"vector": query, "limit": 100, "filter": {"must": [{"key": "parity", "match": {"value": "odd"}}]},
                      "score_threshold": 0.8, "with_payload": ["parity"]});
    let res = post_json(&c, &url, &body).await.json();
    let want: Vec<u64> = expected
        .iter()
        .filter(|e| e.0 % 2 == 1 && e.1 >= 0.8)
        .map(|e| e.0)
        .collect();
    assert_eq!(ids(&res["result"]), want);
    assert!(res["result"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["payload"] == json!({"parity": "odd"})));
}

#[tokio::test]
async fn scroll_pages_and_counts() {
    let (q, c) = seeded().await;
    let url = format!("{}/collections/many/points/scroll", q.url());
    let p1 = post_json(&c, &url, &json!({"limit": 15, "with_payload": false}))
        .await
        .json();
    assert_eq!(ids(&p1["result"]["points"]), (1..=15).collect::<Vec<_>>());
    assert_eq!(p1["result"]["next_page_offset"], 16);
    let p3 = post_json(&c, &url, &json!({"limit": 15, "offset": 31}))
        .await
        .json();
    assert_eq!(ids(&p3["result"]["points"]), (31..=40).collect::<Vec<_>>());
    assert_eq!(p3["result"]["next_page_offset"], Value::Null);
    let n = post_json(
        &c,
        &format!("{}/collections/many/points/count", q.url()),
        &json!({"filter": {"must_not": [{"key": "parity", "match": {"value": "odd"}}]}}),
    )
    .await
    .json();
    assert_eq!(n["result"]["count"], 20);
}

#[tokio::test]
async fn gzip_only_when_accepted() {
    let q = QdrantDouble::start().await.unwrap();
    let c = client();
    let url = format!("{}/collections", q.url());
    let gz = send(&c, Method::GET, &url, None, true).await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("transfer-encoding"), Some("chunked"));
    assert_eq!(gz.json()["result"], json!({"collections": []}));
    let plain = send(&c, Method::GET, &url, None, false).await;
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("content-type"), Some("application/json"));
    assert_eq!(
        plain
            .header("content-length")
            .map(|l| l.parse::<usize>().unwrap()),
        Some(plain.body.len())
    );
    assert_eq!(plain.json()["status"], "ok");
    assert!(plain.json()["time"].is_f64());
    // gzip-encoded request bodies are accepted too
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(br#"{"vectors": {"size": 2, "distance": "Dot"}}"#)
        .unwrap();
    let req = http::Request::put(format!("{}/collections/gz", q.url()))
        .header("content-encoding", "gzip")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            enc.finish().unwrap(),
        )))
        .unwrap();
    assert_eq!(c.request(req).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        q.request_log().last().unwrap().json().unwrap()["vectors"]["size"],
        2
    );
}

#[tokio::test]
async fn request_log_records_what_was_forwarded() {
    let (q, c) = seeded().await;
    q.clear_request_log();
    let url = format!("{}/collections/many/points/query?timeout=3", q.url());
    post_json(
        &c,
        &url,
        &json!({"query": [1, 0, 0, 0], "limit": 100, "offset": 0}),
    )
    .await;
    send(
        &c,
        Method::POST,
        &format!("{}/collections/many/points/search", q.url()),
        Some((b"not json".to_vec(), None)),
        false,
    )
    .await;
    let log = q.request_log();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].path, "/collections/many/points/query?timeout=3");
    assert_eq!(log[0].path_only(), "/collections/many/points/query");
    assert_eq!(log[0].header("Content-Type"), Some("application/json"));
    assert_eq!(log[0].json().unwrap()["limit"], 100);
    assert_eq!(log[1].body, RecordedBody::Raw("not json".into()));
}

#[tokio::test]
async fn delay_holds_every_answer() {
    let q = QdrantDouble::start().await.unwrap();
    let c = client();
    let url = format!("{}/healthz", q.url());
    q.set_delay(Some(Duration::from_millis(400)));
    let t = Instant::now();
    let slow = tokio::time::timeout(
        Duration::from_millis(100),
        send(&c, Method::GET, &url, None, false),
    )
    .await;
    assert!(slow.is_err(), "a client with a shorter timeout gives up");
    let r = send(&c, Method::GET, &url, None, false).await;
    assert!(t.elapsed() >= Duration::from_millis(400));
    assert_eq!(&r.body[..], b"healthz check passed");
    q.set_delay(None);
    let t = Instant::now();
    send(&c, Method::GET, &url, None, false).await;
    assert!(t.elapsed() < Duration::from_millis(400));
    assert_eq!(
        q.request_log().len(),
        3,
        "delayed requests are logged on arrival"
    );
}

#[tokio::test]
async fn errors_look_like_qdrant() {
    let (q, c) = seeded().await;
    let r = send(
        &c,
        Method::GET,
        &format!("{}/nothing/here", q.url()),
        None,
        true,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-type"), None);
    let r = post_json(
        &c,
        &format!("{}/collections/many/points/query", q.url()),
        &json!({"query": [1, 2, 3], "limit": 3}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["status"]["error"],
        "Wrong input: Vector dimension error: expected dim: 4, got 3"
    );
    let r = send(
        &c,
        Method::GET,
        &format!("{}/collections/many/points/999", q.url()),
        None,
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json()["status"]["error"],
        "Not found: No point with id 999 found"
    );
    let r = post_json(
        &c,
        &format!("{}/collections/many/points/search", q.url()),
        &json!({"vector": [1, 0, 0, 0]}),
    )
    .await;
    assert_eq!(
        r.json()["status"]["error"],
        "Format error in JSON body: missing field `limit` at line 1 column 20"
    );
}

#[tokio::test]
async fn bm25_documents_and_named_vectors() {
    let q = QdrantDouble::start().await.unwrap();
    let c = client();
    let base = format!("{}/collections/h", q.url());
    put_json(&c, &base, &json!({"vectors": {"d": {"size": 2, "distance": "Dot"}}, "sparse_vectors": {"s": {"modifier": "idf"}}})).await;
    let docs = [
        "red apples and green apples",
        "green pears",
        "a red car",
        "blue sky",
    ];
    let points: Vec<Value> = docs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": i, "vector": {"d": [i as f32, 1.0], "s": {"text": t, "model": "Qdrant/bm25"}}, "payload": {"t": t}}))
        .collect();
    let r = put_json(
        &c,
        &format!("{base}/points?wait=true"),
        &json!({ "points": points }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let r = post_json(&c, &format!("{base}/points/query"), &json!({"query": {"nearest": {"text": "red apples", "model": "qdrant/bm25"}}, "using": "s", "limit": 10})).await;
    assert_eq!(ids(&r.json()["result"]["points"]), vec![0, 2]);
    let r = post_json(
        &c,
        &format!("{base}/points/query"),
        &json!({"query": {"text": "red apples", "model": "some/dense-model"}, "using": "d"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let r = post_json(
        &c,
        &format!("{base}/points/query"),
        &json!({"query": [0, 1], "using": "d", "limit": 2, "with_vector": ["d"]}),
    )
    .await;
    let pts = &r.json()["result"]["points"];
    assert_eq!(pts[0]["vector"], json!({"d": [0.0, 1.0]}));
    let r = post_json(
        &c,
        &format!("{base}/points/search"),
        &json!({"vector": {"name": "d", "vector": [1, 0]}, "limit": 1}),
    )
    .await;
    assert_eq!(ids(&r.json()["result"]), vec![3]);
    let r = post_json(
        &c,
        &format!("{base}/points/query"),
        &json!({"query": [1, 0]}),
    )
    .await;
    assert_eq!(
        r.json()["status"]["error"],
        "Wrong input: Not existing vector name error: "
    );
}

#[tokio::test]
async fn router_works_without_a_socket() {
    use tower::ServiceExt;
    let state = DoubleState::new();
    let app = router(state.clone());
    let req = http::Request::get("/readyz")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(state.request_log()[0].path, "/readyz");
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let q = QdrantDouble::start().await.unwrap();
    let addr = q.addr;
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    q.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[test]
fn bin_prints_its_url_and_serves() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_qdrant-double"))
        .args(["--addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("first line announces the url")
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(send(
        &client(),
        Method::GET,
        &format!("{url}/"),
        None,
        false,
    ));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        r.json(),
        json!({"title": "qdrant - vector search engine", "version": "1.18.3"})
    );
}
