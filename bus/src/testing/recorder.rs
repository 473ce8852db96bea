//! [`Recorder`]: every event a bus carries, kept for a test to query and wait on.

use std::fmt::{self, Debug, Write as _};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Unmet;
use crate::bus::{Bus, Missed, Overflow, PatternError, QueueOptions, Subscription};
use crate::event::{AnyEvent, EventSet, Member};

/// How many events a recorder queues between two looks before it counts the rest as missed.
const CAPACITY: usize = 1 << 16;

/// How many of the events seen a failure message shows.
const SHOWN: usize = 10;

/// Records the events of a bus from its creation on, in the order they reach async listeners,
/// for a test to query
/// ([`of`](Self::of), [`emitted`](Self::emitted)) and wait on ([`wait_for`](Self::wait_for),
/// [`none_within`](Self::none_within)). See the [module docs](super).
///
/// It reads a subscription of its own, so it sees what async listeners see, and nothing needs
/// to settle first: an event emitted before a query is in it. An emit queues its event after
/// its sync listeners ran, so an event a sync listener emits is recorded before the one that
/// caused it. Waits run on tokio's clock, so
/// under `#[tokio::test(start_paused = true)]` a wait of a minute takes no real time.
pub struct Recorder<S: EventSet> {
    subscription: Subscription<S, AnyEvent<S>>,
    seen: Vec<AnyEvent<S>>,
    /// Events the full queue turned away (more than [`CAPACITY`] between two looks).
    missed: u64,
    /// The bus shut down: nothing more will come.
    ended: bool,
}

impl<S: EventSet> Debug for Recorder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("recorded", &self.seen.len())
            .field("missed", &self.missed)
            .finish_non_exhaustive()
    }
}

impl<S: EventSet> Recorder<S> {
    /// Records every event of `bus` from now on.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(bus: &Bus<S>) -> Self {
        Self::matching(bus, "#").expect("`#` is a valid pattern")
    }

    /// Records the events of `bus` whose names match `pattern` (`order.*`), from now on.
    ///
    /// # Errors
    /// [`PatternError`] when the pattern does not parse.
    pub fn matching(bus: &Bus<S>, pattern: &str) -> Result<Self, PatternError> {
        let options = QueueOptions::new()
            .capacity(CAPACITY)
            .overflow(Overflow::DropNewest);
        Ok(Recorder {
            subscription: bus.subscribe_pattern(pattern, options)?,
            seen: Vec::new(),
            missed: 0,
            ended: false,
        })
    }

    fn take(&mut self, item: Option<Result<AnyEvent<S>, Missed>>) {
        match item {
            Some(Ok(event)) => self.seen.push(event),
            Some(Err(Missed(n))) => self.missed += n,
            None => self.ended = true,
        }
    }

    /// Takes in what the bus delivered so far.
    fn catch_up(&mut self) {
        while let Some(item) = self.subscription.try_recv() {
            self.take(Some(item));
        }
    }

    /// Waits for the next event until `deadline`; whether one came.
    async fn next_until(&mut self, deadline: Instant) -> bool {
        if self.ended {
            return false;
        }
        let before = self.seen.len();
        match tokio::time::timeout_at(deadline, self.subscription.recv()).await {
            Ok(item) => self.take(item),
            Err(_elapsed) => return false,
        }
        self.seen.len() > before
    }

    /// Every event recorded so far, in emit order.
    pub fn all(&mut self) -> &[AnyEvent<S>] {
        self.catch_up();
        &self.seen
    }

    /// The names of the events recorded so far, in emit order.
    pub fn names(&mut self) -> Vec<&'static str> {
        self.all().iter().map(AnyEvent::name).collect()
    }

    /// The events of type `E` recorded so far, in emit order.
    pub fn of<E: Member<S>>(&mut self) -> Vec<Arc<E>> {
        self.all()
            .iter()
            .filter_map(|e| e.clone().downcast::<E>().ok())
            .collect()
    }

    /// How many events of type `E` were recorded so far.
    pub fn count<E: Member<S>>(&mut self) -> usize {
        self.all().iter().filter(|e| e.index() == E::INDEX).count()
    }

    /// Forgets what was recorded so far (the count of missed events too).
    pub fn clear(&mut self) {
        self.catch_up();
        self.seen.clear();
        self.missed = 0;
    }

    /// The first recorded `E` that `matches`.
    ///
    /// # Errors
    /// [`Unmet`] when none was emitted; its message lists what was.
    pub fn emitted<E: Member<S> + Debug>(
        &mut self,
        matches: impl Fn(&E) -> bool,
    ) -> Result<Arc<E>, Unmet> {
        self.catch_up();
        self.first::<E>(&matches, 0)
            .ok_or_else(|| self.unmet::<E>(format!("no `{}` that matches was emitted", E::NAME)))
    }

    /// Checks that exactly `n` events of type `E` were recorded.
    ///
    /// # Errors
    /// [`Unmet`] when the count differs; its message lists what was emitted.
    pub fn emitted_times<E: Member<S> + Debug>(&mut self, n: usize) -> Result<(), Unmet> {
        let count = self.count::<E>();
        if count == n {
            return Ok(());
        }
        Err(self.unmet::<E>(format!("`{}` was emitted {count} times, not {n}", E::NAME)))
    }

    /// Waits up to `within` for an `E` that `matches` (one recorded before the call counts),
    /// and returns the first.
    ///
    /// # Errors
    /// [`Unmet`] when none came in time or the bus shut down; its message lists what came.
    pub async fn wait_for<E: Member<S> + Debug>(
        &mut self,
        matches: impl Fn(&E) -> bool,
        within: Duration,
    ) -> Result<Arc<E>, Unmet> {
        self.catch_up();
        let deadline = Instant::now() + within;
        let mut from = 0;
        loop {
            if let Some(found) = self.first::<E>(&matches, from) {
                return Ok(found);
            }
            from = self.seen.len();
            if !self.next_until(deadline).await && (self.ended || Instant::now() >= deadline) {
                return Err(self.unmet::<E>(format!(
                    "no `{}` that matches was emitted within {within:?}{}",
                    E::NAME,
                    self.end_note()
                )));
            }
        }
    }

    /// Waits up to `within` for an event whose name matches `pattern` (one recorded before the
    /// call counts), and returns the first.
    ///
    /// # Errors
    /// [`Unmet`] when the pattern does not parse, or none came in time.
    pub async fn wait_for_name(
        &mut self,
        pattern: &str,
        within: Duration,
    ) -> Result<AnyEvent<S>, Unmet> {
        let pattern = crate::bus::Pattern::parse(pattern)
            .map_err(|e| Unmet::new(format!("invalid pattern `{pattern}`: {e}")))?;
        self.catch_up();
        let deadline = Instant::now() + within;
        let mut from = 0;
        loop {
            if let Some(found) = self.seen[from..].iter().find(|e| pattern.matches(e.name())) {
                return Ok(found.clone());
            }
            from = self.seen.len();
            if !self.next_until(deadline).await && (self.ended || Instant::now() >= deadline) {
                return Err(Unmet::new(format!(
                    "no event named like `{pattern}` was emitted within {within:?}{}; {}",
                    self.end_note(),
                    self.describe(|_| None)
                )));
            }
        }
    }

    /// Watches for `window` and checks that no `E` that `matches` was emitted meanwhile (what
    /// was recorded before the call does not count).
    ///
    /// # Errors
    /// [`Unmet`] naming the first such event.
    pub async fn none_within<E: Member<S> + Debug>(
        &mut self,
        matches: impl Fn(&E) -> bool,
        window: Duration,
    ) -> Result<(), Unmet> {
        self.catch_up();
        let start = self.seen.len();
        let deadline = Instant::now() + window;
        while Instant::now() < deadline && !self.ended {
            self.next_until(deadline).await;
        }
        self.catch_up();
        match self.first::<E>(&matches, start) {
            None => Ok(()),
            Some(found) => Err(self.unmet::<E>(format!(
                "`{}` was emitted within {window:?}, expected none: {found:?}",
                E::NAME
            ))),
        }
    }

    fn first<E: Member<S>>(&self, matches: &impl Fn(&E) -> bool, from: usize) -> Option<Arc<E>> {
        self.seen[from.min(self.seen.len())..]
            .iter()
            .filter_map(|e| e.clone().downcast::<E>().ok())
            .find(|e| matches(e))
    }

    fn end_note(&self) -> &'static str {
        if self.ended {
            " (the bus shut down)"
        } else {
            ""
        }
    }

    /// `expected`, then what was recorded, showing events of type `E` with `Debug`.
    fn unmet<E: Member<S> + Debug>(&self, expected: String) -> Unmet {
        let described =
            self.describe(|e| e.clone().downcast::<E>().ok().map(|e| format!("{:?}", &*e)));
        Unmet::new(format!("{expected}; {described}"))
    }

    /// What was recorded: the count, then the last few, each as `detail` gives it or by name.
    fn describe(&self, detail: impl Fn(&AnyEvent<S>) -> Option<String>) -> String {
        let mut out = if self.seen.is_empty() {
            "nothing was emitted".to_owned()
        } else {
            let skipped = self.seen.len().saturating_sub(SHOWN);
            let n = self.seen.len();
            let mut out = format!(
                "emitted instead ({n} event{}",
                if n == 1 { "" } else { "s" }
            );
            if skipped > 0 {
                let _ = write!(out, ", the last {SHOWN} shown");
            }
            out.push_str("): ");
            let shown: Vec<String> = self.seen[skipped..]
                .iter()
                .map(|e| match detail(e) {
                    Some(detail) => format!("{} {detail}", e.name()),
                    None => e.name().to_owned(),
                })
                .collect();
            out.push_str(&shown.join(", "));
            out
        };
        if self.missed > 0 {
            let _ = write!(
                out,
                "; {} more were not recorded (over {CAPACITY} between two looks)",
                self.missed
            );
        }
        out
    }
}
