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
}
