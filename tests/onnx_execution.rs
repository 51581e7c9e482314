//! How a loaded reranker runs: through IO binding or not, tokenizing on its own
//! threads or not, it gives the same scores; and it reports its execution provider
//! and where ONNX Runtime placed the model's inputs.

use std::path::PathBuf;

use secondpass::config::OnnxConfig;
use secondpass::rerank::onnx::OnnxReranker;
use secondpass::rerank::{RerankRequest, Reranker};

fn shared() -> PathBuf {
    std::env::var_os("SECONDPASS_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")))
}

fn config(io_binding: bool, tokenizer_threads: usize, workers: usize) -> OnnxConfig {
    OnnxConfig {
        max_length: 128,
        batch_size: Some(4),
        intra_threads: 1,
        workers,
        io_binding: Some(io_binding),
        tokenizer_threads: Some(tokenizer_threads),
        ..OnnxConfig::new(shared().join("models/cranfield-minilm-l6-ce"))
    }
}

/// Eight concurrent requests of five documents each (so batches mix requests).
async fn scores(r: &OnnxReranker) -> Vec<Vec<f32>> {
    let refs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared().join("models/cranfield-minilm-l6-ce/reference.json"))
            .unwrap(),
    )
    .unwrap();
    let refs = refs.as_array().unwrap();
    let requests = (0..8).map(|k| RerankRequest {
        query: refs[k]["query"].as_str().unwrap().into(),
        documents: (0..5)
            .map(|d| {
                refs[(k + d) % refs.len()]["document"]
                    .as_str()
                    .unwrap()
                    .into()
            })
            .collect(),
        max_length: None,
        deadline: None,
        chunking: None,
        instruction: None,
    });
    futures_util::future::join_all(requests.map(|q| r.rerank(q)))
        .await
        .into_iter()
        .map(|s| s.expect("rerank"))
        .collect()
}

#[tokio::test]
async fn io_binding_and_tokenizer_threads_change_no_score() {
    let plain = OnnxReranker::load(&config(false, 0, 1)).expect("load");
    let want = scores(&plain).await;
    assert!(!plain.execution.io_binding);
    for (io, tok, workers) in [(true, 0, 1), (false, 1, 1), (true, 2, 2)] {
        let r = OnnxReranker::load(&config(io, tok, workers)).expect("load");
        assert_eq!(r.execution.io_binding, io);
        assert_eq!(r.execution.tokenizer_threads, tok);
        // Repeated, so the binding is reused across batches of other shapes.
        for _ in 0..2 {
            let got = scores(&r).await;
            for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                assert!(
                    (g - w).abs() < 1e-4,
                    "io_binding={io} tokenizer_threads={tok}: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn execution_names_the_provider_and_the_placement() {
    let r = OnnxReranker::load(&config(true, 1, 1)).expect("load");
    let x = &r.execution;
    assert_eq!(x.provider, "CPUExecutionProvider");
    assert_eq!(x.device, "cpu");
    assert_eq!(x.batch_size, 4);
    assert_eq!(x.max_batch_tokens, 8192);
    assert!(x.onnxruntime.starts_with("1."), "{}", x.onnxruntime);
    assert!(x.model_file.ends_with("model.onnx"), "{}", x.model_file);
    assert!(x.warmup_ms > 0.0);
    assert_eq!(
        x.inputs_on.get("input_ids").map(String::as_str),
        Some("Cpu")
    );
    assert!(
        x.inputs_on.values().all(|m| m == "Cpu"),
        "{:?}",
        x.inputs_on
    );
    let json = r.execution().expect("a local model reports its execution");
    assert_eq!(json["provider"], "CPUExecutionProvider");
}
