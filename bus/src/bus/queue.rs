//! The bounded queue between emitters and one async subscriber.
//!
//! Many producers (every task that emits) and exactly one consumer (the subscriber's task or its
//! [`Subscription`](crate::bus::Subscription)). Who touches what:
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

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;

use super::overflow::Overflow;
use super::tracker::Tracker;
use crate::event::ErasedArc;

/// One queued event: its member index, the shared event, the tracker of an
/// `emit_and_wait` that waits for it, and the span it was emitted in (if any), which its
/// handling continues.
pub(crate) struct Queued {
    pub(crate) index: usize,
    pub(crate) event: ErasedArc,
    pub(crate) tracker: Option<Arc<Tracker>>,
    pub(crate) span: Option<Arc<tracing::Span>>,
}

impl Queued {
    /// The delivery of `event` (member `index`) into `queue`, which it takes: the last
    /// queue of an emit gets the emit's own reference, the others a clone. The tracker of an
    /// `emit_and_wait` follows only listener tasks: for streams and bridges, queuing is
    /// delivery.
    #[inline]
    pub(crate) fn new(
        queue: &EventQueue,
        index: usize,
        event: ErasedArc,
        tracker: Option<&Arc<Tracker>>,
        span: Option<&Arc<tracing::Span>>,
    ) -> Self {
        let tracker = tracker.filter(|_| queue.follows_trackers()).map(|t| {
            t.add();
            Arc::clone(t)
        });
        Queued {
            index,
            event,
            tracker,
            span: span.cloned(),
        }
    }
}

/// The span an event is emitted in, for its handlers to continue; `None` outside any span.
#[inline]
pub(crate) fn emitter_span() -> Option<Arc<tracing::Span>> {
    crate::trace::current_span().map(Arc::new)
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
    Added,
    /// Queued after evicting this older delivery (`DropOldest`).
    Evicted(Queued),
}

/// What the consumer gets.
pub(crate) enum Popped {
    Item(Queued),
    /// This many events were not queued or were evicted since the last pop (stream queues only).
    Missed(u64),
}

/// Who drains a queue, which decides how its misses are reported and what is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsumerKind {
    /// An `on_async` listener task: overflows go to `on_error`; `settle` and `emit_and_wait`
    /// wait for it to handle each event.
    Task,
    /// A user's `Subscription`: misses are reported in the stream as `Missed`.
    Stream,
    /// A stream whose reader forwards what it reads elsewhere
    /// ([`Bus::subscribe_reporting`](crate::bus::Bus::subscribe_reporting)): misses go to
    /// `on_error`, as for a task; queuing counts as delivery, as for a stream.
    Reporting,
    /// A reporting stream whose reader keeps each event durably (an outbound bridge with a
    /// store): `emit_and_wait` waits until the reader settled the event's
    /// [`Ticket`](super::tracker::Ticket), which it does once the event is stored. `settle`
    /// does not wait for it (queuing counts, as for a stream).
    #[cfg_attr(not(feature = "bridge"), allow(dead_code))]
    Stored,
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
    items: VecDeque<Queued>,
    closed: bool,
    /// Events accepted so far (queued, including later-evicted ones).
    pushed: u64,
    /// Misses not yet reported to this stream's consumer, where they happened (stream queues
    /// only): `(offset, n)` means `n` events were missed before `items[offset]` (or after the
    /// last item when `offset == items.len()`). Sorted by offset, at most one gap per offset.
    gaps: VecDeque<(usize, u64)>,
    /// Producers parked in `push_wait`.
    waiting: usize,
    consumer: Option<Waker>,
}

impl State {
    /// Records a miss after the last queued item (the new event was turned away).
    fn gap_at_back(&mut self) {
        let at = self.items.len();
        match self.gaps.back_mut() {
            Some(gap) if gap.0 == at => gap.1 += 1,
            _ => self.gaps.push_back((at, 1)),
        }
    }

    /// Records a miss at the front (the oldest queued item was just evicted): gaps behind it
    /// move up one place, and those that meet at the front merge with it.
    fn gap_at_front(&mut self) {
        let mut missed = 1;
        for gap in &mut self.gaps {
            gap.0 = gap.0.saturating_sub(1);
        }
        while let Some(&(0, n)) = self.gaps.front() {
            missed += n;
            self.gaps.pop_front();
        }
        self.gaps.push_front((0, missed));
    }
}

pub(crate) struct EventQueue {
    capacity: usize,
    overflow: Overflow,
    kind: ConsumerKind,
    state: Mutex<State>,
    /// Events the consumer has taken out of `items` and not yet finished with; written only by
    /// the consumer, counted against the capacity by producers.
    in_hand: AtomicUsize,
    space: Notify,
    /// Events handled (or evicted) so far; `finished <= pushed`. Task queues only.
    finished: AtomicU64,
    /// Events that did not reach this queue's consumer because the queue was full.
    dropped: AtomicU64,
    progress: Arc<Progress>,
}

impl EventQueue {
    pub(crate) fn new(
        capacity: usize,
        overflow: Overflow,
        kind: ConsumerKind,
        progress: Arc<Progress>,
    ) -> Self {
        let capacity = capacity.max(1);
        EventQueue {
            capacity,
            overflow,
            kind,
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity.min(64)),
                closed: false,
                pushed: 0,
                gaps: VecDeque::new(),
                waiting: 0,
                consumer: None,
            }),
            in_hand: AtomicUsize::new(0),
            space: Notify::new(),
            finished: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            progress,
        }
    }

    /// Whether misses are reported to the consumer as lag (streams).
    pub(crate) fn tracks_lag(&self) -> bool {
        self.kind == ConsumerKind::Stream
    }

    /// Whether `settle` waits for this queue's consumer to handle its events.
    pub(crate) fn is_task(&self) -> bool {
        self.kind == ConsumerKind::Task
    }

    /// Whether `emit_and_wait` waits for this queue's consumer to handle its events.
    pub(crate) fn follows_trackers(&self) -> bool {
        matches!(self.kind, ConsumerKind::Task | ConsumerKind::Stored)
    }

    pub(crate) fn overflow(&self) -> Overflow {
        self.overflow
    }

    fn is_full(&self, state: &State) -> bool {
        state.items.len() + self.in_hand.load(Ordering::Relaxed) >= self.capacity
    }

    /// Queues `delivery` without waiting, applying the overflow policy when full.
    #[inline]
    pub(crate) fn push(&self, delivery: Queued) -> Result<Pushed, (Queued, Rejected)> {
        let state = self.state.lock();
        if state.closed || self.is_full(&state) {
            return self.push_locked(state, delivery);
        }
        // The common case, inline in the emit's loop: room, and nothing to evict or report.
        self.append(state, delivery);
        Ok(Pushed::Added)
    }

    /// Queues `delivery` at the back and wakes the consumer if it waits for it.
    #[inline]
    fn append(&self, mut state: MutexGuard<'_, State>, delivery: Queued) {
        state.items.push_back(delivery);
        state.pushed += 1;
        let waker = state.consumer.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
    }

    #[inline(never)]
    fn push_locked(
        &self,
        mut state: MutexGuard<'_, State>,
        delivery: Queued,
    ) -> Result<Pushed, (Queued, Rejected)> {
        if state.closed {
            return Err((delivery, Rejected::Closed));
        }
        let mut outcome = Pushed::Added;
        if self.is_full(&state) {
            // Events the consumer already holds are never discarded: with nothing left in the
            // queue to evict, `DropOldest` turns the new event away instead.
            let evicted = match self.overflow {
                Overflow::DropOldest => state.items.pop_front(),
                Overflow::Wait | Overflow::DropNewest | Overflow::Fail => None,
            };
            match evicted {
                Some(old) => {
                    outcome = Pushed::Evicted(old);
                    if self.tracks_lag() {
                        state.gap_at_front();
                    }
                }
                None => {
                    let waker = if self.tracks_lag() {
                        state.gap_at_back();
                        state.consumer.take()
                    } else {
                        None
                    };
                    drop(state);
                    if let Some(w) = waker {
                        w.wake();
                    }
                    return Err((delivery, Rejected::Full));
                }
            }
        }
        self.append(state, delivery);
        if matches!(outcome, Pushed::Evicted(_)) && self.is_task() {
            self.finish_one();
            self.signal_progress();
        }
        Ok(outcome)
    }

    /// [`push_wait`](Self::push_wait) when it would not wait: the push's result, or the
    /// delivery back when the queue is full and its policy is to wait for room.
    #[inline]
    pub(crate) fn push_now(
        &self,
        delivery: Queued,
    ) -> Result<Result<Pushed, (Queued, Rejected)>, Queued> {
        let state = self.state.lock();
        if !state.closed && !self.is_full(&state) {
            self.append(state, delivery);
            return Ok(Ok(Pushed::Added));
        }
        if self.overflow == Overflow::Fail || state.closed {
            Ok(self.push_locked(state, delivery))
        } else {
            Err(delivery)
        }
    }

    /// Queues `delivery` even when the queue is full (not when it is closed): for an async
    /// listener emitting into its own queue, which would wait for room only it can make.
    pub(crate) fn push_over(&self, delivery: Queued) -> Result<Pushed, (Queued, Rejected)> {
        let state = self.state.lock();
        if state.closed {
            return self.push_locked(state, delivery);
        }
        self.append(state, delivery);
        Ok(Pushed::Added)
    }

    /// Queues `delivery`, waiting for space when full; [`Overflow::Fail`] queues never wait.
    pub(crate) async fn push_wait(&self, delivery: Queued) -> Result<Pushed, (Queued, Rejected)> {
        struct Waiting<'a>(&'a Mutex<State>);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.lock().waiting -= 1;
            }
        }
        if self.overflow == Overflow::Fail {
            return self.push(delivery);
        }
        loop {
            let mut space = pin!(self.space.notified());
            {
                let mut state = self.state.lock();
                if state.closed || !self.is_full(&state) {
                    return self.push_locked(state, delivery);
                }
                // Registered before unlocking, so the consumer's next take cannot be missed.
                space.as_mut().enable();
                state.waiting += 1;
            }
            let _waiting = Waiting(&self.state);
            space.await;
        }
    }

    /// The consumer's side. Serves from `batch` (the consumer's own buffer) and, when it is
    /// empty, takes everything queued into it under one lock. Yields the next item, a lag
    /// report, or `None` once the queue is closed and drained.
    pub(crate) fn poll_pop(
        &self,
        cx: &mut Context<'_>,
        batch: &mut VecDeque<Queued>,
    ) -> Poll<Option<Popped>> {
        if let Some(item) = batch.pop_front() {
            self.in_hand.store(batch.len(), Ordering::Relaxed);
            return Poll::Ready(Some(Popped::Item(item)));
        }
        let mut state = self.state.lock();
        if let Some(&(0, n)) = state.gaps.front() {
            state.gaps.pop_front();
            return Poll::Ready(Some(Popped::Missed(n)));
        }
        if state.items.is_empty() {
            if state.closed {
                return Poll::Ready(None);
            }
            match &mut state.consumer {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            let notify = state.waiting > 0;
            drop(state);
            if notify {
                self.space.notify_waiters();
            }
            return Poll::Pending;
        }
        match state.gaps.front().map(|g| g.0) {
            // The common case: no gap, take everything.
            None => std::mem::swap(&mut state.items, batch),
            // Take the items before the first gap, so the gap is reported where it happened.
            Some(upto) => {
                batch.extend(state.items.drain(..upto));
                for gap in &mut state.gaps {
                    gap.0 -= upto;
                }
            }
        }
        let item = batch.pop_front();
        self.in_hand.store(batch.len(), Ordering::Relaxed);
        let notify = state.waiting > 0;
        drop(state);
        if notify {
            self.space.notify_waiters();
        }
        Poll::Ready(item.map(Popped::Item))
    }

    pub(crate) async fn pop(&self, batch: &mut VecDeque<Queued>) -> Option<Popped> {
        std::future::poll_fn(|cx| self.poll_pop(cx, batch)).await
    }

    /// Marks one popped item as handled (for `settle`); task queues only. Call
    /// [`signal_progress`](Self::signal_progress) once the consumer's batch is done.
    pub(crate) fn finish_one(&self) {
        self.finish(1);
    }

    /// Marks `n` popped items as handled, as [`finish_one`](Self::finish_one) does one.
    pub(crate) fn finish(&self, n: u64) {
        self.finished.fetch_add(n, Ordering::SeqCst);
    }

    /// Wakes `settle` callers to look at `finished` again.
    pub(crate) fn signal_progress(&self) {
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

    /// Closes the queue and takes what is still in it (not what the consumer holds).
    pub(crate) fn close_and_take(&self) -> Vec<Queued> {
        self.close();
        let items: Vec<Queued> = self.state.lock().items.drain(..).collect();
        if self.is_task() {
            for _ in &items {
                self.finish_one();
            }
            self.signal_progress();
        }
        items
    }

    /// Closes the queue and takes the trackers of what is still in it, leaving the events
    /// (for gauges to count).
    pub(crate) fn close_and_take_trackers(&self) -> Vec<(usize, Arc<Tracker>)> {
        self.close();
        let mut state = self.state.lock();
        let items = state.items.iter_mut();
        items
            .filter_map(|d| Some((d.index, d.tracker.take()?)))
            .collect()
    }

    /// Counts an event this queue's consumer will not get because the queue was full.
    pub(crate) fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Events dropped by overflow so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events accepted so far.
    pub(crate) fn pushed(&self) -> u64 {
        self.state.lock().pushed
    }

    /// Events handled (or evicted) so far.
    pub(crate) fn finished(&self) -> u64 {
        self.finished.load(Ordering::SeqCst)
    }

    /// Events queued or held by the consumer and not yet handled.
    pub(crate) fn len(&self) -> usize {
        self.state.lock().items.len() + self.in_hand.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;

    fn d(i: usize) -> Queued {
        Queued {
            index: i,
            event: Arc::new(i),
            tracker: None,
            span: None,
        }
    }

    fn queue(capacity: usize, overflow: Overflow, tracks_lag: bool) -> EventQueue {
        let kind = if tracks_lag {
            ConsumerKind::Stream
        } else {
            ConsumerKind::Task
        };
        EventQueue::new(capacity, overflow, kind, Arc::default())
    }

    fn pop_now(q: &EventQueue) -> Option<Popped> {
        // One item per take, so each test sees the queue as it is.
        let mut batch = VecDeque::new();
        let popped = q.poll_pop(&mut Context::from_waker(noop_waker_ref()), &mut batch);
        let mut state = q.state.lock();
        for gap in &mut state.gaps {
            gap.0 += batch.len();
        }
        for d in batch.into_iter().rev() {
            state.items.push_front(d);
        }
        drop(state);
        q.in_hand.store(0, Ordering::Relaxed);
        match popped {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("queue would wait"),
        }
    }

    fn pop_index(q: &EventQueue) -> usize {
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
        assert!(matches!(pop_now(&q), Some(Popped::Missed(1))));
        assert_eq!(pop_index(&q), 1);
        assert_eq!(pop_index(&q), 2);
        assert_eq!(q.finished(), 0, "stream queues do not track finishing");

        let q = queue(2, Overflow::DropOldest, false);
        for i in 0..3 {
            assert!(q.push(d(i)).is_ok());
        }
        assert_eq!(q.finished(), 1, "the evicted item counts as finished");
    }

    #[test]
    fn turned_away_events_are_reported_after_what_was_queued_before_them() {
        for policy in [Overflow::Wait, Overflow::DropNewest, Overflow::Fail] {
            let q = queue(2, policy, true);
            for i in 0..5 {
                let _ = q.push(d(i));
            }
            assert_eq!(pop_index(&q), 0);
            assert_eq!(pop_index(&q), 1);
            assert!(matches!(pop_now(&q), Some(Popped::Missed(3))), "{policy:?}");
        }
    }

    #[test]
    fn events_in_the_consumers_hand_count_against_capacity() {
        let q = queue(3, Overflow::DropOldest, true);
        for i in 0..3 {
            q.push(d(i)).ok().unwrap();
        }
        let mut batch = VecDeque::new();
        let cx = &mut Context::from_waker(noop_waker_ref());
        assert!(matches!(
            q.poll_pop(cx, &mut batch),
            Poll::Ready(Some(Popped::Item(_)))
        ));
        assert_eq!(q.len(), 2, "two taken, not yet handled");
        q.push(d(3)).ok().unwrap();
        // Full again: the oldest *queued* event goes, never one the consumer holds.
        assert!(matches!(
            q.push(d(4)),
            Ok(Pushed::Evicted(Queued { index: 3, .. }))
        ));
        assert_eq!(q.len(), 3);
        let held: Vec<usize> = batch.iter().map(|d| d.index).collect();
        assert_eq!(held, [1, 2]);
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
