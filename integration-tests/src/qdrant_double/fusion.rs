//! Combining prefetch results: plain union, reciprocal rank fusion, distribution-based score
//! fusion, random sample.

use std::collections::HashMap;

use super::search::Scored;
use super::types::PointId;

/// Union of prefetch results, best score per point, best first.
pub fn merge(lists: Vec<Vec<Scored>>) -> Vec<Scored> {
    let mut out: Vec<Scored> = Vec::new();
    for h in lists.into_iter().flatten() {
        match out.iter_mut().find(|x| x.id == h.id) {
            Some(x) if h.score > x.score => *x = h,
            Some(_) => {}
            None => out.push(h),
        }
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// Reciprocal rank fusion: `sum(weight / (rank + k))`, rank counted from 0, k = 2 by default.
pub fn rrf(lists: &[Vec<Scored>], k: usize, weights: Option<&[f32]>) -> Vec<Scored> {
    let mut order: Vec<Scored> = Vec::new();
    let mut scores: HashMap<PointId, f32> = HashMap::new();
    for (i, list) in lists.iter().enumerate() {
        let w = weights.and_then(|w| w.get(i)).copied().unwrap_or(1.0);
        for (rank, h) in list.iter().enumerate() {
            let s = w / (rank as f32 + k as f32);
            match scores.get_mut(&h.id) {
                Some(x) => *x += s,
                None => {
                    scores.insert(h.id, s);
                    order.push(h.clone());
                }
            }
        }
    }
    finish_fusion(order, &scores)
}

/// Distribution-based score fusion: each list normalised over mean ± 3 σ, then summed.
pub fn dbsf(lists: &[Vec<Scored>]) -> Vec<Scored> {
    let mut order: Vec<Scored> = Vec::new();
    let mut scores: HashMap<PointId, f32> = HashMap::new();
    for list in lists {
        if list.is_empty() {
            continue;
        }
        let n = list.len() as f32;
        let mean = list.iter().map(|h| h.score).sum::<f32>() / n;
        let var = list.iter().map(|h| (h.score - mean).powi(2)).sum::<f32>() / n;
        let (lo, hi) = (mean - 3.0 * var.sqrt(), mean + 3.0 * var.sqrt());
        for h in list {
            let s = if hi > lo {
                ((h.score - lo) / (hi - lo)).clamp(0.0, 1.0)
            } else {
                0.5
            };
            match scores.get_mut(&h.id) {
                Some(x) => *x += s,
                None => {
                    scores.insert(h.id, s);
                    order.push(h.clone());
                }
            }
        }
    }
    finish_fusion(order, &scores)
}

fn finish_fusion(mut order: Vec<Scored>, scores: &HashMap<PointId, f32>) -> Vec<Scored> {
    for h in &mut order {
        h.score = scores[&h.id];
    }
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    order
}

/// `{"sample": "random"}`: a shuffled order (xorshift seeded from the clock).
pub fn sample(mut hits: Vec<Scored>) -> Vec<Scored> {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9e37_79b9)
        | 1;
    for i in (1..hits.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        hits.swap(i, (x % (i as u64 + 1)) as usize);
    }
    hits
}
