//! Documents from several fields, chunked long documents and staged reranking, end
//! to end through the proxy against the real Qdrant (QDRANT_URL, else one started for
//! this test binary).

mod support;

use secondpass_it::real_qdrant::RealQdrant;

use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::{json, Value};

use secondpass::config::OnnxConfig;
use secondpass::rerank::onnx::OnnxReranker;
use secondpass::rerank::{sigmoid, RerankRequest, Reranker};
use support::{config, expected_scores, model_dir, registry, request, Proxy};

fn name(what: &str) -> String {
    format!("sp_long_{what}_{}", std::process::id())
}

/// Creates `coll` in Qdrant through the proxy with `points` as (payload, vector);
/// the query vector [1, 0, 0, 0] finds them in the given order.
async fn seed(proxy: &Proxy, coll: &str, payloads: &[Value]) {
    let url = proxy.url(&format!("/collections/{coll}"));
    proxy.drop_collection(coll).await;
    let r = request(
        &proxy.client,
        Method::PUT,
        &url,
        &[],
        Some(&json!({"vectors": {"size": 4, "distance": "Cosine"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let points: Vec<Value> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let x = 1.0 - 0.1 * i as f32;
            json!({"id": i + 1, "vector": [x, 1.0 - x, 0.0, 0.0], "payload": p})
        })
        .collect();
    let r = request(
        &proxy.client,
        Method::PUT,
        &format!("{url}/points?wait=true"),
        &[],
        Some(&json!({ "points": points })),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

async fn drop_collections(proxy: &Proxy, colls: &[&str]) {
    for c in colls {
        proxy.drop_collection(c).await;
    }
}

async fn search(proxy: &Proxy, coll: &str, extra: Value) -> support::Resp {
    let mut body = json!({"query": [1.0, 0.0, 0.0, 0.0], "limit": 6, "with_payload": ["n"]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    proxy
        .post(&format!("/collections/{coll}/points/query"), &[], &body)
        .await
}

fn ids(r: &Value) -> Vec<u64> {
    r["result"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect()
}

const QUERY: &str = "heat transfer in the hypersonic boundary layer";

#[tokio::test]
async fn text_template_scores_several_fields_and_hides_them() {
    let server = RealQdrant::shared();
    let url = server.url.clone();
    let coll = name("tpl");
    let extra = format!("[collections.{coll}]\ntext_template = \"{{title}}\\n{{meta.body}}\"\n");
    let proxy = Proxy::start(config(&url, &[&coll], &extra)).await;
    let payloads = vec![
        json!({"n": 1, "title": "wing flutter", "meta": {"body": "aeroelastic models of wings"}}),
        json!({"n": 2, "title": "heat transfer", "meta": {"body": "hypersonic boundary layer heating"}}),
        json!({"n": 3, "meta": {"body": "boundary layer transition at high speed"}}),
        json!({"n": 4, "title": "hypersonic heat transfer"}),
        json!({"n": 5, "other": "no text at all"}),
    ];
    seed(&proxy, &coll, &payloads).await;
    let r = search(&proxy, &coll, json!({"rerank": {"query": QUERY}}))
        .await
        .json();
    assert_eq!(r["rerank"]["status"], "applied", "{r}");
    assert_eq!(r["rerank"]["candidates"], 4);
    let docs: Vec<String> = vec![
        "wing flutter\naeroelastic models of wings".into(),
        "heat transfer\nhypersonic boundary layer heating".into(),
        "boundary layer transition at high speed".into(),
        "hypersonic heat transfer".into(),
    ];
    let scores = expected_scores(QUERY, &docs).await;
    let mut want: Vec<(u64, f32)> = (1..=4).zip(scores).collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut want_ids: Vec<u64> = want.iter().map(|w| w.0).collect();
    want_ids.push(5); // without text: after, in Qdrant's order
    assert_eq!(ids(&r), want_ids);
    let top = &r["result"]["points"][0];
    assert!((top["score"].as_f64().unwrap() - want[0].1 as f64).abs() < 1e-3);
    // the fields fetched for reranking never reach the client's payload
    for p in r["result"]["points"].as_array().unwrap() {
        let keys: Vec<&String> = p["payload"].as_object().unwrap().keys().collect();
        assert_eq!(keys, vec!["n"], "{p}");
    }
    drop_collections(&proxy, &[&coll]).await;
}

/// A document whose relevant part starts after 200 words of filler.
fn long_document() -> String {
    let filler =
        "the committee reviewed the budget and the travel plans of the staff . ".repeat(17);
    format!("{filler} heat transfer in the hypersonic boundary layer was measured on a cooled flat plate .")
}

#[tokio::test]
async fn chunking_finds_the_passage_truncation_cuts() {
    let server = RealQdrant::shared();
    let url = server.url.clone();
    let (trunc, chunk) = (name("trunc"), name("chunk"));
    let extra = format!(
        "[collections.{trunc}]\n[collections.{chunk}]\nlong_documents = \"chunk\"\n\
         chunk_aggregate = \"max\"\nmax_chunks_per_doc = 8\nchunk_overlap = 16\n"
    );
    let proxy = Proxy::start(config(&url, &[&trunc, &chunk], &extra)).await;
    let payloads = vec![
        json!({"n": 1, "text": "wing flutter of aeroelastic models"}),
        json!({"n": 2, "text": long_document()}),
        json!({"n": 3, "text": "the committee reviewed the budget"}),
    ];
    for c in [&trunc, &chunk] {
        seed(&proxy, c, &payloads).await;
    }
    let score_of = |r: &Value, id: u64| {
        r["result"]["points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap()["score"]
            .as_f64()
            .unwrap()
    };
    let q = json!({"rerank": {"query": QUERY}});
    let t = search(&proxy, &trunc, q.clone()).await.json();
    let c = search(&proxy, &chunk, q).await.json();
    assert_eq!(t["rerank"]["status"], "applied", "{t}");
    assert_eq!(c["rerank"]["status"], "applied", "{c}");
    // truncated, the long document is its filler; chunked, its last passage counts
    let (ts, cs) = (score_of(&t, 2), score_of(&c, 2));
    assert!(cs > ts + 0.2, "chunked {cs} vs truncated {ts}");
    assert_eq!(ids(&c)[0], 2, "{c}");
    // short documents are one passage: the same score either way
    assert!((score_of(&t, 1) - score_of(&c, 1)).abs() < 1e-4);
    drop_collections(&proxy, &[&trunc, &chunk]).await;
}

fn int8() -> Arc<OnnxReranker> {
    Arc::new(
        OnnxReranker::load(&OnnxConfig {
            model_file: Some("model_int8.onnx".into()),
            ..support::model_config()
        })
        .expect("int8 model"),
    )
}

async fn raw_scores(r: &dyn Reranker, docs: &[String], max_length: Option<usize>) -> Vec<f32> {
    r.rerank(RerankRequest {
        max_length,
        ..RerankRequest::new(QUERY, docs.to_vec())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn stages_cascade_pick_and_fail_open_per_stage() {
    let server = RealQdrant::shared();
    let url = server.url.clone();
    let (staged, broken, short) = (name("staged"), name("broken"), name("short"));
    let extra = format!(
        r#"
[rerankers.fast]
kind = "onnx"
model_dir = "{}"
model_file = "model_int8.onnx"
max_length = 128
[rerankers.down]
kind = "tei"
base_url = "http://127.0.0.1:1"
max_retries = 0
[collections.{staged}]
stages = [{{ reranker = "fast", keep = 3 }}, {{ reranker = "local" }}]
allowed_rerankers = ["fast"]
[collections.{broken}]
stages = [{{ reranker = "down", keep = 2 }}, {{ reranker = "local" }}]
[collections.{short}]
stages = [{{ reranker = "fast", keep = 3, max_length = 16 }}, {{ reranker = "local" }}]
"#,
        model_dir().display()
    );
    let cfg = config(&url, &[&staged, &broken, &short], &extra);
    let mut reg = registry(&cfg);
    let fast = int8();
    reg.insert("fast", fast.clone());
    let proxy = Proxy::start_with(cfg, reg).await;
    let texts = [
        "wing flutter of aeroelastic models",
        "heat transfer to a cooled flat plate in hypersonic flow",
        "the committee reviewed the budget",
        "boundary layer transition and heating at mach 7",
        "laminar boundary layer heat transfer measurements",
        "buckling of thin cylindrical shells",
    ];
    let docs: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    let payloads: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"n": i + 1, "text": t}))
        .collect();
    for c in [&staged, &broken, &short] {
        seed(&proxy, c, &payloads).await;
    }
    let q = json!({"rerank": {"query": QUERY}});

    // The cascade: int8 scores all 6, fp32 re-scores int8's best 3.
    let r = search(&proxy, &staged, q.clone()).await.json();
    let stages = r["rerank"]["stages"].as_array().expect("stages");
    assert_eq!(stages.len(), 2, "{r}");
    assert_eq!(stages[0]["reranker"], "fast");
    assert_eq!(stages[0]["candidates"], 6);
    assert_eq!(stages[1]["reranker"], "local");
    assert_eq!(stages[1]["candidates"], 3);
    assert!(stages.iter().all(|s| s["status"] == "applied"));
    assert_eq!(r["rerank"]["reranker"], "local");
    let fast_scores = raw_scores(fast.as_ref(), &docs, None).await;
    let mut by_fast: Vec<usize> = (0..6).collect();
    by_fast.sort_by(|&a, &b| fast_scores[b].total_cmp(&fast_scores[a]));
    let kept: Vec<usize> = by_fast[..3].to_vec();
    let kept_docs: Vec<String> = kept.iter().map(|&i| docs[i].clone()).collect();
    let precise = expected_scores(QUERY, &kept_docs).await;
    let mut top: Vec<(usize, f32)> = kept.iter().copied().zip(precise).collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut want: Vec<u64> = top.iter().map(|(i, _)| *i as u64 + 1).collect();
    // the cut ones after every kept one, in int8's order, with int8's scores
    want.extend(by_fast[3..].iter().map(|&i| i as u64 + 1));
    assert_eq!(ids(&r), want, "{r}");
    let last = &r["result"]["points"][5];
    let cut_score = sigmoid(fast_scores[by_fast[5]]) as f64;
    assert!((last["score"].as_f64().unwrap() - cut_score).abs() < 1e-3);

    // A request picks an allowed reranker (it replaces the last stage) ...
    let pick = json!({"rerank": {"query": QUERY, "reranker": "fast"}});
    let r = search(&proxy, &staged, pick).await.json();
    assert_eq!(r["rerank"]["reranker"], "fast", "{r}");
    assert_eq!(r["rerank"]["stages"][1]["reranker"], "fast");
    // ... and anything else is a 400 in Qdrant's error format.
    let bad = json!({"rerank": {"query": QUERY, "reranker": "local"}});
    let resp = search(&proxy, &staged, bad).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    let err = resp.json()["status"]["error"].as_str().unwrap().to_string();
    assert!(err.contains("not allowed"), "{err}");

    // A failed first stage fails open: the next one takes Qdrant's best 2.
    let r = search(&proxy, &broken, q).await.json();
    assert_eq!(r["rerank"]["status"], "applied", "{r}");
    let stages = r["rerank"]["stages"].as_array().unwrap();
    assert_eq!(stages[0]["status"], "failed_open");
    assert_eq!(stages[1]["status"], "applied");
    assert_eq!(stages[1]["candidates"], 2);
    let got = ids(&r);
    let mut first_two = got[..2].to_vec();
    first_two.sort();
    assert_eq!(first_two, vec![1, 2]);
    assert_eq!(got[2..], [3, 4, 5, 6]);

    // A stage's own max_length: the first stage reads 16 tokens per pair, so the
    // candidates it cuts carry int8's 16-token scores, not its 128-token ones.
    let r = search(&proxy, &short, json!({"rerank": {"query": QUERY}}))
        .await
        .json();
    assert_eq!(r["rerank"]["stages"][1]["candidates"], 3, "{r}");
    let short_scores = raw_scores(fast.as_ref(), &docs, Some(16)).await;
    let mut by_short: Vec<usize> = (0..6).collect();
    by_short.sort_by(|&a, &b| short_scores[b].total_cmp(&short_scores[a]));
    let got = ids(&r);
    let cut: Vec<u64> = by_short[3..].iter().map(|&i| i as u64 + 1).collect();
    assert_eq!(got[3..], cut[..], "{r}");
    let last = by_short[5];
    assert!(
        (short_scores[last] - fast_scores[last]).abs() > 1e-3,
        "16 and 128 tokens should score differently"
    );
    let got_last = r["result"]["points"][5]["score"].as_f64().unwrap();
    assert!(
        (got_last - sigmoid(short_scores[last]) as f64).abs() < 1e-3,
        "{got_last} vs {}",
        sigmoid(short_scores[last])
    );
    drop_collections(&proxy, &[&staged, &broken, &short]).await;
}
