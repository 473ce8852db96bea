//! Numbers shared with a Node service through Redis Streams (ioredis), both directions: every
//! double arrives bit for bit, integers beyond 2^53 as documented (feature `redis`).
#![cfg(feature = "redis")]

use tidings::bridge::{Endpoint, Transport};
use tidings_tests::numbers::{from_node, to_node};
use tidings_tests::redis::{URL, cleanup, unique};

const COUNT: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubles_sent_by_node_arrive_exactly() {
    let t = tidings_tests::redis::transport().await;
    let source = Endpoint::new(unique("numbers-from-node")).prefetch(256);
    t.declare(&source).await.expect("declare");
    // ioredis's `xadd(stream, '*', 'data', json)`.
    from_node(&t, &source, "redis", URL, COUNT).await;
    cleanup(&source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubles_sent_by_tidings_reach_node_exactly() {
    let t = tidings_tests::redis::transport().await;
    // The Node consumer creates its group on this stream from the start.
    let stream = unique("numbers-to-node");
    to_node(&t, &stream, "redis", URL, COUNT).await;
    cleanup(&Endpoint::new(stream)).await;
}
