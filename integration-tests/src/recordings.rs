//! The exchanges recorded from a real Qdrant 1.18.3 (`../shared/qdrant/recordings-v1.18.3`,
//! its README says how they were made) and the comparisons the tests make with them:
//! REST bodies with key order and number kinds ([`compare`]), gRPC answers after
//! reducing protobuf JSON to plain JSON ([`plain`], [`compare_loose`]).

use std::path::PathBuf;

use serde_json::{Map, Value};

/// `$SECONDPASS_SHARED_DIR`, or `shared/` next to the repository.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("SECONDPASS_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")),
    }
}

/// The exchanges of `rest.jsonl` or `grpc.jsonl`, in recorded order.
pub fn load(file: &str) -> Vec<Value> {
    let path = shared_dir().join("qdrant/recordings-v1.18.3").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (set SECONDPASS_SHARED_DIR)",
            path.display()
        )
    });
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The request body of the REST exchange `name` (the test data: `create-collection`,
/// `upsert`, `hybrid-create`, `hybrid-upsert-bm25-documents`).
pub fn rest_request(name: &str) -> Value {
    load("rest.jsonl")
        .into_iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no recording {name}"))["request"]
        .clone()
}

/// Serialises like Python's `json.dumps` (`", "` and `": "` separators), which is how the
/// recorded requests were sent: error positions (`line 1 column N`) depend on it.
pub fn python_json(v: &Value) -> Vec<u8> {
    use std::io::{Result, Write};
    fn comma<W: ?Sized + Write>(w: &mut W, first: bool) -> Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    struct Py;
    impl serde_json::ser::Formatter for Py {
        fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> Result<()> {
            comma(w, first)
        }
        fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> Result<()> {
            comma(w, first)
        }
        fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> Result<()> {
            w.write_all(b": ")
        }
    }
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Py);
    serde::Serialize::serialize(v, &mut ser).expect("JSON serializes");
    out
}

/// Panics listing every failure, when there is one: `what` of `total` differ.
pub fn assert_none_differ(failures: &[String], total: usize, what: &str) {
    assert!(
        failures.is_empty(),
        "{} of {total} {what} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Compares JSON strictly: same key order, the same numbers printed the same way
/// (an integer never equals a float), keys named `time` ignored. Differences are
/// appended to `diffs`, each with its path.
pub fn compare(path: &str, got: &Value, want: &Value, diffs: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let gk: Vec<&String> = g.keys().filter(|k| *k != "time").collect();
            let wk: Vec<&String> = w.keys().filter(|k| *k != "time").collect();
            if gk != wk {
                diffs.push(format!("{path}: keys {gk:?} != {wk:?}"));
                return;
            }
            if g.contains_key("time") != w.contains_key("time") {
                diffs.push(format!("{path}: `time` presence differs"));
            }
            for k in wk {
                compare(&format!("{path}.{k}"), &g[k], &w[k], diffs);
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            if g.len() != w.len() {
                diffs.push(format!("{path}: {} items != {}", g.len(), w.len()));
                return;
            }
            for (i, (a, b)) in g.iter().zip(w).enumerate() {
                compare(&format!("{path}[{i}]"), a, b, diffs);
            }
        }
        _ => {
            if got != want {
                diffs.push(format!("{path}: {got} != {want}"));
            }
        }
    }
}

/// Keys whose protobuf JSON value is a 64-bit integer written as a string.
const QUOTED_INTEGERS: &[&str] = &["version", "count", "num", "integer_value", "unsigned_value"];

/// Protobuf JSON (as `grpc.jsonl` holds it) reduced to the plain JSON a REST answer
/// would carry: `Value` kinds and point ids unwrapped (`{"string_value": "x"}` is
/// `"x"`, `{"num": "4"}` is `4`), quoted 64-bit integers as numbers, `time` dropped.
pub fn plain(v: &Value) -> Value {
    match v {
        Value::Object(m) if m.len() == 1 => {
            let (k, x) = m.iter().next().unwrap();
            match k.as_str() {
                "string_value" | "uuid" | "double_value" | "bool_value" => x.clone(),
                "num" | "integer_value" | "unsigned_value" => number(x),
                "null_value" => Value::Null,
                "struct_value" => plain(x.get("fields").unwrap_or(&Value::Object(Map::new()))),
                "list_value" => plain(x.get("values").unwrap_or(&Value::Array(vec![]))),
                _ => object(m),
            }
        }
        Value::Object(m) => object(m),
        Value::Array(a) => Value::Array(a.iter().map(plain).collect()),
        other => other.clone(),
    }
}

fn object(m: &Map<String, Value>) -> Value {
    Value::Object(
        m.iter()
            .filter(|(k, _)| k.as_str() != "time")
            .map(|(k, x)| {
                let x = if QUOTED_INTEGERS.contains(&k.as_str()) {
                    number(x)
                } else {
                    plain(x)
                };
                (k.clone(), x)
            })
            .collect(),
    )
}

fn number(v: &Value) -> Value {
    match v {
        Value::String(s) => s
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| v.clone()),
        other => plain(other),
    }
}

/// Compares plain JSON: objects by their keys in any order, numbers within `1e-5`.
pub fn compare_loose(path: &str, got: &Value, want: &Value, diffs: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => compare_loose(&format!("{path}.{k}"), gv, wv, diffs),
                    None => diffs.push(format!("{path}.{k}: missing (want {wv})")),
                }
            }
            for k in g.keys().filter(|k| !w.contains_key(*k)) {
                diffs.push(format!("{path}.{k}: unexpected {}", g[k]));
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                compare_loose(&format!("{path}[{i}]"), gv, wv, diffs);
            }
        }
        (Value::Number(g), Value::Number(w)) => {
            let (a, b) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            if (a - b).abs() > 1e-5 {
                diffs.push(format!("{path}: {g}, want {w}"));
            }
        }
        _ => {
            if got != want {
                diffs.push(format!("{path}: {got}, want {want}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn diffs(f: fn(&str, &Value, &Value, &mut Vec<String>), got: &Value, want: &Value) -> usize {
        let mut d = Vec::new();
        f("$", got, want, &mut d);
        d.len()
    }

    #[test]
    fn protobuf_json_becomes_plain_json() {
        let recorded = json!({"result": [{"id": {"num": "4"}, "payload": {
            "title": {"string_value": "Everest"}, "n": {"integer_value": "42"},
            "meta": {"struct_value": {"fields": {"body": {"double_value": 1.5}}}},
            "tags": {"list_value": {}}, "none": {"null_value": "NULL_VALUE"}},
            "score": 0.99248314, "version": "1"},
            {"id": {"uuid": "5c56"}, "score": 0.5, "version": "1"}],
            "time": 0.1});
        assert_eq!(
            plain(&recorded),
            json!({"result": [{"id": 4, "payload": {"title": "Everest", "n": 42,
                "meta": {"body": 1.5}, "tags": [], "none": null},
                "score": 0.99248314, "version": 1},
                {"id": "5c56", "score": 0.5, "version": 1}]})
        );
    }

    /// The comparisons are not vacuous: a changed score, a missing or extra key, a
    /// reordered list, an integer for a float and a moved key are each reported.
    #[test]
    fn the_comparisons_catch_differences() {
        let want = json!({"result": [{"id": 4, "score": 0.99248314, "version": 1},
                                     {"id": 5, "score": 0.5, "version": 1}]});
        let same = json!({"result": [{"id": 4, "score": 0.992483, "version": 1},
                                     {"id": 5, "score": 0.5, "version": 1}]});
        assert_eq!(diffs(compare_loose, &same, &want), 0);
        let mut changed = same.clone();
        changed["result"][0]["score"] = json!(0.9924);
        assert_eq!(diffs(compare_loose, &changed, &want), 1);
        changed = same.clone();
        changed["result"][1]["payload"] = json!({});
        assert_eq!(diffs(compare_loose, &changed, &want), 1);
        changed = same.clone();
        changed["result"].as_array_mut().unwrap().reverse();
        assert!(diffs(compare_loose, &changed, &want) > 0);

        let exact = json!({"a": 1, "b": 0.5, "time": 3});
        assert_eq!(
            diffs(compare, &json!({"a": 1, "b": 0.5, "time": 9}), &exact),
            0
        );
        assert_eq!(
            diffs(compare, &json!({"a": 1.0, "b": 0.5, "time": 9}), &exact),
            1
        );
        assert_eq!(
            diffs(compare, &json!({"b": 0.5, "a": 1, "time": 9}), &exact),
            1
        );
        assert_eq!(diffs(compare, &json!({"a": 1, "b": 0.5}), &exact), 1);
    }
}
