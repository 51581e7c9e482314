//! Decoder ("LLM") rerankers against their authors' methods, on the tiny random
//! models of `tests/fixtures/llm` (made, with `reference.json`, by
//! `scripts/llm/fixtures.py`: Qwen3-Reranker's model-card code and mixedbread's
//! `mxbai-rerank` package run by transformers on the same weights). The fp32 scores
//! must agree within 1e-4 for batches that mix short and long pairs, long documents
//! cut at `max_length`, the default and a custom instruction, left and right padding,
//! and both graph layouts (the export script's scorer and optimum's causal LM export).
//! Needs ONNX Runtime (`scripts/setup`); no torch.

use std::path::{Path, PathBuf};

use secondpass::config::{Family, OnnxConfig, Padding, PromptConfig};
use secondpass::rerank::chunk::{Aggregate, Chunking, HostedChunks};
use secondpass::rerank::onnx::decoder::{PromptEncoder, Template};
use secondpass::rerank::onnx::OnnxReranker;
use secondpass::rerank::{RerankRequest, Reranker, ScoreKind};
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    std::env::var_os("SECONDPASS_LLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llm"))
}

struct Case {
    name: String,
    query: String,
    instruction: Option<String>,
    documents: Vec<String>,
    max_length: usize,
    scores: Vec<f32>,
    token_ids: Vec<Vec<i64>>,
}

fn cases(model: &str) -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    v["models"][model]["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("no cases for {model}"))
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().into(),
            query: c["query"].as_str().unwrap().into(),
            instruction: c["instruction"].as_str().map(String::from),
            documents: strings(&c["documents"]),
            max_length: c["max_length"].as_u64().unwrap() as usize,
            scores: c["scores"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_f64().unwrap() as f32)
                .collect(),
            token_ids: c["token_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    r.as_array()
                        .unwrap()
                        .iter()
                        .map(|i| i.as_i64().unwrap())
                        .collect()
                })
                .collect(),
        })
        .collect()
}

fn config(dir: &str, family: Family, padding: Padding, batch_size: usize) -> OnnxConfig {
    OnnxConfig {
        max_length: 1024,
        batch_size: Some(batch_size),
        max_batch_tokens: Some(4096),
        family: Some(family),
        padding: Some(padding),
        ..OnnxConfig::new(fixtures().join(dir))
    }
}

fn load(cfg: &OnnxConfig) -> OnnxReranker {
    OnnxReranker::load(cfg).unwrap_or_else(|e| panic!("load {}: {e}", cfg.model_dir.display()))
}

fn request(c: &Case) -> RerankRequest {
    RerankRequest {
        max_length: Some(c.max_length),
        instruction: c.instruction.as_deref().map(Into::into),
        ..RerankRequest::new(c.query.as_str(), c.documents.clone())
    }
}

/// Every case of `model` scored by `r`, within `tolerance` of the reference.
async fn agrees(r: &OnnxReranker, model: &str, tolerance: f32, what: &str) -> f32 {
    let mut worst = 0f32;
    for c in cases(model) {
        let got = r.rerank(request(&c)).await.unwrap();
        assert_eq!(got.len(), c.scores.len());
        for (i, (g, w)) in got.iter().zip(&c.scores).enumerate() {
            let d = (g - w).abs();
            worst = worst.max(d);
            assert!(
                d <= tolerance,
                "{what}, case {} document {i}: {g} vs reference {w} (difference {d})",
                c.name
            );
        }
    }
    worst
}

#[test]
fn prompts_are_the_authors_token_ids() {
    for (model, family) in [
        ("qwen3-tiny", Family::Qwen3Reranker),
        ("mxbai-tiny", Family::MxbaiRerankV2),
    ] {
        let t = Template::resolve(family, None, None).unwrap();
        let e = PromptEncoder::from_file(&fixtures().join(model).join("tokenizer.json"), t, None)
            .unwrap();
        for c in cases(model) {
            let docs: Vec<&str> = c.documents.iter().map(String::as_str).collect();
            let got = e
                .prompts(
                    c.instruction.as_deref(),
                    &c.query,
                    &docs,
                    c.max_length,
                    secondpass::config::default_max_query_tokens(),
                )
                .unwrap();
            for (i, (g, want)) in got.iter().zip(&c.token_ids).enumerate() {
                assert_eq!(&g.ids, want, "{model} case {} document {i}", c.name);
                assert!(g.len() <= c.max_length);
            }
            assert!(
                c.token_ids.iter().any(|t| t.len() == c.max_length),
                "{model} case {}: some document is cut at max_length",
                c.name
            );
        }
    }
}

#[tokio::test]
async fn qwen3_scores_equal_the_model_card_method() {
    for padding in [Padding::Left, Padding::Right] {
        // Batches of 3 and of everything: sorting by length and padding per batch
        // must not change a score.
        for batch in [3, 32] {
            let r = load(&config("qwen3-tiny", Family::Qwen3Reranker, padding, batch));
            assert_eq!(r.score_kind(), ScoreKind::Probability);
            let what = format!("qwen3 scorer, {padding:?} padding, batch {batch}");
            let worst = agrees(&r, "qwen3-tiny", TOLERANCE, &what).await;
            eprintln!("{what}: worst difference {worst:.2e}");
        }
    }
}

#[tokio::test]
async fn mxbai_scores_equal_the_mxbai_rerank_package() {
    for padding in [Padding::Left, Padding::Right] {
        let r = load(&config("mxbai-tiny", Family::MxbaiRerankV2, padding, 4));
        assert_eq!(r.score_kind(), ScoreKind::Logit);
        let what = format!("mxbai scorer, {padding:?} padding");
        let worst = agrees(&r, "mxbai-tiny", TOLERANCE, &what).await;
        eprintln!("{what}: worst difference {worst:.2e}");
    }
}

#[tokio::test]
async fn community_causal_lm_export_scores_the_same() {
    for padding in [Padding::Left, Padding::Right] {
        let r = load(&config(
            "qwen3-tiny-community",
            Family::Qwen3Reranker,
            padding,
            4,
        ));
        let graph = &r.execution.decoder.as_ref().unwrap().graph;
        assert!(graph.contains("full logits"), "{graph}");
        let what = format!("optimum export, {padding:?} padding");
        let worst = agrees(&r, "qwen3-tiny", TOLERANCE, &what).await;
        eprintln!("{what}: worst difference {worst:.2e}");
    }
}

#[tokio::test]
async fn fp16_and_int8_exports_stay_close() {
    let variant = |file: &str| {
        load(&OnnxConfig {
            model_file: Some(file.into()),
            ..config("qwen3-tiny", Family::Qwen3Reranker, Padding::Left, 8)
        })
    };
    let worst = agrees(&variant("model_fp16.onnx"), "qwen3-tiny", 2e-3, "fp16").await;
    eprintln!("model_fp16.onnx: worst difference {worst:.2e}");
    // Dynamic int8 of a random model 32 wide moves scores far more than it does for a
    // trained 0.6B model: this checks that the quantized graph runs the same path and
    // keeps the order broadly (pooled over every case), not the quantizer's quality.
    let r = variant("model_int8.onnx");
    let (mut got, mut want) = (Vec::new(), Vec::new());
    for c in cases("qwen3-tiny") {
        got.extend(r.rerank(request(&c)).await.unwrap());
        want.extend(c.scores);
    }
    let rho = spearman(&got, &want);
    eprintln!("model_int8.onnx: Spearman {rho:.3} against the fp32 reference");
    assert!(rho >= 0.5, "int8 order: Spearman {rho}");
}

/// Spearman's rank correlation (no ties expected among random-model scores).
fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let rank = |v: &[f32]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        for (k, &i) in idx.iter().enumerate() {
            r[i] = k as f64;
        }
        r
    };
    let (ra, rb, n) = (rank(a), rank(b), a.len() as f64);
    if n < 2.0 {
        return 1.0;
    }
    let d2: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - y).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

#[tokio::test]
async fn instruction_changes_the_prompt_and_the_reranker_default_applies() {
    let c = &cases("qwen3-tiny")[1];
    assert!(c.instruction.is_some(), "case 1 has a custom instruction");
    // The reranker's configured instruction stands in for a request without one.
    let cfg = OnnxConfig {
        instruction: c.instruction.clone(),
        ..config("qwen3-tiny", Family::Qwen3Reranker, Padding::Left, 8)
    };
    let r = load(&cfg);
    let got = r
        .rerank(RerankRequest {
            instruction: None,
            ..request(c)
        })
        .await
        .unwrap();
    for (g, w) in got.iter().zip(&c.scores) {
        assert!((g - w).abs() <= TOLERANCE, "{g} vs {w}");
    }
    // And the template keys the cache: another instruction default, another key.
    let other = load(&config(
        "qwen3-tiny",
        Family::Qwen3Reranker,
        Padding::Left,
        8,
    ));
    assert_ne!(r.prompt_key(), other.prompt_key());
    assert!(other.prompt_key().is_some());
}

#[tokio::test]
async fn long_documents_chunk_into_prompted_passages() {
    let r = load(&config(
        "qwen3-tiny",
        Family::Qwen3Reranker,
        Padding::Left,
        8,
    ));
    let c = &cases("qwen3-tiny")[0];
    let chunked = |aggregate| RerankRequest {
        chunking: Some(Chunking {
            tokens: None,
            overlap: 0,
            max_chunks: 4,
            aggregate,
            hosted: HostedChunks::Passages,
        }),
        ..request(c)
    };
    let max = r.rerank(chunked(Aggregate::Max)).await.unwrap();
    let first = r.rerank(chunked(Aggregate::First)).await.unwrap();
    let plain = r.rerank(request(c)).await.unwrap();
    assert_eq!(max.len(), c.documents.len());
    for i in 0..max.len() {
        assert!(max[i] >= first[i] - 1e-6, "document {i}: max below first");
    }
    // A short document is one passage: chunked or not, the same prompt.
    let short = c.documents.iter().position(|d| d == "wing").unwrap();
    assert!((max[short] - plain[short]).abs() < 1e-6);
    // A long one is several: some passage other than the first scores differently.
    let long = (0..max.len())
        .max_by_key(|&i| c.documents[i].len())
        .unwrap();
    assert!((max[long] - first[long]).abs() > 1e-6 || max[long] != plain[long]);
}

#[test]
fn graphs_and_tokens_it_cannot_use_are_refused_with_the_reason() {
    // A cross-encoder graph is no decoder.
    let cross =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/cranfield-minilm-l6-ce");
    if cross.join("model.onnx").is_file() {
        let cfg = OnnxConfig {
            family: Some(Family::Qwen3Reranker),
            ..OnnxConfig::new(&cross)
        };
        let e = OnnxReranker::load(&cfg).err().unwrap();
        assert!(e.contains("token_type_ids") || e.contains("answer"), "{e}");
    }
    // An answer that is several tokens cannot be read from one position.
    let cfg = OnnxConfig {
        prompt: Some(Box::new(PromptConfig {
            positive: Some("highly relevant".into()),
            ..Default::default()
        })),
        ..config("qwen3-tiny", Family::Qwen3Reranker, Padding::Left, 8)
    };
    let e = OnnxReranker::load(&cfg).err().unwrap();
    assert!(
        e.contains("positive answer `highly relevant`") && e.contains("not one"),
        "{e}"
    );
    // max_length that leaves no room beside the prompt.
    let cfg = OnnxConfig {
        max_length: 40,
        ..config("qwen3-tiny", Family::Qwen3Reranker, Padding::Left, 8)
    };
    let e = OnnxReranker::load(&cfg).err().unwrap();
    assert!(e.contains("leaves no room"), "{e}");
}

#[test]
fn doctor_loads_decoder_rerankers_and_scores() {
    let dir = std::env::temp_dir().join(format!("sp-llm-doctor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("doctor.toml");
    let f = fixtures();
    std::fs::write(
        &file,
        format!(
            "[rerankers.qwen3]\nkind = \"onnx\"\nfamily = \"qwen3-reranker\"\nmodel_dir = \"{}\"\n\
             model_file = \"model_int8.onnx\"\nmax_length = 256\n\
             [rerankers.mxbai]\nkind = \"onnx\"\nfamily = \"mxbai-rerank-v2\"\nmodel_dir = \"{}\"\n\
             max_length = 256\n",
            f.join("qwen3-tiny").display(),
            f.join("mxbai-tiny").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_secondpass"))
        .args(["doctor", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "reranker qwen3: ok",
        "model_int8.onnx",
        "decoder qwen3-reranker: scorer",
        "answers `yes` (id",
        "reranker mxbai: ok",
        "decoder mxbai-rerank-v2",
        "answers `1` (id",
    ] {
        assert!(stdout.contains(want), "no `{want}` in {stdout}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
