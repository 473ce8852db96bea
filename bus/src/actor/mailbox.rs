//! The actor's mailbox: a tokio mpsc channel, bounded unless asked otherwise.

use std::task::{Context, Poll};

use tokio::sync::mpsc;

use super::letter::BoxLetter;

/// The default mailbox capacity.
pub const DEFAULT_MAILBOX: usize = 256;

/// How many messages an actor's mailbox holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxSize {
    /// At most this many (at least 1); `tell` waits and `try_tell` fails while it is full.
    Bounded(usize),
    /// No limit: `tell` never waits. Memory grows if the actor falls behind.
    Unbounded,
}

impl Default for MailboxSize {
    fn default() -> Self {
        MailboxSize::Bounded(DEFAULT_MAILBOX)
    }
}

pub(crate) enum MailboxTx<A> {
    Bounded(mpsc::Sender<BoxLetter<A>>),
    Unbounded(mpsc::UnboundedSender<BoxLetter<A>>),
}

impl<A> Clone for MailboxTx<A> {
    fn clone(&self) -> Self {
        match self {
            MailboxTx::Bounded(tx) => MailboxTx::Bounded(tx.clone()),
            MailboxTx::Unbounded(tx) => MailboxTx::Unbounded(tx.clone()),
        }
    }
}

/// Why a `try_send` failed.
pub(crate) enum TrySend {
    Full,
    Closed,
}

impl<A> MailboxTx<A> {
    /// Sends, waiting for space; hands the letter back when the mailbox is closed.
    pub(crate) async fn send(&self, letter: BoxLetter<A>) -> Result<(), BoxLetter<A>> {
        match self {
            MailboxTx::Bounded(tx) => tx.send(letter).await.map_err(|e| e.0),
            MailboxTx::Unbounded(tx) => tx.send(letter).map_err(|e| e.0),
        }
    }

    pub(crate) fn try_send(&self, letter: BoxLetter<A>) -> Result<(), (BoxLetter<A>, TrySend)> {
        match self {
            MailboxTx::Bounded(tx) => tx.try_send(letter).map_err(|e| match e {
                mpsc::error::TrySendError::Full(v) => (v, TrySend::Full),
                mpsc::error::TrySendError::Closed(v) => (v, TrySend::Closed),
            }),
            MailboxTx::Unbounded(tx) => tx.send(letter).map_err(|e| (e.0, TrySend::Closed)),
        }
    }
}

pub(crate) enum MailboxRx<A> {
    Bounded(mpsc::Receiver<BoxLetter<A>>),
    Unbounded(mpsc::UnboundedReceiver<BoxLetter<A>>),
}

impl<A> MailboxRx<A> {
    pub(crate) async fn recv(&mut self) -> Option<BoxLetter<A>> {
        match self {
            MailboxRx::Bounded(rx) => rx.recv().await,
            MailboxRx::Unbounded(rx) => rx.recv().await,
        }
    }

    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<BoxLetter<A>>> {
        match self {
            MailboxRx::Bounded(rx) => rx.poll_recv(cx),
            MailboxRx::Unbounded(rx) => rx.poll_recv(cx),
        }
    }

    /// The next message if one is waiting.
    pub(crate) fn try_recv(&mut self) -> Option<BoxLetter<A>> {
        match self {
            MailboxRx::Bounded(rx) => rx.try_recv().ok(),
            MailboxRx::Unbounded(rx) => rx.try_recv().ok(),
        }
    }

    /// Refuses new messages; those already queued can still be received.
    pub(crate) fn close(&mut self) {
        match self {
            MailboxRx::Bounded(rx) => rx.close(),
            MailboxRx::Unbounded(rx) => rx.close(),
        }
    }
}

pub(crate) fn mailbox<A>(size: MailboxSize) -> (MailboxTx<A>, MailboxRx<A>) {
    match size {
        MailboxSize::Bounded(n) => {
            let (tx, rx) = mpsc::channel(n.max(1));
            (MailboxTx::Bounded(tx), MailboxRx::Bounded(rx))
        }
        MailboxSize::Unbounded => {
            let (tx, rx) = mpsc::unbounded_channel();
            (MailboxTx::Unbounded(tx), MailboxRx::Unbounded(rx))
        }
    }
}
