//! A circuit breaker per reranker: after `threshold` consecutive failures it opens and
//! the reranker is skipped for `open_for`; then one probe is let through (half-open),
//! whose success closes it and whose failure opens it again.
//!
//! A call holds a [`Permit`] and settles it with its outcome. A probe whose caller
//! went away (a client deadline, a disconnect, shutdown) drops its permit unsettled,
//! and the drop frees the probe slot; otherwise the breaker would stay half-open with
//! a probe that never ends, and the reranker would be skipped until a restart.

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
    /// Which probe holds the slot (so that a stale permit frees nobody else's).
    probe_id: u64,
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
                probe_id: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leave for a call now (at most one at a time while half-open), to be settled
    /// with the call's outcome.
    pub fn allow(&self, now: Instant) -> Option<Permit<'_>> {
        let mut s = self.lock();
        let probe = match s.open_until {
            None => None,
            Some(until) if now < until => return None,
            Some(_) if s.probing => return None,
            Some(_) => {
                s.probing = true;
                s.probe_id = s.probe_id.wrapping_add(1);
                Some(s.probe_id)
            }
        };
        Some(Permit {
            breaker: self,
            probe,
        })
    }

    fn success(&self) {
        let mut s = self.lock();
        s.failures = 0;
        s.open_until = None;
        s.probing = false;
    }

    fn failure(&self, now: Instant) {
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

/// One call's leave from a [`Breaker`]. Settle it with [`Permit::success`],
/// [`Permit::failure`] or [`Permit::release`]; dropped unsettled, it counts as a
/// release.
#[must_use = "a permit is settled with the call's outcome"]
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    /// The probe this permit is, when the breaker was half-open.
    probe: Option<u64>,
}

impl Permit<'_> {
    pub fn success(mut self) {
        self.probe = None;
        self.breaker.success();
    }

    pub fn failure(mut self, now: Instant) {
        self.probe = None;
        self.breaker.failure(now);
    }

    /// The call ended in a way that says nothing about the reranker (the caller's own
    /// budget ran out, or the caller went away): no count either way, but a probe
    /// under way is over, so the next call may probe.
    pub fn release(self) {}
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.probe {
            let mut s = self.breaker.lock();
            if s.probing && s.probe_id == id {
                s.probing = false;
            }
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
        b.allow(t0).unwrap().failure(t0);
        assert_eq!(b.state(t0), State::Closed);
        b.allow(t0).unwrap().failure(t0);
        assert_eq!(b.state(t0), State::Open);
        assert!(b.allow(t0 + Duration::from_secs(5)).is_none());
        let later = t0 + Duration::from_secs(11);
        assert_eq!(b.state(later), State::HalfOpen);
        let probe = b.allow(later).expect("one probe");
        assert!(b.allow(later).is_none(), "only one probe at a time");
        probe.success();
        assert_eq!(b.state(later), State::Closed);
        assert!(b.allow(later).is_some());
    }

    #[test]
    fn failed_probe_reopens() {
        let b = Breaker::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        b.allow(t0).unwrap().failure(t0);
        let later = t0 + Duration::from_secs(10);
        b.allow(later).unwrap().failure(later);
        assert_eq!(b.state(later), State::Open);
        assert!(b.allow(later + Duration::from_secs(1)).is_none());
    }

    #[test]
    fn released_probe_lets_another_probe_through() {
        let b = Breaker::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        b.allow(t0).unwrap().failure(t0);
        let later = t0 + Duration::from_secs(10);
        let probe = b.allow(later).unwrap();
        assert!(b.allow(later).is_none());
        probe.release();
        assert_eq!(b.state(later), State::HalfOpen);
        assert!(b.allow(later).is_some(), "a new probe after a neutral one");
    }

    /// A probe whose caller went away (its future dropped mid-call) frees the slot.
    #[test]
    fn dropped_probe_lets_another_probe_through() {
        let b = Breaker::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        b.allow(t0).unwrap().failure(t0);
        let later = t0 + Duration::from_secs(10);
        let probe = b.allow(later).unwrap();
        assert!(b.allow(later).is_none());
        drop(probe);
        let next = b.allow(later).expect("a new probe after a dropped one");
        next.success();
        assert_eq!(b.state(later), State::Closed);
    }

    /// A stale probe (the breaker reopened and another probe started since) frees
    /// nobody else's slot.
    #[test]
    fn a_stale_permit_does_not_free_a_newer_probe() {
        let b = Breaker::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        let early = b.allow(t0).unwrap();
        b.allow(t0).unwrap().failure(t0);
        let t1 = t0 + Duration::from_secs(10);
        let old = b.allow(t1).unwrap();
        // a call admitted while closed fails meanwhile and reopens the breaker
        early.failure(t1);
        let t2 = t1 + Duration::from_secs(10);
        let new = b.allow(t2).unwrap();
        drop(old);
        assert!(
            b.allow(t2).is_none(),
            "the newer probe still holds the slot"
        );
        new.success();
    }

    #[test]
    fn huge_open_time_does_not_overflow() {
        let b = Breaker::new(1, Duration::MAX);
        let t0 = Instant::now();
        b.allow(t0).unwrap().failure(t0);
        assert_eq!(b.state(t0 + Duration::from_secs(3600)), State::Open);
    }

    #[test]
    fn success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        b.allow(t0).unwrap().failure(t0);
        b.allow(t0).unwrap().success();
        b.allow(t0).unwrap().failure(t0);
        assert_eq!(b.state(t0), State::Closed);
    }
}
