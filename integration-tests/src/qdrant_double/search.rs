//! Exact (brute-force) scoring over the points of one collection, in `f32` like Qdrant:
//! nearest (Cosine / Dot / Euclid / Manhattan, sparse dot product with optional IDF),
//! recommend (`best_score`, `sum_scores`; `average_vector` is turned into nearest by the caller),
//! discover and context; plus grouping.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::bm25;
use super::errors::{ApiError, ApiResult};
use super::filter::CFilter;
use super::ops::{Distance, Modifier};
use super::payload::values;
use super::store::{normalize, sort_sparse, Collection, Point, Space, StoredVector};
use super::types::{PointId, SparseVector};

/// One hit: what a `ScoredPoint` is built from.
#[derive(Debug, Clone)]
pub struct Scored {
    pub id: PointId,
    pub version: u64,
    pub score: f32,
    pub order_value: Option<Value>,
}

/// A resolved query vector.
#[derive(Debug, Clone)]
pub enum QVec {
    Dense(Vec<f32>),
    Sparse(SparseVector),
}

#[derive(Debug, Clone)]
pub enum Scoring {
    Nearest(QVec),
    BestScore {
        pos: Vec<QVec>,
        neg: Vec<QVec>,
    },
    SumScores {
        pos: Vec<QVec>,
        neg: Vec<QVec>,
    },
    Discover {
        target: QVec,
        pairs: Vec<(QVec, QVec)>,
    },
    Context {
        pairs: Vec<(QVec, QVec)>,
    },
}

pub struct Search<'a> {
    pub coll: &'a Collection,
    pub using: &'a str,
    pub scoring: Scoring,
    pub filter: Option<&'a CFilter>,
    /// ids used as examples: never returned
    pub exclude: Vec<PointId>,
    /// restrict to these points (the results of prefetches)
    pub candidates: Option<&'a HashSet<PointId>>,
    pub score_threshold: Option<f32>,
}

/// Vector space of one vector name, ready to score.
enum Metric {
    Dense(Distance, usize),
    Sparse(Option<HashMap<u32, f32>>),
}

impl Metric {
    fn new(coll: &Collection, using: &str) -> ApiResult<Metric> {
        Ok(match coll.space(using)? {
            Space::Dense(p) => Metric::Dense(p.distance, p.size),
            Space::Sparse(p) => {
                if p.modifier != Some(Modifier::Idf) {
                    return Ok(Metric::Sparse(None));
                }
                // document frequencies over the points that have this vector
                let mut df: HashMap<u32, usize> = HashMap::new();
                let mut n = 0;
                for p in coll.points.values() {
                    if let Some(StoredVector::Sparse(s)) = p.vectors.get(using) {
                        n += 1;
                        for i in &s.indices {
                            *df.entry(*i).or_default() += 1;
                        }
                    }
                }
                let idf = df.into_iter().map(|(i, d)| (i, bm25::idf(d, n))).collect();
                Metric::Sparse(Some(idf))
            }
        })
    }

    /// Validates and preprocesses a query vector (Cosine: normalised; IDF: weights applied).
    fn prepare(&self, v: QVec, using: &str) -> ApiResult<QVec> {
        match (self, v) {
            (Metric::Dense(dist, size), QVec::Dense(d)) => {
                if d.len() != *size {
                    return Err(ApiError::dimension(*size, d.len()));
                }
                Ok(QVec::Dense(if *dist == Distance::Cosine {
                    normalize(&d)
                } else {
                    d
                }))
            }
            (Metric::Sparse(idf), QVec::Sparse(s)) => {
                let mut s = sort_sparse(&s);
                if let Some(idf) = idf {
                    for (i, v) in s.indices.iter().zip(s.values.iter_mut()) {
                        *v *= idf.get(i).copied().unwrap_or(0.0);
                    }
                }
                Ok(QVec::Sparse(s))
            }
            (Metric::Dense(..), QVec::Sparse(_)) => Err(ApiError::wrong_input(format!(
                "Conversion between sparse and regular vectors failed for vector `{using}`"
            ))),
            (Metric::Sparse(_), QVec::Dense(_)) => Err(ApiError::wrong_input(format!(
                "Conversion between sparse and regular vectors failed for vector `{using}`"
            ))),
        }
    }

    /// Internal similarity: higher is better. `None`: sparse vectors without a common index.
    fn sim(&self, q: &QVec, v: &StoredVector) -> Option<f32> {
        match (self, q, v) {
            (Metric::Dense(dist, _), QVec::Dense(q), StoredVector::Dense(v)) => Some(match dist {
                Distance::Cosine | Distance::Dot => {
                    q.iter().zip(v).fold(0.0, |acc, (a, b)| acc + a * b)
                }
                Distance::Euclid => -q
                    .iter()
                    .zip(v)
                    .fold(0.0, |acc, (a, b)| acc + (a - b) * (a - b)),
                Distance::Manhattan => {
                    -q.iter().zip(v).fold(0.0, |acc, (a, b)| acc + (a - b).abs())
                }
            }),
            (Metric::Sparse(_), QVec::Sparse(q), StoredVector::Sparse(v)) => sparse_dot(q, v),
            _ => None,
        }
    }

    /// External score of a nearest-neighbour search (distances for Euclid / Manhattan).
    fn postprocess(&self, s: f32) -> f32 {
        match self {
            Metric::Dense(Distance::Euclid, _) => s.abs().sqrt(),
            Metric::Dense(Distance::Manhattan, _) => s.abs(),
            _ => s,
        }
    }

    /// Threshold in internal terms.
    fn preprocess_threshold(&self, t: f32) -> f32 {
        match self {
            Metric::Dense(Distance::Euclid, _) => -(t * t),
            Metric::Dense(Distance::Manhattan, _) => -t,
            _ => t,
        }
    }
}

fn sparse_dot(q: &SparseVector, v: &SparseVector) -> Option<f32> {
    let mut score = 0.0f32;
    let mut any = false;
    for (i, qv) in q.indices.iter().zip(&q.values) {
        if let Ok(pos) = v.indices.binary_search(i) {
            score += qv * v.values[pos];
            any = true;
        }
    }
    any.then_some(score)
}

/// `0.5 * (x / (1 + |x|) + 1)`: Qdrant's scaled fast sigmoid used by discovery.
fn scaled_fast_sigmoid(x: f32) -> f32 {
    0.5 * (x / (1.0 + x.abs()) + 1.0)
}

/// Scores every eligible point; best first. Ties keep id order.
pub fn search(s: Search<'_>) -> ApiResult<Vec<Scored>> {
    let metric = Metric::new(s.coll, s.using)?;
    let prep = |v: QVec| metric.prepare(v, s.using);
    let prep_all = |vs: Vec<QVec>| vs.into_iter().map(prep).collect::<ApiResult<Vec<_>>>();
    let prep_pairs = |ps: Vec<(QVec, QVec)>| {
        ps.into_iter()
            .map(|(a, b)| Ok((prep(a)?, prep(b)?)))
            .collect::<ApiResult<Vec<_>>>()
    };
    let scoring = match s.scoring {
        Scoring::Nearest(q) => Scoring::Nearest(prep(q)?),
        Scoring::BestScore { pos, neg } => Scoring::BestScore {
            pos: prep_all(pos)?,
            neg: prep_all(neg)?,
        },
        Scoring::SumScores { pos, neg } => Scoring::SumScores {
            pos: prep_all(pos)?,
            neg: prep_all(neg)?,
        },
        Scoring::Discover { target, pairs } => Scoring::Discover {
            target: prep(target)?,
            pairs: prep_pairs(pairs)?,
        },
        Scoring::Context { pairs } => Scoring::Context {
            pairs: prep_pairs(pairs)?,
        },
    };
    let threshold = s.score_threshold.map(|t| metric.preprocess_threshold(t));
    let mut hits: Vec<Scored> = Vec::new();
    for p in s.coll.points.values() {
        if s.exclude.contains(&p.id)
            || s.candidates.is_some_and(|c| !c.contains(&p.id))
            || s.filter.is_some_and(|f| !f.matches(p))
        {
            continue;
        }
        let Some(v) = p.vectors.get(s.using) else {
            continue;
        };
        let Some(score) = score_point(&metric, &scoring, v) else {
            continue;
        };
        if threshold.is_some_and(|t| score < t) {
            continue;
        }
        hits.push(Scored {
            id: p.id,
            version: p.version,
            score,
            order_value: None,
        });
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    if matches!(scoring, Scoring::Nearest(_)) {
        for h in &mut hits {
            h.score = metric.postprocess(h.score);
        }
    }
    Ok(hits)
}

fn score_point(metric: &Metric, scoring: &Scoring, v: &StoredVector) -> Option<f32> {
    let sim = |q: &QVec| metric.sim(q, v).unwrap_or(0.0);
    match scoring {
        Scoring::Nearest(q) => metric.sim(q, v),
        Scoring::BestScore { pos, neg } => {
            let best = |xs: &[QVec]| xs.iter().map(sim).fold(f32::NEG_INFINITY, f32::max);
            let (p, n) = (best(pos), best(neg));
            Some(if p > n { p } else { -(n * n) })
        }
        Scoring::SumScores { pos, neg } => {
            Some(pos.iter().map(sim).sum::<f32>() - neg.iter().map(sim).sum::<f32>())
        }
        Scoring::Discover { target, pairs } => {
            let rank: i32 = pairs
                .iter()
                .map(|(p, n)| if sim(p) > sim(n) { 1 } else { -1 })
                .sum();
            Some(rank as f32 + scaled_fast_sigmoid(sim(target)))
        }
        Scoring::Context { pairs } => Some(
            pairs
                .iter()
                .map(|(p, n)| (sim(p) - sim(n) - f32::EPSILON).min(0.0))
                .sum(),
        ),
    }
}

/// Groups hits (best first) by the payload values at `group_by`: at most `limit` groups, each
/// with at most `group_size` hits, groups ordered by their best hit.
pub fn group(
    hits: Vec<Scored>,
    coll: &Collection,
    group_by: &str,
    limit: usize,
    group_size: usize,
) -> Vec<(Value, Vec<Scored>)> {
    let mut groups: Vec<(Value, Vec<Scored>)> = Vec::new();
    for hit in hits {
        let Some(point) = coll.points.get(&hit.id) else {
            continue;
        };
        let mut keys: Vec<Value> = Vec::new();
        for v in values(&point.payload, group_by) {
            let ok = v.is_string() || v.is_i64() || v.is_u64();
            if ok && !keys.contains(v) {
                keys.push(v.clone());
            }
        }
        for key in keys {
            match groups.iter().position(|(k, _)| *k == key) {
                Some(i) if groups[i].1.len() < group_size => groups[i].1.push(hit.clone()),
                Some(_) => {}
                None if groups.len() < limit => groups.push((key, vec![hit.clone()])),
                None => {}
            }
        }
        if groups.len() >= limit && groups.iter().all(|(_, m)| m.len() >= group_size) {
            break;
        }
    }
    groups
}

/// Points in id order (scroll, query without `query`).
pub fn scan<'a>(
    coll: &'a Collection,
    filter: Option<&'a CFilter>,
) -> impl Iterator<Item = &'a Point> {
    coll.points
        .values()
        .filter(move |p| filter.is_none_or(|f| f.matches(p)))
}

/// Orders points by a payload value (`order_by`); points without a numeric/string value skipped.
pub fn order_by(
    coll: &Collection,
    filter: Option<&CFilter>,
    key: &str,
    desc: bool,
    start_from: Option<&Value>,
    candidates: Option<&HashSet<PointId>>,
) -> Vec<Scored> {
    let mut rows: BTreeMap<(OrdKey, PointId), (u64, Value)> = BTreeMap::new();
    for p in scan(coll, filter).filter(|p| candidates.is_none_or(|c| c.contains(&p.id))) {
        let vals = values(&p.payload, key);
        let best = vals
            .iter()
            .filter_map(|v| OrdKey::of(v).map(|k| (k, (*v).clone())))
            .reduce(|a, b| if (b.0 > a.0) == desc { b } else { a });
        if let Some((k, v)) = best {
            let keep =
                start_from
                    .and_then(OrdKey::of)
                    .is_none_or(|s| if desc { k <= s } else { k >= s });
            if keep {
                rows.insert((k, p.id), (p.version, v));
            }
        }
    }
    let mut out: Vec<Scored> = rows
        .into_iter()
        .map(|((k, id), (version, v))| Scored {
            id,
            version,
            score: match k {
                OrdKey::Num(x) => x as f32,
                OrdKey::Str(_) => 0.0,
            },
            order_value: Some(v),
        })
        .collect();
    if desc {
        out.reverse();
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum OrdKey {
    Num(f64),
    Str(String),
}

impl Eq for OrdKey {}

impl PartialOrd for OrdKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Numbers before strings; numbers by value, strings lexicographically.
impl Ord for OrdKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (self, other) {
            (OrdKey::Num(a), OrdKey::Num(b)) => a.total_cmp(b),
            (OrdKey::Str(a), OrdKey::Str(b)) => a.cmp(b),
            (OrdKey::Num(_), OrdKey::Str(_)) => Ordering::Less,
            (OrdKey::Str(_), OrdKey::Num(_)) => Ordering::Greater,
        }
    }
}

impl OrdKey {
    fn of(v: &Value) -> Option<OrdKey> {
        match v {
            Value::Number(n) => n.as_f64().map(OrdKey::Num),
            Value::String(s) => Some(OrdKey::Str(s.clone())),
            _ => None,
        }
    }
}
