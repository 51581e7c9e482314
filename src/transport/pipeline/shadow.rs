//! What shadow mode's background comparison does alike for both transports: which
//! searches it compares, the call it makes, and what it records.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Uri};
use serde_json::Value;

use super::{Call, Options};

use crate::config::CollectionSettings;
use crate::plan::{Cut, Decision, Planned};
use crate::state::AppState;
use crate::transport::headers;
use crate::upstream::{Buffered, Protocol};

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

/// One request's background comparison: what it keeps of the live request, where it
/// reranks and what it records.
pub struct Comparison {
    state: Arc<AppState>,
    collection: String,
    /// The collection's metric label.
    label: String,
    pub settings: CollectionSettings,
    uri: Uri,
    headers: HeaderMap,
}

impl Comparison {
    pub fn new(
        state: &Arc<AppState>,
        call: &Call,
        collection: String,
        settings: CollectionSettings,
        live: &Parts,
    ) -> Comparison {
        Comparison {
            state: state.clone(),
            collection,
            label: call.label().to_string(),
            settings,
            uri: live.uri.clone(),
            headers: live.headers.clone(),
        }
    }

    /// The live request's rerank options.
    pub fn options(&self, protocol: Protocol) -> Result<Options, String> {
        Options::read(&self.headers, protocol, &self.settings)
    }

    /// Asks Qdrant for the comparison's candidates: the live request's URI and
    /// headers, less secondpass's own options, for an uncompressed answer.
    pub async fn ask(&self, protocol: Protocol, body: Bytes) -> Result<Buffered, String> {
        let mut headers = self.headers.clone();
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
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = headers;
        self.state
            .upstream_for(protocol)
            .call(req.into_parts().0, body)
            .await
            .map_err(|e| e.to_string())
    }

    /// Reranks the compared searches' candidates (`texts`; `ids[i]`: the ids of search
    /// `i`'s candidates, in Qdrant's order) and records what reranking would have
    /// changed in each.
    pub async fn rerank(
        &self,
        planned: &[Planned],
        texts: Vec<Option<Vec<Option<String>>>>,
        ids: &[Vec<Value>],
    ) -> Result<(), String> {
        let (outcomes, _) = super::rerank(
            &self.state,
            &self.collection,
            &self.settings,
            planned,
            texts,
        )
        .await
        .map_err(|e| e.to_string())?;
        let shadow = &self.state.shadow;
        for ((p, outcome), ids) in planned.iter().zip(&outcomes).zip(ids) {
            let Decision::Rerank(plan) = &p.decision else {
                continue;
            };
            let (Cut::Page(window), Some(scores)) = (plan.cut, outcome.scores.as_deref()) else {
                shadow.fail(&self.label, "not reranked");
                continue;
            };
            match crate::shadow::compare(scores, plan.threshold, window) {
                Some(change) => shadow.record(
                    &self.collection,
                    &self.label,
                    &plan.query,
                    ids,
                    scores,
                    &change,
                    outcome.time,
                ),
                None => shadow.fail(&self.label, "Qdrant returned no candidates"),
            }
        }
        Ok(())
    }

    /// Counts a comparison that could not be made.
    pub fn fail(&self, why: &str) {
        self.state.shadow.fail(&self.label, why);
    }
}
