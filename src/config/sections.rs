//! Listener, upstream, logging, rerank API and cache sections.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::DEFAULT_RERANKER;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RerankApiConfig {
    /// Serve `POST /v1/rerank`, `/v2/rerank` (Cohere) and `/rerank` (TEI). Off by
    /// default: it is compute (and paid hosted calls) on the port Qdrant clients use.
    pub enabled: bool,
    /// Rerankers behind it, tried in order (a fallback chain); empty: `local`.
    pub rerankers: Vec<String>,
    /// Budget for one rerank call.
    pub timeout_ms: u64,
    /// Most documents in one request (Cohere recommends at most 1000).
    pub max_documents: usize,
    /// Longest `query` accepted, in bytes (a 400, or TEI's 422, beyond).
    pub max_query_bytes: usize,
    /// When set, requests need `Authorization: Bearer <token>`, read from this
    /// environment variable. Required (or `token_file`) when `rest_listen` is not a
    /// loopback address.
    pub token_env: Option<String>,
    /// File holding the token (e.g. a mounted Secret); wins over `token_env`. Read
    /// on every call, so a rotated file takes effect without a restart.
    pub token_file: Option<PathBuf>,
}

impl RerankApiConfig {
    /// The chain to use: the configured one, else `local`.
    pub fn chain(&self) -> Vec<&str> {
        if self.rerankers.is_empty() {
            vec![DEFAULT_RERANKER]
        } else {
            self.rerankers.iter().map(String::as_str).collect()
        }
    }

    /// Whether calls need a bearer token.
    pub fn token_required(&self) -> bool {
        self.token_env.is_some() || self.token_file.is_some()
    }

    /// The token, when one is configured and readable.
    pub fn token(&self) -> Result<Option<String>, String> {
        read_token(
            "rerank_api",
            self.token_env.as_deref(),
            self.token_file.as_deref(),
        )
    }
}

impl Default for RerankApiConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            rerankers: Vec::new(),
            timeout_ms: 30_000,
            max_documents: 1000,
            max_query_bytes: super::DEFAULT_MAX_QUERY_BYTES,
            token_env: None,
            token_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Qdrant's REST URL (`http://` or `https://`).
    pub url: String,
    /// Qdrant's gRPC URL (`http://` for h2c, `https://` for TLS).
    pub grpc_url: String,
    /// Extra PEM CA certificates to trust for `https://` upstreams (besides the system's).
    pub ca_file: Option<PathBuf>,
    /// Whole-exchange timeout for calls to Qdrant, answer body included (504 /
    /// DEADLINE_EXCEEDED when exceeded before the answer starts; cut after).
    pub timeout_ms: u64,
    /// The same for snapshot transfers (`.../snapshots...` paths), which may be large.
    pub snapshot_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Idle REST connections are closed after this; keep it below Qdrant's keep-alive
    /// (5 s) so a pooled connection is never one Qdrant is closing.
    pub pool_idle_timeout_ms: u64,
    /// Largest answer secondpass buffers to rewrite (Qdrant's answer to a widened
    /// search, compressed or not); past it the client gets Qdrant's answer to its own
    /// request, marked `skipped`.
    pub max_rewrite_bytes: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: "http://localhost:6333".into(),
            grpc_url: "http://localhost:6334".into(),
            ca_file: None,
            timeout_ms: 30_000,
            snapshot_timeout_ms: 3_600_000,
            connect_timeout_ms: 3_000,
            pool_idle_timeout_ms: 4_000,
            max_rewrite_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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

/// The admin API on the admin listener (`/admin/...`), protected by a bearer token.
/// Without a token there is no admin API at all.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Environment variable holding the token.
    pub token_env: String,
    /// File holding the token (e.g. a mounted Secret); wins over `token_env`.
    pub token_file: Option<PathBuf>,
    /// Where runtime changes of collection settings are kept across restarts (JSON);
    /// without it they live in memory only.
    pub overrides_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            token_env: "SECONDPASS_ADMIN_TOKEN".into(),
            token_file: None,
            overrides_file: None,
        }
    }
}

impl AdminConfig {
    /// The token, when one is configured.
    pub fn token(&self) -> Result<Option<String>, String> {
        read_token("admin", Some(&self.token_env), self.token_file.as_deref())
    }
}

/// A bearer token from `file` (which wins; unreadable or empty is an error naming
/// `<section>.token_file`) or the environment variable `env` (unset or empty: none).
fn read_token(
    section: &str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<String>, String> {
    if let Some(path) = file {
        let t = std::fs::read_to_string(path)
            .map_err(|e| format!("{section}.token_file {}: {e}", path.display()))?;
        let t = t.trim().to_string();
        return if t.is_empty() {
            Err(format!("{section}.token_file {} is empty", path.display()))
        } else {
            Ok(Some(t))
        };
    }
    Ok(env
        .and_then(|var| std::env::var(var).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

/// `[shadow]`: the background work of collections in `mode = "shadow"`. A reload
/// changes `sample_rate`, `log_rate` and `log_file`; `queue` and `workers` only a
/// restart.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowConfig {
    /// Shadow searches waiting for a worker; beyond it new ones are dropped (and
    /// counted) so the live path never waits.
    pub queue: usize,
    /// Shadow searches run at the same time.
    pub workers: usize,
    /// Share of live searches that are shadowed (0..1).
    pub sample_rate: f64,
    /// JSONL file of (query, Qdrant's ids, reranked ids, scores) for
    /// `secondpass eval --shadow-log`; none: no log.
    pub log_file: Option<PathBuf>,
    /// Share of shadowed searches written to `log_file` (0..1).
    pub log_rate: f64,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            queue: 64,
            workers: 1,
            sample_rate: 1.0,
            log_file: None,
            log_rate: 1.0,
        }
    }
}
