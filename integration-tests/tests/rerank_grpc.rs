//! gRPC through secondpass (port 0) in front of the real Qdrant (QDRANT_URL /
//! QDRANT_GRPC_URL, else one started for this test binary: `secondpass_it::real_qdrant`),
//! with the real model and the Rust qdrant-client (generated stubs and the high-level
//! client); a relay in between where a test checks what Qdrant was sent.

// The legacy Search methods are deprecated in the client but still served: test them.
#![allow(deprecated)]

mod support;

use prost::Message;
use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::with_payload_selector::SelectorOptions;
use qdrant_client::qdrant::{
    point_id, query, vector_input, Document, PayloadExcludeSelector, PayloadIncludeSelector,
    PointId, Query, QueryBatchPoints, QueryPointGroups, QueryPoints, ScoredPoint,
    SearchPointGroups, SearchPoints, VectorInput, WithPayloadSelector,
};
use secondpass_it::relay::Relay;
use serde_json::{json, Value};
use support::{config_with_grpc, model_order, qdrant, Proxy};
use tonic::transport::Channel;

const QUERY: &str = "capital of Germany";

fn id_json(id: &Option<PointId>) -> Value {
    match id.as_ref().and_then(|i| i.point_id_options.as_ref()) {
        Some(point_id::PointIdOptions::Num(n)) => json!(n),
        Some(point_id::PointIdOptions::Uuid(u)) => json!(u),
        None => Value::Null,
    }
}

fn ids(points: &[ScoredPoint]) -> Vec<Value> {
    points.iter().map(|p| id_json(&p.id)).collect()
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

fn with_text<T>(msg: T, text: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    let v = text.replace(' ', "%20");
    r.metadata_mut()
        .insert("x-rerank-query", v.parse().unwrap());
    r
}

async fn points(url: String) -> PointsClient<Channel> {
    PointsClient::connect(url).await.expect("connect")
}

/// secondpass in front of the real Qdrant, and where to reach each over gRPC.
struct Setup {
    proxy: Proxy,
    grpc_url: String,
    direct_grpc: String,
}

async fn setup(collections: &[&str], extra: &str) -> Setup {
    let q = qdrant();
    let proxy = Proxy::start(config_with_grpc(&q.url, &q.grpc_url, collections, extra)).await;
    Setup {
        grpc_url: format!("http://{}", proxy.server.grpc_addr),
        direct_grpc: q.grpc_url.clone(),
        proxy,
    }
}

/// Every client-visible gRPC check on `coll` (reranking on, `docs` data seeded).
async fn scenario(s: &Setup, coll: &str) {
    let mut via = points(s.grpc_url.clone()).await;
    let mut direct = points(s.direct_grpc.clone()).await;
    let all = direct
        .query(QueryPoints {
            collection_name: coll.into(),
            query: vector_query(),
            limit: Some(100),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .result;
    let candidates = ids(&all);
    let expected = model_order(QUERY, &candidates).await;
    let expected_ids: Vec<Value> = expected.iter().map(|(id, _)| id.clone()).collect();
    assert_ne!(expected_ids, candidates);

    // Query with percent-encoded metadata: the model's order, sigmoid scores, marker.
    let resp = via
        .query(with_text(
            QueryPoints {
                collection_name: coll.into(),
                query: vector_query(),
                limit: Some(3),
                ..Default::default()
            },
            QUERY,
        ))
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-rerank-status").unwrap(), "applied");
    assert!(resp.metadata().get("x-rerank-model").is_some());
    let got = resp.into_inner().result;
    assert_eq!(ids(&got), expected_ids[..3].to_vec());
    for (p, (_, score)) in got.iter().zip(&expected) {
        assert!((p.score - score.unwrap()).abs() < 1e-5);
        assert!(p.payload.is_empty(), "no payload was asked for");
    }

    // Binary metadata, legacy Search with offset and an include selector.
    let mut req = tonic::Request::new(SearchPoints {
        collection_name: coll.into(),
        vector: vec![0.2, 0.1, 0.9, 0.7],
        limit: 2,
        offset: Some(1),
        with_payload: Some(WithPayloadSelector {
            selector_options: Some(SelectorOptions::Include(PayloadIncludeSelector {
                fields: vec!["title".into()],
            })),
        }),
        ..Default::default()
    });
    req.metadata_mut().insert_bin(
        "x-rerank-query-bin",
        tonic::metadata::MetadataValue::from_bytes(QUERY.as_bytes()),
    );
    let got = via.search(req).await.unwrap().into_inner().result;
    assert_eq!(ids(&got), expected_ids[1..3].to_vec());
    assert!(
        got.iter().all(|p| p.payload.keys().all(|k| k == "title")),
        "{got:?}"
    );

    // Exclude selector: the text field is excluded again after reranking.
    let got = via
        .search(with_text(
            SearchPoints {
                collection_name: coll.into(),
                vector: vec![0.2, 0.1, 0.9, 0.7],
                limit: 8,
                with_payload: Some(WithPayloadSelector {
                    selector_options: Some(SelectorOptions::Exclude(PayloadExcludeSelector {
                        fields: vec!["text".into()],
                    })),
                }),
                ..Default::default()
            },
            QUERY,
        ))
        .await
        .unwrap()
        .into_inner()
        .result;
    assert_eq!(ids(&got), expected_ids);
    assert!(got.iter().all(|p| !p.payload.contains_key("text")));
    assert!(got.iter().any(|p| p.payload.contains_key("title")));

    // Batch: each search reranked; statuses in metadata.
    let resp = via
        .query_batch(with_text(
            QueryBatchPoints {
                collection_name: coll.into(),
                query_points: vec![
                    QueryPoints {
                        collection_name: coll.into(),
                        query: vector_query(),
                        limit: Some(2),
                        ..Default::default()
                    },
                    QueryPoints {
                        collection_name: coll.into(),
                        query: vector_query(),
                        limit: Some(1),
                        offset: Some(2),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            QUERY,
        ))
        .await
        .unwrap();
    assert_eq!(
        resp.metadata().get("x-rerank-statuses").unwrap(),
        "applied,applied"
    );
    let batch = resp.into_inner().result;
    assert_eq!(ids(&batch[0].result), expected_ids[..2].to_vec());
    assert_eq!(ids(&batch[1].result), expected_ids[2..3].to_vec());

    // Groups: hits reranked inside groups, groups by best hit.
    let groups = via
        .search_groups(with_text(
            SearchPointGroups {
                collection_name: coll.into(),
                vector: vec![0.2, 0.1, 0.9, 0.7],
                group_by: "group".into(),
                limit: 2,
                group_size: 2,
                ..Default::default()
            },
            QUERY,
        ))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap()
        .groups;
    assert_eq!(groups.len(), 2);
    let best: Vec<f32> = groups.iter().map(|g| g.hits[0].score).collect();
    assert!(best[0] >= best[1]);
    assert_eq!(
        id_json(&groups[0].hits[0].id),
        expected_ids[0],
        "the best hit's group comes first"
    );
    for g in &groups {
        assert!(g.hits.len() <= 2);
    }
    let qg = via
        .query_groups(with_text(
            QueryPointGroups {
                collection_name: coll.into(),
                query: vector_query(),
                group_by: "group".into(),
                limit: Some(1),
                group_size: Some(1),
                ..Default::default()
            },
            QUERY,
        ))
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap()
        .groups;
    assert_eq!(id_json(&qg[0].hits[0].id), expected_ids[0]);

    // No text: Qdrant's answer, marked skipped.
    let resp = via
        .query(QueryPoints {
            collection_name: coll.into(),
            query: vector_query(),
            limit: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-rerank-status").unwrap(), "skipped");
    assert_eq!(ids(&resp.into_inner().result), candidates[..3].to_vec());

    // Turned off by metadata.
    let mut req = with_text(
        QueryPoints {
            collection_name: coll.into(),
            query: vector_query(),
            limit: Some(3),
            ..Default::default()
        },
        QUERY,
    );
    req.metadata_mut()
        .insert("x-rerank-enabled", "false".parse().unwrap());
    let resp = via.query(req).await.unwrap();
    assert_eq!(resp.metadata().get("x-rerank-status").unwrap(), "disabled");
    assert_eq!(ids(&resp.into_inner().result), candidates[..3].to_vec());

    // Qdrant's errors keep their code and message.
    let err = via
        .query(with_text(
            QueryPoints {
                collection_name: "nope-missing".into(),
                query: vector_query(),
                ..Default::default()
            },
            QUERY,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains("nope-missing"), "{err:?}");
    let err = via
        .search(with_text(
            SearchPoints {
                collection_name: coll.into(),
                vector: vec![1.0, 2.0],
                limit: 3,
                ..Default::default()
            },
            QUERY,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("dimension"), "{err:?}");
}

#[tokio::test]
async fn grpc_searches_are_reranked_like_the_model_says() {
    let docs = qdrant().collection("docs");
    let s = setup(&[&docs], "").await;
    s.proxy.seed(&docs, false).await;
    scenario(&s, &docs).await;
}

#[tokio::test]
async fn widened_grpc_request_and_metadata_reach_qdrant() {
    let docs = qdrant().collection("docs");
    let relay = Relay::start(&qdrant().grpc_url).await;
    let extra = format!("[collections.{docs}]\npool = 6\n");
    let proxy = Proxy::start(config_with_grpc(
        &qdrant().url,
        &relay.url(),
        &[&docs],
        &extra,
    ))
    .await;
    proxy.seed(&docs, false).await;
    let mut via = points(format!("http://{}", proxy.server.grpc_addr)).await;
    let mut req = with_text(
        SearchPoints {
            collection_name: docs.to_string(),
            vector: vec![0.2, 0.1, 0.9, 0.7],
            limit: 2,
            offset: Some(1),
            ..Default::default()
        },
        QUERY,
    );
    req.metadata_mut()
        .insert("api-key", "secret-key".parse().unwrap());
    let resp = via.search(req).await.unwrap();
    assert_eq!(resp.metadata().get("x-rerank-status").unwrap(), "applied");
    assert_eq!(resp.into_inner().result.len(), 2);
    let log = relay.seen();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].path, "/qdrant.Points/Search");
    // one uncompressed gRPC message
    assert_eq!(log[0].body[0], 0, "not compressed");
    let sent = SearchPoints::decode(&log[0].body[5..]).expect("a SearchPoints message");
    assert_eq!(sent.collection_name, *docs);
    assert_eq!(sent.limit, 6);
    assert_eq!(sent.offset, None);
    assert_eq!(
        sent.with_payload,
        Some(WithPayloadSelector {
            selector_options: Some(SelectorOptions::Include(PayloadIncludeSelector {
                fields: vec!["text".into()],
            })),
        })
    );
    assert_eq!(sent.vector, vec![0.2, 0.1, 0.9, 0.7]);
    assert_eq!(log[0].header("api-key"), Some("secret-key"));
    assert_eq!(log[0].header("x-rerank-query"), None);
}

#[tokio::test]
async fn document_queries_carry_their_text() {
    let hybrid = qdrant().collection("hybrid");
    let s = setup(&[&hybrid], "").await;
    s.proxy.seed(&hybrid, true).await;
    let mut via = points(s.grpc_url.clone()).await;
    let doc = Query {
        variant: Some(query::Variant::Nearest(VectorInput {
            variant: Some(vector_input::Variant::Document(Document {
                text: QUERY.into(),
                model: "qdrant/bm25".into(),
                ..Default::default()
            })),
        })),
    };
    let resp = via
        .query(QueryPoints {
            collection_name: hybrid.to_string(),
            query: Some(doc),
            using: Some("bm25".into()),
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-rerank-status").unwrap(), "applied");
    let got = resp.into_inner().result;
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|p| (0.0..=1.0).contains(&p.score)));
}

#[tokio::test]
async fn everything_else_passes_through_the_high_level_client() {
    use qdrant_client::qdrant::{
        CountPointsBuilder, CreateCollectionBuilder, Distance, ListSnapshotsRequest, PointStruct,
        ScrollPointsBuilder, UpsertPointsBuilder, VectorParamsBuilder,
    };
    use qdrant_client::Qdrant;
    let s = setup(&[], "").await;
    let client = Qdrant::from_url(&s.grpc_url)
        .skip_compatibility_check()
        .build()
        .unwrap();
    let direct = Qdrant::from_url(&s.direct_grpc)
        .skip_compatibility_check()
        .build()
        .unwrap();
    let health = client.health_check().await.unwrap();
    assert_eq!(health, direct.health_check().await.unwrap());
    assert!(!health.version.is_empty());
    let coll = qdrant().collection("pass");
    let pass = coll.to_string();
    client
        .create_collection(
            CreateCollectionBuilder::new(&pass)
                .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine)),
        )
        .await
        .unwrap();
    let err = client
        .create_collection(
            CreateCollectionBuilder::new(&pass)
                .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine)),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let pts: Vec<PointStruct> = (1..=5u64)
        .map(|i| {
            PointStruct::new(
                i,
                vec![i as f32, 1.0, 0.0, 0.0],
                [("text", format!("doc {i}").into())],
            )
        })
        .collect();
    client
        .upsert_points(UpsertPointsBuilder::new(&pass, pts).wait(true))
        .await
        .unwrap();
    assert_eq!(
        client
            .count(CountPointsBuilder::new(&pass))
            .await
            .unwrap()
            .result
            .unwrap()
            .count,
        5
    );
    let scrolled = client
        .scroll(ScrollPointsBuilder::new(&pass).limit(3))
        .await
        .unwrap();
    assert_eq!(scrolled.result.len(), 3);
    let mut snaps =
        qdrant_client::qdrant::snapshots_client::SnapshotsClient::connect(s.grpc_url.clone())
            .await
            .unwrap();
    snaps
        .list(ListSnapshotsRequest {
            collection_name: pass.clone(),
        })
        .await
        .unwrap();
    client.delete_collection(&pass).await.unwrap();
    assert!(!client.collection_exists(&pass).await.unwrap());
    let metrics = String::from_utf8(s.proxy.get_admin("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("route=\"grpc_forward\",transport=\"grpc\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn unreachable_grpc_upstream_is_unavailable() {
    let proxy = Proxy::start(config_with_grpc(
        &qdrant().url,
        "http://127.0.0.1:1",
        &["docs"],
        "",
    ))
    .await;
    let mut via = points(format!("http://{}", proxy.server.grpc_addr)).await;
    let err = via
        .query(with_text(
            QueryPoints {
                collection_name: "docs".into(),
                query: vector_query(),
                ..Default::default()
            },
            QUERY,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    let err = via
        .count(qdrant_client::qdrant::CountPoints {
            collection_name: "docs".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
}

/// Snapshot calls get `upstream.snapshot_timeout_ms`, not the default budget, on both
/// APIs: behind a 1 ms default budget, collection snapshots created through secondpass
/// over gRPC (`/qdrant.Snapshots/Create`) and REST complete (before, gRPC snapshot paths
/// got the 1 ms budget and ended DEADLINE_EXCEEDED).
#[tokio::test]
async fn snapshots_get_the_long_budget_on_both_apis() {
    use qdrant_client::qdrant::snapshots_client::SnapshotsClient;
    use qdrant_client::qdrant::CreateSnapshotRequest;
    let q = qdrant();
    let coll = format!("secondpass_snapshot_budget_{}", std::process::id());
    let mut cfg = config_with_grpc(&q.url, &q.grpc_url, &[], "");
    cfg.upstream.timeout_ms = 1;
    let proxy = Proxy::start(cfg).await;
    let http = support::client();
    let direct = |path: &str| format!("{}{path}", q.url);
    let r = support::request(
        &http,
        http::Method::PUT,
        &direct(&format!("/collections/{coll}")),
        &[],
        Some(&json!({"vectors": {"size": 4, "distance": "Cosine"}})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json());
    // The guard: a snapshot takes Qdrant longer than the 1 ms default budget.
    let started = std::time::Instant::now();
    let mut direct_snaps = SnapshotsClient::connect(q.grpc_url.clone()).await.unwrap();
    direct_snaps
        .create(CreateSnapshotRequest {
            collection_name: coll.clone(),
        })
        .await
        .unwrap();
    assert!(started.elapsed() > std::time::Duration::from_millis(2));

    let mut via = SnapshotsClient::connect(format!("http://{}", proxy.server.grpc_addr))
        .await
        .unwrap();
    let made = via
        .create(CreateSnapshotRequest {
            collection_name: coll.clone(),
        })
        .await
        .expect("gRPC snapshot through secondpass");
    assert!(made.into_inner().snapshot_description.is_some());
    let r = support::request(
        &http,
        http::Method::POST,
        &proxy.url(&format!("/collections/{coll}/snapshots?wait=true")),
        &[],
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        r.status,
        200,
        "REST snapshot through secondpass: {}",
        r.json()
    );
    let _ = support::request(
        &http,
        http::Method::DELETE,
        &direct(&format!("/collections/{coll}")),
        &[],
        None,
    )
    .await;
}
