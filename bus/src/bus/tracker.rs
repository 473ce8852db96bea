//! Completion tracking for one emitted event: what `emit_and_wait` waits on.
//!
//! The emitter holds one count while it dispatches; each delivery queued for an `on_async`
//! listener holds another, released when that listener finishes with it, fails, or the delivery
//! is discarded (overflow, closed queue, shutdown). An outbound bridge with a store holds a
//! [`Ticket`] per event and settles it once the event is stored (or could not be). Other
//! subscriptions and bridges are not tracked: they do not report back when they handled an
//! event, so queuing counts as delivery for them.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::error::{ListenerError, ListenerErrorKind};
use super::listener::ListenerId;
#[cfg(feature = "bridge")]
use crate::error::BoxError;
use crate::message::MessageContext;

pub(crate) struct Tracker {
    pending: AtomicUsize,
    failures: Mutex<Vec<ListenerError>>,
    done: Notify,
    /// The broker message the event came from, set around every listener call.
    pub(crate) context: Option<Arc<MessageContext>>,
    /// The async listener whose call emitted the event and waits for it, if any: its own
    /// delivery of the event is not waited for, since it cannot be handled before that call
    /// returns (waiting for it would never end).
    pub(crate) caller: Option<ListenerId>,
}

impl Tracker {
    /// A tracker holding the emitter's own count.
    pub(crate) fn new(context: Option<Arc<MessageContext>>) -> Self {
        Tracker {
            pending: AtomicUsize::new(1),
            failures: Mutex::new(Vec::new()),
            done: Notify::new(),
            context,
            caller: super::runtime::running_listener(),
        }
    }

    /// One more delivery to wait for.
    pub(crate) fn add(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn fail(&self, error: ListenerError) {
        self.failures.lock().push(error);
    }

    /// Releases one count.
    pub(crate) fn finish(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_waiters();
        }
    }

    /// Releases the emitter's own count. Only the emitter waits, and not yet, so nobody is
    /// woken (`finish` would take the notifier's lock for no waiter, once per event).
    pub(crate) fn finish_emitting(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// Waits until every count is released; returns the failures.
    pub(crate) async fn wait(&self) -> Vec<ListenerError> {
        loop {
            // Every count released already (sync listeners only, or queued ones done): no
            // waiter to register.
            if self.pending.load(Ordering::Acquire) == 0 {
                return std::mem::take(&mut *self.failures.lock());
            }
            let mut done = pin!(self.done.notified());
            done.as_mut().enable();
            if self.pending.load(Ordering::Acquire) == 0 {
                return std::mem::take(&mut *self.failures.lock());
            }
            done.await;
        }
    }
}

/// The claim of an `emit_and_wait` on one event taken by a storing reader (an outbound bridge
/// with a store): [`stored`](Self::stored) releases the emitter, [`failed`](Self::failed)
/// releases it with the error. Dropped unsettled (the reader stopped before storing), the
/// emitter learns the event was not delivered ([`ListenerErrorKind::Closed`]).
pub(crate) struct Ticket {
    tracker: Option<Arc<Tracker>>,
    event: &'static str,
}

impl Ticket {
    pub(crate) fn new(tracker: Option<Arc<Tracker>>, event: &'static str) -> Self {
        Ticket { tracker, event }
    }

    /// The event is stored.
    #[cfg(feature = "bridge")]
    pub(crate) fn stored(mut self) {
        if let Some(tracker) = self.tracker.take() {
            tracker.finish();
        }
    }

    /// The event could not be stored by `reader`.
    #[cfg(feature = "bridge")]
    pub(crate) fn failed(mut self, reader: ListenerId, error: BoxError) {
        self.settle(Some(reader), ListenerErrorKind::Failed(error));
    }

    fn settle(&mut self, reader: Option<ListenerId>, kind: ListenerErrorKind) {
        if let Some(tracker) = self.tracker.take() {
            tracker.fail(ListenerError::new(self.event, reader, kind));
            tracker.finish();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.settle(None, ListenerErrorKind::Closed);
    }
}
