//! Numbers shared with a Node service through RabbitMQ (amqplib), both directions: every
//! double arrives bit for bit, integers beyond 2^53 as documented (feature `amqp`).
#![cfg(feature = "amqp")]

use std::sync::Arc;

use parking_lot::Mutex;
use tidings::Bus;
use tidings::bridge::{Inbound, Outbound, Source, Transport};
use tidings_tests::numbers::{
    Reading, Readings, WAIT, as_node_reads, as_node_writes, assert_exact, node_consumer,
    node_produce, node_readings, readings,
};
use tidings_tests::rabbit::{URL, cleanup, connect, unique};
use tidings_tests::wait_until;

const COUNT: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubles_sent_by_node_arrive_exactly() {
    let t = connect(&unique("conn")).await;
    let source = Source::new(unique("numbers-from-node")).prefetch(256);
    t.declare(&source).await.expect("declare");
    let bus = Bus::<Readings>::new();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    bus.on(move |r: &Reading| g.lock().push(*r));
    let inbound = Inbound::builder(&bus, t.clone(), source.clone())
        .bind::<Reading>()
        .build();
    let sent = readings(COUNT);
    node_produce("amqp", URL, &source.name, &sent).await;
    wait_until("every reading", WAIT, async || got.lock().len() >= COUNT).await;
    let expected: Vec<Reading> = sent.iter().map(as_node_writes).collect();
    assert_exact(&expected, &got.lock());
    assert_eq!(inbound.stats().dead_lettered, 0);
    inbound.shutdown(WAIT).await;
    cleanup(&t, &source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubles_sent_by_tidings_reach_node_exactly() {
    let t = connect(&unique("conn")).await;
    let exchange = unique("numbers-to-node");
    let (child, lines) = node_consumer("amqp", URL, &exchange, COUNT).await;
    let bus = Bus::<Readings>::new();
    let outbound = Outbound::builder(&bus, t.clone())
        .forward::<Reading>()
        .destination(exchange.clone())
        .build();
    let sent = readings(COUNT);
    for reading in &sent {
        bus.emit_async(*reading).await.expect("emitted");
    }
    let got = node_readings(child, lines, COUNT).await;
    let expected: Vec<Reading> = sent.iter().map(as_node_reads).collect();
    assert_exact(&expected, &got);
    assert_eq!(outbound.shutdown(WAIT).await.unconfirmed, 0);
    t.delete_exchange(&exchange).await.expect("delete");
}
