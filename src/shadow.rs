//! Shadow mode: the client gets Qdrant's answer unchanged, byte for byte, and
//! secondpass reranks in the background to record what *would* have changed.
//!
//! The live search is forwarded as sent and its answer streamed back untouched. A
//! sampled copy of the request goes on a bounded queue; a worker sends its own widened
//! search to Qdrant (the same plan the proxy would use: pool, text field), reranks the
//! candidates and compares Qdrant's page with the reranked page. Widening the live
//! request instead would change the answer the client gets (payload, limit), and
//! reranking only the returned page would need the text in it and could never move a
//! point in from deeper in the pool. The cost is one extra Qdrant search per shadowed
//! search, off the live path; `[shadow] sample_rate` bounds it. When the queue is
//! full the work is dropped and counted: the live path never waits for it.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::config::ShadowConfig;
use crate::metrics::Metrics;
use crate::plan::{displacement, order_page, passthrough, Window};

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

const SHARE_BUCKETS: &[f64] = &[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct ShadowMetrics {
    /// Searches compared (labels: collection).
    pub compared: IntCounterVec,
    /// Shadow work dropped because the queue was full.
    pub dropped: IntCounterVec,
    /// Shadow work that could not be compared (Qdrant error, nothing to rerank, ...).
    pub failed: IntCounterVec,
    pub top1_changed: IntCounterVec,
    pub displacement: HistogramVec,
    pub overlap: HistogramVec,
    pub rerank_duration: HistogramVec,
}

impl ShadowMetrics {
    fn new(m: &Metrics) -> ShadowMetrics {
        let counter = |name: &str, help: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &["collection"]).expect("valid");
            m.register(Box::new(c.clone()));
            c
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                &["collection"],
            )
            .expect("valid");
            m.register(Box::new(h.clone()));
            h
        };
        ShadowMetrics {
            compared: counter(
                "secondpass_shadow_searches_total",
                "Shadow searches reranked in the background and compared with Qdrant's page",
            ),
            dropped: counter(
                "secondpass_shadow_dropped_total",
                "Shadow searches dropped because the shadow queue was full",
            ),
            failed: counter(
                "secondpass_shadow_failed_total",
                "Shadow searches that could not be compared (Qdrant error, no text, rerank failure)",
            ),
            top1_changed: counter(
                "secondpass_shadow_top1_changed_total",
                "Shadow searches whose first result would have changed",
            ),
            displacement: histogram(
                "secondpass_shadow_rank_displacement",
                "Share of the reranked page that was not on Qdrant's page",
                SHARE_BUCKETS,
            ),
            overlap: histogram(
                "secondpass_shadow_overlap",
                "overlap@k: share of Qdrant's page (k = the client's limit) also on the reranked page",
                SHARE_BUCKETS,
            ),
            rerank_duration: histogram(
                "secondpass_shadow_rerank_duration_seconds",
                "Rerank step of shadow searches",
                LATENCY_BUCKETS,
            ),
        }
    }
}

/// What reranking would have changed on one page.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Indices into Qdrant's candidate list: Qdrant's page and the reranked page.
    pub qdrant: Vec<usize>,
    pub reranked: Vec<usize>,
    pub displacement: f64,
    pub top1_changed: bool,
    pub overlap: f64,
}

/// Compares Qdrant's page with the page reranking would have served (pure).
pub fn compare(scores: &[Option<f32>], threshold: Option<f32>, window: Window) -> Option<Change> {
    let ranked = order_page(Some(scores), None, scores.len(), threshold, window);
    let qdrant: Vec<usize> = passthrough(scores.len(), window)
        .iter()
        .map(|r| r.index)
        .collect();
    if qdrant.is_empty() {
        return None;
    }
    let reranked: Vec<usize> = ranked.iter().map(|r| r.index).collect();
    let shared = qdrant.iter().filter(|i| reranked.contains(i)).count();
    Some(Change {
        displacement: displacement(&ranked, window).unwrap_or(1.0),
        top1_changed: qdrant.first() != reranked.first(),
        overlap: shared as f64 / qdrant.len() as f64,
        qdrant,
        reranked,
    })
}

/// The shadow queue, its workers and its log. `sample_rate`, `log_rate` and
/// `log_file` follow a configuration reload; `queue` and `workers` are fixed once the
/// workers run.
pub struct Shadow {
    queue: usize,
    workers: usize,
    /// `sample_rate` and `log_rate` as f64 bits: read on every live search, lock-free.
    sample_rate: AtomicU64,
    log_rate: AtomicU64,
    pub metrics: ShadowMetrics,
    sender: OnceLock<mpsc::Sender<Job>>,
    log: Mutex<ShadowLog>,
    counter: AtomicU64,
}

/// The open shadow log and the path it was opened for.
#[derive(Default)]
struct ShadowLog {
    path: Option<std::path::PathBuf>,
    file: Option<std::fs::File>,
}

impl ShadowLog {
    fn open(path: Option<&std::path::Path>) -> ShadowLog {
        let file = path.and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| tracing::error!(path = %p.display(), error = %e, "cannot open the shadow log; shadow searches are not logged"))
                .ok()
        });
        ShadowLog {
            path: path.map(Into::into),
            file,
        }
    }
}

/// A uniform draw in 0..1 from a counter (SplitMix64): cheap, lock-free.
fn draw(counter: &AtomicU64) -> f64 {
    let mut z = counter
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

impl Shadow {
    pub fn new(cfg: &ShadowConfig, metrics: &Metrics) -> Shadow {
        Shadow {
            queue: cfg.queue,
            workers: cfg.workers,
            sample_rate: AtomicU64::new(cfg.sample_rate.to_bits()),
            log_rate: AtomicU64::new(cfg.log_rate.to_bits()),
            metrics: ShadowMetrics::new(metrics),
            sender: OnceLock::new(),
            log: Mutex::new(ShadowLog::open(cfg.log_file.as_deref())),
            counter: AtomicU64::new(0),
        }
    }

    /// Takes a reloaded `[shadow]`: new rates at once, the log reopened when its path
    /// changed. Returns the keys that change only on restart and were changed.
    pub fn reconfigure(&self, cfg: &ShadowConfig) -> Vec<&'static str> {
        self.sample_rate
            .store(cfg.sample_rate.to_bits(), Ordering::Relaxed);
        self.log_rate
            .store(cfg.log_rate.to_bits(), Ordering::Relaxed);
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.path.as_deref() != cfg.log_file.as_deref() {
            *log = ShadowLog::open(cfg.log_file.as_deref());
        }
        let mut fixed = Vec::new();
        if cfg.queue != self.queue {
            fixed.push("shadow.queue");
        }
        if cfg.workers != self.workers {
            fixed.push("shadow.workers");
        }
        fixed
    }

    fn rate(r: &AtomicU64) -> f64 {
        f64::from_bits(r.load(Ordering::Relaxed))
    }

    /// Whether this live search gets a shadow (`sample_rate`).
    pub fn sampled(&self) -> bool {
        let rate = Self::rate(&self.sample_rate);
        rate >= 1.0 || draw(&self.counter) < rate
    }

    /// Queues background work without waiting; drops and counts it when full.
    /// Workers start on first use (inside the runtime).
    pub fn submit(&self, label: &str, job: impl Future<Output = ()> + Send + 'static) {
        let sender = self.sender.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>(self.queue);
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            for _ in 0..self.workers {
                let rx = rx.clone();
                tokio::spawn(async move {
                    loop {
                        let job = rx.lock().await.recv().await;
                        match job {
                            Some(job) => job.await,
                            None => break,
                        }
                    }
                });
            }
            tx
        });
        if sender.try_send(Box::pin(job)).is_err() {
            self.metrics.dropped.with_label_values(&[label]).inc();
        }
    }

    /// Records one comparison and maybe logs it.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        collection: &str,
        label: &str,
        query: &str,
        ids: &[Value],
        scores: &[Option<f32>],
        change: &Change,
        rerank_seconds: f64,
    ) {
        let m = &self.metrics;
        m.compared.with_label_values(&[label]).inc();
        if change.top1_changed {
            m.top1_changed.with_label_values(&[label]).inc();
        }
        m.displacement
            .with_label_values(&[label])
            .observe(change.displacement);
        m.overlap
            .with_label_values(&[label])
            .observe(change.overlap);
        m.rerank_duration
            .with_label_values(&[label])
            .observe(rerank_seconds);
        let log_rate = Self::rate(&self.log_rate);
        if log_rate < 1.0 && draw(&self.counter) >= log_rate {
            return;
        }
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let Some(file) = log.file.as_mut() else {
            return;
        };
        let pick = |idx: &[usize]| -> Vec<Value> {
            idx.iter().filter_map(|&i| ids.get(i).cloned()).collect()
        };
        let score = |i: usize| {
            scores
                .get(i)
                .copied()
                .flatten()
                .map_or(Value::Null, |s| json!(s))
        };
        let line = json!({
            "time": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            "collection": collection,
            "query": query,
            "qdrant_ids": pick(&change.qdrant),
            "reranked_ids": pick(&change.reranked),
            "rerank_scores": change.reranked.iter().map(|&i| score(i)).collect::<Vec<_>>(),
            "rerank_ms": rerank_seconds * 1e3,
        });
        if let Err(e) = writeln!(file, "{line}") {
            tracing::warn!(error = %e, "cannot write the shadow log");
        }
    }

    pub fn fail(&self, label: &str, why: &str) {
        tracing::debug!(reason = why, "shadow search not compared");
        self.metrics.failed.with_label_values(&[label]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(offset: usize, limit: usize) -> Window {
        Window {
            offset,
            limit,
            fetch: 10,
        }
    }

    #[test]
    fn compare_pages() {
        // candidates 0..5; reranking puts 4 first, then 0
        let scores = [Some(0.5), Some(0.1), Some(0.2), Some(0.0), Some(0.9)];
        let c = compare(&scores, None, w(0, 2)).unwrap();
        assert_eq!(c.qdrant, vec![0, 1]);
        assert_eq!(c.reranked, vec![4, 0]);
        assert!(c.top1_changed);
        assert_eq!(c.overlap, 0.5);
        assert_eq!(c.displacement, 0.5);
        // same order: nothing changes
        let same = [Some(0.9), Some(0.8), Some(0.7)];
        let c = compare(&same, None, w(0, 3)).unwrap();
        assert!(!c.top1_changed);
        assert_eq!((c.overlap, c.displacement), (1.0, 0.0));
        assert_eq!(compare(&[], None, w(0, 3)), None);
    }

    #[test]
    fn draws_are_uniform_enough() {
        let c = AtomicU64::new(0);
        let n = 10_000;
        let below = (0..n).filter(|_| draw(&c) < 0.25).count();
        assert!((2_300..2_700).contains(&below), "{below}");
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts() {
        let m = Metrics::new(&["c".into()]);
        let cfg = ShadowConfig {
            queue: 1,
            workers: 1,
            ..Default::default()
        };
        let s = Shadow::new(&cfg, &m);
        let (hold, wait) = tokio::sync::oneshot::channel::<()>();
        // the worker takes the first job and blocks on it; the second fills the
        // queue; the rest are dropped
        s.submit("c", async move {
            let _ = wait.await;
        });
        tokio::task::yield_now().await;
        for _ in 0..4 {
            s.submit("c", async {});
        }
        let dropped = s.metrics.dropped.with_label_values(&["c"]).get();
        assert!(dropped >= 3, "{dropped}");
        drop(hold);
        assert!(m
            .render()
            .contains("secondpass_shadow_dropped_total{collection=\"c\"}"));
    }

    #[test]
    fn a_reload_changes_rates_and_the_log_but_not_the_queue() {
        let m = Metrics::new(&["c".into()]);
        let dir = std::env::temp_dir().join(format!("shadow-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = Shadow::new(
            &ShadowConfig {
                sample_rate: 0.0,
                ..Default::default()
            },
            &m,
        );
        assert!(!(0..100).any(|_| s.sampled()));
        let change = Change {
            qdrant: vec![0],
            reranked: vec![0],
            displacement: 0.0,
            top1_changed: false,
            overlap: 1.0,
        };
        let ids = [json!(7)];
        let log = dir.join("shadow.jsonl");
        let fixed = s.reconfigure(&ShadowConfig {
            sample_rate: 1.0,
            log_file: Some(log.clone()),
            queue: 8,
            ..Default::default()
        });
        assert_eq!(fixed, vec!["shadow.queue"]);
        assert!((0..100).all(|_| s.sampled()));
        s.record("c", "c", "q", &ids, &[Some(0.5)], &change, 0.01);
        let lines = std::fs::read_to_string(&log).unwrap();
        assert_eq!(lines.lines().count(), 1, "{lines}");
        // log_rate 0: compared and counted, not logged
        s.reconfigure(&ShadowConfig {
            log_file: Some(log.clone()),
            log_rate: 0.0,
            ..Default::default()
        });
        s.record("c", "c", "q", &ids, &[Some(0.5)], &change, 0.01);
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
        assert_eq!(s.metrics.compared.with_label_values(&["c"]).get(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
