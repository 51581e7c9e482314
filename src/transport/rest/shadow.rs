//! Shadow mode over REST: the search goes to Qdrant as sent and its answer is
//! streamed back untouched; a copy of the request is reranked in the background (see
//! [`crate::shadow`]).

use std::sync::Arc;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::Request;
use axum::http::header;
use serde_json::Value;

use super::body::{answer_mut, candidates, prepare, Endpoint};
use super::decode_json;
use crate::config::CollectionSettings;
use crate::error::Error;
use crate::plan::{Decision, Planned};
use crate::state::AppState;
use crate::transport::pipeline::shadow::{pages_only, Comparison};
use crate::transport::pipeline::{Call, Exit, ShadowJob};
use crate::upstream::Protocol;

/// The live request, sent without secondpass's `rerank` objects; sampled requests
/// carry the background comparison along.
pub(super) async fn live(
    state: &Arc<AppState>,
    call: &Call,
    ep: Endpoint,
    collection: &str,
    settings: CollectionSettings,
    req: Request,
) -> Result<Exit, Exit> {
    let max = state.config().server.max_body_bytes;
    let (mut parts, body) = req.into_parts();
    let encoded = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity");
    let (body, bytes) = if encoded {
        (body, None)
    } else {
        let b = to_bytes(body, max)
            .await
            .map_err(|_| Error::PayloadTooLarge(max))?;
        let sent = without_directives(&b, ep);
        if sent.len() != b.len() {
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        (Body::from(sent), Some(b))
    };
    let job = bytes.filter(|_| state.shadow.sampled()).map(|bytes| {
        let job = Job {
            ep,
            cmp: Comparison::new(state, call, collection.to_string(), settings, &parts),
        };
        Box::pin(job.run(bytes)) as ShadowJob
    });
    Err(Exit::Shadow(Request::from_parts(parts, body), job))
}

/// The body as sent, but for secondpass's own `"rerank"` objects, which Qdrant would
/// refuse (bodies without one go byte for byte).
fn without_directives(bytes: &Bytes, ep: Endpoint) -> Bytes {
    if !bytes.windows(8).any(|w| w == b"\"rerank\"") {
        return bytes.clone();
    }
    let Ok(mut v) = serde_json::from_slice::<Value>(bytes) else {
        return bytes.clone();
    };
    let mut removed = false;
    if ep.is_batch() {
        if let Some(Value::Array(searches)) = v.get_mut("searches") {
            for s in searches.iter_mut().filter_map(Value::as_object_mut) {
                removed |= s.remove("rerank").is_some();
            }
        }
    } else if let Some(o) = v.as_object_mut() {
        removed = o.remove("rerank").is_some();
    }
    if removed {
        Bytes::from(serde_json::to_vec(&v).expect("json serializes"))
    } else {
        bytes.clone()
    }
}

/// A background comparison: the request as secondpass would have sent it, reranked.
struct Job {
    ep: Endpoint,
    cmp: Comparison,
}

impl Job {
    async fn run(self, bytes: Bytes) {
        if let Err(why) = self.compare(bytes).await {
            self.cmp.fail(&why);
        }
    }

    async fn compare(&self, bytes: Bytes) -> Result<(), String> {
        let settings = &self.cmp.settings;
        let options = self.cmp.options(Protocol::Rest)?;
        let body: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("body is not JSON: {e}"))?;
        let mut prepared = prepare(
            body,
            self.ep,
            settings,
            options.query.as_deref(),
            options.directive.as_ref(),
        )
        .map_err(|e| format!("cannot plan the search: {e:?}"))?;
        if !pages_only(&mut prepared.searches) {
            return Err("nothing to rerank".into());
        }
        let body = serde_json::to_vec(&prepared.body).expect("json serializes");
        let upstream = self.cmp.ask(Protocol::Rest, body.into()).await?;
        if !upstream.status.is_success() {
            return Err(format!("Qdrant answered {}", upstream.status));
        }
        let mut answer =
            decode_json(&upstream.headers, &upstream.body).map_err(|e| e.to_string())?;
        let result = answer
            .get_mut("result")
            .ok_or("no `result` in Qdrant's answer")?;
        let (texts, ids) = self.candidates(&prepared.searches, result)?;
        self.cmp.rerank(&prepared.searches, texts, &ids).await
    }

    /// Each compared search's candidate texts and ids, in Qdrant's order.
    #[allow(clippy::type_complexity)]
    fn candidates(
        &self,
        planned: &[Planned],
        result: &mut Value,
    ) -> Result<(Vec<Option<Vec<Option<String>>>>, Vec<Vec<Value>>), String> {
        let mut texts = Vec::new();
        let mut ids = Vec::new();
        for (i, p) in planned.iter().enumerate() {
            if !matches!(p.decision, Decision::Rerank(_)) {
                texts.push(None);
                ids.push(Vec::new());
                continue;
            }
            let (t, _) = candidates(result, self.ep, i, &self.cmp.settings.text_source())
                .ok_or("answer not in the expected shape")?;
            texts.push(Some(t));
            ids.push(
                answer_mut(result, self.ep, i)
                    .map(|l| l.iter().map(|p| p["id"].clone()).collect())
                    .unwrap_or_default(),
            );
        }
        Ok((texts, ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_removed_and_nothing_else() {
        let plain = Bytes::from_static(b"{\"limit\": 3,  \"query\": [1]}");
        assert_eq!(without_directives(&plain, Endpoint::Query), plain);
        let one = Bytes::from_static(b"{\"limit\": 3, \"rerank\": {\"pool\": 5}}");
        assert_eq!(
            &without_directives(&one, Endpoint::Query)[..],
            b"{\"limit\":3}"
        );
        let batch =
            Bytes::from_static(b"{\"searches\": [{\"limit\": 1, \"rerank\": {}}, {\"limit\": 2}]}");
        assert_eq!(
            &without_directives(&batch, Endpoint::QueryBatch)[..],
            b"{\"searches\":[{\"limit\":1},{\"limit\":2}]}"
        );
    }
}
