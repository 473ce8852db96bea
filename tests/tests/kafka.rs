//! The Kafka transport against real `tansu` brokers (feature `kafka`): the conformance suite,
//! each case on a broker of its own.
#![cfg(feature = "kafka")]

use tidings::bridge::Endpoint;
use tidings::bridge::conformance::Harness;
use tidings_bridges::kafka::KafkaTransport;
use tidings_tests::kafka::Tansu;

/// One broker per case; an outage is a SIGKILL and restart on the same storage.
struct Kafka {
    tansu: Tansu,
}

impl Kafka {
    fn new() -> Self {
        // With librdkafka's debug output asked for, show it (and the bridge's own logs).
        if std::env::var_os("TIDINGS_KAFKA_DEBUG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::DEBUG)
                .try_init();
        }
        Kafka {
            tansu: Tansu::start(),
        }
    }
}

impl Harness for Kafka {
    type Transport = KafkaTransport;

    async fn connect(&self) -> KafkaTransport {
        self.tansu.transport().await
    }

    async fn outage(&self) {
        self.tansu.restart().await;
    }

    async fn cleanup(&self, source: &Endpoint) {
        // The broker and its storage go with the case.
        let _ = source;
    }

    /// A group of its own: tansu 0.6.0 kept a member that had left as the leader of a group
    /// shared by two topics when both members left together, and the next member of that
    /// group waited for the gone leader's assignment for ever.
    fn dead_letter_reader(&self, source: &Endpoint) -> Endpoint {
        Endpoint::new(source.dead_letter.clone()).group("dead-letter-reader")
    }
}

tidings::conformance_tests!(Kafka::new());

/// Compressed batches (gzip, lz4) arrive intact. Snappy is tested on the mock cluster:
/// tansu 0.6.0 never delivered snappy batches back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_round_trip() {
    use std::time::Duration;

    use tidings::bridge::{Consumer, Envelope, Outgoing, Transport};
    use tidings_bridges::kafka::Compression;

    let tansu = Tansu::start();
    tansu.ready().await;
    for (n, compression) in [Compression::Gzip, Compression::Lz4]
        .into_iter()
        .enumerate()
    {
        let t = KafkaTransport::builder(&tansu.brokers())
            .compression(compression)
            .session_timeout(Duration::from_secs(6))
            .build()
            .expect("config");
        let source = Endpoint::new(format!("compressed-{n}"));
        t.declare(&source).await.expect("declare");
        let payload = format!("{{\"text\":\"{}\"}}", "abc".repeat(500));
        let batch: Vec<Outgoing> = (0..20)
            .map(|_| Outgoing {
                destination: source.name.clone(),
                envelope: Envelope::new("e", payload.clone().into_bytes()),
            })
            .collect();
        let results = t.publish(&batch).await;
        assert!(
            results.iter().all(Result::is_ok),
            "{compression:?}: {results:?}"
        );
        let mut consumer = t.consume(&source).await.expect("consume");
        for _ in 0..20 {
            let d = tokio::time::timeout(Duration::from_secs(40), consumer.next())
                .await
                .expect("a delivery")
                .expect("open")
                .expect("delivered");
            assert_eq!(
                d.message.payload.as_ref(),
                payload.as_bytes(),
                "{compression:?}"
            );
            d.ack().await.expect("ack");
        }
        consumer.close().await;
    }
}

/// A consumer reports its lag from librdkafka's statistics: over its partitions, the high
/// watermark minus the group's committed offset. Five of ten acknowledged and committed: five;
/// all of them: zero; with the broker down: not known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_reports_its_lag() {
    use std::time::Duration;

    use tidings::bridge::{Consumer, Transport};
    use tidings_bridges::kafka::Topic;
    use tidings_tests::wait_until;

    let tansu = Tansu::start();
    tansu.ready().await;
    let t = KafkaTransport::builder(&tansu.brokers())
        .session_timeout(Duration::from_secs(6))
        .commit_interval(Duration::from_millis(200))
        .source_topics(&Topic::new("lag").partitions(1))
        .build()
        .expect("config");
    let source = Endpoint::new("lag").prefetch(10);
    t.declare(&source).await.expect("declare");
    tidings_tests::publish_numbered(&t, "lag", 0..10).await;
    let mut consumer = t.consume(&source).await.expect("consume");
    let lag = consumer.lag().expect("measured");
    let wait = Duration::from_secs(30);
    let mut deliveries = Vec::new();
    for _ in 0..10 {
        deliveries.push(tidings_tests::next_delivery(&mut consumer, wait).await);
    }
    let rest = deliveries.split_off(5);
    for d in deliveries {
        d.ack().await.expect("ack");
    }
    wait_until("a lag of 5", wait, async || lag.get() == Some(5)).await;
    for d in rest {
        d.ack().await.expect("ack");
    }
    wait_until("a lag of 0", wait, async || lag.get() == Some(0)).await;
    // The broker goes away: the lag is not known; it comes back, and so does the lag.
    tansu.kill();
    wait_until("an unknown lag", wait, async || lag.get().is_none()).await;
    tansu.restart().await;
    wait_until("a lag again", wait, async || lag.get() == Some(0)).await;
    consumer.close().await;
}
