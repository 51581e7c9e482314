//! Ranking quality metrics over one ranked list and one query's judgements.
//!
//! nDCG variant: linear gain (gain = grade), discount `log2(rank + 1)` with ranks from
//! 1, ideal DCG from every judged document of the query (judged by the qrels, whether
//! retrieved or not) sorted by grade, both cut at `k`. A document is relevant when
//! its grade is above 0; unjudged documents count as grade 0.

use std::collections::HashMap;

/// One query's judgements: document id to grade.
pub type Judgements = HashMap<String, u32>;

/// The four metrics of one ranked list.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Scores {
    pub ndcg: f64,
    pub mrr: f64,
    pub recall: f64,
    pub map: f64,
}

fn grade(j: &Judgements, id: &str) -> u32 {
    j.get(id).copied().unwrap_or(0)
}

fn relevant(j: &Judgements) -> usize {
    j.values().filter(|&&g| g > 0).count()
}

/// nDCG@k; 0 when the query has no relevant document.
pub fn ndcg(ranked: &[String], j: &Judgements, k: usize) -> f64 {
    let dcg = |grades: &mut dyn Iterator<Item = u32>| -> f64 {
        grades
            .take(k)
            .enumerate()
            .map(|(i, g)| f64::from(g) / ((i + 2) as f64).log2())
            .sum()
    };
    let mut ideal: Vec<u32> = j.values().copied().collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg = dcg(&mut ideal.into_iter());
    if idcg <= 0.0 {
        return 0.0;
    }
    dcg(&mut ranked.iter().map(|d| grade(j, d))) / idcg
}

/// Reciprocal rank of the first relevant document within the top `k` (0 if none).
pub fn mrr(ranked: &[String], j: &Judgements, k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|d| grade(j, d) > 0)
        .map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// Share of the query's relevant documents found in the top `k`.
pub fn recall(ranked: &[String], j: &Judgements, k: usize) -> f64 {
    let total = relevant(j);
    if total == 0 {
        return 0.0;
    }
    let found = ranked.iter().take(k).filter(|d| grade(j, d) > 0).count();
    found as f64 / total as f64
}

/// Average precision over the whole list, divided by every relevant document of the
/// query (retrieved or not), as trec_eval's `map`.
pub fn average_precision(ranked: &[String], j: &Judgements) -> f64 {
    let total = relevant(j);
    if total == 0 {
        return 0.0;
    }
    let mut hits = 0usize;
    let mut sum = 0.0;
    for (i, d) in ranked.iter().enumerate() {
        if grade(j, d) > 0 {
            hits += 1;
            sum += hits as f64 / (i + 1) as f64;
        }
    }
    sum / total as f64
}

pub fn score(ranked: &[String], j: &Judgements, k: usize) -> Scores {
    Scores {
        ndcg: ndcg(ranked, j, k),
        mrr: mrr(ranked, j, k),
        recall: recall(ranked, j, k),
        map: average_precision(ranked, j),
    }
}

/// Mean of each metric over queries.
pub fn mean(all: &[Scores]) -> Scores {
    if all.is_empty() {
        return Scores::default();
    }
    let n = all.len() as f64;
    let sum = |f: fn(&Scores) -> f64| all.iter().map(f).sum::<f64>() / n;
    Scores {
        ndcg: sum(|s| s.ndcg),
        mrr: sum(|s| s.mrr),
        recall: sum(|s| s.recall),
        map: sum(|s| s.map),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn judged(v: &[(&str, u32)]) -> Judgements {
        v.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    /// The textbook formula, written out independently of `ndcg`.
    fn reference_ndcg(ranked: &[&str], qrels: &[(&str, u32)], k: usize) -> f64 {
        let g = |d: &str| qrels.iter().find(|(x, _)| *x == d).map_or(0, |(_, g)| *g);
        let mut dcg = 0.0;
        for (i, d) in ranked.iter().take(k).enumerate() {
            dcg += g(d) as f64 / (i as f64 + 2.0).ln() * std::f64::consts::LN_2;
        }
        let mut ideal: Vec<u32> = qrels.iter().map(|(_, g)| *g).collect();
        ideal.sort();
        ideal.reverse();
        let mut idcg = 0.0;
        for (i, g) in ideal.iter().take(k).enumerate() {
            idcg += *g as f64 / (i as f64 + 2.0).ln() * std::f64::consts::LN_2;
        }
        dcg / idcg
    }

    #[test]
    fn ndcg_by_hand() {
        // grades in ranked order: 3, 0, 2 ; ideal 3, 2, 1
        let j = judged(&[("a", 3), ("c", 2), ("d", 1)]);
        let r = ids(&["a", "b", "c"]);
        let dcg = 3.0 + 0.0 + 2.0 / 2.0; // log2(2)=1, log2(4)=2
        let idcg = 3.0 + 2.0 / 3f64.log2() + 1.0 / 2.0;
        close(ndcg(&r, &j, 3), dcg / idcg);
        // the ideal counts judged documents never retrieved
        close(ndcg(&ids(&["a", "c", "d"]), &j, 3), 1.0);
        close(ndcg(&ids(&["x", "y"]), &j, 10), 0.0);
        close(ndcg(&r, &judged(&[]), 10), 0.0);
    }

    #[test]
    fn ndcg_matches_reference_formula() {
        let qrels = [("1", 4), ("2", 1), ("3", 3), ("7", 2), ("9", 1), ("11", 0)];
        let j = judged(&qrels);
        let lists: [&[&str]; 4] = [
            &["3", "5", "1", "9", "2", "8"],
            &["1", "3", "7", "2", "9"],
            &["8", "6", "5", "11", "2"],
            &[
                "9", "2", "7", "3", "1", "4", "6", "10", "12", "13", "14", "15",
            ],
        ];
        for l in lists {
            for k in [1, 3, 5, 10] {
                close(ndcg(&ids(l), &j, k), reference_ndcg(l, &qrels, k));
            }
        }
    }

    #[test]
    fn mrr_recall_ap_by_hand() {
        let j = judged(&[("a", 1), ("c", 2), ("e", 1), ("z", 0)]);
        let r = ids(&["b", "c", "d", "a", "z"]);
        close(mrr(&r, &j, 10), 0.5);
        close(mrr(&r, &j, 1), 0.0);
        close(recall(&r, &j, 2), 1.0 / 3.0);
        close(recall(&r, &j, 10), 2.0 / 3.0);
        // relevant at ranks 2 and 4: (1/2 + 2/4) / 3 relevant
        close(average_precision(&r, &j), (0.5 + 0.5) / 3.0);
        // grade 0 is not relevant
        close(mrr(&ids(&["z"]), &j, 10), 0.0);
    }

    #[test]
    fn mean_averages_each_metric() {
        let a = Scores {
            ndcg: 1.0,
            mrr: 0.5,
            recall: 0.0,
            map: 0.2,
        };
        let b = Scores {
            ndcg: 0.0,
            mrr: 1.0,
            recall: 1.0,
            map: 0.4,
        };
        let m = mean(&[a, b]);
        close(m.ndcg, 0.5);
        close(m.mrr, 0.75);
        close(m.recall, 0.5);
        close(m.map, 0.3);
        assert_eq!(mean(&[]), Scores::default());
    }
}
