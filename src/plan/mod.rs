//! Pure planning: what to ask Qdrant for and how to cut the answer back.
//! Nothing here does I/O or knows about HTTP or gRPC.

pub mod payload;
pub mod query_text;
pub mod text;
pub mod window;

pub use window::{passthrough, rank, Ranked, Window};

use crate::config::CollectionSettings;
use query_text::Directive;

/// Everything known about one search before it is sent, whatever the transport.
#[derive(Debug, Clone, Copy)]
pub struct SearchInput<'a> {
    pub settings: &'a CollectionSettings,
    /// The query text, already picked (header, directive, Document).
    pub query: Option<&'a str>,
    pub directive: Option<&'a Directive>,
    /// The client's offset (absent: 0).
    pub offset: Option<u64>,
    /// The client's limit; `None` when it is missing or not a valid number.
    pub limit: Option<u64>,
}

/// A search that will be reranked.
#[derive(Debug, Clone, PartialEq)]
pub struct RerankPlan {
    pub query: String,
    pub window: Window,
    pub threshold: Option<f32>,
}

/// What to do with one search.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Reranking is off for this collection or this request.
    Disabled,
    /// Reranking is on but cannot be applied; the search goes to Qdrant as it came.
    Skip(String),
    Rerank(RerankPlan),
}

pub const NO_QUERY_TEXT: &str = "no query text: send header x-rerank-query, a \"rerank\": {\"query\": ...} object, or a Document query";

pub fn decide(input: SearchInput<'_>) -> Decision {
    let s = input.settings;
    if !s.enabled || input.directive.and_then(|d| d.enabled) == Some(false) {
        return Decision::Disabled;
    }
    let Some(query) = input.query else {
        return Decision::Skip(NO_QUERY_TEXT.into());
    };
    let Some(limit) = input.limit else {
        return Decision::Skip("no valid limit in the search".into());
    };
    let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let pool = input.directive.and_then(|d| d.pool);
    match Window::plan(
        to_usize(input.offset.unwrap_or(0)),
        to_usize(limit),
        pool,
        s.pool,
        s.max_pool,
    ) {
        Err(reason) => Decision::Skip(reason),
        Ok(window) => Decision::Rerank(RerankPlan {
            query: query.to_string(),
            window,
            threshold: input
                .directive
                .and_then(|d| d.score_threshold)
                .or(s.score_threshold),
        }),
    }
}

/// What happened to one search, as reported to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerankStatus {
    Applied,
    Skipped,
    Disabled,
    FailedOpen,
}

impl RerankStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RerankStatus::Applied => "applied",
            RerankStatus::Skipped => "skipped",
            RerankStatus::Disabled => "disabled",
            RerankStatus::FailedOpen => "failed_open",
        }
    }

    /// One status for a batch: a failure shows first, then any reranking done.
    pub fn combine(statuses: impl IntoIterator<Item = RerankStatus>) -> RerankStatus {
        let mut out: Option<RerankStatus> = None;
        for s in statuses {
            out = Some(match (out, s) {
                (None, s) => s,
                (Some(RerankStatus::FailedOpen), _) | (_, RerankStatus::FailedOpen) => {
                    RerankStatus::FailedOpen
                }
                (Some(RerankStatus::Applied), _) | (_, RerankStatus::Applied) => {
                    RerankStatus::Applied
                }
                (Some(RerankStatus::Skipped), _) | (_, RerankStatus::Skipped) => {
                    RerankStatus::Skipped
                }
                _ => RerankStatus::Disabled,
            });
        }
        out.unwrap_or(RerankStatus::Skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::RerankStatus::*;
    use super::*;

    fn on() -> CollectionSettings {
        CollectionSettings {
            enabled: true,
            ..Default::default()
        }
    }

    fn input<'a>(s: &'a CollectionSettings, d: Option<&'a Directive>) -> SearchInput<'a> {
        SearchInput {
            settings: s,
            query: Some("q"),
            directive: d,
            offset: Some(5),
            limit: Some(10),
        }
    }

    #[test]
    fn decide_reranks_with_widened_window() {
        let s = on();
        let Decision::Rerank(p) = decide(input(&s, None)) else {
            panic!("expected rerank")
        };
        assert_eq!(
            p.window,
            Window {
                offset: 5,
                limit: 10,
                fetch: 100
            }
        );
        assert_eq!(p.threshold, None);
    }

    #[test]
    fn decide_disabled_by_config_or_request() {
        let off = CollectionSettings::default();
        assert_eq!(decide(input(&off, None)), Decision::Disabled);
        let s = on();
        let d = Directive {
            enabled: Some(false),
            ..Default::default()
        };
        assert_eq!(decide(input(&s, Some(&d))), Decision::Disabled);
        // a request cannot turn on a collection that is off
        let d = Directive {
            enabled: Some(true),
            ..Default::default()
        };
        assert_eq!(decide(input(&off, Some(&d))), Decision::Disabled);
    }

    #[test]
    fn decide_skips_without_text_or_limit() {
        let s = on();
        let mut i = input(&s, None);
        i.query = None;
        assert_eq!(decide(i), Decision::Skip(NO_QUERY_TEXT.into()));
        let mut i = input(&s, None);
        i.limit = None;
        assert!(matches!(decide(i), Decision::Skip(r) if r.contains("limit")));
        let mut i = input(&s, None);
        i.offset = Some(500);
        assert!(matches!(decide(i), Decision::Skip(r) if r.contains("max_pool")));
    }

    #[test]
    fn directive_pool_and_threshold_win_over_config() {
        let s = CollectionSettings {
            score_threshold: Some(0.1),
            ..on()
        };
        let d = Directive {
            pool: Some(30),
            score_threshold: Some(0.7),
            ..Default::default()
        };
        let Decision::Rerank(p) = decide(input(&s, Some(&d))) else {
            panic!()
        };
        assert_eq!(p.window.fetch, 30);
        assert_eq!(p.threshold, Some(0.7));
        let Decision::Rerank(p) = decide(input(&s, None)) else {
            panic!()
        };
        assert_eq!(p.threshold, Some(0.1));
    }

    #[test]
    fn combine_prefers_failure_then_applied() {
        assert_eq!(
            RerankStatus::combine([Applied, FailedOpen, Skipped]),
            FailedOpen
        );
        assert_eq!(RerankStatus::combine([Skipped, Applied]), Applied);
        assert_eq!(RerankStatus::combine([Disabled, Skipped]), Skipped);
        assert_eq!(RerankStatus::combine([Disabled]), Disabled);
        assert_eq!(RerankStatus::combine([]), Skipped);
    }
}
