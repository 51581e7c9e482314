//! An in-process Qdrant **gRPC** test double, built on the server stubs generated in the
//! `qdrant-client` crate and backed by the REST double's store: every gRPC request is converted
//! to the REST body a client would have sent for the same operation, run in-process on the shared
//! [`DoubleState`] (so data written over REST is visible over gRPC and the other way round), and
//! the REST result is converted back to the protobuf response. REST errors become gRPC statuses
//! with the REST error text as the message (404 → `NOT_FOUND`, 400/422 → `INVALID_ARGUMENT`,
//! 409 → `ALREADY_EXISTS`, 500 → `INTERNAL`), as a real Qdrant answers.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use secondpass_it::grpc_double::start_pair;
//! let (rest, grpc) = start_pair().await?;
//! // seed over REST at rest.url(), query over gRPC at grpc.url(), then:
//! let log = grpc.request_log(); // method, metadata and the decoded request of every call
//! # let _ = (rest, log); Ok(()) }
//! ```
//!
//! Services: `qdrant.Qdrant` (HealthCheck), `qdrant.Collections` (Create, Delete, List, Get,
//! Update, CollectionExists), `qdrant.Snapshots` (List, ListFull: always empty) and
//! `qdrant.Points` (Upsert, Delete, Get, SetPayload, OverwritePayload, DeletePayload,
//! ClearPayload, Search, SearchBatch, SearchGroups, Scroll, Count, Recommend, RecommendBatch,
//! RecommendGroups, Discover, DiscoverBatch, Query, QueryBatch, QueryGroups). Every other method
//! answers `UNIMPLEMENTED`. The artificial delay of the state ([`DoubleState::set_delay`])
//! applies to gRPC answers too; the REST request log does not see gRPC calls.

mod convert;
mod debug_json;
mod services;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use http::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;

use crate::qdrant_double::{ApiError, DoubleState, QdrantDouble};

pub use debug_json::message_json;

/// A payload `Value` as JSON, faithfully: an `integer_value` stays a JSON integer, a
/// `double_value` a float, structs and lists recursively; an unset kind is `null`.
pub fn value_to_json(v: &qdrant_client::qdrant::Value) -> Value {
    convert::value_json(v)
}

/// JSON as a payload `Value`, as Qdrant converts payloads: a number that fits `i64` is an
/// `integer_value`, any other number a `double_value`.
pub fn value_from_json(v: &Value) -> qdrant_client::qdrant::Value {
    convert::json_value(v)
}

/// A protobuf payload map as a JSON object (keys sorted).
pub fn payload_to_json(p: &HashMap<String, qdrant_client::qdrant::Value>) -> Value {
    convert::map_json(p)
}

/// A JSON object as a protobuf payload map (anything but an object gives an empty map); it
/// converts into `qdrant_client::Payload` with `.into()`.
pub fn payload_from_json(v: &Value) -> HashMap<String, qdrant_client::qdrant::Value> {
    v.as_object().map(convert::json_map).unwrap_or_default()
}

/// One gRPC call as the double received it.
#[derive(Debug, Clone, PartialEq)]
pub struct GrpcRecorded {
    /// the method path, e.g. `/qdrant.Points/Search`
    pub method: String,
    /// the request metadata with ASCII values (`api-key`, `user-agent`, `grpc-timeout`,
    /// `grpc-accept-encoding`, custom headers...), names lowercase, in the order received;
    /// tonic keeps `te`, `content-type` and `grpc-status`/`grpc-message` out of it
    pub metadata: Vec<(String, String)>,
    /// the decoded request as JSON ([`message_json`]): `.proto` field names, oneofs flattened
    /// (`"with_payload": {"enable": true}`), unset optional fields left out, 64-bit integers as
    /// numbers (`"limit": 50`)
    pub request: Value,
    /// the equivalent REST body the double ran (`"with_payload": true`, `"limit": 50`), `None`
    /// when the call has no REST body or its request could not be converted
    pub rest_body: Option<Value>,
}

impl GrpcRecorded {
    /// The first metadata value with this name (case-insensitive).
    pub fn metadata_value(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The method name without the service (`Search` for `/qdrant.Points/Search`).
    pub fn method_name(&self) -> &str {
        self.method.rsplit('/').next().unwrap_or("")
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the services share: the REST double's state and the gRPC request log.
pub(crate) struct Shared {
    state: DoubleState,
    log: Mutex<Vec<GrpcRecorded>>,
}

impl Shared {
    fn record<T: std::fmt::Debug>(
        &self,
        method: &str,
        req: &tonic::Request<T>,
        rest_body: Option<&Value>,
    ) {
        let metadata = req
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        lock(&self.log).push(GrpcRecorded {
            method: method.to_string(),
            metadata,
            request: message_json(req.get_ref()),
            rest_body: rest_body.cloned(),
        });
    }

    /// Records the call (with the REST body `body` converts it to), waits the state's delay, and
    /// hands back the body (or the conversion's error).
    async fn begin<T: std::fmt::Debug>(
        &self,
        method: &str,
        req: &tonic::Request<T>,
        body: Result<Value, tonic::Status>,
    ) -> Result<Value, tonic::Status> {
        self.record(method, req, body.as_ref().ok());
        self.wait().await;
        body
    }

    async fn wait(&self) {
        if let Some(d) = self.state.delay() {
            tokio::time::sleep(d).await;
        }
    }

    /// Runs one REST call on the shared state; the result and the time it took, in seconds.
    fn rest(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(Value, f64), tonic::Status> {
        let bytes = body
            .map(|b| serde_json::to_vec(b).expect("JSON values serialise"))
            .unwrap_or_default();
        let start = Instant::now();
        let res = self.state.rest_call(&method, path, query, &bytes);
        let time = start.elapsed().as_secs_f64();
        res.map(|v| (v, time)).map_err(status_of)
    }
}

/// A REST error as the gRPC status a real Qdrant answers with.
pub(crate) fn status_of(e: ApiError) -> tonic::Status {
    use tonic::Code;
    let code = match e.status {
        StatusCode::NOT_FOUND if e.message.is_empty() => Code::Unimplemented,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => Code::InvalidArgument,
        StatusCode::CONFLICT => Code::AlreadyExists,
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::TOO_MANY_REQUESTS => Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => Code::DeadlineExceeded,
        StatusCode::INTERNAL_SERVER_ERROR => Code::Internal,
        _ => Code::Unknown,
    };
    tonic::Status::new(code, e.message)
}

/// A running gRPC double. Dropping it (or [`GrpcDouble::shutdown`]) stops the server.
#[derive(Debug)]
pub struct GrpcDouble {
    pub addr: SocketAddr,
    state: DoubleState,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl GrpcDouble {
    /// Binds `127.0.0.1:0` and serves gRPC (HTTP/2 without TLS) on the current tokio runtime,
    /// sharing `state` (take it from [`QdrantDouble::state`] to share a REST double's data).
    pub async fn start(state: DoubleState) -> std::io::Result<GrpcDouble> {
        Self::start_on(state, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    pub async fn start_on(state: DoubleState, addr: SocketAddr) -> std::io::Result<GrpcDouble> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: state.clone(),
            log: Mutex::new(Vec::new()),
        });
        let gz = CompressionEncoding::Gzip;
        let router = tonic::transport::Server::builder()
            .add_service(
                qdrant_client::qdrant::qdrant_server::QdrantServer::new(services::QdrantSvc(
                    shared.clone(),
                ))
                .accept_compressed(gz),
            )
            .add_service(
                qdrant_client::qdrant::collections_server::CollectionsServer::new(
                    services::CollectionsSvc(shared.clone()),
                )
                .accept_compressed(gz),
            )
            .add_service(
                qdrant_client::qdrant::snapshots_server::SnapshotsServer::new(
                    services::SnapshotsSvc(shared.clone()),
                )
                .accept_compressed(gz),
            )
            .add_service(
                qdrant_client::qdrant::points_server::PointsServer::new(services::PointsSvc(
                    shared.clone(),
                ))
                .accept_compressed(gz)
                .send_compressed(gz),
            );
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(router.serve_with_incoming_shutdown(
            TcpIncoming::from(listener),
            async move {
                let _ = rx.await;
            },
        ));
        Ok(GrpcDouble {
            addr,
            state,
            shared,
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

    /// The state shared with the REST double.
    pub fn state(&self) -> &DoubleState {
        &self.state
    }

    /// Every gRPC call received so far, oldest first.
    pub fn request_log(&self) -> Vec<GrpcRecorded> {
        lock(&self.shared.log).clone()
    }

    pub fn clear_request_log(&self) {
        lock(&self.shared.log).clear();
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

impl Drop for GrpcDouble {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A REST double and a gRPC double on one shared state (both on `127.0.0.1:0`).
pub async fn start_pair() -> std::io::Result<(QdrantDouble, GrpcDouble)> {
    let rest = QdrantDouble::start().await?;
    let grpc = GrpcDouble::start(rest.state().clone()).await?;
    Ok((rest, grpc))
}

impl QdrantDouble {
    /// This REST double plus a gRPC double on the same state; see [`start_pair`].
    pub async fn start_with_grpc() -> std::io::Result<(QdrantDouble, GrpcDouble)> {
        start_pair().await
    }
}
