//! The part of an actor that every reference shares: control signals in, the final stop
//! reason out.
//!
//! Who touches what: every `ActorRef`, the system and supervisors send signals and read the
//! exit; only the actor task takes signals and sets the exit. The locks are held for a few
//! instructions, never across an `.await` or while user code runs.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::task::Context;

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::error::StopReason;
use super::ActorId;

/// A control request to the actor task.
pub(crate) enum Signal {
    /// Start over with a fresh instance (one-for-all sibling restart).
    Restart,
    /// Stop gracefully: drain the mailbox.
    Stop(StopReason),
    /// Stop after the current message.
    Kill(StopReason),
}

impl Signal {
    fn rank(&self) -> u8 {
        match self {
            Signal::Restart => 1,
            Signal::Stop(_) => 2,
            Signal::Kill(_) => 3,
        }
    }
}

/// The part of an actor every reference shares.
pub(crate) struct Cell {
    pub(crate) id: ActorId,
    /// The actor's type name.
    pub(crate) name: &'static str,
    /// Mirrors `pending.is_some()`, so the message loop checks for signals with one load.
    has_signal: AtomicBool,
    /// Set once a stop or kill was asked for: senders refuse new messages from then on (the
    /// task closes the mailbox itself when it gets to the request).
    closing: AtomicBool,
    pending: Mutex<Option<Signal>>,
    /// The actor task's waker while it waits for a message or a restart delay.
    waker: AtomicWaker,
    /// Set once, when the actor stops for good.
    exit: Mutex<Option<StopReason>>,
    exited: Notify,
    pub(crate) abort: OnceLock<AbortHandle>,
}

impl Cell {
    pub(crate) fn new(id: ActorId, name: &'static str) -> Self {
        Cell {
            id,
            name,
            has_signal: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            pending: Mutex::new(None),
            waker: AtomicWaker::new(),
            exit: Mutex::new(None),
            exited: Notify::new(),
            abort: OnceLock::new(),
        }
    }

    /// Delivers `signal` unless a stronger one is pending (kill > stop > restart).
    pub(crate) fn signal(&self, signal: Signal) {
        if !matches!(signal, Signal::Restart) {
            self.close();
        }
        {
            let mut pending = self.pending.lock();
            if pending.as_ref().is_some_and(|p| p.rank() >= signal.rank()) {
                return;
            }
            *pending = Some(signal);
            self.has_signal.store(true, Ordering::Release);
        }
        self.waker.wake();
    }

    /// From now on, [`ActorRef`] sends are refused: the actor is stopping for good.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Whether the actor refuses new messages because it is stopping.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Registers the task to be woken by the next signal; whether one is pending now.
    pub(crate) fn poll_signal(&self, cx: &mut Context<'_>) -> bool {
        self.waker.register(cx.waker());
        self.has_signal.load(Ordering::Acquire)
    }

    pub(crate) fn take_signal(&self) -> Option<Signal> {
        if !self.has_signal.load(Ordering::Acquire) {
            return None;
        }
        let mut pending = self.pending.lock();
        self.has_signal.store(false, Ordering::Release);
        pending.take()
    }

    pub(crate) fn exit_reason(&self) -> Option<StopReason> {
        self.exit.lock().clone()
    }

    pub(crate) async fn wait_exit(&self) -> StopReason {
        loop {
            let mut exited = pin!(self.exited.notified());
            exited.as_mut().enable();
            if let Some(reason) = self.exit_reason() {
                return reason;
            }
            exited.await;
        }
    }

    pub(crate) fn set_exit(&self, reason: StopReason) {
        *self.exit.lock() = Some(reason);
        self.exited.notify_waiters();
    }
}
