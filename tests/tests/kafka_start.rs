//! Where a new consumer group starts (feature `kafka`): at a timestamp, and from its committed
//! offsets once it has some. On a `tansu` broker of its own.
#![cfg(feature = "kafka")]

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use tidings::bridge::{Consumer, Endpoint, Envelope, Outgoing, Transport};
use tidings_bridges::kafka::{KafkaTransport, StartFrom, Topic};
use tidings_tests::UserCreated;
use tidings_tests::kafka::Tansu;

const WAIT: Duration = Duration::from_secs(30);

fn users(ids: std::ops::Range<u64>, time: SystemTime) -> Vec<Outgoing> {
    ids.map(|id| {
        let user = UserCreated {
            id,
            name: format!("user-{id}"),
        };
        let mut envelope = Envelope::new("user.created", serde_json::to_vec(&user).unwrap());
        envelope.time = time;
        Outgoing {
            destination: "users".into(),
            envelope,
        }
    })
    .collect()
}

/// Takes `n` deliveries, acknowledging each; their ids. Nothing more may follow.
async fn take(consumer: &mut impl Consumer, n: usize) -> BTreeSet<u64> {
    let mut ids = BTreeSet::new();
    for _ in 0..n {
        let d = tokio::time::timeout(WAIT, consumer.next())
            .await
            .expect("a delivery")
            .expect("open")
            .expect("delivered");
        ids.insert(
            serde_json::from_slice::<UserCreated>(&d.message.payload)
                .unwrap()
                .id,
        );
        d.ack().await.expect("ack");
    }
    let extra = tokio::time::timeout(Duration::from_secs(2), consumer.next()).await;
    assert!(extra.is_err(), "more than expected: {extra:?}");
    ids
}

/// One partition: tansu 0.6.0 answers an offset-for-time lookup on a partition with no message
/// that recent with offset 0 instead of its end (librdkafka's mock cluster answers every
/// such lookup with the end), so a partition must hold messages on both sides of the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_group_starts_at_a_timestamp_and_then_at_its_commits() {
    let tansu = Tansu::start();
    tansu.ready().await;
    starts_at_a_timestamp_and_then_at_commits(&tansu.brokers()).await;
}

async fn starts_at_a_timestamp_and_then_at_commits(brokers: &str) {
    let now = SystemTime::now();
    let hour_ago = now - Duration::from_secs(3600);
    let from = KafkaTransport::builder(brokers)
        .session_timeout(Duration::from_secs(6))
        .start_from(StartFrom::Timestamp(now - Duration::from_secs(1800)))
        .build()
        .expect("config");
    from.create_topics(&[Topic::new("users")])
        .await
        .expect("topic");
    // Kafka timestamps are the envelopes' times: ids 0..5 an hour old, 5..10 new.
    let results = from.publish(&users(0..5, hour_ago)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let results = from.publish(&users(5..10, now)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let source = Endpoint::new("users").group("recent");
    let mut consumer = from.consume(&source).await.expect("consume");
    assert_eq!(take(&mut consumer, 5).await, (5..10).collect());
    consumer.close().await;

    // Once the group has committed offsets, they win over the timestamp: old-stamped
    // messages published since are read.
    let results = from.publish(&users(10..12, hour_ago)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let mut again = from.consume(&source).await.expect("consume");
    assert_eq!(take(&mut again, 2).await, (10..12).collect());
    again.close().await;
}
