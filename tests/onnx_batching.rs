//! Batching across requests in the local ONNX reranker: concurrent requests share
//! inference batches and get the scores they would get alone; abandoned jobs are
//! not computed; batches respect `max_batch_tokens`; a full queue refuses work;
//! `workers > 1` run batches at the same time. Needs `scripts/setup` (ONNX Runtime)
//! and the shared model folder.

use std::path::PathBuf;
use std::sync::Arc;

use secondpass::config::OnnxConfig;
use secondpass::metrics::Metrics;
use secondpass::rerank::onnx::{Batching, OnnxReranker};
use secondpass::rerank::{RerankError, RerankRequest, Reranker};

fn shared() -> PathBuf {
    std::env::var_os("SECONDPASS_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")))
}

fn config(batch_size: usize, workers: usize, queue_capacity: usize) -> OnnxConfig {
    OnnxConfig {
        model_dir: shared().join("models/cranfield-minilm-l6-ce"),
        model_file: None,
        max_length: 128,
        max_query_tokens: secondpass::config::default_max_query_tokens(),
        batch_size: Some(batch_size),
        intra_threads: 1,
        workers,
        queue_capacity,
        runtime_path: None,
        max_batch_tokens: Some(16384),
        device: "cpu".into(),
        ..OnnxConfig::new("")
    }
}

fn load(cfg: &OnnxConfig, batching: Batching) -> (OnnxReranker, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new(&[]));
    let r = OnnxReranker::load_batching(cfg, "t", Some(metrics.clone()), batching)
        .expect("load the shared model (run scripts/setup)");
    (r, metrics)
}

/// Cranfield abstracts (documents) and queries.
fn cranfield(file: &str, n: usize) -> Vec<String> {
    std::fs::read_to_string(shared().join("eval/cranfield-train").join(file))
        .expect("Cranfield data in ../shared/eval")
        .lines()
        .take(n)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect()
}

fn request(query: &str, docs: &[String]) -> RerankRequest {
    RerankRequest::new(query, docs.to_vec())
}

/// `(sum, count)` of the batch-size histogram: rows in all batches, batches run.
fn batches(m: &Metrics) -> (f64, u64) {
    let h = m.batch_size.with_label_values(&["t"]);
    (h.get_sample_sum(), h.get_sample_count())
}

#[tokio::test]
async fn concurrent_requests_share_batches_and_score_as_alone() {
    let queries = cranfield("queries.jsonl", 8);
    let docs = cranfield("corpus.jsonl", 64);
    let (r, m) = load(&config(32, 1, 64), Batching::CrossRequest);
    // Eight requests of 8 documents (different lengths), all queued at once.
    let futures: Vec<_> = (0..8)
        .map(|i| r.rerank(request(&queries[i], &docs[i * 8..i * 8 + 8])))
        .collect();
    let mut together = Vec::new();
    for f in futures {
        together.push(f.await.unwrap());
    }
    let (rows, count) = batches(&m);
    assert_eq!(rows, 64.0, "every pair is scored once");
    assert!(
        count < 8,
        "requests shared batches: {count} batches for 8 requests"
    );
    // Each request alone gives the same scores (padding does not change them).
    let (alone, _) = load(&config(32, 1, 64), Batching::PerRequest);
    for i in 0..8 {
        let want = alone
            .rerank(request(&queries[i], &docs[i * 8..i * 8 + 8]))
            .await
            .unwrap();
        for (a, b) in together[i].iter().zip(&want) {
            assert!((a - b).abs() < 1e-4, "request {i}: {a} vs {b}");
        }
    }
    let text = m.render();
    for family in [
        "secondpass_queue_wait_seconds_count{reranker=\"t\"} 8",
        "secondpass_tokenization_seconds_count{reranker=\"t\"} 8",
        "secondpass_inference_seconds_count{reranker=\"t\"}",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
}

#[tokio::test]
async fn jobs_of_callers_that_left_are_not_computed() {
    let queries = cranfield("queries.jsonl", 3);
    let docs = cranfield("corpus.jsonl", 48);
    let (r, m) = load(&config(16, 1, 64), Batching::CrossRequest);
    // A keeps the worker busy; B's caller leaves at once; C waits behind it.
    let a = r.rerank(request(&queries[0], &docs[..32]));
    drop(r.rerank(request(&queries[1], &docs[32..40])));
    let c = r.rerank(request(&queries[2], &docs[40..48]));
    assert_eq!(a.await.unwrap().len(), 32);
    assert_eq!(c.await.unwrap().len(), 8);
    let (rows, _) = batches(&m);
    assert_eq!(rows, 40.0, "B's 8 pairs were skipped");
}

#[tokio::test]
async fn batches_stay_within_max_batch_tokens() {
    // Long abstracts: every pair is cut at 128 tokens.
    let docs: Vec<String> = cranfield("corpus.jsonl", 400)
        .into_iter()
        .filter(|d| d.split_whitespace().count() > 150)
        .take(40)
        .collect();
    assert_eq!(docs.len(), 40);
    let mut cfg = config(32, 1, 8);
    cfg.max_batch_tokens = Some(256); // two full 128-token pairs
    let (r, m) = load(&cfg, Batching::CrossRequest);
    let scores = r.rerank(request("wing flutter", &docs)).await.unwrap();
    assert_eq!(scores.len(), 40);
    let text = m.render();
    let count = "secondpass_batch_size_count{reranker=\"t\"}";
    let le2 = "secondpass_batch_size_bucket{reranker=\"t\",le=\"2\"}";
    let value = |prefix: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value(le2), value(count), "no batch over 2 rows:\n{text}");
    assert_eq!(value(count), 20.0, "40 pairs in batches of 2");
}

#[tokio::test]
async fn a_full_queue_answers_overloaded() {
    let docs = cranfield("corpus.jsonl", 32);
    let (r, _) = load(&config(32, 1, 1), Batching::CrossRequest);
    let futures: Vec<_> = (0..6).map(|_| r.rerank(request("q", &docs))).collect();
    let mut overloaded = 0;
    for f in futures {
        match f.await {
            Ok(s) => assert_eq!(s.len(), 32),
            Err(RerankError::Overloaded) => overloaded += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(
        overloaded >= 4,
        "a queue of one holds one job: {overloaded} refused"
    );
}

#[tokio::test]
async fn two_workers_run_batches_at_the_same_time() {
    let queries = cranfield("queries.jsonl", 4);
    let docs = cranfield("corpus.jsonl", 64);
    for batching in [Batching::PerRequest, Batching::CrossRequest] {
        // A worker takes jobs until it holds one batch (4 pairs): one job of 16 here,
        // so the other worker takes the next.
        let (r, _) = load(&config(4, 2, 16), batching);
        let futures: Vec<_> = (0..4)
            .map(|i| r.rerank(request(&queries[i], &docs[i * 16..i * 16 + 16])))
            .collect();
        for f in futures {
            assert_eq!(f.await.unwrap().len(), 16);
        }
        assert_eq!(r.peak_parallel_batches(), 2, "{batching:?}");
    }
}
