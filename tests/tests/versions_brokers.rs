//! Versioned events through real brokers (features `amqp`, `kafka`, `redis`; Node.js for the
//! kafkajs and ioredis producers): version 1 messages written to RabbitMQ, Kafka and Redis
//! Streams before the consumer's struct changed are read as version 3 by the consumer that
//! starts afterwards, and a Node service that still sends version 1 (no version header, no
//! type) feeds a consumer that knows version 3.
#![cfg(all(feature = "amqp", feature = "kafka", feature = "redis"))]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tidings::Bus;
use tidings::bridge::{Endpoint, Inbound, Outbound, Transport};
use tidings_tests::kafka::Tansu;
use tidings_tests::versions::{v1, v3};
use tidings_tests::{node_project, node_script};

const WAIT: Duration = Duration::from_secs(60);

fn eur(cents: u64) -> v3::Money {
    v3::Money {
        cents,
        currency: "EUR".into(),
    }
}

/// What a version 3 consumer of `source` sees, once `count` orders arrived.
async fn read_as_v3<T: Transport>(
    t: &T,
    source: &Endpoint,
    count: usize,
    bind: bool,
) -> Vec<v3::OrderPlaced> {
    let bus = Bus::<v3::Shop>::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    bus.on(move |o: &v3::OrderPlaced| s.lock().push(o.clone()));
    let mut builder = Inbound::builder(&bus, t.clone(), source.clone());
    if bind {
        // A Node service sends no type: the bridge reads what comes as this event.
        builder = builder.bind::<v3::OrderPlaced>();
    }
    let inbound = builder.build();
    tokio::time::timeout(WAIT, async {
        while seen.lock().len() < count {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {count} orders arrived", seen.lock().len()));
    assert_eq!(inbound.stats().dead_lettered, 0);
    inbound.shutdown(WAIT).await;
    let mut seen = seen.lock().clone();
    seen.sort_by_key(|o| o.order);
    seen
}

/// Writes orders 1..=3 as version 1 through an outbound bridge that then stops.
async fn written_as_v1<T: Transport>(t: &T, destination: &str) {
    let bus = Bus::<v1::Shop>::new();
    let outbound = Outbound::builder(&bus, t.clone())
        .forward::<v1::OrderPlaced>()
        .destination(destination)
        .build();
    for order in 1..=3 {
        bus.emit_async(v1::OrderPlaced { order }).await.unwrap();
    }
    assert!(
        outbound.shutdown(WAIT).await.is_clean(),
        "every version 1 message confirmed"
    );
}

fn as_v3(orders: &[u64]) -> Vec<v3::OrderPlaced> {
    orders
        .iter()
        .map(|&order| v3::OrderPlaced {
            order,
            amount: eur(0),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_keeps_version_1_messages_readable_as_version_3() {
    let t = tidings_tests::rabbit::connect("versions").await;
    let source = Endpoint::new(tidings_tests::rabbit::unique("versions"));
    t.declare(&source).await.unwrap();
    written_as_v1(&t, &source.name).await;
    assert_eq!(read_as_v3(&t, &source, 3, false).await, as_v3(&[1, 2, 3]));
    tidings_tests::rabbit::cleanup(&t, &source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_keeps_version_1_messages_readable_as_version_3_and_node_still_sends_version_1() {
    let tansu = Tansu::start();
    let t = tansu.transport().await;
    let source = Endpoint::new("versions");
    t.declare(&source).await.unwrap();
    written_as_v1(&t, &source.name).await;
    assert_eq!(read_as_v3(&t, &source, 3, false).await, as_v3(&[1, 2, 3]));

    let from_node = Endpoint::new("versions-from-node");
    t.declare(&from_node).await.unwrap();
    let dir = node_project("kafkajs").await;
    let brokers = tansu.brokers();
    let body = serde_json::json!({"order": 7}).to_string();
    let status = node_script(
        &dir,
        "kafka_interop.js",
        &["produce", &brokers, &from_node.name, &body],
    )
    .status()
    .await
    .expect("node");
    assert!(status.success());
    assert_eq!(read_as_v3(&t, &from_node, 1, true).await, as_v3(&[7]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keeps_version_1_messages_readable_as_version_3_and_node_still_sends_version_1() {
    let t = tidings_tests::redis::transport().await;
    let source = Endpoint::new(tidings_tests::redis::unique("versions"));
    t.declare(&source).await.unwrap();
    written_as_v1(&t, &source.name).await;
    assert_eq!(read_as_v3(&t, &source, 3, false).await, as_v3(&[1, 2, 3]));

    let from_node = Endpoint::new(tidings_tests::redis::unique("versions-from-node"));
    t.declare(&from_node).await.unwrap();
    let dir = node_project("ioredis").await;
    let body = serde_json::json!({"order": 8}).to_string();
    let url = tidings_tests::redis::URL;
    let status = node_script(
        &dir,
        "redis_interop.js",
        &["produce", url, &from_node.name, &body],
    )
    .status()
    .await
    .expect("node");
    assert!(status.success());
    assert_eq!(read_as_v3(&t, &from_node, 1, true).await, as_v3(&[8]));
    tidings_tests::redis::cleanup(&source).await;
    tidings_tests::redis::cleanup(&from_node).await;
}
