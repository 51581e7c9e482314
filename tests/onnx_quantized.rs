//! Rank agreement of smaller model files with the fp32 model: the shipped int8 file,
//! an int8 file made by `scripts/quantize`, and fp16 files made by
//! `scripts/quantize --fp16` (float32 output, and float16 output read by the
//! loader). Measured on the shared model's 16 reference pairs and on Cranfield: 40
//! judged queries × 50 candidates (the 50 documents sharing most words with the
//! query, a BM25-ish pool). Prints Kendall's tau, Spearman's rho, top-10 overlap and
//! nDCG@10 of both rankings, and asserts floors on what users see: the ranking.
//!
//! Dynamic int8 kernels differ between CPUs (AVX2-only hosts such as AMD EPYC use
//! u8s8 multiplies that saturate where AVX-512 VNNI hosts do not), so logits differ by
//! host while rankings barely move. The floors hold on both kinds with room; the
//! numbers per CPU are in BENCHMARKS.md ("Quantization").
//!
//! Needs `scripts/setup --python` (ONNX Runtime, the venv's onnxruntime and onnx
//! packages) and the shared model and eval folders.
//! `cargo test --test onnx_quantized -- --nocapture` shows the numbers.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use secondpass::config::OnnxConfig;
use secondpass::eval::metrics::{ndcg, Judgements};
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

/// Cranfield queries judged here (the first of the 150 in the shared set).
const QUERIES: usize = 40;
/// Candidates per query.
const POOL: usize = 50;

/// One query's candidate pool: the query, its documents' ids and texts, its judgements.
struct Pool {
    query: String,
    ids: Vec<String>,
    docs: Vec<String>,
    judged: Judgements,
}

/// The evaluation: reference pairs, and Cranfield queries with candidate pools.
struct Eval {
    reference: Vec<(String, String)>,
    pools: Vec<Pool>,
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

fn jsonl(file: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(shared().join("eval/cranfield-train").join(file))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn qrels() -> HashMap<String, Judgements> {
    let text = std::fs::read_to_string(shared().join("eval/cranfield-train/qrels.tsv")).unwrap();
    let mut all: HashMap<String, Judgements> = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        all.entry(f[0].into())
            .or_default()
            .insert(f[1].into(), f[2].parse().unwrap());
    }
    all
}

fn reference_pairs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(source().join("reference.json")).unwrap();
    let refs: serde_json::Value = serde_json::from_str(&text).unwrap();
    refs.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["query"].as_str().unwrap().into(),
                p["document"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn eval() -> &'static Eval {
    static EVAL: OnceLock<Eval> = OnceLock::new();
    EVAL.get_or_init(|| {
        let corpus: Vec<(String, String)> = jsonl("corpus.jsonl")
            .iter()
            .map(|d| {
                let title = d["title"].as_str().unwrap_or_default();
                let text = format!("{title} {}", d["text"].as_str().unwrap());
                (d["id"].to_string(), text.trim().to_string())
            })
            .collect();
        let corpus_words: Vec<HashSet<String>> = corpus.iter().map(|(_, d)| words(d)).collect();
        let mut judged = qrels();
        let pools = jsonl("queries.jsonl")
            .iter()
            .filter_map(|q| Some((judged.remove(&q["id"].to_string())?, q)))
            .take(QUERIES)
            .map(|(judged, q)| {
                let query = q["text"].as_str().unwrap().to_string();
                let qw = words(&query);
                let mut ranked: Vec<(usize, usize)> = corpus_words
                    .iter()
                    .enumerate()
                    .map(|(i, dw)| (qw.intersection(dw).count(), i))
                    .collect();
                // Most shared words first; ties in corpus order.
                ranked.sort_by_key(|&(shared, i)| (std::cmp::Reverse(shared), i));
                let (ids, docs) = ranked[..POOL]
                    .iter()
                    .map(|&(_, i)| corpus[i].clone())
                    .unzip();
                Pool {
                    query,
                    ids,
                    docs,
                    judged,
                }
            })
            .collect();
        Eval {
            reference: reference_pairs(),
            pools,
        }
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
        for p in &e.pools {
            pools.push(score(r, &p.query, p.docs.clone()).await);
        }
        (reference, pools)
    })
}

async fn score(r: &OnnxReranker, query: &str, documents: Vec<String>) -> Vec<f32> {
    let request = RerankRequest::new(query, documents);
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

/// Mean nDCG@10 over the pools when each is ordered by `scores`.
fn mean_ndcg(scores: &[Vec<f32>]) -> f64 {
    let pools = &eval().pools;
    let total: f64 = pools
        .iter()
        .zip(scores)
        .map(|(p, s)| {
            let mut order: Vec<usize> = (0..s.len()).collect();
            order.sort_by(|&i, &j| s[j].total_cmp(&s[i]));
            let ranked: Vec<String> = order.iter().map(|&i| p.ids[i].clone()).collect();
            ndcg(&ranked, &p.judged, 10)
        })
        .sum();
    total / pools.len() as f64
}

struct Agreement {
    reference_tau: f64,
    reference_rho: f64,
    reference_max_diff: f32,
    tau: f64,
    rho: f64,
    top10: f64,
    worst_tau: f64,
    /// mean nDCG@10 of the fp32 ranking and of this file's
    ndcg: (f64, f64),
}

impl Agreement {
    /// This file's nDCG@10 relative to fp32's (0.01 = 1% lower).
    fn ndcg_loss(&self) -> f64 {
        1.0 - self.ndcg.1 / self.ndcg.0
    }
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
        reference_rho: spearman(ref32, &refq),
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
        ndcg: (mean_ndcg(pools32), mean_ndcg(&poolsq)),
    };
    println!(
        "{name} vs fp32: reference pairs (16): kendall {:.3}, spearman {:.3}, max |logit diff| {:.3}; \
         Cranfield {} queries x {POOL} candidates: kendall {:.3} (worst query {:.3}), spearman {:.3}, \
         top-10 overlap {:.3}, nDCG@10 {:.4} vs fp32 {:.4} ({:+.2}%)",
        a.reference_tau,
        a.reference_rho,
        a.reference_max_diff,
        pools32.len(),
        a.tau,
        a.worst_tau,
        a.rho,
        a.top10,
        a.ndcg.1,
        a.ndcg.0,
        -100.0 * a.ndcg_loss()
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

/// What an int8 file must keep of fp32's ranking, on every CPU kind. Measured (40
/// queries; BENCHMARKS.md has the table): AMD EPYC (AVX2) shipped file Spearman 0.981,
/// nDCG@10 1.5% below fp32, reference Spearman 0.988; Intel Sapphire Rapids
/// (AVX-512 VNNI) Spearman 0.983 on the earlier 10-query pools. A broken
/// quantization fails both: `reduce_range` without per-channel scales gives Spearman
/// 0.85 and nDCG 9.7% below fp32 on the AMD host.
fn assert_int8_ranks_like_fp32(a: &Agreement) {
    assert!(a.rho >= 0.95, "mean Spearman {:.3} below 0.95", a.rho);
    assert!(
        a.ndcg_loss() <= 0.03,
        "nDCG@10 {:.4} is more than 3% below fp32's {:.4}",
        a.ndcg.1,
        a.ndcg.0
    );
    assert!(
        a.reference_rho >= 0.95,
        "reference Spearman {:.3} below 0.95",
        a.reference_rho
    );
}

#[test]
fn shipped_int8_ranks_like_fp32() {
    let a = agreement("int8 (shipped)", &load(source(), Some("model_int8.onnx")));
    assert_int8_ranks_like_fp32(&a);
}

#[test]
fn int8_from_scripts_quantize_ranks_like_fp32() {
    let a = agreement(
        "int8 (scripts/quantize)",
        &load(quantized("int8", &[]), None),
    );
    assert_int8_ranks_like_fp32(&a);
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
