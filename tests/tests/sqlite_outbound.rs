//! The durable outbound on SQLite files (feature `sqlite`; no server): an event is in the file
//! before its emitter is released, the broker gets every event in order, a restart publishes
//! what an earlier outbound left, and a full store, a full file system, a read-only file system
//! and a file already in use are the emitter's (or the opener's) clear error.
#![cfg(feature = "sqlite")]

use std::time::Duration;

use futures_util::future::join_all;
use tidings::Bus;
use tidings::bridge::{Endpoint, MemoryBroker, MemoryConsumer, Outbound, Transport};
use tidings_bridges::sqlite::SqliteStore;
use tidings_tests::sqlite::{Folder, Tmpfs};
use tidings_tests::{Events, OrderPlaced};

const WAIT: Duration = Duration::from_secs(30);

/// A memory broker with the queue `orders` declared.
async fn broker() -> MemoryBroker {
    let broker = MemoryBroker::new();
    broker.declare(&Endpoint::new("orders")).await.unwrap();
    broker
}

/// A consumer of `orders` (on a connected broker).
async fn consumer(broker: &MemoryBroker) -> MemoryConsumer {
    broker.consume(&Endpoint::new("orders")).await.unwrap()
}

fn durable(bus: &Bus<Events>, broker: &MemoryBroker, store: SqliteStore) -> Outbound<Events> {
    Outbound::builder(bus, broker.clone())
        .forward::<OrderPlaced>()
        .destination("orders")
        .store(store)
        .build()
}

/// `count` orders of one key (so one order), emitted together and awaited.
async fn emit_orders(bus: &Bus<Events>, from: u64, count: u64) -> Vec<Result<usize, String>> {
    let emits = (from..from + count).map(|order| async move {
        bus.emit_and_wait(OrderPlaced { order, cents: 7 })
            .await
            .map_err(|e| format!("{e}: {:?}", e.failures()))
    });
    join_all(emits).await
}

/// How many messages the store at `path` holds (opened for the question, closed after).
async fn pending(path: &std::path::Path) -> u64 {
    let store = SqliteStore::open(path).await.expect("the store opens");
    store.pending().await.expect("the store answers")
}

/// The order numbers of the next `count` deliveries, acknowledged.
async fn received(consumer: &mut MemoryConsumer, count: usize) -> Vec<u64> {
    tidings_tests::memory::received_orders(consumer, count, WAIT).await
}

#[tokio::test]
async fn an_emit_is_released_once_stored_and_the_broker_gets_every_event_in_order() {
    let folder = Folder::new("stored");
    let broker = broker().await;
    let mut consumer = consumer(&broker).await;
    let bus = Bus::<Events>::new();
    let store = SqliteStore::open(folder.file("out.sqlite")).await.unwrap();
    let outbound = durable(&bus, &broker, store);
    let results = emit_orders(&bus, 0, 500).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(outbound.stats().stored, 500);
    assert_eq!(
        received(&mut consumer, 500).await,
        (0..500).collect::<Vec<_>>()
    );
    assert!(outbound.shutdown(WAIT).await.is_clean());
    // Every confirmed message was forgotten.
    assert_eq!(pending(&folder.file("out.sqlite")).await, 0);
}

#[tokio::test]
async fn what_an_outbound_stored_while_the_broker_was_down_the_next_one_publishes_first() {
    let folder = Folder::new("restart");
    let path = folder.file("out.sqlite");
    let broker = broker().await;
    broker.disconnect();
    let bus = Bus::<Events>::new();
    let outbound = durable(&bus, &broker, SqliteStore::open(&path).await.unwrap());
    let results = emit_orders(&bus, 0, 100).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let stats = outbound.stats();
    assert_eq!((stats.stored, stats.confirmed), (100, 0), "{stats:?}");
    // Stored events are not lost when the outbound stops unconfirmed: the report is clean.
    let report = outbound.shutdown(Duration::from_millis(100)).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(pending(&path).await, 100);

    broker.reconnect();
    let mut consumer = consumer(&broker).await;
    let outbound = durable(&bus, &broker, SqliteStore::open(&path).await.unwrap());
    let results = emit_orders(&bus, 100, 50).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let arrived = received(&mut consumer, 150).await;
    assert_eq!(arrived, (0..150).collect::<Vec<_>>());
    assert!(outbound.shutdown(WAIT).await.is_clean());
    assert_eq!(pending(&path).await, 0);
}

#[tokio::test]
async fn a_full_store_is_the_emitters_error_and_takes_events_again_once_drained() {
    let folder = Folder::new("full");
    let broker = broker().await;
    broker.disconnect();
    let bus = Bus::<Events>::new();
    let store = SqliteStore::builder(folder.file("out.sqlite"))
        .max_size(64 * 1024)
        .open()
        .await
        .unwrap();
    let outbound = durable(&bus, &broker, store);
    let mut accepted = 0u64;
    let refusal = loop {
        match emit_orders(&bus, accepted, 1).await.remove(0) {
            Ok(_) => accepted += 1,
            Err(error) => break error,
        }
        assert!(accepted < 100_000, "a 64 KiB store took {accepted} events");
    };
    assert!(refusal.contains("order.placed"), "{refusal}");
    assert!(refusal.contains("the outbound store is full"), "{refusal}");
    assert!(refusal.contains("database or disk is full"), "{refusal}");
    assert_eq!(outbound.stats().unstored, 1);
    assert!(accepted > 100, "only {accepted} events fit");

    // The broker comes back: what was accepted arrives, and the store has room again.
    broker.reconnect();
    let mut consumer = consumer(&broker).await;
    let arrived = received(&mut consumer, accepted as usize).await;
    assert_eq!(arrived, (0..accepted).collect::<Vec<_>>());
    tokio::time::timeout(WAIT, async {
        while emit_orders(&bus, accepted, 1).await[0].is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the store takes events again");
    assert_eq!(received(&mut consumer, 1).await, [accepted]);
    outbound.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_full_file_system_is_the_emitters_error() {
    let disk = Tmpfs::mount(256 * 1024);
    let broker = broker().await;
    broker.disconnect();
    let bus = Bus::<Events>::new();
    let store = SqliteStore::open(disk.path().join("out.sqlite"))
        .await
        .unwrap();
    let outbound = durable(&bus, &broker, store);
    let mut accepted = 0u64;
    let refusal = loop {
        let results = emit_orders(&bus, accepted, 100).await;
        accepted += results.iter().filter(|r| r.is_ok()).count() as u64;
        if let Some(Err(error)) = results.into_iter().find(Result::is_err) {
            break error;
        }
        assert!(
            accepted < 1_000_000,
            "a 256 KiB file system took {accepted} events"
        );
    };
    assert!(refusal.contains("order.placed"), "{refusal}");
    assert!(refusal.contains("the outbound store is full"), "{refusal}");
    assert!(outbound.stats().unstored > 0);
    drop(outbound);
}

#[tokio::test]
async fn a_read_only_file_system_is_a_clear_error_at_open() {
    let disk = Tmpfs::mount(1024 * 1024);
    let kept = disk.path().join("kept.sqlite");
    drop(SqliteStore::open(&kept).await.unwrap());
    disk.read_only(true);
    for name in ["kept.sqlite", "new.sqlite"] {
        let error = SqliteStore::open(disk.path().join(name)).await.unwrap_err();
        let text = error.to_string();
        assert!(text.contains("cannot open the outbound store"), "{text}");
        assert!(text.contains(name), "{text}");
        assert!(text.contains("Read-only file system"), "{name}: {text}");
    }
    disk.read_only(false);
}

#[tokio::test]
async fn a_file_in_use_by_another_store_is_refused() {
    let folder = Folder::new("in-use");
    let path = folder.file("out.sqlite");
    let first = SqliteStore::open(&path).await.unwrap();
    let error = SqliteStore::open(&path).await.unwrap_err().to_string();
    assert!(error.contains("database is locked"), "{error}");
    drop(first);
    SqliteStore::open(&path)
        .await
        .expect("free again once the first is dropped");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let folder = Folder::new("garbage");
    let path = folder.file("out.sqlite");
    std::fs::write(&path, vec![0xA5u8; 8192]).unwrap();
    let error = SqliteStore::open(&path).await.unwrap_err().to_string();
    assert!(error.contains("not a database"), "{error}");
}

#[tokio::test]
async fn the_store_forgets_what_it_is_told_and_never_gives_a_position_twice() {
    use tidings::bridge::{Envelope, OutboundStore, Outgoing};
    let folder = Folder::new("positions");
    let path = folder.file("out.sqlite");
    let message = |n: u64| Outgoing {
        destination: "orders".into(),
        envelope: Envelope::new("order.placed", format!("{{\"order\":{n}}}").into_bytes())
            .with_key(format!("k{n}")),
    };
    let store = SqliteStore::open(&path).await.unwrap();
    let mut sent: Vec<Outgoing> = (1..=10).map(message).collect();
    sent[0]
        .envelope
        .headers
        .insert("traceparent".into(), "00-abc-def-01".into());
    let stored = store.append(sent.clone()).await.unwrap();
    let positions: Vec<u64> = stored.iter().map(|m| m.seq).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    // Apart (one by one) and together (as a range).
    store
        .forget(&[positions[1], positions[2], positions[6]])
        .await
        .unwrap();
    store.forget(&positions[7..]).await.unwrap();
    let left = store.read_after(0, 100).await.unwrap();
    let kept: Vec<u64> = left.iter().map(|m| m.seq).collect();
    assert_eq!(
        kept,
        [positions[0], positions[3], positions[4], positions[5]]
    );
    // Every field comes back as it went in (time to the microsecond).
    let first = &left[0].message;
    assert_eq!(first.destination, sent[0].destination);
    let (a, b) = (&first.envelope, &sent[0].envelope);
    assert_eq!(
        (&a.id, &a.name, &a.key, &a.source),
        (&b.id, &b.name, &b.key, &b.source)
    );
    assert_eq!(
        (&a.content_type, &a.headers, &a.payload),
        (&b.content_type, &b.headers, &b.payload)
    );
    let drift = b.time.duration_since(a.time).unwrap_or_default();
    assert!(drift < Duration::from_micros(1), "{drift:?}");
    assert_eq!(
        store.read_after(positions[4], 1).await.unwrap()[0].seq,
        positions[5]
    );

    // Emptied and opened again, it still counts on from the last position it gave.
    store.forget(&kept).await.unwrap();
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.pending().await.unwrap(), 0);
    let next = store.append(vec![message(11)]).await.unwrap();
    assert!(
        next[0].seq > positions[9],
        "{} after {}",
        next[0].seq,
        positions[9]
    );
}
