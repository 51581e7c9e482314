//! Rerank throughput and latency of the local ONNX cross-encoder through the product
//! path (bounded queue, worker threads, tokenization, length-sorted batching,
//! padding, inference).
//!
//! ```text
//! cargo bench --bench rerank_throughput                 # cross-request vs per-request batching
//! cargo bench --bench rerank_throughput -- --mode single --model int8 --max-len 256 --batch 16
//! cargo bench --bench rerank_throughput -- --mode concurrent --workers 2 --threads 1 --batch 32
//! ```
//!
//! Options: `--mode single|concurrent|compare` (default compare), `--seconds N`,
//! `--model fp32|int8|FILE` (a file in the model folder), `--max-len N` (128),
//! `--batch N` (batch_size), `--max-batch-tokens N`, `--workers N`, `--threads N`
//! (intra-op per worker; 0: ONNX Runtime's choice, or cores / workers), `--callers N` (8) and `--pairs N`
//! (20 per request; `single` uses one caller and 32), `--batching cross|per`,
//! `--device cpu|cuda[:N]`, `--io-binding on|off` (default: the device's),
//! `--tokenizer-threads N` (default: the device's, 1 on cuda, 0 on cpu),
//! `--family qwen3-reranker|mxbai-rerank-v2` (a decoder reranker: `max-len` is the
//! whole prompt; point `SECONDPASS_BENCH_MODEL_DIR` at its folder).
//!
//! Uses the shared model (`../shared/models/cranfield-minilm-l6-ce`, or
//! `SECONDPASS_SHARED_DIR`; `SECONDPASS_BENCH_MODEL_DIR` points at another model
//! folder) and Cranfield abstracts joined into documents long enough that every
//! pair fills `max_len` tokens. Each run prints one `bench ...` line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secondpass::config::OnnxConfig;
use secondpass::metrics::Metrics;
use secondpass::rerank::onnx::{Batching, OnnxReranker};
use secondpass::rerank::{RerankRequest, Reranker};

#[derive(Clone)]
struct Args {
    mode: String,
    seconds: f64,
    model: String,
    max_len: usize,
    batch: usize,
    max_batch_tokens: usize,
    workers: usize,
    threads: usize,
    callers: usize,
    pairs: Option<usize>,
    batching: Batching,
    device: String,
    io_binding: Option<bool>,
    tokenizer_threads: Option<usize>,
    family: Option<secondpass::config::Family>,
}

fn args() -> Args {
    let mut a = Args {
        mode: "compare".into(),
        seconds: 10.0,
        model: "fp32".into(),
        max_len: 128,
        batch: 32,
        max_batch_tokens: 16384,
        workers: 1,
        threads: 0,
        callers: 8,
        pairs: None,
        batching: Batching::CrossRequest,
        device: "cpu".into(),
        io_binding: None,
        tokenizer_threads: None,
        family: None,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let val = argv.get(i + 1).cloned().unwrap_or_default();
        let n = || val.parse::<usize>().expect("a number");
        match argv[i].as_str() {
            "--mode" => a.mode = val.clone(),
            "--seconds" => a.seconds = val.parse().expect("--seconds N"),
            "--model" => a.model = val.clone(),
            "--max-len" => a.max_len = n(),
            "--batch" => a.batch = n(),
            "--max-batch-tokens" => a.max_batch_tokens = n(),
            "--workers" => a.workers = n(),
            "--threads" => a.threads = n(),
            "--callers" => a.callers = n(),
            "--pairs" => a.pairs = Some(n()),
            "--device" => a.device = val.clone(),
            "--tokenizer-threads" => a.tokenizer_threads = Some(n()),
            "--family" => {
                a.family = Some(
                    serde_json::from_value(serde_json::Value::String(val.clone()))
                        .expect("--family qwen3-reranker|mxbai-rerank-v2|custom"),
                )
            }
            "--io-binding" => {
                a.io_binding = match val.as_str() {
                    "on" => Some(true),
                    "off" => Some(false),
                    other => panic!("--io-binding on|off, not {other}"),
                }
            }
            "--batching" => {
                a.batching = match val.as_str() {
                    "cross" => Batching::CrossRequest,
                    "per" => Batching::PerRequest,
                    other => panic!("--batching cross|per, not {other}"),
                }
            }
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

fn model_dir() -> PathBuf {
    std::env::var_os("SECONDPASS_BENCH_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| shared().join("models/cranfield-minilm-l6-ce"))
}

/// The first Cranfield query and `n` documents of at least 300 words (abstracts
/// joined in corpus order), so every pair is cut at max_len, up to 256 tokens.
fn corpus(n: usize) -> (String, Vec<String>) {
    let dir = shared().join("eval/cranfield-train");
    let texts = |file: &str| -> Vec<String> {
        std::fs::read_to_string(dir.join(file))
            .expect("Cranfield data in ../shared/eval (or SECONDPASS_SHARED_DIR)")
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["text"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let mut docs = Vec::new();
    let mut current = String::new();
    for t in texts("corpus.jsonl") {
        current.push_str(&t);
        current.push(' ');
        if current.split_whitespace().count() >= 300 {
            docs.push(std::mem::take(&mut current));
            if docs.len() == n {
                break;
            }
        }
    }
    assert!(!docs.is_empty(), "no document of 300 words in the corpus");
    // Fewer long documents than asked (about 700 in Cranfield): repeat them; the
    // bench path has no score cache, so a repeat costs what a new document does.
    let have = docs.len();
    for i in have..n {
        docs.push(docs[i % have].clone());
    }
    (texts("queries.jsonl").remove(0), docs)
}

fn load(a: &Args, metrics: &Arc<Metrics>) -> OnnxReranker {
    let file = match a.model.as_str() {
        "fp32" => None,
        "int8" => Some(PathBuf::from("model_int8.onnx")),
        f => Some(PathBuf::from(f)),
    };
    let cfg = OnnxConfig {
        model_dir: model_dir(),
        model_file: file,
        max_length: a.max_len,
        max_query_tokens: secondpass::config::default_max_query_tokens(),
        batch_size: Some(a.batch),
        intra_threads: a.threads,
        workers: a.workers,
        queue_capacity: 256,
        runtime_path: None,
        max_batch_tokens: Some(a.max_batch_tokens.max(a.max_len)),
        device: a.device.clone(),
        io_binding: a.io_binding,
        tokenizer_threads: a.tokenizer_threads,
        family: a.family,
        ..OnnxConfig::new("")
    };
    OnnxReranker::load_batching(&cfg, "bench", Some(metrics.clone()), a.batching).unwrap_or_else(
        |e| {
            eprintln!("cannot load the model: {e}");
            std::process::exit(1)
        },
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// `callers` tasks send requests of `pairs` documents back to back for `seconds`.
async fn measure(a: &Args, callers: usize, pairs: usize) {
    let metrics = Arc::new(Metrics::new(&[]));
    let r = Arc::new(load(a, &metrics));
    let (query, docs) = corpus(pairs);
    let req = move || RerankRequest::new(query.as_str(), docs.clone());
    r.rerank(req()).await.expect("warm-up"); // first run allocates
    let rows = metrics.batch_size.with_label_values(&["bench"]);
    let (rows0, batches0) = (rows.get_sample_sum(), rows.get_sample_count());
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(a.seconds);
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (r, req) = (r.clone(), req.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                // At least two requests per caller, however slow.
                while Instant::now() < until || times.len() < 2 {
                    let t = Instant::now();
                    r.rerank(req()).await.expect("rerank");
                    times.push(t.elapsed().as_secs_f64());
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    let batches = rows.get_sample_count() - batches0;
    println!(
        "bench model={}{} device={} max_len={} batch={} workers={} threads={} batching={} io_binding={} \
         tokenizer_threads={} callers={} pairs={} | pairs_per_s={:.1} p50_ms={:.1} p99_ms={:.1} requests={} mean_batch_rows={:.1} peak_parallel_batches={}",
        a.model,
        a.family.map_or(String::new(), |f| format!(" family={}", f.as_str())),
        a.device,
        a.max_len,
        a.batch,
        a.workers,
        match r.intra_threads {
            0 => "auto".to_string(),
            n => n.to_string(),
        },
        match a.batching {
            Batching::CrossRequest => "cross",
            Batching::PerRequest => "per",
        },
        r.execution.io_binding,
        r.execution.tokenizer_threads,
        callers,
        pairs,
        (pairs * times.len()) as f64 / elapsed,
        percentile(&times, 0.5) * 1e3,
        percentile(&times, 0.99) * 1e3,
        times.len(),
        (rows.get_sample_sum() - rows0) / batches.max(1) as f64,
        r.peak_parallel_batches(),
    );
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        match a.mode.as_str() {
            "single" => measure(&a, 1, a.pairs.unwrap_or(32)).await,
            "concurrent" => measure(&a, a.callers, a.pairs.unwrap_or(20)).await,
            "compare" => {
                println!(
                    "cores: {}",
                    std::thread::available_parallelism().map_or(0, |n| n.get())
                );
                for batching in [Batching::CrossRequest, Batching::PerRequest] {
                    let a = Args {
                        batching,
                        ..a.clone()
                    };
                    measure(&a, a.callers, a.pairs.unwrap_or(20)).await;
                }
            }
            other => panic!("--mode single|concurrent|compare, not {other}"),
        }
    });
}
