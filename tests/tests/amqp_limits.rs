//! The RabbitMQ transport at the edges (feature `amqp`, real broker on 127.0.0.1:5672): frame
//! limits, dead letters that cannot be delivered where they should go, typed headers of
//! foreign producers, forged delivery counts, deleted topology, declarations the broker
//! refuses, a full queue that refuses publishes, and a publish the user may not make.
#![cfg(feature = "amqp")]

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use parking_lot::Mutex;
use tidings::Bus;
use tidings::bridge::{Endpoint, Envelope, Inbound, Outgoing, Transport, TransportError};
use tidings_bridges::amqp::{
    AmqpTransport, ConnectionEvent, Exchange, Queue, QueueOverflow, Topology, queue_name,
};
use tidings_tests::rabbit::{URL, cleanup, connect, rabbitmqctl, unique};
use tidings_tests::{Events, Tick};
use tokio::sync::broadcast::error::TryRecvError;

const WAIT: Duration = Duration::from_secs(20);

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every connection event so far; panics if the transport lost its connection.
fn assert_never_disconnected(events: &mut tokio::sync::broadcast::Receiver<ConnectionEvent>) {
    loop {
        match events.try_recv() {
            Ok(ConnectionEvent::Disconnected { reason, .. }) => {
                panic!("the connection was lost: {reason}")
            }
            Ok(_) => {}
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            Err(TryRecvError::Lagged(n)) => panic!("{n} connection events missed"),
        }
    }
}

fn tick(n: u64) -> Envelope {
    Envelope::new("tick", serde_json::to_vec(&Tick(n)).expect("encodes"))
}

/// Collects the ticks a bus receives.
fn ticks(bus: &Bus<Events>) -> Arc<Mutex<Vec<u64>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    bus.on(move |t: &Tick| s.lock().push(t.0));
    seen
}

/// Publishes one envelope to `destination`; the broker's answer.
async fn publish_one(
    t: &AmqpTransport,
    destination: &str,
    envelope: Envelope,
) -> Result<(), TransportError> {
    let out = Outgoing {
        destination: destination.to_owned(),
        envelope,
    };
    t.publish(std::slice::from_ref(&out)).await.remove(0)
}

/// Takes the oldest message of `source`'s dead-letter queue.
async fn dead_letter_of(
    channel: &lapin::Channel,
    source: &Endpoint,
) -> lapin::message::BasicGetMessage {
    channel
        .basic_get(
            ShortString::from(source.dead_letter.as_str()),
            BasicGetOptions { no_ack: true },
        )
        .await
        .expect("get")
        .expect("a message in the dead-letter queue")
}

/// A plain lapin connection, as a foreign (non-tidings) producer or inspector.
async fn raw_channel() -> (Connection, lapin::Channel) {
    let connection = Connection::connect(URL, ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    (connection, channel)
}

#[tokio::test]
async fn headers_over_the_frame_limit_are_refused_without_losing_the_connection() {
    let t = connect(&unique("conn")).await;
    let source = Endpoint::new(unique("frame"));
    t.declare(&source).await.expect("declare");
    let mut events = t.events();
    let big_key = tick(0).with_key("k".repeat(140_000));
    let big_header = tick(1).with_header("x-big", "h".repeat(140_000));
    let batch: Vec<Outgoing> = [big_key, big_header, tick(2)]
        .into_iter()
        .map(|envelope| Outgoing {
            destination: source.name.clone(),
            envelope,
        })
        .collect();
    let results = t.publish(&batch).await;
    for refused in &results[..2] {
        assert!(
            matches!(refused, Err(TransportError::Rejected(why)) if why.contains("frame limit")),
            "{results:?}"
        );
        assert!(
            !refused.as_ref().unwrap_err().is_retryable(),
            "never retried"
        );
    }
    assert!(results[2].is_ok(), "{results:?}");

    // Through an outbound bridge: the refusal is counted, the events behind it all arrive.
    let (here, there) = (Bus::<Events>::new(), Bus::<Events>::new());
    let outbound = tidings::bridge::Outbound::builder(&here, t.clone())
        .forward::<Tick>()
        .route({
            let destination = source.name.clone();
            move |e| {
                let route = tidings::bridge::Route::to(destination.clone());
                match e.downcast::<Tick>() {
                    Some(Tick(0)) => route.key("k".repeat(140_000)),
                    _ => route,
                }
            }
        })
        .build();
    let seen = ticks(&there);
    let inbound = Inbound::builder(&there, t.clone(), source.clone()).build();
    for n in 0..=100 {
        here.emit_async(Tick(n)).await.expect("emit");
    }
    // Tick 2 from the raw publish above, and 1..=100 from the bridge.
    until("the 101 events behind the refused one", || {
        seen.lock().len() >= 101
    })
    .await;
    assert!(!seen.lock().contains(&0));
    // The events of the refused one's batch can arrive before the bridge has read the
    // batch's confirms and counted the refusal.
    until("the refusal counted", || outbound.stats().rejected >= 1).await;
    assert_eq!(outbound.stats().rejected, 1);
    assert_never_disconnected(&mut events);
    outbound.shutdown(WAIT).await;
    inbound.shutdown(WAIT).await;
    cleanup(&t, &source).await;
}

/// An undecodable message padded with a header of `pad` bytes.
fn padded(pad: usize) -> Envelope {
    Envelope::new("tick", b"not json".to_vec()).with_header("x-pad", "p".repeat(pad))
}

/// The largest padding a message can carry and still fit in one frame, to the byte: probed
/// against an exchange with no bindings, where a message that fits comes back unroutable (the
/// broker read it) and one that does not is refused before it is sent. A message the
/// transport let through that did not fit would cost the connection, and the probe panics.
async fn largest_fitting_pad(t: &AmqpTransport) -> usize {
    let probe = unique("probe");
    t.declare_topology(&Topology::new().exchange(Exchange::topic(probe.clone())))
        .await
        .expect("declare");
    let fits = async |pad: usize| match publish_one(t, &probe, padded(pad)).await {
        Err(TransportError::Rejected(why)) if why.contains("frame limit") => false,
        Err(TransportError::Unroutable(_)) => true,
        other => panic!("unexpected with {pad} bytes of padding: {other:?}"),
    };
    let mut pad = 131_072;
    while !fits(pad).await {
        pad -= 8;
    }
    while fits(pad + 1).await {
        pad += 1;
    }
    t.delete_exchange(&probe).await.expect("delete");
    pad
}

/// The frame check counts a content header as the broker reads it: every message the
/// transport lets through, up to the largest header that fits, byte by byte at the edge,
/// reaches the broker (none costs the connection), and one byte more is refused before it is
/// sent.
#[tokio::test]
async fn a_header_at_the_frame_limit_reaches_the_broker_and_one_byte_more_is_refused() {
    let t = connect(&unique("conn")).await;
    let mut events = t.events();
    let pad = largest_fitting_pad(&t).await;
    assert!(
        (130_000..131_072).contains(&pad),
        "the padding takes nearly the whole frame: {pad}"
    );
    assert_never_disconnected(&mut events);
}

#[tokio::test]
async fn a_dead_letter_copy_that_would_not_fit_leaves_out_the_largest_header_and_good_messages_flow()
 {
    let t = connect(&unique("conn")).await;
    let source = Endpoint::new(unique("dlfit")).prefetch(8);
    t.declare(&source).await.expect("declare");
    let mut events = t.events();
    // Fits with about 130 bytes to spare: the copy's attempts and origin headers take about
    // 80 of them and the reason header's name 22, which leaves too little for the reason
    // ("undecodable payload: ...", some 80 bytes); shortening it to a few bytes would say
    // nothing, so the padding header makes room. (Shortening is unit-tested in `amqp::wire`.)
    publish_one(
        &t,
        &source.name,
        padded(largest_fitting_pad(&t).await - 130),
    )
    .await
    .expect("fits");
    for n in 1..=20 {
        publish_one(&t, &source.name, tick(n)).await.expect("tick");
    }
    let bus = Bus::<Events>::new();
    let seen = ticks(&bus);
    let inbound = Inbound::builder(&bus, t.clone(), source.clone()).build();
    until("the 20 good messages", || seen.lock().len() == 20).await;
    until("the dead letter", || inbound.stats().dead_lettered == 1).await;
    inbound.shutdown(WAIT).await;
    assert_never_disconnected(&mut events);

    let (_connection, channel) = raw_channel().await;
    let got = dead_letter_of(&channel, &source).await;
    let headers = got.properties.headers().clone().expect("headers");
    let reason = match &headers.inner()[&ShortString::from("x-tidings-reason")] {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("{other:?}"),
    };
    assert!(reason.starts_with("undecodable payload"), "{reason}");
    assert!(!reason.ends_with("[truncated]"), "{reason}");
    assert!(!headers.contains_key("x-pad"), "the largest header went");
    assert_eq!(
        headers.inner()[&ShortString::from("x-tidings-dropped-headers")],
        AMQPValue::LongString("1".into())
    );
    cleanup(&t, &source).await;
}

#[tokio::test]
async fn messages_at_the_frame_limit_are_all_dead_lettered_once_without_a_redelivery_loop() {
    let t = connect(&unique("conn")).await;
    let source = Endpoint::new(unique("dledge")).prefetch(8);
    t.declare(&source).await.expect("declare");
    // Seven undecodable messages whose headers come within 0 to 120 bytes of the frame
    // limit: for most, even the reason header's name no longer fits beside them.
    let largest = largest_fitting_pad(&t).await;
    for less in [0, 8, 16, 40, 64, 100, 120] {
        publish_one(&t, &source.name, padded(largest - less))
            .await
            .expect("fits");
    }
    publish_one(&t, &source.name, tick(1)).await.expect("tick");
    let bus = Bus::<Events>::new();
    let seen = ticks(&bus);
    let inbound = Inbound::builder(&bus, t.clone(), source.clone()).build();
    until("the good message", || seen.lock().len() == 1).await;
    until("seven dead letters", || inbound.stats().dead_lettered == 7).await;
    let stats = inbound.stats();
    assert_eq!(
        (stats.received, stats.redelivered),
        (8, 0),
        "each message came once: {stats:?}"
    );
    inbound.shutdown(WAIT).await;

    let (_connection, channel) = raw_channel().await;
    for _ in 0..7 {
        let got = dead_letter_of(&channel, &source).await;
        let headers = got.properties.headers().clone().expect("headers");
        let text = |name: &str| match &headers.inner()[&ShortString::from(name)] {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            other => panic!("{other:?}"),
        };
        let reason = text("x-tidings-reason");
        assert!(reason.starts_with("undecodable payload"), "{reason}");
        assert_eq!(text("x-tidings-origin"), source.name);
        assert_eq!(&got.data[..], b"not json");
        if !headers.contains_key("x-pad") {
            assert_eq!(text("x-tidings-dropped-headers"), "1");
        }
    }
    assert_eq!(
        t.delete_queue(&source.name).await.expect("delete"),
        0,
        "the source queue drained"
    );
    cleanup(&t, &source).await;
}

#[tokio::test]
async fn a_missing_dead_letter_queue_is_declared_and_the_consumer_keeps_flowing() {
    // The source queue exists, as another service declared it; its dead-letter queue does not.
    let name = unique("nodlq");
    let other = connect(&unique("conn")).await;
    other
        .declare_topology(&Topology::new().queue(Queue::durable(name.clone())))
        .await
        .expect("declare");
    let t = connect(&unique("conn")).await;
    let source = Endpoint::new(name.clone()).prefetch(8);
    for n in 0..50u64 {
        // 40 undecodable messages, then 10 good ones, straight into the queue.
        let envelope = if n < 40 {
            Envelope::new("tick", b"not json".to_vec())
        } else {
            tick(n)
        };
        publish_one(&t, "", envelope.with_key(name.clone()))
            .await
            .expect("publish");
    }
    let bus = Bus::<Events>::new();
    let seen = ticks(&bus);
    let inbound = Inbound::builder(&bus, t.clone(), source.clone()).build();
    until("the 10 good messages", || seen.lock().len() == 10).await;
    until("40 dead letters", || inbound.stats().dead_lettered == 40).await;
    inbound.shutdown(WAIT).await;
    assert_eq!(
        t.delete_queue(&source.dead_letter).await.expect("delete"),
        40
    );
    assert_eq!(
        t.delete_queue(&name).await.expect("delete"),
        0,
        "nothing left behind"
    );
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_copied_is_returned_and_the_consumer_keeps_flowing() {
    let name = unique("nocopy");
    let t = connect(&unique("conn")).await;
    t.declare_topology(&Topology::new().queue(Queue::durable(name.clone())))
        .await
        .expect("declare");
    // A dead-letter destination no broker accepts: the copy can never be made.
    let source = Endpoint::new(name.clone()).dead_letter("d".repeat(300));
    let poison = Envelope::new("tick", b"not json".to_vec()).with_key(name.clone());
    publish_one(&t, "", poison).await.expect("publish");
    for n in 1..=5 {
        let good = tick(n).with_key(name.clone());
        publish_one(&t, "", good).await.expect("publish");
    }
    let bus = Bus::<Events>::new();
    let seen = ticks(&bus);
    let inbound = Inbound::builder(&bus, t.clone(), source).build();
    until("the good messages behind the poison one", || {
        seen.lock().len() == 5
    })
    .await;
    until(
        "the poison message back in the queue and delivered again",
        || inbound.stats().redelivered >= 1,
    )
    .await;
    assert_eq!(inbound.stats().dead_lettered, 0);
    inbound.shutdown(WAIT).await;
    // The consumer's channel closes after it is dropped; then the message is ready again.
    let (_connection, channel) = raw_channel().await;
    let mut ready = 0;
    for _ in 0..200 {
        let declared = channel
            .queue_declare(
                ShortString::from(name.as_str()),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("the queue exists");
        ready = declared.message_count();
        if ready > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready, 1, "the poison message was returned, not lost");
    t.delete_queue(&name).await.expect("delete");
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_copied_goes_to_the_queues_own_dead_letter_exchange() {
    // The queue was declared through the transport with a dead-letter exchange of its own
    // (`{name}.dlx` to `{name}.dead-letter`), but the bridge's dead-letter destination cannot
    // be published to: the original is rejected to the queue's own exchange, not returned.
    let name = unique("owndlx");
    let t = connect(&unique("conn")).await;
    let exchange = unique("owndlx-ex");
    t.declare_topology(
        &Topology::new()
            .exchange(Exchange::topic(exchange.clone()))
            .dead_lettered_queue(Queue::durable(name.clone()), exchange.clone(), "#"),
    )
    .await
    .expect("declare");
    let source = Endpoint::new(name.clone()).dead_letter("d".repeat(300));
    publish_one(&t, &exchange, Envelope::new("tick", b"not json".to_vec()))
        .await
        .expect("publish");
    for n in 1..=3 {
        publish_one(&t, &exchange, tick(n)).await.expect("publish");
    }
    let bus = Bus::<Events>::new();
    let seen = ticks(&bus);
    let inbound = Inbound::builder(&bus, t.clone(), source).build();
    until("the good messages", || seen.lock().len() == 3).await;
    let own = format!("{name}.dead-letter");
    let (_connection, channel) = raw_channel().await;
    let mut rejected = None;
    for _ in 0..200 {
        rejected = channel
            .basic_get(
                ShortString::from(own.as_str()),
                BasicGetOptions { no_ack: true },
            )
            .await
            .expect("get");
        if rejected.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rejected = rejected.expect("the poison message reached the queue's own dead letters");
    assert_eq!(&rejected.delivery.data[..], b"not json");
    assert_eq!(inbound.stats().redelivered, 0, "not returned to cycle");
    inbound.shutdown(WAIT).await;
    assert_eq!(t.delete_queue(&name).await.expect("delete"), 0);
    t.delete_queue(&own).await.expect("delete");
    t.delete_exchange(&format!("{name}.dlx"))
        .await
        .expect("delete");
    t.delete_exchange(&exchange).await.expect("delete");
}

#[tokio::test]
async fn dead_letter_copies_keep_the_original_typed_headers_and_properties() {
    let t = connect(&unique("conn")).await;
    let source = Endpoint::new(unique("typed"));
    t.declare(&source).await.expect("declare");
    let (_connection, channel) = raw_channel().await;
    let mut headers = FieldTable::default();
    headers.insert("flag".into(), AMQPValue::Boolean(false));
    headers.insert("n".into(), AMQPValue::LongInt(-42));
    headers.insert("big".into(), AMQPValue::LongLongInt(9_007_199_254_740_993));
    headers.insert("ratio".into(), AMQPValue::Double(0.25));
    let properties = BasicProperties::default()
        .with_type("tick".into())
        .with_correlation_id("corr-1".into())
        .with_reply_to("replies".into())
        .with_headers(headers.clone());
    channel
        .basic_publish(
            ShortString::from(source.name.as_str()),
            "tick".into(),
            BasicPublishOptions::default(),
            b"not json",
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let bus = Bus::<Events>::new();
    let inbound = Inbound::builder(&bus, t.clone(), source.clone()).build();
    until("the dead letter", || inbound.stats().dead_lettered == 1).await;
    inbound.shutdown(WAIT).await;
    let got = dead_letter_of(&channel, &source).await;
    let copy = got.properties.headers().clone().expect("headers");
    for (name, value) in headers.inner() {
        assert_eq!(copy.inner().get(name), Some(value), "{name} keeps its type");
    }
    let added: Vec<&str> = copy
        .inner()
        .keys()
        .map(ShortString::as_str)
        .filter(|k| !headers.contains_key(k))
        .collect();
    assert!(
        added.iter().all(|k| k.starts_with("x-tidings-")),
        "only the reason headers are added: {added:?}"
    );
    assert_eq!(
        got.properties
            .correlation_id()
            .as_ref()
            .map(ShortString::as_str),
        Some("corr-1")
    );
    assert_eq!(
        got.properties.reply_to().as_ref().map(ShortString::as_str),
        Some("replies")
    );
    cleanup(&t, &source).await;
}

#[tokio::test]
async fn a_producer_set_delivery_count_on_a_classic_queue_is_ignored() {
    let t = connect(&unique("conn")).await;
    let source = Endpoint::new(unique("forged"));
    t.declare(&source).await.expect("declare");
    let (_connection, channel) = raw_channel().await;
    let mut headers = FieldTable::default();
    headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(1000));
    channel
        .basic_publish(
            ShortString::from(source.name.as_str()),
            "tick".into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(&Tick(7)).expect("json"),
            BasicProperties::default()
                .with_type("tick".into())
                .with_headers(headers),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let bus = Bus::<Events>::new();
    let attempts = Arc::new(Mutex::new(0u32));
    let a = Arc::clone(&attempts);
    // Fails twice, then succeeds: three attempts within the default limit of 5.
    bus.on(move |_: &Tick| -> Result<(), String> {
        let mut n = a.lock();
        *n += 1;
        if *n < 3 {
            Err("not yet".into())
        } else {
            Ok(())
        }
    });
    let inbound = Inbound::builder(&bus, t.clone(), source.clone())
        .backoff(tidings::Backoff::Fixed(Duration::from_millis(10)))
        .build();
    until("the handled message", || inbound.stats().handled == 1).await;
    assert_eq!(*attempts.lock(), 3);
    assert_eq!(
        inbound.stats().dead_lettered,
        0,
        "not dead-lettered on a forged count"
    );
    inbound.shutdown(WAIT).await;
    cleanup(&t, &source).await;
}

/// The queue names the broker has.
async fn queues() -> String {
    rabbitmqctl(&["list_queues", "name", "-q", "--no-table-headers"]).await
}

#[tokio::test]
async fn deleted_queues_and_exchanges_stay_deleted_after_a_reconnect() {
    let name = unique("conn");
    let t = connect(&name).await;
    let source = Endpoint::new(unique("gone"));
    t.declare(&source).await.expect("declare");
    let queue = tidings_bridges::amqp::queue_name(&source);
    assert!(queues().await.contains(&queue));
    t.delete_queue(&queue).await.expect("delete");
    t.delete_queue(&source.dead_letter).await.expect("delete");
    t.delete_exchange(&source.name).await.expect("delete");
    let mut events = t.events();
    tidings_tests::rabbit::reconnect(&name, &mut events).await;
    // The reconnect declared the recorded topology before going live.
    let listing = queues().await;
    assert!(!listing.contains(&queue), "{queue} came back");
    assert!(!listing.contains(&source.dead_letter));
    let exchanges = rabbitmqctl(&["list_exchanges", "name", "-q", "--no-table-headers"]).await;
    assert!(
        !exchanges.lines().any(|e| e == source.name),
        "the exchange came back"
    );
}

/// A queue another service declared with a length limit that refuses publishes beyond it
/// (`x-overflow: reject-publish`, as amqplib's `assertQueue(name, { durable: true, maxLength:
/// 1, arguments: { 'x-overflow': 'reject-publish' } })`): RabbitMQ nacks what does not fit.
/// Its name, and the foreign connection and channel that declared it.
async fn foreign_full_queue() -> (String, Connection, lapin::Channel) {
    let (raw, channel) = raw_channel().await;
    let full = unique("full");
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(full.as_str().into(), durable, args)
        .await
        .expect("declare");
    (full, raw, channel)
}

/// Deletes `queue` through the foreign client, then closes its connection.
async fn remove_foreign(raw: Connection, channel: &lapin::Channel, queue: &str) {
    channel
        .queue_delete(queue.into(), Default::default())
        .await
        .expect("delete");
    let _ = raw.close(200, "OK".into()).await;
}

/// Takes one message of `queue`; whether there was one.
async fn take_one(channel: &lapin::Channel, queue: &str) -> bool {
    channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .is_some()
}

/// Publishes tick `n` to `queue` through the default exchange after a reconnect and checks,
/// with a foreign client's `channel`, that it was stored.
async fn stored_through_default_exchange(
    t: &AmqpTransport,
    channel: &lapin::Channel,
    queue: &str,
    n: u64,
) {
    publish_one(t, "", tick(n).with_key(queue.to_owned()))
        .await
        .expect("published after the reconnect");
    assert!(take_one(channel, queue).await, "tick {n} was stored");
}

/// A transport whose connections are named `name`, with a short publish timeout and quick
/// retries.
async fn impatient(name: &str) -> AmqpTransport {
    AmqpTransport::builder(URL)
        .connection_name(name)
        .publish_timeout(Duration::from_secs(2))
        .reconnect(tidings::Backoff::Fixed(Duration::from_millis(100)))
        .connect()
        .await
        .expect("connect")
}

#[tokio::test]
async fn a_refused_declaration_closes_one_channel_and_is_not_declared_again() {
    let (full, raw, channel) = foreign_full_queue().await;
    let name = unique("conn");
    let t = impatient(&name).await;
    let mut events = t.events();
    // RabbitMQ refuses a declaration whose arguments differ from the queue's
    // (PRECONDITION_FAILED): the same queue declared from Rust is accepted, so its arguments
    // are the same.
    let same = Queue::durable(full.clone())
        .max_length(1)
        .overflow(QueueOverflow::RejectPublish);
    t.declare_topology(&Topology::new().queue(same))
        .await
        .expect("the same arguments");
    let other = Queue::durable(full.clone()).max_length(1);
    let refused = t.declare_topology(&Topology::new().queue(other)).await;
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("x-overflow")),
        "{refused:?}"
    );
    // Only the channel it was made on closed.
    publish_one(&t, "", tick(0).with_key(full.clone()))
        .await
        .expect("published after the refusal");
    assert_never_disconnected(&mut events);
    assert_eq!(t.connections(), 1);

    // A new connection declares what was accepted, not the refused declaration (which would
    // fail every reconnect).
    tidings_tests::rabbit::reconnect(&name, &mut events).await;
    assert!(take_one(&channel, &full).await, "tick 0 was stored");
    stored_through_default_exchange(&t, &channel, &full, 1).await;
    remove_foreign(raw, &channel, &full).await;
}

#[tokio::test]
async fn a_full_queue_that_rejects_publishes_keeps_the_connection_and_loses_nothing() {
    let (full, raw, channel) = foreign_full_queue().await;
    let t = impatient(&unique("conn")).await;
    let mut events = t.events();
    // A consumer on the same transport: a nack must not take its connection down.
    let beside = Endpoint::new(unique("beside"));
    t.declare(&beside).await.expect("declare");
    let mut consumer = t.consume(&beside).await.expect("consume");

    // The default exchange routes by queue name: the key names the queue.
    let to_full = |n| Outgoing {
        destination: String::new(),
        envelope: tick(n).with_key(full.clone()),
    };
    assert!(t.publish(&[to_full(0)]).await[0].is_ok(), "the first fits");
    let refused = t.publish(&[to_full(1), to_full(2)]).await;
    for result in &refused {
        assert!(
            matches!(result, Err(TransportError::NotStored(why)) if why.contains("negative confirm")),
            "{refused:?}"
        );
        assert!(result.as_ref().unwrap_err().is_retryable(), "{refused:?}");
    }
    assert_never_disconnected(&mut events);
    assert_eq!(t.connections(), 1, "no connection opened for the nacks");
    publish_one(&t, &beside.name, tick(7))
        .await
        .expect("beside");
    let delivery = tidings_tests::rabbit::next(&mut consumer, "the message beside").await;
    delivery.ack().await.expect("ack");

    // Through an outbound bridge the refused event is retried, not dropped, and stored once
    // there is room.
    let bus = Bus::<Events>::new();
    let outbound = tidings::bridge::Outbound::builder(&bus, t.clone())
        .forward::<Tick>()
        .route({
            let full = full.clone();
            move |_| tidings::bridge::Route::to("").key(full.clone())
        })
        .backoff(tidings::Backoff::Fixed(Duration::from_millis(100)))
        .build();
    bus.emit_async(Tick(3)).await.expect("emit");
    until("a retry", || outbound.stats().retried >= 1).await;
    assert_eq!(outbound.stats().confirmed, 0);
    assert!(take_one(&channel, &full).await, "tick 0 was stored");
    until("the retried event stored", || {
        outbound.stats().confirmed == 1
    })
    .await;
    let stats = outbound.stats();
    assert_eq!((stats.rejected, stats.in_flight), (0, 0), "{stats:?}");
    assert!(take_one(&channel, &full).await, "tick 3 was stored");
    assert_never_disconnected(&mut events);
    assert_eq!(t.connections(), 1, "still the first connection");
    assert!(outbound.shutdown(WAIT).await.is_clean());
    remove_foreign(raw, &channel, &full).await;
    cleanup(&t, &beside).await;
}

#[tokio::test]
async fn a_queue_re_created_with_other_arguments_does_not_keep_the_transport_from_reconnecting() {
    let name = unique("conn");
    let t = impatient(&name).await;
    let mut events = t.events();
    let queue = unique("recreated");
    t.declare_topology(&Topology::new().queue(Queue::durable(queue.clone()).max_length(5)))
        .await
        .expect("declare");
    // Another client deletes it and declares it again without the limit.
    let (raw, channel) = raw_channel().await;
    channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await
        .expect("delete");
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), durable, FieldTable::default())
        .await
        .expect("declare");

    // The recorded declaration is refused on the next connection, which comes up anyway.
    tidings_tests::rabbit::reconnect(&name, &mut events).await;
    stored_through_default_exchange(&t, &channel, &queue, 0).await;
    remove_foreign(raw, &channel, &queue).await;
}

/// A new user who may configure and read anything and write anywhere but to the exchange
/// `denied`, and a transport connected as that user; the user's name.
async fn writer_denied(denied: &str) -> (String, AmqpTransport) {
    let user = unique("writer");
    rabbitmqctl(&["add_user", &user, "not-a-secret"]).await;
    let write = format!("^(?!{}$).*", denied.replace('.', "\\."));
    rabbitmqctl(&["set_permissions", "-p", "/", &user, ".*", &write, ".*"]).await;
    let t = AmqpTransport::builder(&format!("amqp://{user}:not-a-secret@127.0.0.1:5672/%2f"))
        .connection_name(unique("limited"))
        .publish_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect");
    (user, t)
}

#[tokio::test]
async fn a_publish_the_user_may_not_write_is_refused_and_the_rest_of_its_batch_goes_on_one_connection()
 {
    let owner = connect(&unique("owner")).await;
    let allowed = Endpoint::new(unique("allowed"));
    let forbidden = Endpoint::new(unique("forbidden"));
    owner.declare(&allowed).await.expect("declare");
    owner.declare(&forbidden).await.expect("declare");
    // The broker closes the publishing channel (ACCESS_REFUSED) on the publish there.
    let (user, t) = writer_denied(&forbidden.name).await;
    let mut events = t.events();
    // A consumer on the same transport: the refusal must not take its connection down.
    let mut consumer = t.consume(&allowed).await.expect("consume");

    let to = |endpoint: &Endpoint, n| Outgoing {
        destination: endpoint.name.clone(),
        envelope: tick(n),
    };
    // Two messages after the refused one, sent on the channel the broker was closing.
    let batch = [
        to(&allowed, 0),
        to(&forbidden, 1),
        to(&allowed, 2),
        to(&allowed, 3),
    ];
    let results = t.publish(&batch).await;
    assert!(
        matches!(&results[1], Err(TransportError::Rejected(why)) if why.contains("ACCESS_REFUSED") && why.contains(&forbidden.name)),
        "{results:?}"
    );
    assert!(!results[1].as_ref().unwrap_err().is_retryable());
    for i in [0, 2, 3] {
        assert!(results[i].is_ok(), "{results:?}");
    }
    // The next batch goes out on a fresh channel.
    publish_one(&t, &allowed.name, tick(4))
        .await
        .expect("after the refusal");
    // A message whose confirm the closing channel took with it is sent again (it may have
    // been stored: at least once), so a tick may come twice; the refused one never comes.
    let mut received = std::collections::BTreeSet::new();
    while !received.contains(&4) {
        let delivery = tidings_tests::rabbit::next(&mut consumer, "the allowed ticks").await;
        received.insert(
            serde_json::from_slice::<Tick>(&delivery.message.payload)
                .expect("a tick")
                .0,
        );
        delivery.ack().await.expect("ack");
    }
    assert_eq!(
        received,
        [0, 2, 3, 4].into(),
        "every allowed tick, the refused one never"
    );
    assert_never_disconnected(&mut events);
    assert_eq!(t.connections(), 1, "no connection opened for the refusal");

    drop(consumer);
    t.shutdown(WAIT).await;
    rabbitmqctl(&["delete_user", &user]).await;
    cleanup(&owner, &allowed).await;
    cleanup(&owner, &forbidden).await;
}

#[tokio::test]
async fn a_refused_publish_through_the_default_exchange_is_told_apart_from_the_rest_of_its_batch() {
    let owner = connect(&unique("owner")).await;
    let allowed = Endpoint::new(unique("allowed"));
    owner.declare(&allowed).await.expect("declare");
    // The broker names the default exchange `amq.default` in its refusal.
    let (user, t) = writer_denied("amq.default").await;
    let mut events = t.events();
    let by_queue_name = Outgoing {
        destination: String::new(),
        envelope: tick(1).with_key(queue_name(&allowed)),
    };
    let to_allowed = |n| Outgoing {
        destination: allowed.name.clone(),
        envelope: tick(n),
    };
    let results = t
        .publish(&[to_allowed(0), by_queue_name, to_allowed(2)])
        .await;
    assert!(
        matches!(&results[1], Err(TransportError::Rejected(why)) if why.contains("amq.default")),
        "{results:?}"
    );
    // Not refused with it: they went to an exchange the user may write to.
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert_never_disconnected(&mut events);
    assert_eq!(t.connections(), 1);

    t.shutdown(WAIT).await;
    rabbitmqctl(&["delete_user", &user]).await;
    cleanup(&owner, &allowed).await;
}

#[tokio::test]
async fn a_publish_to_an_internal_exchange_is_refused_without_losing_the_connection() {
    // Declared internal by another client (tidings declares none): only exchange-to-exchange
    // bindings may route into it, and the broker closes the channel of a publish to it.
    let (raw, channel) = raw_channel().await;
    let internal = unique("internal");
    let options = ExchangeDeclareOptions {
        internal: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            internal.as_str().into(),
            lapin::ExchangeKind::Topic,
            options,
            FieldTable::default(),
        )
        .await
        .expect("declare");
    let t = connect(&unique("conn")).await;
    let mut events = t.events();
    let refused = publish_one(&t, &internal, tick(0)).await;
    assert!(
        matches!(&refused, Err(TransportError::Rejected(why)) if why.contains("internal") && why.contains(&internal)),
        "{refused:?}"
    );
    // The next publish goes out on a fresh channel of the same connection.
    let beside = Endpoint::new(unique("beside"));
    t.declare(&beside).await.expect("declare");
    publish_one(&t, &beside.name, tick(1))
        .await
        .expect("after the refusal");
    assert_never_disconnected(&mut events);
    assert_eq!(t.connections(), 1);

    cleanup(&t, &beside).await;
    t.shutdown(WAIT).await;
    channel
        .exchange_delete(internal.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete");
    raw.close(200, "OK".into()).await.expect("close");
}

#[tokio::test]
async fn a_message_over_the_brokers_size_limit_is_refused_alone_and_the_rest_of_its_batch_goes_through()
 {
    // A node of this test's own: the limit is the broker's, for every channel opened after
    // it is set.
    let node = tidings_tests::rabbit_cluster::RabbitCluster::start(1).await;
    node.ctl(
        0,
        &[
            "eval",
            "application:set_env(rabbit, max_message_size, 4096).",
        ],
    )
    .await;
    // The transport's own limit is left at its default (128 MiB), far above the broker's:
    // the broker closes the channel with a reason that names no exchange.
    let t = tidings_tests::rabbit::connect_to(&node.url(0), &unique("sized")).await;
    let mut events = t.events();
    let queue = Endpoint::new(unique("sized"));
    t.declare(&queue).await.expect("declare");
    let mut consumer = t.consume(&queue).await.expect("consume");

    let to = |envelope| Outgoing {
        destination: queue.name.clone(),
        envelope,
    };
    let oversized = Envelope::new("tick", vec![b' '; 8192]);
    let batch = [
        to(tick(0)),
        to(oversized.clone()),
        to(tick(2)),
        to(tick(3)),
        to(oversized),
        to(tick(5)),
    ];
    let results = t.publish(&batch).await;
    for i in [1, 4] {
        assert!(
            matches!(&results[i], Err(TransportError::Rejected(why)) if why.contains("max size")),
            "{results:?}"
        );
    }
    for i in [0, 2, 3, 5] {
        assert!(
            results[i].is_ok(),
            "sent again alone and confirmed: {results:?}"
        );
    }
    // The next batch goes out together again, on the same connection.
    let results = t.publish(&[to(tick(6)), to(tick(7))]).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    // A message whose confirm the closing channel took with it may arrive twice; the
    // oversized ones never arrive.
    let mut received = std::collections::BTreeSet::new();
    while !received.contains(&7) {
        let delivery = tidings_tests::rabbit::next(&mut consumer, "the ticks").await;
        let payload = &delivery.message.payload;
        assert!(payload.len() < 4096, "a refused message arrived");
        received.insert(serde_json::from_slice::<Tick>(payload).expect("a tick").0);
        delivery.ack().await.expect("ack");
    }
    assert_eq!(received, [0, 2, 3, 5, 6, 7].into());
    assert_never_disconnected(&mut events);
    assert_eq!(t.connections(), 1, "no connection opened for the refusal");
    drop(consumer);
    t.shutdown(WAIT).await;
}
