//! Redis transport (feature `redis`): [`RedisTransport`] implements the bridge core's
//! [`Transport`](tidings::bridge::Transport) over Redis Streams, and [`RedisDedup`] shares
//! the inbound bridge's deduplication between replicas. Built on redis-rs.
//!
//! ```no_run
//! use std::time::Duration;
//! use tidings::bridge::{Inbound, Outbound, Endpoint, Transport};
//! use tidings::prelude::*;
//! use tidings_bridges::redis::{RedisDedup, RedisTransport};
//!
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
//! #[event(name = "order.placed", key = order_id)]
//! struct OrderPlaced {
//!     order_id: String,
//! }
//!
//! #[derive(Debug, Clone, EventSet)]
//! enum Shop {
//!     OrderPlaced(OrderPlaced),
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let redis = RedisTransport::builder("redis://127.0.0.1:6379").connect().await?;
//! let source = Endpoint::new("orders").group("billing");
//! redis.declare(&source).await?;
//! let (shop, billing) = (Bus::<Shop>::new(), Bus::<Shop>::new());
//! let outbound = Outbound::builder(&shop, redis.clone())
//!     .forward::<OrderPlaced>()
//!     .destination("orders")
//!     .build();
//! // Listeners first: a message whose event has no listener is not acknowledged as handled.
//! billing.on(|order: &OrderPlaced| println!("billing {}", order.order_id));
//! let inbound = Inbound::builder(&billing, redis.clone(), source)
//!     .dedup(RedisDedup::new(&redis, "billing:seen"))
//!     .build();
//! shop.emit_async(OrderPlaced { order_id: "o-1".into() }).await?;
//! outbound.shutdown(Duration::from_secs(5)).await;
//! inbound.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! ## The wire mapping
//!
//! One stream entry per message; its fields carry the CloudEvents attributes by name:
//!
//! | envelope | field |
//! |---|---|
//! | `id` | `id` |
//! | `name` | `type` |
//! | `source` | `source` |
//! | `time` | `time` (RFC 3339) |
//! | — | `specversion` = `1.0` |
//! | `content_type` | `datacontenttype` |
//! | `key` | `partitionkey` |
//! | `headers` | one field each (a header named like a field above gets the prefix `ext-`) |
//! | `payload` | `data`: the event as JSON, so `JSON.parse(fields.data)` reads it |
//!
//! What a Node service adds with `xadd(stream, '*', 'data', JSON.stringify(obj))` is read too:
//! bind the source to an event type; its id is then `{stream}/{entry id}`.
//!
//! ## Publishing
//!
//! One pipeline of `XADD ... NOMKSTREAM [MAXLEN ~ n] *` per batch on the shared connection
//! (a connection manager that reconnects by itself); the reply is the confirm. A stream that
//! does not exist (nobody declared a group on it) fails as `Unroutable`. When the connection
//! fails under a pipeline, the whole batch is reported failed and sent again, though some
//! entries may have been added: inbound deduplication drops those copies. One pipeline runs
//! in order, so order per key holds.
//!
//! A server that answers but will not write just then fails the entry as
//! [`TransportError::NotStored`](tidings::bridge::TransportError::NotStored), retryable, and
//! the connection stays: `OOM` (at `maxmemory` with `noeviction`), `NOREPLICAS` (fewer
//! connected replicas than `min-replicas-to-write`), `MISCONF` (a failed snapshot with
//! `stop-writes-on-bgsave-error`). An outbound bridge keeps such events and tries again. A
//! server that is not serving (loading, busy, demoted: `READONLY`; a cluster with a slot not
//! served: `CLUSTERDOWN`) counts as a lost connection, retryable too; only a command refused
//! for itself (a key of another type, a permission) is `Rejected`.
//!
//! An entry with a payload or header over
//! [`max_message_size`](RedisBuilder::max_message_size) (default 512 MiB, the server's
//! default `proto-max-bulk-len`) is refused as `Rejected` before it is sent, and the rest of
//! its batch goes: a server reading an argument over its limit closes the connection under
//! the whole pipeline, and the same entry would fail every retry.
//!
//! Redis replicates asynchronously, so that reply means the master has the entry, not its
//! replicas: a failover right after it can lose it. With
//! [`wait_for_replicas`](RedisBuilder::wait_for_replicas) the pipeline ends in `WAIT`, and a
//! batch counts as confirmed only once that many replicas acknowledged it.
//!
//! ## Sentinel
//!
//! With [`sentinels`](RedisBuilder::sentinels) the transport asks Sentinel for the master's
//! address at connect, and again before the next command after any failure that may mean a
//! failover (a lost or refused connection, `READONLY` from a demoted master, fewer replicas
//! than [`wait_for_replicas`](RedisBuilder::wait_for_replicas) asks for): when the master
//! moved, the shared connection and the consumers' own move with it. While Sentinel still
//! names the old address, a command goes there only once what answers says `ROLE` master, so
//! a node restarted at that address is not written to before Sentinel decides.
//!
//! Two cases where a restarted old master could still take a batch are closed separately.
//! Every sentinel is asked at once and the answer with the highest configuration epoch
//! wins: a sentinel that missed the failover names the old address, and the first answer
//! could be its. And a stream missing where a batch went (`XADD ... NOMKSTREAM` answering
//! nil) makes the transport ask Sentinel before calling it unroutable: on an old master back
//! empty every stream is missing, and refusing the batch would drop confirmed-looking work;
//! when Sentinel names another master the batch is sent again there. A batch whose `WAIT`
//! fell short is sent again whatever its entries' replies were. Why not
//! redis-rs's own Sentinel client: it hands out connections, and the transport needs its
//! connection manager (reconnects, timeouts) kept, with only the address followed.
//!
//! ## Consuming
//!
//! [`Transport::declare`](tidings::bridge::Transport::declare) (and `consume`) creates the
//! group with `XGROUP CREATE ... 0 MKSTREAM`: a new group reads the stream from its start.
//! How a [`RedisConsumer`] reads, reclaims what dead members left pending, counts attempts and
//! settles is in its docs. Blocking reads run on a connection of their own with no
//! response timeout (redis-rs's default timeout would cut them, and a blocking read on a shared
//! connection would stall every other command on it), bounded instead by the block time plus
//! the command timeout, so a stalled server is noticed.
//!
//! ## Dead letters
//!
//! A dead letter is an entry added to the source's dead-letter stream: the original's fields,
//! the core's reason, attempts and origin headers, and [`ORIGIN_ENTRY`]. A stream entry has no
//! size limit a copy could reach (Redis bounds one argument at 512 MB, far above the inbound
//! bridge's payload limit), so a message that was read can always be dead-lettered; a copy
//! Redis refuses for another reason leaves the entry pending, to be claimed and tried again
//! after the inbound bridge's pause.
//!
//! ## TLS and secrets
//!
//! `rediss://` URLs connect over TLS (rustls), verifying the server with the system's roots or
//! with the authorities given to [`RedisBuilder::tls_ca_pem`]; ACL users log in with the URL's
//! user and password. The password never appears in an error, a log line or `Debug` output.

mod config;
mod consumer;
mod dedup;
mod error;
mod link;
mod transport;
mod wire;

pub use self::consumer::RedisConsumer;
pub use self::dedup::RedisDedup;
pub use self::error::Error;
pub use self::transport::{RedisBuilder, RedisTransport};
pub use self::wire::{
    DATA, DATACONTENTTYPE, HEADER_PREFIX, ID, ORIGIN_ENTRY, PARTITIONKEY, SOURCE, SPECVERSION,
    TIME, TYPE,
};
