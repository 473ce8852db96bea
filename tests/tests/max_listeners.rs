//! `max_listeners`: one warning per event when it has more listeners than the limit, counting
//! every kind of listener.

use std::sync::Arc;

use tidings::{Bus, EventRef};
use tidings_tests::{Events, Tick, UserCreated, with_logs};

#[test]
fn warns_once_per_event_past_the_limit_counting_async_listeners() {
    let log = with_logs(tracing::Level::INFO, false, |log| async move {
        let bus = Bus::<Events>::builder().max_listeners(2).build();
        bus.on(|_: &Tick| {});
        let _stream = bus.subscribe::<Tick>();
        assert!(log.text().is_empty(), "two is within the limit");
        bus.on_async(|_: Arc<Tick>| async {});
        bus.on_pattern("#", |_: EventRef<'_, Events>| {}).unwrap();
        bus.on(|_: &UserCreated| {});
    });
    let text = log.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("possible listener leak"))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("event=\"tick\""), "{text}");
    assert!(warnings[0].contains("listeners=3"), "{text}");
}
