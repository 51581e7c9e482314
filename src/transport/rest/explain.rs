//! `"rerank": {"explain": true}` / `x-rerank-explain: true`: each returned point's
//! rank and score in Qdrant's answer next to its rerank score. Computed only when
//! asked for: a snapshot of Qdrant's ids and scores before the answer is rewritten.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::body::{answer_mut, Endpoint};
use crate::engine::Outcome;

/// Qdrant's candidates of one search, before reranking.
pub struct Snapshot {
    index: HashMap<String, usize>,
    scores: Vec<Value>,
}

/// The hits of search `i` in answer order (groups: every group's hits in turn).
fn hits(result: &mut Value, ep: Endpoint, i: usize) -> Vec<&Value> {
    let Some(list) = answer_mut(result, ep, i) else {
        return Vec::new();
    };
    if ep.is_groups() {
        list.iter()
            .filter_map(|g| g.get("hits")?.as_array())
            .flatten()
            .collect()
    } else {
        list.iter().collect()
    }
}

fn key(p: &Value) -> String {
    p.get("id").map(Value::to_string).unwrap_or_default()
}

pub fn snapshot(result: &mut Value, ep: Endpoint, i: usize) -> Snapshot {
    let hits = hits(result, ep, i);
    Snapshot {
        index: hits
            .iter()
            .enumerate()
            .map(|(n, p)| (key(p), n))
            .rev() // the first occurrence wins
            .collect(),
        scores: hits
            .iter()
            .map(|p| p.get("score").cloned().unwrap_or(Value::Null))
            .collect(),
    }
}

/// One entry per returned point, in the returned order.
pub fn entries(
    result: &mut Value,
    ep: Endpoint,
    i: usize,
    before: &Snapshot,
    outcome: &Outcome,
) -> Value {
    let scores = outcome.scores.as_deref();
    let list = hits(result, ep, i)
        .into_iter()
        .map(|p| {
            let n = before.index.get(&key(p)).copied();
            let rerank = n
                .and_then(|n| scores.and_then(|s| s.get(n).copied().flatten()))
                .map_or(Value::Null, super::body::f32_json);
            json!({
                "id": p.get("id").cloned().unwrap_or(Value::Null),
                "qdrant_rank": n.map(|n| n + 1),
                "qdrant_score": n.and_then(|n| before.scores.get(n).cloned()),
                "rerank_score": rerank,
            })
        })
        .collect();
    Value::Array(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::RerankStatus;

    #[test]
    fn pairs_returned_points_with_their_qdrant_rank() {
        let mut before = json!({"points": [
            {"id": 1, "score": 0.9}, {"id": "u", "score": 0.5}, {"id": 3, "score": 0.1}
        ]});
        let snap = snapshot(&mut before, Endpoint::Query, 0);
        let mut after = json!({"points": [{"id": 3, "score": 0.8}, {"id": 1, "score": 0.2}]});
        let outcome = Outcome {
            scores: Some(vec![Some(0.2), None, Some(0.8)]),
            ..Outcome::not_applied(RerankStatus::Applied, None)
        };
        let e = entries(&mut after, Endpoint::Query, 0, &snap, &outcome);
        assert_eq!(
            e,
            json!([
                {"id": 3, "qdrant_rank": 3, "qdrant_score": 0.1, "rerank_score": 0.8},
                {"id": 1, "qdrant_rank": 1, "qdrant_score": 0.9, "rerank_score": 0.2}
            ])
        );
        // failed open: no rerank scores
        let open = Outcome::not_applied(RerankStatus::FailedOpen, None);
        let e = entries(&mut before, Endpoint::Query, 0, &snap, &open);
        assert_eq!(
            e[1],
            json!({"id": "u", "qdrant_rank": 2, "qdrant_score": 0.5, "rerank_score": null})
        );
    }

    #[test]
    fn groups_are_flattened() {
        let mut r = json!({"groups": [{"id": "a", "hits": [{"id": 5, "score": 1.0}]},
                                      {"id": "b", "hits": [{"id": 6, "score": 0.5}]}]});
        let snap = snapshot(&mut r, Endpoint::QueryGroups, 0);
        let o = Outcome::not_applied(RerankStatus::Skipped, None);
        let e = entries(&mut r, Endpoint::QueryGroups, 0, &snap, &o);
        assert_eq!(e[1]["qdrant_rank"], 2);
    }
}
