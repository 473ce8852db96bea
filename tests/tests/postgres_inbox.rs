//! The inbox on the local PostgreSQL (feature `postgres`): an id recorded once per consumer,
//! racing transactions, handlers behind an inbound bridge that gets every message twice, and
//! bad input.
#![cfg(feature = "postgres")]

use std::sync::Arc;
use std::time::Duration;

use tidings::bridge::{Endpoint, Inbound, MemoryBroker, Transport};
use tidings::{Bus, MessageContext};
use tidings_bridges::postgres::{Error, Inbox};
use tidings_tests::Events;
use tidings_tests::pg::{DropTables, client, orders_twice, record_orders_once, unique};

const WAIT: Duration = Duration::from_secs(60);

async fn inbox() -> (Inbox, String, DropTables) {
    let table = unique("inbox");
    let inbox = Inbox::new(&table).unwrap();
    inbox.create(&client().await).await.unwrap();
    (inbox, table.clone(), DropTables(vec![table]))
}

#[tokio::test]
async fn an_id_is_new_once_per_consumer_and_expires() {
    let (inbox, _, _drop) = inbox().await;
    let mut db = client().await;
    let tx = db.transaction().await.unwrap();
    assert!(inbox.record(&tx, "m-1").await.unwrap());
    assert!(!inbox.record(&tx, "m-1").await.unwrap());
    let other = inbox.clone().consumer("audit");
    assert!(
        other.record(&tx, "m-1").await.unwrap(),
        "another consumer sees it new"
    );
    tx.commit().await.unwrap();
    assert!(!inbox.record(&db, "m-1").await.unwrap());
    assert_eq!(
        inbox.expire(&db, Duration::from_secs(3600)).await.unwrap(),
        0
    );
    assert_eq!(inbox.expire(&db, Duration::ZERO).await.unwrap(), 2);
    assert!(
        inbox.record(&db, "m-1").await.unwrap(),
        "new again once expired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_racing_transaction_waits_then_skips_after_a_commit_and_works_after_a_rollback() {
    let (inbox, _, _drop) = inbox().await;
    for commit in [true, false] {
        let id = format!("race-{commit}");
        let mut first = client().await;
        let tx = first.transaction().await.unwrap();
        assert!(inbox.record(&tx, &id).await.unwrap());
        let (racer_inbox, racer_id) = (inbox.clone(), id.clone());
        let racer = tokio::spawn(async move {
            let mut second = client().await;
            let tx = second.transaction().await.unwrap();
            let new = racer_inbox.record(&tx, &racer_id).await.unwrap();
            tx.commit().await.unwrap();
            new
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!racer.is_finished(), "the second waits for the first");
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
        assert_eq!(racer.await.unwrap(), !commit, "commit: {commit}");
    }
}

#[tokio::test]
async fn recording_needs_a_message_with_an_id() {
    let (inbox, _, _drop) = inbox().await;
    let db = client().await;
    let error = inbox.record_current(&db).await.unwrap_err();
    assert!(
        matches!(&error, Error::Invalid(m) if m.contains("no message")),
        "{error}"
    );
    let context = Arc::new(MessageContext::new("orders"));
    let error = context.scope(inbox.record_current(&db)).await.unwrap_err();
    assert!(
        matches!(&error, Error::Invalid(m) if m.contains("has no id")),
        "{error}"
    );
    let context = Arc::new(MessageContext::new("orders").with_id("m-9"));
    assert!(context.scope(inbox.record_current(&db)).await.unwrap());
    for bad in ["", "inbox;--", "x.y.z"] {
        assert!(matches!(Inbox::new(bad), Err(Error::Invalid(_))), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_delivered_twice_takes_effect_once() {
    const N: u64 = 2_000;
    let (inbox, _, _inbox_drop) = inbox().await;
    let effects = unique("effects");
    let _effects_drop = DropTables(vec![effects.clone()]);
    client()
        .await
        .batch_execute(&format!(
            "CREATE TABLE {effects} (order_id bigint NOT NULL)"
        ))
        .await
        .unwrap();
    let broker = MemoryBroker::new();
    let endpoint = Endpoint::new("orders").prefetch(64);
    broker.declare(&endpoint).await.unwrap();
    let bus = Bus::<Events>::new();
    record_orders_once(&bus, &inbox, &effects).await;
    let inbound = Inbound::builder(&bus, broker.clone(), endpoint)
        .concurrency(4)
        .build();
    // Each message twice, with its id: as a broker redelivering after a lost acknowledgement.
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        let batch = orders_twice("orders", chunk.iter().copied());
        for result in broker.publish(&batch).await {
            result.unwrap();
        }
    }
    tokio::time::timeout(WAIT, async {
        while inbound.stats().handled < 2 * N {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("handled only {:?}", inbound.stats()));
    let count = |sql: String| async move {
        client()
            .await
            .query_one(&sql, &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(
        count(format!("SELECT count(*) FROM {effects}")).await,
        N as i64
    );
    assert_eq!(
        count(format!("SELECT count(DISTINCT order_id) FROM {effects}")).await,
        N as i64
    );
    assert!(inbound.shutdown(WAIT).await.is_clean());
}
