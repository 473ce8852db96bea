//! Shared fixtures for the integration tests: a small event set shaped like a user/order
//! service, and helpers.

use serde::{Deserialize, Serialize};
use tidings::{Event, EventSet};

/// A user signed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(key = id)]
pub struct UserCreated {
    /// User id.
    pub id: u64,
    /// Display name.
    pub name: String,
}

/// A user was removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct UserDeleted {
    /// User id.
    pub id: u64,
}

/// An order was placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(key = order)]
pub struct OrderPlaced {
    /// Order number.
    pub order: u64,
    /// Amount in cents.
    pub cents: u64,
}

/// An order left the warehouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
pub struct OrderShipped {
    /// Order number.
    pub order: u64,
}

/// Tracking news for a shipped order: a three-word name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "order.shipped.tracking")]
pub struct TrackingUpdated {
    /// Order number.
    pub order: u64,
    /// Carrier status.
    pub status: String,
}

/// A sequence number, for ordering tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Event)]
pub struct Tick(pub u64);

/// Every event the test services carry.
#[derive(Debug, Clone, PartialEq, EventSet)]
pub enum Events {
    /// `user.created`
    UserCreated(UserCreated),
    /// `user.deleted`
    UserDeleted(UserDeleted),
    /// `order.placed`
    OrderPlaced(OrderPlaced),
    /// `order.shipped`
    OrderShipped(OrderShipped),
    /// `order.shipped.tracking`
    TrackingUpdated(TrackingUpdated),
    /// `tick`
    Tick(Tick),
}

/// A user event with id `id`.
pub fn user(id: u64) -> UserCreated {
    UserCreated {
        id,
        name: format!("user-{id}"),
    }
}

/// Helpers for the RabbitMQ suites (feature `amqp`).
#[cfg(feature = "amqp")]
pub mod rabbit {
    use tidings::bridge::Source;
    use tidings_bridges::amqp::{queue_name, AmqpTransport};

    /// The broker of the development and CI machines.
    pub const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

    /// A transport whose connections are named `name` (so [`close_connections`] finds them).
    pub async fn connect(name: &str) -> AmqpTransport {
        AmqpTransport::builder(URL)
            .connection_name(name)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("RabbitMQ must run on 127.0.0.1:5672: {e}"))
    }

    /// Runs `rabbitmqctl` with `args`; its output.
    pub async fn rabbitmqctl(args: &[&str]) -> String {
        let output = tokio::process::Command::new("rabbitmqctl")
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("rabbitmqctl: {e}"));
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Forcibly closes the broker's connections named `name`; returns how many.
    pub async fn close_connections(name: &str) -> usize {
        let listing = rabbitmqctl(&[
            "list_connections",
            "pid",
            "client_properties",
            "-q",
            "--no-table-headers",
        ])
        .await;
        let needle = format!("{{\"connection_name\",\"{name}\"}}");
        let mut closed = 0;
        for line in listing.lines().filter(|l| l.contains(&needle)) {
            let Some((connection, _)) = line.split_once('\t') else {
                continue;
            };
            rabbitmqctl(&["close_connection", connection, "test outage"]).await;
            closed += 1;
        }
        closed
    }

    /// Deletes what `declare(source)` created, and the source's dead-letter queue.
    pub async fn cleanup(transport: &AmqpTransport, source: &Source) {
        for queue in [queue_name(source), source.dead_letter.clone()] {
            let _ = transport.delete_queue(&queue).await;
        }
        let _ = transport.delete_exchange(&source.name).await;
    }

    /// A new name no other run uses.
    pub fn unique(prefix: &str) -> String {
        format!("tidings-{prefix}-{:016x}", fastrand::u64(..))
    }
}
