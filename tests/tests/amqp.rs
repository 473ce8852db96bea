//! The RabbitMQ transport against the real broker on 127.0.0.1:5672 (feature `amqp`): the
//! conformance suite, and what only AMQP has.
#![cfg(feature = "amqp")]

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tidings::Bus;
use tidings::bridge::conformance::{Events, Harness, Ping};
use tidings::bridge::{Consumer, Endpoint, Envelope, Inbound, Outgoing, Transport, TransportError};
use tidings_bridges::amqp::{
    self as amqp, AmqpTransport, ConnectionEvent, Exchange, Queue, Topology,
};
use tidings_tests::rabbit::{
    URL, WAIT, cleanup, close_connections, connect, next, ping, publish_ok, unique, within,
};

/// Each case names its connections, so its outage closes only them.
struct Rabbit {
    name: String,
}

impl Rabbit {
    fn new() -> Self {
        Rabbit {
            name: unique("conn"),
        }
    }
}

impl Harness for Rabbit {
    type Transport = AmqpTransport;

    async fn connect(&self) -> AmqpTransport {
        connect(&self.name).await
    }

    async fn outage(&self) {
        let closed = close_connections(&self.name).await;
        assert!(closed > 0, "no connection named {} to close", self.name);
    }

    async fn cleanup(&self, source: &Endpoint) {
        cleanup(&connect(&self.name).await, source).await;
    }
}

tidings::conformance_tests!(Rabbit::new());

/// Takes and acknowledges `n` deliveries; their sequence numbers.
async fn acked_seqs(consumer: &mut impl Consumer, n: usize) -> std::collections::BTreeSet<u64> {
    let mut seqs = std::collections::BTreeSet::new();
    while seqs.len() < n {
        let d = next(consumer, "a delivery").await;
        seqs.insert(seq(&d));
        d.ack().await.expect("ack");
    }
    seqs
}

/// Asserts that nothing more is delivered (within half a second): no acknowledged message
/// comes again.
async fn nothing_more(consumer: &mut impl Consumer) {
    let extra = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
    if let Ok(Some(Ok(d))) = &extra {
        panic!(
            "an acknowledged message came again: seq {} (delivery {})",
            seq(d),
            d.message.delivery_count
        );
    }
    assert!(
        extra.is_err(),
        "an acknowledged message came again: {extra:?}"
    );
}

/// The sequence number of a delivered `Ping`.
fn seq(delivery: &tidings::bridge::Delivery) -> u64 {
    serde_json::from_slice::<Ping>(&delivery.message.payload)
        .expect("a Ping")
        .seq
}

#[tokio::test]
async fn an_exchange_without_bindings_returns_the_message_as_unroutable() {
    let t = connect(&unique("conn")).await;
    let exchange = unique("unbound");
    t.declare_topology(&Topology::new().exchange(Exchange::topic(exchange.clone())))
        .await
        .expect("declare");
    let out = Outgoing {
        destination: exchange.clone(),
        envelope: ping(1),
    };
    let results = t.publish(std::slice::from_ref(&out)).await;
    assert!(
        matches!(&results[..], [Err(TransportError::Unroutable(what))] if what.contains(&exchange)),
        "{results:?}"
    );
    // The channel survived: a routable publish right after works.
    let source = Endpoint::new(exchange.clone());
    t.declare(&source).await.expect("declare");
    let results = t.publish(std::slice::from_ref(&out)).await;
    assert!(matches!(&results[..], [Ok(())]), "{results:?}");
    cleanup(&t, &source).await;
}

#[tokio::test]
async fn over_long_names_and_oversized_payloads_are_refused_without_a_panic() {
    let (t, source) = declared(Endpoint::new(unique("long"))).await;
    let long_name = Envelope::new("n".repeat(300), b"{}".to_vec());
    let batch = [
        Outgoing {
            destination: "x".repeat(300),
            envelope: ping(1),
        },
        Outgoing {
            destination: source.name.clone(),
            envelope: long_name,
        },
        Outgoing {
            destination: source.name.clone(),
            envelope: ping(2),
        },
    ];
    let results = t.publish(&batch).await;
    assert!(
        matches!(results[0], Err(TransportError::Rejected(_))),
        "{results:?}"
    );
    assert!(
        matches!(results[1], Err(TransportError::Rejected(_))),
        "{results:?}"
    );
    assert!(results[2].is_ok(), "{results:?}");
    let small = AmqpTransport::builder(URL)
        .max_message_size(16)
        .connect()
        .await
        .expect("connect");
    let results = small.publish(&batch[2..]).await;
    assert!(
        matches!(&results[..], [Err(TransportError::Rejected(m))] if m.contains("limit is 16")),
        "{results:?}"
    );
    let too_long = t.delete_queue(&"q".repeat(300)).await;
    assert!(
        matches!(too_long, Err(amqp::Error::NameTooLong(_))),
        "{too_long:?}"
    );
    cleanup(&t, &source).await;
}

#[tokio::test]
async fn a_queue_deleted_under_an_inbound_bridge_is_survived() {
    let (t, source) = declared(Endpoint::new(unique("deleted"))).await;
    let (bus, seen) = recording_bus();
    let inbound = Inbound::builder(&bus, t.clone(), source.clone()).build();
    publish_ok(&t, &source.name, vec![ping(1)]).await;
    wait_until("the first message", || seen.lock().contains(&1)).await;

    t.delete_queue(&rabbit_queue(&source))
        .await
        .expect("delete");
    // The broker cancels the consumer; the bridge consumes again with backoff (100 ms
    // doubling to 10 s), not in a tight loop.
    wait_until("the cancelled consumer noticed", || {
        inbound.stats().reconnects >= 1
    })
    .await;
    t.declare(&source).await.expect("declare again");
    publish_ok(&t, &source.name, vec![ping(2)]).await;
    wait_until("the message after the queue came back", || {
        seen.lock().contains(&2)
    })
    .await;
    // Backoff allows about a dozen attempts in the first minute; a tight loop makes
    // thousands while the queue is declared again.
    let retries = inbound.stats().reconnects;
    assert!(retries <= 20, "{retries} consume attempts");
    inbound.shutdown(WAIT).await;
    cleanup(&t, &source).await;
}

#[tokio::test]
async fn a_queue_another_client_deletes_under_an_inbound_bridge_is_declared_again() {
    let (t, source) = declared(Endpoint::new(unique("redeclared"))).await;
    let (bus, seen) = recording_bus();
    let inbound = Inbound::builder(&bus, t.clone(), source.clone()).build();
    publish_ok(&t, &source.name, vec![ping(1)]).await;
    wait_until("the first message", || seen.lock().contains(&1)).await;

    // Deleted by another client: this transport still has it recorded, as it would declare
    // it again on a reconnect; its consumer, cancelled, declares it again at once.
    let other = connect(&unique("conn")).await;
    other
        .delete_queue(&rabbit_queue(&source))
        .await
        .expect("delete");
    within("the queue declared again and bound", async {
        loop {
            let sent = Outgoing {
                destination: source.name.clone(),
                envelope: ping(2),
            };
            if t.publish(std::slice::from_ref(&sent))
                .await
                .remove(0)
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    wait_until("the message after the queue came back", || {
        seen.lock().contains(&2)
    })
    .await;
    assert_eq!(
        inbound.stats().reconnects,
        1,
        "consumed again on the first attempt"
    );
    inbound.shutdown(WAIT).await;
    cleanup(&t, &source).await;
}

#[tokio::test]
async fn an_exchange_another_client_deletes_is_declared_again_by_the_next_publish() {
    let (t, source) = declared(Endpoint::new(unique("re-exchanged"))).await;
    let to = |seq| Outgoing {
        destination: source.name.clone(),
        envelope: ping(seq),
    };
    assert!(t.publish(&[to(1)]).await.remove(0).is_ok());
    // Deleted by another client, the binding to the source's queue with it: this transport
    // still has both recorded, as it would declare them again on a reconnect.
    let other = connect(&unique("conn")).await;
    other.delete_exchange(&source.name).await.expect("delete");
    let results = t.publish(&[to(2), to(3)]).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let mut consumer = t.consume(&source).await.expect("consume");
    assert_eq!(acked_seqs(&mut consumer, 3).await, (1..=3).collect());
    drop(consumer);
    cleanup(&t, &source).await;
}

/// A bus that records the sequence number of every `Ping` it sees.
fn recording_bus() -> (Bus<Events>, Arc<Mutex<Vec<u64>>>) {
    let bus = Bus::<Events>::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    bus.on(move |p: &Ping| s.lock().push(p.seq));
    (bus, seen)
}

/// A connection and `source`, declared.
async fn declared(source: Endpoint) -> (AmqpTransport, Endpoint) {
    let t = connect(&unique("conn")).await;
    t.declare(&source).await.expect("declare");
    (t, source)
}

fn rabbit_queue(source: &Endpoint) -> String {
    tidings_bridges::amqp::queue_name(source)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    within(what, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_quorum_queue_dead_letters_after_its_delivery_limit() {
    let t = connect(&unique("conn")).await;
    let exchange = unique("quorum-ex");
    let queue = unique("quorum");
    let topology = Topology::new()
        .exchange(Exchange::topic(exchange.clone()))
        .dead_lettered_queue(
            Queue::durable(queue.clone()).quorum().delivery_limit(2),
            exchange.clone(),
            "#",
        );
    t.declare_topology(&topology).await.expect("declare");
    publish_ok(&t, &exchange, vec![ping(7)]).await;
    let mut consumer = t
        .consume(&Endpoint::new(queue.clone()))
        .await
        .expect("consume");
    // Returned three times: deliveries 1, 2 and 3 (counts 1, 2, 3); the broker then gives up.
    for attempt in 1..=3u32 {
        let d = next(&mut consumer, "a delivery").await;
        assert_eq!(d.message.delivery_count, attempt);
        d.nack().await.expect("nack");
    }
    let dlq = Endpoint::new(format!("{queue}.dead-letter"));
    let mut dead = t.consume(&dlq).await.expect("consume dead letters");
    let d = next(&mut dead, "the dead letter").await;
    let seq = seq(&d);
    assert_eq!(seq, 7);
    d.ack().await.expect("ack");
    drop((consumer, dead));
    for q in [queue.clone(), format!("{queue}.dead-letter")] {
        t.delete_queue(&q).await.expect("delete");
    }
    for e in [exchange, format!("{queue}.dlx")] {
        t.delete_exchange(&e).await.expect("delete");
    }
}

#[tokio::test]
async fn a_declaration_that_conflicts_is_a_clear_error() {
    let t = connect(&unique("conn")).await;
    let name = unique("conflict");
    t.declare_topology(&Topology::new().queue(Queue::durable(name.clone())))
        .await
        .expect("declare");
    let other = connect(&unique("conn")).await;
    let error = other
        .declare_topology(&Topology::new().queue(Queue::durable(name.clone()).quorum()))
        .await
        .expect_err("a classic queue cannot be redeclared as quorum");
    let text = error.to_string();
    assert!(
        text.contains(&name) && text.contains("PRECONDITION"),
        "{text}"
    );
    t.delete_queue(&name).await.expect("delete");
}

/// Whether the broker has an exchange named `name` (on the default virtual host).
async fn exchange_exists(name: &str) -> bool {
    let listed =
        tidings_tests::rabbit::rabbitmqctl(&["list_exchanges", "name", "-q", "--no-table-headers"])
            .await;
    listed.lines().any(|line| line.trim() == name)
}

#[tokio::test]
async fn what_a_refused_declaration_had_declared_before_the_refusal_comes_back_after_a_reconnect() {
    let conn = unique("conn");
    let t = connect(&conn).await;
    let other = connect(&unique("conn")).await;
    let queue = unique("conflict");
    other
        .declare_topology(&Topology::new().queue(Queue::durable(queue.clone())))
        .await
        .expect("declare");
    // Declared in order: the exchange is accepted, the first queue (classic, asked for as
    // quorum) refused, and the second queue and the binding never sent.
    let (exchange, never) = (unique("accepted"), unique("never"));
    let topology = Topology::new()
        .exchange(Exchange::topic(exchange.clone()))
        .queue(Queue::durable(queue.clone()).quorum())
        .queue(Queue::durable(never.clone()))
        .bind(&never, &exchange, "#");
    let error = t.declare_topology(&topology).await.expect_err("refused");
    assert!(error.to_string().contains("PRECONDITION"), "{error}");
    assert!(exchange_exists(&exchange).await);

    // Deleted by another client while the connection is down: the reconnect declares the
    // accepted exchange again, not what came after the refusal, and the refusal does not stop
    // it from connecting.
    other.delete_exchange(&exchange).await.expect("delete");
    let mut events = t.events();
    tidings_tests::rabbit::reconnect(&conn, &mut events).await;
    assert!(
        exchange_exists(&exchange).await,
        "the accepted exchange is declared again after the reconnect"
    );
    let queues =
        tidings_tests::rabbit::rabbitmqctl(&["list_queues", "name", "-q", "--no-table-headers"])
            .await;
    assert!(
        !queues.lines().any(|line| line.trim() == never),
        "the queue after the refusal is not declared: {queues}"
    );
    t.delete_exchange(&exchange).await.expect("delete");
    t.delete_queue(&queue).await.expect("delete");
}

#[tokio::test]
async fn close_waits_for_confirms_and_later_publishes_fail_fast() {
    let (t, source) = declared(Endpoint::new(unique("close"))).await;
    // Twenty batches of 500 persistent messages published at once: when the first batch is
    // confirmed, the others are still waiting for theirs.
    let mut publishers: Vec<_> = (0..20u64)
        .map(|b| {
            let t = t.clone();
            let name = source.name.clone();
            tokio::spawn(async move {
                let batch: Vec<Outgoing> = (b * 500..(b + 1) * 500)
                    .map(|seq| Outgoing {
                        destination: name.clone(),
                        envelope: ping(seq),
                    })
                    .collect();
                t.publish(&batch).await
            })
        })
        .collect();
    within("the first batch", async {
        while !publishers.iter().any(|p| p.is_finished()) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let waiting: Vec<bool> = publishers.iter().map(|p| !p.is_finished()).collect();
    assert!(t.shutdown(WAIT).await.is_clean(), "every confirm arrived");
    assert!(!t.is_connected());
    // A message sent before `close` is confirmed (and in the queue); one still waiting for
    // room in the confirm window is refused as closed, and not sent. Nothing else.
    let (mut confirmed, mut refused, mut confirmed_after_close) = (0, 0, 0);
    for (publisher, waiting) in publishers.drain(..).zip(waiting) {
        for result in publisher.await.expect("publisher") {
            match result {
                Ok(()) => {
                    confirmed += 1;
                    confirmed_after_close += usize::from(waiting);
                }
                Err(TransportError::Disconnected(m)) if m.contains("closed") => refused += 1,
                Err(other) => panic!("neither confirmed nor refused as closed: {other}"),
            }
        }
    }
    assert_eq!(confirmed + refused, 10_000);
    assert!(
        confirmed_after_close > 0,
        "close waited for messages that were still waiting for their confirms"
    );
    let results = t
        .publish(&[Outgoing {
            destination: source.name.clone(),
            envelope: ping(1),
        }])
        .await;
    assert!(
        matches!(&results[..], [Err(TransportError::Disconnected(m))] if m.contains("closed")),
        "{results:?}"
    );
    let cleaner = connect(&unique("conn")).await;
    let queued = cleaner
        .delete_queue(&rabbit_queue(&source))
        .await
        .expect("delete");
    assert_eq!(queued, confirmed, "every confirmed message is in the queue");
    cleanup(&cleaner, &source).await;
}

#[tokio::test]
async fn a_foreign_message_with_no_properties_reaches_the_bus_of_its_bound_type() {
    let (t, source) = declared(Endpoint::new(unique("untyped"))).await;
    let (bus, seen) = recording_bus();
    let inbound = Inbound::builder(&bus, t.clone(), source.clone())
        .bind::<Ping>()
        .build();
    let mut plain = ping(9);
    plain.name = String::new();
    publish_ok(&t, &source.name, vec![plain]).await;
    wait_until("the untyped message", || seen.lock().contains(&9)).await;
    inbound.shutdown(WAIT).await;
    cleanup(&t, &source).await;
}

/// The messages the broker counts as delivered and not acknowledged, for queue `queue`.
async fn unacknowledged(queue: &str) -> Option<u64> {
    let listing = tidings_tests::rabbit::rabbitmqctl(&[
        "list_queues",
        "--quiet",
        "--no-table-headers",
        "name",
        "messages_unacknowledged",
    ])
    .await;
    listing.lines().find_map(|line| {
        let (name, n) = line.split_once('\t')?;
        (name == queue).then(|| n.trim().parse().ok())?
    })
}

#[tokio::test]
async fn acknowledgements_reach_the_broker_when_traffic_stops_while_the_consumer_stays_open() {
    // Three acknowledgements, far under the quarter of the prefetch that sends them at once:
    // they go because nothing more comes, with the consumer open and waiting.
    let (t, source) = declared(Endpoint::new(unique("idle-acks")).prefetch(100)).await;
    publish_ok(&t, &source.name, (0..3).map(ping).collect()).await;
    let mut consumer = t.consume(&source).await.expect("consume");
    for _ in 0..3 {
        next(&mut consumer, "a delivery")
            .await
            .ack()
            .await
            .expect("ack");
    }
    let queue = rabbit_queue(&source);
    {
        let waiting = consumer.next();
        tokio::pin!(waiting);
        within("the broker to have every acknowledgement", async {
        loop {
            tokio::select! {
                biased;
                extra = &mut waiting => panic!("nothing more was published: {:?}", extra.map(|r| r.map(|d| seq(&d)))),
                n = unacknowledged(&queue) => if n == Some(0) {
                    break;
                },
            }
        }
    })
    .await;
    }
    drop(consumer);
    cleanup(&t, &source).await;
}

#[tokio::test]
async fn cumulative_acks_settle_exactly_what_was_acknowledged() {
    let (t, source) = declared(Endpoint::new(unique("acks")).prefetch(20)).await;
    publish_ok(&t, &source.name, (0..20).map(ping).collect()).await;
    let mut consumer = t.consume(&source).await.expect("consume");
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(next(&mut consumer, "a delivery").await);
    }
    // Acknowledge the even ones, newest first, and keep the odd ones unsettled.
    held.reverse();
    let (even, odd): (Vec<_>, Vec<_>) = held.into_iter().partition(|d| seq(d).is_multiple_of(2));
    for d in even {
        d.ack().await.expect("ack");
    }
    drop(odd);
    drop(consumer);
    let mut consumer = t.consume(&source).await.expect("consume again");
    let again = acked_seqs(&mut consumer, 10).await;
    assert_eq!(again, (0..20).filter(|s| s % 2 == 1).collect());
    nothing_more(&mut consumer).await;
    drop(consumer);
    cleanup(&t, &source).await;
}

#[tokio::test]
async fn publishes_wait_for_the_broker_within_the_buffer_bound() {
    use tidings_tests::rabbit::{Mode, Proxy};
    let proxy = Proxy::start().await;
    let t = AmqpTransport::builder(&proxy.url())
        .buffer(5)
        .reconnect(tidings::Backoff::Fixed(Duration::from_millis(50)))
        .connect()
        .await
        .expect("through the proxy");
    let source = Endpoint::new(unique("buffered"));
    t.declare(&source).await.expect("declare");
    let mut events = t.events();
    proxy.set(Mode::Down);
    let lost = within("the disconnect", events.recv())
        .await
        .expect("event");
    assert!(
        matches!(lost, ConnectionEvent::Disconnected { .. }),
        "{lost:?}"
    );
    assert!(!t.is_connected());

    // Three wait for the connection...
    let waiting = {
        let (t, name) = (t.clone(), source.name.clone());
        tokio::spawn(async move { publish_ok(&t, &name, (0..3).map(ping).collect()).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "the publish waits for the broker");
    // ...ten more would exceed the bound of five: refused at once, retryable.
    let over: Vec<Outgoing> = (3..13)
        .map(|seq| Outgoing {
            destination: source.name.clone(),
            envelope: ping(seq),
        })
        .collect();
    let refused = t.publish(&over).await;
    assert!(
        refused
            .iter()
            .all(|r| matches!(r, Err(e @ TransportError::Disconnected(_)) if e.is_retryable())),
        "{refused:?}"
    );
    proxy.set(Mode::Pass);
    within("the waiting publishes", waiting)
        .await
        .expect("confirmed after the reconnect");
    let mut consumer = t.consume(&source).await.expect("consume");
    let got = acked_seqs(&mut consumer, 3).await;
    assert_eq!(got, (0..3).collect());
    drop(consumer);
    cleanup(&t, &source).await;
}

#[tokio::test]
async fn fanout_direct_and_headers_exchanges_route_as_declared() {
    let t = connect(&unique("conn")).await;
    let (fan, direct, headers) = (unique("fan"), unique("direct"), unique("headers"));
    let (q1, q2, q3) = (unique("q1"), unique("q2"), unique("q3"));
    let topology = Topology::new()
        .exchange(Exchange::fanout(fan.clone()))
        .exchange(Exchange::direct(direct.clone()))
        .exchange(Exchange::headers(headers.clone()))
        .queue(Queue::durable(q1.clone()))
        .queue(Queue::durable(q2.clone()))
        .queue(Queue::durable(q3.clone()))
        .bind(q1.clone(), fan.clone(), "")
        .bind(q2.clone(), fan.clone(), "")
        // Direct: only the exact routing key, which is the event name.
        .bind(q1.clone(), direct.clone(), "conformance.ping")
        .bind_headers(q3.clone(), headers.clone(), [("kind", "invoice")], true);
    t.declare_topology(&topology).await.expect("declare");
    let send = |exchange: &str, envelope: Envelope| {
        let out = Outgoing {
            destination: exchange.to_owned(),
            envelope,
        };
        let t = t.clone();
        async move { t.publish(&[out]).await.remove(0) }
    };
    send(&fan, ping(1)).await.expect("fanout");
    send(&direct, ping(2)).await.expect("direct");
    let mut other = ping(3);
    other.name = "other.event".into();
    let unrouted = send(&direct, other).await;
    assert!(
        matches!(unrouted, Err(TransportError::Unroutable(_))),
        "{unrouted:?}"
    );
    send(&headers, ping(4).with_header("kind", "invoice"))
        .await
        .expect("headers match");
    let unrouted = send(&headers, ping(5).with_header("kind", "refund")).await;
    assert!(
        matches!(unrouted, Err(TransportError::Unroutable(_))),
        "{unrouted:?}"
    );

    let mut seqs = Vec::new();
    for (queue, count) in [(&q1, 2), (&q2, 1), (&q3, 1)] {
        let mut consumer = t
            .consume(&Endpoint::new(queue.clone()))
            .await
            .expect("consume");
        let mut got = Vec::new();
        for _ in 0..count {
            let d = next(&mut consumer, "a delivery").await;
            got.push(seq(&d));
            d.ack().await.expect("ack");
        }
        got.sort_unstable();
        seqs.push(got);
    }
    assert_eq!(seqs, [vec![1, 2], vec![1], vec![4]]);
    for q in [q1, q2, q3] {
        t.delete_queue(&q).await.expect("delete");
    }
    for e in [fan, direct, headers] {
        t.delete_exchange(&e).await.expect("delete");
    }
}

#[tokio::test]
async fn an_orderly_shutdown_leaves_nothing_to_deliver_again() {
    let name = unique("conn");
    let t = connect(&name).await;
    let source = Endpoint::new(unique("shutdown")).prefetch(100);
    t.declare(&source).await.expect("declare");
    let (bus, seen) = recording_bus();
    let inbound = Inbound::builder(&bus, t.clone(), source.clone()).build();
    publish_ok(&t, &source.name, (0..250).map(ping).collect()).await;
    wait_until("every message handled", || seen.lock().len() >= 250).await;
    assert!(
        inbound.shutdown(WAIT).await.is_clean(),
        "the inbound bridge finished in time"
    );
    assert!(
        t.shutdown(WAIT).await.is_clean(),
        "nothing awaited a confirm"
    );
    drop(t);
    // Every acknowledgement reached the broker before the connection closed.
    let after = connect(&unique("conn")).await;
    let mut consumer = after.consume(&source).await.expect("consume");
    nothing_more(&mut consumer).await;
    drop(consumer);
    cleanup(&after, &source).await;
}

#[tokio::test]
async fn acknowledgements_held_back_are_sent_when_the_consumer_is_dropped() {
    let (t, source) = declared(Endpoint::new(unique("drop-acks")).prefetch(20)).await;
    publish_ok(&t, &source.name, (0..10).map(ping).collect()).await;
    let mut consumer = t.consume(&source).await.expect("consume");
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(next(&mut consumer, "a delivery").await);
    }
    // Keep 0 unsettled; acknowledge 1 to 4 (fewer than a quarter of the prefetch, after a
    // gap): they wait in the consumer, and its drop must send each of them.
    let mut rest = held.split_off(1);
    let later = rest.split_off(4);
    for d in rest {
        d.ack().await.expect("ack");
    }
    drop(consumer);
    drop((held, later));
    let mut consumer = t.consume(&source).await.expect("consume again");
    let again = acked_seqs(&mut consumer, 6).await;
    assert_eq!(again, [0, 5, 6, 7, 8, 9].into_iter().collect());
    nothing_more(&mut consumer).await;
    drop(consumer);
    cleanup(&t, &source).await;
}

#[tokio::test]
async fn a_route_to_the_default_exchange_sends_to_a_queue_by_name() {
    use tidings::bridge::Route;
    let t = connect(&unique("conn")).await;
    let queue = unique("work");
    t.declare_topology(&Topology::new().queue(Queue::durable(queue.clone())))
        .await
        .expect("declare");
    let bus = Bus::<Events>::new();
    let q = queue.clone();
    let outbound = tidings::bridge::Outbound::builder(&bus, t.clone())
        .forward::<Ping>()
        .route(move |_| Route::to("").key(q.clone()))
        .build();
    bus.emit_async(Ping {
        seq: 5,
        key: "k".into(),
    })
    .await
    .expect("emitted");
    let mut consumer = t
        .consume(&Endpoint::new(queue.clone()))
        .await
        .expect("consume");
    let d = next(&mut consumer, "the message").await;
    assert_eq!(seq(&d), 5);
    d.ack().await.expect("ack");
    drop(consumer);
    assert_eq!(outbound.shutdown(WAIT).await.unfinished_count(), 0);
    t.delete_queue(&queue).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_handling_acknowledges_out_of_order_and_loses_nothing() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (t, source) = declared(Endpoint::new(unique("lanes")).prefetch(32)).await;
    let bus = Bus::<Events>::new();
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let (r, p, s) = (Arc::clone(&running), Arc::clone(&peak), Arc::clone(&seen));
    let options = tidings::QueueOptions::new().concurrency(8);
    bus.on_async_with(options, move |ping: Arc<Ping>| {
        let (r, p, s) = (Arc::clone(&r), Arc::clone(&p), Arc::clone(&s));
        async move {
            p.fetch_max(r.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            // Uneven work, so that acknowledgements come out of order.
            tokio::time::sleep(Duration::from_millis(ping.seq % 5)).await;
            s.lock().insert(ping.seq);
            r.fetch_sub(1, Ordering::SeqCst);
        }
    });
    let inbound = Inbound::builder(&bus, t.clone(), source.clone())
        .concurrency(8)
        .build();
    let keyed = (0..300).map(|i| ping(i).with_key(format!("k{}", i % 16)));
    publish_ok(&t, &source.name, keyed.collect()).await;
    wait_until("every message", || seen.lock().len() == 300).await;
    assert!(peak.load(Ordering::SeqCst) > 1, "handled one at a time");
    assert_eq!(inbound.stats().dead_lettered, 0);
    assert!(inbound.shutdown(WAIT).await.is_clean());
    // Every acknowledgement reached the broker: nothing comes again.
    let mut consumer = t.consume(&source).await.expect("consume");
    nothing_more(&mut consumer).await;
    drop(consumer);
    cleanup(&t, &source).await;
}

#[tokio::test]
async fn source_queues_with_a_delivery_limit_dead_letter_on_the_broker() {
    let t = AmqpTransport::builder(URL)
        .source_queues(&Queue::durable("").quorum().delivery_limit(1))
        .connect()
        .await
        .expect("connect");
    let source = Endpoint::new(unique("limited"));
    t.declare(&source).await.expect("declare");
    publish_ok(&t, &source.name, vec![ping(3)]).await;
    let mut consumer = t.consume(&source).await.expect("consume");
    // Returned twice: past the limit of one redelivery, the broker moves it on its own.
    for _ in 0..2 {
        next(&mut consumer, "a delivery")
            .await
            .nack()
            .await
            .expect("nack");
    }
    let mut dead = t
        .consume(&Endpoint::new(source.dead_letter.clone()))
        .await
        .expect("consume dead letters");
    let d = next(&mut dead, "the broker's dead letter").await;
    assert_eq!(seq(&d), 3);
    d.ack().await.expect("ack");
    drop((consumer, dead));
    cleanup(&t, &source).await;
}

/// A consumer reports its queue's ready messages as its lag (a passive declare once a
/// second): the ones past its prefetch while it holds a full window, none once all are
/// handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_reports_its_queues_ready_messages_as_lag() {
    let t = connect(&unique("conn")).await;
    let source = Endpoint::new(unique("lag"));
    tidings_tests::lag_follows_what_is_read(&t, &source).await;
    cleanup(&t, &source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_get_the_confirm_of_their_own_message() {
    // Eight tasks publish at once through one transport, alternating a message the exchange
    // routes and one it returns as unroutable. Each confirm must be its own message's: a
    // publish that got another's confirm shows here as a routed message reported unroutable
    // (or the reverse), and in an outage as a message confirmed that the broker never had.
    let (t, direct, queue) = routing_only_pings().await;
    let tasks: Vec<_> = (0..8u64)
        .map(|task| {
            let (t, direct) = (t.clone(), direct.clone());
            tokio::spawn(async move {
                let mut wrong = Vec::new();
                for n in 0..400u64 {
                    let seq = task * 1000 + n;
                    let mut envelope = ping(seq);
                    let routed = n.is_multiple_of(2);
                    if !routed {
                        envelope.name = "other.event".into();
                    }
                    let out = Outgoing {
                        destination: direct.clone(),
                        envelope,
                    };
                    let result = t.publish(&[out]).await.remove(0);
                    let right = match result {
                        Ok(()) => routed,
                        Err(TransportError::Unroutable(_)) => !routed,
                        Err(other) => panic!("publish of {seq}: {other}"),
                    };
                    if !right {
                        wrong.push(seq);
                    }
                }
                wrong
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for task in tasks {
        wrong.extend(task.await.expect("a publishing task"));
    }
    assert!(
        wrong.is_empty(),
        "{} of 3,200 publishes got another message's confirm (the first: {:?})",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    let _ = t.delete_queue(&queue).await;
    let _ = t.delete_exchange(&direct).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_one_batch_each_returned_message_is_reported_as_its_own() {
    // RabbitMQ acknowledges many publishes at once, and a return carries no delivery tag:
    // which confirm lapin hands a return to says nothing about whose it is.
    let (t, direct, queue) = routing_only_pings().await;
    let routed = |seq: u64| !seq.is_multiple_of(3);
    let batch: Vec<Outgoing> = (0..3_000u64)
        .map(|seq| {
            let mut envelope = ping(seq);
            if !routed(seq) {
                envelope.name = "other.event".into();
            }
            Outgoing {
                destination: direct.clone(),
                envelope,
            }
        })
        .collect();
    let results = t.publish(&batch).await;
    let wrong: Vec<u64> = (0..3_000u64)
        .zip(&results)
        .filter(|(seq, result)| match result {
            Ok(()) => !routed(*seq),
            Err(TransportError::Unroutable(_)) => routed(*seq),
            Err(other) => panic!("publish of {seq}: {other}"),
        })
        .map(|(seq, _)| seq)
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of 3,000 got another message's outcome (the first: {:?})",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    let _ = t.delete_queue(&queue).await;
    let _ = t.delete_exchange(&direct).await;
}

/// A transport, and a direct exchange that routes `conformance.ping` to a queue of its own
/// and returns every other event name as unroutable.
async fn routing_only_pings() -> (AmqpTransport, String, String) {
    let t = connect(&unique("conn")).await;
    let (direct, queue) = (unique("direct"), unique("q"));
    let topology = Topology::new()
        .exchange(Exchange::direct(direct.clone()))
        .queue(Queue::durable(queue.clone()))
        .bind(queue.clone(), direct.clone(), "conformance.ping");
    t.declare_topology(&topology).await.expect("declare");
    (t, direct, queue)
}

#[tokio::test]
async fn each_connection_publishes_on_the_configured_number_of_channels() {
    for (configured, expected) in [(None, 4), (Some(1), 1), (Some(3), 3), (Some(0), 1)] {
        let name = unique("conn");
        let mut builder = AmqpTransport::builder(URL).connection_name(&name);
        if let Some(n) = configured {
            builder = builder.publishing_channels(n);
        }
        let t = builder.connect().await.expect("connect");
        let channels = tidings_tests::rabbit::connection_info(&name, "channels").await;
        assert_eq!(channels, [expected.to_string()], "{configured:?}");
        t.shutdown(WAIT).await;
    }
}
