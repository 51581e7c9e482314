//! The HTTP side: one fallback handler that records the request, applies the artificial delay,
//! routes by path segments, and renders Qdrant's envelope with Qdrant's headers (gzip when the
//! client accepts it, sent chunked; plain with a content length otherwise; an unknown path is a
//! 404 with an empty body).

use std::convert::Infallible;
use std::io::{Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Map, Value};

use super::api;
use super::errors::{ApiError, ApiResult};
use super::{DoubleState, RecordedBody, RecordedRequest};

const VARY_COMPRESSED: &str =
    "accept-encoding, Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
const VARY_EMPTY: &str = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

pub enum Reply {
    /// `{"result": ..., "status": "ok", "time": ...}`
    Ok(Value),
    /// a JSON body without the envelope (`GET /`)
    Raw(Value),
    Text(&'static str),
    Err(ApiError),
    /// unknown path: 404, empty body
    NotFound,
}

impl From<ApiResult<Value>> for Reply {
    fn from(r: ApiResult<Value>) -> Reply {
        match r {
            Ok(v) => Reply::Ok(v),
            Err(e) => Reply::Err(e),
        }
    }
}

pub async fn handle(State(state): State<DoubleState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let raw = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let body = match decode_request_body(&parts.headers, raw) {
        Ok(b) => b,
        Err(e) => return render(Reply::Err(e), accepts_gzip(&parts.headers), Instant::now()),
    };
    state.record(RecordedRequest {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: RecordedBody::from_bytes(&body),
    });
    if let Some(d) = state.delay() {
        tokio::time::sleep(d).await;
    }
    let start = Instant::now();
    let reply = route(
        &state,
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        &body,
    );
    render(reply, accepts_gzip(&parts.headers), start)
}

/// One REST call run directly on the state, without HTTP: no request-log entry, no delay, no
/// envelope. `Ok` is the `result` (or the raw JSON of `GET /`); a path the double does not know is
/// a 404 error with an empty message. The gRPC double answers through this.
pub(crate) fn call(
    state: &DoubleState,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> ApiResult<Value> {
    match route(state, method, path, query, body) {
        Reply::Ok(v) | Reply::Raw(v) => Ok(v),
        Reply::Text(t) => Ok(Value::String(t.to_string())),
        Reply::Err(e) => Err(e),
        Reply::NotFound => Err(ApiError::new(StatusCode::NOT_FOUND, "")),
    }
}

fn decode_request_body(headers: &HeaderMap, raw: Bytes) -> ApiResult<Bytes> {
    let gz = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if !gz || raw.is_empty() {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| ApiError::format(format!("cannot decode gzip body: {e}")))?;
    Ok(out.into())
}

/// `accept-encoding` lists gzip (with a non-zero q).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').any(|item| {
                let mut parts = item.split(';');
                let name = parts.next().unwrap_or("").trim();
                let q_zero = parts.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
                });
                name.eq_ignore_ascii_case("gzip") && !q_zero
            })
        })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_flag(query: Option<&str>, name: &str) -> bool {
    query.unwrap_or("").split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        k == name && (v.is_empty() || v.eq_ignore_ascii_case("true"))
    })
}

fn route(
    state: &DoubleState,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Reply {
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let wait = query_flag(query, "wait");
    let mut guard = state.store();
    let store = &mut *guard;
    let m = method.clone();
    match (m, segs.as_slice()) {
        (Method::GET, [""]) => Reply::Raw(
            serde_json::json!({"title": "qdrant - vector search engine", "version": "1.18.3"}),
        ),
        (Method::GET, ["healthz"]) | (Method::GET, ["livez"]) => {
            Reply::Text("healthz check passed")
        }
        (Method::GET, ["readyz"]) => Reply::Text("all shards are ready"),
        (Method::GET, ["collections"]) => Reply::Ok(api::list_collections(store)),
        (Method::GET, ["collections", c]) => api::collection_info(store, c).into(),
        (Method::PUT, ["collections", c]) => api::create_collection(store, c, body).into(),
        (Method::PATCH, ["collections", c]) => api::update_collection(store, c, body).into(),
        (Method::DELETE, ["collections", c]) => Reply::Ok(api::delete_collection(store, c)),
        (Method::GET, ["collections", c, "exists"]) => Reply::Ok(api::collection_exists(store, c)),
        (Method::PUT, ["collections", c, "points"]) => api::upsert(store, c, body, wait).into(),
        (Method::POST, ["collections", c, "points"]) => api::retrieve(store, c, body).into(),
        (Method::POST, ["collections", c, "points", "delete"]) => {
            api::delete_points(store, c, body, wait).into()
        }
        (Method::POST, ["collections", c, "points", "payload"]) => {
            api::set_payload(store, c, body, wait, false).into()
        }
        (Method::PUT, ["collections", c, "points", "payload"]) => {
            api::set_payload(store, c, body, wait, true).into()
        }
        (Method::POST, ["collections", c, "points", "payload", "delete"]) => {
            api::delete_payload(store, c, body, wait).into()
        }
        (Method::POST, ["collections", c, "points", "payload", "clear"]) => {
            api::clear_payload(store, c, body, wait).into()
        }
        (Method::POST, ["collections", c, "points", op @ ..]) => {
            let f: fn(&super::store::Store, &str, &[u8]) -> ApiResult<Value> = match op {
                ["search"] => api::search,
                ["search", "batch"] => api::search_batch,
                ["search", "groups"] => api::search_groups,
                ["query"] => api::query,
                ["query", "batch"] => api::query_batch,
                ["query", "groups"] => api::query_groups,
                ["recommend"] => api::recommend,
                ["recommend", "batch"] => api::recommend_batch,
                ["recommend", "groups"] => api::recommend_groups,
                ["discover"] => api::discover,
                ["discover", "batch"] => api::discover_batch,
                ["scroll"] => api::scroll,
                ["count"] => api::count,
                _ => return Reply::NotFound,
            };
            f(store, c, body).into()
        }
        (Method::GET, ["collections", c, "points", id]) => api::get_point(store, c, id).into(),
        _ => Reply::NotFound,
    }
}

/// A body that does not announce its length, so HTTP/1.1 sends it chunked (as Qdrant does for
/// compressed responses).
struct ChunkedBody(Option<Bytes>);

impl http_body::Body for ChunkedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(http_body::Frame::data(b))))
    }
}

fn time_json(start: Instant, zero: bool) -> Value {
    let t = if zero {
        0.0
    } else {
        start.elapsed().as_secs_f64()
    };
    serde_json::Number::from_f64(t)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

pub fn render(reply: Reply, gzip: bool, start: Instant) -> Response {
    let (status, content_type, bytes) = match reply {
        Reply::NotFound => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_FOUND;
            r.headers_mut()
                .insert(header::VARY, HeaderValue::from_static(VARY_EMPTY));
            return r;
        }
        Reply::Text(t) => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            t.as_bytes().to_vec(),
        ),
        Reply::Raw(v) => (StatusCode::OK, "application/json", to_vec(&v)),
        Reply::Ok(v) => {
            let mut m = Map::new();
            m.insert("result".into(), v);
            m.insert("status".into(), "ok".into());
            m.insert("time".into(), time_json(start, false));
            (
                StatusCode::OK,
                "application/json",
                to_vec(&Value::Object(m)),
            )
        }
        Reply::Err(e) => {
            let mut st = Map::new();
            st.insert("error".into(), Value::String(e.message.clone()));
            let mut m = Map::new();
            m.insert("status".into(), Value::Object(st));
            m.insert("time".into(), time_json(start, e.zero_time));
            (e.status, "application/json", to_vec(&Value::Object(m)))
        }
    };
    let body = if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let gz = enc
            .write_all(&bytes)
            .and_then(|_| enc.finish())
            .expect("gzip into memory");
        Body::new(ChunkedBody(Some(gz.into())))
    } else {
        Body::from(bytes)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::VARY, HeaderValue::from_static(VARY_COMPRESSED));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

fn to_vec(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON values serialise")
}
