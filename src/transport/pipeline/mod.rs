//! One request's way through secondpass, REST and gRPC alike:
//!
//! ```text
//! gate ─► read options ─► read body ─► plan ─► ask Qdrant ─► rerank ─► answer
//!   └───────────┴─────────────┴──────────┴──────────┴───────────┴──► finish (the one exit)
//! ```
//!
//! Each step returns `Result<T, Exit>`: `Ok` goes on to the next step, `Err(exit)`
//! says how the request ends ([`Exit`]). [`finish`] performs that exit: it forwards,
//! renders secondpass's own errors, stamps `x-rerank-status`, picks the metric label
//! and records the request once. A [`Call`] that never reached [`finish`] (the client
//! went away) records itself as `cancelled`.
//!
//! Here is what the transports share; decoding, widening, extracting the candidates
//! and re-ordering the answer stay in each transport. Traces (see [`crate::telemetry`]):
//! the request's span is opened by the `x-request-id` middleware and filled in by
//! [`Call`] (endpoint, collection, rerank status, answer status); the Qdrant call's
//! span by [`crate::upstream`], one per call; each search's rerank, its stages and
//! reranker attempts by [`crate::engine`] and [`crate::rerank::chain`].

mod exit;
mod marker;
mod options;
pub mod shadow;

#[cfg(test)]
mod exit_tests;

use http::request::Parts;

pub use exit::{finish, Call, Exit, GrpcStatus, ShadowJob};
pub use marker::Marker;
pub use options::Options;

use crate::config::{CollectionSettings, Mode};
use crate::engine::Outcome;
use crate::error::Error;
use crate::plan::{Decision, Planned, RerankStatus};
use crate::state::AppState;
use crate::upstream::Buffered;

/// What a collection's settings make of its searches.
pub enum Gate {
    /// Reranking off: Qdrant answers, marked `disabled`.
    Off,
    /// Qdrant answers; a copy is reranked in the background.
    Shadow(CollectionSettings),
    /// Reranked live.
    Live(CollectionSettings),
}

impl Gate {
    pub fn of(settings: CollectionSettings) -> Gate {
        match (settings.enabled, settings.mode) {
            (false, _) => Gate::Off,
            (true, Mode::Shadow) => Gate::Shadow(settings),
            (true, Mode::Rerank) => Gate::Live(settings),
        }
    }
}

/// The one call to Qdrant of a request secondpass rewrites, its answer read whole;
/// timed in `secondpass_upstream_duration_seconds{route}` whenever Qdrant answered.
pub async fn ask(
    state: &AppState,
    call: &Call,
    parts: Parts,
    body: bytes::Bytes,
) -> Result<Buffered, Error> {
    let answer = state
        .upstream_for(call.protocol())
        .call(parts, body)
        .await?;
    state
        .metrics
        .upstream_duration
        .with_label_values(&[call.route()])
        .observe(answer.elapsed.as_secs_f64());
    Ok(answer)
}

/// Why a search was not reranked when Qdrant's answer to the widened search was past
/// `upstream.max_rewrite_bytes` (`rerank.reason` and `x-rerank-reason`).
pub fn too_large_reason(max: usize) -> String {
    format!(
        "Qdrant's answer to the widened search is larger than upstream.max_rewrite_bytes \
         ({max} bytes): Qdrant's answer to the search as sent, not reranked"
    )
}

/// After the widened search's answer went past the cap (`max`, logged): Qdrant's
/// answer to the client's own request, read whole to be marked `skipped` (`Ok(None)`:
/// past the cap as well, to be streamed through as it is).
pub async fn ask_unwidened(
    state: &AppState,
    call: &Call,
    parts: Parts,
    body: bytes::Bytes,
    max: usize,
) -> Result<Option<Buffered>, Error> {
    tracing::warn!(collection = call.label(), "{}", too_large_reason(max));
    match ask(state, call, parts, body).await {
        Ok(answer) => Ok(Some(answer)),
        Err(Error::UpstreamTooLarge(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One `skipped` outcome per search, with the same reason.
pub fn skipped_all(searches: usize, reason: &str) -> Vec<Outcome> {
    (0..searches)
        .map(|_| Outcome::not_applied(RerankStatus::Skipped, Some(reason.to_string())))
        .collect()
}

/// The middle of a reranked request: every search's candidates (`texts[i]`, `Some`
/// exactly where `planned[i]` is to be reranked) scored concurrently, one outcome per
/// search, and the marker of the whole request.
pub async fn rerank(
    state: &AppState,
    collection: &str,
    settings: &CollectionSettings,
    planned: &[Planned],
    texts: Vec<Option<Vec<Option<String>>>>,
) -> Result<(Vec<Outcome>, Marker), Error> {
    let decisions: Vec<&Decision> = planned.iter().map(|p| &p.decision).collect();
    let (outcomes, time) = state
        .engine
        .rerank_request(collection, settings, &decisions, texts)
        .await?;
    let marker = Marker::of(&outcomes, time);
    Ok((outcomes, marker))
}
