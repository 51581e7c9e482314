//! A collection reranked by a decoder ("LLM") reranker, end to end against the real
//! Qdrant: REST (instruction in the body and as a header), gRPC (instruction as
//! metadata), secondpass's own `/rerank`, and the collection's instruction when the
//! request gives none. The model is the tiny random Qwen3 of `tests/fixtures/llm`
//! (its scores are checked against transformers in the crate's `tests/llm_reranker.rs`);
//! here the expected scores come from the same reranker called directly.

mod support;

use std::sync::Arc;

use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::{
    point_id, query, vector_input, DenseVector, Query, QueryPoints, VectorInput,
};
use secondpass::config::Config;
use secondpass::rerank::onnx::OnnxReranker;
use secondpass::rerank::{RerankRequest, Reranker};
use secondpass_it::real_qdrant::RealQdrant;
use serde_json::{json, Value};
use support::{config_with_grpc, ids, query_vector, registry, texts_by_id, Proxy};

const QUERY: &str = "capital of Germany";
const COLLECTION_INSTRUCTION: &str =
    "Given a question about a city, find the passage that answers it";
const REQUEST_INSTRUCTION: &str = "Judge strictly: only passages naming the capital count";

fn fixture() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/llm/qwen3-tiny"
    )
    .to_string()
}

fn extra(coll: &str) -> String {
    format!(
        r#"
[rerankers.llm]
kind = "onnx"
model_dir = "{}"
runtime_path = "{}"
family = "qwen3-reranker"
max_length = 256
[rerank_api]
enabled = true
rerankers = ["llm"]
[collections.{coll}]
reranker = "llm"
instruction = "{COLLECTION_INSTRUCTION}"
max_query_bytes = 200
"#,
        fixture(),
        support::runtime_path().display()
    )
}

/// Scores of `docs` by `r` for the query and `instruction`.
async fn scores(r: &OnnxReranker, docs: &[String], instruction: Option<&str>) -> Vec<f32> {
    r.rerank(RerankRequest {
        instruction: instruction.map(Into::into),
        ..RerankRequest::new(QUERY, docs.to_vec())
    })
    .await
    .unwrap()
}

/// The candidates with text in the order `instruction` gives them, with their scores.
async fn expected(r: &OnnxReranker, candidates: &[Value], instruction: &str) -> Vec<(Value, f32)> {
    let texts = texts_by_id();
    let with_text: Vec<(Value, String)> = candidates
        .iter()
        .filter_map(|id| {
            let t = texts.iter().find(|(i, _)| i == id)?.1.clone()?;
            Some((id.clone(), t))
        })
        .collect();
    let docs: Vec<String> = with_text.iter().map(|(_, t)| t.clone()).collect();
    let s = scores(r, &docs, Some(instruction)).await;
    let mut out: Vec<(Value, f32)> = with_text.into_iter().map(|(id, _)| id).zip(s).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

fn check_page(points: &Value, want: &[(Value, f32)], what: &str) {
    let got = points.as_array().unwrap();
    assert_eq!(got.len(), 3, "{what}: {points}");
    for (p, (id, score)) in got.iter().zip(want) {
        assert_eq!(&p["id"], id, "{what}: {points}");
        let s = p["score"].as_f64().unwrap() as f32;
        assert!((s - score).abs() < 1e-5, "{what}: {s} vs {score}");
    }
}

#[tokio::test]
async fn a_decoder_reranker_reranks_rest_grpc_and_the_rerank_api() {
    let qdrant = RealQdrant::shared();
    let coll = secondpass_it::real_qdrant::unique("secondpass_llm");
    let cfg: Config = config_with_grpc(&qdrant.url, &qdrant.grpc_url, &[&coll], &extra(&coll));
    let secondpass::config::RerankerConfig::Onnx(o) = &cfg.rerankers["llm"] else {
        panic!("llm is an onnx reranker");
    };
    let llm = Arc::new(OnnxReranker::load(o).expect("load the tiny Qwen3 fixture"));
    let mut reg = registry(&cfg);
    reg.insert("llm", llm.clone());
    let proxy = Proxy::start_with(cfg, reg).await;
    proxy.seed(&coll, false).await;
    let path = format!("/collections/{coll}/points/query");

    let all = proxy
        .post_direct(&path, &json!({"query": query_vector(), "limit": 100}))
        .await;
    let candidates = ids(&all.json()["result"]["points"]);
    let by_request = expected(&llm, &candidates, REQUEST_INSTRUCTION).await;
    let by_collection = expected(&llm, &candidates, COLLECTION_INSTRUCTION).await;
    assert!(
        by_request
            .iter()
            .zip(&by_collection)
            .any(|(a, b)| (a.1 - b.1).abs() > 1e-4),
        "the instruction must change the scores"
    );

    // REST, instruction in the body.
    let body = json!({"query": query_vector(), "limit": 3,
        "rerank": {"query": QUERY, "instruction": REQUEST_INSTRUCTION}});
    let r = proxy.post(&path, &[], &body).await;
    assert_eq!(r.header("x-rerank-status"), Some("applied"), "{:?}", r.body);
    assert_eq!(r.header("x-rerank-reranker"), Some("llm"));
    check_page(
        &r.json()["result"]["points"],
        &by_request,
        "REST body instruction",
    );

    // REST, instruction as a percent-encoded header.
    let header = REQUEST_INSTRUCTION.replace(' ', "%20").replace(':', "%3A");
    let r = proxy
        .post(
            &path,
            &[
                ("x-rerank-query", "capital%20of%20Germany"),
                ("x-rerank-instruction", &header),
            ],
            &json!({"query": query_vector(), "limit": 3}),
        )
        .await;
    check_page(
        &r.json()["result"]["points"],
        &by_request,
        "REST header instruction",
    );

    // No instruction in the request: the collection's.
    let r = proxy
        .post(
            &path,
            &[],
            &json!({"query": query_vector(), "limit": 3, "rerank": {"query": QUERY}}),
        )
        .await;
    check_page(
        &r.json()["result"]["points"],
        &by_collection,
        "collection instruction",
    );

    // An instruction longer than the collection's max_query_bytes is the client's error.
    let long = "x".repeat(201);
    let r = proxy
        .post(
            &path,
            &[],
            &json!({"query": query_vector(), "limit": 3,
            "rerank": {"query": QUERY, "instruction": long}}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.json()["status"]["error"]
        .as_str()
        .unwrap()
        .contains("instruction"));

    // gRPC, instruction as metadata.
    let mut points = PointsClient::connect(format!("http://{}", proxy.server.grpc_addr))
        .await
        .unwrap();
    let mut req = tonic::Request::new(QueryPoints {
        collection_name: coll.clone(),
        query: Some(Query {
            variant: Some(query::Variant::Nearest(VectorInput {
                variant: Some(vector_input::Variant::Dense(DenseVector {
                    data: vec![0.2, 0.1, 0.9, 0.7],
                })),
            })),
        }),
        limit: Some(3),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-rerank-query", "capital%20of%20Germany".parse().unwrap());
    req.metadata_mut()
        .insert("x-rerank-instruction", header.parse().unwrap());
    let resp = points.query(req).await.unwrap();
    assert_eq!(resp.metadata().get("x-rerank-status").unwrap(), "applied");
    let got = resp.into_inner().result;
    for (p, (id, score)) in got.iter().zip(&by_request) {
        let num = match p.id.as_ref().and_then(|i| i.point_id_options.as_ref()) {
            Some(point_id::PointIdOptions::Num(n)) => json!(n),
            other => panic!("unexpected id {other:?}"),
        };
        assert_eq!(&num, id);
        assert!(
            (p.score - score).abs() < 1e-5,
            "gRPC: {} vs {score}",
            p.score
        );
    }

    // secondpass's own /rerank (TEI shape), backed by the same reranker.
    let docs = vec![
        "Berlin is the capital of Germany.".to_string(),
        "Bananas are yellow.".into(),
    ];
    let r = proxy
        .post(
            "/rerank",
            &[],
            &json!({"query": QUERY, "texts": docs, "raw_scores": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let want = scores(&llm, &docs, None).await;
    for hit in r.json().as_array().unwrap() {
        let i = hit["index"].as_u64().unwrap() as usize;
        let s = hit["score"].as_f64().unwrap() as f32;
        assert!((s - want[i]).abs() < 1e-5, "/rerank: {s} vs {}", want[i]);
    }
    proxy.drop_collection(&coll).await;
}
