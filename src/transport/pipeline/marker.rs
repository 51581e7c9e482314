//! What the rerank step did for a whole request, as both transports report it.

use http::HeaderMap;

use crate::engine::Outcome;
use crate::plan::RerankStatus;
use crate::transport::headers;

#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// The request's status: a failure shows first, then any reranking done.
    pub status: RerankStatus,
    /// The model that scored (the first search's that has one).
    pub model: Option<String>,
    /// Configured name of the reranker that answered (differs from the first of the
    /// chain after a fallback).
    pub reranker: Option<String>,
    /// Candidates sent to the reranker, over every search.
    pub candidates: usize,
    /// Wall time of the rerank step, in seconds.
    pub time: f64,
}

impl Marker {
    pub fn of(outcomes: &[Outcome], time: f64) -> Marker {
        Marker {
            status: RerankStatus::combine(outcomes.iter().map(|o| o.status)),
            model: outcomes.iter().find_map(|o| o.model.clone()),
            reranker: outcomes.iter().find_map(|o| o.reranker.clone()),
            candidates: outcomes.iter().map(|o| o.candidates).sum(),
            time,
        }
    }

    /// `x-rerank-model` and `x-rerank-reranker` (`x-rerank-status` is stamped by
    /// [`super::finish`]).
    pub fn stamp(&self, h: &mut HeaderMap) {
        if let Some(m) = &self.model {
            headers::set_text(h, headers::MODEL, m);
        }
        if let Some(r) = &self.reranker {
            headers::set_text(h, headers::RERANKER, r);
        }
    }
}
