//! The PostgreSQL outbox: staging throughput, and relay throughput to the in-memory broker and
//! to RabbitMQ, side by side in one run against the servers on loopback.
//!
//! - **Staging**: `Outbox::stage` of 50,000 keyed events (64 keys) in transactions of 100, from
//!   four connections at once, clock stopped when the last transaction committed.
//! - **Relay**: 50,000 staged rows, then `Relay` (batches of 1,000) started; clock stopped when
//!   no row is left unpublished, which the relay marks in the transaction that claimed the rows
//!   after the broker confirmed them (RabbitMQ: publisher confirms).
//!
//! Each round uses a fresh table. Needs PostgreSQL on 127.0.0.1:5432 (database `test`, trust
//! auth), for the RabbitMQ rows RabbitMQ on 127.0.0.1:5672, for the Redis rows Redis on
//! 127.0.0.1:6379:
//! `cargo bench -p tidings-benches --features postgres,amqp --bench postgres_relay`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidings::bridge::{Endpoint, MemoryBroker, Transport};
use tidings::Event;
use tidings_bridges::amqp::AmqpTransport;
use tidings_bridges::postgres::{Outbox, Relay};

const PG: &str = "postgresql://postgres@127.0.0.1:5432/test";
const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const REDIS: &str = "redis://127.0.0.1:6379";
const EVENTS: usize = 50_000;
const PER_TX: usize = 100;
const WRITERS: usize = 4;
const ROUNDS: usize = 3;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "bench.order", key = key)]
struct BenchOrder {
    seq: u64,
    key: String,
    body: String,
}

async fn client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(PG, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    tokio::spawn(connection);
    client
}

/// Stages `EVENTS` events into a fresh outbox; its table and the staging rate.
async fn stage() -> (Outbox, f64) {
    let table = format!("bench_outbox_{:08x}", fastrand::u32(..));
    let outbox = Outbox::new(&table).unwrap();
    outbox.create(&client().await).await.unwrap();
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let outbox = outbox.clone();
        writers.push(tokio::spawn(async move {
            let mut db = client().await;
            let mine: Vec<usize> = (w..EVENTS).step_by(WRITERS).collect();
            for chunk in mine.chunks(PER_TX) {
                let tx = db.transaction().await.unwrap();
                for &seq in chunk {
                    let order = BenchOrder {
                        seq: seq as u64,
                        key: format!("k{}", seq % 64),
                        body: "x".repeat(64),
                    };
                    outbox.stage(&tx, "bench.orders", &order).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    (outbox, EVENTS as f64 / started.elapsed().as_secs_f64())
}

/// Relays a staged outbox to `transport`; events per second until none is left.
async fn relay<T: Transport>(outbox: &Outbox, transport: T) -> f64 {
    let db = client().await;
    let pending = format!(
        "SELECT count(*) FROM {} WHERE published_at IS NULL",
        outbox.table()
    );
    let started = Instant::now();
    let relay = Relay::builder(PG, outbox, transport)
        .unwrap()
        .batch_size(1_000)
        .poll_every(Duration::from_millis(50))
        .spawn();
    loop {
        let left: i64 = db.query_one(&pending, &[]).await.unwrap().get(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = EVENTS as f64 / started.elapsed().as_secs_f64();
    relay.shutdown(Duration::from_secs(10)).await;
    db.batch_execute(&format!("DROP TABLE {}", outbox.table()))
        .await
        .unwrap();
    rate
}

#[tokio::main]
async fn main() {
    let amqp = AmqpTransport::builder(AMQP).connect().await.ok();
    if let Some(amqp) = &amqp {
        amqp.declare(&Endpoint::new("bench.orders")).await.unwrap();
    }
    let redis = tidings_bridges::redis::RedisTransport::builder(REDIS)
        .connect()
        .await
        .ok();
    if let Some(redis) = &redis {
        redis.declare(&Endpoint::new("bench.orders")).await.unwrap();
    }
    println!("{:<44} {:>12}", "round", "events/s");
    for round in 1..=ROUNDS {
        let (outbox, staged) = stage().await;
        println!(
            "{:<44} {:>12.0}",
            format!("{round}: stage (4 writers, 100 per tx)"),
            staged
        );
        let broker = MemoryBroker::new();
        broker
            .declare(&Endpoint::new("bench.orders"))
            .await
            .unwrap();
        let rate = relay(&outbox, broker).await;
        println!(
            "{:<44} {:>12.0}",
            format!("{round}: relay to the memory broker"),
            rate
        );
        if let Some(redis) = &redis {
            let (outbox, _) = stage().await;
            let rate = relay(&outbox, redis.clone()).await;
            println!(
                "{:<44} {:>12.0}",
                format!("{round}: relay to Redis Streams (XADD replies)"),
                rate
            );
        }
        if let Some(amqp) = &amqp {
            let (outbox, _) = stage().await;
            let rate = relay(&outbox, amqp.clone()).await;
            println!(
                "{:<44} {:>12.0}",
                format!("{round}: relay to RabbitMQ (confirmed)"),
                rate
            );
            // Empty the queue for the next round.
            let endpoint = Endpoint::new("bench.orders");
            let queue = tidings_bridges::amqp::queue_name(&endpoint);
            amqp.delete_queue(&queue).await.unwrap();
            amqp.declare(&endpoint).await.unwrap();
        }
    }
    if let Some(amqp) = amqp {
        let endpoint = Endpoint::new("bench.orders");
        let _ = amqp
            .delete_queue(&tidings_bridges::amqp::queue_name(&endpoint))
            .await;
        let _ = amqp.delete_queue(&endpoint.dead_letter).await;
        let _ = amqp.delete_exchange(&endpoint.name).await;
        amqp.shutdown(Duration::from_secs(5)).await;
    }
    if redis.is_some() {
        let client = redis::Client::open(REDIS).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("DEL")
            .arg("bench.orders")
            .arg("bench.orders.dead-letter")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}
