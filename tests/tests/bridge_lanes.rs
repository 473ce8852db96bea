//! Inbound bridges with several lanes over the in-memory broker: handling side by side while each
//! key keeps its order, and shutting down with the lanes busy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tidings::Bus;
use tidings::bridge::{Endpoint, Envelope, Inbound, MemoryBroker, Outgoing, Transport};
use tidings_tests::memory::{declared, until};
use tidings_tests::{Events, OrderPlaced};

/// Publishes `OrderPlaced { order, cents: order }` for each order straight to `destination`,
/// keyed `k{order % keys}`.
async fn publish_orders(broker: &MemoryBroker, destination: &str, orders: Vec<u64>, keys: u64) {
    let batch: Vec<Outgoing> = orders
        .into_iter()
        .map(|order| Outgoing {
            destination: destination.to_owned(),
            envelope: Envelope::new(
                "order.placed",
                serde_json::to_vec(&OrderPlaced {
                    order,
                    cents: order,
                })
                .unwrap(),
            )
            .with_key(format!("k{}", order % keys)),
        })
        .collect();
    for result in broker.publish(&batch).await {
        result.unwrap();
    }
}

/// A concurrent async listener for orders whose calls take `10 ms × (order % 7 + 1)`; what
/// it saw, in order of completion, and the peak number of calls at once.
fn slow_orders(bus: &Bus<Events>, concurrency: usize) -> (Arc<Mutex<Vec<u64>>>, Arc<AtomicUsize>) {
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (r, p, s) = (Arc::clone(&running), Arc::clone(&peak), Arc::clone(&seen));
    let options = tidings::QueueOptions::new().concurrency(concurrency);
    bus.on_async_with(options, move |o: Arc<OrderPlaced>| {
        let (r, p, s) = (Arc::clone(&r), Arc::clone(&p), Arc::clone(&s));
        async move {
            p.fetch_max(r.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10 * (o.order % 7 + 1))).await;
            s.lock().push(o.order);
            r.fetch_sub(1, Ordering::SeqCst);
        }
    });
    (seen, peak)
}

/// An inbound bridge with `n` lanes into a bus whose order listener also runs `n` calls at
/// once, from the source `orders` (prefetch 16).
async fn concurrent_inbound(
    n: usize,
) -> (
    MemoryBroker,
    Endpoint,
    Inbound,
    Arc<Mutex<Vec<u64>>>,
    Arc<AtomicUsize>,
) {
    let broker = MemoryBroker::new();
    let source = declared(&broker, "orders").await.prefetch(16);
    let bus = Bus::<Events>::new();
    let (seen, peak) = slow_orders(&bus, n);
    let inbound = Inbound::builder(&bus, broker.clone(), source.clone())
        .concurrency(n)
        .build();
    (broker, source, inbound, seen, peak)
}

#[tokio::test(start_paused = true)]
async fn inbound_concurrency_handles_several_at_once_and_keeps_each_keys_order() {
    let (broker, source, inbound, seen, peak) = concurrent_inbound(4).await;
    publish_orders(&broker, "orders", (0..60).collect(), 5).await;
    until("every order", || seen.lock().len() == 60).await;
    let peak = peak.load(Ordering::SeqCst);
    assert!((2..=4).contains(&peak), "{peak} calls at once");
    let seen = seen.lock().clone();
    assert_ne!(
        seen,
        (0..60).collect::<Vec<_>>(),
        "handled strictly one by one"
    );
    for key in 0..5 {
        let of_key: Vec<u64> = seen.iter().copied().filter(|o| o % 5 == key).collect();
        assert!(
            of_key.windows(2).all(|w| w[0] < w[1]),
            "key {key}: {of_key:?}"
        );
    }
    assert_eq!(inbound.stats().handled, 60);
    assert!(inbound.shutdown(Duration::from_secs(1)).await.is_clean());
    assert_eq!(broker.depth(&source.name, &source.group), 0);
}

#[tokio::test(start_paused = true)]
async fn inbound_shutdown_lets_every_lane_finish_and_acknowledge() {
    let (broker, source, inbound, seen, peak) = concurrent_inbound(3).await;
    publish_orders(&broker, "orders", (0..12).collect(), 12).await;
    until("three calls running", || peak.load(Ordering::SeqCst) == 3).await;
    assert!(
        inbound.shutdown(Duration::from_secs(5)).await.is_clean(),
        "finished in time"
    );
    // What the lanes held was handled and acknowledged; the rest is still in the queue.
    let handled = seen.lock().len();
    assert!(handled >= 3, "{handled}");
    assert_eq!(broker.depth(&source.name, &source.group), 12 - handled);
}

/// Handlers that outlive the deadline: the report counts the messages taken and not settled
/// (each stuck handler's, and those waiting for a lane), and they stay in the queue,
/// unacknowledged, for the next consumer.
#[tokio::test(start_paused = true)]
async fn inbound_shutdown_past_its_deadline_counts_the_messages_in_hand() {
    let broker = MemoryBroker::new();
    let source = declared(&broker, "orders").await.prefetch(16);
    let bus = Bus::<Events>::new();
    let started = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&started);
    let options = tidings::QueueOptions::new().concurrency(3);
    bus.on_async_with(options, move |_: Arc<OrderPlaced>| {
        s.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>()
    });
    let inbound = Inbound::builder(&bus, broker.clone(), source.clone())
        .concurrency(3)
        .build();
    publish_orders(&broker, "orders", (0..9).collect(), 9).await;
    until("a handler stuck", || started.load(Ordering::SeqCst) >= 1).await;
    let report = inbound.shutdown(Duration::from_secs(1)).await;
    assert!(!report.is_clean());
    let stuck = started.load(Ordering::SeqCst);
    assert!(
        report.unfinished_count() >= stuck && report.unfinished_count() <= 9,
        "{report:?} with {stuck} handlers stuck"
    );
    assert_eq!(
        broker.depth(&source.name, &source.group),
        9,
        "nothing was acknowledged: the stuck ones and the rest come again"
    );
}
