//! What every transport reports about its connection.

/// Something that happened to a transport's connection; from the transport's `events()`.
///
/// RabbitMQ reports all four; Kafka reports `Connected` and `Disconnected` (librdkafka keeps
/// its own connections and reconnects by itself; these follow the brokers it can reach).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// Connected (again) to `url`; for RabbitMQ, topology declared.
    Connected {
        /// The broker (for Kafka, the bootstrap servers), password redacted.
        url: String,
    },
    /// The connection to `url` was lost; reconnecting.
    Disconnected {
        /// The broker (for Kafka, the bootstrap servers), password redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// The broker stopped accepting publishes (a resource alarm); they wait.
    Blocked {
        /// The broker's reason.
        reason: String,
    },
    /// The broker accepts publishes again.
    Unblocked,
}
