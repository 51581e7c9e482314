//! Shadow mode over REST: the search goes to Qdrant as sent and its answer is
//! streamed back untouched; a copy of the request is reranked in the background (see
//! [`crate::shadow`]).

use std::sync::Arc;
use std::time::Instant;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::Response;
use serde_json::Value;

use super::body::{answer_mut, candidates, prepare, Endpoint};
use super::{decode_json, error_response, QUERY_HEADER};
use crate::app::AppState;
use crate::config::CollectionSettings;
use crate::error::Error;
use crate::plan::query_text::{self, Directive};
use crate::plan::{Cut, Decision};

pub(super) async fn live(
    state: Arc<AppState>,
    ep: Endpoint,
    collection: String,
    label: String,
    settings: CollectionSettings,
    req: Request,
    started: Instant,
) -> Response {
    let route = ep.route();
    let max = state.config().server.max_body_bytes;
    let (mut parts, body) = req.into_parts();
    let encoded = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity");
    let (body, bytes) = if encoded {
        (body, None)
    } else {
        match to_bytes(body, max).await {
            Ok(b) => {
                let sent = without_directives(&b, ep);
                if sent.len() != b.len() {
                    parts.headers.remove(header::CONTENT_LENGTH);
                }
                (Body::from(sent), Some(b))
            }
            Err(_) => {
                let resp = error_response(Error::PayloadTooLarge(max), started);
                state.record(route, &label, "error", &resp, started);
                return resp;
            }
        }
    };
    let bytes = bytes.filter(|_| state.shadow.sampled());
    let (uri, headers) = (parts.uri.clone(), parts.headers.clone());
    let resp = match state
        .upstream
        .forward(Request::from_parts(parts, body))
        .await
    {
        Ok(r) => r,
        Err(e) => error_response(e, started),
    };
    if let Some(bytes) = bytes.filter(|_| resp.status().is_success()) {
        let s = state.clone();
        let l = label.clone();
        state.shadow.submit(&label, async move {
            let job = Job {
                state: &s,
                ep,
                collection: &collection,
                label: &l,
                settings: &settings,
            };
            if let Err(why) = job.compare(uri, headers, bytes).await {
                s.shadow.fail(&l, &why);
            }
        });
    }
    state.record(route, &label, "shadow", &resp, started);
    resp
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

struct Job<'a> {
    state: &'a AppState,
    ep: Endpoint,
    collection: &'a str,
    label: &'a str,
    settings: &'a CollectionSettings,
}

impl Job<'_> {
    async fn compare(&self, uri: Uri, mut headers: HeaderMap, bytes: Bytes) -> Result<(), String> {
        let header_query = headers
            .get(QUERY_HEADER)
            .map(|v| query_text::decode_header(v.as_bytes()))
            .transpose()?;
        let directive = Directive::from_headers(|n| headers.get(n).map(|v| v.as_bytes()))?;
        let body: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("body is not JSON: {e}"))?;
        let mut prepared = prepare(
            body,
            self.ep,
            self.settings,
            header_query.as_deref(),
            directive.as_ref(),
        )
        .map_err(|e| format!("cannot plan the search: {e:?}"))?;
        // Groups are not compared: only pages.
        for p in &mut prepared.searches {
            if let Decision::Rerank(plan) = &p.decision {
                if !matches!(plan.cut, Cut::Page(_)) {
                    p.decision = Decision::Disabled;
                }
            }
        }
        if !prepared
            .searches
            .iter()
            .any(|p| matches!(p.decision, Decision::Rerank(_)))
        {
            return Err("nothing to rerank".into());
        }
        crate::transport::strip_rerank_headers(&mut headers);
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let mut req = Request::new(());
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        let body = serde_json::to_vec(&prepared.body).expect("json serializes");
        let upstream = self
            .state
            .upstream
            .call(req.into_parts().0, body.into())
            .await
            .map_err(|e| e.to_string())?;
        if !upstream.status.is_success() {
            return Err(format!("Qdrant answered {}", upstream.status));
        }
        let mut answer =
            decode_json(&upstream.headers, &upstream.body).map_err(|e| e.to_string())?;
        let result = answer
            .get_mut("result")
            .ok_or("no `result` in Qdrant's answer")?;
        let mut texts = Vec::new();
        let mut ids = Vec::new();
        for (i, p) in prepared.searches.iter().enumerate() {
            if matches!(p.decision, Decision::Rerank(_)) {
                let (t, _) = candidates(result, self.ep, i, &self.settings.text_source())
                    .ok_or("answer not in the expected shape")?;
                texts.push(Some(t));
                ids.push(
                    answer_mut(result, self.ep, i)
                        .map(|l| l.iter().map(|p| p["id"].clone()).collect())
                        .unwrap_or_default(),
                );
            } else {
                texts.push(None);
                ids.push(Vec::new());
            }
        }
        let decisions: Vec<&Decision> = prepared.searches.iter().map(|p| &p.decision).collect();
        let (outcomes, _) = self
            .state
            .engine
            .rerank_request(self.collection, self.settings, &decisions, texts)
            .await
            .map_err(|e| e.to_string())?;
        let shadow = &self.state.shadow;
        for ((p, outcome), ids) in prepared.searches.iter().zip(&outcomes).zip(&ids) {
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
