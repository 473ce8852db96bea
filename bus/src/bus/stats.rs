//! Bus counters.

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{ListenerError, ListenerErrorKind};

/// A snapshot of a bus's counters; see [`Bus::stats`](crate::bus::Bus::stats).
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
    /// Events a sync [`emit`](crate::bus::Bus::emit) made after shutdown: not delivered, reported
    /// through `on_error`. (`emit_async` hands such an event back instead; it is not counted.)
    pub rejected: u64,
    /// Events waiting in queues right now.
    pub queued: u64,
}

// The shared counters (`emitted`, `delivered` and `handled` are counted per thread).
crate::counters::counter_set! {
    /// The counters shared by every thread.
    type Shared = [FAILED, PANICKED, DROPPED, REJECTED];
}

/// The bus's shared counters, behind the names its code counts by.
///
/// The two every emit counts, and the one every async listener's call counts, are
/// [`ThreadCells`] of the counting thread's own, summed when read: only that thread writes its
/// cells, so counting is a plain load and store, where a shared counter costs a
/// read-modify-write (two per emit took a third of an emit to one listener, 24 ns before and
/// 16.6 ns after, on a machine whose read-modify-writes are slow; and `handled`, shared by
/// listener tasks on every worker thread, bounced between the cores once per event). They live
/// beside the thread's reader record (`rcu.rs`), so an emit finds both with one lookup. A
/// thread that ends leaves its cells, and a thread that takes over its id goes on from them, so
/// the sums stay exact. The rarer counters stay shared.
#[derive(Default)]
pub(crate) struct Stats {
    shared: Shared,
}

/// One thread's share of `emitted`, `delivered` and `handled`; written by that thread only.
#[derive(Default)]
pub(crate) struct ThreadCells {
    emitted: AtomicU64,
    delivered: AtomicU64,
    handled: AtomicU64,
}

impl ThreadCells {
    /// Counts an emit that reached `reached` listeners; called on the cells' own thread.
    #[inline]
    pub(crate) fn emitted(&self, reached: usize) {
        Self::add(&self.emitted, 1);
        Self::add(&self.delivered, reached as u64);
    }

    /// Counts an event an async listener handled without error; called on the cells' own
    /// thread.
    #[inline]
    pub(crate) fn handled(&self) {
        Self::add(&self.handled, 1);
    }

    #[inline]
    fn add(cell: &AtomicU64, n: u64) {
        // The only writer: no read-modify-write needed.
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

impl Stats {
    pub(crate) fn dropped(&self) {
        self.shared.incr(DROPPED);
    }

    pub(crate) fn failure(&self, error: &ListenerError) {
        let counter = match error.kind() {
            ListenerErrorKind::Failed(_) => FAILED,
            ListenerErrorKind::Panicked(_) => PANICKED,
            ListenerErrorKind::Closed if error.listener().is_none() => REJECTED,
            // Overflows are counted where they happen, once per event.
            _ => return,
        };
        self.shared.incr(counter);
    }

    /// The counters now, with every thread's `cells` summed.
    pub(crate) fn snapshot<'c>(
        &self,
        cells: impl Iterator<Item = &'c ThreadCells>,
        queued: u64,
    ) -> BusStats {
        let [failed, panicked, dropped, rejected] = self.shared.snapshot();
        let (emitted, delivered, handled) = cells.fold((0u64, 0u64, 0u64), |(e, d, h), c| {
            (
                e.wrapping_add(c.emitted.load(Ordering::Relaxed)),
                d.wrapping_add(c.delivered.load(Ordering::Relaxed)),
                h.wrapping_add(c.handled.load(Ordering::Relaxed)),
            )
        });
        BusStats {
            emitted,
            delivered,
            handled,
            failed,
            panicked,
            dropped,
            rejected,
            queued,
        }
    }
}
