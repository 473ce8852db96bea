//! The EventEmitter story in Rust: user and order events, typed listeners, an async subscriber,
//! a pattern listener, error handling, and a clean shutdown.
//!
//! Run with `cargo run -p tidings-examples --example quickstart`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(key = id)]
struct UserCreated {
    id: u64,
    email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct OrderPlaced {
    order: u64,
    user: u64,
    cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct OrderShipped {
    order: u64,
}

/// Everything this service emits. Emitting or listening for anything else does not compile.
#[derive(Debug, EventSet)]
enum ShopEvents {
    UserCreated(UserCreated),
    OrderPlaced(OrderPlaced),
    OrderShipped(OrderShipped),
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_target(false).init();
    let bus = Bus::<ShopEvents>::new();

    // Like emitter.on('user.created', fn): runs inline, in registration order.
    bus.on(|u: &UserCreated| println!("welcome mail queued for {}", u.email));

    // Like emitter.once(...): only the first order gets the banner.
    bus.once(|o: &OrderPlaced| println!("first order of the day: #{}", o.order));

    // A listener may fail; the failure goes to on_error and the other listeners still run.
    bus.on(|o: &OrderPlaced| -> Result<(), String> {
        if o.cents == 0 {
            return Err(format!("order #{} has no amount", o.order));
        }
        Ok(())
    });
    bus.on_error(|e| eprintln!("listener problem: {e}"));

    // A pattern listener sees every order event, whatever its concrete type.
    bus.on_pattern("order.#", |e: EventRef<'_, ShopEvents>| {
        println!("audit: {}", e.name())
    })
    .expect("a valid pattern");

    // An async subscriber in its own task, with a bounded queue: it keeps emit order.
    let revenue = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = Arc::clone(&revenue);
    bus.on_async(move |o: Arc<OrderPlaced>| {
        let total = Arc::clone(&total);
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await; // pretend to call a ledger
            total.fetch_add(o.cents, std::sync::atomic::Ordering::Relaxed);
        }
    });

    bus.emit(UserCreated {
        id: 1,
        email: "ada@example.com".into(),
    });
    for order in 1..=3 {
        bus.emit(OrderPlaced {
            order,
            user: 1,
            cents: if order == 2 { 0 } else { 1_250 },
        });
    }
    // emit_async waits for queue space instead of applying the overflow policy.
    bus.emit_async(OrderShipped { order: 1 })
        .await
        .expect("the bus is running");

    // Wait until every async subscriber has caught up, then look at the numbers.
    bus.settle().await;
    println!(
        "revenue: {} cents",
        revenue.load(std::sync::atomic::Ordering::Relaxed)
    );
    let stats = bus.stats();
    println!(
        "emitted {}, delivered {}, failed {}, dropped {}",
        stats.emitted, stats.delivered, stats.failed, stats.dropped
    );

    // Stop intake, drain queues, and report anything that could not be handled in time.
    let report = bus.shutdown(Duration::from_secs(5)).await;
    println!("clean shutdown: {}", report.is_clean());
}
