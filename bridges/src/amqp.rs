//! RabbitMQ (feature `amqp`): a [`Transport`](tidings::bridge::Transport) on lapin, with the
//! connection management of amqp-connection-manager.
//!
//! ```no_run
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use tidings::bridge::{Inbound, Outbound, Endpoint, Transport};
//! use tidings::prelude::*;
//! use tidings_bridges::amqp::AmqpTransport;
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, Event)]
//! #[event(name = "user.created")]
//! struct UserCreated { id: u64 }
//!
//! #[derive(Debug, EventSet)]
//! enum Users { UserCreated(UserCreated) }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let amqp = AmqpTransport::builder("amqp://guest:guest@127.0.0.1:5672/%2f")
//!     .url("amqp://guest:guest@rabbit-2:5672/%2f") // failover
//!     .connect()
//!     .await?;
//! let source = Endpoint::new("users");
//! amqp.declare(&source).await?; // topic exchange `users`, queue `users`, `users.dead-letter`
//!
//! let (here, there) = (Bus::<Users>::new(), Bus::<Users>::new());
//! let outbound = Outbound::builder(&here, amqp.clone()).forward::<UserCreated>().destination("users").build();
//! // Listeners first: a message whose event has no listener is not acknowledged as handled.
//! there.on(|user: &UserCreated| println!("user {} created", user.id));
//! let inbound = Inbound::builder(&there, amqp.clone(), source).build();
//! here.emit_async(UserCreated { id: 1 }).await?;
//!
//! inbound.shutdown(Duration::from_secs(5)).await;
//! outbound.shutdown(Duration::from_secs(5)).await;
//! amqp.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! ## Mapping
//!
//! An outgoing destination is an **exchange**; the routing key is the event's name
//! (`user.created`), so topic bindings such as `user.*` select events. The default exchange
//! `""` routes by queue name, so there the route's key is the routing key:
//! `Route::to("").key("tasks")` is amqplib's `sendToQueue("tasks", …)`. Messages are persistent
//! and carry, following the CloudEvents AMQP binding: `message_id` = id, `type` = event name,
//! `timestamp` (seconds), `content_type`, headers `cloudEvents:source`, `cloudEvents:time`
//! (RFC 3339, milliseconds), `cloudEvents:specversion`, `cloudEvents:partitionkey` (the key),
//! the envelope's headers, and `correlation_id` / `reply_to` from the envelope headers
//! [`CORRELATION_ID`] / [`REPLY_TO`]. The body is the encoded event alone, so a Node consumer's
//! `JSON.parse(msg.content)` is the plain event object.
//!
//! An [`Endpoint`](tidings::bridge::Endpoint) is a **queue**: `{name}` for group `default` (so a
//! queue an amqplib service asserted with `{ durable: true }` is consumed as it is),
//! `{name}.{group}` for other groups. [`Transport::declare`](tidings::bridge::Transport::declare)
//! creates the topic exchange `{name}`, the group's queue bound to it for `#`, and the
//! dead-letter queue; [`AmqpTransport::source_topology`] shows what, and
//! [`AmqpBuilder::source_queues`] sets queue arguments (quorum, delivery limit...).
//! A received message's attempt count comes from the broker only: 1 for a first delivery;
//! for a redelivered one, `x-delivery-count` plus one on a quorum queue declared through this
//! transport (where the broker keeps that count), and 2 elsewhere (on a classic queue
//! `x-delivery-count` is an ordinary header a producer could set).
//!
//! ## Dead letters
//!
//! Dead-lettering publishes a persistent copy to the dead-letter queue, waits for its
//! confirm, then acknowledges the original: a crash in between duplicates, never loses. The
//! copy keeps the original's properties and typed headers as they came and adds only
//! `x-tidings-reason`, `x-tidings-attempts` and `x-tidings-origin`; a reason too long for the
//! copy to fit in one frame is shortened and ends in `[truncated]`. When the dead-letter
//! queue does not exist (the source queue was declared by another service), it is declared
//! as a durable queue and the copy sent again. When the copy still cannot be made, the
//! original is rejected to the source queue's own dead-letter exchange if it was declared
//! with one through this transport, and otherwise returned to the queue (`nack` with
//! requeue) to come again; the error says which, and the consumer goes on with the next
//! delivery.
//!
//! ## Frame limits
//!
//! A message's properties and headers travel in one frame, which RabbitMQ caps (128 KiB by
//! default) and answers an over-size one by closing the whole connection. So each publish is
//! measured against the negotiated limit first and an over-size one is refused for good with
//! [`TransportError::Rejected`](tidings::bridge::TransportError::Rejected) (keep keys and
//! headers small; the payload has no such limit). And a connection that fails within seconds
//! of opening counts as a failed connect: the next attempt waits out the backoff, so nothing
//! makes the supervisor reconnect in a tight loop.
//!
//! Untrusted messages never panic the consumer: header text is decoded lossily, unparsable
//! times are dropped, header values without a text form (`x-death` tables) are left out, and
//! the inbound bridge enforces its payload limit. Names over AMQP's 255 bytes are refused
//! with [`TransportError::Rejected`](tidings::bridge::TransportError::Rejected). Header
//! tables nested more than 100 levels deep are read as empty past that depth: parsing each
//! level takes stack, and headers nested a few thousand levels deep (which any producer can
//! send) overflowed the stack of lapin's I/O thread and aborted the process. The bound is a
//! patch of the AMQP parser lapin uses (`bridges/patched/amq-protocol-types/PATCHED.md`).
//!
//! ## Publishing
//!
//! Publishes are `mandatory` on a confirm-mode channel. `Ok` means the broker confirmed the
//! message; a message no queue is bound for comes back as
//! [`TransportError::Unroutable`](tidings::bridge::TransportError::Unroutable), as does one for an
//! exchange that does not exist (checked passively once per connection, since publishing to
//! a missing exchange would close the channel). At most
//! [`confirm_window`](AmqpBuilder::confirm_window) publishes await confirms at once; a
//! batch's messages are handed to lapin without waiting for each to be written, so lapin
//! writes many in one go.
//!
//! A batch holds its channel until its last confirm is in: RabbitMQ acknowledges many
//! publishes at once and a `basic.return` carries no delivery tag, so confirms and returns
//! can be told apart only while one batch publishes on a channel. Each connection publishes
//! on [`publishing_channels`](AmqpBuilder::publishing_channels) channels (4 by default), so
//! callers publishing at once (several outbound bridges, dead-letter copies, RPC replies)
//! each take one, and wait only when all are in use (four callers through one transport,
//! batches of 32: 1.42 times the throughput of one channel; of 256, where the broker is the
//! bound, 1.06 times: `benches/README.md`).
//!
//! A negative confirm (RabbitMQ could not store the message: a full queue declared with
//! `x-overflow: reject-publish`, a quorum queue between leaders) is not a verdict on the
//! message nor on the connection. The message is sent again on a fresh publishing channel of
//! the same connection (a channel that saw a quorum queue's old leader kept being refused),
//! after a pause that grows with each round (the [`reconnect`](AmqpBuilder::reconnect)
//! backoff); consumers on the connection are untouched. Refused until the
//! [`publish_timeout`](AmqpBuilder::publish_timeout), it fails with
//! [`TransportError::NotStored`](tidings::bridge::TransportError::NotStored), which is
//! retryable: an outbound bridge publishes it again with its own backoff.
//!
//! A publish the broker refuses by closing the channel (`ACCESS_REFUSED`: the user may not
//! write to that exchange, or it is internal) fails at once with
//! [`TransportError::Rejected`](tidings::bridge::TransportError::Rejected) and the broker's
//! reason; the channel is renewed and the connection, with its consumers, stays. The other
//! messages of the batch that the closing channel took with it are sent again on the new
//! channel (one whose confirm was lost may arrive twice); the broker's reason names the
//! exchange it refused, which tells them apart. When it names none of the batch's (a message
//! over the broker's `max_message_size`, set lower than this transport's
//! [`max_message_size`](AmqpBuilder::max_message_size)), they are sent again one at a time,
//! each waiting for its confirm: the one the broker refuses alone is the one it meant, and
//! the others go through.
//!
//! ## Connection management
//!
//! A supervisor task owns the connection (lapin's own recovery stays off): it tries each URL
//! in turn with backoff and jitter, asks for heartbeats so a dead peer is noticed, declares
//! the recorded topology on every new connection before anything uses it (a declaration
//! refused then, because another client re-created the item with other arguments, is logged
//! and skipped rather than keeping the transport from connecting), and emits
//! [`ConnectionEvent`]s. During an outage, publishes wait for the next connection (at most
//! [`buffer`](AmqpBuilder::buffer) messages, for at most
//! [`publish_timeout`](AmqpBuilder::publish_timeout)), and a publish the broker never
//! confirmed is sent again on the new connection, so it may arrive twice but is never lost.
//! Consumers see an error or the end of their stream (also when the supervisor replaced the
//! connection under them); the inbound bridge consumes again, with backoff, which also covers
//! a queue deleted under a consumer. A consume that finds its queue missing declares it again
//! as recorded, with its bindings, when it was declared through this transport (another
//! client deleted it; one deleted with [`AmqpTransport::delete_queue`] is forgotten and stays
//! gone), and so does a publish refused because its exchange is missing (the exchange with
//! its bindings; the messages are sent again once). Every round trip to the broker (opening a channel, a
//! declaration, an acknowledgement, a publish) is bounded in time, so a connection that stops
//! answering fails its callers instead of hanging them.
//!
//! ## Secrets
//!
//! A URL's password appears in no error, `Debug` output or log line of this crate, and not in
//! lapin's either, at any level: lapin logs every frame it sends at TRACE level, including the
//! login frame, so when lapin's TRACE events are enabled at connect time lapin logs in with a
//! random placeholder through a relay on loopback that puts the password in as the frame
//! passes (the relay also does the TLS of an `amqps` URL). Without TRACE for lapin, lapin
//! connects directly. The filter is decided at connect time: a subscriber that turns lapin's
//! TRACE events on later sees the next connection's login relayed, not the current one's (it
//! was logged before, if ever).
//!
//! ## Acknowledgements
//!
//! Acknowledgements are sent cumulatively (`basic.ack` with `multiple` for a run of
//! acknowledged deliveries), when no delivery has come for a millisecond, when a quarter of
//! the prefetch has piled up, or when the consumer is dropped; see [`AmqpConsumer`]. This is what makes the
//! bridge faster end to end than a client acknowledging each message (`benches/README.md`).
//!
//! ## Shutting down
//!
//! Shut the [`Inbound`](tidings::bridge::Inbound) bridges down (they stop consuming, finish
//! and acknowledge what they hold), then the [`Outbound`](tidings::bridge::Outbound) bridges
//! (they flush and wait for confirms), then [`AmqpTransport::shutdown`] (waits for outstanding
//! confirms, closes the connection), each with a deadline.

mod config;
mod consumer;
mod error;
mod link;
mod login;
mod publish;
mod rpc;
mod topology;
mod transport;
mod wire;

pub use self::config::Tls;
pub use self::consumer::AmqpConsumer;
pub use self::error::Error;
pub use self::rpc::{RpcClient, RpcServer, ERROR_HEADER};
pub use self::topology::{Binding, Exchange, Queue, QueueOverflow, Topology};
pub use self::transport::{queue_name, AmqpBuilder, AmqpTransport};
pub use self::wire::{CORRELATION_ID, REPLY_TO};
pub use crate::ConnectionEvent;
