//! Listeners that are only sketched (a body that only panics, such as `panic!()` or
//! `unreachable!()`, of type `!`) compile, in edition 2024 too (this crate's edition), where `!`
//! no longer falls back to `()`; when such a listener runs, its panic is reported like any other.

use std::sync::Arc;

use parking_lot::Mutex;
use tidings::{Bus, EventRef, ListenerErrorKind};
use tidings_tests::{Events, Tick, UserCreated, user};

#[tokio::test]
#[allow(unreachable_code, clippy::diverging_sub_expression)]
async fn sketched_listeners_compile_and_their_panics_are_reported() {
    let bus = Bus::<Events>::new();
    let panics = Arc::new(Mutex::new(Vec::new()));
    let p = Arc::clone(&panics);
    bus.on_error(move |e| {
        if let ListenerErrorKind::Panicked(message) = e.kind() {
            p.lock().push(message.to_string());
        }
    });
    bus.on(|_: &UserCreated| panic!());
    bus.on(|_: &UserCreated| panic!("not yet"));
    bus.once(|_: &UserCreated| unreachable!());
    bus.on_async(|_: Arc<Tick>| async { panic!("later") });
    bus.on_pattern("user.#", |_: EventRef<'_, Events>| unreachable!())
        .unwrap();
    bus.on_any(|_: EventRef<'_, Events>| panic!("sketch"));

    assert_eq!(bus.emit(user(1)), 5);
    assert_eq!(bus.emit(Tick(1)), 2);
    bus.settle().await;
    let panics = panics.lock();
    assert_eq!(panics.len(), 7, "{panics:?}");
    assert!(panics.iter().any(|m| m == "later"), "async listeners too");
    assert!(panics.iter().any(|m| m == "not yet"));
}
