//! The contract of a small order service, written to a folder for the Node services that share
//! its brokers: a JSON Schema per event (`schemas/`), TypeScript declarations (`events.d.ts`)
//! and an AsyncAPI 3.0 document (`asyncapi.json`). The service publishes orders to RabbitMQ
//! and reads shipments from Kafka.
//!
//! `cargo run -p tidings-examples --features contracts --example contracts -- [folder]`
//! (default folder: `contracts`)

use serde::{Deserialize, Serialize};
use tidings::contracts::Contract;
use tidings::prelude::*;

/// An order was placed.
#[derive(Debug, Clone, Serialize, Deserialize, Event, schemars::JsonSchema)]
#[event(name = "order.placed", key = order)]
#[serde(rename_all = "camelCase")]
struct OrderPlaced {
    order: u64,
    customer_email: String,
    /// In cents.
    total: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    coupon: Option<String>,
}

/// An order left the warehouse.
#[derive(Debug, Clone, Serialize, Deserialize, Event, schemars::JsonSchema)]
#[event(name = "order.shipped", key = order)]
struct OrderShipped {
    order: u64,
    carrier: Carrier,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Carrier {
    Post,
    Courier,
}

#[derive(Debug, Clone, EventSet)]
#[event_set(schema)]
enum Orders {
    OrderPlaced(OrderPlaced),
    OrderShipped(OrderShipped),
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "contracts".into());
    // A running service describes its bridges with `.outbound(&outbound)` and
    // `.inbound(&inbound)` instead: the channels they send to and read from, with the bindings
    // of their brokers. Here the deployment is described by hand, so the example needs none.
    let written = Contract::<Orders>::new("orders", env!("CARGO_PKG_VERSION"))
        .description("Takes orders; learns when they ship.")
        .server("rabbitmq", "rabbitmq", "rabbitmq.internal:5672")
        .server("kafka", "kafka", "kafka.internal:9092")
        .sends("rabbitmq", "orders", &[OrderPlaced::NAME])
        .receives("kafka", "shipments", "orders", &[OrderShipped::NAME])
        .write_to(&folder)?;
    for path in written
        .schemas
        .iter()
        .chain([&written.typescript, &written.asyncapi])
    {
        println!("wrote {}", path.display());
    }
    Ok(())
}
