//! What a running actor can do besides handling messages.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::cell::{Cell, Signal};
use super::error::StopReason;
use super::{Actor, ActorId, ActorRef, ActorSystem, Handler, Message};
use crate::bus::{Bus, ListenerId};
use crate::error::BoxError;
use crate::event::{EventSet, Member};

/// Identifies a timer of one actor instance; see [`Context::cancel_timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId(u64);

/// A monitored actor stopped for good; see [`Context::monitor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    /// The actor that stopped.
    pub actor: ActorId,
    /// Why it stopped.
    pub reason: StopReason,
}

impl Message for Down {
    type Reply = ();
}

/// A stop the actor asked for itself, applied after the current message.
enum Request {
    Stop,
    Fail(String),
}

/// The running actor's view of itself: its address, its timers and subscriptions, and the way
/// to stop. Everything registered through it belongs to the current instance and ends with it
/// (before a restart, too).
pub struct Context<A: Actor> {
    me: ActorRef<A>,
    system: ActorSystem,
    request: Option<Request>,
    next_timer: u64,
    timers: HashMap<TimerId, AbortHandle>,
    /// Undo actions for bus subscriptions and monitors, run when the instance ends.
    cleanups: Vec<Box<dyn FnOnce() + Send>>,
}

impl<A: Actor> Context<A> {
    pub(crate) fn new(me: ActorRef<A>, system: ActorSystem) -> Self {
        Context {
            me,
            system,
            request: None,
            next_timer: 0,
            timers: HashMap::new(),
            cleanups: Vec::new(),
        }
    }

    /// This actor's id.
    pub fn id(&self) -> ActorId {
        self.me.id()
    }

    /// This actor's address.
    pub fn actor_ref(&self) -> ActorRef<A> {
        self.me.clone()
    }

    /// The system this actor runs in.
    pub fn system(&self) -> &ActorSystem {
        &self.system
    }

    /// Stops gracefully after the current message: as [`ActorRef::stop`], new messages are
    /// refused from now on.
    pub fn stop(&mut self) {
        self.me.cell.close();
        self.request.get_or_insert(Request::Stop);
    }

    /// Stops after the current message with [`StopReason::Failed`]; a supervisor may restart
    /// the actor with fresh state.
    pub fn fail(&mut self, error: impl Into<BoxError>) {
        self.request = Some(Request::Fail(error.into().to_string()));
    }

    pub(crate) fn take_request(&mut self) -> Option<StopReason> {
        self.request.take().map(|r| match r {
            Request::Stop => StopReason::Normal,
            Request::Fail(m) => StopReason::Failed(m.into()),
        })
    }

    /// Sends `message` to this actor after `delay`. Cancelled by
    /// [`cancel_timer`](Self::cancel_timer) or when the instance stops.
    pub fn notify_after<M>(&mut self, delay: Duration, message: M) -> TimerId
    where
        M: Message,
        A: Handler<M>,
    {
        let me = self.me.clone();
        self.add_timer(async move {
            tokio::time::sleep(delay).await;
            let _ = me.tell(message).await;
        })
    }

    /// Sends `make()` to this actor every `period`, first after one period. A tick that finds
    /// the mailbox full waits (later ticks are delayed, not bunched). Cancelled like
    /// [`notify_after`](Self::notify_after).
    pub fn notify_interval<M>(
        &mut self,
        period: Duration,
        mut make: impl FnMut() -> M + Send + 'static,
    ) -> TimerId
    where
        M: Message,
        A: Handler<M>,
    {
        let me = self.me.clone();
        self.add_timer(async move {
            let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if me.tell(make()).await.is_err() {
                    return;
                }
            }
        })
    }

    fn add_timer(
        &mut self,
        run: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> TimerId {
        self.timers.retain(|_, handle| !handle.is_finished());
        self.next_timer += 1;
        let id = TimerId(self.next_timer);
        self.timers.insert(id, tokio::spawn(run).abort_handle());
        id
    }

    /// Cancels a timer; returns whether it was still pending.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        match self.timers.remove(&id) {
            Some(handle) => {
                let pending = !handle.is_finished();
                handle.abort();
                pending
            }
            None => false,
        }
    }

    /// Feeds this actor every `E` emitted on `bus`, as `Arc<E>` messages, in emit order. The
    /// subscription is an [`on_async`](Bus::on_async) listener of the bus, so the bus's queue
    /// settings and error reporting apply; it is removed when this instance stops.
    pub fn subscribe<S, E>(&mut self, bus: &Bus<S>) -> ListenerId
    where
        S: EventSet,
        E: Member<S>,
        A: Handler<Arc<E>>,
    {
        let me = self.me.clone();
        let id = bus.on_async(move |event: Arc<E>| {
            let me = me.clone();
            async move { me.tell(event).await }
        });
        let bus = bus.clone();
        self.cleanups.push(Box::new(move || {
            bus.off(id);
        }));
        id
    }

    /// Sends this actor a [`Down`] message when `other` stops for good (at once if it already
    /// has). Ends with this instance.
    pub fn monitor<B: Actor>(&mut self, other: &ActorRef<B>)
    where
        A: Handler<Down>,
    {
        let me = self.me.clone();
        let watched = Arc::clone(&other.cell);
        let task = tokio::spawn(async move {
            let reason = watched.wait_exit().await;
            let _ = me
                .tell(Down {
                    actor: watched.id,
                    reason,
                })
                .await;
        });
        let abort = task.abort_handle();
        self.cleanups.push(Box::new(move || abort.abort()));
    }

    /// Links this actor and `other`: when either stops for good abnormally (panic, failure, or
    /// its own linked failure), the other is stopped with [`StopReason::LinkDied`]. The link
    /// lasts until either stops.
    pub fn link<B: Actor>(&mut self, other: &ActorRef<B>) {
        let (a, b) = (Arc::clone(&self.me.cell), Arc::clone(&other.cell));
        tokio::spawn(propagate(Arc::clone(&a), Arc::clone(&b)));
        tokio::spawn(propagate(b, a));
    }

    /// Ends everything this instance registered.
    pub(crate) fn end_instance(&mut self) {
        for (_, handle) in self.timers.drain() {
            handle.abort();
        }
        for cleanup in self.cleanups.drain(..) {
            cleanup();
        }
    }
}

/// Stops `watcher` if `watched` stops abnormally first.
async fn propagate(watcher: Arc<Cell>, watched: Arc<Cell>) {
    tokio::select! {
        reason = watched.wait_exit() => {
            if reason.is_abnormal() {
                watcher.signal(Signal::Kill(StopReason::LinkDied {
                    actor: watched.id,
                    reason: Box::new(reason),
                }));
            }
        }
        _ = watcher.wait_exit() => {}
    }
}
