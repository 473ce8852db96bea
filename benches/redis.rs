//! End-to-end Redis Streams throughput, side by side in one run against the server on
//! 127.0.0.1:6379: add entries in pipelined batches, read them in a consumer group, acknowledge
//! after handling, for
//!
//! - tidings: `emit_async` on a bus → `Outbound` (batches of 1024) → `RedisTransport` →
//!   Redis → `RedisConsumer` (prefetch 512) → `Inbound` → a listener on a second bus;
//! - raw redis-rs, written for throughput: pipelines of 1024 `XADD`s with the same fields
//!   (replies not converted; the fields checked before the first round, `fields_match`), and
//!   a consumer task reading `XREADGROUP COUNT 512 BLOCK 100` (replies taken as they come,
//!   ids and payloads moved out of them, not copied), decoding each entry and acknowledging
//!   each read batch with one presized `XACK` sent beside the next read.
//!
//! Each round uses a fresh stream. Rounds alternate the contenders; each reports messages per
//! second from the first add to the same observable point: every `XADD` answered and the reply
//! to the last `XACK` received (for tidings, once the inbound bridge's shutdown closed its
//! consumer, which waits for those replies), and the Redis server's share of the machine's CPU
//! meanwhile. Needs Redis on 127.0.0.1:6379:
//! `cargo bench -p tidings-benches --features redis --bench redis`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::Value;
use serde::{Deserialize, Serialize};
use tidings::bridge::{Endpoint, Envelope, Inbound, Outbound, Transport};
use tidings::prelude::*;
use tidings_bridges::redis::RedisTransport;
use tokio::sync::Notify;

const URL: &str = "redis://127.0.0.1:6379";
const MESSAGES: usize = 100_000;
const ROUNDS: usize = 5;
const BATCH: usize = 1024;
const PREFETCH: usize = 512;
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

fn server_cpu() -> Option<f64> {
    tidings_benches::process_cpu("redis-server.*6379")
}

struct Run {
    rate: f64,
    server_share: Option<f64>,
}

async fn measure<F: std::future::Future<Output = Duration>>(f: F) -> Run {
    let before = server_cpu();
    let wall = Instant::now();
    let elapsed = f.await;
    let wall = wall.elapsed().as_secs_f64();
    Run {
        rate: MESSAGES as f64 / elapsed.as_secs_f64(),
        server_share: before
            .zip(server_cpu())
            .map(|(b, a)| (a - b) / wall / CORES),
    }
}

/// A stream name of this run: `tidings-bench-{pid}-{n}`.
fn stream() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("tidings-bench-{}-{n}", std::process::id())
}

async fn tidings_round(t: &RedisTransport, name: &str) -> Duration {
    let source = Endpoint::new(name).group("bench").prefetch(PREFETCH);
    t.declare(&source).await.expect("declare");
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
    let outbound = Outbound::builder(&out_bus, t.clone())
        .forward::<BenchPing>()
        .destination(name)
        .batch(BATCH, Duration::ZERO)
        .buffer(4 * BATCH)
        .build();
    let start = Instant::now();
    for seq in 0..MESSAGES {
        out_bus.emit_async(ping(seq)).await.expect("emit");
    }
    all.notified().await;
    // The raw peer's clock stops at the last `XACK` reply: so does this one. The inbound
    // bridge's shutdown closes its consumer, which sends what acknowledgements it holds and
    // waits for the replies of all it sent.
    let report = outbound.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.unfinished_count(), 0);
    inbound.shutdown(Duration::from_secs(10)).await;
    start.elapsed()
}

/// The id and `data` field of every entry of an `XREADGROUP` reply, moved out of it.
fn entries(reply: Value) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let Value::Array(streams) = reply else {
        return out;
    };
    for stream in streams {
        let Value::Array(mut pair) = stream else {
            continue;
        };
        let Some(Value::Array(items)) = pair.pop() else {
            continue;
        };
        for item in items {
            let Value::Array(entry) = item else { continue };
            let mut entry = entry.into_iter();
            let (Some(Value::BulkString(id)), Some(Value::Array(fields))) =
                (entry.next(), entry.next())
            else {
                continue;
            };
            let mut fields = fields.into_iter();
            let mut data = Vec::new();
            while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
                if let (Value::BulkString(k), Value::BulkString(v)) = (k, v) {
                    if k == b"data" {
                        data = v;
                        break;
                    }
                }
            }
            out.push((id, data));
        }
    }
    out
}

/// Adds event `seq` to the stream `name` in `pipe` as the raw contender does: the fields
/// tidings' transport writes, in its order (`fields_match` checks it).
fn raw_add(pipe: &mut redis::Pipeline, name: &str, seq: usize) {
    let event = ping(seq);
    let envelope = Envelope::new("bench.ping", serde_json::to_vec(&event).expect("encodes"))
        .with_key(event.key.clone());
    // As tidings writes the time: RFC 3339 with milliseconds.
    let time = humantime::format_rfc3339_millis(envelope.time).to_string();
    pipe.cmd("XADD")
        .arg(name)
        .arg("*")
        .arg("id")
        .arg(&envelope.id)
        .arg("type")
        .arg("bench.ping")
        .arg("source")
        .arg("tidings")
        .arg("specversion")
        .arg("1.0")
        .arg("time")
        .arg(time)
        .arg("datacontenttype")
        .arg("application/json")
        .arg("partitionkey")
        .arg(&event.key)
        .arg("data")
        .arg(envelope.payload.as_ref());
}

/// An entry's fields, as `XRANGE` returns them.
type Fields = Vec<(String, Vec<u8>)>;

/// An entry's fields as text: each name with its value's length (ids and times differ from
/// entry to entry, their sizes do not).
fn field_shape(fields: &Fields) -> Vec<String> {
    fields
        .iter()
        .map(|(name, value)| format!("{name} ({} bytes)", value.len()))
        .collect()
}

/// Stops the bench unless the raw contender adds what tidings adds: one event sent through
/// an `Outbound` on the transport and the same event added by [`raw_add`], read back with
/// `XRANGE`, must carry the same fields in the same order, each value of the same length.
async fn fields_match(t: &RedisTransport, client: &redis::Client) {
    let name = stream();
    // The transport adds only to a stream that exists (as a declared source's does).
    t.declare(&Endpoint::new(&name).group("check"))
        .await
        .expect("declare");
    let bus = Bus::<Bench>::new();
    let outbound = Outbound::builder(&bus, t.clone())
        .forward::<BenchPing>()
        .destination(&name)
        .build();
    tidings_benches::send_one(&bus, outbound, ping(0)).await;
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let mut pipe = redis::pipe();
    raw_add(&mut pipe, &name, 0);
    let () = pipe.query_async(&mut connection).await.expect("XADD");
    let entries: Vec<(String, Fields)> = redis::cmd("XRANGE")
        .arg(&name)
        .arg("-")
        .arg("+")
        .query_async(&mut connection)
        .await
        .expect("XRANGE");
    t.delete_streams(&[&name]).await.expect("delete");
    let [(_, ours), (_, raw)] = &entries[..] else {
        panic!("two entries in the stream, found {}", entries.len());
    };
    let (ours, raw) = (field_shape(ours), field_shape(raw));
    assert_eq!(
        ours, raw,
        "redis-rs does not add what tidings adds: tidings {ours:?}, redis-rs {raw:?}"
    );
}

async fn raw_round(client: &redis::Client, name: &str) -> Duration {
    let mut admin = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let _: Value = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(name)
        .arg("raw")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut admin)
        .await
        .expect("XGROUP");
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut reader = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connection");
    let name_c = name.to_owned();
    let acker = admin.clone();
    let consuming = tokio::spawn(async move {
        let mut acks = Vec::new();
        let mut n = 0;
        while n < MESSAGES {
            let read = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("raw")
                .arg("c1")
                .arg("COUNT")
                .arg(PREFETCH)
                .arg("BLOCK")
                .arg(100)
                .arg("STREAMS")
                .arg(&name_c)
                .arg(">")
                .to_owned();
            // The reply as it comes: `query_async` would first walk all of it for nested
            // errors, which Redis never sends in a read.
            let batch = entries(reader.req_packed_command(&read).await.expect("XREADGROUP"));
            if batch.is_empty() {
                continue;
            }
            let size = 32 + name_c.len() + batch.iter().map(|(id, _)| id.len()).sum::<usize>();
            let mut ack = redis::Cmd::with_capacity(3 + batch.len(), size);
            ack.arg("XACK").arg(&name_c).arg("raw");
            for (id, data) in &batch {
                let _: BenchPing = serde_json::from_slice(data).expect("decodes");
                ack.arg(id);
            }
            // Beside the next read, not before it: the reply is waited for at the end.
            let mut acker = acker.clone();
            acks.push(tokio::spawn(async move {
                let _: i64 = ack.query_async(&mut acker).await.expect("XACK");
            }));
            n += batch.len();
        }
        for ack in acks {
            ack.await.expect("XACK task");
        }
    });
    let start = Instant::now();
    let mut seq = 0;
    while seq < MESSAGES {
        let mut pipe = redis::pipe();
        for s in seq..(seq + BATCH).min(MESSAGES) {
            raw_add(&mut pipe, name, s);
        }
        let () = pipe.query_async(&mut admin).await.expect("XADD");
        seq += BATCH;
    }
    consuming.await.expect("consumer");
    start.elapsed()
}

/// Prints `name`'s figures and returns its median rate (see [`tidings_benches::report`]).
fn report(name: &str, runs: &[Run]) -> Option<f64> {
    let rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
    let server = runs.iter().map(|r| r.server_share).collect();
    tidings_benches::report(name, &rates, &[("redis-server", server)])
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let t = RedisTransport::builder(URL)
        .connect()
        .await
        .expect("Redis on 127.0.0.1:6379");
    let client = redis::Client::open(URL).expect("URL");
    fields_match(&t, &client).await;
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    // `PROFILE=tidings` or `PROFILE=redis-rs` runs one contender alone, for a profiler;
    // `ROUNDS=n` runs n rounds instead (one, under callgrind).
    let selection = tidings_benches::Selection::from_env(ROUNDS);
    for round in 0..selection.rounds {
        if selection.runs("tidings") {
            let name = stream();
            ours.push(measure(tidings_round(&t, &name)).await);
            t.delete_streams(&[&name]).await.expect("delete");
        }
        if selection.runs("redis-rs") {
            let name = stream();
            raw.push(measure(raw_round(&client, &name)).await);
            t.delete_streams(&[&name]).await.expect("delete");
        }
        println!("round {} of {} done", round + 1, selection.rounds);
    }
    println!("\n{MESSAGES} entries per run, batches of {BATCH}, reads of up to {PREFETCH}");
    if let (Some(ours), Some(raw)) = (report("tidings", &ours), report("redis-rs", &raw)) {
        println!("tidings / redis-rs = {:.2}x (goal >= 0.95x)", ours / raw);
    }
}
