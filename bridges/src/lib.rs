//! Broker bridges for tidings: transports that carry a bus's events through a message broker.
//!
//! Each broker is behind a Cargo feature and implements the bridge core's
//! [`Transport`](tidings::bridge::Transport), so [`Outbound`](tidings::bridge::Outbound) and
//! [`Inbound`](tidings::bridge::Inbound) work on it unchanged, and it passes the same
//! conformance suite as the in-memory broker.
//!
//! | feature | broker | transport | what an `Endpoint` names | where dead letters go |
//! |---|---|---|---|---|
//! | `amqp` | RabbitMQ (AMQP 0-9-1, through lapin) | `amqp::AmqpTransport` | a queue (declared bound to the topic exchange of the same name) | the queue `Endpoint::dead_letter` (`{name}.dead-letter`), or the queue's own dead-letter exchange |
//! | `kafka` | Kafka (through rdkafka, librdkafka built in) | `kafka::KafkaTransport` | a topic; `Endpoint::group` is the consumer group | the topic `{name}.dead-letter` |
//! | `redis` | Redis Streams, and a Redis dedup store (through redis-rs) | `redis::RedisTransport` | a stream; `Endpoint::group` is the consumer group | the stream `{name}.dead-letter` |
//! | `jobs` | job queues in BullMQ's format on Redis (through bullmq-official) | `jobs::JobTransport` (publish only) | a queue | the queue's failed set, after the job's attempts |
//!
//! `postgres` adds a transactional outbox and an inbox on PostgreSQL (`postgres::Outbox`,
//! `postgres::Relay`, `postgres::Inbox`), for any of the transports above. `sqlite` adds a
//! durable outbound store on an SQLite file (`sqlite::SqliteStore`): events emitted with
//! `emit_and_wait` survive a killed process, on any transport.
//!
//! `Endpoint` is what an inbound bridge consumes (`tidings::bridge::Endpoint`); where a message
//! was produced (CloudEvents' `source`) is the envelope's `source` field.

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
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "redis", feature = "jobs"))]
mod redis_connection;
#[cfg(any(
    feature = "amqp",
    feature = "kafka",
    feature = "redis",
    feature = "jobs",
    feature = "postgres"
))]
mod secret;
#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(any(feature = "amqp", feature = "kafka", feature = "redis"))]
pub use crate::connection::ConnectionEvent;
