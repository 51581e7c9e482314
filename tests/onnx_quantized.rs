//! Rank agreement of smaller model files with the fp32 model: the shipped int8 file,
//! an int8 file made by `scripts/quantize`, and fp16 files made by
//! `scripts/quantize --fp16` (float32 output, and float16 output read by the
//! loader). Measured on the shared model's 16 reference pairs and on Cranfield: 10
//! queries × 50 candidates (the 50 documents sharing most words with the query, a
//! BM25-ish pool). Prints Kendall's tau, Spearman's rho and top-10 overlap, and
//! asserts a floor. Needs `scripts/setup --python` (ONNX Runtime, the venv's
//! onnxruntime and onnx packages) and the shared model and eval folders.
//!
//! `cargo test --test onnx_quantized -- --nocapture` shows the numbers.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use secondpass::config::OnnxConfig;
use secondpass::rerank::onnx::OnnxReranker;
use secondpass::rerank::{RerankRequest, Reranker};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn shared() -> PathBuf {
    std::env::var_os("SECONDPASS_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("../shared"))
}

fn source() -> PathBuf {
    shared().join("models/cranfield-minilm-l6-ce")
}

/// A model folder holding `file`, made by `scripts/quantize ARGS` from the fp32
/// model (tokenizer and config linked from the shared folder).
fn quantized(name: &str, args: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("quantized-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["tokenizer.json", "config.json"] {
        let _ = std::fs::remove_file(dir.join(f));
        std::os::unix::fs::symlink(source().join(f), dir.join(f)).unwrap();
    }
    let out = dir.join("model.onnx");
    let status = Command::new(Path::new(ROOT).join("scripts/quantize"))
        .args(args)
        .arg(source())
        .arg(&out)
        .status()
        .expect("run scripts/quantize");
    assert!(
        status.success(),
        "scripts/quantize {args:?} failed (scripts/setup --python?)"
    );
    dir
}

fn load(dir: PathBuf, file: Option<&str>) -> OnnxReranker {
    OnnxReranker::load(&OnnxConfig {
        model_dir: dir.clone(),
        model_file: file.map(PathBuf::from),
        max_length: 128,
        max_query_tokens: secondpass::config::default_max_query_tokens(),
        batch_size: Some(50),
        intra_threads: 0,
        workers: 1,
        queue_capacity: 16,
        runtime_path: None,
        max_batch_tokens: Some(8192),
        device: "cpu".into(),
        ..OnnxConfig::new("")
    })
    .unwrap_or_else(|e| panic!("load {}: {e}", dir.display()))
}

/// The evaluation: reference pairs, and Cranfield queries with candidate pools.
struct Eval {
    reference: Vec<(String, String)>,
    pools: Vec<(String, Vec<String>)>,
}

fn words(text: &str) -> HashSet<String> {
    const STOP: &[&str] = &[
        "the", "and", "for", "are", "what", "which", "with", "that", "this", "from", "has", "have",
        "been", "can", "how", "any", "there", "does", "not", "its", "was", "were", "such", "when",
        "into", "also", "than", "their", "these", "those",
    ];
    text.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| w.len() > 2 && !STOP.contains(&w.as_str()))
        .collect()
}

fn eval() -> &'static Eval {
    static EVAL: OnceLock<Eval> = OnceLock::new();
    EVAL.get_or_init(|| {
        let text = std::fs::read_to_string(source().join("reference.json")).unwrap();
        let refs: serde_json::Value = serde_json::from_str(&text).unwrap();
        let reference = refs
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["query"].as_str().unwrap().into(),
                    p["document"].as_str().unwrap().into(),
                )
            })
            .collect();
        let lines = |f: &str| -> Vec<String> {
            std::fs::read_to_string(shared().join("eval/cranfield-train").join(f))
                .unwrap()
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let title = v["title"].as_str().unwrap_or_default();
                    format!("{title} {}", v["text"].as_str().unwrap())
                        .trim()
                        .to_string()
                })
                .collect()
        };
        let corpus = lines("corpus.jsonl");
        let corpus_words: Vec<HashSet<String>> = corpus.iter().map(|d| words(d)).collect();
        let pools = lines("queries.jsonl")
            .into_iter()
            .take(10)
            .map(|q| {
                let qw = words(&q);
                let mut ranked: Vec<(usize, usize)> = corpus_words
                    .iter()
                    .enumerate()
                    .map(|(i, dw)| (qw.intersection(dw).count(), i))
                    .collect();
                // Most shared words first; ties in corpus order.
                ranked.sort_by_key(|&(shared, i)| (std::cmp::Reverse(shared), i));
                let docs = ranked[..50]
                    .iter()
                    .map(|&(_, i)| corpus[i].clone())
                    .collect();
                (q, docs)
            })
            .collect();
        Eval { reference, pools }
    })
}

/// Scores of the reference pairs (one list) and of each pool.
fn scores(r: &OnnxReranker) -> (Vec<f32>, Vec<Vec<f32>>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let e = eval();
        let mut reference = Vec::new();
        for (q, d) in &e.reference {
            reference.push(score(r, q, vec![d.clone()]).await[0]);
        }
        let mut pools = Vec::new();
        for (q, docs) in &e.pools {
            pools.push(score(r, q, docs.clone()).await);
        }
        (reference, pools)
    })
}

async fn score(r: &OnnxReranker, query: &str, documents: Vec<String>) -> Vec<f32> {
    let request = RerankRequest {
        query: query.into(),
        documents,
        max_length: None,
        deadline: None,
        chunking: None,
        instruction: None,
    };
    r.rerank(request).await.unwrap()
}

fn fp32() -> &'static (Vec<f32>, Vec<Vec<f32>>) {
    static FP32: OnceLock<(Vec<f32>, Vec<Vec<f32>>)> = OnceLock::new();
    FP32.get_or_init(|| scores(&load(source(), None)))
}

/// Kendall's tau-b (ties in either list count as neither agreement nor disagreement).
fn kendall(a: &[f32], b: &[f32]) -> f64 {
    let (mut concordant, mut discordant, mut ties_a, mut ties_b) = (0f64, 0f64, 0f64, 0f64);
    for i in 0..a.len() {
        for j in i + 1..a.len() {
            let (da, db) = (a[i] - a[j], b[i] - b[j]);
            match (da == 0.0, db == 0.0) {
                (true, true) => {}
                (true, false) => ties_a += 1.0,
                (false, true) => ties_b += 1.0,
                _ if (da > 0.0) == (db > 0.0) => concordant += 1.0,
                _ => discordant += 1.0,
            }
        }
    }
    let n = concordant + discordant;
    (concordant - discordant) / ((n + ties_a) * (n + ties_b)).sqrt()
}

fn ranks(v: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut r = vec![0.0; v.len()];
    let mut k = 0;
    while k < order.len() {
        // Tied values share their mean rank.
        let mut end = k;
        while end + 1 < order.len() && v[order[end + 1]] == v[order[k]] {
            end += 1;
        }
        for &i in &order[k..=end] {
            r[i] = (k + end) as f64 / 2.0;
        }
        k = end + 1;
    }
    r
}

fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = (a.len() as f64 - 1.0) / 2.0;
    let cov: f64 = ra
        .iter()
        .zip(&rb)
        .map(|(x, y)| (x - mean) * (y - mean))
        .sum();
    let var = |r: &[f64]| r.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
    cov / (var(&ra) * var(&rb)).sqrt()
}

fn top10_overlap(a: &[f32], b: &[f32]) -> f64 {
    let top = |v: &[f32]| -> HashSet<usize> {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&i, &j| v[j].total_cmp(&v[i]));
        order.into_iter().take(10).collect()
    };
    top(a).intersection(&top(b)).count() as f64 / 10.0
}

struct Agreement {
    reference_tau: f64,
    reference_max_diff: f32,
    tau: f64,
    rho: f64,
    top10: f64,
    worst_tau: f64,
}

fn agreement(name: &str, r: &OnnxReranker) -> Agreement {
    let (ref32, pools32) = fp32();
    let (refq, poolsq) = scores(r);
    let mean = |f: &dyn Fn(&[f32], &[f32]) -> f64| -> f64 {
        pools32
            .iter()
            .zip(&poolsq)
            .map(|(a, b)| f(a, b))
            .sum::<f64>()
            / pools32.len() as f64
    };
    let a = Agreement {
        reference_tau: kendall(ref32, &refq),
        reference_max_diff: ref32
            .iter()
            .zip(&refq)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max),
        tau: mean(&kendall),
        rho: mean(&spearman),
        top10: mean(&top10_overlap),
        worst_tau: pools32
            .iter()
            .zip(&poolsq)
            .map(|(a, b)| kendall(a, b))
            .fold(1.0, f64::min),
    };
    println!(
        "{name} vs fp32: reference pairs (16): kendall {:.3}, max |logit diff| {:.3}; \
         Cranfield 10 queries x 50 candidates: kendall {:.3} (worst query {:.3}), spearman {:.3}, top-10 overlap {:.3}",
        a.reference_tau, a.reference_max_diff, a.tau, a.worst_tau, a.rho, a.top10
    );
    a
}

#[test]
fn statistics_are_right_on_known_lists() {
    let a = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(kendall(&a, &a), 1.0);
    assert_eq!(kendall(&a, &[4.0, 3.0, 2.0, 1.0]), -1.0);
    assert!((kendall(&a, &[1.0, 3.0, 2.0, 4.0]) - 4.0 / 6.0).abs() < 1e-12);
    assert!((spearman(&a, &[1.0, 3.0, 2.0, 4.0]) - 0.8).abs() < 1e-12);
    assert_eq!(ranks(&[5.0, 1.0, 5.0]), vec![1.5, 0.0, 1.5]);
}

#[test]
fn shipped_int8_ranks_like_fp32() {
    let a = agreement("int8 (shipped)", &load(source(), Some("model_int8.onnx")));
    assert!(a.tau >= 0.8, "mean Kendall tau {:.3} below 0.8", a.tau);
    assert!(
        a.top10 >= 0.8,
        "mean top-10 overlap {:.3} below 0.8",
        a.top10
    );
    assert!(
        a.reference_tau >= 0.8,
        "reference Kendall tau {:.3}",
        a.reference_tau
    );
}

#[test]
fn int8_from_scripts_quantize_ranks_like_fp32() {
    let a = agreement(
        "int8 (scripts/quantize)",
        &load(quantized("int8", &[]), None),
    );
    assert!(a.tau >= 0.8, "mean Kendall tau {:.3} below 0.8", a.tau);
    assert!(
        a.top10 >= 0.8,
        "mean top-10 overlap {:.3} below 0.8",
        a.top10
    );
}

#[test]
fn fp16_files_load_and_rank_like_fp32() {
    // float16 weights, float32 logits.
    let a = agreement("fp16", &load(quantized("fp16", &["--fp16"]), None));
    assert!(a.tau >= 0.95, "mean Kendall tau {:.3} below 0.95", a.tau);
    assert!(
        a.reference_max_diff < 0.05,
        "max logit diff {}",
        a.reference_max_diff
    );
    // float16 logits: read from the raw half-precision output.
    let out16 = load(quantized("fp16-out", &["--fp16", "--fp16-output"]), None);
    let b = agreement("fp16 (float16 output)", &out16);
    assert!(b.tau >= 0.95, "mean Kendall tau {:.3} below 0.95", b.tau);
    assert!(
        b.reference_max_diff < 0.05,
        "max logit diff {}",
        b.reference_max_diff
    );
}
