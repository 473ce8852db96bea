//! Delivering one emit: the sync listeners in order, then one shared `Arc` queued per async
//! subscriber; and reporting what went wrong on the way.
//!
//! Who touches what: an emit reads a snapshot of its event's listener list and never locks the
//! registry (a `once` listener removing itself excepted); failures go to the error listeners
//! through [`BusShared`], which listener tasks hold too.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use super::error::{ListenerError, ListenerErrorKind};
use super::listener::ListenerId;
use super::queue::{Progress, Pushed, Queued, Rejected};
use super::rcu::Readers;
use super::slot::QueueEntry;
use super::stats::{Stats, ThreadCells};
use super::tracker::Tracker;

/// What async listener tasks share with the bus without keeping its slots alive.
pub(crate) struct BusShared {
    pub(super) errors: ArcSwap<Vec<ErrorEntry>>,
    pub(super) stats: Stats,
    /// What emits read the slot lists through, with each thread's counters; the
    /// registry's `SlotWrite` retires replaced lists into it.
    pub(super) readers: Readers<ThreadCells>,
    pub(super) progress: Arc<Progress>,
    pub(super) closed: AtomicBool,
    /// Notified when an async listener task ends.
    pub(super) tasks_done: Notify,
}

#[derive(Clone)]
pub(super) struct ErrorEntry {
    pub(super) id: ListenerId,
    pub(super) f: Arc<dyn Fn(&ListenerError) + Send + Sync>,
}

impl BusShared {
    /// Hands a delivery failure to the error listeners (or to `tracing` when there are none),
    /// then to the tracker of the `emit_and_wait` concerned, if any.
    pub(super) fn report(&self, error: ListenerError, tracker: Option<&Tracker>) {
        self.stats.failure(&error);
        let listeners = self.errors.load();
        if listeners.is_empty() {
            tracing::error!(event = error.event(), listener = ?error.listener(), "{error}");
        }
        for entry in listeners.iter() {
            if catch_unwind(AssertUnwindSafe(|| (entry.f)(&error))).is_err() {
                tracing::error!(listener = %entry.id, "an error listener panicked while handling: {error}");
            }
        }
        if let Some(tracker) = tracker {
            tracker.fail(error);
        }
    }

    /// Ends a delivery that will never be handled, with the reason.
    pub(super) fn discard(&self, delivery: Queued, error: ListenerError, report: bool) {
        let tracker = delivery.tracker.as_deref();
        if report {
            self.report(error, tracker);
        } else if let Some(tracker) = tracker {
            tracker.fail(error);
        }
        if let Some(tracker) = tracker {
            tracker.finish();
        }
    }

    /// Accounts for one push into a subscriber's queue; returns whether the event was queued.
    pub(super) fn pushed(
        &self,
        entry: &QueueEntry,
        result: Result<Pushed, (Queued, Rejected)>,
        names: &[&'static str],
    ) -> bool {
        let overflow = |d: Queued| {
            self.stats.dropped();
            entry.queue.count_drop();
            let kind = ListenerErrorKind::Overflow(entry.queue.overflow());
            let error = ListenerError::new(names[d.index], Some(entry.id), kind);
            // Streams learn of it as `Missed`; other listeners through `on_error`.
            self.discard(d, error, !entry.queue.tracks_lag());
        };
        match result {
            Ok(Pushed::Added) => true,
            Ok(Pushed::Evicted(old)) => {
                overflow(old);
                true
            }
            Err((d, Rejected::Full)) => {
                overflow(d);
                false
            }
            Err((d, Rejected::Closed)) => {
                // A queue closes when its subscriber is removed (the emit raced the removal and
                // nothing is owed) or when the bus shuts down (the event is reported).
                let kind = ListenerErrorKind::Closed;
                let error = ListenerError::new(names[d.index], Some(entry.id), kind);
                let report = self.closed.load(Ordering::Acquire);
                self.discard(d, error, report);
                false
            }
        }
    }
}
