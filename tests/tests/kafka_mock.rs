//! The Kafka transport against librdkafka's mock cluster (feature `kafka`): faults a real
//! broker cannot be asked for. The mock cluster is not `Send`, so it stays in the test's own
//! task.
#![cfg(feature = "kafka")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use tidings::Bus;
use tidings::bridge::{Consumer, Outbound, Source, Transport};
use tidings_bridges::kafka::KafkaTransport;
use tidings_tests::{Events, UserCreated};

const WAIT: Duration = Duration::from_secs(60);
const N: u64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_events_survive_a_cluster_down_twice() {
    let cluster = MockCluster::new(1).expect("a mock cluster");
    cluster.create_topic("users", 3, 1).expect("topic");
    let t = KafkaTransport::builder(&cluster.bootstrap_servers())
        .session_timeout(Duration::from_secs(6))
        .publish_timeout(Duration::from_secs(20))
        .build()
        .expect("config");
    let bus = Bus::<Events>::new();
    let outbound = Arc::new(
        Outbound::builder(&bus, t.clone())
            .forward::<UserCreated>()
            .destination("users")
            .build(),
    );
    let producer = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for id in 0..N {
                let user = UserCreated {
                    id,
                    name: format!("user-{id}"),
                };
                bus.emit_async(user).await.expect("emitted");
            }
        })
    };
    // The cluster goes away twice mid-stream, each time once part of it was confirmed.
    let mut downs = 0;
    for at in [N / 4, N / 2] {
        tokio::time::timeout(WAIT, async {
            while outbound.stats().confirmed < at {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("progress before the outage");
        cluster.broker_down(1).expect("down");
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.broker_up(1).expect("up");
        downs += 1;
    }
    producer.await.expect("producer");
    let outbound = Arc::into_inner(outbound).expect("the only handle");
    let report = outbound.shutdown(WAIT).await;
    assert_eq!(report.unconfirmed, 0, "every event confirmed in the end");
    assert_eq!(downs, 2);

    let mut consumer = t.consume(&Source::new("users")).await.expect("consume");
    let (mut seen, mut duplicates) = (BTreeSet::new(), 0);
    while seen.len() < N as usize {
        let d = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {N} arrived", seen.len()))
            .expect("open")
            .expect("a delivery");
        let user: UserCreated = serde_json::from_slice(&d.message.payload).expect("JSON");
        if !seen.insert(user.id) {
            duplicates += 1;
        }
        d.ack().await.expect("ack");
    }
    println!("mock cluster down twice: {N} confirmed, 0 lost, {duplicates} duplicates");
}
