//! `long_documents = "chunk"` in the local model: token-boundary passages beside the
//! whole query, bounded pair counts, scores folded as configured, and the metrics.
//! Needs `scripts/setup` (ONNX Runtime) and the shared model folder.

use std::path::PathBuf;
use std::sync::Arc;

use secondpass::config::OnnxConfig;
use secondpass::metrics::Metrics;
use secondpass::rerank::chunk::{Aggregate, Chunking, HostedChunks};
use secondpass::rerank::onnx::encode::{Chunked, PairEncoder};
use secondpass::rerank::onnx::OnnxReranker;
use secondpass::rerank::{RerankRequest, Reranker};

fn model_dir() -> PathBuf {
    std::env::var_os("SECONDPASS_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")))
        .join("models/cranfield-minilm-l6-ce")
}

fn encoder() -> PairEncoder {
    PairEncoder::from_file(&model_dir().join("tokenizer.json"), None).unwrap()
}

fn chunking(tokens: Option<usize>, overlap: usize, max: usize, a: Aggregate) -> Chunking {
    Chunking {
        tokens,
        overlap,
        max_chunks: max,
        aggregate: a,
        hosted: HostedChunks::Passages,
    }
}

const QUERY: &str = "what similarity laws must be obeyed when constructing aeroelastic models";

fn long_doc() -> String {
    (0..120)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Document token ids of a pair `[CLS] q [SEP] d [SEP]` (type id 1, without the last [SEP]).
fn doc_part(p: &secondpass::rerank::onnx::encode::Pair) -> Vec<i64> {
    let start = p.type_ids.iter().position(|&t| t == 1).unwrap();
    p.ids[start..p.ids.len() - 1].to_vec()
}

#[test]
fn passages_are_token_windows_beside_the_whole_query() {
    let e = encoder();
    let doc = long_doc();
    let whole = e
        .encode(QUERY, std::slice::from_ref(&doc), 100_000, 256)
        .unwrap();
    let doc_ids = doc_part(&whole[0]);
    let query_len = whole[0].type_ids.iter().filter(|&&t| t == 0).count();
    let c = e
        .encode_chunked(
            QUERY,
            &[doc.clone(), "short".into()],
            128,
            256,
            &chunking(Some(40), 10, 64, Aggregate::Max),
        )
        .unwrap();
    assert_eq!(c.counts.len(), 2);
    assert_eq!(c.counts[1], 1, "a short document is one passage");
    let n = c.counts[0];
    assert_eq!(c.pairs.len(), n + 1);
    let mut covered = Vec::new();
    for (k, p) in c.pairs[..n].iter().enumerate() {
        assert!(p.len() <= 128);
        // the query is never cut: its part is the same in every pair
        assert_eq!(p.type_ids.iter().filter(|&&t| t == 0).count(), query_len);
        assert_eq!(p.ids[..query_len], whole[0].ids[..query_len]);
        let part = doc_part(p);
        assert!(part.len() <= 40);
        // windows of 40 tokens every 30: the document's own tokens, in order
        let start = k * 30;
        assert_eq!(part[..], doc_ids[start..start + part.len()]);
        covered.extend_from_slice(&part[part.len().min(if k == 0 { 0 } else { 10 })..]);
    }
    assert_eq!(covered, doc_ids, "the passages cover the whole document");
}

#[test]
fn passages_are_limited_and_fit_beside_the_query() {
    let e = encoder();
    let docs = vec![long_doc(); 3];
    let c = e
        .encode_chunked(
            QUERY,
            &docs,
            128,
            256,
            &chunking(None, 0, 2, Aggregate::Max),
        )
        .unwrap();
    // at most max_chunks per document: pairs bounded by documents × max_chunks
    assert_eq!(c.counts, vec![2, 2, 2]);
    assert_eq!(c.pairs.len(), 6);
    // "what fits beside the query": full pairs of max_length
    assert!(c.pairs.iter().all(|p| p.len() == 128));
    // the first passage is what truncation sees
    let t = e.encode(QUERY, &docs[..1], 128, 256).unwrap();
    assert_eq!(c.pairs[0], t[0]);
}

fn config(metrics: &Arc<Metrics>) -> OnnxReranker {
    let cfg = OnnxConfig {
        model_dir: model_dir(),
        model_file: None,
        max_length: 128,
        batch_size: Some(32),
        intra_threads: 1,
        workers: 1,
        queue_capacity: 16,
        runtime_path: None,
        max_batch_tokens: Some(8192),
        device: "cpu".into(),
        max_query_tokens: 256,
        io_binding: None,
        tokenizer_threads: None,
        ..OnnxConfig::new("")
    };
    OnnxReranker::load_with(&cfg, "t", Some(metrics.clone())).expect("shared model")
}

/// A document whose passages differ: off-topic words first, then the query's subject
/// twice, off-topic between. Every word is one token (no `##` pieces), so a passage's
/// tokens decode to text that encodes back to the same tokens.
fn mixed_doc() -> String {
    let off = "the cat sat on the mat and ate some food while the dog slept in the sun near the old house by the river";
    let on = "similarity laws must be obeyed when building elastic models of a wing in a wind tunnel and the model must match the mass and weight of the full scale wing";
    [off, off, on, off, off, on, off].join(" ")
}

/// What the float tolerance below covers: the same pair scored in batches of another
/// shape (rows, padded width) may go through ONNX Runtime's CPU kernels in another
/// order of summation, which can move a logit in its last digits (under 1e-6 seen
/// here, where the scores came out identical); 1e-4 leaves room for other CPUs and is
/// far below the gaps between the aggregates (asserted: more than 100x).
const SAME_PAIR: f32 = 1e-4;

#[tokio::test]
async fn chunked_scores_fold_passage_scores_and_show_in_metrics() {
    let metrics = Arc::new(Metrics::new(&[]));
    let r = config(&metrics);
    let e = encoder();
    let doc = mixed_doc();
    let spec = chunking(Some(48), 8, 8, Aggregate::Max);
    let c = e
        .encode_chunked(QUERY, std::slice::from_ref(&doc), 128, 256, &spec)
        .unwrap();
    let n = c.counts[0];
    assert!(n >= 4, "{n} passages");
    // The passages as text, each checked to encode to the very pair that was scored.
    let tokenizer = tokenizers::Tokenizer::from_file(model_dir().join("tokenizer.json")).unwrap();
    let passages: Vec<String> = c.pairs[..n]
        .iter()
        .map(|p| {
            let ids: Vec<u32> = doc_part(p).iter().map(|&i| i as u32).collect();
            let text = tokenizer.decode(&ids, true).unwrap();
            let alone = e
                .encode(QUERY, std::slice::from_ref(&text), 128, 256)
                .unwrap();
            assert_eq!(alone[0], *p, "`{text}` encodes to the passage's own pair");
            text
        })
        .collect();
    let req = |chunking: Option<Chunking>, docs: Vec<String>| RerankRequest {
        chunking,
        ..RerankRequest::new(QUERY, docs)
    };
    // each passage scored as a document of its own, without chunking
    let each = r.rerank(req(None, passages.clone())).await.unwrap();
    let fold = |a: Aggregate| Chunking {
        aggregate: a,
        ..spec.clone()
    };
    let max = r
        .rerank(req(
            Some(fold(Aggregate::Max)),
            vec![doc.clone(), "wing".into()],
        ))
        .await
        .unwrap();
    let first = r
        .rerank(req(Some(fold(Aggregate::First)), vec![doc.clone()]))
        .await
        .unwrap();
    let mean = r
        .rerank(req(Some(fold(Aggregate::Mean)), vec![doc.clone()]))
        .await
        .unwrap();
    let want_max = each.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let want_mean = each.iter().sum::<f32>() / n as f32;
    let want_first = each[0];
    println!("passages {each:?}: max {max:?} mean {mean:?} first {first:?}");
    assert_eq!(max.len(), 2);
    for (what, got, want) in [
        ("max", max[0], want_max),
        ("mean", mean[0], want_mean),
        ("first", first[0], want_first),
    ] {
        assert!(
            (got - want).abs() <= SAME_PAIR,
            "{what}: {got} folded, {want} from the passages one by one"
        );
    }
    // Guard: the three aggregates differ by far more than the tolerance, so a worker
    // that folded with the wrong one (or ignored the request's) would fail above.
    for (a, b) in [
        (want_max, want_mean),
        (want_max, want_first),
        (want_mean, want_first),
    ] {
        assert!((a - b).abs() > 100.0 * SAME_PAIR, "{each:?}");
    }
    // the first passage alone, "what fits" (no chunk_tokens) = truncation
    let fit_first = r
        .rerank(req(
            Some(chunking(None, 0, 4, Aggregate::First)),
            vec![doc.clone()],
        ))
        .await
        .unwrap();
    let truncated = r.rerank(req(None, vec![doc.clone()])).await.unwrap();
    assert!((fit_first[0] - truncated[0]).abs() <= SAME_PAIR);
    let fit_n = e
        .encode_chunked(
            QUERY,
            std::slice::from_ref(&doc),
            128,
            256,
            &chunking(None, 0, 4, Aggregate::First),
        )
        .unwrap()
        .counts[0];
    let m = metrics.render();
    // pairs: n (one by one) + (n + 1) + n + n + fit_n + 1 (truncated: one pair)
    let pairs = 4 * n + fit_n + 2;
    assert!(
        m.contains(&format!(
            "secondpass_pairs_scored_total{{reranker=\"t\"}} {pairs}"
        )),
        "{m}"
    );
    // passages per document: observed for 2 + 1 + 1 + 1 chunked documents
    assert!(
        m.contains("secondpass_passages_per_document_count{reranker=\"t\"} 5"),
        "{m}"
    );
}

/// Many MB of distinct words (one or two tokens each).
fn huge_text(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 16);
    let mut i = 0;
    while s.len() < bytes {
        s.push_str(&format!("word{i} "));
        i += 1;
    }
    s
}

#[test]
fn a_huge_chunked_query_is_cut_to_max_query_tokens() {
    let e = encoder();
    let query = huge_text(4 << 20);
    let c = e
        .encode_chunked(
            &query,
            &[long_doc()],
            512,
            16,
            &chunking(Some(64), 8, 4, Aggregate::Max),
        )
        .unwrap();
    for p in &c.pairs {
        // [CLS] q [SEP]: the query part is max_query_tokens + 2 tokens
        let query_part = p.type_ids.iter().filter(|&&t| t == 0).count();
        assert_eq!(
            query_part,
            16 + 2,
            "max_query_tokens holds in chunked pairs"
        );
    }
    let short = e
        .encode_query(&query, 16)
        .unwrap()
        .get_ids()
        .iter()
        .map(|&i| i64::from(i))
        .collect::<Vec<_>>();
    assert_eq!(
        c.pairs[0].ids[1..17],
        short[..],
        "the query's first 16 tokens"
    );
}

#[test]
fn a_multi_mb_document_is_cut_by_bytes_before_tokenizing() {
    let e = encoder();
    let spec = chunking(Some(40), 10, 4, Aggregate::Max);
    let doc = huge_text(8 << 20);
    // What the tokenizer gets: enough for 4 windows of 40 tokens every 30 (150 tokens),
    // at MAX_BYTES_PER_TOKEN bytes each and one token of margin; not 8 MB.
    let source = Chunked::source(&doc, 40, &spec);
    assert_eq!(
        secondpass::rerank::chunk::covered_tokens(40, 10, 4),
        40 + 3 * 30
    );
    let bound = (150 + 1) * secondpass::rerank::onnx::encode::MAX_BYTES_PER_TOKEN;
    assert!(source.len() <= bound, "{} bytes tokenized", source.len());
    assert!(doc.starts_with(source));
    let tokens = e
        .encode(QUERY, &[source.to_string()], 100_000, 256)
        .unwrap();
    assert!(
        doc_part(&tokens[0]).len() >= 150,
        "the cut keeps every token the windows need"
    );
    // Same passages as from the document's opening alone (what the windows cover).
    let opening: String = doc.chars().take(4096).collect();
    let from_huge = e
        .encode_chunked(QUERY, std::slice::from_ref(&doc), 128, 256, &spec)
        .unwrap();
    let from_opening = e
        .encode_chunked(QUERY, &[opening], 128, 256, &spec)
        .unwrap();
    assert_eq!(from_huge, from_opening);
    assert_eq!(from_huge.counts, vec![4]);
    // A normal-size document is not cut at all.
    let normal = long_doc();
    assert_eq!(Chunked::source(&normal, 40, &spec), normal);
}
