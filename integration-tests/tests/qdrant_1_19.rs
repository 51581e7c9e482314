//! What Qdrant 1.19 added on the wire reaches Qdrant and the client unchanged through
//! secondpass, reranked searches included: the `x-qdrant-route-affinity` header (REST)
//! and metadata (gRPC), `GET/PUT /quotas`, status codes 405 and 507, filter conditions
//! `slice` and `match.prefix`, `params.idf`, and the legacy search / recommend /
//! discover endpoints. Run against the shared server (1.18.3 by default; `scripts/test`
//! runs this file against 1.19.0 too): where 1.18.3 does not know a field, its own 400
//! or 404 reaches the client unchanged. The quota tests start a private 1.19.0 (quotas
//! are server-wide). Hybrid queries (the rerank text taken from the prefetch) are here
//! too: they are the Query API's prefetch, on both transports.

// The legacy Search methods are deprecated in the client but still served: test them.
#![allow(deprecated)]

mod support;

use http::{Method, StatusCode};
use prost::Message;
use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::{
    condition, query, r#match, vector_input, Condition, DenseVector, Document, FieldCondition,
    Filter, IdfParams, Match, PrefetchQuery, Query, QueryBatchPoints, QueryPoints,
    SearchMatrixPoints, SearchParams, SearchPoints, SliceCondition, VectorInput,
};
use secondpass_it::real_qdrant::RealQdrant;
use secondpass_it::relay::Relay;
use serde_json::{json, Value};
use support::{config, config_with_grpc, ids, qdrant, query_vector, relayed, request, Proxy};

const AFFINITY: &str = "x-qdrant-route-affinity";
const QUERY: &str = "capital of Germany";

/// Qdrant's error as the client sees it, without `time`.
fn error_of(v: &Value) -> Value {
    v["status"].clone()
}

#[tokio::test]
async fn route_affinity_header_reaches_qdrant_on_every_search() {
    let docs = qdrant().collection("affinity");
    let (relay, proxy) = relayed(&[&docs], "").await;
    proxy.seed(&docs, false).await;
    let p = |s: &str| format!("/collections/{docs}/points/{s}");
    let q = [
        ("x-rerank-query", "capital%20of%20Germany"),
        (AFFINITY, "user-42"),
    ];
    let plain = [(AFFINITY, "user-42"), ("x-rerank-enabled", "false")];
    // (path, body, reranked): legacy endpoints too, which left 1.19's OpenAPI document
    // but are still served.
    let calls = [
        (
            p("search"),
            json!({"vector": query_vector(), "limit": 2}),
            true,
        ),
        (
            p("query"),
            json!({"query": query_vector(), "limit": 2}),
            true,
        ),
        (
            p("query"),
            json!({"query": query_vector(), "limit": 2}),
            false,
        ),
        (
            p("query/batch"),
            json!({"searches": [{"query": query_vector(), "limit": 2}]}),
            true,
        ),
        (p("recommend"), json!({"positive": [1], "limit": 2}), true),
        (
            p("discover"),
            json!({"target": 1, "context": [{"positive": 2, "negative": 3}], "limit": 2}),
            true,
        ),
        (
            p("search/matrix/pairs"),
            json!({"sample": 4, "limit": 2}),
            false,
        ),
        (
            p("search/matrix/offsets"),
            json!({"sample": 4, "limit": 2}),
            false,
        ),
    ];
    for (path, body, reranked) in calls {
        relay.forget();
        let headers: &[(&str, &str)] = if reranked { &q } else { &plain };
        let r = proxy.post(&path, headers, &body).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {:?}", r.body);
        let expected = if reranked { "applied" } else { "disabled" };
        if !path.contains("matrix") {
            assert_eq!(r.header("x-rerank-status"), Some(expected), "{path}");
        }
        let sent = relay.seen();
        assert!(!sent.is_empty(), "{path}: nothing reached Qdrant");
        for s in &sent {
            assert_eq!(
                s.header(AFFINITY),
                Some("user-42"),
                "{path}: {:?}",
                s.headers
            );
        }
    }
}

#[tokio::test]
async fn route_affinity_metadata_reaches_qdrant_over_grpc() {
    let docs = qdrant().collection("affinity_grpc");
    let relay = Relay::start(&qdrant().grpc_url).await;
    let proxy = Proxy::start(config_with_grpc(&qdrant().url, &relay.url(), &[&docs], "")).await;
    proxy.seed(&docs, false).await;
    let mut via = PointsClient::connect(format!("http://{}", proxy.server.grpc_addr))
        .await
        .unwrap();
    fn with_affinity<T>(msg: T, rerank: bool) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut()
            .insert(AFFINITY, "user-42".parse().unwrap());
        if rerank {
            let q = QUERY.replace(' ', "%20");
            r.metadata_mut()
                .insert("x-rerank-query", q.parse().unwrap());
        }
        r
    }
    let search = SearchPoints {
        collection_name: docs.to_string(),
        vector: vec![0.2, 0.1, 0.9, 0.7],
        limit: 2,
        ..Default::default()
    };
    let r = via.search(with_affinity(search, true)).await.unwrap();
    assert_eq!(r.metadata().get("x-rerank-status").unwrap(), "applied");
    let query = QueryPoints {
        collection_name: docs.to_string(),
        query: Some(dense_query()),
        limit: Some(2),
        ..Default::default()
    };
    let r = via.query(with_affinity(query, true)).await.unwrap();
    assert_eq!(r.metadata().get("x-rerank-status").unwrap(), "applied");
    let matrix = SearchMatrixPoints {
        collection_name: docs.to_string(),
        sample: Some(4),
        limit: Some(2),
        ..Default::default()
    };
    via.search_matrix_pairs(with_affinity(matrix, false))
        .await
        .unwrap();
    let paths: Vec<String> = relay.seen().iter().map(|s| s.path.clone()).collect();
    for method in ["Search", "Query", "SearchMatrixPairs"] {
        let path = format!("/qdrant.Points/{method}");
        let seen = relay.seen_at(&path);
        assert_eq!(seen.len(), 1, "{method}: {paths:?}");
        assert_eq!(seen[0].header(AFFINITY), Some("user-42"), "{method}");
    }
}

fn dense_query() -> Query {
    Query {
        variant: Some(query::Variant::Nearest(VectorInput {
            variant: Some(vector_input::Variant::Dense(DenseVector {
                data: vec![0.2, 0.1, 0.9, 0.7],
            })),
        })),
    }
}

/// The filters and search params 1.19 added, alone and together (REST JSON as in
/// Qdrant 1.19's OpenAPI: `SliceCondition`, `MatchPrefix`, `SearchParams.idf`).
fn new_fields() -> Vec<(&'static str, Value)> {
    let slice = json!({"slice": {"total": 2, "index": 0}});
    let prefix = json!({"key": "group", "match": {"prefix": "ci"}});
    vec![
        ("slice", json!({"filter": {"must": [slice]}})),
        ("prefix", json!({"filter": {"must": [prefix]}})),
        (
            "idf",
            json!({"params": {"idf": {"corpus": {"must": [prefix]}}}}),
        ),
        ("idf global", json!({"params": {"idf": "global"}})),
        (
            "all",
            json!({"filter": {"should": [slice, prefix]}, "params": {"idf": {"corpus": {"must": [prefix]}}}}),
        ),
    ]
}

#[tokio::test]
async fn new_filters_and_idf_reach_qdrant_on_reranked_searches() {
    let hybrid = qdrant().collection("filters_1_19");
    let (relay, proxy) = relayed(&[&hybrid], "").await;
    proxy.seed(&hybrid, true).await;
    let path = format!("/collections/{hybrid}/points/query");
    let v1_19 = qdrant().is_1_19();
    for (name, extra) in new_fields() {
        let mut body = json!({
            "query": {"text": QUERY, "model": "qdrant/bm25"}, "using": "bm25", "limit": 2,
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let mut all = body.clone();
        all["limit"] = json!(100);
        let direct = proxy.post_direct(&path, &all).await;
        relay.forget();
        let r = proxy.post(&path, &[], &body).await;
        // What Qdrant was sent: the client's fields as they came (only limit widened).
        let sent = relay.seen_at("/points/query");
        assert!(!sent.is_empty(), "{name}");
        for (k, v) in extra.as_object().unwrap() {
            assert_eq!(&sent[0].json()[k], v, "{name}: {k}");
        }
        assert_eq!(r.status, direct.status, "{name}: {:?}", r.body);
        if direct.status == StatusCode::OK {
            assert_eq!(r.header("x-rerank-status"), Some("applied"), "{name}");
            let got = ids(&r.json()["result"]["points"]);
            let allowed = ids(&direct.json()["result"]["points"]);
            assert!(!got.is_empty() && got.len() <= 2, "{name}: {got:?}");
            assert!(
                got.iter().all(|id| allowed.contains(id)),
                "{name}: {got:?} vs {allowed:?}"
            );
        } else {
            // 1.18.3 does not know the field: its own 400 to the client's request, in
            // its own words.
            assert_eq!(direct.status, StatusCode::BAD_REQUEST, "{name}");
            let same = proxy.post_direct(&path, &body).await;
            assert_eq!(error_of(&r.json()), error_of(&same.json()), "{name}");
        }
        if v1_19 {
            assert_eq!(direct.status, StatusCode::OK, "{name}: {:?}", direct.body);
        }
    }
}

#[tokio::test]
async fn new_filters_and_idf_reach_qdrant_over_grpc() {
    let hybrid = qdrant().collection("filters_grpc");
    let relay = Relay::start(&qdrant().grpc_url).await;
    let proxy = Proxy::start(config_with_grpc(
        &qdrant().url,
        &relay.url(),
        &[&hybrid],
        "",
    ))
    .await;
    proxy.seed(&hybrid, true).await;
    let mut via = PointsClient::connect(format!("http://{}", proxy.server.grpc_addr))
        .await
        .unwrap();
    let mut direct = PointsClient::connect(qdrant().grpc_url.clone())
        .await
        .unwrap();
    let prefix = Condition {
        condition_one_of: Some(condition::ConditionOneOf::Field(FieldCondition {
            key: "group".into(),
            r#match: Some(Match {
                match_value: Some(r#match::MatchValue::Prefix("ci".into())),
            }),
            ..Default::default()
        })),
    };
    let slice = Condition {
        condition_one_of: Some(condition::ConditionOneOf::Slice(SliceCondition {
            total: 2,
            index: 0,
        })),
    };
    let filter = Filter {
        should: vec![slice, prefix.clone()],
        ..Default::default()
    };
    let params = SearchParams {
        idf: Some(IdfParams {
            corpus: Some(Filter {
                must: vec![prefix],
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let request = QueryPoints {
        collection_name: hybrid.to_string(),
        query: Some(document_query(QUERY)),
        using: Some("bm25".into()),
        filter: Some(filter.clone()),
        params: Some(params.clone()),
        limit: Some(2),
        ..Default::default()
    };
    let r = via.query(request.clone()).await;
    let sent = relay.seen_at("/qdrant.Points/Query");
    assert_eq!(sent.len(), 1);
    let sent = QueryPoints::decode(&sent[0].body[5..]).expect("a QueryPoints message");
    assert_eq!(
        sent.filter,
        Some(filter),
        "the filter reaches Qdrant unchanged"
    );
    assert_eq!(
        sent.params,
        Some(params),
        "params.idf reaches Qdrant unchanged"
    );
    assert!(sent.limit > Some(2), "widened: {:?}", sent.limit);
    let d = direct.query(request).await;
    match (r, d) {
        (Ok(r), Ok(d)) => {
            assert_eq!(r.metadata().get("x-rerank-status").unwrap(), "applied");
            let allowed: Vec<_> = d.into_inner().result.into_iter().map(|p| p.id).collect();
            let got = r.into_inner().result;
            assert!(!got.is_empty() && got.iter().all(|p| allowed.contains(&p.id)));
        }
        (Err(r), Err(d)) => assert_eq!((r.code(), r.message()), (d.code(), d.message())),
        (r, d) => panic!("secondpass {r:?} but Qdrant {d:?}"),
    }
}

fn document_query(text: &str) -> Query {
    Query {
        variant: Some(query::Variant::Nearest(VectorInput {
            variant: Some(vector_input::Variant::Document(Document {
                text: text.into(),
                model: "qdrant/bm25".into(),
                ..Default::default()
            })),
        })),
    }
}

/// `GET /quotas` and a 405 through secondpass are what Qdrant answers directly (1.19:
/// the quota status and the standalone-mode 405; 1.18.3: 404 and 500).
#[tokio::test]
async fn quotas_and_standalone_errors_pass_through_the_shared_server() {
    let proxy = support::proxy(&[], "").await;
    let v1_19 = qdrant().is_1_19();
    for (path, status_1_19) in [
        ("/quotas", StatusCode::OK),
        ("/cluster/metadata/keys", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let c = &proxy.client;
        let via = request(c, Method::GET, &proxy.url(path), &[], None).await;
        let direct = request(c, Method::GET, &proxy.direct(path), &[], None).await;
        assert_eq!(via.status, direct.status, "{path}");
        if v1_19 {
            assert_eq!(via.status, status_1_19, "{path}");
        }
        if !direct.body.is_empty() {
            assert_eq!(error_of(&via.json()), error_of(&direct.json()), "{path}");
        } else {
            assert!(via.body.is_empty(), "{path}: {:?}", via.body);
        }
    }
}

/// A private Qdrant 1.19.0 (quotas are server-wide): `PUT /quotas` through secondpass
/// turns them on, and the 507 an update then gets reaches the client unchanged while
/// reranked searches go on.
#[tokio::test]
async fn quota_changes_and_507_pass_through() {
    let q = RealQdrant::own_version("1.19.0", &[]);
    let docs = "quota_docs";
    let proxy = Proxy::start(config(&q.url, &[docs], "")).await;
    proxy.seed(docs, false).await;
    let c = &proxy.client;
    let get = request(c, Method::GET, &proxy.url("/quotas"), &[], None).await;
    assert_eq!(get.status, StatusCode::OK, "{:?}", get.body);
    assert_eq!(get.json()["result"]["config"]["enabled"], json!(false));
    // Any disk in use is more than 1%: every update is refused from now on.
    let quota = json!({"enabled": true, "max_disk_usage_percent": 1});
    let put = request(
        c,
        Method::PUT,
        &proxy.url("/quotas?wait=true"),
        &[],
        Some(&quota),
    )
    .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.body);
    assert_eq!(put.json()["result"], json!(true));
    let get = request(c, Method::GET, &proxy.direct("/quotas"), &[], None).await;
    assert_eq!(
        get.json()["result"]["config"],
        quota,
        "the PUT reached Qdrant"
    );
    let upsert = json!({"points": [{"id": 99, "vector": [0.1, 0.2, 0.3, 0.4]}]});
    let path = format!("/collections/{docs}/points?wait=true");
    let via = request(c, Method::PUT, &proxy.url(&path), &[], Some(&upsert)).await;
    let direct = request(c, Method::PUT, &proxy.direct(&path), &[], Some(&upsert)).await;
    assert_eq!(
        via.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{:?}",
        via.body
    );
    assert_eq!(direct.status, StatusCode::INSUFFICIENT_STORAGE);
    let err = error_of(&via.json());
    assert_eq!(err, error_of(&direct.json()));
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("Insufficient storage"),
        "{err}"
    );
    // Searches are reads: still served, and reranked.
    let body = json!({"query": query_vector(), "limit": 2});
    let hdr = [("x-rerank-query", "capital%20of%20Germany")];
    let r = proxy
        .post(&format!("/collections/{docs}/points/query"), &hdr, &body)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-rerank-status"), Some("applied"));
    // The standalone-mode 405.
    let via = request(
        c,
        Method::GET,
        &proxy.url("/cluster/metadata/keys"),
        &[],
        None,
    )
    .await;
    assert_eq!(via.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(via.json()["status"]["error"]
        .as_str()
        .unwrap()
        .contains("standalone"));
}

/// The hybrid query of the docs: a dense and a BM25 branch, fused with RRF; the text
/// only in the BM25 branch's Document.
fn hybrid_query(dense_text: Option<&str>) -> Value {
    let dense = match dense_text {
        None => json!({"query": query_vector(), "using": "dense", "limit": 8}),
        Some(t) => {
            json!({"query": {"text": t, "model": "qdrant/bm25"}, "using": "bm25", "limit": 8})
        }
    };
    json!({
        "prefetch": [dense, {"query": {"text": QUERY, "model": "qdrant/bm25"}, "using": "bm25", "limit": 8}],
        "query": {"fusion": "rrf"},
        "limit": 3,
        "with_payload": ["title"],
    })
}

#[tokio::test]
async fn hybrid_query_is_reranked_with_the_prefetch_text() {
    let hybrid = qdrant().collection("hybrid_prefetch");
    let proxy = support::proxy(&[&hybrid], "").await;
    proxy.seed(&hybrid, true).await;
    let path = format!("/collections/{hybrid}/points/query");
    let r = proxy.post(&path, &[], &hybrid_query(None)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["rerank"]["status"], "applied", "{v}");
    assert_eq!(v["rerank"]["query_source"], "prefetch", "{v}");
    // The same ranking as when the client names that text itself.
    let named = proxy
        .post(
            &path,
            &[("x-rerank-query", "capital%20of%20Germany")],
            &hybrid_query(None),
        )
        .await
        .json();
    assert_eq!(named["rerank"]["status"], "applied");
    assert_eq!(named["rerank"].get("query_source"), None);
    assert_eq!(ids(&v["result"]["points"]), ids(&named["result"]["points"]));
    // Two different texts: which one is the question is a guess; not reranked.
    let r = proxy.post(&path, &[], &hybrid_query(Some("Paris"))).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["rerank"]["status"], "skipped", "{v}");
    let reason = v["rerank"]["reason"].as_str().unwrap();
    assert!(reason.contains("2 different Document texts"), "{reason}");
}

#[tokio::test]
async fn hybrid_query_over_grpc_is_reranked_with_the_prefetch_text() {
    let hybrid = qdrant().collection("hybrid_prefetch_grpc");
    let proxy = support::proxy(&[&hybrid], "").await;
    proxy.seed(&hybrid, true).await;
    let mut via = PointsClient::connect(format!("http://{}", proxy.server.grpc_addr))
        .await
        .unwrap();
    let request = |second: Query| QueryPoints {
        collection_name: hybrid.to_string(),
        prefetch: vec![
            PrefetchQuery {
                query: Some(second),
                using: Some("dense".into()),
                limit: Some(8),
                ..Default::default()
            },
            PrefetchQuery {
                query: Some(document_query(QUERY)),
                using: Some("bm25".into()),
                limit: Some(8),
                ..Default::default()
            },
        ],
        query: Some(Query {
            variant: Some(query::Variant::Fusion(0)), // RRF
        }),
        limit: Some(3),
        ..Default::default()
    };
    let r = via.query(request(dense_query())).await.unwrap();
    assert_eq!(r.metadata().get("x-rerank-status").unwrap(), "applied");
    assert_eq!(
        r.metadata().get("x-rerank-query-source").unwrap(),
        "prefetch"
    );
    let got: Vec<_> = r.into_inner().result.into_iter().map(|p| p.id).collect();
    let mut named = tonic::Request::new(request(dense_query()));
    named
        .metadata_mut()
        .insert("x-rerank-query", QUERY.replace(' ', "%20").parse().unwrap());
    let n = via.query(named).await.unwrap();
    assert!(n.metadata().get("x-rerank-query-source").is_none());
    let expected: Vec<_> = n.into_inner().result.into_iter().map(|p| p.id).collect();
    assert_eq!(got, expected);
    // A second, different text (a BM25 Document in the other branch): skipped.
    let mut two = request(document_query("Paris"));
    two.prefetch[0].using = Some("bm25".into());
    let r = via.query(two.clone()).await.unwrap();
    assert_eq!(r.metadata().get("x-rerank-status").unwrap(), "skipped");
    // Qdrant's answer as sent, with the reason as on REST (in the metadata).
    let reason = r.metadata().get("x-rerank-reason").unwrap();
    assert!(reason
        .to_str()
        .unwrap()
        .contains("2 different Document texts"));
    assert!(!r.into_inner().result.is_empty());
    // A batch of such searches: each search's status.
    let batch = QueryBatchPoints {
        collection_name: hybrid.to_string(),
        query_points: vec![two.clone(), two],
        ..Default::default()
    };
    let r = via.query_batch(batch).await.unwrap();
    assert_eq!(r.metadata().get("x-rerank-status").unwrap(), "skipped");
    let statuses = r.metadata().get("x-rerank-statuses").unwrap();
    assert_eq!(statuses, "skipped,skipped");
    assert_eq!(r.into_inner().result.len(), 2);
}
