//! What shadow mode's background comparison does alike for both transports: which
//! searches it compares, the request it sends, and what it records.

use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Uri};
use serde_json::Value;

use crate::config::CollectionSettings;
use crate::plan::{Cut, Decision, Planned};
use crate::state::AppState;
use crate::transport::headers;
use crate::upstream::Protocol;

/// Leaves the searches shadow mode compares: pages (groups are not compared).
/// Whether any is left to rerank.
pub fn pages_only(planned: &mut [Planned]) -> bool {
    let mut any = false;
    for Planned { decision: d, .. } in planned {
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

/// One request's background comparison: where it reranks and what it records.
pub struct Comparison<'a> {
    pub state: &'a AppState,
    pub collection: &'a str,
    /// The collection's metric label.
    pub label: &'a str,
    pub settings: &'a CollectionSettings,
}

impl Comparison<'_> {
    /// Reranks the compared searches' candidates (`texts`; `ids[i]`: the ids of search
    /// `i`'s candidates, in Qdrant's order) and records what reranking would have
    /// changed in each.
    pub async fn rerank(
        &self,
        planned: &[Planned],
        texts: Vec<Option<Vec<Option<String>>>>,
        ids: &[Vec<Value>],
    ) -> Result<(), String> {
        let (outcomes, _) =
            super::rerank(self.state, self.collection, self.settings, planned, texts)
                .await
                .map_err(|e| e.to_string())?;
        let shadow = &self.state.shadow;
        for ((p, outcome), ids) in planned.iter().zip(&outcomes).zip(ids) {
            let Decision::Rerank(plan) = &p.decision else {
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
        Ok(())
    }

    /// A comparison that could not be made.
    pub fn fail(&self, why: &str) {
        self.state.shadow.fail(self.label, why);
    }
}
