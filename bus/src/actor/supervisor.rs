//! Restarting failed actors with fresh state.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::cell::{Cell, Signal};
use super::error::StopReason;
use super::{Actor, ActorId, ActorRef, ActorSystem, SpawnOptions};
use crate::backoff::Backoff;

/// Which children a supervisor restarts when one fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Only the failed child.
    #[default]
    OneForOne,
    /// Every child: the siblings finish their current message, run `stopped` with
    /// [`StopReason::Restarting`], and start over with fresh state.
    OneForAll,
}

/// Configures a [`Supervisor`]; from [`Supervisor::builder`].
#[must_use]
#[derive(Debug, Clone)]
pub struct SupervisorBuilder {
    strategy: Strategy,
    max_restarts: u32,
    window: Duration,
    backoff: Backoff,
}

impl SupervisorBuilder {
    /// At most `max_restarts` restarts within any `window` (default: 3 within 5 s). One more
    /// failure and the supervisor gives up: it stops every child.
    pub fn max_restarts(mut self, max_restarts: u32, window: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.window = window;
        self
    }

    /// The delay before each restart (default: exponential from 100 ms to 5 s).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Builds the supervisor; its children run in `system`.
    pub fn build(self, system: &ActorSystem) -> Supervisor {
        Supervisor {
            inner: Arc::new(Inner {
                system: system.clone(),
                config: self,
                state: Mutex::new(State::default()),
            }),
        }
    }
}

/// Spawns actors from factories and restarts them when they fail; see the
/// [module docs](super#supervision).
///
/// ```
/// use std::time::Duration;
/// use tidings::actor::{Actor, ActorSystem, Strategy, Supervisor};
/// use tidings::Backoff;
///
/// struct Worker;
/// impl Actor for Worker {}
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let system = ActorSystem::new();
/// let supervisor = Supervisor::builder(Strategy::OneForOne)
///     .max_restarts(5, Duration::from_secs(60))
///     .backoff(Backoff::Exponential { initial: Duration::from_millis(50), max: Duration::from_secs(2) })
///     .build(&system);
/// let worker = supervisor.spawn(|| Worker);
/// # system.shutdown(Duration::from_secs(1)).await;
/// # }
/// ```
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    system: ActorSystem,
    config: SupervisorBuilder,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When the restarts of the current window happened.
    recent: VecDeque<Instant>,
    restarts: u64,
    children: Vec<Arc<Cell>>,
    gave_up: bool,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("config", &self.inner.config)
            .field("restarts", &self.restarts())
            .finish()
    }
}

impl Supervisor {
    /// A builder with the given strategy.
    pub fn builder(strategy: Strategy) -> SupervisorBuilder {
        SupervisorBuilder {
            strategy,
            max_restarts: 3,
            window: Duration::from_secs(5),
            backoff: Backoff::Exponential {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
            },
        }
    }

    /// Spawns a child built by `factory`, which builds it again for every restart.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    #[track_caller]
    pub fn spawn<A: Actor>(&self, factory: impl Fn() -> A + Send + Sync + 'static) -> ActorRef<A> {
        self.spawn_with(SpawnOptions::new(), factory)
    }

    /// [`spawn`](Self::spawn) with a mailbox of its own size.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    #[track_caller]
    pub fn spawn_with<A: Actor>(
        &self,
        options: SpawnOptions,
        factory: impl Fn() -> A + Send + Sync + 'static,
    ) -> ActorRef<A> {
        let first = factory();
        // The child is listed before its task can run, so a child that fails at once is still
        // known to `on_failure` and removed by `child_exited` (which waits for this lock).
        let mut state = self.inner.state.lock();
        let child = self.inner.system.start(
            Some(first),
            Some(Box::new(factory)),
            Some(self.clone()),
            options.mailbox,
        );
        state.children.push(Arc::clone(&child.cell));
        child
    }

    /// How many of its children are running (or restarting).
    pub fn children(&self) -> usize {
        self.inner.state.lock().children.len()
    }

    /// How many restarts this supervisor has made.
    pub fn restarts(&self) -> u64 {
        self.inner.state.lock().restarts
    }

    /// Whether it gave up after too many restarts.
    pub fn gave_up(&self) -> bool {
        self.inner.state.lock().gave_up
    }

    /// A child failed: the delay before its restart, or `None` to let it stop.
    pub(crate) fn on_failure(&self, child: ActorId) -> Option<Duration> {
        let config = &self.inner.config;
        let now = Instant::now();
        let mut state = self.inner.state.lock();
        if state.gave_up {
            return None;
        }
        while state
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= config.window)
        {
            state.recent.pop_front();
        }
        if state.recent.len() >= config.max_restarts as usize {
            state.gave_up = true;
            tracing::error!(
                %child,
                max_restarts = config.max_restarts,
                window = ?config.window,
                "too many restarts: the supervisor gives up and stops its children"
            );
            for sibling in state.children.iter().filter(|c| c.id != child) {
                sibling.signal(Signal::Stop(StopReason::Shutdown));
            }
            return None;
        }
        state.recent.push_back(now);
        state.restarts += 1;
        if config.strategy == Strategy::OneForAll {
            for sibling in state.children.iter().filter(|c| c.id != child) {
                sibling.signal(Signal::Restart);
            }
        }
        Some(config.backoff.delay(state.recent.len() as u32))
    }

    pub(crate) fn child_exited(&self, child: ActorId) {
        self.inner.state.lock().children.retain(|c| c.id != child);
    }
}
