//! The endpoints: parse the body (serde errors first, like actix's extractor), look up the
//! collection, run, and build the `result` value.

use serde_json::{json, Value};

use super::errors::{ApiError, ApiResult};
use super::filter::compile_opt;
use super::ops::{
    CountRequest, CreateCollection, DeletePayload, PointInsertOperations, PointRequest,
    PointsSelector, ScrollRequest, SetPayload,
};
use super::payload::{delete_key, set_at_key, PayloadSel};
use super::query::{
    check_limit, check_lookup_from, convert_prefetches, convert_query, execute, groups_json,
    hits_json, resolve_all, resolve_input, resolve_pairs, Plan, PlanQuery, VRef, DEFAULT_LIMIT,
};
use super::requests::{
    Batch, DiscoverInternal, DiscoverRequest, QueryGroupsRequest, QueryRequest,
    QueryRequestInternal, RecommendGroupsRequest, RecommendInternal, RecommendRequest,
    SearchGroupsRequest, SearchRequest, SearchRequestInternal,
};
use super::search::{group, scan, QVec};
use super::store::{Collection, Store};
use super::types::{parse_body, NamedVectorStruct, PointId, WithPayload, WithVector};

/// What a search-like request asks to return.
struct Out {
    payload: PayloadSel,
    vector: Option<WithVector>,
}

impl Out {
    fn new(p: Option<&WithPayload>, v: Option<WithVector>) -> Out {
        Out {
            payload: PayloadSel::from_request(p, false),
            vector: v,
        }
    }
}

fn named_vector(v: NamedVectorStruct) -> (Option<String>, VRef) {
    match v {
        NamedVectorStruct::Default(d) => (None, VRef::Vec(QVec::Dense(d))),
        NamedVectorStruct::Dense(n) => (Some(n.name), VRef::Vec(QVec::Dense(n.vector))),
        NamedVectorStruct::Sparse(n) => (Some(n.name), VRef::Vec(QVec::Sparse(n.vector))),
    }
}

// ---------------------------------------------------------------- search

fn search_plan(r: SearchRequestInternal) -> ApiResult<(Plan, Out)> {
    let (using, v) = named_vector(r.vector);
    let mut plan = Plan::new(Some(PlanQuery::Nearest(v)), using, check_limit(r.limit)?);
    plan.filter = r.filter;
    plan.score_threshold = r.score_threshold;
    plan.offset = r.offset.unwrap_or(0);
    Ok((plan, Out::new(r.with_payload.as_ref(), r.with_vector)))
}

fn run_list(c: &Collection, plan: &Plan, out: &Out) -> ApiResult<Value> {
    let hits = execute(c, plan, None)?;
    Ok(hits_json(c, &hits, &out.payload, out.vector.as_ref()))
}

pub fn search(store: &Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let req: SearchRequest = parse_body(body)?;
    let (plan, out) = search_plan(req.search)?;
    run_list(store.get(coll)?, &plan, &out)
}

pub fn search_batch(store: &Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let req: Batch<SearchRequest> = parse_body(body)?;
    let plans = req
        .searches
        .into_iter()
        .map(|s| search_plan(s.search))
        .collect::<ApiResult<Vec<_>>>()?;
    let c = store.get(coll)?;
    plans
        .iter()
        .map(|(p, o)| run_list(c, p, o))
        .collect::<ApiResult<Vec<_>>>()
        .map(Value::Array)
}

fn run_groups(
    c: &Collection,
    plan: &Plan,
    out: &Out,
    group_by: &str,
    limit: usize,
    size: usize,
) -> ApiResult<Value> {
    let hits = execute(c, plan, None)?;
    let groups = group(hits, c, group_by, limit, size);
    Ok(groups_json(c, &groups, &out.payload, out.vector.as_ref()))
}

pub fn search_groups(store: &Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let r = parse_body::<SearchGroupsRequest>(body)?.search;
    check_lookup_from(&r.with_lookup)?;
    let (using, v) = named_vector(r.vector);
    let mut plan = Plan::new(Some(PlanQuery::Nearest(v)), using, usize::MAX);
    plan.filter = r.filter;
    plan.score_threshold = r.score_threshold;
    let out = Out::new(r.with_payload.as_ref(), r.with_vector);
    let (limit, size) = (check_limit(r.limit)?, r.group_size);
    run_groups(store.get(coll)?, &plan, &out, &r.group_by, limit, size)
}

// ---------------------------------------------------------------- recommend / discover

fn recommend_plan(r: RecommendInternal) -> ApiResult<(Plan, Out)> {
    check_lookup_from(&r.lookup_from)?;
    let q = PlanQuery::Recommend {
        pos: resolve_all(r.positive)?,
        neg: resolve_all(r.negative)?,
        strategy: r.strategy.unwrap_or_default(),
    };
    let mut plan = Plan::new(Some(q), r.using, check_limit(r.limit)?);
    plan.filter = r.filter;
    plan.score_threshold = r.score_threshold;
    plan.offset = r.offset.unwrap_or(0);
    Ok((plan, Out::new(r.with_payload.as_ref(), r.with_vector)))
}

pub fn recommend(store: &Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let req: RecommendRequest = parse_body(body)?;
    let (plan, out) = recommend_plan(req.recommend)?;
    run_list(store.get(coll)?, &plan, &out)
}

pub fn recommend_batch(store: &Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let req: Batch<RecommendRequest> = parse_body(body)?;
    let plans = req
        .searches
        .into_iter()
        .map(|s| recommend_plan(s.recommend))
        .collect::<ApiResult<Vec<_>>>()?;
    let c = store.get(coll)?;
    plans
        .iter()
        .map(|(p, o)| run_list(c, p, o))
        .collect::<ApiResult<Vec<_>>>()
        .map(Value::Array)
}

pub fn recommend_groups(store: &Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let r = parse_body::<RecommendGroupsRequest>(body)?.recommend;
    check_lookup_from(&r.lookup_from)?;
    check_lookup_from(&r.with_lookup)?;
    let q = PlanQuery::Recommend {
        pos: resolve_all(r.positive)?,
        neg: resolve_all(r.negative)?,
        strategy: r.strategy.unwrap_or_default(),
    };
    let mut plan = Plan::new(Some(q), r.using, usize::MAX);
    plan.filter = r.filter;
    plan.score_threshold = r.score_threshold;
    let out = Out::new(r.with_payload.as_ref(), r.with_vector);
    let (limit, size) = (check_limit(r.limit)?, r.group_size);
    run_groups(store.get(coll)?, &plan, &out, &r.group_by, limit, size)
}

fn discover_plan(r: DiscoverInternal) -> ApiResult<(Plan, Out)> {
    check_lookup_from(&r.lookup_from)?;
    let pairs = resolve_pairs(r.context.unwrap_or_default())?;
    let q = match r.target {
        Some(t) => PlanQuery::Discover {
            target: resolve_input(t)?,
            pairs,
        },
        None => PlanQuery::Context { pairs },
    };
    let mut plan = Plan::new(Some(q), r.using, check_limit(r.limit)?);
    plan.filter = r.filter;
    plan.offset = r.offset.unwrap_or(0);
    Ok((plan, Out::new(r.with_payload.as_ref(), r.with_vector)))
}

pub fn discover(store: &Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let req: DiscoverRequest = parse_body(body)?;
    let (plan, out) = discover_plan(req.discover)?;
    run_list(store.get(coll)?, &plan, &out)
}

pub fn discover_batch(store: &Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let req: Batch<DiscoverRequest> = parse_body(body)?;
    let plans = req
        .searches
        .into_iter()
        .map(|s| discover_plan(s.discover))
        .collect::<ApiResult<Vec<_>>>()?;
    let c = store.get(coll)?;
    plans
        .iter()
        .map(|(p, o)| run_list(c, p, o))
        .collect::<ApiResult<Vec<_>>>()
        .map(Value::Array)
}

// ---------------------------------------------------------------- query API

fn query_plan(r: QueryRequestInternal) -> ApiResult<(Plan, Out)> {
    check_lookup_from(&r.lookup_from)?;
    let plan = Plan {
        prefetch: convert_prefetches(r.prefetch)?,
        query: r.query.map(convert_query).transpose()?,
        using: r.using.unwrap_or_default(),
        filter: r.filter,
        score_threshold: r.score_threshold,
        limit: check_limit(r.limit.unwrap_or(DEFAULT_LIMIT))?,
        offset: r.offset.unwrap_or(0),
    };
    Ok((plan, Out::new(r.with_payload.as_ref(), r.with_vector)))
}

fn run_points(c: &Collection, plan: &Plan, out: &Out) -> ApiResult<Value> {
    Ok(json!({ "points": run_list(c, plan, out)? }))
}

pub fn query(store: &Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let req: QueryRequest = parse_body(body)?;
    let (plan, out) = query_plan(req.query)?;
    run_points(store.get(coll)?, &plan, &out)
}

pub fn query_batch(store: &Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let req: Batch<QueryRequest> = parse_body(body)?;
    let plans = req
        .searches
        .into_iter()
        .map(|s| query_plan(s.query))
        .collect::<ApiResult<Vec<_>>>()?;
    let c = store.get(coll)?;
    plans
        .iter()
        .map(|(p, o)| run_points(c, p, o))
        .collect::<ApiResult<Vec<_>>>()
        .map(Value::Array)
}

pub fn query_groups(store: &Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let r = parse_body::<QueryGroupsRequest>(body)?.query;
    check_lookup_from(&r.lookup_from)?;
    check_lookup_from(&r.with_lookup)?;
    let plan = Plan {
        prefetch: convert_prefetches(r.prefetch)?,
        query: r.query.map(convert_query).transpose()?,
        using: r.using.unwrap_or_default(),
        filter: r.filter,
        score_threshold: r.score_threshold,
        limit: usize::MAX,
        offset: 0,
    };
    let out = Out::new(r.with_payload.as_ref(), r.with_vector);
    let limit = check_limit(r.limit.unwrap_or(DEFAULT_LIMIT))?;
    let size = check_limit(r.group_size.unwrap_or(3))?;
    run_groups(store.get(coll)?, &plan, &out, &r.group_by, limit, size)
}

// ---------------------------------------------------------------- points

pub fn scroll(store: &Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let r = parse_body::<ScrollRequest>(body)?.scroll;
    let c = store.get(coll)?;
    let filter = compile_opt(r.filter.as_ref())?;
    let limit = check_limit(r.limit.unwrap_or(DEFAULT_LIMIT))?;
    let payload = PayloadSel::from_request(r.with_payload.as_ref(), true);
    let vector = r.with_vector.as_ref();
    if let Some(o) = r.order_by {
        let o = o.into_order_by();
        let desc = o.direction == Some(super::requests::Direction::Desc);
        let hits = super::search::order_by(
            c,
            filter.as_ref(),
            &o.key,
            desc,
            o.start_from.as_ref(),
            None,
        );
        let points: Vec<Value> = hits
            .iter()
            .take(limit)
            .map(|h| {
                let mut rec = c.record_json(&c.points[&h.id], &payload, vector);
                rec["order_value"] = h.order_value.clone().unwrap_or(Value::Null);
                rec
            })
            .collect();
        return Ok(json!({ "points": points, "next_page_offset": null }));
    }
    let mut it = scan(c, filter.as_ref()).filter(|p| r.offset.is_none_or(|o| p.id >= o));
    let points: Vec<Value> = it
        .by_ref()
        .take(limit)
        .map(|p| c.record_json(p, &payload, vector))
        .collect();
    let next = it.next().map(|p| p.id.to_json()).unwrap_or(Value::Null);
    Ok(json!({ "points": points, "next_page_offset": next }))
}

pub fn count(store: &Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let r = parse_body::<CountRequest>(body)?.count;
    let c = store.get(coll)?;
    let filter = compile_opt(r.filter.as_ref())?;
    Ok(json!({ "count": scan(c, filter.as_ref()).count() }))
}

pub fn retrieve(store: &Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let r = parse_body::<PointRequest>(body)?.point;
    let c = store.get(coll)?;
    let payload = PayloadSel::from_request(r.with_payload.as_ref(), true);
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for id in r.ids {
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        if let Some(p) = c.points.get(&id) {
            out.push(c.record_json(p, &payload, r.with_vector.as_ref()));
        }
    }
    Ok(Value::Array(out))
}

pub fn get_point(store: &Store, coll: &str, id: &str) -> ApiResult<Value> {
    let c = store.get(coll)?;
    let id = PointId::parse(id)
        .ok_or_else(|| ApiError::wrong_input(format!("Invalid point id: {id}")))?;
    let p = c
        .points
        .get(&id)
        .ok_or_else(|| ApiError::point_not_found(id))?;
    Ok(c.record_json(p, &PayloadSel::All, Some(&WithVector::Bool(true))))
}

fn update_result(op: u64, wait: bool) -> Value {
    json!({ "operation_id": op, "status": if wait { "completed" } else { "acknowledged" } })
}

pub fn upsert(store: &mut Store, coll: &str, body: &[u8], wait: bool) -> ApiResult<Value> {
    let op: PointInsertOperations = parse_body(body)?;
    Ok(update_result(store.get_mut(coll)?.upsert(op)?, wait))
}

fn selected(
    c: &Collection,
    ids: Option<&[PointId]>,
    filter: Option<&super::types::Filter>,
) -> ApiResult<Vec<PointId>> {
    let f = compile_opt(filter)?;
    if ids.is_none() && f.is_none() {
        return Err(ApiError::wrong_input(
            "Either list of point ids or filter must be provided",
        ));
    }
    Ok(c.select(ids, f.as_ref()))
}

fn selector(c: &Collection, s: &PointsSelector) -> ApiResult<Vec<PointId>> {
    match s {
        PointsSelector::Ids { points, .. } => Ok(c.select(Some(points), None)),
        PointsSelector::Filter { filter, .. } => selected(c, None, Some(filter)),
    }
}

pub fn delete_points(store: &mut Store, coll: &str, body: &[u8], wait: bool) -> ApiResult<Value> {
    let s: PointsSelector = parse_body(body)?;
    let c = store.get_mut(coll)?;
    let ids = selector(c, &s)?;
    let op = c.next_op();
    for id in ids {
        c.points.remove(&id);
    }
    Ok(update_result(op, wait))
}

pub fn set_payload(
    store: &mut Store,
    coll: &str,
    body: &[u8],
    wait: bool,
    overwrite: bool,
) -> ApiResult<Value> {
    let r: SetPayload = parse_body(body)?;
    let c = store.get_mut(coll)?;
    let ids = selected(c, r.points.as_deref(), r.filter.as_ref())?;
    let op = c.update_points(&ids, |p| match (&r.key, overwrite) {
        (_, true) => p.payload = r.payload.clone(),
        (Some(k), false) => set_at_key(&mut p.payload, k, &r.payload),
        (None, false) => p.payload.extend(r.payload.clone()),
    });
    Ok(update_result(op, wait))
}

pub fn delete_payload(store: &mut Store, coll: &str, body: &[u8], wait: bool) -> ApiResult<Value> {
    let r: DeletePayload = parse_body(body)?;
    let c = store.get_mut(coll)?;
    let ids = selected(c, r.points.as_deref(), r.filter.as_ref())?;
    let op = c.update_points(&ids, |p| {
        r.keys.iter().for_each(|k| delete_key(&mut p.payload, k))
    });
    Ok(update_result(op, wait))
}

pub fn clear_payload(store: &mut Store, coll: &str, body: &[u8], wait: bool) -> ApiResult<Value> {
    let s: PointsSelector = parse_body(body)?;
    let c = store.get_mut(coll)?;
    let ids = selector(c, &s)?;
    let op = c.update_points(&ids, |p| p.payload.clear());
    Ok(update_result(op, wait))
}

// ---------------------------------------------------------------- collections

pub fn list_collections(store: &Store) -> Value {
    let names: Vec<Value> = store
        .collections
        .keys()
        .map(|n| json!({ "name": n }))
        .collect();
    json!({ "collections": names })
}

pub fn create_collection(store: &mut Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let cfg: CreateCollection = parse_body(body)?;
    if store.collections.contains_key(coll) {
        return Err(ApiError::conflict(format!(
            "Collection `{coll}` already exists!"
        )));
    }
    store
        .collections
        .insert(coll.to_string(), Collection::new(cfg)?);
    Ok(Value::Bool(true))
}

pub fn update_collection(store: &mut Store, coll: &str, body: &[u8]) -> ApiResult<Value> {
    let _: Value = parse_body(body)?;
    store.get(coll)?;
    Ok(Value::Bool(true))
}

pub fn delete_collection(store: &mut Store, coll: &str) -> Value {
    Value::Bool(store.collections.remove(coll).is_some())
}

pub fn collection_info(store: &Store, coll: &str) -> ApiResult<Value> {
    Ok(store.get(coll)?.info())
}

pub fn collection_exists(store: &Store, coll: &str) -> Value {
    json!({ "exists": store.collections.contains_key(coll) })
}
