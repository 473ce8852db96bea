//! Broker bridges for tidings: transports that carry a bus's events through a message broker.
//!
//! Each broker is behind a Cargo feature and implements the bridge core's
//! [`Transport`](tidings::bridge::Transport), so [`Outbound`](tidings::bridge::Outbound) and
//! [`Inbound`](tidings::bridge::Inbound) work on it unchanged, and it passes the same
//! conformance suite as the in-memory broker.
//!
//! | feature | broker | module |
//! |---|---|---|
//! | `amqp` | RabbitMQ (AMQP 0-9-1, through lapin) | `amqp` |
//!
//! Kafka and Redis transports are not built yet.

#[cfg(feature = "amqp")]
pub mod amqp;
