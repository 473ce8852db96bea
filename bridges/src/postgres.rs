//! A transactional outbox and an inbox on PostgreSQL (feature `postgres`), through
//! tokio-postgres: the answer to the dual write every service does (a row in its database and
//! an event on a broker) and to a broker that delivers a message again.
//!
//! - [`Outbox`] stages events **in the service's own transaction**: they are published if and
//!   only if that transaction commits. [`Relay`] publishes them on any
//!   [`Transport`](tidings::bridge::Transport) (RabbitMQ, Kafka, Redis Streams, job queues, the
//!   memory broker) with the transport's confirms, per key in order, and marks them done.
//! - [`Inbox`] records each handled message's id **in the handler's own transaction**, so its
//!   effect happens once even when the broker delivers the message again, the consumer is
//!   killed mid-handler, or two replicas race.
//!
//! ```no_run
//! use std::time::Duration;
//! use tidings::bridge::MemoryBroker;
//! use tidings::prelude::*;
//! use tidings_bridges::postgres::{Outbox, Relay};
//!
//! #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
//! #[event(name = "order.placed", key = order_id)]
//! struct OrderPlaced { order_id: String }
//!
//! # async fn run(transport: MemoryBroker) -> Result<(), Box<dyn std::error::Error>> {
//! let url = "postgresql://postgres@127.0.0.1/shop";
//! let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
//! tokio::spawn(connection);
//! let outbox = Outbox::new("outbox")?;
//! outbox.create(&client).await?;
//! let relay = Relay::builder(url, &outbox, transport)?.spawn();
//!
//! // The service's own write and the event, in one transaction.
//! let tx = client.transaction().await?;
//! tx.execute("INSERT INTO orders (id) VALUES ($1)", &[&"o-1"]).await?;
//! outbox.stage(&tx, "orders", &OrderPlaced { order_id: "o-1".into() }).await?;
//! tx.commit().await?;
//!
//! relay.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! ## What the outbox guarantees, and what it does not
//!
//! - **Published if and only if committed.** A staged row is part of the transaction; a
//!   rollback leaves nothing to publish.
//! - **At least once.** A row is marked done in the transaction that claimed it, after the
//!   broker confirmed it. A relay killed between the confirm and the commit leaves the row
//!   staged, and it is published again: consumers deduplicate (an [`Inbox`], or the inbound
//!   bridge's dedup), as for any at-least-once delivery.
//! - **Per key in order, with several relays.** Staging a keyed event takes the key's
//!   transaction-level advisory lock before the row gets its number, so transactions staging
//!   one key commit in the order of their rows (they wait for each other: ordering one key is
//!   serial by nature). A relay first takes the locks of the keys of the next rows (four
//!   batches ahead; `pg_try_advisory_xact_lock`, skipping keys another relay or a staging
//!   transaction holds), then reads those keys' rows and the keyless ones (`FOR UPDATE SKIP LOCKED`) in
//!   number order with a statement of its own, and holds the locks until it has published
//!   and marked them. So at most one relay works on a key at a time, it sees every committed
//!   row of that key and none still being staged, and other relays take the other keys
//!   meanwhile. A plain `FOR UPDATE SKIP LOCKED` would let a second relay publish a key's
//!   later rows while the first still holds its earlier ones; a lock tried row by row in the
//!   claiming query itself can fail for a key's first row and succeed for its next (a staging
//!   transaction committing in between), which the suites caught.
//! - **Woken at once, without relying on it.** Staging sends a `NOTIFY` (delivered only on
//!   commit); the relay listens on a connection of its own and also looks every
//!   [`poll_every`](RelayBuilder::poll_every), so notifications lost while PostgreSQL or the
//!   listening connection was away delay rows, never lose them.
//! - **A refused message does not block its key.** A row the broker refuses outright
//!   (unroutable, too large) is marked done with the reason in its `failure` column and logged
//!   at error level; so is a row that does not read as an outbox row (written by hand, its
//!   `headers` not a JSON object of strings), which no retry could send. A row that fails for
//!   want of a broker stays staged, with the later rows of its key.
//! - Published rows are deleted after [`keep_published`](RelayBuilder::keep_published).
//! - Not provided: TLS to PostgreSQL (the relay connects without it: loopback or a private
//!   network), and exactly-once publishing (no broker offers it to a relay that can die).
//!
//! ## What the inbox guarantees
//!
//! [`Inbox::record`] inserts `(consumer, message id)` with `ON CONFLICT DO NOTHING` in the
//! handler's transaction: the first transaction to record an id does the work; a second one
//! (a redelivery, a replica racing) waits on the row, then finds it and skips the work once the
//! first commits, or does it if the first rolled back. The id comes from the message
//! ([`MessageContext`](tidings::MessageContext), [`Inbox::record_current`]); ids from
//! producers that set none cannot be deduplicated this way. Ids expire with
//! [`Inbox::expire`]: keep them longer than a message can wait in a broker.

mod error;
mod inbox;
mod outbox;
mod relay;
mod table;

pub use self::error::Error;
pub use self::inbox::Inbox;
pub use self::outbox::Outbox;
pub use self::relay::{Relay, RelayBuilder, RelayStats};
