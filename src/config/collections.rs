//! `[collections.<name>]`: per-collection rerank settings and their inheritance.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::DEFAULT_RERANKER;
use crate::rerank::chunk::Chunking;
pub use crate::rerank::chunk::{Aggregate, HostedChunks};

/// What happens to documents longer than the model's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LongDocuments {
    /// Cut at `max_length` (the query kept).
    #[default]
    Truncate,
    /// Split into passages, each scored, scores folded by `chunk_aggregate`.
    Chunk,
}

/// One stage of a staged rerank (`stages = [...]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// The reranker of this stage.
    pub reranker: String,
    /// A fallback chain for this stage instead of `reranker` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rerankers: Vec<String>,
    /// How many of this stage's best candidates the next stage re-scores
    /// (absent: all of them; ignored on the last stage).
    pub keep: Option<usize>,
    /// Tokens per pair this stage's local model reads (absent: the collection's
    /// `max_length`, else the reranker's own; never more than the reranker's own).
    /// A first stage that reads less is a cheaper filter for the same model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
}

impl StageConfig {
    /// The rerankers to try for this stage, in order.
    pub fn chain(&self) -> Vec<&str> {
        if self.rerankers.is_empty() {
            vec![self.reranker.as_str()]
        } else {
            self.rerankers.iter().map(String::as_str).collect()
        }
    }
}

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

/// Default of `max_query_bytes` (collections and the rerank API): 16 KiB, thousands of
/// tokens, more than any rerank model reads of a query.
pub const DEFAULT_MAX_QUERY_BYTES: usize = 16 * 1024;

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

/// Every per-collection key, listed once: the form a file, the environment and the
/// admin API write ([`CollectionOverrides`], every key optional), how a key that is
/// set lands in the effective [`CollectionSettings`] (`apply`), and how run-time
/// changes merge ([`CollectionOverrides::over`]). A key added here is read, applied
/// and merged everywhere; `key: type => setting`.
macro_rules! collection_keys {
    ($($key:ident: $ty:ty => $field:ident,)*) => {
        /// A collection section as written: every key optional, inherited from `default`.
        #[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct CollectionOverrides {
            $(pub $key: Option<$ty>,)*
        }

        impl CollectionOverrides {
            /// Every key, as written in a file.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($key)),*];

            /// `self` over `old`, key by key (a run-time change over an earlier one).
            pub fn over(self, old: CollectionOverrides) -> CollectionOverrides {
                CollectionOverrides {
                    $($key: self.$key.or(old.$key),)*
                }
            }
        }

        impl CollectionSettings {
            /// `o` over these settings: a key that is set replaces the inherited value.
            pub(crate) fn apply(mut self, o: &CollectionOverrides) -> Self {
                $(if let Some(v) = &o.$key {
                    Assign::assign(&mut self.$field, v);
                })*
                self
            }
        }
    };
}

collection_keys! {
    enabled: bool => enabled,
    mode: Mode => mode,
    text_field: String => text_field,
    pool: usize => pool,
    max_pool: usize => max_pool,
    reranker: String => reranker,
    rerankers: Vec<String> => rerankers,
    max_length: usize => max_length,
    score_mode: ScoreMode => score_mode,
    score_threshold: f32 => score_threshold,
    on_failure: OnFailure => on_failure,
    timeout_ms: u64 => timeout,
    cache: bool => cache,
    max_query_bytes: usize => max_query_bytes,
    text_template: String => text_template,
    long_documents: LongDocuments => long_documents,
    chunk_tokens: usize => chunk_tokens,
    chunk_overlap: usize => chunk_overlap,
    max_chunks_per_doc: usize => max_chunks_per_doc,
    chunk_aggregate: Aggregate => chunk_aggregate,
    hosted_chunks: HostedChunks => hosted_chunks,
    stages: Vec<StageConfig> => stages,
    allowed_rerankers: Vec<String> => allowed_rerankers,
    instruction: String => instruction,
}

/// How a key's value lands in its setting.
trait Assign<T> {
    fn assign(&mut self, value: &T);
}

impl<T: Clone> Assign<T> for T {
    fn assign(&mut self, value: &T) {
        *self = value.clone();
    }
}

/// An optional setting (no value: the reranker's own, or none).
impl<T: Clone> Assign<T> for Option<T> {
    fn assign(&mut self, value: &T) {
        *self = Some(value.clone());
    }
}

/// `timeout_ms` sets `timeout`.
impl Assign<u64> for Duration {
    fn assign(&mut self, ms: &u64) {
        *self = Duration::from_millis(*ms);
    }
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
    /// Longest query text reranked, in bytes: a longer `x-rerank-query` or `rerank.query`
    /// is a 400 (gRPC INVALID_ARGUMENT); a longer Document query text is searched but not
    /// reranked.
    pub max_query_bytes: usize,
    /// Document text built from several fields (wins over `text_field`).
    pub text_template: Option<String>,
    pub long_documents: LongDocuments,
    /// Tokens per passage in `chunk` mode (`None`: what fits beside the query).
    pub chunk_tokens: Option<usize>,
    pub chunk_overlap: usize,
    pub max_chunks_per_doc: usize,
    pub chunk_aggregate: Aggregate,
    pub hosted_chunks: HostedChunks,
    /// Staged rerank: each stage re-scores the best `keep` of the one before; empty:
    /// one stage with `reranker` / `rerankers`.
    pub stages: Vec<StageConfig>,
    /// Rerankers a request may pick with `"rerank": {"reranker": ...}`.
    pub allowed_rerankers: Vec<String>,
    /// Decoder rerankers: the task instruction for this collection's searches (a
    /// request's own wins; absent: the reranker's).
    pub instruction: Option<String>,
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
            max_query_bytes: DEFAULT_MAX_QUERY_BYTES,
            text_template: None,
            long_documents: LongDocuments::Truncate,
            chunk_tokens: None,
            chunk_overlap: 0,
            max_chunks_per_doc: 4,
            chunk_aggregate: Aggregate::Blend(0.7),
            hosted_chunks: HostedChunks::Passages,
            stages: Vec::new(),
            allowed_rerankers: Vec::new(),
            instruction: None,
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

    /// Where the document text comes from (a template that does not parse was refused
    /// when the configuration was validated).
    pub fn text_source(&self) -> crate::plan::template::TextSource {
        use crate::plan::template::{Template, TextSource};
        match self.text_template.as_deref().map(Template::parse) {
            Some(Ok(t)) => TextSource::Template(t),
            _ => TextSource::Field(self.text_field.clone()),
        }
    }

    /// How long documents are scored, as a rerank request carries it.
    pub fn chunking(&self) -> Option<Chunking> {
        (self.long_documents == LongDocuments::Chunk).then_some(Chunking {
            tokens: self.chunk_tokens,
            overlap: self.chunk_overlap,
            max_chunks: self.max_chunks_per_doc,
            aggregate: self.chunk_aggregate,
            hosted: self.hosted_chunks,
        })
    }

    /// The stages to run: the configured ones, or one stage of the collection's
    /// reranker (and fallback chain). `pick` (a request's allowed choice) replaces
    /// the rerankers of a single-stage collection, or the last stage of a staged one.
    pub fn stages_with(&self, pick: Option<&str>) -> Vec<StageConfig> {
        let mut stages = if self.stages.is_empty() {
            vec![StageConfig {
                reranker: self.reranker.clone(),
                rerankers: self.rerankers.clone(),
                keep: None,
                max_length: None,
            }]
        } else {
            self.stages.clone()
        };
        if let (Some(p), Some(last)) = (pick, stages.last_mut()) {
            *last = StageConfig {
                reranker: p.to_string(),
                rerankers: Vec::new(),
                keep: last.keep,
                max_length: last.max_length,
            };
        }
        stages
    }
}
