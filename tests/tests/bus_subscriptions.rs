//! Subscriptions: streams in order, missed events reported where they were missed, try_recv, and
//! reporting subscriptions.

use std::sync::Arc;

use futures_util::StreamExt;
use parking_lot::Mutex;
use tidings::{AnyEvent, Bus, Missed, Overflow, QueueOptions};
use tidings_tests::{Events, OrderPlaced, OrderShipped, Tick, UserCreated, error_log, user};

#[tokio::test]
async fn subscriptions_stream_in_order_and_unsubscribe_on_drop() {
    let bus = Bus::<Events>::new();
    let mut sub = bus.subscribe::<Tick>();
    assert_eq!(bus.listener_count::<Tick>(), 1);
    for i in 0..100 {
        bus.emit(Tick(i));
    }
    assert_eq!(sub.len(), 100);
    let got: Vec<u64> = (&mut sub).take(100).map(|t| t.unwrap().0).collect().await;
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    drop(sub);
    assert_eq!(bus.listener_count::<Tick>(), 0);
    assert_eq!(bus.emit(Tick(1)), 0);
}

#[tokio::test]
async fn subscriptions_report_lag() {
    let bus = Bus::<Events>::new();
    let opts = QueueOptions::new()
        .capacity(4)
        .overflow(Overflow::DropOldest);
    let mut sub = bus.subscribe_with::<Tick>(opts);
    for i in 0..10 {
        bus.emit(Tick(i));
    }
    assert_eq!(sub.recv().await.unwrap(), Err(Missed(6)));
    for i in 6..10 {
        assert_eq!(sub.recv().await.unwrap().unwrap().0, i);
    }
    assert_eq!(bus.stats().dropped, 6);

    let opts = QueueOptions::new()
        .capacity(2)
        .overflow(Overflow::DropNewest);
    let mut sub = bus.subscribe_with::<UserCreated>(opts);
    for i in 0..5 {
        bus.emit(user(i));
    }
    // The two queued events came before the three turned away, and are read first.
    assert_eq!(sub.recv().await.unwrap().unwrap().id, 0);
    assert_eq!(sub.recv().await.unwrap().unwrap().id, 1);
    assert_eq!(sub.recv().await.unwrap(), Err(Missed(3)));
}

/// What a stream yields, as text: `1`, `2`, `lag 6`...
async fn read_all(sub: &mut tidings::Subscription<Events, Arc<Tick>>) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(item) = sub.try_recv() {
        seen.push(match item {
            Ok(t) => t.0.to_string(),
            Err(Missed(n)) => format!("lag {n}"),
        });
    }
    seen
}

#[tokio::test]
async fn lag_is_reported_where_the_events_were_missed_for_every_policy() {
    let expected = [
        (Overflow::Wait, vec!["1", "2", "3", "4", "lag 6"]),
        (Overflow::DropNewest, vec!["1", "2", "3", "4", "lag 6"]),
        (Overflow::Fail, vec!["1", "2", "3", "4", "lag 6"]),
        (Overflow::DropOldest, vec!["lag 6", "7", "8", "9", "10"]),
    ];
    for (policy, expected) in expected {
        let bus = Bus::<Events>::new();
        let opts = QueueOptions::new().capacity(4).overflow(policy);
        let mut sub = bus.subscribe_with::<Tick>(opts);
        for i in 1..=10 {
            bus.emit(Tick(i));
        }
        assert_eq!(read_all(&mut sub).await, expected, "{policy:?}");
    }
}

#[tokio::test]
async fn several_gaps_each_come_where_they_happened() {
    let bus = Bus::<Events>::new();
    let opts = QueueOptions::new()
        .capacity(2)
        .overflow(Overflow::DropNewest);
    let mut sub = bus.subscribe_with::<Tick>(opts);
    for i in 1..=3 {
        bus.emit(Tick(i)); // 3 is turned away
    }
    assert_eq!(sub.recv().await.unwrap().unwrap().0, 1); // frees a place
    bus.emit(Tick(4));
    bus.emit(Tick(5)); // turned away
    bus.emit(Tick(6)); // turned away
    assert_eq!(read_all(&mut sub).await, ["2", "lag 1", "4", "lag 2"]);

    // Evictions under DropOldest land before the oldest event that is still queued.
    let opts = QueueOptions::new()
        .capacity(3)
        .overflow(Overflow::DropOldest);
    let mut sub = bus.subscribe_with::<Tick>(opts);
    for i in 1..=3 {
        bus.emit(Tick(i));
    }
    assert_eq!(sub.recv().await.unwrap().unwrap().0, 1); // 2 and 3 now held by the reader
    bus.emit(Tick(4));
    bus.emit(Tick(5)); // evicts 4, the oldest queued
    assert_eq!(read_all(&mut sub).await, ["2", "3", "lag 1", "5"]);
}

#[tokio::test]
async fn try_recv_takes_only_what_is_queued() {
    let bus = Bus::<Events>::new();
    let mut sub = bus.subscribe::<Tick>();
    assert!(sub.try_recv().is_none());
    bus.emit(Tick(1));
    bus.emit(Tick(2));
    assert_eq!(sub.try_recv().unwrap().unwrap().0, 1);
    assert_eq!(sub.try_recv().unwrap().unwrap().0, 2);
    assert!(sub.try_recv().is_none());
    // A waiting `recv` is still woken after a `try_recv` found nothing.
    let b = bus.clone();
    let later = tokio::spawn(async move {
        tokio::task::yield_now().await;
        b.emit(Tick(3));
    });
    assert_eq!(sub.recv().await.unwrap().unwrap().0, 3);
    later.await.unwrap();
}

#[tokio::test]
async fn a_reporting_subscription_reports_misses_through_on_error_and_its_gauge() {
    use tidings::Member;
    let bus = Bus::<Events>::new();
    let errors = error_log(&bus);
    let options = QueueOptions::new()
        .capacity(2)
        .overflow(Overflow::DropNewest);
    let members = [<Tick as Member<Events>>::INDEX, 99]; // 99 is no member: ignored
    let mut stream = bus.subscribe_reporting(members, options);
    let gauge = stream.gauge();
    for i in 0..5 {
        bus.emit(Tick(i));
    }
    bus.emit(user(1)); // not selected
    assert_eq!((gauge.len(), gauge.missed()), (2, 3));
    assert_eq!(
        errors.lock().len(),
        3,
        "each miss reported: {:?}",
        errors.lock()
    );
    assert_eq!(bus.stats().dropped, 3);
    let mut got = Vec::new();
    while let Some(item) = stream.try_recv() {
        let event = item.expect("misses are never yielded as Missed");
        match event.downcast::<Tick>() {
            Ok(tick) => got.push(tick.0),
            Err(other) => panic!("not a tick: {}", other.name()),
        }
    }
    assert_eq!(got, [0, 1]);
    assert!(gauge.is_empty());

    // Queuing counts as delivery: neither emit_and_wait nor settle waits for the reader.
    assert_eq!(bus.emit_and_wait(Tick(9)).await.unwrap(), 1);
    bus.settle().await;
    assert_eq!(gauge.len(), 1, "still unread");
}

#[tokio::test]
async fn pattern_subscriptions_and_async_pattern_listeners() {
    let bus = Bus::<Events>::new();
    let mut orders = bus
        .subscribe_pattern("order.*", QueueOptions::new())
        .unwrap();
    let names = Arc::new(Mutex::new(Vec::new()));
    let n = Arc::clone(&names);
    bus.on_pattern_async("#", QueueOptions::new(), move |e: AnyEvent<Events>| {
        let n = Arc::clone(&n);
        async move { n.lock().push(e.name()) }
    })
    .unwrap();
    bus.emit(user(1));
    bus.emit(OrderPlaced {
        order: 5,
        cents: 100,
    });
    bus.emit(OrderShipped { order: 5 });
    bus.settle().await;
    let first = orders.recv().await.unwrap().unwrap();
    assert_eq!(first.name(), "order.placed");
    assert_eq!(first.downcast::<OrderPlaced>().unwrap().order, 5);
    let second = orders.recv().await.unwrap().unwrap();
    assert!(second.clone().downcast::<OrderPlaced>().is_err());
    assert_eq!(second.downcast::<OrderShipped>().unwrap().order, 5);
    assert_eq!(
        *names.lock(),
        ["user.created", "order.placed", "order.shipped"]
    );
    assert!(
        bus.subscribe_pattern("order.*x", QueueOptions::new())
            .is_err()
    );
}
