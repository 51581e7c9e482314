//! Every metric family in one place. Collection labels are limited to configured
//! collections (others share `_other`) to keep cardinality bounded.

use std::collections::HashSet;
use std::sync::RwLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Label value for collections that are not named in the configuration.
pub const OTHER: &str = "_other";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const CANDIDATE_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 500.0, 1000.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Round trips to Redis: a tenth of a millisecond on loopback, the timeout at worst.
const REDIS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
const SHARE_BUCKETS: &[f64] = &[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

pub struct Metrics {
    registry: Registry,
    known: RwLock<HashSet<String>>,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub upstream_responses: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub responses: IntCounterVec,
    pub rerank_duration: HistogramVec,
    pub rerank_candidates: HistogramVec,
    pub candidates_without_text: IntCounterVec,
    pub rerank_errors: IntCounterVec,
    pub nonfinite_scores: IntCounterVec,
    pub fail_open: IntCounterVec,
    pub fallback: IntCounterVec,
    pub breaker_state: IntGaugeVec,
    pub queue_wait: HistogramVec,
    pub tokenization: HistogramVec,
    pub inference: HistogramVec,
    pub batch_size: HistogramVec,
    pub pairs_scored: IntCounterVec,
    pub passages_per_document: HistogramVec,
    pub stage_duration: HistogramVec,
    pub stage_candidates: HistogramVec,
    pub stage_outcomes: IntCounterVec,
    pub cache_lookups: IntCounterVec,
    pub cache_redis_errors: IntCounterVec,
    pub cache_redis_duration: HistogramVec,
    pub rank_displacement: HistogramVec,
    pub config_reloads: IntCounterVec,
    pub model_loaded: IntGauge,
}

impl Metrics {
    pub fn new(collections: &[String]) -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "secondpass_breaker_state",
                "Circuit breaker per reranker: 0 closed, 1 open, 2 half-open",
            ),
            &["reranker"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(breaker_state.clone()))
            .expect("unique metric");
        let model_loaded = IntGauge::new(
            "secondpass_model_loaded",
            "1 when every configured reranker is loaded",
        )
        .expect("valid metric");
        registry
            .register(Box::new(model_loaded.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(crate::telemetry::DROPPED.clone()))
            .expect("unique metric");
        Metrics {
            known: RwLock::new(collections.iter().cloned().collect()),
            requests: counter(
                "secondpass_requests_total",
                "Requests handled, by transport, route, collection and rerank status",
                &["transport", "route", "collection", "rerank_status"],
            ),
            request_duration: histogram(
                "secondpass_request_duration_seconds",
                "Whole request time through the proxy",
                &["route"],
                LATENCY_BUCKETS,
            ),
            upstream_duration: histogram(
                "secondpass_upstream_duration_seconds",
                "Time waiting for Qdrant",
                &["route"],
                LATENCY_BUCKETS,
            ),
            upstream_responses: counter(
                "secondpass_upstream_responses_total",
                "Responses from Qdrant by status class",
                &["code"],
            ),
            upstream_errors: counter(
                "secondpass_upstream_errors_total",
                "Calls to Qdrant that got no response, by kind (connect, timeout)",
                &["kind"],
            ),
            responses: counter(
                "secondpass_responses_total",
                "Responses sent to clients by status class",
                &["code"],
            ),
            rerank_duration: histogram(
                "secondpass_rerank_duration_seconds",
                "Time of the rerank step (tokenization and inference)",
                &["reranker"],
                LATENCY_BUCKETS,
            ),
            rerank_candidates: histogram(
                "secondpass_rerank_candidates",
                "Candidates scored per reranked search",
                &["collection"],
                CANDIDATE_BUCKETS,
            ),
            candidates_without_text: counter(
                "secondpass_candidates_without_text_total",
                "Candidates returned by Qdrant without the configured text field",
                &["collection"],
            ),
            rerank_errors: counter(
                "secondpass_rerank_errors_total",
                "Rerank failures by reranker and kind",
                &["reranker", "kind"],
            ),
            nonfinite_scores: counter(
                "secondpass_nonfinite_scores_total",
                "Scores a reranker returned as NaN or infinity (or beyond f32), clamped to finite values",
                &["reranker"],
            ),
            fail_open: counter(
                "secondpass_fail_open_total",
                "Searches answered in Qdrant's order because reranking failed",
                &["collection"],
            ),
            fallback: counter(
                "secondpass_fallback_total",
                "Reranker failures by the reranker that failed and the next one tried (none: chain exhausted)",
                &["from", "to"],
            ),
            breaker_state,
            queue_wait: histogram(
                "secondpass_queue_wait_seconds",
                "Time a rerank job waited for an inference worker",
                &["reranker"],
                LATENCY_BUCKETS,
            ),
            tokenization: histogram(
                "secondpass_tokenization_seconds",
                "Time tokenizing one rerank job's pairs",
                &["reranker"],
                LATENCY_BUCKETS,
            ),
            inference: histogram(
                "secondpass_inference_seconds",
                "Time of one inference batch",
                &["reranker"],
                LATENCY_BUCKETS,
            ),
            batch_size: histogram(
                "secondpass_batch_size",
                "Pairs per inference batch (across requests)",
                &["reranker"],
                BATCH_BUCKETS,
            ),
            pairs_scored: counter(
                "secondpass_pairs_scored_total",
                "(query, passage) pairs the local model scored (one per document when truncating)",
                &["reranker"],
            ),
            passages_per_document: histogram(
                "secondpass_passages_per_document",
                "Passages a chunked document was split into (long_documents = chunk)",
                &["reranker"],
                BATCH_BUCKETS,
            ),
            stage_duration: histogram(
                "secondpass_stage_duration_seconds",
                "Time of one stage of a staged rerank",
                &["collection", "stage"],
                LATENCY_BUCKETS,
            ),
            stage_candidates: histogram(
                "secondpass_stage_candidates",
                "Candidates one stage of a staged rerank scored",
                &["collection", "stage"],
                CANDIDATE_BUCKETS,
            ),
            stage_outcomes: counter(
                "secondpass_stage_outcomes_total",
                "Stages of staged reranks by status (applied, failed_open, skipped)",
                &["collection", "stage", "status"],
            ),
            cache_lookups: counter(
                "secondpass_cache_lookups_total",
                "Score cache lookups (one per document) by tier (memory, redis) and result (hit, miss; skipped: Redis left alone after an error)",
                &["tier", "result"],
            ),
            cache_redis_errors: counter(
                "secondpass_cache_redis_errors_total",
                "Round trips to the shared score cache (Redis) that failed, by operation (get, set) and kind (timeout, connection, server, protocol, backlog)",
                &["op", "kind"],
            ),
            cache_redis_duration: histogram(
                "secondpass_cache_redis_duration_seconds",
                "Round trip to the shared score cache (Redis): one MGET per rerank batch (get), one pipeline of SETs (set)",
                &["op"],
                REDIS_BUCKETS,
            ),
            rank_displacement: histogram(
                "secondpass_rank_displacement",
                "Share of the returned page that was not in Qdrant's own page (0: reranking changed nothing, 1: all new)",
                &["collection"],
                SHARE_BUCKETS,
            ),
            config_reloads: counter(
                "secondpass_config_reloads_total",
                "Configuration reloads by result (ok, invalid)",
                &["result"],
            ),
            model_loaded,
            registry,
        }
    }

    /// Registers a family kept by another module (e.g. shadow mode's).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        self.registry.register(c).expect("unique metric");
    }

    /// Replaces the collections that get their own label value.
    pub fn set_known(&self, collections: &[String]) {
        *self.known.write().unwrap_or_else(|e| e.into_inner()) =
            collections.iter().cloned().collect();
    }

    /// The label value for `collection`.
    pub fn collection_label<'a>(&self, collection: &'a str) -> &'a str {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        if known.contains(collection) {
            collection
        } else {
            OTHER
        }
    }

    /// `2xx`, `4xx`, `5xx`... for a status code.
    pub fn class(code: u16) -> &'static str {
        match code {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_collections_share_a_label() {
        let m = Metrics::new(&["docs".to_string()]);
        assert_eq!(m.collection_label("docs"), "docs");
        assert_eq!(m.collection_label("random-123"), OTHER);
    }

    #[test]
    fn renders_families() {
        let m = Metrics::new(&[]);
        m.requests
            .with_label_values(&["rest", "search", "_other", "applied"])
            .inc();
        let text = m.render();
        assert!(text.contains("secondpass_requests_total{collection=\"_other\",rerank_status=\"applied\",route=\"search\",transport=\"rest\"} 1"));
        assert!(text.contains("# TYPE secondpass_model_loaded gauge"));
    }
}
