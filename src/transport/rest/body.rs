//! Qdrant REST JSON shapes: rewriting a search body and cutting its answer back.
//! Pure functions over `serde_json::Value`; the handler does the I/O.

use serde_json::{json, Map, Value};

use crate::config::CollectionSettings;
use crate::engine::Outcome;
use crate::plan::payload::{restore_point, rewrite_all, Restore};
use crate::plan::query_text::{check_len, pick, take_directive, Directive};
use crate::plan::template::TextSource;
use crate::plan::{
    decide, displacement, order_groups, order_page, Cut, Decision, RerankPlan, RerankStatus,
    SearchInput, Shape,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /collections/{c}/points/search` → `result: [point]`
    Search,
    /// `.../points/search/batch` → `result: [[point]]`
    SearchBatch,
    /// `.../points/search/groups` → `result: {groups: [{hits, id}]}`
    SearchGroups,
    /// `.../points/query` → `result: {points: [point]}`
    Query,
    /// `.../points/query/batch` → `result: [{points: [point]}]`
    QueryBatch,
    /// `.../points/query/groups` → `result: {groups: [...]}`
    QueryGroups,
    /// `.../points/recommend` → `result: [point]`
    Recommend,
    RecommendBatch,
    RecommendGroups,
    /// `.../points/discover` → `result: [point]`
    Discover,
    DiscoverBatch,
}

impl Endpoint {
    pub const ALL: [(Endpoint, &'static str); 11] = [
        (Endpoint::Search, "search"),
        (Endpoint::SearchBatch, "search/batch"),
        (Endpoint::SearchGroups, "search/groups"),
        (Endpoint::Query, "query"),
        (Endpoint::QueryBatch, "query/batch"),
        (Endpoint::QueryGroups, "query/groups"),
        (Endpoint::Recommend, "recommend"),
        (Endpoint::RecommendBatch, "recommend/batch"),
        (Endpoint::RecommendGroups, "recommend/groups"),
        (Endpoint::Discover, "discover"),
        (Endpoint::DiscoverBatch, "discover/batch"),
    ];

    /// Metric label.
    pub fn route(self) -> &'static str {
        match self {
            Endpoint::Search => "search",
            Endpoint::SearchBatch => "search_batch",
            Endpoint::SearchGroups => "search_groups",
            Endpoint::Query => "query",
            Endpoint::QueryBatch => "query_batch",
            Endpoint::QueryGroups => "query_groups",
            Endpoint::Recommend => "recommend",
            Endpoint::RecommendBatch => "recommend_batch",
            Endpoint::RecommendGroups => "recommend_groups",
            Endpoint::Discover => "discover",
            Endpoint::DiscoverBatch => "discover_batch",
        }
    }

    pub fn is_batch(self) -> bool {
        use Endpoint::*;
        matches!(
            self,
            SearchBatch | QueryBatch | RecommendBatch | DiscoverBatch
        )
    }

    pub fn is_groups(self) -> bool {
        use Endpoint::*;
        matches!(self, SearchGroups | QueryGroups | RecommendGroups)
    }

    /// The Query API wraps points in `{"points": [...]}`.
    fn wraps_points(self) -> bool {
        matches!(self, Endpoint::Query | Endpoint::QueryBatch)
    }

    /// The client's paging, with Qdrant's defaults where the API has them (the Query
    /// API: limit 10, group_size 3; the others require a limit).
    fn shape(self, search: &Map<String, Value>) -> Shape {
        let query_api = matches!(
            self,
            Endpoint::Query | Endpoint::QueryBatch | Endpoint::QueryGroups
        );
        let default = |n: u64| if query_api { Some(n) } else { None };
        let num = |key: &str, dflt: Option<u64>| match number(search, key) {
            Ok(v) => v.or(dflt),
            Err(()) => None, // invalid: Qdrant will say why
        };
        if self.is_groups() {
            return Shape::Groups {
                limit: num("limit", default(10)),
                group_size: num("group_size", default(3)),
            };
        }
        match number(search, "offset") {
            Ok(offset) => Shape::Page {
                offset,
                limit: num("limit", default(10)),
            },
            Err(()) => Shape::Page {
                offset: None,
                limit: None,
            },
        }
    }
}

pub use crate::plan::Planned;

#[derive(Debug)]
pub struct Prepared {
    /// The body to send to Qdrant.
    pub body: Value,
    pub searches: Vec<Planned>,
    /// Whether the body differs from the client's (a `rerank` object removed or a
    /// search widened).
    pub changed: bool,
    /// Whether a search was widened (its limit, offset or payload selector rewritten).
    pub widened: bool,
    /// The client's body without its `rerank` objects, when it had any (otherwise the
    /// client's bytes are that body): what is sent when nothing was widened.
    pub unwidened: Option<Vec<u8>>,
}

#[derive(Debug, PartialEq)]
pub enum PrepareError {
    /// Not a body we understand: forward it unchanged and let Qdrant answer.
    NotOurs,
    /// The client's mistake in our own extension: 400.
    BadRequest(String),
}

fn searches_mut(body: &mut Value, ep: Endpoint) -> Option<Vec<&mut Map<String, Value>>> {
    if ep.is_batch() {
        body.get_mut("searches")?
            .as_array_mut()?
            .iter_mut()
            .map(Value::as_object_mut)
            .collect()
    } else {
        body.as_object_mut().map(|o| vec![o])
    }
}

/// `Ok(None)`: absent or null; `Err`: present but not a non-negative integer.
fn number(search: &Map<String, Value>, key: &str) -> Result<Option<u64>, ()> {
    match search.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(()),
    }
}

/// Plans every search of a request body and rewrites the ones to rerank.
pub fn prepare(
    mut body: Value,
    ep: Endpoint,
    settings: &CollectionSettings,
    header_query: Option<&str>,
    header_directive: Option<&Directive>,
) -> Result<Prepared, PrepareError> {
    // First every `rerank` object out, so that the body without them can be kept.
    let mut directives = Vec::new();
    for search in searches_mut(&mut body, ep).ok_or(PrepareError::NotOurs)? {
        let directive = take_directive(search).map_err(PrepareError::BadRequest)?;
        if let Some(q) = directive.as_ref().and_then(|d| d.query.as_deref()) {
            check_len(q, settings.max_query_bytes).map_err(PrepareError::BadRequest)?;
        }
        directives.push(directive);
    }
    let had_directive = directives.iter().any(Option::is_some);
    let unwidened = had_directive.then(|| serde_json::to_vec(&body).expect("json serializes"));
    let mut widened = false;
    let mut searches = Vec::new();
    let all = searches_mut(&mut body, ep).ok_or(PrepareError::NotOurs)?;
    for (search, directive) in all.into_iter().zip(directives) {
        let directive = Directive::merge(header_directive, directive);
        crate::plan::check_directive(settings, directive.as_ref())
            .map_err(PrepareError::BadRequest)?;
        let explain = directive.as_ref().and_then(|d| d.explain) == Some(true);
        let query = pick(header_query, directive.as_ref(), search);
        let mut decision = decide(SearchInput {
            settings,
            query: &query,
            directive: directive.as_ref(),
            shape: ep.shape(search),
        });
        let mut restore = Restore::Keep;
        if let Decision::Rerank(plan) = &decision {
            match rewrite_all(search.get("with_payload"), &settings.text_source().paths()) {
                None => {
                    decision = Decision::Skip(
                        "with_payload is not in a form secondpass understands; forwarded as sent"
                            .into(),
                    )
                }
                Some(rw) => {
                    search.insert("with_payload".into(), rw.selector);
                    search.insert("limit".into(), Value::from(plan.cut.fetch()));
                    search.remove("offset");
                    restore = rw.restore;
                    widened = true;
                }
            }
        }
        searches.push(Planned {
            decision,
            restore,
            explain,
        });
    }
    Ok(Prepared {
        body,
        searches,
        changed: had_directive || widened,
        widened,
        unwidened,
    })
}

/// The answer for search `i` of this endpoint: the point list, or for groups the
/// group list.
pub(crate) fn answer_mut(result: &mut Value, ep: Endpoint, i: usize) -> Option<&mut Vec<Value>> {
    let one = if ep.is_batch() {
        result.get_mut(i)?
    } else if i == 0 {
        result
    } else {
        return None;
    };
    if ep.is_groups() {
        one.get_mut("groups")?.as_array_mut()
    } else if ep.wraps_points() {
        one.get_mut("points")?.as_array_mut()
    } else {
        one.as_array_mut()
    }
}

/// The candidates of search `i`: each hit's text (groups: every group's hits in
/// order) and, for groups, the hit count of each group.
pub fn candidates(
    result: &mut Value,
    ep: Endpoint,
    i: usize,
    source: &TextSource,
) -> Option<(Vec<Option<String>>, Vec<usize>)> {
    let text = |p: &Value| p.get("payload").and_then(|pl| source.text(pl));
    let list = answer_mut(result, ep, i)?;
    if !ep.is_groups() {
        return Some((list.iter().map(text).collect(), Vec::new()));
    }
    let mut texts = Vec::new();
    let mut sizes = Vec::new();
    for g in list.iter() {
        let hits = g.get("hits")?.as_array()?;
        sizes.push(hits.len());
        texts.extend(hits.iter().map(text));
    }
    Some((texts, sizes))
}

/// Reorders `points` as `ranked` says, with new scores, payloads as the client asked.
fn reorder(points: &mut Vec<Value>, ranked: &[crate::plan::Ranked], restore: &Restore) {
    let mut taken: Vec<Option<Value>> = std::mem::take(points).into_iter().map(Some).collect();
    for r in ranked {
        let Some(Value::Object(mut p)) = taken.get_mut(r.index).and_then(Option::take) else {
            continue;
        };
        if let Some(score) = r.score {
            p.insert("score".into(), f32_json(score));
        }
        restore_point(&mut p, restore);
        points.push(Value::Object(p));
    }
}

/// Writes the outcome of search `i` into Qdrant's answer: order, scores, cut,
/// payloads. Returns the page's rank displacement when scores were applied.
pub fn apply(
    result: &mut Value,
    ep: Endpoint,
    i: usize,
    plan: &RerankPlan,
    outcome: &Outcome,
    restore: &Restore,
    group_sizes: &[usize],
) -> Option<f64> {
    let list = answer_mut(result, ep, i)?;
    let scores = outcome.scores.as_deref();
    match plan.cut {
        Cut::Page(window) => {
            let ranked = order_page(
                scores,
                outcome.tiers.as_deref(),
                list.len(),
                plan.threshold,
                window,
            );
            reorder(list, &ranked, restore);
            scores.and(displacement(&ranked, window))
        }
        Cut::Groups(window) => {
            let ranked = order_groups(
                scores,
                outcome.tiers.as_deref(),
                group_sizes,
                plan.threshold,
                window,
            );
            let mut taken: Vec<Option<Value>> =
                std::mem::take(list).into_iter().map(Some).collect();
            for g in ranked {
                let Some(mut group) = taken.get_mut(g.index).and_then(Option::take) else {
                    continue;
                };
                if let Some(Value::Array(hits)) = group.get_mut("hits") {
                    reorder(hits, &g.hits, restore);
                }
                list.push(group);
            }
            None
        }
    }
}

/// An f32 as JSON with its shortest decimal form (0.99, not 0.9900000095367432), as
/// Qdrant prints its f32 scores. Never `null`: a non-finite value (scores are made finite
/// before they get here) is clamped, NaN to the lowest.
pub fn f32_json(v: f32) -> Value {
    let v = if v.is_nan() {
        f32::MIN
    } else {
        v.clamp(f32::MIN, f32::MAX)
    };
    v.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn outcome_json(o: &Outcome) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("status".into(), json!(o.status.as_str()));
    if let Some(r) = &o.reason {
        m.insert("reason".into(), json!(r));
    }
    if let Some(model) = &o.model {
        m.insert("model".into(), json!(model));
    }
    if let Some(r) = &o.reranker {
        m.insert("reranker".into(), json!(r));
    }
    if !o.fallback.is_empty() {
        let tried: Vec<Value> = o
            .fallback
            .iter()
            .map(|(r, e)| json!({"reranker": r, "error": e}))
            .collect();
        m.insert("fallback".into(), Value::Array(tried));
    }
    m.insert("candidates".into(), json!(o.candidates));
    m.insert("time".into(), json!(o.time));
    if !o.stages.is_empty() {
        m.insert("stages".into(), crate::plan::stages::stages_json(&o.stages));
    }
    m
}

/// The top-level `"rerank"` object: one search's outcome, or for a batch the combined
/// status with each search's outcome under `searches`.
pub fn marker(outcomes: &[Outcome], ep: Endpoint, rerank_time: f64) -> Value {
    if !ep.is_batch() {
        if let Some(o) = outcomes.first() {
            return Value::Object(outcome_json(o));
        }
    }
    let mut m = Map::new();
    m.insert(
        "status".into(),
        json!(RerankStatus::combine(outcomes.iter().map(|o| o.status)).as_str()),
    );
    if let Some(model) = outcomes.iter().find_map(|o| o.model.as_ref()) {
        m.insert("model".into(), json!(model));
    }
    m.insert(
        "candidates".into(),
        json!(outcomes.iter().map(|o| o.candidates).sum::<usize>()),
    );
    m.insert("time".into(), json!(rerank_time));
    m.insert(
        "searches".into(),
        Value::Array(
            outcomes
                .iter()
                .map(|o| Value::Object(outcome_json(o)))
                .collect(),
        ),
    );
    Value::Object(m)
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
