//! The [`Bus`] methods that add listeners: each makes the listener's entry, spawns its task
//! if it has one, and records it in the [`Registry`](super::registry::Registry) under its
//! lock.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::builder::QueueOptions;
use super::listener::ListenerId;
use super::listener::{self, Call, ErasedFn, ListenerResult};
use super::queue::{ConsumerKind, EventQueue, Queued};
use super::registry::{Crowding, Place, Registry, Task};
use super::runtime::{erased, run_listener, Listening};
use super::slot::{self, ErasedEntry, QueueEntry, SlotHeader, SlotWrite, SyncEntry};
use super::subscription::Subscription;
#[cfg(feature = "bridge")]
use super::tracker::Ticket;
use super::Bus;
use crate::event::{AnyEvent, EventSet, Member};

impl<S: EventSet> Bus<S> {
    /// Records a listener in the slots of `indices`: `add` puts it in one slot and returns
    /// the slot's new length. Every registration goes through here; the caller passes the
    /// returned `Crowding` to [`Inner::registered`] once it has released the lock.
    pub(super) fn register(
        &self,
        reg: &mut Registry,
        indices: Vec<usize>,
        queue: Option<Arc<EventQueue>>,
        exact: bool,
        mut add: impl FnMut(&SlotHeader<S>, &SlotWrite, ListenerId) -> usize,
    ) -> (ListenerId, Crowding) {
        let id = ListenerId::next();
        let mut lens = Vec::with_capacity(indices.len());
        for &i in &indices {
            let header = &self.inner.slots[i];
            let len = add(header, &reg.write, id);
            header.set_live(len);
            lens.push((i, len));
        }
        let place = Place::Slots {
            indices,
            queue,
            exact,
        };
        reg.places.insert(id, place);
        (id, Crowding(lens))
    }

    pub(super) fn add_exact<E: Member<S>>(
        &self,
        call: Arc<listener::ExactFn<E>>,
        once: Option<Arc<AtomicBool>>,
        prepend: bool,
    ) -> ListenerId {
        let mut reg = self.inner.registry.lock();
        let (id, crowding) =
            self.register(&mut reg, vec![E::INDEX], None, true, |header, reg, id| {
                let slot = header.typed::<E>();
                let entry = SyncEntry {
                    id,
                    once: once.clone(),
                    call: Call::Exact(Arc::clone(&call)),
                };
                slot.update(reg, |l| slot::insert(&mut l.sync, entry, prepend))
            });
        drop(reg);
        self.inner.registered(crowding);
        id
    }

    pub(super) fn add_erased(&self, indices: Vec<usize>, call: Arc<ErasedFn<S>>) -> ListenerId {
        let mut reg = self.inner.registry.lock();
        let (id, crowding) = self.register(&mut reg, indices, None, false, |header, reg, id| {
            let entry = ErasedEntry {
                id,
                once: None,
                call: Arc::clone(&call),
            };
            header.slot.add_erased(reg, entry, false)
        });
        drop(reg);
        self.inner.registered(crowding);
        id
    }

    /// Registers a queue in the slots of `indices`; returns its id and the queue.
    pub(super) fn add_queue(
        &self,
        reg: &mut Registry,
        indices: Vec<usize>,
        exact: bool,
        options: QueueOptions,
        kind: ConsumerKind,
    ) -> (ListenerId, Arc<EventQueue>, Crowding) {
        let queue = Arc::new(EventQueue::new(
            options.capacity.unwrap_or(self.inner.config.capacity),
            options.overflow.unwrap_or(self.inner.config.overflow),
            kind,
            Arc::clone(&self.inner.shared.progress),
        ));
        if self.is_closed() {
            queue.close();
        }
        let placed = Some(Arc::clone(&queue));
        let (id, crowding) = self.register(reg, indices, placed, exact, |header, reg, id| {
            let entry = QueueEntry {
                id,
                queue: Arc::clone(&queue),
            };
            header.slot.add_queue(reg, entry)
        });
        (id, queue, crowding)
    }

    /// A stream of `indices` read through `convert`, its misses handled as `kind` says.
    fn add_stream<T>(
        &self,
        indices: Vec<usize>,
        exact: bool,
        options: QueueOptions,
        kind: ConsumerKind,
        convert: fn(Queued) -> Option<T>,
    ) -> Subscription<S, T> {
        let (id, queue, crowding) = {
            let mut reg = self.inner.registry.lock();
            self.add_queue(&mut reg, indices, exact, options, kind)
        };
        self.inner.registered(crowding);
        Subscription::new(id, queue, Arc::downgrade(&self.inner), convert)
    }

    pub(super) fn add_subscription<T>(
        &self,
        indices: Vec<usize>,
        exact: bool,
        options: QueueOptions,
        convert: fn(Queued) -> Option<T>,
    ) -> Subscription<S, T> {
        self.add_stream(indices, exact, options, ConsumerKind::Stream, convert)
    }

    pub(super) fn add_reporting(
        &self,
        indices: Vec<usize>,
        options: QueueOptions,
    ) -> Subscription<S, AnyEvent<S>> {
        self.add_stream(
            indices,
            false,
            options,
            ConsumerKind::Reporting,
            erased::<S>,
        )
    }

    /// [`Bus::subscribe_reporting`] whose items carry the span each event was emitted in,
    /// for an outbound bridge to continue.
    #[cfg(feature = "bridge")]
    pub(crate) fn add_reporting_spanned(
        &self,
        indices: Vec<usize>,
        options: QueueOptions,
    ) -> Subscription<S, Spanned<S>> {
        self.add_stream(
            indices,
            false,
            options,
            ConsumerKind::Reporting,
            spanned::<S>,
        )
    }

    /// A reporting stream whose reader stores each event and settles its [`Ticket`]; see
    /// [`ConsumerKind::Stored`].
    #[cfg(feature = "bridge")]
    pub(crate) fn add_stored(
        &self,
        indices: Vec<usize>,
        options: QueueOptions,
    ) -> Subscription<S, (Spanned<S>, Ticket)> {
        self.add_stream(indices, false, options, ConsumerKind::Stored, ticketed::<S>)
    }

    #[track_caller]
    pub(super) fn spawn_listener<T, F, Fut>(
        &self,
        indices: Vec<usize>,
        exact: bool,
        options: QueueOptions,
        convert: fn(Queued) -> Option<T>,
        listener: F,
    ) -> ListenerId
    where
        T: Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: ListenerResult,
    {
        let runtime = crate::spawn::runtime("async listeners");
        let mut reg = self.inner.registry.lock();
        let (id, queue, crowding) =
            self.add_queue(&mut reg, indices, exact, options, ConsumerKind::Task);
        let leftover = Arc::default();
        let run = super::runtime::as_listener(
            id,
            run_listener::<S, T, F, Fut>(
                Listening {
                    id,
                    queue: Arc::clone(&queue),
                    shared: Arc::clone(&self.inner.shared),
                    bus: Arc::downgrade(&self.inner),
                    leftover: Arc::clone(&leftover),
                    concurrency: options.concurrency.unwrap_or(1),
                },
                convert,
                listener,
            ),
        );
        // Spawned under the lock so the task is in the registry before it can end.
        let handle = runtime.spawn(run);
        reg.tasks.insert(
            id,
            Task {
                queue,
                handle,
                leftover,
            },
        );
        drop(reg);
        self.inner.registered(crowding);
        id
    }
}

/// An event and the span it was emitted in (`None` outside any span).
#[cfg(feature = "bridge")]
pub(crate) type Spanned<S> = (AnyEvent<S>, Option<Arc<tracing::Span>>);

#[cfg(feature = "bridge")]
fn spanned<S: EventSet>(d: Queued) -> Option<Spanned<S>> {
    Some((AnyEvent::from_erased(d.index, d.event), d.span))
}

/// A stored stream's item: the event, its span, and the ticket of the `emit_and_wait` that
/// waits for it.
#[cfg(feature = "bridge")]
fn ticketed<S: EventSet>(mut d: Queued) -> Option<(Spanned<S>, Ticket)> {
    let ticket = Ticket::new(d.tracker.take(), S::NAMES[d.index]);
    Some(((AnyEvent::from_erased(d.index, d.event), d.span), ticket))
}
