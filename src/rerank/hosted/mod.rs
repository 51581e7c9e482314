//! Hosted rerank APIs: Cohere, Voyage, Jina, Pinecone, Mixedbread, ZeroEntropy, and the
//! self-hosted servers TEI (Hugging Face text-embeddings-inference), llama.cpp's
//! `llama-server` and Infinity.
//!
//! Every call asks for a score for every document (`top_n`/`top_k` = the number sent,
//! documents not echoed back); answers listed best-first are mapped back to input order by
//! their `index`, and each input index must come back exactly once.
//!
//! | provider | endpoint | auth | score field | scale ([`ScoreKind`]) |
//! |---|---|---|---|---|
//! | Cohere v2 (default) | `POST /v2/rerank` | `Authorization: Bearer` | `results[].relevance_score` | probability, 0..1 |
//! | Cohere v1 (`api_version = "v1"`) | `POST /v1/rerank` | Bearer | `results[].relevance_score` | probability, 0..1 |
//! | Voyage | `POST /v1/rerank` | Bearer | `data[].relevance_score` | probability, 0..1 |
//! | Jina | `POST /v1/rerank` | Bearer | `results[].relevance_score` | probability, 0..1 |
//! | Pinecone | `POST /rerank` | `Api-Key`, `X-Pinecone-Api-Version: 2026-07` | `data[].score` | probability, 0..1 |
//! | Mixedbread | `POST /v1/reranking` | Bearer | `data[].score` | probability, 0..1 |
//! | ZeroEntropy | `POST /v1/models/rerank` | Bearer | `results[].relevance_score` | probability, 0..1 |
//! | TEI | `POST /rerank` (`raw_scores: true`, `truncate: true`) | Bearer if a key is set | `[].score` | logit |
//! | llama.cpp | `POST /v1/rerank` | Bearer if a key is set | `results[].relevance_score` | logit (raw classifier output) |
//! | Infinity | `POST /rerank` (`raw_scores: true`) | Bearer if a key is set | `results[].relevance_score` | logit |
//!
//! With `score_mode = "sigmoid"` the logits of TEI, llama.cpp and Infinity are mapped to
//! 0..1 by secondpass (what those servers would do without `raw_scores`); the 0..1 scores
//! of the hosted APIs are left as they are.
//!
//! `base_url` (default: the provider's public endpoint) may carry a path prefix, kept in
//! front of the endpoint path (gateways). The per-collection `max_length` is not sent: the
//! APIs truncate with their own model limits (TEI is told `truncate: true`).
//!
//! Calls: requests with more than `max_documents` documents (default per provider:
//! [`Provider::default_max_documents`]) are split into chunks sent concurrently and merged
//! back in input order. A server that answers that a batch is too large (413, or a
//! 400/422 such as TEI's "batch size 100 > maximum allowed batch size 32") gets the
//! chunk again in two halves, recursively and within the deadline; once a half has been
//! answered, the reranker keeps that smaller size for later calls. Each HTTP attempt may
//! take `min(timeout_ms, time left until the request's deadline)`. 429, 5xx and failures
//! to connect are retried up to `max_retries` times after `100 ms × 2^n` (±50% jitter) or
//! the `Retry-After` the API sent (delta-seconds or HTTP date, however large); a wait
//! that would end at or past the deadline (or, without a deadline, one over
//! [`MAX_WAIT_WITHOUT_DEADLINE`]) is not taken and the last error is returned at once.
//! Timeouts and other 4xx answers are not retried. Errors carry the API's own message
//! (its `message`/`detail`/`error` field, at most 300 characters) with the API key
//! blanked out; the key never appears in errors, logs or `Debug` output.
//!
//! `base_url` may be given as the official SDKs write it, with the version segment the
//! endpoint path starts with (`https://api.voyageai.com/v1`, or MongoDB Atlas's
//! `https://ai.mongodb.com/v1` for Voyage model keys made in Atlas): that segment is not
//! repeated (`/v1/rerank`, not `/v1/v1/rerank`).

mod retry;
mod url;
mod wire;

pub use retry::parse_http_date;
pub use wire::{wire, Auth, Dialect, PINECONE_API_VERSION};

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use crate::config::{Config, HostedConfig, Provider};

use super::{RerankError, RerankFuture, RerankRequest, Reranker, ScoreKind};
use crate::http_client::{self, describe, Versions};
use url::{join_url, without_userinfo};

/// Without a deadline, a `Retry-After` longer than this fails the call instead of waiting.
pub const MAX_WAIT_WITHOUT_DEADLINE: Duration = Duration::from_secs(30);
/// Largest response body read (a rerank answer is a few bytes per document).
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A reranker backed by a hosted (or self-hosted) rerank API.
#[derive(Clone)]
pub struct HostedReranker {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    provider: Provider,
    dialect: Dialect,
    /// Reported to clients: the configured model, else the provider's name.
    model: String,
    /// Sent in the body: the configured model (the self-hosted servers may have none).
    send_model: Option<String>,
    url: Uri,
    /// The API key, kept only to blank it out of error messages.
    key: Option<String>,
    /// Authentication headers, marked sensitive.
    auth: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    /// Documents per call: `max_documents`, lowered when the server said a batch was
    /// too large and a smaller one went through.
    max_documents: AtomicUsize,
    max_retries: u32,
    client: HttpClient,
    /// Provider, endpoint, wire format and model: what the score cache keys on.
    identity: crate::rerank::cache::Identity,
}

impl std::fmt::Debug for HostedReranker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.inner;
        f.debug_struct("HostedReranker")
            .field("name", &i.name)
            .field("provider", &i.provider)
            .field("dialect", &i.dialect)
            .field("model", &i.model)
            .field("url", &without_userinfo(&i.url))
            .field("api_key", &i.key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &i.timeout)
            .field("max_documents", &i.batch_limit())
            .field("max_retries", &i.max_retries)
            .finish()
    }
}

impl HostedReranker {
    /// Reads the API key (from `api_key_env` or `api_key_file`; a reload builds the
    /// reranker again when it changed) and prepares the client. Errors name the
    /// variable or file, never the key.
    pub fn new(
        name: &str,
        provider: Provider,
        cfg: &HostedConfig,
    ) -> Result<HostedReranker, String> {
        let dialect = Dialect::of(provider, cfg.api_version.as_deref());
        let base = cfg
            .base_url
            .as_deref()
            .or(provider.default_base_url())
            .ok_or_else(|| format!("{} is self-hosted: set its base_url", provider.name()))?;
        let url = join_url(base, dialect.path())?;
        if provider.needs_key() && cfg.model.is_none() {
            return Err(format!("{} needs a model name", provider.name()));
        }
        let key = Config::api_key(cfg)?;
        let source = || match (&cfg.api_key_env, &cfg.api_key_file) {
            (Some(var), _) => format!("environment variable {var}"),
            (None, Some(path)) => format!("file {}", path.display()),
            (None, None) => "configuration".into(),
        };
        match &key {
            Some(k) if k.is_empty() => return Err(format!("the API key in {} is empty", source())),
            None if provider.needs_key() => {
                return Err(format!(
                    "{} needs an API key: set api_key_env or api_key_file",
                    provider.name()
                ))
            }
            _ => {}
        }
        let mut auth = Vec::new();
        if let Some(k) = &key {
            let value = |v: String| {
                let mut v = HeaderValue::from_str(&v).map_err(|_| {
                    format!(
                        "the API key in {} has characters not allowed in an HTTP header",
                        source()
                    )
                })?;
                v.set_sensitive(true);
                Ok::<_, String>(v)
            };
            match dialect.auth() {
                Auth::Bearer => auth.push((AUTHORIZATION, value(format!("Bearer {k}"))?)),
                Auth::PineconeApiKey => {
                    auth.push((HeaderName::from_static("api-key"), value(k.clone())?));
                }
            }
        }
        if dialect.auth() == Auth::PineconeApiKey {
            auth.push((
                HeaderName::from_static("x-pinecone-api-version"),
                HeaderValue::from_static(PINECONE_API_VERSION),
            ));
        }
        let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
        let identity = identity(provider, dialect, &url, cfg.model.as_deref());
        Ok(HostedReranker {
            inner: Arc::new(Inner {
                name: name.to_string(),
                provider,
                dialect,
                model: cfg
                    .model
                    .clone()
                    .unwrap_or_else(|| provider.name().to_string()),
                send_model: cfg.model.clone(),
                url,
                key,
                auth,
                timeout,
                max_documents: AtomicUsize::new(
                    cfg.max_documents
                        .unwrap_or(provider.default_max_documents())
                        .max(1),
                ),
                max_retries: cfg.max_retries,
                client: build_client(timeout)?,
                identity,
            }),
        })
    }

    pub fn provider(&self) -> Provider {
        self.inner.provider
    }

    /// The wire format spoken (Cohere v1 or v2, ...).
    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// The full endpoint URL called.
    pub fn url(&self) -> &Uri {
        &self.inner.url
    }

    /// Documents sent per call now (`max_documents`, or less once the server refused
    /// a batch as too large).
    pub fn max_documents(&self) -> usize {
        self.inner.batch_limit()
    }
}

/// A hosted reranker's identity: the same model behind the same endpoint scores alike.
fn identity(
    provider: Provider,
    dialect: Dialect,
    url: &Uri,
    model: Option<&str>,
) -> crate::rerank::cache::Identity {
    let mut f = crate::rerank::cache::Fields::new("hosted");
    f.str("provider", provider.name())
        .str("dialect", &format!("{dialect:?}"))
        .str("url", &url.to_string())
        .str("model", model.unwrap_or(""));
    crate::rerank::cache::Identity::new(f)
}

impl Reranker for HostedReranker {
    fn model(&self) -> &str {
        &self.inner.model
    }

    fn identity(&self) -> crate::rerank::cache::Identity {
        self.inner.identity
    }

    fn score_kind(&self) -> ScoreKind {
        self.inner.dialect.score_kind()
    }

    fn provider(&self) -> &'static str {
        self.provider().name()
    }

    fn rerank(&self, request: RerankRequest) -> RerankFuture {
        let inner = self.inner.clone();
        Box::pin(async move {
            let RerankRequest {
                query,
                documents,
                deadline,
                ..
            } = request;
            if documents.is_empty() {
                return Ok(Vec::new());
            }
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Err(RerankError::Timeout(0));
            }
            let limit = inner.batch_limit();
            if documents.len() <= limit {
                return inner.call_split(&query, &documents, deadline).await;
            }
            let calls = documents
                .chunks(limit)
                .map(|chunk| inner.call_split(&query, chunk, deadline));
            let parts = futures_util::future::try_join_all(calls).await?;
            Ok(parts.concat())
        })
    }
}

type Scores<'a> = Pin<Box<dyn Future<Output = Result<Vec<f32>, RerankError>> + Send + 'a>>;

/// What one HTTP attempt gave.
enum Attempt {
    Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
    /// No answer; `connect` when the request never reached the server (safe to retry).
    Failed { connect: bool, message: String },
}

impl Inner {
    fn batch_limit(&self) -> usize {
        self.max_documents.load(Ordering::Relaxed)
    }

    /// [`Inner::call`], and when the server says the batch is too large, the two halves
    /// of it (recursively, so at most `2n - 1` calls, all within the deadline).
    fn call_split<'a>(
        &'a self,
        query: &'a str,
        documents: &'a [String],
        deadline: Option<Instant>,
    ) -> Scores<'a> {
        Box::pin(async move {
            let refused = match self.call(query, documents, deadline).await {
                Err(RerankError::Provider { status, message })
                    if documents.len() > 1 && wire::batch_too_large(status, &message) =>
                {
                    RerankError::Provider { status, message }
                }
                other => return other,
            };
            let half = documents.len().div_ceil(2);
            tracing::warn!(
                reranker = %self.name,
                documents = documents.len(),
                retry_with = half,
                error = %refused,
                "the rerank API refused a batch as too large; sending it in halves"
            );
            let (a, b) = documents.split_at(half);
            let (a, b) = futures_util::future::try_join(
                self.call_split(query, a, deadline),
                self.call_split(query, b, deadline),
            )
            .await?;
            // Halves went through: later calls start at that size.
            self.max_documents.fetch_min(half, Ordering::Relaxed);
            Ok([a, b].concat())
        })
    }

    /// One chunk of documents: attempts with retries, all inside the deadline.
    async fn call(
        &self,
        query: &str,
        documents: &[String],
        deadline: Option<Instant>,
    ) -> Result<Vec<f32>, RerankError> {
        let body = self
            .dialect
            .request_body(self.send_model.as_deref(), query, documents);
        let body =
            Bytes::from(serde_json::to_vec(&body).map_err(|e| {
                RerankError::BadResponse(format!("cannot encode the request: {e}"))
            })?);
        let mut attempt = 0u32;
        loop {
            let budget = match deadline {
                Some(d) => self
                    .timeout
                    .min(d.saturating_duration_since(Instant::now())),
                None => self.timeout,
            };
            if budget.is_zero() {
                return Err(RerankError::Timeout(0));
            }
            let (error, retry_after) =
                match tokio::time::timeout(budget, self.send(body.clone())).await {
                    Err(_) => return Err(RerankError::Timeout(budget.as_millis() as u64)),
                    Ok(Attempt::Failed { connect, message }) => {
                        let e = RerankError::Transport(wire::redact(&message, self.key.as_deref()));
                        if !connect {
                            return Err(e);
                        }
                        (e, None)
                    }
                    Ok(Attempt::Answer {
                        status,
                        headers,
                        body,
                    }) => {
                        if status.is_success() {
                            return self.dialect.parse_scores(&body, documents.len());
                        }
                        let message = wire::error_message(
                            &body,
                            self.key.as_deref(),
                            status.canonical_reason().unwrap_or("no message"),
                        );
                        let retry_after = retry::retry_after(&headers, SystemTime::now());
                        match status.as_u16() {
                            429 => (RerankError::RateLimited(message), retry_after),
                            s @ 500..=599 => {
                                (RerankError::Provider { status: s, message }, retry_after)
                            }
                            s => return Err(RerankError::Provider { status: s, message }),
                        }
                    }
                };
            if attempt >= self.max_retries {
                return Err(error);
            }
            // Never `now + wait`: a server may send any Retry-After (u64::MAX seconds).
            let wait = retry_after.unwrap_or_else(|| retry::backoff(attempt));
            let too_long = match deadline {
                Some(d) => wait >= d.saturating_duration_since(Instant::now()),
                None => wait > MAX_WAIT_WITHOUT_DEADLINE,
            };
            if too_long {
                return Err(error);
            }
            if crate::telemetry::enabled() {
                // The reranker attempt's span (see `Chain::run_cached`).
                tracing::Span::current().record("retries", i64::from(attempt) + 1);
            }
            tracing::debug!(
                reranker = %self.name,
                attempt = attempt + 1,
                wait_ms = wait.as_millis() as u64,
                error = %error,
                "retrying the rerank API"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn send(&self, body: Bytes) -> Attempt {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("secondpass/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in &self.auth {
            req = req.header(k, v.clone());
        }
        if let Some(headers) = req.headers_mut() {
            // The reranker attempt's span (see `Chain::run_cached`) is the parent.
            crate::telemetry::inject(&tracing::Span::current(), headers);
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Failed {
                    connect: false,
                    message: format!("cannot build the request: {e}"),
                }
            }
        };
        let resp = match self.client.request(req).await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Failed {
                    connect: e.is_connect(),
                    message: describe(&e),
                }
            }
        };
        let (parts, body) = resp.into_parts();
        match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
            Ok(b) => Attempt::Answer {
                status: parts.status,
                headers: parts.headers,
                body: b.to_bytes(),
            },
            Err(e) => Attempt::Failed {
                connect: false,
                message: format!("reading the answer: {e}"),
            },
        }
    }
}

fn build_client(connect_timeout: Duration) -> Result<HttpClient, String> {
    http_client::client(connect_timeout, None, Versions::Any)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: serde_json::Value) -> HostedConfig {
        serde_json::from_value(v).unwrap()
    }

    fn key_file(name: &str, key: &str) -> std::path::PathBuf {
        let p =
            std::env::temp_dir().join(format!("secondpass-hosted-{}-{name}", std::process::id()));
        std::fs::write(&p, format!("{key}\n")).unwrap();
        p
    }

    #[tokio::test]
    async fn construction_defaults_and_key_sources() {
        let path = key_file("ok", "sk-secret-123");
        let r = HostedReranker::new(
            "co",
            Provider::Cohere,
            &cfg(serde_json::json!({"model": "rerank-v3.5", "api_key_file": path})),
        )
        .unwrap();
        assert_eq!(r.url(), "https://api.cohere.com/v2/rerank");
        assert_eq!(r.model(), "rerank-v3.5");
        assert_eq!(r.score_kind(), ScoreKind::Probability);
        assert_eq!(r.provider(), Provider::Cohere);
        let dbg = format!("{r:?}");
        assert!(
            !dbg.contains("sk-secret-123") && dbg.contains("<redacted>"),
            "{dbg}"
        );

        let v1 = HostedReranker::new(
            "co",
            Provider::Cohere,
            &cfg(serde_json::json!({"model": "m", "api_key_file": path, "api_version": "v1"})),
        )
        .unwrap();
        assert_eq!(v1.dialect(), Dialect::CohereV1);
        assert_eq!(v1.url(), "https://api.cohere.com/v1/rerank");

        let tei = HostedReranker::new(
            "t",
            Provider::Tei,
            &cfg(serde_json::json!({"base_url": "http://tei:80/"})),
        )
        .unwrap();
        assert_eq!(tei.model(), "tei");
        assert_eq!(tei.score_kind(), ScoreKind::Logit);
        assert!(tei.inner.auth.is_empty());

        let pc = HostedReranker::new(
            "p",
            Provider::Pinecone,
            &cfg(serde_json::json!({"model": "bge-reranker-v2-m3", "api_key_file": path})),
        )
        .unwrap();
        let names: Vec<&str> = pc.inner.auth.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["api-key", "x-pinecone-api-version"]);
        assert!(pc.inner.auth[0].1.is_sensitive());
        std::fs::remove_file(path).unwrap();
    }

    #[tokio::test]
    async fn construction_errors_name_the_source_never_the_value() {
        let err = HostedReranker::new(
            "co",
            Provider::Cohere,
            &cfg(serde_json::json!({"model": "m", "api_key_env": "SECONDPASS_TEST_SURELY_UNSET_KEY"})),
        )
        .unwrap_err();
        assert!(err.contains("SECONDPASS_TEST_SURELY_UNSET_KEY"), "{err}");

        let err = HostedReranker::new(
            "co",
            Provider::Cohere,
            &cfg(serde_json::json!({"model": "m", "api_key_file": "/nonexistent/secondpass-key"})),
        )
        .unwrap_err();
        assert!(err.contains("/nonexistent/secondpass-key"), "{err}");

        let path = key_file("bad", "sk-with\u{7}bell");
        let err = HostedReranker::new(
            "co",
            Provider::Cohere,
            &cfg(serde_json::json!({"model": "m", "api_key_file": path})),
        )
        .unwrap_err();
        assert!(
            err.contains("not allowed") && !err.contains("sk-with"),
            "{err}"
        );
        std::fs::remove_file(path).unwrap();

        let err = HostedReranker::new(
            "co",
            Provider::Cohere,
            &cfg(serde_json::json!({"model": "m"})),
        )
        .unwrap_err();
        assert!(err.contains("needs an API key"), "{err}");
        let err = HostedReranker::new("t", Provider::Tei, &cfg(serde_json::json!({}))).unwrap_err();
        assert!(err.contains("base_url"), "{err}");
    }

    #[tokio::test]
    async fn past_deadline_and_empty_requests_do_not_call() {
        let r = HostedReranker::new(
            "t",
            Provider::Tei,
            &cfg(serde_json::json!({"base_url": "http://127.0.0.1:9"})),
        )
        .unwrap();
        let req = |documents: Vec<String>, deadline| RerankRequest {
            deadline,
            ..RerankRequest::new("q", documents)
        };
        assert_eq!(
            r.rerank(req(vec![], None)).await.unwrap(),
            Vec::<f32>::new()
        );
        let past = Instant::now() - Duration::from_millis(1);
        assert!(matches!(
            r.rerank(req(vec!["d".into()], Some(past))).await,
            Err(RerankError::Timeout(_))
        ));
    }
}
