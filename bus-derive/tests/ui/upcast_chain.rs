use serde::{Deserialize, Serialize};
use tidings::Event;

#[derive(Serialize, Deserialize, Event)]
#[event(name = "order.placed")]
struct OrderPlacedV1 {
    order: u64,
}

// Version 3 cannot be built from version 1 directly: the chain skips a version.
#[derive(Serialize, Deserialize, Event)]
#[event(name = "order.placed", version = 3, upcast_from = OrderPlacedV1)]
struct OrderPlaced {
    order: u64,
}

impl From<OrderPlacedV1> for OrderPlaced {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderPlaced { order: v1.order }
    }
}

// Another event's older version cannot be upcast from.
#[derive(Serialize, Deserialize, Event)]
#[event(name = "order.shipped", version = 2, upcast_from = OrderPlacedV1)]
struct OrderShipped {
    order: u64,
}

impl From<OrderPlacedV1> for OrderShipped {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderShipped { order: v1.order }
    }
}

// No `From` from the older version.
#[derive(Serialize, Deserialize, Event)]
#[event(name = "order.placed", version = 2, upcast_from = OrderPlacedV1)]
struct OrderPlacedV2 {
    order: u64,
}

fn main() {}
