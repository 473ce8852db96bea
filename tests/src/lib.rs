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
