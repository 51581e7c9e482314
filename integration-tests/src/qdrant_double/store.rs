//! Collections and points in memory: create/delete/info, upsert (dense vectors normalised for
//! Cosine like Qdrant does, sparse vectors, BM25 documents), point mutations, and the JSON shapes
//! of stored points (`Record`, `ScoredPoint`).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::bm25;
use super::errors::{ApiError, ApiResult};
use super::filter::CFilter;
use super::ops::{
    BatchVectorStruct, CreateCollection, Distance, Modifier, PointInsertOperations,
    SparseVectorParams, UpdateMode, VectorParams, VectorsConfig,
};
use super::payload::PayloadSel;
use super::types::{Payload, PointId, SparseVector, VectorInput, VectorStruct, WithVector};

/// The name of the unnamed (default) vector.
pub const DEFAULT_VECTOR: &str = "";

#[derive(Debug, Default)]
pub struct Store {
    pub collections: BTreeMap<String, Collection>,
}

impl Store {
    pub fn get(&self, name: &str) -> ApiResult<&Collection> {
        self.collections
            .get(name)
            .ok_or_else(|| ApiError::collection_not_found(name))
    }

    pub fn get_mut(&mut self, name: &str) -> ApiResult<&mut Collection> {
        self.collections
            .get_mut(name)
            .ok_or_else(|| ApiError::collection_not_found(name))
    }
}

#[derive(Debug, Clone)]
pub struct Collection {
    pub config: CreateCollection,
    /// `true` when created with a single unnamed vector (`"vectors": {"size", "distance"}`)
    pub unnamed: bool,
    pub dense: BTreeMap<String, VectorParams>,
    pub sparse: BTreeMap<String, SparseVectorParams>,
    pub points: BTreeMap<PointId, Point>,
    /// last operation id; the first update answers `operation_id: 1`, as recorded
    pub op_counter: u64,
}

#[derive(Debug, Clone)]
pub struct Point {
    pub id: PointId,
    pub version: u64,
    pub vectors: BTreeMap<String, StoredVector>,
    pub payload: Payload,
}

#[derive(Debug, Clone)]
pub enum StoredVector {
    Dense(Vec<f32>),
    Sparse(SparseVector),
}

/// Where a vector name points.
#[derive(Debug, Clone, Copy)]
pub enum Space<'a> {
    Dense(&'a VectorParams),
    Sparse(&'a SparseVectorParams),
}

/// Qdrant's Cosine preprocessing: scale to unit length unless (almost) zero or already unit.
pub fn normalize(v: &[f32]) -> Vec<f32> {
    let len2: f32 = v.iter().map(|x| x * x).sum();
    if len2 < f32::EPSILON || (len2 - 1.0).abs() <= 1.0e-6 {
        return v.to_vec();
    }
    let len = len2.sqrt();
    v.iter().map(|x| x / len).collect()
}

pub fn sort_sparse(v: &SparseVector) -> SparseVector {
    let mut pairs: Vec<(u32, f32)> = v
        .indices
        .iter()
        .copied()
        .zip(v.values.iter().copied())
        .collect();
    pairs.sort_by_key(|p| p.0);
    pairs.dedup_by_key(|p| p.0);
    let (indices, values) = pairs.into_iter().unzip();
    SparseVector { indices, values }
}

impl Collection {
    pub fn new(config: CreateCollection) -> ApiResult<Collection> {
        let (unnamed, dense) = match &config.vectors {
            None => (false, BTreeMap::new()),
            Some(VectorsConfig::Single(p)) => {
                (true, BTreeMap::from([(DEFAULT_VECTOR.into(), p.clone())]))
            }
            Some(VectorsConfig::Multi(m)) => (false, m.clone()),
        };
        if dense.values().any(|p| p.multivector_config.is_some()) {
            return Err(ApiError::unsupported("multivector collections"));
        }
        let sparse = config.sparse_vectors.clone().unwrap_or_default();
        Ok(Collection {
            config,
            unnamed,
            dense,
            sparse,
            points: BTreeMap::new(),
            op_counter: 0,
        })
    }

    pub fn space(&self, name: &str) -> ApiResult<Space<'_>> {
        if let Some(p) = self.dense.get(name) {
            return Ok(Space::Dense(p));
        }
        if let Some(p) = self.sparse.get(name) {
            return Ok(Space::Sparse(p));
        }
        Err(ApiError::vector_name(name))
    }

    pub fn next_op(&mut self) -> u64 {
        self.op_counter += 1;
        self.op_counter
    }

    /// Validates and converts one vector for storage under `name`.
    fn convert(&self, name: &str, v: VectorInput) -> ApiResult<StoredVector> {
        match (self.space(name)?, v) {
            (Space::Dense(p), VectorInput::Dense(d)) => {
                if d.len() != p.size {
                    return Err(ApiError::dimension(p.size, d.len()));
                }
                Ok(StoredVector::Dense(if p.distance == Distance::Cosine {
                    normalize(&d)
                } else {
                    d
                }))
            }
            (Space::Sparse(_), VectorInput::Sparse(s)) => {
                if s.indices.len() != s.values.len() {
                    return Err(ApiError::wrong_input(
                        "Validation error: indices and values must have the same length",
                    ));
                }
                Ok(StoredVector::Sparse(sort_sparse(&s)))
            }
            (Space::Sparse(_), VectorInput::Document(doc)) if bm25::is_bm25(&doc) => {
                Ok(StoredVector::Sparse(bm25::doc_embed(&doc)))
            }
            (_, VectorInput::Document(_) | VectorInput::Inference(_)) => {
                Err(ApiError::inference_not_configured())
            }
            (Space::Dense(_), VectorInput::Sparse(_)) => Err(ApiError::wrong_input(format!(
                "Conversion between sparse and regular vectors failed for vector `{name}`"
            ))),
            (Space::Sparse(_), VectorInput::Dense(_)) => Err(ApiError::wrong_input(format!(
                "Conversion between sparse and regular vectors failed for vector `{name}`"
            ))),
            (_, VectorInput::Multi(_)) => Err(ApiError::unsupported("multivectors")),
            (_, VectorInput::Id(_)) => Err(ApiError::wrong_input("a point id is not a vector")),
        }
    }

    fn convert_struct(&self, v: VectorStruct) -> ApiResult<BTreeMap<String, StoredVector>> {
        let named: BTreeMap<String, VectorInput> = match v {
            VectorStruct::Single(d) => {
                BTreeMap::from([(DEFAULT_VECTOR.into(), VectorInput::Dense(d))])
            }
            VectorStruct::Multi(m) => {
                BTreeMap::from([(DEFAULT_VECTOR.into(), VectorInput::Multi(m))])
            }
            VectorStruct::Document(d) => {
                BTreeMap::from([(DEFAULT_VECTOR.into(), VectorInput::Document(d))])
            }
            VectorStruct::Inference(i) => {
                BTreeMap::from([(DEFAULT_VECTOR.into(), VectorInput::Inference(i))])
            }
            VectorStruct::Named(m) => m,
        };
        named
            .into_iter()
            .map(|(k, v)| Ok((k.clone(), self.convert(&k, v)?)))
            .collect()
    }

    /// Upsert; returns the operation id.
    pub fn upsert(&mut self, op: PointInsertOperations) -> ApiResult<u64> {
        let (points, update_filter, mode) = match op {
            PointInsertOperations::List(l) => {
                let pts = l
                    .points
                    .into_iter()
                    .map(|p| {
                        Ok((
                            p.id,
                            self.convert_struct(p.vector)?,
                            p.payload.unwrap_or_default(),
                        ))
                    })
                    .collect::<ApiResult<Vec<_>>>()?;
                (pts, l.update_filter, l.update_mode)
            }
            PointInsertOperations::Batch(b) => {
                let pts = self.convert_batch(b.batch)?;
                (pts, b.update_filter, b.update_mode)
            }
        };
        let update_filter = super::filter::compile_opt(update_filter.as_ref())?;
        let mode = mode.unwrap_or(UpdateMode::Upsert);
        let op = self.next_op();
        for (id, vectors, payload) in points {
            let existing = self.points.get(&id);
            let allowed = match (existing, mode) {
                (Some(_), UpdateMode::InsertOnly) | (None, UpdateMode::UpdateOnly) => false,
                (Some(p), _) => update_filter.as_ref().is_none_or(|f| f.matches(p)),
                (None, _) => true,
            };
            if allowed {
                self.points.insert(
                    id,
                    Point {
                        id,
                        version: op,
                        vectors,
                        payload,
                    },
                );
            }
        }
        Ok(op)
    }

    #[allow(clippy::type_complexity)]
    fn convert_batch(
        &self,
        b: super::ops::BatchPoints,
    ) -> ApiResult<Vec<(PointId, BTreeMap<String, StoredVector>, Payload)>> {
        let n = b.ids.len();
        let mut per_point: Vec<BTreeMap<String, StoredVector>> = vec![BTreeMap::new(); n];
        let mut put = |name: &str, vs: Vec<VectorInput>| -> ApiResult<()> {
            if vs.len() != n {
                return Err(ApiError::wrong_input(
                    "number of vectors and ids do not match",
                ));
            }
            for (slot, v) in per_point.iter_mut().zip(vs) {
                slot.insert(name.to_string(), self.convert(name, v)?);
            }
            Ok(())
        };
        match b.vectors {
            BatchVectorStruct::Single(vs) => put(
                DEFAULT_VECTOR,
                vs.into_iter().map(VectorInput::Dense).collect(),
            )?,
            BatchVectorStruct::Multi(_) => return Err(ApiError::unsupported("multivectors")),
            BatchVectorStruct::Document(ds) => put(
                DEFAULT_VECTOR,
                ds.into_iter().map(VectorInput::Document).collect(),
            )?,
            BatchVectorStruct::Named(m) => {
                for (name, vs) in m {
                    put(&name, vs)?;
                }
            }
        }
        let mut payloads = b.payloads.unwrap_or_default().into_iter();
        Ok(b.ids
            .into_iter()
            .zip(per_point)
            .map(|(id, v)| (id, v, payloads.next().flatten().unwrap_or_default()))
            .collect())
    }

    /// Ids selected by a list of ids or a filter.
    pub fn select(&self, ids: Option<&[PointId]>, filter: Option<&CFilter>) -> Vec<PointId> {
        self.points
            .values()
            .filter(|p| ids.is_none_or(|ids| ids.contains(&p.id)))
            .filter(|p| filter.is_none_or(|f| f.matches(p)))
            .map(|p| p.id)
            .collect()
    }

    /// Applies `f` to the selected points, bumping their version. Returns the operation id.
    pub fn update_points(&mut self, ids: &[PointId], mut f: impl FnMut(&mut Point)) -> u64 {
        let op = self.next_op();
        for id in ids {
            if let Some(p) = self.points.get_mut(id) {
                f(p);
                p.version = op;
            }
        }
        op
    }

    pub fn info(&self) -> Value {
        let c = &self.config;
        let vectors = if self.unnamed {
            vector_params_json(&self.dense[DEFAULT_VECTOR])
        } else {
            Value::Object(
                self.dense
                    .iter()
                    .map(|(k, p)| (k.clone(), vector_params_json(p)))
                    .collect(),
            )
        };
        let mut params = json!({
            "vectors": vectors,
            "shard_number": c.shard_number.unwrap_or(1),
            "replication_factor": c.replication_factor.unwrap_or(1),
            "write_consistency_factor": c.write_consistency_factor.unwrap_or(1),
            "on_disk_payload": c.on_disk_payload.unwrap_or(true),
        });
        if !self.sparse.is_empty() {
            let sparse: Map<String, Value> = self
                .sparse
                .iter()
                .map(|(k, p)| {
                    let mut m = Map::new();
                    if let Some(i) = &p.index {
                        m.insert("index".into(), i.clone());
                    }
                    if let Some(md) = p.modifier {
                        let s = if md == Modifier::Idf { "idf" } else { "none" };
                        m.insert("modifier".into(), s.into());
                    }
                    (k.clone(), Value::Object(m))
                })
                .collect();
            params["sparse_vectors"] = Value::Object(sparse);
        }
        json!({
            "status": "green",
            "optimizer_status": "ok",
            "indexed_vectors_count": 0,
            "points_count": self.points.len(),
            "segments_count": 2,
            "config": {
                "params": params,
                "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000,
                                "max_indexing_threads": 0, "on_disk": false},
                "optimizer_config": {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
                    "default_segment_number": 0, "max_segment_size": null, "memmap_threshold": null,
                    "indexing_threshold": 10000, "flush_interval_sec": 5,
                    "max_optimization_threads": null, "prevent_unoptimized": null},
                "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0, "wal_retain_closed": 1},
                "quantization_config": null
            },
            "payload_schema": {},
            "update_queue": {"length": 0}
        })
    }

    /// The `vector` field of a point in a response, `None` when not requested.
    pub fn vector_json(&self, point: &Point, sel: Option<&WithVector>) -> Option<Value> {
        let wanted = |name: &str| match sel {
            None | Some(WithVector::Bool(false)) => false,
            Some(WithVector::Bool(true)) => true,
            Some(WithVector::Names(n)) => n.iter().any(|x| x == name),
        };
        if self.unnamed {
            let v = point.vectors.get(DEFAULT_VECTOR)?;
            return wanted(DEFAULT_VECTOR).then(|| stored_json(v));
        }
        if matches!(sel, None | Some(WithVector::Bool(false))) {
            return None;
        }
        let m: Map<String, Value> = point
            .vectors
            .iter()
            .filter(|(k, _)| wanted(k))
            .map(|(k, v)| (k.clone(), stored_json(v)))
            .collect();
        Some(Value::Object(m))
    }

    /// `Record` (scroll, retrieve): `id, payload?, vector?`.
    pub fn record_json(
        &self,
        p: &Point,
        payload: &PayloadSel,
        vector: Option<&WithVector>,
    ) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), p.id.to_json());
        if let Some(pl) = payload.apply(&p.payload) {
            m.insert("payload".into(), pl);
        }
        if let Some(v) = self.vector_json(p, vector) {
            m.insert("vector".into(), v);
        }
        Value::Object(m)
    }
}

fn vector_params_json(p: &VectorParams) -> Value {
    let mut m = Map::new();
    m.insert("size".into(), p.size.into());
    m.insert("distance".into(), p.distance.as_str().into());
    let opt = [
        ("hnsw_config", p.hnsw_config.clone()),
        ("quantization_config", p.quantization_config.clone()),
        ("on_disk", p.on_disk.map(Value::Bool)),
        ("datatype", p.datatype.clone()),
    ];
    for (k, v) in opt {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    }
    Value::Object(m)
}

/// A float as Qdrant prints an `f32`: its shortest round-trip decimal form.
pub fn f32_json(x: f32) -> Value {
    if !x.is_finite() {
        return Value::Null;
    }
    let shortest: f64 = x.to_string().parse().unwrap_or(f64::from(x));
    serde_json::Number::from_f64(shortest)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn stored_json(v: &StoredVector) -> Value {
    match v {
        StoredVector::Dense(d) => Value::Array(d.iter().map(|x| f32_json(*x)).collect()),
        StoredVector::Sparse(s) => json!({
            "indices": s.indices,
            "values": s.values.iter().map(|x| f32_json(*x)).collect::<Vec<_>>(),
        }),
    }
}
