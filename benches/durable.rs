//! The durable outbound: how fast `emit_and_wait` is when every event must be in an SQLite
//! file first, and what the store costs end to end through each broker, side by side with the
//! in-memory `Outbound` in one run.
//!
//! - **Emit**: 100,000 `emit_and_wait` calls from 256 tasks (each waits for its emit before
//!   the next, as request handlers would), to the memory broker. Clock stopped when the last
//!   emit returned: for the durable rows, every event is committed to the file; p50 and p99
//!   are of each call. Then the clock runs on until the broker confirmed every event.
//! - **End to end**: 50,000 events the same way to RabbitMQ, Kafka (a `tansu` of its own,
//!   memory storage) and Redis Streams, in-memory `Outbound` against the durable one; clock
//!   stopped when the broker confirmed the last event (the bridge's `confirmed` counter).
//!
//! Rounds alternate the contenders; each store file is new. Needs RabbitMQ and Redis on
//! loopback and `tansu` 0.6.0 for the broker rows:
//! `cargo bench -p tidings-benches --features sqlite,amqp,kafka,redis --bench durable`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tidings::bridge::{Endpoint, MemoryBroker, Outbound, Transport};
use tidings::prelude::*;
use tidings_benches::{median, Tansu};
use tidings_bridges::sqlite::{Durability, SqliteStore};

const EMITTERS: usize = 256;
const ROUNDS: usize = 3;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "bench.order", key = key)]
struct BenchOrder {
    seq: u64,
    key: String,
    body: String,
}

#[derive(Debug, EventSet)]
enum Events {
    BenchOrder(BenchOrder),
}

/// Where the events are kept on the way.
#[derive(Debug, Clone, Copy)]
enum Kept {
    Memory,
    Sqlite(Durability),
}

impl Kept {
    fn label(self) -> &'static str {
        match self {
            Kept::Memory => "in-memory Outbound",
            Kept::Sqlite(Durability::PowerLoss) => "SQLite, synced (PowerLoss)",
            Kept::Sqlite(_) => "SQLite, OS-written (ProcessCrash)",
        }
    }
}

struct Run {
    /// Events per second until the last emit returned.
    emitted: f64,
    /// Events per second until the broker confirmed the last.
    confirmed: f64,
    p50: Duration,
    p99: Duration,
}

/// Emits `events` through an outbound to `transport` and measures.
async fn run<T: Transport>(transport: T, destination: &str, kept: Kept, events: usize) -> Run {
    let folder = std::env::temp_dir().join(format!("tidings-bench-{:016x}", fastrand::u64(..)));
    std::fs::create_dir_all(&folder).unwrap();
    let bus = Bus::<Events>::new();
    let builder = Outbound::builder(&bus, transport)
        .forward::<BenchOrder>()
        .destination(destination);
    let outbound = match kept {
        Kept::Memory => builder.build(),
        Kept::Sqlite(durability) => {
            let store = SqliteStore::builder(folder.join("out.sqlite"))
                .durability(durability)
                .open()
                .await
                .unwrap();
            builder.store(store).build()
        }
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for e in 0..EMITTERS {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(events / EMITTERS + 1);
            for seq in (e..events).step_by(EMITTERS) {
                let order = BenchOrder {
                    seq: seq as u64,
                    key: format!("k{}", seq % 64),
                    body: "x".repeat(64),
                };
                let t0 = Instant::now();
                bus.emit_and_wait(order).await.expect("accepted");
                latencies.push(t0.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(events);
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let emitted = events as f64 / started.elapsed().as_secs_f64();
    while outbound.stats().confirmed < events as u64 {
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let confirmed = events as f64 / started.elapsed().as_secs_f64();
    assert!(outbound.shutdown(Duration::from_secs(30)).await.is_clean());
    let _ = std::fs::remove_dir_all(&folder);
    latencies.sort_unstable();
    Run {
        emitted,
        confirmed,
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
    }
}

/// Runs each contender `ROUNDS` times, alternating, and prints the medians; returns the
/// confirmed rates' medians in contender order.
async fn compare<T, F, Fut>(
    title: &str,
    kinds: &[Kept],
    events: usize,
    mut transport: F,
) -> Vec<f64>
where
    T: Transport,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (T, String)>,
{
    println!("\n{title} ({events} events, {EMITTERS} emitters, median of {ROUNDS})");
    println!(
        "{:<36} {:>12} {:>10} {:>10} {:>14}",
        "contender", "emits/s", "p50", "p99", "confirmed/s"
    );
    let mut runs: Vec<Vec<Run>> = kinds.iter().map(|_| Vec::new()).collect();
    for _ in 0..ROUNDS {
        for (i, &kind) in kinds.iter().enumerate() {
            let (t, destination) = transport().await;
            runs[i].push(run(t, &destination, kind, events).await);
        }
    }
    let mut medians = Vec::new();
    for (kind, runs) in kinds.iter().zip(&mut runs) {
        let emitted = median(&runs.iter().map(|r| r.emitted).collect::<Vec<_>>());
        let confirmed = median(&runs.iter().map(|r| r.confirmed).collect::<Vec<_>>());
        runs.sort_by_key(|r| r.p50);
        let p50 = runs[runs.len() / 2].p50;
        runs.sort_by_key(|r| r.p99);
        let p99 = runs[runs.len() / 2].p99;
        println!(
            "{:<36} {:>12.0} {:>10.2?} {:>10.2?} {:>14.0}",
            kind.label(),
            emitted,
            p50,
            p99,
            confirmed
        );
        medians.push(confirmed);
    }
    medians
}

fn ratio(title: &str, medians: &[f64]) {
    println!(
        "{title}: the durable outbound takes {:.2}x the in-memory one's time",
        medians[0] / medians[1]
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let all = [
        Kept::Memory,
        Kept::Sqlite(Durability::PowerLoss),
        Kept::Sqlite(Durability::ProcessCrash),
    ];
    let memory = compare("Emit to the memory broker", &all, 100_000, || async {
        let broker = MemoryBroker::new();
        broker
            .declare(&Endpoint::new("bench.orders"))
            .await
            .unwrap();
        (broker, "bench.orders".to_owned())
    })
    .await;
    ratio("memory broker", &memory);

    let pair = [Kept::Memory, Kept::Sqlite(Durability::PowerLoss)];
    let events = 50_000;
    if let Ok(amqp) =
        tidings_bridges::amqp::AmqpTransport::builder("amqp://guest:guest@127.0.0.1:5672/%2f")
            .connect()
            .await
    {
        let mut made = Vec::new();
        let medians = compare("RabbitMQ (publisher confirms)", &pair, events, || {
            let amqp = amqp.clone();
            let name = format!("bench.durable.{:08x}", fastrand::u32(..));
            made.push(name.clone());
            async move {
                amqp.declare(&Endpoint::new(name.clone())).await.unwrap();
                (amqp, name)
            }
        })
        .await;
        ratio("RabbitMQ", &medians);
        for name in made {
            let endpoint = Endpoint::new(name);
            let _ = amqp
                .delete_queue(&tidings_bridges::amqp::queue_name(&endpoint))
                .await;
            let _ = amqp.delete_queue(&endpoint.dead_letter).await;
            let _ = amqp.delete_exchange(&endpoint.name).await;
        }
    }
    {
        let tansu = Arc::new(Tansu::start());
        let medians = compare("Kafka (tansu, acks=all)", &pair, events, || {
            let tansu = Arc::clone(&tansu);
            async move {
                let t = tidings_bridges::kafka::KafkaTransport::builder(&tansu.brokers())
                    .build()
                    .unwrap();
                let name = format!("bench-durable-{:08x}", fastrand::u32(..));
                t.declare(&Endpoint::new(name.clone())).await.unwrap();
                (t, name)
            }
        })
        .await;
        ratio("Kafka", &medians);
    }
    if let Ok(redis) = tidings_bridges::redis::RedisTransport::builder("redis://127.0.0.1:6379")
        .connect()
        .await
    {
        let mut made = Vec::new();
        let medians = compare("Redis Streams (XADD replies)", &pair, events, || {
            let redis = redis.clone();
            let name = format!("bench.durable.{:08x}", fastrand::u32(..));
            made.push(name.clone());
            async move {
                redis.declare(&Endpoint::new(name.clone())).await.unwrap();
                (redis, name)
            }
        })
        .await;
        ratio("Redis", &medians);
        if let Ok(client) = redis::Client::open("redis://127.0.0.1:6379") {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                for name in made {
                    let _: Result<(), _> = redis::cmd("DEL")
                        .arg(&name)
                        .arg(format!("{name}.dead-letter"))
                        .query_async(&mut conn)
                        .await;
                }
            }
        }
    }
}
