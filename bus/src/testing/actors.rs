//! Actors under test: [`Probe`], an actor that records what it receives and replies as told,
//! and [`TestActor`], one actor on a system of its own.

use std::fmt::{self, Debug};
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::Unmet;
use crate::actor::{Actor, ActorRef, ActorSystem, Context, Handler, Message, StopReason};

/// An actor that records every `M` it receives and answers each with its reply function:
/// the stand-in for a collaborator of the actor under test (Akka's `TestProbe`). Spawn it, hand
/// its [`ActorRef`] (or a `Recipient<M>`) to the code under test, and read what arrived through
/// the [`ProbeLog`].
pub struct Probe<M: Message> {
    log: ProbeLog<M>,
    reply: ReplyFn<M>,
}

/// How a probe answers a message.
type ReplyFn<M> = Box<dyn FnMut(&M) -> <M as Message>::Reply + Send>;

impl<M: Message> Debug for Probe<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe")
            .field("received", &self.log.count())
            .finish_non_exhaustive()
    }
}

impl<M: Message> Probe<M> {
    /// A probe that answers each message with `reply(&message)`, and the log of what it
    /// receives.
    pub fn new(reply: impl FnMut(&M) -> M::Reply + Send + 'static) -> (Probe<M>, ProbeLog<M>) {
        let log = ProbeLog(Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        }));
        let probe = Probe {
            log: log.clone(),
            reply: Box::new(reply),
        };
        (probe, log)
    }

    /// A probe that answers each message with the reply type's default (`()` for messages
    /// that are only told).
    pub fn silent() -> (Probe<M>, ProbeLog<M>)
    where
        M::Reply: Default,
    {
        Self::new(|_| M::Reply::default())
    }
}

impl<M: Message> Actor for Probe<M> {}

impl<M: Message> Handler<M> for Probe<M> {
    async fn handle(&mut self, message: M, _: &mut Context<Self>) -> M::Reply {
        let reply = (self.reply)(&message);
        self.log.0.received.lock().push(message);
        self.log.0.arrived.notify_waiters();
        reply
    }
}

struct Shared<M> {
    received: Mutex<Vec<M>>,
    arrived: Notify,
}

/// What a [`Probe`] received, in order; clones share it.
pub struct ProbeLog<M>(Arc<Shared<M>>);

impl<M> Clone for ProbeLog<M> {
    fn clone(&self) -> Self {
        ProbeLog(Arc::clone(&self.0))
    }
}

impl<M> Debug for ProbeLog<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeLog")
            .field("received", &self.count())
            .finish()
    }
}

impl<M> ProbeLog<M> {
    /// How many messages arrived so far.
    pub fn count(&self) -> usize {
        self.0.received.lock().len()
    }

    /// The messages that arrived so far, in order.
    pub fn received(&self) -> Vec<M>
    where
        M: Clone,
    {
        self.0.received.lock().clone()
    }

    /// Waits up to `within` for a message that `matches` (one that arrived before the call
    /// counts), and returns the first.
    ///
    /// # Errors
    /// [`Unmet`] when none came in time; its message lists what did.
    pub async fn wait_for(&self, matches: impl Fn(&M) -> bool, within: Duration) -> Result<M, Unmet>
    where
        M: Clone + Debug,
    {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut arrived = std::pin::pin!(self.0.arrived.notified());
            arrived.as_mut().enable();
            if let Some(found) = self.0.received.lock().iter().find(|m| matches(m)) {
                return Ok(found.clone());
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let received = self.0.received.lock();
                if let Some(found) = received.iter().find(|m| matches(m)) {
                    return Ok(found.clone());
                }
                let shown: Vec<String> = received
                    .iter()
                    .rev()
                    .take(10)
                    .rev()
                    .map(|m| format!("{m:?}"))
                    .collect();
                return Err(Unmet::new(format!(
                    "no message that matches reached the probe within {within:?}; {}",
                    if received.is_empty() {
                        "nothing arrived".to_owned()
                    } else {
                        format!(
                            "received instead ({}): {}",
                            received.len(),
                            shown.join(", ")
                        )
                    }
                )));
            }
        }
    }
}

/// One actor on an [`ActorSystem`] of its own, to drive its handlers with `ask` and `tell`
/// (through `Deref` to its [`ActorRef`]) and check how it stops, without wiring a service.
pub struct TestActor<A: Actor> {
    system: ActorSystem,
    actor: ActorRef<A>,
}

impl<A: Actor> Debug for TestActor<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestActor")
            .field("alive", &self.actor.is_alive())
            .finish_non_exhaustive()
    }
}

impl<A: Actor> TestActor<A> {
    /// Starts `actor` (its `started` hook runs before the first message).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(actor: A) -> Self {
        let system = ActorSystem::new();
        let actor = system.spawn(actor);
        TestActor { system, actor }
    }

    /// The system it runs on, to spawn its collaborators (such as [`Probe`]s) beside it.
    pub fn system(&self) -> &ActorSystem {
        &self.system
    }

    /// Waits up to `within` for the actor to stop by itself, and returns why.
    ///
    /// # Errors
    /// [`Unmet`] when it is still running.
    pub async fn stopped_within(&self, within: Duration) -> Result<StopReason, Unmet> {
        tokio::time::timeout(within, self.actor.wait_stopped())
            .await
            .map_err(|_| {
                Unmet::new(format!(
                    "the actor `{}` was still running after {within:?}",
                    std::any::type_name::<A>()
                ))
            })
    }

    /// Stops the actor (after the message it is handling) and returns why it stopped.
    pub async fn stop(self) -> StopReason {
        self.actor.stop();
        self.actor.wait_stopped().await
    }
}

impl<A: Actor> Deref for TestActor<A> {
    type Target = ActorRef<A>;

    fn deref(&self) -> &ActorRef<A> {
        &self.actor
    }
}
