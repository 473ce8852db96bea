//! Actor errors and stop reasons.

use std::fmt;
use std::sync::Arc;

use super::ActorId;

/// Why an actor (or one instance of a supervised actor) stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// [`ActorRef::stop`](crate::actor::ActorRef::stop) or
    /// [`Context::stop`](crate::actor::Context::stop): the mailbox was drained.
    Normal,
    /// [`ActorRef::kill`](crate::actor::ActorRef::kill): stopped without draining the mailbox.
    Killed,
    /// [`ActorSystem::shutdown`](crate::actor::ActorSystem::shutdown): the mailbox was drained.
    Shutdown,
    /// A handler or hook panicked; the panic message.
    Panicked(Arc<str>),
    /// [`Actor::started`](crate::actor::Actor::started) returned an error, or the actor called
    /// [`Context::fail`](crate::actor::Context::fail); the error message.
    Failed(Arc<str>),
    /// A linked actor stopped abnormally.
    LinkDied {
        /// The linked actor.
        actor: ActorId,
        /// Why it stopped.
        reason: Box<StopReason>,
    },
    /// A one-for-all supervisor restarts this instance because a sibling failed.
    Restarting,
}

impl StopReason {
    /// Whether this is a failure (panic, error, linked failure) rather than a requested stop.
    pub fn is_abnormal(&self) -> bool {
        matches!(
            self,
            StopReason::Panicked(_) | StopReason::Failed(_) | StopReason::LinkDied { .. }
        )
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Normal => f.write_str("stopped"),
            StopReason::Killed => f.write_str("killed"),
            StopReason::Shutdown => f.write_str("shut down"),
            StopReason::Panicked(m) => write!(f, "panicked: {m}"),
            StopReason::Failed(m) => write!(f, "failed: {m}"),
            StopReason::LinkDied { actor, reason } => {
                write!(f, "linked actor {actor} stopped ({reason})")
            }
            StopReason::Restarting => f.write_str("restarting"),
        }
    }
}

/// [`ActorRef::try_tell`](crate::actor::ActorRef::try_tell) failed; the message is handed back.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError<M> {
    /// The mailbox is full; the actor is running. Try later or use `tell`.
    #[error("the actor's mailbox is full")]
    Full(M),
    /// The actor has stopped.
    #[error("the actor has stopped")]
    Closed(M),
}

impl<M> TrySendError<M> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> M {
        match self {
            TrySendError::Full(m) | TrySendError::Closed(m) => m,
        }
    }
}

impl<M> fmt::Debug for TrySendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// An [`ask`](crate::actor::ActorRef::ask) got no reply.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError<M> {
    /// The actor had stopped before the message was sent; the message is handed back.
    #[error("the actor has stopped; the message was not delivered")]
    Closed(M),
    /// The actor stopped, panicked or was restarted before replying. The message may have been
    /// handled in part.
    #[error("the actor stopped before replying")]
    NoReply,
    /// No reply within the timeout. The message may still be handled later.
    #[error("no reply within the timeout")]
    Timeout,
    /// An actor asked itself from inside its own handler: it would handle the message only
    /// after that handler returned, so the reply could never come. The message is handed
    /// back, not sent; `tell` it instead, or handle it in place.
    #[error("an actor asked itself from its own handler; the reply could never come")]
    ToSelf(M),
}

impl<M> fmt::Debug for AskError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AskError::Closed(_) => f.write_str("Closed(..)"),
            AskError::NoReply => f.write_str("NoReply"),
            AskError::Timeout => f.write_str("Timeout"),
            AskError::ToSelf(_) => f.write_str("ToSelf(..)"),
        }
    }
}
