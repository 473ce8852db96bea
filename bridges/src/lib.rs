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
//! | `kafka` | Kafka (through rdkafka, librdkafka built in) | `kafka` |
//! | `redis` | Redis Streams, and a Redis dedup store (through redis-rs) | `redis` |
//! | `jobs` | job queues in BullMQ's format on Redis (through bullmq-official) | `jobs` |

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(any(feature = "amqp", feature = "kafka", feature = "redis"))]
mod connection;
#[cfg(any(feature = "kafka", feature = "redis"))]
mod handover;
#[cfg(feature = "jobs")]
pub mod jobs;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(
    feature = "amqp",
    feature = "kafka",
    feature = "redis",
    feature = "jobs"
))]
mod secret;

#[cfg(any(feature = "amqp", feature = "kafka", feature = "redis"))]
pub use crate::connection::ConnectionEvent;
