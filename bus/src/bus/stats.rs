//! Bus counters.

use super::error::{DeliveryError, DeliveryErrorKind};
use crate::counters::Counters;

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

const EMITTED: usize = 0;
const DELIVERED: usize = 1;
const HANDLED: usize = 2;
const FAILED: usize = 3;
const PANICKED: usize = 4;
const DROPPED: usize = 5;
const REJECTED: usize = 6;

/// The bus's counters, behind the names its code counts by.
#[derive(Default)]
pub(crate) struct Stats(Counters<7>);

impl Stats {
    pub(crate) fn emitted(&self, reached: usize) {
        self.0.incr(EMITTED);
        self.0.add(DELIVERED, reached as u64);
    }

    pub(crate) fn handled(&self) {
        self.0.incr(HANDLED);
    }

    pub(crate) fn dropped(&self) {
        self.0.incr(DROPPED);
    }

    pub(crate) fn failure(&self, error: &DeliveryError) {
        let counter = match error.kind() {
            DeliveryErrorKind::Failed(_) => FAILED,
            DeliveryErrorKind::Panicked(_) => PANICKED,
            DeliveryErrorKind::Closed if error.listener().is_none() => REJECTED,
            // Overflows are counted where they happen, once per event.
            _ => return,
        };
        self.0.incr(counter);
    }

    pub(crate) fn snapshot(&self, queued: u64) -> BusStats {
        let [emitted, delivered, handled, failed, panicked, dropped, rejected] = self.0.snapshot();
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
