//! Local cross-encoder through ONNX Runtime. Tokenization and inference run on owned
//! worker threads (never on the async runtime), fed by one bounded queue per model:
//! a full queue refuses new work with [`RerankError::Overloaded`]. Workers batch
//! across requests (see [`worker`]).

pub mod encode;
pub mod model;
pub mod runtime;
pub mod session;
pub mod worker;

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

use super::{RerankError, RerankFuture, RerankRequest, Reranker, ScoreKind};
use crate::config::OnnxConfig;
use crate::metrics::Metrics;
use encode::PairEncoder;
pub use model::{locate, scores_from_logits, ModelInfo};
pub use session::Device;
pub use worker::Batching;
use worker::{Concurrency, Job, Worker, WorkerMetrics};

pub struct OnnxReranker {
    model: String,
    jobs: SyncSender<Job>,
    concurrency: Arc<Concurrency>,
    pub info: ModelInfo,
    pub max_length: usize,
    pub device: Device,
    /// Intra-op threads of each worker's session (0: ONNX Runtime's choice).
    pub intra_threads: usize,
}

impl OnnxReranker {
    /// Loads the model and starts the worker threads (blocking).
    pub fn load(cfg: &OnnxConfig) -> Result<OnnxReranker, String> {
        Self::load_with(cfg, "onnx", None)
    }

    /// [`OnnxReranker::load`], reporting queue, tokenization, inference and batch
    /// metrics under the reranker's configured `name`.
    pub fn load_with(
        cfg: &OnnxConfig,
        name: &str,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<OnnxReranker, String> {
        Self::load_batching(cfg, name, metrics, Batching::CrossRequest)
    }

    /// [`OnnxReranker::load_with`] with a choice of batching; benchmarks compare
    /// [`Batching::PerRequest`] with the default.
    pub fn load_batching(
        cfg: &OnnxConfig,
        name: &str,
        metrics: Option<Arc<Metrics>>,
        batching: Batching,
    ) -> Result<OnnxReranker, String> {
        let device = Device::parse(&cfg.device)?;
        let info = locate(&cfg.model_dir, cfg.model_file.as_deref())?;
        let env = runtime::environment(cfg.runtime_path.as_deref())?;
        let encoder = Arc::new(PairEncoder::from_file(
            &info.tokenizer_path,
            info.pad_token_id,
        )?);
        let max_length = match info.max_positions {
            Some(p) => cfg.max_length.min(p),
            None => cfg.max_length,
        };
        let intra = session::intra_threads(cfg.intra_threads, cfg.workers);
        let worker_metrics = metrics.as_deref().map(|m| WorkerMetrics::new(m, name));
        let concurrency = Arc::new(Concurrency::default());
        // Sessions first: a model that does not load starts no thread.
        let mut workers = Vec::with_capacity(cfg.workers);
        for _ in 0..cfg.workers {
            let session = session::build(env, &info.model_path, device, intra)?;
            workers.push(Worker {
                inputs: model::inspect(&session)?,
                session,
                encoder: encoder.clone(),
                max_length,
                max_query_tokens: cfg.max_query_tokens,
                batch_size: cfg.batch_size,
                max_batch_tokens: cfg.max_batch_tokens.max(max_length),
                batching,
                metrics: worker_metrics.clone(),
                concurrency: concurrency.clone(),
            });
        }
        let (tx, rx) = mpsc::sync_channel::<Job>(cfg.queue_capacity);
        let rx = Arc::new(Mutex::new(rx));
        for (n, worker) in workers.into_iter().enumerate() {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("secondpass-onnx-{n}"))
                .spawn(move || worker.run(rx))
                .map_err(|e| format!("cannot start inference thread: {e}"))?;
        }
        Ok(OnnxReranker {
            model: info.name.clone(),
            jobs: tx,
            concurrency,
            info,
            max_length,
            device,
            intra_threads: intra,
        })
    }

    /// The most inference batches that have run at the same time (across workers).
    pub fn peak_parallel_batches(&self) -> usize {
        self.concurrency.peak.load(Ordering::SeqCst)
    }
}

impl Reranker for OnnxReranker {
    fn model(&self) -> &str {
        &self.model
    }

    fn score_kind(&self) -> ScoreKind {
        ScoreKind::Logit
    }

    fn rerank(&self, request: RerankRequest) -> RerankFuture {
        let expected = request.documents.len();
        let (reply, rx) = oneshot::channel();
        let sent = self.jobs.try_send(Job {
            request,
            reply,
            enqueued: Instant::now(),
        });
        Box::pin(async move {
            match sent {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(RerankError::Overloaded),
                Err(TrySendError::Disconnected(_)) => {
                    return Err(RerankError::Unavailable("inference workers stopped".into()))
                }
            }
            let scores = rx.await.map_err(|_| {
                RerankError::Unavailable("inference worker dropped the job".into())
            })??;
            if scores.len() != expected {
                return Err(RerankError::WrongCount {
                    expected,
                    got: scores.len(),
                });
            }
            Ok(scores)
        })
    }
}
