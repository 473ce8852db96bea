//! The actor's mailbox: a tokio unbounded mpsc channel, with a capacity gate in front of it
//! unless asked otherwise.
//!
//! Why not tokio's bounded channel: its capacity is a semaphore whose every release (one per
//! message received) takes the semaphore's waiter lock, which was 12% of a multi-thread
//! `tell` profile. Here the capacity is a counter: a send reserves a slot with one
//! compare-and-swap, a receive frees it with one subtraction and a load, and only when a
//! sender is waiting for room does the receiver touch a [`Notify`]. A sender that finds the
//! mailbox full counts itself as waiting before it looks again, and the receiver frees a slot
//! before it looks at that count (both sequentially consistent), so either the sender sees the
//! free slot or the receiver sees the sender and wakes it: no wake-up is lost.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, Notify};

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

/// The capacity of a bounded mailbox, shared by its senders and its receiver.
pub(crate) struct Gate {
    capacity: usize,
    /// Messages sent and not yet received.
    queued: AtomicUsize,
    /// Senders waiting for room.
    waiting: AtomicUsize,
    /// Wakes a waiting sender when room is made, or all of them when the mailbox closes.
    room: Notify,
}

impl Gate {
    /// Takes a slot if one is free.
    fn try_reserve(&self) -> bool {
        self.queued
            .fetch_update(SeqCst, SeqCst, |n| (n < self.capacity).then_some(n + 1))
            .is_ok()
    }

    /// Frees a slot (a message was received), waking a waiting sender if there is one.
    fn release(&self) {
        self.queued.fetch_sub(1, SeqCst);
        if self.waiting.load(SeqCst) > 0 {
            self.room.notify_one();
        }
    }
}

/// Counts a sender as waiting while it lives, also when its `send` is dropped mid-way.
struct Waiting<'a>(&'a Gate);

impl<'a> Waiting<'a> {
    fn new(gate: &'a Gate) -> Self {
        gate.waiting.fetch_add(1, SeqCst);
        Waiting(gate)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let others = self.0.waiting.fetch_sub(1, SeqCst) > 1;
        // A wake-up this sender took and did not use goes to the next one.
        if others && self.0.queued.load(SeqCst) < self.0.capacity {
            self.0.room.notify_one();
        }
    }
}

pub(crate) enum MailboxTx<A> {
    Bounded(mpsc::UnboundedSender<BoxLetter<A>>, Arc<Gate>),
    Unbounded(mpsc::UnboundedSender<BoxLetter<A>>),
}

impl<A> Clone for MailboxTx<A> {
    fn clone(&self) -> Self {
        match self {
            MailboxTx::Bounded(tx, gate) => MailboxTx::Bounded(tx.clone(), Arc::clone(gate)),
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
        let (tx, gate) = match self {
            MailboxTx::Unbounded(tx) => return tx.send(letter).map_err(|e| e.0),
            MailboxTx::Bounded(tx, gate) => (tx, gate),
        };
        if !gate.try_reserve() {
            let _waiting = Waiting::new(gate);
            loop {
                let mut room = pin!(gate.room.notified());
                room.as_mut().enable();
                if tx.is_closed() {
                    return Err(letter);
                }
                if gate.try_reserve() {
                    break;
                }
                room.await;
            }
        }
        tx.send(letter).map_err(|e| e.0)
    }

    /// Sends without waiting for space, past the capacity if need be: for an actor telling
    /// itself, which would wait for room only it can make.
    pub(crate) fn send_now(&self, letter: BoxLetter<A>) -> Result<(), BoxLetter<A>> {
        match self {
            MailboxTx::Bounded(tx, gate) => {
                gate.queued.fetch_add(1, SeqCst);
                tx.send(letter).map_err(|e| e.0)
            }
            MailboxTx::Unbounded(tx) => tx.send(letter).map_err(|e| e.0),
        }
    }

    pub(crate) fn try_send(&self, letter: BoxLetter<A>) -> Result<(), (BoxLetter<A>, TrySend)> {
        match self {
            MailboxTx::Bounded(tx, gate) => {
                if tx.is_closed() {
                    Err((letter, TrySend::Closed))
                } else if gate.try_reserve() {
                    tx.send(letter).map_err(|e| (e.0, TrySend::Closed))
                } else {
                    Err((letter, TrySend::Full))
                }
            }
            MailboxTx::Unbounded(tx) => tx.send(letter).map_err(|e| (e.0, TrySend::Closed)),
        }
    }
}

pub(crate) struct MailboxRx<A> {
    rx: mpsc::UnboundedReceiver<BoxLetter<A>>,
    gate: Option<Arc<Gate>>,
}

impl<A> MailboxRx<A> {
    fn took(&self, letter: Option<BoxLetter<A>>) -> Option<BoxLetter<A>> {
        if let (Some(_), Some(gate)) = (&letter, &self.gate) {
            gate.release();
        }
        letter
    }

    pub(crate) async fn recv(&mut self) -> Option<BoxLetter<A>> {
        let letter = self.rx.recv().await;
        self.took(letter)
    }

    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<BoxLetter<A>>> {
        self.rx.poll_recv(cx).map(|letter| self.took(letter))
    }

    /// The next message if one is waiting.
    pub(crate) fn try_recv(&mut self) -> Option<BoxLetter<A>> {
        let letter = self.rx.try_recv().ok();
        self.took(letter)
    }

    /// Refuses new messages; those already queued can still be received. Senders waiting
    /// for room get their message back.
    pub(crate) fn close(&mut self) {
        self.rx.close();
        if let Some(gate) = &self.gate {
            gate.room.notify_waiters();
        }
    }
}

impl<A> Drop for MailboxRx<A> {
    fn drop(&mut self) {
        self.close();
    }
}

pub(crate) fn mailbox<A>(size: MailboxSize) -> (MailboxTx<A>, MailboxRx<A>) {
    let (tx, rx) = mpsc::unbounded_channel();
    match size {
        MailboxSize::Bounded(n) => {
            let gate = Arc::new(Gate {
                capacity: n.max(1),
                queued: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                room: Notify::new(),
            });
            let rx = MailboxRx {
                rx,
                gate: Some(Arc::clone(&gate)),
            };
            (MailboxTx::Bounded(tx, gate), rx)
        }
        MailboxSize::Unbounded => (MailboxTx::Unbounded(tx), MailboxRx { rx, gate: None }),
    }
}
