//! Registering and removing listeners: the registry, and the slot updates it makes.
//!
//! Who touches what: the registry lock is taken for every registration change, never by
//! `emit` (except for a `once` listener removing itself), and never while user code runs;
//! slot lists are replaced copy-on-write under it, so emits in progress keep their snapshot.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::builder::QueueOptions;
use super::listener::ListenerId;
use super::listener::{self, Call, ErasedFn, ListenerResult};
use super::queue::{ConsumerKind, EventQueue, Queued};
use super::runtime::{erased, run_listener, Listening};
use super::slot::{self, ErasedEntry, QueueEntry, SlotHeader, SlotWrite, SyncEntry};
use super::subscription::Subscription;
use super::{Bus, Inner};
use crate::event::{AnyEvent, EventSet, Member};

/// Registration bookkeeping; the lock around it is taken for every registration change, never
/// by `emit` (except for a `once` listener removing itself), never while user code runs.
pub(crate) struct Registry {
    /// The bus's one permission to change slot lists: only reachable under the lock.
    pub(super) write: SlotWrite,
    pub(super) places: HashMap<ListenerId, Place>,
    /// Async listener tasks still running (including removed ones still draining their queue).
    pub(super) tasks: HashMap<ListenerId, Task>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            write: SlotWrite::new(),
            places: HashMap::new(),
            tasks: HashMap::new(),
        }
    }
}

/// Where one registration lives.
pub(super) enum Place {
    Slots {
        indices: Vec<usize>,
        /// The queue of an async listener or subscription.
        queue: Option<Arc<EventQueue>>,
        /// Registered for one event type (`on`, `subscribe`...) rather than by pattern.
        exact: bool,
    },
    Error,
}

pub(super) struct Task {
    pub(super) queue: Arc<EventQueue>,
    pub(super) handle: JoinHandle<()>,
    /// Indices of the events the task held (handling or taken from its queue) when it was
    /// cancelled; filled when its future is dropped.
    pub(super) leftover: Arc<Mutex<Vec<usize>>>,
}

/// The slot lengths a registration left, to check against `max_listeners` after unlocking.
#[must_use]
pub(super) struct Crowding(Vec<(usize, usize)>);

impl<S: EventSet> Bus<S> {
    /// Records a listener in the slots of `indices`: `add` puts it in one slot and returns
    /// the slot's new length. Every registration goes through here; the caller passes the
    /// returned `Crowding` to [`Inner::warn_if_crowded`] once it has released the lock.
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
        self.inner.warn_if_crowded(crowding);
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
        self.inner.warn_if_crowded(crowding);
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

    pub(super) fn add_subscription<T>(
        &self,
        indices: Vec<usize>,
        exact: bool,
        options: QueueOptions,
        convert: fn(Queued) -> Option<T>,
    ) -> Subscription<S, T> {
        let (id, queue, crowding) = {
            let mut reg = self.inner.registry.lock();
            self.add_queue(&mut reg, indices, exact, options, ConsumerKind::Stream)
        };
        self.inner.warn_if_crowded(crowding);
        Subscription::new(id, queue, Arc::downgrade(&self.inner), convert)
    }

    pub(super) fn add_reporting(
        &self,
        indices: Vec<usize>,
        options: QueueOptions,
    ) -> Subscription<S, AnyEvent<S>> {
        let (id, queue, crowding) = {
            let mut reg = self.inner.registry.lock();
            self.add_queue(&mut reg, indices, false, options, ConsumerKind::Reporting)
        };
        self.inner.warn_if_crowded(crowding);
        Subscription::new(id, queue, Arc::downgrade(&self.inner), erased::<S>)
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
        let runtime = crate::runtime("async listeners");
        let mut reg = self.inner.registry.lock();
        let (id, queue, crowding) =
            self.add_queue(&mut reg, indices, exact, options, ConsumerKind::Task);
        let leftover = Arc::default();
        let run = run_listener::<S, T, F, Fut>(
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
        self.inner.warn_if_crowded(crowding);
        id
    }
}

impl<S: EventSet> Inner<S> {
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
        let mut reg = self.registry.lock();
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

    /// Logs, once per event, that an event has more listeners than `max_listeners`. Called
    /// after the registry lock is released: a `tracing` subscriber is user code.
    pub(super) fn warn_if_crowded(&self, Crowding(lens): Crowding) {
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
