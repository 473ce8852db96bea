//! Delivering one emit: the sync listeners in order, then one shared `Arc` queued per async
//! subscriber; and reporting what went wrong on the way.
//!
//! Who touches what: an emit reads a snapshot of its event's listener list and never locks the
//! registry (a `once` listener removing itself excepted); failures go to the error listeners
//! through [`BusShared`], which listener tasks hold too.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use super::error::{DeliveryError, DeliveryErrorKind};
use super::listener::ListenerId;
use super::listener::{Call, Outcome};
use super::queue::{Progress, Pushed, Queued, Rejected};
use super::slot::{QueueEntry, SlotHeader, SlotList, SyncEntry};
use super::stats::Stats;
use super::tracker::Tracker;
use super::Inner;
use crate::event::{EventRef, EventSet, Member};

/// What async listener tasks share with the bus without keeping its slots alive.
pub(crate) struct BusShared {
    pub(super) errors: ArcSwap<Vec<ErrorEntry>>,
    pub(super) stats: Stats,
    pub(super) progress: Arc<Progress>,
    pub(super) closed: AtomicBool,
    /// Notified when an async listener task ends.
    pub(super) tasks_done: Notify,
}

#[derive(Clone)]
pub(super) struct ErrorEntry {
    pub(super) id: ListenerId,
    pub(super) f: Arc<dyn Fn(&DeliveryError) + Send + Sync>,
}

impl BusShared {
    /// Hands a delivery failure to the error listeners (or to `tracing` when there are none),
    /// then to the tracker of the `emit_and_wait` concerned, if any.
    pub(super) fn report(&self, error: DeliveryError, tracker: Option<&Tracker>) {
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
    pub(super) fn discard(&self, delivery: Queued, error: DeliveryError, report: bool) {
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
            let kind = DeliveryErrorKind::Overflow(entry.queue.overflow());
            let error = DeliveryError::new(names[d.index], Some(entry.id), kind);
            // Streams learn of it as `Lagged`; other listeners through `on_error`.
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
                let kind = DeliveryErrorKind::Closed;
                let error = DeliveryError::new(names[d.index], Some(entry.id), kind);
                let report = self.closed.load(Ordering::Acquire);
                self.discard(d, error, report);
                false
            }
        }
    }
}

impl<S: EventSet> Inner<S> {
    /// The listeners of `E` now, held for an emit that may wait; `None` when there are none.
    pub(super) fn snapshot<E: Member<S>>(&self) -> Option<Arc<SlotList<S, E>>> {
        let header = &self.slots[E::INDEX];
        if header.live() == 0 {
            return None;
        }
        Some(header.typed::<E>().list.load_full())
    }

    /// Reports and counts an emit of `E` after shutdown.
    #[cold]
    pub(super) fn reject<E: Member<S>>(&self) {
        let kind = DeliveryErrorKind::Closed;
        self.shared
            .report(DeliveryError::new(E::NAME, None, kind), None);
    }

    /// The part of `emit` after the no-listener check.
    pub(super) fn dispatch<E: Member<S>>(&self, header: &SlotHeader<S>, event: E) -> usize {
        if self.shared.closed.load(Ordering::Acquire) {
            self.reject::<E>();
            return 0;
        }
        let list = header.typed::<E>().list.load();
        if list.queues.is_empty() {
            // Sync listeners only: no shared event, no deliveries to build.
            let reached = self.run_sync(&list.sync, &event, None);
            self.shared.stats.emitted(reached);
            #[cfg(feature = "metrics")]
            crate::metrics::emitted(E::NAME, reached);
            return reached;
        }
        let (mut reached, deliveries) = self.fan_out(&list, event, None);
        for (entry, queued) in deliveries {
            let pushed = entry.queue.push(queued);
            reached += usize::from(self.shared.pushed(entry, pushed, S::NAMES));
        }
        self.shared.stats.emitted(reached);
        #[cfg(feature = "metrics")]
        crate::metrics::emitted(E::NAME, reached);
        reached
    }

    /// Runs the sync listeners, then yields one delivery per async queue, all sharing one `Arc`
    /// of the event. Returns how many sync listeners ran.
    fn fan_out<'l, E: Member<S>>(
        &self,
        list: &'l SlotList<S, E>,
        event: E,
        tracker: Option<&'l Arc<Tracker>>,
    ) -> (usize, impl Iterator<Item = (&'l QueueEntry, Queued)> + 'l) {
        let reached = self.run_sync(&list.sync, &event, tracker.map(|t| &**t));
        let shared: Option<Arc<dyn Any + Send + Sync>> =
            (!list.queues.is_empty()).then(|| Arc::new(event) as _);
        let deliveries = shared.into_iter().flat_map(move |shared| {
            list.queues
                .iter()
                .map(move |entry| (entry, Queued::new(&entry.queue, E::INDEX, &shared, tracker)))
        });
        (reached, deliveries)
    }

    /// Calls the sync listeners in order. A panic is caught, reported, and the loop resumes
    /// with the next listener; one `catch_unwind` covers the whole run until something panics.
    pub(super) fn run_sync<E: Member<S>>(
        &self,
        entries: &[SyncEntry<S, E>],
        event: &E,
        tracker: Option<&Tracker>,
    ) -> usize {
        let mut reached = 0;
        let mut next = 0;
        #[cfg(feature = "metrics")]
        let timed = crate::metrics::sample();
        while next < entries.len() {
            let run = catch_unwind(AssertUnwindSafe(|| {
                while let Some(entry) = entries.get(next) {
                    next += 1;
                    if let Some(fired) = &entry.once {
                        if fired.swap(true, Ordering::AcqRel) {
                            continue;
                        }
                        self.off(entry.id);
                    }
                    reached += 1;
                    #[cfg(feature = "metrics")]
                    let started = timed.then(std::time::Instant::now);
                    let outcome: Outcome = match &entry.call {
                        Call::Exact(f) => f(event),
                        Call::Erased(f) => f(EventRef::new(event)),
                    };
                    #[cfg(feature = "metrics")]
                    if let Some(started) = started {
                        crate::metrics::handled(E::NAME, started.elapsed());
                    }
                    if let Err(error) = outcome {
                        let kind = DeliveryErrorKind::Failed(error);
                        let error = DeliveryError::new(E::NAME, Some(entry.id), kind);
                        self.shared.report(error, tracker);
                    }
                }
            }));
            if let Err(payload) = run {
                let kind = DeliveryErrorKind::Panicked(crate::panic::message(&*payload));
                let id = entries[next - 1].id;
                self.shared
                    .report(DeliveryError::new(E::NAME, Some(id), kind), tracker);
            }
        }
        reached
    }
}
