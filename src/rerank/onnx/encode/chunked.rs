//! `long_documents = "chunk"` for the local model: the query is tokenized once per
//! request, each document once; passages are token windows of the document.

use tokenizers::{Encoding, TruncationDirection};

use super::{text_for_tokens, Pair, PairEncoder};
use crate::rerank::chunk::{covered_tokens, passage_tokens, windows, Chunking};

/// The pairs of a chunked request and how many passages each document gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunked {
    /// Every passage of every document, documents in order, passages in order.
    pub pairs: Vec<Pair>,
    /// Passages of each document (at least 1, at most `max_chunks`).
    pub counts: Vec<usize>,
}

impl PairEncoder {
    /// Pairs `query` with every passage of every document, each pair at most
    /// `max_length` tokens. Passages get the room the query leaves; the query is cut
    /// to `max_query_tokens` and shortened further only when it alone takes more than
    /// half of `max_length` (as in truncation). Both are cut by bytes before they are
    /// tokenized: a document to the end of its `max_chunks` windows (see
    /// [`Chunked::source`]), so a multi-MB text costs what its passages cost.
    pub fn encode_chunked(
        &self,
        query: &str,
        docs: &[String],
        max_length: usize,
        max_query_tokens: usize,
        chunking: &Chunking,
    ) -> Result<Chunked, String> {
        let budget = max_length.saturating_sub(self.added).max(2);
        let mut q = self.encode_query(query, max_query_tokens.max(1))?;
        if q.len() > budget / 2 {
            q.truncate(budget / 2, 0, TruncationDirection::Right);
        }
        let size = passage_tokens(budget, q.len(), chunking.tokens);
        let docs: Vec<&str> = docs
            .iter()
            .map(|d| Chunked::source(d, size, chunking))
            .collect();
        let encoded = self
            .tokenizer
            .encode_batch(docs, false)
            .map_err(|e| e.to_string())?;
        let mut out = Chunked {
            pairs: Vec::new(),
            counts: Vec::with_capacity(encoded.len()),
        };
        for d in &encoded {
            let spans = windows(d.len(), size, chunking.overlap, chunking.max_chunks);
            out.counts.push(spans.len());
            for span in spans {
                let e = self
                    .tokenizer
                    .post_process(q.clone(), Some(slice(d, span)), true)
                    .map_err(|e| e.to_string())?;
                out.pairs.push(Pair {
                    ids: e.get_ids().iter().map(|&i| i64::from(i)).collect(),
                    type_ids: e.get_type_ids().iter().map(|&i| i64::from(i)).collect(),
                });
            }
        }
        Ok(out)
    }
}

impl Chunked {
    /// The part of `doc` that passages of `size` tokens can come from: text past the
    /// last of `max_chunks` windows is never scored, so it is not tokenized.
    pub fn source<'d>(doc: &'d str, size: usize, chunking: &Chunking) -> &'d str {
        let covered = covered_tokens(size, chunking.overlap, chunking.max_chunks);
        text_for_tokens(doc, covered)
    }
}

/// Tokens `span` of `e` (with their offsets), on token boundaries.
fn slice(e: &Encoding, span: std::ops::Range<usize>) -> Encoding {
    let mut s = e.clone();
    if span.end < s.len() {
        s.truncate(span.end, 0, TruncationDirection::Right);
    }
    if span.start > 0 {
        s.truncate(span.len(), 0, TruncationDirection::Left);
    }
    // Truncation keeps what it cut as overflow; a passage needs none of it.
    drop(s.take_overflowing());
    s
}
