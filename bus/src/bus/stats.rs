//! Bus counters.

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{DeliveryError, DeliveryErrorKind};

/// A snapshot of a bus's counters; see [`Bus::stats`](crate::Bus::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Emits that had at least one listener (an emit with none is not counted: it costs
    /// nothing and reaches nobody).
    pub emitted: u64,
    /// Listener calls made and events queued for async listeners and subscriptions.
    pub delivered: u64,
    /// Events an async listener handled without error.
    pub handled: u64,
    /// Listener calls that returned an error.
    pub failed: u64,
    /// Listener calls that panicked.
    pub panicked: u64,
    /// Events that did not reach a subscriber because its queue was full (all overflow
    /// policies). Zero unless a queue overflowed.
    pub dropped: u64,
    /// Events a sync [`emit`](crate::Bus::emit) made after shutdown: not delivered, reported
    /// through `on_error`. (`emit_async` hands such an event back instead; it is not counted.)
    pub rejected: u64,
    /// Events waiting in queues right now.
    pub queued: u64,
}

#[derive(Default)]
pub(crate) struct Stats {
    emitted: AtomicU64,
    delivered: AtomicU64,
    handled: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
}

impl Stats {
    pub(crate) fn emitted(&self, reached: usize) {
        self.emitted.fetch_add(1, Ordering::Relaxed);
        self.delivered.fetch_add(reached as u64, Ordering::Relaxed);
    }

    pub(crate) fn handled(&self) {
        self.handled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failure(&self, error: &DeliveryError) {
        let counter = match error.kind() {
            DeliveryErrorKind::Failed(_) => &self.failed,
            DeliveryErrorKind::Panicked(_) => &self.panicked,
            DeliveryErrorKind::Closed if error.listener().is_none() => &self.rejected,
            // Overflows are counted where they happen, once per event.
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, queued: u64) -> BusStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        BusStats {
            emitted: get(&self.emitted),
            delivered: get(&self.delivered),
            handled: get(&self.handled),
            failed: get(&self.failed),
            panicked: get(&self.panicked),
            dropped: get(&self.dropped),
            rejected: get(&self.rejected),
            queued,
        }
    }
}
