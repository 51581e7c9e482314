//! Group searches (`.../groups`): widen the number of groups, rerank the hits inside
//! each group, order groups by their best reranked hit, cut back to the client's
//! `limit` (groups) and `group_size` (hits per group).

use super::window::Ranked;

/// How one reranked group search is widened and cut back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupWindow {
    /// Groups the client asked for.
    pub limit: usize,
    /// Hits per group the client asked for (also asked of Qdrant).
    pub group_size: usize,
    /// Groups asked of Qdrant.
    pub fetch: usize,
}

impl GroupWindow {
    /// Asks for `pool / group_size` groups (at least the client's `limit`), so that about
    /// `pool` hits are reranked; `limit * group_size` beyond `max_pool` is not reranked.
    pub fn plan(
        limit: usize,
        group_size: usize,
        requested_pool: Option<usize>,
        pool: usize,
        max_pool: usize,
    ) -> Result<GroupWindow, String> {
        let group_size = group_size.max(1);
        let need = limit
            .checked_mul(group_size)
            .ok_or_else(|| "limit * group_size overflows".to_string())?;
        if need > max_pool {
            return Err(format!(
                "limit * group_size ({need}) exceeds max_pool ({max_pool}); not reranked"
            ));
        }
        let pool = requested_pool.unwrap_or(pool).clamp(1, max_pool);
        let fetch = (pool / group_size).clamp(limit, (max_pool / group_size).max(limit));
        Ok(GroupWindow {
            limit,
            group_size,
            fetch,
        })
    }
}

/// One returned group: its index in Qdrant's list and its hits in order.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedGroup {
    pub index: usize,
    pub hits: Vec<Ranked>,
}

/// Orders each group's hits by score (ties and unscored hits keep Qdrant's order),
/// drops scored hits under `threshold` (and groups left empty), orders groups by their
/// best score (groups without a scored hit after, in Qdrant's order), and cuts.
pub fn rank_groups(
    scores: &[Vec<Option<f32>>],
    threshold: Option<f32>,
    w: GroupWindow,
) -> Vec<RankedGroup> {
    rank_groups_tiered(scores, None, threshold, w)
}

/// [`rank_groups`] after a staged rerank: hits and groups whose best hit was scored
/// by a later stage (higher tier) come first.
pub fn rank_groups_tiered(
    scores: &[Vec<Option<f32>>],
    tiers: Option<&[Vec<u32>]>,
    threshold: Option<f32>,
    w: GroupWindow,
) -> Vec<RankedGroup> {
    let mut groups: Vec<(Option<(u32, f32)>, RankedGroup)> = Vec::new();
    for (index, hits) in scores.iter().enumerate() {
        let window = super::Window {
            offset: 0,
            limit: w.group_size,
            fetch: hits.len(),
        };
        let hit_tiers = tiers.and_then(|t| t.get(index)).map(Vec::as_slice);
        let ranked = super::window::rank_tiered(hits, hit_tiers, threshold, window);
        if ranked.is_empty() && !hits.is_empty() {
            continue; // every hit fell under the threshold
        }
        let best = ranked.first().and_then(|r| {
            let tier = hit_tiers.and_then(|t| t.get(r.index)).copied().unwrap_or(0);
            r.score.map(|s| (tier, s))
        });
        groups.push((
            best,
            RankedGroup {
                index,
                hits: ranked,
            },
        ));
    }
    // Stable: equal best scores keep Qdrant's group order; unscored groups go last.
    groups.sort_by(|a, b| match (a.0, b.0) {
        (Some((tx, x)), Some((ty, y))) => ty.cmp(&tx).then(y.total_cmp(&x)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    groups.into_iter().take(w.limit).map(|(_, g)| g).collect()
}

/// Qdrant's own groups cut to the client's `limit` and `group_size`.
pub fn passthrough_groups(sizes: &[usize], w: GroupWindow) -> Vec<RankedGroup> {
    sizes
        .iter()
        .enumerate()
        .take(w.limit)
        .map(|(index, &n)| RankedGroup {
            index,
            hits: (0..n.min(w.group_size))
                .map(|i| Ranked {
                    index: i,
                    score: None,
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(limit: usize, group_size: usize) -> GroupWindow {
        GroupWindow {
            limit,
            group_size,
            fetch: 10,
        }
    }

    #[test]
    fn plan_widens_groups_within_caps() {
        let w = GroupWindow::plan(3, 2, None, 100, 200).unwrap();
        assert_eq!((w.limit, w.group_size, w.fetch), (3, 2, 50));
        // at least the client's limit
        assert_eq!(
            GroupWindow::plan(5, 10, Some(20), 100, 200).unwrap().fetch,
            5
        );
        // never more hits than max_pool
        assert_eq!(
            GroupWindow::plan(1, 3, Some(1000), 100, 200).unwrap().fetch,
            66
        );
        assert!(GroupWindow::plan(50, 10, None, 100, 200)
            .unwrap_err()
            .contains("500"));
    }

    #[test]
    fn groups_ordered_by_best_hit_and_hits_within_group() {
        let scores = vec![
            vec![Some(0.2), Some(0.1)],
            vec![Some(0.3), Some(0.9), None],
            vec![None],
            vec![Some(0.5)],
        ];
        let r = rank_groups(&scores, None, gw(3, 2));
        let order: Vec<usize> = r.iter().map(|g| g.index).collect();
        assert_eq!(order, vec![1, 3, 0]);
        let hits: Vec<usize> = r[0].hits.iter().map(|h| h.index).collect();
        assert_eq!(hits, vec![1, 0]); // cut to group_size 2
    }

    #[test]
    fn threshold_empties_and_drops_groups() {
        let scores = vec![vec![Some(0.1)], vec![Some(0.8), Some(0.2)]];
        let r = rank_groups(&scores, Some(0.5), gw(5, 5));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].index, 1);
        assert_eq!(r[0].hits.len(), 1);
    }

    #[test]
    fn passthrough_cuts_groups_and_hits() {
        let r = passthrough_groups(&[3, 1, 2], gw(2, 2));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].hits.len(), 2);
        assert_eq!(r[1].hits.len(), 1);
    }
}
