//! The local queue's bound in pairs: what waits for a worker is counted in documents,
//! not jobs, so that a few large calls fill it as surely as many small ones. The rerank
//! API's calls may fill only half of it, so that proxied searches keep room.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::rerank::Priority;

/// Pairs waiting for a worker, and how many may.
#[derive(Debug)]
pub(crate) struct Admission {
    waiting: AtomicUsize,
    limit: usize,
}

/// A job's pairs, counted as waiting until the job is dropped (taken and tokenized by
/// a worker, refused by a full queue, or abandoned).
#[derive(Debug)]
pub(crate) struct Admitted {
    admission: Arc<Admission>,
    pairs: usize,
}

impl Admission {
    pub fn new(limit: usize) -> Arc<Admission> {
        Arc::new(Admission {
            waiting: AtomicUsize::new(0),
            limit,
        })
    }

    /// Room for `pairs` more, or `None` (the caller answers `Overloaded`). A job larger
    /// than the bound is let in when nothing waits, so that it can run at all.
    pub fn admit(self: &Arc<Self>, pairs: usize, priority: Priority) -> Option<Admitted> {
        let limit = match priority {
            Priority::Search => self.limit,
            Priority::Api => self.limit / 2,
        };
        self.waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                (now == 0 || now.saturating_add(pairs) <= limit).then(|| now + pairs)
            })
            .ok()?;
        Some(Admitted {
            admission: self.clone(),
            pairs,
        })
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission
            .waiting
            .fetch_sub(self.pairs, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_pairs_with_half_for_the_api() {
        let a = Admission::new(100);
        let big = a.admit(60, Priority::Search).expect("room");
        assert!(a.admit(50, Priority::Search).is_none(), "60 + 50 > 100");
        let small = a.admit(40, Priority::Search).expect("60 + 40 = 100");
        assert_eq!(a.waiting(), 100);
        drop(big);
        assert_eq!(a.waiting(), 40);
        assert!(
            a.admit(20, Priority::Api).is_none(),
            "the API gets half: 40 + 20 > 50"
        );
        let api = a.admit(10, Priority::Api).expect("40 + 10 = 50");
        assert!(
            a.admit(50, Priority::Search).is_some(),
            "searches keep the rest"
        );
        drop((small, api));
        assert_eq!(a.waiting(), 0);
    }

    #[test]
    fn a_job_larger_than_the_bound_runs_when_nothing_waits() {
        let a = Admission::new(100);
        let huge = a.admit(500, Priority::Api).expect("nothing waits");
        assert!(a.admit(1, Priority::Search).is_none());
        drop(huge);
        assert!(a.admit(1, Priority::Search).is_some());
    }
}
