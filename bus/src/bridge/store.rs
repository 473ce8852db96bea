//! [`OutboundStore`]: where a durable [`Outbound`](super::Outbound) keeps the events it has
//! accepted until the broker confirmed them.
//!
//! `tidings-bridges` implements it on an SQLite file (feature `sqlite`); any crate can
//! implement it on another store. The trait's futures are boxed so an `Outbound` holds any
//! store behind one pointer, without another type parameter; a store is called once per
//! batch, so the allocation costs nothing measurable.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::transport::Outgoing;

/// A message kept in an [`OutboundStore`], with the position the store gave it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The position: increasing in append order, never given twice.
    pub seq: u64,
    /// The message, as it was appended.
    pub message: Outgoing,
}

/// Durable storage for a durable [`Outbound`](super::Outbound).
///
/// The bridge appends each batch of events before their emitters are told they were accepted,
/// reads them back in position order to publish them (after a restart, everything an earlier
/// process left), and forgets them once the broker confirmed them (or refused them for good).
pub trait OutboundStore: Send + Sync + 'static {
    /// Keeps `messages` durably, in order, and resolves once they are (for a file: written and
    /// synced). Returns them with their positions, in the same order: increasing, and greater
    /// than every position the store gave before, across restarts too. (The messages are
    /// handed over and back so a store that writes them elsewhere need not copy them.)
    ///
    /// # Errors
    /// [`StoreError`] when nothing was kept: the emitters of these events are told.
    fn append(
        &self,
        messages: Vec<Outgoing>,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>>;

    /// Up to `limit` kept messages with positions greater than `after`, in position order.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read; the bridge tries again with backoff.
    fn read_after(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredMessage>, StoreError>>;

    /// Forgets the messages at `positions` (confirmed by the broker, or refused for good).
    ///
    /// # Errors
    /// [`StoreError`] when they could not be removed: they are published again after the
    /// next start (at-least-once).
    fn forget<'a>(&'a self, positions: &'a [u64]) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Why an [`OutboundStore`] could not do what was asked. Cheap to clone: one failed append
/// is reported to every emitter of its batch.
#[derive(Clone)]
pub struct StoreError {
    full: bool,
    message: Arc<str>,
}

impl StoreError {
    /// The store has no room (its size limit, or a full disk).
    pub fn full(message: impl fmt::Display) -> Self {
        StoreError {
            full: true,
            message: message.to_string().into(),
        }
    }

    /// The store failed otherwise (read-only file system, I/O error, corrupt file...).
    pub fn failed(message: impl fmt::Display) -> Self {
        StoreError {
            full: false,
            message: message.to_string().into(),
        }
    }

    /// Whether the store is full (rather than failing otherwise).
    pub fn is_full(&self) -> bool {
        self.full
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.full {
            write!(f, "the outbound store is full: {}", self.message)
        } else {
            write!(f, "the outbound store failed: {}", self.message)
        }
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for StoreError {}
