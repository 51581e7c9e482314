//! Qdrant REST JSON shapes: rewriting a search body and cutting its answer back.
//! Pure functions over `serde_json::Value`; the handler does the I/O.

use serde_json::{json, Map, Value};

use crate::config::CollectionSettings;
use crate::engine::Outcome;
use crate::plan::payload::{restore_point, rewrite, Restore};
use crate::plan::query_text::{pick, take_directive};
use crate::plan::{decide, Decision, RerankStatus, SearchInput};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /collections/{c}/points/search` → `result: [point]`
    Search,
    /// `POST .../points/search/batch` → `result: [[point]]`
    SearchBatch,
    /// `POST .../points/query` → `result: {points: [point]}`
    Query,
    /// `POST .../points/query/batch` → `result: [{points: [point]}]`
    QueryBatch,
}

impl Endpoint {
    pub fn route(self) -> &'static str {
        match self {
            Endpoint::Search => "search",
            Endpoint::SearchBatch => "search_batch",
            Endpoint::Query => "query",
            Endpoint::QueryBatch => "query_batch",
        }
    }

    pub fn is_batch(self) -> bool {
        matches!(self, Endpoint::SearchBatch | Endpoint::QueryBatch)
    }

    /// Qdrant's default when `limit` is absent (the legacy search requires one).
    fn default_limit(self) -> Option<u64> {
        match self {
            Endpoint::Query | Endpoint::QueryBatch => Some(10),
            Endpoint::Search | Endpoint::SearchBatch => None,
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
) -> Result<Prepared, PrepareError> {
    let mut changed = false;
    let mut searches = Vec::new();
    for search in searches_mut(&mut body, ep).ok_or(PrepareError::NotOurs)? {
        let directive = take_directive(search).map_err(PrepareError::BadRequest)?;
        changed |= directive.is_some();
        let query = pick(header_query, directive.as_ref(), search);
        let (offset, limit) = match (number(search, "offset"), number(search, "limit")) {
            (Ok(o), Ok(l)) => (o, l.or(ep.default_limit())),
            _ => (None, None), // invalid numbers: Qdrant will say why
        };
        let mut decision = decide(SearchInput {
            settings,
            query: query.as_deref(),
            directive: directive.as_ref(),
            offset,
            limit,
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
                    search.insert("limit".into(), Value::from(plan.window.fetch));
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

/// The point list of search `i` in a `result` of this endpoint's shape.
pub fn points_mut(result: &mut Value, ep: Endpoint, i: usize) -> Option<&mut Vec<Value>> {
    let one = match ep {
        Endpoint::Search | Endpoint::Query if i == 0 => result,
        Endpoint::Search | Endpoint::Query => return None,
        Endpoint::SearchBatch | Endpoint::QueryBatch => result.get_mut(i)?,
    };
    match ep {
        Endpoint::Query | Endpoint::QueryBatch => one.get_mut("points")?.as_array_mut(),
        Endpoint::Search | Endpoint::SearchBatch => one.as_array_mut(),
    }
}

/// Replaces `points` with the outcome's order and scores, payloads as the client asked.
pub fn apply(points: &mut Vec<Value>, outcome: &Outcome, restore: &Restore) {
    let mut taken: Vec<Option<Value>> = std::mem::take(points).into_iter().map(Some).collect();
    for r in &outcome.ranked {
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
    use crate::plan::{Ranked, Window};

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
        let p = prepare(body, Endpoint::Search, &on(), None).unwrap();
        assert!(p.changed);
        assert_eq!(
            p.body,
            json!({"vector": [1.0], "limit": 50, "with_payload": ["title", "text"]})
        );
        let Decision::Rerank(plan) = &p.searches[0].decision else {
            panic!()
        };
        assert_eq!(
            plan.window,
            Window {
                offset: 2,
                limit: 3,
                fetch: 50
            }
        );
        assert_eq!(
            p.searches[0].restore,
            Restore::RemovePaths(vec!["text".into()])
        );
    }

    #[test]
    fn query_api_defaults_limit_to_ten() {
        let body = json!({"query": {"text": "capital", "model": "m"}});
        let p = prepare(body, Endpoint::Query, &on(), None).unwrap();
        let Decision::Rerank(plan) = &p.searches[0].decision else {
            panic!()
        };
        assert_eq!(plan.window.limit, 10);
        assert_eq!(plan.query, "capital");
        assert_eq!(p.body["query"], json!({"text": "capital", "model": "m"}));
    }

    #[test]
    fn no_text_leaves_body_unchanged() {
        let body = json!({"vector": [1.0], "limit": 3});
        let p = prepare(body.clone(), Endpoint::Search, &on(), None).unwrap();
        assert!(!p.changed);
        assert_eq!(p.body, body);
        assert!(matches!(p.searches[0].decision, Decision::Skip(_)));
    }

    #[test]
    fn disabled_directive_is_stripped_only() {
        let body = json!({"vector": [1.0], "limit": 3, "rerank": {"enabled": false}});
        let p = prepare(body, Endpoint::Search, &on(), Some("q")).unwrap();
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
        let p = prepare(body, Endpoint::SearchBatch, &on(), Some("hdr")).unwrap();
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
        let p = prepare(body.clone(), Endpoint::Query, &on(), Some("q")).unwrap();
        assert!(matches!(p.searches[0].decision, Decision::Skip(_)));
        assert_eq!(p.body, body);
    }

    #[test]
    fn bodies_we_do_not_understand() {
        assert_eq!(
            prepare(json!([1]), Endpoint::Search, &on(), None).unwrap_err(),
            PrepareError::NotOurs
        );
        assert_eq!(
            prepare(json!({"searches": 3}), Endpoint::QueryBatch, &on(), None).unwrap_err(),
            PrepareError::NotOurs
        );
        assert!(matches!(
            prepare(
                json!({"rerank": {"pool": -3}}),
                Endpoint::Search,
                &on(),
                None
            )
            .unwrap_err(),
            PrepareError::BadRequest(_)
        ));
    }

    #[test]
    fn points_in_every_shape() {
        let mut r = json!([{"id": 1}]);
        assert_eq!(points_mut(&mut r, Endpoint::Search, 0).unwrap().len(), 1);
        assert!(points_mut(&mut r, Endpoint::Search, 1).is_none());
        let mut r = json!({"points": [{"id": 1}, {"id": 2}]});
        assert_eq!(points_mut(&mut r, Endpoint::Query, 0).unwrap().len(), 2);
        let mut r = json!([[{"id": 1}], [{"id": 2}, {"id": 3}]]);
        assert_eq!(
            points_mut(&mut r, Endpoint::SearchBatch, 1).unwrap().len(),
            2
        );
        let mut r = json!([{"points": []}, {"points": [{"id": 3}]}]);
        assert_eq!(
            points_mut(&mut r, Endpoint::QueryBatch, 1).unwrap().len(),
            1
        );
    }

    #[test]
    fn apply_orders_scores_and_restores() {
        let mut pts = vec![
            json!({"id": 1, "version": 1, "score": 0.9, "payload": {"text": "a"}}),
            json!({"id": 2, "version": 1, "score": 0.8, "payload": {"text": "b"}}),
            json!({"id": 3, "version": 1, "score": 0.7}),
        ];
        let outcome = Outcome {
            ranked: vec![
                Ranked {
                    index: 1,
                    score: Some(0.99),
                },
                Ranked {
                    index: 2,
                    score: None,
                },
            ],
            ..Outcome::not_applied(RerankStatus::Applied, None)
        };
        apply(&mut pts, &outcome, &Restore::DropPayload);
        assert_eq!(
            pts,
            vec![
                json!({"id": 2, "version": 1, "score": 0.99}),
                json!({"id": 3, "version": 1, "score": 0.7})
            ]
        );
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
