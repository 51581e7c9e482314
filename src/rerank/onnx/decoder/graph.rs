//! The decoder graphs secondpass runs, read from the ONNX file itself:
//!
//! - `scripts/export-llm-reranker`'s scorer: inputs `input_ids`, `attention_mask` and
//!   `score_token_ids` (the two answer tokens, fed from the tokenizer at load), output
//!   `[batch, 2]`: those tokens' logits at each row's last real position. One forward
//!   pass, no KV cache, nothing over the vocabulary leaves the graph.
//! - community exports of the causal LM (optimum / transformers.js layout): inputs
//!   `input_ids`, `attention_mask`, optionally `position_ids`, empty
//!   `past_key_values.*` and `use_cache_branch`; output `logits`
//!   `[batch, sequence, vocabulary]`, of which only each row's last real position is
//!   read. Those logits are large: the batch token budget is cut so that they fit in
//!   [`FULL_LOGITS_BYTES`], and a graph where not even one prompt fits is refused.

use ort::memory::Allocator;
use ort::session::{OutputSelector, RunOptions, Session};
use ort::value::{DynTensor, DynValue, Tensor, TensorElementType, ValueType};

use crate::config::{Padding, ScoreFunction};
use crate::rerank::onnx::encode::Pair;
use crate::rerank::onnx::model::output_floats;
use crate::rerank::onnx::worker::Score;
use crate::rerank::sigmoid;

/// Most bytes of full-vocabulary logits one batch may produce (community exports).
pub const FULL_LOGITS_BYTES: usize = 1 << 30;

/// What the graph answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `[batch, 2]`: the answer tokens' logits at the last real position.
    Scores,
    /// `[batch, sequence, vocabulary]`.
    FullLogits {
        vocab: usize,
        bytes_per_logit: usize,
    },
}

/// An empty `past_key_values.*` input: `[batch, kv_heads, 0, head_dim]`.
#[derive(Debug, Clone)]
struct Past {
    name: String,
    ty: TensorElementType,
    heads: i64,
    head_dim: i64,
}

/// How to feed and read one decoder graph.
#[derive(Debug, Clone)]
pub struct Graph {
    pub output: Output,
    output_name: String,
    position_ids: bool,
    score_token_ids: bool,
    use_cache_branch: bool,
    past: Vec<Past>,
}

/// Shape of the model (from its config.json) for graphs whose cache inputs do not
/// state their sizes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dims {
    pub kv_heads: Option<i64>,
    pub head_dim: Option<i64>,
    pub vocab: Option<usize>,
}

const FEEDS: &str = "input_ids, attention_mask, position_ids, score_token_ids, \
                     past_key_values.*, use_cache_branch";

impl Graph {
    /// Reads the graph's inputs and outputs; refuses, saying why, a graph it cannot run.
    pub fn inspect(session: &Session, dims: Dims) -> Result<Graph, String> {
        let mut g = Graph {
            output: Output::Scores,
            output_name: String::new(),
            position_ids: false,
            score_token_ids: false,
            use_cache_branch: false,
            past: Vec::new(),
        };
        let (mut ids, mut mask) = (false, false);
        for input in session.inputs() {
            let name = input.name();
            let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
                return Err(format!("model input `{name}` is not a tensor"));
            };
            let int64 = |flag: &mut bool| {
                if *ty == TensorElementType::Int64 {
                    *flag = true;
                    Ok(())
                } else {
                    Err(format!(
                        "model input `{name}` is {ty:?}; secondpass feeds int64"
                    ))
                }
            };
            match name {
                "input_ids" => int64(&mut ids)?,
                "attention_mask" => int64(&mut mask)?,
                "position_ids" => int64(&mut g.position_ids)?,
                "score_token_ids" => int64(&mut g.score_token_ids)?,
                "use_cache_branch" if *ty == TensorElementType::Bool => g.use_cache_branch = true,
                n if n.starts_with("past_key_values.") || n.starts_with("past_key_values_") => {
                    let dim = |i: usize, fallback: Option<i64>, what: &str| {
                        shape
                            .get(i)
                            .copied()
                            .filter(|&d| d > 0)
                            .or(fallback)
                            .ok_or_else(|| {
                                format!(
                                    "cache input `{n}` does not state its {what} and config.json \
                                     has none"
                                )
                            })
                    };
                    if shape.len() != 4 {
                        return Err(format!(
                            "cache input `{n}` has {} dimensions; expected [batch, kv_heads, \
                             past, head_dim]",
                            shape.len()
                        ));
                    }
                    g.past.push(Past {
                        name: n.to_string(),
                        ty: *ty,
                        heads: dim(1, dims.kv_heads, "number of key/value heads")?,
                        head_dim: dim(3, dims.head_dim, "head size")?,
                    });
                }
                other => {
                    return Err(format!(
                        "model input `{other}` is not one secondpass can feed ({FEEDS}); \
                         export the model with scripts/export-llm-reranker"
                    ))
                }
            }
        }
        if !ids || !mask {
            return Err("a decoder graph needs int64 inputs input_ids and attention_mask".into());
        }
        g.pick_output(session, dims)?;
        Ok(g)
    }

    fn pick_output(&mut self, session: &Session, dims: Dims) -> Result<(), String> {
        if self.score_token_ids {
            let out = session.outputs().first().ok_or("the model has no output")?;
            self.output_name = out.name().to_string();
            return Ok(());
        }
        let out = session
            .outputs()
            .iter()
            .find(|o| o.name() == "logits")
            .ok_or_else(|| {
                "the graph has neither a score_token_ids input (scripts/export-llm-reranker's \
                 scorer) nor a `logits` output [batch, sequence, vocabulary] (a causal LM \
                 export): export the model with scripts/export-llm-reranker"
                    .to_string()
            })?;
        let ValueType::Tensor { ty, shape, .. } = out.dtype() else {
            return Err("output `logits` is not a tensor".into());
        };
        if shape.len() != 3 {
            return Err(format!(
                "output `logits` has {} dimensions; a causal LM export answers [batch, sequence, \
                 vocabulary] (a graph that keeps only some positions cannot be read safely): \
                 export the model with scripts/export-llm-reranker",
                shape.len()
            ));
        }
        let bytes_per_logit = match ty {
            TensorElementType::Float32 => 4,
            TensorElementType::Float16 => 2,
            other => {
                return Err(format!(
                    "output `logits` is {other:?}; expected float32 or float16"
                ))
            }
        };
        let vocab = match shape[2] {
            v if v > 0 => v as usize,
            _ => dims.vocab.ok_or(
                "output `logits` does not state the vocabulary size and config.json has no \
                 vocab_size",
            )?,
        };
        self.output_name = out.name().to_string();
        self.output = Output::FullLogits {
            vocab,
            bytes_per_logit,
        };
        Ok(())
    }

    /// The most padded tokens one batch may hold so that its logits fit in
    /// [`FULL_LOGITS_BYTES`]; `None`: no limit (the scorer's output is tiny).
    pub fn token_cap(&self) -> Option<usize> {
        match self.output {
            Output::Scores => None,
            Output::FullLogits {
                vocab,
                bytes_per_logit,
            } => Some(FULL_LOGITS_BYTES / (vocab * bytes_per_logit).max(1)),
        }
    }

    pub fn describe(&self) -> String {
        match self.output {
            Output::Scores => "scorer (answer-token logits at the last position)".into(),
            Output::FullLogits { vocab, .. } => {
                format!("causal LM export (full logits over {vocab} tokens, last position read)")
            }
        }
    }
}

/// A worker's session of a decoder graph.
pub struct DecoderRunner {
    pub session: Session,
    pub graph: Graph,
    pub padding: Padding,
    pub pad_id: i64,
    /// Positive and negative answer token ids.
    pub answer: [i64; 2],
    pub score: ScoreFunction,
}

/// A padded decoder batch, row-major `[rows, width]`.
struct Batch {
    rows: usize,
    width: usize,
    input_ids: Vec<i64>,
    attention_mask: Vec<i64>,
    position_ids: Vec<i64>,
    /// Each row's last real position.
    last: Vec<usize>,
}

fn pad(pairs: &[Pair], rows: &[usize], pad_id: i64, padding: Padding) -> Batch {
    let width = rows.iter().map(|&i| pairs[i].len()).max().unwrap_or(0);
    let n = rows.len() * width;
    let mut b = Batch {
        rows: rows.len(),
        width,
        input_ids: vec![pad_id; n],
        attention_mask: vec![0; n],
        position_ids: vec![0; n],
        last: Vec::with_capacity(rows.len()),
    };
    for (r, &i) in rows.iter().enumerate() {
        let ids = &pairs[i].ids;
        let start = r * width
            + match padding {
                Padding::Left => width - ids.len(),
                Padding::Right => 0,
            };
        b.input_ids[start..start + ids.len()].copy_from_slice(ids);
        b.attention_mask[start..start + ids.len()].fill(1);
        // Positions count real tokens only, so a row's positions do not depend on
        // how much padding it got.
        for (p, slot) in b.position_ids[start..start + ids.len()]
            .iter_mut()
            .enumerate()
        {
            *slot = p as i64;
        }
        b.last.push(start + ids.len().max(1) - 1 - r * width);
    }
    b
}

impl DecoderRunner {
    fn logits(&mut self, b: &Batch) -> Result<Vec<[f32; 2]>, String> {
        let e = |e: ort::Error| e.to_string();
        let shape = [b.rows, b.width];
        let mut inputs: Vec<(String, DynValue)> = vec![
            (
                "input_ids".into(),
                Tensor::from_array((shape, b.input_ids.clone()))
                    .map_err(e)?
                    .into_dyn(),
            ),
            (
                "attention_mask".into(),
                Tensor::from_array((shape, b.attention_mask.clone()))
                    .map_err(e)?
                    .into_dyn(),
            ),
        ];
        if self.graph.position_ids {
            let t = Tensor::from_array((shape, b.position_ids.clone())).map_err(e)?;
            inputs.push(("position_ids".into(), t.into_dyn()));
        }
        if self.graph.score_token_ids {
            let t = Tensor::from_array(([2usize], self.answer.to_vec())).map_err(e)?;
            inputs.push(("score_token_ids".into(), t.into_dyn()));
        }
        if self.graph.use_cache_branch {
            let t = Tensor::from_array(([1usize], vec![false])).map_err(e)?;
            inputs.push(("use_cache_branch".into(), t.into_dyn()));
        }
        for p in &self.graph.past {
            let dims = [b.rows as i64, p.heads, 0, p.head_dim];
            let t = DynTensor::new(&Allocator::default(), p.ty, dims).map_err(e)?;
            inputs.push((p.name.clone(), t.into_dyn()));
        }
        let options = RunOptions::new()
            .map_err(e)?
            .with_outputs(OutputSelector::no_default().with(self.graph.output_name.as_str()));
        let outputs = self.session.run_with_options(inputs, &options).map_err(e)?;
        let out = outputs
            .get(self.graph.output_name.as_str())
            .ok_or("the model gave no output")?;
        let (shape, data) = output_floats(out)?;
        match self.graph.output {
            Output::Scores => match shape.as_slice() {
                [r, 2] if *r as usize == b.rows => {
                    Ok(data.chunks(2).map(|c| [c[0], c[1]]).collect())
                }
                _ => Err(format!(
                    "unexpected scorer output shape {shape:?} for {} prompts (expected [{}, 2])",
                    b.rows, b.rows
                )),
            },
            Output::FullLogits { .. } => {
                let [r, t, v] = shape.as_slice() else {
                    return Err(format!("unexpected logits shape {shape:?}"));
                };
                let (t, v) = (*t as usize, *v as usize);
                if *r as usize != b.rows || t != b.width {
                    return Err(format!(
                        "unexpected logits shape {shape:?} for a batch of [{}, {}]",
                        b.rows, b.width
                    ));
                }
                let [pos, neg] = self.answer.map(|a| a as usize);
                if pos.max(neg) >= v {
                    return Err(format!(
                        "answer token ids {:?} beyond the vocabulary ({v})",
                        self.answer
                    ));
                }
                Ok((0..b.rows)
                    .map(|row| {
                        let base = (row * t + b.last[row]) * v;
                        [data[base + pos], data[base + neg]]
                    })
                    .collect())
            }
        }
    }
}

/// The score of one prompt from its positive and negative answer logits.
pub fn score(f: ScoreFunction, [pos, neg]: [f32; 2]) -> f32 {
    match f {
        ScoreFunction::Softmax => sigmoid(pos - neg),
        ScoreFunction::Difference => pos - neg,
        ScoreFunction::Positive => pos,
    }
}

impl Score for DecoderRunner {
    fn score(&mut self, pairs: &[Pair], rows: &[usize]) -> Result<Vec<f32>, String> {
        let b = pad(pairs, rows, self.pad_id, self.padding);
        Ok(self
            .logits(&b)?
            .into_iter()
            .map(|l| score(self.score, l))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(ids: &[i64]) -> Pair {
        Pair {
            ids: ids.to_vec(),
            type_ids: Vec::new(),
        }
    }

    #[test]
    fn padding_either_side_keeps_positions_and_finds_the_last_token() {
        let pairs = [pair(&[5, 6, 7]), pair(&[8])];
        let l = pad(&pairs, &[0, 1], 0, Padding::Left);
        assert_eq!(l.input_ids, vec![5, 6, 7, 0, 0, 8]);
        assert_eq!(l.attention_mask, vec![1, 1, 1, 0, 0, 1]);
        assert_eq!(l.position_ids, vec![0, 1, 2, 0, 0, 0]);
        assert_eq!(l.last, vec![2, 2]);
        let r = pad(&pairs, &[0, 1], 0, Padding::Right);
        assert_eq!(r.input_ids, vec![5, 6, 7, 8, 0, 0]);
        assert_eq!(r.attention_mask, vec![1, 1, 1, 1, 0, 0]);
        assert_eq!(r.position_ids, vec![0, 1, 2, 0, 0, 0]);
        assert_eq!(r.last, vec![2, 0]);
    }

    #[test]
    fn full_logits_cap_the_batch_tokens() {
        let g = |output| Graph {
            output,
            output_name: "logits".into(),
            position_ids: true,
            score_token_ids: false,
            use_cache_branch: false,
            past: Vec::new(),
        };
        assert_eq!(g(Output::Scores).token_cap(), None);
        // Qwen's vocabulary in fp32: 1 GiB holds about 1,770 positions of logits.
        let full = g(Output::FullLogits {
            vocab: 151_669,
            bytes_per_logit: 4,
        });
        assert_eq!(full.token_cap(), Some(1769));
        assert!(full.describe().contains("151669"));
    }

    #[test]
    fn score_functions() {
        assert!((score(ScoreFunction::Softmax, [2.0, 2.0]) - 0.5).abs() < 1e-7);
        // softmax([no, yes])[yes] = e^y / (e^y + e^n)
        let (y, n) = (1.5f32, -0.5f32);
        let want = y.exp() / (y.exp() + n.exp());
        assert!((score(ScoreFunction::Softmax, [y, n]) - want).abs() < 1e-6);
        assert_eq!(score(ScoreFunction::Difference, [y, n]), 2.0);
        assert_eq!(score(ScoreFunction::Positive, [y, n]), 1.5);
    }
}
