//! Local cross-encoder through ONNX Runtime. Tokenization and inference run on owned
//! worker threads (never on the async runtime), fed by one bounded queue per model:
//! a full queue (in jobs, or in pairs: [`admission`]) refuses new work with
//! [`RerankError::Overloaded`]. Workers batch across requests (see [`worker`]).

mod admission;
pub mod decoder;
pub mod encode;
mod infer;
mod load;
pub mod model;
pub mod runtime;
pub mod session;
pub mod worker;

use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::oneshot;

use super::{Priority, RerankError, RerankFuture, RerankRequest, Reranker, ScoreKind};
use crate::config::OnnxConfig;
use crate::metrics::Metrics;
use load::{spawn_threads, Model};
pub use model::{locate, scores_from_logits, ModelInfo};
pub use session::Device;
pub use worker::Batching;
use worker::{Concurrency, Job, Tokenize, Trace, Worker, WorkerMetrics};

/// Where and how a loaded reranker runs (logged at load, shown by `/admin/status`
/// and `secondpass doctor`).
#[derive(Debug, Clone, Serialize)]
pub struct Execution {
    /// ONNX Runtime execution provider of the sessions.
    pub provider: &'static str,
    pub device: String,
    /// Where ONNX Runtime placed each model input (`Cpu`, `Cuda:0`): a CUDA session
    /// whose inputs are all in CPU memory runs its first nodes on the CPU.
    pub inputs_on: std::collections::BTreeMap<String, String>,
    pub onnxruntime: String,
    pub onnxruntime_path: Option<String>,
    pub model_file: String,
    pub max_length: usize,
    pub batch_size: usize,
    pub max_batch_tokens: usize,
    pub io_binding: bool,
    pub workers: usize,
    pub intra_threads: usize,
    pub tokenizer_threads: usize,
    /// One pair through the first session at load (includes first-run set-up).
    pub warmup_ms: f64,
    /// Decoder rerankers: family, graph, answer tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoder: Option<decoder::DecoderInfo>,
}

pub struct OnnxReranker {
    model: String,
    jobs: SyncSender<Job>,
    admission: Arc<admission::Admission>,
    concurrency: Arc<Concurrency>,
    pub info: ModelInfo,
    pub max_length: usize,
    pub device: Device,
    /// Intra-op threads of each worker's session (0: ONNX Runtime's choice).
    pub intra_threads: usize,
    pub execution: Execution,
    /// The model's and tokenizer's contents and the length settings: what the score
    /// cache keys on (the same files under another path score alike).
    identity: crate::rerank::cache::Identity,
    score_kind: ScoreKind,
    /// Decoder rerankers: the template (see [`Reranker::prompt_key`]).
    prompt_key: Option<String>,
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
        let max_length = match info.max_positions {
            Some(p) => cfg.max_length.min(p),
            None => cfg.max_length,
        };
        let intra =
            session::intra_threads(cfg.intra_threads, cfg.workers, session::available_cores());
        // Sessions first, each run once: a model or device that does not work starts
        // no thread, and the first request does not pay for the device's set-up.
        let sessions = (0..cfg.workers)
            .map(|_| session::build(env, &info.model_path, device, intra))
            .collect::<Result<Vec<_>, _>>()?;
        let inputs_on = session::input_placement(&sessions[0])?
            .into_iter()
            .collect();
        let mut m = match cfg.family {
            None => Model::cross_encoder(cfg, &info, sessions, device)?,
            Some(_) => Model::decoder(cfg, &info, sessions, max_length)?,
        };
        let warmup_ms = m.warm_up(max_length, cfg.max_query_tokens, device)?;
        let batch_size = cfg.batch_size();
        let max_batch_tokens = cfg
            .max_batch_tokens()
            .max(max_length)
            .min(m.token_cap.unwrap_or(usize::MAX));
        let take_limit = batch_size * worker::TAKE_BATCHES;
        let worker_metrics = metrics.as_deref().map(|m| WorkerMetrics::new(m, name));
        let concurrency = Arc::new(Concurrency::default());
        let workers = std::mem::take(&mut m.runners)
            .into_iter()
            .map(|runner| Worker {
                runner,
                batch_size,
                max_batch_tokens,
                take_limit,
                batching,
                metrics: worker_metrics.clone(),
                concurrency: concurrency.clone(),
            })
            .collect();
        let tokenize = Arc::new(Tokenize {
            encoder: m.encoder.clone(),
            max_length,
            max_query_tokens: cfg.max_query_tokens,
            take_limit,
            batching,
            metrics: worker_metrics,
        });
        let jobs = spawn_threads(cfg, workers, tokenize)?;
        let execution = Execution {
            provider: session::provider(device),
            device: device.to_string(),
            inputs_on,
            onnxruntime: runtime::version(),
            onnxruntime_path: runtime::loaded_from().map(|p| p.display().to_string()),
            model_file: info.model_path.display().to_string(),
            max_length,
            batch_size,
            max_batch_tokens,
            io_binding: m.io_binding && cfg.io_binding(),
            workers: cfg.workers,
            intra_threads: intra,
            tokenizer_threads: cfg.tokenizer_threads(),
            warmup_ms,
            decoder: m.decoder.clone(),
        };
        if device != Device::Cpu && execution.inputs_on.values().all(|m| m == "Cpu") {
            tracing::warn!(
                reranker = name,
                device = %device,
                "every model input is placed in CPU memory: the first nodes run on the CPU"
            );
        }
        let identity = identity(&info, max_length, cfg.max_query_tokens)?;
        Ok(OnnxReranker {
            identity,
            model: info.name.clone(),
            jobs,
            admission: admission::Admission::new(cfg.queue_pairs),
            concurrency,
            info,
            max_length,
            device,
            intra_threads: intra,
            execution,
            score_kind: m.score_kind,
            prompt_key: m.prompt_key,
        })
    }

    /// The most inference batches that have run at the same time (across workers).
    pub fn peak_parallel_batches(&self) -> usize {
        self.concurrency.peak.load(Ordering::SeqCst)
    }
}

/// A local model's identity: its files' contents and what it is allowed to see.
fn identity(
    info: &ModelInfo,
    max_length: usize,
    max_query_tokens: usize,
) -> Result<crate::rerank::cache::Identity, String> {
    use crate::rerank::cache::{file_digest, Fields, Identity};
    let digest = |p: &std::path::Path| {
        file_digest(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let mut f = Fields::new("onnx");
    f.bytes("model_sha256", &digest(&info.model_path)?)
        .bytes("tokenizer_sha256", &digest(&info.tokenizer_path)?)
        .num("max_length", Some(max_length as u64))
        .num("max_query_tokens", Some(max_query_tokens as u64));
    Ok(Identity::new(f))
}

impl Reranker for OnnxReranker {
    fn model(&self) -> &str {
        &self.model
    }

    fn identity(&self) -> crate::rerank::cache::Identity {
        self.identity
    }

    fn score_kind(&self) -> ScoreKind {
        self.score_kind
    }

    fn prompt_key(&self) -> Option<&str> {
        self.prompt_key.as_deref()
    }

    fn execution(&self) -> Option<serde_json::Value> {
        serde_json::to_value(&self.execution).ok()
    }

    fn rerank(&self, request: RerankRequest) -> RerankFuture {
        let expected = request.documents.len();
        let Some(admitted) = self.admission.admit(expected, Priority::current()) else {
            return Box::pin(async { Err(RerankError::Overloaded) });
        };
        let (reply, rx) = oneshot::channel();
        let sent = self.jobs.try_send(Job {
            trace: Trace::here(expected),
            request,
            reply,
            enqueued: Instant::now(),
            admitted,
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
