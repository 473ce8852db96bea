//! The actor system: spawning, tracking, and shutting down actors.

use std::collections::HashMap;
use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::actor_ref::runs_here;
use super::cell::{Cell, Signal};
use super::error::StopReason;
use super::mailbox::{mailbox, MailboxSize};
use super::run::{run, Factory};
use super::supervisor::Supervisor;
use super::{Actor, ActorId, ActorRef};

/// Settings for one spawned actor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct SpawnOptions {
    pub(crate) mailbox: MailboxSize,
}

impl SpawnOptions {
    /// Defaults: a bounded mailbox of [`DEFAULT_MAILBOX`](super::mailbox::DEFAULT_MAILBOX).
    pub fn new() -> Self {
        Self::default()
    }

    /// The mailbox size.
    pub fn mailbox(mut self, size: MailboxSize) -> Self {
        self.mailbox = size;
        self
    }
}

/// The actors of one process (or one test): spawns them, counts them, stops them all.
///
/// Cheap to clone; clones share the actors.
#[derive(Clone, Default)]
pub struct ActorSystem {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: AtomicU64,
    actors: Mutex<HashMap<ActorId, Arc<Cell>>>,
    /// Notified when an actor stops for good.
    exited: Notify,
    dead_letters: AtomicU64,
}

/// What [`ActorSystem::shutdown`] could not finish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SystemShutdownReport {
    /// Actors still running at the deadline; they were then stopped without finishing.
    pub unfinished: Vec<UnfinishedActor>,
}

impl SystemShutdownReport {
    /// Whether every actor stopped before the deadline.
    pub fn is_clean(&self) -> bool {
        self.unfinished.is_empty()
    }

    /// How many actors were still running.
    pub fn unfinished_count(&self) -> usize {
        self.unfinished.len()
    }
}

impl From<&SystemShutdownReport> for crate::shutdown::ShutdownReport {
    fn from(report: &SystemShutdownReport) -> Self {
        crate::shutdown::ShutdownReport::new(report.unfinished_count())
    }
}

/// An actor that did not stop before a shutdown deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnfinishedActor {
    /// Its id.
    pub id: ActorId,
    /// Its type name.
    pub name: &'static str,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorSystem")
            .field("actors", &self.actors.lock().len())
            .finish()
    }
}

impl fmt::Debug for ActorSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl ActorSystem {
    /// An empty system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `actor` in its own task with a default bounded mailbox.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    #[track_caller]
    pub fn spawn<A: Actor>(&self, actor: A) -> ActorRef<A> {
        self.spawn_with(actor, SpawnOptions::new())
    }

    /// [`spawn`](Self::spawn) with other settings.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    #[track_caller]
    pub fn spawn_with<A: Actor>(&self, actor: A, options: SpawnOptions) -> ActorRef<A> {
        self.start(Some(actor), None, None, options.mailbox)
    }

    #[track_caller]
    pub(crate) fn start<A: Actor>(
        &self,
        first: Option<A>,
        factory: Option<Factory<A>>,
        supervisor: Option<Supervisor>,
        size: MailboxSize,
    ) -> ActorRef<A> {
        let runtime = crate::spawn::runtime("actors");
        let id = ActorId(self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let cell = Arc::new(Cell::new(id, std::any::type_name::<A>()));
        let (tx, rx) = mailbox(size);
        let me = ActorRef {
            tx,
            cell: Arc::clone(&cell),
        };
        self.inner.actors.lock().insert(id, Arc::clone(&cell));
        let run = run(first, factory, rx, me.clone(), supervisor, self.clone());
        let task = runtime.spawn(super::actor_ref::as_actor(&cell, run));
        let _ = cell.abort.set(task.abort_handle());
        me
    }

    /// How many actors are running (or restarting).
    pub fn len(&self) -> usize {
        self.inner.actors.lock().len()
    }

    /// Whether no actor is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages left in the mailboxes of actors that stopped without handling them (after a
    /// `kill`, a final panic, or a shutdown past its deadline).
    pub fn dead_letters(&self) -> u64 {
        self.inner.dead_letters.load(Ordering::Relaxed)
    }

    pub(crate) fn add_dead_letters(&self, n: u64) {
        if n > 0 {
            self.inner.dead_letters.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn actor_exited(&self, id: ActorId) {
        self.inner.actors.lock().remove(&id);
        self.inner.exited.notify_waiters();
    }

    /// Stops every actor gracefully (each drains its mailbox, with
    /// [`StopReason::Shutdown`]) and waits up to `timeout`; actors still running then are
    /// cancelled and reported. Actors spawned while this runs are stopped too. Called from an
    /// actor's own handler, it does not wait for that actor, which can stop only after the
    /// handler returns, nor cancel it: it stops once its handler returns, as the others did.
    ///
    /// # Panics
    /// Like `tokio::time::timeout`, when the runtime was built without its time driver.
    pub async fn shutdown(&self, timeout: Duration) -> SystemShutdownReport {
        let deadline = tokio::time::Instant::now() + timeout;
        let finished = tokio::time::timeout_at(deadline, async {
            loop {
                let mut exited = pin!(self.inner.exited.notified());
                exited.as_mut().enable();
                let cells: Vec<Arc<Cell>> = self.inner.actors.lock().values().cloned().collect();
                for cell in &cells {
                    cell.signal(Signal::Stop(StopReason::Shutdown));
                }
                if cells.iter().all(runs_here) {
                    return;
                }
                exited.await;
            }
        })
        .await;
        if finished.is_ok() {
            return SystemShutdownReport::default();
        }
        let cells: Vec<Arc<Cell>> = (self.inner.actors.lock().values())
            .filter(|cell| !runs_here(cell))
            .cloned()
            .collect();
        let mut unfinished: Vec<UnfinishedActor> = cells
            .iter()
            .map(|c| UnfinishedActor {
                id: c.id,
                name: c.name,
            })
            .collect();
        unfinished.sort_by_key(|u| u.id);
        for cell in &cells {
            tracing::warn!(actor = %cell.id, name = cell.name, "actor did not stop before the shutdown deadline");
            if let Some(abort) = cell.abort.get() {
                abort.abort();
            }
        }
        SystemShutdownReport { unfinished }
    }
}
