//! Qdrant's protobuf payloads and selectors as the JSON the planner speaks.

use std::collections::HashMap;

use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::with_payload_selector::SelectorOptions;
use qdrant_client::qdrant::{
    ListValue, PayloadExcludeSelector, PayloadIncludeSelector, Struct, Value, WithPayloadSelector,
};
use serde_json::{Map, Value as Json};

use crate::plan::payload::{restore_point, Restore};
use crate::plan::text::text_at;

pub fn to_json(v: &Value) -> Json {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number)
        }
        Some(Kind::IntegerValue(i)) => Json::from(*i),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::StructValue(s)) => Json::Object(map_to_json(&s.fields)),
        Some(Kind::ListValue(l)) => Json::Array(l.values.iter().map(to_json).collect()),
    }
}

pub fn from_json(v: Json) -> Value {
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        // Integers stay integers, as Qdrant stores them.
        Json::Number(n) => match n.as_i64() {
            Some(i) => Kind::IntegerValue(i),
            None => Kind::DoubleValue(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Kind::StringValue(s),
        Json::Array(a) => Kind::ListValue(ListValue {
            values: a.into_iter().map(from_json).collect(),
        }),
        Json::Object(o) => Kind::StructValue(Struct {
            fields: o.into_iter().map(|(k, v)| (k, from_json(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

fn map_to_json(m: &HashMap<String, Value>) -> Map<String, Json> {
    m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()
}

/// The document text at `field` of a protobuf payload.
pub fn payload_text(payload: &HashMap<String, Value>, field: &str) -> Option<String> {
    // Cheap path for the common flat key.
    if let Some(Value {
        kind: Some(Kind::StringValue(s)),
    }) = payload.get(field)
    {
        return (!s.trim().is_empty()).then(|| s.clone());
    }
    text_at(&Json::Object(map_to_json(payload)), field)
}

/// The document text of a protobuf payload, from one field or a template.
pub fn source_text(
    payload: &HashMap<String, Value>,
    source: &crate::plan::template::TextSource,
) -> Option<String> {
    use crate::plan::template::TextSource;
    match source {
        TextSource::Field(f) => payload_text(payload, f),
        TextSource::Template(t) => t.render(&Json::Object(map_to_json(payload))),
    }
}

/// Gives the client the payload it asked for (gRPC has no absent payload: empty map).
pub fn restore_payload(payload: &mut HashMap<String, Value>, restore: &Restore) {
    match restore {
        Restore::Keep => {}
        Restore::DropPayload => payload.clear(),
        Restore::RemovePaths(_) | Restore::ReExclude(_) => {
            let mut point = Map::new();
            point.insert("payload".into(), Json::Object(map_to_json(payload)));
            restore_point(&mut point, restore);
            *payload = match point.remove("payload") {
                Some(Json::Object(o)) => o.into_iter().map(|(k, v)| (k, from_json(v))).collect(),
                _ => HashMap::new(),
            };
        }
    }
}

/// A protobuf selector in the REST form the planner rewrites.
pub fn selector_to_json(s: Option<&WithPayloadSelector>) -> Option<Json> {
    match s?.selector_options.as_ref()? {
        SelectorOptions::Enable(b) => Some(Json::Bool(*b)),
        SelectorOptions::Include(i) => Some(serde_json::json!({ "include": i.fields })),
        SelectorOptions::Exclude(e) => Some(serde_json::json!({ "exclude": e.fields })),
    }
}

/// The planner's selector back in protobuf form.
pub fn selector_from_json(v: &Json) -> Option<WithPayloadSelector> {
    let strings = |v: &Json| -> Option<Vec<String>> {
        v.as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let opt = match v {
        Json::Bool(b) => SelectorOptions::Enable(*b),
        Json::Array(_) => SelectorOptions::Include(PayloadIncludeSelector {
            fields: strings(v)?,
        }),
        Json::Object(o) => match (o.get("include"), o.get("exclude")) {
            (Some(i), None) => SelectorOptions::Include(PayloadIncludeSelector {
                fields: strings(i)?,
            }),
            (None, Some(e)) => SelectorOptions::Exclude(PayloadExcludeSelector {
                fields: strings(e)?,
            }),
            _ => return None,
        },
        _ => return None,
    };
    Some(WithPayloadSelector {
        selector_options: Some(opt),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trip_keeps_integers_and_doubles() {
        let v = json!({"a": 1, "b": 2.5, "c": 2.0, "d": [true, null, "x"], "e": {"f": -3}});
        let back = to_json(&from_json(v.clone()));
        assert_eq!(back, v);
        assert!(matches!(
            from_json(json!(2.0)).kind,
            Some(Kind::DoubleValue(_))
        ));
    }

    #[test]
    fn text_and_restore_on_protobuf_payloads() {
        let Json::Object(o) = json!({"text": "t", "meta": {"body": "b"}, "title": "x"}) else {
            panic!()
        };
        let mut p: HashMap<String, Value> = o.into_iter().map(|(k, v)| (k, from_json(v))).collect();
        assert_eq!(payload_text(&p, "text").as_deref(), Some("t"));
        assert_eq!(payload_text(&p, "meta.body").as_deref(), Some("b"));
        restore_payload(&mut p, &Restore::RemovePaths(vec!["meta.body".into()]));
        assert!(!p.contains_key("meta") && p.contains_key("title"));
        restore_payload(&mut p, &Restore::DropPayload);
        assert!(p.is_empty());
    }

    #[test]
    fn selectors_both_ways() {
        for j in [
            json!(true),
            json!(false),
            json!({"include": ["a"]}),
            json!({"exclude": ["b"]}),
        ] {
            let s = selector_from_json(&j).unwrap();
            assert_eq!(selector_to_json(Some(&s)).unwrap(), j);
        }
        // the planner's list form becomes an include selector
        let s = selector_from_json(&json!(["text"])).unwrap();
        assert_eq!(
            selector_to_json(Some(&s)).unwrap(),
            json!({"include": ["text"]})
        );
        assert_eq!(selector_to_json(None), None);
    }
}
