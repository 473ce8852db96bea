//! One trace across a broker, exported by OpenTelemetry: a shop emits `OrderPlaced` inside a
//! `checkout` span, an outbound bridge publishes it with the trace context in its headers, and
//! the warehouse's inbound bridge handles it in a `process orders` span that continues the
//! trace. The spans go to an in-memory exporter and are printed as a tree; a real service
//! installs an OTLP exporter in the same place (`opentelemetry-otlp`), the rest is unchanged.
//!
//! `cargo run -p tidings-examples --features opentelemetry --example tracing`

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tidings::bridge::{Endpoint, Inbound, MemoryBroker, Outbound, Transport};
use tidings::prelude::*;
use tidings::trace::TraceContext;
use tidings::MessageContext;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "order.placed", key = order)]
struct OrderPlaced {
    order: u64,
}

#[derive(Debug, EventSet)]
enum Shop {
    OrderPlaced(OrderPlaced),
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // OpenTelemetry under `tracing`: every span becomes an OpenTelemetry span.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("shop"));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;

    let broker = MemoryBroker::new();
    broker.declare(&Endpoint::new("orders")).await?;
    let (shop, warehouse) = (Bus::<Shop>::new(), Bus::<Shop>::new());
    let outbound = Outbound::builder(&shop, broker.clone())
        .forward::<OrderPlaced>()
        .destination("orders")
        .build();
    let (done, handled) = tokio::sync::oneshot::channel();
    let done = std::sync::Mutex::new(Some(done));
    warehouse.on_async(move |order: Arc<OrderPlaced>| {
        let done = done.lock().unwrap().take();
        async move {
            // The handler sees the context the message carried.
            let carried = MessageContext::current().and_then(|m| m.trace());
            tracing::info!(order = order.order, "packing");
            if let Some(done) = done {
                let _ = done.send(carried);
            }
        }
    });
    let inbound = Inbound::builder(&warehouse, broker.clone(), Endpoint::new("orders")).build();

    let checkout = tracing::info_span!("checkout");
    shop.emit_async(OrderPlaced { order: 7 })
        .instrument(checkout.clone())
        .await?;
    drop(checkout);
    let carried = tokio::time::timeout(Duration::from_secs(5), handled).await??;
    println!(
        "the message carried traceparent {}",
        carried
            .as_ref()
            .map_or("(none)".into(), TraceContext::traceparent)
    );
    outbound.shutdown(Duration::from_secs(5)).await;
    inbound.shutdown(Duration::from_secs(5)).await;

    // Every span, as trees: the checkout's trace, and the batch's `send` span (a root of its
    // own: the bridge's task publishes for many traces at once), linked to each message.
    let spans = exporter.get_finished_spans()?;
    fn walk(spans: &[opentelemetry_sdk::trace::SpanData], parent: SpanId, depth: usize) {
        for span in spans.iter().filter(|s| s.parent_span_id == parent) {
            println!(
                "{:indent$}{} [{:?}] trace {} span {}",
                "",
                span.name,
                span.span_kind,
                span.span_context.trace_id(),
                span.span_context.span_id(),
                indent = depth * 2
            );
            walk(spans, span.span_context.span_id(), depth + 1);
        }
    }
    walk(&spans, SpanId::INVALID, 0);
    let trace = carried.expect("a traceparent").trace_id_hex();
    let names: Vec<&str> = spans
        .iter()
        .filter(|s| s.span_context.trace_id().to_string() == trace)
        .map(|s| &*s.name)
        .collect();
    for name in [
        "checkout",
        "create orders",
        "process orders",
        "tidings.handle",
    ] {
        assert!(
            names.contains(&name),
            "{name} is in the checkout's trace: {names:?}"
        );
    }
    let send = spans
        .iter()
        .find(|s| s.name == "send")
        .expect("the send span");
    assert_eq!(send.links.len(), 1, "linked to the one message");
    provider.shutdown()?;
    Ok(())
}
