//! The score cache inside the fallback chain: rerankers are asked only for the
//! documents without a cached score, answers are merged in the documents' order,
//! and the cache is off with `max_entries = 0` or `use_cache = false`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secondpass::config::Config;
use secondpass::metrics::Metrics;
use secondpass::rerank::chain::Chain;
use secondpass::rerank::{Registry, RerankError, RerankFuture, RerankRequest, Reranker, ScoreKind};

/// Scores each document by its length (plus `offset`), recording what it was asked.
struct Fake {
    model: &'static str,
    offset: f32,
    fail: bool,
    calls: AtomicUsize,
    asked: Mutex<Vec<Vec<String>>>,
}

impl Fake {
    fn new(model: &'static str, offset: f32, fail: bool) -> Arc<Fake> {
        Arc::new(Fake {
            model,
            offset,
            fail,
            calls: AtomicUsize::new(0),
            asked: Mutex::new(Vec::new()),
        })
    }

    fn last_asked(&self) -> Vec<String> {
        self.asked
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

impl Reranker for Fake {
    fn model(&self) -> &str {
        self.model
    }
    fn score_kind(&self) -> ScoreKind {
        ScoreKind::Logit
    }
    fn rerank(&self, r: RerankRequest) -> RerankFuture {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.asked.lock().unwrap().push(r.documents.clone());
        let (fail, offset) = (self.fail, self.offset);
        Box::pin(async move {
            if fail {
                return Err(RerankError::Inference("down".into()));
            }
            Ok(r.documents
                .iter()
                .map(|d| d.len() as f32 + offset)
                .collect())
        })
    }
}

fn chain(toml: &str, rerankers: &[(&str, Arc<Fake>)]) -> (Chain, Arc<Metrics>) {
    let mut reg = Registry::default();
    for (name, r) in rerankers {
        reg.insert(*name, r.clone());
    }
    let metrics = Arc::new(Metrics::new(&[]));
    let cfg = Config::from_toml(toml).unwrap();
    (Chain::new(reg, &cfg, metrics.clone()), metrics)
}

fn req(query: &str, docs: &[&str]) -> RerankRequest {
    RerankRequest::new(query, docs.iter().map(|d| d.to_string()).collect())
}

const CACHE: &str = "[cache]\nmax_entries = 100\nttl_ms = 60000\n";
const BUDGET: Duration = Duration::from_secs(5);

fn lookups(m: &Metrics, result: &str) -> u64 {
    m.cache_lookups.with_label_values(&["memory", result]).get()
}

#[tokio::test]
async fn only_misses_reach_the_reranker_and_answers_merge_in_order() {
    let fake = Fake::new("m", 0.0, false);
    let (c, m) = chain(CACHE, &[("a", fake.clone())]);
    let first = c
        .run_cached(&["a"], req("q", &["x", "yy", "zzz"]), BUDGET, true)
        .await
        .unwrap();
    assert_eq!(first.raw, vec![1.0, 2.0, 3.0]);
    assert_eq!((lookups(&m, "hit"), lookups(&m, "miss")), (0, 3));

    // Two cached, two new: only the new ones are asked, in their order.
    let second = c
        .run_cached(
            &["a"],
            req("q", &["wwww", "yy", "vvvvv", "x"]),
            BUDGET,
            true,
        )
        .await
        .unwrap();
    assert_eq!(second.raw, vec![4.0, 2.0, 5.0, 1.0]);
    assert_eq!(fake.last_asked(), vec!["wwww", "vvvvv"]);
    assert_eq!((lookups(&m, "hit"), lookups(&m, "miss")), (2, 5));
    assert_eq!(second.model, "m");

    // Everything cached: no call at all.
    let calls = fake.calls.load(Ordering::SeqCst);
    let third = c
        .run(&["a"], req("q", &["x", "vvvvv"]), BUDGET)
        .await
        .unwrap();
    assert_eq!(third.raw, vec![1.0, 5.0]);
    assert_eq!(fake.calls.load(Ordering::SeqCst), calls);
    assert_eq!(third.reranker, "a");

    // Another query is another key.
    c.run_cached(&["a"], req("q2", &["x"]), BUDGET, true)
        .await
        .unwrap();
    assert_eq!(fake.last_asked(), vec!["x"]);
    let text = m.render();
    assert!(
        text.contains("secondpass_cache_lookups_total{result=\"hit\",tier=\"memory\"} 4"),
        "{text}"
    );
}

#[tokio::test]
async fn the_cache_is_off_when_not_wanted_or_not_configured() {
    for (toml, use_cache) in [
        (CACHE, false),
        ("", true),
        ("[cache]\nmax_entries = 0\n", true),
    ] {
        let fake = Fake::new("m", 0.0, false);
        let (c, m) = chain(toml, &[("a", fake.clone())]);
        for _ in 0..2 {
            c.run_cached(&["a"], req("q", &["x", "yy"]), BUDGET, use_cache)
                .await
                .unwrap();
            assert_eq!(fake.last_asked(), vec!["x", "yy"], "{toml:?} {use_cache}");
        }
        assert_eq!(lookups(&m, "hit") + lookups(&m, "miss"), 0);
    }
    // A collection without the cache does not fill it for the others either.
    let fake = Fake::new("m", 0.0, false);
    let (c, _) = chain(CACHE, &[("a", fake.clone())]);
    c.run_cached(&["a"], req("q", &["x"]), BUDGET, false)
        .await
        .unwrap();
    c.run_cached(&["a"], req("q", &["x"]), BUDGET, true)
        .await
        .unwrap();
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn rerankers_and_models_do_not_share_scores() {
    let a = Fake::new("model-a", 0.0, false);
    let b = Fake::new("model-b", 100.0, false);
    let (c, _) = chain(CACHE, &[("a", a.clone()), ("b", b.clone())]);
    c.run(&["a"], req("q", &["x"]), BUDGET).await.unwrap();
    let from_b = c.run(&["b"], req("q", &["x"]), BUDGET).await.unwrap();
    assert_eq!(from_b.raw, vec![101.0], "b's own score, not a's cached one");
    assert_eq!(b.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_fallback_answer_is_cached_under_the_reranker_that_gave_it() {
    let down = Fake::new("down", 0.0, true);
    let up = Fake::new("up", 10.0, false);
    let (c, _) = chain(CACHE, &[("down", down.clone()), ("up", up.clone())]);
    let first = c
        .run(&["down", "up"], req("q", &["x", "yy"]), BUDGET)
        .await
        .unwrap();
    assert_eq!(
        (first.reranker.as_str(), first.raw.clone()),
        ("up", vec![11.0, 12.0])
    );
    // The failing reranker is still asked (nothing cached for it); the fallback is not.
    let second = c
        .run(&["down", "up"], req("q", &["x", "yy"]), BUDGET)
        .await
        .unwrap();
    assert_eq!(second.raw, vec![11.0, 12.0]);
    assert_eq!(second.failed.len(), 1);
    assert_eq!(down.calls.load(Ordering::SeqCst), 2);
    assert_eq!(up.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn max_length_overrides_are_separate_entries() {
    let fake = Fake::new("m", 0.0, false);
    let (c, _) = chain(CACHE, &[("a", fake.clone())]);
    c.run(&["a"], req("q", &["x"]), BUDGET).await.unwrap();
    let mut short = req("q", &["x"]);
    short.max_length = Some(64);
    c.run(&["a"], short, BUDGET).await.unwrap();
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_query_holding_nul_cannot_reach_another_searchs_chunked_scores() {
    use secondpass::rerank::chunk::{Aggregate, Chunking, HostedChunks};
    // The key used to be the query, a NUL and the chunking's Debug text: this query,
    // unchunked, wrote the entries a chunked search of "q" then read (and back).
    let chunking = Chunking {
        tokens: Some(64),
        overlap: 16,
        max_chunks: 4,
        aggregate: Aggregate::Max,
        hosted: HostedChunks::Passages,
    };
    let forged = format!("q\u{0}{chunking:?}");
    let fake = Fake::new("m", 0.0, false);
    let (c, m) = chain(CACHE, &[("a", fake.clone())]);
    c.run(&["a"], req(&forged, &["x"]), BUDGET).await.unwrap();
    let mut chunked = req("q", &["x"]);
    chunked.chunking = Some(chunking);
    c.run(&["a"], chunked, BUDGET).await.unwrap();
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        2,
        "the chunked search was scored"
    );
    assert_eq!(lookups(&m, "hit"), 0);
}
