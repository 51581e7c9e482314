//! The fallback chain: rerankers tried in order within one budget, each behind its
//! circuit breaker. Every fallback shows in a metric and the log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::breaker::{Breaker, State};
use super::cache::{Scope, ScoreCache};
use super::{Registry, RerankError, RerankRequest, Reranker, ScoreKind};
use crate::config::{Config, RerankerConfig};
use crate::metrics::Metrics;
use tracing::field::Empty;
use tracing::Instrument;

/// A reranker that did not answer, and why.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub reranker: String,
    pub error: RerankError,
}

/// The scores of the first reranker in the chain that answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Configured name of the reranker that answered.
    pub reranker: String,
    pub model: String,
    pub kind: ScoreKind,
    /// One raw score per document, in the documents' order.
    pub raw: Vec<f32>,
    /// Rerankers tried before it.
    pub failed: Vec<Attempt>,
}

/// Every reranker of the chain failed; `failed` is not empty.
#[derive(Debug, Clone)]
pub struct Exhausted {
    pub failed: Vec<Attempt>,
}

impl Exhausted {
    /// The last error, as the one to report.
    pub fn error(&self) -> RerankError {
        self.failed
            .last()
            .map(|a| a.error.clone())
            .unwrap_or_else(|| RerankError::Unavailable("no reranker configured".into()))
    }

    /// `name: error; name: error` for the response's reason.
    pub fn describe(&self) -> String {
        self.failed
            .iter()
            .map(|a| format!("{}: {}", a.reranker, a.error))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub struct Chain {
    pub registry: Registry,
    breakers: BTreeMap<String, Breaker>,
    metrics: Arc<Metrics>,
    /// Scores already computed; `None` without `[cache] max_entries` or `[cache.redis]`.
    cache: Option<ScoreCache>,
}

/// Breaker settings of the local model (hosted rerankers set their own).
const LOCAL_BREAKER: (u32, u64) = (5, 30_000);

impl Chain {
    pub fn new(registry: Registry, config: &Config, metrics: Arc<Metrics>) -> Chain {
        let breakers = registry
            .names()
            .map(|name| {
                let (threshold, open_ms) =
                    match config.rerankers.get(name).and_then(RerankerConfig::hosted) {
                        Some((_, h)) => (h.breaker_failures, h.breaker_open_ms),
                        None => LOCAL_BREAKER,
                    };
                (
                    name.to_string(),
                    Breaker::new(threshold, Duration::from_millis(open_ms)),
                )
            })
            .collect();
        Chain {
            registry,
            breakers,
            cache: ScoreCache::new(&config.cache, metrics.clone()),
            metrics,
        }
    }

    /// Each reranker's breaker state.
    pub fn breaker_states(&self) -> Vec<(String, State)> {
        let now = Instant::now();
        self.breakers
            .iter()
            .map(|(n, b)| (n.clone(), b.state(now)))
            .collect()
    }

    fn record_state(&self, name: &str, breaker: &Breaker) {
        let v = match breaker.state(Instant::now()) {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        };
        self.metrics.breaker_state.with_label_values(&[name]).set(v);
    }

    /// Tries `names` in order until one answers, all within `budget`, using the
    /// score cache where one is configured.
    pub async fn run(
        &self,
        names: &[&str],
        request: RerankRequest,
        budget: Duration,
    ) -> Result<Answer, Exhausted> {
        self.run_cached(names, request, budget, true).await
    }

    /// [`Chain::run`]; `use_cache: false` (a collection's `cache = false`) neither
    /// reads nor fills the score cache. With the cache, each reranker is asked only
    /// for the documents it has no fresh score for.
    pub async fn run_cached(
        &self,
        names: &[&str],
        request: RerankRequest,
        budget: Duration,
        use_cache: bool,
    ) -> Result<Answer, Exhausted> {
        let deadline = crate::deadline::in_(budget);
        let cache = self.cache.as_ref().filter(|_| use_cache);
        let mut failed: Vec<Attempt> = Vec::new();
        for (i, &name) in names.iter().enumerate() {
            let now = Instant::now();
            let span = crate::telemetry::span!(
                "rerank.attempt",
                reranker = name,
                provider = Empty,
                model = Empty,
                candidates = request.documents.len() as i64,
                cache_hits = Empty,
                sent = Empty,
                retries = 0i64,
                outcome = Empty,
            );
            let error = match (self.registry.get(name), self.breakers.get(name)) {
                _ if now >= deadline => RerankError::Timeout(budget.as_millis() as u64),
                (None, _) => RerankError::Unavailable(format!("reranker `{name}` is not loaded")),
                (Some(reranker), breaker) => {
                    span.record("provider", reranker.provider());
                    span.record("model", reranker.model());
                    let target = Target {
                        name,
                        reranker: reranker.as_ref(),
                        breaker,
                        deadline,
                        budget,
                    };
                    match self
                        .attempt(&target, &request, cache)
                        .instrument(span.clone())
                        .await
                    {
                        Ok(raw) => {
                            span.record("outcome", "ok");
                            return Ok(Answer {
                                reranker: name.to_string(),
                                model: reranker.model().to_string(),
                                kind: reranker.score_kind(),
                                raw,
                                failed,
                            });
                        }
                        Err(e) => e,
                    }
                }
            };
            // The kind only: a provider's message may quote the request.
            span.record("outcome", error.kind());
            self.metrics
                .rerank_errors
                .with_label_values(&[name, error.kind()])
                .inc();
            let to = names.get(i + 1).copied().unwrap_or("none");
            self.metrics.fallback.with_label_values(&[name, to]).inc();
            if to != "none" {
                tracing::warn!(from = name, to, error = %error, "reranker failed; falling back");
            }
            failed.push(Attempt {
                reranker: name.to_string(),
                error,
            });
        }
        Err(Exhausted { failed })
    }

    /// Scores as finite numbers, whatever the reranker answered: ±infinity (and hosted
    /// scores beyond f32) become ±`f32::MAX`, NaN the lowest score; each one counted.
    /// JSON has no infinity or NaN (they would come out as `null`, which clients refuse).
    fn finite(&self, name: &str, mut scores: Vec<f32>) -> Vec<f32> {
        let mut fixed = 0u64;
        for s in scores.iter_mut().filter(|s| !s.is_finite()) {
            *s = if s.is_nan() {
                f32::MIN
            } else {
                s.clamp(f32::MIN, f32::MAX)
            };
            fixed += 1;
        }
        if fixed > 0 {
            self.metrics
                .nonfinite_scores
                .with_label_values(&[name])
                .inc_by(fixed);
            tracing::warn!(
                reranker = name,
                count = fixed,
                "reranker returned scores that are not finite numbers; clamped"
            );
        }
        scores
    }

    /// One reranker's scores for every document: cached ones, and the reranker's
    /// answer for the rest (behind its breaker, within the deadline).
    async fn attempt(
        &self,
        t: &Target<'_>,
        request: &RerankRequest,
        cache: Option<&ScoreCache>,
    ) -> Result<Vec<f32>, RerankError> {
        // Decoder rerankers: their template and the instruction change the scores.
        let template = t.reranker.prompt_key();
        let scope = Scope {
            reranker: t.name,
            identity: t.reranker.identity(),
            max_length: request.max_length,
            chunking: request.chunking.as_ref(),
            query: &request.query,
            template,
            instruction: template.and(request.instruction.as_deref()),
        };
        let lookup = match cache {
            Some(c) => Some(c.lookup(&scope, &request.documents, t.deadline).await),
            None => None,
        };
        let mut raw: Vec<Option<f32>> = match &lookup {
            Some(l) => l.scores.clone(),
            None => vec![None; request.documents.len()],
        };
        let misses: Vec<usize> = (0..raw.len()).filter(|&i| raw[i].is_none()).collect();
        if crate::telemetry::enabled() {
            let span = tracing::Span::current();
            span.record("cache_hits", (raw.len() - misses.len()) as i64);
            span.record("sent", misses.len() as i64);
        }
        // Every score was cached (or nothing to score): no call, so no breaker either.
        if misses.is_empty() && !raw.is_empty() {
            return Ok(raw.into_iter().map(|s| s.expect("all hits")).collect());
        }
        let scores = self.call(t, request, &misses).await?;
        if let (Some(c), Some(l)) = (cache, &lookup) {
            c.store(
                misses
                    .iter()
                    .zip(&scores)
                    .map(|(&i, &s)| (l.keys[i], s))
                    .collect(),
            );
        }
        for (&i, score) in misses.iter().zip(scores) {
            raw[i] = Some(score);
        }
        Ok(raw
            .into_iter()
            .map(|s| s.expect("every miss scored"))
            .collect())
    }

    /// The reranker's scores for the documents at `misses` (all of them when none was
    /// cached), behind its breaker, timed, checked for count and finiteness.
    async fn call(
        &self,
        t: &Target<'_>,
        request: &RerankRequest,
        misses: &[usize],
    ) -> Result<Vec<f32>, RerankError> {
        // Held across the call: dropped with this future (the caller went away), it
        // frees a half-open probe slot.
        let permit = match t.breaker.map(|b| b.allow(Instant::now())) {
            Some(None) => return Err(RerankError::CircuitOpen),
            Some(Some(p)) => Some(p),
            None => None,
        };
        let mut req = request.clone();
        req.deadline = Some(t.deadline);
        if misses.len() < request.documents.len() {
            req.documents = misses
                .iter()
                .map(|&i| request.documents[i].clone())
                .collect();
        }
        let started = Instant::now();
        let result = tokio::time::timeout_at(t.deadline.into(), t.reranker.rerank(req)).await;
        self.metrics
            .rerank_duration
            .with_label_values(&[t.name])
            .observe(started.elapsed().as_secs_f64());
        let result = result
            .unwrap_or(Err(RerankError::Timeout(t.budget.as_millis() as u64)))
            .and_then(|scores| {
                if scores.len() == misses.len() {
                    Ok(scores)
                } else {
                    Err(RerankError::WrongCount {
                        expected: misses.len(),
                        got: scores.len(),
                    })
                }
            })
            .map(|scores| self.finite(t.name, scores));
        if let (Some(b), Some(permit)) = (t.breaker, permit) {
            match &result {
                Ok(_) => permit.success(),
                // The caller's budget ran out (a 1 ms collection, a slow chain before
                // this reranker): not the reranker's failure, and one collection's
                // budget must not open the breaker for every other collection.
                Err(RerankError::Timeout(_)) if Instant::now() >= t.deadline => permit.release(),
                // Errors the call brought on itself say nothing about the reranker.
                Err(e) if !e.is_reranker_fault() => permit.release(),
                Err(_) => permit.failure(Instant::now()),
            }
            self.record_state(t.name, b);
        }
        result
    }
}

/// One reranker of the chain, asked within the chain's deadline.
struct Target<'a> {
    name: &'a str,
    reranker: &'a dyn Reranker,
    breaker: Option<&'a Breaker>,
    deadline: Instant,
    /// The whole budget, for the timeout's message.
    budget: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rerank::{RerankFuture, Reranker};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Fake {
        fail: bool,
        calls: AtomicUsize,
    }

    /// Answers after `delay` with `scores` (cycled over the documents).
    struct Slow {
        delay: Duration,
        scores: Vec<f32>,
    }

    impl Reranker for Slow {
        fn model(&self) -> &str {
            "slow"
        }
        fn score_kind(&self) -> ScoreKind {
            ScoreKind::Logit
        }
        fn rerank(&self, r: RerankRequest) -> RerankFuture {
            let (delay, scores) = (self.delay, self.scores.clone());
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(scores
                    .iter()
                    .copied()
                    .cycle()
                    .take(r.documents.len())
                    .collect())
            })
        }
    }

    fn slow_chain(delay: Duration, scores: Vec<f32>) -> Chain {
        let mut reg = Registry::default();
        reg.insert("local", Arc::new(Slow { delay, scores }));
        let cfg = Config::from_toml("").unwrap();
        Chain::new(reg, &cfg, Arc::new(Metrics::new(&[])))
    }

    impl Reranker for Fake {
        fn model(&self) -> &str {
            "fake"
        }
        fn score_kind(&self) -> ScoreKind {
            ScoreKind::Probability
        }
        fn rerank(&self, r: RerankRequest) -> RerankFuture {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let fail = self.fail;
            Box::pin(async move {
                if fail {
                    Err(RerankError::Inference("down".into()))
                } else {
                    Ok(vec![0.5; r.documents.len()])
                }
            })
        }
    }

    fn chain(threshold: u32) -> (Chain, Arc<Fake>, Arc<Fake>) {
        let bad = Arc::new(Fake {
            fail: true,
            calls: AtomicUsize::new(0),
        });
        let good = Arc::new(Fake {
            fail: false,
            calls: AtomicUsize::new(0),
        });
        let mut reg = Registry::default();
        reg.insert("bad", bad.clone());
        reg.insert("good", good.clone());
        let metrics = Arc::new(Metrics::new(&[]));
        let cfg = Config::from_toml("").unwrap();
        let mut c = Chain::new(reg, &cfg, metrics);
        for b in c.breakers.values_mut() {
            *b = Breaker::new(threshold, Duration::from_secs(60));
        }
        (c, bad, good)
    }

    fn req() -> RerankRequest {
        RerankRequest::new("q", vec!["a".into(), "b".into()])
    }

    #[tokio::test]
    async fn falls_back_and_reports_it() {
        let (c, _, _) = chain(5);
        let a = c
            .run(&["bad", "good"], req(), Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(a.reranker, "good");
        assert_eq!(a.failed.len(), 1);
        assert_eq!(a.failed[0].reranker, "bad");
        let m = c.metrics.render();
        assert!(
            m.contains("secondpass_fallback_total{from=\"bad\",to=\"good\"} 1"),
            "{m}"
        );
    }

    #[tokio::test]
    async fn exhausted_chain_lists_every_failure() {
        let (c, _, _) = chain(5);
        let e = c
            .run(&["bad", "ghost"], req(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(e.failed.len(), 2);
        assert!(e.describe().contains("ghost"));
        assert!(c
            .metrics
            .render()
            .contains("secondpass_fallback_total{from=\"ghost\",to=\"none\"} 1"));
    }

    #[tokio::test]
    async fn the_callers_budget_running_out_does_not_open_the_breaker() {
        // One collection with a 1 ms budget times out again and again ... (The reranker
        // takes far longer than the budget: were the test thread descheduled past both
        // timers, the timeout would see the answer ready first.)
        let c = slow_chain(Duration::from_secs(2), vec![0.5]);
        for _ in 0..(LOCAL_BREAKER.0 * 3) {
            let e = c
                .run(&["local"], req(), Duration::from_millis(1))
                .await
                .unwrap_err();
            assert!(matches!(e.error(), RerankError::Timeout(_)), "{e:?}");
        }
        assert_eq!(c.breaker_states(), [("local".to_string(), State::Closed)]);
        // ... and another collection still reranks with the same reranker.
        let a = c
            .run(&["local"], req(), Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(a.raw, [0.5, 0.5]);
    }

    #[tokio::test]
    async fn a_budget_too_large_to_add_to_now_still_works() {
        let c = slow_chain(Duration::ZERO, vec![0.5]);
        let a = c.run(&["local"], req(), Duration::MAX).await.unwrap();
        assert_eq!(a.raw.len(), 2);
    }

    #[tokio::test]
    async fn non_finite_scores_become_finite_and_are_counted() {
        let c = slow_chain(
            Duration::ZERO,
            vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.5],
        );
        let mut r = req();
        r.documents = vec!["a".into(), "b".into(), "c".into(), "d".into()];
        let a = c.run(&["local"], r, Duration::from_secs(1)).await.unwrap();
        assert_eq!(a.raw, [f32::MIN, f32::MAX, f32::MIN, 1.5]);
        assert!(c
            .metrics
            .render()
            .contains("secondpass_nonfinite_scores_total{reranker=\"local\"} 3"));
    }

    /// Always answers with this error.
    struct Refusing(RerankError);

    impl Reranker for Refusing {
        fn model(&self) -> &str {
            "refusing"
        }
        fn score_kind(&self) -> ScoreKind {
            ScoreKind::Logit
        }
        fn rerank(&self, _: RerankRequest) -> RerankFuture {
            let e = self.0.clone();
            Box::pin(async move { Err(e) })
        }
    }

    /// A full local queue and a provider's refusal of one request's content are the
    /// caller's doing: they never open the breaker, whatever their number; the
    /// reranker's own faults still do.
    #[tokio::test]
    async fn errors_the_caller_caused_do_not_open_the_breaker() {
        let provider = |status| RerankError::Provider {
            status,
            message: "bad input".into(),
        };
        for (error, opens) in [
            (RerankError::Overloaded, false),
            (provider(400), false),
            (provider(413), false),
            (provider(422), false),
            (provider(500), true),
            (provider(401), true),
            (RerankError::Inference("down".into()), true),
            (RerankError::Transport("refused".into()), true),
        ] {
            let mut reg = Registry::default();
            reg.insert("local", Arc::new(Refusing(error.clone())));
            let c = Chain::new(
                reg,
                &Config::from_toml("").unwrap(),
                Arc::new(Metrics::new(&[])),
            );
            for _ in 0..(LOCAL_BREAKER.0 * 2) {
                let _ = c.run(&["local"], req(), Duration::from_secs(1)).await;
            }
            let want = if opens { State::Open } else { State::Closed };
            assert_eq!(
                c.breaker_states(),
                [("local".to_string(), want)],
                "{error:?}"
            );
        }
    }

    #[tokio::test]
    async fn open_breaker_skips_the_reranker() {
        let (c, bad, _) = chain(2);
        for _ in 0..4 {
            c.run(&["bad", "good"], req(), Duration::from_secs(1))
                .await
                .unwrap();
        }
        assert_eq!(bad.calls.load(Ordering::SeqCst), 2, "skipped once open");
        let states = c.breaker_states();
        assert!(states.contains(&("bad".to_string(), State::Open)));
        assert!(c
            .metrics
            .render()
            .contains("secondpass_breaker_state{reranker=\"bad\"} 1"));
        assert!(c.metrics.render().contains("kind=\"circuit_open\""));
    }
}
