//! The emits that wait for room: [`EmitAsync`] (what [`Bus::emit_async`] returns) and the
//! queue-filling step `emit_and_wait` shares with it.
//!
//! Why a named future rather than an `async fn`: an `async fn` generic over `E: Member<S>`
//! returns an opaque type that repeats the bound, so a non-member event was reported three
//! times (the argument, the call's return type, the `.await`). Here only the constructor has the
//! bound; it picks `start::<E>`, a function pointer, and the `Future` impl needs nothing of `E`,
//! so the error is reported once, at the argument.
//!
//! The typed first step ([`start`]) does what an emit that never waits does: inside one read
//! of the listener list, the sync listeners, then one shared `Arc` pushed into each async queue
//! that has room (or whose policy never waits). Only a full `Wait` queue makes the rest a
//! [`Deliver`], which is not generic: it takes a reference to the list (the read ends when the
//! typed step returns), boxes the waiting push, and goes on with the queues after it. The
//! common case takes no reference count and builds nothing to wait with.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

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
                    let deliver = start(this.inner, event, None);
                    if let Some(reached) = deliver.finished() {
                        // The common case: nothing to wait for, nothing kept.
                        return Poll::Ready(Ok(reached));
                    }
                    this.step = Step::Delivering(deliver);
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

/// The typed step: runs the sync listeners and pushes the shared event into each queue that has
/// room, inside one read of the listener list (no reference count taken). Only when a queue
/// must be waited for does the rest become a [`Deliver`] that holds the list and waits.
pub(super) fn start<S: EventSet, E: Member<S>>(
    inner: &Inner<S>,
    event: E,
    tracker: Option<Arc<Tracker>>,
) -> Deliver<'_> {
    let mut deliver = Deliver {
        shared: &inner.shared,
        names: S::NAMES,
        left: Left::Nothing,
        index: E::INDEX,
        tracker,
        span: None,
        next: 0,
        reached: 0,
        waiting: None,
    };
    let header = &inner.slots[E::INDEX];
    if header.live() == 0 {
        return deliver;
    }
    let slot = header.typed::<E>();
    let read = inner.shared.readers.read();
    let list = slot.list.read(&read);
    deliver.reached = inner.run_sync(&list.sync, &event, deliver.tracker.as_deref());
    if !list.queues.is_empty() {
        let mut event: Option<ErasedArc> = Some(Arc::new(event));
        deliver.span = super::queue::emitter_span();
        if let Some(delivery) = deliver.push_from(&list.queues, &mut event) {
            // Full, and its policy is to wait: the rest waits, holding the list.
            deliver.waiting = Some(wait_for_room(&list.queues[deliver.next - 1], delivery));
            deliver.left = Left::Pushing(slot.list.load_full(&read), event);
            return deliver;
        }
    }
    deliver.count();
    deliver.left = Left::Done;
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

/// What is left of an emit once its typed step ran.
enum Left {
    /// The event had no listener: resolves to 0 and counts nothing, as `emit` does.
    Nothing,
    /// Every delivery is made and the emit counted: resolves to `reached`.
    Done,
    /// Pushes into the list's queues from `next` on (the one before it possibly waiting for
    /// room), then counts the emit. The event is gone once the last queue took it.
    Pushing(Arc<dyn Queues>, Option<ErasedArc>),
}

/// The rest of an emit that waits for room: pushes the shared event into each remaining async
/// queue of a listener list, waiting where the queue's policy says so; resolves to the number of
/// listeners reached (sync ones included) after counting the emit.
pub(super) struct Deliver<'a> {
    shared: &'a BusShared,
    names: &'static [&'static str],
    left: Left,
    index: usize,
    tracker: Option<Arc<Tracker>>,
    /// The span the event was emitted in.
    span: Option<Arc<tracing::Span>>,
    /// The next queue to push into.
    next: usize,
    reached: usize,
    /// A push into queue `next - 1` waiting for room.
    waiting: Option<Waiting>,
}

/// A push waiting for room in a full queue.
type Waiting = BoxFuture<'static, Result<Pushed, (Queued, Rejected)>>;

impl Deliver<'_> {
    /// What it resolves to, when nothing is left to wait for.
    fn finished(&self) -> Option<usize> {
        match self.left {
            Left::Nothing => Some(0),
            Left::Done => Some(self.reached),
            Left::Pushing(..) => None,
        }
    }

    /// Pushes the shared `event` into `queues` from `next` on, each at once (room, or a policy
    /// that never waits); stops at the first queue that must be waited for and hands back its
    /// delivery (`next` is then past that queue). The last queue takes `event` itself rather
    /// than a clone (one reference-count increment and one decrement fewer per emit), which
    /// leaves `None` behind.
    #[inline]
    fn push_from(
        &mut self,
        queues: &[QueueEntry],
        event: &mut Option<ErasedArc>,
    ) -> Option<Queued> {
        while let Some(entry) = queues.get(self.next) {
            self.next += 1;
            let shared = if self.next == queues.len() {
                event.take()
            } else {
                event.clone()
            };
            // `None` only once the last queue took the event, so never inside this loop.
            let Some(shared) = shared else { break };
            // Not the calling listener's own delivery: see `Tracker::caller`.
            let tracker = (self.tracker.as_ref()).filter(|t| t.caller != Some(entry.id));
            let delivery = Queued::new(
                &entry.queue,
                self.index,
                shared,
                tracker,
                self.span.as_ref(),
            );
            match entry.queue.push_now(delivery) {
                Ok(Ok(Pushed::Added)) => self.reached += 1,
                Ok(result) => {
                    self.reached += usize::from(self.shared.pushed(entry, result, self.names));
                }
                Err(delivery) => {
                    if let Some(delivery) = self.push_own(entry, delivery) {
                        return Some(delivery);
                    }
                }
            }
        }
        None
    }

    /// A delivery that would wait for room in `entry`'s queue: when that is the queue of the
    /// async listener emitting it, which would wait for room only it can make, it goes in past
    /// the capacity; otherwise it is handed back to be waited for.
    #[cold]
    #[inline(never)]
    fn push_own(&mut self, entry: &QueueEntry, delivery: Queued) -> Option<Queued> {
        if super::runtime::running_listener() != Some(entry.id) {
            return Some(delivery);
        }
        let result = entry.queue.push_over(delivery);
        self.reached += usize::from(self.shared.pushed(entry, result, self.names));
        None
    }

    /// Counts the emit, once every delivery is made.
    fn count(&self) {
        self.shared.readers.local().emitted(self.reached);
        #[cfg(feature = "metrics")]
        crate::record::emitted(self.names[self.index], self.reached);
    }
}

/// The push of `delivery` into `entry`'s queue once it has room.
fn wait_for_room(entry: &QueueEntry, delivery: Queued) -> Waiting {
    let queue = Arc::clone(&entry.queue);
    Box::pin(async move { queue.push_wait(delivery).await })
}

impl Future for Deliver<'_> {
    type Output = usize;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let this = &mut *self;
        let (list, mut event) = match std::mem::replace(&mut this.left, Left::Done) {
            Left::Pushing(list, event) => (list, event),
            Left::Nothing => {
                this.left = Left::Nothing;
                return Poll::Ready(0);
            }
            Left::Done => return Poll::Ready(this.reached),
        };
        let queues = list.queues();
        loop {
            if let Some(waiting) = &mut this.waiting {
                let Poll::Ready(result) = waiting.as_mut().poll(cx) else {
                    this.left = Left::Pushing(list, event);
                    return Poll::Pending;
                };
                this.waiting = None;
                let entry = &queues[this.next - 1];
                this.reached += usize::from(this.shared.pushed(entry, result, this.names));
            }
            match this.push_from(queues, &mut event) {
                Some(delivery) => {
                    this.waiting = Some(wait_for_room(&queues[this.next - 1], delivery));
                }
                None => break,
            }
        }
        this.count();
        Poll::Ready(this.reached)
    }
}
