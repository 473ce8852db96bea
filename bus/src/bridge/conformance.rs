//! The conformance suite every [`Transport`] must pass (feature `testing`).
//!
//! A transport's tests implement [`Harness`] (how to connect, how to cut connections, unique
//! names) and expand [`conformance_tests!`](crate::conformance_tests), which generates one
//! `#[tokio::test]` per case:
//!
//! ```text
//! tidings::conformance_tests!(MyHarness::new());
//! ```
//!
//! Each case uses its own random names, so runs never see each other's messages, and calls
//! [`Harness::cleanup`] for what it declared. Waits are bounded ([`WAIT`]), so a broken
//! transport fails a case instead of hanging it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::envelope::{Envelope, ATTEMPTS_HEADER, ORIGIN_HEADER, REASON_HEADER};
use super::inbound::Inbound;
use super::transport::{Consumer, Delivery, Endpoint, Outgoing, Transport, TransportError};
use crate::backoff::Backoff;
use crate::bus::Bus;
use crate::{Event, EventSet};

/// The longest any single wait of the suite may take: long enough for a consumer group to
/// rebalance after a member left, on a loaded two-core machine (a Kafka group has taken more
/// than 20 s there).
pub const WAIT: Duration = Duration::from_secs(40);

/// What the suite needs to know about a broker.
pub trait Harness: Send + Sync + 'static {
    /// The transport under test.
    type Transport: Transport;

    /// A new connection.
    fn connect(&self) -> impl Future<Output = Self::Transport> + Send;

    /// Cuts every connection to the broker; connections made later work again. The transport
    /// must recover by itself (reconnect, resend what was not confirmed).
    fn outage(&self) -> impl Future<Output = ()> + Send;

    /// A new name no other run uses, built from `prefix`; valid as a queue, topic and stream.
    fn unique(&self, prefix: &str) -> String {
        format!("tidings-{prefix}-{:016x}", fastrand::u64(..))
    }

    /// Removes what a case declared for `source` (queues, topics, streams, groups).
    fn cleanup(&self, source: &Endpoint) -> impl Future<Output = ()> + Send {
        let _ = source;
        async {}
    }

    /// Where the suite reads `source`'s dead letters (declared with `source`, before anything
    /// is dead-lettered). The default reads the dead-letter queue in the default group; a
    /// broker whose groups span topics (Kafka) gives the reader a group of its own, as a
    /// separate application would have, so the bridge's group does not rebalance for it.
    fn dead_letter_reader(&self, source: &Endpoint) -> Endpoint {
        Endpoint::new(source.dead_letter.clone())
    }
}

/// An event of the suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(name = "conformance.ping", key = key)]
pub struct Ping {
    /// Sequence number.
    pub seq: u64,
    /// Partition key.
    pub key: String,
}

/// The event set of the suite.
#[derive(Debug, Clone, PartialEq, Eq, EventSet)]
pub enum Events {
    /// `conformance.ping`
    Ping(Ping),
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

fn ping(seq: u64, key: &str) -> Envelope {
    let payload = serde_json::to_vec(&Ping {
        seq,
        key: key.to_owned(),
    })
    .unwrap_or_default();
    Envelope::new(Ping::NAME, payload).with_key(key)
}

fn seq_of(delivery: &Delivery) -> u64 {
    serde_json::from_slice::<Ping>(&delivery.message.payload)
        .map(|p| p.seq)
        .unwrap_or_else(|e| panic!("payload is not a Ping: {e}"))
}

/// Publishes until every message is confirmed, retrying retryable failures.
async fn publish_all<T: Transport>(transport: &T, destination: &str, envelopes: Vec<Envelope>) {
    let mut pending: Vec<Outgoing> = envelopes
        .into_iter()
        .map(|envelope| Outgoing {
            destination: destination.to_owned(),
            envelope,
        })
        .collect();
    let mut attempt = 0;
    while !pending.is_empty() {
        let results = transport.publish(&pending).await;
        assert_eq!(
            results.len(),
            pending.len(),
            "a publish must give one result per message"
        );
        let mut failed = Vec::new();
        for (out, result) in pending.drain(..).zip(results) {
            match result {
                Ok(()) => {}
                Err(e) if e.is_retryable() => failed.push(out),
                Err(e) => panic!("publish refused: {e}"),
            }
        }
        pending = failed;
        if !pending.is_empty() {
            attempt += 1;
            assert!(attempt < 200, "publishes never confirmed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn next<C: Consumer>(consumer: &mut C) -> Delivery {
    match within("a delivery", consumer.next()).await {
        Some(Ok(delivery)) => delivery,
        Some(Err(e)) => panic!("consumer failed: {e}"),
        None => panic!("consumer closed"),
    }
}

/// Consumes and acknowledges until every sequence number in `expected` arrived; returns what
/// arrived and how many deliveries were duplicates.
async fn drain<T: Transport>(
    transport: &T,
    source: &Endpoint,
    expected: &BTreeSet<u64>,
) -> (BTreeSet<u64>, usize) {
    let mut seen = BTreeSet::new();
    let mut duplicates = 0;
    let mut consumer = within("consume", transport.consume(source))
        .await
        .unwrap_or_else(|e| panic!("consume: {e}"));
    while !expected.is_subset(&seen) {
        match within("a delivery", consumer.next()).await {
            Some(Ok(delivery)) => {
                if !seen.insert(seq_of(&delivery)) {
                    duplicates += 1;
                }
                // An ack may fail after an outage; the message then comes again.
                let _ = delivery.ack().await;
            }
            Some(Err(_)) | None => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                consumer = within("consume", transport.consume(source))
                    .await
                    .unwrap_or_else(|e| panic!("consume: {e}"));
            }
        }
    }
    (seen, duplicates)
}

fn range(r: std::ops::Range<u64>) -> BTreeSet<u64> {
    r.collect()
}

async fn declared<H: Harness>(h: &H, transport: &H::Transport, prefix: &str) -> Endpoint {
    let source = Endpoint::new(h.unique(prefix)).prefetch(64);
    within("declare", transport.declare(&source))
        .await
        .unwrap_or_else(|e| panic!("declare: {e}"));
    // The dead-letter reader's group exists before anything is dead-lettered (on brokers
    // where a new group starts empty, as a new queue does).
    within("declare", transport.declare(&h.dead_letter_reader(&source)))
        .await
        .unwrap_or_else(|e| panic!("declare the dead-letter reader: {e}"));
    source
}

/// Payload, id, name, key and headers arrive intact; the messages of one consumer share their
/// origin rather than each carrying a copy.
pub async fn round_trip<H: Harness>(h: &H) {
    let t = h.connect().await;
    let source = declared(h, &t, "round-trip").await;
    let sent = ping(1, "k1").with_header("x-trace", "abc-123");
    publish_all(&t, &source.name, vec![sent.clone(), ping(2, "k1")]).await;
    let mut consumer = t.consume(&source).await.expect("consume");
    let got = next(&mut consumer).await;
    let second = next(&mut consumer).await;
    assert!(!got.message.origin.is_empty());
    assert!(
        Arc::ptr_eq(&got.message.origin, &second.message.origin),
        "one consumer's messages share their origin"
    );
    second.ack().await.expect("ack");
    let m = &got.message;
    assert_eq!(m.payload, sent.payload);
    assert_eq!(m.id.as_deref(), Some(sent.id.as_str()));
    assert_eq!(m.name.as_deref(), Some(Ping::NAME));
    assert_eq!(m.key.as_deref(), Some("k1"));
    assert_eq!(
        m.headers.get("x-trace").map(String::as_str),
        Some("abc-123")
    );
    assert_eq!(m.delivery_count, 1);
    got.ack().await.expect("ack");
    h.cleanup(&source).await;
}

/// Messages of one key arrive in the order they were published.
pub async fn per_key_order<H: Harness>(h: &H) {
    let t = h.connect().await;
    let source = declared(h, &t, "order").await;
    let keys = ["a", "b", "c", "d"];
    let envelopes = (0..400u64)
        .map(|i| ping(i, keys[(i % 4) as usize]))
        .collect();
    publish_all(&t, &source.name, envelopes).await;
    let mut consumer = t.consume(&source).await.expect("consume");
    let mut last: HashMap<String, u64> = HashMap::new();
    for _ in 0..400 {
        let d = next(&mut consumer).await;
        let seq = seq_of(&d);
        let key = d.message.key.clone().expect("key");
        if let Some(prev) = last.insert(key.clone(), seq) {
            assert!(seq > prev, "key {key}: {seq} after {prev}");
        }
        d.ack().await.expect("ack");
    }
    h.cleanup(&source).await;
}

/// Many publishers and many consumers of one group: every message arrives.
pub async fn concurrent_publishers_and_consumers<H: Harness>(h: &H) {
    let t = h.connect().await;
    let source = declared(h, &t, "concurrent").await;
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let (t, source, seen) = (t.clone(), source.clone(), Arc::clone(&seen));
            tokio::spawn(async move {
                let mut consumer = t.consume(&source).await.expect("consume");
                while seen.lock().len() < 1000 {
                    let Ok(Some(Ok(d))) =
                        tokio::time::timeout(Duration::from_millis(500), consumer.next()).await
                    else {
                        continue;
                    };
                    seen.lock().insert(seq_of(&d));
                    d.ack().await.expect("ack");
                }
            })
        })
        .collect();
    let publishers: Vec<_> = (0..4u64)
        .map(|p| {
            let (t, name) = (t.clone(), source.name.clone());
            tokio::spawn(async move {
                let envelopes = (0..250).map(|i| ping(p * 250 + i, "k")).collect();
                publish_all(&t, &name, envelopes).await;
            })
        })
        .collect();
    for p in publishers {
        within("publishers", p).await.expect("publisher");
    }
    for c in consumers {
        within("all 1000 messages", c).await.expect("consumer");
    }
    assert_eq!(*seen.lock(), (0..1000).collect::<BTreeSet<_>>());
    h.cleanup(&source).await;
}

/// A returned message comes back, nothing is skipped, and its delivery count says so.
pub async fn nack_and_redelivery<H: Harness>(h: &H) {
    let t = h.connect().await;
    let source = declared(h, &t, "nack").await;
    publish_all(&t, &source.name, (0..10).map(|i| ping(i, "k")).collect()).await;
    let mut consumer = t.consume(&source).await.expect("consume");
    let mut acked = BTreeSet::new();
    let mut returned = BTreeSet::new();
    while acked.len() < 10 {
        let d = next(&mut consumer).await;
        let seq = seq_of(&d);
        if seq % 2 == 1 && returned.insert(seq) {
            d.nack().await.expect("nack");
        } else {
            if returned.contains(&seq) {
                assert!(
                    d.message.delivery_count >= 2,
                    "redelivery of {seq} not counted"
                );
            }
            acked.insert(seq);
            d.ack().await.expect("ack");
        }
    }
    assert_eq!(acked, (0..10).collect::<BTreeSet<_>>());
    h.cleanup(&source).await;
}

/// With prefetch 1, the next message is not delivered until the current one is acknowledged.
pub async fn prefetch_backpressure<H: Harness>(h: &H) {
    let t = h.connect().await;
    let source = declared(h, &t, "prefetch").await.prefetch(1);
    publish_all(&t, &source.name, (0..3).map(|i| ping(i, "k")).collect()).await;
    let mut consumer = t.consume(&source).await.expect("consume");
    let first = next(&mut consumer).await;
    let early = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(
        early.is_err(),
        "a second message arrived before the first was acknowledged"
    );
    first.ack().await.expect("ack");
    let second = next(&mut consumer).await;
    assert_eq!(seq_of(&second), 1);
    second.ack().await.expect("ack");
    h.cleanup(&source).await;
}

/// Two groups each get everything; the consumers of one group share the work (of several
/// keys).
pub async fn consumer_groups<H: Harness>(h: &H) {
    let t = h.connect().await;
    let name = h.unique("groups");
    let a = Endpoint::new(name.clone()).group("a").prefetch(1);
    let b = Endpoint::new(name.clone()).group("b").prefetch(1);
    for s in [&a, &b] {
        t.declare(s).await.expect("declare");
    }
    // Several keys: brokers that keep a key on one partition (Kafka) share work by key.
    let keys = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let envelopes = (0..20u64).map(|i| ping(i, keys[i as usize % keys.len()]));
    publish_all(&t, &name, envelopes.collect()).await;
    let (all_b, _) = drain(&t, &b, &range(0..20)).await;
    assert_eq!(all_b, range(0..20), "group b gets everything");
    // Group a: two consumers share the work. Where joining a group takes time (a Kafka
    // rebalance), the first member may take everything published so far; more is published
    // until both have had some.
    let mut a1 = t.consume(&a).await.expect("consume");
    let mut a2 = t.consume(&a).await.expect("consume");
    let (mut got1, mut got2) = (BTreeSet::new(), BTreeSet::new());
    let (mut published, mut deliveries) = (20u64, 0u64);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        while (got1.len() + got2.len()) < published as usize {
            tokio::select! {
                Some(Ok(d)) = a1.next() => { got1.insert(seq_of(&d)); d.ack().await.expect("ack"); }
                Some(Ok(d)) = a2.next() => { got2.insert(seq_of(&d)); d.ack().await.expect("ack"); }
                () = tokio::time::sleep_until(deadline) => panic!("group a stalled"),
            }
            deliveries += 1;
            if got1.union(&got2).count() == published as usize {
                break;
            }
        }
        if !got1.is_empty() && !got2.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "one consumer of group a never got work"
        );
        let more = (published..published + 20).map(|i| ping(i, keys[i as usize % keys.len()]));
        publish_all(&t, &name, more.collect()).await;
        published += 20;
    }
    let all: BTreeSet<u64> = got1.union(&got2).copied().collect();
    assert_eq!(all, range(0..published), "the group got every message");
    // At least once: a rebalance may hand an acknowledged message to the other member before
    // the acknowledgement was committed.
    println!(
        "consumer_groups: {published} messages, {} delivered twice within group a",
        deliveries - published
    );
    h.cleanup(&a).await;
    h.cleanup(&b).await;
}

/// A consumer closed while holding unacknowledged messages loses nothing: they come again.
pub async fn close_under_load<H: Harness>(h: &H) {
    let t = h.connect().await;
    let source = declared(h, &t, "close").await;
    publish_all(&t, &source.name, (0..50).map(|i| ping(i, "k")).collect()).await;
    let mut consumer = t.consume(&source).await.expect("consume");
    let mut acked = BTreeSet::new();
    for _ in 0..10 {
        let d = next(&mut consumer).await;
        acked.insert(seq_of(&d));
        d.ack().await.expect("ack");
    }
    // Take five more and leave them unacknowledged, then close.
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(next(&mut consumer).await);
    }
    drop(held);
    drop(consumer);
    let unacked: BTreeSet<u64> = range(0..50).difference(&acked).copied().collect();
    let (rest, _) = drain(&t, &source, &unacked).await;
    assert!(rest.is_disjoint(&acked), "acknowledged messages came again");
    h.cleanup(&source).await;
}

/// A cancelled subscriber that comes back gets what was published meanwhile.
pub async fn cancel_and_resume<H: Harness>(h: &H) {
    let t = h.connect().await;
    let source = declared(h, &t, "resume").await;
    publish_all(&t, &source.name, (0..5).map(|i| ping(i, "k")).collect()).await;
    let (first, _) = drain(&t, &source, &range(0..5)).await;
    publish_all(&t, &source.name, (5..10).map(|i| ping(i, "k")).collect()).await;
    let (second, _) = drain(&t, &source, &range(5..10)).await;
    assert_eq!(first, range(0..5));
    assert_eq!(second, range(5..10), "only what was published meanwhile");
    h.cleanup(&source).await;
}

/// An outage in the middle of a stream loses nothing that was confirmed; duplicates are
/// counted and reported.
pub async fn outage_mid_stream<H: Harness>(h: &H) {
    let t = h.connect().await;
    let source = declared(h, &t, "outage").await;
    publish_all(&t, &source.name, (0..100).map(|i| ping(i, "k")).collect()).await;
    let mut consumer = t.consume(&source).await.expect("consume");
    for _ in 0..20 {
        let d = next(&mut consumer).await;
        d.ack().await.expect("ack");
    }
    let held = next(&mut consumer).await;
    h.outage().await;
    let _ = held.ack().await; // may fail: the connection is gone, so it comes again
    drop(consumer);
    publish_all(&t, &source.name, (100..200).map(|i| ping(i, "k")).collect()).await;
    // Everything not acknowledged before the outage arrives (the held message may or may not
    // come again, depending on whether its ack reached the broker).
    let (_, duplicates) = drain(&t, &source, &range(21..200)).await;
    println!("outage_mid_stream: {duplicates} duplicate deliveries");
    h.cleanup(&source).await;
}

/// The events an inbound bridge of the suite saw, and whether handlers should fail.
fn failing_bus(fail: bool) -> (Bus<Events>, Arc<Mutex<Vec<u64>>>) {
    let bus = Bus::<Events>::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    bus.on_async(move |p: Arc<Ping>| {
        let s = Arc::clone(&s);
        async move {
            s.lock().push(p.seq);
            if fail || p.key == "poison" {
                Err(format!("cannot handle {}", p.seq))
            } else {
                Ok(())
            }
        }
    });
    (bus, seen)
}

/// The first `n` dead letters of `source`, from the harness's
/// [`dead_letter_reader`](Harness::dead_letter_reader).
async fn dead_letters<H: Harness>(
    h: &H,
    t: &H::Transport,
    source: &Endpoint,
    n: usize,
) -> Vec<Delivery> {
    let dlq = h.dead_letter_reader(source);
    let mut consumer = t.consume(&dlq).await.expect("consume dead letters");
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next(&mut consumer).await);
    }
    out
}

/// A message whose handler keeps failing is dead-lettered after the attempt limit, with the
/// reason, the attempt count and its origin; the messages after it still flow.
pub async fn poison_message<H: Harness>(h: &H) {
    let t = h.connect().await;
    let source = declared(h, &t, "poison").await;
    let (bus, seen) = failing_bus(false);
    let inbound = Inbound::builder(&bus, t.clone(), source.clone())
        .max_attempts(3)
        .backoff(Backoff::Fixed(Duration::from_millis(10)))
        .build();
    let mut poison = ping(0, "poison");
    poison.headers.insert("x-trace".into(), "keep-me".into());
    publish_all(&t, &source.name, vec![poison, ping(1, "good")]).await;
    let dead = dead_letters(h, &t, &source, 1).await;
    let headers: &BTreeMap<String, String> = &dead[0].message.headers;
    assert!(
        headers[REASON_HEADER].contains("cannot handle 0"),
        "{headers:?}"
    );
    assert_eq!(headers[ATTEMPTS_HEADER], "3");
    assert_eq!(headers[ORIGIN_HEADER], source.name);
    assert_eq!(headers["x-trace"], "keep-me");
    within("the good message", async {
        while !seen.lock().contains(&1) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(seen.lock().iter().filter(|s| **s == 0).count(), 3);
    assert_eq!(inbound.stats().dead_lettered, 1);
    inbound.shutdown(WAIT).await;
    h.cleanup(&source).await;
}

/// Waits until `done` holds for the counters of `inbound`.
async fn counted(inbound: &Inbound, what: &str, done: impl Fn(&super::InboundStats) -> bool) {
    within(what, async {
        while !done(&inbound.stats()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A message whose event has no listener (the bridge was built before any listener) is not
/// acknowledged as handled: it is tried again, then dead-lettered with a reason saying no
/// listener took it. With `acknowledge_unheard` it is acknowledged unhandled; either way it
/// is counted as unheard.
pub async fn unheard_message<H: Harness>(h: &H) {
    let t = h.connect().await;
    let source = declared(h, &t, "unheard").await;
    let bus = Bus::<Events>::new();
    let inbound = Inbound::builder(&bus, t.clone(), source.clone())
        .max_attempts(2)
        .backoff(Backoff::Fixed(Duration::from_millis(10)))
        .build();
    publish_all(&t, &source.name, vec![ping(0, "k")]).await;
    let dead = dead_letters(h, &t, &source, 1).await;
    let headers = &dead[0].message.headers;
    assert!(
        headers[REASON_HEADER]
            .contains("no listener took event `conformance.ping` (after 2 attempts)"),
        "{headers:?}"
    );
    assert_eq!(headers[ATTEMPTS_HEADER], "2");
    assert_eq!(seq_of(&dead[0]), 0);
    counted(&inbound, "the dead-letter counter", |s| {
        s.dead_lettered == 1
    })
    .await;
    let stats = inbound.stats();
    assert_eq!(
        (stats.handled, stats.unheard, stats.retried),
        (0, 1, 1),
        "{stats:?}"
    );
    inbound.shutdown(WAIT).await;

    // Opted in: acknowledged, counted, not dead-lettered.
    let quiet = Inbound::builder(&bus, t.clone(), source.clone())
        .acknowledge_unheard()
        .build();
    publish_all(&t, &source.name, vec![ping(1, "k")]).await;
    counted(&quiet, "the unheard counter", |s| s.unheard == 1).await;
    let stats = quiet.stats();
    assert_eq!((stats.handled, stats.dead_lettered), (0, 0), "{stats:?}");
    quiet.shutdown(WAIT).await;

    // It was acknowledged: a listener that comes later gets only what is published next.
    let (bus, seen) = failing_bus(false);
    let heard = Inbound::builder(&bus, t.clone(), source.clone()).build();
    publish_all(&t, &source.name, vec![ping(2, "k")]).await;
    counted(&heard, "the next message", |s| s.handled == 1).await;
    assert_eq!(*seen.lock(), [2]);
    heard.shutdown(WAIT).await;
    h.cleanup(&source).await;
}

/// Each kind of bad input is dead-lettered at once with its reason, and good traffic flows.
pub async fn bad_input<H: Harness>(h: &H) {
    let t = h.connect().await;
    let source = declared(h, &t, "bad-input").await;
    let (bus, seen) = failing_bus(false);
    let inbound = Inbound::builder(&bus, t.clone(), source.clone())
        .max_payload(1024)
        .build();
    let raw = |name: &str, payload: &[u8]| Envelope::new(name, Bytes::copy_from_slice(payload));
    let bad = vec![
        raw("conformance.nope", b"{}"),
        raw(Ping::NAME, b"{not json"),
        raw(Ping::NAME, b"{\"seq\": 1, \"key\": \"\xff\xfe\"}"),
        raw(Ping::NAME, &vec![b' '; 2048]),
        raw("", b"{\"seq\": 5, \"key\": \"k\"}"),
    ];
    let expected = [
        "no event named `conformance.nope`",
        "undecodable payload",
        "undecodable payload",
        "over the limit of 1024 bytes",
        "no event type",
    ];
    let mut all = bad;
    all.insert(2, ping(42, "good"));
    publish_all(&t, &source.name, all).await;
    let dead = dead_letters(h, &t, &source, expected.len()).await;
    let reasons: Vec<String> = dead
        .iter()
        .map(|d| d.message.headers[REASON_HEADER].clone())
        .collect();
    for want in expected {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "no dead letter says {want:?}: {reasons:?}"
        );
    }
    for d in &dead {
        assert_eq!(d.message.headers[ATTEMPTS_HEADER], "1");
    }
    within("the good message", async {
        while !seen.lock().contains(&42) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The counter moves just after the transport took the dead letter.
    within("the dead-letter counter", async {
        while inbound.stats().dead_lettered < expected.len() as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(inbound.stats().dead_lettered, expected.len() as u64);
    inbound.shutdown(WAIT).await;
    h.cleanup(&source).await;
}

/// A publish nothing is bound to fails instead of vanishing.
pub async fn unroutable_publish_fails<H: Harness>(h: &H) {
    let t = h.connect().await;
    let out = Outgoing {
        destination: h.unique("nowhere"),
        envelope: ping(1, "k"),
    };
    let results = t.publish(std::slice::from_ref(&out)).await;
    assert!(
        matches!(results.as_slice(), [Err(TransportError::Unroutable(_))]),
        "{results:?}"
    );
    // Nothing was declared, but the harness may have set up more than sources (a login).
    h.cleanup(&Endpoint::new(out.destination)).await;
}

/// Generates one `#[tokio::test]` per conformance case for the harness `$harness`.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@cases $harness;
            round_trip, per_key_order, concurrent_publishers_and_consumers, nack_and_redelivery,
            prefetch_backpressure, consumer_groups, close_under_load, cancel_and_resume,
            outage_mid_stream, poison_message, unheard_message, bad_input,
            unroutable_publish_fails);
    };
    (@cases $harness:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::bridge::conformance::$case(&$harness).await;
            }
        )*
    };
}
