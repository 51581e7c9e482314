//! `long_documents = "chunk"` in the local model: token-boundary passages beside the
//! whole query, bounded pair counts, scores folded as configured, and the metrics.
//! Needs `scripts/setup` (ONNX Runtime) and the shared model folder.

use std::path::PathBuf;
use std::sync::Arc;

use secondpass::config::OnnxConfig;
use secondpass::metrics::Metrics;
use secondpass::rerank::chunk::{Aggregate, Chunking, HostedChunks};
use secondpass::rerank::onnx::encode::PairEncoder;
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
        .encode_chunked(QUERY, &docs, 128, &chunking(None, 0, 2, Aggregate::Max))
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

#[tokio::test]
async fn chunked_scores_fold_passage_scores_and_show_in_metrics() {
    let metrics = Arc::new(Metrics::new(&[]));
    let r = config(&metrics);
    let e = encoder();
    let doc = long_doc();
    let spec = chunking(Some(48), 8, 8, Aggregate::Max);
    let c = e
        .encode_chunked(QUERY, std::slice::from_ref(&doc), 128, &spec)
        .unwrap();
    let n = c.counts[0];
    assert!(n > 1);
    let req = |chunking: Option<Chunking>, docs: Vec<String>| RerankRequest {
        query: QUERY.into(),
        documents: docs,
        max_length: None,
        deadline: None,
        chunking,
        instruction: None,
    };
    let max = r
        .rerank(req(Some(spec.clone()), vec![doc.clone(), "wing".into()]))
        .await
        .unwrap();
    let first = r
        .rerank(req(
            Some(Chunking {
                aggregate: Aggregate::First,
                ..spec.clone()
            }),
            vec![doc.clone()],
        ))
        .await
        .unwrap();
    let mean = r
        .rerank(req(
            Some(Chunking {
                aggregate: Aggregate::Mean,
                ..spec.clone()
            }),
            vec![doc.clone()],
        ))
        .await
        .unwrap();
    assert_eq!(max.len(), 2);
    assert!(max[0] >= mean[0] && mean[0] >= f32::MIN);
    assert!(max[0] >= first[0]);
    // the first passage alone, "what fits" (no chunk_tokens) = truncation
    let fit_first = r
        .rerank(req(
            Some(chunking(None, 0, 4, Aggregate::First)),
            vec![doc.clone()],
        ))
        .await
        .unwrap();
    let truncated = r.rerank(req(None, vec![doc.clone()])).await.unwrap();
    assert!((fit_first[0] - truncated[0]).abs() < 1e-4);
    let fit_n = e
        .encode_chunked(
            QUERY,
            std::slice::from_ref(&doc),
            128,
            &chunking(None, 0, 4, Aggregate::First),
        )
        .unwrap()
        .counts[0];
    let m = metrics.render();
    // pairs: (n + 1) + n + n + fit_n + 1 (truncated: one pair)
    let pairs = 3 * n + fit_n + 2;
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
