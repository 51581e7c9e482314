//! Qdrant REST JSON shapes: rewriting a search body and cutting its answer back.
//! Pure functions over `serde_json::Value`; the handler does the I/O.

use serde_json::{json, Map, Value};

use crate::config::CollectionSettings;
use crate::engine::Outcome;
use crate::plan::payload::{restore_point, rewrite, Restore};
use crate::plan::query_text::{pick, take_directive, Directive};
use crate::plan::text::text_at;
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

/// One search of the request, planned.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub decision: Decision,
    pub restore: Restore,
}

#[derive(Debug)]
pub struct Prepared {
    /// The body to send to Qdrant.
    pub body: Value,
    pub searches: Vec<Planned>,
    /// Whether the body differs from the client's (a `rerank` object removed or a
    /// search widened).
    pub changed: bool,
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
    let mut changed = false;
    let mut searches = Vec::new();
    for search in searches_mut(&mut body, ep).ok_or(PrepareError::NotOurs)? {
        let directive = take_directive(search).map_err(PrepareError::BadRequest)?;
        changed |= directive.is_some();
        let directive = Directive::merge(header_directive, directive);
        let query = pick(header_query, directive.as_ref(), search);
        let mut decision = decide(SearchInput {
            settings,
            query: query.as_deref(),
            directive: directive.as_ref(),
            shape: ep.shape(search),
        });
        let mut restore = Restore::Keep;
        if let Decision::Rerank(plan) = &decision {
            match rewrite(search.get("with_payload"), &settings.text_field) {
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
                    changed = true;
                }
            }
        }
        searches.push(Planned { decision, restore });
    }
    Ok(Prepared {
        body,
        searches,
        changed,
    })
}

/// The answer for search `i` of this endpoint: the point list, or for groups the
/// group list.
fn answer_mut(result: &mut Value, ep: Endpoint, i: usize) -> Option<&mut Vec<Value>> {
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
    field: &str,
) -> Option<(Vec<Option<String>>, Vec<usize>)> {
    let text = |p: &Value| p.get("payload").and_then(|pl| text_at(pl, field));
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
            let ranked = order_page(scores, list.len(), plan.threshold, window);
            reorder(list, &ranked, restore);
            scores.and(displacement(&ranked, window))
        }
        Cut::Groups(window) => {
            let ranked = order_groups(scores, group_sizes, plan.threshold, window);
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
/// Qdrant prints its f32 scores.
pub fn f32_json(v: f32) -> Value {
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
mod tests {
    use super::*;
    use crate::plan::{GroupWindow, Window};

    fn on() -> CollectionSettings {
        CollectionSettings {
            enabled: true,
            pool: 50,
            ..Default::default()
        }
    }

    #[test]
    fn search_is_widened_and_offset_dropped() {
        let body = json!({"vector": [1.0], "limit": 3, "offset": 2, "with_payload": ["title"],
                          "rerank": {"query": "q"}});
        let p = prepare(body, Endpoint::Search, &on(), None, None).unwrap();
        assert!(p.changed);
        assert_eq!(
            p.body,
            json!({"vector": [1.0], "limit": 50, "with_payload": ["title", "text"]})
        );
        let Decision::Rerank(plan) = &p.searches[0].decision else {
            panic!()
        };
        assert_eq!(
            plan.cut,
            Cut::Page(Window {
                offset: 2,
                limit: 3,
                fetch: 50
            })
        );
        assert_eq!(
            p.searches[0].restore,
            Restore::RemovePaths(vec!["text".into()])
        );
    }

    #[test]
    fn query_api_defaults_limit_to_ten() {
        let body = json!({"query": {"text": "capital", "model": "m"}});
        let p = prepare(body, Endpoint::Query, &on(), None, None).unwrap();
        let Decision::Rerank(plan) = &p.searches[0].decision else {
            panic!()
        };
        assert_eq!(
            plan.cut,
            Cut::Page(Window {
                offset: 0,
                limit: 10,
                fetch: 50
            })
        );
        assert_eq!(plan.query, "capital");
        assert_eq!(p.body["query"], json!({"text": "capital", "model": "m"}));
    }

    #[test]
    fn no_text_leaves_body_unchanged() {
        let body = json!({"vector": [1.0], "limit": 3});
        let p = prepare(body.clone(), Endpoint::Search, &on(), None, None).unwrap();
        assert!(!p.changed);
        assert_eq!(p.body, body);
        assert!(matches!(p.searches[0].decision, Decision::Skip(_)));
    }

    #[test]
    fn disabled_directive_is_stripped_only() {
        let body = json!({"vector": [1.0], "limit": 3, "rerank": {"enabled": false}});
        let p = prepare(body, Endpoint::Search, &on(), Some("q"), None).unwrap();
        assert!(p.changed);
        assert_eq!(p.body, json!({"vector": [1.0], "limit": 3}));
        assert_eq!(p.searches[0].decision, Decision::Disabled);
    }

    #[test]
    fn batch_plans_each_search_and_header_applies_to_all() {
        let body = json!({"searches": [
            {"vector": [1.0], "limit": 2},
            {"vector": [1.0], "limit": 2, "rerank": {"enabled": false}},
            {"vector": [1.0], "limit": 2, "with_payload": "bogus"}
        ]});
        let p = prepare(body, Endpoint::SearchBatch, &on(), Some("hdr"), None).unwrap();
        assert!(matches!(&p.searches[0].decision, Decision::Rerank(r) if r.query == "hdr"));
        assert_eq!(p.searches[1].decision, Decision::Disabled);
        assert!(matches!(&p.searches[2].decision, Decision::Skip(r) if r.contains("with_payload")));
        assert_eq!(p.body["searches"][0]["limit"], 50);
        assert_eq!(
            p.body["searches"][2],
            json!({"vector": [1.0], "limit": 2, "with_payload": "bogus"})
        );
    }

    #[test]
    fn invalid_limit_is_left_to_qdrant() {
        let body = json!({"query": [1.0], "limit": -1});
        let p = prepare(body.clone(), Endpoint::Query, &on(), Some("q"), None).unwrap();
        assert!(matches!(p.searches[0].decision, Decision::Skip(_)));
        assert_eq!(p.body, body);
    }

    #[test]
    fn bodies_we_do_not_understand() {
        assert_eq!(
            prepare(json!([1]), Endpoint::Search, &on(), None, None).unwrap_err(),
            PrepareError::NotOurs
        );
        assert_eq!(
            prepare(
                json!({"searches": 3}),
                Endpoint::QueryBatch,
                &on(),
                None,
                None
            )
            .unwrap_err(),
            PrepareError::NotOurs
        );
        assert!(matches!(
            prepare(
                json!({"rerank": {"pool": -3}}),
                Endpoint::Search,
                &on(),
                None,
                None
            )
            .unwrap_err(),
            PrepareError::BadRequest(_)
        ));
    }

    #[test]
    fn points_in_every_shape() {
        let mut r = json!([{"id": 1}]);
        assert_eq!(answer_mut(&mut r, Endpoint::Search, 0).unwrap().len(), 1);
        assert!(answer_mut(&mut r, Endpoint::Search, 1).is_none());
        let mut r = json!({"points": [{"id": 1}, {"id": 2}]});
        assert_eq!(answer_mut(&mut r, Endpoint::Query, 0).unwrap().len(), 2);
        let mut r = json!([[{"id": 1}], [{"id": 2}, {"id": 3}]]);
        assert_eq!(
            answer_mut(&mut r, Endpoint::SearchBatch, 1).unwrap().len(),
            2
        );
        let mut r = json!([{"points": []}, {"points": [{"id": 3}]}]);
        assert_eq!(
            answer_mut(&mut r, Endpoint::QueryBatch, 1).unwrap().len(),
            1
        );
    }

    fn plan(cut: Cut) -> RerankPlan {
        RerankPlan {
            query: "q".into(),
            cut,
            threshold: None,
        }
    }

    #[test]
    fn apply_orders_scores_and_restores() {
        let mut result = json!([
            {"id": 1, "version": 1, "score": 0.9, "payload": {"text": "a"}},
            {"id": 2, "version": 1, "score": 0.8, "payload": {"text": "b"}},
            {"id": 3, "version": 1, "score": 0.7}
        ]);
        let outcome = Outcome {
            scores: Some(vec![Some(0.5), Some(0.99), None]),
            ..Outcome::not_applied(RerankStatus::Applied, None)
        };
        let p = plan(Cut::Page(Window {
            offset: 0,
            limit: 2,
            fetch: 3,
        }));
        apply(
            &mut result,
            Endpoint::Search,
            0,
            &p,
            &outcome,
            &Restore::DropPayload,
            &[],
        )
        .unwrap();
        assert_eq!(
            result,
            json!([{"id": 2, "version": 1, "score": 0.99}, {"id": 1, "version": 1, "score": 0.5}])
        );
    }

    #[test]
    fn groups_are_reranked_inside_and_reordered() {
        let mut result = json!({"groups": [
            {"hits": [{"id": 1, "score": 0.9, "payload": {"text": "a"}}, {"id": 2, "score": 0.8, "payload": {"text": "b"}}], "id": "x"},
            {"hits": [{"id": 3, "score": 0.7, "payload": {"text": "c"}}], "id": "y", "lookup": {"id": "y"}}
        ]});
        let (texts, sizes) = candidates(&mut result, Endpoint::SearchGroups, 0, "text").unwrap();
        assert_eq!(
            texts,
            vec![Some("a".into()), Some("b".into()), Some("c".into())]
        );
        assert_eq!(sizes, vec![2, 1]);
        let outcome = Outcome {
            scores: Some(vec![Some(0.1), Some(0.3), Some(0.6)]),
            ..Outcome::not_applied(RerankStatus::Applied, None)
        };
        let p = plan(Cut::Groups(GroupWindow {
            limit: 2,
            group_size: 1,
            fetch: 2,
        }));
        apply(
            &mut result,
            Endpoint::SearchGroups,
            0,
            &p,
            &outcome,
            &Restore::DropPayload,
            &sizes,
        );
        assert_eq!(
            result,
            json!({"groups": [
                {"hits": [{"id": 3, "score": 0.6}], "id": "y", "lookup": {"id": "y"}},
                {"hits": [{"id": 2, "score": 0.3}], "id": "x"}
            ]})
        );
    }

    #[test]
    fn group_requests_are_widened_in_groups() {
        let body = json!({"vector": [1.0], "group_by": "g", "limit": 2, "group_size": 2, "rerank": {"query": "q"}});
        let p = prepare(body, Endpoint::SearchGroups, &on(), None, None).unwrap();
        assert_eq!(p.body["limit"], 25);
        assert_eq!(p.body["group_size"], 2);
        // the Query API defaults: limit 10 groups of 3
        let p = prepare(
            json!({"group_by": "g"}),
            Endpoint::QueryGroups,
            &on(),
            Some("q"),
            None,
        )
        .unwrap();
        let Decision::Rerank(plan) = &p.searches[0].decision else {
            panic!()
        };
        assert_eq!(
            plan.cut,
            Cut::Groups(GroupWindow {
                limit: 10,
                group_size: 3,
                fetch: 16
            })
        );
        // the legacy search needs its group_size
        let p = prepare(
            json!({"limit": 2}),
            Endpoint::SearchGroups,
            &on(),
            Some("q"),
            None,
        )
        .unwrap();
        assert!(matches!(&p.searches[0].decision, Decision::Skip(r) if r.contains("group_size")));
    }

    #[test]
    fn header_directive_applies_unless_the_body_says_otherwise() {
        let h = Directive {
            pool: Some(7),
            enabled: Some(false),
            ..Default::default()
        };
        let body = json!({"searches": [
            {"vector": [1.0], "limit": 2},
            {"vector": [1.0], "limit": 2, "rerank": {"enabled": true}}
        ]});
        let p = prepare(body, Endpoint::RecommendBatch, &on(), Some("q"), Some(&h)).unwrap();
        assert_eq!(p.searches[0].decision, Decision::Disabled);
        let Decision::Rerank(plan) = &p.searches[1].decision else {
            panic!()
        };
        assert_eq!(plan.cut.fetch(), 7);
    }

    #[test]
    fn f32_scores_print_short() {
        assert_eq!(f32_json(0.99).to_string(), "0.99");
        assert_eq!(f32_json(0.99248314).to_string(), "0.99248314");
        assert_eq!(f32_json(f32::NAN), Value::Null);
    }

    #[test]
    fn marker_single_and_batch() {
        let a = Outcome {
            model: Some("m".into()),
            candidates: 4,
            ..Outcome::not_applied(RerankStatus::Applied, None)
        };
        let s = Outcome::not_applied(RerankStatus::Skipped, Some("why".into()));
        let m = marker(std::slice::from_ref(&a), Endpoint::Query, 0.1);
        assert_eq!(m["status"], "applied");
        assert_eq!(m["model"], "m");
        assert!(m.get("reason").is_none());
        let m = marker(&[a, s], Endpoint::QueryBatch, 0.1);
        assert_eq!(m["status"], "applied");
        assert_eq!(m["searches"][1]["reason"], "why");
        assert_eq!(m["candidates"], 4);
    }
}
