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
#[cfg(any(feature = "amqp", feature = "kafka", feature = "redis"))]
pub mod numbers;

/// TLS in front of the local servers (features `amqp`, `redis`).
#[cfg(any(feature = "amqp", feature = "redis"))]
pub mod tls {
    /// A TLS endpoint on loopback in front of a local server, with a certificate for
    /// `localhost` from a certificate authority of its own.
    pub struct TlsProxy {
        /// The local port.
        pub port: u16,
        /// The authority's certificate, PEM: what a client must trust.
        pub ca_pem: String,
        task: tokio::task::JoinHandle<()>,
    }

    impl TlsProxy {
        /// Starts terminating TLS and forwarding to 127.0.0.1:`target`.
        pub async fn to(target: u16) -> TlsProxy {
            use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
            use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
            let ca_key = KeyPair::generate().expect("key");
            let mut ca_params = CertificateParams::new(Vec::new()).expect("params");
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca = ca_params.self_signed(&ca_key).expect("CA");
            let issuer = Issuer::new(ca_params, ca_key);
            let key = KeyPair::generate().expect("key");
            let leaf = CertificateParams::new(vec!["localhost".to_owned()])
                .expect("params")
                .signed_by(&key, &issuer)
                .expect("certificate");
            let chain = vec![CertificateDer::from(leaf.der().to_vec())];
            let private = PrivateKeyDer::try_from(key.serialize_der()).expect("key");
            let config = tokio_rustls::rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(chain, private)
                .expect("server config");
            let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let task = tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(mut client) = acceptor.accept(client).await else {
                            return;
                        };
                        let Ok(mut broker) =
                            tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                        else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                    });
                }
            });
            TlsProxy {
                port,
                ca_pem: ca.pem(),
                task,
            }
        }
    }

    impl Drop for TlsProxy {
        fn drop(&mut self) {
            self.task.abort();
        }
    }
}

/// Helpers for the RabbitMQ suites (feature `amqp`).
#[cfg(feature = "amqp")]
pub mod rabbit {
    use tidings::bridge::Endpoint;
    use tidings_bridges::amqp::{AmqpTransport, queue_name};

    /// The broker of the development and CI machines.
    pub const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

    /// A transport whose connections are named `name` (so [`close_connections`] finds them).
    pub async fn connect(name: &str) -> AmqpTransport {
        AmqpTransport::builder(URL)
            .connection_name(name)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("RabbitMQ must run on 127.0.0.1:5672: {e}"))
    }

    /// Runs `rabbitmqctl` with `args`; its output.
    pub async fn rabbitmqctl(args: &[&str]) -> String {
        let output = tokio::process::Command::new("rabbitmqctl")
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("rabbitmqctl: {e}"));
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The broker's ids of the connections named `name`.
    pub async fn connections_named(name: &str) -> Vec<String> {
        let listing = rabbitmqctl(&[
            "list_connections",
            "pid",
            "client_properties",
            "-q",
            "--no-table-headers",
        ])
        .await;
        let needle = format!("{{\"connection_name\",\"{name}\"}}");
        listing
            .lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| l.split_once('\t').map(|(pid, _)| pid.to_owned()))
            .collect()
    }

    /// Forcibly closes the broker's connections named `name`; returns how many.
    pub async fn close_connections(name: &str) -> usize {
        let connections = connections_named(name).await;
        for pid in &connections {
            rabbitmqctl(&["close_connection", pid, "test outage"]).await;
        }
        connections.len()
    }

    /// Deletes what `declare(source)` created, and the source's dead-letter queue.
    pub async fn cleanup(transport: &AmqpTransport, source: &Endpoint) {
        for queue in [queue_name(source), source.dead_letter.clone()] {
            let _ = transport.delete_queue(&queue).await;
        }
        let _ = transport.delete_exchange(&source.name).await;
    }

    /// What a [`Proxy`] does with traffic.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Mode {
        /// Forwards both ways.
        Pass,
        /// Holds every open connection silent (a dead peer that never closes); forwards new
        /// ones.
        Freeze,
        /// Closes every connection and refuses new ones (a broker that is down).
        Down,
    }

    /// A TCP proxy on loopback in front of the broker, to cut or silence connections.
    pub struct Proxy {
        /// The local port.
        pub port: u16,
        mode: tokio::sync::watch::Sender<(Mode, u64)>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Proxy {
        /// Starts forwarding to the broker on 127.0.0.1:5672.
        pub async fn start() -> Proxy {
            use tokio::net::{TcpListener, TcpStream};
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let (mode, watch) = tokio::sync::watch::channel((Mode::Pass, 0));
            let task = tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (now, epoch) = *watch.borrow();
                    if now == Mode::Down {
                        continue;
                    }
                    let Ok(broker) = TcpStream::connect("127.0.0.1:5672").await else {
                        continue;
                    };
                    tokio::spawn(pipe(client, broker, watch.clone(), epoch));
                }
            });
            Proxy { port, mode, task }
        }

        /// `amqp://guest:guest@127.0.0.1:{port}/%2f`.
        pub fn url(&self) -> String {
            format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
        }

        /// Switches mode; `Freeze` and `Down` apply to the connections open now.
        pub fn set(&self, mode: Mode) {
            self.mode.send_modify(|(m, epoch)| {
                *m = mode;
                *epoch += 1;
            });
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// Copies both ways until the mode changes after `epoch`: then closes (`Down`) or goes
    /// silent holding the sockets (`Freeze`).
    async fn pipe(
        mut client: tokio::net::TcpStream,
        mut broker: tokio::net::TcpStream,
        mut watch: tokio::sync::watch::Receiver<(Mode, u64)>,
        epoch: u64,
    ) {
        let changed = watch.wait_for(|(mode, e)| *e > epoch && *mode != Mode::Pass);
        let mode = tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut broker) => return,
            changed = changed => match changed {
                Ok(state) => state.0,
                Err(_) => return,
            },
        };
        if mode == Mode::Freeze {
            // Hold both sockets open and silent until the proxy goes.
            let _ = watch.wait_for(|_| false).await;
        }
    }

    pub use crate::tls::TlsProxy;

    /// A new name no other run uses.
    pub fn unique(prefix: &str) -> String {
        format!("tidings-{prefix}-{:016x}", fastrand::u64(..))
    }
}

/// Kafka brokers for the Kafka suites (feature `kafka`): each [`Tansu`](kafka::Tansu) is a `tansu` process of
/// its own on a free loopback port, with SQLite storage in a folder of its own, so a test can
/// kill and restart its broker without touching any other test.
#[cfg(feature = "kafka")]
pub mod kafka {
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    use parking_lot::Mutex;
    use tidings_bridges::kafka::KafkaTransport;

    /// A `tansu` broker this process started; killed and its storage removed on drop.
    ///
    /// SQLite is the storage that starts from nothing (PostgreSQL needs tansu's tables made
    /// by hand) and survives a SIGKILL. tansu 0.6.0 makes its `header` table without an
    /// index on the record it belongs to, so each record fetched scans every header stored
    /// and reading a topic back takes time that grows with the square of its size: after two
    /// kills, draining 2 000 events took 1 s, 6 000 took 7.4 s, and of 20 000 at most 683
    /// arrived within a minute. [`ready`](Self::ready) adds that index (with the `sqlite3`
    /// tool); 20 000 then drain in about a second.
    pub struct Tansu {
        port: u16,
        dir: PathBuf,
        child: Mutex<Option<Child>>,
        authentication: Mutex<bool>,
    }

    impl Tansu {
        /// Starts a broker (it is ready once [`ready`](Self::ready) returns).
        ///
        /// # Panics
        /// When `tansu` is not installed (`cargo install tansu --version 0.6.0 --locked`).
        pub fn start() -> Tansu {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let dir =
                std::env::temp_dir().join(format!("tidings-tansu-{:016x}", fastrand::u64(..)));
            std::fs::create_dir_all(&dir).expect("a storage folder");
            let tansu = Tansu {
                port,
                dir,
                child: Mutex::new(None),
                authentication: Mutex::new(false),
            };
            tansu.spawn();
            tansu
        }

        fn spawn(&self) {
            let url = format!("tcp://127.0.0.1:{}", self.port);
            let mut command = Command::new("tansu");
            command
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "sqlite://tansu.db", "--silent"]);
            if *self.authentication.lock() {
                command.arg("--authentication");
            }
            let child = command
                .current_dir(&self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("tansu must be installed (cargo install tansu --version 0.6.0 --locked): {e}")
                });
            *self.child.lock() = Some(child);
        }

        /// `127.0.0.1:{port}`.
        pub fn brokers(&self) -> String {
            format!("127.0.0.1:{}", self.port)
        }

        /// Waits until the broker accepts connections, and checks that it is this broker (a
        /// `tansu` that could not bind its port exits, and the port may answer for another).
        pub async fn ready(&self) {
            let exited = || {
                self.child
                    .lock()
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
            };
            for _ in 0..200 {
                if let Some(status) = exited() {
                    panic!("tansu on port {} exited ({status}): port taken?", self.port);
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok()
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if let Some(status) = exited() {
                        panic!("tansu on port {} exited ({status}): port taken?", self.port);
                    }
                    self.index_headers().await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("tansu did not start on port {}", self.port);
        }

        /// Gives tansu's SQLite `header` table the index on its record key that tansu 0.6.0
        /// leaves out. Without it every record fetched scans every header stored, so reading
        /// a topic back takes time that grows with the square of its size (see [`Tansu`]).
        /// Idempotent; the broker has made its tables by the time it listens.
        async fn index_headers(&self) {
            let status = tokio::process::Command::new("sqlite3")
                .arg(self.dir.join("tansu.db"))
                .arg("CREATE INDEX IF NOT EXISTS tidings_header_record ON header (topition, offset_id)")
                .stdout(Stdio::null())
                .status()
                .await
                .expect("sqlite3 must be installed (apt-get install sqlite3)");
            assert!(status.success(), "sqlite3 could not index tansu's headers");
        }

        /// Kills the broker with SIGKILL (every connection drops; nothing is flushed).
        pub fn kill(&self) {
            if let Some(mut child) = self.child.lock().take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        /// Adds a SCRAM-SHA-256 user, then restarts the broker requiring authentication.
        pub async fn require_user(&self, name: &str, password: &str) {
            self.ready().await;
            let url = format!("tcp://127.0.0.1:{}", self.port);
            let status = tokio::process::Command::new("tansu")
                .args([
                    "user",
                    "create",
                    "--broker",
                    &url,
                    "--mechanism",
                    "scram256",
                ])
                .args([name, password])
                .stdout(Stdio::null())
                .status()
                .await
                .expect("tansu user create");
            assert!(status.success(), "tansu user create");
            *self.authentication.lock() = true;
            self.restart().await;
        }

        /// Kills the broker and starts it again on the same port and storage.
        pub async fn restart(&self) {
            self.kill();
            self.spawn();
            self.ready().await;
        }

        /// A transport for this broker with the suites' settings (a short session timeout, so
        /// a dead member's partitions move on quickly). `TIDINGS_KAFKA_DEBUG=cgrp,fetch` (any
        /// librdkafka `debug` contexts) turns on librdkafka's debug output, for a test that
        /// installs a log subscriber.
        pub async fn transport(&self) -> KafkaTransport {
            self.ready().await;
            let mut builder = KafkaTransport::builder(&self.brokers());
            if let Ok(debug) = std::env::var("TIDINGS_KAFKA_DEBUG") {
                builder = builder.set("debug", debug);
            }
            builder
                .session_timeout(Duration::from_secs(6))
                .publish_timeout(Duration::from_secs(15))
                .build()
                .expect("a valid configuration")
        }
    }

    impl Drop for Tansu {
        fn drop(&mut self) {
            self.kill();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Helpers for the Redis suites (feature `redis`): the server on 127.0.0.1:6379.
#[cfg(feature = "redis")]
pub mod redis {
    use tidings::bridge::Endpoint;
    use tidings_bridges::redis::RedisTransport;

    /// The server of the development and CI machines.
    pub const URL: &str = "redis://127.0.0.1:6379";

    /// A transport on [`URL`] with the default settings.
    pub async fn transport() -> RedisTransport {
        connected(RedisTransport::builder(URL)).await
    }

    /// A transport on [`URL`] whose reads block 50 ms, so empty reads (and the lag measure,
    /// once per block time) come round quickly.
    pub async fn quick_transport() -> RedisTransport {
        connected(RedisTransport::builder(URL).block(std::time::Duration::from_millis(50))).await
    }

    async fn connected(builder: tidings_bridges::redis::RedisBuilder) -> RedisTransport {
        builder
            .connect()
            .await
            .unwrap_or_else(|e| panic!("Redis must run on 127.0.0.1:6379: {e}"))
    }

    /// A transport that logs in as the ACL user `user` (created with every right the first
    /// time), so [`kill_clients`] can cut exactly its connections.
    pub async fn connect(user: &str) -> RedisTransport {
        let mut admin = admin().await;
        let password = format!("pw-{user}");
        let _: () = ::redis::cmd("ACL")
            .arg("SETUSER")
            .arg(user)
            .arg("on")
            .arg(format!(">{password}"))
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .query_async(&mut admin)
            .await
            .expect("ACL SETUSER");
        connected(RedisTransport::builder(&format!(
            "redis://{user}:{password}@127.0.0.1:6379"
        )))
        .await
    }

    /// A plain connection for the tests' own commands.
    pub async fn admin() -> ::redis::aio::MultiplexedConnection {
        ::redis::Client::open(URL)
            .expect("URL")
            .get_multiplexed_async_connection()
            .await
            .expect("Redis on 127.0.0.1:6379")
    }

    /// Kills every client connection of the ACL user `user`; how many.
    pub async fn kill_clients(user: &str) -> usize {
        let mut admin = admin().await;
        let killed: i64 = ::redis::cmd("CLIENT")
            .arg("KILL")
            .arg("USER")
            .arg(user)
            .query_async(&mut admin)
            .await
            .expect("CLIENT KILL USER");
        usize::try_from(killed).unwrap_or(0)
    }

    /// Removes the ACL user `user`.
    pub async fn delete_user(user: &str) {
        let mut admin = admin().await;
        let _: i64 = ::redis::cmd("ACL")
            .arg("DELUSER")
            .arg(user)
            .query_async(&mut admin)
            .await
            .unwrap_or(0);
    }

    /// Deletes what a test declared for `source`: its stream and its dead-letter stream.
    pub async fn cleanup(source: &Endpoint) {
        let mut admin = admin().await;
        let _: i64 = ::redis::cmd("DEL")
            .arg(&source.name)
            .arg(&source.dead_letter)
            .query_async(&mut admin)
            .await
            .unwrap_or(0);
    }

    /// A new name no other run uses.
    pub fn unique(prefix: &str) -> String {
        format!("tidings-{prefix}-{:016x}", fastrand::u64(..))
    }

    /// A `redis-server` of a test's own on a free loopback port, with `DEBUG` allowed; when
    /// durable, keeping its data in an append-only file synced on every write
    /// (`--appendonly yes --appendfsync always`) in a folder of its own. Killed and its folder
    /// removed on drop.
    pub struct OwnServer {
        port: u16,
        dir: std::path::PathBuf,
        durable: bool,
        child: parking_lot::Mutex<Option<std::process::Child>>,
    }

    impl OwnServer {
        /// Starts it and waits until it answers.
        pub async fn start(durable: bool) -> OwnServer {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let dir = std::env::temp_dir().join(unique("redis"));
            std::fs::create_dir_all(&dir).expect("a data folder");
            let server = OwnServer {
                port,
                dir,
                durable,
                child: parking_lot::Mutex::new(None),
            };
            server.spawn().await;
            server
        }

        async fn spawn(&self) {
            let appendonly = if self.durable { "yes" } else { "no" };
            let child = std::process::Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--appendonly", appendonly, "--appendfsync", "always"])
                .args(["--save", "", "--enable-debug-command", "yes"])
                .args(["--daemonize", "no"])
                .arg("--dir")
                .arg(&self.dir)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server must be installed");
            *self.child.lock() = Some(child);
            for _ in 0..200 {
                if let Ok(client) = ::redis::Client::open(self.url())
                    && let Ok(mut c) = client.get_multiplexed_async_connection().await
                    && ::redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .is_ok()
                {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            panic!("redis-server did not start on port {}", self.port);
        }

        /// `redis://127.0.0.1:{port}`.
        pub fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        /// A plain connection for the test's own commands, without a response timeout.
        pub async fn admin(&self) -> ::redis::aio::MultiplexedConnection {
            let config = ::redis::AsyncConnectionConfig::new()
                .set_response_timeout(None)
                .set_connection_timeout(Some(std::time::Duration::from_secs(20)));
            ::redis::Client::open(self.url())
                .expect("URL")
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .expect("the test's redis-server")
        }

        /// Kills it with SIGKILL and starts it again on the same port and data folder.
        pub async fn restart(&self) {
            if let Some(mut child) = self.child.lock().take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            self.spawn().await;
        }
    }

    impl Drop for OwnServer {
        fn drop(&mut self) {
            if let Some(mut child) = self.child.lock().take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Deletes every key of the BullMQ queue `name` (prefix `bull`) on drop, so a failed
    /// test leaves nothing behind either.
    pub struct QueueKeys(pub String);

    impl Drop for QueueKeys {
        fn drop(&mut self) {
            let pattern = format!("bull:{}:*", self.0);
            // Drop may run inside a runtime: use a thread with a runtime of its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async {
                    let mut admin = admin().await;
                    let mut cursor = 0u64;
                    loop {
                        let (next, keys): (u64, Vec<String>) = ::redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut admin)
                            .await
                            .expect("SCAN");
                        if !keys.is_empty() {
                            let _: i64 = ::redis::cmd("DEL")
                                .arg(&keys)
                                .query_async(&mut admin)
                                .await
                                .unwrap_or(0);
                        }
                        if next == 0 {
                            break;
                        }
                        cursor = next;
                    }
                });
            })
            .join();
        }
    }
}
