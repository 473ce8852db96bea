//! `emit_and_wait`: resolves when every listener of that one event finished, with the failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tidings::{Bus, ListenerErrorKind, Overflow, QueueOptions};
use tidings_tests::{Events, Tick, UserCreated, user};

#[tokio::test(start_paused = true)]
async fn waits_for_every_async_listener_of_the_event() {
    let bus = Bus::<Events>::new();
    let done = Arc::new(AtomicUsize::new(0));
    for delay in [10, 50, 200] {
        let d = Arc::clone(&done);
        bus.on_async(move |_: Arc<Tick>| {
            let d = Arc::clone(&d);
            async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                d.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    bus.on(|_: &Tick| {});
    let _unread = bus.subscribe::<Tick>();
    assert_eq!(bus.emit_and_wait(Tick(1)).await.unwrap(), 5);
    assert_eq!(
        done.load(Ordering::SeqCst),
        3,
        "all three finished before it returned"
    );
}

#[tokio::test]
async fn reports_async_failures_panics_and_sync_failures() {
    let bus = Bus::<Events>::new();
    bus.on_async(|t: Arc<Tick>| async move {
        if t.0 == 1 {
            Err("tick 1 is bad")
        } else {
            Ok(())
        }
    });
    bus.on_async(|t: Arc<Tick>| async move {
        assert!(t.0 != 2, "tick 2 panics");
    });
    bus.on(|t: &Tick| -> Result<(), String> {
        if t.0 == 3 {
            Err("sync says no".into())
        } else {
            Ok(())
        }
    });
    let errors = Arc::new(AtomicUsize::new(0));
    let e = Arc::clone(&errors);
    bus.on_error(move |_| {
        e.fetch_add(1, Ordering::SeqCst);
    });

    assert_eq!(bus.emit_and_wait(Tick(0)).await.unwrap(), 3);
    let failed = bus.emit_and_wait(Tick(1)).await.unwrap_err();
    assert_eq!(failed.failures().len(), 1);
    assert!(failed.to_string().contains("tick 1 is bad"), "{failed}");
    let panicked = bus.emit_and_wait(Tick(2)).await.unwrap_err();
    assert!(panicked.failures()[0].is_panic());
    let sync = bus.emit_and_wait(Tick(3)).await.unwrap_err();
    assert!(sync.to_string().contains("sync says no"));
    assert_eq!(
        errors.load(Ordering::SeqCst),
        3,
        "on_error still hears of every failure"
    );
}

#[tokio::test]
async fn an_overflow_is_a_failure() {
    let bus = Bus::<Events>::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = Arc::clone(&gate);
    let opts = QueueOptions::new().capacity(1).overflow(Overflow::Fail);
    bus.on_async_with(opts, move |_: Arc<Tick>| {
        let g = Arc::clone(&g);
        async move { g.acquire().await.unwrap().forget() }
    });
    let b = bus.clone();
    let first = tokio::spawn(async move { b.emit_and_wait(Tick(0)).await });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    bus.emit(Tick(1)); // fills the queue
    let err = bus.emit_and_wait(Tick(2)).await.unwrap_err();
    assert!(matches!(
        err.failures()[0].kind(),
        ListenerErrorKind::Overflow(Overflow::Fail)
    ));
    gate.add_permits(2);
    assert_eq!(first.await.unwrap().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_fails_a_wait_that_cannot_finish() {
    let bus = Bus::<Events>::new();
    bus.on_async(|_: Arc<UserCreated>| std::future::pending::<()>());
    let b = bus.clone();
    let waiting = tokio::spawn(async move { b.emit_and_wait(user(1)).await });
    let b = bus.clone();
    let queued = tokio::spawn(async move { b.emit_and_wait(user(2)).await });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let report = bus.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.unfinished_count(), 2);
    for handle in [waiting, queued] {
        let err = handle.await.unwrap().unwrap_err();
        assert!(matches!(
            err.failures()[0].kind(),
            ListenerErrorKind::Closed
        ));
    }
    let after = bus.emit_and_wait(user(3)).await.unwrap_err();
    assert!(matches!(
        after.failures()[0].kind(),
        ListenerErrorKind::Closed
    ));
}

#[tokio::test]
async fn emit_set_and_wait_and_no_listeners() {
    let bus = Bus::<Events>::new();
    assert_eq!(bus.emit_and_wait(Tick(1)).await.unwrap(), 0);
    let seen = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&seen);
    bus.on_async(move |_: Arc<UserCreated>| {
        let s = Arc::clone(&s);
        async move {
            s.fetch_add(1, Ordering::SeqCst);
        }
    });
    assert_eq!(
        bus.emit_set_and_wait(Events::from(user(4))).await.unwrap(),
        1
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

/// A reply an async listener sends once, from any of its calls, and its receiver.
#[derive(Clone)]
struct Reply<T>(Arc<parking_lot::Mutex<Option<tokio::sync::oneshot::Sender<T>>>>);

impl<T> Reply<T> {
    /// Sends `value` unless a reply was sent already.
    fn send(&self, value: T) {
        if let Some(tx) = self.0.lock().take() {
            let _ = tx.send(value);
        }
    }
}

fn reply<T>() -> (Reply<T>, tokio::sync::oneshot::Receiver<T>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    (Reply(Arc::new(parking_lot::Mutex::new(Some(tx)))), rx)
}

/// A bus with a listener that records, after a pause, every tick it handles.
fn recorded(bus: &Bus<Events>) -> Arc<parking_lot::Mutex<Vec<u64>>> {
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    bus.on_async(move |t: Arc<Tick>| {
        let s = Arc::clone(&s);
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            s.lock().push(t.0);
        }
    });
    seen
}

#[tokio::test(start_paused = true)]
async fn an_async_listener_waiting_for_an_event_it_handles_itself_waits_for_the_others_only() {
    let bus = Bus::<Events>::new();
    let others = recorded(&bus);
    let (tx, rx) = reply();
    let own = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (b, o) = (bus.clone(), Arc::clone(&own));
    bus.on_async(move |t: Arc<Tick>| {
        let (b, tx, o, others) = (b.clone(), tx.clone(), Arc::clone(&o), Arc::clone(&others));
        async move {
            o.lock().push(t.0);
            if t.0 == 1 {
                // Its own delivery of tick 2 comes after this call: it cannot be waited for.
                let reached = b.emit_and_wait(Tick(2)).await;
                let seen_then = others.lock().clone();
                tx.send((reached.ok(), seen_then));
            }
        }
    });
    bus.emit(Tick(1));
    let (reached, seen_then) = tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .expect("emit_and_wait inside the listener returned")
        .expect("sent");
    assert_eq!(reached, Some(2), "both listeners got tick 2");
    assert_eq!(
        seen_then,
        [1, 2],
        "the other listener had handled it by then"
    );
    bus.settle().await;
    assert_eq!(
        *own.lock(),
        [1, 2],
        "and the listener itself once its call returned"
    );
}

#[tokio::test(start_paused = true)]
async fn settle_inside_an_async_listener_waits_for_the_others_only() {
    let bus = Bus::<Events>::new();
    let others = recorded(&bus);
    let (tx, rx) = reply();
    let b = bus.clone();
    bus.on_async(move |u: Arc<UserCreated>| {
        let (b, tx, others) = (b.clone(), tx.clone(), Arc::clone(&others));
        async move {
            b.emit(Tick(u.id));
            b.settle().await;
            tx.send(others.lock().clone());
        }
    });
    bus.emit(user(7));
    let seen_then = tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .expect("settle inside the listener returned")
        .expect("sent");
    assert_eq!(
        seen_then,
        [7],
        "the tick it emitted was handled before settle returned"
    );
}

#[tokio::test(start_paused = true)]
async fn an_async_listener_emitting_into_its_own_full_queue_does_not_wait() {
    let bus = Bus::<Events>::builder().queue_capacity(2).build();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (b, s) = (bus.clone(), Arc::clone(&seen));
    bus.on_async(move |t: Arc<Tick>| {
        let (b, s) = (b.clone(), Arc::clone(&s));
        async move {
            s.lock().push(t.0);
            if t.0 == 0 {
                // Ten into a queue of two that only this listener empties.
                for n in 1..=10 {
                    b.emit_async(Tick(n)).await.expect("emitted");
                }
            }
        }
    });
    bus.emit(Tick(0));
    tokio::time::timeout(Duration::from_secs(60), bus.settle())
        .await
        .expect("the listener's own emits did not wait for it");
    assert_eq!(
        *seen.lock(),
        (0..=10).collect::<Vec<_>>(),
        "each handled, in order"
    );
    // From outside, the bound holds: a third event waits for room.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = Arc::clone(&gate);
    bus.on_async(move |_: Arc<UserCreated>| {
        let g = Arc::clone(&g);
        async move {
            g.acquire().await.unwrap().forget();
        }
    });
    for id in 0..3 {
        bus.emit_async(user(id)).await.unwrap();
    }
    let fourth = bus.emit_async(user(3));
    assert!(
        tokio::time::timeout(Duration::from_secs(1), fourth)
            .await
            .is_err(),
        "a full queue still holds an emitter back"
    );
    gate.add_permits(10);
}

#[tokio::test(start_paused = true)]
async fn shutdown_inside_an_async_listener_waits_for_the_others_and_lets_the_caller_finish() {
    let bus = Bus::<Events>::new();
    let others = recorded(&bus);
    let (tx, rx) = reply();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let all_seen = Arc::new(tokio::sync::Notify::new());
    let (b, s, n) = (bus.clone(), Arc::clone(&seen), Arc::clone(&all_seen));
    bus.on_async(move |t: Arc<Tick>| {
        let (b, tx, s, n, others) = (
            b.clone(),
            tx.clone(),
            Arc::clone(&s),
            Arc::clone(&n),
            Arc::clone(&others),
        );
        async move {
            s.lock().push(t.0);
            if t.0 == 1 {
                let report = b.shutdown(Duration::from_secs(5)).await;
                tx.send((report.is_clean(), others.lock().clone()));
            }
            if t.0 == 3 {
                n.notify_one();
            }
        }
    });
    let notified = all_seen.notified();
    for n in 1..=3 {
        bus.emit(Tick(n));
    }
    let (clean, others_then) = tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .expect("shutdown inside the listener returned")
        .expect("sent");
    assert!(clean, "nothing left unhandled");
    assert_eq!(
        others_then,
        [1, 2, 3],
        "the other listener finished its queue first"
    );
    tokio::time::timeout(Duration::from_secs(60), notified)
        .await
        .expect("the calling listener went on with its queue");
    assert_eq!(*seen.lock(), [1, 2, 3]);
}
