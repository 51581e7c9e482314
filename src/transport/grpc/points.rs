//! The reranked `qdrant.Points` methods: where each request keeps its searches and
//! each response its hits. Everything else about them is shared (see `mod.rs`).

use qdrant_client::qdrant::{
    query, vector_input, DiscoverBatchPoints, DiscoverBatchResponse, DiscoverPoints,
    DiscoverResponse, PointGroup, Query, QueryBatchPoints, QueryBatchResponse, QueryGroupsResponse,
    QueryPointGroups, QueryPoints, QueryResponse, RecommendBatchPoints, RecommendBatchResponse,
    RecommendGroupsResponse, RecommendPointGroups, RecommendPoints, RecommendResponse, ScoredPoint,
    SearchBatchPoints, SearchBatchResponse, SearchGroupsResponse, SearchPointGroups, SearchPoints,
    SearchResponse, WithPayloadSelector,
};

use crate::plan::Shape;

/// One search inside a request.
pub trait SearchItem {
    fn shape(&self) -> Shape;
    fn selector(&self) -> Option<&WithPayloadSelector>;
    /// Asks Qdrant for `fetch` results (points, or groups) from offset 0 with `selector`.
    fn widen(&mut self, fetch: usize, selector: WithPayloadSelector);
    /// The text of a Document query, when the search is one.
    fn document_text(&self) -> Option<String> {
        None
    }
}

/// The hits of one search in a response.
pub enum Hits<'a> {
    Points(&'a mut Vec<ScoredPoint>),
    Groups(&'a mut Vec<PointGroup>),
}

/// A reranked unary method of `qdrant.Points`.
pub trait Method: Send + Sync + 'static {
    type Req: prost::Message + Default + Send;
    type Resp: prost::Message + Default + Send;
    type Item: SearchItem + Send;
    /// Metric label.
    const ROUTE: &'static str;
    fn collection(req: &Self::Req) -> &str;
    fn items(req: &mut Self::Req) -> Vec<&mut Self::Item>;
    fn answers(resp: &mut Self::Resp) -> Vec<Hits<'_>>;
    fn set_time(resp: &mut Self::Resp, seconds: f64);
}

/// proto3 zero means "not set": no valid limit.
fn nonzero(v: u64) -> Option<u64> {
    (v > 0).then_some(v)
}

fn document(q: Option<&Query>) -> Option<String> {
    let Some(query::Variant::Nearest(input)) = q?.variant.as_ref() else {
        return None;
    };
    match input.variant.as_ref()? {
        vector_input::Variant::Document(d) if !d.text.trim().is_empty() => Some(d.text.clone()),
        _ => None,
    }
}

macro_rules! page_item {
    ($t:ty) => {
        impl SearchItem for $t {
            fn shape(&self) -> Shape {
                Shape::Page {
                    offset: self.offset,
                    limit: nonzero(self.limit),
                }
            }
            fn selector(&self) -> Option<&WithPayloadSelector> {
                self.with_payload.as_ref()
            }
            fn widen(&mut self, fetch: usize, selector: WithPayloadSelector) {
                self.limit = fetch as u64;
                self.offset = None;
                self.with_payload = Some(selector);
            }
        }
    };
}

page_item!(SearchPoints);
page_item!(RecommendPoints);
page_item!(DiscoverPoints);

impl SearchItem for QueryPoints {
    fn shape(&self) -> Shape {
        Shape::Page {
            offset: self.offset,
            limit: Some(self.limit.unwrap_or(10)),
        }
    }
    fn selector(&self) -> Option<&WithPayloadSelector> {
        self.with_payload.as_ref()
    }
    fn widen(&mut self, fetch: usize, selector: WithPayloadSelector) {
        self.limit = Some(fetch as u64);
        self.offset = None;
        self.with_payload = Some(selector);
    }
    fn document_text(&self) -> Option<String> {
        document(self.query.as_ref())
    }
}

macro_rules! legacy_groups_item {
    ($t:ty) => {
        impl SearchItem for $t {
            fn shape(&self) -> Shape {
                Shape::Groups {
                    limit: nonzero(self.limit.into()),
                    group_size: nonzero(self.group_size.into()),
                }
            }
            fn selector(&self) -> Option<&WithPayloadSelector> {
                self.with_payload.as_ref()
            }
            fn widen(&mut self, fetch: usize, selector: WithPayloadSelector) {
                self.limit = u32::try_from(fetch).unwrap_or(u32::MAX);
                self.with_payload = Some(selector);
            }
        }
    };
}

legacy_groups_item!(SearchPointGroups);
legacy_groups_item!(RecommendPointGroups);

impl SearchItem for QueryPointGroups {
    fn shape(&self) -> Shape {
        Shape::Groups {
            limit: Some(self.limit.unwrap_or(10)),
            group_size: Some(self.group_size.unwrap_or(3)),
        }
    }
    fn selector(&self) -> Option<&WithPayloadSelector> {
        self.with_payload.as_ref()
    }
    fn widen(&mut self, fetch: usize, selector: WithPayloadSelector) {
        self.limit = Some(fetch as u64);
        self.with_payload = Some(selector);
    }
    fn document_text(&self) -> Option<String> {
        document(self.query.as_ref())
    }
}

/// One `Method`: where its searches are (`items`) and where their hits are (`answers`).
macro_rules! method {
    ($name:ident, $req:ty, $item:ty, $resp:ty, $route:literal,
     items: |$rq:ident| $items:expr, answers: |$rs:ident| $answers:expr) => {
        pub struct $name;
        impl Method for $name {
            type Req = $req;
            type Resp = $resp;
            type Item = $item;
            const ROUTE: &'static str = $route;
            fn collection(req: &Self::Req) -> &str {
                &req.collection_name
            }
            fn items($rq: &mut Self::Req) -> Vec<&mut Self::Item> {
                $items
            }
            fn answers($rs: &mut Self::Resp) -> Vec<Hits<'_>> {
                $answers
            }
            fn set_time(resp: &mut Self::Resp, seconds: f64) {
                resp.time = seconds;
            }
        }
    };
}

/// One search, a list of points.
macro_rules! single {
    ($name:ident, $req:ty, $resp:ty, $route:literal) => {
        method!($name, $req, $req, $resp, $route,
            items: |req| vec![req],
            answers: |resp| vec![Hits::Points(&mut resp.result)]);
    };
}

/// Searches under `$field`, one `BatchResult` each.
macro_rules! batch {
    ($name:ident, $req:ty, $item:ty, $field:ident, $resp:ty, $route:literal) => {
        method!($name, $req, $item, $resp, $route,
            items: |req| req.$field.iter_mut().collect(),
            answers: |resp| resp.result.iter_mut().map(|b| Hits::Points(&mut b.result)).collect());
    };
}

/// One search, `result.groups`.
macro_rules! groups {
    ($name:ident, $req:ty, $resp:ty, $route:literal) => {
        method!($name, $req, $req, $resp, $route,
            items: |req| vec![req],
            answers: |resp| vec![Hits::Groups(
                &mut resp.result.get_or_insert_with(Default::default).groups,
            )]);
    };
}

single!(Search, SearchPoints, SearchResponse, "grpc_search");
single!(Query_, QueryPoints, QueryResponse, "grpc_query");
single!(
    Recommend,
    RecommendPoints,
    RecommendResponse,
    "grpc_recommend"
);
single!(Discover, DiscoverPoints, DiscoverResponse, "grpc_discover");
batch!(
    SearchBatch,
    SearchBatchPoints,
    SearchPoints,
    search_points,
    SearchBatchResponse,
    "grpc_search_batch"
);
batch!(
    QueryBatch,
    QueryBatchPoints,
    QueryPoints,
    query_points,
    QueryBatchResponse,
    "grpc_query_batch"
);
batch!(
    RecommendBatch,
    RecommendBatchPoints,
    RecommendPoints,
    recommend_points,
    RecommendBatchResponse,
    "grpc_recommend_batch"
);
batch!(
    DiscoverBatch,
    DiscoverBatchPoints,
    DiscoverPoints,
    discover_points,
    DiscoverBatchResponse,
    "grpc_discover_batch"
);
groups!(
    SearchGroups,
    SearchPointGroups,
    SearchGroupsResponse,
    "grpc_search_groups"
);
groups!(
    QueryGroups,
    QueryPointGroups,
    QueryGroupsResponse,
    "grpc_query_groups"
);
groups!(
    RecommendGroups,
    RecommendPointGroups,
    RecommendGroupsResponse,
    "grpc_recommend_groups"
);

#[cfg(test)]
mod tests {
    use super::*;
    use qdrant_client::qdrant::{Document, VectorInput};

    #[test]
    fn shapes_and_defaults() {
        let s = SearchPoints {
            limit: 5,
            offset: Some(2),
            ..Default::default()
        };
        assert_eq!(
            s.shape(),
            Shape::Page {
                offset: Some(2),
                limit: Some(5)
            }
        );
        let s = SearchPoints::default();
        assert_eq!(
            s.shape(),
            Shape::Page {
                offset: None,
                limit: None
            }
        );
        let q = QueryPoints::default();
        assert_eq!(
            q.shape(),
            Shape::Page {
                offset: None,
                limit: Some(10)
            }
        );
        let g = QueryPointGroups::default();
        assert_eq!(
            g.shape(),
            Shape::Groups {
                limit: Some(10),
                group_size: Some(3)
            }
        );
        let g = SearchPointGroups {
            limit: 2,
            group_size: 0,
            ..Default::default()
        };
        assert_eq!(
            g.shape(),
            Shape::Groups {
                limit: Some(2),
                group_size: None
            }
        );
    }

    #[test]
    fn widen_sets_limit_and_drops_offset() {
        let mut s = RecommendPoints {
            limit: 3,
            offset: Some(4),
            ..Default::default()
        };
        s.widen(100, WithPayloadSelector::default());
        assert_eq!((s.limit, s.offset), (100, None));
        let mut g = SearchPointGroups {
            limit: 3,
            group_size: 2,
            ..Default::default()
        };
        g.widen(50, WithPayloadSelector::default());
        assert_eq!((g.limit, g.group_size), (50, 2));
    }

    #[test]
    fn document_text_from_nearest() {
        let q = QueryPoints {
            query: Some(Query {
                variant: Some(query::Variant::Nearest(VectorInput {
                    variant: Some(vector_input::Variant::Document(Document {
                        text: "capital".into(),
                        model: "qdrant/bm25".into(),
                        ..Default::default()
                    })),
                })),
            }),
            ..Default::default()
        };
        assert_eq!(q.document_text().as_deref(), Some("capital"));
        assert_eq!(QueryPoints::default().document_text(), None);
    }

    #[test]
    fn groups_answer_is_created_when_missing() {
        let mut r = SearchGroupsResponse::default();
        let answers = SearchGroups::answers(&mut r);
        assert!(matches!(&answers[0], Hits::Groups(g) if g.is_empty()));
    }
}
