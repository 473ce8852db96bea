//! Numbers shared with a Node service through RabbitMQ (amqplib), both directions: every
//! double arrives bit for bit, integers beyond 2^53 as documented (feature `amqp`).
#![cfg(feature = "amqp")]

use tidings::bridge::{Endpoint, Transport};
use tidings_tests::numbers::{from_node, to_node};
use tidings_tests::rabbit::{URL, cleanup, connect, unique};

const COUNT: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubles_sent_by_node_arrive_exactly() {
    let t = connect(&unique("conn")).await;
    let source = Endpoint::new(unique("numbers-from-node")).prefetch(256);
    t.declare(&source).await.expect("declare");
    // amqplib's `sendToQueue(queue, ...)`.
    from_node(&t, &source, "amqp", URL, COUNT).await;
    cleanup(&t, &source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubles_sent_by_tidings_reach_node_exactly() {
    let t = connect(&unique("conn")).await;
    // The Node consumer binds a queue of its own to this topic exchange.
    let exchange = unique("numbers-to-node");
    to_node(&t, &exchange, "amqp", URL, COUNT).await;
    t.delete_exchange(&exchange).await.expect("delete");
}
