//! Test helpers: a tiny HTTP client (hyper-util's legacy client) and JSON comparison.

#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `$SECONDPASS_SHARED_DIR`, or `shared/` next to the repository.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("SECONDPASS_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")),
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// the body after undoing `content-encoding: gzip`
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn send(
    c: &HttpClient,
    method: Method,
    url: &str,
    body: Option<(Vec<u8>, Option<&str>)>,
    accept_gzip: bool,
) -> Resp {
    let mut req = Request::builder().method(method).uri(url);
    if accept_gzip {
        req = req.header("accept-encoding", "gzip, deflate");
    }
    let body = match body {
        Some((b, ct)) => {
            if let Some(ct) = ct {
                req = req.header("content-type", ct);
            }
            Full::new(Bytes::from(b))
        }
        None => Full::new(Bytes::new()),
    };
    let resp = c
        .request(req.body(body).unwrap())
        .await
        .expect("request to the double");
    let (parts, body) = resp.into_parts();
    let raw = body.collect().await.expect("response body").to_bytes();
    let gz = parts
        .headers
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let body = if gz {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .expect("valid gzip");
        Bytes::from(out)
    } else {
        raw
    };
    Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn post_json(c: &HttpClient, url: &str, body: &Value) -> Resp {
    let b = serde_json::to_vec(body).unwrap();
    send(
        c,
        Method::POST,
        url,
        Some((b, Some("application/json"))),
        false,
    )
    .await
}

pub async fn put_json(c: &HttpClient, url: &str, body: &Value) -> Resp {
    let b = serde_json::to_vec(body).unwrap();
    send(
        c,
        Method::PUT,
        url,
        Some((b, Some("application/json"))),
        false,
    )
    .await
}

/// Serialises like Python's `json.dumps` (`", "` and `": "` separators), which is how the
/// recorded requests were sent: error positions (`line 1 column N`) depend on it.
pub fn python_json(v: &Value) -> Vec<u8> {
    struct Py;
    impl serde_json::ser::Formatter for Py {
        fn begin_array_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            if first {
                Ok(())
            } else {
                w.write_all(b", ")
            }
        }
        fn begin_object_key<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> std::io::Result<()> {
            if first {
                Ok(())
            } else {
                w.write_all(b", ")
            }
        }
        fn begin_object_value<W: ?Sized + std::io::Write>(
            &mut self,
            w: &mut W,
        ) -> std::io::Result<()> {
            w.write_all(b": ")
        }
    }
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Py);
    serde::Serialize::serialize(v, &mut ser).unwrap();
    out
}

/// Compares JSON: same key order, numbers within `1e-5` and of the same kind (integer vs
/// float), keys named `time` ignored. Differences are appended to `diffs`.
pub fn compare(path: &str, got: &Value, want: &Value, diffs: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let gk: Vec<&String> = g.keys().filter(|k| *k != "time").collect();
            let wk: Vec<&String> = w.keys().filter(|k| *k != "time").collect();
            if gk != wk {
                diffs.push(format!("{path}: keys {gk:?} != recorded {wk:?}"));
                return;
            }
            if g.contains_key("time") != w.contains_key("time") {
                diffs.push(format!("{path}: `time` presence differs"));
            }
            for k in wk {
                compare(&format!("{path}.{k}"), &g[k], &w[k], diffs);
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            if g.len() != w.len() {
                diffs.push(format!("{path}: {} items != recorded {}", g.len(), w.len()));
                return;
            }
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                compare(&format!("{path}[{i}]"), a, b, diffs);
            }
        }
        (Value::Number(g), Value::Number(w)) => {
            let (a, b) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            if g.is_f64() != w.is_f64() || (a - b).abs() > 1e-5 {
                diffs.push(format!("{path}: {g} != recorded {w}"));
            }
        }
        _ => {
            if got != want {
                diffs.push(format!("{path}: {got} != recorded {want}"));
            }
        }
    }
}

/// Whether two JSON numbers print identically (exact f32 match), recursively.
pub fn identical(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            g.len() == w.len()
                && w.iter()
                    .all(|(k, v)| k == "time" || g.get(k).is_some_and(|x| identical(x, v)))
        }
        (Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(a, b)| identical(a, b))
        }
        _ => got == want,
    }
}
