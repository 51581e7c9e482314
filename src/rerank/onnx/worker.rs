//! Inference with continuous batching across requests, tokenizing ahead.
//!
//! Two stages joined by a small bounded channel, so that the next batch is tokenized
//! while the current one runs (on a GPU a batch runs in about the time it takes to
//! tokenize it; done in turn, the device would wait on the CPU half the time):
//!
//! - `tokenizer_threads` tokenizer threads each block for the next job, take the jobs
//!   already waiting (no artificial wait) until they hold [`TAKE_BATCHES`] full batch
//!   of pairs, drop jobs whose caller went away, and tokenize the rest.
//! - inference workers take one tokenized group plus the others ready (up to the
//!   same limit), drop jobs whose caller left meanwhile, sort all pairs by length, run
//!   batches bounded by `batch_size` rows and `max_batch_tokens` padded tokens, and
//!   answer each job as soon as its last pair is scored.
//!
//! With `tokenizer_threads = 0` each worker does both in turn on its own thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus::Histogram;
use tokio::sync::oneshot;

use super::encode::{plan_batches, Chunked, Pair};
use crate::metrics::Metrics;
use crate::rerank::chunk::{fold_all, Aggregate, Chunking};
use crate::rerank::{RerankError, RerankRequest};

/// How a request becomes token sequences: a cross-encoder's (query, document) pairs
/// or a decoder's prompts.
pub(crate) trait Encode: Send + Sync {
    /// One sequence per document, each at most `max_length` tokens.
    fn pairs(
        &self,
        req: &RerankRequest,
        max_length: usize,
        max_query_tokens: usize,
    ) -> Result<Vec<Pair>, String>;

    /// `long_documents = "chunk"`: one sequence per passage, and passages per document.
    fn passages(
        &self,
        req: &RerankRequest,
        max_length: usize,
        max_query_tokens: usize,
        chunking: &Chunking,
    ) -> Result<Chunked, String>;
}

/// How a worker's session turns a batch of sequences (`rows` of `pairs`) into one raw
/// score each.
pub(crate) trait Score: Send {
    fn score(&mut self, pairs: &[Pair], rows: &[usize]) -> Result<Vec<f32>, String>;
}

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
    /// Traces: the caller's span (the reranker attempt), parent of the worker's spans,
    /// and the queue wait's, which ends when a worker takes the job. Disabled spans
    /// (nothing to carry) when traces are off.
    pub trace: Trace,
    /// Its pairs, counted as waiting until a worker has taken and tokenized it (held
    /// for its drop).
    #[allow(dead_code)]
    pub admitted: super::admission::Admitted,
}

/// A job's place in its request's trace, carried across the queue to the threads.
pub(crate) struct Trace {
    parent: tracing::Span,
    queued: tracing::Span,
}

impl Trace {
    /// Called on the caller's side, in the span the worker's spans belong under.
    pub fn here(documents: usize) -> Trace {
        let parent = crate::telemetry::carry();
        let queued = crate::telemetry::span!(parent: &parent, "engine.queue_wait", documents = documents as i64);
        Trace { parent, queued }
    }
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

/// A taken job waiting for the scores of its pairs.
struct Pending {
    reply: Reply,
    /// The caller's span (see [`Trace`]).
    parent: tracing::Span,
    scores: Vec<f32>,
    left: usize,
    /// Chunked: passages per document and how their scores fold into one.
    fold: Option<(Vec<usize>, Aggregate)>,
}

/// Jobs tokenized together, waiting for inference.
#[derive(Default)]
pub(crate) struct Prepared {
    pending: Vec<Option<Pending>>,
    pairs: Vec<Pair>,
    /// pair → (index in `pending`, document)
    slots: Vec<(usize, usize)>,
}

impl Prepared {
    fn append(&mut self, other: Prepared) {
        let base = self.pending.len();
        self.pending.extend(other.pending);
        self.pairs.extend(other.pairs);
        self.slots
            .extend(other.slots.into_iter().map(|(job, doc)| (job + base, doc)));
    }
}

/// The tokenizing stage: taking jobs off the queue and turning them into pairs.
pub(crate) struct Tokenize {
    pub encoder: Arc<dyn Encode>,
    pub max_length: usize,
    /// The query is cut to this many tokens (once per job) before pairing.
    pub max_query_tokens: usize,
    /// Pairs a take stops at.
    pub take_limit: usize,
    pub batching: Batching,
    pub metrics: Option<WorkerMetrics>,
}

impl Tokenize {
    /// Tokenizer thread: takes, tokenizes and hands over until the reranker is
    /// dropped (the job queue closes) or the workers are gone.
    pub fn run(&self, jobs: &Mutex<Receiver<Job>>, out: &SyncSender<Prepared>) {
        while let Some(taken) = self.take(jobs) {
            let prepared = self.prepare(taken);
            if prepared.pairs.is_empty() {
                continue;
            }
            if out.send(prepared).is_err() {
                return;
            }
        }
    }

    /// Blocks for one job, then takes the others already waiting. `None`: the
    /// reranker was dropped and the queue is closed.
    fn take(&self, jobs: &Mutex<Receiver<Job>>) -> Option<Vec<Job>> {
        let rx = jobs.lock().ok()?;
        let first = rx.recv().ok()?;
        let mut pairs = first.request.documents.len();
        let mut taken = vec![first];
        while self.batching == Batching::CrossRequest && pairs < self.take_limit {
            match rx.try_recv() {
                Ok(job) => {
                    pairs += job.request.documents.len();
                    taken.push(job);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        drop(rx);
        for job in &mut taken {
            // Ends the queue wait's span.
            job.trace.queued = tracing::Span::none();
        }
        if let Some(m) = &self.metrics {
            let now = Instant::now();
            for job in &taken {
                m.queue_wait
                    .observe(now.duration_since(job.enqueued).as_secs_f64());
            }
        }
        Some(taken)
    }

    /// Tokenizes the taken jobs; answers at once those with nothing to score or
    /// whose text cannot be tokenized.
    fn prepare(&self, taken: Vec<Job>) -> Prepared {
        let mut p = Prepared::default();
        for job in taken {
            // The caller gave up (timeout, client gone): skip the work.
            if job.reply.is_closed() {
                continue;
            }
            let span = crate::telemetry::span!(
                parent: &job.trace.parent,
                "engine.tokenize",
                documents = job.request.documents.len() as i64,
            );
            let tokenized = span.in_scope(|| self.tokenize(&job.request));
            drop(span);
            match tokenized {
                Ok((job_pairs, _)) if job_pairs.is_empty() => {
                    let _ = job.reply.send(Ok(Vec::new()));
                }
                Ok((job_pairs, fold)) => {
                    let n = job_pairs.len();
                    p.slots.extend((0..n).map(|d| (p.pending.len(), d)));
                    p.pairs.extend(job_pairs);
                    p.pending.push(Some(Pending {
                        reply: job.reply,
                        parent: job.trace.parent,
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
        p
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
                .pairs(req, max_length, self.max_query_tokens)
                .map(|p| (p, None)),
            Some(c) => self
                .encoder
                .passages(req, max_length, self.max_query_tokens, c)
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
}

/// Where a worker gets its work from.
pub(crate) enum Source {
    /// Tokenizes on its own thread (`tokenizer_threads = 0`).
    Jobs(Arc<Tokenize>, Arc<Mutex<Receiver<Job>>>),
    /// From the tokenizer threads.
    Prepared(Arc<Mutex<Receiver<Prepared>>>),
}

pub(crate) struct Worker {
    pub runner: Box<dyn Score>,
    pub batch_size: usize,
    pub max_batch_tokens: usize,
    pub take_limit: usize,
    pub batching: Batching,
    pub metrics: Option<WorkerMetrics>,
    pub concurrency: Arc<Concurrency>,
}

impl Worker {
    pub fn run(mut self, source: Source) {
        loop {
            let prepared = match &source {
                Source::Jobs(tok, jobs) => match tok.take(jobs) {
                    Some(taken) => tok.prepare(taken),
                    None => return,
                },
                Source::Prepared(rx) => match self.next(rx) {
                    Some(p) => p,
                    None => return,
                },
            };
            self.serve(prepared);
        }
    }

    /// Blocks for one tokenized group, then merges the others ready. `None`: the
    /// tokenizer threads are gone.
    fn next(&self, rx: &Mutex<Receiver<Prepared>>) -> Option<Prepared> {
        let rx = rx.lock().ok()?;
        let mut p = rx.recv().ok()?;
        while self.batching == Batching::CrossRequest && p.pairs.len() < self.take_limit {
            match rx.try_recv() {
                Ok(more) => p.append(more),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        Some(p)
    }

    /// Batches and scores tokenized jobs, answering each one.
    fn serve(&mut self, p: Prepared) {
        let Prepared {
            mut pending,
            mut pairs,
            mut slots,
        } = p;
        // Tokenizing (or waiting for a worker) took a while: callers may have left.
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
            let spans = inference_spans(&pending, &slots, &rows);
            let started = Instant::now();
            self.concurrency.enter();
            let result = self.runner.score(&pairs, &rows);
            self.concurrency.leave();
            drop(spans);
            if let Some(m) = &self.metrics {
                m.inference.observe(started.elapsed().as_secs_f64());
                m.batch_size.observe(rows.len() as f64);
            }
            match result {
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
}

/// Traces: one span per job with pairs in this batch, under the job's caller (a batch
/// serves several requests' traces); none when traces are off.
fn inference_spans(
    pending: &[Option<Pending>],
    slots: &[(usize, usize)],
    rows: &[usize],
) -> Vec<tracing::Span> {
    if !crate::telemetry::enabled() {
        return Vec::new();
    }
    let mut per_job: Vec<(usize, usize)> = Vec::new();
    for &i in rows {
        let job = slots[i].0;
        match per_job.iter_mut().find(|(j, _)| *j == job) {
            Some((_, n)) => *n += 1,
            None => per_job.push((job, 1)),
        }
    }
    let jobs = per_job.len();
    per_job
        .into_iter()
        .filter_map(|(job, pairs)| {
            let p = pending[job].as_ref()?;
            Some(crate::telemetry::span!(
                parent: &p.parent,
                "engine.inference",
                batch_rows = rows.len() as i64,
                batch_jobs = jobs as i64,
                pairs = pairs as i64,
            ))
        })
        .collect()
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
