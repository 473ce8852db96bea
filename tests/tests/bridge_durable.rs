//! The durable outbound's logic against an in-memory store that fails on demand (no feature,
//! no file): a failing append is the emitter's error, a failing read is retried, a relay that
//! falls behind reads the store instead of memory and publishes each stored message once and
//! in order, and an outbound dropped before storing releases its emitters with an error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, join_all};
use parking_lot::Mutex;
use tidings::Bus;
use tidings::bridge::{
    Endpoint, MemoryBroker, MemoryConsumer, Outbound, OutboundStore, Outgoing, StoreError,
    StoredMessage, Transport,
};
use tidings_tests::{Events, OrderPlaced};

const WAIT: Duration = Duration::from_secs(30);

/// What the test store holds and how it misbehaves.
#[derive(Default)]
struct State {
    rows: BTreeMap<u64, Outgoing>,
    next: u64,
    fail_appends: usize,
    fail_reads: usize,
    reads: usize,
    /// Appends wait for ever (a store that hangs).
    hang: bool,
    appends: usize,
}

/// An [`OutboundStore`] in memory; clones share it.
#[derive(Clone, Default)]
struct TestStore(Arc<Mutex<State>>);

impl OutboundStore for TestStore {
    fn append(
        &self,
        messages: Vec<Outgoing>,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>> {
        Box::pin(async move {
            let hang = {
                let mut state = self.0.lock();
                state.appends += 1;
                state.hang
            };
            if hang {
                std::future::pending::<()>().await;
            }
            let mut state = self.0.lock();
            if state.fail_appends > 0 {
                state.fail_appends -= 1;
                return Err(StoreError::full("no room left (test)"));
            }
            let mut stored = Vec::new();
            for message in messages {
                state.next += 1;
                let seq = state.next;
                state.rows.insert(seq, message.clone());
                stored.push(StoredMessage { seq, message });
            }
            Ok(stored)
        })
    }

    fn read_after(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>> {
        Box::pin(async move {
            let mut state = self.0.lock();
            state.reads += 1;
            if state.fail_reads > 0 {
                state.fail_reads -= 1;
                return Err(StoreError::failed("cannot read (test)"));
            }
            Ok(state
                .rows
                .range(after + 1..)
                .take(limit)
                .map(|(&seq, message)| StoredMessage {
                    seq,
                    message: message.clone(),
                })
                .collect())
        })
    }

    fn forget<'a>(&'a self, positions: &'a [u64]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut state = self.0.lock();
            for seq in positions {
                state.rows.remove(seq);
            }
            Ok(())
        })
    }
}

async fn setup() -> (Bus<Events>, MemoryBroker) {
    let broker = MemoryBroker::new();
    broker.declare(&orders()).await.unwrap();
    (Bus::new(), broker)
}

fn orders() -> Endpoint {
    Endpoint::new("orders").prefetch(100_000)
}

async fn consumer(broker: &MemoryBroker) -> MemoryConsumer {
    broker.consume(&orders()).await.unwrap()
}

fn durable(bus: &Bus<Events>, broker: &MemoryBroker, store: &TestStore) -> Outbound<Events> {
    Outbound::builder(bus, broker.clone())
        .forward::<OrderPlaced>()
        .destination("orders")
        .batch(64, Duration::ZERO)
        .store(store.clone())
        .build()
}

/// The order numbers of the next `count` deliveries, acknowledged.
async fn received(consumer: &mut MemoryConsumer, count: usize) -> Vec<u64> {
    tidings_tests::memory::received_orders(consumer, count, WAIT).await
}

fn order(order: u64) -> OrderPlaced {
    OrderPlaced { order, cents: 1 }
}

#[tokio::test]
async fn a_failing_append_is_the_emitters_error_and_the_next_one_is_kept() {
    let (bus, broker) = setup().await;
    let mut consumer = consumer(&broker).await;
    let store = TestStore::default();
    store.0.lock().fail_appends = 1;
    let outbound = durable(&bus, &broker, &store);
    let error = bus.emit_and_wait(order(0)).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("failed on `order.placed`"), "{text}");
    assert!(
        text.contains("the outbound store is full: no room left (test)"),
        "{text}"
    );
    assert_eq!(outbound.stats().unstored, 1);
    bus.emit_and_wait(order(1)).await.unwrap();
    assert_eq!(received(&mut consumer, 1).await, [1]);
    assert!(outbound.shutdown(WAIT).await.is_clean());
    assert!(
        store.0.lock().rows.is_empty(),
        "confirmed messages are forgotten"
    );
}

#[tokio::test(start_paused = true)]
async fn what_the_store_holds_at_start_goes_first_even_when_reading_it_fails_at_first() {
    let (bus, broker) = setup().await;
    let store = TestStore::default();
    // An earlier outbound stored orders 0..10 while the broker was down, and was dropped.
    broker.disconnect();
    let earlier = durable(&bus, &broker, &store);
    for n in 0..10 {
        bus.emit_and_wait(order(n)).await.unwrap();
    }
    drop(earlier);
    assert_eq!(store.0.lock().rows.len(), 10);

    broker.reconnect();
    let mut consumer = consumer(&broker).await;
    store.0.lock().fail_reads = 3;
    let outbound = durable(&bus, &broker, &store);
    bus.emit_and_wait(order(10)).await.unwrap();
    assert_eq!(
        received(&mut consumer, 11).await,
        (0..11).collect::<Vec<_>>()
    );
    assert!(store.0.lock().reads >= 4, "the failed reads were retried");
    assert!(outbound.shutdown(WAIT).await.is_clean());
    assert!(store.0.lock().rows.is_empty());
}

#[tokio::test]
async fn a_relay_that_falls_behind_reads_the_store_and_publishes_each_message_once_in_order() {
    let (bus, broker) = setup().await;
    let mut consumer = consumer(&broker).await;
    let store = TestStore::default();
    let outbound = durable(&bus, &broker, &store);
    // A start reads the store (what an earlier outbound left); once one event went through
    // the hand-over, the relay reads the store again only after falling behind.
    bus.emit_and_wait(order(0)).await.unwrap();
    assert_eq!(received(&mut consumer, 1).await, [0]);
    let reads_at_start = store.0.lock().reads;
    // Slow publishes: the keeper outruns the relay and hands over no more.
    broker.set_publish_delay(Duration::from_millis(5));
    const N: u64 = 5_000;
    for chunk in (1..N).collect::<Vec<_>>().chunks(500) {
        let results = join_all(chunk.iter().map(|&n| bus.emit_and_wait(order(n)))).await;
        assert!(results.iter().all(Result::is_ok));
    }
    let reads_while_behind = store.0.lock().reads;
    broker.set_publish_delay(Duration::ZERO);
    assert_eq!(
        received(&mut consumer, N as usize - 1).await,
        (1..N).collect::<Vec<_>>()
    );
    assert!(outbound.shutdown(WAIT).await.is_clean());
    // Each message was published once (the broker's journal has every publish).
    assert_eq!(broker.journal().published_to("orders").count(), N as usize);
    assert!(
        reads_while_behind > reads_at_start,
        "the relay never read the store after its start ({reads_at_start} reads)"
    );
    assert!(store.0.lock().rows.is_empty());
}

#[tokio::test]
async fn a_sync_emit_is_stored_and_published_too_without_waiting_for_the_store() {
    let (bus, broker) = setup().await;
    broker.disconnect();
    let store = TestStore::default();
    let outbound = durable(&bus, &broker, &store);
    // The store hangs: a sync emit returns at once all the same (it does not wait).
    store.0.lock().hang = true;
    assert_eq!(bus.emit(order(1)), 1);
    while store.0.lock().appends == 0 {
        tokio::task::yield_now().await;
    }
    assert!(
        store.0.lock().rows.is_empty(),
        "not stored while the store hangs"
    );
    drop(outbound);
    // With a store that answers, it is stored, and published once the broker is back.
    store.0.lock().hang = false;
    let outbound = durable(&bus, &broker, &store);
    bus.emit(order(2));
    while outbound.stats().stored == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(store.0.lock().rows.len(), 1);
    broker.reconnect();
    let mut consumer = consumer(&broker).await;
    assert_eq!(received(&mut consumer, 1).await, [2]);
    assert!(outbound.shutdown(WAIT).await.is_clean());
}

#[tokio::test]
async fn an_outbound_dropped_before_storing_releases_its_emitters_with_an_error() {
    let (bus, broker) = setup().await;
    let store = TestStore::default();
    store.0.lock().hang = true;
    let outbound = durable(&bus, &broker, &store);
    let bus2 = bus.clone();
    let waiting = tokio::spawn(async move { bus2.emit_and_wait(order(0)).await });
    // Taken by the keeper, whose append hangs; then the bridge goes.
    while store.0.lock().appends == 0 {
        tokio::task::yield_now().await;
    }
    drop(outbound);
    let error = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("released")
        .unwrap()
        .unwrap_err();
    assert!(error.to_string().contains("order.placed"), "{error}");
}
