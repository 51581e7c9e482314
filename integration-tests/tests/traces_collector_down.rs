//! Traces on, and a collector that takes the connection and never answers (the worst
//! case: down would fail fast): reranked searches through secondpass in front of the
//! real Qdrant are all answered, reranked, and none waits on the exporter; the spans
//! past the bounded queue are dropped and counted in
//! `secondpass_trace_spans_dropped_total`. A test binary of its own: the span layer is
//! the process's global subscriber.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{config, qdrant, query_vector, Proxy};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const SEARCHES: usize = 20;
/// A reranked search of the small test collection takes well under this (debug build);
/// an export call waited for would take `timeout_ms` (60 s).
const QUICK: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_collector_that_never_answers_neither_slows_nor_fails_searches() {
    // Accepts connections and holds them, never a byte back: every export hangs.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = hole.local_addr().unwrap();
    std::thread::spawn(move || {
        let held: Vec<_> = hole.incoming().collect();
        drop(held);
    });
    let cfg = secondpass::Config::from_toml(&format!(
        "[tracing]\nenabled = true\nendpoint = \"http://{addr}\"\n\
         batch_delay_ms = 10\nmax_queue_size = 16\ntimeout_ms = 60000\n"
    ))
    .expect("config");
    let (layer, telemetry) =
        secondpass::telemetry::layer::<tracing_subscriber::Registry>(&cfg.tracing)
            .expect("exporter")
            .expect("tracing is on");
    tracing_subscriber::registry().with(layer).init();
    // Never shut down: that would wait for the hung export.
    std::mem::forget(telemetry);

    let docs = qdrant().collection("docs");
    let proxy = Proxy::start(config(&qdrant().url, &[&docs], "")).await;
    proxy.seed(&docs, false).await;
    let dropped = || {
        secondpass::telemetry::DROPPED
            .with_label_values(&["queue_full"])
            .get()
    };
    let before = dropped();
    let mut slowest = Duration::ZERO;
    for _ in 0..SEARCHES {
        let started = Instant::now();
        let r = proxy
            .post(
                &format!("/collections/{docs}/points/query"),
                &[("x-rerank-query", "capital%20of%20Germany")],
                &json!({"query": query_vector(), "limit": 3}),
            )
            .await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.json()["rerank"]["status"], "applied");
    }
    assert!(slowest < QUICK, "a search took {slowest:?}");
    // About eight spans a search, a queue of 16 and an export that never returns.
    let lost = dropped() - before;
    assert!(lost > 0, "spans past the queue are counted");
    let metrics = proxy.get_admin("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    let line = text
        .lines()
        .find(|l| l.starts_with("secondpass_trace_spans_dropped_total{reason=\"queue_full\"}"))
        .unwrap_or_else(|| panic!("no dropped-spans line in {text}"));
    let shown: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(shown >= lost, "{line} (dropped here: {lost})");
}
