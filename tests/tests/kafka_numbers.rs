//! Numbers shared with a Node service through Kafka (kafkajs), both directions: every double
//! arrives bit for bit, integers beyond 2^53 as documented (feature `kafka`).
#![cfg(feature = "kafka")]

use std::sync::Arc;

use parking_lot::Mutex;
use tidings::Bus;
use tidings::bridge::{Inbound, Outbound, Source, Transport};
use tidings_tests::kafka::Tansu;
use tidings_tests::numbers::{
    Reading, Readings, WAIT, as_node_reads, as_node_writes, assert_exact, node_consumer,
    node_produce, node_readings, readings,
};
use tidings_tests::wait_until;

const COUNT: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubles_sent_by_node_arrive_exactly() {
    let tansu = Tansu::start();
    let t = tansu.transport().await;
    let source = Source::new("numbers-from-node");
    t.declare(&source).await.expect("declare");
    let bus = Bus::<Readings>::new();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    bus.on(move |r: &Reading| g.lock().push(*r));
    let inbound = Inbound::builder(&bus, t.clone(), source.clone())
        .bind::<Reading>()
        .build();
    let sent = readings(COUNT);
    node_produce("kafka", &tansu.brokers(), &source.name, &sent).await;
    wait_until("every reading", WAIT, async || got.lock().len() >= COUNT).await;
    let expected: Vec<Reading> = sent.iter().map(as_node_writes).collect();
    assert_exact(&expected, &got.lock());
    assert_eq!(inbound.stats().dead_lettered, 0);
    inbound.shutdown(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubles_sent_by_tidings_reach_node_exactly() {
    let tansu = Tansu::start();
    let t = tansu.transport().await;
    let topic = "numbers-to-node";
    t.declare(&Source::new(topic)).await.expect("declare");
    let bus = Bus::<Readings>::new();
    let outbound = Outbound::builder(&bus, t.clone())
        .forward::<Reading>()
        .destination(topic)
        .build();
    let sent = readings(COUNT);
    for reading in &sent {
        bus.emit_async(*reading).await.expect("emitted");
    }
    assert_eq!(outbound.shutdown(WAIT).await.unconfirmed, 0);
    let (child, lines) = node_consumer("kafka", &tansu.brokers(), topic, COUNT).await;
    let got = node_readings(child, lines, COUNT).await;
    let expected: Vec<Reading> = sent.iter().map(as_node_reads).collect();
    assert_exact(&expected, &got);
}
