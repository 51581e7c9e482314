//! What shadow mode's background comparison does alike for both transports: which
//! searches it compares, the request it sends, and what it records.

use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Uri};
use serde_json::Value;

use crate::engine::Outcome;
use crate::plan::{Cut, Decision};
use crate::state::AppState;
use crate::transport::headers;
use crate::upstream::Protocol;

/// Leaves the searches shadow mode compares: pages (groups are not compared).
/// Whether any is left to rerank.
pub fn pages_only<'a>(decisions: impl IntoIterator<Item = &'a mut Decision>) -> bool {
    let mut any = false;
    for d in decisions {
        if let Decision::Rerank(plan) = d {
            if matches!(plan.cut, Cut::Page(_)) {
                any = true;
            } else {
                *d = Decision::Disabled;
            }
        }
    }
    any
}

/// The head of a comparison's call to Qdrant: the live request's URI and headers,
/// less secondpass's own options, asking for an uncompressed answer.
pub fn request_head(protocol: Protocol, uri: Uri, mut headers: HeaderMap) -> Parts {
    headers::strip_rerank_headers(&mut headers);
    headers.remove(CONTENT_LENGTH);
    let identity = HeaderValue::from_static("identity");
    match protocol {
        Protocol::Rest => headers.insert(ACCEPT_ENCODING, identity),
        Protocol::Grpc => {
            headers.remove("grpc-encoding");
            headers.insert("grpc-accept-encoding", identity)
        }
    };
    let mut req = Request::new(());
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    req.into_parts().0
}

/// Where a comparison's findings go.
pub struct Target<'a> {
    pub state: &'a AppState,
    pub collection: &'a str,
    /// The collection's metric label.
    pub label: &'a str,
}

impl Target<'_> {
    /// Records what reranking would have changed in each compared search (`ids[i]`:
    /// the ids of search `i`'s candidates, in Qdrant's order).
    pub fn record(&self, decisions: &[&Decision], outcomes: &[Outcome], ids: &[Vec<Value>]) {
        let shadow = &self.state.shadow;
        for ((d, outcome), ids) in decisions.iter().zip(outcomes).zip(ids) {
            let Decision::Rerank(plan) = d else {
                continue;
            };
            let (Cut::Page(window), Some(scores)) = (plan.cut, outcome.scores.as_deref()) else {
                shadow.fail(self.label, "not reranked");
                continue;
            };
            match crate::shadow::compare(scores, plan.threshold, window) {
                Some(change) => shadow.record(
                    self.collection,
                    self.label,
                    &plan.query,
                    ids,
                    scores,
                    &change,
                    outcome.time,
                ),
                None => shadow.fail(self.label, "Qdrant returned no candidates"),
            }
        }
    }

    /// A comparison that could not be made.
    pub fn fail(&self, why: &str) {
        self.state.shadow.fail(self.label, why);
    }
}
