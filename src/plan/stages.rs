//! Staged reranking (cascades), the pure part: which candidates each stage scores
//! and the final order. The first stage scores the whole pool; each next stage
//! re-scores the best `keep` of the candidates as ordered so far. The answer is
//! ordered by the last stage that scored each candidate: a candidate cut by an
//! earlier stage never outranks one a later stage kept.

use super::RerankStatus;

/// The scores of a staged rerank so far, per candidate (in Qdrant's order).
#[derive(Debug, Clone, PartialEq)]
pub struct Staged {
    /// The score of the last stage that scored the candidate (`None`: none did, or
    /// it has no text).
    pub scores: Vec<Option<f32>>,
    /// The number (1-based) of the last stage that scored the candidate; 0: none.
    pub tiers: Vec<u32>,
}

impl Staged {
    pub fn new(candidates: usize) -> Staged {
        Staged {
            scores: vec![None; candidates],
            tiers: vec![0; candidates],
        }
    }

    /// `among` in the current order: later stage first, then higher score, then
    /// Qdrant's order (candidates no stage scored keep Qdrant's order, after).
    pub fn order(&self, among: &[usize]) -> Vec<usize> {
        let mut out = among.to_vec();
        out.sort_by(|&a, &b| {
            self.tiers[b].cmp(&self.tiers[a]).then_with(|| {
                match (self.scores[a], self.scores[b]) {
                    (Some(x), Some(y)) => y.total_cmp(&x),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                }
                .then(a.cmp(&b))
            })
        });
        out
    }

    /// The best `keep` of `among` (all of them when `keep` is `None`), in the
    /// current order: what the next stage scores. A stage that failed open scored
    /// nothing, so the next one takes the best of the order before it.
    pub fn survivors(&self, among: &[usize], keep: Option<usize>) -> Vec<usize> {
        let mut best = self.order(among);
        if let Some(k) = keep {
            best.truncate(k);
        }
        best
    }

    /// Records the scores of stage `stage` (0-based) for `positions`.
    pub fn record(&mut self, stage: usize, positions: &[usize], scores: &[f32]) {
        for (&p, &s) in positions.iter().zip(scores) {
            self.scores[p] = Some(s);
            self.tiers[p] = stage as u32 + 1;
        }
    }
}

/// What one stage did, for the `rerank` object and the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StageReport {
    /// The reranker that answered (or the first of the stage's chain when none did).
    pub reranker: String,
    pub model: Option<String>,
    pub status: RerankStatus,
    pub reason: Option<String>,
    /// Candidates the stage was asked to score.
    pub candidates: usize,
    /// Seconds the stage took.
    pub time: f64,
    /// Rerankers of the stage's chain that failed first, with their errors.
    pub fallback: Vec<(String, String)>,
}

/// The `stages` array of the `rerank` object.
pub fn stages_json(stages: &[StageReport]) -> serde_json::Value {
    stages
        .iter()
        .map(|r| {
            let mut m = serde_json::Map::new();
            m.insert("reranker".into(), r.reranker.clone().into());
            if let Some(model) = &r.model {
                m.insert("model".into(), model.clone().into());
            }
            m.insert("status".into(), r.status.as_str().into());
            if let Some(reason) = &r.reason {
                m.insert("reason".into(), reason.clone().into());
            }
            if !r.fallback.is_empty() {
                let tried: Vec<serde_json::Value> = r
                    .fallback
                    .iter()
                    .map(|(n, e)| serde_json::json!({"reranker": n, "error": e}))
                    .collect();
                m.insert("fallback".into(), tried.into());
            }
            m.insert("candidates".into(), r.candidates.into());
            m.insert("time".into(), r.time.into());
            serde_json::Value::Object(m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{rank_tiered, Window};

    #[test]
    fn later_stages_rank_first_whatever_the_scores() {
        // 5 candidates; stage 1 scores all, keeps 2; stage 2 re-scores those two
        // with far lower scores (another model's scale).
        let mut s = Staged::new(5);
        let all: Vec<usize> = (0..5).collect();
        s.record(0, &all, &[0.1, 0.9, 0.5, 0.8, 0.3]);
        let kept = s.survivors(&all, Some(2));
        assert_eq!(kept, vec![1, 3]);
        s.record(1, &kept, &[-3.0, -1.0]);
        assert_eq!(s.tiers, vec![1, 2, 1, 2, 1]);
        assert_eq!(s.order(&all), vec![3, 1, 2, 4, 0]);
        let w = Window {
            offset: 0,
            limit: 5,
            fetch: 5,
        };
        let ranked: Vec<usize> = rank_tiered(&s.scores, Some(&s.tiers), None, w)
            .iter()
            .map(|r| r.index)
            .collect();
        assert_eq!(ranked, vec![3, 1, 2, 4, 0]);
        // without tiers the scores alone would put a cut candidate first
        let plain: Vec<usize> = rank_tiered(&s.scores, None, None, w)
            .iter()
            .map(|r| r.index)
            .collect();
        assert_eq!(plain[0], 2);
    }

    #[test]
    fn a_failed_stage_leaves_the_order_before_it() {
        let s = Staged::new(4);
        // nothing scored yet (first stage failed open): Qdrant's order
        assert_eq!(s.survivors(&[0, 1, 2, 3], Some(2)), vec![0, 1]);
        let mut s = Staged::new(4);
        s.record(0, &[0, 1, 2, 3], &[0.1, 0.2, 0.9, 0.4]);
        // the second stage failed: the third takes the best of stage one
        assert_eq!(s.survivors(&[0, 1, 2, 3], Some(2)), vec![2, 3]);
        assert_eq!(s.survivors(&[0, 1, 2, 3], None), vec![2, 3, 1, 0]);
    }

    #[test]
    fn candidates_without_text_stay_last_in_qdrant_order() {
        let mut s = Staged::new(4);
        s.record(0, &[1, 3], &[0.2, 0.7]);
        assert_eq!(s.order(&[0, 1, 2, 3]), vec![3, 1, 0, 2]);
        assert_eq!(s.survivors(&[1, 3], Some(5)), vec![3, 1]);
    }
}
