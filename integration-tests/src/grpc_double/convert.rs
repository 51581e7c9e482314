//! Conversions between Qdrant's gRPC messages and the REST double's JSON: request messages become
//! the REST bodies a client would have sent for the same operation, and REST results become the
//! gRPC response messages, as a real Qdrant converts between its two APIs.

#![allow(deprecated)] // the deprecated `Vector.data`/`indices` fields are still read

use std::collections::HashMap;

use qdrant_client::qdrant as pb;
use qdrant_client::qdrant::{
    condition::ConditionOneOf, point_id::PointIdOptions, points_selector::PointsSelectorOneOf,
    query::Variant as QueryVariant, r#match::MatchValue, start_from, value::Kind,
    vector::Vector as VectorKind, vector_example::Example, vector_input::Variant as InputVariant,
    vectors::VectorsOptions, vectors_config::Config as VectorsConfigKind,
    with_payload_selector::SelectorOptions as PayloadOptions,
    with_vectors_selector::SelectorOptions as VectorOptions,
};
use serde_json::{json, Map, Number, Value};
use tonic::Status;

pub type CResult<T> = Result<T, Status>;

pub fn bad(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

fn unsupported(what: &str) -> Status {
    bad(format!("qdrant-double (gRPC) does not support {what}"))
}

/// A JSON object under construction.
#[derive(Default)]
pub struct Obj(Map<String, Value>);

impl Obj {
    pub fn new() -> Obj {
        Obj::default()
    }

    pub fn put(&mut self, k: &str, v: impl Into<Value>) -> &mut Obj {
        self.0.insert(k.to_string(), v.into());
        self
    }

    pub fn opt<V: Into<Value>>(&mut self, k: &str, v: Option<V>) -> &mut Obj {
        if let Some(v) = v {
            self.0.insert(k.to_string(), v.into());
        }
        self
    }

    pub fn done(&mut self) -> Value {
        Value::Object(std::mem::take(&mut self.0))
    }
}

// ---------------------------------------------------------------- scalars

/// An `f32` as its shortest round-trip decimal (as Qdrant prints floats).
pub fn f32j(x: f32) -> Value {
    if !x.is_finite() {
        return Value::Null;
    }
    let f: f64 = x.to_string().parse().unwrap_or(f64::from(x));
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn f64j(x: f64) -> Value {
    Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn floats(v: &[f32]) -> Value {
    Value::Array(v.iter().map(|x| f32j(*x)).collect())
}

fn opt_f32(x: Option<f32>) -> Option<Value> {
    x.map(f32j)
}

/// JSON number as `f32` (scores, vector components).
fn as_f32(v: &Value) -> f32 {
    v.as_f64().unwrap_or(0.0) as f32
}

// ---------------------------------------------------------------- payload values

/// A qdrant `Value` as JSON: integers stay integers, doubles stay doubles.
pub fn value_json(v: &pb::Value) -> Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::DoubleValue(d)) => f64j(*d),
        Some(Kind::IntegerValue(i)) => Value::from(*i),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => map_json(&s.fields),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(value_json).collect()),
    }
}

/// A protobuf map of values as a JSON object, keys sorted (protobuf maps have no order).
pub fn map_json(m: &HashMap<String, pb::Value>) -> Value {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    Value::Object(
        keys.into_iter()
            .map(|k| (k.clone(), value_json(&m[k])))
            .collect(),
    )
}

/// JSON as a qdrant `Value`, as Qdrant converts payloads: an integer that fits `i64` is an
/// `integer_value`, any other number a `double_value`.
pub fn json_value(v: &Value) -> pb::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::IntegerValue(i),
            None => Kind::DoubleValue(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(pb::ListValue {
            values: a.iter().map(json_value).collect(),
        }),
        Value::Object(o) => Kind::StructValue(pb::Struct {
            fields: json_map(o),
        }),
    };
    pb::Value { kind: Some(kind) }
}

pub fn json_map(o: &Map<String, Value>) -> HashMap<String, pb::Value> {
    o.iter().map(|(k, v)| (k.clone(), json_value(v))).collect()
}

fn payload_of(v: Option<&Value>) -> HashMap<String, pb::Value> {
    match v {
        Some(Value::Object(o)) => json_map(o),
        _ => HashMap::new(),
    }
}

// ---------------------------------------------------------------- ids

pub fn id_json(id: &pb::PointId) -> CResult<Value> {
    match &id.point_id_options {
        Some(PointIdOptions::Num(n)) => Ok(Value::from(*n)),
        Some(PointIdOptions::Uuid(u)) => Ok(Value::String(u.clone())),
        None => Err(bad("Unable to parse PointId: no point id options")),
    }
}

fn ids_json(ids: &[pb::PointId]) -> CResult<Value> {
    ids.iter()
        .map(id_json)
        .collect::<CResult<Vec<_>>>()
        .map(Value::Array)
}

pub fn json_id(v: &Value) -> Option<pb::PointId> {
    let o = match v {
        Value::Number(n) => PointIdOptions::Num(n.as_u64()?),
        Value::String(s) => PointIdOptions::Uuid(s.clone()),
        _ => return None,
    };
    Some(pb::PointId {
        point_id_options: Some(o),
    })
}

// ---------------------------------------------------------------- filters

pub fn filter_json(f: &pb::Filter) -> CResult<Value> {
    let mut o = Obj::new();
    let list = |cs: &[pb::Condition]| -> CResult<Option<Value>> {
        if cs.is_empty() {
            return Ok(None);
        }
        cs.iter()
            .map(condition_json)
            .collect::<CResult<Vec<_>>>()
            .map(|v| Some(Value::Array(v)))
    };
    o.opt("should", list(&f.should)?);
    o.opt("must", list(&f.must)?);
    o.opt("must_not", list(&f.must_not)?);
    if let Some(ms) = &f.min_should {
        let conds = ms
            .conditions
            .iter()
            .map(condition_json)
            .collect::<CResult<Vec<_>>>()?;
        o.put(
            "min_should",
            json!({"conditions": conds, "min_count": ms.min_count}),
        );
    }
    Ok(o.done())
}

fn opt_filter(f: Option<&pb::Filter>) -> CResult<Option<Value>> {
    f.map(filter_json).transpose()
}

fn geo(p: Option<&pb::GeoPoint>) -> Value {
    let p = p.copied().unwrap_or_default();
    json!({"lon": p.lon, "lat": p.lat})
}

/// A protobuf timestamp as RFC 3339 (UTC).
fn timestamp(t: &qdrant_client::qdrant::DatetimeRange, which: &str) -> Option<Value> {
    let ts = match which {
        "lt" => t.lt.as_ref(),
        "gt" => t.gt.as_ref(),
        "gte" => t.gte.as_ref(),
        _ => t.lte.as_ref(),
    }?;
    Some(Value::String(rfc3339(ts.seconds, ts.nanos)))
}

fn rfc3339(secs: i64, nanos: i32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil-from-days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if nanos > 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{nanos:09}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    }
}

fn field_condition_json(f: &pb::FieldCondition) -> CResult<Value> {
    let mut o = Obj::new();
    o.put("key", f.key.clone());
    if let Some(m) = f.r#match.as_ref().and_then(|m| m.match_value.as_ref()) {
        let mv = match m {
            MatchValue::Keyword(s) => json!({"value": s}),
            MatchValue::Integer(i) => json!({"value": i}),
            MatchValue::Boolean(b) => json!({"value": b}),
            MatchValue::Text(s) => json!({"text": s}),
            MatchValue::Keywords(r) => json!({"any": r.strings}),
            MatchValue::Integers(r) => json!({"any": r.integers}),
            MatchValue::ExceptIntegers(r) => json!({"except": r.integers}),
            MatchValue::ExceptKeywords(r) => json!({"except": r.strings}),
            MatchValue::Phrase(s) => json!({"phrase": s}),
            MatchValue::TextAny(s) => json!({"text_any": s}),
            MatchValue::Prefix(s) => json!({"prefix": s}),
            MatchValue::Substring(s) => json!({"substring": s}),
        };
        o.put("match", mv);
    }
    if let Some(r) = &f.range {
        let mut ro = Obj::new();
        ro.opt("lt", r.lt.map(f64j))
            .opt("gt", r.gt.map(f64j))
            .opt("gte", r.gte.map(f64j))
            .opt("lte", r.lte.map(f64j));
        o.put("range", ro.done());
    }
    if let Some(r) = &f.datetime_range {
        let mut ro = Obj::new();
        for k in ["lt", "gt", "gte", "lte"] {
            ro.opt(k, timestamp(r, k));
        }
        o.put("range", ro.done());
    }
    if let Some(b) = &f.geo_bounding_box {
        o.put(
            "geo_bounding_box",
            json!({"top_left": geo(b.top_left.as_ref()), "bottom_right": geo(b.bottom_right.as_ref())}),
        );
    }
    if let Some(r) = &f.geo_radius {
        o.put(
            "geo_radius",
            json!({"center": geo(r.center.as_ref()), "radius": f32j(r.radius)}),
        );
    }
    if let Some(p) = &f.geo_polygon {
        let line = |l: &pb::GeoLineString| json!({"points": l.points.iter().map(|p| geo(Some(p))).collect::<Vec<_>>()});
        let ext = p
            .exterior
            .as_ref()
            .map(line)
            .unwrap_or(json!({"points": []}));
        o.put(
            "geo_polygon",
            json!({"exterior": ext, "interiors": p.interiors.iter().map(line).collect::<Vec<_>>()}),
        );
    }
    if let Some(c) = &f.values_count {
        let mut co = Obj::new();
        co.opt("lt", c.lt)
            .opt("gt", c.gt)
            .opt("gte", c.gte)
            .opt("lte", c.lte);
        o.put("values_count", co.done());
    }
    o.opt("is_empty", f.is_empty).opt("is_null", f.is_null);
    Ok(o.done())
}

fn condition_json(c: &pb::Condition) -> CResult<Value> {
    Ok(
        match c
            .condition_one_of
            .as_ref()
            .ok_or_else(|| bad("Malformed Condition type"))?
        {
            ConditionOneOf::Field(f) => field_condition_json(f)?,
            ConditionOneOf::IsEmpty(e) => json!({"is_empty": {"key": e.key}}),
            ConditionOneOf::IsNull(e) => json!({"is_null": {"key": e.key}}),
            ConditionOneOf::HasId(h) => json!({"has_id": ids_json(&h.has_id)?}),
            ConditionOneOf::Filter(f) => filter_json(f)?,
            ConditionOneOf::Nested(n) => {
                let f = n
                    .filter
                    .as_ref()
                    .map(filter_json)
                    .transpose()?
                    .unwrap_or(json!({}));
                json!({"nested": {"key": n.key, "filter": f}})
            }
            ConditionOneOf::HasVector(h) => json!({"has_vector": h.has_vector}),
            ConditionOneOf::Slice(_) => return Err(unsupported("slice conditions")),
        },
    )
}

// ---------------------------------------------------------------- selectors

pub fn with_payload_json(w: &pb::WithPayloadSelector) -> CResult<Value> {
    Ok(
        match w
            .selector_options
            .as_ref()
            .ok_or_else(|| bad("No PayloadSelector"))?
        {
            PayloadOptions::Enable(b) => Value::Bool(*b),
            PayloadOptions::Include(i) => json!({"include": i.fields}),
            PayloadOptions::Exclude(e) => json!({"exclude": e.fields}),
        },
    )
}

fn opt_with_payload(w: Option<&pb::WithPayloadSelector>) -> CResult<Option<Value>> {
    w.map(with_payload_json).transpose()
}

pub fn with_vectors_json(w: &pb::WithVectorsSelector) -> Value {
    match &w.selector_options {
        None => Value::Bool(false),
        Some(VectorOptions::Enable(b)) => Value::Bool(*b),
        Some(VectorOptions::Include(s)) => json!(s.names),
    }
}

fn opt_with_vectors(w: Option<&pb::WithVectorsSelector>) -> Option<Value> {
    w.map(with_vectors_json)
}

fn search_params_json(p: &pb::SearchParams) -> Value {
    let mut o = Obj::new();
    o.opt("hnsw_ef", p.hnsw_ef)
        .opt("exact", p.exact)
        .opt("indexed_only", p.indexed_only);
    if let Some(q) = &p.quantization {
        let mut qo = Obj::new();
        qo.opt("ignore", q.ignore)
            .opt("rescore", q.rescore)
            .opt("oversampling", q.oversampling.map(f64j));
        o.put("quantization", qo.done());
    }
    o.done()
}

fn lookup_json(l: &pb::LookupLocation) -> Value {
    let mut o = Obj::new();
    o.put("collection", l.collection_name.clone())
        .opt("vector", l.vector_name.clone());
    o.done()
}

fn with_lookup_json(l: &pb::WithLookup) -> CResult<Value> {
    let mut o = Obj::new();
    o.put("collection", l.collection.clone())
        .opt("with_payload", opt_with_payload(l.with_payload.as_ref())?)
        .opt("with_vectors", opt_with_vectors(l.with_vectors.as_ref()));
    Ok(o.done())
}

fn strategy_json(s: Option<i32>) -> CResult<Option<Value>> {
    s.map(|s| match pb::RecommendStrategy::try_from(s) {
        Ok(pb::RecommendStrategy::AverageVector) => Ok(json!("average_vector")),
        Ok(pb::RecommendStrategy::BestScore) => Ok(json!("best_score")),
        Ok(pb::RecommendStrategy::SumScores) => Ok(json!("sum_scores")),
        Err(_) => Err(bad(format!("Unknown recommend strategy {s}"))),
    })
    .transpose()
}

// ---------------------------------------------------------------- vectors

fn sparse_json(values: &[f32], indices: &[u32]) -> Value {
    json!({"indices": indices, "values": floats(values)})
}

fn multi_json(m: &pb::MultiDenseVector) -> Value {
    Value::Array(m.vectors.iter().map(|d| floats(&d.data)).collect())
}

fn document_json(d: &pb::Document) -> Value {
    let mut o = Obj::new();
    o.put("text", d.text.clone()).put("model", d.model.clone());
    if !d.options.is_empty() {
        o.put("options", map_json(&d.options));
    }
    o.done()
}

fn inference_json(key: &str, v: Option<&pb::Value>, model: &str) -> Value {
    json!({ key: v.map(value_json).unwrap_or(Value::Null), "model": model })
}

/// A `Vector` (upsert, legacy recommend/discover examples) as REST JSON.
pub fn vector_json(v: &pb::Vector) -> CResult<Value> {
    Ok(match &v.vector {
        Some(VectorKind::Dense(d)) => floats(&d.data),
        Some(VectorKind::Sparse(s)) => sparse_json(&s.values, &s.indices),
        Some(VectorKind::MultiDense(m)) => multi_json(m),
        Some(VectorKind::Document(d)) => document_json(d),
        Some(VectorKind::Image(i)) => inference_json("image", i.image.as_ref(), &i.model),
        Some(VectorKind::Object(i)) => inference_json("object", i.object.as_ref(), &i.model),
        None => match (&v.indices, v.vectors_count) {
            (Some(ix), _) => sparse_json(&v.data, &ix.data),
            (None, Some(n)) if n > 1 => {
                let n = n as usize;
                let dim = v.data.len() / n;
                if dim * n != v.data.len() {
                    return Err(bad(format!(
                        "Data length is not divisible by vectors count. Data length: {}, vectors count: {n}",
                        v.data.len()
                    )));
                }
                Value::Array(v.data.chunks(dim.max(1)).map(floats).collect())
            }
            _ => floats(&v.data),
        },
    })
}

fn vectors_json(v: &pb::Vectors) -> CResult<Value> {
    match &v.vectors_options {
        Some(VectorsOptions::Vector(v)) => vector_json(v),
        Some(VectorsOptions::Vectors(named)) => {
            let mut keys: Vec<&String> = named.vectors.keys().collect();
            keys.sort();
            let mut m = Map::new();
            for k in keys {
                m.insert(k.clone(), vector_json(&named.vectors[k])?);
            }
            Ok(Value::Object(m))
        }
        None => Err(bad("No Vector Provided")),
    }
}

pub fn vector_input_json(v: &pb::VectorInput) -> CResult<Value> {
    Ok(
        match v
            .variant
            .as_ref()
            .ok_or_else(|| bad("VectorInput variant is missing"))?
        {
            InputVariant::Id(id) => id_json(id)?,
            InputVariant::Dense(d) => floats(&d.data),
            InputVariant::Sparse(s) => sparse_json(&s.values, &s.indices),
            InputVariant::MultiDense(m) => multi_json(m),
            InputVariant::Document(d) => document_json(d),
            InputVariant::Image(i) => inference_json("image", i.image.as_ref(), &i.model),
            InputVariant::Object(i) => inference_json("object", i.object.as_ref(), &i.model),
        },
    )
}

fn opt_input(v: Option<&pb::VectorInput>, what: &str) -> CResult<Value> {
    vector_input_json(v.ok_or_else(|| bad(format!("{what} is missing")))?)
}

fn example_json(e: Option<&pb::VectorExample>) -> CResult<Value> {
    match e.and_then(|e| e.example.as_ref()) {
        Some(Example::Id(id)) => id_json(id),
        Some(Example::Vector(v)) => vector_json(v),
        None => Err(bad("Vector example is missing")),
    }
}

fn pairs_json(pairs: &[pb::ContextInputPair]) -> CResult<Value> {
    pairs
        .iter()
        .map(|p| {
            Ok(json!({
                "positive": opt_input(p.positive.as_ref(), "positive")?,
                "negative": opt_input(p.negative.as_ref(), "negative")?,
            }))
        })
        .collect::<CResult<Vec<_>>>()
        .map(Value::Array)
}

fn order_by_json(o: &pb::OrderBy) -> CResult<Value> {
    let mut m = Obj::new();
    m.put("key", o.key.clone());
    if let Some(d) = o.direction {
        m.put("direction", if d == 1 { "desc" } else { "asc" });
    }
    if let Some(s) = o.start_from.as_ref().and_then(|s| s.value.as_ref()) {
        let v = match s {
            start_from::Value::Float(f) => f64j(*f),
            start_from::Value::Integer(i) => Value::from(*i),
            start_from::Value::Timestamp(t) => Value::String(rfc3339(t.seconds, t.nanos)),
            start_from::Value::Datetime(d) => Value::String(d.clone()),
        };
        m.put("start_from", v);
    }
    Ok(m.done())
}

pub fn query_json(q: &pb::Query) -> CResult<Value> {
    Ok(
        match q
            .variant
            .as_ref()
            .ok_or_else(|| bad("Query variant is missing"))?
        {
            QueryVariant::Nearest(v) => json!({"nearest": vector_input_json(v)?}),
            QueryVariant::NearestWithMmr(n) => {
                let mut mmr = Obj::new();
                if let Some(m) = &n.mmr {
                    mmr.opt("diversity", opt_f32(m.diversity))
                        .opt("candidates_limit", m.candidates_limit);
                }
                json!({"nearest": opt_input(n.nearest.as_ref(), "nearest")?, "mmr": mmr.done()})
            }
            QueryVariant::Recommend(r) => {
                let list = |vs: &[pb::VectorInput]| {
                    vs.iter()
                        .map(vector_input_json)
                        .collect::<CResult<Vec<_>>>()
                };
                let mut o = Obj::new();
                o.put("positive", list(&r.positive)?)
                    .put("negative", list(&r.negative)?)
                    .opt("strategy", strategy_json(r.strategy)?);
                json!({"recommend": o.done()})
            }
            QueryVariant::Discover(d) => {
                let pairs = d
                    .context
                    .as_ref()
                    .map(|c| pairs_json(&c.pairs))
                    .transpose()?
                    .unwrap_or(json!([]));
                json!({"discover": {"target": opt_input(d.target.as_ref(), "target")?, "context": pairs}})
            }
            QueryVariant::Context(c) => json!({"context": pairs_json(&c.pairs)?}),
            QueryVariant::OrderBy(o) => json!({"order_by": order_by_json(o)?}),
            QueryVariant::Fusion(f) => match pb::Fusion::try_from(*f) {
                Ok(pb::Fusion::Rrf) => json!({"fusion": "rrf"}),
                Ok(pb::Fusion::Dbsf) => json!({"fusion": "dbsf"}),
                Err(_) => return Err(bad(format!("Unknown fusion {f}"))),
            },
            QueryVariant::Rrf(r) => {
                let mut o = Obj::new();
                o.opt("k", r.k);
                if !r.weights.is_empty() {
                    o.put("weights", floats(&r.weights));
                }
                json!({"rrf": o.done()})
            }
            QueryVariant::Sample(_) => json!({"sample": "random"}),
            QueryVariant::Formula(_) => return Err(unsupported("formula queries")),
            QueryVariant::RelevanceFeedback(_) => {
                return Err(unsupported("relevance feedback queries"))
            }
            QueryVariant::Text(_) => return Err(unsupported("text queries")),
        },
    )
}

fn prefetch_json(p: &pb::PrefetchQuery) -> CResult<Value> {
    let mut o = Obj::new();
    if !p.prefetch.is_empty() {
        o.put("prefetch", prefetches_json(&p.prefetch)?);
    }
    o.opt("query", p.query.as_ref().map(query_json).transpose()?)
        .opt("using", p.using.clone())
        .opt("filter", opt_filter(p.filter.as_ref())?)
        .opt("params", p.params.as_ref().map(search_params_json))
        .opt("score_threshold", opt_f32(p.score_threshold))
        .opt("limit", p.limit)
        .opt("lookup_from", p.lookup_from.as_ref().map(lookup_json));
    Ok(o.done())
}

fn prefetches_json(ps: &[pb::PrefetchQuery]) -> CResult<Value> {
    ps.iter()
        .map(prefetch_json)
        .collect::<CResult<Vec<_>>>()
        .map(Value::Array)
}

// ---------------------------------------------------------------- request bodies

/// The legacy `vector` of search requests: plain, named, or named sparse.
fn named_vector(
    vector: &[f32],
    name: Option<&String>,
    sparse: Option<&pb::SparseIndices>,
) -> Value {
    match (name, sparse) {
        (Some(n), Some(ix)) => json!({"name": n, "vector": sparse_json(vector, &ix.data)}),
        (None, Some(ix)) => json!({"name": "", "vector": sparse_json(vector, &ix.data)}),
        (Some(n), None) => json!({"name": n, "vector": floats(vector)}),
        (None, None) => floats(vector),
    }
}

pub fn search_body(r: &pb::SearchPoints) -> CResult<Value> {
    let mut o = Obj::new();
    o.put(
        "vector",
        named_vector(&r.vector, r.vector_name.as_ref(), r.sparse_indices.as_ref()),
    )
    .opt("filter", opt_filter(r.filter.as_ref())?)
    .opt("params", r.params.as_ref().map(search_params_json))
    .put("limit", r.limit)
    .opt("offset", r.offset)
    .opt("with_payload", opt_with_payload(r.with_payload.as_ref())?)
    .opt("with_vector", opt_with_vectors(r.with_vectors.as_ref()))
    .opt("score_threshold", opt_f32(r.score_threshold));
    Ok(o.done())
}

pub fn search_groups_body(r: &pb::SearchPointGroups) -> CResult<Value> {
    let mut o = Obj::new();
    o.put(
        "vector",
        named_vector(&r.vector, r.vector_name.as_ref(), r.sparse_indices.as_ref()),
    )
    .opt("filter", opt_filter(r.filter.as_ref())?)
    .opt("params", r.params.as_ref().map(search_params_json))
    .opt("with_payload", opt_with_payload(r.with_payload.as_ref())?)
    .opt("with_vector", opt_with_vectors(r.with_vectors.as_ref()))
    .opt("score_threshold", opt_f32(r.score_threshold))
    .put("group_by", r.group_by.clone())
    .put("group_size", r.group_size)
    .put("limit", r.limit)
    .opt(
        "with_lookup",
        r.with_lookup.as_ref().map(with_lookup_json).transpose()?,
    );
    Ok(o.done())
}

/// Examples of legacy recommend: ids first, then raw vectors.
fn examples(ids: &[pb::PointId], vectors: &[pb::Vector]) -> CResult<Value> {
    let mut out = Vec::new();
    for id in ids {
        out.push(id_json(id)?);
    }
    for v in vectors {
        out.push(vector_json(v)?);
    }
    Ok(Value::Array(out))
}

pub fn recommend_body(r: &pb::RecommendPoints) -> CResult<Value> {
    let mut o = Obj::new();
    o.put("positive", examples(&r.positive, &r.positive_vectors)?)
        .put("negative", examples(&r.negative, &r.negative_vectors)?)
        .opt("strategy", strategy_json(r.strategy)?)
        .opt("filter", opt_filter(r.filter.as_ref())?)
        .opt("params", r.params.as_ref().map(search_params_json))
        .put("limit", r.limit)
        .opt("offset", r.offset)
        .opt("with_payload", opt_with_payload(r.with_payload.as_ref())?)
        .opt("with_vector", opt_with_vectors(r.with_vectors.as_ref()))
        .opt("score_threshold", opt_f32(r.score_threshold))
        .opt("using", r.using.clone())
        .opt("lookup_from", r.lookup_from.as_ref().map(lookup_json));
    Ok(o.done())
}

pub fn recommend_groups_body(r: &pb::RecommendPointGroups) -> CResult<Value> {
    let mut o = Obj::new();
    o.put("positive", examples(&r.positive, &r.positive_vectors)?)
        .put("negative", examples(&r.negative, &r.negative_vectors)?)
        .opt("strategy", strategy_json(r.strategy)?)
        .opt("filter", opt_filter(r.filter.as_ref())?)
        .opt("params", r.params.as_ref().map(search_params_json))
        .opt("with_payload", opt_with_payload(r.with_payload.as_ref())?)
        .opt("with_vector", opt_with_vectors(r.with_vectors.as_ref()))
        .opt("score_threshold", opt_f32(r.score_threshold))
        .opt("using", r.using.clone())
        .opt("lookup_from", r.lookup_from.as_ref().map(lookup_json))
        .put("group_by", r.group_by.clone())
        .put("group_size", r.group_size)
        .put("limit", r.limit)
        .opt(
            "with_lookup",
            r.with_lookup.as_ref().map(with_lookup_json).transpose()?,
        );
    Ok(o.done())
}

pub fn discover_body(r: &pb::DiscoverPoints) -> CResult<Value> {
    let mut o = Obj::new();
    if let Some(t) = &r.target {
        let qdrant_client::qdrant::target_vector::Target::Single(e) = t
            .target
            .as_ref()
            .ok_or_else(|| bad("Target is not provided"))?;
        o.put("target", example_json(Some(e))?);
    }
    let pairs = r
        .context
        .iter()
        .map(|p| {
            Ok(json!({
                "positive": example_json(p.positive.as_ref())?,
                "negative": example_json(p.negative.as_ref())?,
            }))
        })
        .collect::<CResult<Vec<_>>>()?;
    o.put("context", pairs)
        .opt("filter", opt_filter(r.filter.as_ref())?)
        .opt("params", r.params.as_ref().map(search_params_json))
        .put("limit", r.limit)
        .opt("offset", r.offset)
        .opt("with_payload", opt_with_payload(r.with_payload.as_ref())?)
        .opt("with_vector", opt_with_vectors(r.with_vectors.as_ref()))
        .opt("using", r.using.clone())
        .opt("lookup_from", r.lookup_from.as_ref().map(lookup_json));
    Ok(o.done())
}

pub fn query_body(r: &pb::QueryPoints) -> CResult<Value> {
    let mut o = Obj::new();
    if !r.prefetch.is_empty() {
        o.put("prefetch", prefetches_json(&r.prefetch)?);
    }
    o.opt("query", r.query.as_ref().map(query_json).transpose()?)
        .opt("using", r.using.clone())
        .opt("filter", opt_filter(r.filter.as_ref())?)
        .opt("params", r.params.as_ref().map(search_params_json))
        .opt("score_threshold", opt_f32(r.score_threshold))
        .opt("limit", r.limit)
        .opt("offset", r.offset)
        .opt("with_vector", opt_with_vectors(r.with_vectors.as_ref()))
        .opt("with_payload", opt_with_payload(r.with_payload.as_ref())?)
        .opt("lookup_from", r.lookup_from.as_ref().map(lookup_json));
    Ok(o.done())
}

pub fn query_groups_body(r: &pb::QueryPointGroups) -> CResult<Value> {
    let mut o = Obj::new();
    if !r.prefetch.is_empty() {
        o.put("prefetch", prefetches_json(&r.prefetch)?);
    }
    o.opt("query", r.query.as_ref().map(query_json).transpose()?)
        .opt("using", r.using.clone())
        .opt("filter", opt_filter(r.filter.as_ref())?)
        .opt("params", r.params.as_ref().map(search_params_json))
        .opt("score_threshold", opt_f32(r.score_threshold))
        .opt("with_vector", opt_with_vectors(r.with_vectors.as_ref()))
        .opt("with_payload", opt_with_payload(r.with_payload.as_ref())?)
        .opt("lookup_from", r.lookup_from.as_ref().map(lookup_json))
        .put("group_by", r.group_by.clone())
        .opt("group_size", r.group_size)
        .opt("limit", r.limit)
        .opt(
            "with_lookup",
            r.with_lookup.as_ref().map(with_lookup_json).transpose()?,
        );
    Ok(o.done())
}

pub fn scroll_body(r: &pb::ScrollPoints) -> CResult<Value> {
    let mut o = Obj::new();
    o.opt("offset", r.offset.as_ref().map(id_json).transpose()?)
        .opt("limit", r.limit)
        .opt("filter", opt_filter(r.filter.as_ref())?)
        .opt("with_payload", opt_with_payload(r.with_payload.as_ref())?)
        .opt("with_vector", opt_with_vectors(r.with_vectors.as_ref()))
        .opt(
            "order_by",
            r.order_by.as_ref().map(order_by_json).transpose()?,
        );
    Ok(o.done())
}

pub fn count_body(r: &pb::CountPoints) -> CResult<Value> {
    let mut o = Obj::new();
    o.opt("filter", opt_filter(r.filter.as_ref())?)
        .opt("exact", r.exact);
    Ok(o.done())
}

pub fn get_body(r: &pb::GetPoints) -> CResult<Value> {
    let mut o = Obj::new();
    o.put("ids", ids_json(&r.ids)?)
        .opt("with_payload", opt_with_payload(r.with_payload.as_ref())?)
        .opt("with_vector", opt_with_vectors(r.with_vectors.as_ref()));
    Ok(o.done())
}

pub fn upsert_body(r: &pb::UpsertPoints) -> CResult<Value> {
    let points = r
        .points
        .iter()
        .map(|p| {
            let id = id_json(
                p.id.as_ref()
                    .ok_or_else(|| bad("Empty ID is not allowed"))?,
            )?;
            let vector = vectors_json(
                p.vectors
                    .as_ref()
                    .ok_or_else(|| bad("Vectors are not provided"))?,
            )?;
            Ok(json!({"id": id, "vector": vector, "payload": map_json(&p.payload)}))
        })
        .collect::<CResult<Vec<_>>>()?;
    let mut o = Obj::new();
    o.put("points", points)
        .opt("update_filter", opt_filter(r.update_filter.as_ref())?);
    if let Some(m) = r.update_mode {
        let mode = match pb::UpdateMode::try_from(m) {
            Ok(pb::UpdateMode::InsertOnly) => "insert_only",
            Ok(pb::UpdateMode::UpdateOnly) => "update_only",
            _ => "upsert",
        };
        o.put("update_mode", mode);
    }
    Ok(o.done())
}

/// A `PointsSelector` as the REST body of delete / clear payload.
pub fn selector_body(s: Option<&pb::PointsSelector>) -> CResult<Value> {
    match s.and_then(|s| s.points_selector_one_of.as_ref()) {
        Some(PointsSelectorOneOf::Points(l)) => Ok(json!({"points": ids_json(&l.ids)?})),
        Some(PointsSelectorOneOf::Filter(f)) => Ok(json!({"filter": filter_json(f)?})),
        None => Err(bad("No PointSelector provided")),
    }
}

/// `points` / `filter` keys of set / delete payload.
fn selector_fields(o: &mut Obj, s: Option<&pb::PointsSelector>) -> CResult<()> {
    match s.and_then(|s| s.points_selector_one_of.as_ref()) {
        Some(PointsSelectorOneOf::Points(l)) => {
            o.put("points", ids_json(&l.ids)?);
        }
        Some(PointsSelectorOneOf::Filter(f)) => {
            o.put("filter", filter_json(f)?);
        }
        None => {}
    }
    Ok(())
}

pub fn set_payload_body(r: &pb::SetPayloadPoints) -> CResult<Value> {
    let mut o = Obj::new();
    o.put("payload", map_json(&r.payload));
    selector_fields(&mut o, r.points_selector.as_ref())?;
    o.opt("key", r.key.clone());
    Ok(o.done())
}

pub fn delete_payload_body(r: &pb::DeletePayloadPoints) -> CResult<Value> {
    let mut o = Obj::new();
    o.put("keys", r.keys.clone());
    selector_fields(&mut o, r.points_selector.as_ref())?;
    Ok(o.done())
}

fn distance_name(d: i32) -> CResult<&'static str> {
    match pb::Distance::try_from(d) {
        Ok(pb::Distance::Cosine) => Ok("Cosine"),
        Ok(pb::Distance::Euclid) => Ok("Euclid"),
        Ok(pb::Distance::Dot) => Ok("Dot"),
        Ok(pb::Distance::Manhattan) => Ok("Manhattan"),
        _ => Err(bad(format!("Malformed distance parameter: {d}"))),
    }
}

fn vector_params_body(p: &pb::VectorParams) -> CResult<Value> {
    let mut o = Obj::new();
    o.put("size", p.size)
        .put("distance", distance_name(p.distance)?)
        .opt("on_disk", p.on_disk);
    if let Some(d) = p.datatype {
        let name = match pb::Datatype::try_from(d) {
            Ok(pb::Datatype::Uint8) => Some("uint8"),
            Ok(pb::Datatype::Float16) => Some("float16"),
            Ok(pb::Datatype::Float32) => Some("float32"),
            _ => None,
        };
        o.opt("datatype", name);
    }
    if let Some(m) = &p.multivector_config {
        let _ = m;
        o.put("multivector_config", json!({"comparator": "max_sim"}));
    }
    Ok(o.done())
}

pub fn create_collection_body(r: &pb::CreateCollection) -> CResult<Value> {
    let mut o = Obj::new();
    match r.vectors_config.as_ref().and_then(|c| c.config.as_ref()) {
        Some(VectorsConfigKind::Params(p)) => {
            o.put("vectors", vector_params_body(p)?);
        }
        Some(VectorsConfigKind::ParamsMap(m)) => {
            let mut keys: Vec<&String> = m.map.keys().collect();
            keys.sort();
            let mut vm = Map::new();
            for k in keys {
                vm.insert(k.clone(), vector_params_body(&m.map[k])?);
            }
            o.put("vectors", Value::Object(vm));
        }
        None => {}
    }
    if let Some(s) = &r.sparse_vectors_config {
        let mut keys: Vec<&String> = s.map.keys().collect();
        keys.sort();
        let mut sm = Map::new();
        for k in keys {
            let p = &s.map[k];
            let mut po = Obj::new();
            if let Some(ix) = &p.index {
                let mut io = Obj::new();
                io.opt("full_scan_threshold", ix.full_scan_threshold)
                    .opt("on_disk", ix.on_disk);
                po.put("index", io.done());
            }
            if let Some(m) = p.modifier {
                po.put(
                    "modifier",
                    if m == pb::Modifier::Idf as i32 {
                        "idf"
                    } else {
                        "none"
                    },
                );
            }
            sm.insert(k.clone(), po.done());
        }
        o.put("sparse_vectors", Value::Object(sm));
    }
    o.opt("shard_number", r.shard_number)
        .opt("replication_factor", r.replication_factor)
        .opt("write_consistency_factor", r.write_consistency_factor)
        .opt("on_disk_payload", r.on_disk_payload);
    Ok(o.done())
}

// ---------------------------------------------------------------- responses

fn vector_output(v: &Value) -> Option<pb::VectorOutput> {
    let kind = match v {
        Value::Array(a) if a.first().is_some_and(Value::is_array) => {
            qdrant_client::qdrant::vector_output::Vector::MultiDense(pb::MultiDenseVector {
                vectors: a
                    .iter()
                    .map(|d| pb::DenseVector {
                        data: d
                            .as_array()
                            .map(|x| x.iter().map(as_f32).collect())
                            .unwrap_or_default(),
                    })
                    .collect(),
            })
        }
        Value::Array(a) => qdrant_client::qdrant::vector_output::Vector::Dense(pb::DenseVector {
            data: a.iter().map(as_f32).collect(),
        }),
        Value::Object(o) => {
            qdrant_client::qdrant::vector_output::Vector::Sparse(pb::SparseVector {
                indices: o
                    .get("indices")
                    .and_then(Value::as_array)
                    .map(|x| {
                        x.iter()
                            .filter_map(|i| i.as_u64().map(|i| i as u32))
                            .collect()
                    })
                    .unwrap_or_default(),
                values: o
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|x| x.iter().map(as_f32).collect())
                    .unwrap_or_default(),
            })
        }
        _ => return None,
    };
    Some(pb::VectorOutput {
        vector: Some(kind),
        ..Default::default()
    })
}

/// The `vector` of a REST point: a list for the unnamed vector, an object of named ones.
fn vectors_output(v: Option<&Value>) -> Option<pb::VectorsOutput> {
    use qdrant_client::qdrant::vectors_output::VectorsOptions as Out;
    let opts = match v? {
        Value::Object(m) => Out::Vectors(pb::NamedVectorsOutput {
            vectors: m
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), vector_output(v)?)))
                .collect(),
        }),
        other => Out::Vector(vector_output(other)?),
    };
    Some(pb::VectorsOutput {
        vectors_options: Some(opts),
    })
}

fn order_value(v: Option<&Value>) -> Option<pb::OrderValue> {
    use qdrant_client::qdrant::order_value::Variant;
    let v = v?;
    let variant = match v.as_i64() {
        Some(i) => Variant::Int(i),
        None => Variant::Float(v.as_f64()?),
    };
    Some(pb::OrderValue {
        variant: Some(variant),
    })
}

pub fn scored_point(v: &Value) -> pb::ScoredPoint {
    pb::ScoredPoint {
        id: v.get("id").and_then(json_id),
        payload: payload_of(v.get("payload")),
        score: v.get("score").map(as_f32).unwrap_or(0.0),
        version: v.get("version").and_then(Value::as_u64).unwrap_or(0),
        vectors: vectors_output(v.get("vector")),
        shard_key: None,
        order_value: order_value(v.get("order_value")),
    }
}

pub fn scored_points(v: &Value) -> Vec<pb::ScoredPoint> {
    v.as_array()
        .map(|a| a.iter().map(scored_point).collect())
        .unwrap_or_default()
}

pub fn retrieved_point(v: &Value) -> pb::RetrievedPoint {
    pb::RetrievedPoint {
        id: v.get("id").and_then(json_id),
        payload: payload_of(v.get("payload")),
        vectors: vectors_output(v.get("vector")),
        shard_key: None,
        order_value: order_value(v.get("order_value")),
    }
}

pub fn retrieved_points(v: &Value) -> Vec<pb::RetrievedPoint> {
    v.as_array()
        .map(|a| a.iter().map(retrieved_point).collect())
        .unwrap_or_default()
}

fn group_id(v: &Value) -> Option<pb::GroupId> {
    use qdrant_client::qdrant::group_id::Kind as G;
    let kind = match v {
        Value::String(s) => G::StringValue(s.clone()),
        Value::Number(n) => match n.as_u64() {
            Some(u) => G::UnsignedValue(u),
            None => G::IntegerValue(n.as_i64()?),
        },
        _ => return None,
    };
    Some(pb::GroupId { kind: Some(kind) })
}

pub fn groups_result(v: &Value) -> pb::GroupsResult {
    let groups = v
        .get("groups")
        .and_then(Value::as_array)
        .map(|gs| {
            gs.iter()
                .map(|g| pb::PointGroup {
                    id: g.get("id").and_then(group_id),
                    hits: g.get("hits").map(scored_points).unwrap_or_default(),
                    lookup: g.get("lookup").map(retrieved_point),
                })
                .collect()
        })
        .unwrap_or_default();
    pb::GroupsResult { groups }
}

pub fn batch_results(v: &Value, wrapped_in_points: bool) -> Vec<pb::BatchResult> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|r| pb::BatchResult {
                    result: scored_points(if wrapped_in_points {
                        r.get("points").unwrap_or(&Value::Null)
                    } else {
                        r
                    }),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn update_result(v: &Value) -> pb::UpdateResult {
    let status = match v.get("status").and_then(Value::as_str) {
        Some("completed") => pb::UpdateStatus::Completed,
        Some("acknowledged") => pb::UpdateStatus::Acknowledged,
        Some("wait_timeout") => pb::UpdateStatus::WaitTimeout,
        _ => pb::UpdateStatus::UnknownUpdateStatus,
    };
    pb::UpdateResult {
        operation_id: v.get("operation_id").and_then(Value::as_u64),
        status: status as i32,
    }
}

fn u64_of(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}

fn distance_of(s: Option<&str>) -> i32 {
    (match s {
        Some("Cosine") => pb::Distance::Cosine,
        Some("Euclid") => pb::Distance::Euclid,
        Some("Dot") => pb::Distance::Dot,
        Some("Manhattan") => pb::Distance::Manhattan,
        _ => pb::Distance::UnknownDistance,
    }) as i32
}

fn vector_params_of(v: &Value) -> pb::VectorParams {
    pb::VectorParams {
        size: u64_of(v, "size").unwrap_or(0),
        distance: distance_of(v.get("distance").and_then(Value::as_str)),
        on_disk: v.get("on_disk").and_then(Value::as_bool),
        ..Default::default()
    }
}

/// `GET /collections/{name}` as `CollectionInfo`.
pub fn collection_info(v: &Value) -> pb::CollectionInfo {
    let cfg = &v["config"];
    let params = &cfg["params"];
    let vectors_config = match params.get("vectors") {
        Some(vs) if vs.get("size").is_some() => {
            Some(VectorsConfigKind::Params(vector_params_of(vs)))
        }
        Some(Value::Object(m)) => Some(VectorsConfigKind::ParamsMap(pb::VectorParamsMap {
            map: m
                .iter()
                .map(|(k, p)| (k.clone(), vector_params_of(p)))
                .collect(),
        })),
        _ => None,
    }
    .map(|c| pb::VectorsConfig { config: Some(c) });
    let sparse_vectors_config = params
        .get("sparse_vectors")
        .and_then(Value::as_object)
        .map(|m| pb::SparseVectorConfig {
            map: m
                .iter()
                .map(|(k, p)| {
                    let modifier = p.get("modifier").and_then(Value::as_str).map(|s| {
                        (if s == "idf" {
                            pb::Modifier::Idf
                        } else {
                            pb::Modifier::None
                        }) as i32
                    });
                    let index = p.get("index").map(|i| pb::SparseIndexConfig {
                        full_scan_threshold: u64_of(i, "full_scan_threshold"),
                        on_disk: i.get("on_disk").and_then(Value::as_bool),
                        ..Default::default()
                    });
                    (k.clone(), pb::SparseVectorParams { index, modifier })
                })
                .collect(),
        });
    let status = match v.get("status").and_then(Value::as_str) {
        Some("green") => pb::CollectionStatus::Green,
        Some("yellow") => pb::CollectionStatus::Yellow,
        Some("red") => pb::CollectionStatus::Red,
        Some("grey") => pb::CollectionStatus::Grey,
        _ => pb::CollectionStatus::UnknownCollectionStatus,
    };
    let optimizer_status = match v.get("optimizer_status") {
        Some(Value::Object(o)) => pb::OptimizerStatus {
            ok: false,
            error: o
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        },
        _ => pb::OptimizerStatus {
            ok: true,
            error: String::new(),
        },
    };
    let h = &cfg["hnsw_config"];
    let oc = &cfg["optimizer_config"];
    let w = &cfg["wal_config"];
    pb::CollectionInfo {
        status: status as i32,
        optimizer_status: Some(optimizer_status),
        segments_count: u64_of(v, "segments_count").unwrap_or(0),
        config: Some(pb::CollectionConfig {
            params: Some(pb::CollectionParams {
                shard_number: u64_of(params, "shard_number").unwrap_or(1) as u32,
                on_disk_payload: params
                    .get("on_disk_payload")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                vectors_config,
                replication_factor: u64_of(params, "replication_factor").map(|x| x as u32),
                write_consistency_factor: u64_of(params, "write_consistency_factor")
                    .map(|x| x as u32),
                sparse_vectors_config,
                ..Default::default()
            }),
            hnsw_config: Some(pb::HnswConfigDiff {
                m: u64_of(h, "m"),
                ef_construct: u64_of(h, "ef_construct"),
                full_scan_threshold: u64_of(h, "full_scan_threshold"),
                max_indexing_threads: u64_of(h, "max_indexing_threads"),
                on_disk: h.get("on_disk").and_then(Value::as_bool),
                payload_m: u64_of(h, "payload_m"),
                ..Default::default()
            }),
            optimizer_config: Some(pb::OptimizersConfigDiff {
                deleted_threshold: oc.get("deleted_threshold").and_then(Value::as_f64),
                vacuum_min_vector_number: u64_of(oc, "vacuum_min_vector_number"),
                default_segment_number: u64_of(oc, "default_segment_number"),
                max_segment_size: u64_of(oc, "max_segment_size"),
                memmap_threshold: u64_of(oc, "memmap_threshold"),
                indexing_threshold: u64_of(oc, "indexing_threshold"),
                flush_interval_sec: u64_of(oc, "flush_interval_sec"),
                prevent_unoptimized: oc.get("prevent_unoptimized").and_then(Value::as_bool),
                ..Default::default()
            }),
            wal_config: Some(pb::WalConfigDiff {
                wal_capacity_mb: u64_of(w, "wal_capacity_mb"),
                wal_segments_ahead: u64_of(w, "wal_segments_ahead"),
                wal_retain_closed: u64_of(w, "wal_retain_closed"),
            }),
            quantization_config: None,
            strict_mode_config: None,
            metadata: HashMap::new(),
        }),
        payload_schema: HashMap::new(),
        points_count: u64_of(v, "points_count"),
        indexed_vectors_count: u64_of(v, "indexed_vectors_count"),
        warnings: Vec::new(),
        update_queue: Some(pb::UpdateQueueInfo {
            length: v
                .get("update_queue")
                .and_then(|q| u64_of(q, "length"))
                .unwrap_or(0),
            deferred_points: None,
        }),
        created_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_values_round_trip_faithfully() {
        let j = json!({"i": 42, "neg": -7, "f": 1.5, "s": "x", "b": true, "n": null,
                       "l": [1, "a", [2.25]], "o": {"deep": {"x": 0}}, "big": 18446744073709551615u64});
        let pb = json_map(j.as_object().unwrap());
        assert!(matches!(pb["i"].kind, Some(Kind::IntegerValue(42))));
        assert!(matches!(pb["f"].kind, Some(Kind::DoubleValue(x)) if x == 1.5));
        assert!(matches!(pb["big"].kind, Some(Kind::DoubleValue(_))));
        let back = map_json(&pb);
        for k in ["i", "neg", "f", "s", "b", "n", "l", "o"] {
            assert_eq!(back[k], j[k], "{k}");
        }
        assert!(back["i"].is_i64());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn filters_convert() {
        use qdrant_client::qdrant::Condition;
        let f = pb::Filter {
            must: vec![
                Condition::matches("group", "city".to_string()),
                Condition::has_id([pb::PointId::from(1u64)]),
            ],
            must_not: vec![Condition::matches("n", 3i64)],
            ..Default::default()
        };
        assert_eq!(
            filter_json(&f).unwrap(),
            json!({"must": [{"key": "group", "match": {"value": "city"}}, {"has_id": [1]}],
                   "must_not": [{"key": "n", "match": {"value": 3}}]})
        );
    }
}
