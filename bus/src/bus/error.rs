//! What can go wrong on a bus, and the reports that say so.

use std::error::Error as StdError;
use std::fmt;

pub use crate::error::Closed;

use super::listener::ListenerId;
use super::overflow::Overflow;
use crate::error::BoxError;

/// A listener failed, panicked, or did not get an event; delivered to
/// [`Bus::on_error`](crate::bus::Bus::on_error) listeners, or logged with `tracing` when there are
/// none. The other listeners of the event are not affected.
#[derive(Debug)]
pub struct ListenerError {
    event: &'static str,
    listener: Option<ListenerId>,
    kind: ListenerErrorKind,
}

/// What went wrong; see [`ListenerError::kind`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ListenerErrorKind {
    /// The listener returned an error.
    Failed(BoxError),
    /// The listener panicked; the panic was caught and this is its message.
    Panicked(String),
    /// The subscriber's queue was full: under `Wait`, `DropNewest` and `Fail` the event named by
    /// [`ListenerError::event`] was not queued for it; under `DropOldest` it is the older event
    /// that was discarded to make room.
    Overflow(Overflow),
    /// The event was emitted after [`Bus::shutdown`](crate::bus::Bus::shutdown) or after the
    /// subscriber was removed; it was not delivered.
    Closed,
}

impl ListenerError {
    pub(crate) fn new(
        event: &'static str,
        listener: Option<ListenerId>,
        kind: ListenerErrorKind,
    ) -> Self {
        ListenerError {
            event,
            listener,
            kind,
        }
    }

    /// The name of the event concerned.
    pub fn event(&self) -> &'static str {
        self.event
    }

    /// The listener concerned, or `None` for the bus itself (an emit after shutdown).
    pub fn listener(&self) -> Option<ListenerId> {
        self.listener
    }

    /// What went wrong.
    pub fn kind(&self) -> &ListenerErrorKind {
        &self.kind
    }

    /// Whether the listener panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, ListenerErrorKind::Panicked(_))
    }
}

impl fmt::Display for ListenerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.listener {
            Some(id) => format!("listener {id}"),
            None => "the bus".to_owned(),
        };
        match &self.kind {
            ListenerErrorKind::Failed(e) => write!(f, "{who} failed on `{}`: {e}", self.event),
            ListenerErrorKind::Panicked(m) => {
                write!(f, "{who} panicked on `{}`: {m}", self.event)
            }
            ListenerErrorKind::Overflow(Overflow::DropOldest) => write!(
                f,
                "{who}'s queue was full: discarded an older `{}` to make room",
                self.event
            ),
            ListenerErrorKind::Overflow(policy) => write!(
                f,
                "{who}'s queue was full: `{}` was not queued (overflow policy {policy:?})",
                self.event
            ),
            ListenerErrorKind::Closed => {
                write!(f, "`{}` was not delivered: {who} is closed", self.event)
            }
        }
    }
}

impl StdError for ListenerError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            ListenerErrorKind::Failed(e) => Some(&**e),
            _ => None,
        }
    }
}

/// [`Bus::emit_and_wait`](crate::bus::Bus::emit_and_wait): some listeners did not handle the event.
/// The others did; nothing is undone.
#[derive(Debug)]
pub struct HandlingError {
    failures: Vec<ListenerError>,
}

impl HandlingError {
    pub(crate) fn new(failures: Vec<ListenerError>) -> Self {
        HandlingError { failures }
    }

    /// Every failure, in the order they happened.
    pub fn failures(&self) -> &[ListenerError] {
        &self.failures
    }

    /// The failures, by value.
    pub fn into_failures(self) -> Vec<ListenerError> {
        self.failures
    }
}

impl fmt::Display for HandlingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.failures.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} listeners failed", many.len())?;
                for (i, e) in many.iter().enumerate() {
                    write!(f, "{} {e}", if i == 0 { ":" } else { ";" })?;
                }
                Ok(())
            }
        }
    }
}

impl StdError for HandlingError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.failures.first().map(|e| e as _)
    }
}

/// A [`Subscription`](crate::bus::Subscription) fell behind: this many events were not queued for it
/// or were discarded by its overflow policy. The subscription goes on with the next event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the subscription missed {0} events")]
pub struct Missed(pub u64);

/// What [`Bus::shutdown`](crate::bus::Bus::shutdown) could not finish.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusShutdownReport {
    /// Events still queued (or being handled) for `on_async` listeners when the deadline passed,
    /// grouped by listener and event name. Empty when everything was handled in time.
    pub unfinished: Vec<UnfinishedEvents>,
}

impl BusShutdownReport {
    /// Whether every queued event was handled before the deadline.
    pub fn is_clean(&self) -> bool {
        self.unfinished.is_empty()
    }

    /// The total number of events that were not handled.
    pub fn unfinished_count(&self) -> usize {
        self.unfinished.iter().map(|u| u.count).sum()
    }
}

impl From<&BusShutdownReport> for crate::shutdown::ShutdownReport {
    fn from(report: &BusShutdownReport) -> Self {
        crate::shutdown::ShutdownReport::new(report.unfinished_count())
    }
}

/// Events of one name that one listener did not handle before the shutdown deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnfinishedEvents {
    /// The `on_async` listener.
    pub listener: ListenerId,
    /// The event name.
    pub event: &'static str,
    /// How many were left; includes the one the listener was handling when it was stopped.
    pub count: usize,
}
