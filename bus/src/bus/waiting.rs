//! The emits that wait for room: [`EmitAsync`] (what [`Bus::emit_async`] returns) and the
//! queue-filling step `emit_and_wait` shares with it.
//!
//! Why a named future rather than an `async fn`: an `async fn` generic over `E: Member<S>`
//! returns an opaque type that repeats the bound, so a non-member event was reported three
//! times (the argument, the call's return type, the `.await`). Here only the constructor has the
//! bound; it picks `start::<E>`, a function pointer, and the `Future` impl needs nothing of `E`,
//! so the error is reported once, at the argument.
//!
//! After the typed first step (sync listeners, one shared `Arc`), the rest is not generic:
//! [`Deliver`] pushes into each async queue in turn. A push that finds room (or a policy that
//! never waits) completes at once; only a full `Wait` queue boxes a waiting push, and that
//! costs nothing next to the wait itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_util::future::BoxFuture;

use super::dispatch::BusShared;
use super::error::Closed;
use super::inner::Inner;
use super::queue::{Pushed, Queued, Rejected};
use super::slot::{QueueEntry, SlotList};
use super::tracker::Tracker;
use super::Bus;
use crate::event::{ErasedArc, EventSet, Member};

/// The future [`Bus::emit_async`] returns; resolves to how many listeners the event reached.
///
/// Nothing happens until it is first polled. Dropping it part way leaves the event with the
/// listeners it already reached.
#[must_use = "futures do nothing unless polled; the event is not emitted until then"]
pub struct EmitAsync<'a, S: EventSet, E> {
    inner: &'a Inner<S>,
    step: Step<'a, S, E>,
}

enum Step<'a, S: EventSet, E> {
    Start { event: E, start: Start<S, E> },
    Delivering(Deliver<'a>),
    Done,
}

type Start<S, E> = for<'i> fn(&'i Inner<S>, E, Option<Arc<Tracker>>) -> Deliver<'i>;

// `E` is only ever moved, never pinned.
impl<S: EventSet, E> Unpin for EmitAsync<'_, S, E> {}

impl<S: EventSet> Bus<S> {
    pub(super) fn emit_async_future<E: Member<S>>(&self, event: E) -> EmitAsync<'_, S, E> {
        EmitAsync {
            inner: &self.inner,
            step: Step::Start {
                event,
                start: start::<S, E>,
            },
        }
    }
}

impl<S: EventSet, E> Future for EmitAsync<'_, S, E> {
    type Output = Result<usize, Closed<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            match std::mem::replace(&mut this.step, Step::Done) {
                Step::Start { event, start } => {
                    if this.inner.shared.closed.load(Ordering::Acquire) {
                        return Poll::Ready(Err(Closed(event)));
                    }
                    this.step = Step::Delivering(start(this.inner, event, None));
                }
                Step::Delivering(mut deliver) => {
                    return match Pin::new(&mut deliver).poll(cx) {
                        Poll::Ready(reached) => Poll::Ready(Ok(reached)),
                        Poll::Pending => {
                            this.step = Step::Delivering(deliver);
                            Poll::Pending
                        }
                    };
                }
                Step::Done => panic!("`EmitAsync` polled after completion"),
            }
        }
    }
}

/// The typed step: runs the sync listeners and makes the event shared for the queues.
pub(super) fn start<S: EventSet, E: Member<S>>(
    inner: &Inner<S>,
    event: E,
    tracker: Option<Arc<Tracker>>,
) -> Deliver<'_> {
    let mut deliver = Deliver {
        shared: &inner.shared,
        names: S::NAMES,
        queued: None,
        index: E::INDEX,
        tracker,
        span: None,
        next: 0,
        reached: 0,
        waiting: None,
    };
    let Some(list) = inner.snapshot::<E>() else {
        return deliver;
    };
    deliver.reached = inner.run_sync(&list.sync, &event, deliver.tracker.as_deref());
    let event = (!list.queues.is_empty()).then(|| Arc::new(event) as ErasedArc);
    if event.is_some() {
        deliver.span = super::queue::emitter_span();
    }
    deliver.queued = Some((list, event));
    deliver
}

/// A listener list whose event type no longer matters: only its queues are left to fill.
trait Queues: Send + Sync {
    fn queues(&self) -> &[QueueEntry];
}

impl<S: Send + Sync, E: Send + Sync> Queues for SlotList<S, E> {
    fn queues(&self) -> &[QueueEntry] {
        &self.queues
    }
}

/// Pushes one shared event into each async queue of a listener list, waiting for room where
/// the queue's policy says so; resolves to the number of listeners reached (sync ones included)
/// after counting the emit. With no listeners at all it resolves to 0 and counts nothing, as
/// `emit` does.
pub(super) struct Deliver<'a> {
    shared: &'a BusShared,
    names: &'static [&'static str],
    /// The listener list and, when it has queues, the shared event; `None` without listeners.
    queued: Option<(Arc<dyn Queues>, Option<ErasedArc>)>,
    index: usize,
    tracker: Option<Arc<Tracker>>,
    /// The span the event was emitted in.
    span: Option<Arc<tracing::Span>>,
    /// The next queue to push into.
    next: usize,
    reached: usize,
    /// A push into queue `next - 1` waiting for room.
    waiting: Option<BoxFuture<'static, Result<Pushed, (Queued, Rejected)>>>,
}

impl Future for Deliver<'_> {
    type Output = usize;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let this = &mut *self;
        let Some((list, event)) = &this.queued else {
            return Poll::Ready(0);
        };
        let queues = list.queues();
        if let Some(waiting) = &mut this.waiting {
            let result = ready!(waiting.as_mut().poll(cx));
            this.waiting = None;
            let entry = &queues[this.next - 1];
            this.reached += usize::from(this.shared.pushed(entry, result, this.names));
        }
        if let Some(event) = event {
            while let Some(entry) = queues.get(this.next) {
                this.next += 1;
                let delivery = Queued::new(
                    &entry.queue,
                    this.index,
                    event,
                    this.tracker.as_ref(),
                    this.span.as_ref(),
                );
                let result = match entry.queue.push_now(delivery) {
                    Ok(Ok(Pushed::Added)) => {
                        this.reached += 1;
                        continue;
                    }
                    Ok(result) => result,
                    Err(delivery) => {
                        let queue = Arc::clone(&entry.queue);
                        let mut waiting: BoxFuture<'static, _> =
                            Box::pin(async move { queue.push_wait(delivery).await });
                        match waiting.as_mut().poll(cx) {
                            Poll::Ready(result) => result,
                            Poll::Pending => {
                                this.waiting = Some(waiting);
                                return Poll::Pending;
                            }
                        }
                    }
                };
                this.reached += usize::from(this.shared.pushed(entry, result, this.names));
            }
        }
        this.shared.readers.local().emitted(this.reached);
        #[cfg(feature = "metrics")]
        crate::record::emitted(this.names[this.index], this.reached);
        Poll::Ready(this.reached)
    }
}
