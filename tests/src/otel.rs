//! Spans through OpenTelemetry for the trace-context suites: one global subscriber per test
//! binary with `tracing-opentelemetry`'s layer, exporting every finished span (every level)
//! to memory. Tests tell their spans apart by trace id or by the names they gave.

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();

/// Installs the subscriber (the first time) and returns the exporter.
pub fn exporter() -> &'static InMemorySpanExporter {
    &EXPORTER
        .get_or_init(|| {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_simple_exporter(exporter.clone())
                .build();
            let layer =
                tracing_opentelemetry::layer().with_tracer(provider.tracer("tidings-tests"));
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
            (exporter, provider)
        })
        .0
}

/// Every span finished so far whose trace id is `trace` (32 hex digits).
pub fn spans_of(trace: &str) -> Vec<SpanData> {
    exporter()
        .get_finished_spans()
        .expect("the exporter")
        .into_iter()
        .filter(|s| s.span_context.trace_id().to_string() == trace)
        .collect()
}

/// The finished span named `name` (OpenTelemetry's name, `otel.name` where set) in `spans`.
///
/// # Panics
/// When there is none; the names present are listed.
pub fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        let names: Vec<&str> = spans.iter().map(|s| &*s.name).collect();
        panic!("no span {name:?} among {names:?}")
    })
}

/// The value of attribute `key` of `span`, as text.
pub fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}
