//! Numbers shared with Node: readings whose doubles cover every kind of finite double, and
//! what Node's `JSON.stringify` / `JSON.parse` make of them, for the `*_numbers` suites.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use tidings::bridge::{Endpoint, Inbound, Outbound, Transport};
use tidings::{Bus, Event, EventSet};

/// A reading with three doubles and an integer, as a Node service would send it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "reading.taken")]
pub struct Reading {
    /// Which reading (matches what was sent with what arrived).
    pub seq: u64,
    /// Any finite double: edge cases first, then random bit patterns.
    pub value: f64,
    /// `seq * 0.1`, computed as Node computes it.
    pub tenth: f64,
    /// `seq / 3`.
    pub third: f64,
    /// Integers around ±2^53 and beyond.
    pub big: i64,
}

/// The one event of the numbers suites.
#[derive(Debug, Clone, PartialEq, EventSet)]
pub enum Readings {
    /// `reading.taken`
    Reading(Reading),
}

/// Doubles every run includes: zeros, subnormals, the extremes, and doubles whose shortest
/// form has 17 digits.
const EDGES: [u64; 12] = [
    0x0000_0000_0000_0000, // 0
    0x8000_0000_0000_0000, // -0
    0x0000_0000_0000_0001, // the smallest subnormal
    0x000f_ffff_ffff_ffff, // the largest subnormal
    0x0010_0000_0000_0000, // the smallest normal
    0x7fef_ffff_ffff_ffff, // the largest double
    0xffef_ffff_ffff_ffff, // its negative
    0x3ff6_6666_6666_6667, // 1.4000000000000001
    0x3fd3_3333_3333_3334, // 0.30000000000000004
    0x3ff0_0000_0000_0001, // 1.0000000000000002
    0x4340_0000_0000_0001, // 9007199254740994
    0xc3e0_0000_0000_0000, // -2^63
];

/// Integers at the edge of what a double holds exactly, and beyond.
const BIG: [i64; 10] = [
    (1 << 53) - 1,
    -((1 << 53) - 1),
    1 << 53,
    (1 << 53) + 1,
    -((1 << 53) + 1),
    (1 << 53) + 3,
    (1 << 60) + 1,
    -((1 << 60) + 7),
    (1 << 62) + 12_345,
    0,
];

/// `count` readings: every edge case, then random finite doubles from `seed` (printed, so a
/// failing run can be repeated with `NUMBERS_SEED`).
pub fn readings(count: usize) -> Vec<Reading> {
    let seed = std::env::var("NUMBERS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("numbers: seed {seed} (NUMBERS_SEED={seed} repeats this run)");
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..count as u64)
        .map(|seq| {
            let value = match EDGES.get(seq as usize) {
                Some(&bits) => f64::from_bits(bits),
                None => loop {
                    let x = f64::from_bits(rng.u64(..));
                    if x.is_finite() {
                        break x;
                    }
                },
            };
            Reading {
                seq,
                value,
                tenth: seq as f64 * 0.1,
                third: seq as f64 / 3.0,
                big: BIG[seq as usize % BIG.len()],
            }
        })
        .collect()
}

/// `reading` as Node's `JSON.parse` reads what tidings wrote: integers beyond 2^53 become the
/// nearest double (ties to even, as Rust's `as f64`); every double is exact.
pub fn as_node_reads(reading: &Reading) -> Reading {
    Reading {
        big: reading.big as f64 as i64,
        ..*reading
    }
}

/// `reading` as it arrives after Node's `JSON.parse` and `JSON.stringify`: every double
/// exact but a negative zero, written as `0`; an integer beyond 2^53 as Node writes the
/// nearest double, in its shortest digits padded with zeros (2^60 + 1 is written
/// `1152921504606847000`, which Rust's `Display` of the double writes too).
pub fn as_node_writes(reading: &Reading) -> Reading {
    let zero = |x: f64| if x == 0.0 { 0.0 } else { x };
    let big = (reading.big as f64).to_string();
    Reading {
        value: zero(reading.value),
        tenth: zero(reading.tenth),
        third: zero(reading.third),
        big: big.parse().unwrap_or_else(|e| panic!("{big}: {e}")),
        ..*reading
    }
}

/// The lines for `numbers_interop.js produce`: one JSON object per reading, as tidings
/// writes it.
pub fn lines(readings: &[Reading]) -> String {
    readings.iter().fold(String::new(), |mut out, r| {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string(r).expect("a reading encodes")
        );
        out
    })
}

/// A line printed by `numbers_interop.js consume`: each number as the bits of the double
/// Node read.
pub fn parse_node_line(line: &str) -> Reading {
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let double = |field: &str| {
        let hex = v[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field}: {line}"));
        f64::from_bits(u64::from_str_radix(hex, 16).expect("16 hex digits"))
    };
    Reading {
        seq: v["seq"].as_u64().expect("seq"),
        value: double("value"),
        tenth: double("tenth"),
        third: double("third"),
        big: double("big") as i64,
    }
}

/// Asserts that every reading of `expected` arrived in `got` bit for bit (order aside),
/// listing the first differences and how many there are.
pub fn assert_exact(expected: &[Reading], got: &[Reading]) {
    let key = |r: &Reading| {
        (
            r.value.to_bits(),
            r.tenth.to_bits(),
            r.third.to_bits(),
            r.big,
        )
    };
    let got: BTreeMap<u64, &Reading> = got.iter().map(|r| (r.seq, r)).collect();
    assert_eq!(got.len(), expected.len(), "readings arrived: {}", got.len());
    let wrong: Vec<String> = expected
        .iter()
        .filter(|e| got.get(&e.seq).is_none_or(|g| key(g) != key(e)))
        .map(|e| format!("sent {e:?}, got {:?}", got.get(&e.seq)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} readings arrived changed; the first: {:#?}",
        wrong.len(),
        expected.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// Writes `readings` to a new file for the Node producer; the file is removed when the
/// returned guard drops.
pub fn file(readings: &[Reading]) -> TempFile {
    let path =
        std::env::temp_dir().join(format!("tidings-numbers-{:016x}.jsonl", fastrand::u64(..)));
    std::fs::write(&path, lines(readings)).expect("write the readings");
    TempFile(path)
}

/// A file removed on drop.
pub struct TempFile(pub std::path::PathBuf);

impl TempFile {
    /// Its path, as text.
    pub fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `numbers_interop.js consume <kind> <url> <source> <count>`, waits for its `ready`,
/// and returns the child and its lines.
pub async fn node_consumer(
    kind: &str,
    url: &str,
    source: &str,
    count: usize,
) -> (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) {
    use tokio::io::AsyncBufReadExt;
    let dir = crate::node_project(node_package(kind)).await;
    let mut child = crate::node_script(
        &dir,
        "numbers_interop.js",
        &["consume", kind, url, source, &count.to_string()],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .expect("node");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(WAIT, lines.next_line()).await;
    assert!(
        matches!(&ready, Ok(Ok(Some(line))) if line == "ready"),
        "the Node consumer is not ready: {ready:?}"
    );
    (child, lines)
}

/// Reads `count` readings printed by a [`node_consumer`], then waits for it to exit.
pub async fn node_readings(
    mut child: tokio::process::Child,
    mut lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    count: usize,
) -> Vec<Reading> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("only {} readings from Node in time", got.len()))
            .expect("stdout")
            .unwrap_or_else(|| panic!("Node exited after {} readings", got.len()));
        got.push(parse_node_line(&line));
    }
    let status = tokio::time::timeout(WAIT, child.wait()).await;
    assert!(matches!(status, Ok(Ok(s)) if s.success()), "{status:?}");
    got
}

/// Runs `numbers_interop.js produce <kind> <url> <destination>` on `readings`, and asserts
/// it succeeded.
pub async fn node_produce(kind: &str, url: &str, destination: &str, readings: &[Reading]) {
    let dir = crate::node_project(node_package(kind)).await;
    let file = file(readings);
    let status = tokio::time::timeout(
        WAIT,
        crate::node_script(
            &dir,
            "numbers_interop.js",
            &["produce", kind, url, destination, file.path()],
        )
        .status(),
    )
    .await
    .expect("the Node producer finished in time")
    .expect("node");
    assert!(status.success(), "the Node producer failed");
}

/// The longest the suites wait for Node.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(60);

fn node_package(kind: &str) -> &'static str {
    match kind {
        "amqp" => "amqplib",
        "kafka" => "kafkajs",
        "redis" => "ioredis",
        _ => "bullmq",
    }
}

/// Node sends `count` readings with `numbers_interop.js produce <kind> <url>` to the source
/// that `transport` has declared; an inbound bridge bound to `Reading` brings them into a bus.
/// Asserts that each arrived as Node wrote it ([`as_node_writes`]), none dead-lettered.
pub async fn from_node<T: Transport>(
    transport: &T,
    source: &Endpoint,
    kind: &str,
    url: &str,
    count: usize,
) {
    let bus = Bus::<Readings>::new();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = std::sync::Arc::clone(&got);
    bus.on(move |r: &Reading| g.lock().expect("not poisoned").push(*r));
    let inbound = Inbound::builder(&bus, transport.clone(), source.clone())
        .bind::<Reading>()
        .build();
    let sent = readings(count);
    node_produce(kind, url, &source.name, &sent).await;
    crate::wait_until("every reading", WAIT, async || {
        got.lock().expect("not poisoned").len() >= count
    })
    .await;
    let expected: Vec<Reading> = sent.iter().map(as_node_writes).collect();
    assert_exact(&expected, &got.lock().expect("not poisoned"));
    assert_eq!(inbound.stats().dead_lettered, 0);
    inbound.shutdown(WAIT).await;
}

/// A Node consumer (`numbers_interop.js consume <kind> <url> <destination>`) is started, then
/// an outbound bridge on `transport` sends it `count` readings. Asserts that Node read each
/// exactly ([`as_node_reads`]) and that every publish was confirmed.
pub async fn to_node<T: Transport>(
    transport: &T,
    destination: &str,
    kind: &str,
    url: &str,
    count: usize,
) {
    let (child, lines) = node_consumer(kind, url, destination, count).await;
    let bus = Bus::<Readings>::new();
    let outbound = Outbound::builder(&bus, transport.clone())
        .forward::<Reading>()
        .destination(destination)
        .build();
    let sent = readings(count);
    for reading in &sent {
        bus.emit_async(*reading).await.expect("emitted");
    }
    let got = node_readings(child, lines, count).await;
    let expected: Vec<Reading> = sent.iter().map(as_node_reads).collect();
    assert_exact(&expected, &got);
    assert_eq!(outbound.shutdown(WAIT).await.unfinished_count(), 0);
}
