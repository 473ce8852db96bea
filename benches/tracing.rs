//! What trace context costs on the bridge path: 20,000 events emitted on one bus, forwarded by
//! an outbound bridge through the memory broker, handled by an inbound bridge's listener on a
//! second bus; clock stopped when the listener had the last one. Three ways in one run, on a
//! current-thread runtime (so a scoped subscriber covers every task):
//!
//! - no `tracing` subscriber at all;
//! - a `tracing-opentelemetry` layer, every span sampled and exported to memory (a `create`
//!   span per message, a `send` span per batch, a `process` span and a listener span per
//!   message, and the context written into and read from each message's headers);
//! - the same layer with the `AlwaysOff` sampler (spans made, context propagated, nothing
//!   recorded).
//!
//! Five rounds alternate them. `cargo bench -p tidings-benches --features opentelemetry --bench tracing`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tidings::bridge::{Endpoint, Inbound, MemoryBroker, Outbound, Transport};
use tidings::prelude::*;
use tidings_benches::median;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

const EVENTS: u64 = 20_000;
const ROUNDS: usize = 5;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "bench.order", key = key)]
struct BenchOrder {
    seq: u64,
    key: String,
}

#[derive(Debug, EventSet)]
enum Events {
    BenchOrder(BenchOrder),
}

/// Events per second through the pipeline, on a fresh current-thread runtime.
fn pipeline() -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let broker = MemoryBroker::new();
        let source = Endpoint::new("bench.orders").prefetch(1024);
        broker.declare(&source).await.unwrap();
        let (shop, warehouse) = (Bus::<Events>::new(), Bus::<Events>::new());
        let outbound = Outbound::builder(&shop, broker.clone())
            .forward::<BenchOrder>()
            .destination("bench.orders")
            .build();
        let handled = Arc::new(AtomicU64::new(0));
        let h = Arc::clone(&handled);
        let done = Arc::new(tokio::sync::Notify::new());
        let d = Arc::clone(&done);
        warehouse.on_async(move |_: Arc<BenchOrder>| {
            if h.fetch_add(1, Ordering::Relaxed) + 1 == EVENTS {
                d.notify_one();
            }
            async {}
        });
        let inbound = Inbound::builder(&warehouse, broker.clone(), source).build();
        let started = Instant::now();
        let request = tracing::info_span!("request");
        async {
            for seq in 0..EVENTS {
                let order = BenchOrder {
                    seq,
                    key: format!("k{}", seq % 64),
                };
                shop.emit_async(order).await.unwrap();
            }
        }
        .instrument(request)
        .await;
        done.notified().await;
        let rate = EVENTS as f64 / started.elapsed().as_secs_f64();
        outbound.shutdown(Duration::from_secs(5)).await;
        inbound.shutdown(Duration::from_secs(5)).await;
        rate
    })
}

fn with_layer(sampler: Sampler) -> f64 {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    let subscriber = tracing_subscriber::registry().with(layer);
    let rate = tracing::subscriber::with_default(subscriber, pipeline);
    let _ = provider.shutdown();
    rate
}

fn main() {
    let (mut none, mut sampled, mut off) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        none.push(pipeline());
        sampled.push(with_layer(Sampler::AlwaysOn));
        off.push(with_layer(Sampler::AlwaysOff));
    }
    let base = median(&none);
    println!("{:<52} {:>12} {:>8}", "contender", "events/s", "vs none");
    for (name, rates) in [
        ("no subscriber", none),
        (
            "OpenTelemetry layer, every span exported to memory",
            sampled,
        ),
        ("OpenTelemetry layer, AlwaysOff sampler", off),
    ] {
        let m = median(&rates);
        let all: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "{name:<52} {m:>12.0} {:>7.2}x   ({})",
            base / m,
            all.join(" · ")
        );
    }
}
