//! [`Link`]: the connection a transport and its consumers share, below both: the connection
//! manager for commands and publishes, the client for the consumers' own blocking
//! connections, the connection state behind [`ConnectionEvent`]s, and the consumer names.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisError, Value};
use tidings::bridge::{Outgoing, TransportError};
use tokio::sync::broadcast;

use super::config::Config;
use super::error::Error;
use super::wire;
pub(crate) use crate::redis_connection::Any;
use crate::secret::scrub;
use crate::ConnectionEvent;

/// The consumer names of one (stream, group).
#[derive(Default)]
struct Names {
    used: BTreeSet<usize>,
    /// Acknowledgements recorded under a name whose consumer went, not sent yet.
    unsent: HashMap<usize, Vec<String>>,
}

const UP: u8 = 1;
const DOWN: u8 = 2;

/// Where commands go: the client (for the consumers' own connections) and the shared
/// connection, replaced together when Sentinel names another master. One per transport, in
/// an `Arc`: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Conn {
    /// One server (or the master Sentinel names).
    Single {
        client: Client,
        manager: ConnectionManager,
    },
    /// A Redis Cluster: commands go to the node owning their key's slot.
    Cluster {
        /// Makes the consumers' own connections (no response timeout).
        blocking: ClusterClient,
        shared: ClusterConnection,
    },
}

impl Conn {
    fn shared(&self) -> Any {
        match self {
            Conn::Single { manager, .. } => Any::Manager(manager.clone()),
            Conn::Cluster { shared, .. } => Any::Cluster(shared.clone()),
        }
    }
}

/// What a [`RedisTransport`](super::RedisTransport) and its consumers share.
pub(crate) struct Link {
    conn: Mutex<Arc<Conn>>,
    /// The URL given: credentials, database and TLS (with Sentinel, host and port are the
    /// master's instead).
    url: String,
    /// Set by a failure that may mean the master moved: the next command asks Sentinel first.
    suspect: AtomicBool,
    /// One question to Sentinel at a time.
    following: tokio::sync::Mutex<()>,
    pub(crate) config: Config,
    secret: Option<String>,
    events: broadcast::Sender<ConnectionEvent>,
    state: AtomicU8,
    /// Consumer names per (stream, group): each consumer takes the lowest free number, so a
    /// consumer made after one was dropped takes over its name and reads its pending entries
    /// first.
    names: Mutex<HashMap<(String, String), Names>>,
}

impl Link {
    /// Connects to `url` (with Sentinel, to the master it names, with `url`'s credentials,
    /// database and TLS); the connection manager reconnects by itself afterwards.
    pub(crate) async fn connect(url: &str, config: Config) -> Result<Link, Error> {
        let secret = crate::secret::password_of(url).map(str::to_owned);
        let timeout = config.timeout;
        let connect = |last_error: String| Error::Connect {
            url: crate::secret::redact(url),
            timeout,
            last_error,
        };
        if config.sentinel.is_some() && config.cluster.is_some() {
            return Err(Error::InvalidUrl {
                url: crate::secret::redact(url),
                reason: "a transport speaks to a Redis Cluster or through Sentinel, not both"
                    .into(),
            });
        }
        let master = match &config.sentinel {
            None => None,
            Some(sentinel) => Some(
                sentinel
                    .master(timeout)
                    .await
                    .map_err(|e| connect(scrub(&e, secret.as_deref())))?,
            ),
        };
        let opened = match &config.cluster {
            Some(nodes) => open_cluster(url, nodes, &config, secret.as_deref()).await,
            None => open(url, master, &config, secret.as_deref()).await,
        };
        let conn = opened.map_err(|e| match e {
            Opened::Url(reason) => Error::InvalidUrl {
                url: crate::secret::redact(url),
                reason,
            },
            Opened::Connect(reason) => connect(reason),
        })?;
        Ok(Link {
            conn: Mutex::new(Arc::new(conn)),
            url: url.to_owned(),
            suspect: AtomicBool::new(false),
            following: tokio::sync::Mutex::new(()),
            config,
            secret,
            events: broadcast::channel(64).0,
            state: AtomicU8::new(UP),
            names: Mutex::new(HashMap::new()),
        })
    }

    fn conn(&self) -> Arc<Conn> {
        Arc::clone(&self.conn.lock())
    }

    /// With Sentinel, after a failure that may mean the master moved: asks Sentinel where the
    /// master is and, when it moved, connects there. Does nothing otherwise; one caller asks
    /// at a time, and those that waited meanwhile take its answer.
    async fn follow_master(&self) {
        let Some(sentinel) = &self.config.sentinel else {
            return;
        };
        if !self.suspect.load(Ordering::Relaxed) {
            return;
        }
        let _asking = self.following.lock().await;
        if !self.suspect.swap(false, Ordering::Relaxed) {
            return; // Another caller asked meanwhile.
        }
        let Ok((host, port)) = sentinel.master(self.config.timeout).await else {
            // No sentinel answered: the next failure asks again.
            self.suspect.store(true, Ordering::Relaxed);
            return;
        };
        let conn = self.conn();
        let Conn::Single { client, manager } = &*conn else {
            return;
        };
        let current = client.get_connection_info().addr().clone();
        if matches!(&current, ConnectionAddr::Tcp(h, p) | ConnectionAddr::TcpTls { host: h, port: p, .. } if *h == host && *p == port)
        {
            // Sentinel still names this address: the next command goes there only once what
            // answers there says it is a master (until then, each command asks again).
            let mut manager = manager.clone();
            let role = tokio::time::timeout(
                self.config.timeout,
                redis::cmd("ROLE").query_async::<Value>(&mut manager),
            )
            .await;
            let is_master = matches!(
                &role,
                Ok(Ok(Value::Array(fields)))
                    if matches!(fields.first(), Some(Value::BulkString(b)) if b == b"master")
            );
            if !is_master {
                self.suspect.store(true, Ordering::Relaxed);
            }
            return;
        }
        match open(
            &self.url,
            Some((host.clone(), port)),
            &self.config,
            self.secret.as_deref(),
        )
        .await
        {
            Ok(conn) => {
                tracing::warn!(master = %format!("{host}:{port}"), "Sentinel names another Redis master; following it");
                *self.conn.lock() = Arc::new(conn);
            }
            Err(Opened::Url(reason) | Opened::Connect(reason)) => {
                tracing::warn!(master = %format!("{host}:{port}"), %reason, "cannot reach the master Sentinel names");
                self.suspect.store(true, Ordering::Relaxed);
            }
        }
    }

    /// With Sentinel: asks it now whether the master moved (following it if so), and answers
    /// whether commands go somewhere else than before, or nowhere yet. Without Sentinel: no.
    async fn master_moved(&self) -> bool {
        if self.config.sentinel.is_none() {
            return false;
        }
        let before = self.conn();
        self.suspect.store(true, Ordering::Relaxed);
        self.follow_master().await;
        // Still suspect: what answers there is no master (or Sentinel did not answer).
        self.suspect.load(Ordering::Relaxed) || !Arc::ptr_eq(&before, &self.conn())
    }

    /// Connection events from now on.
    pub(crate) fn events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }
    /// The server, password redacted.
    pub(crate) fn server(&self) -> String {
        match &*self.conn() {
            Conn::Single { client, .. } => format!("{:?}", client.get_connection_info().addr()),
            Conn::Cluster { .. } => {
                let seeds = self.config.cluster.as_deref().unwrap_or_default();
                format!("a Redis Cluster ({} seed nodes)", seeds.len() + 1)
            }
        }
    }

    /// `error` as a transport error, its text without the password (see [`Failure`]).
    pub(crate) fn error(&self, error: &RedisError) -> TransportError {
        let text = scrub(&error.to_string(), self.secret.as_deref());
        match Failure::of(error) {
            Failure::NotStored => {
                // A master that will not write may be one Sentinel demoted or is about to
                // replace (too few replicas): with Sentinel, the next command asks it first.
                self.suspect.store(true, Ordering::Relaxed);
                TransportError::NotStored(text)
            }
            Failure::Down => {
                self.suspect.store(true, Ordering::Relaxed);
                self.set_up(false, &text);
                TransportError::Disconnected(text)
            }
            Failure::Refused => TransportError::Rejected(text),
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
        self.follow_master().await;
        let mut connection = self.conn().shared();
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
        self.follow_master().await;
        let mut connection = self.conn().shared();
        let run = invocation.invoke_async::<Value>(&mut connection);
        match tokio::time::timeout(self.config.timeout, run).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.error(&error)),
            Err(_) => Err(TransportError::Disconnected("no reply in time".into())),
        }
    }

    /// A connection of its own, without a response timeout, for blocking reads (which would
    /// stall every other command on a shared connection).
    pub(crate) async fn blocking_connection(&self) -> Result<Any, TransportError> {
        self.follow_master().await;
        let conn = self.conn();
        let connected = match &*conn {
            Conn::Single { client, .. } => {
                let config = AsyncConnectionConfig::new()
                    .set_response_timeout(None)
                    .set_connection_timeout(Some(self.config.timeout));
                tokio::time::timeout(
                    self.config.timeout,
                    client.get_multiplexed_async_connection_with_config(&config),
                )
                .await
                .map(|c| c.map(Any::Multiplexed))
            }
            Conn::Cluster { blocking, .. } => {
                tokio::time::timeout(self.config.timeout, blocking.get_async_connection())
                    .await
                    .map(|c| c.map(Any::Cluster))
            }
        };
        match connected {
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

    /// `XADD`s `batch` in one pipeline (on a cluster, one per stream: a pipeline must stay in
    /// one slot); one result per message.
    pub(crate) async fn add(
        &self,
        batch: &[Outgoing],
        create: bool,
    ) -> Vec<Result<(), TransportError>> {
        // Each entry's largest field, measured once; refused here, an entry over the limit
        // would close the connection under the whole pipeline.
        let limit = self.config.max_message;
        let oversized: Vec<(usize, usize)> = (batch.iter().enumerate())
            .map(|(i, out)| (i, wire::largest_field(&out.envelope)))
            .filter(|&(_, size)| size > limit)
            .collect();
        if oversized.is_empty() {
            return self.add_fitting(batch, create).await;
        }
        let mut results: Vec<Result<(), TransportError>> = batch.iter().map(|_| Ok(())).collect();
        for &(i, size) in &oversized {
            results[i] = Err(TransportError::Rejected(format!(
                "a field of {size} bytes is over the limit of {limit} (max_message_size: the \
                 server's proto-max-bulk-len)"
            )));
        }
        let (indices, fitting): (Vec<usize>, Vec<Outgoing>) = (batch.iter().enumerate())
            .filter(|(i, _)| results[*i].is_ok())
            .map(|(i, out)| (i, out.clone()))
            .unzip();
        let sent = self.add_fitting(&fitting, create).await;
        for (i, result) in indices.into_iter().zip(sent) {
            results[i] = result;
        }
        results
    }

    /// [`add`](Self::add) of entries known to be within the size limit.
    async fn add_fitting(
        &self,
        batch: &[Outgoing],
        create: bool,
    ) -> Vec<Result<(), TransportError>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let one_stream = batch.iter().all(|o| o.destination == batch[0].destination);
        if self.config.cluster.is_none() || one_stream {
            let all: Vec<&Outgoing> = batch.iter().collect();
            return self.add_pipeline(&all, create).await;
        }
        let mut streams: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, out) in batch.iter().enumerate() {
            match streams.iter_mut().find(|(s, _)| *s == out.destination) {
                Some((_, indices)) => indices.push(i),
                None => streams.push((&out.destination, vec![i])),
            }
        }
        let sent = futures_util::future::join_all(streams.iter().map(|(_, indices)| {
            let part: Vec<&Outgoing> = indices.iter().map(|&i| &batch[i]).collect();
            async move { self.add_pipeline(&part, create).await }
        }))
        .await;
        let mut results: Vec<Option<Result<(), TransportError>>> =
            batch.iter().map(|_| None).collect();
        for ((_, indices), part) in streams.iter().zip(sent) {
            for (&i, result) in indices.iter().zip(part) {
                results[i] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(TransportError::Closed)))
            .collect()
    }

    async fn add_pipeline(
        &self,
        batch: &[&Outgoing],
        create: bool,
    ) -> Vec<Result<(), TransportError>> {
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
        let mut timeout = self.config.timeout;
        if let Some((replicas, within)) = self.config.replicas {
            // Last in the pipeline: it waits for every write before it.
            pipe.cmd("WAIT")
                .arg(replicas)
                .arg(u64::try_from(within.as_millis()).unwrap_or(u64::MAX).max(1));
            timeout += within;
        }
        self.follow_master().await;
        let mut connection = self.conn().shared();
        let reply = tokio::time::timeout(
            timeout,
            pipe.query_async::<Vec<redis::RedisResult<Value>>>(&mut connection),
        )
        .await;
        let expected = batch.len() + usize::from(self.config.replicas.is_some());
        match reply {
            Ok(Ok(mut results)) if results.len() == expected => {
                self.set_up(true, "");
                let unreplicated = self.config.replicas.and_then(|(replicas, within)| {
                    let acknowledged = match results.pop() {
                        Some(Ok(Value::Int(n))) => usize::try_from(n).unwrap_or(0),
                        _ => 0,
                    };
                    (acknowledged < replicas).then(|| {
                        format!(
                            "{acknowledged} of {replicas} replicas acknowledged the write within {within:?}"
                        )
                    })
                });
                if unreplicated.is_some() {
                    // A master with fewer replicas than asked for may be an old master back
                    // before Sentinel demoted it: the next command asks Sentinel first.
                    self.suspect.store(true, Ordering::Relaxed);
                }
                let missing = results.iter().any(|r| matches!(r, Ok(Value::Nil)));
                // With Sentinel, a stream that is not there may be on the master that was, not
                // on this one (an old master back empty before Sentinel demoted it): when
                // Sentinel names another master, the batch goes there instead of being refused.
                let moved = missing && unreplicated.is_none() && self.master_moved().await;
                results
                    .into_iter()
                    .zip(batch)
                    .map(|(result, &out)| match (result, &unreplicated) {
                        (Err(error), _) => Err(self.error(&error)),
                        // Not confirmed, whatever the server answered: the batch goes again.
                        (Ok(_), Some(reason)) => Err(TransportError::Disconnected(reason.clone())),
                        (Ok(Value::Nil), None) if moved => {
                            Err(TransportError::Disconnected(format!(
                                "the stream `{}` is missing: the Redis master moved",
                                out.destination
                            )))
                        }
                        (Ok(Value::Nil), None) => {
                            Err(TransportError::Unroutable(out.destination.clone()))
                        }
                        (Ok(_), None) => Ok(()),
                    })
                    .collect()
            }
            Ok(Ok(results)) => {
                let reason = format!("{} replies to {expected} commands", results.len());
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
        TransportError::NotStored(r) => TransportError::NotStored(r.clone()),
        TransportError::Disconnected(r) => TransportError::Disconnected(r.clone()),
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

/// One `XACK` of `ids` of `stream` for `group`, sized up front (a batch of ids would grow its
/// buffers a dozen times).
pub(crate) fn xack(stream: &str, group: &str, ids: &[String]) -> redis::Cmd {
    let size = 32 + stream.len() + group.len() + ids.iter().map(String::len).sum::<usize>();
    let mut cmd = redis::Cmd::with_capacity(3 + ids.len(), size);
    cmd.arg("XACK").arg(stream).arg(group).arg(ids);
    cmd
}

/// Why [`open`] failed: the URL, or the connection (text without the password).
enum Opened {
    Url(String),
    Connect(String),
}

/// A client for `url` (its host and port replaced by `master`'s when given) and a connection
/// manager on it, connected within the timeout.
async fn open(
    url: &str,
    master: Option<(String, u16)>,
    config: &Config,
    secret: Option<&str>,
) -> Result<Conn, Opened> {
    let shown = |e: &RedisError| scrub(&e.to_string(), secret);
    let mut info = url
        .into_connection_info()
        .map_err(|e| Opened::Url(shown(&e)))?;
    if let Some((host, port)) = master {
        let addr = match info.addr().clone() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                tls_params,
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        info = info.set_addr(addr);
    }
    let client = match &config.ca_pem {
        Some(pem) => Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone().into_bytes()),
            },
        ),
        None => Client::open(info),
    }
    .map_err(|e| Opened::Url(shown(&e)))?;
    let manager_config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(config.timeout))
        .set_connection_timeout(Some(config.timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    let manager = tokio::time::timeout(
        config.timeout,
        ConnectionManager::new_with_config(client.clone(), manager_config),
    )
    .await
    .map_err(|_| Opened::Connect("no Redis server answered in time".into()))?
    .map_err(|e| Opened::Connect(shown(&e)))?;
    Ok(Conn::Single { client, manager })
}

/// A cluster client seeded by `url` and `nodes`, and a shared connection on it.
async fn open_cluster(
    url: &str,
    nodes: &[String],
    config: &Config,
    secret: Option<&str>,
) -> Result<Conn, Opened> {
    let shown = |e: &RedisError| scrub(&e.to_string(), secret);
    let seeds: Vec<&str> = std::iter::once(url)
        .chain(nodes.iter().map(String::as_str))
        .collect();
    let build = |response_timeout: Option<Duration>| {
        let mut builder = ClusterClient::builder(seeds.clone())
            .connection_timeout(config.timeout)
            .retries(2)
            .max_retry_wait(2_000);
        if let Some(timeout) = response_timeout {
            builder = builder.response_timeout(timeout);
        }
        if let Some(pem) = &config.ca_pem {
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone().into_bytes()),
            });
        }
        builder.build().map_err(|e| Opened::Url(shown(&e)))
    };
    let client = build(Some(config.timeout))?;
    let blocking = build(None)?;
    let shared = tokio::time::timeout(config.timeout, client.get_async_connection())
        .await
        .map_err(|_| Opened::Connect("no Redis Cluster node answered in time".into()))?
        .map_err(|e| Opened::Connect(shown(&e)))?;
    Ok(Conn::Cluster { blocking, shared })
}

/// What a failed command says about the server, for [`Link::error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The server answers but will not write just then: `OOM` (at `maxmemory` with
    /// `noeviction`), `NOREPLICAS` (fewer replicas than `min-replicas-to-write`), `MISCONF` (a
    /// failed snapshot with `stop-writes-on-bgsave-error`). Retryable, the connection kept:
    /// refusing these for good would have an outbound bridge drop events over a passing
    /// condition.
    NotStored,
    /// The connection or the server is not serving: lost, timed out, refused, or a server
    /// that is loading, busy, demoted (`READONLY`), or a cluster without every slot served
    /// (`CLUSTERDOWN`). Retryable, as a lost connection.
    Down,
    /// Anything else: the command itself is refused (a key of another type, a bad argument).
    Refused,
}

impl Failure {
    /// What `error` says.
    pub(crate) fn of(error: &RedisError) -> Failure {
        let code = error.code();
        if matches!(code, Some("OOM" | "NOREPLICAS" | "MISCONF")) {
            Failure::NotStored
        } else if error.is_io_error()
            || error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_unrecoverable_error()
            || matches!(
                code,
                Some("BUSY" | "LOADING" | "TRYAGAIN" | "MASTERDOWN" | "READONLY" | "CLUSTERDOWN")
            )
        {
            Failure::Down
        } else {
            Failure::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a server reply `-{line}` gives.
    fn server_error(line: &str) -> RedisError {
        match redis::parse_redis_value(format!("-{line}\r\n").as_bytes()) {
            Ok(Value::ServerError(error)) => error.into(),
            other => panic!("not a server error: {other:?}"),
        }
    }

    #[test]
    fn what_a_server_will_not_write_now_is_told_from_a_server_not_serving_and_a_refused_command() {
        for line in [
            "OOM command not allowed when used memory > 'maxmemory'.",
            "NOREPLICAS Not enough good replicas to write.",
            "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
        ] {
            assert_eq!(Failure::of(&server_error(line)), Failure::NotStored, "{line}");
        }
        for line in [
            "LOADING Redis is loading the dataset in memory",
            "BUSY Redis is busy running a script.",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            "READONLY You can't write against a read only replica.",
            "CLUSTERDOWN The cluster is down",
            "CLUSTERDOWN Hash slot not served",
        ] {
            assert_eq!(Failure::of(&server_error(line)), Failure::Down, "{line}");
        }
        for line in [
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            "ERR The ID specified in XADD is equal or smaller than the target stream top item",
            "NOPERM User has no permissions to run the 'xadd' command",
        ] {
            assert_eq!(Failure::of(&server_error(line)), Failure::Refused, "{line}");
        }
    }
}
