//! OpenTelemetry traces over OTLP/gRPC, off by default (`[tracing]`).
//!
//! secondpass's spans are ordinary `tracing` spans: the request span of
//! [`crate::transport::request_id`], and the spans made with [`span!`] under the target
//! [`TARGET`], which the log output never shows. With tracing off no layer wants that
//! target, so each of those spans is disabled at its call site (one cached check, no
//! allocation), and nothing else runs: no exporter, no thread, no connection. With
//! tracing on, [`layer`] turns them into OpenTelemetry spans, batched on the SDK's
//! own thread and sent to the collector over OTLP/gRPC.
//!
//! The client's W3C `traceparent` (and `tracestate`) becomes the parent of the request
//! span ([`server_span`]) and reaches Qdrant unchanged. Calls out that carry no client
//! header (hosted rerankers, and Qdrant when the client sent no `traceparent`) get one
//! of the request's trace whose parent is the span of that call ([`inject`]); with
//! tracing off nothing is added.
//!
//! An exporter that is behind or a collector that is down never holds a search up:
//! finished spans go into a bounded queue (`max_queue_size`) drained by the SDK's own
//! thread; a span that finds it full is dropped, and every span never delivered is
//! counted in `secondpass_trace_spans_dropped_total` ([`DROPPED`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfig, BatchConfigBuilder, BatchSpanProcessor, Sampler as SdkSampler, SdkTracerProvider,
    SpanData, SpanExporter as Export, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use prometheus::{IntCounterVec, Opts};
use tracing::level_filters::LevelFilter;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::config::{Sampler, TracingConfig};

/// The target of the spans that only traces show (never the log output).
pub const TARGET: &str = "secondpass::otel";
/// The target of the request span, which the log output shows too.
const REQUEST_TARGET: &str = "secondpass::transport::request_id";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Finished spans never delivered to the collector, by reason: `queue_full` (the
/// exporter is behind; dropped at once, never waited for) or `export_failed` (the
/// collector did not take the batch). Process-wide: the exporter outlives reloads.
pub static DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "secondpass_trace_spans_dropped_total",
            "Finished spans never delivered to the OTLP collector, by reason (queue_full, export_failed)",
        ),
        &["reason"],
    )
    .expect("valid metric")
});

/// An info-level span under [`TARGET`]: `span!("name", field = value, ...)`. Numbers
/// go in as `i64`: `tracing-opentelemetry` exports unsigned ones as strings.
#[macro_export]
macro_rules! otel_span {
    ($($arg:tt)*) => {
        ::tracing::info_span!(target: $crate::telemetry::TARGET, $($arg)*)
    };
}
pub use crate::otel_span as span;

/// Whether spans are being exported (set once [`layer`] built the exporter).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The running exporter; [`Telemetry::shutdown`] (or dropping it) sends the spans
/// still queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Flushes and stops the exporter (blocks up to the export timeout).
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "could not send the last spans");
        }
    }
}

/// The filter that the log output adds: secondpass's trace-only spans stay out of it.
pub fn log_directive() -> tracing_subscriber::filter::Directive {
    format!("{TARGET}=off").parse().expect("a valid directive")
}

/// With tracing on, the layer that exports secondpass's spans, and its exporter.
/// Call it inside the tokio runtime (the gRPC channel lives there); the collector is
/// connected to lazily, so a collector that is down never stops secondpass from starting.
#[allow(clippy::type_complexity)]
pub fn layer<S>(
    cfg: &TracingConfig,
) -> Result<Option<(Box<dyn Layer<S> + Send + Sync>, Telemetry)>, String>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if !cfg.enabled {
        return Ok(None);
    }
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(cfg.endpoint.clone())
        .with_timeout(Duration::from_millis(cfg.timeout_ms))
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(Duration::from_millis(cfg.batch_delay_ms))
        .with_max_queue_size(cfg.max_queue_size)
        .with_max_export_batch_size(cfg.max_queue_size.min(512))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Bounded::new(exporter, batch, cfg.max_queue_size))
        .with_sampler(sampler(cfg.sampler, cfg.ratio))
        .with_resource(
            Resource::builder()
                .with_service_name(cfg.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("secondpass");
    // Spans of secondpass only, and its warnings and errors as span events; never
    // the spans of the libraries underneath (hyper, h2, tonic).
    let filter = Targets::new()
        .with_target(TARGET, LevelFilter::INFO)
        .with_target(REQUEST_TARGET, LevelFilter::INFO)
        .with_target("secondpass", LevelFilter::WARN);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_location(false)
        .with_tracked_inactivity(false)
        .with_filter(filter);
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some((Box::new(layer), Telemetry { provider })))
}

fn sampler(s: Sampler, ratio: f64) -> SdkSampler {
    let parent = |root| SdkSampler::ParentBased(Box::new(root));
    match s {
        Sampler::AlwaysOn => SdkSampler::AlwaysOn,
        Sampler::AlwaysOff => SdkSampler::AlwaysOff,
        Sampler::TraceIdRatio => SdkSampler::TraceIdRatioBased(ratio),
        Sampler::ParentBasedAlwaysOn => parent(SdkSampler::AlwaysOn),
        Sampler::ParentBasedAlwaysOff => parent(SdkSampler::AlwaysOff),
        Sampler::ParentBasedTraceIdRatio => parent(SdkSampler::TraceIdRatioBased(ratio)),
    }
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Marks the request's `span` as a server span and makes the client's
/// `traceparent`/`tracestate` its parent (a new trace when there is none or it is
/// malformed). Does nothing when tracing is off: the log output stays as it was.
pub fn server_span(span: &tracing::Span, headers: &http::HeaderMap) {
    if !enabled() || span.is_disabled() {
        return;
    }
    span.record("otel.kind", "server");
    if headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        let _ = span.set_parent(parent);
    }
}

struct HeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// Writes `span`'s trace context into the headers (or gRPC metadata) of a call out:
/// a `traceparent` of the request's trace (the client's, when it sent one) whose
/// parent is `span`, and the client's `tracestate`. Does nothing when tracing is off.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if !enabled() || span.is_disabled() {
        return;
    }
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeadersMut(headers));
    }
}

/// For a call to Qdrant: a client's own `traceparent` reaches Qdrant unchanged (a proxy
/// forwards the client's headers as they are); without one, the call carries
/// secondpass's trace ([`inject`]).
pub fn inject_unless_the_client_sent_one(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if !headers.contains_key("traceparent") {
        inject(span, headers);
    }
}

/// The SDK's batch processor behind a bound of our own that counts what it drops: a
/// span is refused once `cap` spans wait to be handed to the exporter (the SDK's queue,
/// of the same size, so never fills and drops uncounted).
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    waiting: Arc<AtomicUsize>,
    cap: usize,
}

impl Bounded {
    fn new<E: Export + 'static>(exporter: E, batch: BatchConfig, cap: usize) -> Bounded {
        let waiting = Arc::new(AtomicUsize::new(0));
        let exporter = Counted {
            inner: exporter,
            waiting: waiting.clone(),
        };
        Bounded {
            inner: BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch)
                .build(),
            waiting,
            cap,
        }
    }
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.cap {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            DROPPED.with_label_values(&["queue_full"]).inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter, releasing [`Bounded`]'s places as batches leave the queue and
/// counting the spans of batches the collector did not take.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    waiting: Arc<AtomicUsize>,
}

impl<E: Export> Export for Counted<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let n = batch.len();
        self.waiting.fetch_sub(n, Ordering::AcqRel);
        let sent = self.inner.export(batch);
        async move {
            let result = sent.await;
            if result.is_err() {
                DROPPED
                    .with_label_values(&["export_failed"])
                    .inc_by(n as u64);
            }
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The span context to carry into work done on another thread (the local engine's
/// workers): the current span when tracing is on, else a disabled span.
pub fn carry() -> tracing::Span {
    if enabled() {
        tracing::Span::current()
    } else {
        tracing::Span::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_follow_the_otel_names() {
        assert!(matches!(
            sampler(Sampler::ParentBasedTraceIdRatio, 0.5),
            SdkSampler::ParentBased(_)
        ));
        assert!(matches!(
            sampler(Sampler::TraceIdRatio, 0.5),
            SdkSampler::TraceIdRatioBased(r) if r == 0.5
        ));
    }

    /// A collector that takes nothing.
    #[derive(Debug)]
    struct Down;

    impl Export for Down {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                "down".into(),
            ))
        }
    }

    #[test]
    fn spans_past_the_queue_and_failed_exports_are_counted_as_dropped() {
        use opentelemetry::trace::{Span as _, Tracer as _};
        let count = |reason| DROPPED.with_label_values(&[reason]).get();
        let (full, failed) = (count("queue_full"), count("export_failed"));
        // The timer never fires and no batch fills: only shutdown exports.
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_secs(3600))
            .with_max_queue_size(8)
            .with_max_export_batch_size(8)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded::new(Down, batch, 3))
            .build();
        let tracer = provider.tracer("test");
        for _ in 0..5 {
            tracer.start("s").end();
        }
        assert_eq!(count("queue_full") - full, 2, "two past the bound of 3");
        let _ = provider.shutdown();
        assert_eq!(
            count("export_failed") - failed,
            3,
            "the three queued, not taken"
        );
    }

    #[test]
    fn off_builds_nothing_and_the_log_output_never_sees_trace_spans() {
        let off = layer::<tracing_subscriber::Registry>(&TracingConfig::default()).unwrap();
        assert!(off.is_none());
        assert!(!enabled());
        let filter = tracing_subscriber::EnvFilter::new("trace").add_directive(log_directive());
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(logs, || {
            assert!(span!("trace_only").is_disabled());
            assert!(!tracing::info_span!("logged").is_disabled());
        });
    }
}
