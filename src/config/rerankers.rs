//! `[rerankers.<name>]`: the local ONNX model and the hosted rerank APIs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RerankerConfig {
    Onnx(OnnxConfig),
    Cohere(HostedConfig),
    Voyage(HostedConfig),
    Jina(HostedConfig),
    Pinecone(HostedConfig),
    Mixedbread(HostedConfig),
    Zeroentropy(HostedConfig),
    Tei(HostedConfig),
    Llamacpp(HostedConfig),
    Infinity(HostedConfig),
}

/// The hosted rerank APIs secondpass speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cohere,
    Voyage,
    Jina,
    Pinecone,
    Mixedbread,
    ZeroEntropy,
    Tei,
    LlamaCpp,
    Infinity,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cohere => "cohere",
            Provider::Voyage => "voyage",
            Provider::Jina => "jina",
            Provider::Pinecone => "pinecone",
            Provider::Mixedbread => "mixedbread",
            Provider::ZeroEntropy => "zeroentropy",
            Provider::Tei => "tei",
            Provider::LlamaCpp => "llamacpp",
            Provider::Infinity => "infinity",
        }
    }

    /// The provider's public endpoint; self-hosted servers (TEI, llama.cpp, Infinity)
    /// have no default and need `base_url`.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Provider::Cohere => Some("https://api.cohere.com"),
            Provider::Voyage => Some("https://api.voyageai.com"),
            Provider::Jina => Some("https://api.jina.ai"),
            Provider::Pinecone => Some("https://api.pinecone.io"),
            Provider::Mixedbread => Some("https://api.mixedbread.com"),
            Provider::ZeroEntropy => Some("https://api.zeroentropy.dev"),
            Provider::Tei | Provider::LlamaCpp | Provider::Infinity => None,
        }
    }

    /// Documents per call that the server accepts by default: TEI's
    /// `--max-client-batch-size` (32, a 422 beyond), Cohere's and Voyage's documented 1000,
    /// Pinecone's 100 (`bge-reranker-v2-m3` and `pinecone-rerank-v0`; `cohere-rerank-3.5`
    /// takes 200). Jina, Mixedbread, ZeroEntropy, llama.cpp and Infinity document no count
    /// limit: 100. A server that still answers "batch too large" gets halves (see
    /// `rerank::hosted`).
    pub fn default_max_documents(self) -> usize {
        match self {
            Provider::Tei => 32,
            Provider::Cohere | Provider::Voyage => 1000,
            Provider::Pinecone
            | Provider::Jina
            | Provider::Mixedbread
            | Provider::ZeroEntropy
            | Provider::LlamaCpp
            | Provider::Infinity => 100,
        }
    }

    /// Whether the provider requires an API key.
    pub fn needs_key(self) -> bool {
        !matches!(
            self,
            Provider::Tei | Provider::LlamaCpp | Provider::Infinity
        )
    }
}

impl RerankerConfig {
    /// The hosted provider and its settings (`None` for the local model).
    pub fn hosted(&self) -> Option<(Provider, &HostedConfig)> {
        Some(match self {
            RerankerConfig::Onnx(_) => return None,
            RerankerConfig::Cohere(h) => (Provider::Cohere, h),
            RerankerConfig::Voyage(h) => (Provider::Voyage, h),
            RerankerConfig::Jina(h) => (Provider::Jina, h),
            RerankerConfig::Pinecone(h) => (Provider::Pinecone, h),
            RerankerConfig::Mixedbread(h) => (Provider::Mixedbread, h),
            RerankerConfig::Zeroentropy(h) => (Provider::ZeroEntropy, h),
            RerankerConfig::Tei(h) => (Provider::Tei, h),
            RerankerConfig::Llamacpp(h) => (Provider::LlamaCpp, h),
            RerankerConfig::Infinity(h) => (Provider::Infinity, h),
        })
    }
}

/// A hosted rerank API. The API key is never in the file: it is read from the
/// environment variable `api_key_env` or the file `api_key_file`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostedConfig {
    /// Provider's model name (optional for TEI, llama.cpp and Infinity).
    #[serde(default)]
    pub model: Option<String>,
    /// Overrides the provider's endpoint (self-hosting, gateways, tests).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the API key (e.g. a mounted Kubernetes Secret).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Per-call timeout (the collection's `timeout_ms` bounds the whole rerank step).
    #[serde(default = "default_hosted_timeout")]
    pub timeout_ms: u64,
    /// Documents per call; larger requests are split into concurrent calls. Unset: what
    /// the provider accepts by default ([`Provider::default_max_documents`]).
    #[serde(default)]
    pub max_documents: Option<usize>,
    /// Retries of 429 and 5xx answers (with jittered backoff, honouring Retry-After).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Cohere only: `v2` (default) or `v1`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Consecutive failures that open the circuit breaker.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open breaker skips this reranker before a probe.
    #[serde(default = "default_breaker_open_ms")]
    pub breaker_open_ms: u64,
}

fn default_hosted_timeout() -> u64 {
    5_000
}
fn default_retries() -> u32 {
    2
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_open_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxConfig {
    /// Model directory: `model.onnx` (or Hugging Face layout `onnx/model.onnx`),
    /// `tokenizer.json`, optional `config.json`.
    pub model_dir: PathBuf,
    /// File inside `model_dir` to load instead of the default (e.g. `model_int8.onnx`).
    #[serde(default)]
    pub model_file: Option<PathBuf>,
    /// Longest (query, document) pair in tokens; the document is cut, the query kept.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// The query is cut to this many tokens (tokenized once per request) before it is
    /// paired with each document; a pair still leaves the document at least half of
    /// `max_length`.
    #[serde(default = "default_max_query_tokens")]
    pub max_query_tokens: usize,
    /// Pairs per inference call; unset: a default for the device
    /// ([`OnnxConfig::batch_size`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// ONNX Runtime intra-op threads per worker; 0 lets ONNX Runtime decide.
    #[serde(default)]
    pub intra_threads: usize,
    /// Inference worker threads, each with its own session.
    #[serde(default = "one")]
    pub workers: usize,
    /// Rerank jobs waiting for a worker before new ones are refused (backpressure).
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// Documents (query-document pairs) waiting for a worker, summed over the jobs,
    /// before new work is refused: a few large jobs fill the queue as many small ones
    /// do. A job larger than this is taken only when nothing else waits. Rerank API
    /// calls get half of it; proxied searches the whole.
    #[serde(default = "default_queue_pairs")]
    pub queue_pairs: usize,
    /// Path of `libonnxruntime.so`; `ORT_DYLIB_PATH` wins, then this, then
    /// `.local/onnxruntime/lib/libonnxruntime.so`, then the system library.
    #[serde(default)]
    pub runtime_path: Option<PathBuf>,
    /// Token budget of one inference batch (padded rows × width), across requests;
    /// unset: a default for the device ([`OnnxConfig::max_batch_tokens`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_tokens: Option<usize>,
    /// `cpu`, or `cuda` / `cuda:N` (the CUDA execution provider; startup fails when
    /// it cannot be loaded: no silent CPU fallback).
    #[serde(default = "default_device")]
    pub device: String,
    /// Run inference through ONNX Runtime's IO binding (inputs bound per batch, the
    /// output bound to host memory: CUDA-pinned on a GPU); unset: on for `cuda`, off
    /// for `cpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_binding: Option<bool>,
    /// Threads that take jobs off the queue and tokenize them while the inference
    /// workers run the previous batches; 0 tokenizes on the inference threads. Unset:
    /// 1 on `cuda`, 0 on `cpu` (where tokenizing is a few percent of the time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_threads: Option<usize>,
    /// A decoder ("LLM") reranker of this family (absent: a cross-encoder). See
    /// docs/llm-rerankers.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<super::Family>,
    /// Decoder rerankers: the instruction when neither the collection nor the request
    /// gives one (absent: the family's default, if it has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    /// Decoder rerankers: overrides of the family's prompt and scoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Box<super::PromptConfig>>,
    /// Decoder rerankers: `left` (default) or `right` padding in a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub padding: Option<super::Padding>,
}

/// Device defaults: a GPU wants many rows per call to be busy; small CPUs are
/// fastest at 16-32 rows (BENCHMARKS.md).
pub const CPU_BATCH_SIZE: usize = 32;
pub const CPU_MAX_BATCH_TOKENS: usize = 8192;
pub const CUDA_BATCH_SIZE: usize = 256;
pub const CUDA_MAX_BATCH_TOKENS: usize = 65536;

impl OnnxConfig {
    /// Defaults for a model directory (what an `[rerankers.x] kind = "onnx"` section
    /// with only `model_dir` gives).
    pub fn new(model_dir: impl Into<PathBuf>) -> OnnxConfig {
        OnnxConfig {
            model_dir: model_dir.into(),
            model_file: None,
            max_length: default_max_length(),
            max_query_tokens: default_max_query_tokens(),
            batch_size: None,
            intra_threads: 0,
            workers: 1,
            queue_capacity: default_queue(),
            queue_pairs: default_queue_pairs(),
            runtime_path: None,
            max_batch_tokens: None,
            device: default_device(),
            io_binding: None,
            tokenizer_threads: None,
            family: None,
            instruction: None,
            prompt: None,
            padding: None,
        }
    }

    /// Whether `device` is a CUDA device (`cuda`, `cuda:N`).
    pub fn on_gpu(&self) -> bool {
        self.device.starts_with("cuda")
    }

    /// Pairs per inference call: the configured number, else the device's default.
    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(if self.on_gpu() {
            CUDA_BATCH_SIZE
        } else {
            CPU_BATCH_SIZE
        })
    }

    /// Token budget of one batch: the configured number, else the device's default,
    /// at least one pair of `max_length` tokens.
    pub fn max_batch_tokens(&self) -> usize {
        let default = if self.on_gpu() {
            CUDA_MAX_BATCH_TOKENS
        } else {
            CPU_MAX_BATCH_TOKENS
        };
        self.max_batch_tokens
            .unwrap_or(default.max(self.max_length))
    }

    /// Whether inference runs through IO binding: the setting, else on for CUDA.
    pub fn io_binding(&self) -> bool {
        self.io_binding.unwrap_or(self.on_gpu())
    }

    /// Tokenizer threads ahead of inference: the setting, else 1 for CUDA, 0 for CPU.
    pub fn tokenizer_threads(&self) -> usize {
        self.tokenizer_threads.unwrap_or(usize::from(self.on_gpu()))
    }
}

fn default_device() -> String {
    "cpu".into()
}

fn default_max_length() -> usize {
    512
}
pub fn default_max_query_tokens() -> usize {
    256
}
fn one() -> usize {
    1
}
fn default_queue() -> usize {
    256
}

fn default_queue_pairs() -> usize {
    16_384
}

pub(super) fn default_rerankers() -> BTreeMap<String, RerankerConfig> {
    BTreeMap::new()
}

pub(super) fn validate_hosted(
    provider: Provider,
    h: &HostedConfig,
    key: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    match (&h.base_url, provider.default_base_url()) {
        (Some(u), _) => {
            let uri: http::Uri = u
                .parse()
                .map_err(|e| invalid(key("base_url"), format!("`{u}` is not a URL: {e}")))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(invalid(
                    key("base_url"),
                    "must be an http:// or https:// URL",
                ));
            }
        }
        (None, Some(_)) => {}
        (None, None) => {
            return Err(invalid(
                key("base_url"),
                format!("{} is self-hosted: set its base_url", provider.name()),
            ))
        }
    }
    if h.api_key_env.is_some() && h.api_key_file.is_some() {
        return Err(invalid(
            key("api_key_env"),
            "set api_key_env or api_key_file, not both",
        ));
    }
    if provider.needs_key() && h.api_key_env.is_none() && h.api_key_file.is_none() {
        return Err(invalid(
            key("api_key_env"),
            format!(
                "{} needs an API key: set api_key_env or api_key_file",
                provider.name()
            ),
        ));
    }
    if provider.needs_key() && h.model.is_none() {
        return Err(invalid(
            key("model"),
            format!("{} needs a model name", provider.name()),
        ));
    }
    if h.timeout_ms == 0 {
        return Err(invalid(key("timeout_ms"), "must be greater than 0"));
    }
    if h.max_documents == Some(0) {
        return Err(invalid(key("max_documents"), "must be greater than 0"));
    }
    if h.breaker_failures == 0 {
        return Err(invalid(key("breaker_failures"), "must be greater than 0"));
    }
    if let Some(v) = &h.api_version {
        if provider != Provider::Cohere || !matches!(v.as_str(), "v1" | "v2") {
            return Err(invalid(
                key("api_version"),
                "only cohere takes api_version, \"v1\" or \"v2\"",
            ));
        }
    }
    Ok(())
}
