//! End-to-end RabbitMQ throughput, side by side in one run: publish with confirms (window 256),
//! consume with prefetch 100, persistent messages into a durable queue, in two shapes: through
//! a topic exchange (`topic`), and straight to the queue through the default exchange
//! (`queue`, amqplib's `sendToQueue`). The contenders:
//!
//! - tidings: `emit_async` on a bus → `Outbound` → `AmqpTransport` → broker →
//!   `AmqpTransport` → `Inbound` → a listener on a second bus (acknowledgements cumulative);
//!   and again with the events published through `AmqpTransport::publish` in the outbound's
//!   batches, without the bus and the outbound (`tidings transport alone`), which shows what
//!   the outbound's hand-over costs end to end;
//! - raw lapin: a confirm channel with a sliding window of 256, and again publishing 256 then
//!   awaiting all their confirms (a batch at a time), each publish awaited (lapin's
//!   `basic_publish` resolves once its frames are written); and a third time with the window's
//!   publishes in a `FuturesOrdered`, so that none waits for its own write (`pipelined`); a
//!   consumer channel acknowledging with `multiple` every 50 messages (half the prefetch) and
//!   at the last;
//! - Node's amqplib (`benches/node/amqplib_bench.js`), both ways, acknowledging the same way
//!   (`ack(msg, true)`).
//!
//! Every contender sends the same message: the event encoded as it is sent, with the properties
//! and headers tidings' transport writes ([`properties`]); the bench checks it before the first
//! round (`properties_match`).
//!
//! Every contender's clock runs from the first publish to the same observable point: every
//! publish confirmed, and the broker has processed the last acknowledgement (the consumer
//! channel's close, or the inbound bridge's shutdown, which closes it, is answered). Rounds
//! alternate the contenders; each reports messages per second and the broker's share of the
//! machine's CPU meanwhile (from `/proc/<beam.smp>/stat`). Needs RabbitMQ on 127.0.0.1:5672
//! and Node.js: `cargo bench -p tidings-benches --features amqp --bench amqp`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};
use tidings::bridge::{
    Endpoint, Envelope, Inbound, Outbound, OutboundBuilder, Outgoing, Route, Transport,
};
use tidings::prelude::*;
use tidings_benches::{cpu_seconds, node_dir};
use tidings_bridges::amqp::AmqpTransport;
use tokio::sync::Notify;

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const MESSAGES: usize = 20_000;
const ROUNDS: usize = 5;
const WINDOW: usize = 256;
const PREFETCH: usize = 100;
/// Events per `Outbound` publish call (its default); within a call the transport keeps
/// `WINDOW` in flight.
const BATCH: usize = 1024;
const CORES: f64 = 2.0;
/// A consumer acknowledges cumulatively every this many messages (half the prefetch).
const ACK_EVERY: usize = PREFETCH / 2;

/// Where messages are published: the topic exchange bound to the queue, or the queue itself
/// through the default exchange.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Topic,
    Queue,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Topic => "topic",
            Shape::Queue => "queue",
        }
    }

    /// The exchange and routing key of a message to `queue`.
    fn route(self, queue: &str) -> (&str, &str) {
        match self {
            Shape::Topic => (queue, "bench.ping"),
            Shape::Queue => ("", queue),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(name = "bench.ping")]
struct BenchPing {
    seq: u64,
    body: String,
}

#[derive(Debug, EventSet)]
enum Bench {
    BenchPing(BenchPing),
}

fn ping(seq: usize) -> BenchPing {
    BenchPing {
        seq: seq as u64,
        body: "x".repeat(64),
    }
}

fn broker_cpu() -> Option<f64> {
    tidings_benches::process_cpu("beam.smp")
}

struct Run {
    rate: f64,
    broker_share: Option<f64>,
    client_share: Option<f64>,
}

/// Times one round; the round returns its own elapsed time and, for a child process, the
/// client CPU seconds it used (otherwise this process's are counted).
async fn measure<F: std::future::Future<Output = (Duration, Option<f64>)>>(f: F) -> Run {
    let (broker_before, self_before) = (broker_cpu(), cpu_seconds("self"));
    let wall = Instant::now();
    let (elapsed, child_cpu) = f.await;
    let wall = wall.elapsed().as_secs_f64();
    let share = |before: Option<f64>, after: Option<f64>| {
        before.zip(after).map(|(b, a)| (a - b) / wall / CORES)
    };
    let client_share = match child_cpu {
        Some(cpu) => Some(cpu / wall / CORES),
        None => share(self_before, cpu_seconds("self")),
    };
    Run {
        rate: MESSAGES as f64 / elapsed.as_secs_f64(),
        broker_share: share(broker_before, broker_cpu()),
        client_share,
    }
}

async fn fresh_source(t: &AmqpTransport) -> Endpoint {
    let source =
        Endpoint::new(format!("tidings-bench-{:016x}", fastrand::u64(..))).prefetch(PREFETCH);
    t.declare(&source).await.expect("declare");
    source
}

async fn remove(t: &AmqpTransport, source: &Endpoint) {
    let _ = t.delete_queue(&source.name).await;
    let _ = t.delete_queue(&source.dead_letter).await;
    let _ = t.delete_exchange(&source.name).await;
}

/// `outbound` routed to `source` in `shape`.
fn route(
    outbound: OutboundBuilder<Bench, AmqpTransport>,
    source: &Endpoint,
    shape: Shape,
) -> OutboundBuilder<Bench, AmqpTransport> {
    match shape {
        Shape::Topic => outbound.destination(source.name.clone()),
        Shape::Queue => {
            // The default exchange, the queue's name as the key (amqplib's `sendToQueue`).
            let route = Route::to("").key(source.name.clone());
            outbound.route(move |_| route.clone())
        }
    }
}

/// A tidings round; with `direct`, the events are published through the transport itself in
/// the outbound's batches (each awaited to its last confirm, as the outbound does), without
/// the bus and the outbound's task: what the outbound's hand-over costs end to end.
async fn tidings_round(
    t: &AmqpTransport,
    source: &Endpoint,
    shape: Shape,
    direct: bool,
    batch_size: usize,
) -> (Duration, Option<f64>) {
    let (out_bus, in_bus) = (Bus::<Bench>::new(), Bus::<Bench>::new());
    let received = Arc::new(AtomicUsize::new(0));
    let all = Arc::new(Notify::new());
    let (r, a) = (Arc::clone(&received), Arc::clone(&all));
    in_bus.on(move |_: &BenchPing| {
        if r.fetch_add(1, Ordering::Relaxed) + 1 == MESSAGES {
            a.notify_one();
        }
    });
    let inbound = Inbound::builder(&in_bus, t.clone(), source.clone()).build();
    // Publishing through the transport alone, no outbound is built.
    let outbound = (!direct).then(|| {
        route(
            Outbound::builder(&out_bus, t.clone()).forward::<BenchPing>(),
            source,
            shape,
        )
        .batch(batch_size, Duration::ZERO)
        .buffer(4 * batch_size)
        .build()
    });
    // Let the consumer start before the clock does.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    if direct {
        let (destination, key) = match shape {
            Shape::Topic => (source.name.as_str(), None),
            Shape::Queue => ("", Some(source.name.as_str())),
        };
        tidings_benches::publish_directly(t, MESSAGES, batch_size, |seq| {
            let payload = serde_json::to_vec(&ping(seq)).expect("encodes");
            let mut envelope = Envelope::new("bench.ping", payload);
            envelope.key = key.map(str::to_owned);
            Outgoing {
                destination: destination.to_owned(),
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
    // Every confirm in, and the last acknowledgement processed: the inbound bridge's shutdown
    // sends what acknowledgements it holds and closes its channel.
    if let Some(outbound) = outbound {
        let report = outbound.shutdown(Duration::from_secs(10)).await;
        assert_eq!(report.unfinished_count(), 0);
    }
    inbound.shutdown(Duration::from_secs(10)).await;
    (start.elapsed(), None)
}

/// What the broker gets with a message, as text: every property and header, each value by
/// its length (ids and times differ from message to message, their sizes do not).
fn property_shape(properties: &BasicProperties) -> Vec<String> {
    let mut shape = vec![
        format!("delivery mode {:?}", properties.delivery_mode()),
        format!("type {:?}", properties.kind()),
        format!("content type {:?}", properties.content_type()),
        format!("timestamp {}", properties.timestamp().is_some()),
        format!(
            "message id {:?}",
            properties.message_id().as_ref().map(|m| m.as_str().len())
        ),
        format!("correlation id {}", properties.correlation_id().is_some()),
        format!("reply to {}", properties.reply_to().is_some()),
        format!("priority {}", properties.priority().is_some()),
        format!("expiration {}", properties.expiration().is_some()),
        format!("user id {}", properties.user_id().is_some()),
        format!("app id {}", properties.app_id().is_some()),
    ];
    for (name, value) in properties.headers().iter().flat_map(|h| h.inner()) {
        let size = match value {
            AMQPValue::LongString(text) => text.as_bytes().len(),
            other => panic!("header {name}: {other:?}"),
        };
        shape.push(format!("header {name}: text of {size} bytes"));
    }
    shape
}

/// Checks that the raw lapin contender and amqplib's send what tidings sends in `shape`: one
/// message from each, read back and compared property by property and header by header, the
/// payload by length.
async fn properties_match(
    t: &AmqpTransport,
    raw: &Connection,
    node: Option<&PathBuf>,
    shape: Shape,
) {
    let source = fresh_source(t).await;
    let out_bus = Bus::<Bench>::new();
    let outbound = route(
        Outbound::builder(&out_bus, t.clone()).forward::<BenchPing>(),
        &source,
        shape,
    )
    .build();
    tidings_benches::send_one(&out_bus, outbound, ping(1)).await;
    let channel = raw.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let confirm = publish_one(&channel, &source.name, shape, 1).await;
    confirm.await.expect("confirmed");
    if let Some(dir) = node {
        let payload = serde_json::to_string(&ping(1)).expect("encodes");
        amqplib(
            dir,
            &[
                URL,
                &source.name,
                "1",
                "1",
                "1",
                &payload,
                "publish",
                shape.name(),
            ],
        )
        .await;
    }
    let mut shapes = Vec::new();
    for who in ["tidings", "lapin", "amqplib"]
        .into_iter()
        .take(2 + usize::from(node.is_some()))
    {
        let message = channel
            .basic_get(
                source.name.as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("{who}'s message is missing"));
        let mut sent = property_shape(&message.delivery.properties);
        sent.push(format!("routing key {}", message.delivery.routing_key));
        sent.push(format!("payload of {} bytes", message.delivery.data.len()));
        shapes.push((who, sent));
    }
    for (who, sent) in &shapes[1..] {
        assert_eq!(
            sent,
            &shapes[0].1,
            "{who} does not send what tidings sends ({})",
            shape.name()
        );
    }
    let _ = channel.close(200, "OK".into()).await;
    remove(t, &source).await;
}

/// How the raw lapin contender publishes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LapinMode {
    /// Each publish awaited (its frames written), its confirm kept in a sliding window.
    Sliding,
    /// Each publish awaited, a window of them published and all its confirms awaited before
    /// the next.
    Batch,
    /// Publish-and-confirm futures in a sliding window (`FuturesOrdered`): a publish's frames
    /// are queued when the window first polls it, and no publish waits for its own write.
    Pipelined,
}

impl LapinMode {
    fn name(self) -> &'static str {
        match self {
            LapinMode::Sliding => "lapin sliding",
            LapinMode::Batch => "lapin batch",
            LapinMode::Pipelined => "lapin pipelined",
        }
    }
}

/// Raw lapin, publishing as `mode` says.
async fn lapin_round(
    connection: &Connection,
    source: &Endpoint,
    mode: LapinMode,
    shape: Shape,
) -> (Duration, Option<f64>) {
    let publisher = connection.create_channel().await.expect("channel");
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let consumer_channel = connection.create_channel().await.expect("channel");
    consumer_channel
        .basic_qos(PREFETCH as u16, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = consumer_channel
        .basic_consume(
            source.name.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let consuming = tokio::spawn(async move {
        let mut n = 0;
        while let Some(Ok(delivery)) = consumer.next().await {
            let _: BenchPing = serde_json::from_slice(&delivery.data).expect("decodes");
            n += 1;
            if n % ACK_EVERY == 0 || n == MESSAGES {
                delivery
                    .ack(BasicAckOptions { multiple: true })
                    .await
                    .expect("ack");
            }
            if n == MESSAGES {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    if mode == LapinMode::Pipelined {
        publish_pipelined(&publisher, source, shape).await;
    } else {
        publish_awaiting(&publisher, source, mode == LapinMode::Batch, shape).await;
    }
    consuming.await.expect("consumer");
    // The close is answered once the broker processed the last acknowledgement.
    consumer_channel
        .close(200, "OK".into())
        .await
        .expect("close");
    let elapsed = start.elapsed();
    let _ = publisher.close(200, "OK".into()).await;
    (elapsed, None)
}

/// The properties `AmqpTransport` gives each event (`bridges/src/amqp/wire.rs`): persistent,
/// its type, a new id, the time in seconds, the content type, and the CloudEvents source, time
/// and spec version in headers, and, sent straight to a queue, that queue's name as the key
/// (the key the outbound routes by there, which the transport writes as the partition key).
/// Every raw contender sends the same, so the broker decodes, stores and delivers the same
/// bytes for each (`properties_match` checks it against messages the transport sent).
fn properties(shape: Shape, queue: &str) -> BasicProperties {
    let now = SystemTime::now();
    let mut headers = FieldTable::default();
    let text = |value: &str| AMQPValue::LongString(value.into());
    headers.insert("cloudEvents:source".into(), text("tidings"));
    headers.insert(
        "cloudEvents:time".into(),
        text(&humantime::format_rfc3339_millis(now).to_string()),
    );
    headers.insert("cloudEvents:specversion".into(), text("1.0"));
    if shape == Shape::Queue {
        headers.insert("cloudEvents:partitionkey".into(), text(queue));
    }
    let seconds = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(tidings::bridge::new_id().into())
        .with_timestamp(seconds)
        .with_content_type("application/json".into())
        .with_headers(headers)
        .with_type("bench.ping".into())
}

/// Publishes message `seq` to the queue named `name` in `shape`, as every raw contender does;
/// resolves once lapin wrote it, to its confirm.
async fn publish_one(
    publisher: &lapin::Channel,
    name: &str,
    shape: Shape,
    seq: usize,
) -> lapin::PublisherConfirm {
    let payload = serde_json::to_vec(&ping(seq)).expect("encodes");
    let (exchange, key) = shape.route(name);
    let options = BasicPublishOptions {
        mandatory: true,
        immediate: false,
    };
    publisher
        .basic_publish(
            exchange.into(),
            key.into(),
            options,
            &payload,
            properties(shape, name),
        )
        .await
        .expect("publish")
}

/// Publishes every message with confirms in a window of `WINDOW` futures that each publish
/// and wait for their confirm, polled together.
async fn publish_pipelined(publisher: &lapin::Channel, source: &Endpoint, shape: Shape) {
    let mut window = futures_util::stream::FuturesOrdered::new();
    for seq in 0..MESSAGES {
        if window.len() == WINDOW {
            let confirmation: lapin::Confirmation = window.next().await.expect("in flight");
            assert!(confirmation.is_ack());
        }
        // The futures borrow the channel and the queue's name: nothing is cloned per message.
        let name = source.name.as_str();
        window.push_back(async move {
            let confirm = publish_one(publisher, name, shape, seq).await;
            confirm.await.expect("confirm")
        });
    }
    while let Some(confirmation) = window.next().await {
        assert!(confirmation.is_ack());
    }
}

/// Publishes every message with confirms, each publish awaited: a sliding window of
/// confirms, or (`batch`) a window published and all its confirms awaited before the next.
async fn publish_awaiting(
    publisher: &lapin::Channel,
    source: &Endpoint,
    batch: bool,
    shape: Shape,
) {
    let mut in_flight = VecDeque::with_capacity(WINDOW);
    for seq in 0..MESSAGES {
        if in_flight.len() == WINDOW {
            let waiting = if batch { WINDOW } else { 1 };
            for confirm in in_flight.drain(..waiting) {
                let confirm: lapin::PublisherConfirm = confirm;
                assert!(confirm.await.expect("confirm").is_ack());
            }
        }
        in_flight.push_back(publish_one(publisher, &source.name, shape, seq).await);
    }
    for confirm in in_flight {
        assert!(confirm.await.expect("confirm").is_ack());
    }
}

/// Runs `benches/node/amqplib_bench.js` with `args` from `dir`; what it printed.
async fn amqplib(dir: &PathBuf, args: &[&str]) -> String {
    let output = tokio::process::Command::new("node")
        .arg("amqplib_bench.js")
        .args(args)
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

/// amqplib in `mode`: `sliding` or `batch` (see `benches/node/amqplib_bench.js`).
async fn node_round(
    dir: &PathBuf,
    source: &Endpoint,
    mode: &str,
    shape: Shape,
) -> (Duration, Option<f64>) {
    let payload = serde_json::to_string(&ping(0)).expect("encodes");
    let stdout = amqplib(
        dir,
        &[
            URL,
            &source.name,
            &MESSAGES.to_string(),
            &WINDOW.to_string(),
            &PREFETCH.to_string(),
            &payload,
            mode,
            shape.name(),
        ],
    )
    .await;
    let mut figures = stdout
        .split_whitespace()
        .map(|f| f.parse::<f64>().expect("a number"));
    let (millis, cpu_millis) = (
        figures.next().expect("elapsed"),
        figures.next().expect("cpu"),
    );
    (
        Duration::from_secs_f64(millis / 1000.0),
        Some(cpu_millis / 1000.0),
    )
}

/// Callers publishing at once through one transport: `PUBLISHERS` tasks, each publishing its
/// share of `MESSAGES` with `Transport::publish` in batches of up to `batch`. The clock stops
/// when every task has every publish confirmed (nothing is consumed; the queue is deleted
/// after).
const PUBLISHERS: usize = 4;

async fn concurrent_round(
    t: &AmqpTransport,
    source: &Endpoint,
    batch: usize,
) -> (Duration, Option<f64>) {
    use tidings::bridge::{Envelope, Outgoing};
    let payload = serde_json::to_vec(&ping(0)).expect("encodes");
    let start = Instant::now();
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|_| {
            let (t, destination, payload) = (t.clone(), source.name.clone(), payload.clone());
            tokio::spawn(async move {
                let mut left = MESSAGES / PUBLISHERS;
                while left > 0 {
                    let n = left.min(batch);
                    left -= n;
                    let batch: Vec<Outgoing> = (0..n)
                        .map(|_| Outgoing {
                            destination: destination.clone(),
                            envelope: Envelope::new(BenchPing::NAME, payload.clone()),
                        })
                        .collect();
                    let results = t.publish(&batch).await;
                    assert!(results.iter().all(Result::is_ok), "every publish confirmed");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a publishing task");
    }
    (start.elapsed(), None)
}

/// Prints `name`'s figures and returns its median rate (see [`tidings_benches::report`]).
fn report(name: &str, runs: &[Run]) -> Option<f64> {
    let rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
    let broker = runs.iter().map(|r| r.broker_share).collect();
    let client = runs.iter().map(|r| r.client_share).collect();
    tidings_benches::report(name, &rates, &[("broker", broker), ("client", client)])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let t = AmqpTransport::builder(URL)
        .confirm_window(WINDOW)
        .connect()
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
    let raw = Connection::connect(URL, ConnectionProperties::default())
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
    let node = node_dir("amqplib");
    for shape in [Shape::Topic, Shape::Queue] {
        properties_match(&t, &raw, node.as_ref(), shape).await;
    }
    // `PROFILE=tidings` (or another contender's name as reported, several separated by commas)
    // runs those contenders alone, for a profiler; `ROUNDS=n` runs n rounds; `BATCH=n` gives
    // tidings' outbound (and the transport-alone round) batches of n instead of `BATCH`.
    let selection = tidings_benches::Selection::from_env(ROUNDS);
    let batch = tidings_benches::count_from_env("BATCH", BATCH);
    for shape in [Shape::Topic, Shape::Queue] {
        let (mut ours, mut direct) = (Vec::new(), Vec::new());
        let mut lapin: [Vec<Run>; 3] = Default::default();
        let modes = [LapinMode::Sliding, LapinMode::Batch, LapinMode::Pipelined];
        let (mut node_sliding, mut node_batch) = (Vec::new(), Vec::new());
        for round in 0..selection.rounds {
            for (direct, runs) in [(false, &mut ours), (true, &mut direct)] {
                let name = if direct {
                    "tidings transport alone"
                } else {
                    "tidings"
                };
                if selection.runs(name) {
                    let source = fresh_source(&t).await;
                    runs.push(measure(tidings_round(&t, &source, shape, direct, batch)).await);
                    remove(&t, &source).await;
                }
            }
            for (mode, runs) in modes.into_iter().zip(&mut lapin) {
                if selection.runs(mode.name()) {
                    let source = fresh_source(&t).await;
                    runs.push(measure(lapin_round(&raw, &source, mode, shape)).await);
                    remove(&t, &source).await;
                }
            }
            if let Some(dir) = &node {
                for (mode, runs) in [("sliding", &mut node_sliding), ("batch", &mut node_batch)] {
                    if selection.runs(&format!("amqplib {mode}")) {
                        let source = fresh_source(&t).await;
                        runs.push(measure(node_round(dir, &source, mode, shape)).await);
                        remove(&t, &source).await;
                    }
                }
            }
            println!(
                "{}: round {} of {} done",
                shape.name(),
                round + 1,
                selection.rounds
            );
        }
        println!(
            "\n{}: {MESSAGES} persistent messages per run, confirm window {WINDOW}, prefetch \
             {PREFETCH}, acknowledgements cumulative every {ACK_EVERY}, tidings' batches {batch}",
            shape.name()
        );
        // A ratio where both of its contenders ran.
        let ratio = |what: &str, ours: Option<f64>, theirs: Option<f64>, why: &str| {
            if let (Some(ours), Some(theirs)) = (ours, theirs) {
                println!("{}: {what} = {:.2}x ({why})", shape.name(), ours / theirs);
            }
        };
        let ours = report("tidings", &ours);
        let direct = report("tidings transport alone", &direct);
        ratio(
            "tidings / its transport alone",
            ours,
            direct,
            "the outbound's hand-over",
        );
        let lapin = modes
            .into_iter()
            .zip(&lapin)
            .filter_map(|(mode, runs)| report(mode.name(), runs))
            .reduce(f64::max);
        ratio("tidings / best lapin  ", ours, lapin, "goal >= 1.0x");
        let node = [
            ("amqplib sliding", &node_sliding),
            ("amqplib batch", &node_batch),
        ]
        .into_iter()
        .filter_map(|(name, runs)| report(name, runs))
        .reduce(f64::max);
        ratio("tidings / best amqplib", ours, node, "goal >= 1.2x");
    }

    if selection.only.is_some() {
        t.shutdown(Duration::from_secs(5)).await;
        return;
    }
    // Publishers at once through one transport: on one channel they take turns, batch by
    // batch (each batch holds its channel until its last confirm); on four, each has its own.
    // Small batches wait on a confirm round trip each; large ones keep the broker busy.
    let mut by_channels = Vec::new();
    for channels in [1, PUBLISHERS] {
        let t = AmqpTransport::builder(URL)
            .confirm_window(WINDOW)
            .publishing_channels(channels)
            .connect()
            .await
            .expect("RabbitMQ on 127.0.0.1:5672");
        by_channels.push((channels, t));
    }
    for batch in [32, WINDOW] {
        let mut runs: Vec<Vec<Run>> = by_channels.iter().map(|_| Vec::new()).collect();
        for round in 0..ROUNDS {
            for ((_, t), runs) in by_channels.iter().zip(&mut runs) {
                let source = fresh_source(t).await;
                runs.push(measure(concurrent_round(t, &source, batch)).await);
                remove(t, &source).await;
            }
            println!(
                "concurrent publishers, batches of {batch}: round {} of {ROUNDS} done",
                round + 1
            );
        }
        println!(
            "\nconcurrent publishers: {PUBLISHERS} tasks publishing {MESSAGES} persistent \
             messages in all through one transport, batches of {batch}"
        );
        let rates: Vec<f64> = by_channels
            .iter()
            .zip(&runs)
            .filter_map(|((channels, _), runs)| {
                report(&format!("{channels} publishing channel(s)"), runs)
            })
            .collect();
        println!(
            "concurrent publishers, batches of {batch}: {PUBLISHERS} channels / 1 channel = {:.2}x",
            rates[1] / rates[0]
        );
    }
    for (_, t) in by_channels {
        t.shutdown(Duration::from_secs(5)).await;
    }
    t.shutdown(Duration::from_secs(5)).await;
}
