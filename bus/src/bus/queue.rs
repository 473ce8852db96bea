//! The bounded queue between emitters and one async subscriber.
//!
//! Many producers (every task that emits) and exactly one consumer (the subscriber's task or its
//! [`Subscription`](crate::Subscription)). Who touches what:
//! - `state` is locked briefly by producers to push and by the consumer to pop; never across an
//!   `.await` and never while user code runs.
//! - `finished` is written only by the consumer (or by a producer that evicts an item under
//!   `DropOldest`) and read by `settle`.
//!
//! A waiting consumer leaves its `Waker` in the state; a producer takes it under the lock and
//! wakes it after unlocking. Producers that wait for space (`emit_async`) park on `space`, which
//! is notified whenever a pop turns a full queue into a non-full one, and on close.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::event::ErasedArc;

/// What a subscriber's queue does when an event arrives and it is full.
///
/// Whatever the policy, an event that does not reach a subscriber is counted in
/// [`BusStats::dropped`](crate::BusStats::dropped) and reported: to the subscription as
/// [`Lagged`](crate::Lagged) for streams, through [`Bus::on_error`](crate::Bus::on_error)
/// for `on_async` listeners. Nothing is dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// [`Bus::emit_async`](crate::Bus::emit_async) waits for space. A sync
    /// [`Bus::emit`](crate::Bus::emit) cannot wait: the event is not queued for this subscriber
    /// and the overflow is reported.
    #[default]
    Wait,
    /// Make room by discarding the oldest queued event; the new event is queued.
    DropOldest,
    /// Discard the new event; the queue keeps what it has.
    DropNewest,
    /// Never wait, not even in `emit_async`: the event is not queued for this subscriber and the
    /// overflow is reported.
    Fail,
}

/// One queued event: its member index and the shared event.
pub(crate) struct Delivery {
    pub(crate) index: usize,
    pub(crate) event: ErasedArc,
}

impl Clone for Delivery {
    fn clone(&self) -> Self {
        Delivery {
            index: self.index,
            event: Arc::clone(&self.event),
        }
    }
}

/// Why a push did not queue the event.
pub(crate) enum Rejected {
    /// The queue is full and the policy does not make room.
    Full,
    /// The subscriber is gone or the bus shut down.
    Closed,
}

/// What a push did, when it queued the event.
pub(crate) enum Pushed {
    Queued,
    /// Queued after evicting this older delivery (`DropOldest`).
    Evicted(Delivery),
}

/// What the consumer gets.
pub(crate) enum Popped {
    Item(Delivery),
    /// This many events were not queued or were evicted since the last pop (stream queues only).
    Lagged(u64),
}

/// Wakes `settle` callers when any consumer finishes an item. Shared by every queue of a bus.
#[derive(Default)]
pub(crate) struct Progress {
    /// Number of `settle` calls waiting; consumers notify only when it is non-zero.
    settlers: AtomicUsize,
    notify: Notify,
}

impl Progress {
    fn advanced(&self) {
        // SeqCst pairs with `wait_until`: either the waiter sees our `finished` increment, or we
        // see its registration and notify it.
        if self.settlers.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Waits until `done()` holds; `done` is re-checked after every consumer progress.
    pub(crate) async fn wait_until(&self, mut done: impl FnMut() -> bool) {
        struct Registered<'a>(&'a AtomicUsize);
        impl Drop for Registered<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.settlers.fetch_add(1, Ordering::SeqCst);
        let _registered = Registered(&self.settlers);
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            if done() {
                return;
            }
            notified.await;
        }
    }
}

struct State {
    items: VecDeque<Delivery>,
    closed: bool,
    /// Events accepted so far (queued, including later-evicted ones).
    pushed: u64,
    /// Events this stream's consumer has not been told it missed (stream queues only).
    lagged: u64,
    consumer: Option<Waker>,
}

pub(crate) struct Queue {
    capacity: usize,
    overflow: Overflow,
    /// Stream queues report misses to the consumer as lag; task queues report them elsewhere.
    tracks_lag: bool,
    state: Mutex<State>,
    space: Notify,
    /// Events handled (or evicted) so far; `finished <= pushed`.
    finished: AtomicU64,
    progress: Arc<Progress>,
}

impl Queue {
    pub(crate) fn new(
        capacity: usize,
        overflow: Overflow,
        tracks_lag: bool,
        progress: Arc<Progress>,
    ) -> Self {
        let capacity = capacity.max(1);
        Queue {
            capacity,
            overflow,
            tracks_lag,
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity.min(64)),
                closed: false,
                pushed: 0,
                lagged: 0,
                consumer: None,
            }),
            space: Notify::new(),
            finished: AtomicU64::new(0),
            progress,
        }
    }

    pub(crate) fn tracks_lag(&self) -> bool {
        self.tracks_lag
    }

    pub(crate) fn overflow(&self) -> Overflow {
        self.overflow
    }

    /// Queues `delivery` without waiting, applying the overflow policy when full.
    pub(crate) fn push(&self, delivery: Delivery) -> Result<Pushed, (Delivery, Rejected)> {
        let mut state = self.state.lock();
        if state.closed {
            return Err((delivery, Rejected::Closed));
        }
        let mut outcome = Pushed::Queued;
        if state.items.len() >= self.capacity {
            match self.overflow {
                Overflow::DropOldest => {
                    if let Some(old) = state.items.pop_front() {
                        outcome = Pushed::Evicted(old);
                        if self.tracks_lag {
                            state.lagged += 1;
                        }
                    }
                }
                Overflow::Wait | Overflow::DropNewest | Overflow::Fail => {
                    if self.tracks_lag {
                        state.lagged += 1;
                        let waker = state.consumer.take();
                        drop(state);
                        if let Some(w) = waker {
                            w.wake();
                        }
                    }
                    return Err((delivery, Rejected::Full));
                }
            }
        }
        state.items.push_back(delivery);
        state.pushed += 1;
        let waker = state.consumer.take();
        drop(state);
        if matches!(outcome, Pushed::Evicted(_)) {
            self.finish_one();
        }
        if let Some(w) = waker {
            w.wake();
        }
        Ok(outcome)
    }

    /// Queues `delivery`, waiting for space when full; [`Overflow::Fail`] queues never wait.
    pub(crate) async fn push_wait(
        &self,
        delivery: Delivery,
    ) -> Result<Pushed, (Delivery, Rejected)> {
        if self.overflow == Overflow::Fail {
            return self.push(delivery);
        }
        loop {
            let mut space = pin!(self.space.notified());
            {
                let state = self.state.lock();
                if state.closed || state.items.len() < self.capacity {
                    drop(state);
                    return self.push(delivery);
                }
                // Registered before unlocking, so a pop right after cannot be missed.
                space.as_mut().enable();
            }
            space.await;
        }
    }

    /// The consumer's side: the next item, lag report, or `None` once closed and drained.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<Popped>> {
        let mut state = self.state.lock();
        if state.lagged > 0 {
            let n = std::mem::take(&mut state.lagged);
            return Poll::Ready(Some(Popped::Lagged(n)));
        }
        if let Some(item) = state.items.pop_front() {
            let was_full = state.items.len() + 1 == self.capacity;
            drop(state);
            if was_full {
                self.space.notify_waiters();
            }
            return Poll::Ready(Some(Popped::Item(item)));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        match &mut state.consumer {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    pub(crate) async fn pop(&self) -> Option<Popped> {
        std::future::poll_fn(|cx| self.poll_pop(cx)).await
    }

    /// Marks one popped item as handled (for `settle`).
    pub(crate) fn finish_one(&self) {
        self.finished.fetch_add(1, Ordering::SeqCst);
        self.progress.advanced();
    }

    /// Stops accepting events; the consumer still drains what is queued, then sees the end.
    pub(crate) fn close(&self) {
        let waker = {
            let mut state = self.state.lock();
            state.closed = true;
            state.consumer.take()
        };
        self.space.notify_waiters();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Closes the queue and takes what is still in it.
    pub(crate) fn close_and_take(&self) -> Vec<Delivery> {
        self.close();
        let items: Vec<Delivery> = self.state.lock().items.drain(..).collect();
        for _ in &items {
            self.finish_one();
        }
        items
    }

    /// Events accepted so far.
    pub(crate) fn pushed(&self) -> u64 {
        self.state.lock().pushed
    }

    /// Events handled (or evicted) so far.
    pub(crate) fn finished(&self) -> u64 {
        self.finished.load(Ordering::SeqCst)
    }

    pub(crate) fn len(&self) -> usize {
        self.state.lock().items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;

    fn d(i: usize) -> Delivery {
        Delivery {
            index: i,
            event: Arc::new(i),
        }
    }

    fn queue(capacity: usize, overflow: Overflow, tracks_lag: bool) -> Queue {
        Queue::new(capacity, overflow, tracks_lag, Arc::default())
    }

    fn pop_now(q: &Queue) -> Option<Popped> {
        match q.poll_pop(&mut Context::from_waker(noop_waker_ref())) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("queue would wait"),
        }
    }

    fn pop_index(q: &Queue) -> usize {
        match pop_now(q) {
            Some(Popped::Item(d)) => d.index,
            _ => panic!("expected an item"),
        }
    }

    #[test]
    fn drop_oldest_evicts_and_reports_lag() {
        let q = queue(2, Overflow::DropOldest, true);
        for i in 0..3 {
            assert!(q.push(d(i)).is_ok());
        }
        assert!(matches!(pop_now(&q), Some(Popped::Lagged(1))));
        assert_eq!(pop_index(&q), 1);
        assert_eq!(pop_index(&q), 2);
        assert_eq!(q.finished(), 1, "the evicted item counts as finished");
    }

    #[test]
    fn drop_newest_and_wait_reject_when_full() {
        for policy in [Overflow::DropNewest, Overflow::Wait, Overflow::Fail] {
            let q = queue(1, policy, false);
            assert!(q.push(d(0)).is_ok());
            assert!(matches!(q.push(d(1)), Err((_, Rejected::Full))));
            assert_eq!(pop_index(&q), 0);
        }
    }

    #[test]
    fn closed_queue_drains_then_ends() {
        let q = queue(4, Overflow::Wait, false);
        q.push(d(0)).ok().unwrap();
        q.close();
        assert!(matches!(q.push(d(1)), Err((_, Rejected::Closed))));
        assert_eq!(pop_index(&q), 0);
        assert!(pop_now(&q).is_none());
    }

    #[tokio::test]
    async fn push_wait_waits_for_space() {
        let q = Arc::new(queue(1, Overflow::Wait, false));
        q.push(d(0)).ok().unwrap();
        let q2 = Arc::clone(&q);
        let waiter = tokio::spawn(async move { q2.push_wait(d(1)).await.is_ok() });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert_eq!(pop_index(&q), 0);
        assert!(waiter.await.unwrap());
        assert_eq!(pop_index(&q), 1);
    }

    #[tokio::test]
    async fn push_wait_fails_fast_under_fail_policy() {
        let q = queue(1, Overflow::Fail, false);
        q.push(d(0)).ok().unwrap();
        assert!(matches!(q.push_wait(d(1)).await, Err((_, Rejected::Full))));
    }
}
