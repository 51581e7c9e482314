//! Typed configuration: a TOML file plus `SECONDPASS__...` environment variables,
//! validated before any port is bound.
//!
//! Collections inherit every unset key from `[collections.default]`, so the raw
//! (file) form keeps collection keys optional and [`Config::collection`] resolves them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod cache;
mod collections;
mod env;
mod llm;
mod rerankers;
mod sections;
mod telemetry;
#[cfg(test)]
mod tests;

pub use cache::*;
pub use collections::*;
pub use llm::{Family, Padding, PromptConfig, ScoreFunction, Truncation};
pub use rerankers::*;
pub use sections::*;
pub use telemetry::{Sampler, TracingConfig};

/// Name of the collection section that covers every collection not named.
pub const DEFAULT_COLLECTION: &str = "default";
/// Name of the reranker used when a collection names none and none is configured.
pub const DEFAULT_RERANKER: &str = "local";
/// Longest upstream timeout accepted (one week).
pub const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3_600_000;

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

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// Rerankers by name; collections refer to them by that name.
    #[serde(default = "rerankers::default_rerankers")]
    pub rerankers: BTreeMap<String, RerankerConfig>,
    /// Per-collection settings; `default` covers collections not named.
    #[serde(default)]
    pub collections: BTreeMap<String, CollectionOverrides>,
    /// secondpass's own rerank API (Cohere and TEI shapes) on the REST listener.
    #[serde(default)]
    pub rerank_api: RerankApiConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub shadow: ShadowConfig,
    /// OpenTelemetry traces (off by default).
    #[serde(default)]
    pub tracing: TracingConfig,
}

impl Config {
    /// Loads `file` (when given) and `SECONDPASS__SECTION__KEY` environment variables,
    /// then validates. Env wins over the file.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with_env(file, std::env::vars().collect())
    }

    /// [`Config::load`] with `env` in place of the process environment. A variable
    /// whose value is a TOML array or inline table (`["a", "b"]`, `{ k = 1 }`) sets a
    /// list or table key.
    pub fn load_with_env(
        file: Option<&Path>,
        env: config::Map<String, String>,
    ) -> Result<Config, ConfigError> {
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
        let structured = env::structured(&env);
        let otel_env = env.clone();
        builder = builder.add_source(
            config::Environment::with_prefix("SECONDPASS")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        builder = builder.add_source(config::File::from_str(
            &structured,
            config::FileFormat::Toml,
        ));
        let raw = builder
            .build()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        let mut cfg: Config = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        cfg.tracing.apply_otel_env(&otel_env)?;
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
        self.tracing.validate()?;
        for (key, v) in [
            ("upstream.url", &self.upstream.url),
            ("upstream.grpc_url", &self.upstream.grpc_url),
        ] {
            let url: http::Uri = v
                .parse()
                .map_err(|e| invalid(key, format!("`{v}` is not a URL: {e}")))?;
            if !matches!(url.scheme_str(), Some("http" | "https")) {
                return Err(invalid(key, "must start with http:// or https://"));
            }
            if url.host().is_none() {
                return Err(invalid(key, "has no host"));
            }
        }
        if let Some(ca) = &self.upstream.ca_file {
            if !ca.is_file() {
                return Err(invalid(
                    "upstream.ca_file",
                    format!("{} is not a file", ca.display()),
                ));
            }
        }
        if self.upstream.max_rewrite_bytes == 0 {
            return Err(invalid(
                "upstream.max_rewrite_bytes",
                "must be greater than 0",
            ));
        }
        for (key, ms) in [
            ("upstream.timeout_ms", self.upstream.timeout_ms),
            (
                "upstream.snapshot_timeout_ms",
                self.upstream.snapshot_timeout_ms,
            ),
            (
                "upstream.connect_timeout_ms",
                self.upstream.connect_timeout_ms,
            ),
            (
                "upstream.pool_idle_timeout_ms",
                self.upstream.pool_idle_timeout_ms,
            ),
        ] {
            // Capped so deadlines (now + timeout) can never overflow.
            if ms == 0 || ms > MAX_TIMEOUT_MS {
                return Err(invalid(
                    key,
                    format!("must be between 1 and {MAX_TIMEOUT_MS} (ms)"),
                ));
            }
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
            if o.max_query_tokens == 0 {
                return Err(invalid(key("max_query_tokens"), "must be greater than 0"));
            }
            if o.batch_size == Some(0) {
                return Err(invalid(key("batch_size"), "must be greater than 0"));
            }
            if o.workers == 0 {
                return Err(invalid(key("workers"), "must be greater than 0"));
            }
            if o.queue_capacity == 0 {
                return Err(invalid(key("queue_capacity"), "must be greater than 0"));
            }
            if o.queue_pairs == 0 {
                return Err(invalid(key("queue_pairs"), "must be greater than 0"));
            }
            if o.max_batch_tokens.is_some_and(|t| t < o.max_length) {
                return Err(invalid(
                    key("max_batch_tokens"),
                    format!(
                        "must hold at least one pair of max_length ({}) tokens",
                        o.max_length
                    ),
                ));
            }
            let device_ok = o.device == "cpu"
                || o.device == "cuda"
                || o.device
                    .strip_prefix("cuda:")
                    .is_some_and(|n| n.parse::<u32>().is_ok());
            if !device_ok {
                return Err(invalid(
                    key("device"),
                    format!("`{}`: use cpu, cuda or cuda:N", o.device),
                ));
            }
            llm::validate(o, &key)?;
        }
        self.cache.validate()?;
        let api = &self.rerank_api;
        if api.enabled {
            for r in &api.rerankers {
                if !self.rerankers.contains_key(r) {
                    return Err(invalid(
                        "rerank_api.rerankers",
                        format!("names reranker `{r}`, which is not configured"),
                    ));
                }
            }
            if api.timeout_ms == 0 || api.max_documents == 0 || api.max_query_bytes == 0 {
                return Err(invalid(
                    "rerank_api",
                    "timeout_ms, max_documents and max_query_bytes must be greater than 0",
                ));
            }
        }
        if api.enabled {
            self.check_rerank_api_token()?;
        }
        self.admin
            .token()
            .map_err(|e| invalid("admin.token_file", e))?;
        let sh = &self.shadow;
        if sh.queue == 0 || sh.workers == 0 {
            return Err(invalid(
                "shadow",
                "queue and workers must be greater than 0",
            ));
        }
        for (key, v) in [
            ("shadow.sample_rate", sh.sample_rate),
            ("shadow.log_rate", sh.log_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(key, "must be between 0 and 1"));
            }
        }
        for (name, over) in &self.collections {
            self.check_collection(name, &self.collection(name), over)?;
        }
        Ok(())
    }

    /// An enabled rerank API has a readable token when one is named, and one at all
    /// unless the REST listener is loopback only: it is compute (and paid hosted
    /// calls) that Qdrant's own API key does not protect.
    fn check_rerank_api_token(&self) -> Result<(), ConfigError> {
        let api = &self.rerank_api;
        let token = api
            .token()
            .map_err(|e| invalid("rerank_api.token_file", e))?;
        match (&api.token_env, &api.token_file, token) {
            (_, _, Some(_)) => Ok(()),
            (Some(var), None, None) => Err(invalid(
                "rerank_api.token_env",
                format!("environment variable {var} is not set"),
            )),
            _ if self.rest_addr().ip().is_loopback() => Ok(()),
            _ => Err(invalid(
                "rerank_api.enabled",
                format!(
                    "the rerank API would answer anyone who can reach server.rest_listen \
                     ({}) without a token: set rerank_api.token_env or token_file, listen \
                     on loopback, or set enabled = false",
                    self.server.rest_listen
                ),
            )),
        }
    }

    /// The effective settings of `name` with a runtime `extra` layer on top (the
    /// admin API's changes), validated like the file's.
    pub fn collection_with(
        &self,
        name: &str,
        extra: &CollectionOverrides,
    ) -> Result<CollectionSettings, ConfigError> {
        let s = self.collection(name).apply(extra);
        self.check_collection(name, &s, extra)?;
        Ok(s)
    }

    fn check_collection(
        &self,
        name: &str,
        s: &CollectionSettings,
        over: &CollectionOverrides,
    ) -> Result<(), ConfigError> {
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
        if s.max_query_bytes == 0 {
            return Err(invalid(key("max_query_bytes"), "must be greater than 0"));
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
        self.check_long_documents(name, s)?;
        // A reranker only has to exist where it will be used.
        let which = if !s.stages.is_empty() {
            "stages"
        } else if s.rerankers.is_empty() {
            "reranker"
        } else {
            "rerankers"
        };
        let stages = s.stages_with(None);
        let used = stages
            .iter()
            .flat_map(|st| st.chain())
            .map(|r| (which, r))
            .chain(
                s.allowed_rerankers
                    .iter()
                    .map(|r| ("allowed_rerankers", r.as_str())),
            );
        for (which, r) in used {
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
        Ok(())
    }

    /// `text_template`, `long_documents` and `stages` keys of one collection.
    fn check_long_documents(&self, name: &str, s: &CollectionSettings) -> Result<(), ConfigError> {
        let key = |k: &str| format!("collections.{name}.{k}");
        if let Some(t) = &s.text_template {
            crate::plan::template::Template::parse(t)
                .map_err(|e| invalid(key("text_template"), e))?;
        }
        if let Some(c) = s.chunk_tokens {
            if c < 8 {
                return Err(invalid(key("chunk_tokens"), "must be at least 8"));
            }
            if s.chunk_overlap >= c {
                return Err(invalid(
                    key("chunk_overlap"),
                    format!("must be less than chunk_tokens ({c})"),
                ));
            }
        }
        if !(1..=64).contains(&s.max_chunks_per_doc) {
            return Err(invalid(key("max_chunks_per_doc"), "must be within 1..=64"));
        }
        for (i, st) in s.stages.iter().enumerate() {
            if st.keep == Some(0) {
                return Err(invalid(
                    format!("collections.{name}.stages[{i}].keep"),
                    "must be greater than 0",
                ));
            }
            if st.reranker.trim().is_empty() {
                return Err(invalid(
                    format!("collections.{name}.stages[{i}].reranker"),
                    "must not be empty",
                ));
            }
            if st.max_length.is_some_and(|l| l < 8) {
                return Err(invalid(
                    format!("collections.{name}.stages[{i}].max_length"),
                    "must be at least 8",
                ));
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
