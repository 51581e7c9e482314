//! Shadow mode over gRPC: the call goes to Qdrant as sent and its answer comes back
//! untouched; a copy of the decoded request is reranked in the background (see
//! [`crate::shadow`]).

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::Response;
use prost::Message;
use qdrant_client::qdrant::point_id::PointIdOptions;
use serde_json::{json, Value};

use super::points::{Hits, Method};
use super::{error_response, frame, hit_texts, metadata, patch, plan_items};
use crate::app::AppState;
use crate::config::CollectionSettings;
use crate::plan::{Cut, Decision};

/// Forwards the live call unchanged, then queues the shadow work without waiting.
#[allow(clippy::too_many_arguments)]
pub(super) async fn live<M: Method>(
    state: Arc<AppState>,
    collection: String,
    label: String,
    settings: CollectionSettings,
    parts: http::request::Parts,
    bytes: Bytes,
    request: M::Req,
    started: Instant,
) -> Response
where
    M::Req: 'static,
{
    let (uri, headers) = (parts.uri.clone(), parts.headers.clone());
    let resp = match state
        .grpc_upstream
        .forward(Request::from_parts(parts, Body::from(bytes)))
        .await
    {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    if resp.status().is_success() && state.shadow.sampled() {
        let s = state.clone();
        let l = label.clone();
        state.shadow.submit(&label, async move {
            if let Err(why) =
                compare::<M>(&s, &collection, &l, &settings, uri, headers, request).await
            {
                s.shadow.fail(&l, &why);
            }
        });
    }
    state.record(M::ROUTE, &label, "shadow", &resp, started);
    resp
}

fn id_json(p: &qdrant_client::qdrant::ScoredPoint) -> Value {
    match p.id.as_ref().and_then(|i| i.point_id_options.as_ref()) {
        Some(PointIdOptions::Num(n)) => json!(n),
        Some(PointIdOptions::Uuid(u)) => json!(u),
        None => Value::Null,
    }
}

async fn compare<M: Method>(
    state: &AppState,
    collection: &str,
    label: &str,
    settings: &CollectionSettings,
    uri: Uri,
    mut headers: HeaderMap,
    request: M::Req,
) -> Result<(), String> {
    let (header_query, directive) = metadata(&headers)?;
    let (mut planned, edits) =
        plan_items::<M>(&request, settings, header_query, directive.as_ref());
    // Groups are not compared: only pages.
    for p in &mut planned {
        if let Decision::Rerank(plan) = &p.decision {
            if !matches!(plan.cut, Cut::Page(_)) {
                p.decision = Decision::Disabled;
            }
        }
    }
    if !planned
        .iter()
        .any(|p| matches!(p.decision, Decision::Rerank(_)))
    {
        return Err("nothing to rerank".into());
    }
    crate::transport::strip_rerank_headers(&mut headers);
    for h in ["grpc-encoding", "content-length"] {
        headers.remove(h);
    }
    headers.insert("grpc-accept-encoding", HeaderValue::from_static("identity"));
    let widened = patch::<M>(&request.encode_to_vec(), edits).map_err(|e| e.to_string())?;
    let mut req = Request::new(());
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    let upstream = state
        .grpc_upstream
        .call(req.into_parts().0, frame::encode(&widened))
        .await
        .map_err(|e| e.to_string())?;
    let code = frame::status(&upstream.headers, upstream.trailers.as_ref());
    if !upstream.status.is_success() || code != Some(0) {
        return Err(format!("Qdrant answered gRPC status {code:?}"));
    }
    let encoding = upstream
        .headers
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok());
    let mut answer = frame::decode_unary(&upstream.body, encoding, usize::MAX)
        .ok()
        .and_then(|m| M::Resp::decode(&m[..]).ok())
        .ok_or("cannot decode Qdrant's gRPC answer")?;
    let answers = M::answers(&mut answer);
    let mut texts = Vec::new();
    let mut ids = Vec::new();
    for (p, hits) in planned.iter().zip(answers.iter()) {
        match (&p.decision, hits) {
            (Decision::Rerank(_), Hits::Points(points)) => {
                texts.push(Some(hit_texts(points, &settings.text_source())));
                ids.push(points.iter().map(id_json).collect::<Vec<_>>());
            }
            _ => {
                texts.push(None);
                ids.push(Vec::new());
            }
        }
    }
    let decisions: Vec<&Decision> = planned.iter().map(|p| &p.decision).collect();
    let (outcomes, _) = state
        .engine
        .rerank_request(collection, settings, &decisions, texts)
        .await
        .map_err(|e| e.to_string())?;
    for ((p, outcome), ids) in planned.iter().zip(&outcomes).zip(&ids) {
        let Decision::Rerank(plan) = &p.decision else {
            continue;
        };
        let (Cut::Page(window), Some(scores)) = (plan.cut, outcome.scores.as_deref()) else {
            state.shadow.fail(label, "not reranked");
            continue;
        };
        match crate::shadow::compare(scores, plan.threshold, window) {
            Some(change) => state.shadow.record(
                collection,
                label,
                &plan.query,
                ids,
                scores,
                &change,
                outcome.time,
            ),
            None => state.shadow.fail(label, "Qdrant returned no candidates"),
        }
    }
    Ok(())
}
