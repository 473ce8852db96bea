//! Kafka failures (feature `kafka`): a broker killed mid-stream, a consumer process killed
//! holding messages, a member joining mid-stream. Each test has a `tansu` broker of its own.
#![cfg(feature = "kafka")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tidings::Bus;
use tidings::bridge::{Consumer, Delivery, Endpoint, Envelope, Outbound, Outgoing, Transport};
use tidings_bridges::kafka::{KafkaTransport, Topic};
use tidings_tests::kafka::Tansu;
use tidings_tests::{Events, UserCreated};

const WAIT: Duration = Duration::from_secs(60);

fn id_of(d: &Delivery) -> u64 {
    serde_json::from_slice::<UserCreated>(&d.message.payload)
        .expect("a UserCreated")
        .id
}

/// Consumes `source` and acknowledges until every id in `expected` arrived; returns the
/// duplicates.
async fn drain(t: &KafkaTransport, source: &Endpoint, expected: &BTreeSet<u64>) -> usize {
    let mut consumer = t.consume(source).await.expect("consume");
    let mut seen = BTreeSet::new();
    let mut duplicates = 0;
    while !expected.is_subset(&seen) {
        let d = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| {
                let missing = expected.difference(&seen).count();
                panic!("{missing} messages never arrived")
            })
            .expect("open")
            .expect("a delivery");
        if !seen.insert(id_of(&d)) {
            duplicates += 1;
        }
        d.ack().await.expect("ack");
    }
    duplicates
}

fn user(id: u64) -> UserCreated {
    UserCreated {
        id,
        name: format!("user-{id}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_twice_mid_stream_loses_no_confirmed_event() {
    let tansu = Arc::new(Tansu::start());
    let t = tansu.transport().await;
    const N: u64 = 20_000;
    let source = Endpoint::new("outage");
    t.declare(&source).await.expect("declare");
    let bus = Bus::<Events>::new();
    let outbound = Arc::new(
        Outbound::builder(&bus, t.clone())
            .forward::<UserCreated>()
            .destination("outage")
            .build(),
    );
    // Each kill comes once part of the stream is confirmed, the rest still on its way.
    let killer = {
        let (tansu, outbound) = (Arc::clone(&tansu), Arc::clone(&outbound));
        tokio::spawn(async move {
            for at in [N / 4, N / 2] {
                while outbound.stats().confirmed < at {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let stats = outbound.stats();
                let waiting = stats.in_flight + stats.buffered;
                assert!(
                    waiting > 0,
                    "killed after the stream was confirmed: {stats:?}"
                );
                println!(
                    "kill at {} confirmed, {waiting} on their way",
                    stats.confirmed
                );
                tansu.restart().await;
            }
        })
    };
    for id in 0..N {
        bus.emit_async(user(id)).await.expect("emitted");
    }
    tokio::time::timeout(WAIT, killer)
        .await
        .expect("both kills happened")
        .expect("killer");
    let outbound = Arc::into_inner(outbound).expect("the only handle");
    let report = outbound.shutdown(WAIT * 2).await;
    assert_eq!(
        report.unfinished_count(),
        0,
        "every event confirmed in the end"
    );
    let duplicates = drain(&t, &source, &(0..N).collect()).await;
    println!("two broker kills (SIGKILL): {N} confirmed, 0 lost, {duplicates} duplicates");
}

/// The child half of `a_killed_consumer_process_loses_nothing`: consumes (group `killed`),
/// acknowledges the first 10, holds 10 more unacknowledged, says `holding`, and waits to be
/// killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_consumer() {
    let Ok(brokers) = std::env::var("TIDINGS_KAFKA_CHILD") else {
        return; // Only runs as the child.
    };
    let t = KafkaTransport::builder(&brokers)
        .session_timeout(Duration::from_secs(6))
        .build()
        .expect("config");
    let mut consumer = t
        .consume(&Endpoint::new("held").group("killed"))
        .await
        .expect("consume");
    let mut held = Vec::new();
    for n in 0..20 {
        let d = consumer.next().await.expect("open").expect("delivery");
        if n < 10 {
            d.ack().await.expect("ack");
        } else {
            held.push(d);
        }
    }
    // Give the commit interval time to commit the first ten.
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("holding");
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumer_process_loses_nothing() {
    let tansu = Tansu::start();
    let t = tansu.transport().await;
    // One partition, so "the first ten" are ids 0..10.
    t.create_topics(&[Topic::new("held"), Topic::new("held.dead-letter")])
        .await
        .expect("topics");
    let batch: Vec<Outgoing> = (0..50)
        .map(|id| Outgoing {
            destination: "held".into(),
            envelope: Envelope::new("user.created", serde_json::to_vec(&user(id)).unwrap()),
        })
        .collect();
    assert!(t.publish(&batch).await.iter().all(Result::is_ok));

    let brokers = tansu.brokers();
    let mut child = tidings_tests::child_test(
        "child_consumer",
        &[("TIDINGS_KAFKA_CHILD", &brokers)],
        "holding",
        WAIT,
    )
    .await;
    // SIGKILL: no commit, no leaving the group; the session timeout frees its partition.
    child.start_kill().expect("kill");
    child.wait().await.expect("reaped");

    let rest: BTreeSet<u64> = (10..50).collect();
    let duplicates = drain(&t, &Endpoint::new("held").group("killed"), &rest).await;
    println!("killed consumer: 40 redelivered, {duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_mid_stream_loses_nothing_and_commits_nothing_unhandled() {
    let tansu = Tansu::start();
    let t = tansu.transport().await;
    let source = Endpoint::new("rebalance").group("workers").prefetch(16);
    t.declare(&source).await.expect("declare");
    let batch: Vec<Outgoing> = (0..2_000)
        .map(|id| Outgoing {
            destination: "rebalance".into(),
            envelope: Envelope::new("user.created", serde_json::to_vec(&user(id)).unwrap())
                .with_key(format!("k{}", id % 64)),
        })
        .collect();
    assert!(t.publish(&batch).await.iter().all(Result::is_ok));

    let handled = Arc::new(Mutex::new(Vec::new()));
    // The members stop once every message was handled by one of them (however long a
    // rebalance takes), not after some idle time.
    let (all_handled, done) = tokio::sync::watch::channel(false);
    let member = |slow: bool| {
        let (t, source, handled) = (t.clone(), source.clone(), Arc::clone(&handled));
        let (all_handled, mut done) = (all_handled.clone(), done.clone());
        tokio::spawn(async move {
            let mut consumer = t.consume(&source).await.expect("consume");
            loop {
                let d = tokio::select! {
                    next = consumer.next() => next.expect("open").expect("a delivery"),
                    _ = done.wait_for(|done| *done) => return,
                };
                if slow {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let id = id_of(&d);
                d.ack().await.expect("ack");
                let mut handled = handled.lock();
                handled.push(id);
                if handled.iter().collect::<BTreeSet<_>>().len() == 2_000 {
                    all_handled.send_replace(true);
                }
            }
        })
    };
    let a = member(true);
    tokio::time::timeout(WAIT, async {
        while handled.lock().len() < 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the first member works");
    let b = member(false);
    tokio::time::timeout(WAIT, async {
        a.await.expect("a");
        b.await.expect("b");
    })
    .await
    .expect("every message handled");
    let all: BTreeSet<u64> = handled.lock().iter().copied().collect();
    assert_eq!(
        all,
        (0..2_000).collect(),
        "nothing lost across the rebalance"
    );
    let duplicates = handled.lock().len() - all.len();
    println!("rebalance: 2000 handled, {duplicates} duplicates");
    // Everything handled was committed: a later member of the group finds nothing.
    let mut late = t.consume(&source).await.expect("consume");
    let extra = tokio::time::timeout(Duration::from_secs(10), late.next()).await;
    assert!(extra.is_err(), "a committed message came again: {extra:?}");
}
