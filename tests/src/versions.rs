//! Four versions of one event, `order.placed`, for the versioning suites: version 1 (the
//! oldest producers), 2 (an amount added), 3 (the amount given a currency: what consumers
//! know) and 4 (from a producer upgraded before its consumers). Versions 2 and 3 build
//! themselves from the one before.

use serde::{Deserialize, Serialize};
use tidings::{Event, EventSet};

/// Version 1, as the oldest producers still send it.
pub mod v1 {
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    #[event(name = "order.placed")]
    /// The event.
    pub struct OrderPlaced {
        /// The order number.
        pub order: u64,
    }

    #[derive(Debug, EventSet)]
    /// A service's event set.
    pub enum Shop {
        /// `order.placed`
        OrderPlaced(OrderPlaced),
    }
}

/// Version 2 added the amount.
pub mod v2 {
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    #[event(name = "order.placed", version = 2, upcast_from = v1::OrderPlaced)]
    /// The event.
    pub struct OrderPlaced {
        /// The order number.
        pub order: u64,
        /// The amount in cents.
        pub cents: u64,
    }

    impl From<v1::OrderPlaced> for OrderPlaced {
        fn from(old: v1::OrderPlaced) -> Self {
            OrderPlaced {
                order: old.order,
                cents: 0,
            }
        }
    }

    #[derive(Debug, EventSet)]
    /// A service's event set.
    pub enum Shop {
        /// `order.placed`
        OrderPlaced(OrderPlaced),
    }
}

/// Version 3 gave the amount a currency: what this service's listeners see.
pub mod v3 {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// An amount.
    pub struct Money {
        /// The amount in cents.
        pub cents: u64,
        /// ISO 4217 code.
        pub currency: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
    #[event(name = "order.placed", version = 3, upcast_from = v2::OrderPlaced)]
    /// The event.
    pub struct OrderPlaced {
        /// The order number.
        pub order: u64,
        /// The amount.
        pub amount: Money,
    }

    impl From<v2::OrderPlaced> for OrderPlaced {
        fn from(old: v2::OrderPlaced) -> Self {
            let amount = Money {
                cents: old.cents,
                currency: "EUR".into(),
            };
            OrderPlaced {
                order: old.order,
                amount,
            }
        }
    }

    #[derive(Debug, EventSet)]
    /// A service's event set.
    pub enum Shop {
        /// `order.placed`
        OrderPlaced(OrderPlaced),
    }
}

/// Version 4, from a producer upgraded before this consumer.
pub mod v4 {
    use super::*;

    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    #[event(name = "order.placed", version = 4)]
    /// The event.
    pub struct OrderPlaced {
        /// The order number.
        pub order: u64,
        /// The order's lines.
        pub lines: Vec<String>,
    }

    #[derive(Debug, EventSet)]
    /// A service's event set.
    pub enum Shop {
        /// `order.placed`
        OrderPlaced(OrderPlaced),
    }
}
