//! Helpers for the suites on the in-memory broker.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tidings::Bus;
use tidings::bridge::{Endpoint, MemoryBroker, Transport};

use crate::Events;

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
