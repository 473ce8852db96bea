//! The recording on the emit path (feature `metrics`): per event name, emits that reached a
//! listener and how long listener calls took, into the handles of the installed recorder.
//! It sits below the bus, which calls it; the [`Reporter`](crate::metrics::Reporter), which
//! reads buses, sits above. See the [`metrics`](crate::metrics) module docs.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use metrics::{Counter, Histogram};

/// The handles of one event name, per thread.
struct EventHandles {
    name: &'static str,
    emitted: Counter,
    latency: Histogram,
}

thread_local! {
    static EVENTS: RefCell<Vec<EventHandles>> = const { RefCell::new(Vec::new()) };
    static EMITS: Cell<u32> = const { Cell::new(0) };
}

/// Sync listener calls are timed on one emit in this many, per thread.
pub const SYNC_SAMPLE: u32 = 64;

/// Whether this emit's sync listener calls are timed: one emit in [`SYNC_SAMPLE`] per thread.
/// Two clock reads per call cost more than a short listener itself.
pub(crate) fn sample() -> bool {
    EMITS.with(|emits| {
        let n = emits.get().wrapping_add(1);
        emits.set(n);
        n % SYNC_SAMPLE == 0
    })
}

/// Runs `f` with the handles of `name`, made on this thread's first use of it. Event names are
/// `'static` strings of the event types, so their address and length tell them apart (the
/// address alone would not: one name may start where another does).
fn with_handles(name: &'static str, f: impl FnOnce(&EventHandles)) {
    EVENTS.with(|events| {
        let mut events = events.borrow_mut();
        let found = events.iter().position(|h| std::ptr::eq(h.name, name));
        let index = found.unwrap_or_else(|| {
            events.push(EventHandles {
                name,
                emitted: metrics::counter!("tidings_events_emitted_total", "event" => name),
                latency: metrics::histogram!("tidings_handler_seconds", "event" => name),
            });
            events.len() - 1
        });
        f(&events[index]);
    });
}

/// An emit of `name` reached `reached` listeners.
pub(crate) fn emitted(name: &'static str, reached: usize) {
    if reached > 0 {
        with_handles(name, |h| h.emitted.increment(1));
    }
}

/// A listener call for `name` took `took`.
pub(crate) fn handled(name: &'static str, took: Duration) {
    with_handles(name, |h| h.latency.record(took.as_secs_f64()));
}
