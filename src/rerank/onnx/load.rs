//! Loading a local reranker: what differs between a cross-encoder and a decoder
//! ([`Model`]), and the threads every kind runs on ([`spawn_threads`]).

use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ort::session::Session;

use super::decoder::{self, DecoderInfo, DecoderRunner, Graph};
use super::encode::PairEncoder;
use super::infer::Runner;
use super::model::{self, ModelInfo};
use super::session::Device;
use super::worker::{Encode, Job, Score, Source, Tokenize, Worker};
use crate::config::OnnxConfig;
use crate::rerank::{RerankRequest, ScoreKind};

/// The model half of a local reranker: how requests become tokens, and one scorer
/// per worker session.
pub(super) struct Model {
    pub encoder: Arc<dyn Encode>,
    pub runners: Vec<Box<dyn Score>>,
    pub score_kind: ScoreKind,
    /// Most padded tokens a batch may hold (graphs with full-vocabulary logits).
    pub token_cap: Option<usize>,
    /// Whether the runners use ONNX Runtime's IO binding when configured.
    pub io_binding: bool,
    pub prompt_key: Option<String>,
    pub decoder: Option<DecoderInfo>,
}

impl Model {
    pub fn cross_encoder(
        cfg: &OnnxConfig,
        info: &ModelInfo,
        sessions: Vec<Session>,
        device: Device,
    ) -> Result<Model, String> {
        let encoder = PairEncoder::from_file(&info.tokenizer_path, info.pad_token_id)?;
        let runners = sessions
            .into_iter()
            .map(|s| {
                let inputs = model::inspect(&s)?;
                let r = Runner::new(s, inputs, device, cfg.io_binding(), encoder.pad_id)?;
                Ok(Box::new(r) as Box<dyn Score>)
            })
            .collect::<Result<_, String>>()?;
        Ok(Model {
            encoder: Arc::new(encoder),
            runners,
            score_kind: ScoreKind::Logit,
            token_cap: None,
            io_binding: true,
            prompt_key: None,
            decoder: None,
        })
    }

    /// A decoder reranker: the family's prompt, the answer tokens checked against the
    /// tokenizer, and a graph secondpass can read.
    pub fn decoder(
        cfg: &OnnxConfig,
        info: &ModelInfo,
        sessions: Vec<Session>,
        max_length: usize,
    ) -> Result<Model, String> {
        let encoder = decoder::encoder(cfg, &info.tokenizer_path, info.pad_token_id)?;
        let fixed = encoder.fixed_tokens();
        if max_length < fixed + 8 {
            return Err(format!(
                "max_length {max_length} leaves no room for query and document: the {} \
                 prompt alone is {fixed} tokens",
                encoder.template.family.as_str()
            ));
        }
        let dims = decoder::dims(&cfg.model_dir);
        let graph = Graph::inspect(&sessions[0], dims)?;
        let token_cap = graph.token_cap();
        if let Some(cap) = token_cap.filter(|&cap| cap < max_length) {
            return Err(format!(
                "{} answers logits for every position over the whole vocabulary: one prompt of \
                 max_length {max_length} tokens would need {} MiB, more than the {} MiB allowed. \
                 Export the model with scripts/export-llm-reranker (its graph answers only the \
                 two answer tokens' logits), or lower max_length to at most {cap}",
                info.model_path.display(),
                (decoder::FULL_LOGITS_BYTES / cap * max_length) >> 20,
                decoder::FULL_LOGITS_BYTES >> 20,
            ));
        }
        let t = &encoder.template;
        let padding = cfg.padding.unwrap_or_default();
        let runners = sessions
            .into_iter()
            .map(|session| {
                Box::new(DecoderRunner {
                    session,
                    graph: graph.clone(),
                    padding,
                    pad_id: encoder.pad_id,
                    answer: encoder.answer.map(i64::from),
                    score: t.score,
                }) as Box<dyn Score>
            })
            .collect();
        let info = DecoderInfo {
            family: t.family.as_str(),
            graph: graph.describe(),
            positive: (t.positive.clone(), encoder.answer[0]),
            negative: (t.negative.clone(), encoder.answer[1]),
            score: t.score,
            padding,
            fixed_tokens: fixed,
        };
        Ok(Model {
            score_kind: decoder::score_kind(t.score),
            token_cap,
            io_binding: false,
            prompt_key: Some(t.cache_key()),
            decoder: Some(info),
            runners,
            encoder: Arc::new(encoder),
        })
    }

    /// Scores one pair on every session; returns the first one's time in ms.
    pub fn warm_up(
        &mut self,
        max_length: usize,
        max_query_tokens: usize,
        device: Device,
    ) -> Result<f64, String> {
        let request = RerankRequest::new("warm up", vec!["warm up".into()]);
        let pairs = self.encoder.pairs(&request, max_length, max_query_tokens)?;
        let mut first_ms = 0.0;
        for (n, runner) in self.runners.iter_mut().enumerate() {
            let started = Instant::now();
            runner
                .score(&pairs, &[0])
                .map_err(|e| format!("first inference on {device} failed: {e}"))?;
            if n == 0 {
                first_ms = started.elapsed().as_secs_f64() * 1e3;
            }
        }
        Ok(first_ms)
    }
}

/// Starts the worker threads (and tokenizer threads, when configured) and returns the
/// bounded job queue that feeds them.
pub(super) fn spawn_threads(
    cfg: &OnnxConfig,
    workers: Vec<Worker>,
    tokenize: Arc<Tokenize>,
) -> Result<SyncSender<Job>, String> {
    let (tx, rx) = mpsc::sync_channel::<Job>(cfg.queue_capacity);
    let rx = Arc::new(Mutex::new(rx));
    let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name)
            .spawn(f)
            .map(drop)
            .map_err(|e| format!("cannot start a reranker thread: {e}"))
    };
    if cfg.tokenizer_threads() == 0 {
        for (n, worker) in workers.into_iter().enumerate() {
            let source = Source::Jobs(tokenize.clone(), rx.clone());
            spawn(
                format!("secondpass-onnx-{n}"),
                Box::new(move || worker.run(source)),
            )?;
        }
    } else {
        // Room for one tokenized group per worker plus one being merged: enough to
        // keep every worker fed, small enough that the job queue stays the bound.
        let (ptx, prx) = mpsc::sync_channel(2 * cfg.workers);
        let prx = Arc::new(Mutex::new(prx));
        for (n, worker) in workers.into_iter().enumerate() {
            let source = Source::Prepared(prx.clone());
            spawn(
                format!("secondpass-onnx-{n}"),
                Box::new(move || worker.run(source)),
            )?;
        }
        for n in 0..cfg.tokenizer_threads() {
            let (tok, jobs, out) = (tokenize.clone(), rx.clone(), ptx.clone());
            spawn(
                format!("secondpass-tok-{n}"),
                Box::new(move || tok.run(&jobs, &out)),
            )?;
        }
    }
    Ok(tx)
}
