//! The outbox relay and the inbox with killed processes (features `postgres` and `amqp`:
//! PostgreSQL and RabbitMQ on loopback): a relay process SIGKILLed while another runs, and a
//! consumer process SIGKILLed mid-stream while every message comes twice.
#![cfg(all(feature = "postgres", feature = "amqp"))]

use std::collections::BTreeMap;
use std::time::Duration;

use tidings::Bus;
use tidings::bridge::{Consumer, Endpoint, Envelope, Inbound, Outgoing, Transport};
use tidings_bridges::amqp::AmqpTransport;
use tidings_bridges::postgres::{Inbox, Outbox, Relay};
use tidings_tests::pg::{DropTables, URL as PG, client, orders_twice, record_orders_once, unique};
use tidings_tests::rabbit::{cleanup, connect};
use tidings_tests::{Events, OrderPlaced, child_test};

const WAIT: Duration = Duration::from_secs(120);

/// An endpoint on RabbitMQ of a test's own, declared.
async fn endpoint(t: &AmqpTransport, prefix: &str) -> Endpoint {
    let endpoint = Endpoint::new(tidings_tests::rabbit::unique(prefix)).prefetch(500);
    t.declare(&endpoint).await.expect("declare");
    endpoint
}

/// As the child: relays the outbox `TIDINGS_RELAY_CHILD` names to RabbitMQ, slowly (batches
/// of 20), until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_relay() {
    let Ok(table) = std::env::var("TIDINGS_RELAY_CHILD") else {
        return; // Only runs as the child.
    };
    let t = connect("relay-child").await;
    let outbox = Outbox::new(&table).unwrap();
    let _relay = Relay::builder(PG, &outbox, t)
        .unwrap()
        .batch_size(20)
        .poll_every(Duration::from_millis(100))
        .spawn();
    println!("relaying");
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_process_killed_mid_stream_loses_nothing_and_keeps_each_keys_order() {
    const KEYS: u64 = 20;
    const PER_KEY: u64 = 250;
    let t = connect("relay-parent").await;
    let endpoint = endpoint(&t, "relayed").await;
    let table = unique("outbox");
    let _drop = DropTables(vec![table.clone()]);
    let outbox = Outbox::new(&table).unwrap();
    let mut db = client().await;
    outbox.create(&db).await.unwrap();
    for seq in 0..PER_KEY {
        let tx = db.transaction().await.unwrap();
        for key in 0..KEYS {
            let mut envelope = Envelope::new(
                "order.placed",
                serde_json::to_vec(&OrderPlaced {
                    order: seq,
                    cents: key,
                })
                .unwrap(),
            );
            envelope.key = Some(format!("k{key}"));
            let out = Outgoing {
                destination: endpoint.name.clone(),
                envelope,
            };
            outbox.stage_outgoing(&tx, &out).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let mut doomed = child_test(
        "child_relay",
        &[("TIDINGS_RELAY_CHILD", &table)],
        "relaying",
        WAIT,
    )
    .await;
    let pending_sql = format!("SELECT count(*) FROM {table} WHERE published_at IS NULL");
    let pending = async |db: &tokio_postgres::Client| -> i64 {
        db.query_one(&pending_sql, &[]).await.unwrap().get(0)
    };
    tokio::time::timeout(WAIT, async {
        while pending(&db).await > (KEYS * PER_KEY * 3 / 4) as i64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the child relays");
    let survivor = Relay::builder(PG, &outbox, t.clone())
        .unwrap()
        .batch_size(20)
        .spawn();
    doomed.start_kill().expect("kill");
    doomed.wait().await.expect("reaped");

    // Every row arrives; per key in order, a row published again only after a cut round.
    let mut consumer = t.consume(&endpoint).await.expect("consume");
    let mut next: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut seen, mut duplicates) = (0, 0);
    while seen < KEYS * PER_KEY {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {seen} of {} arrived", KEYS * PER_KEY))
            .expect("open")
            .expect("a delivery");
        let o: OrderPlaced = serde_json::from_slice(&delivery.message.payload).unwrap();
        let expected = next.entry(o.cents).or_insert(0);
        if o.order < *expected {
            duplicates += 1;
        } else {
            assert_eq!(
                o.order, *expected,
                "key {}: {} came before {expected}",
                o.cents, o.order
            );
            *expected += 1;
            seen += 1;
        }
        delivery.ack().await.unwrap();
    }
    println!("a killed relay: {duplicates} duplicates of {seen} rows");
    assert!(survivor.shutdown(WAIT).await.is_clean());
    assert_eq!(pending(&db).await, 0);
    drop(consumer);
    cleanup(&t, &endpoint).await;
}

/// As the child: consumes `TIDINGS_INBOX_CHILD`'s queue with the inbox, four at a time,
/// until killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_inbox_consumer() {
    let Ok(spec) = std::env::var("TIDINGS_INBOX_CHILD") else {
        return; // Only runs as the child.
    };
    let (queue, inbox_table, effects) = {
        let parts: Vec<&str> = spec.split(',').collect();
        (
            parts[0].to_owned(),
            parts[1].to_owned(),
            parts[2].to_owned(),
        )
    };
    let t = connect("inbox-child").await;
    let inbound = consume_with_inbox(&t, &queue, &inbox_table, &effects).await;
    println!("consuming");
    std::future::pending::<()>().await;
    drop(inbound);
}

/// An inbound bridge on `queue` whose handler records each message in the inbox and inserts
/// its order into `effects`, in one transaction.
async fn consume_with_inbox(
    t: &AmqpTransport,
    queue: &str,
    inbox_table: &str,
    effects: &str,
) -> Inbound {
    let inbox = Inbox::new(inbox_table).unwrap();
    let bus = Bus::<Events>::new();
    record_orders_once(&bus, &inbox, effects).await;
    Inbound::builder(&bus, t.clone(), Endpoint::new(queue).prefetch(100))
        .concurrency(4)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_twice_and_a_consumer_killed_mid_stream_take_effect_once_each() {
    const N: u64 = 10_000;
    let t = connect("inbox-parent").await;
    let endpoint = endpoint(&t, "inboxed").await;
    let (inbox_table, effects) = (unique("inbox"), unique("effects"));
    let _drop = DropTables(vec![inbox_table.clone(), effects.clone()]);
    let db = client().await;
    Inbox::new(&inbox_table).unwrap().create(&db).await.unwrap();
    db.batch_execute(&format!(
        "CREATE TABLE {effects} (order_id bigint NOT NULL)"
    ))
    .await
    .unwrap();
    // Each message twice, with its id, as a broker redelivering.
    for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
        let batch = orders_twice(&endpoint.name, chunk.iter().copied());
        assert!(t.publish(&batch).await.iter().all(Result::is_ok));
    }
    let count = |sql: String| {
        let db = &db;
        async move { db.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let spec = format!("{},{inbox_table},{effects}", endpoint.name);
    let mut doomed = child_test(
        "child_inbox_consumer",
        &[("TIDINGS_INBOX_CHILD", &spec)],
        "consuming",
        WAIT,
    )
    .await;
    tokio::time::timeout(WAIT, async {
        while count(format!("SELECT count(*) FROM {effects}")).await < 3_000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the child handles");
    doomed.start_kill().expect("kill");
    doomed.wait().await.expect("reaped");

    // What the child held comes again; another consumer finishes the stream.
    let inbound = consume_with_inbox(&t, &endpoint.name, &inbox_table, &effects).await;
    tokio::time::timeout(WAIT, async {
        while count(format!("SELECT count(*) FROM {inbox_table}")).await < N as i64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every message recorded");
    // And every second copy taken too: nothing left waiting in the queue.
    tokio::time::timeout(WAIT, async {
        while inbound.stats().lag != Some(0) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the queue drained");
    assert!(inbound.shutdown(WAIT).await.is_clean());
    assert_eq!(
        count(format!("SELECT count(*) FROM {effects}")).await,
        N as i64
    );
    assert_eq!(
        count(format!("SELECT count(DISTINCT order_id) FROM {effects}")).await,
        N as i64
    );
    cleanup(&t, &endpoint).await;
}
