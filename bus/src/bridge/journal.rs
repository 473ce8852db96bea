//! [`Journal`]: what a [`MemoryBroker`](super::MemoryBroker) did, for tests (feature
//! `testing`): every message published, acknowledged, returned for redelivery and
//! dead-lettered, in order.

use std::collections::VecDeque;
use std::fmt::Write as _;

use super::envelope::{Incoming, ATTEMPTS_HEADER, REASON_HEADER};
use super::transport::Outgoing;

/// How many entries of each kind a broker keeps: the most recent ones.
pub const JOURNAL_LIMIT: usize = 10_000;

/// What a [`MemoryBroker`](super::MemoryBroker) did, oldest first; from
/// [`MemoryBroker::journal`](super::MemoryBroker::journal). Each list keeps the most recent
/// [`JOURNAL_LIMIT`] entries.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Journal {
    /// Every message the broker accepted from a publish (to at least one queue).
    pub published: Vec<Outgoing>,
    /// Every delivery acknowledged.
    pub acknowledged: Vec<Incoming>,
    /// Every delivery that went back to its queue to come again: nacked, or held by a consumer
    /// that went away or lost its connection.
    pub returned: Vec<Incoming>,
    /// Every dead letter the broker took.
    pub dead_lettered: Vec<DeadLettered>,
}

/// A message moved to a dead-letter destination, and why.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeadLettered {
    /// The message as it was last delivered.
    pub message: Incoming,
    /// Where the copy went.
    pub destination: String,
    /// The reason the inbound bridge gave.
    pub reason: String,
    /// The attempts made (0 when the bridge did not say).
    pub attempts: u32,
}

impl Journal {
    /// The messages published to `destination`, oldest first.
    pub fn published_to<'a>(&'a self, destination: &'a str) -> impl Iterator<Item = &'a Outgoing> {
        self.published
            .iter()
            .filter(move |out| out.destination == destination)
    }

    /// One line per kind: how many, and the last of each.
    pub(crate) fn summary(&self) -> String {
        let mut out = format!(
            "{} published, {} acknowledged, {} returned, {} dead-lettered",
            self.published.len(),
            self.acknowledged.len(),
            self.returned.len(),
            self.dead_lettered.len()
        );
        if let Some(last) = self.published.last() {
            let _ = write!(
                out,
                "; last published: `{}` to `{}`",
                last.envelope.name, last.destination
            );
        }
        if let Some(last) = self.dead_lettered.last() {
            let _ = write!(
                out,
                "; last dead-lettered: {:?} to `{}` ({})",
                last.message.name, last.destination, last.reason
            );
        }
        out
    }
}

/// The journal as the broker keeps it: bounded lists.
#[derive(Default)]
pub(super) struct Log {
    published: VecDeque<Outgoing>,
    acknowledged: VecDeque<Incoming>,
    returned: VecDeque<Incoming>,
    dead_lettered: VecDeque<DeadLettered>,
}

fn push<T>(list: &mut VecDeque<T>, item: T) {
    if list.len() == JOURNAL_LIMIT {
        list.pop_front();
    }
    list.push_back(item);
}

impl Log {
    pub(super) fn published(&mut self, out: &Outgoing) {
        push(&mut self.published, out.clone());
    }

    pub(super) fn acknowledged(&mut self, message: &Incoming) {
        push(&mut self.acknowledged, message.clone());
    }

    pub(super) fn returned(&mut self, message: &Incoming) {
        push(&mut self.returned, message.clone());
    }

    /// A dead letter to `destination`, with the reason and attempts read from the headers the
    /// inbound bridge added.
    pub(super) fn dead_lettered(
        &mut self,
        message: &Incoming,
        destination: &str,
        headers: &std::collections::BTreeMap<String, String>,
    ) {
        push(
            &mut self.dead_lettered,
            DeadLettered {
                message: message.clone(),
                destination: destination.to_owned(),
                reason: headers.get(REASON_HEADER).cloned().unwrap_or_default(),
                attempts: headers
                    .get(ATTEMPTS_HEADER)
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(0),
            },
        );
    }

    pub(super) fn snapshot(&self) -> Journal {
        Journal {
            published: self.published.iter().cloned().collect(),
            acknowledged: self.acknowledged.iter().cloned().collect(),
            returned: self.returned.iter().cloned().collect(),
            dead_lettered: self.dead_lettered.iter().cloned().collect(),
        }
    }
}
