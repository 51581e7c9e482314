//! Harness for end-to-end tests: secondpass on port 0 in front of the real Qdrant
//! (`secondpass_it::real_qdrant`; through a `secondpass_it::relay` where a test checks
//! what was sent upstream), with the real shared cross-encoder.

#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use secondpass::config::{Config, OnnxConfig};
use secondpass::rerank::onnx::OnnxReranker;
use secondpass::rerank::{sigmoid, Registry, RerankRequest, Reranker};
use secondpass::{AppState, Server};
use secondpass_it::real_qdrant::RealQdrant;
use secondpass_it::recordings;
use secondpass_it::relay::Relay;

pub mod scenario;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn model_dir() -> PathBuf {
    recordings::shared_dir().join("models/cranfield-minilm-l6-ce")
}

/// The shared model's settings in tests: CPU, max length 128, batches of 32.
pub fn model_config() -> OnnxConfig {
    OnnxConfig {
        max_length: 128,
        batch_size: Some(32),
        queue_capacity: 64,
        runtime_path: Some(runtime_path()),
        max_batch_tokens: Some(8192),
        device: "cpu".into(),
        ..OnnxConfig::new(model_dir())
    }
}

/// The shared model, loaded once per test binary (its worker threads do not depend
/// on any one test's runtime).
pub fn model() -> Arc<OnnxReranker> {
    static MODEL: OnceLock<Arc<OnnxReranker>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            Arc::new(
                OnnxReranker::load(&model_config())
                    .expect("load the shared model (run scripts/setup)"),
            )
        })
        .clone()
}

/// The sigmoid scores the model gives `docs` for `query`.
pub async fn expected_scores(query: &str, docs: &[String]) -> Vec<f32> {
    model()
        .rerank(RerankRequest::new(query, docs.to_vec()))
        .await
        .unwrap()
        .into_iter()
        .map(sigmoid)
        .collect()
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// as received (still compressed when the server compressed it)
    pub raw: Bytes,
    /// after undoing `content-encoding: gzip`
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn request(
    c: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Resp {
    let mut req = Request::builder().method(method).uri(url);
    // A real Qdrant with an API key (scripts/test's own has none).
    if let Ok(key) = std::env::var("QDRANT_API_KEY") {
        req = req.header("api-key", key);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Full::new(Bytes::from(serde_json::to_vec(b).unwrap()))
        }
        None => Full::new(Bytes::new()),
    };
    let resp = c.request(req.body(body).unwrap()).await.expect("request");
    let (parts, body) = resp.into_parts();
    let raw = body.collect().await.expect("body").to_bytes();
    let body = gunzip(&parts.headers, raw.clone());
    Resp {
        status: parts.status,
        headers: parts.headers,
        raw,
        body,
    }
}

/// `raw` without its `content-encoding: gzip`, if it has one.
pub fn gunzip(headers: &HeaderMap, raw: Bytes) -> Bytes {
    if headers.get("content-encoding").is_none_or(|v| v != "gzip") {
        return raw;
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .expect("valid gzip");
    Bytes::from(out)
}

/// The recorded request bodies that build the test data (`docs`, `hybrid`).
pub fn recorded_request(name: &str) -> Value {
    recordings::rest_request(name)
}

/// The shared model (loaded once) as `local`, and every hosted reranker of `cfg`.
pub fn registry(cfg: &Config) -> Registry {
    let mut registry = Registry::default();
    registry.insert("local", model());
    for (name, rc) in &cfg.rerankers {
        if let Some((provider, h)) = rc.hosted() {
            let r = secondpass::rerank::hosted::HostedReranker::new(name, provider, h)
                .expect("hosted reranker");
            registry.insert(name.clone(), Arc::new(r));
        }
    }
    registry
}

pub struct Proxy {
    pub server: Server,
    /// where [`Proxy::direct`] calls go: Qdrant itself, also when a relay is between
    pub upstream: String,
    pub client: HttpClient,
}

/// `libonnxruntime.so` as `scripts/setup` installs it (tests run in the crate folder).
pub fn runtime_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.local/onnxruntime/lib/libonnxruntime.so"
    ))
}

/// Config for tests: listeners on port 0, reranking on for `collections`, `extra`
/// appended (TOML; a `[collections.X]` section there gets `enabled = true` added when X
/// is in `collections`).
pub fn config(upstream: &str, collections: &[&str], extra: &str) -> Config {
    config_with_grpc(upstream, "http://127.0.0.1:1", collections, extra)
}

/// The TOML text of [`config`] (for tests that write it to a file).
pub fn config_text(upstream: &str, extra: &str) -> String {
    format!(
        r#"
[server]
rest_listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[upstream]
url = "{upstream}"
grpc_url = "http://127.0.0.1:1"
[rerankers.local]
kind = "onnx"
model_dir = "{}"
runtime_path = "{}"
max_length = 128
{extra}"#,
        model_dir().display(),
        runtime_path().display()
    )
}

/// [`config`] with a gRPC upstream too.
pub fn config_with_grpc(
    upstream: &str,
    grpc_upstream: &str,
    collections: &[&str],
    extra: &str,
) -> Config {
    let mut text = format!(
        r#"
[server]
rest_listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
shutdown_grace_ms = 5000
[upstream]
url = "{upstream}"
grpc_url = "{grpc_upstream}"
timeout_ms = 5000
connect_timeout_ms = 1000
[rerankers.local]
kind = "onnx"
model_dir = "{}"
runtime_path = "{}"
max_length = 128
"#,
        model_dir().display(),
        runtime_path().display()
    );
    let mut extra = extra.to_string();
    for c in collections {
        let header = format!("[collections.{c}]\n");
        if extra.contains(&header) {
            extra = extra.replace(&header, &format!("{header}enabled = true\n"));
        } else {
            text.push_str(&format!("{header}enabled = true\n"));
        }
    }
    text.push_str(&extra);
    Config::from_toml(&text).expect("test config")
}

impl Proxy {
    /// secondpass with the shared model as `local` and the configured hosted rerankers.
    pub async fn start(cfg: Config) -> Proxy {
        let registry = registry(&cfg);
        Proxy::start_with(cfg, registry).await
    }

    /// secondpass with the configuration in `path` (so that it can be reloaded), the
    /// shared model as `local`, and run-time changes restored from its overrides file.
    pub async fn start_from_file(path: &std::path::Path) -> Proxy {
        let cfg = Config::load(Some(path)).expect("test config file");
        let upstream = cfg.upstream.url.clone();
        let registry = registry(&cfg);
        let mut state = AppState::new(cfg, registry).expect("state");
        state.config_path = Some(path.to_path_buf());
        state.restore_overrides().expect("overrides");
        let server = Server::start(state).await.expect("start secondpass");
        Proxy {
            server,
            upstream,
            client: client(),
        }
    }

    pub async fn start_with(cfg: Config, registry: Registry) -> Proxy {
        let upstream = cfg.upstream.url.clone();
        let server = Server::start(AppState::new(cfg, registry).expect("state"))
            .await
            .expect("start secondpass");
        Proxy {
            server,
            upstream,
            client: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.rest_addr)
    }

    pub fn admin(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.admin_addr)
    }

    pub fn direct(&self, path: &str) -> String {
        format!("{}{path}", self.upstream)
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Resp {
        request(
            &self.client,
            Method::POST,
            &self.url(path),
            headers,
            Some(body),
        )
        .await
    }

    pub async fn post_direct(&self, path: &str, body: &Value) -> Resp {
        request(
            &self.client,
            Method::POST,
            &self.direct(path),
            &[],
            Some(body),
        )
        .await
    }

    pub async fn get_admin(&self, path: &str) -> Resp {
        request(&self.client, Method::GET, &self.admin(path), &[], None).await
    }

    /// Deletes collection `name` through the proxy; a missing one is fine (clean-up).
    pub async fn drop_collection(&self, name: &str) {
        let url = self.url(&format!("/collections/{name}"));
        let _ = request(&self.client, Method::DELETE, &url, &[], None).await;
    }

    /// Creates `name` with the `docs` data (and `hybrid` data when `hybrid`) through
    /// the proxy, as a client would.
    pub async fn seed(&self, name: &str, hybrid: bool) {
        let (create, upsert) = if hybrid {
            ("hybrid-create", "hybrid-upsert-bm25-documents")
        } else {
            ("create-collection", "upsert")
        };
        self.drop_collection(name).await;
        let r = request(
            &self.client,
            Method::PUT,
            &self.url(&format!("/collections/{name}")),
            &[],
            Some(&recorded_request(create)),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "create {name}: {:?}", r.body);
        let r = request(
            &self.client,
            Method::PUT,
            &self.url(&format!("/collections/{name}/points?wait=true")),
            &[],
            Some(&recorded_request(upsert)),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "upsert {name}: {:?}", r.body);
    }
}

/// Text of every point of the `docs` data by id (as JSON string), as the proxy's
/// default `text_field` reads it.
pub fn texts_by_id() -> Vec<(Value, Option<String>)> {
    recorded_request("upsert")["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let t = match &p["payload"]["text"] {
                Value::String(s) => Some(s.clone()),
                Value::Array(a) => Some(
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                _ => None,
            };
            (p["id"].clone(), t)
        })
        .collect()
}

/// The ids in a list of points.
pub fn ids(points: &Value) -> Vec<Value> {
    points
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["id"].clone())
        .collect()
}

/// The model's order for `query` over `candidates` (ids in Qdrant's order): scored ones
/// by score descending, ties and those without text in Qdrant's order.
pub async fn model_order(query: &str, candidates: &[Value]) -> Vec<(Value, Option<f32>)> {
    let texts = texts_by_id();
    let text_of = |id: &Value| {
        texts
            .iter()
            .find(|(i, _)| i == id)
            .and_then(|(_, t)| t.clone())
    };
    let with_text: Vec<(Value, String)> = candidates
        .iter()
        .filter_map(|id| text_of(id).map(|t| (id.clone(), t)))
        .collect();
    let docs: Vec<String> = with_text.iter().map(|(_, t)| t.clone()).collect();
    let scores = expected_scores(query, &docs).await;
    let mut scored: Vec<(Value, Option<f32>)> = with_text
        .into_iter()
        .zip(scores)
        .map(|((id, _), s)| (id, Some(s)))
        .collect();
    scored.sort_by(|a, b| b.1.unwrap().total_cmp(&a.1.unwrap()));
    for id in candidates {
        if text_of(id).is_none() {
            scored.push((id.clone(), None));
        }
    }
    scored
}

pub fn query_vector() -> Value {
    json!([0.2, 0.1, 0.9, 0.7])
}

/// The gRPC `Query` of [`query_vector`]: the nearest points to it.
pub fn grpc_nearest(collection: &str, limit: u64) -> qdrant_client::qdrant::QueryPoints {
    use qdrant_client::qdrant::{query, vector_input, DenseVector, Query, VectorInput};
    qdrant_client::qdrant::QueryPoints {
        collection_name: collection.into(),
        query: Some(Query {
            variant: Some(query::Variant::Nearest(VectorInput {
                variant: Some(vector_input::Variant::Dense(DenseVector {
                    data: vec![0.2, 0.1, 0.9, 0.7],
                })),
            })),
        }),
        limit: Some(limit),
        ..Default::default()
    }
}

/// The real Qdrant this test binary shares (see `secondpass_it::real_qdrant`).
pub fn qdrant() -> &'static RealQdrant {
    RealQdrant::shared()
}

/// secondpass in front of the shared real Qdrant (REST and gRPC).
pub async fn proxy(collections: &[&str], extra: &str) -> Proxy {
    let q = qdrant();
    Proxy::start(config_with_grpc(&q.url, &q.grpc_url, collections, extra)).await
}

/// secondpass whose REST upstream is a relay in front of the shared real Qdrant (gRPC
/// goes straight to Qdrant); `direct` calls bypass the relay.
pub async fn relayed(collections: &[&str], extra: &str) -> (Relay, Proxy) {
    let q = qdrant();
    let relay = Relay::start(&q.url).await;
    let mut proxy = Proxy::start(config_with_grpc(
        &relay.url(),
        &q.grpc_url,
        collections,
        extra,
    ))
    .await;
    proxy.upstream = q.url.clone();
    (relay, proxy)
}

/// Sends `body` over a raw connection, writing and reading at once (as curl does), so
/// that an answer sent before the body is read reaches this client too: the whole
/// answer as text (empty when none came).
pub async fn send_raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        // This write may fail once the answer has come.
        let _ = wr.write_all(&body).await;
        // Dropping the write half would half-close the connection, which a server
        // takes as the client gone (hyper drops its answer): kept open, as curl does.
        std::future::pending::<()>().await;
        drop(wr);
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    writer.abort();
    String::from_utf8_lossy(&answer).to_string()
}
