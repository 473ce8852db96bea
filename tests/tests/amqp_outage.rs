//! 20 000 persistent events through RabbitMQ while every connection is forcibly closed twice
//! and the broker application is restarted once (feature `amqp`). The outages are broker-wide,
//! so the test runs them on a RabbitMQ node of its own (free ports, its own folder), never on
//! the shared broker.
#![cfg(feature = "amqp")]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tidings::Event;
use tidings::bridge::conformance::Ping;
use tidings::bridge::{Consumer, Endpoint, Envelope, Outgoing, Transport};
use tidings_bridges::amqp::AmqpTransport;
use tidings_tests::rabbit::{connect_to, unique};
use tidings_tests::rabbit_cluster::RabbitCluster;
use tokio::sync::watch;

const EVENTS: u64 = 20_000;
const PUBLISHERS: u64 = 4;
const BATCH: u64 = 100;

fn ping(seq: u64) -> Envelope {
    let payload = serde_json::to_vec(&Ping {
        seq,
        key: format!("k{}", seq % 8),
    })
    .expect("encodes");
    Envelope::new(Ping::NAME, payload)
}

/// Publishes `seqs`, retrying what failed, and records each confirmed one. The last 40% wait
/// for `restart` to open, so that they are published while the broker restarts.
async fn publish(
    t: AmqpTransport,
    destination: String,
    seqs: Vec<u64>,
    confirmed: Arc<Mutex<BTreeSet<u64>>>,
    failures: Arc<AtomicU64>,
    mut restart: watch::Receiver<bool>,
) {
    let gate = seqs.len() * 3 / 5;
    for (i, chunk) in seqs.chunks(BATCH as usize).enumerate() {
        if i * BATCH as usize == gate {
            restart
                .wait_for(|open| *open)
                .await
                .expect("the test holds the gate");
        } else {
            // Spread the publishes out, so that the forced closes hit some in flight.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut pending: Vec<u64> = chunk.to_vec();
        while !pending.is_empty() {
            let batch: Vec<Outgoing> = pending
                .iter()
                .map(|&seq| Outgoing {
                    destination: destination.clone(),
                    envelope: ping(seq),
                })
                .collect();
            let results = t.publish(&batch).await;
            let mut failed = Vec::new();
            for (&seq, result) in pending.iter().zip(results) {
                match result {
                    Ok(()) => {
                        confirmed.lock().insert(seq);
                    }
                    Err(error) => {
                        assert!(error.is_retryable(), "publish of {seq} refused: {error}");
                        failures.fetch_add(1, Ordering::Relaxed);
                        failed.push(seq);
                    }
                }
            }
            pending = failed;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Consumes and acknowledges until stopped, consuming again after every failure; counts
/// deliveries per sequence number.
async fn consume(t: AmqpTransport, source: Endpoint, seen: Arc<Mutex<HashMap<u64, u32>>>) {
    loop {
        let Ok(mut consumer) = t.consume(&source).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while let Some(Ok(delivery)) = consumer.next().await {
            let seq = serde_json::from_slice::<Ping>(&delivery.message.payload)
                .expect("a Ping")
                .seq;
            *seen.lock().entry(seq).or_default() += 1;
            // An ack lost with the connection means the message comes again, as a duplicate.
            let _ = delivery.ack().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(limit, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_events_survive_two_forced_closes_and_a_broker_restart() {
    // What the transports log goes to the test's output, printed if it fails.
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_test_writer()
        .try_init();
    // Stopped and removed when the test ends, however it ends.
    let node = RabbitCluster::start(1).await;
    let publisher = connect_to(&node.url(0), &unique("publisher")).await;
    let receiver = connect_to(&node.url(0), &unique("receiver")).await;
    let source = Endpoint::new(unique("outage")).prefetch(200);
    publisher.declare(&source).await.expect("declare");

    let seen = Arc::new(Mutex::new(HashMap::new()));
    let consuming = tokio::spawn(consume(receiver.clone(), source.clone(), Arc::clone(&seen)));
    let confirmed = Arc::new(Mutex::new(BTreeSet::new()));
    let failures = Arc::new(AtomicU64::new(0));
    let per = EVENTS / PUBLISHERS;
    let (restart, gate) = watch::channel(false);
    let publishing: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            tokio::spawn(publish(
                publisher.clone(),
                source.name.clone(),
                (p * per..(p + 1) * per).collect(),
                Arc::clone(&confirmed),
                Arc::clone(&failures),
                gate.clone(),
            ))
        })
        .collect();

    let limit = Duration::from_secs(120);
    for at in [EVENTS / 5, 2 * EVENTS / 5] {
        wait_for("publishes", limit, || confirmed.lock().len() as u64 >= at).await;
        node.ctl(0, &["close_all_connections", "test outage"]).await;
        println!("closed every connection at {at} confirmed");
    }
    wait_for("publishes", limit, || {
        confirmed.lock().len() as u64 >= 3 * EVENTS / 5
    })
    .await;
    // The remaining 8 000 go out while the broker application is down and starting again.
    node.ctl(0, &["stop_app"]).await;
    restart.send_replace(true);
    println!(
        "broker application stopped at {} confirmed",
        confirmed.lock().len()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.ctl(0, &["start_app"]).await;
    node.ctl(0, &["await_startup"]).await;
    println!(
        "broker application started again at {} confirmed",
        confirmed.lock().len()
    );

    for p in publishing {
        tokio::time::timeout(limit, p)
            .await
            .expect("publishers finish")
            .expect("publisher");
    }
    assert_eq!(confirmed.lock().len() as u64, EVENTS);
    let missing = || {
        let seen = seen.lock();
        let confirmed = confirmed.lock();
        confirmed
            .iter()
            .filter(|seq| !seen.contains_key(seq))
            .copied()
            .collect::<Vec<u64>>()
    };
    let arrived = tokio::time::timeout(limit, async {
        while !missing().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if arrived.is_err() {
        // Lost, or still in the queue with nobody taking it: the queue's counts tell which.
        let missing = missing();
        let queue = node
            .ctl(
                0,
                &[
                    "list_queues",
                    "name",
                    "messages_ready",
                    "messages_unacknowledged",
                    "consumers",
                    "-q",
                ],
            )
            .await;
        let queue = queue
            .lines()
            .find(|l| l.starts_with(&source.name))
            .unwrap_or("(queue not listed)");
        panic!(
            "{} confirmed events never arrived (the first: {:?}); queue (name, ready, \
             unacknowledged, consumers): {queue}; receiver connections: {}",
            missing.len(),
            &missing[..missing.len().min(10)],
            receiver.connections(),
        );
    }
    consuming.abort();

    let seen = std::mem::take(&mut *seen.lock());
    let lost = confirmed
        .lock()
        .iter()
        .filter(|seq| !seen.contains_key(seq))
        .count();
    let duplicates: u64 = seen.values().map(|&n| u64::from(n - 1)).sum();
    println!(
        "{EVENTS} events: {lost} lost, {duplicates} duplicate deliveries, {} failed publish attempts retried, {} publisher connections, {} receiver connections",
        failures.load(Ordering::Relaxed),
        publisher.connections(),
        receiver.connections(),
    );
    assert_eq!(lost, 0);
    assert!(
        publisher.connections() >= 4,
        "three outages, three reconnects"
    );
}
