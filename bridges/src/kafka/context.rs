//! What librdkafka tells the transport: its logs (passwords scrubbed, into `tracing`), its
//! errors, and broker states, which become [`ConnectionEvent`]s.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Statistics;
use tokio::sync::broadcast;

use crate::secret::scrub;
use crate::ConnectionEvent;

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// The context of every client a transport makes; clones share one state.
#[derive(Clone)]
pub(crate) struct ClientCtx(Arc<Shared>);

pub(crate) struct Shared {
    brokers: String,
    secret: Option<String>,
    events: broadcast::Sender<ConnectionEvent>,
    state: AtomicU8,
}

impl std::ops::Deref for ClientCtx {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl ClientCtx {
    pub(crate) fn new(brokers: &str, secret: Option<&str>) -> Self {
        ClientCtx(Arc::new(Shared {
            brokers: brokers.to_owned(),
            secret: secret.map(str::to_owned),
            events: broadcast::channel(64).0,
            state: AtomicU8::new(UNKNOWN),
        }))
    }
}

impl Shared {
    pub(crate) fn events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }

    /// Whether some broker was reachable at the last report.
    pub(crate) fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UP
    }

    /// `text` without the password.
    pub(crate) fn scrub(&self, text: &str) -> String {
        scrub(text, self.secret.as_deref())
    }

    fn set(&self, up: bool, reason: &str) {
        let new = if up { UP } else { DOWN };
        if self.state.swap(new, Ordering::Relaxed) == new {
            return;
        }
        let url = self.brokers.clone();
        let event = if up {
            tracing::info!(brokers = %url, "connected to Kafka");
            ConnectionEvent::Connected { url }
        } else {
            let reason = self.scrub(reason);
            tracing::warn!(brokers = %url, %reason, "lost every Kafka broker; librdkafka reconnects");
            ConnectionEvent::Disconnected { url, reason }
        };
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }
}

impl ClientContext for ClientCtx {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let message = self.scrub(message);
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}");
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        let up = statistics.brokers.values().any(|b| b.state == "UP");
        if up {
            self.set(true, "");
        } else if !statistics.brokers.is_empty() {
            self.set(false, "no broker is up");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = self.scrub(reason);
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.set(false, &reason);
        } else {
            // librdkafka logs the same failure through `log` as well.
            tracing::debug!(target: "librdkafka", error = %self.scrub(&error.to_string()), "{reason}");
        }
    }
}
