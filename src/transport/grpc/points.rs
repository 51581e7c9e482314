//! The reranked `qdrant.Points` methods: where each request keeps its searches and
//! each response its hits. Everything else about them is shared (see `mod.rs`).

use qdrant_client::qdrant::{
    query, vector_input, DiscoverBatchPoints, DiscoverBatchResponse, DiscoverPoints,
    DiscoverResponse, PointGroup, PrefetchQuery, Query, QueryBatchPoints, QueryBatchResponse,
    QueryGroupsResponse, QueryPointGroups, QueryPoints, QueryResponse, RecommendBatchPoints,
    RecommendBatchResponse, RecommendGroupsResponse, RecommendPointGroups, RecommendPoints,
    RecommendResponse, ScoredPoint, SearchBatchPoints, SearchBatchResponse, SearchGroupsResponse,
    SearchPointGroups, SearchPoints, SearchResponse, WithPayloadSelector,
};

use prost::Message as _;

use super::answer::Layout;
use super::wire::{Edit, Value as WireValue};
use crate::plan::Shape;

/// One search inside a request.
pub trait SearchItem {
    /// Field numbers in the message (checked against the stubs in the tests).
    const LIMIT: u32;
    /// `None`: the message has no offset (groups).
    const OFFSET: Option<u32>;
    const WITH_PAYLOAD: u32;
    /// The largest limit the field holds (`uint32` for the legacy groups).
    const MAX_LIMIT: u64 = u64::MAX;
    fn shape(&self) -> Shape;
    fn selector(&self) -> Option<&WithPayloadSelector>;
    /// The change that asks Qdrant for `fetch` results (points, or groups) from
    /// offset 0 with `selector`, applied to the client's own bytes: every other field
    /// (also those newer than our stubs) reaches Qdrant as the client sent it.
    fn widen(fetch: usize, selector: &WithPayloadSelector) -> Edit {
        let limit = (fetch as u64).min(Self::MAX_LIMIT);
        let edit = Edit::new().set(Self::LIMIT, WireValue::Varint(limit)).set(
            Self::WITH_PAYLOAD,
            WireValue::Bytes(selector.encode_to_vec()),
        );
        match Self::OFFSET {
            Some(n) => edit.remove(n),
            None => edit,
        }
    }
    /// The text of a Document query, when the search is one.
    fn document_text(&self) -> Option<String> {
        None
    }
    /// The Document texts of the search's prefetch tree (Query API only).
    fn prefetch_texts(&self) -> Vec<String> {
        Vec::new()
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
    /// The repeated field holding a batch's searches; `None`: the request is the search.
    const ITEMS: Option<u32>;
    /// Where the response keeps its hits.
    const LAYOUT: Layout;
    fn collection(req: &Self::Req) -> &str;
    fn items(req: &Self::Req) -> Vec<&Self::Item>;
    fn answers(resp: &mut Self::Resp) -> Vec<Hits<'_>>;
    fn set_time(resp: &mut Self::Resp, seconds: f64);
}

/// proto3 zero means "not set": no valid limit.
fn nonzero(v: u64) -> Option<u64> {
    (v > 0).then_some(v)
}

/// The Document texts of a prefetch tree, in the order they appear.
fn prefetch_texts(prefetch: &[PrefetchQuery]) -> Vec<String> {
    fn walk(prefetch: &[PrefetchQuery], out: &mut Vec<String>) {
        for p in prefetch {
            out.extend(document(p.query.as_ref()));
            walk(&p.prefetch, out);
        }
    }
    let mut out = Vec::new();
    walk(prefetch, &mut out);
    out
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
    ($t:ty, limit: $l:literal, offset: $o:literal, with_payload: $p:literal) => {
        impl SearchItem for $t {
            const LIMIT: u32 = $l;
            const OFFSET: Option<u32> = Some($o);
            const WITH_PAYLOAD: u32 = $p;
            fn shape(&self) -> Shape {
                Shape::Page {
                    offset: self.offset,
                    limit: nonzero(self.limit),
                }
            }
            fn selector(&self) -> Option<&WithPayloadSelector> {
                self.with_payload.as_ref()
            }
        }
    };
}

page_item!(SearchPoints, limit: 4, offset: 9, with_payload: 6);
page_item!(RecommendPoints, limit: 5, offset: 10, with_payload: 7);
page_item!(DiscoverPoints, limit: 5, offset: 8, with_payload: 6);

impl SearchItem for QueryPoints {
    const LIMIT: u32 = 8;
    const OFFSET: Option<u32> = Some(9);
    const WITH_PAYLOAD: u32 = 11;
    fn shape(&self) -> Shape {
        Shape::Page {
            offset: self.offset,
            limit: Some(self.limit.unwrap_or(10)),
        }
    }
    fn selector(&self) -> Option<&WithPayloadSelector> {
        self.with_payload.as_ref()
    }
    fn document_text(&self) -> Option<String> {
        document(self.query.as_ref())
    }
    fn prefetch_texts(&self) -> Vec<String> {
        prefetch_texts(&self.prefetch)
    }
}

macro_rules! legacy_groups_item {
    ($t:ty, limit: $l:literal, with_payload: $p:literal) => {
        impl SearchItem for $t {
            const LIMIT: u32 = $l;
            const OFFSET: Option<u32> = None;
            const WITH_PAYLOAD: u32 = $p;
            const MAX_LIMIT: u64 = u32::MAX as u64;
            fn shape(&self) -> Shape {
                Shape::Groups {
                    limit: nonzero(self.limit.into()),
                    group_size: nonzero(self.group_size.into()),
                }
            }
            fn selector(&self) -> Option<&WithPayloadSelector> {
                self.with_payload.as_ref()
            }
        }
    };
}

legacy_groups_item!(SearchPointGroups, limit: 4, with_payload: 5);
legacy_groups_item!(RecommendPointGroups, limit: 5, with_payload: 6);

impl SearchItem for QueryPointGroups {
    const LIMIT: u32 = 11;
    const OFFSET: Option<u32> = None;
    const WITH_PAYLOAD: u32 = 8;
    fn shape(&self) -> Shape {
        Shape::Groups {
            limit: Some(self.limit.unwrap_or(10)),
            group_size: Some(self.group_size.unwrap_or(3)),
        }
    }
    fn selector(&self) -> Option<&WithPayloadSelector> {
        self.with_payload.as_ref()
    }
    fn document_text(&self) -> Option<String> {
        document(self.query.as_ref())
    }
    fn prefetch_texts(&self) -> Vec<String> {
        prefetch_texts(&self.prefetch)
    }
}

/// One `Method`: where its searches are (`items`) and where their hits are (`answers`).
macro_rules! method {
    ($name:ident, $req:ty, $item:ty, $resp:ty, $route:literal, $items_field:expr, $layout:expr,
     items: |$rq:ident| $items:expr, answers: |$rs:ident| $answers:expr) => {
        pub struct $name;
        impl Method for $name {
            type Req = $req;
            type Resp = $resp;
            type Item = $item;
            const ROUTE: &'static str = $route;
            const ITEMS: Option<u32> = $items_field;
            const LAYOUT: Layout = $layout;
            fn collection(req: &Self::Req) -> &str {
                &req.collection_name
            }
            fn items($rq: &Self::Req) -> Vec<&Self::Item> {
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
        method!($name, $req, $req, $resp, $route, None, Layout::Points,
            items: |req| vec![req],
            answers: |resp| vec![Hits::Points(&mut resp.result)]);
    };
}

/// Searches under `$field` (field number `$n`), one `BatchResult` each.
macro_rules! batch {
    ($name:ident, $req:ty, $item:ty, $field:ident = $n:literal, $resp:ty, $route:literal) => {
        method!($name, $req, $item, $resp, $route, Some($n), Layout::Batch,
            items: |req| req.$field.iter().collect(),
            answers: |resp| resp.result.iter_mut().map(|b| Hits::Points(&mut b.result)).collect());
    };
}

/// One search, `result.groups`.
macro_rules! groups {
    ($name:ident, $req:ty, $resp:ty, $route:literal) => {
        method!($name, $req, $req, $resp, $route, None, Layout::Groups,
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
    search_points = 2,
    SearchBatchResponse,
    "grpc_search_batch"
);
batch!(
    QueryBatch,
    QueryBatchPoints,
    QueryPoints,
    query_points = 2,
    QueryBatchResponse,
    "grpc_query_batch"
);
batch!(
    RecommendBatch,
    RecommendBatchPoints,
    RecommendPoints,
    recommend_points = 2,
    RecommendBatchResponse,
    "grpc_recommend_batch"
);
batch!(
    DiscoverBatch,
    DiscoverBatchPoints,
    DiscoverPoints,
    discover_points = 2,
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
    use super::super::wire;
    use super::*;
    use qdrant_client::qdrant::with_payload_selector::SelectorOptions;
    use qdrant_client::qdrant::{Document, PayloadIncludeSelector, VectorInput};

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

    fn include_text() -> WithPayloadSelector {
        WithPayloadSelector {
            selector_options: Some(SelectorOptions::Include(PayloadIncludeSelector {
                fields: vec!["text".into()],
            })),
        }
    }

    /// `msg` with an unknown field 999, widened on the wire and decoded again.
    fn widened<T: SearchItem + prost::Message + Default>(msg: &T, fetch: usize) -> T {
        let mut bytes = msg.encode_to_vec();
        bytes.extend_from_slice(&[0xba, 0x3e, 3, b'n', b'e', b'w']);
        let out = T::widen(fetch, &include_text()).apply(&bytes).unwrap();
        let kept = wire::parse(&out).unwrap();
        assert!(kept.iter().any(|f| f.number == 999 && f.value == b"new"));
        let back = T::decode(&out[..]).unwrap();
        assert_eq!(back.selector(), Some(&include_text()));
        back
    }

    fn enable(b: bool) -> Option<WithPayloadSelector> {
        Some(WithPayloadSelector {
            selector_options: Some(SelectorOptions::Enable(b)),
        })
    }

    #[test]
    fn widen_edits_the_right_fields_of_every_message() {
        let s = widened(
            &SearchPoints {
                collection_name: "c".into(),
                limit: 3,
                offset: Some(4),
                with_payload: enable(true),
                score_threshold: Some(0.5),
                ..Default::default()
            },
            100,
        );
        assert_eq!((s.limit, s.offset), (100, None));
        assert_eq!(
            (s.collection_name.as_str(), s.score_threshold),
            ("c", Some(0.5))
        );
        let r = widened(
            &RecommendPoints {
                limit: 3,
                offset: Some(4),
                with_payload: enable(false),
                ..Default::default()
            },
            100,
        );
        assert_eq!((r.limit, r.offset), (100, None));
        let d = widened(
            &DiscoverPoints {
                limit: 3,
                offset: Some(4),
                ..Default::default()
            },
            100,
        );
        assert_eq!((d.limit, d.offset), (100, None));
        let q = widened(
            &QueryPoints {
                limit: Some(3),
                offset: Some(4),
                with_payload: enable(true),
                ..Default::default()
            },
            100,
        );
        assert_eq!((q.limit, q.offset), (Some(100), None));
        let g = widened(
            &SearchPointGroups {
                limit: 3,
                group_size: 2,
                with_payload: enable(true),
                ..Default::default()
            },
            50,
        );
        assert_eq!((g.limit, g.group_size), (50, 2));
        let g = widened(
            &RecommendPointGroups {
                limit: 3,
                group_size: 2,
                ..Default::default()
            },
            50,
        );
        assert_eq!((g.limit, g.group_size), (50, 2));
        let g = widened(
            &QueryPointGroups {
                limit: Some(3),
                group_size: Some(2),
                ..Default::default()
            },
            50,
        );
        assert_eq!((g.limit, g.group_size), (Some(50), Some(2)));
        // A uint32 limit holds at most u32::MAX.
        let g = widened(&SearchPointGroups::default(), u32::MAX as usize + 5);
        assert_eq!(g.limit, u32::MAX);
    }

    /// Widens every search of a two-search batch through `M::ITEMS`.
    fn widen_batch<M: Method>(req: M::Req) {
        let bytes = req.encode_to_vec();
        let n = M::items(&req).len();
        assert_eq!(n, 2);
        let edits = vec![Some(M::Item::widen(77, &include_text())); n];
        let items = M::ITEMS.expect("a batch");
        let out = Edit::new().each(items, edits).apply(&bytes).unwrap();
        let back = M::Req::decode(&out[..]).unwrap();
        for item in M::items(&back) {
            assert_eq!(item.selector(), Some(&include_text()));
            assert!(matches!(
                item.shape(),
                Shape::Page {
                    offset: None,
                    limit: Some(77)
                }
            ));
        }
    }

    #[test]
    fn batches_hold_their_searches_in_field_2() {
        fn two<T: Clone>(s: T) -> Vec<T> {
            vec![s; 2]
        }
        widen_batch::<SearchBatch>(SearchBatchPoints {
            search_points: two(SearchPoints {
                limit: 1,
                offset: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        });
        widen_batch::<QueryBatch>(QueryBatchPoints {
            query_points: two(QueryPoints {
                limit: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        });
        widen_batch::<RecommendBatch>(RecommendBatchPoints {
            recommend_points: two(RecommendPoints {
                limit: 1,
                ..Default::default()
            }),
            ..Default::default()
        });
        widen_batch::<DiscoverBatch>(DiscoverBatchPoints {
            discover_points: two(DiscoverPoints {
                limit: 1,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(Search::ITEMS, None);
        assert_eq!(QueryGroups::ITEMS, None);
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

    fn doc_query(text: &str) -> Query {
        Query {
            variant: Some(query::Variant::Nearest(VectorInput {
                variant: Some(vector_input::Variant::Document(Document {
                    text: text.into(),
                    model: "qdrant/bm25".into(),
                    ..Default::default()
                })),
            })),
        }
    }

    #[test]
    fn prefetch_texts_walk_the_tree() {
        use crate::plan::query_text::{Picked, QuerySource};
        let fusion = Query {
            variant: Some(query::Variant::Fusion(0)),
        };
        let nested = PrefetchQuery {
            prefetch: vec![PrefetchQuery {
                query: Some(doc_query("wing flutter")),
                ..Default::default()
            }],
            query: Some(fusion.clone()),
            ..Default::default()
        };
        let q = QueryPoints {
            prefetch: vec![nested, PrefetchQuery::default()],
            query: Some(fusion.clone()),
            ..Default::default()
        };
        assert_eq!(q.document_text(), None);
        assert_eq!(q.prefetch_texts(), vec!["wing flutter".to_string()]);
        let picked = Picked::resolve(None, q.document_text(), || q.prefetch_texts());
        assert_eq!(
            picked,
            Picked::Text("wing flutter".into(), QuerySource::Prefetch)
        );
        let g = QueryPointGroups {
            prefetch: vec![
                PrefetchQuery {
                    query: Some(doc_query("a")),
                    ..Default::default()
                },
                PrefetchQuery {
                    query: Some(doc_query("b")),
                    ..Default::default()
                },
            ],
            query: Some(fusion),
            ..Default::default()
        };
        assert_eq!(g.prefetch_texts(), vec!["a".to_string(), "b".into()]);
        assert_eq!(
            Picked::resolve(None, None, || g.prefetch_texts()),
            Picked::Several(2)
        );
    }

    #[test]
    fn groups_answer_is_created_when_missing() {
        let mut r = SearchGroupsResponse::default();
        let answers = SearchGroups::answers(&mut r);
        assert!(matches!(&answers[0], Hits::Groups(g) if g.is_empty()));
    }
}
