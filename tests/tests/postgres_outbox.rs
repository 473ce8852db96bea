//! The transactional outbox and its relay on the local PostgreSQL (feature `postgres`), with
//! the memory broker as the transport: commit and rollback, per-key order with two relays, a
//! relay cut off mid-round, a broker that goes away, refused messages, bad input.
#![cfg(feature = "postgres")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tidings::Backoff;
use tidings::bridge::{Consumer, Endpoint, MemoryBroker, Transport};
use tidings_bridges::postgres::{Error, Outbox, Relay};
use tidings_tests::OrderPlaced;
use tidings_tests::pg::{DropTables, URL, client, unique};

const WAIT: Duration = Duration::from_secs(30);

/// A broker with the endpoint `orders` declared, and an outbox table of a test's own.
async fn setup() -> (MemoryBroker, Endpoint, Outbox, DropTables) {
    let broker = MemoryBroker::new();
    let endpoint = Endpoint::new("orders").prefetch(10_000);
    broker.declare(&endpoint).await.unwrap();
    let table = unique("outbox");
    let outbox = Outbox::new(&table).unwrap().source("tidings://shop");
    outbox.create(&client().await).await.unwrap();
    (broker, endpoint, outbox, DropTables(vec![table]))
}

fn relay(outbox: &Outbox, broker: &MemoryBroker) -> Relay {
    Relay::builder(URL, outbox, broker.clone())
        .unwrap()
        .poll_every(Duration::from_millis(200))
        .backoff(Backoff::Fixed(Duration::from_millis(50)))
        .batch_size(100)
        .spawn()
}

/// Reads `n` messages from `endpoint`, acknowledging each; (order, key) of each.
async fn read(broker: &MemoryBroker, endpoint: &Endpoint, n: usize) -> Vec<(u64, Option<String>)> {
    let mut consumer = broker.consume(endpoint).await.unwrap();
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages arrived", got.len()))
            .expect("open")
            .expect("a delivery");
        let order: OrderPlaced = serde_json::from_slice(&delivery.message.payload).unwrap();
        got.push((order.order, delivery.message.key.clone()));
        delivery.ack().await.unwrap();
    }
    got
}

#[tokio::test]
async fn a_committed_transaction_publishes_its_events_in_order_and_a_rolled_back_one_nothing() {
    let (broker, endpoint, outbox, _drop) = setup().await;
    let mut db = client().await;
    let relay = relay(&outbox, &broker);

    let tx = db.transaction().await.unwrap();
    for order in 0..3 {
        outbox
            .stage(&tx, "orders", &OrderPlaced { order, cents: 100 })
            .await
            .unwrap();
    }
    tx.rollback().await.unwrap();
    let tx = db.transaction().await.unwrap();
    for order in 10..15 {
        outbox
            .stage(&tx, "orders", &OrderPlaced { order, cents: 100 })
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let got = read(&broker, &endpoint, 5).await;
    assert_eq!(
        got.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        [10, 11, 12, 13, 14]
    );
    let journal = broker.journal();
    assert_eq!(
        journal.published.len(),
        5,
        "the rolled-back three never went out"
    );
    let first = &journal.published[0].envelope;
    assert_eq!(
        (first.name.as_str(), first.source.as_str()),
        ("order.placed", "tidings://shop")
    );
    // The rows are marked in the round's transaction, which may commit just after the
    // broker had them: the shutdown lets it finish.
    assert!(relay.shutdown(WAIT).await.is_clean());
    let pending: i64 = db
        .query_one(
            &format!(
                "SELECT count(*) FROM {} WHERE published_at IS NULL",
                outbox.table()
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0);
}

/// Stages `per_key` events for each of `keys` keys from `writers` concurrent transactions.
async fn stage_keyed(outbox: &Outbox, keys: u64, per_key: u64, writers: u64) {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let outbox = outbox.clone();
        tasks.push(tokio::spawn(async move {
            let mut db = client().await;
            // Writer `w` stages the keys congruent to it, a few per transaction.
            for seq in 0..per_key {
                let tx = db.transaction().await.unwrap();
                for key in (w..keys).step_by(writers as usize) {
                    let mut out = tidings::bridge::Outgoing {
                        destination: "orders".into(),
                        envelope: tidings::bridge::Envelope::new(
                            "order.placed",
                            serde_json::to_vec(&OrderPlaced {
                                order: seq,
                                cents: key,
                            })
                            .unwrap(),
                        ),
                    };
                    out.envelope.key = Some(format!("k{key}"));
                    outbox.stage_outgoing(&tx, &out).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Per key, the orders in arrival order must be 0, 1, 2... (repeats allowed after a cut).
fn assert_per_key_order(got: &[(u64, Option<String>)]) -> usize {
    let mut next: BTreeMap<&str, u64> = BTreeMap::new();
    let mut duplicates = 0;
    for (order, key) in got {
        let key = key.as_deref().expect("keyed");
        let expected = next.entry(key).or_insert(0);
        if *order < *expected {
            duplicates += 1; // published again after a cut-off round: allowed, counted
            continue;
        }
        if *order != *expected {
            let of_key: Vec<u64> = got
                .iter()
                .filter(|(_, k)| k.as_deref() == Some(key))
                .map(|(o, _)| *o)
                .collect();
            panic!("key {key}: order {order} came before {expected}: {of_key:?}");
        }
        *expected += 1;
    }
    duplicates
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_keep_each_keys_order_and_publish_every_row_once() {
    let (broker, endpoint, outbox, _drop) = setup().await;
    let (a, b) = (relay(&outbox, &broker), relay(&outbox, &broker));
    stage_keyed(&outbox, 20, 50, 4).await;
    let got = read(&broker, &endpoint, 1000).await;
    let duplicates = assert_per_key_order(&got);
    assert_eq!(duplicates, 0, "no row published twice when no relay fails");
    // Counted once each round commits, which may be just after the broker had the rows.
    tokio::time::timeout(WAIT, async {
        while a.stats().published + b.stats().published < 1000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("every row counted");
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.published + sb.published, 1000, "{sa:?} {sb:?}");
    assert!(
        sa.published > 0 && sb.published > 0,
        "both relays worked: {sa:?} {sb:?}"
    );
    assert!(a.shutdown(WAIT).await.is_clean());
    assert!(b.shutdown(WAIT).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_cut_off_mid_stream_loses_nothing_and_breaks_no_order() {
    let (broker, endpoint, outbox, _drop) = setup().await;
    // Slow publishes, so the cut falls inside a round.
    broker.set_publish_delay(Duration::from_millis(20));
    let doomed = relay(&outbox, &broker);
    stage_keyed(&outbox, 10, 30, 2).await;
    tokio::time::timeout(WAIT, async {
        while doomed.stats().published < 50 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first relay publishes");
    drop(doomed); // as a killed process: its round is rolled back with its connection
    let survivor = relay(&outbox, &broker);
    let published = broker.journal().published.len();
    // Every row arrives; what the cut round had sent before it was rolled back comes twice.
    let mut consumer = broker.consume(&endpoint).await.unwrap();
    let mut got = Vec::new();
    let mut distinct = std::collections::BTreeSet::new();
    while distinct.len() < 300 {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of 300 rows arrived", distinct.len()))
            .expect("open")
            .expect("a delivery");
        let order: OrderPlaced = serde_json::from_slice(&delivery.message.payload).unwrap();
        let key = delivery.message.key.clone();
        distinct.insert((order.order, key.clone()));
        got.push((order.order, key));
        delivery.ack().await.unwrap();
    }
    let journal: Vec<(u64, Option<String>)> = broker
        .journal()
        .published
        .iter()
        .map(|o| {
            let order: OrderPlaced = serde_json::from_slice(&o.envelope.payload).unwrap();
            (order.order, o.envelope.key.clone())
        })
        .collect();
    assert_per_key_order(&journal);
    let duplicates = assert_per_key_order(&got);
    println!("cut after {published} publishes: {duplicates} duplicates");
    assert!(survivor.shutdown(WAIT).await.is_clean());
}

/// Order `order` for `orders`, keyed `k`.
fn keyed(order: u64) -> tidings::bridge::Outgoing {
    let mut out = tidings::bridge::Outgoing {
        destination: "orders".into(),
        envelope: tidings::bridge::Envelope::new(
            "order.placed",
            serde_json::to_vec(&OrderPlaced { order, cents: 1 }).unwrap(),
        ),
    };
    out.envelope.key = Some("k".into());
    out
}

#[tokio::test]
async fn rows_wait_while_the_broker_is_away_and_a_refused_one_does_not_hold_up_its_key() {
    let (broker, endpoint, outbox, _drop) = setup().await;
    let mut db = client().await;
    broker.disconnect();
    let relay = relay(&outbox, &broker);
    let tx = db.transaction().await.unwrap();
    outbox.stage_outgoing(&tx, &keyed(1)).await.unwrap();
    let mut nowhere = keyed(2);
    nowhere.destination = "nowhere".into(); // unroutable: refused outright
    outbox.stage_outgoing(&tx, &nowhere).await.unwrap();
    outbox.stage_outgoing(&tx, &keyed(3)).await.unwrap();
    tx.commit().await.unwrap();
    tokio::time::timeout(WAIT, async {
        while relay.stats().failed_rounds < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("rounds fail while the broker is away");
    assert!(broker.journal().published.is_empty());
    broker.reconnect();
    let got = read(&broker, &endpoint, 2).await;
    assert_eq!(got.iter().map(|(o, _)| *o).collect::<Vec<_>>(), [1, 3]);
    assert!(relay.shutdown(WAIT).await.is_clean());
    let failure: Option<String> = db
        .query_one(
            &format!(
                "SELECT failure FROM {} WHERE destination = 'nowhere'",
                outbox.table()
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        failure.as_deref().is_some_and(|f| f.contains("nowhere")),
        "{failure:?}"
    );
}

#[test]
fn bad_names_and_connection_strings_are_refused_without_their_passwords() {
    const PASSWORD: &str = "s3cr3t-pw";
    for bad in ["", "outbox; DROP TABLE x", "a.b.c", "1outbox"] {
        assert!(
            matches!(Outbox::new(bad), Err(Error::Invalid(_))),
            "{bad:?}"
        );
    }
    let outputs = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let o = Arc::clone(&outputs);
    let logs = tidings_tests::with_logs(tracing::Level::DEBUG, false, move |_| async move {
        let outbox = Outbox::new("outbox").unwrap();
        let error = Relay::builder(
            &format!("postgresql://u:{PASSWORD}@127.0.0.1:5432/x?bogus=1"),
            &outbox,
            MemoryBroker::new(),
        )
        .map(|_| ())
        .unwrap_err();
        o.lock().push(("the parse error", error.to_string()));
        // A role the server refuses: every round fails, logged, and no line quotes the password.
        let relay = Relay::builder(
            &format!("postgresql://nobody:{PASSWORD}@127.0.0.1:5432/test"),
            &outbox,
            MemoryBroker::new(),
        )
        .unwrap()
        .backoff(Backoff::Fixed(Duration::from_millis(20)))
        .spawn();
        o.lock().push(("Debug", format!("{relay:?}")));
        tokio::time::timeout(WAIT, async {
            while relay.stats().failed_rounds < 3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("rounds fail while the server refuses the role");
        assert!(relay.shutdown(WAIT).await.is_clean());
    });
    let text = logs.text();
    assert!(text.contains("outbox relay round failed"), "{text}");
    let mut all: Vec<(&str, &str)> = vec![("the logs", text.as_str())];
    let outputs = outputs.lock();
    all.extend(outputs.iter().map(|(what, out)| (*what, out.as_str())));
    tidings_tests::assert_hidden(PASSWORD, &all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_resumes_after_postgres_stops_and_starts_mid_stream() {
    let cluster = tokio::task::spawn_blocking(tidings_tests::pg::Cluster::start)
        .await
        .unwrap();
    let url = cluster.url();
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let broker = MemoryBroker::new();
    let endpoint = Endpoint::new("orders").prefetch(10_000);
    broker.declare(&endpoint).await.unwrap();
    let outbox = Outbox::new("outbox").unwrap();
    outbox.create(&db).await.unwrap();
    for order in 0..2_000_u64 {
        outbox
            .stage(&db, "orders", &OrderPlaced { order, cents: 1 })
            .await
            .unwrap();
    }
    broker.set_publish_delay(Duration::from_millis(5));
    let relay = Relay::builder(&url, &outbox, broker.clone())
        .unwrap()
        .batch_size(50)
        .poll_every(Duration::from_millis(100))
        .backoff(Backoff::Fixed(Duration::from_millis(100)))
        .spawn();
    tokio::time::timeout(WAIT, async {
        while broker.journal().published.len() < 300 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the relay publishes");
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.down();
        std::thread::sleep(Duration::from_millis(500));
        cluster.up();
        cluster
    })
    .await
    .unwrap();
    // Every row arrives; the round cut by the stop went out before its commit and comes twice.
    let mut consumer = broker.consume(&endpoint).await.unwrap();
    let (mut distinct, mut deliveries) = (std::collections::BTreeSet::new(), 0);
    while distinct.len() < 2_000 {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of 2000 rows arrived", distinct.len()))
            .expect("open")
            .expect("a delivery");
        let order: OrderPlaced = serde_json::from_slice(&delivery.message.payload).unwrap();
        distinct.insert(order.order);
        deliveries += 1;
        delivery.ack().await.unwrap();
    }
    println!("a stop mid-stream: {} duplicates", deliveries - 2_000);
    let stats = relay.stats();
    assert!(stats.failed_rounds > 0, "the outage was seen: {stats:?}");
    assert!(relay.shutdown(WAIT).await.is_clean());
    drop(cluster);
}

/// Transactions racing to stage one key: the relay publishes the key's rows in the order of
/// their numbers, which staging made the order of their commits (without the key's lock
/// taken before the number, a later number could commit first and go out first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_transactions_on_one_key_go_out_in_the_order_they_committed() {
    let (broker, endpoint, outbox, _drop) = setup().await;
    let relay = relay(&outbox, &broker);
    let mut writers = Vec::new();
    for w in 0..4_u64 {
        let outbox = outbox.clone();
        writers.push(tokio::spawn(async move {
            let mut db = client().await;
            for n in 0..100_u64 {
                let tx = db.transaction().await.unwrap();
                let mut out = tidings::bridge::Outgoing {
                    destination: "orders".into(),
                    envelope: tidings::bridge::Envelope::new(
                        "order.placed",
                        serde_json::to_vec(&OrderPlaced {
                            order: w * 1000 + n,
                            cents: 1,
                        })
                        .unwrap(),
                    ),
                };
                out.envelope.key = Some("hot".into());
                outbox.stage_outgoing(&tx, &out).await.unwrap();
                // Hold the transaction open a moment, so the others queue behind it.
                tokio::task::yield_now().await;
                tx.commit().await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let got = read(&broker, &endpoint, 400).await;
    let db = client().await;
    let rows = db
        .query(
            &format!(
                "SELECT convert_from(payload, 'UTF8') FROM {} ORDER BY seq",
                outbox.table()
            ),
            &[],
        )
        .await
        .unwrap();
    let by_seq: Vec<u64> = rows
        .iter()
        .map(|r| {
            let payload: String = r.get(0);
            serde_json::from_str::<OrderPlaced>(&payload).unwrap().order
        })
        .collect();
    let received: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        received, by_seq,
        "published in the order of the rows' numbers"
    );
    assert!(relay.shutdown(WAIT).await.is_clean());
}

/// A key held by a staging transaction that stays open holds back only that key: the relay
/// looks past its rows to the keys behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_held_by_an_open_transaction_does_not_hold_back_the_others() {
    let (broker, endpoint, outbox, _drop) = setup().await;
    let keyed = |order: u64, key: &str| {
        let mut out = tidings::bridge::Outgoing {
            destination: "orders".into(),
            envelope: tidings::bridge::Envelope::new(
                "order.placed",
                serde_json::to_vec(&OrderPlaced { order, cents: 1 }).unwrap(),
            ),
        };
        out.envelope.key = Some(key.to_owned());
        out
    };
    let db = client().await;
    for order in 0..150 {
        outbox
            .stage_outgoing(&db, &keyed(order, "held"))
            .await
            .unwrap();
    }
    let mut holder = client().await;
    let open = holder.transaction().await.unwrap();
    outbox
        .stage_outgoing(&open, &keyed(150, "held"))
        .await
        .unwrap();
    for order in 0..10 {
        outbox
            .stage_outgoing(&db, &keyed(order, "free"))
            .await
            .unwrap();
    }
    let relay = relay(&outbox, &broker);
    let got = read(&broker, &endpoint, 10).await;
    assert!(
        got.iter().all(|(_, k)| k.as_deref() == Some("free")),
        "only the free key went out while the other was held: {got:?}"
    );
    open.commit().await.unwrap();
    let rest = read(&broker, &endpoint, 151).await;
    let held: Vec<u64> = rest.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        held,
        (0..151).collect::<Vec<_>>(),
        "then the held key, in order"
    );
    assert!(relay.shutdown(WAIT).await.is_clean());
}

/// Published rows are deleted once past their keep time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_rows_are_deleted_after_their_keep_time() {
    let (broker, endpoint, outbox, _drop) = setup().await;
    let db = client().await;
    for order in 0..20 {
        outbox
            .stage(&db, "orders", &OrderPlaced { order, cents: 1 })
            .await
            .unwrap();
    }
    let relay = Relay::builder(URL, &outbox, broker.clone())
        .unwrap()
        .poll_every(Duration::from_millis(20))
        .keep_published(Duration::ZERO)
        .spawn();
    assert_eq!(read(&broker, &endpoint, 20).await.len(), 20);
    let count = format!("SELECT count(*) FROM {}", outbox.table());
    tokio::time::timeout(WAIT, async {
        while db.query_one(&count, &[]).await.unwrap().get::<_, i64>(0) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the published rows are deleted");
    assert_eq!(relay.stats().deleted, 20);
    assert!(relay.shutdown(WAIT).await.is_clean());
}

/// A commit wakes the relay through its notification: with polling an hour apart, what is
/// staged after the relay went idle still goes out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_wakes_the_relay_without_waiting_for_its_poll() {
    let (broker, endpoint, outbox, _drop) = setup().await;
    let relay = Relay::builder(URL, &outbox, broker.clone())
        .unwrap()
        .poll_every(Duration::from_secs(3600))
        .spawn();
    // Idle: a round found nothing (the listener wakes it once more when it starts listening).
    tokio::time::timeout(WAIT, async {
        while relay.stats().rounds < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the relay goes idle");
    let mut db = client().await;
    let tx = db.transaction().await.unwrap();
    outbox
        .stage(&tx, "orders", &OrderPlaced { order: 1, cents: 1 })
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(read(&broker, &endpoint, 1).await[0].0, 1);
    assert!(relay.shutdown(WAIT).await.is_clean());
}

#[tokio::test]
async fn a_row_that_does_not_read_is_marked_failed_and_holds_up_nothing() {
    let (broker, endpoint, outbox, _drop) = setup().await;
    let db = client().await;
    outbox.stage_outgoing(&db, &keyed(1)).await.unwrap();
    // Written by hand, between two staged rows of its key: headers that are not an object of
    // strings.
    db.execute(
        &format!(
            "INSERT INTO {} (destination, ordering_key, message_id, name, source, created_ms,
                             content_type, headers, payload)
             VALUES ('orders', 'k', 'by-hand', 'order.placed', 'psql', 0,
                     'application/json', '{{\"n\": 5}}', '\\x7b7d')",
            outbox.table()
        ),
        &[],
    )
    .await
    .unwrap();
    outbox.stage_outgoing(&db, &keyed(3)).await.unwrap();
    let relay = relay(&outbox, &broker);
    let got = read(&broker, &endpoint, 2).await;
    assert_eq!(got.iter().map(|(o, _)| *o).collect::<Vec<_>>(), [1, 3]);
    assert!(relay.shutdown(WAIT).await.is_clean());
    let (failure, published): (Option<String>, bool) = {
        let row = db
            .query_one(
                &format!(
                    "SELECT failure, published_at IS NOT NULL FROM {} WHERE message_id = 'by-hand'",
                    outbox.table()
                ),
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(published, "taken out of the pending rows");
    assert!(
        failure.as_deref().is_some_and(|f| f.contains("headers")),
        "{failure:?}"
    );
}
