//! Decoder ("LLM") rerankers on the same engine as the cross-encoders: the same
//! queue, worker threads, token-budget batching, chunking and metrics; what differs
//! is how a pair becomes tokens ([`PromptEncoder`]: the family's prompt) and how a
//! batch becomes scores ([`DecoderRunner`]: two answer tokens' logits at each row's
//! last real position). docs/llm-rerankers.md has the user's side.

mod encode;
mod graph;
mod prompt;

pub use encode::PromptEncoder;
pub use graph::{score, DecoderRunner, Dims, Graph, Output, FULL_LOGITS_BYTES};
pub use prompt::Template;

use std::path::Path;

use serde::Serialize;

use super::encode::{Chunked, Pair};
use super::worker::Encode;
use crate::config::{OnnxConfig, ScoreFunction};
use crate::rerank::chunk::Chunking;
use crate::rerank::{RerankRequest, ScoreKind};

/// What a loaded decoder reranker is (logged, and shown by `/admin/status` and
/// `secondpass doctor`).
#[derive(Debug, Clone, Serialize)]
pub struct DecoderInfo {
    pub family: &'static str,
    pub graph: String,
    /// Answer tokens and their ids, as the tokenizer has them.
    pub positive: (String, u32),
    pub negative: (String, u32),
    pub score: ScoreFunction,
    pub padding: crate::config::Padding,
    /// Tokens every prompt has (prefix and tail).
    pub fixed_tokens: usize,
}

/// The template and tokenizer of a decoder reranker, from its configuration.
pub fn encoder(
    cfg: &OnnxConfig,
    tokenizer: &Path,
    pad_id: Option<i64>,
) -> Result<PromptEncoder, String> {
    let family = cfg.family.ok_or("not a decoder reranker (no family)")?;
    let template = Template::resolve(family, cfg.prompt.as_deref(), cfg.instruction.as_deref())
        .map_err(|(key, why)| format!("{key}: {why}"))?;
    PromptEncoder::from_file(tokenizer, template, pad_id)
}

/// The scale of a decoder's scores, so that `score_mode` means the same everywhere.
pub fn score_kind(f: ScoreFunction) -> ScoreKind {
    match f {
        ScoreFunction::Softmax => ScoreKind::Probability,
        ScoreFunction::Difference | ScoreFunction::Positive => ScoreKind::Logit,
    }
}

/// Sizes of the model from `config.json` (for graphs that leave them symbolic).
pub fn dims(model_dir: &Path) -> Dims {
    let Ok(text) = std::fs::read_to_string(model_dir.join("config.json")) else {
        return Dims::default();
    };
    let Ok(c) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Dims::default();
    };
    let int = |k: &str| c[k].as_i64().filter(|&v| v > 0);
    let heads = int("num_attention_heads");
    Dims {
        kv_heads: int("num_key_value_heads").or(heads),
        head_dim: int("head_dim").or_else(|| Some(int("hidden_size")? / heads?)),
        vocab: int("vocab_size").map(|v| v as usize),
    }
}

impl Encode for PromptEncoder {
    fn pairs(
        &self,
        req: &RerankRequest,
        max_length: usize,
        max_query_tokens: usize,
    ) -> Result<Vec<Pair>, String> {
        let docs: Vec<&str> = req.documents.iter().map(String::as_str).collect();
        self.prompts(
            req.instruction.as_deref(),
            &req.query,
            &docs,
            max_length,
            max_query_tokens,
        )
    }

    fn passages(
        &self,
        req: &RerankRequest,
        max_length: usize,
        max_query_tokens: usize,
        chunking: &Chunking,
    ) -> Result<Chunked, String> {
        let docs: Vec<&str> = req.documents.iter().map(String::as_str).collect();
        self.prompts_chunked(
            req.instruction.as_deref(),
            &req.query,
            &docs,
            max_length,
            max_query_tokens,
            chunking,
        )
    }
}
