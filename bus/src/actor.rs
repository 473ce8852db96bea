//! Typed actors on tokio: one task per actor, a bounded mailbox, typed `tell` and `ask`,
//! supervision, timers, and bus subscriptions.
//!
//! An [`Actor`] owns its state and handles one message at a time, through one [`Handler<M>`]
//! impl per message type. [`ActorSystem::spawn`] starts it and returns an [`ActorRef<A>`], the
//! only way to reach it: [`tell`](ActorRef::tell) (waits for mailbox space),
//! [`try_tell`](ActorRef::try_tell) (hands the message back when full or stopped),
//! [`ask`](ActorRef::ask) (waits for the reply), or a type-erased [`Recipient<M>`].
//!
//! An actor reaching itself from its own handler is the one wait nothing else could end, so
//! neither waits: an `ask` of itself fails at once with [`AskError::ToSelf`] (the reply would
//! come only after the handler returned), and a `tell` to itself goes in past a full
//! mailbox's capacity (only the actor could make room). Cycles through other actors (A asks
//! B, which asks A) are not detected: bound such asks with
//! [`ask_timeout`](ActorRef::ask_timeout).
//!
//! What a message costs: a told message of up to 24 bytes, or 32 when its type has a spare
//! value (as one holding a `String`, `Vec`, `Box` or `Arc` does), travels inline in the
//! mailbox, allocating nothing on the sender's side but the mailbox's own blocks of 32 slots,
//! at most one per 32 messages when none can be reused (the actor boxes the handler's future
//! on its own thread, as for every message); for an asked one, which also carries its reply
//! channel, 16 and 24 bytes; 8 bytes less each when sent inside a tracing span. A larger
//! message is boxed on the way: keep large payloads behind an `Arc` or `Box` where that matters.
//!
//! ```
//! use tidings::actor::{Actor, ActorSystem, Context, Handler, Message};
//!
//! #[derive(Default)]
//! struct Counter { total: u64 }
//! impl Actor for Counter {}
//!
//! #[derive(Message)]
//! #[message(reply = u64)]
//! struct Add(u64);
//!
//! impl Handler<Add> for Counter {
//!     async fn handle(&mut self, Add(n): Add, _ctx: &mut Context<Self>) -> u64 {
//!         self.total += n;
//!         self.total
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let system = ActorSystem::new();
//! let counter = system.spawn(Counter::default());
//! counter.tell(Add(2)).await.unwrap();
//! assert_eq!(counter.ask(Add(3)).await.unwrap(), 5);
//! counter.stop();
//! counter.wait_stopped().await;
//! # }
//! ```
//!
//! ## Lifecycle
//!
//! [`Actor::started`] runs before the first message. [`stop`](ActorRef::stop) (or
//! [`Context::stop`]) closes the mailbox to new messages, runs [`Actor::stopping`], handles
//! everything already queued, then runs [`Actor::stopped`]. [`kill`](ActorRef::kill) stops after
//! the current message without draining. An actor runs until it is stopped: dropping every
//! `ActorRef` does not stop it, so timers and subscriptions can hold references freely;
//! [`ActorSystem::shutdown`] stops every actor of a system within a deadline.
//!
//! ## Failures
//!
//! A panic in a handler or hook is caught: the runtime goes on. [`Actor::on_panic`] decides
//! whether the actor resumes with its state or stops. A stopped actor's pending `ask`s resolve
//! with [`AskError::NoReply`]; messages still in its mailbox are reported as dead letters
//! (counted in [`ActorSystem::dead_letters`] and logged), never dropped silently.
//!
//! ## Supervision
//!
//! A [`Supervisor`] spawns actors from factories and rebuilds one with fresh state when it
//! panics or fails, after a [`Backoff`](crate::backoff::Backoff) delay, on the same mailbox (queued
//! messages wait for the new instance; a stop during the delay starts it at once, to drain
//! them). At most `max_restarts` within `window` (per supervisor, as in Erlang); past that the
//! supervisor gives up and stops all its children. One-for-one restarts only the failed child;
//! one-for-all restarts its siblings too.
//!
//! ## Links and monitors
//!
//! [`Context::monitor`] delivers a [`Down`] message with the [`StopReason`] when the watched
//! actor stops for good. [`Context::link`] ties two actors: when either stops abnormally, the
//! other stops too, with [`StopReason::LinkDied`].
//!
//! ## Bus events
//!
//! [`Context::subscribe`] feeds an actor the events of a bus as `Arc<E>` messages, in emit
//! order, through its mailbox (so a slow actor slows `emit_async`, as any subscriber does). The
//! subscription ends when the actor instance stops.

mod actor_ref;
mod cell;
mod context;
mod error;
mod letter;
mod mailbox;
mod run;
mod supervisor;
mod system;

use std::future::Future;
use std::sync::Arc;

pub use self::actor_ref::{ActorId, ActorRef, Recipient};
pub use self::context::{Context, Down, TimerId};
pub use self::error::{AskError, StopReason, TrySendError};
pub use self::mailbox::{MailboxSize, DEFAULT_MAILBOX};
pub use self::supervisor::{Strategy, Supervisor, SupervisorBuilder};
pub use self::system::{ActorSystem, SpawnOptions, SystemShutdownReport, UnfinishedActor};

/// `#[derive(Message)]`; `#[message(reply = Type)]` sets [`Message::Reply`] (default `()`).
pub use tidings_derive::Message;

use crate::error::BoxError;
use crate::event::Event;

/// A message an actor can handle, with the type of its reply.
pub trait Message: Send + 'static {
    /// What [`ActorRef::ask`] returns; `()` for messages that are only told.
    type Reply: Send + 'static;
}

/// Bus events reach actors shared, as `Arc<E>`; see [`Context::subscribe`].
impl<E: Event> Message for Arc<E> {
    type Reply = ();
}

/// What an actor does after a handler panicked; see [`Actor::on_panic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PanicAction {
    /// Stop with [`StopReason::Panicked`] (a supervisor may restart it with fresh state).
    #[default]
    Stop,
    /// Keep the state and go on with the next message.
    Resume,
}

/// A unit of state that handles messages one at a time; see the [module docs](self).
///
/// Every hook has a default that does nothing.
pub trait Actor: Send + Sized + 'static {
    /// Runs before the first message. An error stops the actor with [`StopReason::Failed`].
    fn started(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs when a graceful stop begins, before the mailbox is drained; the actor still handles
    /// what was queued after it.
    fn stopping(&mut self, ctx: &mut Context<Self>) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// Runs last for this instance, with the reason it stops (or is restarted).
    fn stopped(
        &mut self,
        ctx: &mut Context<Self>,
        reason: &StopReason,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, reason);
        async {}
    }

    /// Runs after a handler panicked, with the panic message; decides whether to resume or stop.
    fn on_panic(
        &mut self,
        ctx: &mut Context<Self>,
        panic: &str,
    ) -> impl Future<Output = PanicAction> + Send {
        let _ = (ctx, panic);
        async { PanicAction::Stop }
    }
}

/// Implemented for every message `M` that actor `A` handles (`A: Handler<M>`); the bound
/// that [`ActorRef::tell`], [`ask`](ActorRef::ask) and [`Recipient`] put on messages. Never
/// implemented by hand.
///
/// It exists for the compiler's messages: with the message as the bound's subject, a message
/// the actor does not handle is named as such ("the actor `Counter` does not handle `Reset`")
/// instead of being inferred from the actor's only handler into a type mismatch.
#[diagnostic::on_unimplemented(
    message = "the actor `{A}` does not handle `{Self}`",
    label = "`{A}` has no `Handler<{Self}>` impl",
    note = "add `impl Handler<{Self}> for {A} {{ async fn handle(&mut self, msg: {Self}, ctx: &mut Context<Self>) -> ... }}`"
)]
pub trait HandledBy<A: Actor>: Message {
    /// `A`'s handler for this message; what the runtime calls.
    #[doc(hidden)]
    fn handle_by(
        self,
        actor: &mut A,
        ctx: &mut Context<A>,
    ) -> impl Future<Output = Self::Reply> + Send;
}

impl<A: Handler<M>, M: Message> HandledBy<A> for M {
    fn handle_by(
        self,
        actor: &mut A,
        ctx: &mut Context<A>,
    ) -> impl Future<Output = M::Reply> + Send {
        actor.handle(self, ctx)
    }
}

/// Handling of message type `M` by an actor.
#[diagnostic::on_unimplemented(
    message = "the actor `{Self}` does not handle `{M}`",
    label = "`{Self}` has no `Handler<{M}>` impl",
    note = "add `impl Handler<{M}> for {Self} {{ async fn handle(&mut self, msg: {M}, ctx: &mut Context<Self>) -> ... }}`"
)]
pub trait Handler<M: Message>: Actor {
    /// Handles one message; the returned value is the reply to an `ask`.
    fn handle(
        &mut self,
        message: M,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = M::Reply> + Send;
}
