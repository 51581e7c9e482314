//! One execution plan for every search-like endpoint: the query API (prefetch, nearest,
//! recommend, discover, context, order_by, RRF / DBSF fusion, sample, no query) and the legacy
//! search / recommend / discover requests, which are converted into the same plan.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::bm25;
use super::errors::{ApiError, ApiResult};
use super::filter::{compile_opt, CFilter};
use super::fusion::{dbsf, merge, rrf, sample};
use super::payload::PayloadSel;
use super::requests::{Fusion, OrderBy, Prefetch, Query, QueryInterface};
use super::search::{order_by, scan, search, QVec, Scored, Scoring, Search};
use super::store::{f32_json, Collection, StoredVector};
use super::types::{ContextPair, Filter, PointId, RecommendStrategy, VectorInput, WithVector};

pub const DEFAULT_LIMIT: usize = 10;
const DEFAULT_RRF_K: usize = 2;

/// A query vector before ids are looked up.
#[derive(Debug, Clone)]
pub enum VRef {
    Vec(QVec),
    Id(PointId),
}

#[derive(Debug, Clone)]
pub enum PlanQuery {
    Nearest(VRef),
    Recommend {
        pos: Vec<VRef>,
        neg: Vec<VRef>,
        strategy: RecommendStrategy,
    },
    Discover {
        target: VRef,
        pairs: Vec<(VRef, VRef)>,
    },
    Context {
        pairs: Vec<(VRef, VRef)>,
    },
    OrderBy(OrderBy),
    Rrf {
        k: usize,
        weights: Option<Vec<f32>>,
    },
    Dbsf,
    Sample,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub prefetch: Vec<Plan>,
    pub query: Option<PlanQuery>,
    pub using: String,
    pub filter: Option<Filter>,
    pub score_threshold: Option<f32>,
    pub limit: usize,
    pub offset: usize,
}

impl Plan {
    pub fn new(query: Option<PlanQuery>, using: Option<String>, limit: usize) -> Plan {
        Plan {
            prefetch: Vec::new(),
            query,
            using: using.unwrap_or_default(),
            filter: None,
            score_threshold: None,
            limit,
            offset: 0,
        }
    }
}

/// Turns a `VectorInput` into a query vector. Documents are embedded here, before the collection
/// is looked at, like Qdrant's REST layer does inference first: `qdrant/bm25` locally, any other
/// model needs an inference service, which a plain Qdrant does not have (500).
pub fn resolve_input(v: VectorInput) -> ApiResult<VRef> {
    Ok(match v {
        VectorInput::Dense(d) => VRef::Vec(QVec::Dense(d)),
        VectorInput::Sparse(s) => VRef::Vec(QVec::Sparse(s)),
        VectorInput::Id(id) => VRef::Id(id),
        VectorInput::Document(doc) if bm25::is_bm25(&doc) => {
            VRef::Vec(QVec::Sparse(bm25::query_embed(&doc)))
        }
        VectorInput::Document(_) | VectorInput::Inference(_) => {
            return Err(ApiError::inference_not_configured())
        }
        VectorInput::Multi(_) => return Err(ApiError::unsupported("multivector queries")),
    })
}

pub fn resolve_all(vs: Vec<VectorInput>) -> ApiResult<Vec<VRef>> {
    vs.into_iter().map(resolve_input).collect()
}

pub fn resolve_pairs(ps: Vec<ContextPair>) -> ApiResult<Vec<(VRef, VRef)>> {
    ps.into_iter()
        .map(|p| Ok((resolve_input(p.positive)?, resolve_input(p.negative)?)))
        .collect()
}

pub fn check_lookup_from(l: &Option<Value>) -> ApiResult<()> {
    match l {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(ApiError::unsupported("lookup_from")),
    }
}

pub fn check_limit(limit: usize) -> ApiResult<usize> {
    if limit == 0 {
        return Err(ApiError::validation(
            "limit: value 0 invalid, must be 1 or larger",
        ));
    }
    Ok(limit)
}

pub fn convert_query(q: QueryInterface) -> ApiResult<PlanQuery> {
    Ok(match q {
        QueryInterface::Vector(v) => PlanQuery::Nearest(resolve_input(v)?),
        QueryInterface::Query(q) => match q {
            Query::Nearest { nearest, .. } => PlanQuery::Nearest(resolve_input(nearest)?),
            Query::Recommend { recommend } => PlanQuery::Recommend {
                pos: resolve_all(recommend.positive.unwrap_or_default())?,
                neg: resolve_all(recommend.negative.unwrap_or_default())?,
                strategy: recommend.strategy.unwrap_or_default(),
            },
            Query::Discover { discover } => PlanQuery::Discover {
                target: resolve_input(discover.target)?,
                pairs: resolve_pairs(discover.context.map(|c| c.into_vec()).unwrap_or_default())?,
            },
            Query::Context { context } => PlanQuery::Context {
                pairs: resolve_pairs(context.into_vec())?,
            },
            Query::OrderBy { order_by } => PlanQuery::OrderBy(order_by.into_order_by()),
            Query::Fusion {
                fusion: Fusion::Rrf,
            } => PlanQuery::Rrf {
                k: DEFAULT_RRF_K,
                weights: None,
            },
            Query::Fusion {
                fusion: Fusion::Dbsf,
            } => PlanQuery::Dbsf,
            Query::Rrf { rrf } => PlanQuery::Rrf {
                k: rrf.k.unwrap_or(DEFAULT_RRF_K),
                weights: rrf.weights,
            },
            Query::Formula { .. } => return Err(ApiError::unsupported("formula queries")),
            Query::Sample { .. } => PlanQuery::Sample,
        },
    })
}

pub fn convert_prefetches(
    p: Option<super::types::OneOrMany<Box<Prefetch>>>,
) -> ApiResult<Vec<Plan>> {
    p.map(|p| p.into_vec())
        .unwrap_or_default()
        .into_iter()
        .map(|p| convert_prefetch(*p))
        .collect()
}

fn convert_prefetch(p: Prefetch) -> ApiResult<Plan> {
    check_lookup_from(&p.lookup_from)?;
    Ok(Plan {
        prefetch: convert_prefetches(p.prefetch)?,
        query: p.query.map(convert_query).transpose()?,
        using: p.using.unwrap_or_default(),
        filter: p.filter,
        score_threshold: p.score_threshold,
        limit: check_limit(p.limit.unwrap_or(DEFAULT_LIMIT))?,
        offset: 0,
    })
}

/// Runs a plan: prefetches first (inheriting the filter), then the query over their results.
/// Returns hits after threshold, offset and limit.
pub fn execute(coll: &Collection, plan: &Plan, parent: Option<&CFilter>) -> ApiResult<Vec<Scored>> {
    let own = compile_opt(plan.filter.as_ref())?;
    let filter = CFilter::and(own.as_ref(), parent);
    let filter = filter.as_ref();
    let mut threshold_done = false;
    let hits = if !plan.prefetch.is_empty() {
        let lists = plan
            .prefetch
            .iter()
            .map(|p| execute(coll, p, filter))
            .collect::<ApiResult<Vec<_>>>()?;
        let candidates: HashSet<PointId> = lists.iter().flatten().map(|h| h.id).collect();
        match &plan.query {
            None => merge(lists),
            Some(PlanQuery::Rrf { k, weights }) => rrf(&lists, *k, weights.as_deref()),
            Some(PlanQuery::Dbsf) => dbsf(&lists),
            Some(PlanQuery::OrderBy(o)) => run_order_by(coll, filter, o, Some(&candidates)),
            Some(PlanQuery::Sample) => sample(merge(lists)),
            Some(q) => {
                threshold_done = true;
                run_scoring(coll, plan, q, filter, Some(&candidates))?
            }
        }
    } else {
        match &plan.query {
            None => scan(coll, filter)
                .map(|p| Scored {
                    id: p.id,
                    version: 0,
                    score: 1.0,
                    order_value: None,
                })
                .collect(),
            Some(PlanQuery::Rrf { .. } | PlanQuery::Dbsf) => {
                return Err(ApiError::wrong_input("Fusion queries require prefetches"));
            }
            Some(PlanQuery::OrderBy(o)) => run_order_by(coll, filter, o, None),
            Some(PlanQuery::Sample) => sample(
                scan(coll, filter)
                    .map(|p| Scored {
                        id: p.id,
                        version: p.version,
                        score: 1.0,
                        order_value: None,
                    })
                    .collect(),
            ),
            Some(q) => {
                threshold_done = true;
                run_scoring(coll, plan, q, filter, None)?
            }
        }
    };
    let hits = hits
        .into_iter()
        .filter(|h| threshold_done || plan.score_threshold.is_none_or(|t| h.score >= t));
    Ok(hits.skip(plan.offset).take(plan.limit).collect())
}

fn run_order_by(
    coll: &Collection,
    filter: Option<&CFilter>,
    o: &OrderBy,
    candidates: Option<&HashSet<PointId>>,
) -> Vec<Scored> {
    let desc = o.direction == Some(super::requests::Direction::Desc);
    order_by(
        coll,
        filter,
        &o.key,
        desc,
        o.start_from.as_ref(),
        candidates,
    )
}

fn lookup(coll: &Collection, using: &str, id: PointId) -> ApiResult<QVec> {
    let p = coll
        .points
        .get(&id)
        .ok_or_else(|| ApiError::point_not_found(id))?;
    match p.vectors.get(using) {
        Some(StoredVector::Dense(d)) => Ok(QVec::Dense(d.clone())),
        Some(StoredVector::Sparse(s)) => Ok(QVec::Sparse(s.clone())),
        None => {
            coll.space(using)?;
            Err(ApiError::wrong_input(format!(
                "Vector '{using}' not found in point {id}"
            )))
        }
    }
}

fn run_scoring(
    coll: &Collection,
    plan: &Plan,
    q: &PlanQuery,
    filter: Option<&CFilter>,
    candidates: Option<&HashSet<PointId>>,
) -> ApiResult<Vec<Scored>> {
    let using = plan.using.as_str();
    let mut exclude = Vec::new();
    let mut res = |r: &VRef| -> ApiResult<QVec> {
        match r {
            VRef::Vec(v) => Ok(v.clone()),
            VRef::Id(id) => {
                exclude.push(*id);
                lookup(coll, using, *id)
            }
        }
    };
    let scoring = match q {
        PlanQuery::Nearest(r) => Scoring::Nearest(res(r)?),
        PlanQuery::Recommend { pos, neg, strategy } => {
            let pos = pos.iter().map(&mut res).collect::<ApiResult<Vec<_>>>()?;
            let neg = neg.iter().map(&mut res).collect::<ApiResult<Vec<_>>>()?;
            match strategy {
                RecommendStrategy::AverageVector => Scoring::Nearest(average(pos, neg)?),
                RecommendStrategy::BestScore => Scoring::BestScore { pos, neg },
                RecommendStrategy::SumScores => Scoring::SumScores { pos, neg },
            }
        }
        PlanQuery::Discover { target, pairs } => {
            let target = res(target)?;
            let pairs = pairs
                .iter()
                .map(|(a, b)| Ok((res(a)?, res(b)?)))
                .collect::<ApiResult<_>>()?;
            Scoring::Discover { target, pairs }
        }
        PlanQuery::Context { pairs } => {
            let pairs = pairs
                .iter()
                .map(|(a, b)| Ok((res(a)?, res(b)?)))
                .collect::<ApiResult<_>>()?;
            Scoring::Context { pairs }
        }
        _ => unreachable!("not a scoring query"),
    };
    search(Search {
        coll,
        using,
        scoring,
        filter,
        exclude,
        candidates,
        score_threshold: plan.score_threshold,
    })
}

/// `average_vector`: `avg(pos) + avg(pos) - avg(neg)` (just `avg(pos)` without negatives).
fn average(pos: Vec<QVec>, neg: Vec<QVec>) -> ApiResult<QVec> {
    fn avg(vs: &[QVec]) -> ApiResult<Option<Vec<f32>>> {
        let mut sum: Option<Vec<f32>> = None;
        for v in vs {
            let QVec::Dense(d) = v else {
                return Err(ApiError::unsupported(
                    "average_vector recommendations on sparse vectors",
                ));
            };
            match &mut sum {
                None => sum = Some(d.clone()),
                Some(s) => s.iter_mut().zip(d).for_each(|(a, b)| *a += b),
            }
        }
        let n = vs.len() as f32;
        Ok(sum.map(|s| s.into_iter().map(|x| x / n).collect()))
    }
    let p = avg(&pos)?.ok_or_else(|| ApiError::wrong_input("Positive vectors are required"))?;
    Ok(QVec::Dense(match avg(&neg)? {
        None => p,
        Some(n) => p.iter().zip(&n).map(|(p, n)| p + p - n).collect(),
    }))
}

/// `ScoredPoint`: `id, version, score, payload?, vector?, order_value?`.
pub fn scored_json(
    coll: &Collection,
    hit: &Scored,
    payload: &PayloadSel,
    vector: Option<&WithVector>,
) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), hit.id.to_json());
    m.insert("version".into(), hit.version.into());
    m.insert("score".into(), f32_json(hit.score));
    if let Some(p) = coll.points.get(&hit.id) {
        if let Some(pl) = payload.apply(&p.payload) {
            m.insert("payload".into(), pl);
        }
        if let Some(v) = coll.vector_json(p, vector) {
            m.insert("vector".into(), v);
        }
    }
    if let Some(o) = &hit.order_value {
        m.insert("order_value".into(), o.clone());
    }
    Value::Object(m)
}

pub fn hits_json(
    coll: &Collection,
    hits: &[Scored],
    payload: &PayloadSel,
    vector: Option<&WithVector>,
) -> Value {
    Value::Array(
        hits.iter()
            .map(|h| scored_json(coll, h, payload, vector))
            .collect(),
    )
}

pub fn groups_json(
    coll: &Collection,
    groups: &[(Value, Vec<Scored>)],
    payload: &PayloadSel,
    vector: Option<&WithVector>,
) -> Value {
    let groups: Vec<Value> = groups
        .iter()
        .map(|(id, hits)| {
            let mut m = Map::new();
            m.insert("hits".into(), hits_json(coll, hits, payload, vector));
            m.insert("id".into(), id.clone());
            Value::Object(m)
        })
        .collect();
    let mut m = Map::new();
    m.insert("groups".into(), Value::Array(groups));
    Value::Object(m)
}
