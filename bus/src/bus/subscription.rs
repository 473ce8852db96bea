//! Subscriptions: a bus's events as a `Stream`.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use futures_core::Stream;

use super::error::Missed;
use super::inner::Inner;
use super::listener::ListenerId;
use super::queue::{EventQueue, Popped, Queued};
use super::tracker::Ticket;
use crate::event::EventSet;

/// A stream of events from a [`Bus`](crate::bus::Bus): `Arc<E>` from
/// [`subscribe`](crate::bus::Bus::subscribe), [`AnyEvent`](crate::event::AnyEvent) from
/// [`subscribe_pattern`](crate::bus::Bus::subscribe_pattern).
///
/// Yields `Ok(event)` in emit order, or `Err(Missed(n))` when `n` events were missed because
/// the queue was full, then carries on. The lag report comes where the events were missed:
/// after the events queued before them (under `Wait`, `DropNewest` and `Fail`, the newest are
/// turned away), or before the events that outlived them (under `DropOldest`). Ends (`None`) after the bus shuts down or is dropped and
/// the queued events have been read. Dropping it unsubscribes.
pub struct Subscription<S: EventSet, T> {
    id: ListenerId,
    queue: Arc<EventQueue>,
    /// Events taken from the queue in one go and not yet yielded.
    batch: VecDeque<Queued>,
    bus: Weak<Inner<S>>,
    convert: fn(Queued) -> Option<T>,
}

impl<S: EventSet, T> Subscription<S, T> {
    pub(super) fn new(
        id: ListenerId,
        queue: Arc<EventQueue>,
        bus: Weak<Inner<S>>,
        convert: fn(Queued) -> Option<T>,
    ) -> Self {
        Subscription {
            id,
            queue,
            batch: VecDeque::new(),
            bus,
            convert,
        }
    }

    /// The id [`Bus::off`](crate::bus::Bus::off) accepts for this subscription.
    pub fn id(&self) -> ListenerId {
        self.id
    }

    /// The next event, or `Err(Missed)` after missed events; `None` once the stream ended.
    pub async fn recv(&mut self) -> Option<Result<T, Missed>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next event if one is already queued, without waiting: `None` when there is none
    /// right now (or the stream ended).
    pub fn try_recv(&mut self) -> Option<Result<T, Missed>> {
        match self.poll_recv(&mut Context::from_waker(
            futures_util::task::noop_waker_ref(),
        )) {
            Poll::Ready(item) => item,
            Poll::Pending => None,
        }
    }

    /// Polls for the next event; see [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Missed>>> {
        loop {
            return match self.queue.poll_pop(cx, &mut self.batch) {
                Poll::Ready(Some(Popped::Item(delivery))) => match (self.convert)(delivery) {
                    Some(item) => Poll::Ready(Some(Ok(item))),
                    None => continue,
                },
                Poll::Ready(Some(Popped::Missed(n))) => Poll::Ready(Some(Err(Missed(n)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }

    /// A handle that reads this subscription's queue from elsewhere (while the stream itself
    /// is read by another task), such as a bridge's counters.
    pub fn gauge(&self) -> QueueGauge {
        QueueGauge(Arc::clone(&self.queue))
    }

    /// How many events are queued and not yet read.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no event is waiting to be read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads a subscription's queue without reading the stream; from [`Subscription::gauge`].
/// Cheap to clone; it keeps no events alive and does not keep the subscription open.
#[derive(Clone)]
pub struct QueueGauge(Arc<EventQueue>);

impl QueueGauge {
    /// Events queued and not yet read (including any the reader took and has not finished).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Events the full queue turned away or evicted so far.
    pub fn missed(&self) -> u64 {
        self.0.dropped()
    }
}

impl fmt::Debug for QueueGauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueGauge")
            .field("queued", &self.len())
            .field("missed", &self.missed())
            .finish()
    }
}

impl<S: EventSet, T> Stream for Subscription<S, T> {
    type Item = Result<T, Missed>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S: EventSet, T> Drop for Subscription<S, T> {
    fn drop(&mut self) {
        // Events a storing reader never took: their `emit_and_wait`s learn they were not
        // delivered (a dropped ticket says so). The events stay, for gauges to count.
        if self.queue.follows_trackers() {
            let held = self.batch.iter_mut();
            let held = held.filter_map(|d| Some((d.index, d.tracker.take()?)));
            let left: Vec<_> = held.collect();
            for (index, tracker) in left.into_iter().chain(self.queue.close_and_take_trackers()) {
                drop(Ticket::new(Some(tracker), S::NAMES[index]));
            }
        }
        if let Some(inner) = self.bus.upgrade() {
            inner.off(self.id);
        }
    }
}

impl<S: EventSet, T> fmt::Debug for Subscription<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("queued", &self.queue.len())
            .finish()
    }
}
