//! Filters: `must` / `should` / `must_not` / `min_should` over field conditions (`match` value /
//! any / except / text / phrase, `range`, `values_count`, `is_empty`, `is_null`), `has_id`,
//! `has_vector`, `nested` and nested filters.

use serde_json::Value;

use super::errors::{ApiError, ApiResult};
use super::payload::{raw_values, values};
use super::store::Point;
use super::types::{Filter, PointId};

#[derive(Debug, Clone, Default)]
pub struct CFilter {
    must: Vec<Cond>,
    should: Vec<Cond>,
    must_not: Vec<Cond>,
    min_should: Option<(Vec<Cond>, usize)>,
}

#[derive(Debug, Clone)]
enum Cond {
    Field { key: String, check: FieldCheck },
    IsEmpty(String),
    IsNull(String),
    HasId(Vec<PointId>),
    HasVector(String),
    Nested { key: String, filter: Box<CFilter> },
    Filter(Box<CFilter>),
}

#[derive(Debug, Clone)]
enum FieldCheck {
    Value(Value),
    Any(Vec<Value>),
    Except(Vec<Value>),
    Text(String),
    TextAny(String),
    Range(Range),
    ValuesCount(Range),
    IsEmpty(bool),
    IsNull(bool),
    /// geo conditions and anything else the double does not evaluate: never matches
    Never,
}

#[derive(Debug, Clone, Default)]
struct Range {
    gt: Option<f64>,
    gte: Option<f64>,
    lt: Option<f64>,
    lte: Option<f64>,
}

impl Range {
    fn parse(v: &Value) -> Range {
        let g = |k: &str| v.get(k).and_then(Value::as_f64);
        Range {
            gt: g("gt"),
            gte: g("gte"),
            lt: g("lt"),
            lte: g("lte"),
        }
    }

    fn contains(&self, x: f64) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
    }
}

fn bad_condition() -> ApiError {
    ApiError::format("data did not match any variant of untagged enum Condition")
}

pub fn compile(filter: &Filter) -> ApiResult<CFilter> {
    let list = |c: &Option<super::types::OneOrMany<Value>>| -> ApiResult<Vec<Cond>> {
        c.clone()
            .map(|c| c.into_vec())
            .unwrap_or_default()
            .iter()
            .map(compile_cond)
            .collect()
    };
    let min_should = match &filter.min_should {
        None | Some(Value::Null) => None,
        Some(v) => {
            let conds = v
                .get("conditions")
                .and_then(Value::as_array)
                .ok_or_else(bad_condition)?;
            let n = v
                .get("min_count")
                .and_then(Value::as_u64)
                .ok_or_else(bad_condition)?;
            let conds = conds
                .iter()
                .map(compile_cond)
                .collect::<ApiResult<Vec<_>>>()?;
            Some((conds, n as usize))
        }
    };
    Ok(CFilter {
        must: list(&filter.must)?,
        should: list(&filter.should)?,
        must_not: list(&filter.must_not)?,
        min_should,
    })
}

pub fn compile_opt(filter: Option<&Filter>) -> ApiResult<Option<CFilter>> {
    filter.map(compile).transpose()
}

fn key_of(v: &Value) -> ApiResult<String> {
    v.get("key")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(bad_condition)
}

fn compile_cond(v: &Value) -> ApiResult<Cond> {
    let obj = v.as_object().ok_or_else(bad_condition)?;
    if let Some(key) = obj.get("key") {
        let key = key.as_str().ok_or_else(bad_condition)?.to_string();
        return Ok(Cond::Field {
            key,
            check: compile_field(obj)?,
        });
    }
    if let Some(x) = obj.get("is_empty") {
        return Ok(Cond::IsEmpty(key_of(x)?));
    }
    if let Some(x) = obj.get("is_null") {
        return Ok(Cond::IsNull(key_of(x)?));
    }
    if let Some(x) = obj.get("has_id") {
        let ids: Vec<PointId> = serde_json::from_value(x.clone()).map_err(ApiError::format)?;
        return Ok(Cond::HasId(ids));
    }
    if let Some(x) = obj.get("has_vector") {
        return Ok(Cond::HasVector(
            x.as_str().ok_or_else(bad_condition)?.to_string(),
        ));
    }
    if let Some(x) = obj.get("nested") {
        let key = key_of(x)?;
        let f: Filter = serde_json::from_value(x.get("filter").cloned().unwrap_or(Value::Null))
            .map_err(ApiError::format)?;
        return Ok(Cond::Nested {
            key,
            filter: Box::new(compile(&f)?),
        });
    }
    let f: Filter = serde_json::from_value(v.clone()).map_err(ApiError::format)?;
    Ok(Cond::Filter(Box::new(compile(&f)?)))
}

fn compile_field(obj: &serde_json::Map<String, Value>) -> ApiResult<FieldCheck> {
    let present = |k: &str| obj.get(k).filter(|v| !v.is_null());
    if let Some(m) = present("match") {
        let m = m.as_object().ok_or_else(bad_condition)?;
        let arr = |v: &Value| v.as_array().cloned().ok_or_else(bad_condition);
        return Ok(if let Some(v) = m.get("value") {
            FieldCheck::Value(v.clone())
        } else if let Some(v) = m.get("any") {
            FieldCheck::Any(arr(v)?)
        } else if let Some(v) = m.get("except") {
            FieldCheck::Except(arr(v)?)
        } else if let Some(v) = m.get("text").or_else(|| m.get("phrase")) {
            FieldCheck::Text(v.as_str().ok_or_else(bad_condition)?.to_string())
        } else if let Some(v) = m.get("text_any") {
            FieldCheck::TextAny(v.as_str().ok_or_else(bad_condition)?.to_string())
        } else {
            return Err(bad_condition());
        });
    }
    if let Some(r) = present("range") {
        return Ok(FieldCheck::Range(Range::parse(r)));
    }
    if let Some(r) = present("values_count") {
        return Ok(FieldCheck::ValuesCount(Range::parse(r)));
    }
    if let Some(b) = present("is_empty").and_then(Value::as_bool) {
        return Ok(FieldCheck::IsEmpty(b));
    }
    if let Some(b) = present("is_null").and_then(Value::as_bool) {
        return Ok(FieldCheck::IsNull(b));
    }
    if ["geo_bounding_box", "geo_radius", "geo_polygon"]
        .iter()
        .any(|k| present(k).is_some())
    {
        return Ok(FieldCheck::Never);
    }
    Err(bad_condition())
}

/// JSON equality where `1` and `1.0` are equal.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

impl CFilter {
    pub fn matches(&self, point: &Point) -> bool {
        self.matches_in(point, &point.payload)
    }

    fn matches_in(&self, point: &Point, payload: &super::types::Payload) -> bool {
        let ok = |c: &Cond| c.matches(point, payload);
        self.must.iter().all(ok)
            && !self.must_not.iter().any(ok)
            && (self.should.is_empty() || self.should.iter().any(ok))
            && self
                .min_should
                .as_ref()
                .is_none_or(|(conds, n)| conds.iter().filter(|c| ok(c)).count() >= *n)
    }
}

impl Cond {
    fn matches(&self, point: &Point, payload: &super::types::Payload) -> bool {
        match self {
            Cond::Field { key, check } => check.matches(payload, key),
            Cond::IsEmpty(key) => values(payload, key).iter().all(|v| v.is_null()),
            Cond::IsNull(key) => is_null(payload, key),
            Cond::HasId(ids) => ids.contains(&point.id),
            Cond::HasVector(name) => point.vectors.contains_key(name),
            Cond::Nested { key, filter } => values(payload, key).iter().any(|v| match v {
                Value::Object(m) => filter.matches_in(point, m),
                _ => false,
            }),
            Cond::Filter(f) => f.matches_in(point, payload),
        }
    }
}

fn is_null(payload: &super::types::Payload, key: &str) -> bool {
    raw_values(payload, key).iter().any(|v| v.is_null())
}

impl FieldCheck {
    fn matches(&self, payload: &super::types::Payload, key: &str) -> bool {
        let vals = values(payload, key);
        match self {
            FieldCheck::Value(x) => vals.iter().any(|v| json_eq(v, x)),
            FieldCheck::Any(xs) => vals.iter().any(|v| xs.iter().any(|x| json_eq(v, x))),
            FieldCheck::Except(xs) => !vals.iter().any(|v| xs.iter().any(|x| json_eq(v, x))),
            FieldCheck::Text(t) => vals
                .iter()
                .any(|v| v.as_str().is_some_and(|s| s.contains(t))),
            FieldCheck::TextAny(t) => vals.iter().any(|v| {
                v.as_str()
                    .is_some_and(|s| t.split_whitespace().any(|w| s.contains(w)))
            }),
            FieldCheck::Range(r) => vals
                .iter()
                .any(|v| v.as_f64().is_some_and(|x| r.contains(x))),
            FieldCheck::ValuesCount(r) => r.contains(vals.len() as f64),
            FieldCheck::IsEmpty(b) => vals.iter().all(|v| v.is_null()) == *b,
            FieldCheck::IsNull(b) => is_null(payload, key) == *b,
            FieldCheck::Never => false,
        }
    }
}

impl CFilter {
    /// Both filters must match (a prefetch inherits its parent's filter).
    pub fn and(a: Option<&CFilter>, b: Option<&CFilter>) -> Option<CFilter> {
        match (a, b) {
            (None, None) => None,
            (Some(x), None) | (None, Some(x)) => Some(x.clone()),
            (Some(x), Some(y)) => Some(CFilter {
                must: vec![
                    Cond::Filter(Box::new(x.clone())),
                    Cond::Filter(Box::new(y.clone())),
                ],
                ..CFilter::default()
            }),
        }
    }
}
