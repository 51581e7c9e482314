//! A prost message as JSON, read off its `Debug` text: prost prints every message with its
//! `.proto` field names, oneofs as `Some(Variant(value))`, maps with `{k: v}` and enumerations by
//! name, which is enough to rebuild a protobuf-JSON-like value without a reflection library:
//!
//! - field names as in the `.proto` (`collection_name`, `with_payload`);
//! - a oneof is flattened into its message under the variant's snake_case name, as protobuf JSON
//!   does (`"with_payload": {"enable": true}`, `"id": {"num": 4}`);
//! - `None` fields are left out; every other field is kept, defaults included (`"version": 0`,
//!   `"filter"` absent but `"vector": []` present);
//! - 64-bit integers are JSON numbers (protobuf JSON would quote them), floats are numbers (a
//!   non-finite float is `null`), enumerations are their Rust variant names (`"Cosine"`), bytes
//!   are lists of numbers, map keys that are not strings are written as strings.

use serde_json::{Map, Number, Value};

/// The JSON form of any prost message (see the module docs). Best effort: text it cannot read
/// comes back as a JSON string holding the whole `Debug` text.
pub fn message_json<T: std::fmt::Debug + ?Sized>(msg: &T) -> Value {
    let text = format!("{msg:?}");
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    match p.value() {
        Ok(v) => {
            p.ws();
            if p.i != p.s.len() {
                return Value::String(text);
            }
            match v {
                // a message without fields prints as its bare name
                Item::Plain(Value::String(_)) if is_type_name(&text) => Value::Object(Map::new()),
                other => other.into_value(),
            }
        }
        Err(()) => Value::String(text),
    }
}

fn is_type_name(t: &str) -> bool {
    t.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

enum Item {
    Plain(Value),
    /// `Variant(value)`: a oneof case
    Oneof(String, Value),
    /// `None`
    Absent,
}

impl Item {
    fn into_value(self) -> Value {
        match self {
            Item::Plain(v) => v,
            Item::Oneof(name, v) => {
                let mut m = Map::new();
                m.insert(name, v);
                Value::Object(m)
            }
            Item::Absent => Value::Null,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

type R<T> = Result<T, ()>;

fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> R<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(())
        }
    }

    fn ident(&mut self) -> String {
        self.ws();
        let start = self.i;
        if self.s[self.i..].starts_with(b"r#") {
            self.i += 2;
        }
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
        {
            self.i += 1;
        }
        let id = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        id.strip_prefix("r#").map(str::to_string).unwrap_or(id)
    }

    fn value(&mut self) -> R<Item> {
        match self.peek().ok_or(())? {
            b'"' => Ok(Item::Plain(Value::String(self.string()?))),
            b'[' => {
                self.i += 1;
                let mut out = Vec::new();
                while !self.eat(b']') {
                    out.push(self.value()?.into_value());
                    if !self.eat(b',') {
                        self.expect(b']')?;
                        break;
                    }
                }
                Ok(Item::Plain(Value::Array(out)))
            }
            b'{' => {
                self.i += 1;
                let mut m = Map::new();
                while !self.eat(b'}') {
                    let k = match self.value()?.into_value() {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    self.expect(b':')?;
                    m.insert(k, self.value()?.into_value());
                    if !self.eat(b',') {
                        self.expect(b'}')?;
                        break;
                    }
                }
                Ok(Item::Plain(Value::Object(m)))
            }
            c if c == b'-' || c.is_ascii_digit() => self.number(),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let id = self.ident();
                match id.as_str() {
                    "None" => return Ok(Item::Absent),
                    "true" => return Ok(Item::Plain(Value::Bool(true))),
                    "false" => return Ok(Item::Plain(Value::Bool(false))),
                    "NaN" | "inf" => return Ok(Item::Plain(Value::Null)),
                    _ => {}
                }
                match self.peek() {
                    Some(b'{') => self.fields(),
                    Some(b'(') => {
                        self.i += 1;
                        let inner = self.value()?;
                        self.eat(b',');
                        self.expect(b')')?;
                        if id == "Some" {
                            Ok(inner)
                        } else {
                            Ok(Item::Oneof(snake(&id), inner.into_value()))
                        }
                    }
                    // an enumeration value, or a message without fields
                    _ => Ok(Item::Plain(Value::String(id))),
                }
            }
            _ => Err(()),
        }
    }

    /// `{ name: value, ... }` of a struct (the type name already read).
    fn fields(&mut self) -> R<Item> {
        self.expect(b'{')?;
        let mut m = Map::new();
        while !self.eat(b'}') {
            if self.s[self.i..].starts_with(b"..") {
                self.i += 2;
                continue;
            }
            let name = self.ident();
            if name.is_empty() {
                return Err(());
            }
            self.expect(b':')?;
            match self.value()? {
                Item::Absent => {}
                Item::Plain(v) => {
                    m.insert(name, v);
                }
                Item::Oneof(case, v) => {
                    m.insert(case, v);
                }
            }
            if !self.eat(b',') {
                self.expect(b'}')?;
                break;
            }
        }
        Ok(Item::Plain(Value::Object(m)))
    }

    fn number(&mut self) -> R<Item> {
        self.ws();
        let start = self.i;
        if self.s[self.i] == b'-' {
            self.i += 1;
            if self.s[self.i..].starts_with(b"inf") {
                self.i += 3;
                return Ok(Item::Plain(Value::Null));
            }
        }
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric()
                || matches!(self.s[self.i], b'.' | b'-' | b'+'))
        {
            self.i += 1;
        }
        let t = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| ())?;
        if !t.contains(['.', 'e', 'E']) {
            if let Ok(u) = t.parse::<u64>() {
                return Ok(Item::Plain(Value::from(u)));
            }
            if let Ok(n) = t.parse::<i64>() {
                return Ok(Item::Plain(Value::from(n)));
            }
        }
        let f: f64 = t.parse().map_err(|_| ())?;
        Ok(Item::Plain(
            Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
        ))
    }

    fn string(&mut self) -> R<String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.i).ok_or(())?;
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = *self.s.get(self.i).ok_or(())?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'0' => out.push(0),
                        b'u' => {
                            self.expect(b'{')?;
                            let start = self.i;
                            while self.s.get(self.i).is_some_and(|b| *b != b'}') {
                                self.i += 1;
                            }
                            let hex =
                                std::str::from_utf8(&self.s[start..self.i]).map_err(|_| ())?;
                            self.i += 1;
                            let ch = u32::from_str_radix(hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or(())?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
        String::from_utf8(out).map_err(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qdrant_client::qdrant::{
        point_id::PointIdOptions, value::Kind, with_payload_selector::SelectorOptions,
        HealthCheckRequest, ListValue, PayloadIncludeSelector, PointId, SearchPoints, Struct,
        Value as PbValue, WithPayloadSelector,
    };
    use serde_json::json;

    #[test]
    fn search_points_reads_like_protobuf_json() {
        let req = SearchPoints {
            collection_name: "do\"cs\n√".into(),
            vector: vec![0.2, 0.1, 1.0, -1e-7],
            limit: 3,
            with_payload: Some(WithPayloadSelector {
                selector_options: Some(SelectorOptions::Include(PayloadIncludeSelector {
                    fields: vec!["title".into()],
                })),
            }),
            score_threshold: Some(0.5),
            ..Default::default()
        };
        let v = message_json(&req);
        assert_eq!(v["collection_name"], json!("do\"cs\n√"));
        assert_eq!(v["vector"], json!([0.2, 0.1, 1.0, -1e-7]));
        assert_eq!(v["limit"], json!(3));
        assert_eq!(v["with_payload"], json!({"include": {"fields": ["title"]}}));
        assert_eq!(v["score_threshold"], json!(0.5));
        assert!(v.get("filter").is_none());
        assert!(v.get("offset").is_none());
    }

    #[test]
    fn values_ids_and_empty_messages() {
        let id = PointId {
            point_id_options: Some(PointIdOptions::Uuid("5c56c793".into())),
        };
        assert_eq!(message_json(&id), json!({"uuid": "5c56c793"}));
        let v = PbValue {
            kind: Some(Kind::StructValue(Struct {
                fields: [(
                    "a".to_string(),
                    PbValue {
                        kind: Some(Kind::ListValue(ListValue {
                            values: vec![PbValue {
                                kind: Some(Kind::IntegerValue(-4)),
                            }],
                        })),
                    },
                )]
                .into(),
            })),
        };
        assert_eq!(
            message_json(&v),
            json!({"struct_value": {"fields": {"a": {"list_value": {"values": [{"integer_value": -4}]}}}}})
        );
        assert_eq!(message_json(&HealthCheckRequest {}), json!({}));
    }

    #[test]
    fn enumerations_maps_and_nested_oneofs() {
        use qdrant_client::qdrant::{
            CreateCollectionBuilder, Distance, Fusion, Modifier, PrefetchQueryBuilder, Query,
            QueryPointsBuilder, SparseVectorParamsBuilder, SparseVectorsConfigBuilder,
            VectorParamsBuilder,
        };
        let mut sparse = SparseVectorsConfigBuilder::default();
        sparse.add_named_vector_params(
            "bm25",
            SparseVectorParamsBuilder::default().modifier(Modifier::Idf),
        );
        let create = CreateCollectionBuilder::new("c")
            .vectors_config(VectorParamsBuilder::new(4, Distance::Cosine))
            .sparse_vectors_config(sparse)
            .build();
        let v = message_json(&create);
        assert_eq!(v["vectors_config"]["params"]["distance"], json!("Cosine"));
        assert_eq!(v["vectors_config"]["params"]["size"], json!(4));
        assert_eq!(
            v["sparse_vectors_config"]["map"]["bm25"]["modifier"],
            json!("Idf")
        );
        let q = QueryPointsBuilder::new("c")
            .add_prefetch(
                PrefetchQueryBuilder::default()
                    .query(Query::new_nearest(vec![1.0, 0.5]))
                    .limit(7u64),
            )
            .query(Query::new_fusion(Fusion::Rrf))
            .build();
        let v = message_json(&q);
        assert_eq!(v["query"], json!({"fusion": "Rrf"}));
        assert_eq!(
            v["prefetch"][0]["query"],
            json!({"nearest": {"dense": {"data": [1.0, 0.5]}}})
        );
        assert_eq!(v["prefetch"][0]["limit"], json!(7));
    }
}
