//! An in-process Qdrant REST test double: a small but real in-memory Qdrant (exact search, not a
//! replay), faithful to recordings of a real Qdrant 1.18.3 in its wire details: envelope, field
//! order, `f32` score formatting, error messages and status codes, gzip, headers.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let qdrant = secondpass_it::qdrant_double::QdrantDouble::start().await?;
//! let url = qdrant.url(); // http://127.0.0.1:PORT
//! // ... point the system under test at `url`, then inspect what it sent:
//! let log = qdrant.request_log();
//! # let _ = (url, log); Ok(()) }
//! ```

mod api;
mod bm25;
pub mod errors;
mod filter;
mod fusion;
// The request types mirror Qdrant's schemas field by field (so that serde accepts and rejects
// the same bodies); many fields are accepted and ignored by the double.
#[allow(dead_code, clippy::large_enum_variant)]
mod ops;
mod payload;
mod query;
#[allow(dead_code, clippy::large_enum_variant)]
mod requests;
mod search;
mod server;
mod store;
#[allow(dead_code)]
mod types;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use errors::ApiError;

/// One request as the double received it (after undoing a gzip `content-encoding`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `"POST"`, `"GET"`, ...
    pub method: String,
    /// path and query, e.g. `/collections/docs/points?wait=true`
    pub path: String,
    /// every header, names lowercase, in the order received
    pub headers: Vec<(String, String)>,
    pub body: RecordedBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RecordedBody {
    Empty,
    Json(Value),
    /// not valid JSON: the raw text (lossy UTF-8)
    Raw(String),
}

impl RecordedBody {
    fn from_bytes(b: &[u8]) -> RecordedBody {
        if b.is_empty() {
            return RecordedBody::Empty;
        }
        match serde_json::from_slice(b) {
            Ok(v) => RecordedBody::Json(v),
            Err(_) => RecordedBody::Raw(String::from_utf8_lossy(b).into_owned()),
        }
    }
}

impl RecordedRequest {
    /// The JSON body, if the body was JSON.
    pub fn json(&self) -> Option<&Value> {
        match &self.body {
            RecordedBody::Json(v) => Some(v),
            _ => None,
        }
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
}

#[derive(Default)]
struct Inner {
    store: Mutex<store::Store>,
    log: Mutex<Vec<RecordedRequest>>,
    delay: Mutex<Option<Duration>>,
}

/// Shared state of a double: the data, the request log and the artificial delay.
/// Cheap to clone; clones share everything.
#[derive(Clone, Default)]
pub struct DoubleState {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DoubleState {
    pub fn new() -> DoubleState {
        DoubleState::default()
    }

    /// Every request received so far, oldest first.
    pub fn request_log(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.log).clone()
    }

    pub fn clear_request_log(&self) {
        lock(&self.inner.log).clear();
    }

    /// Delay every answer by `d` (after the request is recorded); `None` answers at once.
    pub fn set_delay(&self, d: Option<Duration>) {
        *lock(&self.inner.delay) = d;
    }

    pub(crate) fn delay(&self) -> Option<Duration> {
        *lock(&self.inner.delay)
    }

    /// Runs one REST call on this state in-process (no request-log entry, no delay): `Ok` is the
    /// `result` of Qdrant's envelope. The seam the gRPC double answers through.
    pub(crate) fn rest_call(
        &self,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Value, ApiError> {
        server::call(self, method, path, query, body)
    }

    fn record(&self, r: RecordedRequest) {
        lock(&self.inner.log).push(r);
    }

    fn store(&self) -> MutexGuard<'_, store::Store> {
        lock(&self.inner.store)
    }
}

impl std::fmt::Debug for DoubleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoubleState").finish_non_exhaustive()
    }
}

/// The double as an axum router (usable without a socket, e.g. with `tower::ServiceExt::oneshot`).
pub fn router(state: DoubleState) -> axum::Router {
    axum::Router::new()
        .fallback(server::handle)
        .with_state(state)
}

/// A running double. Dropping it (or [`QdrantDouble::shutdown`]) stops the server.
#[derive(Debug)]
pub struct QdrantDouble {
    pub addr: SocketAddr,
    state: DoubleState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl QdrantDouble {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start() -> std::io::Result<QdrantDouble> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    pub async fn start_on(addr: SocketAddr) -> std::io::Result<QdrantDouble> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = DoubleState::new();
        let app = router(state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
        });
        Ok(QdrantDouble {
            addr,
            state,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT` (an unspecified bind address is reported as 127.0.0.1).
    pub fn url(&self) -> String {
        let mut a = self.addr;
        if a.ip().is_unspecified() {
            a.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{a}")
    }

    pub fn state(&self) -> &DoubleState {
        &self.state
    }

    pub fn request_log(&self) -> Vec<RecordedRequest> {
        self.state.request_log()
    }

    pub fn clear_request_log(&self) {
        self.state.clear_request_log()
    }

    pub fn set_delay(&self, d: Option<Duration>) {
        self.state.set_delay(d)
    }

    /// Stops accepting connections and waits until open connections are done.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for QdrantDouble {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
