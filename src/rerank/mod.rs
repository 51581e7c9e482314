//! Rerankers: query + documents → one score per document. The engine knows nothing
//! of Qdrant or HTTP.

pub mod breaker;
pub mod cache;
pub mod chain;
pub mod chunk;
pub mod hosted;
pub mod onnx;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{Config, RerankerConfig};

/// What scale a reranker's scores are on, so `score_mode` can mean the same everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreKind {
    /// Unbounded log-odds (cross-encoder logits); `sigmoid` maps them to 0..1.
    Logit,
    /// Already 0..1; `sigmoid` leaves them as they are.
    Probability,
}

#[derive(Debug, Clone)]
pub struct RerankRequest {
    /// Shared, never copied per document or per attempt (a query may be long).
    pub query: Arc<str>,
    pub documents: Vec<String>,
    /// Per-collection override of the reranker's max sequence length.
    pub max_length: Option<usize>,
    /// When the caller stops waiting (retries and backoff must end before it).
    pub deadline: Option<std::time::Instant>,
    /// Long documents split into passages and folded (`None`: truncated).
    pub chunking: Option<chunk::Chunking>,
    /// Decoder rerankers: the task instruction in the prompt (the request's, else the
    /// collection's; `None`: the reranker's own). Cross-encoders and hosted rerankers
    /// do not read it.
    pub instruction: Option<Arc<str>>,
}

impl RerankRequest {
    /// `documents` for `query` with every option at its default: the reranker's own
    /// length and instruction, truncated, no deadline.
    pub fn new(query: impl Into<Arc<str>>, documents: Vec<String>) -> RerankRequest {
        RerankRequest {
            query: query.into(),
            documents,
            max_length: None,
            deadline: None,
            chunking: None,
            instruction: None,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RerankError {
    #[error("reranker queue is full")]
    Overloaded,
    #[error("rerank step timed out after {0} ms")]
    Timeout(u64),
    #[error("tokenization failed: {0}")]
    Tokenization(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("reranker unavailable: {0}")]
    Unavailable(String),
    #[error("reranker returned {got} scores for {expected} documents")]
    WrongCount { expected: usize, got: usize },
    /// A hosted rerank API answered with an error status (not 429).
    #[error("rerank API answered HTTP {status}: {message}")]
    Provider { status: u16, message: String },
    /// A hosted rerank API answered 429 (after any retries).
    #[error("rerank API rate limit: {0}")]
    RateLimited(String),
    /// A hosted rerank API could not be reached (DNS, connect, TLS, connection reset).
    #[error("rerank API unreachable: {0}")]
    Transport(String),
    /// A hosted rerank API answered 2xx with a body that is not the documented shape.
    #[error("rerank API answered an unexpected body: {0}")]
    BadResponse(String),
    #[error("circuit breaker open")]
    CircuitOpen,
}

impl RerankError {
    /// Low-cardinality label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RerankError::Overloaded => "overloaded",
            RerankError::Timeout(_) => "timeout",
            RerankError::Tokenization(_) => "tokenization",
            RerankError::Inference(_) => "inference",
            RerankError::Unavailable(_) => "unavailable",
            RerankError::WrongCount { .. } => "wrong_count",
            RerankError::Provider { status, .. } => match status {
                400..=499 => "http_4xx",
                500..=599 => "http_5xx",
                _ => "http_other",
            },
            RerankError::RateLimited(_) => "rate_limited",
            RerankError::Transport(_) => "connect",
            RerankError::BadResponse(_) => "bad_response",
            RerankError::CircuitOpen => "circuit_open",
        }
    }

    /// Whether the error says the reranker itself is unwell, so that it counts toward
    /// its circuit breaker. Not what one call brought on itself: a full local queue
    /// (the load of the moment, refused at once, so the chain moves on without a
    /// breaker) and a provider refusing this request's content (400, 413, 422). Those
    /// opening the shared breaker would let one caller's burst of large or malformed
    /// calls switch the reranker off for every collection.
    pub fn is_reranker_fault(&self) -> bool {
        !matches!(
            self,
            RerankError::Overloaded
                | RerankError::Provider {
                    status: 400 | 413 | 422,
                    ..
                }
        )
    }
}

/// Whose work a rerank call is. The local queue keeps room for proxied searches: the
/// rerank API's calls (other services' batch work, possibly large) may fill only part
/// of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    #[default]
    Search,
    Api,
}

tokio::task_local! {
    static PRIORITY: Priority;
}

impl Priority {
    /// Runs `f` with rerank calls made inside it counted as `self`'s (a scope rather
    /// than a request field: every reranker and layer in between passes it on without
    /// knowing of it).
    pub async fn scope<F: Future>(self, f: F) -> F::Output {
        PRIORITY.scope(self, f).await
    }

    /// The priority of the calling task: `Search` outside any scope.
    pub fn current() -> Priority {
        PRIORITY.try_with(|p| *p).unwrap_or_default()
    }
}

pub type RerankFuture = Pin<Box<dyn Future<Output = Result<Vec<f32>, RerankError>> + Send>>;

/// A cross-encoder: one raw score per document, in the documents' order.
pub trait Reranker: Send + Sync {
    /// Model identifier reported to clients.
    fn model(&self) -> &str;
    /// Everything about this reranker that changes its scores (the score cache keys
    /// on it): a local model's file contents and settings, a hosted API's endpoint
    /// and model. The default, the model name alone, suits only test rerankers.
    fn identity(&self) -> cache::Identity {
        cache::Identity::named(self.model())
    }
    fn score_kind(&self) -> ScoreKind;
    fn rerank(&self, request: RerankRequest) -> RerankFuture;
    /// Who scores, as traces name it: `onnx` (a local model) or the hosted API's provider.
    fn provider(&self) -> &'static str {
        "onnx"
    }
    /// Where a local model runs (execution provider, device, batching); `None` for
    /// hosted APIs.
    fn execution(&self) -> Option<serde_json::Value> {
        None
    }
    /// Decoder rerankers: their prompt template as one canonical text. `Some` means the
    /// scores depend on it and on the request's instruction (both are kept in the score
    /// cache's key); `None`: neither is read.
    fn prompt_key(&self) -> Option<&str> {
        None
    }
}

/// Rerankers by configured name.
#[derive(Clone, Default)]
pub struct Registry {
    rerankers: BTreeMap<String, Arc<dyn Reranker>>,
}

impl Registry {
    /// Loads every configured reranker (blocking: model files are read here).
    pub fn load(
        cfg: &Config,
        metrics: &Arc<crate::metrics::Metrics>,
    ) -> Result<Registry, RerankError> {
        Self::load_keeping(cfg, metrics, &Registry::default(), |_| false)
    }

    /// [`Registry::load`], but takes from `old` each reranker it has that `keep`
    /// says is unchanged (a reload need not read a model again).
    pub fn load_keeping(
        cfg: &Config,
        metrics: &Arc<crate::metrics::Metrics>,
        old: &Registry,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Registry, RerankError> {
        let mut rerankers: BTreeMap<String, Arc<dyn Reranker>> = BTreeMap::new();
        for (name, rc) in &cfg.rerankers {
            if let Some(r) = old.get(name).filter(|_| keep(name)) {
                rerankers.insert(name.clone(), r.clone());
                continue;
            }
            let unavailable =
                |e: String| RerankError::Unavailable(format!("reranker `{name}`: {e}"));
            let r: Arc<dyn Reranker> = match (rc, rc.hosted()) {
                // Hosted rerankers chunk by words (the local model does it by tokens).
                (_, Some((provider, h))) => Arc::new(chunk::Passages {
                    inner: Arc::new(
                        hosted::HostedReranker::new(name, provider, h).map_err(unavailable)?,
                    ),
                }),
                (RerankerConfig::Onnx(o), None) => {
                    let r = onnx::OnnxReranker::load_with(o, name, Some(metrics.clone()))
                        .map_err(unavailable)?;
                    let x = &r.execution;
                    tracing::info!(
                        reranker = %name,
                        model = %r.model(),
                        provider = x.provider,
                        device = %x.device,
                        inputs_on = ?x.inputs_on,
                        onnxruntime = %x.onnxruntime,
                        batch_size = x.batch_size,
                        max_batch_tokens = x.max_batch_tokens,
                        io_binding = x.io_binding,
                        workers = x.workers,
                        tokenizer_threads = x.tokenizer_threads,
                        warmup_ms = x.warmup_ms,
                        "reranker loaded"
                    );
                    Arc::new(r)
                }
                (_, None) => unreachable!("every other kind is hosted"),
            };
            rerankers.insert(name.clone(), r);
        }
        Ok(Registry { rerankers })
    }

    pub fn insert(&mut self, name: impl Into<String>, reranker: Arc<dyn Reranker>) {
        self.rerankers.insert(name.into(), reranker);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Reranker>> {
        self.rerankers.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rerankers.keys().map(String::as_str)
    }
}

/// Maps a raw score to the configured scale. A single logit gets a sigmoid; never a
/// softmax over one value.
pub fn apply_score_mode(raw: f32, kind: ScoreKind, mode: crate::config::ScoreMode) -> f32 {
    match (mode, kind) {
        (crate::config::ScoreMode::Sigmoid, ScoreKind::Logit) => sigmoid(raw),
        _ => raw,
    }
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScoreMode;

    #[test]
    fn score_modes() {
        assert!((apply_score_mode(0.0, ScoreKind::Logit, ScoreMode::Sigmoid) - 0.5).abs() < 1e-7);
        assert_eq!(apply_score_mode(3.0, ScoreKind::Logit, ScoreMode::Raw), 3.0);
        assert_eq!(
            apply_score_mode(0.7, ScoreKind::Probability, ScoreMode::Sigmoid),
            0.7
        );
        assert!(sigmoid(-100.0) >= 0.0 && sigmoid(100.0) <= 1.0);
    }
}
