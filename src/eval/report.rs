//! Turns rankings into the report: metrics per configuration, the paired test
//! against Qdrant's order, latency per pool, and the pool recommendation; printed as
//! a table, JSON, or a self-contained HTML page.

use serde::Serialize;

use super::input::Qrels;
use super::metrics::{self, Scores};
use super::run::InputCheck;
use super::stats;

/// nDCG as computed here, spelled out in every report.
pub const NDCG_VARIANT: &str =
    "linear gain (grade), log2(rank+1) discount, ideal from all judged documents of the query";
pub const TEST: &str = "paired randomization test (sign flip, 10000 rounds, two-sided) on nDCG@k; 95% CI: percentile bootstrap of the mean difference (10000 resamples)";

/// A ranking system to judge: a name and one ranked list per evaluated query.
pub struct System {
    pub name: String,
    pub reranker: Option<String>,
    pub pool: Option<usize>,
    pub rankings: Vec<Vec<String>>,
    /// Rerank step seconds, one per reranked query.
    pub latencies: Vec<f64>,
    pub not_reranked: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub delta_ndcg: f64,
    pub p_value: f64,
    pub ci95: (f64, f64),
    pub wins: usize,
    pub ties: usize,
    pub losses: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub mean_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    pub name: String,
    pub reranker: Option<String>,
    pub pool: Option<usize>,
    pub metrics: Scores,
    /// Against Qdrant's order (absent for Qdrant itself).
    pub vs_qdrant: Option<Comparison>,
    pub rerank_latency: Option<Latency>,
    /// Queries answered in Qdrant's order (skipped or failed open).
    pub not_reranked: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub reranker: String,
    pub pool: usize,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PerQuery {
    pub id: String,
    /// nDCG@k of each configuration, in `configs` order.
    pub ndcg: Vec<f64>,
    /// The first k ids each configuration ranked, in `configs` order: what the
    /// metrics judged, to compare with another run or an offline rerank.
    pub top: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub collection: String,
    pub k: usize,
    pub ndcg: &'static str,
    pub test: &'static str,
    pub queries: usize,
    pub input: InputCheck,
    pub configs: Vec<ConfigReport>,
    pub recommendations: Vec<Recommendation>,
    pub per_query: Vec<PerQuery>,
}

/// Judges every system; the first is the baseline (Qdrant's order).
pub fn build(
    collection: &str,
    k: usize,
    query_ids: &[String],
    qrels: &Qrels,
    systems: &[System],
    input: InputCheck,
) -> Report {
    let empty = Default::default();
    let scores: Vec<Vec<Scores>> = systems
        .iter()
        .map(|s| {
            query_ids
                .iter()
                .zip(&s.rankings)
                .map(|(q, r)| metrics::score(r, qrels.get(q).unwrap_or(&empty), k))
                .collect()
        })
        .collect();
    let ndcgs: Vec<Vec<f64>> = scores
        .iter()
        .map(|v| v.iter().map(|s| s.ndcg).collect())
        .collect();
    let base = ndcgs.first().cloned().unwrap_or_default();
    let configs: Vec<ConfigReport> = systems
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let m = metrics::mean(&scores[i]);
            let vs_qdrant = (i > 0).then(|| {
                let (wins, ties, losses) = stats::wins_ties_losses(&base, &ndcgs[i]);
                Comparison {
                    delta_ndcg: m.ndcg - metrics::mean(&scores[0]).ndcg,
                    p_value: stats::randomization_p(&base, &ndcgs[i], stats::ROUNDS),
                    ci95: stats::bootstrap_ci(&base, &ndcgs[i], stats::ROUNDS),
                    wins,
                    ties,
                    losses,
                }
            });
            let rerank_latency = (!s.latencies.is_empty()).then(|| {
                let (p50, p95) = stats::p50_p95(&s.latencies);
                Latency {
                    p50_ms: p50 * 1e3,
                    p95_ms: p95 * 1e3,
                    mean_ms: s.latencies.iter().sum::<f64>() / s.latencies.len() as f64 * 1e3,
                }
            });
            ConfigReport {
                name: s.name.clone(),
                reranker: s.reranker.clone(),
                pool: s.pool,
                metrics: m,
                vs_qdrant,
                rerank_latency,
                not_reranked: s.not_reranked,
            }
        })
        .collect();
    let per_query = query_ids
        .iter()
        .enumerate()
        .map(|(q, id)| PerQuery {
            id: id.clone(),
            ndcg: ndcgs.iter().map(|v| v[q]).collect(),
            top: systems
                .iter()
                .map(|s| {
                    s.rankings
                        .get(q)
                        .map_or(&[][..], |r| &r[..r.len().min(k)])
                        .to_vec()
                })
                .collect(),
        })
        .collect();
    Report {
        collection: collection.to_string(),
        k,
        ndcg: NDCG_VARIANT,
        test: TEST,
        queries: query_ids.len(),
        input,
        recommendations: recommend(&configs),
        configs,
        per_query,
    }
}

/// Per reranker: the smallest pool whose nDCG@k is within 1% of that reranker's best
/// pool and that beats Qdrant's order; none when no pool helps.
pub fn recommend(configs: &[ConfigReport]) -> Vec<Recommendation> {
    let mut names: Vec<&String> = configs.iter().filter_map(|c| c.reranker.as_ref()).collect();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let mut rows: Vec<&ConfigReport> = configs
            .iter()
            .filter(|c| c.reranker.as_ref() == Some(name) && c.pool.is_some())
            .collect();
        rows.sort_by_key(|c| c.pool);
        let best = rows
            .iter()
            .map(|c| c.metrics.ndcg)
            .fold(f64::NEG_INFINITY, f64::max);
        let pick = rows.iter().find(|c| {
            c.metrics.ndcg >= best * 0.99
                && c.vs_qdrant.as_ref().is_some_and(|v| v.delta_ndcg > 0.0)
        });
        if let (Some(c), Some(pool)) = (pick, pick.and_then(|c| c.pool)) {
            let v = c.vs_qdrant.as_ref().expect("checked above");
            let lat = c
                .rerank_latency
                .as_ref()
                .map(|l| format!(", rerank p95 {:.0} ms", l.p95_ms))
                .unwrap_or_default();
            out.push(Recommendation {
                reranker: name.clone(),
                pool,
                why: format!(
                    "smallest pool within 1% of the best nDCG ({best:.4}): {:+.4} over Qdrant (p = {:.4}){lat}",
                    v.delta_ndcg, v.p_value
                ),
            });
        }
    }
    out
}

fn opt_ms(l: &Option<Latency>, f: fn(&Latency) -> f64) -> String {
    l.as_ref().map_or("-".into(), |l| format!("{:.1}", f(l)))
}

/// The table for the terminal.
pub fn text(r: &Report) -> String {
    use std::fmt::Write;
    let k = r.k;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "secondpass eval: collection {}, {} queries, k = {k}",
        r.collection, r.queries
    );
    let i = &r.input;
    let _ = writeln!(
        s,
        "input: {} queries in file, {} without judgements (skipped), {} qrels query ids not in the queries file, {} judged point ids not in the collection",
        i.queries_in_file, i.queries_without_qrels, i.qrels_unknown_queries, i.qrels_unknown_points
    );
    if !i.unknown_examples.is_empty() {
        let _ = writeln!(
            s,
            "unknown ids (first few): {}",
            i.unknown_examples.join(", ")
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<18} {:>8} {:>8} {:>9} {:>7} {:>8} {:>8} {:>18} {:>10} {:>9} {:>9}",
        "configuration",
        format!("nDCG@{k}"),
        format!("MRR@{k}"),
        format!("Recall@{k}"),
        "MAP",
        "ΔnDCG",
        "p",
        "95% CI",
        "W/T/L",
        "p50 ms",
        "p95 ms"
    );
    for c in &r.configs {
        let m = &c.metrics;
        let (delta, p, ci, wtl) = match &c.vs_qdrant {
            Some(v) => (
                format!("{:+.4}", v.delta_ndcg),
                format!("{:.4}", v.p_value),
                format!("[{:+.4}, {:+.4}]", v.ci95.0, v.ci95.1),
                format!("{}/{}/{}", v.wins, v.ties, v.losses),
            ),
            None => ("".into(), "".into(), "".into(), "".into()),
        };
        let _ = writeln!(
            s,
            "{:<18} {:>8.4} {:>8.4} {:>9.4} {:>7.4} {:>8} {:>8} {:>18} {:>10} {:>9} {:>9}",
            c.name,
            m.ndcg,
            m.mrr,
            m.recall,
            m.map,
            delta,
            p,
            ci,
            wtl,
            opt_ms(&c.rerank_latency, |l| l.p50_ms),
            opt_ms(&c.rerank_latency, |l| l.p95_ms),
        );
        if c.not_reranked > 0 {
            let _ = writeln!(
                s,
                "{:<18} ({} queries kept Qdrant's order: skipped or failed open)",
                "", c.not_reranked
            );
        }
    }
    let _ = writeln!(s);
    if r.configs.iter().any(|c| c.pool.is_some()) {
        let _ = writeln!(s, "which pool size? (quality vs rerank latency)");
        for rec in &r.recommendations {
            let _ = writeln!(s, "  {}: pool {} — {}", rec.reranker, rec.pool, rec.why);
        }
        if r.recommendations.is_empty() {
            let _ = writeln!(s, "  no pool beats Qdrant's order on nDCG@{k}");
        }
    }
    let _ = writeln!(s, "nDCG: {}", r.ndcg);
    let _ = writeln!(s, "test: {}", r.test);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn report() -> Report {
        report_at(10)
    }

    fn report_at(k: usize) -> Report {
        let mut qrels = Qrels::new();
        for q in ["1", "2", "3"] {
            qrels.entry(q.into()).or_default().insert("a".into(), 2);
        }
        let qdrant = System {
            name: "qdrant".into(),
            reranker: None,
            pool: None,
            rankings: vec![ids(&["b", "a"]), ids(&["a", "b"]), ids(&["b", "c", "a"])],
            latencies: vec![],
            not_reranked: 0,
        };
        let mk = |pool, r: Vec<Vec<String>>| System {
            name: format!("local@{pool}"),
            reranker: Some("local".into()),
            pool: Some(pool),
            rankings: r,
            latencies: vec![0.010, 0.020, 0.030],
            not_reranked: 0,
        };
        let small = mk(
            2,
            vec![ids(&["a", "b"]), ids(&["a", "b"]), ids(&["b", "c", "a"])],
        );
        let big = mk(
            3,
            vec![ids(&["a", "b"]), ids(&["a", "b"]), ids(&["a", "b", "c"])],
        );
        build(
            "c",
            k,
            &ids(&["1", "2", "3"]),
            &qrels,
            &[qdrant, small, big],
            InputCheck::default(),
        )
    }

    #[test]
    fn builds_metrics_comparison_and_recommendation() {
        let r = report();
        assert_eq!(r.queries, 3);
        let q = &r.configs[0];
        assert!(q.vs_qdrant.is_none() && q.rerank_latency.is_none());
        // qdrant: ranks 2, 1, 3 → nDCG = 1/log2(3), 1, 1/2
        let expect = (1.0 / 3f64.log2() + 1.0 + 0.5) / 3.0;
        assert!((q.metrics.ndcg - expect).abs() < 1e-12);
        let big = &r.configs[2];
        let v = big.vs_qdrant.as_ref().unwrap();
        assert_eq!((v.wins, v.ties, v.losses), (2, 1, 0));
        assert!((big.metrics.ndcg - 1.0).abs() < 1e-12);
        let l = big.rerank_latency.as_ref().unwrap();
        assert!((l.p50_ms - 20.0).abs() < 1e-9);
        // pool 2 is not within 1% of pool 3's perfect score
        assert_eq!(r.recommendations.len(), 1);
        assert_eq!(r.recommendations[0].pool, 3);
        assert_eq!(r.per_query[2].ndcg.len(), 3);
        assert_eq!(
            r.per_query[2].top,
            [
                ids(&["b", "c", "a"]),
                ids(&["b", "c", "a"]),
                ids(&["a", "b", "c"])
            ]
        );
        // cut at k
        let top2 = &report_at(2).per_query[2].top;
        assert_eq!(
            *top2,
            [ids(&["b", "c"]), ids(&["b", "c"]), ids(&["a", "b"])]
        );
        let t = text(&r);
        assert!(
            t.contains("local@3") && t.contains("2/1/0") && t.contains("pool 3"),
            "{t}"
        );
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["configs"][2]["vs_qdrant"]["wins"], 2);
    }
}
