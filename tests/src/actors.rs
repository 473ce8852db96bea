//! Fixtures for the actor suites: an actor that records its hooks and messages, and the
//! messages it takes.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tidings::actor::{Actor, Context, Down, Handler, Message, StopReason, TimerId};
use tidings::error::BoxError;
use tokio::sync::Semaphore;

/// A recording actor: every hook and message lands in `log`.
pub struct Recorder {
    /// Every hook and message, in order.
    pub log: Arc<Mutex<Vec<String>>>,
    /// The sum of the `Add`s so far.
    pub total: u64,
    /// Each message waits for a permit when set.
    pub gate: Option<Arc<Semaphore>>,
}

impl Recorder {
    /// A recorder writing to `log`.
    pub fn new(log: &Arc<Mutex<Vec<String>>>) -> Self {
        Recorder {
            log: Arc::clone(log),
            total: 0,
            gate: None,
        }
    }
    /// A recorder whose messages each wait for a permit of `gate`.
    pub fn gated(log: &Arc<Mutex<Vec<String>>>, gate: &Arc<Semaphore>) -> Self {
        Recorder {
            gate: Some(Arc::clone(gate)),
            ..Recorder::new(log)
        }
    }
    /// Appends `s` to the log.
    pub fn push(&self, s: impl Into<String>) {
        self.log.lock().push(s.into());
    }
}

impl Actor for Recorder {
    async fn started(&mut self, _: &mut Context<Self>) -> Result<(), BoxError> {
        self.push("started");
        Ok(())
    }
    async fn stopping(&mut self, _: &mut Context<Self>) {
        self.push("stopping");
    }
    async fn stopped(&mut self, _: &mut Context<Self>, reason: &StopReason) {
        self.push(format!("stopped: {reason}"));
    }
}

/// Adds to the total; replies with the new total.
#[derive(Message)]
#[message(reply = u64)]
pub struct Add(pub u64);

impl Handler<Add> for Recorder {
    async fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> u64 {
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        self.total += n;
        self.push(format!("add {n}"));
        self.total
    }
}

/// Panics when asked to.
#[derive(Message)]
#[message(reply = u64)]
pub struct Boom;

impl Handler<Boom> for Recorder {
    async fn handle(&mut self, _: Boom, _: &mut Context<Self>) -> u64 {
        panic!("boom at total {}", self.total)
    }
}

/// Makes the actor stop itself.
#[derive(Message)]
pub struct StopSelf;

impl Handler<StopSelf> for Recorder {
    async fn handle(&mut self, _: StopSelf, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// An empty log.
pub fn log() -> Arc<Mutex<Vec<String>>> {
    Arc::default()
}

/// The `add …` entries of a recorder's log, in order.
pub fn adds(l: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    l.lock()
        .iter()
        .filter(|s| s.starts_with("add"))
        .cloned()
        .collect()
}

/// A list shared between a test and its actors.
pub type Shared<T> = Arc<Mutex<Vec<T>>>;

/// Records `Down` notifications and ticks.
pub struct Watcher {
    downs: Shared<Down>,
    ticks: Shared<u64>,
    timers: Vec<TimerId>,
}

impl Actor for Watcher {}

impl Handler<Down> for Watcher {
    async fn handle(&mut self, down: Down, _: &mut Context<Self>) {
        self.downs.lock().push(down);
    }
}

/// A tick with its number.
#[derive(Message)]
pub struct Ping(pub u64);

impl Handler<Ping> for Watcher {
    async fn handle(&mut self, Ping(n): Ping, _: &mut Context<Self>) {
        self.ticks.lock().push(n);
    }
}

/// Sets up a monitor, a link or timers from inside the watcher.
pub enum Setup {
    /// Monitors the recorder.
    Monitor(tidings::actor::ActorRef<Recorder>),
    /// Links to the recorder.
    Link(tidings::actor::ActorRef<Recorder>),
    /// A `Ping(0)` after the delay.
    After(Duration),
    /// `Ping(1)`, `Ping(2)`... at the interval.
    Every(Duration),
    /// Cancels every timer (asserting the one-shot fired and the interval did not end).
    CancelAll,
}

impl Message for Setup {
    type Reply = ();
}

impl Handler<Setup> for Watcher {
    async fn handle(&mut self, setup: Setup, ctx: &mut Context<Self>) {
        match setup {
            Setup::Monitor(other) => ctx.monitor(&other),
            Setup::Link(other) => ctx.link(&other),
            Setup::After(d) => {
                let id = ctx.notify_after(d, Ping(0));
                self.timers.push(id);
            }
            Setup::Every(d) => {
                let mut n = 0;
                let id = ctx.notify_interval(d, move || {
                    n += 1;
                    Ping(n)
                });
                self.timers.push(id);
            }
            Setup::CancelAll => {
                let pending: Vec<bool> = self
                    .timers
                    .drain(..)
                    .map(|id| ctx.cancel_timer(id))
                    .collect();
                // The one-shot timer has fired already; the interval was still running.
                assert_eq!(pending, [false, true]);
            }
        }
    }
}

/// A watcher, and its lists of downs and ticks.
pub fn watcher() -> (Watcher, Shared<Down>, Shared<u64>) {
    let (downs, ticks) = (Arc::default(), Arc::default());
    let w = Watcher {
        downs: Arc::clone(&downs),
        ticks: Arc::clone(&ticks),
        timers: Vec::new(),
    };
    (w, downs, ticks)
}
