//! Pure planning: what to ask Qdrant for and how to cut the answer back.
//! Nothing here does I/O or knows about HTTP or gRPC.

pub mod groups;
pub mod payload;
pub mod query_text;
pub mod stages;
pub mod template;
pub mod text;
pub mod window;

pub use groups::{passthrough_groups, rank_groups, rank_groups_tiered, GroupWindow, RankedGroup};
pub use window::{displacement, passthrough, rank, rank_tiered, Ranked, Window};

use crate::config::CollectionSettings;
use query_text::{Directive, Picked, QuerySource};

/// Everything known about one search before it is sent, whatever the transport.
#[derive(Debug, Clone, Copy)]
pub struct SearchInput<'a> {
    pub settings: &'a CollectionSettings,
    /// The query text, already picked (header, directive, Document, prefetch).
    pub query: &'a Picked,
    pub directive: Option<&'a Directive>,
    pub shape: Shape,
}

/// The client's paging, as it asked (`None`: missing or not a valid number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A list of points: `offset` (absent: 0) and `limit`.
    Page {
        offset: Option<u64>,
        limit: Option<u64>,
    },
    /// Groups of points: `limit` groups of `group_size` hits.
    Groups {
        limit: Option<u64>,
        group_size: Option<u64>,
    },
}

/// How a reranked search is widened and cut back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    Page(Window),
    Groups(GroupWindow),
}

impl Cut {
    /// The `limit` to send to Qdrant (points, or groups).
    pub fn fetch(&self) -> usize {
        match self {
            Cut::Page(w) => w.fetch,
            Cut::Groups(g) => g.fetch,
        }
    }
}

/// A search that will be reranked.
#[derive(Debug, Clone, PartialEq)]
pub struct RerankPlan {
    pub query: std::sync::Arc<str>,
    pub cut: Cut,
    pub threshold: Option<f32>,
    /// The reranker the request picked among the collection's `allowed_rerankers`.
    pub reranker: Option<String>,
    /// The request's instruction for decoder rerankers (checked by [`check_directive`]).
    pub instruction: Option<std::sync::Arc<str>>,
    /// Where `query` came from (reported when it is the prefetch's).
    pub query_source: QuerySource,
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

/// One search of a request, planned (REST and gRPC alike).
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub decision: Decision,
    /// How to give the client back the payload it asked for.
    pub restore: payload::Restore,
    /// The client asked for `"rerank": {"explain": true}` (or the header).
    pub explain: bool,
}

pub const NO_QUERY_TEXT: &str = "no query text: send header x-rerank-query, a \"rerank\": {\"query\": ...} object, or a Document query";

/// The skip reason of a hybrid query with `n` different Document texts in its prefetch.
pub fn several_texts(n: usize) -> String {
    format!(
        "no query text: the prefetch has {n} different Document texts; send header x-rerank-query or a \"rerank\": {{\"query\": ...}} object"
    )
}

pub fn decide(input: SearchInput<'_>) -> Decision {
    let s = input.settings;
    if !s.enabled || input.directive.and_then(|d| d.enabled) == Some(false) {
        return Decision::Disabled;
    }
    let (query, query_source) = match input.query {
        Picked::Text(q, source) => (q.as_str(), *source),
        Picked::Missing => return Decision::Skip(NO_QUERY_TEXT.into()),
        Picked::Several(n) => return Decision::Skip(several_texts(*n)),
    };
    // A query the client named for reranking was checked before (400); one taken from
    // a Document query is Qdrant's business, so it is searched, just not reranked.
    if let Err(why) = query_text::check_len(query, s.max_query_bytes) {
        return Decision::Skip(format!("{why}; not reranked"));
    }
    let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let pool = input.directive.and_then(|d| d.pool);
    let cut = match input.shape {
        Shape::Page { limit: None, .. } | Shape::Groups { limit: None, .. } => {
            return Decision::Skip("no valid limit in the search".into())
        }
        // Qdrant refuses these (`minimum: 1`); widening them would turn its error into
        // an answer. Sent as they came, they get Qdrant's own error.
        Shape::Page { limit: Some(0), .. } | Shape::Groups { limit: Some(0), .. } => {
            return Decision::Skip("limit 0 is not valid; forwarded as sent".into())
        }
        Shape::Groups {
            group_size: Some(0),
            ..
        } => return Decision::Skip("group_size 0 is not valid; forwarded as sent".into()),
        Shape::Groups {
            group_size: None, ..
        } => return Decision::Skip("no valid group_size in the search".into()),
        Shape::Page {
            offset,
            limit: Some(limit),
        } => Window::plan(
            to_usize(offset.unwrap_or(0)),
            to_usize(limit),
            pool,
            s.pool,
            s.max_pool,
        )
        .map(Cut::Page),
        Shape::Groups {
            limit: Some(limit),
            group_size: Some(size),
        } => GroupWindow::plan(to_usize(limit), to_usize(size), pool, s.pool, s.max_pool)
            .map(Cut::Groups),
    };
    match cut {
        Err(reason) => Decision::Skip(reason),
        Ok(cut) => Decision::Rerank(RerankPlan {
            query: query.into(),
            cut,
            threshold: input
                .directive
                .and_then(|d| d.score_threshold)
                .or(s.score_threshold),
            reranker: input.directive.and_then(|d| d.reranker.clone()),
            instruction: input
                .directive
                .and_then(|d| d.instruction.as_deref())
                .filter(|i| !i.trim().is_empty())
                .map(Into::into),
            query_source,
        }),
    }
}

/// The per-request options a collection may refuse, checked in one place for REST and
/// gRPC: a reranker only among the collection's `allowed_rerankers`; an instruction no
/// longer than `max_query_bytes` (the model reads it like the query).
pub fn check_directive(
    s: &CollectionSettings,
    directive: Option<&Directive>,
) -> Result<(), String> {
    if let Some(r) = directive.and_then(|d| d.reranker.as_deref()) {
        if !s.allowed_rerankers.iter().any(|a| a == r) {
            return Err(format!(
                "Bad request: reranker `{r}` is not allowed for this collection (allowed_rerankers: [{}])",
                s.allowed_rerankers.join(", ")
            ));
        }
    }
    if let Some(i) = directive.and_then(|d| d.instruction.as_deref()) {
        if i.len() > s.max_query_bytes {
            return Err(format!(
                "Bad request: rerank instruction is {} bytes, more than max_query_bytes ({})",
                i.len(),
                s.max_query_bytes
            ));
        }
    }
    Ok(())
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

/// The points to return for a page: reranked when `scores` is given, else Qdrant's
/// order cut to the client's window. `tiers` (staged reranks): the last stage that
/// scored each candidate; later stages rank first.
pub fn order_page(
    scores: Option<&[Option<f32>]>,
    tiers: Option<&[u32]>,
    len: usize,
    threshold: Option<f32>,
    window: Window,
) -> Vec<Ranked> {
    match scores {
        Some(s) => rank_tiered(s, tiers, threshold, window),
        None => passthrough(len, window),
    }
}

/// The groups to return; `scores` are flattened over the groups, whose hit counts
/// are `sizes`.
pub fn order_groups(
    scores: Option<&[Option<f32>]>,
    tiers: Option<&[u32]>,
    sizes: &[usize],
    threshold: Option<f32>,
    window: GroupWindow,
) -> Vec<RankedGroup> {
    match scores {
        None => passthrough_groups(sizes, window),
        Some(flat) => {
            let per_group = split_groups(flat, sizes);
            let tiers = tiers.map(|t| split_groups(t, sizes));
            rank_groups_tiered(&per_group, tiers.as_deref(), threshold, window)
        }
    }
}

/// `flat` cut into consecutive groups of `sizes`.
fn split_groups<T: Clone>(flat: &[T], sizes: &[usize]) -> Vec<Vec<T>> {
    let mut rest = flat;
    sizes
        .iter()
        .map(|&n| {
            let (head, tail) = rest.split_at(n.min(rest.len()));
            rest = tail;
            head.to_vec()
        })
        .collect()
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

    fn text(q: &str) -> &'static Picked {
        Box::leak(Box::new(Picked::Text(q.into(), QuerySource::Request)))
    }

    fn input<'a>(s: &'a CollectionSettings, d: Option<&'a Directive>) -> SearchInput<'a> {
        SearchInput {
            settings: s,
            query: text("q"),
            directive: d,
            shape: Shape::Page {
                offset: Some(5),
                limit: Some(10),
            },
        }
    }

    #[test]
    fn decide_reranks_with_widened_window() {
        let s = on();
        let Decision::Rerank(p) = decide(input(&s, None)) else {
            panic!("expected rerank")
        };
        assert_eq!(
            p.cut,
            Cut::Page(Window {
                offset: 5,
                limit: 10,
                fetch: 100
            })
        );
        assert_eq!(p.threshold, None);
        assert_eq!(p.query_source, QuerySource::Request);
        let hybrid = Picked::Text("wing".into(), QuerySource::Prefetch);
        let mut i = input(&s, None);
        i.query = &hybrid;
        let Decision::Rerank(p) = decide(i) else {
            panic!("expected rerank")
        };
        assert_eq!((&*p.query, p.query_source), ("wing", QuerySource::Prefetch));
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
        i.query = &Picked::Missing;
        assert_eq!(decide(i), Decision::Skip(NO_QUERY_TEXT.into()));
        i.query = &Picked::Several(2);
        assert!(matches!(decide(i), Decision::Skip(r) if r.contains("2 different Document texts")));
        let mut i = input(&s, None);
        i.shape = Shape::Page {
            offset: None,
            limit: None,
        };
        assert!(matches!(decide(i), Decision::Skip(r) if r.contains("limit")));
        i.shape = Shape::Page {
            offset: Some(500),
            limit: Some(10),
        };
        assert!(matches!(decide(i), Decision::Skip(r) if r.contains("max_pool")));
        i.shape = Shape::Groups {
            limit: Some(3),
            group_size: None,
        };
        assert!(matches!(decide(i), Decision::Skip(r) if r.contains("group_size")));
    }

    #[test]
    fn decide_leaves_what_qdrant_refuses_to_qdrant() {
        let s = on();
        let mut i = input(&s, None);
        for shape in [
            Shape::Page {
                offset: None,
                limit: Some(0),
            },
            Shape::Groups {
                limit: Some(0),
                group_size: Some(3),
            },
            Shape::Groups {
                limit: Some(3),
                group_size: Some(0),
            },
        ] {
            i.shape = shape;
            assert!(
                matches!(decide(i), Decision::Skip(ref r) if r.contains("forwarded as sent")),
                "{shape:?}"
            );
        }
    }

    #[test]
    fn decide_skips_a_document_query_over_the_byte_cap() {
        let s = CollectionSettings {
            max_query_bytes: 4,
            ..on()
        };
        let mut i = input(&s, None);
        i.query = text("12345");
        assert!(matches!(decide(i), Decision::Skip(r) if r.contains("max_query_bytes")));
        i.query = text("1234");
        assert!(matches!(decide(i), Decision::Rerank(_)));
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
        assert_eq!(p.cut.fetch(), 30);
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
