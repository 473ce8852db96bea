//! The actor task: lifecycle, message loop, restarts, and what happens at the end.
//!
//! Each actor is one tokio task running [`run`]. Who touches what:
//! - the mailbox receiver and the actor value belong to the task alone;
//! - the [`Cell`] (in `cell.rs`) is shared with every `ActorRef`, the system and supervisors:
//!   control signals come in through it and the final stop reason goes out.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt;

use super::cell::{Cell, Signal};
use super::error::StopReason;
use super::letter::BoxLetter;
use super::mailbox::MailboxRx;
use super::supervisor::Supervisor;
use super::Context as ActorContext;
use super::{Actor, ActorRef, ActorSystem, PanicAction};
use crate::panic::message as panic_message;

/// Builds a fresh instance for a restart.
pub(crate) type Factory<A> = Box<dyn Fn() -> A + Send + Sync>;

/// Records the final stop even when the task is cancelled (system shutdown past its deadline):
/// the mailbox is closed and every message left in it is counted and logged as a dead letter,
/// whichever way the task ends. (A message whose handler was cancelled mid-way is not one: it
/// was delivered; a pending `ask` for it resolves with `NoReply`.)
struct ExitGuard<A: Actor> {
    cell: std::sync::Arc<Cell>,
    system: ActorSystem,
    supervisor: Option<Supervisor>,
    rx: MailboxRx<A>,
    reason: Option<StopReason>,
}

impl<A: Actor> Drop for ExitGuard<A> {
    fn drop(&mut self) {
        let reason = self.reason.take().unwrap_or(StopReason::Killed);
        self.cell.close();
        self.rx.close();
        let mut dead = 0u64;
        while let Some(letter) = self.rx.try_recv() {
            dead += 1;
            tracing::warn!(actor = %self.cell.id, message = letter.message_type(), %reason, "dead letter: the actor stopped before handling it");
        }
        self.system.add_dead_letters(dead);
        tracing::debug!(actor = %self.cell.id, name = self.cell.name, %reason, "actor stopped");
        // Deregister before publishing the reason: whoever `wait_stopped` wakes must find the
        // actor gone from its system and supervisor.
        if let Some(sup) = &self.supervisor {
            sup.child_exited(self.cell.id);
        }
        self.system.actor_exited(self.cell.id);
        self.cell.set_exit(reason);
    }
}

/// The actor task.
pub(crate) async fn run<A: Actor>(
    mut first: Option<A>,
    factory: Option<Factory<A>>,
    rx: MailboxRx<A>,
    me: ActorRef<A>,
    supervisor: Option<Supervisor>,
    system: ActorSystem,
) {
    let mut exit = ExitGuard {
        cell: std::sync::Arc::clone(&me.cell),
        system: system.clone(),
        supervisor: supervisor.clone(),
        rx,
        reason: None,
    };
    // A graceful stop asked for during a restart delay: the next instance starts at once and
    // drains the mailbox, so what was queued is handled, as `stop()` promises.
    let mut stopping: Option<StopReason> = None;
    let reason = loop {
        let instance = match (first.take(), &factory) {
            (Some(actor), _) => Ok(actor),
            (None, Some(make)) => std::panic::catch_unwind(AssertUnwindSafe(make))
                .map_err(|p| StopReason::Panicked(panic_message(&*p).into())),
            (None, None) => break StopReason::Killed,
        };
        let reason = match instance {
            Ok(mut actor) => {
                let mut ctx = ActorContext::new(me.clone(), system.clone());
                if let Some(stop) = &stopping {
                    me.cell.signal(Signal::Stop(stop.clone()));
                }
                let reason = run_instance(&mut actor, &mut ctx, &mut exit.rx).await;
                ctx.end_instance();
                let stopped = AssertUnwindSafe(actor.stopped(&mut ctx, &reason));
                if let Err(p) = stopped.catch_unwind().await {
                    tracing::error!(actor = %me.cell.id, "`stopped` panicked: {}", panic_message(&*p));
                }
                reason
            }
            Err(reason) => reason,
        };
        if stopping.is_some() {
            break reason;
        }
        let restart_after = match (&supervisor, &factory) {
            (Some(_), Some(_)) if reason == StopReason::Restarting => Some(Duration::ZERO),
            (Some(sup), Some(_)) if reason.is_abnormal() => sup.on_failure(me.cell.id),
            _ => None,
        };
        let Some(delay) = restart_after else {
            break reason;
        };
        tracing::warn!(actor = %me.cell.id, name = me.cell.name, %reason, ?delay, "restarting actor");
        match backoff(&me.cell, delay).await {
            Wake::Elapsed => {}
            Wake::Stop(reason) => stopping = Some(reason),
            Wake::Kill(reason) => break reason,
        }
    };
    exit.reason = Some(reason);
}

/// How a restart delay ended.
enum Wake {
    Elapsed,
    /// A graceful stop: restart now, then drain.
    Stop(StopReason),
    /// A kill: end without a new instance.
    Kill(StopReason),
}

/// Waits out a restart delay; a stop or kill signal cuts it short.
async fn backoff(cell: &Cell, delay: Duration) -> Wake {
    let mut sleep = pin!(tokio::time::sleep(delay));
    loop {
        if let Some(signal) = cell.take_signal() {
            match signal {
                Signal::Stop(reason) => return Wake::Stop(reason),
                Signal::Kill(reason) => return Wake::Kill(reason),
                Signal::Restart => {}
            }
        }
        let woke = std::future::poll_fn(|cx| {
            if cell.poll_signal(cx) {
                return Poll::Ready(false);
            }
            sleep.as_mut().poll(cx).map(|()| true)
        })
        .await;
        if woke {
            return Wake::Elapsed;
        }
    }
}

/// Runs one instance from `started` to the reason it ends.
async fn run_instance<A: Actor>(
    actor: &mut A,
    ctx: &mut ActorContext<A>,
    rx: &mut MailboxRx<A>,
) -> StopReason {
    match AssertUnwindSafe(actor.started(ctx)).catch_unwind().await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return StopReason::Failed(error.to_string().into()),
        Err(p) => return StopReason::Panicked(panic_message(&*p).into()),
    }
    let cell = std::sync::Arc::clone(&ctx.actor_ref().cell);
    loop {
        if let Some(signal) = cell.take_signal() {
            return match signal {
                Signal::Kill(reason) => reason,
                Signal::Restart => StopReason::Restarting,
                Signal::Stop(reason) => drain(actor, ctx, rx, &cell, reason).await,
            };
        }
        match ctx.take_request() {
            Some(StopReason::Normal) => {
                return drain(actor, ctx, rx, &cell, StopReason::Normal).await
            }
            Some(reason) => return reason,
            None => {}
        }
        let letter = match rx.try_recv() {
            Some(letter) => letter,
            None => {
                let next = std::future::poll_fn(|cx| {
                    if cell.poll_signal(cx) {
                        return Poll::Ready(None);
                    }
                    rx.poll_recv(cx).map(Some)
                })
                .await;
                match next {
                    // A signal: handled at the top of the loop.
                    None => continue,
                    Some(Some(letter)) => letter,
                    // The context holds a sender, so the channel only ends when closed.
                    Some(None) => return StopReason::Normal,
                }
            }
        };
        if let Some(reason) = handle(actor, ctx, letter).await {
            return reason;
        }
    }
}

/// A graceful stop: `stopping`, then everything already queued, then `reason`.
async fn drain<A: Actor>(
    actor: &mut A,
    ctx: &mut ActorContext<A>,
    rx: &mut MailboxRx<A>,
    cell: &Cell,
    reason: StopReason,
) -> StopReason {
    rx.close();
    if let Err(p) = AssertUnwindSafe(actor.stopping(ctx)).catch_unwind().await {
        tracing::error!(actor = %cell.id, "`stopping` panicked: {}", panic_message(&*p));
    }
    while let Some(letter) = rx.recv().await {
        if let Some(failure) = handle(actor, ctx, letter).await {
            return failure;
        }
        if let Some(Signal::Kill(killed)) = cell.take_signal() {
            return killed;
        }
    }
    reason
}

/// Handles one message; returns a reason to stop if it panicked and the actor chose to stop.
async fn handle<A: Actor>(
    actor: &mut A,
    ctx: &mut ActorContext<A>,
    letter: BoxLetter<A>,
) -> Option<StopReason> {
    let mut letter = letter;
    // A letter is handled once; an empty one (never sent so) has nothing to run.
    let handling = letter.handle(actor, ctx)?;
    // The emptied letter goes now: only its room in the mailbox is left of it.
    drop(letter);
    let outcome = AssertUnwindSafe(handling).catch_unwind().await;
    let payload = outcome.err()?;
    let message = panic_message(&*payload);
    tracing::error!(actor = %ctx.id(), "handler panicked: {message}");
    match AssertUnwindSafe(actor.on_panic(ctx, &message))
        .catch_unwind()
        .await
    {
        Ok(PanicAction::Resume) => None,
        Ok(PanicAction::Stop) | Err(_) => Some(StopReason::Panicked(message.into())),
    }
}
