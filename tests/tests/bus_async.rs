//! Async listeners, subscriptions, overflow policies, backpressure, settle and shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tidings::{Bus, Closed, Overflow, QueueOptions};
use tidings_tests::{Events, Tick, UserCreated, UserDeleted, error_log, user};
use tokio::sync::Semaphore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_listeners_keep_emit_order_over_100k_events() {
    let bus = Bus::<Events>::new();
    let seen: Vec<Arc<Mutex<Vec<u64>>>> = (0..3).map(|_| Arc::default()).collect();
    for s in &seen {
        let s = Arc::clone(s);
        bus.on_async(move |t: Arc<Tick>| {
            let s = Arc::clone(&s);
            async move { s.lock().push(t.0) }
        });
    }
    for i in 0..100_000 {
        bus.emit_async(Tick(i)).await.unwrap();
    }
    bus.settle().await;
    let expected: Vec<u64> = (0..100_000).collect();
    for s in &seen {
        assert_eq!(*s.lock(), expected);
    }
    let stats = bus.stats();
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.handled, 300_000);
    assert_eq!(stats.queued, 0);
}

#[tokio::test]
async fn async_fanout_shares_one_arc() {
    let bus = Bus::<Events>::new();
    let ptrs = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..4 {
        let p = Arc::clone(&ptrs);
        bus.on_async(move |e: Arc<UserCreated>| {
            let p = Arc::clone(&p);
            async move { p.lock().push(Arc::as_ptr(&e) as usize) }
        });
    }
    assert_eq!(bus.emit(user(1)), 4);
    bus.settle().await;
    let ptrs = ptrs.lock();
    assert_eq!(ptrs.len(), 4);
    assert!(ptrs.iter().all(|p| *p == ptrs[0]));
}

#[tokio::test]
async fn settle_waits_for_cascades() {
    let bus = Bus::<Events>::new();
    let done = Arc::new(AtomicUsize::new(0));
    let b = bus.clone();
    bus.on_async(move |e: Arc<UserCreated>| {
        let b = b.clone();
        async move {
            tokio::task::yield_now().await;
            b.emit(UserDeleted { id: e.id });
        }
    });
    let d = Arc::clone(&done);
    bus.on_async(move |_: Arc<UserDeleted>| {
        let d = Arc::clone(&d);
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            d.fetch_add(1, Ordering::SeqCst);
        }
    });
    for i in 0..10 {
        bus.emit(user(i));
    }
    bus.settle().await;
    assert_eq!(done.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn settle_on_a_quiet_bus_returns_at_once() {
    use futures_util::FutureExt;
    let bus = Bus::<Events>::new();
    assert!(bus.settle().now_or_never().is_some(), "no listener");
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let held = Arc::new(Mutex::new(Some(held)));
    bus.on_async(move |_: Arc<Tick>| {
        let held = held.lock().take();
        async move {
            if let Some(held) = held {
                let _ = held.await;
            }
        }
    });
    assert!(
        bus.settle().now_or_never().is_some(),
        "a listener with nothing queued"
    );
    // The first poll completes nothing while an event is being handled...
    bus.emit(Tick(1));
    let mut settling = Box::pin(bus.settle());
    assert!((&mut settling).now_or_never().is_none(), "an event in hand");
    // ...and settles once it was.
    release.send(()).expect("the listener waits");
    tokio::time::timeout(Duration::from_secs(10), settling)
        .await
        .expect("settled once the event was handled");
    assert!(bus.settle().now_or_never().is_some(), "quiet again");
}

#[tokio::test]
async fn async_errors_and_panics_reach_on_error_and_the_listener_goes_on() {
    let bus = Bus::<Events>::new();
    let errors = error_log(&bus);
    let handled = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&handled);
    bus.on_async(move |t: Arc<Tick>| {
        let h = Arc::clone(&h);
        async move {
            match t.0 {
                1 => Err(format!("tick {} failed", t.0)),
                2 => panic!("tick 2 panicked"),
                n => {
                    h.lock().push(n);
                    Ok(())
                }
            }
        }
    });
    for i in 0..4 {
        bus.emit(Tick(i));
    }
    bus.settle().await;
    assert_eq!(*handled.lock(), [0, 3]);
    let errors = errors.lock();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("tick 1 failed"));
    assert!(errors[1].contains("Panicked(\"tick 2 panicked\")"));
    let stats = bus.stats();
    assert_eq!((stats.failed, stats.panicked, stats.handled), (1, 1, 2));
}

/// An async listener that waits for a permit per event, so tests decide when it makes progress.
fn gated(bus: &Bus<Events>, options: QueueOptions) -> (Arc<Semaphore>, Arc<Mutex<Vec<u64>>>) {
    let gate = Arc::new(Semaphore::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (g, s) = (Arc::clone(&gate), Arc::clone(&seen));
    bus.on_async_with(options, move |t: Arc<Tick>| {
        let (g, s) = (Arc::clone(&g), Arc::clone(&s));
        async move {
            g.acquire().await.unwrap().forget();
            s.lock().push(t.0);
        }
    });
    (gate, seen)
}

/// Lets the listener task pick up its first event, so the queue holds exactly what follows.
async fn let_listener_start() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn overflow_drop_oldest() {
    let bus = Bus::<Events>::new();
    let errors = error_log(&bus);
    let opts = QueueOptions::new()
        .capacity(2)
        .overflow(Overflow::DropOldest);
    let (gate, seen) = gated(&bus, opts);
    bus.emit(Tick(0));
    let_listener_start().await; // tick 0 is being handled
    for i in 1..=4 {
        assert_eq!(
            bus.emit(Tick(i)),
            1,
            "drop-oldest always queues the new event"
        );
    }
    gate.add_permits(10);
    bus.settle().await;
    assert_eq!(*seen.lock(), [0, 3, 4]);
    assert_eq!(errors.lock().len(), 2, "{:?}", errors.lock());
    assert!(errors.lock()[0].contains("Overflow(DropOldest)"));
    assert_eq!(bus.stats().dropped, 2);
}

#[tokio::test]
async fn overflow_drop_newest() {
    let bus = Bus::<Events>::new();
    let errors = error_log(&bus);
    let opts = QueueOptions::new()
        .capacity(2)
        .overflow(Overflow::DropNewest);
    let (gate, seen) = gated(&bus, opts);
    bus.emit(Tick(0));
    let_listener_start().await;
    let reached: Vec<usize> = (1..=4).map(|i| bus.emit(Tick(i))).collect();
    assert_eq!(reached, [1, 1, 0, 0]);
    gate.add_permits(10);
    bus.settle().await;
    assert_eq!(*seen.lock(), [0, 1, 2]);
    assert_eq!(
        *errors.lock(),
        ["tick: Overflow(DropNewest)", "tick: Overflow(DropNewest)"]
    );
    assert_eq!(bus.stats().dropped, 2);
}

#[tokio::test]
async fn overflow_fail_never_waits() {
    let bus = Bus::<Events>::new();
    let errors = error_log(&bus);
    let opts = QueueOptions::new().capacity(1).overflow(Overflow::Fail);
    let (gate, seen) = gated(&bus, opts);
    bus.emit(Tick(0));
    let_listener_start().await;
    assert_eq!(bus.emit(Tick(1)), 1);
    // Even emit_async does not wait on a Fail queue: it reports and returns.
    assert_eq!(bus.emit_async(Tick(2)).await.unwrap(), 0);
    gate.add_permits(10);
    bus.settle().await;
    assert_eq!(*seen.lock(), [0, 1]);
    assert_eq!(*errors.lock(), ["tick: Overflow(Fail)"]);
}

#[tokio::test]
async fn overflow_wait_makes_emit_async_wait_and_reports_sync_emits() {
    let bus = Bus::<Events>::new();
    let errors = error_log(&bus);
    let opts = QueueOptions::new().capacity(1).overflow(Overflow::Wait);
    let (gate, seen) = gated(&bus, opts);
    bus.emit(Tick(0));
    let_listener_start().await;
    assert_eq!(bus.emit(Tick(1)), 1);
    // A sync emit cannot wait: the overflow is reported, never silent.
    assert_eq!(bus.emit(Tick(99)), 0);
    assert_eq!(*errors.lock(), ["tick: Overflow(Wait)"]);

    // emit_async waits until the listener makes room.
    let b = bus.clone();
    let producer = tokio::spawn(async move { b.emit_async(Tick(2)).await });
    let_listener_start().await;
    assert!(
        !producer.is_finished(),
        "emit_async must wait while the queue is full"
    );
    gate.add_permits(10);
    assert_eq!(producer.await.unwrap().unwrap(), 1);
    bus.settle().await;
    assert_eq!(*seen.lock(), [0, 1, 2]);
    assert_eq!(errors.lock().len(), 1);
}

#[tokio::test]
async fn emit_async_does_nothing_until_polled_and_waits_for_each_full_queue_in_turn() {
    let bus = Bus::<Events>::new();
    let errors = error_log(&bus);
    let sync_calls = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&sync_calls);
    bus.on(move |_: &Tick| {
        calls.fetch_add(1, Ordering::SeqCst);
    });
    // Not polled: not emitted.
    drop(bus.emit_async(Tick(7)));
    assert_eq!(sync_calls.load(Ordering::SeqCst), 0);
    assert_eq!(bus.stats().emitted, 0);

    // Two full queues: the wait moves from the first to the second as room appears.
    let opts = QueueOptions::new().capacity(1).overflow(Overflow::Wait);
    let (gate_a, seen_a) = gated(&bus, opts);
    let (gate_b, seen_b) = gated(&bus, opts);
    bus.emit(Tick(0));
    let_listener_start().await;
    bus.emit(Tick(1));
    let b = bus.clone();
    let producer = tokio::spawn(async move { b.emit_async(Tick(2)).await });
    let_listener_start().await;
    gate_a.add_permits(10);
    let_listener_start().await;
    assert!(!producer.is_finished(), "the second queue is still full");
    gate_b.add_permits(10);
    assert_eq!(producer.await.unwrap().unwrap(), 3);

    bus.settle().await;
    assert_eq!(*seen_a.lock(), [0, 1, 2]);
    assert_eq!(*seen_b.lock(), [0, 1, 2]);
    assert!(errors.lock().is_empty(), "{:?}", errors.lock());
}

#[tokio::test]
async fn emit_async_queues_at_once_where_there_is_room_and_waits_only_at_the_full_queue() {
    let bus = Bus::<Events>::new();
    let errors = error_log(&bus);
    let mut before = bus.subscribe::<Tick>();
    let opts = QueueOptions::new().capacity(1).overflow(Overflow::Wait);
    let (gate, seen) = gated(&bus, opts);
    let mut after = bus.subscribe::<Tick>();
    let next = |sub: &mut tidings::Subscription<Events, Arc<Tick>>| match sub.try_recv() {
        Some(Ok(tick)) => Some(tick.0),
        Some(Err(missed)) => panic!("missed {missed:?}"),
        None => None,
    };
    bus.emit(Tick(0));
    let_listener_start().await; // tick 0 is being handled
    bus.emit(Tick(1)); // the gated queue is full
    for sub in [&mut before, &mut after] {
        assert_eq!((next(sub), next(sub), next(sub)), (Some(0), Some(1), None));
    }

    let b = bus.clone();
    let producer = tokio::spawn(async move { b.emit_async(Tick(2)).await });
    let_listener_start().await;
    assert!(!producer.is_finished(), "the gated queue is still full");
    assert_eq!(
        next(&mut before),
        Some(2),
        "queued before the full queue, at once"
    );
    assert_eq!(
        next(&mut after),
        None,
        "after the full queue: waits with it"
    );

    gate.add_permits(10);
    assert_eq!(producer.await.unwrap().unwrap(), 3);
    assert_eq!(next(&mut after), Some(2));
    bus.settle().await;
    assert_eq!(*seen.lock(), [0, 1, 2]);
    assert_eq!(bus.stats().emitted, 3);
    assert!(errors.lock().is_empty(), "{:?}", errors.lock());
}

#[tokio::test]
async fn a_dropped_emit_async_keeps_what_it_delivered() {
    let bus = Bus::<Events>::new();
    let opts = QueueOptions::new().capacity(1).overflow(Overflow::Wait);
    let (gate, seen) = gated(&bus, opts);
    bus.emit(Tick(0));
    let_listener_start().await;
    bus.emit(Tick(1));
    {
        let mut waiting = std::pin::pin!(bus.emit_async(Tick(2)));
        let polled = futures_util::FutureExt::now_or_never(waiting.as_mut());
        assert!(polled.is_none(), "the queue is full");
    }
    // The abandoned emit queued nothing, and the queue still makes room for the next one.
    gate.add_permits(10);
    assert_eq!(bus.emit_async(Tick(3)).await.unwrap(), 1);
    bus.settle().await;
    assert_eq!(*seen.lock(), [0, 1, 3]);
}

#[tokio::test]
async fn backpressure_bounds_memory() {
    let bus = Bus::<Events>::new();
    let opts = QueueOptions::new().capacity(8);
    let max_queued = Arc::new(AtomicUsize::new(0));
    let b = bus.clone();
    let m = Arc::clone(&max_queued);
    bus.on_async_with(opts, move |_: Arc<Tick>| {
        let (b, m) = (b.clone(), Arc::clone(&m));
        async move {
            m.fetch_max(b.stats().queued as usize, Ordering::SeqCst);
            tokio::task::yield_now().await;
        }
    });
    for i in 0..2_000 {
        bus.emit_async(Tick(i)).await.unwrap();
    }
    bus.settle().await;
    assert!(max_queued.load(Ordering::SeqCst) <= 8);
    assert_eq!(bus.stats().handled, 2_000);
    assert_eq!(bus.stats().dropped, 0);
}

#[tokio::test]
async fn off_lets_an_async_listener_finish_its_queue() {
    let bus = Bus::<Events>::new();
    let (gate, seen) = gated(&bus, QueueOptions::new());
    let id = bus.event_names();
    assert_eq!(id, ["tick"]);
    for i in 0..5 {
        bus.emit(Tick(i));
    }
    bus.clear();
    assert_eq!(bus.emit(Tick(5)), 0);
    gate.add_permits(10);
    bus.settle().await;
    assert_eq!(*seen.lock(), [0, 1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_queues_and_rejects_later_emits() {
    let bus = Bus::<Events>::new();
    let errors = error_log(&bus);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    bus.on_async(move |t: Arc<Tick>| {
        let s = Arc::clone(&s);
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            s.lock().push(t.0);
        }
    });
    let mut sub = bus.subscribe::<Tick>();
    for i in 0..5 {
        bus.emit(Tick(i));
    }
    let report = bus.shutdown(Duration::from_secs(1)).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(*seen.lock(), [0, 1, 2, 3, 4]);
    assert!(bus.is_closed());

    // The subscription still yields what it had, then ends.
    let mut got = Vec::new();
    while let Some(t) = sub.recv().await {
        got.push(t.unwrap().0);
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);

    assert_eq!(bus.emit(Tick(9)), 0);
    assert_eq!(errors.lock().as_slice(), ["tick: Closed"]);
    assert_eq!(bus.emit_async(Tick(10)).await, Err(Closed(Tick(10))));
    // Refused after shutdown: counted as rejected (the sync emit; `emit_async` handed its
    // event back), never as dropped, which is for full queues.
    assert_eq!(bus.stats().rejected, 1);
    assert_eq!(bus.stats().dropped, 0);
    assert!(bus.shutdown(Duration::from_secs(1)).await.is_clean());
}

#[tokio::test(start_paused = true)]
async fn shutdown_reports_what_missed_the_deadline() {
    let bus = Bus::<Events>::new();
    let slow = bus.on_async(|_: Arc<Tick>| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    bus.on_async(|_: Arc<UserCreated>| async {});
    for i in 0..3 {
        bus.emit(Tick(i));
    }
    bus.emit(user(1));
    let_listener_start().await;
    let report = bus.shutdown(Duration::from_secs(5)).await;
    let unhandled: Vec<_> = report
        .unfinished
        .iter()
        .map(|u| (u.listener, u.event, u.count))
        .collect();
    assert_eq!(unhandled, [(slow, "tick", 3)]);
    assert_eq!(report.unfinished_count(), 3);
}

/// A `settle` that was waiting when a shutdown cut a listener off resolves: the events the
/// shutdown reports as unhandled will never be handled, so they no longer hold it.
#[tokio::test(start_paused = true)]
async fn a_settle_waiting_when_shutdown_cuts_a_listener_off_resolves() {
    let bus = Bus::<Events>::new();
    let gate = Arc::new(Semaphore::new(0));
    let g = Arc::clone(&gate);
    bus.on_async(move |_: Arc<Tick>| {
        let g = Arc::clone(&g);
        async move {
            g.acquire().await.unwrap().forget();
        }
    });
    for i in 0..3 {
        bus.emit(Tick(i));
    }
    let_listener_start().await; // tick 0 is being handled, 1 and 2 are in the task's hand
    gate.add_permits(1); // tick 0 is done; tick 1 waits at the gate for ever
    let_listener_start().await;
    let b = bus.clone();
    let settling = tokio::spawn(async move { b.settle().await });
    let_listener_start().await;
    assert!(!settling.is_finished(), "two ticks are not handled yet");
    let report = bus.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.unfinished_count(), 2);
    // Bounded so that a settle left waiting fails here instead of hanging the suite.
    tokio::time::timeout(Duration::from_secs(60), settling)
        .await
        .expect("settle resolved after the shutdown")
        .unwrap();
}

#[tokio::test]
async fn dropping_the_bus_ends_listener_tasks() {
    let bus = Bus::<Events>::new();
    let flag = Arc::new(());
    let f = Arc::clone(&flag);
    bus.on_async(move |_: Arc<Tick>| {
        let _keep = Arc::clone(&f);
        async {}
    });
    let mut sub = bus.subscribe::<Tick>();
    bus.emit(Tick(1));
    drop(bus);
    assert_eq!(sub.recv().await.unwrap().unwrap().0, 1);
    assert!(sub.recv().await.is_none(), "the stream ends with the bus");
    // The task drops its listener (and so `f`) when it ends.
    for _ in 0..100 {
        if Arc::strong_count(&flag) == 1 {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the listener task did not end");
}

#[test]
#[should_panic(expected = "inside a tokio runtime")]
fn on_async_outside_a_runtime_says_why() {
    let bus = Bus::<Events>::new();
    bus.on_async(|_: Arc<Tick>| async {});
}

#[tokio::test]
async fn settle_waits_for_listeners_registered_while_it_waits() {
    // Regression: settle only re-checked the queues it saw first.
    let bus = Bus::<Events>::new();
    let done = Arc::new(AtomicUsize::new(0));
    let (b, d) = (bus.clone(), Arc::clone(&done));
    bus.on_async(move |_: Arc<Tick>| {
        let (b, d) = (b.clone(), Arc::clone(&d));
        async move {
            let d = Arc::clone(&d);
            b.on_async(move |_: Arc<UserDeleted>| {
                let d = Arc::clone(&d);
                async move {
                    for _ in 0..10 {
                        tokio::task::yield_now().await;
                    }
                    d.fetch_add(1, Ordering::SeqCst);
                }
            });
            b.emit(UserDeleted { id: 1 });
        }
    });
    bus.emit(Tick(1));
    bus.settle().await;
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

/// An async listener with concurrency 4 whose calls take `10 ms × (tick % 5 + 1)`; the peak
/// number of calls running at once.
fn concurrent_ticks(bus: &Bus<Events>, seen: &Arc<Mutex<Vec<u64>>>) -> Arc<AtomicUsize> {
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, p, s) = (Arc::clone(&running), Arc::clone(&peak), Arc::clone(seen));
    bus.on_async_with(QueueOptions::new().concurrency(4), move |t: Arc<Tick>| {
        let (r, p, s) = (Arc::clone(&r), Arc::clone(&p), Arc::clone(&s));
        async move {
            p.fetch_max(r.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10 * (t.0 % 5 + 1))).await;
            s.lock().push(t.0);
            r.fetch_sub(1, Ordering::SeqCst);
            if t.0 == 7 {
                Err("seven fails".to_owned())
            } else {
                Ok(())
            }
        }
    });
    peak
}

#[tokio::test(start_paused = true)]
async fn a_concurrent_async_listener_runs_up_to_its_limit_and_settle_waits_for_all() {
    let bus = Bus::<Events>::new();
    let errors = error_log(&bus);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let peak = concurrent_ticks(&bus, &seen);
    for i in 0..20 {
        bus.emit(Tick(i));
    }
    bus.settle().await;
    assert_eq!(
        seen.lock().len(),
        20,
        "settle returned before every call finished"
    );
    assert_eq!(peak.load(Ordering::SeqCst), 4);
    let mut sorted = seen.lock().clone();
    assert_ne!(
        sorted,
        (0..20).collect::<Vec<_>>(),
        "calls of different lengths finish out of order"
    );
    sorted.sort_unstable();
    assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    assert_eq!(errors.lock().as_slice(), ["tick: Failed(\"seven fails\")"]);
    let stats = bus.stats();
    assert_eq!((stats.handled, stats.failed), (19, 1));
    // emit_and_wait reports the failure of the call it waited for.
    assert!(bus.emit_and_wait(Tick(7)).await.is_err());
    assert!(bus.emit_and_wait(Tick(8)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn shutdown_of_a_concurrent_listener_counts_the_calls_it_cut_off() {
    let bus = Bus::<Events>::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    concurrent_ticks(&bus, &seen);
    for i in 0..10 {
        bus.emit(Tick(i));
    }
    // Ticks 0..4 take 10 to 40 ms; a 15 ms deadline lets only the first finish.
    let report = bus.shutdown(Duration::from_millis(15)).await;
    let finished = seen.lock().len();
    assert_eq!(finished, 1, "{:?}", seen.lock());
    assert_eq!(report.unfinished_count(), 10 - finished, "{report:?}");
}

/// Order is kept per emitter: four tasks emitting at once on two threads, and every sync
/// listener, async listener and subscription sees each task's events in the order it emitted
/// them (they interleave with the other tasks' as they will).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_emitters_at_once_each_keep_their_order_for_every_listener() {
    const EMITTERS: u64 = 4;
    const EACH: u64 = 5_000;
    let bus = Bus::<Events>::new();
    let sync_seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&sync_seen);
    bus.on(move |t: &Tick| s.lock().push(t.0));
    let async_seen = Arc::new(Mutex::new(Vec::new()));
    let a = Arc::clone(&async_seen);
    bus.on_async(move |t: Arc<Tick>| {
        let a = Arc::clone(&a);
        async move { a.lock().push(t.0) }
    });
    let mut stream = bus.subscribe_with::<Tick>(QueueOptions::new().capacity(1 << 16));
    let emitters: Vec<_> = (0..EMITTERS)
        .map(|e| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    bus.emit_async(Tick(e * 1_000_000 + n)).await.expect("open");
                    if n % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for emitter in emitters {
        emitter.await.expect("emitter");
    }
    tokio::time::timeout(Duration::from_secs(30), bus.settle())
        .await
        .expect("settled");
    let mut streamed = Vec::new();
    while let Some(Ok(t)) = stream.try_recv() {
        streamed.push(t.0);
    }
    for (who, seen) in [
        ("sync listener", sync_seen.lock().clone()),
        ("async listener", async_seen.lock().clone()),
        ("subscription", streamed),
    ] {
        assert_eq!(seen.len() as u64, EMITTERS * EACH, "{who} saw every event");
        let mut next = [0u64; EMITTERS as usize];
        for v in seen {
            let (e, n) = ((v / 1_000_000) as usize, v % 1_000_000);
            assert_eq!(n, next[e], "{who}: emitter {e} out of order");
            next[e] += 1;
        }
    }
}

/// An event that counts how many of it were dropped.
#[derive(Debug, Clone, tidings::Event)]
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Debug, tidings::EventSet)]
#[event_set(no_codec)]
enum CountedEvents {
    Counted(Counted),
}

#[tokio::test]
async fn an_event_goes_once_every_queue_is_done_with_it_and_not_before() {
    let bus = Bus::<CountedEvents>::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let (gate, handled) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let (g, h) = (Arc::clone(&gate), Arc::clone(&handled));
    bus.on_async(move |e: Arc<Counted>| {
        let (g, h) = (Arc::clone(&g), Arc::clone(&h));
        async move {
            g.acquire().await.unwrap().forget();
            drop(e);
            h.fetch_add(1, Ordering::SeqCst);
        }
    });
    let mut first = bus.subscribe::<Counted>();
    let mut last = bus.subscribe::<Counted>();

    // One emit of each kind; each event is shared by the three queues, the last one included.
    assert_eq!(bus.emit(Counted(Arc::clone(&drops))), 3);
    assert_eq!(
        bus.emit_async(Counted(Arc::clone(&drops))).await.unwrap(),
        3
    );
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "every queue still holds both"
    );

    for sub in [&mut first, &mut last] {
        let a = sub.try_recv().expect("the sync emit's event").unwrap();
        let b = sub.try_recv().expect("the emit_async's event").unwrap();
        assert!(sub.try_recv().is_none());
        drop((a, b));
    }
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "the async listener has not handled them yet"
    );
    gate.add_permits(2);
    bus.settle().await;
    assert_eq!(handled.load(Ordering::SeqCst), 2);
    assert_eq!(drops.load(Ordering::SeqCst), 2, "each event dropped once");
}
