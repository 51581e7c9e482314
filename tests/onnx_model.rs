//! The local cross-encoder against PyTorch's scores for the shared model
//! (`../shared/models/cranfield-minilm-l6-ce/reference.json`). Needs `scripts/setup`
//! (ONNX Runtime) and the shared model folder.

use std::path::PathBuf;

use secondpass::config::OnnxConfig;
use secondpass::rerank::onnx::OnnxReranker;
use secondpass::rerank::{RerankRequest, Reranker};

fn shared() -> PathBuf {
    std::env::var_os("SECONDPASS_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")))
}

fn model_dir() -> PathBuf {
    let dir = shared().join("models/cranfield-minilm-l6-ce");
    assert!(
        dir.join("model.onnx").is_file(),
        "the shared model is missing at {} (set SECONDPASS_SHARED_DIR)",
        dir.display()
    );
    dir
}

fn config(dir: PathBuf, file: Option<&str>, batch_size: usize) -> OnnxConfig {
    OnnxConfig {
        model_dir: dir,
        model_file: file.map(PathBuf::from),
        max_length: 128,
        max_query_tokens: secondpass::config::default_max_query_tokens(),
        batch_size: Some(batch_size),
        intra_threads: 0,
        workers: 1,
        queue_capacity: 16,
        runtime_path: None,
        max_batch_tokens: Some(8192),
        device: "cpu".into(),
        ..OnnxConfig::new("")
    }
}

struct Ref {
    query: String,
    document: String,
    logit: f32,
    int8: f32,
}

fn reference() -> Vec<Ref> {
    let text = std::fs::read_to_string(model_dir().join("reference.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| Ref {
            query: r["query"].as_str().unwrap().into(),
            document: r["document"].as_str().unwrap().into(),
            logit: r["logit"].as_f64().unwrap() as f32,
            int8: r["onnx_int8_logit"].as_f64().unwrap() as f32,
        })
        .collect()
}

async fn score(r: &OnnxReranker, query: &str, docs: Vec<String>) -> Vec<f32> {
    r.rerank(RerankRequest::new(query, docs)).await.unwrap()
}

#[tokio::test]
async fn fp32_matches_pytorch_within_1e3() {
    let r = OnnxReranker::load(&config(model_dir(), None, 32)).expect("load model");
    let refs = reference();
    assert_eq!(refs.len(), 16);
    for p in &refs {
        let got = score(&r, &p.query, vec![p.document.clone()]).await[0];
        assert!(
            (got - p.logit).abs() < 1e-3,
            "query {:?}: got {got}, PyTorch {}",
            p.query,
            p.logit
        );
    }
}

#[tokio::test]
async fn padded_batches_match_single_pairs() {
    // Batch size 3 forces several padded batches of mixed lengths.
    let r = OnnxReranker::load(&config(model_dir(), None, 3)).expect("load model");
    let refs = reference();
    let query = &refs[0].query;
    let docs: Vec<String> = refs.iter().map(|p| p.document.clone()).collect();
    let batched = score(&r, query, docs.clone()).await;
    for (i, d) in docs.into_iter().enumerate() {
        let single = score(&r, query, vec![d]).await[0];
        assert!(
            (single - batched[i]).abs() < 1e-4,
            "doc {i}: {single} vs {}",
            batched[i]
        );
    }
}

#[tokio::test]
async fn int8_model_loads_and_ranks_like_fp32() {
    let r =
        OnnxReranker::load(&config(model_dir(), Some("model_int8.onnx"), 16)).expect("load int8");
    // Dynamic int8 kernels differ between CPUs: the same file's logits move by up to
    // 0.26 from PyTorch's fp32 on an AVX-512 VNNI host and 0.40 on an AVX2-only AMD
    // EPYC host (the reference's int8 column came from yet another machine). What
    // users see is the ranking, so judge that: Spearman with fp32 over the 16 pairs
    // is 0.988 on the AMD host (tests/onnx_quantized.rs checks the eval set). The
    // logit bound only catches a broken file: a `reduce_range` quantization without
    // per-channel scales is off by 1.97 on the AMD host.
    let refs = reference();
    let mut got = Vec::new();
    for p in &refs {
        got.push(score(&r, &p.query, vec![p.document.clone()]).await[0]);
    }
    let fp32: Vec<f32> = refs.iter().map(|p| p.logit).collect();
    let rho = spearman(&got, &fp32);
    assert!(
        rho >= 0.95,
        "Spearman {rho:.3} with fp32: {got:?} vs {fp32:?}"
    );
    for (g, p) in got.iter().zip(&refs) {
        assert!(
            (g - p.logit).abs() < 1.0,
            "int8 {g} vs fp32 {} (int8 ref {})",
            p.logit,
            p.int8
        );
    }
}

/// Spearman's rank correlation (no ties in these scores).
fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let ranks = |v: &[f32]| -> Vec<f64> {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        for (rank, i) in order.into_iter().enumerate() {
            r[i] = rank as f64;
        }
        r
    };
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let d2: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - y).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

#[tokio::test]
async fn hugging_face_layout_loads() {
    let src = model_dir();
    let dir = std::env::temp_dir().join(format!("sp-hf-layout-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("onnx")).unwrap();
    std::os::unix::fs::symlink(src.join("model.onnx"), dir.join("onnx/model.onnx")).unwrap();
    for f in ["tokenizer.json", "config.json"] {
        std::os::unix::fs::symlink(src.join(f), dir.join(f)).unwrap();
    }
    let r = OnnxReranker::load(&config(dir.clone(), None, 8)).expect("load HF layout");
    assert!(r.info.model_path.ends_with("onnx/model.onnx"));
    let p = &reference()[0];
    let got = score(&r, &p.query, vec![p.document.clone()]).await[0];
    assert!((got - p.logit).abs() < 1e-3);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn long_query_and_empty_document_do_not_fail() {
    let r = OnnxReranker::load(&config(model_dir(), None, 8)).expect("load model");
    let long_query = "wing flutter ".repeat(200);
    let scores = score(
        &r,
        &long_query,
        vec![String::new(), "a short passage".into()],
    )
    .await;
    assert_eq!(scores.len(), 2);
    assert!(scores.iter().all(|s| s.is_finite()));
}

#[test]
fn missing_model_dir_is_a_clear_error() {
    let e = OnnxReranker::load(&config(PathBuf::from("/nonexistent/model"), None, 8))
        .err()
        .expect("must fail");
    assert!(
        e.contains("/nonexistent/model") && e.contains("scripts/setup"),
        "{e}"
    );
}

#[tokio::test]
async fn a_huge_query_is_cut_to_max_query_tokens_once_and_scores_as_its_head() {
    let r = OnnxReranker::load(&config(model_dir(), None, 32)).expect("load model");
    let docs: Vec<String> = [
        "the capital of Germany is Berlin",
        "boundary layer flow over a flat plate",
        "Germany",
    ]
    .map(String::from)
    .to_vec();
    // 10 MB (as the probe sent): only the first max_query_tokens tokens matter, and a
    // pair keeps at most what leaves the document room; so it scores as a query of a
    // few hundred of those tokens does.
    let unit = "capital of Germany ";
    let huge = unit.repeat(10 * 1024 * 1024 / unit.len());
    let head = unit.repeat(100);
    let got = score(&r, &huge, docs.clone()).await;
    let want = score(&r, &head, docs.clone()).await;
    assert_eq!(got, want);
    // and it is not the score of a short query (the head really was kept)
    assert_ne!(score(&r, unit, docs).await, want);
}
