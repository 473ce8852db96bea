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
//! The bus and the actor system name what was left; the other handles count it.

/// How much work a handle's `shutdown(deadline)` left unfinished; see the
/// [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    unfinished: usize,
}

impl ShutdownReport {
    /// A report of `unfinished` items left undone (for handles outside this crate, such as
    /// the bridges' transports).
    pub const fn new(unfinished: usize) -> ShutdownReport {
        ShutdownReport { unfinished }
    }

    /// Whether everything in hand was finished before the deadline.
    pub const fn is_clean(&self) -> bool {
        self.unfinished == 0
    }

    /// How many items were left unfinished.
    pub const fn unfinished_count(&self) -> usize {
        self.unfinished
    }
}

impl std::fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.unfinished {
            0 => f.write_str("stopped cleanly"),
            n => write!(f, "stopped with {n} unfinished"),
        }
    }
}
