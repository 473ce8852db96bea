//! [`Inner`]: what the handles of one bus share, and all its methods: the emit path (the read
//! of the listener list, the sync listeners, the queues), removal of listeners.
//! What they work on lives in the files beside it (slots, registry, queues, the shared
//! error and stats state).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::builder::Config;
use super::dispatch::BusShared;
use super::error::{ListenerError, ListenerErrorKind};
use super::listener::{Call, ListenerId, Outcome};
use super::queue::{Pushed, Queued};
use super::registry::{Crowding, Place, Registry};
use super::slot::{QueueEntry, SlotHeader, SlotList, SyncEntry};
use super::tracker::Tracker;
use crate::event::{EventRef, EventSet, Member};

/// What the handles of one bus share.
pub(super) struct Inner<S: EventSet> {
    pub(super) slots: Box<[SlotHeader<S>]>,
    /// Per event: whether the `max_listeners` warning was logged.
    pub(super) warned: Box<[AtomicBool]>,
    pub(super) registry: Mutex<Registry>,
    pub(super) shared: Arc<BusShared>,
    pub(super) config: Config,
}

impl<S: EventSet> Drop for Inner<S> {
    fn drop(&mut self) {
        // Async listener tasks hold only weak references: closing their queues lets them drain
        // and end instead of waiting forever.
        for place in self.registry.get_mut().places.values() {
            if let Place::Slots { queue: Some(q), .. } = place {
                q.close();
            }
        }
    }
}

impl<S: EventSet> Inner<S> {
    /// Reports and counts an emit of `E` after shutdown.
    #[cold]
    pub(super) fn reject<E: Member<S>>(&self) {
        let kind = ListenerErrorKind::Closed;
        self.shared
            .report(ListenerError::new(E::NAME, None, kind), None);
    }

    /// The part of `emit` after the no-listener check.
    pub(super) fn dispatch<E: Member<S>>(&self, header: &SlotHeader<S>, event: E) -> usize {
        if self.shared.closed.load(Ordering::Acquire) {
            self.reject::<E>();
            return 0;
        }
        let read = self.shared.readers.read();
        let list = header.typed::<E>().list.read(&read);
        if list.queues.is_empty() {
            // Sync listeners only: no shared event, no deliveries to build.
            let reached = self.run_sync(&list.sync, &event, None);
            read.local().emitted(reached);
            #[cfg(feature = "metrics")]
            crate::record::emitted(E::NAME, reached);
            return reached;
        }
        let reached = self.dispatch_queued(list, event);
        read.local().emitted(reached);
        #[cfg(feature = "metrics")]
        crate::record::emitted(E::NAME, reached);
        reached
    }

    /// `dispatch` for a list with async queues; out of line so that the sync-only path keeps
    /// a small frame. The sync listeners run first, then one delivery per queue, all sharing
    /// one `Arc` of the event: built and pushed in one loop, the common outcome (queued)
    /// counted in place and the others accounted for out of line.
    #[inline(never)]
    fn dispatch_queued<E: Member<S>>(&self, list: &SlotList<S, E>, event: E) -> usize {
        let mut reached = self.run_sync(&list.sync, &event, None);
        let shared: Arc<dyn Any + Send + Sync> = Arc::new(event);
        let span = super::queue::emitter_span();
        let mut push = |entry: &QueueEntry, event: Arc<dyn Any + Send + Sync>| {
            let delivery = Queued::new(&entry.queue, E::INDEX, event, None, span.as_ref());
            match entry.queue.push(delivery) {
                Ok(Pushed::Added) => reached += 1,
                other => reached += usize::from(self.shared.pushed(entry, other, S::NAMES)),
            }
        };
        // The last queue takes the emit's own reference to the event: one reference-count
        // increment and one decrement fewer per emit (the caller saw the queues non-empty).
        if let Some((last, others)) = list.queues.split_last() {
            for entry in others {
                push(entry, Arc::clone(&shared));
            }
            push(last, shared);
        }
        reached
    }

    /// Calls the sync listeners in order. A panic is caught, reported, and the loop resumes
    /// with the next listener; one `catch_unwind` covers the whole run until something panics.
    #[inline(always)]
    pub(super) fn run_sync<E: Member<S>>(
        &self,
        entries: &[SyncEntry<S, E>],
        event: &E,
        tracker: Option<&Tracker>,
    ) -> usize {
        let mut reached = 0;
        // Advanced before each call, so after a panic it is past the listener that panicked.
        let mut rest = entries.iter();
        #[cfg(feature = "metrics")]
        let timed = crate::record::sample();
        loop {
            let run = catch_unwind(AssertUnwindSafe(|| {
                for entry in rest.by_ref() {
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
                        crate::record::handled(E::NAME, started.elapsed());
                    }
                    if let Err(error) = outcome {
                        let kind = ListenerErrorKind::Failed(error);
                        let error = ListenerError::new(E::NAME, Some(entry.id), kind);
                        self.shared.report(error, tracker);
                    }
                }
            }));
            let Err(payload) = run else {
                return reached;
            };
            let kind = ListenerErrorKind::Panicked(crate::panic::message(&*payload));
            let id = entries[entries.len() - rest.len() - 1].id;
            self.shared
                .report(ListenerError::new(E::NAME, Some(id), kind), tracker);
        }
    }

    /// Removes every registration whose place matches; returns how many.
    pub(super) fn off_where(&self, matches: impl Fn(&Place) -> bool) -> usize {
        let ids: Vec<ListenerId> = {
            let reg = self.registry.lock();
            let matching = reg.places.iter().filter(|(_, p)| matches(p));
            matching.map(|(id, _)| *id).collect()
        };
        ids.into_iter().filter(|id| self.off(*id)).count()
    }

    pub(super) fn off(&self, id: ListenerId) -> bool {
        let removed = self.off_locked(&mut self.registry.lock(), id);
        // After the lock: what goes may be the last owner of a listener's closure.
        self.shared.readers.collect();
        removed
    }

    fn off_locked(&self, reg: &mut Registry, id: ListenerId) -> bool {
        match reg.places.remove(&id) {
            Some(Place::Slots { indices, queue, .. }) => {
                for i in indices {
                    let len = self.slots[i].slot.remove(&reg.write, id);
                    self.slots[i].set_live(len);
                }
                if let Some(queue) = queue {
                    queue.close();
                }
                true
            }
            Some(Place::Error) => {
                let mut list = Vec::clone(&self.shared.errors.load());
                list.retain(|e| e.id != id);
                self.shared.errors.store(Arc::new(list));
                true
            }
            None => false,
        }
    }

    /// What follows a registration, once the registry lock is released: the lists it replaced
    /// are dropped if no emit holds them, and a crowded event is warned about (a `tracing`
    /// subscriber and a listener's `Drop` are user code).
    pub(super) fn registered(&self, crowding: Crowding) {
        self.shared.readers.collect();
        self.warn_if_crowded(crowding);
    }

    /// Logs, once per event, that an event has more listeners than `max_listeners`.
    fn warn_if_crowded(&self, Crowding(lens): Crowding) {
        let Some(max) = self.config.max_listeners else {
            return;
        };
        for (index, len) in lens {
            if len > max && !self.warned[index].swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    event = S::NAMES[index],
                    listeners = len,
                    max,
                    "more listeners than max_listeners for one event: possible listener leak"
                );
            }
        }
    }
}

/// The emit path's raw-pointer reads (`rcu.rs`, `SlotHeader::typed`) through the public API,
/// small enough for Miri (`cargo +nightly miri test -p tidings --lib bus::`).
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::prelude::*;

    #[derive(Debug, Clone, Event)]
    #[event(name = "t.a")]
    struct A(u32);

    #[derive(Debug, Clone, Event)]
    #[event(name = "t.b")]
    struct B(u32);

    #[derive(EventSet)]
    #[event_set(no_codec)]
    enum Set {
        A(A),
        B(B),
    }

    #[derive(Debug, Clone, Event)]
    #[event(name = "t.c")]
    struct C;

    // A hand-written membership claiming `A`'s slot: what the derive never writes, and what
    // the checked cast in `SlotHeader::typed` must turn into a panic, not a read of `A`'s list
    // as a list of `C` listeners.
    impl crate::event::Member<Set> for C {
        const INDEX: usize = 0;
    }

    #[test]
    fn a_member_claiming_another_members_slot_panics_and_leaves_the_bus_working() {
        let bus = Bus::<Set>::new();
        bus.on(|a: &A| {
            let _ = a.0;
        });
        let emitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bus.emit(C)));
        let payload = emitted.expect_err("an emit through a wrong index must panic");
        let message = crate::panic::message(&*payload);
        assert!(
            message.contains("does not match its event set"),
            "{message}"
        );
        // The read the panic left was ended: the bus works, and a removed closure still goes.
        assert_eq!(bus.emit(A(1)), 1);
        let held = Arc::new(());
        let id = {
            let held = Arc::clone(&held);
            bus.on(move |a: &A| {
                let _ = (&held, a.0);
            })
        };
        assert_eq!(bus.emit(A(2)), 2);
        bus.off(id);
        assert_eq!(Arc::strong_count(&held), 1);
    }

    #[test]
    fn emits_on_threads_while_listeners_come_and_go_and_every_closure_is_let_go() {
        let bus = Bus::<Set>::new();
        let held = Arc::new(());
        let keeper = {
            let held = Arc::clone(&held);
            bus.on(move |b: &B| {
                let _ = (&held, b.0);
            })
        };
        let emitters: Vec<_> = (0..2)
            .map(|t| {
                let bus = bus.clone();
                std::thread::spawn(move || {
                    let mut reached = 0;
                    for i in 0..20 {
                        reached += bus.emit(A(t * 100 + i)) + bus.emit(B(i));
                    }
                    reached
                })
            })
            .collect();
        for _ in 0..5 {
            let held = Arc::clone(&held);
            let id = bus.on(move |a: &A| {
                let _ = (&held, a.0);
            });
            bus.off(id);
        }
        let reached: usize = emitters.into_iter().map(|t| t.join().unwrap()).sum();
        // Every emit of `B` reached the one listener kept throughout.
        assert!(reached >= 2 * 20);
        assert_eq!(Arc::strong_count(&held), 2, "removed listeners kept");
        bus.off(keeper);
        assert_eq!(Arc::strong_count(&held), 1);
        assert_eq!(bus.emit(B(0)), 0);
    }
}
