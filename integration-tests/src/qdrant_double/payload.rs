//! Payload key paths (`a.b`, `a[].b`, `a[0]`), value lookup for filters and `group_by`, and the
//! `with_payload` selectors (`true`, a list of keys, `{"include": [...]}`, `{"exclude": [...]}`).

use serde_json::{Map, Value};

use super::types::{Payload, PayloadSelector, WithPayload};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    /// `[]`: every element of an array
    All,
    /// `[n]`
    Index(usize),
}

/// Parses `meta.body`, `tags[]`, `a[0].b`, `"dotted.key".x`.
pub fn parse_path(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut chars = path.chars().peekable();
    let mut cur = String::new();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => {
                if !cur.is_empty() {
                    segs.push(Seg::Key(std::mem::take(&mut cur)));
                }
            }
            '[' if !quoted => {
                if !cur.is_empty() {
                    segs.push(Seg::Key(std::mem::take(&mut cur)));
                }
                let mut idx = String::new();
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                    idx.push(d);
                }
                match idx.trim().parse::<usize>() {
                    Ok(n) => segs.push(Seg::Index(n)),
                    Err(_) => segs.push(Seg::All),
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        segs.push(Seg::Key(cur));
    }
    segs
}

/// Every value at `path`; arrays met on the way are descended into (implicitly or via `[]`).
/// The final values are returned as they are (an array stays an array).
pub fn raw_values<'a>(payload: &'a Payload, path: &str) -> Vec<&'a Value> {
    let segs = parse_path(path);
    let mut cur: Vec<&Value> = Vec::new();
    let Some((first, rest)) = segs.split_first() else {
        return cur;
    };
    match first {
        Seg::Key(k) => cur.extend(payload.get(k)),
        _ => return cur,
    }
    for seg in rest {
        let mut next = Vec::new();
        for v in cur {
            step(v, seg, &mut next);
        }
        cur = next;
    }
    cur
}

fn step<'a>(v: &'a Value, seg: &Seg, out: &mut Vec<&'a Value>) {
    match (seg, v) {
        (Seg::Key(k), Value::Object(m)) => out.extend(m.get(k)),
        (Seg::Key(_), Value::Array(a)) => a.iter().for_each(|x| step(x, seg, out)),
        (Seg::All, Value::Array(a)) => out.extend(a.iter()),
        (Seg::Index(i), Value::Array(a)) => out.extend(a.get(*i)),
        _ => {}
    }
}

/// Values at `path` with arrays flattened: what `match`, `range` and `group_by` look at.
pub fn values<'a>(payload: &'a Payload, path: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for v in raw_values(payload, path) {
        match v {
            Value::Array(a) => out.extend(a.iter()),
            v => out.push(v),
        }
    }
    out
}

/// Which payload a response carries.
#[derive(Debug, Clone)]
pub enum PayloadSel {
    None,
    All,
    Include(Vec<Vec<Seg>>),
    Exclude(Vec<Vec<Seg>>),
}

impl PayloadSel {
    pub fn from_request(w: Option<&WithPayload>, default_all: bool) -> PayloadSel {
        let parse = |v: &[String]| v.iter().map(|p| parse_path(p)).collect();
        match w {
            None if default_all => PayloadSel::All,
            None => PayloadSel::None,
            Some(WithPayload::Bool(true)) => PayloadSel::All,
            Some(WithPayload::Bool(false)) => PayloadSel::None,
            Some(WithPayload::Fields(f)) => PayloadSel::Include(parse(f)),
            Some(WithPayload::Selector(PayloadSelector::Include(i))) => {
                PayloadSel::Include(parse(&i.include))
            }
            Some(WithPayload::Selector(PayloadSelector::Exclude(e))) => {
                PayloadSel::Exclude(parse(&e.exclude))
            }
        }
    }

    /// The payload to put in a response, `None` when it is not requested.
    pub fn apply(&self, payload: &Payload) -> Option<Value> {
        match self {
            PayloadSel::None => None,
            PayloadSel::All => Some(Value::Object(payload.clone())),
            PayloadSel::Include(paths) => {
                let refs: Vec<&[Seg]> = paths.iter().map(|p| p.as_slice()).collect();
                Some(Value::Object(include_obj(payload, &refs)))
            }
            PayloadSel::Exclude(paths) => {
                let mut out = payload.clone();
                for p in paths {
                    exclude_obj(&mut out, p);
                }
                Some(Value::Object(out))
            }
        }
    }
}

/// Keeps the keys the paths select, in the payload's own order.
fn include_obj(obj: &Map<String, Value>, paths: &[&[Seg]]) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in obj {
        let matching: Vec<&[Seg]> = paths
            .iter()
            .filter(|p| matches!(p.first(), Some(Seg::Key(pk)) if pk == k))
            .map(|p| &p[1..])
            .collect();
        if matching.is_empty() {
            continue;
        }
        if matching.iter().any(|rest| rest.is_empty()) {
            out.insert(k.clone(), v.clone());
        } else if let Some(sub) = include_value(v, &matching) {
            out.insert(k.clone(), sub);
        }
    }
    out
}

fn include_value(v: &Value, paths: &[&[Seg]]) -> Option<Value> {
    match v {
        Value::Object(m) => {
            let sub = include_obj(m, paths);
            (!sub.is_empty()).then_some(Value::Object(sub))
        }
        Value::Array(a) => {
            // `a[].b` / `a[0].b` / implicit descent into arrays of objects
            let stripped: Vec<&[Seg]> = paths
                .iter()
                .map(|p| match p.first() {
                    Some(Seg::All) | Some(Seg::Index(_)) => &p[1..],
                    _ => *p,
                })
                .collect();
            let items: Vec<Value> = a
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    paths
                        .iter()
                        .any(|p| !matches!(p.first(), Some(Seg::Index(n)) if n != i))
                })
                .filter_map(|(_, x)| {
                    if stripped.iter().any(|p| p.is_empty()) {
                        Some(x.clone())
                    } else {
                        include_value(x, &stripped)
                    }
                })
                .collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        _ => None,
    }
}

fn exclude_obj(obj: &mut Map<String, Value>, path: &[Seg]) {
    match path {
        [Seg::Key(k)] => {
            obj.shift_remove(k);
        }
        [Seg::Key(k), rest @ ..] => {
            if let Some(v) = obj.get_mut(k) {
                exclude_value(v, rest);
            }
        }
        _ => {}
    }
}

fn exclude_value(v: &mut Value, path: &[Seg]) {
    match (v, path.first()) {
        (Value::Object(m), Some(Seg::Key(_))) => exclude_obj(m, path),
        (Value::Array(a), Some(Seg::All)) => {
            a.iter_mut().for_each(|x| exclude_value(x, &path[1..]))
        }
        (Value::Array(a), Some(Seg::Key(_))) => a.iter_mut().for_each(|x| exclude_value(x, path)),
        _ => {}
    }
}

/// `set_payload` with a `key`: merges `patch` into the object at `key` (created when missing).
pub fn set_at_key(payload: &mut Payload, key: &str, patch: &Payload) {
    let mut cur = payload;
    for seg in parse_path(key) {
        let Seg::Key(k) = seg else { return };
        let slot = cur.entry(k).or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        cur = slot.as_object_mut().expect("object");
    }
    for (k, v) in patch {
        cur.insert(k.clone(), v.clone());
    }
}

/// `delete_payload`: removes the keys.
pub fn delete_key(payload: &mut Payload, key: &str) {
    exclude_obj(payload, &parse_path(key));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload() -> Payload {
        json!({"text": "t", "title": "T", "meta": {"body": "b", "x": 1}, "tags": ["a", "b"],
               "items": [{"k": 1, "v": 2}, {"k": 3}]})
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn include_and_exclude() {
        let p = payload();
        let sel = PayloadSel::Include(vec![parse_path("meta.body"), parse_path("title")]);
        assert_eq!(
            sel.apply(&p).unwrap(),
            json!({"title": "T", "meta": {"body": "b"}})
        );
        let sel = PayloadSel::Include(vec![parse_path("items[].k")]);
        assert_eq!(
            sel.apply(&p).unwrap(),
            json!({"items": [{"k": 1}, {"k": 3}]})
        );
        let sel = PayloadSel::Exclude(vec![parse_path("meta.body"), parse_path("text")]);
        let out = sel.apply(&p).unwrap();
        assert_eq!(out["meta"], json!({"x": 1}));
        assert!(out.get("text").is_none());
    }

    #[test]
    fn lookup() {
        let p = payload();
        assert_eq!(values(&p, "tags"), vec![&json!("a"), &json!("b")]);
        assert_eq!(values(&p, "items[].k"), vec![&json!(1), &json!(3)]);
        assert_eq!(values(&p, "meta.body"), vec![&json!("b")]);
        assert!(values(&p, "nope.x").is_empty());
    }
}
