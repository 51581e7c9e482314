//! Prompts as token ids: fixed pieces tokenized once at load and spliced around each
//! pair's body, the body cut the way the family's authors cut it.

use std::path::Path;

use tokenizers::Tokenizer;

use super::prompt::Template;
use crate::config::Truncation;
use crate::rerank::chunk::{passage_tokens, windows, Chunking};
use crate::rerank::onnx::encode::{
    load_tokenizer, text_for_tokens, Chunked, Pair, MAX_BYTES_PER_TOKEN,
};

/// Tokenizes prompts for one template.
pub struct PromptEncoder {
    tokenizer: Tokenizer,
    pub template: Template,
    prefix: Vec<u32>,
    /// Everything after the body, never cut.
    tail: Vec<u32>,
    separator: Vec<u32>,
    /// Token ids of the positive and negative answer.
    pub answer: [u32; 2],
    pub pad_id: i64,
}

impl PromptEncoder {
    /// Reads the tokenizer and checks that each answer word is one token of it.
    pub fn from_file(
        path: &Path,
        template: Template,
        pad_id: Option<i64>,
    ) -> Result<PromptEncoder, String> {
        let tokenizer = load_tokenizer(path)?;
        let answer = [
            answer_token(&tokenizer, &template.positive, "positive")?,
            answer_token(&tokenizer, &template.negative, "negative")?,
        ];
        let pad_id = pad_id
            .or_else(|| tokenizer.get_padding().map(|p| i64::from(p.pad_id)))
            .or_else(|| {
                ["<|endoftext|>", "<pad>", "[PAD]"]
                    .iter()
                    .find_map(|t| tokenizer.token_to_id(t))
                    .map(i64::from)
            })
            .unwrap_or(0);
        let mut e = PromptEncoder {
            tokenizer,
            template,
            prefix: Vec::new(),
            tail: Vec::new(),
            separator: Vec::new(),
            answer,
            pad_id,
        };
        e.prefix = e.ids(&e.template.prefix)?;
        e.separator = e.ids(&e.template.separator)?;
        let mut tail = Vec::new();
        for piece in e.template.tail() {
            tail.extend(e.ids(piece)?);
        }
        e.tail = tail;
        Ok(e)
    }

    /// Tokens of the prompt that are there whatever the pair: prefix and tail.
    pub fn fixed_tokens(&self) -> usize {
        self.prefix.len() + self.tail.len()
    }

    fn ids(&self, text: &str) -> Result<Vec<u32>, String> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| e.to_string())
    }

    fn ids_batch(&self, texts: Vec<String>) -> Result<Vec<Vec<u32>>, String> {
        self.tokenizer
            .encode_batch(texts, false)
            .map(|es| es.into_iter().map(|e| e.get_ids().to_vec()).collect())
            .map_err(|e| e.to_string())
    }

    /// One prompt per document, each at most `max_length` tokens. The query text is
    /// first cut to `max_query_tokens` tokens; `instruction` is the request's (the
    /// template's default when `None` or blank).
    pub fn prompts(
        &self,
        instruction: Option<&str>,
        query: &str,
        docs: &[&str],
        max_length: usize,
        max_query_tokens: usize,
    ) -> Result<Vec<Pair>, String> {
        let t = &self.template;
        let instruction = t.instruction(instruction);
        let query = self.cut_query(query, max_query_tokens.max(1))?;
        let budget = max_length.saturating_sub(self.fixed_tokens()).max(1);
        let docs: Vec<&str> = docs.iter().map(|d| text_for_tokens(d, budget)).collect();
        let bodies: Vec<Vec<u32>> = match t.truncate {
            // Qwen3-Reranker: the body is one text, cut at its end.
            Truncation::Body => self
                .ids_batch(docs.iter().map(|d| t.body(instruction, query, d)).collect())?
                .into_iter()
                .map(|mut b| {
                    b.truncate(budget);
                    b
                })
                .collect(),
            // mxbai-rerank-v2: the query part keeps at most 3/4 of the room, then
            // separator + document part are cut to what is left.
            Truncation::Document => {
                let mut q = self.ids(&t.query_part(instruction, query))?;
                q.truncate(budget * 3 / 4);
                let docs = self.ids_batch(docs.iter().map(|d| t.document_part(d)).collect())?;
                docs.into_iter()
                    .map(|d| {
                        let room = budget.saturating_sub(q.len());
                        let mut b = q.clone();
                        b.extend(self.separator.iter().chain(&d).take(room));
                        b
                    })
                    .collect()
            }
        };
        Ok(bodies
            .into_iter()
            .map(|body| {
                let ids = self
                    .prefix
                    .iter()
                    .chain(&body)
                    .chain(&self.tail)
                    .map(|&i| i64::from(i))
                    .collect();
                Pair {
                    ids,
                    type_ids: Vec::new(),
                }
            })
            .collect())
    }

    /// `long_documents = "chunk"`: each document split into token windows of the room
    /// its prompt leaves (or `chunking.tokens`), each window's text prompted as a
    /// document of its own.
    pub fn prompts_chunked(
        &self,
        instruction: Option<&str>,
        query: &str,
        docs: &[&str],
        max_length: usize,
        max_query_tokens: usize,
        chunking: &Chunking,
    ) -> Result<Chunked, String> {
        let t = &self.template;
        let cut = self.cut_query(query, max_query_tokens.max(1))?;
        let around = self.fixed_tokens()
            + self
                .ids(&t.body(t.instruction(instruction), cut, ""))?
                .len();
        let size = passage_tokens(max_length, around, chunking.tokens);
        let docs: Vec<&str> = docs
            .iter()
            .map(|d| Chunked::source(d, size, chunking))
            .collect();
        let encoded = self
            .tokenizer
            .encode_batch(docs.clone(), false)
            .map_err(|e| e.to_string())?;
        let mut passages: Vec<&str> = Vec::new();
        let mut counts = Vec::with_capacity(docs.len());
        for (doc, e) in docs.iter().zip(&encoded) {
            let offsets = e.get_offsets();
            let spans = windows(offsets.len(), size, chunking.overlap, chunking.max_chunks);
            counts.push(spans.len());
            for span in spans {
                passages.push(if span.is_empty() {
                    doc
                } else {
                    let start = floor_char(doc, offsets[span.start].0);
                    let end = floor_char(doc, offsets[span.end - 1].1).max(start);
                    &doc[start..end]
                });
            }
        }
        let pairs = self.prompts(instruction, query, &passages, max_length, max_query_tokens)?;
        Ok(Chunked { pairs, counts })
    }

    /// The query text up to its `max_tokens`-th token (the text is cut first at
    /// [`MAX_BYTES_PER_TOKEN`] bytes a token so that a huge query is not tokenized whole).
    fn cut_query<'q>(&self, query: &'q str, max_tokens: usize) -> Result<&'q str, String> {
        let text = &query[..floor_char(query, max_tokens.saturating_mul(MAX_BYTES_PER_TOKEN))];
        let e = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| e.to_string())?;
        Ok(match e.get_offsets().get(max_tokens) {
            Some(&(start, _)) => &text[..floor_char(text, start)],
            None => text,
        })
    }
}

/// The largest character boundary of `s` at or below `i`.
fn floor_char(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The id of an answer word: its vocabulary entry (as Qwen3-Reranker's code looks it
/// up), else the single token it encodes to (as mxbai-rerank-v2's does). A word that
/// is several tokens cannot be scored from one position's logits.
fn answer_token(t: &Tokenizer, word: &str, which: &str) -> Result<u32, String> {
    if let Some(id) = t.token_to_id(word) {
        return Ok(id);
    }
    let e = t.encode(word, false).map_err(|e| e.to_string())?;
    match e.get_ids() {
        [id] => Ok(*id),
        ids => Err(format!(
            "the {which} answer `{word}` is {} tokens {ids:?} for this tokenizer, not one: \
             set prompt.{which} to a single token of the model's vocabulary",
            ids.len()
        )),
    }
}
