//! Explain over gRPC (`x-rerank-explain: true` metadata): each returned point's Qdrant
//! rank and score next to its rerank score, compactly in response metadata
//! `x-rerank-explain`: `id:qdrant_rank:qdrant_score:rerank_score` per point, points
//! separated by `,`, searches of a batch by `;` (`-`: no rerank score).

use std::collections::HashMap;

use qdrant_client::qdrant::{point_id::PointIdOptions, PointId, ScoredPoint};

use super::points::Hits;
use crate::engine::Outcome;

fn key(id: Option<&PointId>) -> String {
    match id.and_then(|i| i.point_id_options.as_ref()) {
        Some(PointIdOptions::Num(n)) => n.to_string(),
        Some(PointIdOptions::Uuid(u)) => u.clone(),
        None => "?".into(),
    }
}

fn flat<'a>(hits: &'a Hits<'_>) -> Vec<&'a ScoredPoint> {
    match hits {
        Hits::Points(p) => p.iter().collect(),
        Hits::Groups(g) => g.iter().flat_map(|g| g.hits.iter()).collect(),
    }
}

/// Qdrant's ids and scores of one search, before reranking.
pub struct Snapshot {
    index: HashMap<String, usize>,
    scores: Vec<f32>,
}

pub fn snapshot(hits: &Hits<'_>) -> Snapshot {
    let points = flat(hits);
    Snapshot {
        index: points
            .iter()
            .enumerate()
            .rev()
            .map(|(n, p)| (key(p.id.as_ref()), n))
            .collect(),
        scores: points.iter().map(|p| p.score).collect(),
    }
}

/// The returned points of one search, explained.
pub fn line(hits: &Hits<'_>, before: &Snapshot, outcome: &Outcome) -> String {
    flat(hits)
        .iter()
        .map(|p| {
            let id = key(p.id.as_ref());
            match before.index.get(&id) {
                Some(&n) => {
                    let rerank = outcome
                        .scores
                        .as_deref()
                        .and_then(|s| s.get(n).copied().flatten())
                        .map_or("-".to_string(), |s| s.to_string());
                    format!("{id}:{}:{}:{rerank}", n + 1, before.scores[n])
                }
                None => format!("{id}:-:-:-"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::RerankStatus;

    fn point(id: u64, score: f32) -> ScoredPoint {
        ScoredPoint {
            id: Some(PointId::from(id)),
            score,
            ..Default::default()
        }
    }

    #[test]
    fn compact_line_per_search() {
        let mut before = vec![point(7, 0.9), point(8, 0.5)];
        let snap = snapshot(&Hits::Points(&mut before));
        let mut after = vec![point(8, 0.75), point(7, 0.25)];
        let o = Outcome {
            scores: Some(vec![Some(0.25), Some(0.75)]),
            ..Outcome::not_applied(RerankStatus::Applied, None)
        };
        assert_eq!(
            line(&Hits::Points(&mut after), &snap, &o),
            "8:2:0.5:0.75,7:1:0.9:0.25"
        );
        let open = Outcome::not_applied(RerankStatus::FailedOpen, None);
        assert_eq!(
            line(&Hits::Points(&mut before), &snap, &open),
            "7:1:0.9:-,8:2:0.5:-"
        );
    }
}
