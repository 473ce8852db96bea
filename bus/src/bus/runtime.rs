//! The async listener runtime: one task per `on_async` listener draining its queue, one call at
//! a time or up to its concurrency, with panics caught and every outcome accounted for.
//!
//! Who touches what: the task alone pops its queue and owns what it popped ([`Held`]); it
//! reports through [`BusShared`], and removes itself from the registry when its queue ends.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};

use futures_util::future::Either;
use futures_util::FutureExt;
use parking_lot::Mutex;
use tracing::Instrument;

use super::dispatch::BusShared;
use super::error::{ListenerError, ListenerErrorKind};
use super::inner::Inner;
use super::listener::ListenerId;
use super::listener::ListenerResult;
use super::queue::{EventQueue, Popped, Queued};
use super::tracker::Tracker;
use crate::event::{AnyEvent, EventSet, Member};
use crate::message::MessageContext;

thread_local! {
    /// The id of the async listener whose task this thread is polling (0: none).
    static RUNNING: Cell<u64> = const { Cell::new(0) };
}

/// The async listener whose task is running on this thread, when called from inside it (its
/// call of the listener included): what `emit_and_wait` and `settle` must not wait for.
pub(super) fn running_listener() -> Option<ListenerId> {
    let id = RUNNING.with(Cell::get);
    (id != 0).then_some(ListenerId(id))
}

/// Runs `task`, the task of async listener `id`, with [`running_listener`] naming it
/// whenever it is polled.
pub(super) fn as_listener<F: Future>(id: ListenerId, task: F) -> impl Future<Output = F::Output> {
    crate::spawn::marked(&RUNNING, id.0, task)
}

pub(super) fn typed<S: EventSet, E: Member<S>>(d: Queued) -> Option<Arc<E>> {
    d.event.downcast::<E>().ok()
}

pub(super) fn erased<S: EventSet>(d: Queued) -> Option<AnyEvent<S>> {
    Some(AnyEvent::from_erased(d.index, d.event))
}

/// What the task holds; if the task is cancelled, its drop records it for `shutdown`, fails
/// the trackers of the events it will never handle, and counts them as done for `settle`.
struct Held {
    batch: VecDeque<Queued>,
    /// The event being handled: its index and tracker.
    current: Option<(usize, Option<Arc<Tracker>>)>,
    /// With concurrency: the events being handled, by slot.
    running: Vec<Option<(usize, Option<Arc<Tracker>>)>>,
    leftover: Arc<Mutex<Vec<usize>>>,
    names: &'static [&'static str],
    id: ListenerId,
    /// Calls finished since the queue's `finished` count was last raised: it is raised once
    /// per batch, when `settle` is told to look (one atomic add per batch, not per event).
    unsettled: u64,
    queue: Arc<EventQueue>,
}
impl Drop for Held {
    fn drop(&mut self) {
        let current = self.current.take().into_iter();
        let running = self.running.iter_mut().filter_map(Option::take);
        let queued = self.batch.drain(..).map(|d| (d.index, d.tracker));
        let held: Vec<(usize, Option<Arc<Tracker>>)> =
            current.chain(running).chain(queued).collect();
        // What it held will never be handled (it is reported as left over): done, for a
        // `settle` waiting on this queue, as the calls it finished are.
        self.unsettled += held.len() as u64;
        self.settle();
        if held.is_empty() {
            return;
        }
        let mut leftover = self.leftover.lock();
        for (index, tracker) in held {
            leftover.push(index);
            if let Some(tracker) = tracker {
                let kind = ListenerErrorKind::Closed;
                tracker.fail(ListenerError::new(self.names[index], Some(self.id), kind));
                tracker.finish();
            }
        }
    }
}

/// What an async listener's task works with.
pub(super) struct Listening<S: EventSet> {
    pub(super) id: ListenerId,
    pub(super) queue: Arc<EventQueue>,
    pub(super) shared: Arc<BusShared>,
    pub(super) bus: Weak<Inner<S>>,
    pub(super) leftover: Arc<Mutex<Vec<usize>>>,
    /// Calls run at once.
    pub(super) concurrency: usize,
}

/// The body of an async listener's task: handle queued events (one at a time, or up to its
/// concurrency at once) until the queue is closed and drained.
pub(super) async fn run_listener<S, T, F, Fut>(
    listening: Listening<S>,
    convert: fn(Queued) -> Option<T>,
    listener: F,
) where
    S: EventSet,
    F: Fn(T) -> Fut,
    Fut: Future,
    Fut::Output: ListenerResult,
{
    let Listening {
        id,
        queue,
        shared,
        bus,
        leftover,
        concurrency,
    } = listening;
    let mut held = Held {
        batch: VecDeque::new(),
        current: None,
        running: Vec::new(),
        leftover,
        names: S::NAMES,
        id,
        unsettled: 0,
        queue,
    };
    if concurrency > 1 {
        // Boxed, so that its state stays out of the one-at-a-time loop's future: inline, it
        // took `async_fanout/tidings_on_async/1` from about 6 to 2.7 M events/s.
        Box::pin(run_concurrently(
            &mut held,
            &shared,
            concurrency,
            convert,
            &listener,
        ))
        .await;
    }
    while let Some(popped) = held.queue.pop(&mut held.batch).await {
        // Task queues report overflow through `on_error` when it happens, not here.
        let Popped::Item(delivery) = popped else {
            continue;
        };
        let mut delivery = delivery;
        let context = context_of(&delivery);
        held.current = Some((delivery.index, delivery.tracker.take()));
        #[cfg(feature = "metrics")]
        let (name, started) = (held.names[delivery.index], std::time::Instant::now());
        let outcome = match start_call(&held, &listener, convert, delivery, context) {
            Some(call) => Some(call.await),
            None => None,
        };
        #[cfg(feature = "metrics")]
        crate::record::handled(name, started.elapsed());
        let call = held.current.take();
        finish_call(&mut held, &shared, call, outcome);
    }
    if let Some(inner) = bus.upgrade() {
        inner.registry.lock().tasks.remove(&id);
    }
    shared.tasks_done.notify_waiters();
}

impl Held {
    /// Counts the finished calls for `settle` and tells it to look again.
    fn settle(&mut self) {
        if self.unsettled > 0 {
            self.queue.finish(std::mem::take(&mut self.unsettled));
            self.queue.signal_progress();
        }
    }
}

/// One call finished (`outcome` is `None` when the event could not be handed to the
/// listener): record the outcome, release the tracker, count it for `settle`.
fn finish_call(
    held: &mut Held,
    shared: &BusShared,
    call: Option<(usize, Option<Arc<Tracker>>)>,
    outcome: Option<Result<(), ListenerErrorKind>>,
) {
    let Some((index, tracker)) = call else {
        return;
    };
    match outcome {
        Some(Ok(())) => shared.readers.local().handled(),
        Some(Err(kind)) => {
            let error = ListenerError::new(held.names[index], Some(held.id), kind);
            shared.report(error, tracker.as_deref());
        }
        None => {}
    }
    if let Some(tracker) = tracker {
        tracker.finish();
    }
    held.unsettled += 1;
    // `settle` only needs to look again once the batch in hand is done.
    if held.batch.is_empty() {
        held.settle();
    }
}

/// The loop of an async listener with concurrency above 1: keep up to `concurrency` calls
/// running, start the next as soon as one finishes, and return once the queue is closed and
/// every call finished.
async fn run_concurrently<T, F, Fut>(
    held: &mut Held,
    shared: &BusShared,
    concurrency: usize,
    convert: fn(Queued) -> Option<T>,
    listener: &F,
) where
    F: Fn(T) -> Fut,
    Fut: Future,
    Fut::Output: ListenerResult,
{
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let mut running = FuturesUnordered::new();
    let mut open = true;
    while open || !running.is_empty() {
        // Either the next event (when there is room) or a finished call.
        let next = if open && running.len() < concurrency {
            if running.is_empty() {
                Ok(held.queue.pop(&mut held.batch).await)
            } else {
                tokio::select! {
                    biased;
                    popped = held.queue.pop(&mut held.batch) => Ok(popped),
                    done = running.next() => Err(done),
                }
            }
        } else {
            Err(running.next().await)
        };
        match next {
            Err(Some((slot, outcome))) => {
                let slot: usize = slot;
                let call = held.running[slot].take();
                finish_call(held, shared, call, outcome);
            }
            Err(None) => {}
            Ok(None) => open = false,
            Ok(Some(Popped::Missed(_))) => {}
            Ok(Some(Popped::Item(mut delivery))) => {
                let index = delivery.index;
                let context = context_of(&delivery);
                let taken = Some((index, delivery.tracker.take()));
                let slot = match held.running.iter().position(Option::is_none) {
                    Some(free) => {
                        held.running[free] = taken;
                        free
                    }
                    None => {
                        held.running.push(taken);
                        held.running.len() - 1
                    }
                };
                #[cfg(feature = "metrics")]
                let (name, started) = (held.names[index], std::time::Instant::now());
                match start_call(held, listener, convert, delivery, context) {
                    Some(call) => running.push(call.map(move |outcome| {
                        #[cfg(feature = "metrics")]
                        crate::record::handled(name, started.elapsed());
                        (slot, Some(outcome))
                    })),
                    None => {
                        let call = held.running[slot].take();
                        finish_call(held, shared, call, None);
                    }
                }
            }
        }
    }
}

/// The call of `listener` for `delivery`, in its `tidings.handle` span; `None` when the event
/// cannot be handed to the listener (`convert` refused it).
fn start_call<'a, T, F, Fut>(
    held: &Held,
    listener: &'a F,
    convert: fn(Queued) -> Option<T>,
    delivery: Queued,
    context: Option<Arc<MessageContext>>,
) -> Option<impl Future<Output = Result<(), ListenerErrorKind>> + 'a>
where
    F: Fn(T) -> Fut,
    Fut: Future + 'a,
    Fut::Output: ListenerResult,
    T: 'a,
{
    let event = held.names[delivery.index];
    let mut delivery = delivery;
    let origin = delivery.span.take();
    let item = convert(delivery)?;
    // A child of the span the event was emitted in, so the trace goes on across the task; when
    // this span level is filtered out, the emitter's span itself carries it.
    let span = match origin {
        None => tracing::trace_span!("tidings.handle", event, listener = %held.id),
        Some(origin) => {
            let child = tracing::trace_span!(parent: &*origin, "tidings.handle", event, listener = %held.id);
            if child.is_disabled() {
                (*origin).clone()
            } else {
                child
            }
        }
    };
    let call = call_async(listener, item).instrument(span);
    // Only events from a broker message carry a context; the others pay nothing for it.
    Some(match context {
        None => Either::Left(call),
        Some(context) => Either::Right(context.scope(call)),
    })
}

/// The message context `delivery` carries: that of the `emit_and_wait` it belongs to.
fn context_of(delivery: &Queued) -> Option<Arc<MessageContext>> {
    delivery.tracker.as_ref()?.context.clone()
}

async fn call_async<T, F, Fut>(listener: &F, item: T) -> Result<(), ListenerErrorKind>
where
    F: Fn(T) -> Fut,
    Fut: Future,
    Fut::Output: ListenerResult,
{
    let future = catch_unwind(AssertUnwindSafe(|| listener(item)))
        .map_err(|p| ListenerErrorKind::Panicked(crate::panic::message(&*p)))?;
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(result) => result.into_result().map_err(ListenerErrorKind::Failed),
        Err(p) => Err(ListenerErrorKind::Panicked(crate::panic::message(&*p))),
    }
}
