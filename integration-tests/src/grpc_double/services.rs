//! The four gRPC services: each method records the call, converts the request to its REST body,
//! runs it on the shared state and converts the result back.

use std::sync::Arc;

use http::Method;
use qdrant_client::qdrant as pb;
use qdrant_client::qdrant::{
    collections_server::Collections, points_server::Points, qdrant_server::Qdrant,
    snapshots_server::Snapshots,
};
use serde_json::{json, Value};
use tonic::{Request, Response, Status};

use super::convert::{self as c, CResult};
use super::Shared;

type R<T> = Result<Response<T>, Status>;

/// A path segment, percent-encoded as a REST client would.
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn coll_path(name: &str) -> String {
    format!("/collections/{}", seg(name))
}

fn points_path(name: &str, op: &str) -> String {
    if op.is_empty() {
        format!("/collections/{}/points", seg(name))
    } else {
        format!("/collections/{}/points/{op}", seg(name))
    }
}

fn wait_query(wait: Option<bool>) -> Option<&'static str> {
    (wait == Some(true)).then_some("wait=true")
}

fn batch<T>(items: &[T], f: impl Fn(&T) -> CResult<Value>) -> CResult<Value> {
    let searches = items.iter().map(f).collect::<CResult<Vec<_>>>()?;
    Ok(json!({ "searches": searches }))
}

fn unimplemented<T, U: std::fmt::Debug>(s: &Shared, method: &str, req: &Request<U>) -> R<T> {
    s.record(method, req, None);
    Err(Status::unimplemented(format!(
        "qdrant-double does not implement {method}"
    )))
}

// ---------------------------------------------------------------- qdrant.Qdrant

pub struct QdrantSvc(pub Arc<Shared>);

#[tonic::async_trait]
impl Qdrant for QdrantSvc {
    async fn health_check(
        &self,
        request: Request<pb::HealthCheckRequest>,
    ) -> R<pb::HealthCheckReply> {
        self.0.record("/qdrant.Qdrant/HealthCheck", &request, None);
        self.0.wait().await;
        let (v, _) = self.0.rest(Method::GET, "/", None, None)?;
        Ok(Response::new(pb::HealthCheckReply {
            title: v["title"].as_str().unwrap_or_default().to_string(),
            version: v["version"].as_str().unwrap_or_default().to_string(),
            commit: None,
        }))
    }
}

// ---------------------------------------------------------------- qdrant.Collections

pub struct CollectionsSvc(pub Arc<Shared>);

#[tonic::async_trait]
impl Collections for CollectionsSvc {
    async fn get(
        &self,
        request: Request<pb::GetCollectionInfoRequest>,
    ) -> R<pb::GetCollectionInfoResponse> {
        self.0.record("/qdrant.Collections/Get", &request, None);
        self.0.wait().await;
        let path = coll_path(&request.get_ref().collection_name);
        let (v, time) = self.0.rest(Method::GET, &path, None, None)?;
        Ok(Response::new(pb::GetCollectionInfoResponse {
            result: Some(c::collection_info(&v)),
            time,
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListCollectionsRequest>,
    ) -> R<pb::ListCollectionsResponse> {
        self.0.record("/qdrant.Collections/List", &request, None);
        self.0.wait().await;
        let (v, time) = self.0.rest(Method::GET, "/collections", None, None)?;
        let collections = v["collections"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|d| pb::CollectionDescription {
                        name: d["name"].as_str().unwrap_or_default().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(pb::ListCollectionsResponse {
            collections,
            time,
        }))
    }

    async fn create(
        &self,
        request: Request<pb::CreateCollection>,
    ) -> R<pb::CollectionOperationResponse> {
        let r = request.get_ref();
        let body = c::create_collection_body(r);
        let body = self
            .0
            .begin("/qdrant.Collections/Create", &request, body)
            .await?;
        let (v, time) = self.0.rest(
            Method::PUT,
            &coll_path(&r.collection_name),
            None,
            Some(&body),
        )?;
        Ok(Response::new(pb::CollectionOperationResponse {
            result: v.as_bool().unwrap_or(false),
            time,
        }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateCollection>,
    ) -> R<pb::CollectionOperationResponse> {
        let body = self
            .0
            .begin("/qdrant.Collections/Update", &request, Ok(json!({})))
            .await?;
        let path = coll_path(&request.get_ref().collection_name);
        let (v, time) = self.0.rest(Method::PATCH, &path, None, Some(&body))?;
        Ok(Response::new(pb::CollectionOperationResponse {
            result: v.as_bool().unwrap_or(false),
            time,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteCollection>,
    ) -> R<pb::CollectionOperationResponse> {
        self.0.record("/qdrant.Collections/Delete", &request, None);
        self.0.wait().await;
        let path = coll_path(&request.get_ref().collection_name);
        let (v, time) = self.0.rest(Method::DELETE, &path, None, None)?;
        Ok(Response::new(pb::CollectionOperationResponse {
            result: v.as_bool().unwrap_or(false),
            time,
        }))
    }

    async fn collection_exists(
        &self,
        request: Request<pb::CollectionExistsRequest>,
    ) -> R<pb::CollectionExistsResponse> {
        self.0
            .record("/qdrant.Collections/CollectionExists", &request, None);
        self.0.wait().await;
        let path = format!("{}/exists", coll_path(&request.get_ref().collection_name));
        let (v, time) = self.0.rest(Method::GET, &path, None, None)?;
        Ok(Response::new(pb::CollectionExistsResponse {
            result: Some(pb::CollectionExists {
                exists: v["exists"].as_bool().unwrap_or(false),
            }),
            time,
        }))
    }

    async fn update_aliases(
        &self,
        request: Request<pb::ChangeAliases>,
    ) -> R<pb::CollectionOperationResponse> {
        unimplemented(&self.0, "/qdrant.Collections/UpdateAliases", &request)
    }

    async fn list_collection_aliases(
        &self,
        request: Request<pb::ListCollectionAliasesRequest>,
    ) -> R<pb::ListAliasesResponse> {
        unimplemented(
            &self.0,
            "/qdrant.Collections/ListCollectionAliases",
            &request,
        )
    }

    async fn list_aliases(
        &self,
        request: Request<pb::ListAliasesRequest>,
    ) -> R<pb::ListAliasesResponse> {
        unimplemented(&self.0, "/qdrant.Collections/ListAliases", &request)
    }

    async fn collection_cluster_info(
        &self,
        request: Request<pb::CollectionClusterInfoRequest>,
    ) -> R<pb::CollectionClusterInfoResponse> {
        unimplemented(
            &self.0,
            "/qdrant.Collections/CollectionClusterInfo",
            &request,
        )
    }

    async fn update_collection_cluster_setup(
        &self,
        request: Request<pb::UpdateCollectionClusterSetupRequest>,
    ) -> R<pb::UpdateCollectionClusterSetupResponse> {
        unimplemented(
            &self.0,
            "/qdrant.Collections/UpdateCollectionClusterSetup",
            &request,
        )
    }

    async fn create_shard_key(
        &self,
        request: Request<pb::CreateShardKeyRequest>,
    ) -> R<pb::CreateShardKeyResponse> {
        unimplemented(&self.0, "/qdrant.Collections/CreateShardKey", &request)
    }

    async fn delete_shard_key(
        &self,
        request: Request<pb::DeleteShardKeyRequest>,
    ) -> R<pb::DeleteShardKeyResponse> {
        unimplemented(&self.0, "/qdrant.Collections/DeleteShardKey", &request)
    }

    async fn list_shard_keys(
        &self,
        request: Request<pb::ListShardKeysRequest>,
    ) -> R<pb::ListShardKeysResponse> {
        unimplemented(&self.0, "/qdrant.Collections/ListShardKeys", &request)
    }
}

// ---------------------------------------------------------------- qdrant.Snapshots

pub struct SnapshotsSvc(pub Arc<Shared>);

#[tonic::async_trait]
impl Snapshots for SnapshotsSvc {
    async fn create(
        &self,
        request: Request<pb::CreateSnapshotRequest>,
    ) -> R<pb::CreateSnapshotResponse> {
        unimplemented(&self.0, "/qdrant.Snapshots/Create", &request)
    }

    /// The double keeps no snapshots: an empty list for an existing collection.
    async fn list(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> R<pb::ListSnapshotsResponse> {
        self.0.record("/qdrant.Snapshots/List", &request, None);
        self.0.wait().await;
        let path = coll_path(&request.get_ref().collection_name);
        let (_, time) = self.0.rest(Method::GET, &path, None, None)?;
        Ok(Response::new(pb::ListSnapshotsResponse {
            snapshot_descriptions: Vec::new(),
            time,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteSnapshotRequest>,
    ) -> R<pb::DeleteSnapshotResponse> {
        unimplemented(&self.0, "/qdrant.Snapshots/Delete", &request)
    }

    async fn create_full(
        &self,
        request: Request<pb::CreateFullSnapshotRequest>,
    ) -> R<pb::CreateSnapshotResponse> {
        unimplemented(&self.0, "/qdrant.Snapshots/CreateFull", &request)
    }

    async fn list_full(
        &self,
        request: Request<pb::ListFullSnapshotsRequest>,
    ) -> R<pb::ListSnapshotsResponse> {
        self.0.record("/qdrant.Snapshots/ListFull", &request, None);
        self.0.wait().await;
        Ok(Response::new(pb::ListSnapshotsResponse {
            snapshot_descriptions: Vec::new(),
            time: 0.0,
        }))
    }

    async fn delete_full(
        &self,
        request: Request<pb::DeleteFullSnapshotRequest>,
    ) -> R<pb::DeleteSnapshotResponse> {
        unimplemented(&self.0, "/qdrant.Snapshots/DeleteFull", &request)
    }
}

// ---------------------------------------------------------------- qdrant.Points

pub struct PointsSvc(pub Arc<Shared>);

impl PointsSvc {
    /// Records, converts, waits, runs `POST /collections/{c}/points/{op}` (or `method`/`query`).
    async fn run<T: std::fmt::Debug>(
        &self,
        grpc_method: &str,
        request: &Request<T>,
        http: (Method, String, Option<&str>),
        body: CResult<Value>,
    ) -> Result<(Value, f64), Status> {
        let body = self.0.begin(grpc_method, request, body).await?;
        let (method, path, query) = http;
        self.0.rest(method, &path, query, Some(&body))
    }

    async fn post<T: std::fmt::Debug>(
        &self,
        grpc_method: &str,
        request: &Request<T>,
        collection: &str,
        op: &str,
        body: CResult<Value>,
    ) -> Result<(Value, f64), Status> {
        let http = (Method::POST, points_path(collection, op), None);
        self.run(grpc_method, request, http, body).await
    }

    fn op_response((v, time): (Value, f64)) -> R<pb::PointsOperationResponse> {
        Ok(Response::new(pb::PointsOperationResponse {
            result: Some(c::update_result(&v)),
            time,
            usage: None,
        }))
    }
}

#[tonic::async_trait]
impl Points for PointsSvc {
    async fn upsert(&self, request: Request<pb::UpsertPoints>) -> R<pb::PointsOperationResponse> {
        let r = request.get_ref();
        let http = (
            Method::PUT,
            points_path(&r.collection_name, ""),
            wait_query(r.wait),
        );
        let body = c::upsert_body(r);
        Self::op_response(
            self.run("/qdrant.Points/Upsert", &request, http, body)
                .await?,
        )
    }

    async fn delete(&self, request: Request<pb::DeletePoints>) -> R<pb::PointsOperationResponse> {
        let r = request.get_ref();
        let http = (
            Method::POST,
            points_path(&r.collection_name, "delete"),
            wait_query(r.wait),
        );
        let body = c::selector_body(r.points.as_ref());
        Self::op_response(
            self.run("/qdrant.Points/Delete", &request, http, body)
                .await?,
        )
    }

    async fn get(&self, request: Request<pb::GetPoints>) -> R<pb::GetResponse> {
        let r = request.get_ref();
        let body = c::get_body(r);
        let (v, time) = self
            .post("/qdrant.Points/Get", &request, &r.collection_name, "", body)
            .await?;
        Ok(Response::new(pb::GetResponse {
            result: c::retrieved_points(&v),
            time,
            usage: None,
        }))
    }

    async fn update_vectors(
        &self,
        request: Request<pb::UpdatePointVectors>,
    ) -> R<pb::PointsOperationResponse> {
        unimplemented(&self.0, "/qdrant.Points/UpdateVectors", &request)
    }

    async fn delete_vectors(
        &self,
        request: Request<pb::DeletePointVectors>,
    ) -> R<pb::PointsOperationResponse> {
        unimplemented(&self.0, "/qdrant.Points/DeleteVectors", &request)
    }

    async fn set_payload(
        &self,
        request: Request<pb::SetPayloadPoints>,
    ) -> R<pb::PointsOperationResponse> {
        let r = request.get_ref();
        let http = (
            Method::POST,
            points_path(&r.collection_name, "payload"),
            wait_query(r.wait),
        );
        let body = c::set_payload_body(r);
        Self::op_response(
            self.run("/qdrant.Points/SetPayload", &request, http, body)
                .await?,
        )
    }

    async fn overwrite_payload(
        &self,
        request: Request<pb::SetPayloadPoints>,
    ) -> R<pb::PointsOperationResponse> {
        let r = request.get_ref();
        let http = (
            Method::PUT,
            points_path(&r.collection_name, "payload"),
            wait_query(r.wait),
        );
        let body = c::set_payload_body(r);
        Self::op_response(
            self.run("/qdrant.Points/OverwritePayload", &request, http, body)
                .await?,
        )
    }

    async fn delete_payload(
        &self,
        request: Request<pb::DeletePayloadPoints>,
    ) -> R<pb::PointsOperationResponse> {
        let r = request.get_ref();
        let http = (
            Method::POST,
            points_path(&r.collection_name, "payload/delete"),
            wait_query(r.wait),
        );
        let body = c::delete_payload_body(r);
        Self::op_response(
            self.run("/qdrant.Points/DeletePayload", &request, http, body)
                .await?,
        )
    }

    async fn clear_payload(
        &self,
        request: Request<pb::ClearPayloadPoints>,
    ) -> R<pb::PointsOperationResponse> {
        let r = request.get_ref();
        let http = (
            Method::POST,
            points_path(&r.collection_name, "payload/clear"),
            wait_query(r.wait),
        );
        let body = c::selector_body(r.points.as_ref());
        Self::op_response(
            self.run("/qdrant.Points/ClearPayload", &request, http, body)
                .await?,
        )
    }

    async fn create_field_index(
        &self,
        request: Request<pb::CreateFieldIndexCollection>,
    ) -> R<pb::PointsOperationResponse> {
        unimplemented(&self.0, "/qdrant.Points/CreateFieldIndex", &request)
    }

    async fn delete_field_index(
        &self,
        request: Request<pb::DeleteFieldIndexCollection>,
    ) -> R<pb::PointsOperationResponse> {
        unimplemented(&self.0, "/qdrant.Points/DeleteFieldIndex", &request)
    }

    async fn create_vector_name(
        &self,
        request: Request<pb::CreateVectorNameRequest>,
    ) -> R<pb::PointsOperationResponse> {
        unimplemented(&self.0, "/qdrant.Points/CreateVectorName", &request)
    }

    async fn delete_vector_name(
        &self,
        request: Request<pb::DeleteVectorNameRequest>,
    ) -> R<pb::PointsOperationResponse> {
        unimplemented(&self.0, "/qdrant.Points/DeleteVectorName", &request)
    }

    async fn search(&self, request: Request<pb::SearchPoints>) -> R<pb::SearchResponse> {
        let r = request.get_ref();
        let body = c::search_body(r);
        let (v, time) = self
            .post(
                "/qdrant.Points/Search",
                &request,
                &r.collection_name,
                "search",
                body,
            )
            .await?;
        Ok(Response::new(pb::SearchResponse {
            result: c::scored_points(&v),
            time,
            usage: None,
        }))
    }

    async fn search_batch(
        &self,
        request: Request<pb::SearchBatchPoints>,
    ) -> R<pb::SearchBatchResponse> {
        let r = request.get_ref();
        let body = batch(&r.search_points, c::search_body);
        let (v, time) = self
            .post(
                "/qdrant.Points/SearchBatch",
                &request,
                &r.collection_name,
                "search/batch",
                body,
            )
            .await?;
        Ok(Response::new(pb::SearchBatchResponse {
            result: c::batch_results(&v, false),
            time,
            usage: None,
        }))
    }

    async fn search_groups(
        &self,
        request: Request<pb::SearchPointGroups>,
    ) -> R<pb::SearchGroupsResponse> {
        let r = request.get_ref();
        let body = c::search_groups_body(r);
        let (v, time) = self
            .post(
                "/qdrant.Points/SearchGroups",
                &request,
                &r.collection_name,
                "search/groups",
                body,
            )
            .await?;
        Ok(Response::new(pb::SearchGroupsResponse {
            result: Some(c::groups_result(&v)),
            time,
            usage: None,
        }))
    }

    async fn scroll(&self, request: Request<pb::ScrollPoints>) -> R<pb::ScrollResponse> {
        let r = request.get_ref();
        let body = c::scroll_body(r);
        let (v, time) = self
            .post(
                "/qdrant.Points/Scroll",
                &request,
                &r.collection_name,
                "scroll",
                body,
            )
            .await?;
        Ok(Response::new(pb::ScrollResponse {
            next_page_offset: v.get("next_page_offset").and_then(c::json_id),
            result: c::retrieved_points(&v["points"]),
            time,
            usage: None,
        }))
    }

    async fn recommend(&self, request: Request<pb::RecommendPoints>) -> R<pb::RecommendResponse> {
        let r = request.get_ref();
        let body = c::recommend_body(r);
        let (v, time) = self
            .post(
                "/qdrant.Points/Recommend",
                &request,
                &r.collection_name,
                "recommend",
                body,
            )
            .await?;
        Ok(Response::new(pb::RecommendResponse {
            result: c::scored_points(&v),
            time,
            usage: None,
        }))
    }

    async fn recommend_batch(
        &self,
        request: Request<pb::RecommendBatchPoints>,
    ) -> R<pb::RecommendBatchResponse> {
        let r = request.get_ref();
        let body = batch(&r.recommend_points, c::recommend_body);
        let (v, time) = self
            .post(
                "/qdrant.Points/RecommendBatch",
                &request,
                &r.collection_name,
                "recommend/batch",
                body,
            )
            .await?;
        Ok(Response::new(pb::RecommendBatchResponse {
            result: c::batch_results(&v, false),
            time,
            usage: None,
        }))
    }

    async fn recommend_groups(
        &self,
        request: Request<pb::RecommendPointGroups>,
    ) -> R<pb::RecommendGroupsResponse> {
        let r = request.get_ref();
        let body = c::recommend_groups_body(r);
        let (v, time) = self
            .post(
                "/qdrant.Points/RecommendGroups",
                &request,
                &r.collection_name,
                "recommend/groups",
                body,
            )
            .await?;
        Ok(Response::new(pb::RecommendGroupsResponse {
            result: Some(c::groups_result(&v)),
            time,
            usage: None,
        }))
    }

    async fn discover(&self, request: Request<pb::DiscoverPoints>) -> R<pb::DiscoverResponse> {
        let r = request.get_ref();
        let body = c::discover_body(r);
        let (v, time) = self
            .post(
                "/qdrant.Points/Discover",
                &request,
                &r.collection_name,
                "discover",
                body,
            )
            .await?;
        Ok(Response::new(pb::DiscoverResponse {
            result: c::scored_points(&v),
            time,
            usage: None,
        }))
    }

    async fn discover_batch(
        &self,
        request: Request<pb::DiscoverBatchPoints>,
    ) -> R<pb::DiscoverBatchResponse> {
        let r = request.get_ref();
        let body = batch(&r.discover_points, c::discover_body);
        let (v, time) = self
            .post(
                "/qdrant.Points/DiscoverBatch",
                &request,
                &r.collection_name,
                "discover/batch",
                body,
            )
            .await?;
        Ok(Response::new(pb::DiscoverBatchResponse {
            result: c::batch_results(&v, false),
            time,
            usage: None,
        }))
    }

    async fn count(&self, request: Request<pb::CountPoints>) -> R<pb::CountResponse> {
        let r = request.get_ref();
        let body = c::count_body(r);
        let (v, time) = self
            .post(
                "/qdrant.Points/Count",
                &request,
                &r.collection_name,
                "count",
                body,
            )
            .await?;
        Ok(Response::new(pb::CountResponse {
            result: Some(pb::CountResult {
                count: v["count"].as_u64().unwrap_or(0),
            }),
            time,
            usage: None,
        }))
    }

    async fn update_batch(
        &self,
        request: Request<pb::UpdateBatchPoints>,
    ) -> R<pb::UpdateBatchResponse> {
        unimplemented(&self.0, "/qdrant.Points/UpdateBatch", &request)
    }

    async fn query(&self, request: Request<pb::QueryPoints>) -> R<pb::QueryResponse> {
        let r = request.get_ref();
        let body = c::query_body(r);
        let (v, time) = self
            .post(
                "/qdrant.Points/Query",
                &request,
                &r.collection_name,
                "query",
                body,
            )
            .await?;
        Ok(Response::new(pb::QueryResponse {
            result: c::scored_points(&v["points"]),
            time,
            usage: None,
        }))
    }

    async fn query_batch(
        &self,
        request: Request<pb::QueryBatchPoints>,
    ) -> R<pb::QueryBatchResponse> {
        let r = request.get_ref();
        let body = batch(&r.query_points, c::query_body);
        let (v, time) = self
            .post(
                "/qdrant.Points/QueryBatch",
                &request,
                &r.collection_name,
                "query/batch",
                body,
            )
            .await?;
        Ok(Response::new(pb::QueryBatchResponse {
            result: c::batch_results(&v, true),
            time,
            usage: None,
        }))
    }

    async fn query_groups(
        &self,
        request: Request<pb::QueryPointGroups>,
    ) -> R<pb::QueryGroupsResponse> {
        let r = request.get_ref();
        let body = c::query_groups_body(r);
        let (v, time) = self
            .post(
                "/qdrant.Points/QueryGroups",
                &request,
                &r.collection_name,
                "query/groups",
                body,
            )
            .await?;
        Ok(Response::new(pb::QueryGroupsResponse {
            result: Some(c::groups_result(&v)),
            time,
            usage: None,
        }))
    }

    async fn facet(&self, request: Request<pb::FacetCounts>) -> R<pb::FacetResponse> {
        unimplemented(&self.0, "/qdrant.Points/Facet", &request)
    }

    async fn search_matrix_pairs(
        &self,
        request: Request<pb::SearchMatrixPoints>,
    ) -> R<pb::SearchMatrixPairsResponse> {
        unimplemented(&self.0, "/qdrant.Points/SearchMatrixPairs", &request)
    }

    async fn search_matrix_offsets(
        &self,
        request: Request<pb::SearchMatrixPoints>,
    ) -> R<pb::SearchMatrixOffsetsResponse> {
        unimplemented(&self.0, "/qdrant.Points/SearchMatrixOffsets", &request)
    }
}
