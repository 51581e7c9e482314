//! Local cross-encoder through ONNX Runtime. Tokenization and inference run on owned
//! worker threads (never on the async runtime), fed by a bounded queue.

pub mod encode;
pub mod runtime;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::value::{Tensor, TensorElementType, ValueType};
use tokio::sync::oneshot;

use super::{RerankError, RerankFuture, RerankRequest, Reranker, ScoreKind};
use crate::config::OnnxConfig;
use encode::{pad, plan_batches, Pair, PairEncoder};

/// What the model directory told us.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub model_path: PathBuf,
    pub tokenizer_path: PathBuf,
    /// Longest sequence the position embeddings allow.
    pub max_positions: Option<usize>,
    pub pad_token_id: Option<i64>,
}

/// Finds the ONNX file and tokenizer in a flat directory (`model.onnx`) or the
/// Hugging Face layout (`onnx/model.onnx`).
pub fn locate(dir: &Path, model_file: Option<&Path>) -> Result<ModelInfo, String> {
    if !dir.is_dir() {
        return Err(format!(
            "model directory {} does not exist (run scripts/setup, or set model_dir)",
            dir.display()
        ));
    }
    let model_path = match model_file {
        Some(f) => dir.join(f),
        None => ["model.onnx", "onnx/model.onnx"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .unwrap_or_else(|| dir.join("model.onnx")),
    };
    if !model_path.is_file() {
        return Err(format!(
            "no ONNX model at {} (expected model.onnx or onnx/model.onnx)",
            model_path.display()
        ));
    }
    let tokenizer_path = dir.join("tokenizer.json");
    if !tokenizer_path.is_file() {
        return Err(format!("no tokenizer.json in {}", dir.display()));
    }
    let (mut max_positions, mut pad_token_id) = (None, None);
    if let Ok(text) = std::fs::read_to_string(dir.join("config.json")) {
        let cfg: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}/config.json is not JSON: {e}", dir.display()))?;
        let model_type = cfg["model_type"].as_str().unwrap_or_default();
        // RoBERTa-family position ids start after the padding index: two fewer usable.
        let offset = if model_type.contains("roberta") { 2 } else { 0 };
        max_positions = cfg["max_position_embeddings"]
            .as_u64()
            .map(|n| (n as usize).saturating_sub(offset));
        pad_token_id = cfg["pad_token_id"].as_i64();
    }
    let mut name = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "onnx".into());
    if let Some(f) = model_file {
        name = format!("{name}/{}", f.display());
    }
    Ok(ModelInfo {
        name,
        model_path,
        tokenizer_path,
        max_positions,
        pad_token_id,
    })
}

/// Inputs the graph takes, read from the model itself.
#[derive(Debug, Clone, Copy)]
struct Inputs {
    token_type_ids: bool,
}

fn inspect(session: &Session) -> Result<Inputs, String> {
    let has = |name: &str| session.inputs().iter().any(|i| i.name() == name);
    if !has("input_ids") || !has("attention_mask") {
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        return Err(format!(
            "model inputs are [{}]; a cross-encoder needs input_ids and attention_mask",
            names.join(", ")
        ));
    }
    for i in session.inputs() {
        if let ValueType::Tensor { ty, .. } = i.dtype() {
            if *ty != TensorElementType::Int64 {
                return Err(format!(
                    "model input {} is {ty:?}; only int64 inputs are supported",
                    i.name()
                ));
            }
        }
    }
    Ok(Inputs {
        token_type_ids: has("token_type_ids"),
    })
}

/// One raw score (log-odds) per row from logits `[B]`, `[B,1]` or `[B,2]`
/// (two classes: positive minus negative, whose sigmoid is the softmax probability).
pub fn scores_from_logits(shape: &[i64], data: &[f32], rows: usize) -> Result<Vec<f32>, String> {
    match shape {
        [b] | [b, 1] if *b as usize == rows => Ok(data[..rows].to_vec()),
        [b, 2] if *b as usize == rows => Ok(data.chunks(2).map(|c| c[1] - c[0]).collect()),
        _ => Err(format!(
            "unexpected logits shape {shape:?} for {rows} pairs (expected [B], [B,1] or [B,2])"
        )),
    }
}

struct Job {
    request: RerankRequest,
    reply: oneshot::Sender<Result<Vec<f32>, RerankError>>,
}

struct Worker {
    session: Session,
    inputs: Inputs,
    encoder: Arc<PairEncoder>,
    max_length: usize,
    batch_size: usize,
}

impl Worker {
    fn run(mut self, jobs: Arc<Mutex<mpsc::Receiver<Job>>>) {
        loop {
            let job = match jobs.lock().map(|rx| rx.recv()) {
                Ok(Ok(job)) => job,
                _ => return, // reranker dropped: queue closed
            };
            // The caller gave up (timeout, client gone): skip the work.
            if job.reply.is_closed() {
                continue;
            }
            let result = self.score(&job.request);
            let _ = job.reply.send(result);
        }
    }

    fn score(&mut self, req: &RerankRequest) -> Result<Vec<f32>, RerankError> {
        let max_length = req
            .max_length
            .unwrap_or(self.max_length)
            .min(self.max_length);
        let pairs: Vec<Pair> = self
            .encoder
            .encode(&req.query, &req.documents, max_length)
            .map_err(RerankError::Tokenization)?;
        let mut scores = vec![0f32; pairs.len()];
        for rows in plan_batches(&pairs, self.batch_size) {
            let batch = pad(&pairs, &rows, self.encoder.pad_id);
            let out = self.infer(batch).map_err(RerankError::Inference)?;
            for (row, &i) in rows.iter().enumerate() {
                scores[i] = out[row];
            }
        }
        Ok(scores)
    }

    fn infer(&mut self, b: encode::Batch) -> Result<Vec<f32>, String> {
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
        let (shape, data) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| format!("model output is not a float tensor: {e}"))?;
        scores_from_logits(shape, data, b.rows)
    }
}

pub struct OnnxReranker {
    model: String,
    jobs: SyncSender<Job>,
    pub info: ModelInfo,
    pub max_length: usize,
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
        metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    ) -> Result<OnnxReranker, String> {
        let _ = (name, &metrics);
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
        let (tx, rx) = mpsc::sync_channel::<Job>(cfg.queue_capacity);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..cfg.workers {
            let mut builder = Session::builder(env).map_err(|e| e.to_string())?;
            if cfg.intra_threads > 0 {
                builder = builder
                    .with_intra_threads(cfg.intra_threads)
                    .map_err(|e| e.to_string())?;
            }
            let session = builder
                .commit_from_file(&info.model_path)
                .map_err(|e| format!("cannot load {}: {e}", info.model_path.display()))?;
            let worker = Worker {
                inputs: inspect(&session)?,
                session,
                encoder: encoder.clone(),
                max_length,
                batch_size: cfg.batch_size,
            };
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("secondpass-onnx-{n}"))
                .spawn(move || worker.run(rx))
                .map_err(|e| format!("cannot start inference thread: {e}"))?;
        }
        Ok(OnnxReranker {
            model: info.name.clone(),
            jobs: tx,
            info,
            max_length,
        })
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
        let sent = self.jobs.try_send(Job { request, reply });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_shapes() {
        assert_eq!(
            scores_from_logits(&[2, 1], &[0.5, -1.0], 2).unwrap(),
            vec![0.5, -1.0]
        );
        assert_eq!(
            scores_from_logits(&[2], &[0.5, -1.0], 2).unwrap(),
            vec![0.5, -1.0]
        );
        assert_eq!(
            scores_from_logits(&[2, 2], &[1.0, 3.0, 2.0, 0.0], 2).unwrap(),
            vec![2.0, -2.0]
        );
        assert!(scores_from_logits(&[2, 3], &[0.0; 6], 2).is_err());
        assert!(scores_from_logits(&[3, 1], &[0.0; 3], 2).is_err());
    }

    #[test]
    fn locate_reports_missing_pieces() {
        let dir = std::env::temp_dir().join(format!("sp-locate-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("onnx")).unwrap();
        let e = locate(&dir, None).unwrap_err();
        assert!(e.contains("no ONNX model"), "{e}");
        std::fs::write(dir.join("onnx/model.onnx"), b"x").unwrap();
        let e = locate(&dir, None).unwrap_err();
        assert!(e.contains("tokenizer.json"), "{e}");
        std::fs::write(dir.join("tokenizer.json"), b"{}").unwrap();
        std::fs::write(
            dir.join("config.json"),
            br#"{"model_type":"xlm-roberta","max_position_embeddings":514,"pad_token_id":1}"#,
        )
        .unwrap();
        let info = locate(&dir, None).unwrap();
        assert!(info.model_path.ends_with("onnx/model.onnx"));
        assert_eq!(info.max_positions, Some(512));
        assert_eq!(info.pad_token_id, Some(1));
        assert!(locate(&dir.join("missing"), None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
