//! Local stand-ins for the hosted rerank APIs secondpass speaks (Cohere v1/v2, Voyage, Jina,
//! Pinecone, Mixedbread, ZeroEntropy, TEI, llama.cpp, Infinity), strict about the documented
//! request and answering in the documented shapes.
//!
//! Each stub enforces, in this order (failures answered in the API's own error style):
//! 1. method `POST` and the documented path (after an optional gateway prefix): else 404/405;
//! 2. authentication exactly as documented, when the stub has a key: `Authorization:
//!    Bearer <key>`, or for Pinecone `Api-Key: <key>` plus `X-Pinecone-Api-Version:
//!    2026-07` (what pinecone 10.2.0's SDK sends; a wrong version is a 400). A wrong key is a 401 whose message quotes the
//!    credential received, so clients' redaction can be tested (TEI's 401 has no body);
//! 3. `Content-Type: application/json` (else 415) and a JSON object body;
//! 4. the documented fields only: unknown fields, missing required ones and wrong types
//!    are rejected (400 for Cohere, Pinecone and llama.cpp; 422 elsewhere);
//! 5. at most the documents the server takes by default ([`Api::max_documents`]: TEI's
//!    `--max-client-batch-size` 32, Voyage's 1000, Pinecone's 100, Cohere's 10,000),
//!    else the API's validation error saying so (TEI: 422 `batch size N > maximum
//!    allowed batch size 32`);
//! 6. the [`Behaviour`] programmed (429 with `Retry-After`, 500, a slow answer, ...).
//!
//! Scores are deterministic: the share of the query's distinct words found in the document
//! ([`word_overlap`]); 0..1 APIs return it as is, TEI, llama.cpp and Infinity return the
//! logit `8 × overlap − 4` (TEI and Infinity apply a sigmoid unless asked for `raw_scores`).
//! Results are sorted best first (ties by index), never in input order, and cut to
//! `top_n`/`top_k`.

mod spec;

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::Value;
use tokio::task::JoinHandle;

use spec::{AuthStyle, Endpoint, Failure, Ranked};

/// The API a stub imitates. Names match secondpass's `Provider::name()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
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

impl Api {
    pub const ALL: [Api; 9] = [
        Api::Cohere,
        Api::Voyage,
        Api::Jina,
        Api::Pinecone,
        Api::Mixedbread,
        Api::ZeroEntropy,
        Api::Tei,
        Api::LlamaCpp,
        Api::Infinity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Api::Cohere => "cohere",
            Api::Voyage => "voyage",
            Api::Jina => "jina",
            Api::Pinecone => "pinecone",
            Api::Mixedbread => "mixedbread",
            Api::ZeroEntropy => "zeroentropy",
            Api::Tei => "tei",
            Api::LlamaCpp => "llamacpp",
            Api::Infinity => "infinity",
        }
    }

    pub fn from_name(name: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether the API's raw scores are logits (TEI and Infinity with `raw_scores`,
    /// llama.cpp always) rather than 0..1 relevance.
    pub fn logits(self) -> bool {
        matches!(self, Api::Tei | Api::LlamaCpp | Api::Infinity)
    }

    /// Documents one request may carry by the server's default or documented limit
    /// (`None`: none documented).
    pub fn max_documents(self) -> Option<usize> {
        match self {
            Api::Tei => Some(32),
            Api::Voyage => Some(1000),
            Api::Pinecone => Some(100),
            Api::Cohere => Some(10_000),
            _ => None,
        }
    }

    /// The documented paths served (Cohere: `/v2/rerank` and `/v1/rerank`).
    pub fn paths(self) -> Vec<&'static str> {
        self.endpoints().iter().map(|e| e.path).collect()
    }
}

/// How a `Retry-After` header is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// delta-seconds
    Seconds(u64),
    /// an IMF-fixdate this many seconds from now (whole seconds: the wait is between
    /// `secs - 1` and `secs`)
    HttpDate { secs_from_now: u64 },
    /// this exact header value
    Raw(&'static str),
}

/// What a stub does with requests that pass validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer with scores.
    #[default]
    Normal,
    /// Always a 422 in the API's validation-error style.
    Reject422,
    /// The first request gets a 429 with this `Retry-After`, later ones scores.
    RateLimitedThenOk(RetryAfter),
    /// The first request gets a 500, later ones scores.
    ServerErrorThenOk,
    /// Every request gets a 500.
    AlwaysServerError,
    /// Answer with scores after this delay.
    Slow(Duration),
    /// Answer with the best result scored 1e39 and the worst -1e39 (beyond f32).
    ScoresBeyondF32,
}

#[derive(Debug, Clone, Default)]
pub struct StubOptions {
    /// The key requests must carry; `None`: no authentication (self-hosted servers).
    pub api_key: Option<String>,
    pub behaviour: Behaviour,
    /// A path prefix the stub is mounted under (a gateway), e.g. `/gw/cohere`.
    pub path_prefix: String,
    /// Most documents a request may carry; `None`: the API's own ([`Api::max_documents`]).
    pub max_documents: Option<usize>,
}

/// One request the stub received, and what it answered.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub method: String,
    /// path without the prefix
    pub path: String,
    pub headers: HeaderMap,
    /// the body, when it was JSON
    pub body: Option<Value>,
    pub at: Instant,
    /// the status answered
    pub status: u16,
}

impl LoggedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Number of documents sent.
    pub fn document_count(&self) -> usize {
        let body = match &self.body {
            Some(b) => b,
            None => return 0,
        };
        ["documents", "input", "texts"]
            .iter()
            .find_map(|k| body.get(*k).and_then(Value::as_array))
            .map_or(0, Vec::len)
    }
}

struct StubState {
    api: Api,
    options: StubOptions,
    log: Mutex<Vec<LoggedRequest>>,
    /// requests that passed validation (drives the "then OK" behaviours)
    accepted: AtomicU32,
    /// what it does now: `options.behaviour` until [`ProviderStub::set_behaviour`]
    behaviour: Mutex<Behaviour>,
}

/// A running stub; dropping it stops the server.
pub struct ProviderStub {
    pub addr: SocketAddr,
    pub api: Api,
    state: Arc<StubState>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for ProviderStub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderStub")
            .field("api", &self.api)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ProviderStub {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(api: Api, options: StubOptions) -> ProviderStub {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .expect("bind a local port");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(StubState {
            api,
            behaviour: Mutex::new(options.behaviour.clone()),
            options,
            log: Mutex::new(Vec::new()),
            accepted: AtomicU32::new(0),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ProviderStub {
            addr,
            api,
            state,
            task,
        }
    }

    /// The base URL to configure: `http://127.0.0.1:PORT` plus the path prefix.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.state.options.path_prefix)
    }

    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn calls(&self) -> usize {
        self.state.log.lock().unwrap().len()
    }

    /// Changes what the stub does with requests from now on (a provider that fails,
    /// hangs, then recovers).
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }
}

impl Drop for ProviderStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Share of the query's distinct words (lowercase alphanumeric runs) present in the
/// document; 0 for an empty query.
pub fn word_overlap(query: &str, document: &str) -> f64 {
    let words = |s: &str| -> std::collections::BTreeSet<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let q = words(query);
    if q.is_empty() {
        return 0.0;
    }
    let d = words(document);
    q.intersection(&d).count() as f64 / q.len() as f64
}

/// The logit the self-hosted stubs give an overlap.
pub fn overlap_logit(overlap: f64) -> f64 {
    8.0 * overlap - 4.0
}

/// The raw score a client asking for raw scores should report: the overlap for 0..1 APIs,
/// its logit for TEI, llama.cpp and Infinity.
pub fn expected_score(api: Api, query: &str, document: &str) -> f32 {
    let o = word_overlap(query, document);
    if api.logits() {
        overlap_logit(o) as f32
    } else {
        o as f32
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), as sent in `Retry-After`.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // civil_from_days (H. Hinnant)
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// An answer and how long to hold it.
struct Answer {
    status: u16,
    headers: Vec<(header::HeaderName, String)>,
    body: Option<Value>,
    delay: Option<Duration>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Some(body),
            delay: None,
        }
    }

    fn error(api: Api, failure: Failure, message: &str, field: Option<&str>) -> Answer {
        Answer {
            status: spec::failure_status(api, failure),
            headers: Vec::new(),
            body: spec::error_body(api, failure, message, field),
            delay: None,
        }
    }

    fn with_status(mut self, status: u16) -> Answer {
        self.status = status;
        self
    }

    fn into_response(self) -> Response {
        let mut b = Response::builder()
            .status(StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        for (k, v) in self.headers {
            b = b.header(k, v);
        }
        match self.body {
            Some(v) => b
                .header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        }
        .expect("a valid response")
    }
}

async fn handle(State(state): State<Arc<StubState>>, req: Request) -> Result<Response, Infallible> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let json: Option<Value> = serde_json::from_slice(&bytes).ok();
    let full_path = parts.uri.path().to_string();
    let path = full_path
        .strip_prefix(state.options.path_prefix.as_str())
        .filter(|p| p.starts_with('/'))
        .map(str::to_string);
    let answer = state.answer(
        &parts.method,
        path.as_deref(),
        &parts.headers,
        json.as_ref(),
    );
    state.log.lock().unwrap().push(LoggedRequest {
        method: parts.method.to_string(),
        path: path.unwrap_or(full_path),
        headers: parts.headers.clone(),
        body: json,
        at: Instant::now(),
        status: answer.status,
    });
    if let Some(d) = answer.delay {
        tokio::time::sleep(d).await;
    }
    Ok(answer.into_response())
}

impl StubState {
    fn answer(
        &self,
        method: &Method,
        path: Option<&str>,
        headers: &HeaderMap,
        body: Option<&Value>,
    ) -> Answer {
        let api = self.api;
        // 1. route
        let ep: &Endpoint = match path.and_then(|p| api.endpoints().iter().find(|e| e.path == p)) {
            Some(ep) => ep,
            None => {
                return Answer::error(
                    api,
                    Failure::NotFound,
                    &format!("no route {}", path.unwrap_or("(outside the prefix)")),
                    None,
                )
            }
        };
        if method != Method::POST {
            return Answer::error(
                api,
                Failure::NotFound,
                &format!("method {method} not allowed"),
                None,
            )
            .with_status(405);
        }
        // 2. authenticate
        if let Some(a) = self.authenticate(headers) {
            return a;
        }
        // 3. content type and JSON
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.to_ascii_lowercase().starts_with("application/json") {
            return Answer::error(
                api,
                Failure::Invalid,
                &format!("unsupported content type `{ct}`"),
                None,
            )
            .with_status(415);
        }
        let body = match body {
            Some(b) => b,
            None => {
                return Answer::error(
                    api,
                    Failure::Invalid,
                    "the body is not valid JSON",
                    Some("body"),
                )
            }
        };
        // 4. the documented fields only
        if let Err((field, msg)) = spec::validate(ep, body) {
            return Answer::error(api, Failure::Invalid, &msg, Some(&field));
        }
        // 5. the server's batch limit
        let docs = body[ep.documents].as_array().map_or(0, Vec::len);
        if let Some(max) = self.options.max_documents.or(self.api.max_documents()) {
            if docs > max {
                let message = match api {
                    Api::Tei => format!("batch size {docs} > maximum allowed batch size {max}"),
                    _ => format!(
                        "The number of documents ({docs}) exceeds the maximum allowed ({max})"
                    ),
                };
                return Answer::error(api, Failure::Invalid, &message, Some(ep.documents));
            }
        }
        // 6. the programmed behaviour
        let n = self.accepted.fetch_add(1, Ordering::SeqCst);
        let mut delay = None;
        let behaviour = self.behaviour.lock().unwrap().clone();
        match &behaviour {
            Behaviour::Normal => {}
            Behaviour::Reject422 => {
                return Answer::error(
                    api,
                    Failure::Invalid,
                    "the stub rejects this request",
                    Some("query"),
                )
                .with_status(422)
            }
            Behaviour::RateLimitedThenOk(ra) if n == 0 => {
                let value = match *ra {
                    RetryAfter::Seconds(s) => s.to_string(),
                    RetryAfter::HttpDate { secs_from_now } => {
                        http_date(SystemTime::now() + Duration::from_secs(secs_from_now))
                    }
                    RetryAfter::Raw(v) => v.to_string(),
                };
                let mut a = Answer::error(
                    api,
                    Failure::RateLimited,
                    "rate limit exceeded, slow down",
                    None,
                );
                a.headers.push((header::RETRY_AFTER, value));
                return a;
            }
            Behaviour::RateLimitedThenOk(_) => {}
            Behaviour::ServerErrorThenOk if n == 0 => {
                return Answer::error(api, Failure::Internal, "internal server error", None)
            }
            Behaviour::ServerErrorThenOk => {}
            Behaviour::AlwaysServerError => {
                return Answer::error(api, Failure::Internal, "internal server error", None)
            }
            Behaviour::Slow(d) => delay = Some(*d),
            Behaviour::ScoresBeyondF32 => {}
        }
        let mut a = Answer::json(200, self.scores(ep, body));
        a.delay = delay;
        a
    }

    /// `Some(answer)` when the request does not authenticate.
    fn authenticate(&self, headers: &HeaderMap) -> Option<Answer> {
        let api = self.api;
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if api.auth_style() == AuthStyle::Pinecone {
            match get("x-pinecone-api-version") {
                Some("2026-07") => {}
                other => {
                    return Some(Answer::error(
                        api,
                        Failure::Invalid,
                        &format!("unsupported or missing X-Pinecone-Api-Version: {other:?}"),
                        None,
                    ))
                }
            }
        }
        let key = self.options.api_key.as_deref()?;
        let (ok, received) = match api.auth_style() {
            AuthStyle::Bearer => {
                let got = get("authorization");
                (got == Some(&format!("Bearer {key}")), got)
            }
            AuthStyle::Pinecone => {
                let got = get("api-key");
                (got == Some(key), got)
            }
        };
        if ok {
            return None;
        }
        let message = match received {
            Some(r) => format!("invalid api token: {r}"),
            None => "no api key supplied".to_string(),
        };
        Some(Answer::error(api, Failure::Unauthorized, &message, None))
    }

    fn scores(&self, ep: &Endpoint, body: &Value) -> Value {
        let api = self.api;
        let query = body["query"].as_str().unwrap_or_default();
        let texts = spec::document_texts(ep, body);
        let raw = ep
            .raw_flag
            .map(|f| body.get(f).and_then(Value::as_bool).unwrap_or(false))
            .unwrap_or(true);
        let mut ranked: Vec<Ranked> = texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let o = word_overlap(query, text);
                let score = match (api.logits(), raw) {
                    (false, _) => o,
                    (true, true) => overlap_logit(o),
                    (true, false) => 1.0 / (1.0 + (-overlap_logit(o)).exp()),
                };
                Ranked {
                    index,
                    score,
                    text: text.clone(),
                }
            })
            .collect();
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
        if *self.behaviour.lock().unwrap() == Behaviour::ScoresBeyondF32 {
            if let Some(best) = ranked.first_mut() {
                best.score = 1e39;
            }
            if ranked.len() > 1 {
                if let Some(worst) = ranked.last_mut() {
                    worst.score = -1e39;
                }
            }
        }
        if let Some(top) = body.get(ep.top).and_then(Value::as_u64) {
            ranked.truncate(top as usize);
        }
        let echo = ep.echo.is_some_and(|f| {
            body.get(f)
                .and_then(Value::as_bool)
                .unwrap_or(default_echo(api))
        });
        let model = body["model"].as_str().unwrap_or("stub-model");
        let tokens = texts
            .iter()
            .map(|t| t.split_whitespace().count())
            .sum::<usize>()
            + query.split_whitespace().count();
        spec::success_body(ep.shape, model, &ranked, echo, tokens)
    }
}

/// Whether documents are echoed when the flag is absent (Pinecone's default is true).
fn default_echo(api: Api) -> bool {
    api == Api::Pinecone
}
