//! The transport-free rerank step: candidates' texts in, order and scores out.
//! REST and gRPC both call [`Engine::rerank`]; neither knows how scoring works.

mod stages;

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use tracing::field::Empty;
use tracing::Instrument;

use crate::config::{CollectionSettings, OnFailure};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::plan::{Decision, RerankPlan, RerankStatus};
use crate::rerank::chain::Chain;
use crate::rerank::{apply_score_mode, RerankRequest};

/// One search to rerank.
pub struct Job<'a> {
    pub collection: &'a str,
    pub settings: &'a CollectionSettings,
    pub plan: &'a RerankPlan,
    /// The text of each candidate, in Qdrant's order (`None`: field missing).
    pub texts: Vec<Option<String>>,
}

impl Job<'_> {
    /// The decoder rerankers' instruction: the request's, else the collection's.
    fn instruction(&self) -> Option<Arc<str>> {
        self.plan
            .instruction
            .clone()
            .or_else(|| self.settings.instruction.as_deref().map(Arc::from))
    }
}

/// What the rerank step did for one search.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: RerankStatus,
    pub reason: Option<String>,
    pub model: Option<String>,
    /// Configured name of the reranker that answered.
    pub reranker: Option<String>,
    /// Rerankers of the chain that failed first, with their errors.
    pub fallback: Vec<(String, String)>,
    /// Candidates sent to the reranker.
    pub candidates: usize,
    /// Seconds spent in the rerank step.
    pub time: f64,
    /// One score per candidate in Qdrant's order (`None`: no text); absent when the
    /// search keeps Qdrant's order (skipped, failed open).
    pub scores: Option<Vec<Option<f32>>>,
    /// Staged reranks: the last stage (1-based) that scored each candidate, which
    /// orders before the scores do.
    pub tiers: Option<Vec<u32>>,
    /// Staged reranks: what each stage did, in order.
    pub stages: Vec<crate::plan::stages::StageReport>,
}

impl Outcome {
    /// A search that was not reranked.
    pub fn not_applied(status: RerankStatus, reason: Option<String>) -> Outcome {
        Outcome {
            status,
            reason,
            model: None,
            reranker: None,
            fallback: Vec::new(),
            candidates: 0,
            time: 0.0,
            scores: None,
            tiers: None,
            stages: Vec::new(),
        }
    }
}

pub struct Engine {
    /// Swapped whole when the configuration's rerankers change.
    chain: std::sync::RwLock<Arc<Chain>>,
    pub metrics: Arc<Metrics>,
}

impl Engine {
    pub fn new(chain: Chain, metrics: Arc<Metrics>) -> Engine {
        Engine {
            chain: std::sync::RwLock::new(Arc::new(chain)),
            metrics,
        }
    }

    /// The rerankers now in force.
    pub fn chain(&self) -> Arc<Chain> {
        self.chain.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts new rerankers in force; requests under way finish with the old ones.
    pub fn set_chain(&self, chain: Chain) {
        *self.chain.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(chain);
    }

    /// Reranks every search of one request concurrently. `texts[i]` holds the
    /// candidates of search `i` (`Some` exactly when its decision is `Rerank`). Returns
    /// one outcome per search, in order, and the wall time of the rerank phase.
    pub async fn rerank_request(
        &self,
        collection: &str,
        settings: &CollectionSettings,
        decisions: &[&Decision],
        texts: Vec<Option<Vec<Option<String>>>>,
    ) -> Result<(Vec<Outcome>, f64), Error> {
        let jobs = decisions
            .iter()
            .zip(texts)
            .filter_map(|(d, t)| match (d, t) {
                (Decision::Rerank(plan), Some(texts)) => Some(self.rerank(Job {
                    collection,
                    settings,
                    plan,
                    texts,
                })),
                _ => None,
            });
        let started = Instant::now();
        let mut reranked = join_all(jobs).await.into_iter();
        let time = started.elapsed().as_secs_f64();
        let mut outcomes = Vec::with_capacity(decisions.len());
        for d in decisions {
            outcomes.push(match d {
                Decision::Disabled => Outcome::not_applied(RerankStatus::Disabled, None),
                Decision::Skip(r) => Outcome::not_applied(RerankStatus::Skipped, Some(r.clone())),
                Decision::Rerank(_) => reranked.next().ok_or_else(|| {
                    Error::Internal("a reranked search had no candidates".into())
                })??,
            });
        }
        Ok((outcomes, time))
    }

    /// Records how much reranking changed a returned page.
    pub fn record_displacement(&self, collection: &str, displacement: Option<f64>) {
        if let Some(d) = displacement {
            let label = self.metrics.collection_label(collection);
            self.metrics
                .rank_displacement
                .with_label_values(&[label])
                .observe(d);
        }
    }

    /// Scores the candidates with the collection's chain of rerankers. When every one
    /// fails, the search fails open (Qdrant's order, status `failed_open`) or errors, as
    /// the collection says.
    pub async fn rerank(&self, job: Job<'_>) -> Result<Outcome, Error> {
        let span = crate::telemetry::span!(
            "rerank",
            collection = job.collection,
            candidates = job.texts.len() as i64,
            status = Empty,
            reranker = Empty,
            fallbacks = Empty,
        );
        let outcome = self.rerank_search(job).instrument(span.clone()).await;
        if let Ok(o) = &outcome {
            span.record("status", o.status.as_str());
            span.record("fallbacks", o.fallback.len() as i64);
            if let Some(r) = &o.reranker {
                span.record("reranker", r.as_str());
            }
        }
        outcome
    }

    async fn rerank_search(&self, mut job: Job<'_>) -> Result<Outcome, Error> {
        let started = Instant::now();
        let label = self.metrics.collection_label(job.collection);
        let missing = job.texts.iter().filter(|t| t.is_none()).count();
        if missing > 0 {
            self.metrics
                .candidates_without_text
                .with_label_values(&[label])
                .inc_by(missing as u64);
        }
        let (positions, documents): (Vec<usize>, Vec<String>) = std::mem::take(&mut job.texts)
            .into_iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i, t)))
            .unzip();
        let total = positions.len() + missing;
        if documents.is_empty() {
            let reason = if total == 0 {
                "Qdrant returned no candidates"
            } else {
                "no candidate has the text field"
            };
            return Ok(Outcome::not_applied(
                RerankStatus::Skipped,
                Some(reason.into()),
            ));
        }
        let stages = job.settings.stages_with(job.plan.reranker.as_deref());
        if stages.len() > 1 {
            let pool = stages::Pool {
                total,
                positions,
                documents,
            };
            return self.rerank_staged(&job, &stages, pool, started).await;
        }
        let request = RerankRequest {
            query: job.plan.query.clone(),
            documents,
            max_length: job.settings.max_length,
            deadline: None,
            chunking: job.settings.chunking(),
            instruction: job.instruction(),
        };
        let chain = stages[0].chain();
        let span = stages::span(0, &chain, request.documents.len());
        let result = self
            .chain()
            .run_cached(&chain, request, job.settings.timeout, job.settings.cache)
            .instrument(span.clone())
            .await;
        stages::record(&span, result.as_ref().map(|a| a.reranker.as_str()));
        let time = started.elapsed().as_secs_f64();
        match result {
            Ok(answer) => {
                self.metrics
                    .rerank_candidates
                    .with_label_values(&[label])
                    .observe(positions.len() as f64);
                let mut scores = vec![None; total];
                for (&pos, &r) in positions.iter().zip(&answer.raw) {
                    scores[pos] = Some(apply_score_mode(r, answer.kind, job.settings.score_mode));
                }
                Ok(Outcome {
                    status: RerankStatus::Applied,
                    reason: None,
                    model: Some(answer.model),
                    reranker: Some(answer.reranker),
                    fallback: answer
                        .failed
                        .iter()
                        .map(|a| (a.reranker.clone(), a.error.to_string()))
                        .collect(),
                    candidates: positions.len(),
                    time,
                    scores: Some(scores),
                    tiers: None,
                    stages: Vec::new(),
                })
            }
            Err(exhausted) => match job.settings.on_failure {
                OnFailure::Error => {
                    tracing::error!(collection = job.collection, errors = %exhausted.describe(), "rerank failed; answering with an error (on_failure = error)");
                    Err(Error::Rerank(exhausted.error()))
                }
                OnFailure::FailOpen => {
                    self.metrics.fail_open.with_label_values(&[label]).inc();
                    tracing::warn!(collection = job.collection, errors = %exhausted.describe(), "rerank failed; failing open with Qdrant's order");
                    Ok(Outcome {
                        status: RerankStatus::FailedOpen,
                        reason: Some(exhausted.describe()),
                        fallback: exhausted
                            .failed
                            .iter()
                            .map(|a| (a.reranker.clone(), a.error.to_string()))
                            .collect(),
                        candidates: positions.len(),
                        time,
                        ..Outcome::not_applied(RerankStatus::FailedOpen, None)
                    })
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScoreMode;
    use crate::plan::{Cut, Window};
    use crate::rerank::{RerankError, RerankFuture, Reranker, ScoreKind};
    use std::time::Duration;

    /// Scores a document by its length; fails or stalls on request.
    struct Fake {
        fail: bool,
        stall: bool,
    }

    impl Reranker for Fake {
        fn model(&self) -> &str {
            "fake"
        }
        fn score_kind(&self) -> ScoreKind {
            ScoreKind::Logit
        }
        fn rerank(&self, r: RerankRequest) -> RerankFuture {
            let (fail, stall) = (self.fail, self.stall);
            Box::pin(async move {
                if stall {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                if fail {
                    return Err(RerankError::Inference("boom".into()));
                }
                Ok(r.documents.iter().map(|d| d.len() as f32).collect())
            })
        }
    }

    fn engine(fail: bool, stall: bool) -> Engine {
        let mut reg = crate::rerank::Registry::default();
        reg.insert("local", Arc::new(Fake { fail, stall }));
        let metrics = Arc::new(Metrics::new(&["docs".into()]));
        let cfg = crate::config::Config::from_toml("").unwrap();
        Engine::new(Chain::new(reg, &cfg, metrics.clone()), metrics)
    }

    fn settings() -> CollectionSettings {
        CollectionSettings {
            enabled: true,
            score_mode: ScoreMode::Raw,
            timeout: Duration::from_millis(50),
            ..Default::default()
        }
    }

    fn plan(offset: usize, limit: usize) -> RerankPlan {
        RerankPlan {
            query: "q".into(),
            cut: Cut::Page(Window {
                offset,
                limit,
                fetch: 10,
            }),
            threshold: None,
            reranker: None,
            instruction: None,
            query_source: crate::plan::query_text::QuerySource::Request,
        }
    }

    /// The engine's rerank step for `texts` (the plan's window does not matter here).
    async fn run(
        e: &Engine,
        collection: &str,
        s: &CollectionSettings,
        texts: Vec<Option<String>>,
    ) -> Result<Outcome, Error> {
        let p = plan(0, 2);
        e.rerank(Job {
            collection,
            settings: s,
            plan: &p,
            texts,
        })
        .await
    }

    fn texts() -> Vec<Option<String>> {
        vec![
            Some("a".into()),
            None,
            Some("ccc".into()),
            Some("bb".into()),
        ]
    }

    #[tokio::test]
    async fn scores_candidates_with_text() {
        let e = engine(false, false);
        let s = settings();
        let out = run(&e, "docs", &s, texts()).await.unwrap();
        assert_eq!(out.status, RerankStatus::Applied);
        assert_eq!(out.candidates, 3);
        assert_eq!(
            out.scores.unwrap(),
            vec![Some(1.0), None, Some(3.0), Some(2.0)]
        );
        assert!(e
            .metrics
            .render()
            .contains("secondpass_candidates_without_text_total{collection=\"docs\"} 1"));
    }

    #[tokio::test]
    async fn failure_fails_open_in_qdrant_order() {
        let e = engine(true, false);
        let s = settings();
        let out = run(&e, "x", &s, texts()).await.unwrap();
        assert_eq!(out.status, RerankStatus::FailedOpen);
        assert!(out.reason.unwrap().contains("boom"));
        assert!(out.scores.is_none());
        assert!(e
            .metrics
            .render()
            .contains("secondpass_fail_open_total{collection=\"_other\"} 1"));
    }

    #[tokio::test]
    async fn failure_with_on_failure_error_is_an_error() {
        let e = engine(true, false);
        let s = CollectionSettings {
            on_failure: OnFailure::Error,
            ..settings()
        };
        let err = run(&e, "x", &s, texts()).await.unwrap_err();
        assert_eq!(err.http_status(), axum::http::StatusCode::BAD_GATEWAY);
    }

    #[tokio::test]
    async fn timeout_fails_open() {
        let e = engine(false, true);
        let s = settings();
        let out = run(&e, "x", &s, texts()).await.unwrap();
        assert_eq!(out.status, RerankStatus::FailedOpen);
        assert!(out.reason.unwrap().contains("timed out"));
    }

    #[tokio::test]
    async fn no_text_at_all_is_skipped() {
        let e = engine(false, false);
        let s = settings();
        let out = run(&e, "x", &s, vec![None, None]).await.unwrap();
        assert_eq!(out.status, RerankStatus::Skipped);
        assert!(out.scores.is_none());
    }

    #[tokio::test]
    async fn unknown_reranker_fails_open() {
        let e = engine(false, false);
        let s = CollectionSettings {
            reranker: "ghost".into(),
            ..settings()
        };
        let out = run(&e, "x", &s, texts()).await.unwrap();
        assert_eq!(out.status, RerankStatus::FailedOpen);
    }
}
