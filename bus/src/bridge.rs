//! Bridges between a bus and a message broker: forward chosen events out, bring messages in.
//!
//! A broker is reached through a [`Transport`]: publish a batch and learn which messages the
//! broker confirmed; consume [`Delivery`]s that are acknowledged, returned, or dead-lettered.
//! `tidings-bridges` implements it for RabbitMQ, Kafka and Redis Streams (features `amqp`,
//! `kafka`, `redis`); [`MemoryBroker`] implements it
//! in-process, with broker semantics and injectable faults, for tests. A transport for another
//! broker implements the same trait, from any crate, and proves itself with the conformance
//! suite (feature `testing`).
//!
//! - [`Outbound`] forwards events from a bus: encode (JSON by default), route, batch, publish,
//!   and count a publish only when the broker confirmed it. While the broker is down, unconfirmed
//!   messages are retried with backoff and jitter, and new events wait in a bounded buffer: when
//!   it is full, `emit_async` waits and a sync `emit` reports the overflow. Nothing is dropped
//!   silently.
//! - [`Inbound`] consumes an [`Endpoint`] and emits each message into a bus, acknowledging it only
//!   when every listener of the event succeeded. Failures are retried with backoff, then the
//!   message is dead-lettered with the reason, the attempt count and its origin. Undecodable
//!   messages (unknown type, bad payload, over the size limit, no type at all) are dead-lettered
//!   at once, and good traffic keeps flowing.
//!
//! The guarantee across a broker is at-least-once: a message may arrive twice (after a
//! reconnect, say), and every message carries a unique id; [`MemoryDedup`] (or a shared store)
//! drops the repeats. Order holds per key, within one consumer.
//!
//! # Durable outbound
//!
//! Without a store, an `Outbound` holds what the broker has not confirmed in memory, and a
//! process killed meanwhile loses it. Given an [`OutboundStore`]
//! ([`OutboundBuilder::store`]; `tidings-bridges` has one on an SQLite file), it keeps each
//! event in the store first: [`Bus::emit_and_wait`](crate::Bus::emit_and_wait) returns `Ok`
//! once every durable outbound that forwards the event has stored it, or the store's error
//! (full, failing) naming the event. Stored messages are published in the order they were
//! stored, with the broker's confirms, and forgotten once confirmed; an outbound built on a
//! store that holds messages (after a crash, or a shutdown that did not finish) publishes them
//! before anything newer. Events from a sync `emit` or `emit_async` are stored as soon as the
//! bridge takes them, but their emitters do not wait for it.
//!
//! The cost: a store append per batch. Appends run while the previous batch is published, and
//! every event queued during one append shares the next, so under load one write carries
//! hundreds of events (`benches/README.md` has the figures).
//!
//! ```
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use tidings::bridge::{Inbound, MemoryBroker, Outbound, Endpoint, Transport};
//! use tidings::prelude::*;
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, Event)]
//! struct OrderPlaced { order: u64 }
//!
//! #[derive(Debug, EventSet)]
//! enum Shop { OrderPlaced(OrderPlaced) }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let broker = MemoryBroker::new();
//! let (shop, warehouse) = (Bus::<Shop>::new(), Bus::<Shop>::new());
//! let source = Endpoint::new("orders");
//! broker.declare(&source).await.unwrap();
//!
//! let outbound = Outbound::builder(&shop, broker.clone())
//!     .forward::<OrderPlaced>()
//!     .destination("orders")
//!     .build();
//! // Listeners first: a message whose event has no listener is not acknowledged as handled.
//! let mut arrivals = warehouse.subscribe::<OrderPlaced>();
//! let inbound = Inbound::builder(&warehouse, broker.clone(), source).build();
//!
//! shop.emit_async(OrderPlaced { order: 7 }).await.unwrap();
//! assert_eq!(arrivals.recv().await.unwrap().unwrap().order, 7);
//!
//! assert_eq!(outbound.shutdown(Duration::from_secs(1)).await.unfinished_count(), 0);
//! inbound.shutdown(Duration::from_secs(1)).await;
//! # }
//! ```

#[cfg(feature = "testing")]
pub mod conformance;
mod envelope;
mod inbound;
#[cfg(feature = "testing")]
mod journal;
pub mod memory;
mod outbound;
mod store;
mod task;
mod transport;

pub use self::envelope::{
    new_id, Envelope, HeaderBudget, Incoming, ATTEMPTS_HEADER, DROPPED_HEADERS, MAX_HEADERS,
    MAX_HEADER_BYTES, ORIGIN_HEADER, REASON_HEADER,
};
pub use self::inbound::{Dedup, Inbound, InboundBuilder, InboundStats, MemoryDedup};
#[cfg(feature = "testing")]
pub use self::journal::{DeadLettered, Journal, JOURNAL_LIMIT};
pub use self::memory::{MemoryBroker, MemoryConsumer};
pub use self::outbound::{Outbound, OutboundBuilder, OutboundStats, Route};
pub use self::store::{OutboundStore, StoreError, StoredMessage};
pub use self::transport::{
    Acker, Channel, Consumer, Delivery, Endpoint, Lag, Outgoing, Transport, TransportError,
};
