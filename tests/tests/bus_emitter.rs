//! The EventEmitter behaviours a Node service relies on, on the typed sync listeners.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tidings::{Bus, EventRef, ListenerErrorKind, ListenerId};
use tidings_tests::{Events, OrderPlaced, Tick, UserCreated, UserDeleted, user};

/// Panics with `message`; a listener body typed `()`.
fn boom(message: &str) {
    panic!("{message}")
}

/// A shared log that listeners append to.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, s: impl Into<String>) {
        self.0.lock().push(s.into());
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock())
    }
}

#[test]
fn several_listeners_run_in_registration_order() {
    let bus = Bus::<Events>::new();
    let log = Log::default();
    for n in 0..5 {
        let log = log.clone();
        bus.on(move |e: &UserCreated| log.push(format!("{n}:{}", e.id)));
    }
    assert_eq!(bus.emit(user(7)), 5);
    assert_eq!(log.take(), ["0:7", "1:7", "2:7", "3:7", "4:7"]);
}

#[test]
fn prepend_runs_first() {
    let bus = Bus::<Events>::new();
    let log = Log::default();
    let l = log.clone();
    bus.on(move |_: &UserCreated| l.push("second"));
    let l = log.clone();
    bus.prepend(move |_: &UserCreated| l.push("first"));
    bus.emit(user(1));
    assert_eq!(log.take(), ["first", "second"]);
}

#[test]
fn listeners_only_see_their_event() {
    let bus = Bus::<Events>::new();
    let log = Log::default();
    let l = log.clone();
    bus.on(move |e: &UserDeleted| l.push(format!("deleted {}", e.id)));
    assert_eq!(bus.emit(user(1)), 0);
    assert_eq!(bus.emit(UserDeleted { id: 2 }), 1);
    assert_eq!(log.take(), ["deleted 2"]);
}

#[test]
fn once_fires_once() {
    let bus = Bus::<Events>::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    bus.once(move |_: &UserCreated| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(bus.listener_count::<UserCreated>(), 1);
    assert_eq!(bus.emit(user(1)), 1);
    assert_eq!(bus.emit(user(2)), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(bus.listener_count::<UserCreated>(), 0);
}

#[test]
fn once_fires_once_under_concurrent_emits() {
    let bus = Bus::<Events>::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    bus.once(move |_: &Tick| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    std::thread::scope(|s| {
        for t in 0..4 {
            let bus = bus.clone();
            s.spawn(move || {
                for i in 0..1000 {
                    bus.emit(Tick(t * 1000 + i));
                }
            });
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// `emitted` and `delivered` are counted per emitting thread and summed when read: exact with
/// threads emitting at once, with threads that ended (their ids taken over by new ones), and
/// while another thread reads.
#[test]
fn stats_stay_exact_across_threads_that_come_and_go() {
    let bus = Bus::<Events>::new();
    bus.on(|_: &Tick| {});
    bus.on(|_: &Tick| {});
    let reader = {
        let bus = bus.clone();
        std::thread::spawn(move || {
            let mut last = 0;
            for _ in 0..1000 {
                let emitted = bus.stats().emitted;
                assert!(emitted >= last, "went back from {last} to {emitted}");
                last = emitted;
            }
        })
    };
    // Three waves of four threads: later waves reuse the ids of threads that ended.
    for wave in 0..3u64 {
        std::thread::scope(|s| {
            for t in 0..4 {
                let bus = bus.clone();
                s.spawn(move || {
                    for i in 0..10_000 {
                        bus.emit(Tick(wave * 100_000 + t * 10_000 + i));
                    }
                });
            }
        });
    }
    bus.emit(Tick(0));
    reader.join().expect("reader");
    let stats = bus.stats();
    assert_eq!(stats.emitted, 3 * 4 * 10_000 + 1);
    assert_eq!(stats.delivered, 2 * stats.emitted);
}

/// What a listener captures; counts as alive while any clone of it is.
fn token() -> Arc<()> {
    Arc::new(())
}

/// `off` lets a listener's closure go at once on a thread that emitted it and will never emit
/// again (the emitting thread keeps no copy of the list), while that thread is still alive.
#[test]
fn off_lets_a_closure_go_though_a_thread_that_emitted_it_never_emits_again() {
    let bus = Bus::<Events>::new();
    let held = token();
    let id = bus.on({
        let held = Arc::clone(&held);
        move |_: &Tick| {
            let _ = &held;
        }
    });
    let (emitted, was_emitted) = std::sync::mpsc::channel();
    let (end, may_end) = std::sync::mpsc::channel::<()>();
    let emitter = {
        let bus = bus.clone();
        std::thread::spawn(move || {
            assert_eq!(bus.emit(Tick(1)), 1);
            emitted.send(()).expect("test alive");
            // Alive and idle: never emits again.
            let _ = may_end.recv();
        })
    };
    was_emitted.recv().expect("emitter");
    assert!(bus.off(id));
    assert_eq!(Arc::strong_count(&held), 1, "the closure outlived `off`");
    end.send(()).expect("emitter alive");
    emitter.join().expect("emitter");
}

/// A listener removed while another thread is inside an emit that reached it stays alive until
/// that emit ends, and goes when it ends, with no emit or registration after.
#[test]
fn a_closure_removed_during_an_emit_goes_when_that_emit_ends() {
    let bus = Bus::<Events>::new();
    let held = token();
    let (entered, has_entered) = std::sync::mpsc::channel();
    let (leave, may_leave) = std::sync::mpsc::channel::<()>();
    let may_leave = Mutex::new(may_leave);
    let id = bus.on({
        let held = Arc::clone(&held);
        move |_: &Tick| {
            let _ = &held;
            entered.send(()).expect("test alive");
            may_leave.lock().recv().expect("test alive");
        }
    });
    let emitter = {
        let bus = bus.clone();
        std::thread::spawn(move || bus.emit(Tick(1)))
    };
    has_entered.recv().expect("emitter");
    assert!(bus.off(id));
    assert_eq!(
        Arc::strong_count(&held),
        2,
        "dropped while an emit was running it"
    );
    leave.send(()).expect("emitter alive");
    assert_eq!(emitter.join().expect("emitter"), 1);
    assert_eq!(Arc::strong_count(&held), 1, "kept after the emit ended");
}

/// A listener removed by another listener during an emit that is running it still runs in
/// that emit (the emit's snapshot), and its closure is gone once that emit returns, with
/// nothing emitted or registered after.
/// Registers a listener that, in the next emit, removes the one registered after it, and that
/// second listener, which holds the returned token and counts its calls in the returned count.
fn a_listener_the_next_emit_removes(bus: &Bus<Events>) -> (Arc<()>, Arc<AtomicUsize>) {
    let held = token();
    let victim = Arc::new(Mutex::new(None::<ListenerId>));
    let (b, v) = (bus.clone(), Arc::clone(&victim));
    bus.on(move |_: &Tick| {
        if let Some(id) = v.lock().take() {
            assert!(b.off(id));
        }
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let id = {
        let (held, calls) = (Arc::clone(&held), Arc::clone(&calls));
        bus.on(move |_: &Tick| {
            let _ = &held;
            calls.fetch_add(1, Ordering::SeqCst);
        })
    };
    *victim.lock() = Some(id);
    (held, calls)
}

#[test]
fn a_closure_removed_from_inside_an_emit_goes_when_that_emit_returns() {
    let bus = Bus::<Events>::new();
    let (held, calls) = a_listener_the_next_emit_removes(&bus);
    assert_eq!(bus.emit(Tick(1)), 2);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "removed during the emit it was in"
    );
    assert_eq!(Arc::strong_count(&held), 1, "kept after the emit returned");
    assert_eq!(bus.emit(Tick(2)), 1);
}

/// The same through `emit_async`, whose sync listeners run inside its first step's read of the
/// list (with an async subscriber, so that step queues too): the closure goes when it resolves.
#[tokio::test]
async fn a_closure_removed_from_inside_an_emit_async_goes_when_it_resolves() {
    let bus = Bus::<Events>::new();
    let mut sub = bus.subscribe::<Tick>();
    let (held, calls) = a_listener_the_next_emit_removes(&bus);
    assert_eq!(bus.emit_async(Tick(1)).await.unwrap(), 3);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "removed during the emit_async it was in"
    );
    assert_eq!(
        Arc::strong_count(&held),
        1,
        "kept after emit_async resolved"
    );
    assert_eq!(sub.recv().await.unwrap().unwrap().0, 1);
    assert_eq!(bus.emit_async(Tick(2)).await.unwrap(), 2);
}

/// A `once` listener removes itself from inside its emit; its closure goes when that emit ends.
#[test]
fn a_once_listener_is_gone_when_its_emit_returns() {
    let bus = Bus::<Events>::new();
    let held = token();
    bus.once({
        let held = Arc::clone(&held);
        move |_: &Tick| {
            let _ = &held;
        }
    });
    assert_eq!(bus.emit(Tick(1)), 1);
    assert_eq!(Arc::strong_count(&held), 1);
    assert_eq!(bus.emit(Tick(2)), 0);
}

#[test]
fn an_id_from_another_bus_removes_nothing() {
    let (a, b) = (Bus::<Events>::new(), Bus::<Events>::new());
    let log = Log::default();
    let l = log.clone();
    let on_a = a.on(move |_: &UserCreated| l.push("a"));
    let l = log.clone();
    let on_b = b.on(move |_: &UserCreated| l.push("b"));
    let sub_b = b.subscribe::<Tick>();
    let err_b = b.on_error(|_| {});
    for foreign in [on_b, sub_b.id(), err_b] {
        assert!(!a.off(foreign), "{foreign} belongs to the other bus");
    }
    assert!(!b.off(on_a));
    assert_eq!(a.emit(user(1)), 1);
    assert_eq!(b.emit(user(1)), 1);
    assert_eq!(log.take(), ["a", "b"]);
    assert!(a.off(on_a) && b.off(on_b));
}

#[test]
fn off_removes_exactly_one_listener() {
    let bus = Bus::<Events>::new();
    let log = Log::default();
    let ids: Vec<ListenerId> = (0..3)
        .map(|n| {
            let log = log.clone();
            bus.on(move |_: &UserCreated| log.push(n.to_string()))
        })
        .collect();
    assert!(bus.off(ids[1]));
    assert!(!bus.off(ids[1]), "a second off of the same id is a no-op");
    assert_eq!(bus.emit(user(1)), 2);
    assert_eq!(log.take(), ["0", "2"]);
    assert_eq!(bus.listener_count::<UserCreated>(), 2);
}

#[test]
fn remove_all_listeners_of_one_event_keeps_the_rest() {
    let bus = Bus::<Events>::new();
    let log = Log::default();
    for _ in 0..3 {
        let l = log.clone();
        bus.on(move |_: &UserCreated| l.push("user"));
    }
    let l = log.clone();
    bus.on(move |_: &UserDeleted| l.push("deleted"));
    let l = log.clone();
    bus.on_pattern("user.*", move |e: EventRef<'_, Events>| l.push(e.name()))
        .unwrap();
    assert_eq!(bus.remove_all_listeners::<UserCreated>(), 3);
    assert_eq!(bus.emit(user(1)), 1, "the pattern listener stays");
    bus.emit(UserDeleted { id: 1 });
    assert_eq!(log.take(), ["user.created", "deleted", "user.deleted"]);
}

#[test]
fn clear_removes_everything_but_error_listeners() {
    let bus = Bus::<Events>::new();
    let errors = Arc::new(AtomicUsize::new(0));
    let e = Arc::clone(&errors);
    bus.on_error(move |_| {
        e.fetch_add(1, Ordering::SeqCst);
    });
    bus.on(|_: &UserCreated| {});
    bus.on_any(|_: EventRef<'_, Events>| {});
    let _sub = bus.subscribe::<Tick>();
    bus.clear();
    assert!(bus.event_names().is_empty());
    assert_eq!(bus.emit(user(1)), 0);
    bus.on(|_: &UserCreated| -> Result<(), &'static str> { Err("boom") });
    bus.emit(user(1));
    assert_eq!(errors.load(Ordering::SeqCst), 1);
}

#[test]
fn listener_count_and_event_names() {
    let bus = Bus::<Events>::new();
    assert_eq!(bus.listener_count::<UserCreated>(), 0);
    bus.on(|_: &UserCreated| {});
    bus.on_pattern("order.#", |_: EventRef<'_, Events>| {})
        .unwrap();
    assert_eq!(bus.listener_count::<UserCreated>(), 1);
    assert_eq!(bus.listener_count::<OrderPlaced>(), 1);
    assert_eq!(
        bus.event_names(),
        [
            "user.created",
            "order.placed",
            "order.shipped",
            "order.shipped.tracking"
        ]
    );
}

#[test]
fn an_erroring_listener_does_not_stop_the_others_and_reaches_on_error() {
    let bus = Bus::<Events>::new();
    let log = Log::default();
    let l = log.clone();
    bus.on(move |_: &UserCreated| l.push("before"));
    let failing =
        bus.on(|e: &UserCreated| -> Result<(), String> { Err(format!("no user {}", e.id)) });
    let l = log.clone();
    bus.on(move |_: &UserCreated| l.push("after"));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let errs = Arc::clone(&errors);
    bus.on_error(move |err| {
        errs.lock()
            .push((err.event(), err.listener(), err.to_string(), err.is_panic()))
    });

    assert_eq!(bus.emit(user(9)), 3);
    assert_eq!(log.take(), ["before", "after"]);
    let errors = errors.lock();
    assert_eq!(errors.len(), 1);
    let (event, listener, message, panicked) = &errors[0];
    assert_eq!(*event, "user.created");
    assert_eq!(*listener, Some(failing));
    assert!(message.contains("no user 9"), "{message}");
    assert!(!panicked);
    assert_eq!(bus.stats().failed, 1);
}

#[test]
fn a_panicking_listener_is_isolated() {
    let bus = Bus::<Events>::new();
    let log = Log::default();
    let l = log.clone();
    bus.on(move |_: &UserCreated| l.push("first"));
    let bad = bus.on(|_: &UserCreated| boom("listener blew up"));
    let bad2 = bus.on(|_: &UserCreated| boom("again"));
    let l = log.clone();
    bus.on(move |_: &UserCreated| l.push("last"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    bus.on_error(move |err| {
        if let ListenerErrorKind::Panicked(msg) = err.kind() {
            s.lock().push((err.listener().unwrap(), msg.clone()));
        }
    });
    assert_eq!(bus.emit(user(1)), 4);
    assert_eq!(bus.emit(user(2)), 4, "the bus still works after a panic");
    assert_eq!(log.take(), ["first", "last", "first", "last"]);
    let seen = seen.lock();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0], (bad, "listener blew up".to_owned()));
    assert_eq!(seen[1], (bad2, "again".to_owned()));
    assert_eq!(bus.stats().panicked, 4);
}

#[test]
fn a_panicking_error_listener_does_not_escape() {
    let bus = Bus::<Events>::new();
    bus.on_error(|_| boom("error listener panics too"));
    bus.on(|_: &UserCreated| -> Result<(), &'static str> { Err("x") });
    bus.on(|_: &UserCreated| boom("y"));
    assert_eq!(bus.emit(user(1)), 2);
}

#[test]
fn listeners_may_emit_register_and_unregister_reentrantly() {
    let bus = Bus::<Events>::new();
    let log = Log::default();

    // Emits another event from inside a listener.
    let (b, l) = (bus.clone(), log.clone());
    bus.on(move |e: &UserCreated| {
        l.push(format!("created {}", e.id));
        b.emit(UserDeleted { id: e.id });
    });
    let l = log.clone();
    bus.on(move |e: &UserDeleted| l.push(format!("deleted {}", e.id)));

    // Registers a listener from inside a listener: it applies from the next emit on.
    let (b, l) = (bus.clone(), log.clone());
    let registered = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&registered);
    bus.on(move |_: &Tick| {
        if r.fetch_add(1, Ordering::SeqCst) == 0 {
            let l = l.clone();
            b.on(move |t: &Tick| l.push(format!("late {}", t.0)));
        }
    });

    // Removes itself from inside.
    let (b, l) = (bus.clone(), log.clone());
    let me = Arc::new(Mutex::new(None::<ListenerId>));
    let m = Arc::clone(&me);
    let id = bus.on(move |o: &OrderPlaced| {
        l.push(format!("order {}", o.order));
        if let Some(id) = *m.lock() {
            b.off(id);
        }
    });
    *me.lock() = Some(id);

    bus.emit(user(1));
    bus.emit(Tick(1));
    bus.emit(Tick(2));
    bus.emit(OrderPlaced { order: 1, cents: 1 });
    bus.emit(OrderPlaced { order: 2, cents: 1 });
    assert_eq!(log.take(), ["created 1", "deleted 1", "late 2", "order 1"]);
}

#[test]
fn emit_set_dispatches_the_held_member() {
    let bus = Bus::<Events>::new();
    let log = Log::default();
    let l = log.clone();
    bus.on(move |e: &UserCreated| l.push(e.name.clone()));
    assert_eq!(bus.emit_set(Events::from(user(3))), 1);
    assert_eq!(bus.emit_set(Events::Tick(Tick(1))), 0);
    assert_eq!(log.take(), ["user-3"]);
}

#[test]
fn many_threads_emit_and_register_concurrently() {
    let bus = Bus::<Events>::new();
    let total = Arc::new(AtomicUsize::new(0));
    let t = Arc::clone(&total);
    bus.on(move |_: &Tick| {
        t.fetch_add(1, Ordering::Relaxed);
    });
    std::thread::scope(|s| {
        for _ in 0..4 {
            let bus = bus.clone();
            s.spawn(move || {
                for i in 0..5_000 {
                    bus.emit(Tick(i));
                }
            });
        }
        let bus = bus.clone();
        s.spawn(move || {
            for _ in 0..500 {
                let id = bus.on(|_: &Tick| {});
                bus.off(id);
            }
        });
    });
    assert_eq!(total.load(Ordering::Relaxed), 20_000);
    assert_eq!(bus.listener_count::<Tick>(), 1);
}

#[test]
fn a_listener_seen_by_listener_count_is_reached_by_emit() {
    // Regression: registration published the list before the count `emit` checks first.
    for _ in 0..2_000 {
        let bus = Bus::<Events>::new();
        let registrar = {
            let bus = bus.clone();
            std::thread::spawn(move || {
                bus.on(|_: &Tick| {});
            })
        };
        while bus.listener_count::<Tick>() == 0 {
            std::thread::yield_now();
        }
        assert_eq!(bus.emit(Tick(1)), 1);
        registrar.join().unwrap();
    }
}

#[tokio::test]
async fn an_emit_after_shutdown_is_reported_and_counted_with_or_without_listeners() {
    let bus = Bus::<Events>::new();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let e = Arc::clone(&errors);
    bus.on_error(move |err| {
        e.lock().push((
            err.event(),
            err.listener(),
            matches!(err.kind(), ListenerErrorKind::Closed),
        ))
    });
    bus.on(|_: &UserCreated| {});
    bus.shutdown(std::time::Duration::ZERO).await;
    // `tick` has no listener, `user.created` has one: both are refused the same way.
    assert_eq!(bus.emit(Tick(1)), 0);
    assert_eq!(bus.emit(user(1)), 0);
    assert_eq!(
        *errors.lock(),
        [("tick", None, true), ("user.created", None, true)]
    );
    assert_eq!(bus.stats().rejected, 2);
    assert_eq!(bus.stats().emitted, 0);
}
