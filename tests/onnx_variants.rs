//! Published rerankers differ from the shared BERT model in two ways that matter to
//! the loader: XLM-RoBERTa models (BGE rerankers) take no `token_type_ids`, and
//! two-class heads answer logits `[B, 2]`. scripts/make_model_variants.py edits the
//! shared model's graph into both shapes (same weights), and both must score like
//! PyTorch. Needs `scripts/setup --python` (the `onnx` package in .local/venv).

use std::path::{Path, PathBuf};
use std::process::Command;

use secondpass::config::OnnxConfig;
use secondpass::rerank::onnx::OnnxReranker;
use secondpass::rerank::{RerankRequest, Reranker};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn shared() -> PathBuf {
    std::env::var_os("SECONDPASS_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("../shared"))
}

fn variants() -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("model-variants");
    let python = Path::new(ROOT).join(".local/venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup --python",
        python.display()
    );
    let status = Command::new(python)
        .arg(Path::new(ROOT).join("scripts/make_model_variants.py"))
        .arg(shared().join("models/cranfield-minilm-l6-ce"))
        .arg(&out)
        .status()
        .expect("run make_model_variants.py");
    assert!(status.success(), "make_model_variants.py failed");
    out
}

/// Scores `dir`'s model on the pairs of `expected` (a reference.json-shaped file).
async fn check(dir: PathBuf, expected: PathBuf) {
    let r = OnnxReranker::load(&OnnxConfig {
        model_dir: dir.clone(),
        model_file: None,
        max_length: 128,
        max_query_tokens: secondpass::config::default_max_query_tokens(),
        batch_size: Some(4),
        intra_threads: 0,
        workers: 1,
        queue_capacity: 4,
        runtime_path: None,
        max_batch_tokens: Some(8192),
        device: "cpu".into(),
        ..OnnxConfig::new("")
    })
    .unwrap_or_else(|e| panic!("load {}: {e}", dir.display()));
    let text = std::fs::read_to_string(expected).unwrap();
    let refs: serde_json::Value = serde_json::from_str(&text).unwrap();
    for p in refs.as_array().unwrap() {
        let got = r
            .rerank(RerankRequest::new(
                p["query"].as_str().unwrap(),
                vec![p["document"].as_str().unwrap().into()],
            ))
            .await
            .unwrap()[0];
        let want = p["logit"].as_f64().unwrap() as f32;
        assert!(
            (got - want).abs() < 1e-3,
            "{}: {got} vs expected {want}",
            dir.display()
        );
    }
}

#[tokio::test]
async fn graphs_without_token_type_ids_and_with_two_logits_score_like_pytorch() {
    let out = variants();
    // No token types: the graph sees zeros, as Python's onnxruntime computed them.
    check(
        out.join("no-token-type-ids"),
        out.join("no-token-type-ids/expected.json"),
    )
    .await;
    // Two classes [0, logit]: positive minus negative is PyTorch's logit.
    check(
        out.join("two-logits"),
        shared().join("models/cranfield-minilm-l6-ce/reference.json"),
    )
    .await;
}
