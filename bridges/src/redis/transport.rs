//! [`RedisTransport`]: the bridge core's [`Transport`] on Redis Streams.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisError, Value};
use tidings::bridge::{Outgoing, Source, Transport, TransportError};
use tidings::Backoff;
use tokio::sync::broadcast;

use super::consumer::RedisConsumer;
use super::wire;
use crate::secret::scrub;
use crate::ConnectionEvent;

/// Configures a [`RedisTransport`]; from [`RedisTransport::builder`].
#[must_use]
pub struct RedisBuilder {
    url: String,
    pub(crate) config: Config,
}

impl std::fmt::Debug for RedisBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBuilder")
            .field("url", &crate::secret::redact(&self.url))
            .field("config", &self.config)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Certificate authorities to trust for `rediss://`, PEM; the system's roots without.
    pub(crate) ca_pem: Option<String>,
    pub(crate) max_len: Option<usize>,
    pub(crate) claim_idle: Duration,
    pub(crate) block: Duration,
    pub(crate) timeout: Duration,
    pub(crate) reconnect: Backoff,
}

impl RedisBuilder {
    /// Trusts the certificate authorities in `pem` for a `rediss://` URL (a private CA); by
    /// default the system's trusted roots verify the server.
    pub fn tls_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.config.ca_pem = Some(pem.into());
        self
    }

    /// Trims each stream published to to about this many entries (`XADD ... MAXLEN ~ n`);
    /// default: no trim. Trimmed entries are gone even if a group has not read them.
    pub fn max_len(mut self, entries: usize) -> Self {
        self.config.max_len = Some(entries);
        self
    }

    /// How long an entry may stay pending with a consumer before another member of the group
    /// takes it over with `XAUTOCLAIM` (default 30 s): what a consumer that died was holding
    /// comes back after this.
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.config.claim_idle = idle;
        self
    }

    /// How long one blocking read waits for new entries (default 1 s); also how often a
    /// consumer looks for entries to reclaim when idle.
    pub fn block(mut self, block: Duration) -> Self {
        self.config.block = block;
        self
    }

    /// How long a command may take before it fails as disconnected (default 10 s); every
    /// wait of the transport is bounded by it (a blocking read by its block time plus this).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Delays between reconnection attempts (default 50 ms doubling to 5 s, with jitter).
    pub fn reconnect(mut self, backoff: Backoff) -> Self {
        self.config.reconnect = backoff;
        self
    }

    /// Connects. The connection manager reconnects by itself afterwards; consumers keep
    /// connections of their own for their blocking reads.
    ///
    /// # Errors
    /// A URL that does not parse, or no server reachable within the timeout (the error never
    /// quotes the password).
    pub async fn connect(self) -> Result<RedisTransport, TransportError> {
        let secret = crate::secret::password_of(&self.url).map(str::to_owned);
        let shown = |e: &RedisError| scrub(&e.to_string(), secret.as_deref());
        let client = match &self.config.ca_pem {
            Some(pem) => Client::build_with_tls(
                self.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone().into_bytes()),
                },
            ),
            None => Client::open(self.url.as_str()),
        }
        .map_err(|e| TransportError::Other(format!("invalid Redis URL: {}", shown(&e)).into()))?;
        let timeout = self.config.timeout;
        let manager_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let manager = tokio::time::timeout(
            timeout,
            ConnectionManager::new_with_config(client.clone(), manager_config),
        )
        .await
        .map_err(|_| TransportError::Disconnected("no Redis server answered in time".into()))?
        .map_err(|e| TransportError::Disconnected(shown(&e)))?;
        let inner = Arc::new(Inner {
            client,
            manager,
            config: self.config,
            secret,
            events: broadcast::channel(64).0,
            state: AtomicU8::new(UP),
            names: Mutex::new(HashMap::new()),
        });
        Ok(RedisTransport { inner })
    }
}

/// The consumer names of one (stream, group).
#[derive(Default)]
struct Names {
    used: BTreeSet<usize>,
    /// Acknowledgements recorded under a name whose consumer went, not sent yet.
    unsent: HashMap<usize, Vec<String>>,
}

const UP: u8 = 1;
const DOWN: u8 = 2;

pub(crate) struct Inner {
    client: Client,
    manager: ConnectionManager,
    pub(crate) config: Config,
    secret: Option<String>,
    events: broadcast::Sender<ConnectionEvent>,
    state: AtomicU8,
    /// Consumer names per (stream, group): each consumer takes the lowest free number, so a
    /// consumer made after one was dropped takes over its name and reads its pending entries
    /// first.
    names: Mutex<HashMap<(String, String), Names>>,
}

/// A Redis connection (a connection manager, reconnecting by itself) that implements
/// [`Transport`] over streams; see the [module docs](super). Clones share it.
#[derive(Clone)]
pub struct RedisTransport {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTransport")
            .field("server", &self.inner.server())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RedisTransport {
    /// Starts configuring a transport for `url`: `redis://[user:password@]host:port[/db]`, or
    /// `rediss://` for TLS (see [`RedisBuilder::tls_ca_pem`]).
    pub fn builder(url: &str) -> RedisBuilder {
        RedisBuilder {
            url: url.to_owned(),
            config: Config {
                ca_pem: None,
                max_len: None,
                claim_idle: Duration::from_secs(30),
                block: Duration::from_secs(1),
                timeout: Duration::from_secs(10),
                reconnect: Backoff::Exponential {
                    initial: Duration::from_millis(50),
                    max: Duration::from_secs(5),
                },
            },
        }
    }

    /// Connection events from now on: `Disconnected` when a command or read fails for want of
    /// a connection, `Connected` when one succeeds again.
    pub fn events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.inner.events.subscribe()
    }

    /// Deletes streams (with their groups and pending entries).
    ///
    /// # Errors
    /// When Redis could not be asked.
    pub async fn delete_streams(&self, streams: &[&str]) -> Result<(), TransportError> {
        let mut cmd = redis::cmd("DEL");
        for s in streams {
            cmd.arg(*s);
        }
        self.inner.query::<Value>(&cmd).await.map(drop)
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}

impl Inner {
    /// The server, password redacted.
    pub(crate) fn server(&self) -> String {
        let info = self.client.get_connection_info();
        format!("{:?}", info.addr())
    }

    /// `error` as a transport error, its text without the password.
    pub(crate) fn error(&self, error: &RedisError) -> TransportError {
        let text = scrub(&error.to_string(), self.secret.as_deref());
        let retryable = error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_unrecoverable_error()
            || matches!(
                error.code(),
                Some("OOM" | "BUSY" | "LOADING" | "TRYAGAIN" | "MASTERDOWN" | "READONLY")
            );
        if retryable {
            self.set_up(false, &text);
            TransportError::Disconnected(text)
        } else {
            TransportError::Rejected(text)
        }
    }

    pub(crate) fn set_up(&self, up: bool, reason: &str) {
        let new = if up { UP } else { DOWN };
        if self.state.swap(new, Ordering::Relaxed) == new {
            return;
        }
        let url = self.server();
        let event = if up {
            tracing::info!(server = %url, "connected to Redis again");
            ConnectionEvent::Connected { url }
        } else {
            tracing::warn!(server = %url, %reason, "lost the Redis connection; reconnecting");
            ConnectionEvent::Disconnected {
                url,
                reason: reason.to_owned(),
            }
        };
        let _ = self.events.send(event);
    }

    /// Runs `cmd` on the shared connection, bounded by the timeout.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, TransportError> {
        let mut connection = self.manager.clone();
        match tokio::time::timeout(self.config.timeout, cmd.query_async::<T>(&mut connection)).await
        {
            Ok(Ok(value)) => {
                self.set_up(true, "");
                Ok(value)
            }
            Ok(Err(error)) => Err(self.error(&error)),
            Err(_) => {
                self.set_up(false, "a command got no reply in time");
                Err(TransportError::Disconnected("no reply in time".into()))
            }
        }
    }

    /// Runs a script on the shared connection, bounded by the timeout.
    pub(crate) async fn eval(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<Value, TransportError> {
        let mut connection = self.manager.clone();
        let run = invocation.invoke_async::<Value>(&mut connection);
        match tokio::time::timeout(self.config.timeout, run).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.error(&error)),
            Err(_) => Err(TransportError::Disconnected("no reply in time".into())),
        }
    }

    /// A connection of its own, without a response timeout, for blocking reads (which would
    /// stall every other command on a shared connection).
    pub(crate) async fn blocking_connection(
        &self,
    ) -> Result<MultiplexedConnection, TransportError> {
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(self.config.timeout));
        match tokio::time::timeout(
            self.config.timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(self.error(&error)),
            Err(_) => Err(TransportError::Disconnected("no connection in time".into())),
        }
    }

    /// Creates `group` on `stream` (and the stream) reading from the start; an existing group
    /// is left as it is.
    pub(crate) async fn create_group(
        &self,
        stream: &str,
        group: &str,
    ) -> Result<(), TransportError> {
        let cmd = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .to_owned();
        match self.query::<Value>(&cmd).await {
            Ok(_) => Ok(()),
            Err(TransportError::Rejected(reason)) if reason.contains("BUSYGROUP") => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Takes a consumer name for (`stream`, `group`): `tidings-{host}-{pid}-{n}`, with the
    /// acknowledgements its last holder recorded but did not send (to send before reading).
    pub(crate) fn take_name(&self, stream: &str, group: &str) -> (usize, String, Vec<String>) {
        let mut names = self.names.lock();
        let slot = names
            .entry((stream.to_owned(), group.to_owned()))
            .or_default();
        let n = (0..).find(|n| !slot.used.contains(n)).unwrap_or(0);
        slot.used.insert(n);
        let unsent = slot.unsent.remove(&n).unwrap_or_default();
        (n, format!("tidings-{}-{n}", process_tag()), unsent)
    }

    /// Gives name `n` back with the acknowledgements its consumer did not send: the next
    /// consumer of the name sends them before it reads, or, if none comes soon, a task does.
    pub(crate) fn release_name(
        self: &Arc<Self>,
        stream: &str,
        group: &str,
        n: usize,
        unsent: Vec<String>,
    ) {
        let key = (stream.to_owned(), group.to_owned());
        {
            let mut names = self.names.lock();
            let Some(slot) = names.get_mut(&key) else {
                return;
            };
            slot.used.remove(&n);
            if unsent.is_empty() {
                return;
            }
            slot.unsent.entry(n).or_default().extend(unsent);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // No runtime: the entries stay pending and come back.
        };
        let inner = Arc::clone(self);
        runtime.spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let unsent = {
                let mut names = inner.names.lock();
                names
                    .get_mut(&key)
                    .filter(|slot| !slot.used.contains(&n))
                    .and_then(|slot| slot.unsent.remove(&n))
                    .unwrap_or_default()
            };
            if !unsent.is_empty() {
                let _ = inner.query::<Value>(&xack(&key.0, &key.1, &unsent)).await;
            }
        });
    }

    /// `XADD`s `batch` in one pipeline; one result per message.
    async fn add(&self, batch: &[Outgoing], create: bool) -> Vec<Result<(), TransportError>> {
        let mut pipe = redis::Pipeline::with_capacity(batch.len());
        pipe.ignore_errors();
        for out in batch {
            let mut cmd = wire::xadd(&out.destination, &out.envelope);
            if !create {
                cmd.arg("NOMKSTREAM");
            }
            if let Some(n) = self.config.max_len {
                cmd.arg("MAXLEN").arg("~").arg(n);
            }
            cmd.arg("*");
            wire::write_fields(&mut cmd, &out.envelope);
            pipe.add_command(cmd);
        }
        let mut connection = self.manager.clone();
        let reply = tokio::time::timeout(
            self.config.timeout,
            pipe.query_async::<Vec<redis::RedisResult<Value>>>(&mut connection),
        )
        .await;
        match reply {
            Ok(Ok(results)) if results.len() == batch.len() => {
                self.set_up(true, "");
                results
                    .into_iter()
                    .zip(batch)
                    .map(|(result, out)| match result {
                        Ok(Value::Nil) => Err(TransportError::Unroutable(out.destination.clone())),
                        Ok(_) => Ok(()),
                        Err(error) => Err(self.error(&error)),
                    })
                    .collect()
            }
            Ok(Ok(results)) => {
                let reason = format!("{} replies to {} commands", results.len(), batch.len());
                batch
                    .iter()
                    .map(|_| Err(TransportError::Disconnected(reason.clone())))
                    .collect()
            }
            Ok(Err(error)) => {
                // The connection failed under the pipeline: some entries may have been added.
                // They are reported failed and sent again; inbound dedup drops the copies.
                let error = self.error(&error);
                batch.iter().map(|_| Err(copy(&error))).collect()
            }
            Err(_) => {
                self.set_up(false, "a publish got no reply in time");
                batch
                    .iter()
                    .map(|_| Err(TransportError::Disconnected("no reply in time".into())))
                    .collect()
            }
        }
    }

    /// Adds one dead letter (creating the dead-letter stream if needed).
    pub(crate) async fn add_dead_letter(&self, out: Outgoing) -> Result<(), TransportError> {
        self.add(std::slice::from_ref(&out), true)
            .await
            .pop()
            .unwrap_or(Err(TransportError::Closed))
    }
}

fn copy(error: &TransportError) -> TransportError {
    match error {
        TransportError::Rejected(r) => TransportError::Rejected(r.clone()),
        other => TransportError::Disconnected(other.to_string()),
    }
}

/// `{host}-{pid}`, naming this process's consumers.
fn process_tag() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned());
    format!("{host}-{}", std::process::id())
}

impl Transport for RedisTransport {
    type Consumer = RedisConsumer;

    /// `XADD ... NOMKSTREAM` in one pipeline: a stream nobody declared (no group reads it)
    /// fails as `Unroutable` rather than growing unread.
    async fn publish(&self, batch: &[Outgoing]) -> Vec<Result<(), TransportError>> {
        self.inner.add(batch, false).await
    }

    async fn declare(&self, source: &Source) -> Result<(), TransportError> {
        self.inner.create_group(&source.name, &source.group).await
    }

    async fn consume(&self, source: &Source) -> Result<RedisConsumer, TransportError> {
        self.inner.create_group(&source.name, &source.group).await?;
        Ok(RedisConsumer::start(Arc::clone(&self.inner), source))
    }
}

/// One `XACK` of `ids` of `stream` for `group`, sized up front (a batch of ids would grow its
/// buffers a dozen times).
pub(crate) fn xack(stream: &str, group: &str, ids: &[String]) -> redis::Cmd {
    let size = 32 + stream.len() + group.len() + ids.iter().map(String::len).sum::<usize>();
    let mut cmd = redis::Cmd::with_capacity(3 + ids.len(), size);
    cmd.arg("XACK").arg(stream).arg(group).arg(ids);
    cmd
}
