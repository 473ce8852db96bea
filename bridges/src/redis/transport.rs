//! [`RedisTransport`]: the bridge core's [`Transport`] on Redis Streams.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use tidings::bridge::{Endpoint, Outgoing, Transport, TransportError};
use tidings::Backoff;
use tokio::sync::broadcast;

use super::config::Config;
use super::consumer::RedisConsumer;
use super::error::Error;
use super::link::Link;
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

    /// Entries with a payload or a header larger than this are refused with
    /// [`TransportError::Rejected`] instead of being sent (default 512 MiB, Redis's default
    /// `proto-max-bulk-len`; set it to the server's when that is lower): a server that reads
    /// an argument over its limit closes the connection, failing the whole pipeline, and the
    /// same entry would fail every retry.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message = bytes;
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

    /// Confirms a publish only once at least `replicas` replicas have it (`WAIT replicas
    /// timeout` after each batch's `XADD`s); when fewer acknowledge within `timeout`, every
    /// message of the batch fails as disconnected and the outbound bridge sends it again (a
    /// consumer may then see it twice: use inbound dedup).
    ///
    /// Redis replicates asynchronously: without this, a confirm means the master holds the
    /// entry, and a failover to a replica that had not received it yet loses it. With it, the
    /// entry was in the memory of `replicas` replicas when it was confirmed, so a failover
    /// keeps it as long as one of them is promoted (Sentinel promotes the replica with the
    /// most data it has seen). It is not a consensus commit: a replica that restarts without
    /// persistence forgets it, and a master restarted without its data can be promoted by a
    /// later failover when it is the only candidate, every other server then copying its
    /// empty set: turn persistence on, or start such a server with `replica-priority 0` until
    /// it has synced again. The cost is a round trip to the replicas per batch (see
    /// `benches/README.md`).
    pub fn wait_for_replicas(mut self, replicas: usize, timeout: Duration) -> Self {
        self.config.replicas = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// Finds the master through Sentinel: `sentinels` (`redis://host:26379` each, with a
    /// password if they need one) are asked at once for the address of the master they
    /// monitor as `master`, and the answer with the newest configuration epoch is taken;
    /// the builder's URL gives the credentials, database and TLS, its
    /// host and port are not used. After a failure that may mean a failover (a connection
    /// lost or refused, `READONLY` from a demoted master), the next command asks again and,
    /// when the master moved, the transport and its consumers connect to the new one; a
    /// consumer then reads its own pending entries first, as after any reconnect.
    pub fn sentinels(mut self, sentinels: &[&str], master: &str) -> Self {
        self.config.sentinel = Some(super::config::Sentinel {
            sentinels: sentinels.iter().map(|s| (*s).to_owned()).collect(),
            master: master.to_owned(),
        });
        self
    }

    /// Speaks to a Redis Cluster seeded by the builder's URL and `nodes` (`redis://host:port`
    /// each; the URL's credentials and TLS apply to all): each stream lives on the node that
    /// owns its slot, and a batch is sent as one pipeline per stream. Every command the
    /// transport sends names one key (a stream, or a dedup key), so none fails with
    /// `CROSSSLOT`; streams need no hash tags. Not with [`sentinels`](Self::sentinels)
    /// (a cluster fails over by itself).
    pub fn cluster(mut self, nodes: &[&str]) -> Self {
        self.config.cluster = Some(nodes.iter().map(|n| (*n).to_owned()).collect());
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
    pub async fn connect(self) -> Result<RedisTransport, Error> {
        let link = Link::connect(&self.url, self.config).await?;
        Ok(RedisTransport {
            inner: Arc::new(link),
        })
    }
}

/// A Redis connection (a connection manager, reconnecting by itself) that implements
/// [`Transport`] over streams; see the [module docs](super). Clones share it.
#[derive(Clone)]
pub struct RedisTransport {
    inner: Arc<Link>,
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
            config: Config::default(),
        }
    }

    /// Connection events from now on: `Disconnected` when a command or read fails for want of
    /// a connection, `Connected` when one succeeds again.
    pub fn events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.inner.events()
    }

    /// Deletes streams (with their groups and pending entries).
    ///
    /// # Errors
    /// When Redis could not be asked.
    pub async fn delete_streams(&self, streams: &[&str]) -> Result<(), TransportError> {
        // One `DEL` per stream: on a cluster, streams live in different slots.
        for stream in streams {
            self.inner
                .query::<Value>(redis::cmd("DEL").arg(*stream))
                .await?;
        }
        Ok(())
    }

    pub(crate) fn inner(&self) -> &Arc<Link> {
        &self.inner
    }
}

impl Transport for RedisTransport {
    const SYSTEM: &'static str = "redis";
    type Consumer = RedisConsumer;

    /// `XADD ... NOMKSTREAM` in one pipeline: a stream nobody declared (no group reads it)
    /// fails as `Unroutable` rather than growing unread.
    async fn publish(&self, batch: &[Outgoing]) -> Vec<Result<(), TransportError>> {
        self.inner.add(batch, false).await
    }

    async fn declare(&self, source: &Endpoint) -> Result<(), TransportError> {
        self.inner.create_group(&source.name, &source.group).await
    }

    async fn consume(&self, source: &Endpoint) -> Result<RedisConsumer, TransportError> {
        self.inner.create_group(&source.name, &source.group).await?;
        Ok(RedisConsumer::start(Arc::clone(&self.inner), source))
    }
}
