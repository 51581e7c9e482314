//! Typed configuration: a TOML file plus `SECONDPASS__...` environment variables,
//! validated before any port is bound.
//!
//! Collections inherit every unset key from `[collections.default]`, so the raw
//! (file) form keeps collection keys optional and [`Config::collection`] resolves them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Name of the collection section that covers every collection not named.
pub const DEFAULT_COLLECTION: &str = "default";
/// Name of the reranker used when a collection names none and none is configured.
pub const DEFAULT_RERANKER: &str = "local";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load configuration: {0}")]
    Load(String),
    #[error("invalid configuration: `{key}`: {why}")]
    Invalid { key: String, why: String },
}

fn invalid(key: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        why: why.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// Rerankers by name; collections refer to them by that name.
    #[serde(default = "default_rerankers")]
    pub rerankers: BTreeMap<String, RerankerConfig>,
    /// Per-collection settings; `default` covers collections not named.
    #[serde(default)]
    pub collections: BTreeMap<String, CollectionOverrides>,
    /// secondpass's own rerank API (Cohere and TEI shapes) on the REST listener.
    #[serde(default)]
    pub rerank_api: RerankApiConfig,
    #[serde(default)]
    pub cache: CacheConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RerankApiConfig {
    /// Serve `POST /v1/rerank`, `/v2/rerank` (Cohere) and `/rerank` (TEI).
    pub enabled: bool,
    /// Rerankers behind it, tried in order (a fallback chain).
    pub rerankers: Vec<String>,
    /// Budget for one rerank call.
    pub timeout_ms: u64,
    /// Most documents in one request (Cohere recommends at most 1000).
    pub max_documents: usize,
    /// When set, requests need `Authorization: Bearer <token>`, read from this
    /// environment variable.
    pub token_env: Option<String>,
}

impl Default for RerankApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rerankers: vec![DEFAULT_RERANKER.into()],
            timeout_ms: 30_000,
            max_documents: 1000,
            token_env: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where the Qdrant-compatible REST API listens.
    pub rest_listen: String,
    /// Where the Qdrant-compatible gRPC API listens.
    pub grpc_listen: String,
    /// Where `/metrics`, `/healthz` and `/readyz` listen (kept off the REST port so that
    /// Qdrant's own `/healthz` and `/readyz` pass through unchanged).
    pub admin_listen: String,
    /// Largest search body the proxy buffers to rewrite; bigger ones are forwarded untouched.
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            rest_listen: "0.0.0.0:7333".into(),
            grpc_listen: "0.0.0.0:7334".into(),
            admin_listen: "0.0.0.0:7335".into(),
            max_body_bytes: 32 * 1024 * 1024,
            shutdown_grace_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Qdrant's REST URL (`http://` or `https://`).
    pub url: String,
    /// Qdrant's gRPC URL (`http://` for h2c, `https://` for TLS).
    pub grpc_url: String,
    /// Extra PEM CA certificates to trust for `https://` upstreams (besides the system's).
    pub ca_file: Option<PathBuf>,
    /// Whole-request timeout for calls to Qdrant (504 when exceeded).
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: "http://localhost:6333".into(),
            grpc_url: "http://localhost:6334".into(),
            ca_file: None,
            timeout_ms: 30_000,
            connect_timeout_ms: 3_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. `info` or `secondpass=debug`; `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
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

    /// Whether the provider requires an API key.
    pub fn needs_key(self) -> bool {
        !matches!(self, Provider::Tei | Provider::LlamaCpp | Provider::Infinity)
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
#[derive(Debug, Clone, Deserialize)]
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
    /// Documents per call; larger requests are split into concurrent calls.
    #[serde(default = "default_max_documents")]
    pub max_documents: usize,
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
fn default_max_documents() -> usize {
    100
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

#[derive(Debug, Clone, Deserialize)]
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
    /// Pairs per inference call.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads per worker; 0 lets ONNX Runtime decide.
    #[serde(default)]
    pub intra_threads: usize,
    /// Inference worker threads, each with its own session.
    #[serde(default = "one")]
    pub workers: usize,
    /// Rerank jobs waiting for a worker before new ones are refused (backpressure).
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// Path of `libonnxruntime.so`; `ORT_DYLIB_PATH` wins, then this, then
    /// `.local/onnxruntime/lib/libonnxruntime.so`, then the system library.
    #[serde(default)]
    pub runtime_path: Option<PathBuf>,
    /// Token budget of one inference batch (padded rows × width), across requests.
    #[serde(default = "default_batch_tokens")]
    pub max_batch_tokens: usize,
    /// `cpu`, or `cuda` / `cuda:N` (the CUDA execution provider; startup fails when
    /// it cannot be loaded: no silent CPU fallback).
    #[serde(default = "default_device")]
    pub device: String,
}

impl OnnxConfig {
    /// Defaults for a model directory (what an `[rerankers.x] kind = "onnx"` section
    /// with only `model_dir` gives).
    pub fn new(model_dir: impl Into<PathBuf>) -> OnnxConfig {
        OnnxConfig {
            model_dir: model_dir.into(),
            model_file: None,
            max_length: default_max_length(),
            batch_size: default_batch_size(),
            intra_threads: 0,
            workers: 1,
            queue_capacity: default_queue(),
            runtime_path: None,
            max_batch_tokens: default_batch_tokens(),
            device: default_device(),
        }
    }
}

fn default_batch_tokens() -> usize {
    8192
}
fn default_device() -> String {
    "cpu".into()
}

/// The score cache shared by every reranker: (model, query, document) → score.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Entries kept (least recently used go first); 0 turns the cache off.
    pub max_entries: usize,
    /// How long a score stays valid.
    pub ttl_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 0,
            ttl_ms: 3_600_000,
        }
    }
}

fn default_max_length() -> usize {
    512
}
fn default_batch_size() -> usize {
    32
}
fn one() -> usize {
    1
}
fn default_queue() -> usize {
    256
}

fn default_rerankers() -> BTreeMap<String, RerankerConfig> {
    BTreeMap::new()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreMode {
    /// Logits go through a sigmoid: scores in 0..1.
    Sigmoid,
    /// Scores exactly as the reranker returned them.
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Answer in Qdrant's order, marked `failed_open`.
    FailOpen,
    /// Answer 502 with a Qdrant error body.
    Error,
}

/// A collection section as written: every key optional, inherited from `default`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionOverrides {
    pub enabled: Option<bool>,
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

    fn apply(mut self, o: &CollectionOverrides) -> Self {
        macro_rules! take {
            ($($f:ident),*) => { $( if let Some(v) = &o.$f { self.$f = v.clone(); } )* };
        }
        take!(
            enabled, text_field, pool, max_pool, reranker, rerankers, score_mode, on_failure, cache
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

impl Config {
    /// Loads `file` (when given) and `SECONDPASS__SECTION__KEY` environment variables,
    /// then validates. Env wins over the file.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SECONDPASS")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let raw = builder
            .build()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        let cfg: Config = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML string (no environment); used by tests and `check-config`.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        let cfg: Config = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The effective settings of `collection`: built-ins, then `default`, then its own section.
    pub fn collection(&self, collection: &str) -> CollectionSettings {
        let mut s = CollectionSettings::default();
        if let Some(d) = self.collections.get(DEFAULT_COLLECTION) {
            s = s.apply(d);
        }
        if collection != DEFAULT_COLLECTION {
            if let Some(c) = self.collections.get(collection) {
                s = s.apply(c);
            }
        }
        s
    }

    pub fn rest_addr(&self) -> SocketAddr {
        self.server.rest_listen.parse().expect("validated")
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.grpc_listen.parse().expect("validated")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.server.admin_listen.parse().expect("validated")
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream.timeout_ms)
    }

    /// Checks everything that can be checked without I/O; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("server.rest_listen", &self.server.rest_listen),
            ("server.grpc_listen", &self.server.grpc_listen),
            ("server.admin_listen", &self.server.admin_listen),
        ] {
            v.parse::<SocketAddr>()
                .map_err(|e| invalid(key, format!("`{v}` is not an IP:port address ({e})")))?;
        }
        if self.server.max_body_bytes == 0 {
            return Err(invalid("server.max_body_bytes", "must be greater than 0"));
        }
        let url: http::Uri = self
            .upstream
            .url
            .parse()
            .map_err(|e| invalid("upstream.url", format!("not a URL: {e}")))?;
        match url.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(invalid(
                "upstream.url",
                "https upstreams are not supported yet; run secondpass next to Qdrant over http",
            )),
            _ => return Err(invalid("upstream.url", "must start with http://")),
        }
        if url.host().is_none() {
            return Err(invalid("upstream.url", "has no host"));
        }
        if self.upstream.timeout_ms == 0 {
            return Err(invalid("upstream.timeout_ms", "must be greater than 0"));
        }
        if self.upstream.connect_timeout_ms == 0 {
            return Err(invalid(
                "upstream.connect_timeout_ms",
                "must be greater than 0",
            ));
        }
        for (name, r) in &self.rerankers {
            let key = |k: &str| format!("rerankers.{name}.{k}");
            let o = match r.hosted() {
                Some((provider, h)) => {
                    validate_hosted(provider, h, &key)?;
                    continue;
                }
                None => match r {
                    RerankerConfig::Onnx(o) => o,
                    _ => unreachable!("hosted() covers every other kind"),
                },
            };
            if o.max_length < 8 {
                return Err(invalid(key("max_length"), "must be at least 8"));
            }
            if o.batch_size == 0 {
                return Err(invalid(key("batch_size"), "must be greater than 0"));
            }
            if o.workers == 0 {
                return Err(invalid(key("workers"), "must be greater than 0"));
            }
            if o.queue_capacity == 0 {
                return Err(invalid(key("queue_capacity"), "must be greater than 0"));
            }
            if o.max_batch_tokens < o.max_length {
                return Err(invalid(
                    key("max_batch_tokens"),
                    format!("must hold at least one pair of max_length ({}) tokens", o.max_length),
                ));
            }
            let device_ok = o.device == "cpu"
                || o.device == "cuda"
                || o.device.strip_prefix("cuda:").is_some_and(|n| n.parse::<u32>().is_ok());
            if !device_ok {
                return Err(invalid(key("device"), format!("`{}`: use cpu, cuda or cuda:N", o.device)));
            }
        }
        let api = &self.rerank_api;
        if api.enabled && !self.rerankers.is_empty() {
            for r in &api.rerankers {
                if !self.rerankers.contains_key(r) {
                    return Err(invalid(
                        "rerank_api.rerankers",
                        format!("names reranker `{r}`, which is not configured"),
                    ));
                }
            }
            if api.timeout_ms == 0 || api.max_documents == 0 {
                return Err(invalid(
                    "rerank_api",
                    "timeout_ms and max_documents must be greater than 0",
                ));
            }
        }
        if let Some(var) = &api.token_env {
            if api.enabled && std::env::var(var).map_or(true, |v| v.trim().is_empty()) {
                return Err(invalid(
                    "rerank_api.token_env",
                    format!("environment variable {var} is not set"),
                ));
            }
        }
        for (name, over) in &self.collections {
            let s = self.collection(name);
            let key = |k: &str| format!("collections.{name}.{k}");
            if s.text_field.trim().is_empty() {
                return Err(invalid(key("text_field"), "must not be empty"));
            }
            if s.pool == 0 {
                return Err(invalid(key("pool"), "must be greater than 0"));
            }
            if s.max_pool < s.pool {
                return Err(invalid(
                    key(if over.max_pool.is_some() {
                        "max_pool"
                    } else {
                        "pool"
                    }),
                    format!("pool ({}) exceeds max_pool ({})", s.pool, s.max_pool),
                ));
            }
            if s.timeout.is_zero() {
                return Err(invalid(key("timeout_ms"), "must be greater than 0"));
            }
            if let Some(t) = s.score_threshold {
                if !t.is_finite() {
                    return Err(invalid(key("score_threshold"), "must be a finite number"));
                }
            }
            if let Some(l) = s.max_length {
                if l < 8 {
                    return Err(invalid(key("max_length"), "must be at least 8"));
                }
            }
            // A reranker only has to exist where it will be used.
            let which = if s.rerankers.is_empty() { "reranker" } else { "rerankers" };
            for r in s.chain() {
                if s.enabled && !self.rerankers.contains_key(r) {
                    let known: Vec<&str> = self.rerankers.keys().map(String::as_str).collect();
                    return Err(invalid(
                        key(which),
                        format!(
                            "names reranker `{r}`, which is not configured (configured: [{}])",
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The API key of a hosted reranker: from its environment variable or file.
    pub fn api_key(h: &HostedConfig) -> Result<Option<String>, String> {
        if let Some(var) = &h.api_key_env {
            return match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
                _ => Err(format!("environment variable {var} is not set")),
            };
        }
        if let Some(path) = &h.api_key_file {
            return std::fs::read_to_string(path)
                .map(|v| Some(v.trim().to_string()))
                .map_err(|e| format!("cannot read {}: {e}", path.display()));
        }
        Ok(None)
    }

    /// Collections whose name may appear as a metric label value.
    pub fn named_collections(&self) -> Vec<String> {
        self.collections
            .keys()
            .filter(|k| k.as_str() != DEFAULT_COLLECTION)
            .cloned()
            .collect()
    }
}

fn validate_hosted(
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
                return Err(invalid(key("base_url"), "must be an http:// or https:// URL"));
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
        return Err(invalid(key("api_key_env"), "set api_key_env or api_key_file, not both"));
    }
    if provider.needs_key() && h.api_key_env.is_none() && h.api_key_file.is_none() {
        return Err(invalid(
            key("api_key_env"),
            format!("{} needs an API key: set api_key_env or api_key_file", provider.name()),
        ));
    }
    if provider.needs_key() && h.model.is_none() {
        return Err(invalid(key("model"), format!("{} needs a model name", provider.name())));
    }
    if h.timeout_ms == 0 {
        return Err(invalid(key("timeout_ms"), "must be greater than 0"));
    }
    if h.max_documents == 0 {
        return Err(invalid(key("max_documents"), "must be greater than 0"));
    }
    if h.breaker_failures == 0 {
        return Err(invalid(key("breaker_failures"), "must be greater than 0"));
    }
    if let Some(v) = &h.api_version {
        if provider != Provider::Cohere || !matches!(v.as_str(), "v1" | "v2") {
            return Err(invalid(key("api_version"), "only cohere takes api_version, \"v1\" or \"v2\""));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[rerankers.local]
kind = "onnx"
model_dir = "/models/x"
"#;

    #[test]
    fn defaults_without_file() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.upstream.url, "http://localhost:6333");
        assert_eq!(c.server.rest_listen, "0.0.0.0:7333");
        let s = c.collection("anything");
        assert!(!s.enabled);
        assert_eq!(s.pool, 100);
        assert_eq!(s.on_failure, OnFailure::FailOpen);
    }

    #[test]
    fn collections_inherit_from_default() {
        let c = Config::from_toml(&format!(
            "{BASE}\n[collections.default]\npool = 40\ntext_field = \"body\"\n[collections.docs]\nenabled = true\nmax_pool = 80\n"
        ))
        .unwrap();
        let d = c.collection("docs");
        assert!(d.enabled);
        assert_eq!(d.pool, 40);
        assert_eq!(d.max_pool, 80);
        assert_eq!(d.text_field, "body");
        let other = c.collection("other");
        assert!(!other.enabled);
        assert_eq!(other.pool, 40);
    }

    #[test]
    fn unknown_key_is_refused_by_name() {
        let e = Config::from_toml("[collections.docs]\nenabeld = true\n").unwrap_err();
        assert!(e.to_string().contains("enabeld"), "{e}");
    }

    #[test]
    fn missing_reranker_is_named() {
        let e = Config::from_toml("[collections.docs]\nenabled = true\nreranker = \"nope\"\n")
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("collections.docs.reranker"), "{msg}");
        assert!(msg.contains("nope"), "{msg}");
    }

    #[test]
    fn pool_above_max_pool_is_refused() {
        let e =
            Config::from_toml(&format!("{BASE}\n[collections.docs]\npool = 300\n")).unwrap_err();
        assert!(e.to_string().contains("collections.docs.pool"), "{e}");
    }

    #[test]
    fn bad_listen_address_and_url() {
        let e = Config::from_toml("[server]\nrest_listen = \"nowhere\"\n").unwrap_err();
        assert!(e.to_string().contains("server.rest_listen"), "{e}");
        let e = Config::from_toml("[upstream]\nurl = \"ftp://x\"\n").unwrap_err();
        assert!(e.to_string().contains("upstream.url"), "{e}");
    }

    #[test]
    fn bad_enum_value_is_refused() {
        let e = Config::from_toml("[collections.docs]\nscore_mode = \"softmax\"\n").unwrap_err();
        assert!(e.to_string().contains("softmax"), "{e}");
    }

    #[test]
    fn hosted_rerankers_are_validated() {
        let ok = Config::from_toml(
            "[rerankers.co]\nkind = \"cohere\"\nmodel = \"rerank-v3.5\"\napi_key_env = \"CO_KEY\"\n\
             [rerankers.tei]\nkind = \"tei\"\nbase_url = \"http://tei:8080\"\n\
             [collections.docs]\nenabled = true\nrerankers = [\"tei\", \"co\"]\n",
        )
        .unwrap();
        assert_eq!(ok.collection("docs").chain(), vec!["tei", "co"]);
        let e = Config::from_toml("[rerankers.co]\nkind = \"cohere\"\nmodel = \"m\"\n").unwrap_err();
        assert!(e.to_string().contains("rerankers.co.api_key_env"), "{e}");
        let e = Config::from_toml("[rerankers.t]\nkind = \"tei\"\n").unwrap_err();
        assert!(e.to_string().contains("rerankers.t.base_url"), "{e}");
        let e = Config::from_toml("[rerankers.x]\nkind = \"nope\"\n").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        // the key itself is never a config key
        let e = Config::from_toml(
            "[rerankers.co]\nkind = \"cohere\"\nmodel = \"m\"\napi_key = \"sk-123\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("api_key"), "{e}");
        assert!(!e.to_string().contains("sk-123"), "a secret must not be echoed: {e}");
        let e = Config::from_toml(
            "[rerankers.t]\nkind = \"tei\"\nbase_url = \"http://t\"\n[collections.docs]\nenabled = true\nrerankers = [\"t\", \"ghost\"]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("collections.docs.rerankers") && e.to_string().contains("ghost"), "{e}");
    }

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../config/secondpass.toml");
        let c = Config::from_toml(text).unwrap();
        assert!(c.rerankers.contains_key("local"));
    }
}
