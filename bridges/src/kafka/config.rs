//! How a [`KafkaTransport`](super::KafkaTransport) connects and produces: brokers, SASL,
//! delivery settings, consumer-group timing and where new groups start.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::ClientConfig;

use super::topology::Topic;

/// Compression of produced batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// None (the default).
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
        }
    }
}

/// Where a consumer group with no committed offset starts reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartFrom {
    /// The oldest message kept (the default): what was published before the group first
    /// consumed is not lost, as with a declared RabbitMQ queue.
    #[default]
    Earliest,
    /// Only messages published from now on.
    Latest,
    /// The first message whose timestamp is at or after this time (what kafkajs does with
    /// `consumer.seek` by time). Messages carry their envelope's time as their Kafka
    /// timestamp. A partition with no message that recent starts at its end.
    Timestamp(SystemTime),
}

/// A SASL mechanism with its credentials; the password is never shown.
#[derive(Clone)]
pub struct Sasl {
    mechanism: &'static str,
    username: String,
    password: String,
    tls: bool,
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"***")
            .field("tls", &self.tls)
            .finish()
    }
}

impl Sasl {
    /// SASL/PLAIN.
    pub fn plain(username: impl Into<String>, password: impl Into<String>) -> Self {
        Sasl::new("PLAIN", username, password)
    }

    /// SASL/SCRAM-SHA-256.
    pub fn scram_sha_256(username: impl Into<String>, password: impl Into<String>) -> Self {
        Sasl::new("SCRAM-SHA-256", username, password)
    }

    /// SASL/SCRAM-SHA-512.
    pub fn scram_sha_512(username: impl Into<String>, password: impl Into<String>) -> Self {
        Sasl::new("SCRAM-SHA-512", username, password)
    }

    fn new(
        mechanism: &'static str,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Sasl {
            mechanism,
            username: username.into(),
            password: password.into(),
            tls: false,
        }
    }

    /// Over TLS (`SASL_SSL`) rather than plain TCP (`SASL_PLAINTEXT`, the default).
    #[must_use]
    pub fn over_tls(mut self) -> Self {
        self.tls = true;
        self
    }
}

/// Everything a transport was configured with.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) brokers: String,
    pub(crate) client_id: String,
    pub(crate) sasl: Option<Sasl>,
    pub(crate) idempotence: bool,
    pub(crate) compression: Compression,
    pub(crate) linger: Duration,
    pub(crate) batch_messages: usize,
    pub(crate) publish_timeout: Duration,
    pub(crate) max_message: usize,
    pub(crate) session_timeout: Duration,
    pub(crate) commit_interval: Duration,
    pub(crate) fetch_wait: Duration,
    pub(crate) start: StartFrom,
    pub(crate) read_committed: bool,
    pub(crate) topics: Topic,
    /// librdkafka properties set as given, after everything else.
    pub(crate) extra: BTreeMap<String, String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("sasl", &self.sasl)
            .field("idempotence", &self.idempotence)
            .field("publish_timeout", &self.publish_timeout)
            .field("session_timeout", &self.session_timeout)
            .field("start", &self.start)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Config {
    pub(crate) fn new(brokers: &str) -> Self {
        Config {
            brokers: brokers.to_owned(),
            client_id: "tidings".to_owned(),
            sasl: None,
            idempotence: true,
            compression: Compression::None,
            linger: Duration::from_millis(5),
            batch_messages: 10_000,
            publish_timeout: Duration::from_secs(30),
            max_message: 1_000_000,
            session_timeout: Duration::from_secs(10),
            commit_interval: Duration::from_secs(1),
            fetch_wait: Duration::from_millis(500),
            start: StartFrom::Earliest,
            read_committed: true,
            topics: Topic::new("").partitions(3),
            extra: BTreeMap::new(),
        }
    }

    /// The password, for scrubbing text that might quote it.
    pub(crate) fn secret(&self) -> Option<&str> {
        self.sasl.as_ref().map(|s| s.password.as_str())
    }

    /// Settings every client of the transport shares.
    fn common(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        // librdkafka formats only what passes its level; follow what `tracing` wants now
        // (rdkafka would read the `log` crate's level instead).
        let level = match tracing::level_filters::LevelFilter::current().into_level() {
            Some(tracing::Level::TRACE | tracing::Level::DEBUG) => RDKafkaLogLevel::Debug,
            Some(tracing::Level::INFO) => RDKafkaLogLevel::Info,
            Some(tracing::Level::WARN) => RDKafkaLogLevel::Warning,
            Some(tracing::Level::ERROR) | None => RDKafkaLogLevel::Error,
        };
        c.set_log_level(level);
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            // Connection state comes from the statistics (see `context`).
            .set("statistics.interval.ms", "1000")
            .set("socket.connection.setup.timeout.ms", "10000")
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "10000");
        if let Some(sasl) = &self.sasl {
            let protocol = if sasl.tls {
                "SASL_SSL"
            } else {
                "SASL_PLAINTEXT"
            };
            c.set("security.protocol", protocol)
                .set("sasl.mechanisms", sasl.mechanism)
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
        c
    }

    fn with_extra(&self, mut c: ClientConfig) -> ClientConfig {
        for (key, value) in &self.extra {
            c.set(key, value);
        }
        c
    }

    /// The producer's settings; `idempotence` overrides the configured choice (after a
    /// broker refused it).
    pub(crate) fn producer(
        &self,
        transactional_id: Option<&str>,
        idempotence: bool,
    ) -> ClientConfig {
        let mut c = self.common();
        let timeout = self.publish_timeout.as_millis().max(1).to_string();
        c.set("acks", "all")
            .set("enable.idempotence", idempotence.to_string())
            .set("compression.type", self.compression.as_str())
            .set("linger.ms", self.linger.as_millis().to_string())
            .set("batch.num.messages", self.batch_messages.max(1).to_string())
            .set("message.timeout.ms", &timeout)
            .set("queue.buffering.max.messages", "200000")
            .set(
                "message.max.bytes",
                (self.max_message + 64 * 1024).to_string(),
            );
        if !idempotence {
            // Without idempotence, a retried request could overtake the next one: keep one in
            // flight so order per partition survives retries.
            c.set("max.in.flight.requests.per.connection", "1");
        }
        if let Some(id) = transactional_id {
            c.set("transactional.id", id)
                .set("enable.idempotence", "true")
                .set("transaction.timeout.ms", &timeout);
        }
        self.with_extra(c)
    }

    pub(crate) fn consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.common();
        let session = self.session_timeout.as_millis().max(1000);
        let reset = match self.start {
            StartFrom::Latest => "latest",
            // A timestamp start sets each new partition's position itself (see `consumer`).
            StartFrom::Earliest | StartFrom::Timestamp(_) => "earliest",
        };
        c.set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.commit.interval.ms",
                self.commit_interval.as_millis().max(1).to_string(),
            )
            .set("auto.offset.reset", reset)
            .set(
                "fetch.wait.max.ms",
                self.fetch_wait.as_millis().min(300_000).to_string(),
            )
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 3).to_string())
            // The consumer thread polls all the time, so a long poll interval buys nothing,
            // while it is also how long a rebalance may wait for a member that went quiet.
            .set(
                "max.poll.interval.ms",
                (session * 2).max(10_000).to_string(),
            )
            .set("enable.partition.eof", "false")
            .set(
                "isolation.level",
                if self.read_committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            );
        self.with_extra(c)
    }

    pub(crate) fn admin(&self) -> ClientConfig {
        self.with_extra(self.common())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fetch_wait_reaches_the_consumer_and_is_bounded() {
        let mut config = Config::new("127.0.0.1:9092");
        assert_eq!(
            config.consumer("g").get("fetch.wait.max.ms"),
            Some("500"),
            "librdkafka's default"
        );
        config.fetch_wait = Duration::from_millis(7);
        assert_eq!(config.consumer("g").get("fetch.wait.max.ms"), Some("7"));
        config.fetch_wait = Duration::from_secs(3600);
        assert_eq!(
            config.consumer("g").get("fetch.wait.max.ms"),
            Some("300000")
        );
    }
}
