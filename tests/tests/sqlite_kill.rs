//! The durable outbound with a killed process (features `sqlite`, `amqp`, `kafka`, `redis`:
//! RabbitMQ and Redis on loopback, a tansu of the test's own): a child process emits 50,000
//! events with `emit_and_wait` through an outbound on an SQLite store and is SIGKILLed five
//! times on the way; each restart resumes from the store (on Redis with
//! `Durability::ProcessCrash`, which leaves writing back to the operating system). Every
//! event whose emit returned `Ok` must arrive; duplicates are counted and printed.
#![cfg(all(
    feature = "sqlite",
    feature = "amqp",
    feature = "kafka",
    feature = "redis"
))]

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::future::join_all;
use tidings::Bus;
use tidings::bridge::{Consumer, Endpoint, Outbound, Transport};
use tidings_bridges::kafka::KafkaTransport;
use tidings_bridges::sqlite::{Durability, SqliteStore};
use tidings_tests::kafka::Tansu;
use tidings_tests::sqlite::Folder;
use tidings_tests::{Events, OrderPlaced};
use tokio::io::{AsyncBufReadExt, BufReader};

const TOTAL: u64 = 50_000;
/// Emits awaited together: one group commit can take them all.
const CHUNK: u64 = 500;
const KILLS: usize = 5;
const WAIT: Duration = Duration::from_secs(180);

/// What the child is told: `broker,address,destination,store,durability,start`.
const CHILD: &str = "TIDINGS_DURABLE_CHILD";

/// As the child: emits orders `start..TOTAL` through a durable outbound, printing
/// `acked N` once every order below `N` was accepted, then `done` after a clean shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_durable_emitter() {
    let Ok(spec) = std::env::var(CHILD) else {
        return; // Only runs as the child.
    };
    let parts: Vec<&str> = spec.split(',').collect();
    let [broker, address, destination, store, durability, start] = parts[..] else {
        panic!("bad {CHILD}: {spec}");
    };
    let durability = match durability {
        "power-loss" => Durability::PowerLoss,
        "process-crash" => Durability::ProcessCrash,
        other => panic!("no durability {other}"),
    };
    let start: u64 = start.parse().unwrap();
    let store = SqliteStore::builder(store)
        .durability(durability)
        .open()
        .await
        .expect("the store");
    let bus = Bus::<Events>::new();
    match broker {
        "amqp" => {
            emit(
                &bus,
                tidings_tests::rabbit::connect("durable-child").await,
                destination,
                store,
                start,
            )
            .await
        }
        "redis" => {
            emit(
                &bus,
                tidings_tests::redis::transport().await,
                destination,
                store,
                start,
            )
            .await
        }
        "kafka" => {
            let t = KafkaTransport::builder(address).build().expect("config");
            emit(&bus, t, destination, store, start).await;
        }
        other => panic!("no broker {other}"),
    }
}

async fn emit<T: Transport>(
    bus: &Bus<Events>,
    t: T,
    destination: &str,
    store: SqliteStore,
    start: u64,
) {
    let outbound = Outbound::builder(bus, t)
        .forward::<OrderPlaced>()
        .destination(destination)
        .store(store)
        .build();
    println!("emitting");
    let mut next = start;
    while next < TOTAL {
        let end = (next + CHUNK).min(TOTAL);
        let emits = (next..end).map(|order| bus.emit_and_wait(OrderPlaced { order, cents: 1 }));
        for result in join_all(emits).await {
            result.expect("a durable emit");
        }
        println!("acked {end}");
        next = end;
    }
    assert!(outbound.shutdown(WAIT).await.is_clean());
    println!("done");
}

/// Runs the child from `start`; returns the orders acknowledged below which every emit
/// returned `Ok`, killing it once it acknowledged `kill_after` more (or letting it finish
/// when `None`).
async fn run_child(spec: &str, start: u64, kill_after: Option<u64>) -> u64 {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child_durable_emitter",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, format!("{spec},{start}"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("the child");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = start;
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            if let Some(n) = line.strip_prefix("acked ") {
                acked = n.parse().unwrap();
                if kill_after.is_some_and(|k| acked >= start + k) {
                    child.start_kill().expect("SIGKILL");
                    break;
                }
            } else if line == "done" {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the child stalled at {acked}"));
    let status = child.wait().await.expect("reaped");
    if kill_after.is_none() {
        assert!(status.success(), "the last child failed: {status}");
        assert_eq!(acked, TOTAL);
    }
    acked
}

/// Kills the emitter five times, lets the sixth finish, and reads everything back.
async fn killed_five_times<T: Transport>(t: &T, endpoint: &Endpoint, spec: &str) {
    let mut acked = 0;
    for kill in 0..KILLS {
        // Between 2,000 and 9,000 more events per run, at a point that differs per run.
        let more = 2_000 + fastrand::u64(0..7_000);
        acked = run_child(spec, acked, Some(more)).await;
        println!("kill {}: every order below {acked} was accepted", kill + 1);
    }
    run_child(spec, acked, None).await;

    let mut consumer = t.consume(endpoint).await.expect("consume");
    let mut seen = BTreeSet::new();
    let mut duplicates = 0u64;
    while (seen.len() as u64) < TOTAL {
        let delivery = tokio::time::timeout(WAIT, consumer.next())
            .await
            .unwrap_or_else(|_| {
                let missing: Vec<u64> = (0..TOTAL).filter(|o| !seen.contains(o)).take(10).collect();
                panic!(
                    "only {} of {TOTAL} arrived; missing {missing:?}...",
                    seen.len()
                )
            })
            .expect("open")
            .expect("a delivery");
        let o: OrderPlaced = serde_json::from_slice(&delivery.message.payload).unwrap();
        if !seen.insert(o.order) {
            duplicates += 1;
        }
        delivery.ack().await.unwrap();
    }
    // What is left is duplicates only (every order arrived): count them for the report.
    while let Ok(Some(Ok(delivery))) =
        tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
    {
        duplicates += 1;
        delivery.ack().await.unwrap();
    }
    println!("{KILLS} kills during {TOTAL} durable emits: all arrived, {duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_gets_every_accepted_event_from_a_process_killed_five_times() {
    let t = tidings_tests::rabbit::connect("durable-parent").await;
    let endpoint = Endpoint::new(tidings_tests::rabbit::unique("durable")).prefetch(1000);
    t.declare(&endpoint).await.unwrap();
    let folder = Folder::new("durable-amqp");
    let store = folder.file("out.sqlite");
    let spec = format!("amqp,-,{},{},power-loss", endpoint.name, store.display());
    killed_five_times(&t, &endpoint, &spec).await;
    tidings_tests::rabbit::cleanup(&t, &endpoint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gets_every_accepted_event_from_a_process_killed_five_times() {
    let t = tidings_tests::redis::transport().await;
    let endpoint = Endpoint::new(tidings_tests::redis::unique("durable"));
    t.declare(&endpoint).await.unwrap();
    let folder = Folder::new("durable-redis");
    let store = folder.file("out.sqlite");
    // The faster setting: commits left to the operating system, which a killed process
    // does not lose.
    let spec = format!(
        "redis,-,{},{},process-crash",
        endpoint.name,
        store.display()
    );
    killed_five_times(&t, &endpoint, &spec).await;
    tidings_tests::redis::cleanup(&endpoint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_gets_every_accepted_event_from_a_process_killed_five_times() {
    let tansu = Tansu::start();
    let t = tansu.transport().await;
    let endpoint = Endpoint::new("durable");
    t.declare(&endpoint).await.unwrap();
    let folder = Folder::new("durable-kafka");
    let store = folder.file("out.sqlite");
    let spec = format!(
        "kafka,{},{},{},power-loss",
        tansu.brokers(),
        endpoint.name,
        store.display()
    );
    killed_five_times(&t, &endpoint, &spec).await;
}
