//! Kafka transport (feature `kafka`): [`KafkaTransport`] implements the bridge core's
//! [`Transport`](tidings::bridge::Transport) through rdkafka, with librdkafka built from
//! source and linked statically.
//!
//! ```no_run
//! use std::time::Duration;
//! use tidings::bridge::{Outbound, Endpoint, Transport};
//! use tidings::prelude::*;
//! use tidings_bridges::kafka::{KafkaTransport, Topic};
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
//! let kafka = KafkaTransport::builder("127.0.0.1:9092")
//!     .source_topics(&Topic::new("").partitions(6))
//!     .build()?;
//! kafka.declare(&Endpoint::new("orders")).await?;
//! let bus = Bus::<Shop>::new();
//! let outbound = Outbound::builder(&bus, kafka.clone())
//!     .forward::<OrderPlaced>()
//!     .destination("orders")
//!     .build();
//! bus.emit_async(OrderPlaced { order_id: "o-1".into() }).await?;
//! outbound.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```
//!
//! ## The wire mapping (CloudEvents Kafka binding, binary mode)
//!
//! | envelope | Kafka |
//! |---|---|
//! | `id` | header `ce_id` |
//! | `name` | header `ce_type` |
//! | `source` | header `ce_source` |
//! | `time` | header `ce_time` (RFC 3339) and the message timestamp (create time) |
//! | — | header `ce_specversion` = `1.0` |
//! | `content_type` | header `content-type` |
//! | `key` | message key (so one key stays on one partition) |
//! | `headers` | headers, as UTF-8 text |
//! | `payload` | value (JSON by default: `JSON.parse(message.value.toString())` in kafkajs) |
//!
//! A kafkajs producer that sends only `{ key, value }` is read too: bind the source to an
//! event type on the inbound bridge.
//!
//! ## Producing
//!
//! `acks=all`, a publish counts as confirmed once librdkafka's delivery report says so. The
//! idempotent producer is on by default: the broker drops duplicates of retried requests
//! and librdkafka keeps order per partition across retries. With it off
//! ([`KafkaBuilder::idempotence`]), or when the cluster refuses it (the transport then falls
//! back by itself), one request is kept in flight per connection, so retries cannot reorder
//! either. Messages without a key are spread over partitions by librdkafka's
//! partitioner: as in Kafka, their order holds only within a partition. A publish to a topic
//! that does not exist fails at once with `Unroutable` (the cluster is asked once per new
//! topic) instead of waiting out the publish timeout.
//!
//! Every wait is bounded by the publish timeout: a dead cluster fails publishes with
//! `Disconnected` (retryable: [`Outbound`](tidings::bridge::Outbound) tries again) rather
//! than hanging them.
//!
//! ## Consuming
//!
//! A [`KafkaConsumer`] is one member of the source's group (`Endpoint::group` is the Kafka
//! `group.id`) subscribed to the source's topic. How offsets, redeliveries, backpressure and
//! rebalances work is in its docs; in short: an offset is committed only when the
//! message and every earlier one of its partition were settled, so a crash redelivers and
//! never skips. A new group starts where [`StartFrom`] says: earliest (the default), latest,
//! or the first message at or after a time. Dead letters go to the source's dead-letter topic
//! with the core's reason, attempts and origin headers plus [`ORIGIN_PARTITION`] and
//! [`ORIGIN_OFFSET`].
//!
//! ## Transactions
//!
//! [`KafkaTransport::publish_transaction`] publishes a batch through a transactional
//! producer, all or nothing; consumers read committed messages only by default
//! ([`KafkaBuilder::read_committed`]). What is tested is the API flow against a broker that
//! supports it; that an aborted batch stays invisible is librdkafka's and the broker's
//! promise, not shown by this crate's tests. No exactly-once delivery is claimed: the
//! inbound side is at least once, with deduplication by id.
//!
//! ## Secrets
//!
//! A SASL password ([`Sasl`]) is scrubbed from every librdkafka log line (forwarded to
//! `tracing` under the target `librdkafka`), every error and every `Debug` output.

mod config;
mod consumer;
mod context;
mod error;
mod headers;
mod offsets;
mod producer;
mod rebalance;
mod topology;
mod transport;
mod wire;

pub use self::config::{Compression, Sasl, StartFrom};
pub use self::consumer::KafkaConsumer;
pub use self::error::Error;
pub use self::topology::Topic;
pub use self::transport::{KafkaBuilder, KafkaTransport};
pub use self::wire::{
    CE_ID, CE_SOURCE, CE_SPECVERSION, CE_TIME, CE_TYPE, CONTENT_TYPE, ORIGIN_OFFSET,
    ORIGIN_PARTITION,
};
