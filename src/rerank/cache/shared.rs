//! The shared tier: scores in Redis, so that replicas reuse each other's work. One
//! round trip per rerank batch each way: an `MGET` of the batch's keys, and a
//! pipeline of `SET key score PX ttl` sent in the background once the batch is
//! scored. Keys are digests and values are numbers: no query or document text is
//! stored.
//!
//! Redis slow or down never holds a search past its budget: each round trip is
//! bounded by `timeout_ms` (and by the search's own deadline); a failed or late one
//! counts as misses, shows in `secondpass_cache_redis_errors_total` and a log line
//! (at most one per [`LOG_EVERY`]), and Redis is then skipped (lookups counted as
//! `skipped`) for `retry_ms` while the connection manager reconnects on its own.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::key::Key;
use crate::config::{CacheConfig, RedisConfig};
use crate::metrics::Metrics;

/// At most one warning per interval about Redis errors (with the count since the last).
pub const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Shared {
    client: redis::Client,
    /// Made on first use (it needs the runtime); it reconnects by itself.
    conn: OnceLock<ConnectionManager>,
    /// Where the URL points, for logs (never the URL: it may hold a password).
    server: String,
    prefix: String,
    ttl_ms: u64,
    timeout: Duration,
    connect_timeout: Duration,
    retry: Duration,
    /// Redis is skipped until this many ms after `epoch` (0: not skipped).
    skip_until: AtomicU64,
    /// Whether the last round trip failed (to log the recovery once).
    failing: AtomicBool,
    epoch: Instant,
    writes: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    log: Throttle,
}

impl Shared {
    /// The tier of `cfg`, or `None` when `[cache.redis]` is absent (or, having passed
    /// validation, its URL cannot be read any more: logged).
    pub fn new(cache: &CacheConfig, metrics: Arc<Metrics>) -> Option<Arc<Shared>> {
        let cfg: &RedisConfig = cache.redis.as_ref()?;
        let client = match cfg
            .resolve_url()
            .map_err(|e| e.to_string())
            .and_then(|u| redis::Client::open(u).map_err(|e| e.category().to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "shared score cache (Redis) is off");
                return None;
            }
        };
        let info = client.get_connection_info();
        let shared = Arc::new(Shared {
            server: info.addr().to_string(),
            client,
            conn: OnceLock::new(),
            prefix: cfg.key_prefix.clone(),
            ttl_ms: cfg.ttl_ms(cache),
            timeout: Duration::from_millis(cfg.timeout_ms),
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            retry: Duration::from_millis(cfg.retry_ms),
            skip_until: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            epoch: Instant::now(),
            writes: Arc::new(Semaphore::new(cfg.max_pending_writes)),
            metrics,
            log: Throttle::new(LOG_EVERY),
        });
        // Inside a runtime (the server): connect now, so that the first searches find
        // the connection made instead of waiting for it within their timeout.
        if tokio::runtime::Handle::try_current().is_ok() {
            shared.conn();
        }
        Some(shared)
    }

    fn conn(&self) -> ConnectionManager {
        self.conn
            .get_or_init(|| {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(self.retry);
                let conn = ConnectionManager::new_lazy_with_config(self.client.clone(), cfg)
                    .expect("no push sender, no resubscription: nothing to refuse");
                // Connect now, in the background: the first searches should not pay
                // for it (and a lookup that gives up must not stall the connection).
                let mut first = conn.clone();
                tokio::spawn(async move {
                    let _: redis::RedisResult<()> =
                        redis::cmd("PING").query_async(&mut first).await;
                });
                conn
            })
            .clone()
    }

    fn name(&self, key: &Key) -> String {
        format!("{}{}", self.prefix, key.hex())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn skipping(&self) -> bool {
        self.now_ms() < self.skip_until.load(Ordering::Relaxed)
    }

    /// The scores Redis holds for `keys` (`None` for each it lacks), or `None` when the
    /// tier was skipped or failed: then every key counts as a miss of this lookup.
    pub async fn get(&self, keys: &[Key], deadline: Instant) -> Option<Vec<Option<f32>>> {
        if keys.is_empty() {
            return Some(Vec::new());
        }
        let budget = self
            .timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        if self.skipping() || budget.is_zero() {
            self.count("skipped", keys.len());
            return None;
        }
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(self.name(k));
        }
        let mut conn = self.conn();
        let span = round_trip_span("MGET", keys.len());
        let started = Instant::now();
        let answer =
            tokio::time::timeout(budget, cmd.query_async::<Vec<Option<String>>>(&mut conn))
                .instrument(span.clone())
                .await;
        self.observe("get", started);
        let values = match answer {
            Ok(Ok(v)) if v.len() == keys.len() => v,
            Ok(Ok(v)) => {
                let why = format!("MGET of {} keys answered {} values", keys.len(), v.len());
                span.record("outcome", "protocol");
                return self.failed("get", "protocol", &why, keys.len());
            }
            Ok(Err(e)) => {
                span.record("outcome", error_kind(&e));
                return self.failed("get", error_kind(&e), &e, keys.len());
            }
            Err(_) => {
                let why = format!("no answer within {} ms", budget.as_millis());
                span.record("outcome", "timeout");
                return self.failed("get", "timeout", &why, keys.len());
            }
        };
        self.recovered();
        let scores: Vec<Option<f32>> = values
            .into_iter()
            .map(|v| {
                v.and_then(|s| s.parse::<f32>().ok())
                    .filter(|s| s.is_finite())
            })
            .collect();
        let hits = scores.iter().filter(|s| s.is_some()).count();
        span.record("outcome", "ok");
        span.record("hits", hits as i64);
        self.count("hit", hits);
        self.count("miss", keys.len() - hits);
        Some(scores)
    }

    /// Writes `entries` in one pipeline, in the background. Dropped (and counted)
    /// while Redis is skipped or when `max_pending_writes` batches are in flight.
    pub fn put(self: &Arc<Self>, entries: Vec<(Key, f32)>) {
        if entries.is_empty() || self.skipping() {
            return;
        }
        let Ok(permit) = self.writes.clone().try_acquire_owned() else {
            self.metrics
                .cache_redis_errors
                .with_label_values(&["set", "backlog"])
                .inc();
            return;
        };
        let mut pipe = redis::pipe();
        for (k, score) in &entries {
            pipe.cmd("SET")
                .arg(self.name(k))
                .arg(score.to_string())
                .arg("PX")
                .arg(self.ttl_ms)
                .ignore();
        }
        let this = self.clone();
        // Made here, so that the background write stays in the search's trace.
        let span = round_trip_span("SET", entries.len());
        tokio::spawn(async move {
            let _permit = permit;
            let mut conn = this.conn();
            let started = Instant::now();
            let done = tokio::time::timeout(this.timeout, pipe.query_async::<()>(&mut conn))
                .instrument(span.clone())
                .await;
            this.observe("set", started);
            let outcome = match done {
                Ok(Ok(())) => {
                    this.recovered();
                    "ok"
                }
                Ok(Err(e)) => {
                    this.failed::<()>("set", error_kind(&e), &e, 0);
                    error_kind(&e)
                }
                Err(_) => {
                    let why = format!("no answer within {} ms", this.timeout.as_millis());
                    this.failed::<()>("set", "timeout", &why, 0);
                    "timeout"
                }
            };
            span.record("outcome", outcome);
        });
    }

    fn count(&self, result: &str, n: usize) {
        self.metrics
            .cache_lookups
            .with_label_values(&["redis", result])
            .inc_by(n as u64);
    }

    fn observe(&self, op: &str, started: Instant) {
        self.metrics
            .cache_redis_duration
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Counts a failed round trip, skips Redis for `retry_ms`, logs (rate-limited).
    /// `keys` were being looked up: they count as misses.
    fn failed<T>(
        &self,
        op: &str,
        kind: &str,
        why: &dyn std::fmt::Display,
        keys: usize,
    ) -> Option<T> {
        self.metrics
            .cache_redis_errors
            .with_label_values(&[op, kind])
            .inc();
        self.count("miss", keys);
        let until = self.now_ms() + self.retry.as_millis() as u64;
        self.skip_until.fetch_max(until, Ordering::Relaxed);
        self.failing.store(true, Ordering::Relaxed);
        if let Some(suppressed) = self.log.allow() {
            tracing::warn!(
                server = %self.server,
                op,
                kind,
                error = %why,
                suppressed,
                skip_ms = self.retry.as_millis() as u64,
                "shared score cache (Redis) failed; searches go on without it"
            );
        }
        None
    }

    fn recovered(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(server = %self.server, "shared score cache (Redis) answers again");
        }
    }
}

/// The span of one round trip to Redis (never a key: keys hold hashes of query and
/// document text).
fn round_trip_span(operation: &'static str, keys: usize) -> tracing::Span {
    crate::telemetry::span!(
        "cache.redis",
        otel.kind = "client",
        db.system = "redis",
        db.operation = operation,
        keys = keys as i64,
        hits = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}

/// A low-cardinality label for a Redis error.
fn error_kind(e: &redis::RedisError) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        "connection"
    } else {
        "server"
    }
}

/// Lets one event through per interval and counts the rest.
struct Throttle {
    every: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl Throttle {
    fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(events suppressed since the last one let through)`, or `None`.
    fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(t) if now.duration_since(t) < self.every => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_lets_one_through_per_interval() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        *t.last.lock().unwrap() = Some(Instant::now() - Duration::from_secs(3601));
        assert_eq!(
            t.allow(),
            Some(2),
            "the suppressed count comes with the next line"
        );
    }

    fn tier(url: &str, timeout_ms: u64) -> (Arc<Shared>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new(&[]));
        let cache = CacheConfig {
            redis: Some(RedisConfig {
                timeout_ms,
                retry_ms: 60_000,
                ..RedisConfig::at(url)
            }),
            ..CacheConfig::default()
        };
        (Shared::new(&cache, metrics.clone()).unwrap(), metrics)
    }

    #[tokio::test]
    async fn nothing_listening_is_a_miss_within_the_timeout_then_skipped() {
        // A port nothing listens on: connection refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (t, m) = tier(&format!("redis://127.0.0.1:{port}"), 200);
        let keys = [Key([1; 32]), Key([2; 32])];
        let started = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(t.get(&keys, deadline).await, None);
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
        // Skipped now, without a round trip.
        assert_eq!(t.get(&keys, deadline).await, None);
        let text = m.render();
        assert!(
            text.contains(r#"secondpass_cache_lookups_total{result="skipped",tier="redis"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"secondpass_cache_redis_errors_total{kind="#),
            "{text}"
        );
        t.put(vec![(keys[0], 1.0)]); // skipped: no task, no panic
    }

    #[tokio::test]
    async fn a_spent_deadline_skips_redis() {
        let (t, m) = tier("redis://127.0.0.1:1", 200);
        assert_eq!(t.get(&[Key([1; 32])], Instant::now()).await, None);
        assert!(m
            .render()
            .contains(r#"secondpass_cache_lookups_total{result="skipped",tier="redis"} 1"#));
    }
}
