//! Long documents: splitting a document into passages, scoring every passage with
//! the query, and folding the passage scores back into one document score.
//!
//! The local model splits on token boundaries (see `onnx::encode`); hosted rerankers
//! have no tokenizer here, so [`Passages`] splits on whitespace by words instead.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{RerankFuture, RerankRequest, Reranker, ScoreKind};

/// How passage scores become one document score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Aggregate {
    /// The best passage (what Elasticsearch does).
    Max,
    /// The mean over passages.
    Mean,
    /// The first passage only (same text as truncation, but query kept whole).
    First,
    /// `w × first + (1 − w) × best`: the opening passage blended with the best one.
    Blend(f32),
    /// The best passage after a position prior: `max_i (s_i − d × i)`.
    Decay(f32),
}

impl Aggregate {
    /// One score from the passage scores of a document (in passage order). An empty
    /// slice folds to `f32::NEG_INFINITY` (never happens: every document has a passage).
    pub fn fold(&self, scores: &[f32]) -> f32 {
        let Some(&first) = scores.first() else {
            return f32::NEG_INFINITY;
        };
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        match *self {
            Aggregate::Max => max,
            Aggregate::Mean => scores.iter().sum::<f32>() / scores.len() as f32,
            Aggregate::First => first,
            Aggregate::Blend(w) => w * first + (1.0 - w) * max,
            Aggregate::Decay(d) => scores
                .iter()
                .enumerate()
                .map(|(i, s)| s - d * i as f32)
                .fold(f32::NEG_INFINITY, f32::max),
        }
    }
}

impl FromStr for Aggregate {
    type Err = String;

    /// `max`, `mean`, `first`, `blend:W` (W in 0..=1), `decay:D` (D ≥ 0).
    fn from_str(s: &str) -> Result<Aggregate, String> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (s.trim(), None),
        };
        let num = |a: Option<&str>| -> Result<f32, String> {
            a.and_then(|a| a.parse::<f32>().ok())
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("`{s}`: `{name}` needs a number, e.g. `{name}:0.5`"))
        };
        match (name, arg) {
            ("max", None) => Ok(Aggregate::Max),
            ("mean", None) => Ok(Aggregate::Mean),
            ("first", None) => Ok(Aggregate::First),
            ("blend", a) => match num(a)? {
                w if (0.0..=1.0).contains(&w) => Ok(Aggregate::Blend(w)),
                _ => Err(format!("`{s}`: the blend weight must be within 0..1")),
            },
            ("decay", a) => match num(a)? {
                d if d >= 0.0 => Ok(Aggregate::Decay(d)),
                _ => Err(format!("`{s}`: the decay must not be negative")),
            },
            _ => Err(format!(
                "unknown chunk_aggregate `{s}` (expected max, mean, first, blend:W or decay:D)"
            )),
        }
    }
}

impl TryFrom<String> for Aggregate {
    type Error = String;
    fn try_from(s: String) -> Result<Aggregate, String> {
        s.parse()
    }
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregate::Max => f.write_str("max"),
            Aggregate::Mean => f.write_str("mean"),
            Aggregate::First => f.write_str("first"),
            Aggregate::Blend(w) => write!(f, "blend:{w}"),
            Aggregate::Decay(d) => write!(f, "decay:{d}"),
        }
    }
}

impl From<Aggregate> for String {
    fn from(a: Aggregate) -> String {
        a.to_string()
    }
}

/// What a hosted reranker does with long documents in `chunk` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostedChunks {
    /// Each passage is sent as its own document; scores are folded back.
    #[default]
    Passages,
    /// Documents are sent whole; the provider truncates them its own way.
    Provider,
}

/// How a request's long documents are scored (absent: truncated at `max_length`).
#[derive(Debug, Clone, PartialEq)]
pub struct Chunking {
    /// Tokens per passage; `None`: what fits beside the query in `max_length`.
    pub tokens: Option<usize>,
    /// Tokens shared by consecutive passages.
    pub overlap: usize,
    /// Passages scored per document at most (the first ones).
    pub max_chunks: usize,
    pub aggregate: Aggregate,
    pub hosted: HostedChunks,
}

/// Token ranges of the passages of a document of `len` tokens: windows of `size`
/// tokens, each starting `size − overlap` after the previous one, at most `max` of
/// them, the last one ending at `len` or earlier. A document that fits is one passage;
/// an empty one is one empty passage (it still gets a score).
pub fn windows(len: usize, size: usize, overlap: usize, max: usize) -> Vec<Range<usize>> {
    let size = size.max(1);
    // An overlap as large as the window would never advance.
    let stride = size.saturating_sub(overlap).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + size).min(len);
        out.push(start..end);
        if end >= len || out.len() >= max.max(1) {
            return out;
        }
        start += stride;
    }
}

/// Tokens the passages of one document can cover at most: `max` windows of `size`
/// tokens, `size − overlap` apart (as [`windows`] lays them). Text past them is never
/// scored, so it need not be tokenized.
pub fn covered_tokens(size: usize, overlap: usize, max: usize) -> usize {
    let size = size.max(1);
    let stride = size.saturating_sub(overlap).max(1);
    size.saturating_add(stride.saturating_mul(max.max(1) - 1))
}

/// Tokens left for a passage beside a query of `query_tokens` in a pair of at most
/// `budget` tokens (special tokens already taken off), capped by `chunk_tokens`.
/// The query is never cut for a passage: passages shrink instead (to 1 token at least).
pub fn passage_tokens(budget: usize, query_tokens: usize, chunk_tokens: Option<usize>) -> usize {
    let room = budget.saturating_sub(query_tokens).max(1);
    chunk_tokens.map_or(room, |c| c.clamp(1, room))
}

/// Folds flat passage scores back into one score per document; `counts[i]` is the
/// number of passages of document `i`, in order.
pub fn fold_all(scores: &[f32], counts: &[usize], aggregate: Aggregate) -> Vec<f32> {
    let mut rest = scores;
    counts
        .iter()
        .map(|&n| {
            let (head, tail) = rest.split_at(n.min(rest.len()));
            rest = tail;
            aggregate.fold(head)
        })
        .collect()
}

/// Passages of `text` by words (whitespace-separated), `words` per passage with
/// `overlap` words shared; slices of the original text, spacing kept.
pub fn word_passages(text: &str, words: usize, overlap: usize, max: usize) -> Vec<String> {
    let spans: Vec<(usize, usize)> = text
        .split_whitespace()
        .map(|w| {
            let start = w.as_ptr() as usize - text.as_ptr() as usize;
            (start, start + w.len())
        })
        .collect();
    if spans.is_empty() {
        return vec![text.to_string()];
    }
    windows(spans.len(), words, overlap, max)
        .into_iter()
        .map(|r| text[spans[r.start].0..spans[r.end - 1].1].to_string())
        .collect()
}

/// Words per passage for a reranker without a tokenizer here: about 3 words for
/// every 4 tokens (English with a WordPiece or SentencePiece vocabulary).
pub fn words_for(chunking: &Chunking, max_length: Option<usize>) -> usize {
    let tokens = chunking.tokens.or(max_length).unwrap_or(256);
    (tokens * 3 / 4).max(1)
}

/// Gives any reranker `chunk` mode: each document is split into passages by words,
/// every passage is scored as a document, scores are folded back (or, with
/// `hosted_chunks = "provider"`, documents go whole and the provider truncates).
/// The local model does its own token-based chunking and is not wrapped.
pub struct Passages {
    pub inner: Arc<dyn Reranker>,
}

impl Reranker for Passages {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn identity(&self) -> super::cache::Identity {
        self.inner.identity()
    }

    fn score_kind(&self) -> ScoreKind {
        self.inner.score_kind()
    }

    fn rerank(&self, mut request: RerankRequest) -> RerankFuture {
        let Some(chunking) = request.chunking.take() else {
            return self.inner.rerank(request);
        };
        if chunking.hosted == HostedChunks::Provider {
            return self.inner.rerank(request);
        }
        let words = words_for(&chunking, request.max_length);
        let overlap = chunking.overlap * 3 / 4;
        let mut counts = Vec::with_capacity(request.documents.len());
        let mut passages = Vec::new();
        for d in &request.documents {
            let p = word_passages(d, words, overlap, chunking.max_chunks);
            counts.push(p.len());
            passages.extend(p);
        }
        request.documents = passages;
        let scoring = self.inner.rerank(request);
        Box::pin(async move {
            let scores = scoring.await?;
            Ok(fold_all(&scores, &counts, chunking.aggregate))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_document_with_overlap_and_limit() {
        assert_eq!(windows(10, 4, 0, 10), vec![0..4, 4..8, 8..10]);
        assert_eq!(windows(10, 4, 1, 10), vec![0..4, 3..7, 6..10]);
        // a document that fits is one passage; an empty one still one
        assert_eq!(windows(3, 4, 1, 10), vec![0..3]);
        assert_eq!(windows(0, 4, 0, 10), vec![0..0]);
        // the first passages only, up to the limit
        assert_eq!(windows(100, 10, 0, 3), vec![0..10, 10..20, 20..30]);
        // an overlap as large as the window still advances
        assert_eq!(windows(3, 2, 5, 10), vec![0..2, 1..3]);
        // every window within the document and at most `size` long
        for (len, size, overlap, max) in [(217, 60, 10, 8), (1, 1, 0, 1), (500, 128, 32, 4)] {
            let w = windows(len, size, overlap, max);
            assert!(w.len() <= max);
            assert!(w.iter().all(|r| r.end <= len && r.len() <= size));
            assert_eq!(w[0].start, 0);
        }
    }

    #[test]
    fn passages_shrink_instead_of_the_query() {
        assert_eq!(passage_tokens(125, 10, None), 115);
        assert_eq!(passage_tokens(125, 10, Some(64)), 64);
        assert_eq!(passage_tokens(125, 100, Some(64)), 25);
        assert_eq!(passage_tokens(125, 200, None), 1);
    }

    #[test]
    fn aggregates_fold_passage_scores() {
        let s = [1.0, 3.0, 2.0];
        assert_eq!(Aggregate::Max.fold(&s), 3.0);
        assert_eq!(Aggregate::Mean.fold(&s), 2.0);
        assert_eq!(Aggregate::First.fold(&s), 1.0);
        assert_eq!(Aggregate::Blend(0.5).fold(&s), 2.0);
        assert_eq!(Aggregate::Blend(1.0).fold(&s), 1.0);
        // 1 − 0, 3 − 1.5, 2 − 3
        assert_eq!(Aggregate::Decay(1.5).fold(&s), 1.5);
        // one passage: every aggregate is that passage's score
        for a in [
            Aggregate::Max,
            Aggregate::Mean,
            Aggregate::First,
            Aggregate::Blend(0.3),
            Aggregate::Decay(2.0),
        ] {
            assert_eq!(a.fold(&[0.25]), 0.25, "{a}");
        }
        assert_eq!(
            fold_all(&[1.0, 5.0, 2.0, 0.0], &[2, 1, 1], Aggregate::Max),
            vec![5.0, 2.0, 0.0]
        );
    }

    #[test]
    fn aggregates_parse_and_print() {
        for s in ["max", "mean", "first", "blend:0.6", "decay:0.5"] {
            let a: Aggregate = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
        assert!("blend".parse::<Aggregate>().is_err());
        assert!("blend:2".parse::<Aggregate>().is_err());
        assert!("decay:-1".parse::<Aggregate>().is_err());
        assert!("median"
            .parse::<Aggregate>()
            .unwrap_err()
            .contains("expected"));
    }

    #[test]
    fn word_passages_keep_the_text() {
        let t = "one two  three\nfour five";
        assert_eq!(
            word_passages(t, 2, 0, 10),
            vec!["one two", "three\nfour", "five"]
        );
        assert_eq!(
            word_passages(t, 3, 1, 2),
            vec!["one two  three", "three\nfour five"]
        );
        assert_eq!(word_passages("", 3, 0, 2), vec![""]);
    }

    struct Len;
    impl Reranker for Len {
        fn model(&self) -> &str {
            "len"
        }
        fn score_kind(&self) -> ScoreKind {
            ScoreKind::Logit
        }
        fn rerank(&self, r: RerankRequest) -> RerankFuture {
            assert!(r.chunking.is_none(), "passages go as plain documents");
            Box::pin(async move { Ok(r.documents.iter().map(|d| d.len() as f32).collect()) })
        }
    }

    #[tokio::test]
    async fn passages_are_scored_and_folded_back() {
        let p = Passages {
            inner: Arc::new(Len),
        };
        let chunking = Chunking {
            tokens: Some(4), // 3 words
            overlap: 0,
            max_chunks: 8,
            aggregate: Aggregate::Max,
            hosted: HostedChunks::Passages,
        };
        let req = |c: Option<Chunking>| RerankRequest {
            chunking: c,
            ..RerankRequest::new("q", vec!["a b c dddd".into(), "xy".into()])
        };
        // passages "a b c", "dddd" → best 5; "xy" → 2
        let got = p.rerank(req(Some(chunking.clone()))).await.unwrap();
        assert_eq!(got, vec![5.0, 2.0]);
        let provider = Chunking {
            hosted: HostedChunks::Provider,
            ..chunking
        };
        assert_eq!(
            p.rerank(req(Some(provider))).await.unwrap(),
            vec![10.0, 2.0]
        );
        assert_eq!(p.rerank(req(None)).await.unwrap(), vec![10.0, 2.0]);
    }
}
