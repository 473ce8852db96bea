//! [`ShutdownReport`]: what stopping a handle left unfinished.
//!
//! Every handle that can leave work undone stops the same way: `shutdown(deadline)` stops
//! taking new work, waits at most `deadline` for the work in hand, stops what is still
//! running, and returns a report with `is_clean()` and `unfinished_count()`. "Unfinished" is
//! the one word for what was left: events not handled, messages not acknowledged, publishes
//! not confirmed, jobs cut off, actors still running.
//!
//! | handle | `shutdown` returns | unfinished are |
//! |---|---|---|
//! | [`Bus`](crate::bus::Bus) | [`BusShutdownReport`](crate::bus::BusShutdownReport) | events queued for async listeners, by listener and event |
//! | `ActorSystem` | `SystemShutdownReport` | actors still running |
//! | `Outbound` | [`ShutdownReport`] | events not confirmed by the broker |
//! | `Inbound` | [`ShutdownReport`] | messages in hand, left unacknowledged (the broker delivers them again) |
//! | the bridges' transports, RPC servers, job workers and queues | [`ShutdownReport`] | their own work: publishes awaiting a confirm, requests being answered, jobs cut off |
//!
//! The bus and the actor system name what was left; the other handles count it. An
//! `Outbound`'s report also counts the events it gave up on while it ran
//! ([`ShutdownReport::refused_count`]): those are not unfinished (nothing more will be done
//! with them), so a clean stop does not mean none was dropped.

/// How much work a handle's `shutdown(deadline)` left unfinished, and what was refused for
/// good before it; see the [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    unfinished: usize,
    refused: u64,
}

impl ShutdownReport {
    /// A report of `unfinished` items left undone (for handles outside this crate, such as
    /// the bridges' transports).
    pub const fn new(unfinished: usize) -> ShutdownReport {
        ShutdownReport {
            unfinished,
            refused: 0,
        }
    }

    /// The same report, also counting `refused` items refused for good during the handle's
    /// life (see [`refused_count`](Self::refused_count)).
    #[must_use]
    pub const fn with_refused(self, refused: u64) -> ShutdownReport {
        ShutdownReport { refused, ..self }
    }

    /// Whether everything in hand was finished before the deadline. It says nothing of what
    /// was refused for good earlier: see [`refused_count`](Self::refused_count).
    pub const fn is_clean(&self) -> bool {
        self.unfinished == 0
    }

    /// How many items were left unfinished.
    pub const fn unfinished_count(&self) -> usize {
        self.unfinished
    }

    /// How many items the handle gave up on for good while it ran, each logged at the time:
    /// for an `Outbound`, the events the broker refused (unroutable, rejected) or that could
    /// not be encoded, which were dropped. A stop can be clean with refusals before it; a
    /// service that must not lose events checks both.
    pub const fn refused_count(&self) -> u64 {
        self.refused
    }
}

impl std::fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.unfinished {
            0 => f.write_str("stopped cleanly")?,
            n => write!(f, "stopped with {n} unfinished")?,
        }
        match self.refused {
            0 => Ok(()),
            n => write!(f, " ({n} refused for good before)"),
        }
    }
}
