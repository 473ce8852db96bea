//! Addresses of actors: typed [`ActorRef`], type-erased [`Recipient`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::cell::{Cell, Signal};
use super::error::{AskError, StopReason, TrySendError};
use super::letter::{take_message, Ask, BoxFuture, Tell};
use super::mailbox::{MailboxTx, TrySend};
use super::{Actor, HandledBy, Message};
use crate::error::Closed;

/// Identifies an actor within its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActorId(pub(crate) u64);

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "actor#{}", self.0)
    }
}

/// A typed address of an actor `A`: cheap to clone, valid after the actor stops (sends then
/// fail with the message handed back).
pub struct ActorRef<A: Actor> {
    pub(crate) tx: MailboxTx<A>,
    pub(crate) cell: Arc<Cell>,
}

impl<A: Actor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        ActorRef {
            tx: self.tx.clone(),
            cell: Arc::clone(&self.cell),
        }
    }
}

impl<A: Actor> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorRef")
            .field("id", &self.cell.id)
            .field("actor", &self.cell.name)
            .finish()
    }
}

thread_local! {
    /// The actor whose task this thread is polling: its cell's address (0: none).
    static RUNNING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs `task`, the task of the actor of `cell`, with [`ActorRef`]s able to tell whether
/// they are called from inside it: the cell's address names the actor, and stays its own
/// while the task runs (the task holds a reference to the cell).
pub(crate) fn as_actor<F: std::future::Future>(
    cell: &Arc<Cell>,
    task: F,
) -> impl std::future::Future<Output = F::Output> {
    crate::spawn::marked(&RUNNING, Arc::as_ptr(cell) as usize, task)
}

/// Whether the task of the actor of `cell` is the one running on this thread (called from
/// inside it).
pub(crate) fn runs_here(cell: &Arc<Cell>) -> bool {
    RUNNING.with(std::cell::Cell::get) == Arc::as_ptr(cell) as usize
}

impl<A: Actor> ActorRef<A> {
    /// The actor's id.
    pub fn id(&self) -> ActorId {
        self.cell.id
    }

    /// Whether this is called from inside the actor's own task (its handlers included).
    fn is_running_here(&self) -> bool {
        runs_here(&self.cell)
    }

    /// Sends `message`, waiting while the mailbox is full. An actor telling itself never
    /// waits: only it could make the room, so the message goes in past the capacity.
    ///
    /// # Errors
    /// [`Closed`] with the message when the actor has stopped or is stopping.
    pub async fn tell<M>(&self, message: M) -> Result<(), Closed<M>>
    where
        M: HandledBy<A>,
    {
        if self.cell.is_closing() {
            return Err(Closed(message));
        }
        let letter = Tell::letter(message, crate::trace::current_span());
        let sent = if self.is_running_here() {
            self.tx.send_now(letter)
        } else {
            self.tx.send(letter).await
        };
        sent.map_err(|letter| Closed(take_message(letter)))
    }

    /// Sends `message` if the mailbox has room, without waiting.
    ///
    /// # Errors
    /// [`TrySendError::Full`] or [`TrySendError::Closed`], with the message.
    pub fn try_tell<M>(&self, message: M) -> Result<(), TrySendError<M>>
    where
        M: HandledBy<A>,
    {
        if self.cell.is_closing() {
            return Err(TrySendError::Closed(message));
        }
        let letter = Tell::letter(message, crate::trace::current_span());
        self.tx.try_send(letter).map_err(|(letter, why)| {
            let message = take_message(letter);
            match why {
                TrySend::Full => TrySendError::Full(message),
                TrySend::Closed => TrySendError::Closed(message),
            }
        })
    }

    /// Sends `message` (waiting while the mailbox is full) and waits for the reply.
    ///
    /// # Errors
    /// [`AskError::Closed`] with the message when the actor had stopped or was stopping;
    /// [`AskError::NoReply`] when it stopped, panicked or restarted before replying;
    /// [`AskError::ToSelf`] with the message, at once, when an actor asks itself from inside
    /// its own handler (the reply could never come).
    pub async fn ask<M>(&self, message: M) -> Result<M::Reply, AskError<M>>
    where
        M: HandledBy<A>,
    {
        if self.is_running_here() {
            return Err(AskError::ToSelf(message));
        }
        if self.cell.is_closing() {
            return Err(AskError::Closed(message));
        }
        let (reply, answer) = oneshot::channel();
        let letter = Ask::letter(message, reply, crate::trace::current_span());
        if let Err(letter) = self.tx.send(letter).await {
            return Err(AskError::Closed(take_message(letter)));
        }
        answer.await.map_err(|_| AskError::NoReply)
    }

    /// [`ask`](Self::ask) with a deadline covering both the wait for mailbox space and the
    /// wait for the reply.
    ///
    /// # Errors
    /// As `ask`, plus [`AskError::Timeout`]; the message may still be handled after it.
    pub async fn ask_timeout<M>(
        &self,
        message: M,
        timeout: Duration,
    ) -> Result<M::Reply, AskError<M>>
    where
        M: HandledBy<A>,
    {
        tokio::time::timeout(timeout, self.ask(message))
            .await
            .unwrap_or(Err(AskError::Timeout))
    }

    /// Asks the actor to stop gracefully. From the moment it returns, sends through any
    /// reference are refused (handing the message back); the actor finishes its current
    /// message, runs `stopping`, handles everything queued before the stop, then runs
    /// `stopped`. A stop during a supervisor's restart delay starts the new instance at once so
    /// that it drains the mailbox. Returns at once; see [`wait_stopped`](Self::wait_stopped).
    pub fn stop(&self) {
        self.cell.signal(Signal::Stop(StopReason::Normal));
    }

    /// Stops the actor after its current message, without handling the rest of its mailbox
    /// (reported as dead letters; pending asks get [`AskError::NoReply`]). New messages are
    /// refused from the moment it returns.
    pub fn kill(&self) {
        self.cell.signal(Signal::Kill(StopReason::Killed));
    }

    /// Waits until the actor has stopped for good (after any restarts) and returns why. Not
    /// from inside the actor's own handler: it stops only after that handler returns, so this
    /// would never return there.
    pub async fn wait_stopped(&self) -> StopReason {
        self.cell.wait_exit().await
    }

    /// Whether the actor is still running (or restarting).
    pub fn is_alive(&self) -> bool {
        self.cell.exit_reason().is_none()
    }

    /// A type-erased address for one message type.
    pub fn recipient<M>(&self) -> Recipient<M>
    where
        M: HandledBy<A>,
    {
        Recipient {
            inner: Arc::new(self.clone()),
        }
    }
}

/// An address of any actor that handles `M`; from [`ActorRef::recipient`].
pub struct Recipient<M: Message> {
    inner: Arc<dyn ErasedRef<M>>,
}

impl<M: Message> Clone for Recipient<M> {
    fn clone(&self) -> Self {
        Recipient {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Message> fmt::Debug for Recipient<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recipient")
            .field("id", &self.inner.id())
            .finish()
    }
}

impl<M: Message> Recipient<M> {
    /// The actor's id.
    pub fn id(&self) -> ActorId {
        self.inner.id()
    }

    /// See [`ActorRef::tell`].
    ///
    /// # Errors
    /// [`Closed`] with the message when the actor has stopped.
    pub async fn tell(&self, message: M) -> Result<(), Closed<M>> {
        self.inner.tell(message).await
    }

    /// See [`ActorRef::try_tell`].
    ///
    /// # Errors
    /// [`TrySendError`] with the message when the mailbox is full or the actor stopped.
    pub fn try_tell(&self, message: M) -> Result<(), TrySendError<M>> {
        self.inner.try_tell(message)
    }

    /// See [`ActorRef::ask`].
    ///
    /// # Errors
    /// As [`ActorRef::ask`].
    pub async fn ask(&self, message: M) -> Result<M::Reply, AskError<M>> {
        self.inner.ask(message).await
    }
}

trait ErasedRef<M: Message>: Send + Sync {
    fn id(&self) -> ActorId;
    fn tell(&self, message: M) -> BoxFuture<'_, Result<(), Closed<M>>>;
    fn try_tell(&self, message: M) -> Result<(), TrySendError<M>>;
    fn ask(&self, message: M) -> BoxFuture<'_, Result<M::Reply, AskError<M>>>;
}

impl<A: Actor, M: HandledBy<A>> ErasedRef<M> for ActorRef<A> {
    fn id(&self) -> ActorId {
        ActorRef::id(self)
    }

    fn tell(&self, message: M) -> BoxFuture<'_, Result<(), Closed<M>>> {
        Box::pin(ActorRef::tell(self, message))
    }

    fn try_tell(&self, message: M) -> Result<(), TrySendError<M>> {
        ActorRef::try_tell(self, message)
    }

    fn ask(&self, message: M) -> BoxFuture<'_, Result<M::Reply, AskError<M>>> {
        Box::pin(ActorRef::ask(self, message))
    }
}
