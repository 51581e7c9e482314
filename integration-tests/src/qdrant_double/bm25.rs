//! Server-side BM25 for `{"text": ..., "model": "qdrant/bm25"}` documents, as Qdrant 1.15+ does
//! it locally: word tokenizer (split on non-alphanumerics), lowercase, English stopwords removed,
//! document weights `tf * (k + 1) / (tf + k * (1 - b + b * len / avg_len))` with k = 1.2,
//! b = 0.75, avg_len = 256, query weights 1.0 per distinct token; token ids are
//! `abs(murmur3_32(token) as i32)`. The IDF part comes from the sparse vector's `modifier: idf`.
//!
//! Difference from Qdrant: no Snowball stemming, so only identical word forms match (Qdrant
//! would also match e.g. "cities" with "city"). Scores for texts whose tokens need no stemming to
//! match are identical.

use std::collections::BTreeMap;

use super::types::{Document, SparseVector};

pub const MODEL: &str = "qdrant/bm25";

const K: f64 = 1.2;
const B: f64 = 0.75;
const AVG_LEN: f64 = 256.0;

pub fn is_bm25(doc: &Document) -> bool {
    doc.model.eq_ignore_ascii_case(MODEL)
}

/// Options a caller may pass in `options` (`k`, `b`, `avg_len`).
fn params(doc: &Document) -> (f64, f64, f64) {
    let opt = |k: &str, d: f64| {
        doc.options
            .as_ref()
            .and_then(|o| o.get(k))
            .and_then(|v| v.as_f64())
            .unwrap_or(d)
    };
    (opt("k", K), opt("b", B), opt("avg_len", AVG_LEN))
}

pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .filter(|t| !STOPWORDS.contains(&t.as_str()))
        .collect()
}

/// The sparse vector stored for a document.
pub fn doc_embed(doc: &Document) -> SparseVector {
    let (k, b, avg_len) = params(doc);
    let tokens = tokenize(&doc.text);
    let doc_len = tokens.len() as f64;
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for t in &tokens {
        *counts.entry(t.as_str()).or_default() += 1;
    }
    let mut map: BTreeMap<u32, f32> = BTreeMap::new();
    for (token, count) in counts {
        let n = f64::from(count);
        let tf = n * (k + 1.0) / k.mul_add(1.0 - b + b * doc_len / avg_len, n);
        map.insert(token_id(token), tf as f32);
    }
    let (indices, values) = map.into_iter().unzip();
    SparseVector { indices, values }
}

/// The sparse vector a document query searches with.
pub fn query_embed(doc: &Document) -> SparseVector {
    let mut indices: Vec<u32> = Vec::new();
    for t in tokenize(&doc.text) {
        let id = token_id(&t);
        if !indices.contains(&id) {
            indices.push(id);
        }
    }
    let values = vec![1.0; indices.len()];
    SparseVector { indices, values }
}

pub fn token_id(token: &str) -> u32 {
    (murmur3_32(token.as_bytes(), 0) as i32).unsigned_abs()
}

fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, b) in tail.iter().enumerate() {
            k |= u32::from(*b) << (8 * i);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// IDF as Qdrant's `modifier: idf` computes it: `ln(1 + (n - df + 0.5) / (df + 0.5))`.
pub fn idf(df: usize, n: usize) -> f32 {
    let (df, n) = (df as f32, n as f32);
    ((n - df + 0.5) / (df + 0.5) + 1.0).ln()
}

/// English stopwords (the NLTK list Qdrant ships).
const STOPWORDS: &[&str] = &[
    "i",
    "me",
    "my",
    "myself",
    "we",
    "our",
    "ours",
    "ourselves",
    "you",
    "you're",
    "you've",
    "you'll",
    "you'd",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "he",
    "him",
    "his",
    "himself",
    "she",
    "she's",
    "her",
    "hers",
    "herself",
    "it",
    "it's",
    "its",
    "itself",
    "they",
    "them",
    "their",
    "theirs",
    "themselves",
    "what",
    "which",
    "who",
    "whom",
    "this",
    "that",
    "that'll",
    "these",
    "those",
    "am",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "have",
    "has",
    "had",
    "having",
    "do",
    "does",
    "did",
    "doing",
    "a",
    "an",
    "the",
    "and",
    "but",
    "if",
    "or",
    "because",
    "as",
    "until",
    "while",
    "of",
    "at",
    "by",
    "for",
    "with",
    "about",
    "against",
    "between",
    "into",
    "through",
    "during",
    "before",
    "after",
    "above",
    "below",
    "to",
    "from",
    "up",
    "down",
    "in",
    "out",
    "on",
    "off",
    "over",
    "under",
    "again",
    "further",
    "then",
    "once",
    "here",
    "there",
    "when",
    "where",
    "why",
    "how",
    "all",
    "any",
    "both",
    "each",
    "few",
    "more",
    "most",
    "other",
    "some",
    "such",
    "no",
    "nor",
    "not",
    "only",
    "own",
    "same",
    "so",
    "than",
    "too",
    "very",
    "s",
    "t",
    "can",
    "will",
    "just",
    "don",
    "don't",
    "should",
    "should've",
    "now",
    "d",
    "ll",
    "m",
    "o",
    "re",
    "ve",
    "y",
    "ain",
    "aren",
    "aren't",
    "couldn",
    "couldn't",
    "didn",
    "didn't",
    "doesn",
    "doesn't",
    "hadn",
    "hadn't",
    "hasn",
    "hasn't",
    "haven",
    "haven't",
    "isn",
    "isn't",
    "ma",
    "mightn",
    "mightn't",
    "mustn",
    "mustn't",
    "needn",
    "needn't",
    "shan",
    "shan't",
    "shouldn",
    "shouldn't",
    "wasn",
    "wasn't",
    "weren",
    "weren't",
    "won",
    "won't",
    "wouldn",
    "wouldn't",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur_known_values() {
        // reference values of MurmurHash3_x86_32 with seed 0
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(murmur3_32(b"Hello, world!", 0), 0xc036_3e43);
    }

    #[test]
    fn tokens_drop_stopwords() {
        assert_eq!(
            tokenize("Paris is the capital of France and its most populous city."),
            ["paris", "capital", "france", "populous", "city"]
        );
    }
}
