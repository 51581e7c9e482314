//! `[collections.<name>]`: per-collection rerank settings and their inheritance.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::DEFAULT_RERANKER;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreMode {
    /// Logits go through a sigmoid: scores in 0..1.
    Sigmoid,
    /// Scores exactly as the reranker returned them.
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Answer in Qdrant's order, marked `failed_open`.
    FailOpen,
    /// Answer 502 with a Qdrant error body.
    Error,
}

/// What an enabled collection does with its searches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Rerank and answer with the reranked order.
    #[default]
    Rerank,
    /// Answer with Qdrant's answer unchanged; rerank in the background and record
    /// what would have changed.
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Rerank => "rerank",
            Mode::Shadow => "shadow",
        }
    }
}

/// A collection section as written: every key optional, inherited from `default`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionOverrides {
    pub enabled: Option<bool>,
    pub mode: Option<Mode>,
    pub text_field: Option<String>,
    pub pool: Option<usize>,
    pub max_pool: Option<usize>,
    pub reranker: Option<String>,
    pub rerankers: Option<Vec<String>>,
    pub max_length: Option<usize>,
    pub score_mode: Option<ScoreMode>,
    pub score_threshold: Option<f32>,
    pub on_failure: Option<OnFailure>,
    pub timeout_ms: Option<u64>,
    pub cache: Option<bool>,
}

/// A collection's effective settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionSettings {
    pub enabled: bool,
    /// With `enabled`: rerank live, or only in the background (shadow).
    pub mode: Mode,
    /// Payload key holding the document text; dots go into nested objects.
    pub text_field: String,
    /// Candidates asked of Qdrant when the request names no pool.
    pub pool: usize,
    /// Upper bound for any pool, requested or configured.
    pub max_pool: usize,
    pub reranker: String,
    /// Fallback chain, tried in order within `timeout`; empty: just `reranker`.
    pub rerankers: Vec<String>,
    /// Overrides the reranker's max sequence length when set.
    pub max_length: Option<usize>,
    pub score_mode: ScoreMode,
    pub score_threshold: Option<f32>,
    pub on_failure: OnFailure,
    /// Budget for the rerank step alone.
    pub timeout: Duration,
    /// Use the score cache (when `[cache]` has room for entries).
    pub cache: bool,
}

impl Default for CollectionSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            mode: Mode::Rerank,
            text_field: "text".into(),
            pool: 100,
            max_pool: 200,
            reranker: DEFAULT_RERANKER.into(),
            rerankers: Vec::new(),
            max_length: None,
            score_mode: ScoreMode::Sigmoid,
            score_threshold: None,
            on_failure: OnFailure::FailOpen,
            timeout: Duration::from_secs(10),
            cache: true,
        }
    }
}

impl CollectionSettings {
    /// The rerankers to try, in order.
    pub fn chain(&self) -> Vec<&str> {
        if self.rerankers.is_empty() {
            vec![self.reranker.as_str()]
        } else {
            self.rerankers.iter().map(String::as_str).collect()
        }
    }

    pub(crate) fn apply(mut self, o: &CollectionOverrides) -> Self {
        macro_rules! take {
            ($($f:ident),*) => { $( if let Some(v) = &o.$f { self.$f = v.clone(); } )* };
        }
        take!(
            enabled, mode, text_field, pool, max_pool, reranker, rerankers, score_mode, on_failure,
            cache
        );
        if o.max_length.is_some() {
            self.max_length = o.max_length;
        }
        if o.score_threshold.is_some() {
            self.score_threshold = o.score_threshold;
        }
        if let Some(ms) = o.timeout_ms {
            self.timeout = Duration::from_millis(ms);
        }
        self
    }
}
