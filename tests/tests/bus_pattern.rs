//! Topic patterns: checked against a plain reference matcher by a property test, and through a
//! bus.

use std::sync::Arc;

use parking_lot::Mutex;
use proptest::prelude::*;
use tidings::{Bus, EventRef, Pattern};
use tidings_tests::{Events, OrderPlaced, OrderShipped, Tick, TrackingUpdated, UserDeleted, user};

/// The AMQP topic rule, stated directly: `*` eats one word, `#` eats zero or more.
fn reference(pattern: &[&str], name: &[&str]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((&"#", rest)) => (0..=name.len()).any(|k| reference(rest, &name[k..])),
        Some((&"*", rest)) => !name.is_empty() && reference(rest, &name[1..]),
        Some((word, rest)) => name.first() == Some(word) && reference(rest, &name[1..]),
    }
}

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "user", "order", "x-1"]).prop_map(str::to_owned)
}

fn pattern_word() -> impl Strategy<Value = String> {
    prop_oneof![3 => word(), 1 => Just("*".to_owned()), 1 => Just("#".to_owned())]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn matcher_agrees_with_the_reference(
        pattern in prop::collection::vec(pattern_word(), 1..6),
        name in prop::collection::vec(word(), 1..6),
    ) {
        let compiled = Pattern::parse(&pattern.join(".")).unwrap();
        let p: Vec<&str> = pattern.iter().map(String::as_str).collect();
        let n: Vec<&str> = name.iter().map(String::as_str).collect();
        prop_assert_eq!(compiled.matches(&name.join(".")), reference(&p, &n));
    }

    /// Parsing never panics, and accepts exactly the valid patterns: dot-separated words, each
    /// `*`, `#`, or ASCII letters, digits, `_` and `-`.
    #[test]
    fn parsing_accepts_exactly_the_valid_patterns(s in "[a-zA-Z0-9_*#. é-]{0,12}") {
        let valid = s.split('.').all(|word| {
            word == "*"
                || word == "#"
                || (!word.is_empty()
                    && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        });
        match Pattern::parse(&s) {
            Ok(p) => {
                prop_assert!(valid, "accepted an invalid pattern {:?}", s);
                prop_assert_eq!(p.as_str(), s.as_str());
            }
            Err(e) => prop_assert!(!valid, "refused the valid pattern {:?}: {}", s, e),
        }
    }
}

fn names_heard(bus: &Bus<Events>, pattern: &str) -> Arc<Mutex<Vec<&'static str>>> {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = Arc::clone(&heard);
    bus.on_pattern(pattern, move |e: EventRef<'_, Events>| {
        h.lock().push(e.name())
    })
    .unwrap();
    heard
}

fn emit_all(bus: &Bus<Events>) {
    bus.emit(user(1));
    bus.emit(UserDeleted { id: 1 });
    bus.emit(OrderPlaced { order: 1, cents: 2 });
    bus.emit(OrderShipped { order: 1 });
    bus.emit(TrackingUpdated {
        order: 1,
        status: "out".into(),
    });
    bus.emit(Tick(1));
}

#[test]
fn patterns_on_a_bus() {
    let bus = Bus::<Events>::new();
    let user_star = names_heard(&bus, "user.*");
    let order_hash = names_heard(&bus, "order.#");
    let everything = names_heard(&bus, "#");
    let one_word = names_heard(&bus, "*");
    let shipped_star = names_heard(&bus, "order.shipped.*");
    emit_all(&bus);
    assert_eq!(*user_star.lock(), ["user.created", "user.deleted"]);
    assert_eq!(
        *order_hash.lock(),
        ["order.placed", "order.shipped", "order.shipped.tracking"]
    );
    assert_eq!(everything.lock().len(), 6);
    assert_eq!(*one_word.lock(), ["tick"], "`*` never matches two words");
    assert_eq!(*shipped_star.lock(), ["order.shipped.tracking"]);
}

#[test]
fn pattern_listeners_downcast_to_the_concrete_event() {
    let bus = Bus::<Events>::new();
    let orders = Arc::new(Mutex::new(Vec::new()));
    let o = Arc::clone(&orders);
    bus.on_pattern("order.*", move |e: EventRef<'_, Events>| {
        if let Some(placed) = e.downcast::<OrderPlaced>() {
            o.lock().push(placed.cents);
        }
        assert!(e.downcast::<Tick>().is_none());
    })
    .unwrap();
    bus.emit(OrderPlaced {
        order: 1,
        cents: 250,
    });
    bus.emit(OrderShipped { order: 1 });
    assert_eq!(*orders.lock(), [250]);
}

#[test]
fn invalid_patterns_are_rejected_with_a_reason() {
    let bus = Bus::<Events>::new();
    for (bad, why) in [
        ("", "must not be empty"),
        ("user..created", "word 2 is empty"),
        ("user*", "must be a whole word"),
        ("user.cr eated", "is not allowed"),
    ] {
        let err = bus
            .on_pattern(bad, |_: EventRef<'_, Events>| {})
            .unwrap_err();
        assert!(err.to_string().contains(why), "{bad:?}: {err}");
    }
    assert!(bus.event_names().is_empty(), "nothing was registered");
}

#[test]
fn off_works_for_pattern_and_catch_all_listeners() {
    let bus = Bus::<Events>::new();
    let heard = names_heard(&bus, "user.#");
    let id = bus.on_any(|_: EventRef<'_, Events>| {});
    assert_eq!(bus.listener_count::<Tick>(), 1);
    assert!(bus.off(id));
    assert_eq!(bus.listener_count::<Tick>(), 0);
    assert_eq!(bus.listener_count::<UserDeleted>(), 1);
    emit_all(&bus);
    assert_eq!(heard.lock().len(), 2);
}
