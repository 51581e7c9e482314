//! Qdrant's gRPC answers as plain JSON, the shape [`crate::recordings::plain`] gives the
//! recorded ones (protobuf JSON), so that the two compare field by field.

use std::collections::HashMap;

use qdrant_client::qdrant as pb;
use serde_json::{json, Value};

/// A payload value as JSON.
pub fn value_json(v: &pb::Value) -> Value {
    use pb::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::DoubleValue(d)) => json!(d),
        Some(Kind::IntegerValue(i)) => json!(i),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::StructValue(s)) => payload_json(&s.fields),
        Some(Kind::ListValue(l)) => l.values.iter().map(value_json).collect(),
    }
}

/// A payload (or a struct value) as a JSON object.
pub fn payload_json(p: &HashMap<String, pb::Value>) -> Value {
    p.iter()
        .map(|(k, v)| (k.clone(), value_json(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A point id as JSON: a number or a UUID string.
pub fn id_json(id: &Option<pb::PointId>) -> Value {
    match id.as_ref().and_then(|i| i.point_id_options.as_ref()) {
        Some(pb::point_id::PointIdOptions::Num(n)) => json!(n),
        Some(pb::point_id::PointIdOptions::Uuid(u)) => json!(u),
        None => Value::Null,
    }
}

/// A point as [`crate::recordings::plain`] makes the recorded one: defaults (empty payload, version 0)
/// left out, as protobuf JSON leaves them out.
pub fn point_json(
    id: &Option<pb::PointId>,
    payload: &HashMap<String, pb::Value>,
    score: Option<f32>,
    version: u64,
) -> Value {
    let mut p = json!({ "id": id_json(id) });
    if !payload.is_empty() {
        p["payload"] = payload_json(payload);
    }
    if let Some(s) = score {
        p["score"] = json!(s);
    }
    if version != 0 {
        p["version"] = json!(version);
    }
    p
}

/// Scored points (search, query, recommend answers) as a JSON list.
pub fn scored(points: &[pb::ScoredPoint]) -> Value {
    points
        .iter()
        .map(|p| point_json(&p.id, &p.payload, Some(p.score), p.version))
        .collect()
}

/// A groups answer: `{"result": {"groups": [{"id": ..., "hits": [...]}]}}`.
pub fn groups(g: &Option<pb::GroupsResult>) -> Value {
    use pb::group_id::Kind;
    let groups: Vec<Value> = g
        .iter()
        .flat_map(|r| &r.groups)
        .map(|g| {
            let id = match g.id.as_ref().and_then(|i| i.kind.as_ref()) {
                Some(Kind::StringValue(s)) => json!(s),
                Some(Kind::UnsignedValue(u)) => json!(u),
                Some(Kind::IntegerValue(i)) => json!(i),
                None => Value::Null,
            };
            json!({"id": id, "hits": scored(&g.hits)})
        })
        .collect();
    json!({"result": {"groups": groups}})
}
