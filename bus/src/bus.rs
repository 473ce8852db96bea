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
//! [`ListenerError`] naming the event and the listener (or to `tracing` at error level when
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
//!
//! ## What registration costs
//!
//! An `emit` reads its listeners without a lock or an atomic read-modify-write (a few
//! nanoseconds to one listener); registration pays for that instead. Every change (`on`,
//! `once`, `off`, a subscription made or dropped, ...) ends with a process-wide memory barrier
//! (`membarrier(2)` on Linux) before it can drop the listener list it replaced: about half a
//! microsecond when the process's other threads are idle, several microseconds when they are
//! running, each of which it briefly interrupts. Register listeners when a component starts,
//! not once per event or request; a reply to one request is what
//! [`emit_and_wait`](Bus::emit_and_wait) or an actor's `ask` is for. A removed listener's
//! closure is dropped before `off` returns when no emit on the bus that began before the `off`
//! is still running (on any thread, the caller's included when a listener calls `off`);
//! otherwise when the last of those emits ends. A thread that emitted once and never again
//! holds nothing.

mod builder;
mod dispatch;
mod error;
mod inner;
mod listener;
mod overflow;
mod pattern;
mod queue;
mod rcu;
mod register;
mod registry;
mod runtime;
mod slot;
mod stats;
mod subscription;
mod tracker;
mod waiting;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::Notify;

pub use self::builder::{BusBuilder, QueueOptions, DEFAULT_QUEUE_CAPACITY};
pub use self::error::{
    BusShutdownReport, Closed, HandlingError, ListenerError, ListenerErrorKind, Missed,
    UnfinishedEvents,
};
#[doc(hidden)]
pub use self::listener::HasOutput;
pub use self::listener::{ListenerId, ListenerResult};
pub use self::overflow::Overflow;
pub use self::pattern::{Pattern, PatternError};
#[cfg(feature = "bridge")]
pub(crate) use self::register::Spanned;
pub use self::stats::BusStats;
pub use self::subscription::{QueueGauge, Subscription};
#[cfg(feature = "bridge")]
pub(crate) use self::tracker::Ticket;
pub use self::waiting::EmitAsync;

use self::builder::Config;
use self::dispatch::{BusShared, ErrorEntry};
use self::inner::Inner;
use self::queue::{EventQueue, Progress};
use self::rcu::Readers;
use self::registry::{Place, Registry, Task};
use self::runtime::{erased, typed};
use self::slot::build_slots;
use self::stats::Stats;
use self::tracker::Tracker;
use self::waiting::{start, Deliver};
use crate::event::{AnyEvent, EventRef, EventSet, Member};
use crate::message::MessageContext;

/// `emit_and_wait` after its typed step: the delivery to finish and the tracker to wait on,
/// or the error when the bus was closed.
type Waited<'a> = Result<(Deliver<'a>, Arc<Tracker>), HandlingError>;

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

/// How long `shutdown` waits for a cancelled listener task to be dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

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

    /// A bus with `config`: empty slots for every member, no listeners.
    fn with_config(config: Config) -> Bus<S> {
        let shared = Arc::new(BusShared {
            errors: ArcSwap::from_pointee(Vec::new()),
            stats: Stats::default(),
            readers: Readers::new(),
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
                registry: Mutex::new(Registry::new(Arc::clone(&shared))),
                shared,
                config,
            }),
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
        listener: impl Fn(&ListenerError) + Send + Sync + 'static,
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
    /// the stream misses because its queue was full are reported in it as [`Missed`].
    /// Dropping the subscription unsubscribes.
    pub fn subscribe<E: Member<S>>(&self) -> Subscription<S, Arc<E>> {
        self.subscribe_with(QueueOptions::new())
    }

    /// [`subscribe`](Self::subscribe) with its own queue settings.
    pub fn subscribe_with<E: Member<S>>(&self, options: QueueOptions) -> Subscription<S, Arc<E>> {
        self.add_subscription(vec![E::INDEX], true, options, typed::<S, E>)
    }

    /// A stream of the members at `members` (their [`Member::INDEX`], or the indices a
    /// [`Pattern`] selects) for a reader that forwards what it reads out of the process, as a
    /// bridge does: events the full queue turns away are reported through
    /// [`on_error`](Self::on_error) and counted in [`BusStats::dropped`], as for an
    /// [`on_async`](Self::on_async) listener, instead of being yielded as [`Missed`] (which a
    /// forwarder could only drop). Queuing counts as delivery: `emit_and_wait` and `settle` do
    /// not wait for the reader. [`Subscription::gauge`] reads its queue from elsewhere.
    ///
    /// Indices that are not members of `S` are ignored.
    pub fn subscribe_reporting(
        &self,
        members: impl IntoIterator<Item = usize>,
        options: QueueOptions,
    ) -> Subscription<S, AnyEvent<S>> {
        let mut indices: Vec<usize> = members
            .into_iter()
            .filter(|&i| i < S::NAMES.len())
            .collect();
        indices.sort_unstable();
        indices.dedup();
        self.add_reporting(indices, options)
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
        let shared = &self.inner.shared;
        shared.stats.snapshot(shared.readers.locals(), queued)
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
    /// missed delivery or an emit after shutdown (with or without listeners) is reported
    /// through [`on_error`](Self::on_error) and counted ([`BusStats::rejected`] for the
    /// latter). An emit with no listener before shutdown does nothing and returns 0.
    #[inline]
    pub fn emit<E: Member<S>>(&self, event: E) -> usize {
        let header = &self.inner.slots[E::INDEX];
        if header.live() == 0 {
            if self.is_closed() {
                self.inner.reject::<E>();
            }
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
    /// the first wait. Called from inside an async listener, it never waits for room in that
    /// listener's own queue, which only the listener could make: the event goes in past the
    /// capacity.
    ///
    /// # Errors
    /// [`Closed`] with the event when the bus was shut down before the call.
    pub fn emit_async<E: Member<S>>(&self, event: E) -> EmitAsync<'_, S, E> {
        self.emit_async_future(event)
    }

    /// Emits `event` like [`emit_async`](Self::emit_async) and waits until every listener has
    /// finished with it: sync listeners, and every `on_async` listener that got it (waiting
    /// for its turn in that listener's queue). Subscriptions and bridges count as done once the
    /// event is queued for them. Failures are also reported through [`on_error`](Self::on_error).
    ///
    /// This is what a bridge needs to acknowledge a broker message only after it was handled.
    ///
    /// Called from inside an async listener, it does not wait for that listener's own
    /// delivery of the event, which cannot be handled before the call returns: it waits for
    /// the others, and the listener gets the event after its current call, as usual. A cycle
    /// through other listeners (A waits for B, whose handler waits for an event A handles) is
    /// not detected: bound such waits with `tokio::time::timeout`.
    ///
    /// # Errors
    /// [`HandlingError`] with every failure (listener errors and panics, overflows, a bus shut
    /// down before or during the wait); the listeners that succeeded are not undone.
    pub async fn emit_and_wait<E: Member<S>>(&self, event: E) -> Result<usize, HandlingError> {
        self.wait_for(self.start_waited(event, None)).await
    }

    /// [`emit_and_wait`](Self::emit_and_wait) for whichever member `event` holds.
    ///
    /// # Errors
    /// As `emit_and_wait`.
    pub async fn emit_set_and_wait(&self, event: S) -> Result<usize, HandlingError> {
        self.emit_set_and_wait_in(event, None).await
    }

    /// `emit_set_and_wait` with `context` as the [`MessageContext`] of every listener call.
    #[cfg_attr(not(feature = "bridge"), allow(dead_code))]
    pub(crate) async fn emit_set_and_wait_in(
        &self,
        event: S,
        context: Option<Arc<MessageContext>>,
    ) -> Result<usize, HandlingError> {
        // Only the first step is typed: the visitor returns it, and the wait, the same for
        // every member, needs no boxed future.
        struct Start<'a, S: EventSet>(&'a Bus<S>, Option<Arc<MessageContext>>);
        impl<'a, S: EventSet> crate::event::Visitor<S> for Start<'a, S> {
            type Output = Waited<'a>;
            fn visit<E: Member<S>>(self, event: E) -> Self::Output {
                self.0.start_waited(event, self.1)
            }
        }
        self.wait_for(event.visit(Start(self, context))).await
    }

    /// `emit_and_wait`'s typed step: the sync listeners run (with `context` current), the
    /// event is made ready for the queues, with a tracker following every delivery.
    fn start_waited<E: Member<S>>(
        &self,
        event: E,
        context: Option<Arc<MessageContext>>,
    ) -> Waited<'_> {
        if self.is_closed() {
            let error = ListenerError::new(E::NAME, None, ListenerErrorKind::Closed);
            return Err(HandlingError::new(vec![error]));
        }
        // As `emit_async`, with the tracker following every listener task that gets the event.
        let tracker = Arc::new(Tracker::new(context));
        let deliver = match &tracker.context {
            None => start(&self.inner, event, Some(Arc::clone(&tracker))),
            Some(context) => Arc::clone(context)
                .sync_scope(|| start(&self.inner, event, Some(Arc::clone(&tracker)))),
        };
        Ok((deliver, tracker))
    }

    /// The rest of `emit_and_wait`: queues the event and waits for every delivery.
    async fn wait_for(&self, started: Waited<'_>) -> Result<usize, HandlingError> {
        let (deliver, tracker) = started?;
        let reached = deliver.await;
        tracker.finish_emitting();
        let failures = tracker.wait().await;
        if failures.is_empty() {
            Ok(reached)
        } else {
            Err(HandlingError::new(failures))
        }
    }

    // ----- settling and shutting down -------------------------------------------------------

    /// Resolves once the bus is quiet: every event queued for an async listener before the
    /// call, and every event those listeners emitted in turn, has been handled (errors reported
    /// included). Subscriptions are not waited for: their reader decides when to read.
    ///
    /// Called from inside an async listener, it does not wait for that listener's own queue
    /// (the event in its hands cannot be finished before this returns).
    ///
    /// Makes async tests deterministic: emit, `settle().await`, then assert. If other tasks keep
    /// emitting without pause, it keeps waiting; bound it with `tokio::time::timeout`. Events a
    /// [`shutdown`](Self::shutdown) cut off (those its report lists) no longer hold it.
    pub async fn settle(&self) {
        // Each round looks at every listener task there is now, so listeners registered and
        // events emitted by handlers while we waited are seen in the next round. Called from
        // inside an async listener, not that listener's own queue: the event in its hands
        // cannot be finished before this returns.
        let caller = runtime::running_listener();
        loop {
            let queues: Vec<Arc<EventQueue>> = {
                let reg = self.inner.registry.lock();
                let others = reg.tasks.iter().filter(|(id, _)| Some(**id) != caller);
                others.map(|(_, t)| Arc::clone(&t.queue)).collect()
            };
            let targets: Vec<u64> = queues.iter().map(|q| q.pushed()).collect();
            let reached = || queues.iter().zip(&targets).all(|(q, t)| q.finished() >= *t);
            if reached() {
                return;
            }
            self.inner.shared.progress.wait_until(reached).await;
        }
    }

    /// Stops the bus: from now on `emit` delivers nothing (reporting [`ListenerErrorKind::Closed`])
    /// and `emit_async` hands events back; subscriptions end after what they have queued; async
    /// listeners finish their queues. Waits up to `timeout` for them, then stops those still
    /// running and reports every event they did not handle. Calling it again is harmless.
    /// Called from inside an async listener, it neither waits for nor stops that listener,
    /// which could only end after it returns: the listener handles what its queue holds once
    /// its current call returns, then ends.
    ///
    /// # Panics
    /// Like `tokio::time::timeout`, when the runtime was built without its time driver.
    pub async fn shutdown(&self, timeout: Duration) -> BusShutdownReport {
        let deadline = tokio::time::Instant::now() + timeout;
        self.inner.shared.closed.store(true, Ordering::Release);
        let queues: Vec<Arc<EventQueue>> = {
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
        // Called from inside an async listener: that listener can only end after this returns,
        // so it is neither waited for nor stopped; it handles what its queue holds and ends.
        let caller = runtime::running_listener();
        let others_done = || {
            let reg = self.inner.registry.lock();
            reg.tasks.keys().all(|id| Some(*id) == caller)
        };
        let drained = tokio::time::timeout_at(deadline, async {
            loop {
                let mut done = std::pin::pin!(self.inner.shared.tasks_done.notified());
                done.as_mut().enable();
                if others_done() {
                    return;
                }
                done.await;
            }
        })
        .await;
        if drained.is_ok() {
            return BusShutdownReport::default();
        }
        let stragglers: Vec<(ListenerId, Task)> = {
            let mut reg = self.inner.registry.lock();
            let ids: Vec<ListenerId> = reg
                .tasks
                .keys()
                .filter(|id| Some(**id) != caller)
                .copied()
                .collect();
            ids.into_iter()
                .filter_map(|id| reg.tasks.remove(&id).map(|t| (id, t)))
                .collect()
        };
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
                let error = ListenerError::new(name, Some(id), ListenerErrorKind::Closed);
                self.inner.shared.discard(d, error, false);
            }
        }
        let mut unfinished: Vec<UnfinishedEvents> = counts
            .into_iter()
            .map(|((listener, event), count)| UnfinishedEvents {
                listener,
                event,
                count,
            })
            .collect();
        unfinished.sort_by_key(|u| (u.listener, u.event));
        for u in &unfinished {
            tracing::warn!(listener = %u.listener, event = u.event, count = u.count, "event left unhandled at shutdown");
        }
        BusShutdownReport { unfinished }
    }
}
