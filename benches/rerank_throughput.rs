//! Rerank throughput of the local ONNX cross-encoder through the product path
//! (tokenization, length-sorted batching, padding, inference, worker thread).
//!
//! cargo bench --bench rerank_throughput [-- --seconds N --pairs N --batch N --threads N]
//!
//! Uses the shared model (../shared/models/cranfield-minilm-l6-ce, or
//! SECONDPASS_SHARED_DIR) and Cranfield documents, each pair cut at 128 tokens.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use secondpass::config::OnnxConfig;
use secondpass::rerank::onnx::OnnxReranker;
use secondpass::rerank::{RerankRequest, Reranker};

struct Args {
    seconds: f64,
    pairs: usize,
    batch: usize,
    threads: usize,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 10.0,
        pairs: 64,
        batch: 64,
        threads: 0,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--seconds" => a.seconds = val.parse().expect("--seconds N"),
            "--pairs" => a.pairs = val.parse().expect("--pairs N"),
            "--batch" => a.batch = val.parse().expect("--batch N"),
            "--threads" => a.threads = val.parse().expect("--threads N"),
            _ => {
                i += 1; // cargo passes --bench; ignore what we do not know
                continue;
            }
        }
        i += 2;
    }
    a
}

fn shared() -> PathBuf {
    std::env::var_os("SECONDPASS_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")))
}

fn corpus(n: usize) -> (String, Vec<String>) {
    let dir = shared().join("eval/cranfield-train");
    let line = |file: &str, k: usize| -> Vec<String> {
        std::fs::read_to_string(dir.join(file))
            .expect("Cranfield data in ../shared/eval")
            .lines()
            .take(k)
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["text"].as_str().unwrap().to_string()
            })
            .collect()
    };
    // Long abstracts: every pair fills the 128-token window.
    let docs: Vec<String> = line("corpus.jsonl", 400)
        .into_iter()
        .filter(|d| d.split_whitespace().count() > 150)
        .take(n)
        .collect();
    assert_eq!(docs.len(), n, "not enough long documents");
    (line("queries.jsonl", 1).remove(0), docs)
}

async fn measure(label: &str, file: Option<&str>, a: &Args) {
    let dir = shared().join("models/cranfield-minilm-l6-ce");
    let r = OnnxReranker::load(&OnnxConfig {
        model_dir: dir,
        model_file: file.map(PathBuf::from),
        max_length: 128,
        batch_size: a.batch,
        intra_threads: a.threads,
        workers: 1,
        queue_capacity: 4,
        runtime_path: None,
        max_batch_tokens: 8192,
        device: "cpu".into(),
    })
    .expect("load model (run scripts/setup first)");
    let (query, docs) = corpus(a.pairs);
    let req = || RerankRequest {
        query: query.clone(),
        documents: docs.clone(),
        max_length: None,
        deadline: None,
    };
    for _ in 0..2 {
        r.rerank(req()).await.unwrap(); // warm-up
    }
    let mut times = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs_f64(a.seconds) || times.len() < 3 {
        let t = Instant::now();
        r.rerank(req()).await.unwrap();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let total: f64 = times.iter().sum();
    let median = times[times.len() / 2];
    println!(
        "{label:5} pairs={} max_len=128 batch={} threads={} requests={} | {:.1} pairs/s (mean) | median request {:.1} ms ({:.1} pairs/s)",
        a.pairs,
        a.batch,
        if a.threads == 0 { "auto".to_string() } else { a.threads.to_string() },
        times.len(),
        (a.pairs * times.len()) as f64 / total,
        median * 1e3,
        a.pairs as f64 / median,
    );
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        println!(
            "cores: {}",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        measure("fp32", None, &a).await;
        measure("int8", Some("model_int8.onnx"), &a).await;
    });
}
