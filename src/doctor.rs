//! `secondpass doctor`: loads every local reranker of a configuration on its device
//! and scores one batch, so that a GPU host can be checked before serving (the CUDA
//! provider, its CUDA and cuDNN libraries, the model, the first inference).

use std::time::Instant;

use crate::config::{Config, RerankerConfig};
use crate::rerank::onnx::OnnxReranker;
use crate::rerank::{RerankRequest, Reranker};

/// What one reranker did.
pub struct Check {
    pub reranker: String,
    /// One line for people; `Err` when the reranker cannot serve.
    pub outcome: Result<String, String>,
}

const QUERY: &str = "what is the capital of france";
const DOCS: [&str; 2] = [
    "Paris is the capital and largest city of France.",
    "The mitochondrion is the powerhouse of the cell.",
];

/// Checks every reranker of `cfg` in name order (hosted APIs are named, not called).
pub fn run(cfg: &Config) -> Vec<Check> {
    cfg.rerankers
        .iter()
        .map(|(name, rc)| Check {
            reranker: name.clone(),
            outcome: match rc {
                RerankerConfig::Onnx(o) => check_onnx(o),
                other => Ok(format!(
                    "hosted ({}): not called by doctor",
                    other.hosted().map_or("?", |(p, _)| p.name())
                )),
            },
        })
        .collect()
}

fn check_onnx(o: &crate::config::OnnxConfig) -> Result<String, String> {
    let started = Instant::now();
    let r = OnnxReranker::load(o)?;
    let load = started.elapsed();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let started = Instant::now();
    let scores = rt
        .block_on(r.rerank(RerankRequest::new(
            QUERY,
            DOCS.iter().map(|d| d.to_string()).collect(),
        )))
        .map_err(|e| format!("scoring one batch failed: {e}"))?;
    let batch = started.elapsed();
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(format!("the model gave non-finite scores {scores:?}"));
    }
    let x = &r.execution;
    let placed: Vec<String> = x
        .inputs_on
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let decoder = x.decoder.as_ref().map_or(String::new(), |d| {
        format!(
            "; decoder {}: {}, answers `{}` (id {}) / `{}` (id {}), score {:?}, {} fixed prompt tokens",
            d.family, d.graph, d.positive.0, d.positive.1, d.negative.0, d.negative.1, d.score,
            d.fixed_tokens
        )
    });
    Ok(format!(
        "ok: provider {} device {} (inputs on {}), model {} ({}), ONNX Runtime {} from {}; \
         loaded in {:.0} ms (first inference {:.1} ms), one batch of {} pairs in {:.1} ms, \
         scores [{:.3}, {:.3}] (relevant first: {}){decoder}",
        x.provider,
        x.device,
        placed.join(" "),
        r.model(),
        x.model_file,
        x.onnxruntime,
        x.onnxruntime_path.as_deref().unwrap_or("?"),
        load.as_secs_f64() * 1e3,
        x.warmup_ms,
        DOCS.len(),
        batch.as_secs_f64() * 1e3,
        scores[0],
        scores[1],
        if scores[0] > scores[1] { "yes" } else { "NO" },
    ))
}
