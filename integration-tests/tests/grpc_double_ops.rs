//! The gRPC double beyond the recordings: a client working over gRPC only, the REST and gRPC
//! sides sharing one store, named dense + sparse (BM25 documents) vectors, filters, fusion,
//! recommend, groups, payload fidelity, error statuses, the request log, the delay, and the
//! `qdrant-double --grpc-addr` binary. Every search-like answer is checked against the REST
//! double's answer to the equivalent REST request (same ids, scores and payloads).

#![allow(deprecated)] // Search / Recommend are deprecated in the client, still served

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use qdrant_client::qdrant::{
    self as pb, points_client::PointsClient, qdrant_client::QdrantClient, Condition,
    CountPointsBuilder, CreateCollectionBuilder, Distance, Document, Filter, Fusion,
    GetPointsBuilder, PointStruct, PrefetchQueryBuilder, Query, QueryPointGroupsBuilder,
    QueryPointsBuilder, ScrollPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
};
use qdrant_client::Qdrant;
use secondpass_it::grpc_double::{
    payload_from_json, payload_to_json, start_pair, value_to_json, GrpcDouble,
};
use secondpass_it::qdrant_double::QdrantDouble;
use serde_json::{json, Value};
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tonic::Code;

async fn rest(base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let c: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let bytes = body
        .map(|b| Bytes::from(serde_json::to_vec(b).unwrap()))
        .unwrap_or_default();
    let req = Request::builder()
        .method(method.parse::<Method>().unwrap())
        .uri(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(bytes))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `POST` to the REST double, the `result` (asserting 200).
async fn rest_result(qdrant: &QdrantDouble, path: &str, body: Value) -> Value {
    let (status, v) = rest(&qdrant.url(), "POST", path, Some(&body)).await;
    assert_eq!(status, 200, "{path}: {v}");
    v["result"].clone()
}

fn client(grpc: &GrpcDouble) -> Qdrant {
    Qdrant::from_url(&grpc.url())
        .skip_compatibility_check()
        .build()
        .unwrap()
}

async fn channel(grpc: &GrpcDouble) -> Channel {
    Channel::from_shared(grpc.url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn id_json(id: &Option<pb::PointId>) -> Value {
    match id.as_ref().and_then(|i| i.point_id_options.as_ref()) {
        Some(pb::point_id::PointIdOptions::Num(n)) => json!(n),
        Some(pb::point_id::PointIdOptions::Uuid(u)) => json!(u),
        None => Value::Null,
    }
}

/// gRPC scored points as REST-shaped JSON: `id`, `score`, `version`, `payload` when not empty.
fn scored_json(points: &[pb::ScoredPoint]) -> Value {
    Value::Array(
        points
            .iter()
            .map(|p| {
                let mut v = json!({"id": id_json(&p.id), "score": p.score, "version": p.version});
                if !p.payload.is_empty() {
                    v["payload"] = payload_to_json(&p.payload);
                }
                v
            })
            .collect(),
    )
}

/// REST scored points reduced to the same shape (payload keys sorted, scores as f32).
fn rest_scored(v: &Value) -> Value {
    Value::Array(
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let mut o = json!({"id": p["id"], "score": p["score"].as_f64().unwrap() as f32,
                                   "version": p["version"]});
                if let Some(pl) = p
                    .get("payload")
                    .filter(|pl| !pl.as_object().unwrap().is_empty())
                {
                    o["payload"] = payload_to_json(&payload_from_json(pl));
                }
                o
            })
            .collect(),
    )
}

fn ids(points: &[pb::ScoredPoint]) -> Vec<Value> {
    points.iter().map(|p| id_json(&p.id)).collect()
}

const UUID: &str = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26";

fn payloads() -> Vec<Value> {
    vec![
        json!({"text": "Berlin is the capital of Germany", "group": "city", "n": 1, "f": 1.5,
               "tags": ["de", "capital"], "meta": {"body": "x", "deep": {"k": [1, 2.5, null]}},
               "flag": true, "nil": null}),
        json!({"text": "Paris is the capital of France", "group": "city", "n": 2, "f": -0.25,
               "tags": [], "meta": {}}),
        json!({"text": "The Rhine is a river", "group": "river", "n": 3, "big": 9007199254740993i64}),
        json!({"text": "Mount Everest is high", "group": "mountain", "n": -4}),
    ]
}

const DENSE: [[f32; 4]; 4] = [
    [0.05, 0.61, 0.76, 0.74],
    [0.19, 0.81, 0.75, 0.11],
    [0.36, 0.55, 0.47, 0.94],
    [0.18, 0.01, 0.85, 0.8],
];

fn point_ids() -> Vec<pb::PointId> {
    vec![1u64.into(), 2u64.into(), 3u64.into(), UUID.into()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_works_over_grpc_only() {
    let (rest_double, grpc) = start_pair().await.unwrap();
    let q = client(&grpc);

    let health = q.health_check().await.unwrap();
    assert_eq!(health.title, "qdrant - vector search engine");
    assert_eq!(health.version, "1.18.3");

    let created = q
        .create_collection(
            CreateCollectionBuilder::new("plain")
                .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine)),
        )
        .await
        .unwrap();
    assert!(created.result);
    assert!(q.collection_exists("plain").await.unwrap());
    assert!(!q.collection_exists("other").await.unwrap());
    let names: Vec<String> = q
        .list_collections()
        .await
        .unwrap()
        .collections
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["plain"]);
    let info = q.collection_info("plain").await.unwrap().result.unwrap();
    assert_eq!(info.status, pb::CollectionStatus::Green as i32);
    let params = info.config.unwrap().params.unwrap();
    match params.vectors_config.unwrap().config.unwrap() {
        pb::vectors_config::Config::Params(p) => {
            assert_eq!((p.size, p.distance), (4, Distance::Cosine as i32));
        }
        other => panic!("unnamed vector expected, got {other:?}"),
    }

    let points: Vec<PointStruct> = point_ids()
        .into_iter()
        .zip(DENSE)
        .zip(payloads())
        .map(|((id, v), p)| PointStruct::new(id, v.to_vec(), payload_from_json(&p)))
        .collect();
    let up = q
        .upsert_points(UpsertPointsBuilder::new("plain", points).wait(true))
        .await
        .unwrap();
    let res = up.result.unwrap();
    assert_eq!(res.status, pb::UpdateStatus::Completed as i32);
    assert_eq!(res.operation_id, Some(1));

    let page = q
        .scroll(ScrollPointsBuilder::new("plain").limit(3))
        .await
        .unwrap();
    assert_eq!(
        page.result
            .iter()
            .map(|p| id_json(&p.id))
            .collect::<Vec<_>>(),
        [json!(1), json!(2), json!(3)]
    );
    assert_eq!(id_json(&page.next_page_offset), json!(UUID));
    // payload values come back exactly, integers as integers (also the one beyond 2^53)
    for (p, want) in page.result.iter().zip(payloads()) {
        assert_eq!(payload_to_json(&p.payload), want);
    }
    assert!(matches!(
        page.result[2].payload["big"].kind,
        Some(pb::value::Kind::IntegerValue(9007199254740993))
    ));
    assert!(value_to_json(&page.result[0].payload["n"]).is_i64());

    let count = q
        .count(CountPointsBuilder::new("plain").exact(true))
        .await
        .unwrap();
    assert_eq!(count.result.unwrap().count, 4);

    let snaps = q.list_snapshots("plain").await.unwrap();
    assert!(snaps.snapshot_descriptions.is_empty());
    let err = q.list_snapshots("missing").await.unwrap_err();
    assert!(err.to_string().contains("doesn't exist"), "{err}");

    // what was written over gRPC is there over REST, identical
    let (status, v) = rest(
        &rest_double.url(),
        "GET",
        &format!("/collections/plain/points/{UUID}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        payload_to_json(&payload_from_json(&v["result"]["payload"])),
        payloads()[3]
    );
    assert_eq!(v["result"]["payload"]["n"], json!(-4));

    assert!(q.delete_collection("plain").await.unwrap().result);
    assert!(!q.collection_exists("plain").await.unwrap());
    grpc.shutdown().await;
    rest_double.shutdown().await;
}

/// Creates `hyb` over gRPC: a named dense vector and a BM25 sparse vector with the idf modifier,
/// filled with server-side BM25 documents.
async fn hybrid(q: &Qdrant) {
    let mut vectors = qdrant_client::qdrant::VectorsConfigBuilder::default();
    vectors.add_named_vector_params("dense", VectorParamsBuilder::new(4, Distance::Cosine));
    let mut sparse = qdrant_client::qdrant::SparseVectorsConfigBuilder::default();
    sparse.add_named_vector_params(
        "bm25",
        qdrant_client::qdrant::SparseVectorParamsBuilder::default().modifier(pb::Modifier::Idf),
    );
    q.create_collection(
        CreateCollectionBuilder::new("hyb")
            .vectors_config(vectors)
            .sparse_vectors_config(sparse),
    )
    .await
    .unwrap();
    let points: Vec<PointStruct> = point_ids()
        .into_iter()
        .zip(DENSE)
        .zip(payloads())
        .map(|((id, v), p)| {
            let doc = Document {
                text: p["text"].as_str().unwrap().to_string(),
                model: "qdrant/bm25".into(),
                options: HashMap::new(),
            };
            let named: HashMap<String, pb::Vector> = HashMap::from([
                ("dense".to_string(), v.to_vec().into()),
                ("bm25".to_string(), doc.into()),
            ]);
            PointStruct::new(id, named, payload_from_json(&p))
        })
        .collect();
    q.upsert_points(UpsertPointsBuilder::new("hyb", points).wait(true))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_sparse_and_document_vectors_match_the_rest_answers() {
    let (rd, grpc) = start_pair().await.unwrap();
    let q = client(&grpc);
    hybrid(&q).await;

    // the collection info shows both vectors, as created
    let info = q.collection_info("hyb").await.unwrap().result.unwrap();
    let params = info.config.unwrap().params.unwrap();
    let sparse = params.sparse_vectors_config.unwrap();
    assert_eq!(sparse.map["bm25"].modifier, Some(pb::Modifier::Idf as i32));
    match params.vectors_config.unwrap().config.unwrap() {
        pb::vectors_config::Config::ParamsMap(m) => assert_eq!(m.map["dense"].size, 4),
        other => panic!("named vectors expected, got {other:?}"),
    }
    assert_eq!(info.points_count, Some(4));

    // Get with vectors: the dense one normalised (Cosine), the sparse one from BM25
    let got = q
        .get_points(
            GetPointsBuilder::new("hyb", vec![1u64.into(), UUID.into()])
                .with_vectors(true)
                .with_payload(true),
        )
        .await
        .unwrap();
    assert_eq!(got.result.len(), 2);
    assert_eq!(payload_to_json(&got.result[0].payload), payloads()[0]);
    let named = match got.result[0]
        .vectors
        .clone()
        .unwrap()
        .vectors_options
        .unwrap()
    {
        pb::vectors_output::VectorsOptions::Vectors(n) => n.vectors,
        other => panic!("named vectors expected, got {other:?}"),
    };
    let (status, rest_point) = rest(&rd.url(), "GET", "/collections/hyb/points/1", None).await;
    assert_eq!(status, 200);
    match named["dense"].vector.clone().unwrap() {
        pb::vector_output::Vector::Dense(d) => {
            let want: Vec<f32> = rest_point["result"]["vector"]["dense"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(d.data, want);
        }
        other => panic!("dense expected, got {other:?}"),
    }
    match named["bm25"].vector.clone().unwrap() {
        pb::vector_output::Vector::Sparse(s) => {
            assert_eq!(
                json!(s.indices),
                rest_point["result"]["vector"]["bm25"]["indices"]
            );
            assert!(!s.values.is_empty());
        }
        other => panic!("sparse expected, got {other:?}"),
    }

    // Document query on the BM25 vector
    let doc = Document {
        text: "capital of Germany".into(),
        model: "qdrant/bm25".into(),
        options: HashMap::new(),
    };
    let g = q
        .query(
            QueryPointsBuilder::new("hyb")
                .query(Query::new_nearest(doc.clone()))
                .using("bm25")
                .limit(3)
                .with_payload(true),
        )
        .await
        .unwrap();
    let r = rest_result(
        &rd,
        "/collections/hyb/points/query",
        json!({"query": {"text": "capital of Germany", "model": "qdrant/bm25"}, "using": "bm25",
               "limit": 3, "with_payload": true}),
    )
    .await;
    assert_eq!(scored_json(&g.result), rest_scored(&r["points"]));
    assert_eq!(ids(&g.result)[0], json!(1));

    // prefetch (dense + BM25 document) fused with RRF, with a filter and a payload exclude
    let g = q
        .query(
            QueryPointsBuilder::new("hyb")
                .add_prefetch(
                    PrefetchQueryBuilder::default()
                        .query(Query::new_nearest(DENSE[0].to_vec()))
                        .using("dense")
                        .limit(3u64),
                )
                .add_prefetch(
                    PrefetchQueryBuilder::default()
                        .query(Query::new_nearest(doc.clone()))
                        .using("bm25")
                        .limit(3u64),
                )
                .query(Query::new_fusion(Fusion::Rrf))
                .filter(Filter::must_not([Condition::matches(
                    "group",
                    "river".to_string(),
                )]))
                .with_payload(pb::PayloadExcludeSelector {
                    fields: vec!["text".into(), "meta".into()],
                })
                .limit(10),
        )
        .await
        .unwrap();
    let r = rest_result(
        &rd,
        "/collections/hyb/points/query",
        json!({"prefetch": [
                  {"query": DENSE[0], "using": "dense", "limit": 3},
                  {"query": {"text": "capital of Germany", "model": "qdrant/bm25"}, "using": "bm25", "limit": 3}],
               "query": {"fusion": "rrf"},
               "filter": {"must_not": [{"key": "group", "match": {"value": "river"}}]},
               "with_payload": {"exclude": ["text", "meta"]}, "limit": 10}),
    )
    .await;
    assert!(!g.result.is_empty());
    assert!(!ids(&g.result).contains(&json!(3)), "filtered out");
    assert!(g
        .result
        .iter()
        .all(|p| !p.payload.contains_key("text") && p.payload.contains_key("group")));
    // tied fused scores may come in any order: compare sorted by id
    let sort = |v: Value| {
        let mut a = v.as_array().unwrap().clone();
        a.sort_by_key(|p| p["id"].to_string());
        Value::Array(a)
    };
    assert_eq!(
        sort(scored_json(&g.result)),
        sort(rest_scored(&r["points"]))
    );

    // nearest to a point id, on the named dense vector: the point itself is not returned
    let g = q
        .query(
            QueryPointsBuilder::new("hyb")
                .query(Query::new_nearest(pb::PointId::from(1u64)))
                .using("dense")
                .limit(2),
        )
        .await
        .unwrap();
    let r = rest_result(
        &rd,
        "/collections/hyb/points/query",
        json!({"query": 1, "using": "dense", "limit": 2}),
    )
    .await;
    assert_eq!(scored_json(&g.result), rest_scored(&r["points"]));
    assert!(!ids(&g.result).contains(&json!(1)));

    // groups
    let g = q
        .query_groups(
            QueryPointGroupsBuilder::new("hyb", "group")
                .query(Query::new_nearest(DENSE[1].to_vec()))
                .using("dense")
                .limit(2u64)
                .group_size(2u64),
        )
        .await
        .unwrap();
    let r = rest_result(
        &rd,
        "/collections/hyb/points/query/groups",
        json!({"query": DENSE[1], "using": "dense", "group_by": "group", "limit": 2, "group_size": 2}),
    )
    .await;
    let groups = g.result.unwrap().groups;
    assert_eq!(groups.len(), 2);
    for (gg, rg) in groups.iter().zip(r["groups"].as_array().unwrap()) {
        let gid = match gg.id.clone().unwrap().kind.unwrap() {
            pb::group_id::Kind::StringValue(s) => json!(s),
            other => panic!("string group id expected, got {other:?}"),
        };
        assert_eq!(gid, rg["id"]);
        assert_eq!(scored_json(&gg.hits), rest_scored(&rg["hits"]));
    }

    // legacy API over raw clients: recommend by ids, search a named vector with a filter
    let mut points = PointsClient::new(channel(&grpc).await);
    let rec = points
        .recommend(pb::RecommendPoints {
            collection_name: "hyb".into(),
            positive: vec![1u64.into()],
            negative: vec![2u64.into()],
            using: Some("dense".into()),
            limit: 2,
            with_payload: Some(vec!["group"].into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let r = rest_result(
        &rd,
        "/collections/hyb/points/recommend",
        json!({"positive": [1], "negative": [2], "using": "dense", "limit": 2, "with_payload": ["group"]}),
    )
    .await;
    assert_eq!(scored_json(&rec.result), rest_scored(&r));
    assert!(!ids(&rec.result).contains(&json!(1)) && !ids(&rec.result).contains(&json!(2)));

    let filter = Filter {
        should: vec![
            Condition::matches("n", 1i64),
            Condition::matches("group", "mountain".to_string()),
        ],
        must_not: vec![Condition::has_id([pb::PointId::from(UUID)])],
        ..Default::default()
    };
    let s = points
        .search(pb::SearchPoints {
            collection_name: "hyb".into(),
            vector: DENSE[2].to_vec(),
            vector_name: Some("dense".into()),
            filter: Some(filter.clone()),
            limit: 5,
            with_payload: Some(true.into()),
            score_threshold: Some(0.1),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let r = rest_result(
        &rd,
        "/collections/hyb/points/search",
        json!({"vector": {"name": "dense", "vector": DENSE[2]}, "limit": 5, "with_payload": true,
               "score_threshold": 0.1,
               "filter": {"should": [{"key": "n", "match": {"value": 1}}, {"key": "group", "match": {"value": "mountain"}}],
                          "must_not": [{"has_id": [UUID]}]}}),
    )
    .await;
    assert_eq!(
        ids(&s.result),
        [json!(1)],
        "point 4 (mountain) is the UUID, excluded"
    );
    assert_eq!(scored_json(&s.result), rest_scored(&r));

    let n = points
        .count(pb::CountPoints {
            collection_name: "hyb".into(),
            filter: Some(Filter::must([Condition::matches(
                "group",
                "city".to_string(),
            )])),
            exact: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.result.unwrap().count, 2);

    // batches and discover reach the same endpoints
    let b = points
        .query_batch(pb::QueryBatchPoints {
            collection_name: "hyb".into(),
            query_points: vec![
                QueryPointsBuilder::new("hyb")
                    .query(Query::new_nearest(DENSE[3].to_vec()))
                    .using("dense")
                    .limit(2)
                    .build(),
                QueryPointsBuilder::new("hyb")
                    .query(Query::new_nearest(doc))
                    .using("bm25")
                    .limit(1)
                    .build(),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.result.len(), 2);
    assert_eq!((b.result[0].result.len(), b.result[1].result.len()), (2, 1));
    let d = points
        .discover(pb::DiscoverPoints {
            collection_name: "hyb".into(),
            target: Some(pb::TargetVector {
                target: Some(pb::target_vector::Target::Single(pb::VectorExample {
                    example: Some(pb::vector_example::Example::Id(3u64.into())),
                })),
            }),
            context: vec![pb::ContextExamplePair {
                positive: Some(pb::VectorExample {
                    example: Some(pb::vector_example::Example::Id(1u64.into())),
                }),
                negative: Some(pb::VectorExample {
                    example: Some(pb::vector_example::Example::Id(2u64.into())),
                }),
            }],
            using: Some("dense".into()),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let r = rest_result(
        &rd,
        "/collections/hyb/points/discover",
        json!({"target": 3, "context": [{"positive": 1, "negative": 2}], "using": "dense", "limit": 2}),
    )
    .await;
    assert_eq!(scored_json(&d.result), rest_scored(&r));
    grpc.shutdown().await;
    rd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_errors_become_grpc_statuses() {
    let (rd, grpc) = start_pair().await.unwrap();
    let q = client(&grpc);
    q.create_collection(
        CreateCollectionBuilder::new("docs")
            .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine)),
    )
    .await
    .unwrap();
    let mut raw =
        qdrant_client::qdrant::collections_client::CollectionsClient::new(channel(&grpc).await);
    let dup = raw
        .create(
            CreateCollectionBuilder::new("docs")
                .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine))
                .build(),
        )
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    assert_eq!(
        dup.message(),
        "Wrong input: Collection `docs` already exists!"
    );

    let mut points = PointsClient::new(channel(&grpc).await);
    let missing = points
        .scroll(pb::ScrollPoints {
            collection_name: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        missing.message(),
        "Not found: Collection `nope` doesn't exist!"
    );

    // a Document on a dense vector needs an inference service the double does not have
    let internal = points
        .query(
            QueryPointsBuilder::new("docs")
                .query(Query::new_nearest(Document {
                    text: "x".into(),
                    model: "some/model".into(),
                    options: HashMap::new(),
                }))
                .build(),
        )
        .await
        .unwrap_err();
    assert_eq!(internal.code(), Code::Internal);
    assert!(
        internal.message().starts_with("Service internal error: "),
        "{}",
        internal.message()
    );

    let dim = points
        .upsert(
            UpsertPointsBuilder::new(
                "docs",
                vec![PointStruct::new(
                    1,
                    vec![1.0f32, 2.0],
                    HashMap::<String, pb::Value>::new(),
                )],
            )
            .build(),
        )
        .await
        .unwrap_err();
    assert_eq!(dim.code(), Code::InvalidArgument);
    assert_eq!(
        dim.message(),
        "Wrong input: Vector dimension error: expected dim: 4, got 2"
    );

    let unimpl = points
        .facet(pb::FacetCounts {
            collection_name: "docs".into(),
            key: "group".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unimpl.code(), Code::Unimplemented);
    // every call is logged, the unimplemented one too
    let methods: Vec<String> = grpc.request_log().into_iter().map(|r| r.method).collect();
    assert_eq!(
        methods,
        [
            "/qdrant.Collections/Create",
            "/qdrant.Collections/Create",
            "/qdrant.Points/Scroll",
            "/qdrant.Points/Query",
            "/qdrant.Points/Upsert",
            "/qdrant.Points/Facet"
        ]
    );
    grpc.shutdown().await;
    rd.shutdown().await;
}

#[tokio::test]
async fn the_request_log_shows_what_the_client_sent() {
    let (rd, grpc) = start_pair().await.unwrap();
    let recs = [
        json!({"vectors": {"size": 4, "distance": "Cosine"}}),
        json!({"points": [{"id": 1, "vector": DENSE[0], "payload": {"text": "a"}},
                          {"id": 2, "vector": DENSE[1], "payload": {"text": "b"}}]}),
    ];
    assert_eq!(
        rest(&rd.url(), "PUT", "/collections/docs", Some(&recs[0]))
            .await
            .0,
        200
    );
    assert_eq!(
        rest(
            &rd.url(),
            "PUT",
            "/collections/docs/points?wait=true",
            Some(&recs[1])
        )
        .await
        .0,
        200
    );
    rd.clear_request_log();

    let ch = channel(&grpc).await;
    let mut points = PointsClient::new(ch)
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let mut req = tonic::Request::new(pb::SearchPoints {
        collection_name: "docs".into(),
        vector: DENSE[0].to_vec(),
        limit: 50,
        with_payload: Some(true.into()),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("api-key", "secret".parse().unwrap());
    req.metadata_mut().insert("x-trace", "t-1".parse().unwrap());
    let resp = points.search(req).await.unwrap().into_inner();
    assert_eq!(resp.result.len(), 2);
    assert_eq!(
        payload_to_json(&resp.result[0].payload),
        json!({"text": "a"})
    );
    assert!(resp.time > 0.0);

    let log = grpc.request_log();
    assert_eq!(log.len(), 1);
    let r = &log[0];
    assert_eq!(r.method, "/qdrant.Points/Search");
    assert_eq!(r.method_name(), "Search");
    assert_eq!(r.metadata_value("api-key"), Some("secret"));
    assert_eq!(r.metadata_value("X-Trace"), Some("t-1"));
    assert_eq!(r.metadata_value("grpc-encoding"), Some("gzip"));
    assert_eq!(r.request["limit"], json!(50));
    assert_eq!(r.request["with_payload"], json!({"enable": true}));
    assert_eq!(r.request["collection_name"], json!("docs"));
    let body = r.rest_body.as_ref().unwrap();
    assert_eq!(body["limit"], json!(50));
    assert_eq!(body["with_payload"], json!(true));
    // gRPC calls do not appear in the REST log
    assert!(rd.request_log().is_empty());
    grpc.clear_request_log();
    assert!(grpc.request_log().is_empty());

    // the state's delay holds gRPC answers too; a client deadline shorter than it fails
    let delay = Duration::from_millis(300);
    rd.set_delay(Some(delay));
    let mut health = QdrantClient::new(channel(&grpc).await);
    let start = Instant::now();
    health
        .health_check(pb::HealthCheckRequest {})
        .await
        .unwrap();
    assert!(start.elapsed() >= delay);
    let mut req = tonic::Request::new(pb::HealthCheckRequest {});
    req.set_timeout(Duration::from_millis(50));
    let err = health.health_check(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Cancelled, "{err:?}");
    assert!(grpc.request_log()[1]
        .metadata_value("grpc-timeout")
        .is_some());
    rd.set_delay(None);
    grpc.shutdown().await;
    rd.shutdown().await;
}

/// Kills the child on drop (by its handle), so a failing test leaves no process behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_serves_grpc_with_grpc_addr() {
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_qdrant-double"))
            .args(["--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let rest_url = first
        .strip_prefix("listening on ")
        .expect(&first)
        .to_string();
    let grpc_url = second
        .strip_prefix("grpc listening on ")
        .expect(&second)
        .to_string();
    assert!(rest_url.starts_with("http://127.0.0.1:") && grpc_url.starts_with("http://127.0.0.1:"));
    assert_ne!(rest_url, grpc_url);

    // one store behind both
    let body = json!({"vectors": {"size": 4, "distance": "Dot"}});
    assert_eq!(
        rest(&rest_url, "PUT", "/collections/c", Some(&body))
            .await
            .0,
        200
    );
    let ch = Channel::from_shared(grpc_url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let reply = QdrantClient::new(ch.clone())
        .health_check(pb::HealthCheckRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.version, "1.18.3");
    let list = qdrant_client::qdrant::collections_client::CollectionsClient::new(ch)
        .list(pb::ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.collections.len(), 1);
    assert_eq!(list.collections[0].name, "c");
    drop(child);
}
