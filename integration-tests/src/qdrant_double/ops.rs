//! Bodies of the point-mutation, retrieval and collection endpoints.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::requests::OrderByInterface;
use super::types::{
    Document, Filter, Payload, PointId, VectorInput, VectorStruct, WithPayload, WithVector,
};

// ---------------------------------------------------------------- points

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PointInsertOperations {
    Batch(PointsBatch),
    List(PointsList),
}

#[derive(Debug, Deserialize)]
pub struct PointsList {
    pub points: Vec<PointStruct>,
    #[serde(default)]
    pub shard_key: Option<Value>,
    #[serde(default)]
    pub update_filter: Option<Filter>,
    #[serde(default)]
    pub update_mode: Option<UpdateMode>,
}

#[derive(Debug, Deserialize)]
pub struct PointsBatch {
    pub batch: BatchPoints,
    #[serde(default)]
    pub shard_key: Option<Value>,
    #[serde(default)]
    pub update_filter: Option<Filter>,
    #[serde(default)]
    pub update_mode: Option<UpdateMode>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UpdateMode {
    Upsert,
    InsertOnly,
    UpdateOnly,
}

#[derive(Debug, Deserialize)]
pub struct PointStruct {
    pub id: PointId,
    pub vector: VectorStruct,
    #[serde(default)]
    pub payload: Option<Payload>,
}

#[derive(Debug, Deserialize)]
pub struct BatchPoints {
    pub ids: Vec<PointId>,
    pub vectors: BatchVectorStruct,
    #[serde(default)]
    pub payloads: Option<Vec<Option<Payload>>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BatchVectorStruct {
    Single(Vec<Vec<f32>>),
    Multi(Vec<Vec<Vec<f32>>>),
    Named(BTreeMap<String, Vec<VectorInput>>),
    Document(Vec<Document>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PointsSelector {
    Ids {
        points: Vec<PointId>,
        #[serde(default)]
        shard_key: Option<Value>,
    },
    Filter {
        filter: Filter,
        #[serde(default)]
        shard_key: Option<Value>,
    },
}

#[derive(Debug, Deserialize)]
pub struct SetPayload {
    pub payload: Payload,
    #[serde(default)]
    pub points: Option<Vec<PointId>>,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub shard_key: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct DeletePayload {
    pub keys: Vec<String>,
    #[serde(default)]
    pub points: Option<Vec<PointId>>,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub shard_key: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct ScrollRequest {
    #[serde(flatten)]
    pub scroll: ScrollInternal,
    #[serde(default)]
    pub shard_key: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct ScrollInternal {
    #[serde(default)]
    pub offset: Option<PointId>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub with_payload: Option<WithPayload>,
    #[serde(default, alias = "with_vectors")]
    pub with_vector: Option<WithVector>,
    #[serde(default)]
    pub order_by: Option<OrderByInterface>,
}

#[derive(Debug, Deserialize)]
pub struct CountRequest {
    #[serde(flatten)]
    pub count: CountInternal,
    #[serde(default)]
    pub shard_key: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct CountInternal {
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub exact: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct PointRequest {
    #[serde(flatten)]
    pub point: PointRequestInternal,
    #[serde(default)]
    pub shard_key: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct PointRequestInternal {
    pub ids: Vec<PointId>,
    #[serde(default)]
    pub with_payload: Option<WithPayload>,
    #[serde(default, alias = "with_vectors")]
    pub with_vector: Option<WithVector>,
}

// ---------------------------------------------------------------- collections

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CreateCollection {
    #[serde(default)]
    pub vectors: Option<VectorsConfig>,
    #[serde(default)]
    pub sparse_vectors: Option<BTreeMap<String, SparseVectorParams>>,
    #[serde(default)]
    pub shard_number: Option<u32>,
    #[serde(default)]
    pub replication_factor: Option<u32>,
    #[serde(default)]
    pub write_consistency_factor: Option<u32>,
    #[serde(default)]
    pub on_disk_payload: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum VectorsConfig {
    Single(VectorParams),
    Multi(BTreeMap<String, VectorParams>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct VectorParams {
    pub size: usize,
    pub distance: Distance,
    #[serde(default)]
    pub hnsw_config: Option<Value>,
    #[serde(default)]
    pub quantization_config: Option<Value>,
    #[serde(default)]
    pub on_disk: Option<bool>,
    #[serde(default)]
    pub datatype: Option<Value>,
    #[serde(default)]
    pub multivector_config: Option<Value>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum Distance {
    Cosine,
    Euclid,
    Dot,
    Manhattan,
}

impl Distance {
    pub fn as_str(self) -> &'static str {
        match self {
            Distance::Cosine => "Cosine",
            Distance::Euclid => "Euclid",
            Distance::Dot => "Dot",
            Distance::Manhattan => "Manhattan",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SparseVectorParams {
    #[serde(default)]
    pub index: Option<Value>,
    #[serde(default)]
    pub modifier: Option<Modifier>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Modifier {
    None,
    Idf,
}
