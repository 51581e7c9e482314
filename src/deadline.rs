//! `Instant + Duration` that cannot panic. Durations come from configuration, the admin
//! API and servers (`Retry-After`), so any of them may be absurdly large; `Instant + d`
//! panics on overflow, which would kill the request task.

use std::time::{Duration, Instant};

/// Longer than anything waited for in practice (about 100 years).
pub const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `from + d`, with `d` capped at [`FAR`] (and, should even that not fit, a day).
pub fn after(from: Instant, d: Duration) -> Instant {
    from.checked_add(d.min(FAR))
        .or_else(|| from.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(from)
}

/// [`after`] from now.
pub fn in_(d: Duration) -> Instant {
    after(Instant::now(), d)
}

/// [`in_`] as a tokio instant (for `tokio::time::timeout_at`).
pub fn tokio_in(d: Duration) -> tokio::time::Instant {
    tokio::time::Instant::from_std(in_(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_do_not_overflow() {
        let now = Instant::now();
        assert!(after(now, Duration::MAX) > now + Duration::from_secs(3600));
        assert!(after(now, Duration::from_secs(u64::MAX)) >= now);
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert!(tokio_in(Duration::MAX) > tokio::time::Instant::now());
    }

    #[test]
    fn ordinary_durations_are_added_exactly_and_huge_ones_capped_at_far() {
        let now = Instant::now();
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_millis(200),
            FAR - Duration::from_nanos(1),
            FAR,
        ] {
            assert_eq!(after(now, d), now + d, "{d:?}");
        }
        for d in [FAR + Duration::from_nanos(1), Duration::MAX] {
            assert_eq!(after(now, d), now + FAR, "{d:?}");
        }
    }

    /// The latest instant this clock can represent (to within a second), found by
    /// adding every power of two of seconds that still fits.
    fn edge_of_time() -> Instant {
        (0..64).rev().fold(Instant::now(), |t, bit| {
            t.checked_add(Duration::from_secs(1 << bit)).unwrap_or(t)
        })
    }

    #[test]
    fn near_the_end_of_time_a_day_then_nothing() {
        let edge = edge_of_time();
        assert!(edge.checked_add(FAR).is_none());
        // FAR no longer fits but a day does: a day it is
        let day = Duration::from_secs(24 * 3600);
        let late = edge - 2 * day;
        assert_eq!(after(late, FAR), late + day);
        assert_eq!(after(late, Duration::MAX), late + day);
        // not even a day fits: the deadline is `from` itself (already due), no panic
        assert_eq!(after(edge, FAR), edge);
        assert_eq!(after(edge, Duration::from_secs(5)), edge);
    }

    #[test]
    fn in_and_tokio_in_count_from_now() {
        let d = Duration::from_millis(200);
        let before = Instant::now();
        let std_at = in_(d);
        let tokio_at = tokio_in(d);
        let later = Instant::now();
        assert!(std_at >= before + d && std_at <= later + d);
        assert!(tokio_at.into_std() >= before + d && tokio_at.into_std() <= later + d);
    }
}
