//! Tokenizing (query, document) pairs and packing them into padded batches.

mod chunked;
pub use chunked::Chunked;

use std::path::Path;

use tokenizers::{Encoding, PostProcessor, Tokenizer, TruncationDirection};

/// Token ids of one pair, ready to batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub ids: Vec<i64>,
    pub type_ids: Vec<i64>,
}

impl Pair {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A padded batch, row-major `[rows, width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub rows: usize,
    pub width: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
}

pub struct PairEncoder {
    tokenizer: Tokenizer,
    /// Special tokens the pair template adds ([CLS] q [SEP] d [SEP] → 3).
    added: usize,
    pub pad_id: i64,
}

/// The tokenizer at `path`, without its own padding and truncation: we truncate (the
/// query kept, the document cut) and pad per batch ourselves.
pub(crate) fn load_tokenizer(path: &Path) -> Result<Tokenizer, String> {
    let mut tokenizer = Tokenizer::from_file(path)
        .map_err(|e| format!("cannot read tokenizer {}: {e}", path.display()))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| format!("cannot disable truncation: {e}"))?;
    Ok(tokenizer)
}

impl PairEncoder {
    pub fn from_file(path: &Path, pad_id: Option<i64>) -> Result<PairEncoder, String> {
        let tokenizer = load_tokenizer(path)?;
        let added = tokenizer
            .get_post_processor()
            .map(|p| p.added_tokens(true))
            .unwrap_or(0);
        let pad_id = pad_id
            .or_else(|| tokenizer.get_padding().map(|p| p.pad_id as i64))
            .or_else(|| {
                ["[PAD]", "<pad>"]
                    .iter()
                    .find_map(|t| tokenizer.token_to_id(t))
                    .map(i64::from)
            })
            .unwrap_or(0);
        Ok(PairEncoder {
            tokenizer,
            added,
            pad_id,
        })
    }

    /// Encodes `query` with every document, each pair at most `max_length` tokens.
    /// The query is tokenized once and cut to `max_query_tokens`; in a pair it is kept
    /// whole unless it would take more than half the budget from a longer document.
    pub fn encode(
        &self,
        query: &str,
        docs: &[String],
        max_length: usize,
        max_query_tokens: usize,
    ) -> Result<Vec<Pair>, String> {
        let budget = max_length.saturating_sub(self.added).max(2);
        let q = self.encode_query(query, max_query_tokens.max(1))?;
        let docs: Vec<&str> = docs.iter().map(|d| text_for_tokens(d, budget)).collect();
        let encoded = self
            .tokenizer
            .encode_batch(docs, false)
            .map_err(|e| e.to_string())?;
        encoded
            .into_iter()
            .map(|d| self.pair(&q, d, budget))
            .collect()
    }

    /// The query's tokens, at most `max_tokens`. The text is cut first (at
    /// [`MAX_BYTES_PER_TOKEN`] bytes a token) so that a huge query is not tokenized whole.
    pub fn encode_query(&self, query: &str, max_tokens: usize) -> Result<Encoding, String> {
        let text = cut_at_char(query, max_tokens.saturating_mul(MAX_BYTES_PER_TOKEN));
        let mut q = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| e.to_string())?;
        cut(&mut q, max_tokens);
        Ok(q)
    }

    fn pair(&self, q: &Encoding, mut d: Encoding, budget: usize) -> Result<Pair, String> {
        // The query's copy per pair is at most max_query_tokens long, with nothing cut
        // off kept (see `cut`).
        let mut q = q.clone();
        if q.len() + d.len() > budget && q.len() > budget / 2 {
            let keep_q = (budget / 2).max(budget.saturating_sub(d.len()));
            cut(&mut q, keep_q);
        }
        let doc_room = budget.saturating_sub(q.len());
        cut(&mut d, doc_room);
        let e = self
            .tokenizer
            .post_process(q, Some(d), true)
            .map_err(|e| e.to_string())?;
        Ok(Pair {
            ids: e.get_ids().iter().map(|&i| i64::from(i)).collect(),
            type_ids: e.get_type_ids().iter().map(|&i| i64::from(i)).collect(),
        })
    }
}

impl super::worker::Encode for PairEncoder {
    fn pairs(
        &self,
        req: &crate::rerank::RerankRequest,
        max_length: usize,
        max_query_tokens: usize,
    ) -> Result<Vec<Pair>, String> {
        self.encode(&req.query, &req.documents, max_length, max_query_tokens)
    }

    fn passages(
        &self,
        req: &crate::rerank::RerankRequest,
        max_length: usize,
        max_query_tokens: usize,
        chunking: &crate::rerank::chunk::Chunking,
    ) -> Result<Chunked, String> {
        self.encode_chunked(
            &req.query,
            &req.documents,
            max_length,
            max_query_tokens,
            chunking,
        )
    }
}

/// A token is rarely longer than this many bytes of text; the query text is cut to
/// `max_query_tokens` times it before tokenizing.
pub const MAX_BYTES_PER_TOKEN: usize = 128;

/// The part of `s` that its first `max_tokens` tokens can come from (one token more,
/// so the last one is not split by the cut): a multi-MB text is not tokenized whole
/// when only its opening can be scored.
pub fn text_for_tokens(s: &str, max_tokens: usize) -> &str {
    cut_at_char(
        s,
        max_tokens
            .saturating_add(1)
            .saturating_mul(MAX_BYTES_PER_TOKEN),
    )
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Truncates `e` to `max` tokens and drops what was cut off (the tokenizer keeps it as
/// "overflowing" encodings, which would be cloned and post-processed with every pair).
fn cut(e: &mut Encoding, max: usize) {
    if e.len() > max {
        e.truncate(max, 0, TruncationDirection::Right);
    }
    drop(e.take_overflowing());
}

/// Groups pair indices into batches, longest first, so pairs of similar length share
/// a batch and padding stays small. A batch holds at most `max_rows` pairs and at most
/// `max_tokens` padded tokens (rows × the batch's longest pair); a pair longer than
/// `max_tokens` still gets a batch of its own.
pub fn plan_batches(pairs: &[Pair], max_rows: usize, max_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    // Stable: equal lengths keep their order (the caller's job order).
    order.sort_by_key(|&i| std::cmp::Reverse(pairs[i].len()));
    // As many batches as `max_rows` needs, evenly filled: 40 pairs at 32 rows run as
    // 20 + 20, not 32 + 8 (a small last batch runs at a worse rate per pair).
    let max_rows = match pairs.len() {
        0 => 1,
        n => n.div_ceil(n.div_ceil(max_rows.max(1))),
    };
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut width = 0;
    for i in order {
        // Sorted longest first: the first pair of a batch sets its width.
        let fits = current.len() < max_rows && (current.len() + 1) * width <= max_tokens;
        if !current.is_empty() && !fits {
            batches.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            width = pairs[i].len().max(1);
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Pads the selected pairs to the longest of them.
pub fn pad(pairs: &[Pair], rows: &[usize], pad_id: i64) -> Batch {
    let width = rows.iter().map(|&i| pairs[i].len()).max().unwrap_or(0);
    let n = rows.len() * width;
    let mut b = Batch {
        rows: rows.len(),
        width,
        input_ids: vec![pad_id; n],
        attention_mask: vec![0; n],
        token_type_ids: vec![0; n],
    };
    for (r, &i) in rows.iter().enumerate() {
        let p = &pairs[i];
        let start = r * width;
        b.input_ids[start..start + p.len()].copy_from_slice(&p.ids);
        b.token_type_ids[start..start + p.len()].copy_from_slice(&p.type_ids);
        b.attention_mask[start..start + p.len()].fill(1);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(n: usize) -> Pair {
        Pair {
            ids: vec![7; n],
            type_ids: vec![1; n],
        }
    }

    #[test]
    fn cut_at_char_keeps_whole_characters() {
        assert_eq!(cut_at_char("héllo", 2), "h");
        assert_eq!(cut_at_char("héllo", 3), "hé");
        assert_eq!(cut_at_char("abc", 10), "abc");
        assert_eq!(cut_at_char("€", 1), "");
    }

    #[test]
    fn batches_group_by_length() {
        let pairs = vec![pair(3), pair(10), pair(5), pair(9)];
        assert_eq!(plan_batches(&pairs, 2, 1000), vec![vec![1, 3], vec![2, 0]]);
        assert_eq!(plan_batches(&pairs, 10, 1000).len(), 1);
        // Evenly filled: 4 pairs at 3 rows are 2 + 2, not 3 + 1.
        assert_eq!(plan_batches(&pairs, 3, 1000), vec![vec![1, 3], vec![2, 0]]);
        let many: Vec<Pair> = (0..40).map(|_| pair(5)).collect();
        let sizes: Vec<usize> = plan_batches(&many, 32, 10_000)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![20, 20]);
        assert!(plan_batches(&[], 4, 1000).is_empty());
    }

    #[test]
    fn batches_respect_the_token_budget() {
        // Widths 10, 9, 5, 3: 2 rows of width 10 = 20 tokens fit, a third would not.
        let pairs = vec![pair(3), pair(10), pair(5), pair(9)];
        assert_eq!(plan_batches(&pairs, 8, 20), vec![vec![1, 3], vec![2, 0]]);
        // 3 rows × 5 tokens fit in 15 once the long pairs are out.
        assert_eq!(
            plan_batches(&pairs, 8, 15),
            vec![vec![1], vec![3], vec![2, 0]]
        );
        // A pair longer than the budget still runs, alone.
        assert_eq!(
            plan_batches(&[pair(40), pair(2)], 8, 16),
            vec![vec![0], vec![1]]
        );
        // Equal lengths keep their order (stable sort).
        assert_eq!(
            plan_batches(&[pair(4), pair(4), pair(4)], 2, 100),
            vec![vec![0, 1], vec![2]]
        );
    }

    #[test]
    fn padding_fills_mask_and_pad_id() {
        let pairs = vec![pair(2), pair(4)];
        let b = pad(&pairs, &[1, 0], 9);
        assert_eq!(b.width, 4);
        assert_eq!(b.input_ids, vec![7, 7, 7, 7, 7, 7, 9, 9]);
        assert_eq!(b.attention_mask, vec![1, 1, 1, 1, 1, 1, 0, 0]);
        assert_eq!(b.token_type_ids, vec![1, 1, 1, 1, 1, 1, 0, 0]);
    }
}
