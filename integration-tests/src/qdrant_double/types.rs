//! Building blocks shared by request bodies (ids, filters, payload/vector selectors, vectors),
//! shaped like Qdrant's own serde types so that serde produces the same error messages.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

pub type Payload = Map<String, Value>;

/// `ExtendedPointId`: an unsigned integer or a UUID. Integers sort before UUIDs, as in Qdrant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PointId {
    Num(u64),
    Uuid(u128),
}

impl PointId {
    pub fn to_json(self) -> Value {
        match self {
            PointId::Num(n) => Value::from(n),
            PointId::Uuid(_) => Value::String(self.to_string()),
        }
    }

    /// Parses a path segment or string id: digits are an integer id, anything else a UUID.
    pub fn parse(s: &str) -> Option<PointId> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().ok().map(PointId::Num);
        }
        parse_uuid(s).map(PointId::Uuid)
    }
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Uuid(u) => {
                let h = format!("{u:032x}");
                write!(
                    f,
                    "{}-{}-{}-{}-{}",
                    &h[0..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..32]
                )
            }
        }
    }
}

/// Accepts the forms `uuid::Uuid::parse_str` accepts: hyphenated, simple, braced and urn.
fn parse_uuid(s: &str) -> Option<u128> {
    let s = s.strip_prefix("urn:uuid:").unwrap_or(s);
    let s = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    let hex: String = if s.len() == 36 {
        let b = s.as_bytes();
        if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
            return None;
        }
        s.chars().filter(|&c| c != '-').collect()
    } else if s.len() == 32 {
        s.to_string()
    } else {
        return None;
    };
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok()
}

impl<'de> Deserialize<'de> for PointId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        const MSG: &str = "data did not match any variant of untagged enum ExtendedPointId";
        impl Visitor<'_> for IdVisitor {
            type Value = PointId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an unsigned integer or a UUID")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PointId, E> {
                Ok(PointId::Num(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PointId, E> {
                u64::try_from(v)
                    .map(PointId::Num)
                    .map_err(|_| E::custom(MSG))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<PointId, E> {
                Err(E::custom(MSG))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PointId, E> {
                parse_uuid(v)
                    .map(PointId::Uuid)
                    .ok_or_else(|| E::custom(MSG))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

/// `MaybeOneOrMany`: a single item or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::Many(v) => v,
            OneOrMany::One(x) => vec![x],
        }
    }
}

/// Conditions are kept as JSON and compiled by `filter.rs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default)]
    pub should: Option<OneOrMany<Value>>,
    #[serde(default)]
    pub min_should: Option<Value>,
    #[serde(default)]
    pub must: Option<OneOrMany<Value>>,
    #[serde(default)]
    pub must_not: Option<OneOrMany<Value>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "Expected a boolean, an array of strings, or an object with an include/exclude field"
)]
pub enum WithPayload {
    Bool(bool),
    Fields(Vec<String>),
    Selector(PayloadSelector),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PayloadSelector {
    Include(PayloadInclude),
    Exclude(PayloadExclude),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadInclude {
    pub include: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadExclude {
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum WithVector {
    Bool(bool),
    Names(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

/// A text to embed server-side (`{"text", "model", "options"}`).
#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    pub text: String,
    pub model: String,
    #[serde(default)]
    pub options: Option<Value>,
}

/// Image / generic inference object: always needs an inference service.
#[derive(Debug, Clone, Deserialize)]
pub struct InferenceInput {
    #[serde(alias = "object")]
    pub image: Value,
    pub model: String,
}

/// `VectorInput` (query API) and `Vector` (upsert): every way of giving one vector.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum VectorInput {
    Dense(Vec<f32>),
    Sparse(SparseVector),
    Multi(Vec<Vec<f32>>),
    Id(PointId),
    Document(Document),
    Inference(InferenceInput),
}

/// `VectorStruct` of a point in an upsert.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum VectorStruct {
    Single(Vec<f32>),
    Multi(Vec<Vec<f32>>),
    Document(Document),
    Inference(InferenceInput),
    Named(BTreeMap<String, VectorInput>),
}

/// `NamedVectorStruct` of the legacy search API.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NamedVectorStruct {
    Default(Vec<f32>),
    Dense(NamedVector),
    Sparse(NamedSparseVector),
}

#[derive(Debug, Clone, Deserialize)]
pub struct NamedVector {
    pub name: String,
    pub vector: Vec<f32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NamedSparseVector {
    pub name: String,
    pub vector: SparseVector,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RecommendStrategy {
    #[default]
    AverageVector,
    BestScore,
    SumScores,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContextPair {
    pub positive: VectorInput,
    pub negative: VectorInput,
}

/// Parses a request body like actix's `Json` extractor does (any content type).
pub fn parse_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, super::errors::ApiError> {
    serde_json::from_slice(body).map_err(super::errors::ApiError::format)
}
