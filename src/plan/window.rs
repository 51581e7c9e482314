//! Pool widening and the cut back to the client's offset and limit.

/// How one reranked search is widened and cut back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The client's offset, applied after reranking.
    pub offset: usize,
    /// The client's limit, applied after reranking.
    pub limit: usize,
    /// How many candidates to ask Qdrant for (with offset 0).
    pub fetch: usize,
}

impl Window {
    /// `fetch = max(pool, offset + limit)` where `pool` is the requested pool (or the
    /// configured one) capped by `max_pool`. A page that ends beyond `max_pool` cannot
    /// be reranked within the cap, so it is refused with the reason.
    pub fn plan(
        offset: usize,
        limit: usize,
        requested_pool: Option<usize>,
        pool: usize,
        max_pool: usize,
    ) -> Result<Window, String> {
        let need = offset
            .checked_add(limit)
            .ok_or_else(|| "offset + limit overflows".to_string())?;
        if need > max_pool {
            return Err(format!(
                "offset + limit ({need}) exceeds max_pool ({max_pool}); not reranked"
            ));
        }
        let pool = requested_pool.unwrap_or(pool).clamp(1, max_pool);
        Ok(Window {
            offset,
            limit,
            fetch: pool.max(need),
        })
    }
}

/// One returned candidate: its index in Qdrant's list and its new score
/// (`None`: keeps Qdrant's score, e.g. no text to rerank).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    pub index: usize,
    pub score: Option<f32>,
}

/// Orders candidates by rerank score (descending, stable on ties), unscored ones after
/// them in Qdrant's order, drops scored ones under `threshold`, then cuts to the window.
pub fn rank(scores: &[Option<f32>], threshold: Option<f32>, window: Window) -> Vec<Ranked> {
    rank_tiered(scores, None, threshold, window)
}

/// [`rank`] after a staged rerank: candidates scored by a later stage (higher
/// `tiers[i]`) come before any scored only by an earlier one, whatever the scores.
pub fn rank_tiered(
    scores: &[Option<f32>],
    tiers: Option<&[u32]>,
    threshold: Option<f32>,
    window: Window,
) -> Vec<Ranked> {
    let tier = |i: usize| tiers.and_then(|t| t.get(i)).copied().unwrap_or(0);
    let mut scored: Vec<Ranked> = Vec::with_capacity(scores.len());
    let mut unscored: Vec<Ranked> = Vec::new();
    for (index, s) in scores.iter().enumerate() {
        match s {
            Some(v) if !v.is_nan() => scored.push(Ranked {
                index,
                score: Some(*v),
            }),
            _ => unscored.push(Ranked { index, score: None }),
        }
    }
    // sort_by is stable: equal scores keep Qdrant's order.
    scored.sort_by(|a, b| {
        tier(b.index)
            .cmp(&tier(a.index))
            .then(b.score.unwrap().total_cmp(&a.score.unwrap()))
    });
    if let Some(t) = threshold {
        scored.retain(|r| r.score.unwrap() >= t);
    }
    scored
        .into_iter()
        .chain(unscored)
        .skip(window.offset)
        .take(window.limit)
        .collect()
}

/// How much reranking changed the page: the share of returned candidates that were
/// not on Qdrant's own page for the same window (0: same set, 1: all new).
pub fn displacement(ranked: &[Ranked], window: Window) -> Option<f64> {
    if ranked.is_empty() {
        return None;
    }
    let qdrant_page = window.offset..window.offset.saturating_add(window.limit);
    let new = ranked
        .iter()
        .filter(|r| !qdrant_page.contains(&r.index))
        .count();
    Some(new as f64 / ranked.len() as f64)
}

/// Qdrant's own order cut to the window (used when reranking is skipped or fails open).
pub fn passthrough(len: usize, window: Window) -> Vec<Ranked> {
    (0..len)
        .skip(window.offset)
        .take(window.limit)
        .map(|index| Ranked { index, score: None })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(offset: usize, limit: usize) -> Window {
        Window {
            offset,
            limit,
            fetch: 100,
        }
    }

    #[test]
    fn fetch_is_pool_or_page_end() {
        assert_eq!(Window::plan(0, 10, None, 100, 200).unwrap().fetch, 100);
        assert_eq!(Window::plan(95, 10, None, 100, 200).unwrap().fetch, 105);
        assert_eq!(Window::plan(0, 10, Some(30), 100, 200).unwrap().fetch, 30);
        // requested pool is capped by max_pool
        assert_eq!(
            Window::plan(0, 10, Some(1000), 100, 200).unwrap().fetch,
            200
        );
        // a zero pool still fetches the page
        assert_eq!(Window::plan(0, 5, Some(0), 100, 200).unwrap().fetch, 5);
    }

    #[test]
    fn page_beyond_max_pool_is_refused() {
        let e = Window::plan(195, 10, None, 100, 200).unwrap_err();
        assert!(e.contains("205") && e.contains("200"), "{e}");
        assert!(Window::plan(usize::MAX, 1, None, 1, 2).is_err());
    }

    #[test]
    fn rank_sorts_desc_and_keeps_ties_stable() {
        let s = [Some(0.1), Some(0.9), Some(0.5), Some(0.9)];
        let r = rank(&s, None, w(0, 10));
        let idx: Vec<usize> = r.iter().map(|r| r.index).collect();
        assert_eq!(idx, vec![1, 3, 2, 0]);
        assert_eq!(r[0].score, Some(0.9));
    }

    #[test]
    fn unscored_follow_in_qdrant_order() {
        let s = [None, Some(0.2), None, Some(0.7)];
        let idx: Vec<usize> = rank(&s, None, w(0, 10)).iter().map(|r| r.index).collect();
        assert_eq!(idx, vec![3, 1, 0, 2]);
    }

    #[test]
    fn nan_counts_as_unscored() {
        let s = [Some(f32::NAN), Some(0.2)];
        let r = rank(&s, None, w(0, 10));
        assert_eq!(r[0].index, 1);
        assert_eq!(
            r[1],
            Ranked {
                index: 0,
                score: None
            }
        );
    }

    #[test]
    fn offset_and_limit_apply_after_sorting() {
        let s = [Some(0.1), Some(0.2), Some(0.3), Some(0.4), Some(0.5)];
        let idx: Vec<usize> = rank(&s, None, w(1, 2)).iter().map(|r| r.index).collect();
        assert_eq!(idx, vec![3, 2]);
        assert!(rank(&s, None, w(10, 2)).is_empty());
        assert!(rank(&s, None, w(0, 0)).is_empty());
    }

    #[test]
    fn threshold_drops_scored_below_it_before_paging() {
        let s = [Some(0.1), Some(0.6), None, Some(0.8)];
        let idx: Vec<usize> = rank(&s, Some(0.5), w(0, 10))
            .iter()
            .map(|r| r.index)
            .collect();
        assert_eq!(idx, vec![3, 1, 2]);
        let idx: Vec<usize> = rank(&s, Some(0.5), w(1, 1))
            .iter()
            .map(|r| r.index)
            .collect();
        assert_eq!(idx, vec![1]);
    }

    #[test]
    fn displacement_counts_newcomers() {
        let r = |i: &[usize]| {
            i.iter()
                .map(|&index| Ranked {
                    index,
                    score: Some(0.0),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(displacement(&r(&[1, 0]), w(0, 2)), Some(0.0));
        assert_eq!(displacement(&r(&[5, 0]), w(0, 2)), Some(0.5));
        assert_eq!(displacement(&r(&[0, 1]), w(2, 2)), Some(1.0));
        assert_eq!(displacement(&[], w(0, 2)), None);
    }

    #[test]
    fn passthrough_cuts_qdrant_order() {
        let idx: Vec<usize> = passthrough(10, w(3, 2)).iter().map(|r| r.index).collect();
        assert_eq!(idx, vec![3, 4]);
        assert!(passthrough(2, w(3, 2)).is_empty());
    }
}
