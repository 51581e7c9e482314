//! OpenTelemetry traces received over OTLP: secondpass (in process, port 0) in front of
//! the real Qdrant, exporting to an OTLP/gRPC trace receiver built here from the
//! protocol's own service definition (`opentelemetry-proto`). The span tree and its
//! attributes are checked for a reranked REST search under a client's `traceparent`
//! and for a reranked gRPC search that starts its own trace; the shared score cache's
//! round trips to a real `redis-server` are spans of the attempt that made them.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use qdrant_client::qdrant::points_client::PointsClient;
use secondpass::telemetry::Telemetry;
use secondpass_it::provider_stubs::{Api, ProviderStub, StubOptions};
use secondpass_it::relay::Relay;
use serde_json::{json, Value};
use support::{config_with_grpc, grpc_nearest, qdrant, query_vector, relayed, Proxy};
use tokio::sync::Notify;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const QUERY: &str = "capital of Germany";
/// How long the spans of a request may take to arrive (the batch delay is 50 ms).
const WITHIN: Duration = Duration::from_secs(20);

/// The OTLP trace service: keeps every span it is sent, with its resource's
/// `service.name`, and wakes whoever waits for spans.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    arrived: Arc<Notify>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| value(kv.value.as_ref().and_then(|v| v.value.as_ref())))
                .unwrap_or(Value::Null);
            for ss in rs.scope_spans {
                for span in ss.spans {
                    kept.push((service.as_str().unwrap_or("").to_string(), span));
                }
            }
        }
        self.arrived.notify_waiters();
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The receiver and the exporter this test binary shares: both on a runtime of their
/// own (each test has its own, which ends with the test), secondpass's span layer
/// installed as the global subscriber.
struct Collector {
    receiver: Receiver,
    _telemetry: Telemetry,
}

fn collector() -> &'static Collector {
    static C: OnceLock<Collector> = OnceLock::new();
    C.get_or_init(|| {
        // A thread of its own: a runtime cannot be started from inside a test's.
        std::thread::spawn(|| {
            let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("runtime"),
            ));
            let receiver = Receiver::default();
            let listener = rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind");
            let endpoint = format!("http://{}", listener.local_addr().unwrap());
            rt.spawn(
                tonic::transport::Server::builder()
                    .add_service(TraceServiceServer::new(receiver.clone()))
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
            );
            let cfg = secondpass::Config::from_toml(&format!(
                "[tracing]\nenabled = true\nendpoint = \"{endpoint}\"\n\
                 service_name = \"secondpass-under-test\"\nbatch_delay_ms = 50\n"
            ))
            .expect("config");
            let _inside = rt.enter();
            let (layer, telemetry) =
                secondpass::telemetry::layer::<tracing_subscriber::Registry>(&cfg.tracing)
                    .expect("exporter")
                    .expect("tracing is on");
            tracing_subscriber::registry().with(layer).init();
            Collector {
                receiver,
                _telemetry: telemetry,
            }
        })
        .join()
        .expect("collector")
    })
}

impl Collector {
    /// The spans received so far that `pick` selects.
    fn spans(&self, pick: &impl Fn(&Span) -> bool) -> Vec<Span> {
        let kept = self.receiver.spans.lock().unwrap();
        assert!(kept
            .iter()
            .all(|(service, _)| service == "secondpass-under-test"));
        kept.iter()
            .map(|(_, s)| s)
            .filter(|s| pick(s))
            .cloned()
            .collect()
    }

    /// Waits (until [`WITHIN`]) for the trace that holds a `request` span `pick`
    /// selects to be complete: every name of `names` arrived (a name listed twice: two
    /// spans of that name). Returns its spans.
    async fn trace(&self, pick: impl Fn(&Span) -> bool, names: &[&str]) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let arrived = self.receiver.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let root = self.spans(&|s| s.name == "request" && pick(s));
            if let Some(root) = root.first() {
                let trace = self.spans(&|s| s.trace_id == root.trace_id);
                let count = |n: &str| trace.iter().filter(|s| s.name == n).count();
                let wanted = |n: &str| names.iter().filter(|m| **m == n).count();
                if names.iter().all(|n| count(n) >= wanted(n)) {
                    return trace;
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let seen: Vec<String> = self.spans(&|_| true).iter().map(describe).collect();
                panic!("the trace's spans did not all arrive; received: {seen:#?}");
            }
        }
    }
}

fn value(v: Option<&any_value::Value>) -> Value {
    match v {
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        _ => Value::Null,
    }
}

fn attrs(span: &Span) -> HashMap<String, Value> {
    span.attributes
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                value(kv.value.as_ref().and_then(|v| v.value.as_ref())),
            )
        })
        .collect()
}

fn describe(span: &Span) -> String {
    format!("{} {:?}", span.name, attrs(span))
}

fn attr(span: &Span, key: &str) -> Value {
    attrs(span).remove(key).unwrap_or(Value::Null)
}

/// The one span named `name` of `trace`.
fn one<'a>(trace: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = trace.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "one `{name}` span in {:#?}",
        trace.iter().map(describe).collect::<Vec<_>>()
    );
    found[0]
}

fn is_child(child: &Span, parent: &Span) -> bool {
    child.parent_span_id == parent.span_id && child.trace_id == parent.trace_id
}

/// Every span a reranked search with the local model makes.
const RERANKED: &[&str] = &[
    "request",
    "qdrant",
    "rerank",
    "rerank.stage",
    "rerank.attempt",
    "engine.queue_wait",
    "engine.tokenize",
    "engine.inference",
];

/// The tree under `request` of a reranked search of `collection` through `path`.
fn check_reranked_tree(trace: &[Span], collection: &str, path: &str) {
    let request = one(trace, "request");
    assert_eq!(attr(request, "collection"), json!(collection));
    assert_eq!(attr(request, "rerank_status"), json!("applied"));
    assert_eq!(attr(request, "status_code"), json!(200));
    let qdrant = one(trace, "qdrant");
    assert!(
        is_child(qdrant, request),
        "the Qdrant call is the request's child"
    );
    assert_eq!(attr(qdrant, "path"), json!(path));
    assert_eq!(attr(qdrant, "status_code"), json!(200));
    assert_eq!(qdrant.kind, 3, "SPAN_KIND_CLIENT");
    let rerank = one(trace, "rerank");
    assert!(is_child(rerank, request));
    assert_eq!(attr(rerank, "collection"), json!(collection));
    assert_eq!(attr(rerank, "status"), json!("applied"));
    assert_eq!(attr(rerank, "reranker"), json!("local"));
    let stage = one(trace, "rerank.stage");
    assert!(is_child(stage, rerank));
    assert_eq!(attr(stage, "stage"), json!(1));
    assert_eq!(attr(stage, "status"), json!("applied"));
    let attempt = one(trace, "rerank.attempt");
    assert!(is_child(attempt, stage));
    assert_eq!(attr(attempt, "reranker"), json!("local"));
    assert_eq!(attr(attempt, "provider"), json!("onnx"));
    assert_eq!(attr(attempt, "outcome"), json!("ok"));
    assert_eq!(attr(attempt, "retries"), json!(0));
    let candidates = attr(attempt, "candidates");
    assert!(
        candidates.as_i64().unwrap() > 3,
        "the widened pool: {candidates}"
    );
    assert_eq!(attr(attempt, "cache_hits"), json!(0));
    assert_eq!(attr(attempt, "sent"), candidates);
    assert_eq!(attr(stage, "candidates"), candidates);
    // The worker threads' spans belong to the attempt that queued the job.
    let waited = one(trace, "engine.queue_wait");
    assert!(is_child(waited, attempt), "queue wait under the attempt");
    assert_eq!(attr(waited, "documents"), candidates);
    let tokenized = one(trace, "engine.tokenize");
    assert!(is_child(tokenized, attempt), "tokenizing under the attempt");
    let inference: Vec<&Span> = trace
        .iter()
        .filter(|s| s.name == "engine.inference")
        .collect();
    assert!(inference.iter().all(|s| is_child(s, attempt)));
    let pairs: i64 = inference
        .iter()
        .map(|s| attr(s, "pairs").as_i64().unwrap())
        .sum();
    assert_eq!(json!(pairs), candidates, "every pair scored in some batch");
    assert!(waited.end_time_unix_nano <= inference[0].start_time_unix_nano);
    for s in trace {
        assert!(s.start_time_unix_nano >= request.start_time_unix_nano);
        assert!(
            s.end_time_unix_nano <= request.end_time_unix_nano,
            "{}",
            describe(s)
        );
    }
}

#[tokio::test]
async fn a_reranked_rest_search_is_traced_under_the_clients_trace() {
    let c = collector();
    let docs = qdrant().collection("docs");
    let (relay, proxy) = relayed(&[&docs], "").await;
    proxy.seed(&docs, false).await;
    relay.forget();
    let trace_id = new_trace_id(1);
    let client_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{client_span}-01");
    let path = format!("/collections/{docs}/points/query");
    let r = proxy
        .post(
            &path,
            &[
                ("traceparent", &traceparent),
                ("x-rerank-query", "capital%20of%20Germany"),
            ],
            &json!({"query": query_vector(), "limit": 3}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["rerank"]["status"], "applied");
    let seen = relay.seen();
    assert_eq!(seen.len(), 1);
    let sent_on = seen[0]
        .header("traceparent")
        .expect("a traceparent to Qdrant")
        .to_string();

    let wanted = trace_id.clone();
    let trace = c.trace(move |s| hex(&s.trace_id) == wanted, RERANKED).await;
    let request = one(&trace, "request");
    assert_eq!(hex(&request.trace_id), trace_id, "the client's trace");
    assert_eq!(
        hex(&request.parent_span_id),
        client_span,
        "under the client's span"
    );
    assert_eq!(request.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(attr(request, "protocol"), json!("rest"));
    assert_eq!(attr(request, "endpoint"), json!("query"));
    assert_eq!(attr(request, "method"), json!("POST"));
    check_reranked_tree(&trace, &docs, &path);
    assert_eq!(
        sent_on, traceparent,
        "the client's traceparent reaches Qdrant unchanged"
    );
}

/// What Qdrant received (when the client sent no trace) continues secondpass's trace,
/// under its span of the call to Qdrant, sampled.
fn same_trace_at_qdrant(traceparent: &str, trace_id: &str, qdrant: &Span) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "{traceparent}");
    assert_eq!(parts[1], trace_id, "one trace id from the client to Qdrant");
    assert_eq!(
        parts[2],
        hex(&qdrant.span_id),
        "Qdrant's parent: the `qdrant` span"
    );
    assert_eq!(parts[3], "01", "{traceparent}");
}

/// A trace id of this run (a random-looking one that no other test uses).
fn new_trace_id(salt: u64) -> String {
    format!(
        "{:016x}{:016x}",
        std::process::id() as u64 ^ 0x5ec0_4d9a_55ee_d000 ^ salt,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_reranked_grpc_search_is_traced() {
    let c = collector();
    let docs = qdrant().collection("docs");
    let relay = Relay::start(&qdrant().grpc_url).await;
    let proxy = Proxy::start(config_with_grpc(&qdrant().url, &relay.url(), &[&docs], "")).await;
    proxy.seed(&docs, false).await;
    let mut via = PointsClient::connect(format!("http://{}", proxy.server.grpc_addr))
        .await
        .expect("connect");
    let mut req = tonic::Request::new(grpc_nearest(&docs, 3));
    let trace_id = new_trace_id(2);
    let client_span = "b7ad6b7169203331";
    let traceparent = format!("00-{trace_id}-{client_span}-01");
    req.metadata_mut()
        .insert("x-rerank-query", QUERY.replace(' ', "%20").parse().unwrap());
    req.metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    let resp = via.query(req).await.expect("query");
    assert_eq!(resp.metadata().get("x-rerank-status").unwrap(), "applied");
    let seen = relay.seen_at("/qdrant.Points/Query");
    assert_eq!(seen.len(), 1);
    let sent_on = seen[0]
        .header("traceparent")
        .expect("traceparent metadata to Qdrant")
        .to_string();

    let wanted = trace_id.clone();
    let trace = c.trace(move |s| hex(&s.trace_id) == wanted, RERANKED).await;
    let request = one(&trace, "request");
    assert_eq!(
        hex(&request.parent_span_id),
        client_span,
        "under the client's span"
    );
    assert_eq!(attr(request, "protocol"), json!("grpc"));
    assert_eq!(attr(request, "path"), json!("/qdrant.Points/Query"));
    check_reranked_tree(&trace, &docs, "/qdrant.Points/Query");
    assert_eq!(
        sent_on, traceparent,
        "the client's traceparent reaches Qdrant unchanged"
    );
}

#[tokio::test]
async fn a_search_without_a_client_trace_starts_one_and_qdrant_is_in_it() {
    let c = collector();
    let docs = qdrant().collection("docs");
    let (relay, proxy) = relayed(&[&docs], "").await;
    proxy.seed(&docs, false).await;
    relay.forget();
    let r = proxy
        .post(
            &format!("/collections/{docs}/points/query"),
            &[("x-rerank-query", "capital%20of%20Germany")],
            &json!({"query": query_vector(), "limit": 2}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let sent_on = relay.seen()[0]
        .header("traceparent")
        .expect("traceparent")
        .to_string();
    let trace_id = sent_on.split('-').nth(1).unwrap().to_string();
    let wanted = trace_id.clone();
    let trace = c.trace(move |s| hex(&s.trace_id) == wanted, RERANKED).await;
    let request = one(&trace, "request");
    assert!(request.parent_span_id.is_empty(), "a trace of its own");
    same_trace_at_qdrant(&sent_on, &trace_id, one(&trace, "qdrant"));
}

#[tokio::test]
async fn a_hosted_reranker_is_called_in_the_clients_trace() {
    let c = collector();
    let stub = ProviderStub::start(Api::Tei, StubOptions::default()).await;
    let docs = qdrant().collection("docs");
    let extra = format!(
        "[rerankers.hosted]\nkind = \"tei\"\nbase_url = \"{}\"\n\
         [collections.{docs}]\nrerankers = [\"hosted\"]\n",
        stub.url()
    );
    let (relay, proxy) = relayed(&[&docs], &extra).await;
    proxy.seed(&docs, false).await;
    relay.forget();
    let trace_id = new_trace_id(3);
    let client_traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let r = search_in_trace(&proxy, &docs, &client_traceparent).await;
    assert_eq!(r["rerank"]["reranker"], "hosted");
    let to_qdrant = relay.seen()[0].header("traceparent").unwrap().to_string();
    let calls = stub.request_log();
    assert_eq!(calls.len(), 1);
    let to_reranker = calls[0]
        .header("traceparent")
        .expect("a traceparent to the reranker");

    let wanted = trace_id.clone();
    let names = [
        "request",
        "qdrant",
        "rerank",
        "rerank.stage",
        "rerank.attempt",
    ];
    let trace = c.trace(move |s| hex(&s.trace_id) == wanted, &names).await;
    assert_eq!(to_qdrant, client_traceparent, "unchanged to Qdrant");
    let attempt = one(&trace, "rerank.attempt");
    assert_eq!(attr(attempt, "provider"), json!("tei"));
    assert_eq!(attr(attempt, "outcome"), json!("ok"));
    assert_eq!(
        to_reranker,
        format!("00-{trace_id}-{}-01", hex(&attempt.span_id)),
        "the reranker's parent: the attempt"
    );
    // No query or document text in any attribute.
    let texts: Vec<String> = calls[0].body.as_ref().unwrap()["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert!(!texts.is_empty());
    for s in &trace {
        for (k, v) in attrs(s) {
            let v = v.to_string();
            assert!(!v.contains("Germany"), "{} {k}: {v}", s.name);
            assert!(
                !texts.iter().any(|t| v.contains(t.as_str())),
                "{} {k}: {v}",
                s.name
            );
        }
    }
}

/// A real `redis-server` (Debian's; `scripts/setup --redis`) on a free loopback port,
/// without persistence, killed when dropped. `None` where none is installed, outside CI.
struct RedisServer {
    child: std::process::Child,
    url: String,
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        use std::io::{Read, Write};
        let installed = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            assert!(
                std::env::var("CI").is_err(),
                "redis-server is missing (scripts/setup --redis)"
            );
            eprintln!("SKIPPED: no redis-server (scripts/setup --redis)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let server = RedisServer {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let pong = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut c| {
                c.write_all(b"PING\r\n")?;
                let mut buf = [0u8; 7];
                c.read_exact(&mut buf)?;
                Ok(buf.starts_with(b"+PONG"))
            });
            if pong.is_ok_and(|p| p) {
                return Some(server);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shared score cache's two round trips of a search (`MGET` of the candidates'
/// keys before scoring, the pipelined `SET`s after) are client spans under the
/// attempt; a second replica's search reads the first one's scores in its `MGET` and
/// runs no model at all.
#[tokio::test]
async fn shared_cache_round_trips_are_spans_of_the_attempt() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let c = collector();
    let docs = qdrant().collection("docs");
    let extra = format!("[cache.redis]\nurl = \"{}\"\n", redis.url);
    let first = support::proxy(&[&docs], &extra).await;
    first.seed(&docs, false).await;
    let trace_id = cached_search(&first, &docs, 4).await;
    let mut names = RERANKED.to_vec();
    names.extend(["cache.redis", "cache.redis"]);
    let trace = c.trace(move |s| hex(&s.trace_id) == trace_id, &names).await;
    let attempt = one(&trace, "rerank.attempt");
    let candidates = attr(attempt, "candidates");
    let round_trip = |op: &str| {
        let s = trace
            .iter()
            .find(|s| s.name == "cache.redis" && attr(s, "db.operation") == json!(op))
            .unwrap_or_else(|| panic!("no {op} span"));
        assert!(is_child(s, attempt), "{op} under the attempt");
        assert_eq!(s.kind, 3, "SPAN_KIND_CLIENT");
        assert_eq!(attr(s, "db.system"), json!("redis"));
        assert_eq!(attr(s, "outcome"), json!("ok"), "{}", describe(s));
        assert_eq!(attr(s, "keys"), candidates, "one key per candidate");
        s.clone()
    };
    assert_eq!(attr(&round_trip("MGET"), "hits"), json!(0));
    round_trip("SET");

    // Another replica: its own (empty) in-process cache, the same Redis.
    let second = support::proxy(&[&docs], &extra).await;
    let trace_id = cached_search(&second, &docs, 5).await;
    let names = ["request", "rerank.attempt", "cache.redis"];
    let trace = c.trace(move |s| hex(&s.trace_id) == trace_id, &names).await;
    let get = one(&trace, "cache.redis");
    assert_eq!(attr(get, "db.operation"), json!("MGET"));
    assert_eq!(attr(get, "hits"), candidates, "every score from Redis");
    assert_eq!(
        attr(one(&trace, "rerank.attempt"), "cache_hits"),
        candidates
    );
    assert!(
        !trace.iter().any(|s| s.name.starts_with("engine.")),
        "no model run"
    );
}

/// A reranked search of `docs` under the client's `traceparent`; the answer.
async fn search_in_trace(proxy: &Proxy, docs: &str, traceparent: &str) -> Value {
    let r = proxy
        .post(
            &format!("/collections/{docs}/points/query"),
            &[
                ("traceparent", traceparent),
                ("x-rerank-query", "capital%20of%20Germany"),
            ],
            &json!({"query": query_vector(), "limit": 3}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["rerank"]["status"], "applied");
    r.json()
}

/// [`search_in_trace`] under a new client trace; its trace id.
async fn cached_search(proxy: &Proxy, docs: &str, salt: u64) -> String {
    let trace_id = new_trace_id(salt);
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    search_in_trace(proxy, docs, &traceparent).await;
    trace_id
}
