//! Shared fixtures for the integration tests: a small event set shaped like a user/order
//! service, and helpers.

use serde::{Deserialize, Serialize};
use tidings::{Event, EventSet};

/// A user signed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(key = id)]
pub struct UserCreated {
    /// User id.
    pub id: u64,
    /// Display name.
    pub name: String,
}

/// A user was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct UserDeleted {
    /// User id.
    pub id: u64,
}

/// An order was placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(key = order)]
pub struct OrderPlaced {
    /// Order number.
    pub order: u64,
    /// Amount in cents.
    pub cents: u64,
}

/// An order left the warehouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct OrderShipped {
    /// Order number.
    pub order: u64,
}

/// Tracking news for a shipped order: a three-word name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "order.shipped.tracking")]
pub struct TrackingUpdated {
    /// Order number.
    pub order: u64,
    /// Carrier status.
    pub status: String,
}

/// A sequence number, for ordering tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Event)]
pub struct Tick(pub u64);

/// Every event the test services carry.
#[derive(Debug, Clone, PartialEq, EventSet)]
pub enum Events {
    /// `user.created`
    UserCreated(UserCreated),
    /// `user.deleted`
    UserDeleted(UserDeleted),
    /// `order.placed`
    OrderPlaced(OrderPlaced),
    /// `order.shipped`
    OrderShipped(OrderShipped),
    /// `order.shipped.tracking`
    TrackingUpdated(TrackingUpdated),
    /// `tick`
    Tick(Tick),
}

/// Collects every listener error of `bus` as `event: kind` text.
pub fn error_log(bus: &tidings::Bus<Events>) -> std::sync::Arc<parking_lot::Mutex<Vec<String>>> {
    let log = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let l = std::sync::Arc::clone(&log);
    bus.on_error(move |e| l.lock().push(format!("{}: {:?}", e.event(), e.kind())));
    log
}

/// A user event with id `id`.
pub fn user(id: u64) -> UserCreated {
    UserCreated {
        id,
        name: format!("user-{id}"),
    }
}

/// A log writer that keeps everything written to it, for tests that read the logs.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// What was written so far, as text.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut bytes) = self.0.lock() {
            bytes.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the global log subscriber, writing every line at every level (and every thread)
/// to the returned [`Captured`]. For the secrets tests: each binary holds only that test.
///
/// # Panics
/// When a global subscriber is installed already.
pub fn capture_all_logs() -> Captured {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();
    logs
}

/// Percent-encodes everything but unreserved characters, as in a URL's user info.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asserts that `password` shows in none of `outputs` (what each is, and its text) in any form
/// a log line or an error could give it: as text, URL-encoded (upper and lower case), escaped,
/// as a byte string, and as a list of byte values (how a `Vec<u8>` or lapin's `LongString`
/// prints), with a few neighbours of its inner bytes to catch a partial print.
pub fn assert_hidden(password: &str, outputs: &[(&str, &str)]) {
    let url_encoded = url_encode(password);
    let bytes = password.as_bytes();
    let list = |b: &[u8]| b.iter().map(u8::to_string).collect::<Vec<_>>().join(", ");
    let forms = [
        ("as text", password.to_owned()),
        ("URL-encoded, lower case", url_encoded.to_lowercase()),
        ("URL-encoded", url_encoded),
        ("escaped", password.escape_default().to_string()),
        (
            "as an escaped byte string",
            bytes.escape_ascii().to_string(),
        ),
        ("as byte values", list(bytes)),
        (
            "as byte values, without its ends",
            list(&bytes[1..bytes.len().saturating_sub(1).max(1)]),
        ),
    ];
    for (what, output) in outputs {
        for (form, needle) in &forms {
            assert!(
                !output.contains(needle.as_str()),
                "the password is in the {what}, {form}: {needle}"
            );
        }
    }
}

/// Connection URLs whose passwords are typed as people type them: with an unencoded `/`, `?`,
/// `#`, `@` or `:`, bad percent-escapes, an IPv6 host, an empty user. Each comes with the
/// random pieces of its password, none of which may ever be shown: whatever a URL parser
/// makes of such a URL, a piece shows up whole if anything of the password does.
#[cfg(any(feature = "amqp", feature = "redis"))]
pub fn hostile_urls(scheme: &str, host_port: &str, path: &str) -> Vec<(String, Vec<String>)> {
    let piece = || format!("k{:012x}", fastrand::u64(..));
    let mut urls = Vec::new();
    for (user, host, between) in [
        ("user", host_port, "/"),
        ("user", host_port, "?"),
        ("user", host_port, "#"),
        ("user", host_port, "@"),
        ("user", host_port, ":"),
        ("user", host_port, "%zz"),
        ("user", host_port, "%2F"),
        ("user", "[::1]:1", "/"),
        ("", host_port, "?"),
        ("", "[::1]:1", "#@"),
    ] {
        let (a, b) = (piece(), piece());
        urls.push((
            format!("{scheme}://{user}:{a}{between}{b}@{host}{path}"),
            vec![a, b],
        ));
    }
    let a = piece();
    urls.push((format!("{scheme}://user:{a}%4@{host_port}{path}"), vec![a]));
    urls
}

/// Runs `test` on a current-thread runtime (with its clock paused when `paused`) while every
/// log line at `level` or above, from this thread, is written to the returned [`Captured`];
/// `test` gets a handle to read it mid-run.
///
/// Give such a test a binary of its own: tracing caches per call site whether a line is
/// wanted, so tests logging on other threads of the same binary would race with it.
pub fn with_logs<F, Fut>(level: tracing::Level, paused: bool, test: F) -> Captured
where
    F: FnOnce(Captured) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let handle = log.clone();
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(paused)
            .build()
            .expect("a runtime");
        runtime.block_on(test(handle));
    });
    log
}

/// The Node project of the interoperability tests (`tests/node`), with `package` installed
/// (`npm ci` when it is missing).
///
/// # Panics
/// Without npm, or when `npm ci` fails.
pub async fn node_project(package: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node");
    if !dir.join("node_modules").join(package).exists() {
        let installed = tokio::process::Command::new("npm")
            .args(["ci", "--silent", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .await
            .expect("npm must be installed");
        assert!(installed.success(), "npm ci in {}", dir.display());
    }
    dir
}

/// Checks `done` every 20 ms until it holds.
///
/// # Panics
///
/// When it still does not hold after `wait`, naming `what`.
pub async fn wait_until(
    what: &str,
    wait: std::time::Duration,
    mut done: impl AsyncFnMut() -> bool,
) {
    let start = std::time::Instant::now();
    while !done().await {
        assert!(start.elapsed() < wait, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Runs the test `test` of the current test binary in a child process with `env` set (the
/// test does its part only when that variable is set), and waits up to `wait` for it to print
/// a line containing `ready`. Killed when dropped; SIGKILL it with `start_kill`.
///
/// # Panics
///
/// When the child cannot start, exits early or is not ready in time.
pub async fn child_test(
    test: &str,
    env: &[(&str, &str)],
    ready: &str,
    wait: std::time::Duration,
) -> tokio::process::Child {
    use tokio::io::AsyncBufReadExt;
    let mut command = tokio::process::Command::new(std::env::current_exe().expect("exe"));
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("the child test");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    tokio::time::timeout(wait, async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            if line.contains(ready) {
                return;
            }
        }
        panic!("the child {test} exited early");
    })
    .await
    .unwrap_or_else(|_| panic!("the child {test} was not ready in {wait:?}"));
    child
}

/// `node {script} {args}` in the Node project `dir`, killed when dropped.
pub fn node_script(dir: &std::path::Path, script: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("node");
    command
        .arg(script)
        .args(args)
        .current_dir(dir)
        .kill_on_drop(true);
    command
}

/// The next delivery of `consumer`.
///
/// # Panics
/// When none comes within `wait`, or the consumer ends or fails instead.
pub async fn next_delivery<C: tidings::bridge::Consumer>(
    consumer: &mut C,
    wait: std::time::Duration,
) -> tidings::bridge::Delivery {
    tokio::time::timeout(wait, consumer.next())
        .await
        .expect("a delivery in time")
        .expect("the consumer open")
        .expect("a delivery, not an error")
}

/// Publishes events `{"i":n}` (named `e`) numbered `numbers` to `destination` in one batch and
/// asserts every one was confirmed.
#[cfg(any(feature = "amqp", feature = "kafka", feature = "redis"))]
pub async fn publish_numbered<T: tidings::bridge::Transport>(
    t: &T,
    destination: &str,
    numbers: std::ops::Range<usize>,
) {
    use tidings::bridge::{Envelope, Outgoing};

    let batch: Vec<Outgoing> = numbers
        .map(|i| Outgoing {
            destination: destination.to_owned(),
            envelope: Envelope::new("e", format!("{{\"i\":{i}}}").into_bytes()),
        })
        .collect();
    let results = t.publish(&batch).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

/// Ten messages published to `source` (declared here, prefetch 2), a consumer holding the
/// first two: its lag reads 8, then 0 once it has handled all ten. What the RabbitMQ and Redis
/// consumers measure: messages no consumer of the group has received yet.
#[cfg(any(feature = "amqp", feature = "redis"))]
pub async fn lag_follows_what_is_read<T: tidings::bridge::Transport>(
    t: &T,
    source: &tidings::bridge::Endpoint,
) {
    use tidings::bridge::Consumer;

    let source = source.clone().prefetch(2);
    t.declare(&source).await.expect("declare");
    publish_numbered(t, &source.name, 0..10).await;
    let mut consumer = t.consume(&source).await.expect("consume");
    let lag = consumer.lag().expect("measured");
    let wait = std::time::Duration::from_secs(15);
    let held = [
        next_delivery(&mut consumer, wait).await,
        next_delivery(&mut consumer, wait).await,
    ];
    wait_until("a lag of 8", wait, async || lag.get() == Some(8)).await;
    for d in held {
        d.ack().await.expect("ack");
    }
    for _ in 0..8 {
        next_delivery(&mut consumer, wait)
            .await
            .ack()
            .await
            .expect("ack");
    }
    wait_until("a lag of 0", wait, async || lag.get() == Some(0)).await;
    consumer.close().await;
}

/// Numbers shared with Node, for the `*_numbers` suites.
pub mod actors;
pub mod memory;
#[cfg(any(feature = "amqp", feature = "kafka", feature = "redis"))]
pub mod numbers;
pub mod versions;

#[cfg(any(feature = "amqp", feature = "redis"))]
pub mod tls;

#[cfg(feature = "amqp")]
pub mod rabbit;
#[cfg(feature = "amqp")]
pub mod rabbit_cluster;

#[cfg(feature = "jobs")]
pub mod jobs;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "postgres")]
pub mod pg;

#[cfg(feature = "redis")]
pub mod redis;

#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(feature = "opentelemetry")]
pub mod otel;

#[cfg(feature = "contracts")]
pub mod contracts;
