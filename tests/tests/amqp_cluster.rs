//! A RabbitMQ cluster of three nodes (feature `amqp`; RabbitMQ's programs, run by the test on
//! ports and in folders of its own): a quorum queue, 20,000 events forwarded through a
//! transport connected to the node that leads the queue, that node killed mid-stream, and a
//! consumer on another node: every confirmed event arrives, and the transport carries on
//! through the nodes left.
#![cfg(feature = "amqp")]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tidings::Bus;
use tidings::bridge::{Endpoint, Inbound, Outbound, Transport};
use tidings_bridges::amqp::{AmqpTransport, Queue, queue_name};
use tidings_tests::rabbit_cluster::RabbitCluster;
use tidings_tests::{Events, UserCreated, user};

const EVENTS: u64 = 20_000;
const WAIT: Duration = Duration::from_secs(120);

/// A transport trying the nodes at `order`, in that order, declaring sources as quorum
/// queues.
async fn transport(cluster: &RabbitCluster, order: &[usize]) -> AmqpTransport {
    let mut builder = AmqpTransport::builder(&cluster.url(order[0]))
        .source_queues(&Queue::durable("").quorum())
        .connect_timeout(Duration::from_secs(60))
        .reconnect(tidings::Backoff::Fixed(Duration::from_millis(200)));
    for &i in &order[1..] {
        builder = builder.url(&cluster.url(i));
    }
    builder.connect().await.expect("the cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_quorum_queues_leader_mid_stream_loses_no_confirmed_event() {
    let cluster = RabbitCluster::start(3).await;
    let source = Endpoint::new("cluster-orders");
    let setup = transport(&cluster, &[0, 1, 2]).await;
    setup.declare(&source).await.unwrap();
    let listing = cluster
        .ctl(
            0,
            &["list_queues", "-q", "--no-table-headers", "name", "leader"],
        )
        .await;
    let queue = queue_name(&source);
    let leader_name = listing
        .lines()
        .find_map(|l| {
            let mut fields = l.split_whitespace();
            (fields.next() == Some(queue.as_str())).then(|| fields.next().map(str::to_owned))
        })
        .flatten()
        .unwrap_or_else(|| panic!("the queue's leader in {listing:?}"));
    let leader = cluster
        .index_of(&leader_name)
        .expect("a node of the cluster");
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    setup.shutdown(WAIT).await;

    // The producer is connected to the leader's node; the consumer to another.
    let producer = transport(&cluster, &[leader, others[0], others[1]]).await;
    let consumer = transport(&cluster, &[others[0], others[1]]).await;

    let received = Arc::new(Mutex::new(HashSet::new()));
    let there = Bus::<Events>::new();
    let seen = Arc::clone(&received);
    there.on(move |u: &UserCreated| {
        seen.lock().insert(u.id);
    });
    let inbound = Inbound::builder(&there, consumer.clone(), source.clone())
        .concurrency(8)
        .build();

    let here = Bus::<Events>::new();
    let outbound = Outbound::builder(&here, producer.clone())
        .forward::<UserCreated>()
        .destination(&source.name)
        .build();
    let mut killed = false;
    let emitted = tokio::time::timeout(WAIT, async {
        for id in 0..EVENTS {
            here.emit_async(user(id)).await.unwrap();
            if !killed && outbound.stats().confirmed >= EVENTS / 4 {
                cluster.kill(leader);
                killed = true;
            }
        }
    })
    .await;
    assert!(
        emitted.is_ok(),
        "the outbound stalled: {:?}",
        outbound.stats()
    );
    assert!(killed, "the leader was killed mid-stream");
    // Every event confirmed, none refused for good: a negative confirm while the queue had no
    // leader is sent again, not dropped.
    let confirmed = tokio::time::timeout(WAIT, async {
        while outbound.stats().confirmed < EVENTS {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let stats = outbound.stats();
    assert!(
        confirmed.is_ok(),
        "not every event was confirmed: {stats:?}"
    );
    assert_eq!(stats.rejected, 0, "{stats:?}");
    let report = outbound.shutdown(WAIT).await;
    assert!(
        report.is_clean(),
        "every event confirmed in the end: {report:?}"
    );
    assert!(
        producer.connections() >= 2,
        "the producer moved to another node"
    );

    let arrived = tokio::time::timeout(WAIT, async {
        while (received.lock().len() as u64) < EVENTS {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        arrived.is_ok(),
        "{} of {EVENTS} confirmed events arrived; inbound: {:?}; consumer connections: {}",
        received.lock().len(),
        inbound.stats(),
        consumer.connections()
    );
    inbound.shutdown(WAIT).await;
    producer.shutdown(WAIT).await;
    consumer.shutdown(WAIT).await;
}
