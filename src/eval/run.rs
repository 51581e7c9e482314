//! Runs the queries against Qdrant through the proxy's own planning
//! ([`crate::transport::rest::body::prepare`], which calls [`crate::plan::decide`]) and
//! rerank step ([`crate::engine::Engine::rerank_request`]), and collects per-query
//! rankings for each configuration.

use std::collections::HashSet;

use axum::body::Bytes;
use serde_json::{json, Map, Value};

use super::input::{id_text, Qrels, Query};
use super::progress::Progress;
use crate::config::CollectionSettings;
use crate::plan::{rank, Decision, Window};
use crate::state::AppState;
use crate::transport::rest::body::{candidates, prepare, Endpoint};

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct Options {
    pub collection: String,
    pub pools: Vec<usize>,
    pub rerankers: Vec<String>,
    pub k: usize,
}

/// One reranked configuration's rankings, aligned with the evaluated queries.
#[derive(Debug, Clone)]
pub struct ConfigRun {
    pub reranker: String,
    pub pool: usize,
    pub rankings: Vec<Vec<String>>,
    /// Seconds in the rerank step, for each query that was reranked.
    pub latencies: Vec<f64>,
    /// Queries answered in Qdrant's order (skipped or failed open), with why.
    pub not_reranked: Vec<(String, String)>,
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// Evaluated queries (those with at least one judgement), in file order.
    pub queries: Vec<String>,
    /// Qdrant's own order, down to the deepest pool.
    pub qdrant: Vec<Vec<String>>,
    pub configs: Vec<ConfigRun>,
}

/// How the inputs fit together; nothing here stops a run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct InputCheck {
    pub queries_in_file: usize,
    /// Queries with no judgement at all: not evaluated.
    pub queries_without_qrels: usize,
    /// Query ids in the qrels that the queries file lacks.
    pub qrels_unknown_queries: usize,
    /// Judged point ids that the collection does not hold.
    pub qrels_unknown_points: usize,
    /// A few of the unknown ids, for the report.
    pub unknown_examples: Vec<String>,
}

pub fn check_queries(queries: &[Query], qrels: &Qrels) -> InputCheck {
    let ids: HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
    let unknown: Vec<&String> = qrels.keys().filter(|q| !ids.contains(q.as_str())).collect();
    InputCheck {
        queries_in_file: queries.len(),
        queries_without_qrels: queries
            .iter()
            .filter(|q| !qrels.contains_key(&q.id))
            .count(),
        qrels_unknown_queries: unknown.len(),
        unknown_examples: unknown
            .iter()
            .take(5)
            .map(|q| format!("query {q}"))
            .collect(),
        ..Default::default()
    }
}

/// POSTs a JSON body to Qdrant; a transport error or a 5xx is retried twice (an
/// evaluation of many queries should not die on one hiccup), a 4xx is final.
async fn post(state: &AppState, path: &str, body: &Value) -> Result<Value, String> {
    let bytes = Bytes::from(serde_json::to_vec(body).expect("json serializes"));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (parts, ()) = http::Request::post(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(())
            .map_err(|e| e.to_string())?
            .into_parts();
        let failure = match state.upstream.call(parts, bytes.clone()).await {
            Ok(answer) if answer.status.is_success() => {
                return serde_json::from_slice(&answer.body)
                    .map_err(|e| format!("Qdrant's answer is not JSON: {e}"))
            }
            Ok(answer) => {
                let why = format!(
                    "Qdrant answered {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                );
                if answer.status.is_client_error() {
                    return Err(why);
                }
                why
            }
            Err(e) => e.to_string(),
        };
        if attempt >= 3 {
            return Err(failure);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500 * attempt)).await;
    }
}

/// Counts judged point ids the collection does not hold (a retrieve by id).
pub async fn check_points(
    state: &AppState,
    collection: &str,
    qrels: &Qrels,
    check: &mut InputCheck,
) -> Result<(), String> {
    let all: std::collections::BTreeSet<&String> = qrels.values().flat_map(|j| j.keys()).collect();
    let mut ids = Vec::new();
    for id in all {
        if let Ok(n) = id.parse::<u64>() {
            ids.push((id, json!(n)));
        } else if id.len() == 36 && id.chars().filter(|c| *c == '-').count() == 4 {
            ids.push((id, json!(id)));
        } else {
            check.qrels_unknown_points += 1;
            if check.unknown_examples.len() < 10 {
                check.unknown_examples.push(format!("point {id}"));
            }
        }
    }
    let path = format!("/collections/{collection}/points");
    for chunk in ids.chunks(1000) {
        let body = json!({
            "ids": chunk.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
            "with_payload": false,
            "with_vector": false,
        });
        let answer = post(state, &path, &body).await?;
        let found: HashSet<String> = answer["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.get("id").and_then(id_text))
                    .collect()
            })
            .unwrap_or_default();
        for (id, _) in chunk {
            if !found.contains(*id) {
                check.qrels_unknown_points += 1;
                if check.unknown_examples.len() < 10 {
                    check.unknown_examples.push(format!("point {id}"));
                }
            }
        }
    }
    Ok(())
}

fn point_ids(result: &Value) -> Result<Vec<String>, String> {
    result
        .get("points")
        .and_then(Value::as_array)
        .ok_or("Qdrant's answer has no result.points")?
        .iter()
        .map(|p| p.get("id").and_then(id_text).ok_or("a point without an id"))
        .collect::<Result<_, _>>()
        .map_err(str::to_string)
}

/// The query's search as the client would send it, asking for `limit` points.
fn client_body(q: &Query, limit: usize) -> Value {
    let mut body: Map<String, Value> = q.search.clone();
    body.insert("limit".into(), json!(limit));
    body.remove("offset");
    Value::Object(body)
}

/// `head` (a reranked pool) followed by the rest of Qdrant's deeper list, so MAP is
/// measured at the same depth for every pool.
fn with_tail(head: Vec<String>, qdrant: &[String]) -> Vec<String> {
    let seen: HashSet<&String> = head.iter().collect();
    let tail: Vec<String> = qdrant
        .iter()
        .filter(|d| !seen.contains(d))
        .cloned()
        .collect();
    head.into_iter().chain(tail).collect()
}

pub async fn run(
    state: &AppState,
    opts: &Options,
    queries: &[Query],
    qrels: &Qrels,
    progress: &mut Progress,
) -> Result<RunOutput, String> {
    let base = state.collection(&opts.collection);
    let depth = opts.pools.iter().copied().max().unwrap_or(0).max(opts.k);
    let path = format!("/collections/{}/points/query", opts.collection);
    let evaluated: Vec<&Query> = queries
        .iter()
        .filter(|q| qrels.contains_key(&q.id))
        .collect();
    let mut out = RunOutput {
        queries: evaluated.iter().map(|q| q.id.clone()).collect(),
        qdrant: Vec::new(),
        configs: Vec::new(),
    };
    for r in &opts.rerankers {
        for &p in &opts.pools {
            out.configs.push(ConfigRun {
                reranker: r.clone(),
                pool: p,
                rankings: Vec::new(),
                latencies: Vec::new(),
                not_reranked: Vec::new(),
            });
        }
    }
    progress.start(evaluated.len());
    for q in &evaluated {
        // Qdrant's own order: the search as sent, to the deepest pool.
        let mut plain = client_body(q, depth);
        if let Some(o) = plain.as_object_mut() {
            o.remove("rerank");
            o.insert("with_payload".into(), json!(false));
        }
        let answer = post(state, &path, &plain)
            .await
            .map_err(|e| format!("query {}: {e}", q.id))?;
        let qdrant = point_ids(&answer["result"]).map_err(|e| format!("query {}: {e}", q.id))?;
        let mut c = 0;
        for &pool in &opts.pools {
            let settings = CollectionSettings {
                enabled: true,
                pool,
                max_pool: base.max_pool.max(pool).max(opts.k),
                // every configuration scores its own candidates: no cache hits
                cache: false,
                // quality is measured whatever the machine: a slow rerank is reported
                // in the latency columns, not turned into a fail-open by the budget
                timeout: base.timeout.max(std::time::Duration::from_secs(120)),
                ..base.clone()
            };
            // The proxy's planning: the client asks for k points, the plan widens to
            // the pool and rewrites the payload selector to fetch the text.
            let prepared = prepare(
                client_body(q, opts.k),
                Endpoint::Query,
                &settings,
                Some(&q.text),
                None,
            )
            .map_err(|e| format!("query {}: cannot plan the search: {e:?}", q.id))?;
            let decision = prepared
                .searches
                .first()
                .map(|s| s.decision.clone())
                .unwrap_or(Decision::Disabled);
            let mut answer = post(state, &path, &prepared.body)
                .await
                .map_err(|e| format!("query {}: {e}", q.id))?;
            let result = &mut answer["result"];
            let ids = point_ids(result).map_err(|e| format!("query {}: {e}", q.id))?;
            let texts = candidates(result, Endpoint::Query, 0, &settings.text_source())
                .map(|(t, _)| t)
                .ok_or_else(|| format!("query {}: Qdrant's answer has no points", q.id))?;
            for r in &opts.rerankers {
                let run = &mut out.configs[c];
                c += 1;
                let Decision::Rerank(plan) = &decision else {
                    let why = match &decision {
                        Decision::Skip(why) => why.clone(),
                        _ => "reranking disabled".into(),
                    };
                    run.not_reranked.push((q.id.clone(), why));
                    run.rankings.push(qdrant.clone());
                    continue;
                };
                let s = CollectionSettings {
                    reranker: r.clone(),
                    rerankers: Vec::new(),
                    ..settings.clone()
                };
                let (outcomes, _) = state
                    .engine
                    .rerank_request(
                        &opts.collection,
                        &s,
                        &[&decision],
                        vec![Some(texts.clone())],
                    )
                    .await
                    .map_err(|e| format!("query {}: reranker {r}: {e}", q.id))?;
                let outcome = &outcomes[0];
                let Some(scores) = outcome.scores.as_deref() else {
                    let why = outcome
                        .reason
                        .clone()
                        .unwrap_or_else(|| outcome.status.as_str().into());
                    run.not_reranked.push((q.id.clone(), why));
                    run.rankings.push(qdrant.clone());
                    continue;
                };
                run.latencies.push(outcome.time);
                let all = Window {
                    offset: 0,
                    limit: ids.len(),
                    fetch: ids.len(),
                };
                let head: Vec<String> = rank(scores, plan.threshold, all)
                    .iter()
                    .map(|r| ids[r.index].clone())
                    .collect();
                run.rankings.push(with_tail(head, &qdrant));
            }
        }
        out.qdrant.push(qdrant);
        progress.step();
    }
    progress.finish();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_qdrant_order_after_the_head() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            with_tail(s(&["c", "a"]), &s(&["a", "b", "c", "d"])),
            s(&["c", "a", "b", "d"])
        );
    }

    #[test]
    fn client_body_sets_limit_and_drops_offset() {
        let q = Query {
            id: "1".into(),
            text: "t".into(),
            search: json!({"using": "bm25", "offset": 5, "limit": 3})
                .as_object()
                .unwrap()
                .clone(),
        };
        assert_eq!(client_body(&q, 10), json!({"using": "bm25", "limit": 10}));
    }

    #[test]
    fn input_check_counts_unknown_and_unjudged() {
        let q = |id: &str| Query {
            id: id.into(),
            text: "t".into(),
            search: Map::new(),
        };
        let mut qrels = Qrels::new();
        qrels.entry("1".into()).or_default().insert("10".into(), 1);
        qrels.entry("9".into()).or_default().insert("10".into(), 1);
        let c = check_queries(&[q("1"), q("2")], &qrels);
        assert_eq!(c.queries_in_file, 2);
        assert_eq!(c.queries_without_qrels, 1);
        assert_eq!(c.qrels_unknown_queries, 1);
        assert_eq!(c.unknown_examples, vec!["query 9"]);
    }
}
