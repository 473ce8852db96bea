//! Helpers for the suites on the in-memory broker.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tidings::Bus;
use tidings::bridge::{Consumer, Endpoint, MemoryBroker, MemoryConsumer, Transport};

use crate::{Events, OrderPlaced};

/// Declares the endpoint `name` on `broker`.
pub async fn declared(broker: &MemoryBroker, name: &str) -> Endpoint {
    let source = Endpoint::new(name);
    broker.declare(&source).await.unwrap();
    source
}

/// Collects what arrives on a bus for `E`.
pub fn collect<E: tidings::Member<Events> + Clone>(bus: &Bus<Events>) -> Arc<Mutex<Vec<E>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    bus.on(move |e: &E| s.lock().push(e.clone()));
    seen
}

/// Waits until `done` holds, checking every 5 ms (of the paused clock, in most suites).
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("gave up waiting for {what}");
}

/// The order numbers of the next `count` `OrderPlaced` deliveries of `consumer`, each
/// acknowledged.
///
/// # Panics
/// When one does not come within `wait`, the consumer ends or fails, or a payload is not an
/// `OrderPlaced`.
pub async fn received_orders(
    consumer: &mut MemoryConsumer,
    count: usize,
    wait: Duration,
) -> Vec<u64> {
    let mut orders = Vec::with_capacity(count);
    for _ in 0..count {
        let delivery = tokio::time::timeout(wait, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("delivery {} of {count} did not come", orders.len()))
            .expect("the consumer is open")
            .expect("a delivery");
        let order: OrderPlaced =
            serde_json::from_slice(&delivery.message.payload).expect("an order");
        orders.push(order.order);
        delivery.ack().await.expect("acknowledged");
    }
    orders
}
