//! An event set with the shapes a contract must carry over to Node: renamed fields, an
//! optional field left out when empty, 64-bit and smaller integers, floats, lists, maps, a
//! nested struct, a string enum, an internally tagged enum, and a versioned event.
#![allow(missing_docs)] // Fixtures: the field names say what they hold.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tidings::{Event, EventSet};

/// An order was placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event, JsonSchema)]
#[event(name = "order.placed", version = 2, upcast_from = OrderPlacedV1)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    /// The order's number.
    pub order_id: u64,
    pub customer: Customer,
    pub lines: Vec<Line>,
    /// Left out when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon: Option<String>,
    pub total: f64,
    pub tags: BTreeMap<String, String>,
    pub channel: SalesChannel,
    pub payment: Payment,
}

/// Version 1 of `order.placed`: no payment yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event, JsonSchema)]
#[event(name = "order.placed")]
#[serde(rename_all = "camelCase")]
pub struct OrderPlacedV1 {
    pub order_id: u64,
    pub customer: Customer,
    pub lines: Vec<Line>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon: Option<String>,
    pub total: f64,
    pub tags: BTreeMap<String, String>,
    pub channel: SalesChannel,
}

impl From<OrderPlacedV1> for OrderPlaced {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderPlaced {
            order_id: v1.order_id,
            customer: v1.customer,
            lines: v1.lines,
            coupon: v1.coupon,
            total: v1.total,
            tags: v1.tags,
            channel: v1.channel,
            payment: Payment::Invoice { days: 30 },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Customer {
    pub id: i64,
    #[serde(rename = "displayName")]
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Line {
    pub sku: String,
    pub quantity: u32,
    pub cents: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SalesChannel {
    Web,
    Store,
    PhoneOrder,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Payment {
    Card { last4: String },
    Invoice { days: u16 },
}

/// An order was shipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event, JsonSchema)]
#[event(name = "order.shipped")]
pub struct OrderShipped {
    pub order_id: u64,
    pub carrier: Option<String>,
}

#[derive(Debug, Clone, EventSet)]
#[event_set(schema)]
pub enum Orders {
    OrderPlaced(OrderPlaced),
    OrderShipped(OrderShipped),
}

/// A placed order with every field set.
pub fn placed(order_id: u64) -> OrderPlaced {
    OrderPlaced {
        order_id,
        customer: Customer {
            id: -7,
            name: "Ada".into(),
        },
        lines: vec![Line {
            sku: "A-1".into(),
            quantity: 2,
            cents: 1250,
        }],
        coupon: Some("SPRING".into()),
        total: 25.5,
        tags: BTreeMap::from([("gift".into(), "yes".into())]),
        channel: SalesChannel::PhoneOrder,
        payment: Payment::Card {
            last4: "4242".into(),
        },
    }
}

/// `Orders` after `carrier` was removed from `OrderShipped`: a Node consumer that reads it
/// must no longer type-check.
pub mod without_carrier {
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};
    use tidings::{Event, EventSet};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event, JsonSchema)]
    #[event(name = "order.shipped")]
    pub struct OrderShipped {
        pub order_id: u64,
    }

    #[derive(Debug, Clone, EventSet)]
    #[event_set(schema)]
    pub enum Orders {
        OrderPlaced(super::OrderPlaced),
        OrderShipped(OrderShipped),
    }
}
