//! Inference workers with continuous batching across requests.
//!
//! A worker blocks for the next job, then takes the jobs already waiting (no
//! artificial wait) until it holds [`TAKE_BATCHES`] full batch of pairs: small
//! requests fill a batch together, large ones are not held back behind each other,
//! and other workers get the rest. It tokenizes them on its own thread, drops jobs
//! whose caller went away, sorts the pairs of all taken jobs by length, runs batches
//! bounded by `batch_size` rows and `max_batch_tokens` padded tokens, and answers
//! each job as soon as its last pair is scored.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ort::session::Session;
use ort::value::Tensor;
use prometheus::Histogram;
use tokio::sync::oneshot;

use super::encode::{pad, plan_batches, Batch, Pair, PairEncoder};
use super::model::{scores_from_output, Inputs};
use crate::metrics::Metrics;
use crate::rerank::chunk::{fold_all, Aggregate};
use crate::rerank::{RerankError, RerankRequest};

/// A worker takes waiting jobs until it holds this many batches' worth of pairs.
pub const TAKE_BATCHES: usize = 1;

/// How jobs are grouped into inference batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Batching {
    /// Pairs of every job waiting share batches (the default).
    #[default]
    CrossRequest,
    /// Each job is batched alone (for comparison in benchmarks).
    PerRequest,
}

pub(crate) type Reply = oneshot::Sender<Result<Vec<f32>, RerankError>>;

pub(crate) struct Job {
    pub request: RerankRequest,
    pub reply: Reply,
    pub enqueued: Instant,
}

/// The histograms a worker reports to, labelled with the reranker's name.
#[derive(Clone)]
pub(crate) struct WorkerMetrics {
    queue_wait: Histogram,
    tokenization: Histogram,
    inference: Histogram,
    batch_size: Histogram,
    pairs: prometheus::IntCounter,
    passages: Histogram,
}

impl WorkerMetrics {
    pub fn new(m: &Metrics, reranker: &str) -> WorkerMetrics {
        let l = [reranker];
        WorkerMetrics {
            queue_wait: m.queue_wait.with_label_values(&l),
            tokenization: m.tokenization.with_label_values(&l),
            inference: m.inference.with_label_values(&l),
            batch_size: m.batch_size.with_label_values(&l),
            pairs: m.pairs_scored.with_label_values(&l),
            passages: m.passages_per_document.with_label_values(&l),
        }
    }
}

/// Batches running right now across a reranker's workers, and the most seen at once.
#[derive(Default)]
pub(crate) struct Concurrency {
    now: AtomicUsize,
    pub peak: AtomicUsize,
}

impl Concurrency {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) struct Worker {
    pub session: Session,
    pub inputs: Inputs,
    pub encoder: Arc<PairEncoder>,
    pub max_length: usize,
    /// The query is cut to this many tokens (once per job) before pairing.
    pub max_query_tokens: usize,
    pub batch_size: usize,
    pub max_batch_tokens: usize,
    pub batching: Batching,
    pub metrics: Option<WorkerMetrics>,
    pub concurrency: Arc<Concurrency>,
}

/// A taken job waiting for the scores of its pairs.
struct Pending {
    reply: Reply,
    scores: Vec<f32>,
    left: usize,
    /// Chunked: passages per document and how their scores fold into one.
    fold: Option<(Vec<usize>, Aggregate)>,
}

impl Worker {
    pub fn run(mut self, jobs: Arc<Mutex<Receiver<Job>>>) {
        while let Some(taken) = self.take(&jobs) {
            self.serve(taken);
        }
    }

    /// Blocks for one job, then takes the others already waiting. `None`: the
    /// reranker was dropped and the queue is closed.
    fn take(&self, jobs: &Mutex<Receiver<Job>>) -> Option<Vec<Job>> {
        let rx = jobs.lock().ok()?;
        let first = rx.recv().ok()?;
        let mut pairs = first.request.documents.len();
        let mut taken = vec![first];
        let limit = self.batch_size * TAKE_BATCHES;
        while self.batching == Batching::CrossRequest && pairs < limit {
            match rx.try_recv() {
                Ok(job) => {
                    pairs += job.request.documents.len();
                    taken.push(job);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        drop(rx);
        if let Some(m) = &self.metrics {
            let now = Instant::now();
            for job in &taken {
                m.queue_wait
                    .observe(now.duration_since(job.enqueued).as_secs_f64());
            }
        }
        Some(taken)
    }

    /// Tokenizes, batches and scores the taken jobs, answering each one.
    fn serve(&mut self, taken: Vec<Job>) {
        let mut pending: Vec<Option<Pending>> = Vec::new();
        let mut pairs: Vec<Pair> = Vec::new();
        let mut slots: Vec<(usize, usize)> = Vec::new(); // pair → (job, document)
        for job in taken {
            // The caller gave up (timeout, client gone): skip the work.
            if job.reply.is_closed() {
                continue;
            }
            match self.tokenize(&job.request) {
                Ok((job_pairs, _)) if job_pairs.is_empty() => {
                    let _ = job.reply.send(Ok(Vec::new()));
                }
                Ok((job_pairs, fold)) => {
                    let n = job_pairs.len();
                    slots.extend((0..n).map(|d| (pending.len(), d)));
                    pairs.extend(job_pairs);
                    pending.push(Some(Pending {
                        reply: job.reply,
                        scores: vec![0.0; n],
                        left: n,
                        fold,
                    }));
                }
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        // Tokenizing took a while: callers may have left since.
        for slot in &mut pending {
            if slot.as_ref().is_some_and(|p| p.reply.is_closed()) {
                *slot = None;
            }
        }
        if pending.iter().any(Option::is_none) {
            let (kept_pairs, kept_slots) = pairs
                .into_iter()
                .zip(slots)
                .filter(|(_, (job, _))| pending[*job].is_some())
                .unzip();
            (pairs, slots) = (kept_pairs, kept_slots);
        }
        for rows in plan_batches(&pairs, self.batch_size, self.max_batch_tokens) {
            // Every job of this batch failed already: nothing to compute for.
            if rows.iter().all(|&i| pending[slots[i].0].is_none()) {
                continue;
            }
            let batch = pad(&pairs, &rows, self.encoder.pad_id);
            match self.infer(batch) {
                Ok(scores) => {
                    for (row, &i) in rows.iter().enumerate() {
                        let (job, doc) = slots[i];
                        deliver(&mut pending[job], doc, scores[row]);
                    }
                }
                Err(e) => {
                    for &i in &rows {
                        if let Some(p) = pending[slots[i].0].take() {
                            let _ = p.reply.send(Err(RerankError::Inference(e.clone())));
                        }
                    }
                }
            }
        }
    }

    /// The pairs of a job and, when chunked, how to fold their scores per document.
    #[allow(clippy::type_complexity)]
    fn tokenize(
        &self,
        req: &RerankRequest,
    ) -> Result<(Vec<Pair>, Option<(Vec<usize>, Aggregate)>), RerankError> {
        let started = Instant::now();
        let max_length = req
            .max_length
            .unwrap_or(self.max_length)
            .min(self.max_length);
        let pairs = match &req.chunking {
            None => self
                .encoder
                .encode(
                    &req.query,
                    &req.documents,
                    max_length,
                    self.max_query_tokens,
                )
                .map(|p| (p, None)),
            Some(c) => self
                .encoder
                .encode_chunked(&req.query, &req.documents, max_length, c)
                .map(|ch| (ch.pairs, Some((ch.counts, c.aggregate)))),
        }
        .map_err(RerankError::Tokenization);
        if let Some(m) = &self.metrics {
            m.tokenization.observe(started.elapsed().as_secs_f64());
            if let Ok((p, fold)) = &pairs {
                m.pairs.inc_by(p.len() as u64);
                let counts = fold.as_ref().map(|(c, _)| c.as_slice());
                for &n in counts.unwrap_or(&[]) {
                    m.passages.observe(n as f64);
                }
            }
        }
        pairs
    }

    fn infer(&mut self, b: Batch) -> Result<Vec<f32>, String> {
        let started = Instant::now();
        let rows = b.rows;
        self.concurrency.enter();
        let result = self.run_session(b);
        self.concurrency.leave();
        if let Some(m) = &self.metrics {
            m.inference.observe(started.elapsed().as_secs_f64());
            m.batch_size.observe(rows as f64);
        }
        result
    }

    fn run_session(&mut self, b: Batch) -> Result<Vec<f32>, String> {
        let shape = [b.rows, b.width];
        let t = |v: Vec<i64>| Tensor::from_array((shape, v)).map_err(|e| e.to_string());
        let mut inputs = vec![
            ("input_ids", t(b.input_ids)?.into_dyn()),
            ("attention_mask", t(b.attention_mask)?.into_dyn()),
        ];
        if self.inputs.token_type_ids {
            inputs.push(("token_type_ids", t(b.token_type_ids)?.into_dyn()));
        }
        let outputs = self.session.run(inputs).map_err(|e| e.to_string())?;
        scores_from_output(&outputs[0], b.rows)
    }
}

/// Records the score of document `doc` for its job, answering the job with its last one.
fn deliver(slot: &mut Option<Pending>, doc: usize, score: f32) {
    let Some(p) = slot else { return };
    p.scores[doc] = score;
    p.left -= 1;
    if p.left == 0 {
        let p = slot.take().expect("checked above");
        let scores = match &p.fold {
            Some((counts, aggregate)) => fold_all(&p.scores, counts, *aggregate),
            None => p.scores,
        };
        let _ = p.reply.send(Ok(scores));
    }
}
