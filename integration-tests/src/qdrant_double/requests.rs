//! Bodies of the search-like endpoints: legacy search/recommend/discover (and their batch and
//! group variants) and the universal query API. Top-level `#[serde(flatten)]` as in Qdrant, so
//! serde errors carry the position of the end of the outer object, like a real Qdrant's do.

use serde::Deserialize;
use serde_json::Value;

use super::types::{
    ContextPair, Filter, NamedVectorStruct, OneOrMany, RecommendStrategy, VectorInput, WithPayload,
    WithVector,
};

// ---------------------------------------------------------------- legacy search-like requests

#[derive(Debug, Deserialize)]
pub struct SearchRequest {
    #[serde(flatten)]
    pub search: SearchRequestInternal,
    #[serde(default)]
    pub shard_key: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct SearchRequestInternal {
    pub vector: NamedVectorStruct,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub params: Option<Value>,
    pub limit: usize,
    #[serde(default)]
    pub offset: Option<usize>,
    #[serde(default)]
    pub with_payload: Option<WithPayload>,
    #[serde(default, alias = "with_vectors")]
    pub with_vector: Option<WithVector>,
    #[serde(default)]
    pub score_threshold: Option<f32>,
}

#[derive(Debug, Deserialize)]
pub struct SearchGroupsRequest {
    #[serde(flatten)]
    pub search: SearchGroupsInternal,
    #[serde(default)]
    pub shard_key: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct SearchGroupsInternal {
    pub vector: NamedVectorStruct,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default)]
    pub with_payload: Option<WithPayload>,
    #[serde(default, alias = "with_vectors")]
    pub with_vector: Option<WithVector>,
    #[serde(default)]
    pub score_threshold: Option<f32>,
    pub group_by: String,
    pub group_size: usize,
    pub limit: usize,
    #[serde(default)]
    pub with_lookup: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct RecommendRequest {
    #[serde(flatten)]
    pub recommend: RecommendInternal,
    #[serde(default)]
    pub shard_key: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct RecommendInternal {
    #[serde(default)]
    pub positive: Vec<VectorInput>,
    #[serde(default)]
    pub negative: Vec<VectorInput>,
    #[serde(default)]
    pub strategy: Option<RecommendStrategy>,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub params: Option<Value>,
    pub limit: usize,
    #[serde(default)]
    pub offset: Option<usize>,
    #[serde(default)]
    pub with_payload: Option<WithPayload>,
    #[serde(default, alias = "with_vectors")]
    pub with_vector: Option<WithVector>,
    #[serde(default)]
    pub score_threshold: Option<f32>,
    #[serde(default)]
    pub using: Option<String>,
    #[serde(default)]
    pub lookup_from: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct RecommendGroupsRequest {
    #[serde(flatten)]
    pub recommend: RecommendGroupsInternal,
    #[serde(default)]
    pub shard_key: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct RecommendGroupsInternal {
    #[serde(default)]
    pub positive: Vec<VectorInput>,
    #[serde(default)]
    pub negative: Vec<VectorInput>,
    #[serde(default)]
    pub strategy: Option<RecommendStrategy>,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default)]
    pub with_payload: Option<WithPayload>,
    #[serde(default, alias = "with_vectors")]
    pub with_vector: Option<WithVector>,
    #[serde(default)]
    pub score_threshold: Option<f32>,
    #[serde(default)]
    pub using: Option<String>,
    #[serde(default)]
    pub lookup_from: Option<Value>,
    pub group_by: String,
    pub group_size: usize,
    pub limit: usize,
    #[serde(default)]
    pub with_lookup: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct DiscoverRequest {
    #[serde(flatten)]
    pub discover: DiscoverInternal,
    #[serde(default)]
    pub shard_key: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct DiscoverInternal {
    #[serde(default)]
    pub target: Option<VectorInput>,
    #[serde(default)]
    pub context: Option<Vec<ContextPair>>,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub params: Option<Value>,
    pub limit: usize,
    #[serde(default)]
    pub offset: Option<usize>,
    #[serde(default)]
    pub with_payload: Option<WithPayload>,
    #[serde(default, alias = "with_vectors")]
    pub with_vector: Option<WithVector>,
    #[serde(default)]
    pub using: Option<String>,
    #[serde(default)]
    pub lookup_from: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct Batch<T> {
    pub searches: Vec<T>,
}

// ---------------------------------------------------------------- query API

#[derive(Debug, Deserialize)]
pub struct QueryRequest {
    #[serde(flatten)]
    pub query: QueryRequestInternal,
    #[serde(default)]
    pub shard_key: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct QueryRequestInternal {
    #[serde(default)]
    pub prefetch: Option<OneOrMany<Box<Prefetch>>>,
    #[serde(default)]
    pub query: Option<QueryInterface>,
    #[serde(default)]
    pub using: Option<String>,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default)]
    pub score_threshold: Option<f32>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub offset: Option<usize>,
    #[serde(default, alias = "with_vectors")]
    pub with_vector: Option<WithVector>,
    #[serde(default)]
    pub with_payload: Option<WithPayload>,
    #[serde(default)]
    pub lookup_from: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct QueryGroupsRequest {
    #[serde(flatten)]
    pub query: QueryGroupsInternal,
    #[serde(default)]
    pub shard_key: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct QueryGroupsInternal {
    #[serde(default)]
    pub prefetch: Option<OneOrMany<Box<Prefetch>>>,
    #[serde(default)]
    pub query: Option<QueryInterface>,
    #[serde(default)]
    pub using: Option<String>,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default)]
    pub score_threshold: Option<f32>,
    #[serde(default, alias = "with_vectors")]
    pub with_vector: Option<WithVector>,
    #[serde(default)]
    pub with_payload: Option<WithPayload>,
    #[serde(default)]
    pub lookup_from: Option<Value>,
    pub group_by: String,
    #[serde(default)]
    pub group_size: Option<usize>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub with_lookup: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Prefetch {
    #[serde(default)]
    pub prefetch: Option<OneOrMany<Box<Prefetch>>>,
    #[serde(default)]
    pub query: Option<QueryInterface>,
    #[serde(default)]
    pub using: Option<String>,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default)]
    pub score_threshold: Option<f32>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub lookup_from: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum QueryInterface {
    Vector(VectorInput),
    Query(Query),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Query {
    Nearest {
        nearest: VectorInput,
        #[serde(default)]
        mmr: Option<Value>,
    },
    Recommend {
        recommend: RecommendInput,
    },
    Discover {
        discover: DiscoverInput,
    },
    Context {
        context: OneOrMany<ContextPair>,
    },
    OrderBy {
        order_by: OrderByInterface,
    },
    Fusion {
        fusion: Fusion,
    },
    Rrf {
        rrf: Rrf,
    },
    Formula {
        formula: Value,
    },
    Sample {
        sample: Sample,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct RecommendInput {
    #[serde(default)]
    pub positive: Option<Vec<VectorInput>>,
    #[serde(default)]
    pub negative: Option<Vec<VectorInput>>,
    #[serde(default)]
    pub strategy: Option<RecommendStrategy>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DiscoverInput {
    pub target: VectorInput,
    pub context: Option<OneOrMany<ContextPair>>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Fusion {
    Rrf,
    Dbsf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Rrf {
    #[serde(default)]
    pub k: Option<usize>,
    #[serde(default)]
    pub weights: Option<Vec<f32>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sample {
    Random,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OrderByInterface {
    Key(String),
    Struct(OrderBy),
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderBy {
    pub key: String,
    #[serde(default)]
    pub direction: Option<Direction>,
    #[serde(default)]
    pub start_from: Option<Value>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Asc,
    Desc,
}

impl OrderByInterface {
    pub fn into_order_by(self) -> OrderBy {
        match self {
            OrderByInterface::Key(key) => OrderBy {
                key,
                direction: None,
                start_from: None,
            },
            OrderByInterface::Struct(o) => o,
        }
    }
}
