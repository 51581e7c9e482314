//! A circuit breaker per reranker: after `threshold` consecutive failures it opens and
//! the reranker is skipped for `open_for`; then one probe is let through (half-open),
//! whose success closes it and whose failure opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Inner {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            open_for,
            inner: Mutex::new(Inner {
                failures: 0,
                open_until: None,
                probing: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call may go through now (at most one while half-open).
    pub fn allow(&self, now: Instant) -> bool {
        let mut s = self.lock();
        match s.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) if s.probing => false,
            Some(_) => {
                s.probing = true;
                true
            }
        }
    }

    pub fn success(&self) {
        let mut s = self.lock();
        s.failures = 0;
        s.open_until = None;
        s.probing = false;
    }

    /// The call ended in a way that says nothing about the reranker (the caller's own
    /// budget ran out): no count either way, but a probe under way is over, so the next
    /// call may probe.
    pub fn release(&self) {
        self.lock().probing = false;
    }

    pub fn failure(&self, now: Instant) {
        let mut s = self.lock();
        s.failures = s.failures.saturating_add(1);
        if s.probing || s.failures >= self.threshold {
            s.open_until = Some(crate::deadline::after(now, self.open_for));
            s.probing = false;
        }
    }

    pub fn state(&self, now: Instant) -> State {
        let s = self.lock();
        match s.open_until {
            None => State::Closed,
            Some(until) if now < until => State::Open,
            Some(_) => State::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_probes_and_closes() {
        let b = Breaker::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(b.allow(t0));
        b.failure(t0);
        assert_eq!(b.state(t0), State::Closed);
        b.failure(t0);
        assert_eq!(b.state(t0), State::Open);
        assert!(!b.allow(t0 + Duration::from_secs(5)));
        let later = t0 + Duration::from_secs(11);
        assert_eq!(b.state(later), State::HalfOpen);
        assert!(b.allow(later), "one probe");
        assert!(!b.allow(later), "only one probe at a time");
        b.success();
        assert_eq!(b.state(later), State::Closed);
        assert!(b.allow(later));
    }

    #[test]
    fn failed_probe_reopens() {
        let b = Breaker::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        b.failure(t0);
        let later = t0 + Duration::from_secs(10);
        assert!(b.allow(later));
        b.failure(later);
        assert_eq!(b.state(later), State::Open);
        assert!(!b.allow(later + Duration::from_secs(1)));
    }

    #[test]
    fn released_probe_lets_another_probe_through() {
        let b = Breaker::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        b.failure(t0);
        let later = t0 + Duration::from_secs(10);
        assert!(b.allow(later));
        assert!(!b.allow(later));
        b.release();
        assert_eq!(b.state(later), State::HalfOpen);
        assert!(b.allow(later), "a new probe after a neutral one");
    }

    #[test]
    fn huge_open_time_does_not_overflow() {
        let b = Breaker::new(1, Duration::MAX);
        let t0 = Instant::now();
        b.failure(t0);
        assert_eq!(b.state(t0 + Duration::from_secs(3600)), State::Open);
    }

    #[test]
    fn success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        b.failure(t0);
        b.success();
        b.failure(t0);
        assert_eq!(b.state(t0), State::Closed);
    }
}
