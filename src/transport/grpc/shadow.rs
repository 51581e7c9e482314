//! Shadow mode over gRPC: the call goes to Qdrant as sent and its answer comes back
//! untouched; a copy of the decoded request is reranked in the background (see
//! [`crate::shadow`]).

use std::marker::PhantomData;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use prost::Message;
use qdrant_client::qdrant::point_id::PointIdOptions;
use serde_json::{json, Value};

use super::points::{Hits, Method};
use super::{decode_answer, frame, hit_texts, patch, plan_items, Read};
use crate::config::CollectionSettings;
use crate::plan::{Decision, Planned};
use crate::state::AppState;
use crate::transport::pipeline::shadow::{pages_only, Comparison};
use crate::transport::pipeline::{Call, Exit, ShadowJob};
use crate::upstream::Protocol;

/// The live call, unchanged; sampled calls carry the background comparison along.
pub(super) fn live<M: Method>(
    state: &Arc<AppState>,
    call: &Call,
    collection: String,
    settings: CollectionSettings,
    read: Read<M>,
) -> Exit {
    let Read {
        parts,
        bytes,
        request,
        ..
    } = read;
    let job = state.shadow.sampled().then(|| {
        let job = Job::<M> {
            cmp: Comparison::new(state, call, collection, settings, &parts),
            method: PhantomData,
        };
        Box::pin(job.run(request)) as ShadowJob
    });
    Exit::Shadow(Request::from_parts(parts, Body::from(bytes)), job)
}

fn id_json(p: &qdrant_client::qdrant::ScoredPoint) -> Value {
    match p.id.as_ref().and_then(|i| i.point_id_options.as_ref()) {
        Some(PointIdOptions::Num(n)) => json!(n),
        Some(PointIdOptions::Uuid(u)) => json!(u),
        None => Value::Null,
    }
}

/// A background comparison: the call as secondpass would have sent it, reranked.
struct Job<M> {
    cmp: Comparison,
    method: PhantomData<fn() -> M>,
}

impl<M: Method> Job<M> {
    async fn run(self, request: M::Req) {
        if let Err(why) = self.compare(request).await {
            self.cmp.fail(&why);
        }
    }

    async fn compare(&self, request: M::Req) -> Result<(), String> {
        let options = self.cmp.options(Protocol::Grpc)?;
        let (mut planned, edits) = plan_items::<M>(&request, &self.cmp.settings, &options);
        if !pages_only(&mut planned) {
            return Err("nothing to rerank".into());
        }
        let widened = patch::<M>(&request.encode_to_vec(), edits).map_err(|e| e.to_string())?;
        let upstream = self
            .cmp
            .ask(Protocol::Grpc, frame::encode(&widened))
            .await?;
        let code = frame::status(&upstream.headers, upstream.trailers.as_ref());
        if !upstream.status.is_success() || code != Some(0) {
            return Err(format!("Qdrant answered gRPC status {code:?}"));
        }
        let (_, mut answer) =
            decode_answer::<M>(&upstream).ok_or("cannot decode Qdrant's gRPC answer")?;
        let (texts, ids) = self.candidates(&planned, &M::answers(&mut answer));
        self.cmp.rerank(&planned, texts, &ids).await
    }

    /// Each compared search's candidate texts and ids, in Qdrant's order.
    #[allow(clippy::type_complexity)]
    fn candidates(
        &self,
        planned: &[Planned],
        answers: &[Hits<'_>],
    ) -> (Vec<Option<Vec<Option<String>>>>, Vec<Vec<Value>>) {
        let mut texts = Vec::new();
        let mut ids = Vec::new();
        for (p, hits) in planned.iter().zip(answers) {
            match (&p.decision, hits) {
                (Decision::Rerank(_), Hits::Points(points)) => {
                    texts.push(Some(hit_texts(points, &self.cmp.settings.text_source())));
                    ids.push(points.iter().map(id_json).collect::<Vec<_>>());
                }
                _ => {
                    texts.push(None);
                    ids.push(Vec::new());
                }
            }
        }
        (texts, ids)
    }
}
