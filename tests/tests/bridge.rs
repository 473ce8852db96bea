//! Outbound and inbound bridges over the in-memory broker: confirmation, retries through an
//! outage, bounded buffers, flush on shutdown, ack-after-handling, retries, dedup.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tidings::bridge::{
    Consumer, Endpoint, Envelope, Inbound, MemoryBroker, MemoryDedup, Outbound, Outgoing, Route,
    Transport,
};
use tidings::{Backoff, Bus, EventRef};
use tidings_tests::memory::{collect, declared, until};
use tidings_tests::{Events, OrderPlaced, OrderShipped, Tick, UserCreated, user};

#[tokio::test(start_paused = true)]
async fn events_cross_the_broker_with_routes_and_keys() {
    let broker = MemoryBroker::new();
    let users = declared(&broker, "users.#").await;
    let orders = declared(&broker, "orders").await;
    let (a, b) = (Bus::<Events>::new(), Bus::<Events>::new());
    let outbound = Outbound::builder(&a, broker.clone())
        .forward::<UserCreated>()
        .forward_pattern("order.*")
        .unwrap()
        .route(|e: EventRef<'_, Events>| {
            if e.name().starts_with("user") {
                Route::to("users.eu")
            } else {
                Route::to("orders")
            }
        })
        .source("tidings://shop")
        .build();
    let _users_in = Inbound::builder(&b, broker.clone(), users).build();
    let _orders_in = Inbound::builder(&b, broker.clone(), orders).build();
    let got_users = collect::<UserCreated>(&b);
    let got_orders = collect::<OrderPlaced>(&b);
    a.emit(user(1));
    a.emit(OrderPlaced { order: 9, cents: 5 });
    a.emit(Tick(1)); // not forwarded
    until("both events", || {
        got_users.lock().len() == 1 && got_orders.lock().len() == 1
    })
    .await;
    assert_eq!(got_users.lock()[0], user(1));
    let stats = outbound.stats();
    assert_eq!(
        (stats.confirmed, stats.in_flight, stats.rejected),
        (2, 0, 0)
    );
    assert_eq!(
        outbound
            .shutdown(Duration::from_secs(1))
            .await
            .unfinished_count(),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn outbound_retries_through_an_outage_and_loses_nothing() {
    let broker = MemoryBroker::new();
    let source = declared(&broker, "ticks").await;
    let bus = Bus::<Events>::new();
    let outbound = Outbound::builder(&bus, broker.clone())
        .forward::<Tick>()
        .destination("ticks")
        .backoff(Backoff::Fixed(Duration::from_millis(100)))
        .build();
    broker.disconnect();
    for i in 0..50 {
        bus.emit_async(Tick(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(outbound.stats().confirmed, 0);
    assert!(outbound.stats().retried > 0);
    broker.reconnect();
    until("confirmations", || outbound.stats().confirmed == 50).await;
    assert_eq!(broker.depth(&source.name, &source.group), 50);
    broker.fail_next_publishes(3);
    bus.emit_async(Tick(50)).await.unwrap();
    until("the last one", || outbound.stats().confirmed == 51).await;
    assert_eq!(outbound.stats().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_buffer_makes_emit_async_wait_and_sync_emit_report() {
    let broker = MemoryBroker::new();
    let _ = declared(&broker, "ticks").await;
    let bus = Bus::<Events>::new();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let e = Arc::clone(&errors);
    bus.on_error(move |err| e.lock().push(format!("{:?}", err.kind())));
    let outbound = Outbound::builder(&bus, broker.clone())
        .forward::<Tick>()
        .destination("ticks")
        .buffer(4)
        .batch(1, Duration::ZERO)
        .build();
    broker.disconnect();
    // One in flight (retrying) plus four buffered.
    for i in 0..5 {
        bus.emit_async(Tick(i)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let b = bus.clone();
    let blocked = tokio::spawn(async move { b.emit_async(Tick(5)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !blocked.is_finished(),
        "emit_async waits while the buffer is full"
    );
    assert_eq!(bus.emit(Tick(6)), 0);
    assert!(matches!(errors.lock().as_slice(), [k] if k.contains("Overflow(Wait)")));
    let stats = outbound.stats();
    assert_eq!((stats.dropped, stats.buffered, stats.in_flight), (1, 4, 1));
    broker.reconnect();
    blocked.await.unwrap().unwrap();
    until("everything", || outbound.stats().confirmed == 6).await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_flushes_or_reports_what_was_not_confirmed() {
    let broker = MemoryBroker::new();
    let _ = declared(&broker, "ticks").await;
    let bus = Bus::<Events>::new();
    let build = || {
        Outbound::builder(&bus, broker.clone())
            .forward::<Tick>()
            .destination("ticks")
            .build()
    };
    let outbound = build();
    for i in 0..10 {
        bus.emit(Tick(i));
    }
    assert_eq!(
        outbound
            .shutdown(Duration::from_secs(5))
            .await
            .unfinished_count(),
        0
    );
    assert_eq!(broker.depth("ticks", "default"), 10);

    let outbound = build();
    broker.disconnect();
    for i in 0..10 {
        bus.emit(Tick(i));
    }
    let report = outbound.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        report.unfinished_count(),
        10,
        "reported, not silently dropped"
    );
}

/// A bus whose ticks an outbound forwards to `ticks` on a memory broker, in batches of `size`
/// that linger for up to `linger`.
async fn batched_ticks(
    size: usize,
    linger: Duration,
) -> (MemoryBroker, Endpoint, Bus<Events>, Outbound<Events>) {
    let broker = MemoryBroker::new();
    let source = declared(&broker, "ticks").await;
    let bus = Bus::<Events>::new();
    let outbound = Outbound::builder(&bus, broker.clone())
        .forward::<Tick>()
        .destination("ticks")
        .batch(size, linger)
        .build();
    (broker, source, bus, outbound)
}

#[tokio::test(start_paused = true)]
async fn events_taken_while_a_batch_lingers_count_as_in_flight() {
    let (broker, source, bus, outbound) = batched_ticks(3, Duration::from_secs(10)).await;
    let stats = || {
        let s = outbound.stats();
        (s.buffered, s.in_flight, s.confirmed)
    };
    bus.emit(Tick(0));
    until("the first event taken", || stats() == (0, 1, 0)).await;
    // The batch is now lingering for more: this one is taken while it waits.
    bus.emit(Tick(1));
    until("the second event taken", || stats() == (0, 2, 0)).await;
    bus.emit(Tick(2));
    until("the full batch confirmed", || stats() == (0, 0, 3)).await;
    assert_eq!(broker.depth(&source.name, &source.group), 3);
    assert!(outbound.shutdown(Duration::from_secs(1)).await.is_clean());
}

/// Runs the test's tasks, the clock stopped, until `done` holds; false when it does not within
/// 10,000 turns.
async fn without_time_passing(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..10_000 {
        if done() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

#[tokio::test(start_paused = true)]
async fn a_short_batch_goes_when_its_linger_ends_counted_from_its_first_event() {
    let (broker, source, bus, outbound) = batched_ticks(100, Duration::from_millis(50)).await;
    let stats = || {
        let s = outbound.stats();
        (s.in_flight, s.confirmed)
    };
    bus.emit(Tick(0));
    assert!(without_time_passing(|| stats() == (1, 0)).await);
    tokio::time::advance(Duration::from_millis(30)).await;
    bus.emit(Tick(1));
    assert!(without_time_passing(|| stats() == (2, 0)).await);
    // Not published before the linger ends...
    tokio::time::advance(Duration::from_millis(19)).await;
    assert!(!without_time_passing(|| stats().1 > 0).await);
    // ... and published when it does, 50 ms after the first event, not after the last.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(without_time_passing(|| stats() == (0, 2)).await);
    assert_eq!(broker.depth(&source.name, &source.group), 2);
    assert!(outbound.shutdown(Duration::from_secs(1)).await.is_clean());
}

#[tokio::test(start_paused = true)]
async fn refused_publishes_are_counted_not_retried_forever() {
    let broker = MemoryBroker::new();
    let bus = Bus::<Events>::new();
    let outbound = Outbound::builder(&bus, broker.clone())
        .forward::<Tick>()
        .destination("nowhere")
        .build();
    bus.emit(Tick(1));
    until("the refusal", || outbound.stats().rejected == 1).await;
    assert_eq!(outbound.stats().in_flight, 0);
    // Nothing is left unfinished, and the report still shows the event that was dropped.
    let report = outbound.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.refused_count(), 1);
    assert_eq!(
        report.to_string(),
        "stopped cleanly (1 refused for good before)"
    );
}

#[tokio::test(start_paused = true)]
async fn inbound_acks_only_after_handlers_succeed_and_retries_with_backoff() {
    let broker = MemoryBroker::new();
    let source = declared(&broker, "users").await;
    let bus = Bus::<Events>::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    bus.on_async(move |_: Arc<UserCreated>| {
        let c = Arc::clone(&c);
        async move {
            match c.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err("database is busy"),
                _ => Ok(()),
            }
        }
    });
    let inbound = Inbound::builder(&bus, broker.clone(), source.clone())
        .max_attempts(5)
        .backoff(Backoff::Fixed(Duration::from_secs(1)))
        .build();
    let payload = serde_json::to_vec(&user(3)).unwrap();
    broker
        .publish(&[Outgoing {
            destination: "users".into(),
            envelope: Envelope::new("user.created", payload),
        }])
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        broker.depth("users", "default"),
        1,
        "not acked while failing"
    );
    until("the third attempt", || inbound.stats().handled == 1).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(inbound.stats().retried, 2);
    assert_eq!(broker.depth("users", "default"), 0, "acked once handled");
    assert!(inbound.shutdown(Duration::from_secs(1)).await.is_clean());
}

#[tokio::test(start_paused = true)]
async fn untyped_json_from_another_service_uses_the_bound_type() {
    let broker = MemoryBroker::new();
    let source = declared(&broker, "shipments").await;
    let bus = Bus::<Events>::new();
    let got = collect::<OrderShipped>(&bus);
    let _inbound = Inbound::builder(&bus, broker.clone(), source)
        .bind::<OrderShipped>()
        .build();
    // What `channel.sendToQueue(q, Buffer.from(JSON.stringify({ order: 12 })))` sends.
    broker
        .publish(&[Outgoing {
            destination: "shipments".into(),
            envelope: Envelope::new("", br#"{"order":12}"#.to_vec()),
        }])
        .await;
    until("the shipment", || !got.lock().is_empty()).await;
    assert_eq!(got.lock()[0], OrderShipped { order: 12 });
}

#[tokio::test(start_paused = true)]
async fn dedup_drops_repeats_within_its_ttl() {
    let broker = MemoryBroker::new();
    let source = declared(&broker, "users").await;
    let bus = Bus::<Events>::new();
    let got = collect::<UserCreated>(&bus);
    let inbound = Inbound::builder(&bus, broker.clone(), source)
        .dedup(MemoryDedup::new(Duration::from_secs(60)))
        .build();
    let envelope = Envelope::new("user.created", serde_json::to_vec(&user(1)).unwrap());
    let out = Outgoing {
        destination: "users".into(),
        envelope,
    };
    broker.publish(&[out.clone(), out.clone()]).await;
    until("both deliveries", || inbound.stats().received == 2).await;
    assert_eq!(got.lock().len(), 1);
    assert_eq!(inbound.stats().duplicates, 1);
    tokio::time::sleep(Duration::from_secs(61)).await;
    broker.publish(&[out]).await;
    until("the third delivery", || inbound.stats().received == 3).await;
    assert_eq!(got.lock().len(), 2, "forgotten after the ttl");
}

#[tokio::test(start_paused = true)]
async fn inbound_consumes_again_after_an_outage() {
    let broker = MemoryBroker::new();
    let source = declared(&broker, "ticks").await;
    let bus = Bus::<Events>::new();
    let got = collect::<Tick>(&bus);
    let inbound = Inbound::builder(&bus, broker.clone(), source)
        .backoff(Backoff::Fixed(Duration::from_millis(100)))
        .build();
    tokio::time::sleep(Duration::from_millis(10)).await;
    broker.disconnect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.reconnect();
    let envelope = Envelope::new("tick", b"7".to_vec());
    let results = broker
        .publish(&[Outgoing {
            destination: "ticks".into(),
            envelope,
        }])
        .await;
    assert!(results[0].is_ok());
    until("the tick", || !got.lock().is_empty()).await;
    assert!(inbound.stats().reconnects >= 1);
}

#[tokio::test(start_paused = true)]
async fn a_bus_shut_down_returns_messages_to_the_broker() {
    let broker = MemoryBroker::new();
    let source = declared(&broker, "ticks").await;
    let bus = Bus::<Events>::new();
    bus.on_async(|_: Arc<Tick>| async {});
    bus.shutdown(Duration::from_secs(1)).await;
    let inbound = Inbound::builder(&bus, broker.clone(), source).build();
    broker
        .publish(&[Outgoing {
            destination: "ticks".into(),
            envelope: Envelope::new("tick", b"1".to_vec()),
        }])
        .await;
    until("an attempt", || inbound.stats().received >= 1).await;
    assert!(
        inbound.shutdown(Duration::from_secs(1)).await.is_clean(),
        "the bridge stopped by itself"
    );
    assert_eq!(
        broker.depth("ticks", "default"),
        1,
        "still there for another consumer"
    );
}

#[tokio::test(start_paused = true)]
async fn emit_and_wait_does_not_wait_for_a_bridge() {
    // Regression: a bridge's queue was tracked like a listener task, and never said "done".
    let broker = MemoryBroker::new();
    let _ = declared(&broker, "ticks").await;
    let bus = Bus::<Events>::new();
    let outbound = Outbound::builder(&bus, broker.clone())
        .forward::<Tick>()
        .destination("ticks")
        .build();
    let handled = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&handled);
    bus.on_async(move |_: Arc<Tick>| {
        let h = Arc::clone(&h);
        async move {
            h.fetch_add(1, Ordering::SeqCst);
        }
    });
    let waited = tokio::time::timeout(Duration::from_secs(5), bus.emit_and_wait(Tick(1))).await;
    assert_eq!(waited.expect("emit_and_wait returned").unwrap(), 2);
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    until("the forward", || outbound.stats().confirmed == 1).await;
}

#[tokio::test(start_paused = true)]
async fn a_message_whose_ack_is_lost_is_handled_again() {
    // At least once: the connection drops while the handler runs, so the ack fails and the
    // broker delivers the message again.
    let broker = MemoryBroker::new();
    let source = declared(&broker, "users").await;
    let bus = Bus::<Events>::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (g, c) = (Arc::clone(&gate), Arc::clone(&calls));
    bus.on_async(move |_: Arc<UserCreated>| {
        let (g, c) = (Arc::clone(&g), Arc::clone(&c));
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            g.acquire().await.unwrap().forget();
        }
    });
    let inbound = Inbound::builder(&bus, broker.clone(), source)
        .backoff(Backoff::Fixed(Duration::from_millis(100)))
        .build();
    let payload = serde_json::to_vec(&user(5)).unwrap();
    broker
        .publish(&[Outgoing {
            destination: "users".into(),
            envelope: Envelope::new("user.created", payload),
        }])
        .await;
    until("the first attempt", || calls.load(Ordering::SeqCst) == 1).await;
    broker.disconnect();
    broker.reconnect();
    gate.add_permits(2);
    until("the redelivery", || inbound.stats().handled == 1).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "handled once per delivery");
    assert_eq!(inbound.stats().redelivered, 1);
    assert_eq!(broker.depth("users", "default"), 0);
}

/// An event JSON cannot encode: maps with non-string keys.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, tidings::Event)]
struct Matrix {
    cells: std::collections::HashMap<(u8, u8), u8>,
}

#[derive(Debug, tidings::EventSet)]
enum Grid {
    Matrix(Matrix),
    Tick(Tick),
}

#[tokio::test(start_paused = true)]
async fn events_that_cannot_be_encoded_are_counted_not_lost_in_silence() {
    let broker = MemoryBroker::new();
    let _ = declared(&broker, "grid").await;
    let bus = Bus::<Grid>::new();
    let outbound = Outbound::builder(&bus, broker.clone())
        .forward_pattern("#")
        .unwrap()
        .destination("grid")
        .build();
    let cells = [((0, 0), 1)].into_iter().collect();
    bus.emit(Matrix { cells });
    bus.emit(Tick(1));
    until("the tick", || outbound.stats().confirmed == 1).await;
    let stats = outbound.stats();
    assert_eq!((stats.unencodable, stats.in_flight), (1, 0));
    assert_eq!(broker.depth("grid", "default"), 1);
    // The stop is clean, and its report counts the event that was dropped.
    let report = outbound.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.refused_count(), 1);
}

/// Emits `Tick(0..n)` with one key through an outbound built by `build`, and returns the order
/// in which they reached a consumer of `ticks`.
async fn ticks_arrive_in_order<T: Transport>(
    broker: &MemoryBroker,
    transport: T,
    n: u64,
    before: impl FnOnce(),
) -> Vec<u64> {
    let source = declared(broker, "ticks").await;
    let (a, b) = (Bus::<Events>::new(), Bus::<Events>::new());
    let outbound = Outbound::builder(&a, transport)
        .forward::<Tick>()
        .route(|_| Route::to("ticks").key("one-key"))
        .backoff(Backoff::Fixed(Duration::from_millis(10)))
        .build();
    let _inbound = Inbound::builder(&b, broker.clone(), source).build();
    let got = collect::<Tick>(&b);
    before();
    for i in 0..n {
        a.emit_async(Tick(i)).await.unwrap();
    }
    until("every tick", || got.lock().len() as u64 >= n).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // room for any duplicate
    assert_eq!(
        outbound
            .shutdown(Duration::from_secs(1))
            .await
            .unfinished_count(),
        0
    );
    got.lock().iter().map(|t| t.0).collect()
}

#[tokio::test(start_paused = true)]
async fn per_key_order_survives_a_partial_publish_failure() {
    let broker = MemoryBroker::new();
    let b = broker.clone();
    let order = ticks_arrive_in_order(&broker, broker.clone(), 16, move || {
        b.fail_next_publishes(3)
    })
    .await;
    assert_eq!(order, (0..16).collect::<Vec<_>>(), "in order, once each");
}

/// A transport with a bug: it publishes only the first half of each batch and returns results
/// for those alone.
#[derive(Clone)]
struct ShortResults(MemoryBroker);

impl Transport for ShortResults {
    type Consumer = <MemoryBroker as Transport>::Consumer;

    async fn publish(
        &self,
        batch: &[Outgoing],
    ) -> Vec<Result<(), tidings::bridge::TransportError>> {
        let half = batch.len().div_ceil(2);
        self.0.publish(&batch[..half]).await
    }

    async fn declare(&self, source: &Endpoint) -> Result<(), tidings::bridge::TransportError> {
        self.0.declare(source).await
    }

    async fn consume(
        &self,
        source: &Endpoint,
    ) -> Result<Self::Consumer, tidings::bridge::TransportError> {
        self.0.consume(source).await
    }
}

#[tokio::test(start_paused = true)]
async fn messages_a_transport_returned_no_result_for_are_published_again() {
    let broker = MemoryBroker::new();
    let transport = ShortResults(broker.clone());
    let order = ticks_arrive_in_order(&broker, transport, 16, || {}).await;
    assert_eq!(order, (0..16).collect::<Vec<_>>(), "none forgotten");
}

/// A codec other than JSON: JSON in hex, so its bytes are plainly not JSON.
struct HexJson;

impl tidings::codec::Codec for HexJson {
    fn content_type(&self) -> &'static str {
        "application/x-hex-json"
    }

    fn encode<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> Result<Vec<u8>, tidings::codec::CodecError> {
        let json = serde_json::to_vec(value).map_err(tidings::codec::CodecError::new)?;
        Ok(json
            .iter()
            .flat_map(|b| format!("{b:02x}").into_bytes())
            .collect())
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<T, tidings::codec::CodecError> {
        let text = std::str::from_utf8(bytes).map_err(tidings::codec::CodecError::new)?;
        if text.len() % 2 != 0 {
            return Err(tidings::codec::CodecError::new("odd number of hex digits"));
        }
        let json = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(tidings::codec::CodecError::new)?;
        serde_json::from_slice(&json).map_err(tidings::codec::CodecError::new)
    }
}

#[tokio::test(start_paused = true)]
async fn bridges_carry_events_in_the_codec_they_are_given() {
    let broker = MemoryBroker::new();
    let source = declared(&broker, "ticks").await;
    let (a, b) = (Bus::<Events>::new(), Bus::<Events>::new());
    let _outbound = Outbound::builder(&a, broker.clone())
        .forward::<Tick>()
        .destination("ticks")
        .codec(HexJson)
        .build();
    // Read one message raw first: the payload is hex, not JSON.
    let mut raw = broker.consume(&source).await.unwrap();
    a.emit_async(Tick(7)).await.unwrap();
    let delivery = raw.next().await.unwrap().unwrap();
    assert_eq!(&delivery.message.payload[..], b"37", "`7` in hex");
    delivery.nack().await.unwrap();
    drop(raw);
    let got = collect::<Tick>(&b);
    let inbound = Inbound::builder(&b, broker.clone(), source)
        .codec(HexJson)
        .build();
    until("the tick", || got.lock().len() == 1).await;
    assert_eq!(got.lock()[0], Tick(7));
    assert_eq!(inbound.stats().dead_lettered, 0);
}

/// The inbound bridge reports its consumer's lag: the messages waiting for its group, rising
/// while a handler holds the one it has, back to zero once all are handled.
#[tokio::test(start_paused = true)]
async fn inbound_stats_report_the_consumers_lag() {
    let broker = MemoryBroker::new();
    let source = declared(&broker, "shipments").await;
    let bus = Bus::<Events>::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = Arc::clone(&gate);
    bus.on_async(move |_: Arc<OrderShipped>| {
        let g = Arc::clone(&g);
        async move { g.acquire().await.expect("open").forget() }
    });
    let inbound = Inbound::builder(&bus, broker.clone(), source).build();
    until("a consumer", || inbound.stats().lag.is_some()).await;
    assert_eq!(inbound.stats().lag, Some(0));
    let batch: Vec<Outgoing> = (0..10)
        .map(|order| Outgoing {
            destination: "shipments".into(),
            envelope: Envelope::new(
                "order.shipped",
                serde_json::to_vec(&OrderShipped { order }).unwrap(),
            ),
        })
        .collect();
    assert!(broker.publish(&batch).await.iter().all(Result::is_ok));
    // One is being handled (held at the gate); nine wait.
    until("a lag of 9", || inbound.stats().lag == Some(9)).await;
    gate.add_permits(10);
    until("all handled", || inbound.stats().handled == 10).await;
    assert_eq!(inbound.stats().lag, Some(0));
    // The broker goes away: no consumer, no lag known; it comes back, and so does the lag.
    broker.disconnect();
    until("an unknown lag", || inbound.stats().lag.is_none()).await;
    broker.reconnect();
    until("a lag again", || inbound.stats().lag == Some(0)).await;
}

#[tokio::test(start_paused = true)]
async fn a_message_nobody_listens_to_waits_for_a_listener_instead_of_being_acknowledged() {
    let broker = MemoryBroker::new();
    let source = declared(&broker, "late-listener").await;
    let bus = Bus::<Events>::new();
    // The bridge first, the listener 300 ms later.
    let inbound = Inbound::builder(&bus, broker.clone(), source.clone()).build();
    let payload = serde_json::to_vec(&OrderPlaced { order: 1, cents: 5 }).unwrap();
    let results = broker
        .publish(&[Outgoing {
            destination: "late-listener".into(),
            envelope: Envelope::new("order.placed", payload),
        }])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    until("the first attempt", || inbound.stats().received == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = collect::<OrderPlaced>(&bus);
    until("the late listener's call", || seen.lock().len() == 1).await;
    until("the acknowledgement", || inbound.stats().handled == 1).await;
    let stats = inbound.stats();
    assert_eq!(
        (stats.received, stats.dead_lettered, stats.unheard),
        (1, 0, 0),
        "{stats:?}"
    );
    assert!(stats.retried >= 1, "{stats:?}");
    inbound.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_destination_that_refuses_pauses_the_bridge_instead_of_looping() {
    let broker = MemoryBroker::new();
    // Every dead-letter copy is refused and the message goes back to its queue.
    broker.refuse_dead_letters(true);
    let source = declared(&broker, "refusing").await;
    let bus = Bus::<Events>::new();
    let _seen = collect::<Tick>(&bus);
    // After a refusal the bridge pauses for half an hour or more: the message it gave back
    // is there for another consumer of the group, and the bridge does not take it again.
    let inbound = Inbound::builder(&bus, broker.clone(), source.clone())
        .backoff(Backoff::Fixed(Duration::from_secs(3600)))
        .build();
    let results = broker
        .publish(&[Outgoing {
            destination: "refusing".into(),
            envelope: Envelope::new("tick", b"not json".to_vec()),
        }])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    until("the bridge's first try", || inbound.stats().received >= 1).await;
    let mut other = broker.consume(&source).await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(30), other.next())
        .await
        .expect("the message given back")
        .expect("open")
        .expect("a delivery");
    assert_eq!(again.message.delivery_count, 2);
    let stats = inbound.stats();
    assert_eq!(
        (stats.received, stats.dead_lettered),
        (1, 0),
        "taken once, then a pause: {stats:?}"
    );
    drop(inbound);
    again.nack().await.unwrap();
    assert_eq!(broker.depth("refusing", "default"), 1, "never dropped");
}
