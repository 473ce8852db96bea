//! Helpers for the RabbitMQ suites (feature `amqp`).

use std::time::Duration;

use tidings::bridge::conformance::Ping;
use tidings::bridge::{Consumer, Delivery, Endpoint, Envelope, Outgoing, Transport};
use tidings_bridges::amqp::{AmqpTransport, ConnectionEvent, queue_name};

/// How long a RabbitMQ suite waits for what should come.
pub const WAIT: Duration = Duration::from_secs(20);

/// The broker of the development and CI machines.
pub const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A transport whose connections are named `name` (so [`close_connections`] finds them).
pub async fn connect(name: &str) -> AmqpTransport {
    connect_to(URL, name).await
}

/// A transport to the broker at `url` (a node of the test's own, say) whose connections are
/// named `name`.
///
/// # Panics
/// When the broker does not answer.
pub async fn connect_to(url: &str, name: &str) -> AmqpTransport {
    AmqpTransport::builder(url)
        .connection_name(name)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ did not answer: {e}"))
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
    connection_info(name, "pid").await
}

/// The broker's `field` (`pid`, `channels`...) of each connection named `name`.
pub async fn connection_info(name: &str, field: &str) -> Vec<String> {
    let listing = rabbitmqctl(&[
        "list_connections",
        field,
        "client_properties",
        "-q",
        "--no-table-headers",
    ])
    .await;
    let needle = format!("{{\"connection_name\",\"{name}\"}}");
    listing
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| l.split_once('\t').map(|(value, _)| value.to_owned()))
        .collect()
}

/// Forcibly closes the connections named `name` and waits until `events` (the transport's)
/// reports it connected again.
///
/// # Panics
/// When no such connection is open, or none comes back within [`WAIT`].
pub async fn reconnect(name: &str, events: &mut tokio::sync::broadcast::Receiver<ConnectionEvent>) {
    assert!(
        close_connections(name).await > 0,
        "no connection named {name}"
    );
    let reconnected = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(ConnectionEvent::Connected { .. }) = events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(reconnected.is_ok(), "connected again");
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

/// A conformance `Ping` with key `k`, as an envelope.
pub fn ping(seq: u64) -> Envelope {
    let payload = serde_json::to_vec(&Ping {
        seq,
        key: "k".into(),
    })
    .expect("encodes");
    Envelope::new(<Ping as tidings::Event>::NAME, payload)
}

/// The next delivery of `consumer`, within [`WAIT`].
pub async fn next(consumer: &mut impl Consumer, what: &str) -> Delivery {
    within(what, consumer.next())
        .await
        .unwrap_or_else(|| panic!("the consumer closed before {what}"))
        .unwrap_or_else(|e| panic!("the consumer failed before {what}: {e}"))
}

/// `f`, or a panic naming `what` after [`WAIT`].
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Publishes `envelopes` to `destination`, every one confirmed.
pub async fn publish_ok(t: &AmqpTransport, destination: &str, envelopes: Vec<Envelope>) {
    let batch: Vec<Outgoing> = envelopes
        .into_iter()
        .map(|envelope| Outgoing {
            destination: destination.to_owned(),
            envelope,
        })
        .collect();
    for result in t.publish(&batch).await {
        result.expect("published");
    }
}
