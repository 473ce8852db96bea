//! The handful of operations a broker implements to carry a bridge.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::envelope::{Envelope, Incoming, ATTEMPTS_HEADER, ORIGIN_HEADER, REASON_HEADER};
use crate::error::BoxError;

/// An envelope and where to publish it: an exchange (AMQP), or what the broker publishes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Exchange, topic or stream.
    pub destination: String,
    /// The message.
    pub envelope: Envelope,
}

/// What an inbound bridge consumes: the queue, topic or stream, the consumer group, the
/// prefetch and where dead letters go (a receive endpoint, as other messaging libraries call
/// it). Not to be confused with an envelope's `source`, the CloudEvents attribute naming the
/// producer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Endpoint {
    /// The queue (AMQP), or what the broker consumes from; for the in-memory transport, a
    /// pattern over destinations (`orders.#`).
    pub name: String,
    /// The consumer group: each group receives every message; consumers of one group share
    /// them. Where a new group starts differs by broker, as it does without tidings: on Kafka
    /// and Redis Streams at the start of what the topic or stream holds; on the memory broker
    /// (as for a RabbitMQ queue) with the messages published after it was declared, so declare
    /// a group before publishing what it must see. On Kafka, one group shared by endpoints of
    /// different topics rebalances all of them together; give each endpoint its own group.
    pub group: String,
    /// At most this many unacknowledged messages per consumer (at least 1).
    pub prefetch: usize,
    /// Where rejected messages go.
    pub dead_letter: String,
}

/// Where a bridge sends or reads, and which events: from [`Outbound::channels`] and
/// [`Inbound::channel`](super::Inbound::channel), for describing a service (its AsyncAPI
/// document, with the feature `contracts`).
///
/// [`Outbound::channels`]: super::Outbound::channels
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Channel {
    /// The broker ([`Transport::SYSTEM`]: `rabbitmq`, `kafka`, `redis`...).
    pub system: &'static str,
    /// The exchange, topic or stream sent to, or the source read; `None` when a route
    /// function chooses it per event.
    pub address: Option<String>,
    /// The consumer group, for a channel read.
    pub group: Option<String>,
    /// The event names that travel on it.
    pub events: Vec<&'static str>,
}

impl Endpoint {
    /// An endpoint with group `default`, prefetch 32, and dead letters to `{name}.dead-letter`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Endpoint {
            dead_letter: format!("{name}.dead-letter"),
            name,
            group: "default".to_owned(),
            prefetch: 32,
        }
    }

    /// Sets the consumer group.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Sets the prefetch (at least 1).
    pub fn prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// Sets the dead-letter destination.
    pub fn dead_letter(mut self, destination: impl Into<String>) -> Self {
        self.dead_letter = destination.into();
        self
    }
}

/// A transport operation failed. Messages are never lost by a failure: a failed publish was not
/// confirmed (the caller still has it), and an unacknowledged delivery is delivered again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection is down; worth retrying.
    #[error("the transport is disconnected: {0}")]
    Disconnected(String),
    /// Nothing is bound to the destination, so the broker would drop the message.
    #[error("nothing is bound to `{0}`: the message was not routed")]
    Unroutable(String),
    /// The broker refused the message for good (too large, a name it does not accept...). A
    /// negative confirm is not this: see [`NotStored`](TransportError::NotStored).
    #[error("the broker rejected the message: {0}")]
    Rejected(String),
    /// The broker could not store the message just then: RabbitMQ answered with negative
    /// confirms until the publish timeout (a full queue that rejects publishes, a quorum
    /// queue without a leader, a resource alarm); Redis refused the write (`OOM` at
    /// `maxmemory`, `NOREPLICAS`, `MISCONF`). Worth retrying later; the connection is fine.
    #[error("the broker did not store the message: {0}")]
    NotStored(String),
    /// The consumer or transport was closed.
    #[error("the transport is closed")]
    Closed,
    /// A client error.
    #[error(transparent)]
    Other(BoxError),
}

impl TransportError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            TransportError::Disconnected(_)
                | TransportError::NotStored(_)
                | TransportError::Other(_)
        )
    }
}

/// A broker connection that publishes with confirmation and consumes with acknowledgement.
pub trait Transport: Clone + Send + Sync + 'static {
    /// What [`consume`](Self::consume) returns.
    type Consumer: Consumer;

    /// The broker's name in traces (OpenTelemetry's `messaging.system`: `rabbitmq`, `kafka`,
    /// `redis`...).
    const SYSTEM: &'static str = "unknown";

    /// Publishes a batch; one result per item, in order. `Ok` means the broker confirmed it
    /// (publisher confirm, delivery report, stream reply).
    ///
    /// **Per-key order.** Messages with the same destination and key (a missing key counts
    /// as one key of its own) must reach the broker in batch order, and a retryable failure
    /// must end that key's run in this call: once a message fails with an
    /// [`is_retryable`](TransportError::is_retryable) error, later messages of its key must
    /// not be confirmed in this call (report them failed too, without publishing them, or
    /// because the same broken connection failed them). [`Outbound`](super::Outbound) then
    /// publishes the failed run again, in order, before anything newer, so order per key
    /// survives partial failures without duplicating what was confirmed. A transport that
    /// breaks this is logged at error level by `Outbound`. Permanent refusals
    /// ([`Unroutable`](TransportError::Unroutable), [`Rejected`](TransportError::Rejected))
    /// do not end the run: that message is never published, so it cannot be overtaken.
    ///
    /// A transport that returns fewer results than messages has a bug; `Outbound` logs it
    /// and publishes the messages without a result again.
    fn publish(
        &self,
        batch: &[Outgoing],
    ) -> impl Future<Output = Vec<Result<(), TransportError>>> + Send;

    /// Makes sure `source` exists, so messages published to it before anyone consumes are
    /// kept (declares the queue and bindings, creates the group...).
    fn declare(&self, source: &Endpoint)
        -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Starts consuming from `source`.
    fn consume(
        &self,
        source: &Endpoint,
    ) -> impl Future<Output = Result<Self::Consumer, TransportError>> + Send;
}

/// How far a consumer's group is behind its source, in messages, kept up to date by
/// the transport in the background and read by the inbound bridge
/// ([`InboundStats::lag`](super::InboundStats::lag)); clones share one value.
///
/// What counts is the broker's own measure: for Kafka, the partitions' high watermarks minus
/// the group's committed offsets (the lag `kafka-consumer-groups` shows: what was received and
/// not yet committed counts); for Redis Streams, the group's `lag` from `XINFO GROUPS` (entries
/// no member has read yet); in memory, the messages waiting for the group. It reads `None`
/// while the broker cannot be reached, and the inbound bridge reports `None` between a
/// consumer that failed and the next one.
#[derive(Debug, Clone)]
pub struct Lag(Arc<AtomicU64>);

impl Default for Lag {
    fn default() -> Self {
        Lag::new()
    }
}

/// The stored value of a lag not known (yet).
const UNKNOWN_LAG: u64 = u64::MAX;

impl Lag {
    /// A lag not known yet.
    pub fn new() -> Self {
        Lag(Arc::new(AtomicU64::new(UNKNOWN_LAG)))
    }

    /// Records the lag (`None`: the broker cannot tell right now).
    pub fn set(&self, messages: Option<u64>) {
        let value = messages.map_or(UNKNOWN_LAG, |n| n.min(UNKNOWN_LAG - 1));
        self.0.store(value, Ordering::Relaxed);
    }

    /// The last lag recorded, if known.
    pub fn get(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&n| n != UNKNOWN_LAG)
    }
}

/// A stream of deliveries from one source.
pub trait Consumer: Send + 'static {
    /// The next delivery; `None` once the consumer is closed. An error means the connection
    /// failed: consume again (unacknowledged deliveries come back).
    fn next(&mut self) -> impl Future<Output = Option<Result<Delivery, TransportError>>> + Send;

    /// Closes the consumer once what was settled has reached the broker (acknowledgements
    /// sent, offsets committed), bounded by the transport's own timeouts. Unsettled deliveries
    /// come again. [`Inbound`](super::Inbound) closes its consumer this way on shutdown; the
    /// default just drops it, for transports that settle synchronously.
    fn close(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async move { drop(self) }
    }

    /// The consumer's [`Lag`], for a transport that measures it; the default has none.
    fn lag(&self) -> Option<Lag> {
        None
    }
}

/// How a transport settles one delivery; implemented by transports.
///
/// [`nack`](Self::nack) and [`dead_letter`](Self::dead_letter) get the delivery's message back,
/// as it is now: a transport that delivers a nacked message again itself, or republishes it as
/// a dead letter, uses it instead of keeping a copy of every message it hands out. One that
/// keeps the broker's own copy (to republish its exact bytes) ignores it.
pub trait Acker: Send + 'static {
    /// The message was handled: forget it.
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>>;
    /// The message was not handled: deliver it again.
    fn nack(self: Box<Self>, message: Incoming) -> BoxFuture<'static, Result<(), TransportError>>;
    /// The message can never be handled: move it to the source's dead-letter destination with
    /// these headers (its own plus the reason), then forget it. When the move fails, the
    /// message must not be lost or left holding a prefetch slot: return it to its source (or
    /// to a dead-letter route of the source's own) and say which in the error.
    fn dead_letter(
        self: Box<Self>,
        message: Incoming,
        headers: BTreeMap<String, String>,
    ) -> BoxFuture<'static, Result<(), TransportError>>;
}

/// One received message, to be acknowledged, returned or dead-lettered exactly once. Dropping
/// it unsettled leaves it to the transport, which delivers it again when the consumer goes.
pub struct Delivery {
    /// The message.
    pub message: Incoming,
    acker: Box<dyn Acker>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// A delivery settled through `acker`.
    pub fn new(message: Incoming, acker: impl Acker) -> Self {
        Delivery {
            message,
            acker: Box::new(acker),
        }
    }

    /// Acknowledges it. A transport may send acknowledgements in batches (the RabbitMQ
    /// transport does): `Ok` then means the acknowledgement was taken, and if the connection
    /// fails before the broker has it, the message is delivered again, as for any
    /// acknowledgement lost in flight.
    ///
    /// # Errors
    /// When the transport could not settle it; it will then be delivered again.
    pub async fn ack(self) -> Result<(), TransportError> {
        self.acker.ack().await
    }

    /// Returns it for redelivery. A transport that delivers it again itself does so with
    /// [`message`](Self::message) as it is now.
    ///
    /// # Errors
    /// When the transport could not settle it; it will then be delivered again anyway.
    pub async fn nack(self) -> Result<(), TransportError> {
        self.acker.nack(self.message).await
    }

    /// Moves it to the dead-letter destination with `reason`, the attempt count and its origin
    /// in headers (a transport that republishes it uses [`message`](Self::message) as it is
    /// now).
    ///
    /// # Errors
    /// When the transport could not move it; it will then be delivered again.
    pub async fn dead_letter(self, reason: &str, attempts: u32) -> Result<(), TransportError> {
        let mut headers = self.message.headers.clone();
        headers.insert(REASON_HEADER.to_owned(), reason.to_owned());
        headers.insert(ATTEMPTS_HEADER.to_owned(), attempts.to_string());
        headers.insert(ORIGIN_HEADER.to_owned(), self.message.origin.to_string());
        self.acker.dead_letter(self.message, headers).await
    }
}
