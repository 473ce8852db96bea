//! Numbers shared with a Node service through Kafka (kafkajs), both directions: every double
//! arrives bit for bit, integers beyond 2^53 as documented (feature `kafka`).
#![cfg(feature = "kafka")]

use tidings::bridge::{Endpoint, Transport};
use tidings_tests::kafka::Tansu;
use tidings_tests::numbers::{from_node, to_node};

const COUNT: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubles_sent_by_node_arrive_exactly() {
    let tansu = Tansu::start();
    let t = tansu.transport().await;
    let source = Endpoint::new("numbers-from-node");
    t.declare(&source).await.expect("declare");
    // kafkajs's `producer.send({ topic, messages: [{ value: json }] })`.
    from_node(&t, &source, "kafka", &tansu.brokers(), COUNT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubles_sent_by_tidings_reach_node_exactly() {
    let tansu = Tansu::start();
    let t = tansu.transport().await;
    let topic = "numbers-to-node";
    t.declare(&Endpoint::new(topic)).await.expect("declare");
    // The Node consumer joins its group, from the beginning, before anything is sent.
    to_node(&t, topic, "kafka", &tansu.brokers(), COUNT).await;
}
