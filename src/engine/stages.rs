//! Staged reranking (cascades): each stage is a fallback chain of its own; the first
//! scores every candidate with text, each next one the best `keep` of the order so
//! far. All stages share the collection's `timeout`. A stage whose chain fails is
//! skipped with `on_failure = "fail_open"` (the next stage takes the best of the order
//! before it) and fails the search with `"error"`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::field::Empty;
use tracing::Instrument;

use super::{Engine, Job, Outcome};
use crate::config::{OnFailure, StageConfig};
use crate::error::Error;
use crate::plan::stages::{StageReport, Staged};
use crate::plan::RerankStatus;
use crate::rerank::chain::{Attempt, Chain, Exhausted};
use crate::rerank::{apply_score_mode, RerankError, RerankRequest};

/// The candidates of one search: `documents[i]` is the text of candidate
/// `positions[i]` (of `total`, in Qdrant's order).
pub(super) struct Pool {
    pub total: usize,
    pub positions: Vec<usize>,
    pub documents: Vec<String>,
}

/// The span of stage `i` (0-based; a single-stage rerank is stage 1 of 1).
pub(super) fn span(i: usize, chain: &[&str], candidates: usize) -> tracing::Span {
    crate::telemetry::span!(
        "rerank.stage",
        stage = i as i64 + 1,
        chain = %chain.join(","),
        candidates = candidates as i64,
        status = Empty,
        reranker = Empty,
    )
}

/// What a stage's chain did: the reranker that answered, or `Err` when none did.
pub(super) fn record<E>(span: &tracing::Span, answered: Result<&str, E>) {
    match answered {
        Ok(r) => {
            span.record("status", RerankStatus::Applied.as_str());
            span.record("reranker", r);
        }
        // Fails the search or is skipped, as `on_failure` says.
        Err(_) => {
            span.record("status", "failed");
        }
    }
}

fn describe(failed: &[Attempt]) -> Vec<(String, String)> {
    failed
        .iter()
        .map(|a| (a.reranker.clone(), a.error.to_string()))
        .collect()
}

/// What every stage of one search shares.
struct Run<'a> {
    job: &'a Job<'a>,
    /// Candidate texts by position in Qdrant's order (`None`: without text).
    text: Vec<Option<String>>,
    deadline: Instant,
    chain: Arc<Chain>,
    label: &'a str,
}

impl Engine {
    /// Runs `stages` over the candidates with text; `started` is when the rerank
    /// step began.
    pub(super) async fn rerank_staged(
        &self,
        job: &Job<'_>,
        stages: &[StageConfig],
        pool: Pool,
        started: Instant,
    ) -> Result<Outcome, Error> {
        let Pool {
            total,
            positions,
            documents,
        } = pool;
        let mut text: Vec<Option<String>> = vec![None; total];
        for (&p, d) in positions.iter().zip(documents) {
            text[p] = Some(d);
        }
        let run = Run {
            job,
            text,
            deadline: started + job.settings.timeout,
            chain: self.chain(),
            label: self.metrics.collection_label(job.collection),
        };
        let mut staged = Staged::new(total);
        let mut among = positions.clone();
        let mut reports: Vec<StageReport> = Vec::with_capacity(stages.len());
        for (i, stage) in stages.iter().enumerate() {
            if i > 0 {
                among = staged.survivors(&among, stages[i - 1].keep);
            }
            let report = self.stage(&run, i, stage, &among, &mut staged).await?;
            reports.push(report);
        }
        let time = started.elapsed().as_secs_f64();
        Ok(self.staged_outcome(run.label, reports, staged, positions.len(), time))
    }

    /// Stage `i`: its chain over the candidates at `among`, within what is left of
    /// the search's budget; its scores go into `staged`. `Err` only when it failed and
    /// `on_failure = "error"`.
    async fn stage(
        &self,
        run: &Run<'_>,
        i: usize,
        stage: &StageConfig,
        among: &[usize],
        staged: &mut Staged,
    ) -> Result<StageReport, Error> {
        let (job, s) = (run.job, run.job.settings);
        let names = stage.chain();
        let documents = among
            .iter()
            .map(|&p| run.text[p].clone().unwrap_or_default())
            .collect();
        let request = RerankRequest {
            max_length: stage.max_length.or(s.max_length),
            chunking: s.chunking(),
            instruction: job.instruction(),
            ..RerankRequest::new(job.plan.query.clone(), documents)
        };
        let stage_started = Instant::now();
        let budget = run.deadline.saturating_duration_since(stage_started);
        let span = span(i, &names, among.len());
        let result = if budget.is_zero() {
            Err(Exhausted {
                failed: vec![Attempt {
                    reranker: names[0].to_string(),
                    error: RerankError::Timeout(s.timeout.as_millis() as u64),
                }],
            })
        } else {
            run.chain
                .run_cached(
                    &names,
                    request,
                    budget.max(Duration::from_millis(1)),
                    s.cache,
                )
                .instrument(span.clone())
                .await
        };
        record(&span, result.as_ref().map(|a| a.reranker.as_str()));
        let time = stage_started.elapsed().as_secs_f64();
        let stage_label = [run.label, stage.reranker.as_str()];
        self.metrics
            .stage_duration
            .with_label_values(&stage_label)
            .observe(time);
        self.metrics
            .stage_candidates
            .with_label_values(&stage_label)
            .observe(among.len() as f64);
        let report = match result {
            Ok(answer) => {
                let scores: Vec<f32> = answer
                    .raw
                    .iter()
                    .map(|&r| apply_score_mode(r, answer.kind, s.score_mode))
                    .collect();
                staged.record(i, among, &scores);
                StageReport {
                    reranker: answer.reranker,
                    model: Some(answer.model),
                    status: RerankStatus::Applied,
                    reason: None,
                    candidates: among.len(),
                    time,
                    fallback: describe(&answer.failed),
                }
            }
            Err(exhausted) => {
                if s.on_failure == OnFailure::Error {
                    tracing::error!(collection = job.collection, stage = i, errors = %exhausted.describe(), "rerank stage failed; answering with an error (on_failure = error)");
                    return Err(Error::Rerank(exhausted.error()));
                }
                tracing::warn!(collection = job.collection, stage = i, errors = %exhausted.describe(), "rerank stage failed; keeping the order before it");
                StageReport {
                    reranker: names[0].to_string(),
                    model: None,
                    status: RerankStatus::FailedOpen,
                    reason: Some(exhausted.describe()),
                    candidates: among.len(),
                    time,
                    fallback: describe(&exhausted.failed),
                }
            }
        };
        self.metrics
            .stage_outcomes
            .with_label_values(&[run.label, stage.reranker.as_str(), report.status.as_str()])
            .inc();
        Ok(report)
    }

    /// The search's outcome from its stages: ordered by the last stage that answered,
    /// or Qdrant's order (failed open) when none did.
    fn staged_outcome(
        &self,
        label: &str,
        reports: Vec<StageReport>,
        staged: Staged,
        candidates: usize,
        time: f64,
    ) -> Outcome {
        let failed: Vec<&StageReport> = reports
            .iter()
            .filter(|r| r.status == RerankStatus::FailedOpen)
            .collect();
        let reason = (!failed.is_empty()).then(|| {
            failed
                .iter()
                .filter_map(|r| r.reason.clone())
                .collect::<Vec<_>>()
                .join("; ")
        });
        let fallback = reports.iter().flat_map(|r| r.fallback.clone()).collect();
        let last = reports
            .iter()
            .rev()
            .find(|r| r.status == RerankStatus::Applied);
        let Some(last) = last else {
            // No stage answered: Qdrant's order.
            self.metrics.fail_open.with_label_values(&[label]).inc();
            return Outcome {
                reason,
                fallback,
                candidates,
                time,
                stages: reports,
                ..Outcome::not_applied(RerankStatus::FailedOpen, None)
            };
        };
        self.metrics
            .rerank_candidates
            .with_label_values(&[label])
            .observe(candidates as f64);
        Outcome {
            status: RerankStatus::Applied,
            reason,
            model: last.model.clone(),
            reranker: Some(last.reranker.clone()),
            fallback,
            candidates,
            time,
            scores: Some(staged.scores),
            tiers: Some(staged.tiers),
            stages: reports,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{CollectionSettings, ScoreMode};
    use crate::metrics::Metrics;
    use crate::plan::{Cut, RerankPlan, Window};
    use crate::rerank::chain::Chain;
    use crate::rerank::{RerankFuture, Reranker, ScoreKind};

    /// Scores a document by its length times `sign`; `sign == 0`: fails.
    struct Len(f32);

    impl Reranker for Len {
        fn model(&self) -> &str {
            "len"
        }
        fn score_kind(&self) -> ScoreKind {
            ScoreKind::Logit
        }
        fn rerank(&self, r: RerankRequest) -> RerankFuture {
            let sign = self.0;
            Box::pin(async move {
                if sign == 0.0 {
                    return Err(RerankError::Inference("down".into()));
                }
                Ok(r.documents.iter().map(|d| sign * d.len() as f32).collect())
            })
        }
    }

    fn engine() -> Engine {
        let mut reg = crate::rerank::Registry::default();
        reg.insert("up", Arc::new(Len(1.0)));
        reg.insert("down", Arc::new(Len(-1.0)));
        reg.insert("bad", Arc::new(Len(0.0)));
        reg.insert("seen", Arc::new(SeenLength));
        let metrics = Arc::new(Metrics::new(&["docs".into()]));
        let cfg = crate::config::Config::from_toml("").unwrap();
        Engine::new(Chain::new(reg, &cfg, metrics.clone()), metrics)
    }

    /// Scores every document with the `max_length` its request carried (-1: none).
    struct SeenLength;

    impl Reranker for SeenLength {
        fn model(&self) -> &str {
            "seen-length"
        }
        fn score_kind(&self) -> ScoreKind {
            ScoreKind::Logit
        }
        fn rerank(&self, r: RerankRequest) -> RerankFuture {
            let seen = r.max_length.map_or(-1.0, |l| l as f32);
            Box::pin(async move { Ok(vec![seen; r.documents.len()]) })
        }
    }

    fn stage(r: &str, keep: Option<usize>) -> StageConfig {
        StageConfig {
            reranker: r.into(),
            rerankers: Vec::new(),
            keep,
            max_length: None,
        }
    }

    fn settings(stages: Vec<StageConfig>) -> CollectionSettings {
        CollectionSettings {
            enabled: true,
            score_mode: ScoreMode::Raw,
            stages,
            allowed_rerankers: vec!["up".into()],
            ..Default::default()
        }
    }

    async fn run(e: &Engine, s: &CollectionSettings, pick: Option<&str>) -> Result<Outcome, Error> {
        let plan = RerankPlan {
            query: "q".into(),
            cut: Cut::Page(Window {
                offset: 0,
                limit: 5,
                fetch: 5,
            }),
            threshold: None,
            reranker: pick.map(str::to_string),
            instruction: None,
            query_source: crate::plan::query_text::QuerySource::Request,
        };
        let texts = ["a", "bbbb", "cc", "ddd"]
            .iter()
            .map(|t| Some(t.to_string()))
            .chain([None])
            .collect();
        e.rerank(Job {
            collection: "docs",
            settings: s,
            plan: &plan,
            texts,
        })
        .await
    }

    #[tokio::test]
    async fn each_stage_rescores_the_best_of_the_one_before() {
        let e = engine();
        let s = settings(vec![stage("up", Some(2)), stage("down", None)]);
        let out = run(&e, &s, None).await.unwrap();
        assert_eq!(out.status, RerankStatus::Applied);
        assert_eq!(out.reranker.as_deref(), Some("down"));
        // "up" keeps bbbb (4) and ddd (3); "down" re-scores them -4 and -3
        assert_eq!(
            out.scores.as_deref().unwrap(),
            &[Some(1.0), Some(-4.0), Some(2.0), Some(-3.0), None]
        );
        assert_eq!(out.tiers.as_deref().unwrap(), &[1, 2, 1, 2, 0]);
        let counts: Vec<usize> = out.stages.iter().map(|r| r.candidates).collect();
        assert_eq!(counts, vec![4, 2]);
        let w = Window {
            offset: 0,
            limit: 5,
            fetch: 5,
        };
        let order: Vec<usize> =
            crate::plan::order_page(out.scores.as_deref(), out.tiers.as_deref(), 5, None, w)
                .iter()
                .map(|r| r.index)
                .collect();
        assert_eq!(order, vec![3, 1, 2, 0, 4]);
        let m = e.metrics.render();
        assert!(
            m.contains("secondpass_stage_outcomes_total{collection=\"docs\",stage=\"down\",status=\"applied\"} 1"),
            "{m}"
        );
    }

    #[tokio::test]
    async fn a_failed_stage_fails_open_alone_or_errors() {
        let e = engine();
        let s = settings(vec![stage("bad", Some(2)), stage("up", None)]);
        let out = run(&e, &s, None).await.unwrap();
        assert_eq!(out.status, RerankStatus::Applied);
        assert_eq!(out.stages[0].status, RerankStatus::FailedOpen);
        assert!(out.reason.unwrap().contains("down"));
        // the second stage took Qdrant's first two
        assert_eq!(out.stages[1].candidates, 2);
        assert_eq!(out.tiers.as_deref().unwrap(), &[2, 2, 0, 0, 0]);
        // every stage failed: Qdrant's order
        let s = settings(vec![stage("up", Some(2)), stage("bad", None)]);
        let all_bad = settings(vec![stage("bad", Some(2)), stage("bad", None)]);
        assert_eq!(
            run(&e, &s, None).await.unwrap().stages[1].status,
            RerankStatus::FailedOpen
        );
        let out = run(&e, &all_bad, None).await.unwrap();
        assert_eq!(out.status, RerankStatus::FailedOpen);
        assert!(out.scores.is_none());
        let strict = CollectionSettings {
            on_failure: OnFailure::Error,
            ..s
        };
        assert!(run(&e, &strict, None).await.is_err());
    }

    #[tokio::test]
    async fn a_picked_reranker_replaces_the_last_stage() {
        let e = engine();
        let s = settings(vec![stage("up", Some(2)), stage("down", None)]);
        let out = run(&e, &s, Some("up")).await.unwrap();
        assert_eq!(out.stages[1].reranker, "up");
        // single-stage collection: the pick is the reranker
        let single = settings(Vec::new());
        let out = run(&e, &single, Some("up")).await.unwrap();
        assert_eq!(out.reranker.as_deref(), Some("up"));
        assert!(out.stages.is_empty());
    }

    #[tokio::test]
    async fn a_stage_reads_its_own_max_length_or_the_collections() {
        let e = engine();
        let first = StageConfig {
            max_length: Some(96),
            ..stage("seen", Some(2))
        };
        let s = CollectionSettings {
            max_length: Some(128),
            ..settings(vec![first, stage("seen", None)])
        };
        let out = run(&e, &s, None).await.unwrap();
        // the first stage read 96 tokens per pair; the two it kept were re-read at 128
        let scores = out.scores.unwrap();
        assert_eq!(
            scores.iter().filter(|s| **s == Some(96.0)).count(),
            2,
            "{scores:?}"
        );
        assert_eq!(
            scores.iter().filter(|s| **s == Some(128.0)).count(),
            2,
            "{scores:?}"
        );
        assert_eq!(scores[4], None);
    }
}
