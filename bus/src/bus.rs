//! The typed in-process event bus.
//!
//! A [`Bus<S>`] carries the events of one [`EventSet`] `S`. It does what Node's `EventEmitter`
//! does, typed: [`on`](Bus::on), [`once`](Bus::once), [`off`](Bus::off),
//! [`remove_all_listeners`](Bus::remove_all_listeners), [`listener_count`](Bus::listener_count),
//! [`emit`](Bus::emit) and an [`on_error`](Bus::on_error) channel; and more: async listeners with
//! bounded queues ([`on_async`](Bus::on_async)), streams ([`subscribe`](Bus::subscribe)), topic
//! patterns ([`on_pattern`](Bus::on_pattern)), backpressure ([`emit_async`](Bus::emit_async)),
//! deterministic tests ([`settle`](Bus::settle)) and an orderly [`shutdown`](Bus::shutdown).
//!
//! ```
//! use tidings::prelude::*;
//!
//! #[derive(Debug, Clone, Event)]
//! struct UserCreated { name: String }
//!
//! #[derive(EventSet)]
//! #[event_set(no_codec)]
//! enum Events { UserCreated(UserCreated) }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let bus = Bus::<Events>::new();
//! bus.on(|e: &UserCreated| println!("hello, {}", e.name));
//! let mut stream = bus.subscribe::<UserCreated>();
//!
//! assert_eq!(bus.emit(UserCreated { name: "ada".into() }), 2);
//! let event = stream.recv().await.unwrap().unwrap();
//! assert_eq!(event.name, "ada");
//! # }
//! ```
//!
//! ## Delivery
//!
//! Sync listeners (`on`, `once`, `on_pattern`, `on_any`) run inside `emit`, on the emitting
//! thread, in registration order (`prepend` puts one first). Async listeners and subscriptions
//! each have their own bounded queue, filled by `emit` and drained in order; one `Arc` of the
//! event is shared by all of them. Every listener sees every event emitted while it is registered,
//! in emit order per emitting task.
//!
//! ## Failures
//!
//! A listener that returns `Err` or panics does not stop the emit: the remaining listeners still
//! run, and the failure goes to the [`on_error`](Bus::on_error) listeners as a
//! [`DeliveryError`] naming the event and the listener (or to `tracing` at error level when
//! there are none). Panics are caught; the default panic hook still prints them.
//!
//! ## Full queues
//!
//! Each async queue has a capacity and an [`Overflow`] policy. A sync `emit` never blocks: when a
//! queue is full it applies the policy and reports what did not get through. `emit_async` waits
//! for room instead (unless the policy is [`Overflow::Fail`]).
//!
//! ## Re-entrancy
//!
//! Registration is copy-on-write and `emit` works on a snapshot of the listener list, so a
//! listener may emit, register or unregister on the same bus without deadlock; a change made
//! during an emit applies from the next emit on. No lock is held while user code runs.

mod error;
mod listener;
mod pattern;
pub(crate) mod queue;
mod slot;
mod stats;
mod subscription;
mod tracker;

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use self::error::{
    Closed, DeliveryError, DeliveryErrorKind, HandlingError, Lagged, ShutdownReport, Unhandled,
};
pub use self::listener::{ListenerId, ListenerResult};
pub use self::pattern::{Pattern, PatternError};
pub use self::queue::Overflow;
pub use self::stats::BusStats;
pub use self::subscription::Subscription;

use self::listener::{Call, ErasedFn, Outcome, QueueEntry, SyncEntry};
use self::queue::{ConsumerKind, Delivery, Popped, Progress, Pushed, Queue, Rejected};
use self::slot::{build_slots, ErasedEntry, SlotHeader, SlotList, TypedSlot};
use self::stats::Stats;
use self::tracker::Tracker;
use crate::event::{AnyEvent, EventRef, EventSet, Member};

/// The default capacity of an async listener's or subscription's queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// A typed event bus for the event set `S`: a cheap, clonable handle.
///
/// Clones share the same listeners. When the last handle is dropped, every queue is closed and
/// the async listeners finish what is queued, then stop. See the [module docs](self).
pub struct Bus<S: EventSet> {
    inner: Arc<Inner<S>>,
}

impl<S: EventSet> Clone for Bus<S> {
    fn clone(&self) -> Self {
        Bus {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: EventSet> Default for Bus<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: EventSet> fmt::Debug for Bus<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("events", &S::NAMES.len())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Bus`]; start with [`Bus::builder`].
#[must_use]
pub struct BusBuilder<S> {
    capacity: usize,
    overflow: Overflow,
    max_listeners: Option<usize>,
    set: PhantomData<fn() -> S>,
}

impl<S: EventSet> BusBuilder<S> {
    /// The default queue capacity of async listeners and subscriptions
    /// ([`DEFAULT_QUEUE_CAPACITY`] unless set); at least 1.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The default overflow policy of async listeners and subscriptions ([`Overflow::Wait`]
    /// unless set).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Logs a warning (once per event) when more than `max` listeners are registered for one
    /// event, as Node's `setMaxListeners` does; a hint of a listener leak. Off unless set.
    pub fn max_listeners(mut self, max: usize) -> Self {
        self.max_listeners = Some(max);
        self
    }

    /// Builds the bus.
    pub fn build(self) -> Bus<S> {
        let shared = Arc::new(Shared {
            errors: ArcSwap::from_pointee(Vec::new()),
            stats: Stats::default(),
            progress: Arc::new(Progress::default()),
            closed: AtomicBool::new(false),
            tasks_done: Notify::new(),
        });
        Bus {
            inner: Arc::new(Inner {
                slots: build_slots::<S>(),
                warned: (0..S::NAMES.len())
                    .map(|_| AtomicBool::new(false))
                    .collect(),
                registry: Mutex::new(Registry::default()),
                shared,
                config: Config {
                    capacity: self.capacity,
                    overflow: self.overflow,
                    max_listeners: self.max_listeners,
                },
            }),
        }
    }
}

/// Queue settings for one async listener or subscription; unset fields take the bus defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct QueueOptions {
    capacity: Option<usize>,
    overflow: Option<Overflow>,
    concurrency: Option<usize>,
}

impl QueueOptions {
    /// Bus defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The queue's capacity; at least 1.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity.max(1));
        self
    }

    /// What happens when the queue is full.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = Some(overflow);
        self
    }

    /// Async listeners only: run up to `n` calls at once (default 1; at least 1), as a Node
    /// handler that awaits I/O handles the next event meanwhile. With more than one, calls may
    /// finish out of order, so the listener no longer sees events strictly in emit order;
    /// `settle`, `emit_and_wait` and `shutdown` still wait for every call. Subscriptions
    /// ignore it.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }
}

struct Config {
    capacity: usize,
    overflow: Overflow,
    max_listeners: Option<usize>,
}

/// What async listener tasks share with the bus without keeping its slots alive.
pub(crate) struct Shared {
    errors: ArcSwap<Vec<ErrorEntry>>,
    stats: Stats,
    progress: Arc<Progress>,
    closed: AtomicBool,
    /// Notified when an async listener task ends.
    tasks_done: Notify,
}

#[derive(Clone)]
struct ErrorEntry {
    id: ListenerId,
    f: Arc<dyn Fn(&DeliveryError) + Send + Sync>,
}

/// Registration bookkeeping; the lock around it is taken for every registration change, never
/// by `emit` (except for a `once` listener removing itself), never while user code runs.
#[derive(Default)]
pub(crate) struct Registry {
    places: HashMap<ListenerId, Place>,
    /// Async listener tasks still running (including removed ones still draining their queue).
    tasks: HashMap<ListenerId, Task>,
}

/// Where one registration lives.
enum Place {
    Slots {
        indices: Vec<usize>,
        /// The queue of an async listener or subscription.
        queue: Option<Arc<Queue>>,
        /// Registered for one event type (`on`, `subscribe`...) rather than by pattern.
        exact: bool,
    },
    Error,
}

struct Task {
    queue: Arc<Queue>,
    handle: JoinHandle<()>,
    /// Indices of the events the task held (handling or taken from its queue) when it was
    /// cancelled; filled when its future is dropped.
    leftover: Arc<Mutex<Vec<usize>>>,
}

/// The slot lengths a registration left, to check against `max_listeners` after unlocking.
#[must_use]
struct Crowding(Vec<(usize, usize)>);

/// How long `shutdown` waits for a cancelled listener task to be dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

struct Inner<S: EventSet> {
    slots: Box<[SlotHeader<S>]>,
    /// Per event: whether the `max_listeners` warning was logged.
    warned: Box<[AtomicBool]>,
    registry: Mutex<Registry>,
    shared: Arc<Shared>,
    config: Config,
}

impl<S: EventSet> Drop for Inner<S> {
    fn drop(&mut self) {
        // Async listener tasks hold only weak references: closing their queues lets them drain
        // and end instead of waiting forever.
        for place in self.registry.get_mut().places.values() {
            if let Place::Slots { queue: Some(q), .. } = place {
                q.close();
            }
        }
    }
}

impl<S: EventSet> Bus<S> {
    /// A bus with default settings.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for a bus with other settings.
    pub fn builder() -> BusBuilder<S> {
        BusBuilder {
            capacity: DEFAULT_QUEUE_CAPACITY,
            overflow: Overflow::Wait,
            max_listeners: None,
            set: PhantomData,
        }
    }

    // ----- sync listeners -------------------------------------------------------------------

    /// Calls `listener` inline on every `E` emitted from now on, after the listeners already
    /// registered for `E`.
    ///
    /// The listener returns `()` or `Result<(), _>`; errors and panics go to
    /// [`on_error`](Self::on_error) and never stop the other listeners.
    pub fn on<E, R>(&self, listener: impl Fn(&E) -> R + Send + Sync + 'static) -> ListenerId
    where
        E: Member<S>,
        R: ListenerResult,
    {
        self.add_exact::<E>(
            Arc::new(move |e: &E| listener(e).into_result()),
            None,
            false,
        )
    }

    /// Like [`on`](Self::on), but the listener runs before those already registered for `E`
    /// (Node's `prependListener`).
    pub fn prepend<E, R>(&self, listener: impl Fn(&E) -> R + Send + Sync + 'static) -> ListenerId
    where
        E: Member<S>,
        R: ListenerResult,
    {
        self.add_exact::<E>(Arc::new(move |e: &E| listener(e).into_result()), None, true)
    }

    /// Calls `listener` on the next `E` only, then removes it. If several threads emit at once,
    /// exactly one of them calls it.
    pub fn once<E, R>(&self, listener: impl FnOnce(&E) -> R + Send + 'static) -> ListenerId
    where
        E: Member<S>,
        R: ListenerResult,
    {
        let cell = Mutex::new(Some(listener));
        let call = move |e: &E| match cell.lock().take() {
            Some(f) => f(e).into_result(),
            None => Ok(()),
        };
        let fired = Arc::new(AtomicBool::new(false));
        self.add_exact::<E>(Arc::new(call), Some(fired), false)
    }

    /// Calls `listener` inline on every event whose name matches `pattern` (AMQP topic syntax:
    /// `*` is one word, `#` zero or more; see [`Pattern`]).
    ///
    /// The pattern is matched against the set's names now, once; an emit costs the same as for
    /// an exact listener.
    ///
    /// # Errors
    /// [`PatternError`] when the pattern does not parse. A valid pattern that matches no name
    /// registers a listener that is never called.
    pub fn on_pattern<R>(
        &self,
        pattern: &str,
        listener: impl Fn(EventRef<'_, S>) -> R + Send + Sync + 'static,
    ) -> Result<ListenerId, PatternError>
    where
        R: ListenerResult,
    {
        let indices = Pattern::parse(pattern)?.indices(S::NAMES);
        Ok(self.add_erased(indices, Arc::new(move |e| listener(e).into_result())))
    }

    /// Calls `listener` inline on every event (the pattern `#`).
    pub fn on_any<R>(
        &self,
        listener: impl Fn(EventRef<'_, S>) -> R + Send + Sync + 'static,
    ) -> ListenerId
    where
        R: ListenerResult,
    {
        let indices = (0..S::NAMES.len()).collect();
        self.add_erased(indices, Arc::new(move |e| listener(e).into_result()))
    }

    /// Calls `listener` with every delivery failure of this bus: listener errors, caught
    /// panics, overflows and emits after shutdown. With no error listener they are logged with
    /// `tracing` at error level. A panicking error listener is logged and otherwise ignored.
    ///
    /// [`clear`](Self::clear) and [`remove_all_listeners`](Self::remove_all_listeners) leave
    /// error listeners in place; remove one with [`off`](Self::off).
    pub fn on_error(
        &self,
        listener: impl Fn(&DeliveryError) + Send + Sync + 'static,
    ) -> ListenerId {
        let mut reg = self.inner.registry.lock();
        let id = ListenerId::next();
        reg.places.insert(id, Place::Error);
        let mut list = Vec::clone(&self.inner.shared.errors.load());
        list.push(ErrorEntry {
            id,
            f: Arc::new(listener),
        });
        self.inner.shared.errors.store(Arc::new(list));
        id
    }

    // ----- async listeners and subscriptions ------------------------------------------------

    /// Runs `listener` on every `E` emitted from now on, in its own task, one event at a time
    /// in emit order, fed by a bounded queue with the bus's default capacity and policy.
    ///
    /// The listener's future returns `()` or `Result<(), _>`; errors and panics go to
    /// [`on_error`](Self::on_error) and the listener goes on with the next event.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    #[track_caller]
    pub fn on_async<E, F, Fut>(&self, listener: F) -> ListenerId
    where
        E: Member<S>,
        F: Fn(Arc<E>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: ListenerResult,
    {
        self.on_async_with(QueueOptions::new(), listener)
    }

    /// [`on_async`](Self::on_async) with its own queue settings.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    #[track_caller]
    pub fn on_async_with<E, F, Fut>(&self, options: QueueOptions, listener: F) -> ListenerId
    where
        E: Member<S>,
        F: Fn(Arc<E>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: ListenerResult,
    {
        self.spawn_listener(vec![E::INDEX], true, options, typed::<S, E>, listener)
    }

    /// Runs `listener` in its own task on every event whose name matches `pattern`, like
    /// [`on_async`](Self::on_async).
    ///
    /// # Errors
    /// [`PatternError`] when the pattern does not parse.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    #[track_caller]
    pub fn on_pattern_async<F, Fut>(
        &self,
        pattern: &str,
        options: QueueOptions,
        listener: F,
    ) -> Result<ListenerId, PatternError>
    where
        F: Fn(AnyEvent<S>) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: ListenerResult,
    {
        let indices = Pattern::parse(pattern)?.indices(S::NAMES);
        Ok(self.spawn_listener(indices, false, options, erased::<S>, listener))
    }

    /// A stream of every `E` emitted from now on, with the bus's default queue settings. Events
    /// the stream misses because its queue was full are reported in it as [`Lagged`].
    /// Dropping the subscription unsubscribes.
    pub fn subscribe<E: Member<S>>(&self) -> Subscription<S, Arc<E>> {
        self.subscribe_with(QueueOptions::new())
    }

    /// [`subscribe`](Self::subscribe) with its own queue settings.
    pub fn subscribe_with<E: Member<S>>(&self, options: QueueOptions) -> Subscription<S, Arc<E>> {
        self.add_subscription(vec![E::INDEX], true, options, typed::<S, E>)
    }

    /// A stream of every event whose name matches `pattern`.
    ///
    /// # Errors
    /// [`PatternError`] when the pattern does not parse.
    pub fn subscribe_pattern(
        &self,
        pattern: &str,
        options: QueueOptions,
    ) -> Result<Subscription<S, AnyEvent<S>>, PatternError> {
        let indices = Pattern::parse(pattern)?.indices(S::NAMES);
        Ok(self.add_subscription(indices, false, options, erased::<S>))
    }

    // ----- removal and inspection -----------------------------------------------------------

    /// Removes one listener, subscription or error listener. An async listener stops taking
    /// new events and finishes those already queued. Returns whether `id` was registered.
    pub fn off(&self, id: ListenerId) -> bool {
        self.inner.off(id)
    }

    /// Removes every listener and subscription registered for `E` by type (`on`, `once`,
    /// `on_async`, `subscribe`...). Pattern and catch-all listeners stay. Returns how many were
    /// removed.
    pub fn remove_all_listeners<E: Member<S>>(&self) -> usize {
        self.inner.off_where(
            |p| matches!(p, Place::Slots { indices, exact: true, .. } if indices == &[E::INDEX]),
        )
    }

    /// Removes every listener and subscription, keeping the error listeners.
    pub fn clear(&self) {
        self.inner.off_where(|p| matches!(p, Place::Slots { .. }));
    }

    /// How many listeners an `E` emitted now would reach: exact, pattern and catch-all, sync
    /// and async.
    pub fn listener_count<E: Member<S>>(&self) -> usize {
        self.inner.slots[E::INDEX].live()
    }

    /// The names of the events that have at least one listener now.
    pub fn event_names(&self) -> Vec<&'static str> {
        (self.inner.slots.iter().zip(S::NAMES))
            .filter(|(h, _)| h.live() > 0)
            .map(|(_, n)| *n)
            .collect()
    }

    /// Counters since the bus was built, and the events queued right now.
    pub fn stats(&self) -> BusStats {
        let queued = {
            let reg = self.inner.registry.lock();
            let live = reg.places.values().filter_map(|p| match p {
                Place::Slots { queue: Some(q), .. } => Some(q.len()),
                _ => None,
            });
            let draining = reg
                .tasks
                .iter()
                .filter(|(id, _)| !reg.places.contains_key(id))
                .map(|(_, t)| t.queue.len());
            live.chain(draining).sum::<usize>() as u64
        };
        self.inner.shared.stats.snapshot(queued)
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.closed.load(Ordering::Acquire)
    }

    // ----- emitting -------------------------------------------------------------------------

    /// Delivers `event` to every listener of `E`: sync listeners run now, in order; async
    /// listeners and subscriptions get it queued. Returns how many listeners it reached.
    ///
    /// Never blocks. A full queue applies its [`Overflow`] policy; a listener failure, a
    /// missed delivery or an emit after shutdown is reported through
    /// [`on_error`](Self::on_error). An emit with no listener does nothing and returns 0.
    #[inline]
    pub fn emit<E: Member<S>>(&self, event: E) -> usize {
        let header = &self.inner.slots[E::INDEX];
        if header.live() == 0 {
            return 0;
        }
        self.inner.dispatch(header, event)
    }

    /// Emits whichever member `event` holds; see [`emit`](Self::emit).
    pub fn emit_set(&self, event: S) -> usize {
        struct Emit<'a, S: EventSet>(&'a Bus<S>);
        impl<S: EventSet> crate::event::Visitor<S> for Emit<'_, S> {
            type Output = usize;
            fn visit<E: Member<S>>(self, event: E) -> usize {
                self.0.emit(event)
            }
        }
        event.visit(Emit(self))
    }

    /// Like [`emit`](Self::emit), but waits for room in full queues instead of applying their
    /// overflow policy (except [`Overflow::Fail`], which never waits). Sync listeners run before
    /// the first wait.
    ///
    /// # Errors
    /// [`Closed`] with the event when the bus was shut down before the call.
    pub async fn emit_async<E: Member<S>>(&self, event: E) -> Result<usize, Closed<E>> {
        if self.is_closed() {
            return Err(Closed(event));
        }
        let Some(list) = self.inner.snapshot::<E>() else {
            return Ok(0);
        };
        Ok(self.inner.dispatch_waiting(&list, event, None).await)
    }

    /// Emits `event` like [`emit_async`](Self::emit_async) and waits until every listener has
    /// finished with it: sync listeners, and every `on_async` listener that got it (waiting
    /// for its turn in that listener's queue). Subscriptions and bridges count as done once the
    /// event is queued for them. Failures are also reported through [`on_error`](Self::on_error).
    ///
    /// This is what a bridge needs to acknowledge a broker message only after it was handled.
    ///
    /// # Errors
    /// [`HandlingError`] with every failure (listener errors and panics, overflows, a bus shut
    /// down before or during the wait); the listeners that succeeded are not undone.
    pub async fn emit_and_wait<E: Member<S>>(&self, event: E) -> Result<usize, HandlingError> {
        if self.is_closed() {
            let error = DeliveryError::new(E::NAME, None, DeliveryErrorKind::Closed);
            return Err(HandlingError::new(vec![error]));
        }
        let Some(list) = self.inner.snapshot::<E>() else {
            return Ok(0);
        };
        let tracker = Arc::new(Tracker::new());
        let reached = self
            .inner
            .dispatch_waiting(&list, event, Some(&tracker))
            .await;
        tracker.finish();
        let failures = tracker.wait().await;
        if failures.is_empty() {
            Ok(reached)
        } else {
            Err(HandlingError::new(failures))
        }
    }

    /// [`emit_and_wait`](Self::emit_and_wait) for whichever member `event` holds.
    ///
    /// # Errors
    /// As `emit_and_wait`.
    pub async fn emit_set_and_wait(&self, event: S) -> Result<usize, HandlingError> {
        struct Emit<'a, S: EventSet>(&'a Bus<S>);
        impl<'a, S: EventSet> crate::event::Visitor<S> for Emit<'a, S> {
            type Output = futures_util::future::BoxFuture<'a, Result<usize, HandlingError>>;
            fn visit<E: Member<S>>(self, event: E) -> Self::Output {
                Box::pin(self.0.emit_and_wait(event))
            }
        }
        event.visit(Emit(self)).await
    }

    // ----- settling and shutting down -------------------------------------------------------

    /// Resolves once the bus is quiet: every event queued for an async listener before the
    /// call, and every event those listeners emitted in turn, has been handled (errors reported
    /// included). Subscriptions are not waited for: their reader decides when to read.
    ///
    /// Makes async tests deterministic: emit, `settle().await`, then assert. If other tasks keep
    /// emitting without pause, it keeps waiting; bound it with `tokio::time::timeout`.
    pub async fn settle(&self) {
        // Each round looks at every listener task there is now, so listeners registered and
        // events emitted by handlers while we waited are seen in the next round.
        loop {
            let queues: Vec<Arc<Queue>> = {
                let reg = self.inner.registry.lock();
                reg.tasks.values().map(|t| Arc::clone(&t.queue)).collect()
            };
            let targets: Vec<u64> = queues.iter().map(|q| q.pushed()).collect();
            let reached = || queues.iter().zip(&targets).all(|(q, t)| q.finished() >= *t);
            if reached() {
                return;
            }
            self.inner.shared.progress.wait_until(reached).await;
        }
    }

    /// Stops the bus: from now on `emit` delivers nothing (reporting [`DeliveryErrorKind::Closed`])
    /// and `emit_async` hands events back; subscriptions end after what they have queued; async
    /// listeners finish their queues. Waits up to `timeout` for them, then stops those still
    /// running and reports every event they did not handle. Calling it again is harmless.
    ///
    /// # Panics
    /// Like `tokio::time::timeout`, when the runtime was built without its time driver.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let deadline = tokio::time::Instant::now() + timeout;
        self.inner.shared.closed.store(true, Ordering::Release);
        let queues: Vec<Arc<Queue>> = {
            let reg = self.inner.registry.lock();
            let placed = reg.places.values().filter_map(|p| match p {
                Place::Slots { queue, .. } => queue.clone(),
                Place::Error => None,
            });
            placed
                .chain(reg.tasks.values().map(|t| Arc::clone(&t.queue)))
                .collect()
        };
        for q in &queues {
            q.close();
        }
        let drained = tokio::time::timeout_at(deadline, async {
            loop {
                let mut done = std::pin::pin!(self.inner.shared.tasks_done.notified());
                done.as_mut().enable();
                if self.inner.registry.lock().tasks.is_empty() {
                    return;
                }
                done.await;
            }
        })
        .await;
        if drained.is_ok() {
            return ShutdownReport::default();
        }
        let stragglers: Vec<(ListenerId, Task)> =
            self.inner.registry.lock().tasks.drain().collect();
        let mut counts: HashMap<(ListenerId, &'static str), usize> = HashMap::new();
        for (id, task) in stragglers {
            task.handle.abort();
            // Cancellation takes effect at the task's next await; its drop guard then records
            // what it held.
            let _ = tokio::time::timeout(CANCEL_GRACE, task.handle).await;
            let held = std::mem::take(&mut *task.leftover.lock());
            for index in held {
                *counts.entry((id, S::NAMES[index])).or_default() += 1;
            }
            for d in task.queue.close_and_take() {
                let name = S::NAMES[d.index];
                *counts.entry((id, name)).or_default() += 1;
                let error = DeliveryError::new(name, Some(id), DeliveryErrorKind::Closed);
                self.inner.shared.discard(d, error, false);
            }
        }
        let mut unhandled: Vec<Unhandled> = counts
            .into_iter()
            .map(|((listener, event), count)| Unhandled {
                listener,
                event,
                count,
            })
            .collect();
        unhandled.sort_by_key(|u| (u.listener, u.event));
        for u in &unhandled {
            tracing::warn!(listener = %u.listener, event = u.event, count = u.count, "event left unhandled at shutdown");
        }
        ShutdownReport { unhandled }
    }

    // ----- registration internals -----------------------------------------------------------

    /// Records a listener in the slots of `indices`: `add` puts it in one slot and returns
    /// the slot's new length. Every registration goes through here; the caller passes the
    /// returned `Crowding` to [`Inner::warn_if_crowded`] once it has released the lock.
    fn register(
        &self,
        reg: &mut Registry,
        indices: Vec<usize>,
        queue: Option<Arc<Queue>>,
        exact: bool,
        mut add: impl FnMut(&SlotHeader<S>, &Registry, ListenerId) -> usize,
    ) -> (ListenerId, Crowding) {
        let id = ListenerId::next();
        let mut lens = Vec::with_capacity(indices.len());
        for &i in &indices {
            let header = &self.inner.slots[i];
            let len = add(header, reg, id);
            header.set_live(len);
            lens.push((i, len));
        }
        let place = Place::Slots {
            indices,
            queue,
            exact,
        };
        reg.places.insert(id, place);
        (id, Crowding(lens))
    }

    fn add_exact<E: Member<S>>(
        &self,
        call: Arc<listener::ExactFn<E>>,
        once: Option<Arc<AtomicBool>>,
        prepend: bool,
    ) -> ListenerId {
        let mut reg = self.inner.registry.lock();
        let (id, crowding) =
            self.register(&mut reg, vec![E::INDEX], None, true, |header, reg, id| {
                let slot = typed_slot::<S, E>(header);
                let entry = SyncEntry {
                    id,
                    once: once.clone(),
                    call: Call::Exact(Arc::clone(&call)),
                };
                slot.update(reg, |l| slot::insert(&mut l.sync, entry, prepend))
            });
        drop(reg);
        self.inner.warn_if_crowded(crowding);
        id
    }

    fn add_erased(&self, indices: Vec<usize>, call: Arc<ErasedFn<S>>) -> ListenerId {
        let mut reg = self.inner.registry.lock();
        let (id, crowding) = self.register(&mut reg, indices, None, false, |header, reg, id| {
            let entry = ErasedEntry {
                id,
                once: None,
                call: Arc::clone(&call),
            };
            header.slot.add_erased(reg, entry, false)
        });
        drop(reg);
        self.inner.warn_if_crowded(crowding);
        id
    }

    /// Registers a queue in the slots of `indices`; returns its id and the queue.
    fn add_queue(
        &self,
        reg: &mut Registry,
        indices: Vec<usize>,
        exact: bool,
        options: QueueOptions,
        kind: ConsumerKind,
    ) -> (ListenerId, Arc<Queue>, Crowding) {
        let queue = Arc::new(Queue::new(
            options.capacity.unwrap_or(self.inner.config.capacity),
            options.overflow.unwrap_or(self.inner.config.overflow),
            kind,
            Arc::clone(&self.inner.shared.progress),
        ));
        if self.is_closed() {
            queue.close();
        }
        let placed = Some(Arc::clone(&queue));
        let (id, crowding) = self.register(reg, indices, placed, exact, |header, reg, id| {
            let entry = QueueEntry {
                id,
                queue: Arc::clone(&queue),
            };
            header.slot.add_queue(reg, entry)
        });
        (id, queue, crowding)
    }

    fn add_subscription<T>(
        &self,
        indices: Vec<usize>,
        exact: bool,
        options: QueueOptions,
        convert: fn(Delivery) -> Option<T>,
    ) -> Subscription<S, T> {
        let (id, queue, crowding) = {
            let mut reg = self.inner.registry.lock();
            self.add_queue(&mut reg, indices, exact, options, ConsumerKind::Stream)
        };
        self.inner.warn_if_crowded(crowding);
        Subscription::new(id, queue, Arc::downgrade(&self.inner), convert)
    }

    /// A subscription to the members at `indices` whose overflows are reported through
    /// `on_error` (like an `on_async` listener's) instead of as `Lagged`: for bridges, whose
    /// task reads the stream.
    pub(crate) fn subscribe_reporting(
        &self,
        indices: Vec<usize>,
        options: QueueOptions,
    ) -> Subscription<S, AnyEvent<S>> {
        let (id, queue, crowding) = {
            let mut reg = self.inner.registry.lock();
            self.add_queue(&mut reg, indices, false, options, ConsumerKind::Bridge)
        };
        self.inner.warn_if_crowded(crowding);
        Subscription::new(id, queue, Arc::downgrade(&self.inner), erased::<S>)
    }

    #[track_caller]
    fn spawn_listener<T, F, Fut>(
        &self,
        indices: Vec<usize>,
        exact: bool,
        options: QueueOptions,
        convert: fn(Delivery) -> Option<T>,
        listener: F,
    ) -> ListenerId
    where
        T: Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: ListenerResult,
    {
        let runtime = crate::runtime("async listeners");
        let mut reg = self.inner.registry.lock();
        let (id, queue, crowding) =
            self.add_queue(&mut reg, indices, exact, options, ConsumerKind::Task);
        let leftover = Arc::default();
        let run = run_listener::<S, T, F, Fut>(
            Listening {
                id,
                queue: Arc::clone(&queue),
                shared: Arc::clone(&self.inner.shared),
                bus: Arc::downgrade(&self.inner),
                leftover: Arc::clone(&leftover),
                concurrency: options.concurrency.unwrap_or(1),
            },
            convert,
            listener,
        );
        // Spawned under the lock so the task is in the registry before it can end.
        let handle = runtime.spawn(run);
        reg.tasks.insert(
            id,
            Task {
                queue,
                handle,
                leftover,
            },
        );
        drop(reg);
        self.inner.warn_if_crowded(crowding);
        id
    }
}

fn typed_slot<S: EventSet, E: Member<S>>(header: &SlotHeader<S>) -> &TypedSlot<S, E> {
    match header.slot.as_any().downcast_ref::<TypedSlot<S, E>>() {
        Some(slot) => slot,
        None => panic!(
            "`{}` has a `Member::INDEX` that does not match its event set; implement `Member` only through `#[derive(EventSet)]`",
            E::NAME
        ),
    }
}

fn typed<S: EventSet, E: Member<S>>(d: Delivery) -> Option<Arc<E>> {
    d.event.downcast::<E>().ok()
}

fn erased<S: EventSet>(d: Delivery) -> Option<AnyEvent<S>> {
    Some(AnyEvent::from_erased(d.index, d.event))
}

/// What the task holds; if the task is cancelled, its drop records it for `shutdown` and
/// fails the trackers of the events it will never handle.
struct Held {
    batch: VecDeque<Delivery>,
    /// The event being handled: its index and tracker.
    current: Option<(usize, Option<Arc<Tracker>>)>,
    /// With concurrency: the events being handled, by slot.
    running: Vec<Option<(usize, Option<Arc<Tracker>>)>>,
    leftover: Arc<Mutex<Vec<usize>>>,
    names: &'static [&'static str],
    id: ListenerId,
}
impl Drop for Held {
    fn drop(&mut self) {
        let current = self.current.take().into_iter();
        let running = self.running.iter_mut().filter_map(Option::take);
        let queued = self.batch.drain(..).map(|d| (d.index, d.tracker));
        let held: Vec<(usize, Option<Arc<Tracker>>)> =
            current.chain(running).chain(queued).collect();
        if held.is_empty() {
            return;
        }
        let mut leftover = self.leftover.lock();
        for (index, tracker) in held {
            leftover.push(index);
            if let Some(tracker) = tracker {
                let kind = DeliveryErrorKind::Closed;
                tracker.fail(DeliveryError::new(self.names[index], Some(self.id), kind));
                tracker.finish();
            }
        }
    }
}

/// What an async listener's task works with.
struct Listening<S: EventSet> {
    id: ListenerId,
    queue: Arc<Queue>,
    shared: Arc<Shared>,
    bus: Weak<Inner<S>>,
    leftover: Arc<Mutex<Vec<usize>>>,
    /// Calls run at once.
    concurrency: usize,
}

/// The body of an async listener's task: handle queued events (one at a time, or up to its
/// concurrency at once) until the queue is closed and drained.
async fn run_listener<S, T, F, Fut>(
    listening: Listening<S>,
    convert: fn(Delivery) -> Option<T>,
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
    };
    if concurrency > 1 {
        // Boxed, so that its state stays out of the one-at-a-time loop's future: inline, it
        // took `async_fanout/tidings_on_async/1` from about 6 to 2.7 M events/s.
        Box::pin(run_concurrently(
            &mut held,
            &queue,
            &shared,
            concurrency,
            convert,
            &listener,
        ))
        .await;
    }
    while let Some(popped) = queue.pop(&mut held.batch).await {
        // Task queues report overflow through `on_error` when it happens, not here.
        let Popped::Item(delivery) = popped else {
            continue;
        };
        let name = S::NAMES[delivery.index];
        let mut delivery = delivery;
        held.current = Some((delivery.index, delivery.tracker.take()));
        let outcome = match convert(delivery) {
            Some(item) => {
                let span = tracing::trace_span!("tidings.handle", event = name, listener = %id);
                Some(call_async(&listener, item).instrument(span).await)
            }
            None => None,
        };
        let call = held.current.take();
        finish_call(&held, &queue, &shared, call, outcome);
    }
    if let Some(inner) = bus.upgrade() {
        inner.registry.lock().tasks.remove(&id);
    }
    shared.tasks_done.notify_waiters();
}

/// One call finished (`outcome` is `None` when the event could not be handed to the
/// listener): record the outcome, release the tracker, count it for `settle`.
fn finish_call(
    held: &Held,
    queue: &Queue,
    shared: &Shared,
    call: Option<(usize, Option<Arc<Tracker>>)>,
    outcome: Option<Result<(), DeliveryErrorKind>>,
) {
    let Some((index, tracker)) = call else {
        return;
    };
    match outcome {
        Some(Ok(())) => shared.stats.handled(),
        Some(Err(kind)) => {
            let error = DeliveryError::new(held.names[index], Some(held.id), kind);
            shared.report(error, tracker.as_deref());
        }
        None => {}
    }
    if let Some(tracker) = tracker {
        tracker.finish();
    }
    queue.finish_one();
    // `settle` only needs to look again once the batch in hand is done.
    if held.batch.is_empty() {
        queue.signal_progress();
    }
}

/// The loop of an async listener with concurrency above 1: keep up to `concurrency` calls
/// running, start the next as soon as one finishes, and return once the queue is closed and
/// every call finished.
async fn run_concurrently<T, F, Fut>(
    held: &mut Held,
    queue: &Queue,
    shared: &Shared,
    concurrency: usize,
    convert: fn(Delivery) -> Option<T>,
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
                Ok(queue.pop(&mut held.batch).await)
            } else {
                tokio::select! {
                    biased;
                    popped = queue.pop(&mut held.batch) => Ok(popped),
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
                finish_call(held, queue, shared, call, outcome);
            }
            Err(None) => {}
            Ok(None) => open = false,
            Ok(Some(Popped::Lagged(_))) => {}
            Ok(Some(Popped::Item(mut delivery))) => {
                let index = delivery.index;
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
                match convert(delivery) {
                    Some(item) => {
                        let span = tracing::trace_span!(
                            "tidings.handle",
                            event = held.names[index],
                            listener = %held.id
                        );
                        let call = call_async(listener, item).instrument(span);
                        running.push(call.map(move |outcome| (slot, Some(outcome))));
                    }
                    None => {
                        let call = held.running[slot].take();
                        finish_call(held, queue, shared, call, None);
                    }
                }
            }
        }
    }
}

async fn call_async<T, F, Fut>(listener: &F, item: T) -> Result<(), DeliveryErrorKind>
where
    F: Fn(T) -> Fut,
    Fut: Future,
    Fut::Output: ListenerResult,
{
    let future = catch_unwind(AssertUnwindSafe(|| listener(item)))
        .map_err(|p| DeliveryErrorKind::Panicked(panic_message(&*p)))?;
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(result) => result.into_result().map_err(DeliveryErrorKind::Failed),
        Err(p) => Err(DeliveryErrorKind::Panicked(panic_message(&*p))),
    }
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

impl Shared {
    /// Hands a delivery failure to the error listeners (or to `tracing` when there are none),
    /// then to the tracker of the `emit_and_wait` concerned, if any.
    fn report(&self, error: DeliveryError, tracker: Option<&Tracker>) {
        self.stats.failure(&error);
        let listeners = self.errors.load();
        if listeners.is_empty() {
            tracing::error!(event = error.event(), listener = ?error.listener(), "{error}");
        }
        for entry in listeners.iter() {
            if catch_unwind(AssertUnwindSafe(|| (entry.f)(&error))).is_err() {
                tracing::error!(listener = %entry.id, "an error listener panicked while handling: {error}");
            }
        }
        if let Some(tracker) = tracker {
            tracker.fail(error);
        }
    }

    /// Ends a delivery that will never be handled, with the reason.
    fn discard(&self, delivery: Delivery, error: DeliveryError, report: bool) {
        let tracker = delivery.tracker.as_deref();
        if report {
            self.report(error, tracker);
        } else if let Some(tracker) = tracker {
            tracker.fail(error);
        }
        if let Some(tracker) = tracker {
            tracker.finish();
        }
    }

    /// Accounts for one push into a subscriber's queue; returns whether the event was queued.
    fn pushed(
        &self,
        entry: &QueueEntry,
        result: Result<Pushed, (Delivery, Rejected)>,
        names: &[&'static str],
    ) -> bool {
        let overflow = |d: Delivery| {
            self.stats.dropped();
            entry.queue.count_drop();
            let kind = DeliveryErrorKind::Overflow(entry.queue.overflow());
            let error = DeliveryError::new(names[d.index], Some(entry.id), kind);
            // Streams learn of it as `Lagged`; other listeners through `on_error`.
            self.discard(d, error, !entry.queue.tracks_lag());
        };
        match result {
            Ok(Pushed::Queued) => true,
            Ok(Pushed::Evicted(old)) => {
                overflow(old);
                true
            }
            Err((d, Rejected::Full)) => {
                overflow(d);
                false
            }
            Err((d, Rejected::Closed)) => {
                // A queue closes when its subscriber is removed (the emit raced the removal and
                // nothing is owed) or when the bus shuts down (the event is reported).
                let kind = DeliveryErrorKind::Closed;
                let error = DeliveryError::new(names[d.index], Some(entry.id), kind);
                let report = self.closed.load(Ordering::Acquire);
                self.discard(d, error, report);
                false
            }
        }
    }
}

impl<S: EventSet> Inner<S> {
    fn list<'h, E: Member<S>>(
        &self,
        header: &'h SlotHeader<S>,
    ) -> Option<&'h ArcSwap<SlotList<S, E>>> {
        let slot = header.slot.as_any().downcast_ref::<TypedSlot<S, E>>()?;
        Some(&slot.list)
    }

    /// The listeners of `E` now, held for an emit that may wait; `None` when there are none.
    fn snapshot<E: Member<S>>(&self) -> Option<Arc<SlotList<S, E>>> {
        let header = &self.slots[E::INDEX];
        if header.live() == 0 {
            return None;
        }
        self.list::<E>(header).map(|list| list.load_full())
    }

    /// The part of `emit` after the no-listener check.
    fn dispatch<E: Member<S>>(&self, header: &SlotHeader<S>, event: E) -> usize {
        if self.shared.closed.load(Ordering::Acquire) {
            let kind = DeliveryErrorKind::Closed;
            self.shared
                .report(DeliveryError::new(E::NAME, None, kind), None);
            return 0;
        }
        let Some(list) = self.list::<E>(header) else {
            return 0;
        };
        let list = list.load();
        if list.queues.is_empty() {
            // Sync listeners only: no shared event, no deliveries to build.
            let reached = self.run_sync(&list.sync, &event, None);
            self.shared.stats.emitted(reached);
            return reached;
        }
        let (mut reached, deliveries) = self.fan_out(&list, event, None);
        for (entry, delivery) in deliveries {
            let pushed = entry.queue.push(delivery);
            reached += usize::from(self.shared.pushed(entry, pushed, S::NAMES));
        }
        self.shared.stats.emitted(reached);
        reached
    }

    /// `dispatch` for `emit_async` and `emit_and_wait`: waits for room in full queues.
    async fn dispatch_waiting<E: Member<S>>(
        &self,
        list: &SlotList<S, E>,
        event: E,
        tracker: Option<&Arc<Tracker>>,
    ) -> usize {
        let (mut reached, deliveries) = self.fan_out(list, event, tracker);
        for (entry, delivery) in deliveries {
            let pushed = entry.queue.push_wait(delivery).await;
            reached += usize::from(self.shared.pushed(entry, pushed, S::NAMES));
        }
        self.shared.stats.emitted(reached);
        reached
    }

    /// Runs the sync listeners, then yields one delivery per async queue, all sharing one `Arc`
    /// of the event. Returns how many sync listeners ran.
    fn fan_out<'l, E: Member<S>>(
        &self,
        list: &'l SlotList<S, E>,
        event: E,
        tracker: Option<&'l Arc<Tracker>>,
    ) -> (usize, impl Iterator<Item = (&'l QueueEntry, Delivery)> + 'l) {
        let reached = self.run_sync(&list.sync, &event, tracker.map(|t| &**t));
        let shared: Option<Arc<dyn Any + Send + Sync>> =
            (!list.queues.is_empty()).then(|| Arc::new(event) as _);
        let deliveries = shared.into_iter().flat_map(move |shared| {
            list.queues.iter().map(move |entry| {
                // Only listener tasks say when they handled an event; for streams and bridges,
                // queuing is delivery.
                let tracker = tracker.filter(|_| entry.queue.is_task()).map(|t| {
                    t.add();
                    Arc::clone(t)
                });
                let delivery = Delivery {
                    index: E::INDEX,
                    event: Arc::clone(&shared),
                    tracker,
                };
                (entry, delivery)
            })
        });
        (reached, deliveries)
    }

    /// Calls the sync listeners in order. A panic is caught, reported, and the loop resumes
    /// with the next listener; one `catch_unwind` covers the whole run until something panics.
    fn run_sync<E: Member<S>>(
        &self,
        entries: &[SyncEntry<S, E>],
        event: &E,
        tracker: Option<&Tracker>,
    ) -> usize {
        let mut reached = 0;
        let mut next = 0;
        while next < entries.len() {
            let run = catch_unwind(AssertUnwindSafe(|| {
                while let Some(entry) = entries.get(next) {
                    next += 1;
                    if let Some(fired) = &entry.once {
                        if fired.swap(true, Ordering::AcqRel) {
                            continue;
                        }
                        self.off(entry.id);
                    }
                    reached += 1;
                    let outcome: Outcome = match &entry.call {
                        Call::Exact(f) => f(event),
                        Call::Erased(f) => f(EventRef::new(event)),
                    };
                    if let Err(error) = outcome {
                        let kind = DeliveryErrorKind::Failed(error);
                        let error = DeliveryError::new(E::NAME, Some(entry.id), kind);
                        self.shared.report(error, tracker);
                    }
                }
            }));
            if let Err(payload) = run {
                let kind = DeliveryErrorKind::Panicked(panic_message(&*payload));
                let id = entries[next - 1].id;
                self.shared
                    .report(DeliveryError::new(E::NAME, Some(id), kind), tracker);
            }
        }
        reached
    }

    /// Removes every registration whose place matches; returns how many.
    fn off_where(&self, matches: impl Fn(&Place) -> bool) -> usize {
        let ids: Vec<ListenerId> = {
            let reg = self.registry.lock();
            let matching = reg.places.iter().filter(|(_, p)| matches(p));
            matching.map(|(id, _)| *id).collect()
        };
        ids.into_iter().filter(|id| self.off(*id)).count()
    }

    fn off(&self, id: ListenerId) -> bool {
        let mut reg = self.registry.lock();
        match reg.places.remove(&id) {
            Some(Place::Slots { indices, queue, .. }) => {
                for i in indices {
                    let len = self.slots[i].slot.remove(&reg, id);
                    self.slots[i].set_live(len);
                }
                if let Some(queue) = queue {
                    queue.close();
                }
                true
            }
            Some(Place::Error) => {
                let mut list = Vec::clone(&self.shared.errors.load());
                list.retain(|e| e.id != id);
                self.shared.errors.store(Arc::new(list));
                true
            }
            None => false,
        }
    }

    /// Logs, once per event, that an event has more listeners than `max_listeners`. Called
    /// after the registry lock is released: a `tracing` subscriber is user code.
    fn warn_if_crowded(&self, Crowding(lens): Crowding) {
        let Some(max) = self.config.max_listeners else {
            return;
        };
        for (index, len) in lens {
            if len > max && !self.warned[index].swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    event = S::NAMES[index],
                    listeners = len,
                    max,
                    "more listeners than max_listeners for one event: possible listener leak"
                );
            }
        }
    }
}
