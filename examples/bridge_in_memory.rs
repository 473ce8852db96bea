//! Two buses joined by the in-memory broker: the shop forwards its order events, the warehouse
//! consumes them. The warehouse's handler fails twice and then succeeds, so the message is
//! retried with backoff and acknowledged only once it was handled.
//!
//! Run with `cargo run -p tidings-examples --example bridge_in_memory`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::bridge::{Endpoint, Inbound, MemoryBroker, Outbound, Transport};

use tidings::prelude::*;
use tidings::Backoff;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(key = order)]
struct OrderPlaced {
    order: u64,
    sku: String,
}

#[derive(Debug, EventSet)]
enum Shop {
    OrderPlaced(OrderPlaced),
}

#[tokio::main]
async fn main() {
    let broker = MemoryBroker::new();
    let source = Endpoint::new("orders").group("warehouse");
    broker.declare(&source).await.expect("the broker is up");

    // The shop: forwards every order event to the `orders` destination.
    let shop = Bus::<Shop>::new();
    let outbound = Outbound::builder(&shop, broker.clone())
        .forward::<OrderPlaced>()
        .destination("orders")
        .source("tidings://shop")
        .build();

    // The warehouse: reserves stock; the stock service is flaky at first.
    let warehouse = Bus::<Shop>::new();
    let attempts = Arc::new(AtomicU32::new(0));
    let a = Arc::clone(&attempts);
    warehouse.on_async(move |order: Arc<OrderPlaced>| {
        let a = Arc::clone(&a);
        async move {
            let attempt = a.fetch_add(1, Ordering::SeqCst) + 1;
            if attempt <= 2 {
                println!(
                    "warehouse: attempt {attempt} for order {} failed",
                    order.order
                );
                return Err(format!("stock service unavailable (attempt {attempt})"));
            }
            println!(
                "warehouse: reserved {} for order {} on attempt {attempt}",
                order.sku, order.order
            );
            Ok(())
        }
    });
    let inbound = Inbound::builder(&warehouse, broker.clone(), source.clone())
        .max_attempts(5)
        .backoff(Backoff::Exponential {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
        })
        .build();

    shop.emit_async(OrderPlaced {
        order: 42,
        sku: "tea-kettle".into(),
    })
    .await
    .expect("the shop bus is running");

    while inbound.stats().handled < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (out, inn) = (outbound.stats(), inbound.stats());
    println!(
        "shop: {} confirmed by the broker; warehouse: {} handled after {} retries, {} dead-lettered",
        out.confirmed, inn.handled, inn.retried, inn.dead_lettered
    );
    println!(
        "left in the queue: {}",
        broker.depth(&source.name, &source.group)
    );

    let flushed = outbound.shutdown(Duration::from_secs(2)).await;
    inbound.shutdown(Duration::from_secs(2)).await;
    println!(
        "shutdown: {} events left unconfirmed",
        flushed.unfinished_count()
    );
}
