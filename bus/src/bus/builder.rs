//! Configuring a bus and its async queues: [`BusBuilder`], [`QueueOptions`].

use std::marker::PhantomData;

use super::overflow::Overflow;
use super::Bus;
use crate::event::EventSet;

/// The default capacity of an async listener's or subscription's queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// Configures a [`Bus`]; start with [`Bus::builder`].
#[must_use]
pub struct BusBuilder<S> {
    pub(super) capacity: usize,
    pub(super) overflow: Overflow,
    pub(super) max_listeners: Option<usize>,
    pub(super) set: PhantomData<fn() -> S>,
}

impl<S: EventSet> BusBuilder<S> {
    /// The default queue capacity of async listeners and subscriptions
    /// ([`DEFAULT_QUEUE_CAPACITY`] unless set); at least 1.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The default overflow policy of async listeners and subscriptions ([`Overflow::Wait`]
    /// unless set).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Logs a warning (once per event) when more than `max` listeners are registered for one
    /// event, as Node's `setMaxListeners` does; a hint of a listener leak. Off unless set.
    pub fn max_listeners(mut self, max: usize) -> Self {
        self.max_listeners = Some(max);
        self
    }

    /// Builds the bus.
    pub fn build(self) -> Bus<S> {
        Bus::with_config(Config {
            capacity: self.capacity,
            overflow: self.overflow,
            max_listeners: self.max_listeners,
        })
    }
}

/// Queue settings for one async listener or subscription; unset fields take the bus defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct QueueOptions {
    pub(super) capacity: Option<usize>,
    pub(super) overflow: Option<Overflow>,
    pub(super) concurrency: Option<usize>,
}

impl QueueOptions {
    /// Bus defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The queue's capacity; at least 1.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity.max(1));
        self
    }

    /// What happens when the queue is full.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = Some(overflow);
        self
    }

    /// Async listeners only: run up to `n` calls at once (default 1; at least 1), as a Node
    /// handler that awaits I/O handles the next event meanwhile. With more than one, calls may
    /// finish out of order, so the listener no longer sees events strictly in emit order;
    /// `settle`, `emit_and_wait` and `shutdown` still wait for every call. Subscriptions
    /// ignore it.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }
}

pub(super) struct Config {
    pub(super) capacity: usize,
    pub(super) overflow: Overflow,
    pub(super) max_listeners: Option<usize>,
}
