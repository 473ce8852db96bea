//! End-to-end Kafka throughput, side by side in one run on one `tansu` broker with memory
//! storage: produce with delivery reports (`acks=all`, idempotent where the client supports
//! it), consume in a consumer group from the beginning, store offsets after handling, for
//!
//! - tidings: `emit_async` on a bus → `Outbound` → `KafkaTransport` → broker →
//!   `KafkaConsumer` → `Inbound` → a listener on a second bus;
//! - tidings' transport alone: the same envelopes made and published in the bench's own task
//!   in the outbound's batches, each awaited before the next (what the outbound's hand-over
//!   costs: the bus, the queue to its task);
//! - raw rdkafka with the same settings (the same headers too, checked before the first round
//!   with kafkajs's: `records_match`): every record sent with
//!   `send_result`, then the delivery reports awaited; a `BaseConsumer` on a thread storing
//!   each offset after decoding;
//! - kafkajs (`benches/node/kafkajs_bench.js`): batches of 1 000 with `acks: -1`, four in
//!   flight, each message encoded as it is sent with the same six headers, and an `eachBatch`
//!   consumer.
//!
//! Each round uses a fresh topic of 3 partitions; keys spread over 64 values. Rounds alternate
//! the contenders; each reports messages per second from the first send (once its consumer
//! is in its group) to the last message handled, and the broker's share of the machine's
//! CPU. Every consumer lets a fetch wait at most [`FETCH_WAIT_MS`] at the broker. Needs
//! `tansu` (0.6.0) and Node.js: `cargo bench -p tidings-benches --features kafka --bench kafka`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message as _};
use serde::{Deserialize, Serialize};
use tidings::bridge::{Endpoint, Envelope, Inbound, Outbound, Outgoing};
use tidings::prelude::*;
use tidings_benches::{node_dir, Tansu};
use tidings_bridges::kafka::{KafkaTransport, Topic};
use tokio::sync::Notify;

const MESSAGES: usize = 100_000;
const ROUNDS: usize = 5;
const PREFETCH: usize = 512;
const KAFKAJS_BATCH: usize = 1_000;
/// tidings' outbound batches (`BATCH=n` changes it, for the outbound and the transport alone).
const BATCH: usize = 4096;
/// The longest a fetch may wait at the broker, for every contender. tansu 0.6.0 holds each
/// fetch for about half of it even when it has records to return (its fetch loop sleeps
/// before answering), so at librdkafka's default (500 ms) or kafkajs's (5 s) the run would
/// measure the broker's sleep, not the clients.
const FETCH_WAIT_MS: &str = "1";
const CORES: f64 = 2.0;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "bench.ping", key = key)]
struct BenchPing {
    seq: u64,
    key: String,
    body: String,
}

#[derive(Debug, EventSet)]
enum Bench {
    BenchPing(BenchPing),
}

fn ping(seq: usize) -> BenchPing {
    BenchPing {
        seq: seq as u64,
        key: format!("k{}", seq % 64),
        body: "x".repeat(64),
    }
}

struct Run {
    rate: f64,
    broker_share: Option<f64>,
}

async fn measure<F: std::future::Future<Output = Duration>>(tansu: &Tansu, f: F) -> Run {
    let before = tansu.cpu();
    let wall = Instant::now();
    let elapsed = f.await;
    let wall = wall.elapsed().as_secs_f64();
    Run {
        rate: MESSAGES as f64 / elapsed.as_secs_f64(),
        broker_share: before.zip(tansu.cpu()).map(|(b, a)| (a - b) / wall / CORES),
    }
}

async fn fresh_topic(t: &KafkaTransport) -> String {
    let name = format!("bench-{:016x}", rand_u64());
    t.create_topics(&[Topic::new(&name).partitions(3)])
        .await
        .expect("topic");
    name
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// tidings' round: through an outbound with batches of `batch`, or, `direct`, through the
/// transport alone, in batches of `batch` envelopes each awaited before the next is made (as
/// the outbound forwards them, without the bus and the hand-over to its task).
async fn tidings_round(t: &KafkaTransport, topic: &str, direct: bool, batch: usize) -> Duration {
    let (out_bus, in_bus) = (Bus::<Bench>::new(), Bus::<Bench>::new());
    let received = Arc::new(AtomicUsize::new(0));
    let (joined, all) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (r, j, a) = (Arc::clone(&received), Arc::clone(&joined), Arc::clone(&all));
    in_bus.on(
        move |_: &BenchPing| match r.fetch_add(1, Ordering::Relaxed) + 1 {
            1 => j.notify_one(),
            n if n == MESSAGES + 1 => a.notify_one(),
            _ => {}
        },
    );
    let source = Endpoint::new(topic).group("tidings").prefetch(PREFETCH);
    let inbound = Inbound::builder(&in_bus, t.clone(), source).build();
    let outbound = Outbound::builder(&out_bus, t.clone())
        .forward::<BenchPing>()
        .destination(topic)
        .batch(batch, Duration::ZERO)
        .buffer(4 * batch)
        .build();
    // The clock starts once the consumer is in its group, as kafkajs's does: one event first.
    out_bus.emit_async(ping(0)).await.expect("emit");
    joined.notified().await;
    let start = Instant::now();
    if direct {
        tidings_benches::publish_directly(t, MESSAGES, batch, |seq| {
            let event = ping(seq);
            let payload = serde_json::to_vec(&event).expect("encodes");
            let mut envelope = Envelope::new("bench.ping", payload);
            envelope.key = Some(event.key);
            Outgoing {
                destination: topic.to_owned(),
                envelope,
            }
        })
        .await;
    } else {
        for seq in 0..MESSAGES {
            out_bus.emit_async(ping(seq)).await.expect("emit");
        }
    }
    all.notified().await;
    let elapsed = start.elapsed();
    outbound.shutdown(Duration::from_secs(10)).await;
    inbound.shutdown(Duration::from_secs(10)).await;
    elapsed
}

/// The producer settings `KafkaTransport` uses.
fn raw_producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

async fn rdkafka_round(brokers: &str, topic: &str) -> Duration {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "raw")
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS)
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let received = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&received);
    let consuming = std::thread::spawn(move || {
        while r.load(Ordering::Relaxed) < MESSAGES + 1 {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let _: BenchPing =
                    serde_json::from_slice(m.payload().unwrap_or_default()).expect("decodes");
                consumer.store_offset_from_message(&m).expect("store");
                r.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let producer = raw_producer(brokers);
    // The clock starts once the consumer is in its group, as kafkajs's does: one message first.
    let payload = serde_json::to_vec(&ping(0)).expect("encodes");
    producer
        .send(
            FutureRecord::to(topic).key("k0").payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    while received.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    let mut reports = Vec::with_capacity(MESSAGES);
    for seq in 0..MESSAGES {
        let (event, payload, headers) = raw_message(seq);
        let mut record = FutureRecord::to(topic)
            .key(event.key.as_str())
            .payload(&payload)
            .headers(headers);
        loop {
            match producer.send_result(record) {
                Ok(report) => {
                    reports.push(report);
                    break;
                }
                Err((_, back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    for report in reports {
        report.await.expect("report").expect("delivered");
    }
    tokio::task::spawn_blocking(move || consuming.join().expect("consumer"))
        .await
        .expect("join");
    start.elapsed()
}

/// Event `seq` as the rdkafka peer sends it: the event (its key is the record's), its payload
/// encoded as it is sent, and the headers tidings' Kafka transport writes (the CloudEvents
/// Kafka binding) with a new id and the time (`records_match` checks all of it).
fn raw_message(seq: usize) -> (BenchPing, Vec<u8>, OwnedHeaders) {
    let event = ping(seq);
    let payload = serde_json::to_vec(&event).expect("encodes");
    let (id, time) = (tidings::bridge::new_id(), humantime_now());
    let headers = OwnedHeaders::new_with_capacity(6)
        .insert(text("ce_id", &id))
        .insert(text("ce_source", "tidings"))
        .insert(text("ce_specversion", "1.0"))
        .insert(text("ce_time", &time))
        .insert(text("content-type", "application/json"))
        .insert(text("ce_type", "bench.ping"));
    (event, payload, headers)
}

fn text<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// The time as tidings writes `ce_time`: RFC 3339 with milliseconds.
fn humantime_now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Runs `benches/node/kafkajs_bench.js` from `dir` on `topic` with `count` messages, in
/// batches of `batch`, and `extra` arguments; what it printed.
async fn kafkajs(
    dir: &PathBuf,
    brokers: &str,
    topic: &str,
    count: usize,
    batch: usize,
    extra: &[&str],
) -> String {
    let payload = serde_json::to_string(&ping(0)).expect("encodes");
    let output = tokio::process::Command::new("node")
        .arg("kafkajs_bench.js")
        .args([
            brokers,
            topic,
            "kafkajs",
            &count.to_string(),
            &batch.to_string(),
            &payload,
            FETCH_WAIT_MS,
        ])
        .args(extra)
        .current_dir(dir)
        .output()
        .await
        .expect("node");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A record as text: its key's and payload's lengths and each header with its value's length,
/// sorted by name (ids and times differ from record to record, their sizes do not).
fn record_shape(record: &rdkafka::message::BorrowedMessage<'_>) -> Vec<String> {
    use rdkafka::message::Headers as _;
    let mut shape: Vec<String> = record
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| format!("{} ({} bytes)", h.key, h.value.map_or(0, <[u8]>::len)))
                .collect()
        })
        .unwrap_or_default();
    shape.sort();
    shape.push(format!(
        "key ({} bytes)",
        record.key().map_or(0, <[u8]>::len)
    ));
    shape.push(format!(
        "payload ({} bytes)",
        record.payload().map_or(0, <[u8]>::len)
    ));
    shape
}

/// Stops the bench unless the raw contenders send what tidings sends: one event through an
/// `Outbound` on the transport, the same event as the rdkafka peer sends it and (with Node.js)
/// as kafkajs sends it, read back from a topic of one partition, must carry the same headers,
/// each value of the same length, and keys and payloads of the same lengths.
async fn records_match(t: &KafkaTransport, brokers: &str, node: Option<&PathBuf>) {
    let topic = format!("bench-check-{:016x}", rand_u64());
    t.create_topics(&[Topic::new(&topic).partitions(1)])
        .await
        .expect("topic");
    let bus = Bus::<Bench>::new();
    let outbound = Outbound::builder(&bus, t.clone())
        .forward::<BenchPing>()
        .destination(&topic)
        .build();
    tidings_benches::send_one(&bus, outbound, ping(0)).await;
    let (event, payload, headers) = raw_message(0);
    raw_producer(brokers)
        .send(
            FutureRecord::to(&topic)
                .key(event.key.as_str())
                .payload(&payload)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .expect("delivered");
    let mut names = vec!["tidings", "rdkafka"];
    if let Some(dir) = node {
        kafkajs(dir, brokers, &topic, 1, 1, &["publish"]).await;
        names.push("kafkajs");
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "check")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let wanted = names.len();
    let shapes = tokio::task::spawn_blocking(move || {
        let until = Instant::now() + Duration::from_secs(30);
        let mut shapes = Vec::new();
        while shapes.len() < wanted && Instant::now() < until {
            if let Some(Ok(record)) = consumer.poll(Duration::from_millis(100)) {
                shapes.push(record_shape(&record));
            }
        }
        shapes
    })
    .await
    .expect("reader");
    assert_eq!(shapes.len(), wanted, "every record read back");
    for (name, shape) in names.iter().zip(&shapes).skip(1) {
        assert_eq!(
            &shapes[0], shape,
            "{name} does not send what tidings sends: tidings {:?}, {name} {shape:?}",
            shapes[0]
        );
    }
}

async fn kafkajs_round(dir: &PathBuf, brokers: &str, topic: &str) -> Duration {
    let stdout = kafkajs(dir, brokers, topic, MESSAGES, KAFKAJS_BATCH, &[]).await;
    let millis: f64 = stdout
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .expect("elapsed");
    Duration::from_secs_f64(millis / 1000.0)
}

/// Prints `name`'s figures and returns its median rate (see [`tidings_benches::report`]).
fn report(name: &str, runs: &[Run]) -> Option<f64> {
    let rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
    let broker = runs.iter().map(|r| r.broker_share).collect();
    tidings_benches::report(name, &rates, &[("broker", broker)])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let tansu = Tansu::start();
    let brokers = tansu.brokers();
    let t = KafkaTransport::builder(&brokers)
        .session_timeout(Duration::from_secs(6))
        .fetch_wait(Duration::from_millis(
            FETCH_WAIT_MS.parse().expect("milliseconds"),
        ))
        .build()
        .expect("config");
    let node = node_dir("kafkajs");
    records_match(&t, &brokers, node.as_ref()).await;
    let (mut ours, mut direct, mut raw, mut js) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // `PROFILE=tidings` (or another contender's name as reported, several separated by commas)
    // runs those contenders alone, for a profiler; `ROUNDS=n` runs n rounds (a round takes
    // about a second, and single rounds spread widely: more of them narrow the medians);
    // `BATCH=n` gives tidings' outbound and the transport-alone round batches of n.
    let selection = tidings_benches::Selection::from_env(ROUNDS);
    let batch = tidings_benches::count_from_env("BATCH", BATCH);
    for round in 0..selection.rounds {
        for (alone, runs) in [(false, &mut ours), (true, &mut direct)] {
            let name = if alone {
                "tidings transport alone"
            } else {
                "tidings"
            };
            if selection.runs(name) {
                let topic = fresh_topic(&t).await;
                runs.push(measure(&tansu, tidings_round(&t, &topic, alone, batch)).await);
            }
        }
        if selection.runs("rdkafka") {
            let topic = fresh_topic(&t).await;
            raw.push(measure(&tansu, rdkafka_round(&brokers, &topic)).await);
        }
        if let Some(dir) = node.as_ref().filter(|_| selection.runs("kafkajs")) {
            let topic = fresh_topic(&t).await;
            js.push(measure(&tansu, kafkajs_round(dir, &brokers, &topic)).await);
        }
        println!("round {} of {} done", round + 1, selection.rounds);
    }
    println!(
        "\n{MESSAGES} messages per run, 3 partitions, acks=all, consumer group from the \
         beginning, tidings' batches {batch}"
    );
    let ours = report("tidings", &ours);
    if let (Some(ours), Some(direct)) = (ours, report("tidings transport alone", &direct)) {
        println!("tidings / its transport alone = {:.2}x", ours / direct);
    }
    let raw = report("rdkafka", &raw);
    let js = report("kafkajs", &js);
    if let (Some(ours), Some(raw)) = (ours, raw) {
        println!("tidings / rdkafka = {:.2}x (goal >= 0.95x)", ours / raw);
    }
    if let (Some(ours), Some(js)) = (ours, js) {
        println!("tidings / kafkajs = {:.2}x", ours / js);
    }
}
