//! Forwarding through an outbound bridge vs publishing the same envelopes to the transport
//! directly, both into the in-memory broker, in one run.
//!
//! Each iteration moves 10,000 events: the direct side encodes each to JSON, wraps it in an
//! envelope and publishes batches of 128 with confirmation; the bridge side emits them on a bus
//! (`emit_async`) and stops the bridge, whose shutdown returns once all of them are confirmed.
//!
//! Run with `cargo bench -p tidings-benches --bench bridge`; figures in `benches/README.md`.

// criterion's macros generate undocumented public functions.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::{Deserialize, Serialize};
use tidings::bridge::{Endpoint, Envelope, MemoryBroker, Outbound, Outgoing, Transport};
use tidings::prelude::*;

const EVENTS: u64 = 10_000;
const BATCH: usize = 128;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
pub struct OrderPlaced {
    order: u64,
    sku: String,
    cents: u64,
}

#[derive(Debug, EventSet)]
pub enum Shop {
    OrderPlaced(OrderPlaced),
}

fn order(i: u64) -> OrderPlaced {
    OrderPlaced {
        order: i,
        sku: "tea-kettle".to_owned(),
        cents: 1250,
    }
}

async fn broker() -> MemoryBroker {
    let broker = MemoryBroker::new();
    broker.declare(&Endpoint::new("orders")).await.unwrap();
    broker
}

fn forwarding(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("forwarding");
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("direct_publish", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let broker = broker().await;
                    let start = Instant::now();
                    let mut batch = Vec::with_capacity(BATCH);
                    for i in 0..EVENTS {
                        let payload = serde_json::to_vec(&order(i)).unwrap();
                        batch.push(Outgoing {
                            destination: "orders".to_owned(),
                            envelope: Envelope::new(OrderPlaced::NAME, payload),
                        });
                        if batch.len() == BATCH || i + 1 == EVENTS {
                            let results = broker.publish(&batch).await;
                            assert!(results.iter().all(Result::is_ok));
                            batch.clear();
                        }
                    }
                    total += start.elapsed();
                }
                total
            })
        })
    });
    group.bench_function("outbound_bridge", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let broker = broker().await;
                    let bus = Bus::<Shop>::new();
                    // A clone: the broker, with the 10,000 messages it stored, is dropped after
                    // the clock stops, as on the direct side (the bridge's own handle goes at
                    // its shutdown).
                    let outbound = Outbound::builder(&bus, broker.clone())
                        .forward::<OrderPlaced>()
                        .destination("orders")
                        .batch(BATCH, Duration::from_millis(1))
                        .build();
                    let start = Instant::now();
                    for i in 0..EVENTS {
                        bus.emit_async(order(i)).await.unwrap();
                    }
                    // Shutdown returns once every event is confirmed: the clock stops where
                    // the direct side's does (no spinning on the stats, which took a core
                    // from the two the runtime's workers share).
                    let report = outbound.shutdown(Duration::from_secs(30)).await;
                    total += start.elapsed();
                    assert!(report.is_clean(), "{report}");
                    drop(broker);
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, forwarding);
criterion_main!(benches);
