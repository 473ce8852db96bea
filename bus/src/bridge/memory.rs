//! An in-process broker with real broker semantics, for testing bridges without one.
//!
//! A [`MemoryBroker`] keeps one queue per declared [`Endpoint`] and consumer group. Publishing to a
//! destination copies the message into every queue whose source name, read as a topic
//! [`Pattern`], matches the destination (`orders.#` gets `orders.eu`); a publish
//! that reaches no queue fails with [`TransportError::Unroutable`] instead of vanishing. Within a
//! group, consumers share the messages, each holding at most `prefetch` unacknowledged ones.
//!
//! - `ack` forgets a message; `nack` puts it back at the head of its queue; `dead_letter` moves it
//!   to the source's dead-letter destination (declared with the source, group `default`).
//! - A consumer that is dropped, or a connection that is cut, returns its unacknowledged messages
//!   to the head of their queues, in order, with their delivery count raised.
//! - Faults: [`disconnect`](MemoryBroker::disconnect) / [`reconnect`](MemoryBroker::reconnect),
//!   [`fail_next_publishes`](MemoryBroker::fail_next_publishes),
//!   [`set_publish_delay`](MemoryBroker::set_publish_delay).
//!
//! Clones share the broker, like connections to one server.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::envelope::{Envelope, Incoming};
use super::transport::{
    Acker, Consumer, Delivery, Endpoint, Lag, Outgoing, Transport, TransportError,
};
use crate::bus::Pattern;

/// An in-process broker; see the [module docs](self).
#[derive(Clone, Default)]
pub struct MemoryBroker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.state.lock();
        f.debug_struct("MemoryBroker")
            .field("queues", &state.groups.len())
            .field("connected", &!state.down)
            .finish()
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Notified on every change a waiting consumer may care about.
    changed: Notify,
}

#[derive(Default)]
struct State {
    groups: Vec<Group>,
    down: bool,
    /// Bumped by every disconnect; consumers of an older epoch are dead.
    epoch: u64,
    fail_publishes: usize,
    refuse_dead_letters: bool,
    delay: Duration,
    next_tag: u64,
    next_consumer: u64,
    /// What happened, for tests.
    #[cfg(feature = "testing")]
    log: super::journal::Log,
}

struct Group {
    /// The source's name, shared by every message queued for it.
    source: Arc<str>,
    group: String,
    pattern: Pattern,
    dead_letter: String,
    ready: VecDeque<Incoming>,
    /// `ready.len()`, for the group's consumers ([`Consumer::lag`]).
    lag: Lag,
    /// Delivered, not yet settled: tag -> (consumer, message).
    unacked: BTreeMap<u64, (u64, Incoming)>,
    in_flight: HashMap<u64, usize>,
}

impl Group {
    /// Publishes `ready.len()` as the group's lag; called after every change to `ready`.
    fn count_ready(&self) {
        self.lag.set(Some(self.ready.len() as u64));
    }

    /// Puts every unsettled message of `consumer` (or of everyone) back at the head, in order;
    /// how many (they are the first of `ready`).
    fn requeue(&mut self, consumer: Option<u64>) -> usize {
        let tags: Vec<u64> = self
            .unacked
            .iter()
            .filter(|(_, (c, _))| consumer.is_none_or(|id| *c == id))
            .map(|(t, _)| *t)
            .collect();
        let mut returned = 0;
        for tag in tags.into_iter().rev() {
            if let Some((c, mut message)) = self.unacked.remove(&tag) {
                message.delivery_count += 1;
                self.ready.push_front(message);
                self.release(c);
                returned += 1;
            }
        }
        self.count_ready();
        returned
    }

    fn release(&mut self, consumer: u64) {
        if let Some(n) = self.in_flight.get_mut(&consumer) {
            *n = n.saturating_sub(1);
        }
    }
}

impl State {
    fn group_mut(&mut self, source: &str, group: &str) -> Option<&mut Group> {
        self.groups
            .iter_mut()
            .find(|g| &*g.source == source && g.group == group)
    }

    /// Returns the unsettled messages of `consumer` (or of every consumer, who are all gone) in
    /// the groups `which` picks to the heads of their queues.
    fn requeue(&mut self, which: impl Fn(&Group) -> bool, consumer: Option<u64>) {
        for g in self.groups.iter_mut().filter(|g| which(g)) {
            let _returned = g.requeue(consumer);
            #[cfg(feature = "testing")]
            g.ready
                .iter()
                .take(_returned)
                .for_each(|m| self.log.returned(m));
            if let Some(id) = consumer {
                g.in_flight.remove(&id);
            } else {
                g.in_flight.clear();
            }
        }
    }

    /// Puts `message` back at the head of its queue, one delivery more.
    fn return_to(&mut self, source: &str, group: &str, mut message: Incoming) {
        #[cfg(feature = "testing")]
        self.log.returned(&message);
        message.delivery_count += 1;
        if let Some(g) = self.group_mut(source, group) {
            g.ready.push_front(message);
            g.count_ready();
        }
    }

    fn declare(
        &mut self,
        source: &str,
        group: &str,
        dead_letter: &str,
    ) -> Result<(), TransportError> {
        if self.group_mut(source, group).is_some() {
            return Ok(());
        }
        let pattern = Pattern::parse(source)
            .map_err(|e| TransportError::Rejected(format!("invalid source: {e}")))?;
        self.groups.push(Group {
            source: source.into(),
            group: group.to_owned(),
            pattern,
            dead_letter: dead_letter.to_owned(),
            ready: VecDeque::new(),
            lag: Lag::new(),
            unacked: BTreeMap::new(),
            in_flight: HashMap::new(),
        });
        Ok(())
    }

    /// Copies `envelope` into every queue bound to `destination`.
    fn route(&mut self, destination: &str, envelope: &Envelope) -> Result<(), TransportError> {
        self.route_with(destination, |origin| {
            Incoming::from_envelope(envelope, origin)
        })
    }

    /// Puts the message `make` builds for each queue bound to `destination` into it.
    fn route_with(
        &mut self,
        destination: &str,
        make: impl Fn(Arc<str>) -> Incoming,
    ) -> Result<(), TransportError> {
        let mut routed = false;
        for g in self
            .groups
            .iter_mut()
            .filter(|g| g.pattern.matches(destination))
        {
            g.ready.push_back(make(Arc::clone(&g.source)));
            g.count_ready();
            routed = true;
        }
        if routed {
            Ok(())
        } else {
            Err(TransportError::Unroutable(destination.to_owned()))
        }
    }
}

impl MemoryBroker {
    /// An empty, connected broker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cuts every connection: publishes fail with [`TransportError::Disconnected`], consumers
    /// get that error, and every unacknowledged message goes back to its queue.
    pub fn disconnect(&self) {
        let mut state = self.shared.state.lock();
        state.down = true;
        state.epoch += 1;
        state.requeue(|_| true, None);
        drop(state);
        self.shared.changed.notify_waiters();
    }

    /// Accepts connections again.
    pub fn reconnect(&self) {
        self.shared.state.lock().down = false;
        self.shared.changed.notify_waiters();
    }

    /// Makes the next `n` messages it tries to publish fail with a retryable error. As a
    /// broker connection would, a failure also holds back the later messages of the same
    /// destination and key in that batch (reported failed, not published, and not counted
    /// against `n`).
    pub fn fail_next_publishes(&self, n: usize) {
        self.shared.state.lock().fail_publishes = n;
    }

    /// While `refuse` holds, every dead-letter copy is refused, as by a dead-letter queue that
    /// is full or gone: the message goes back to the head of its queue and
    /// [`Delivery::dead_letter`](super::Delivery::dead_letter) fails.
    pub fn refuse_dead_letters(&self, refuse: bool) {
        self.shared.state.lock().refuse_dead_letters = refuse;
    }

    /// Delays every publish by `delay`.
    pub fn set_publish_delay(&self, delay: Duration) {
        self.shared.state.lock().delay = delay;
    }

    /// Messages waiting or unacknowledged in the queue of `source` and `group`.
    pub fn depth(&self, source: &str, group: &str) -> usize {
        let mut state = self.shared.state.lock();
        state
            .group_mut(source, group)
            .map_or(0, |g| g.ready.len() + g.unacked.len())
    }
}

/// Inspection for tests (feature `testing`).
#[cfg(feature = "testing")]
impl MemoryBroker {
    /// What the broker did so far: published, acknowledged, returned and dead-lettered
    /// messages, oldest first.
    pub fn journal(&self) -> super::Journal {
        self.shared.state.lock().log.snapshot()
    }

    /// Waits up to `within` for `found` to return something from the journal (asked now and
    /// after every change), and returns it. Runs on tokio's clock, so a paused test waits no
    /// real time.
    ///
    /// # Errors
    /// [`Unmet`](crate::testing::Unmet) naming `what` and summing up the journal, when nothing
    /// was found in time.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        mut found: impl FnMut(&super::Journal) -> Option<T>,
    ) -> Result<T, crate::testing::Unmet> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut changed = pin!(self.shared.changed.notified());
            changed.as_mut().enable();
            let journal = self.journal();
            if let Some(value) = found(&journal) {
                return Ok(value);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let journal = self.journal();
                return found(&journal).ok_or_else(|| {
                    crate::testing::Unmet::new(format!(
                        "{what} did not happen within {within:?}; the broker saw {}",
                        journal.summary()
                    ))
                });
            }
        }
    }

    /// Waits up to `within` for the `n`th dead letter (counting from 1, over the broker's
    /// life), and returns it.
    ///
    /// # Errors
    /// [`Unmet`](crate::testing::Unmet) when fewer came in time.
    pub async fn wait_for_dead_letter(
        &self,
        n: usize,
        within: Duration,
    ) -> Result<super::DeadLettered, crate::testing::Unmet> {
        let what = format!("dead letter #{n}");
        self.wait_for(&what, within, |j| {
            n.checked_sub(1)
                .and_then(|i| j.dead_lettered.get(i))
                .cloned()
        })
        .await
    }

    /// Puts `payload` into every queue bound to `destination` as a service of another stack
    /// sends it: with no type, no id and no headers (amqplib's
    /// `sendToQueue(q, Buffer.from(JSON.stringify(obj)))`). An inbound bridge reads it as the
    /// event type bound to its source.
    ///
    /// # Errors
    /// [`TransportError::Unroutable`] when no queue is bound to `destination`,
    /// [`TransportError::Disconnected`] while the broker is down.
    pub fn inject_foreign(
        &self,
        destination: &str,
        payload: impl Into<bytes::Bytes>,
    ) -> Result<(), TransportError> {
        let payload = payload.into();
        let mut state = self.shared.state.lock();
        if state.down {
            return Err(TransportError::Disconnected("the broker is down".into()));
        }
        let routed = state.route_with(destination, |origin| Incoming {
            id: None,
            name: None,
            key: None,
            time: None,
            headers: BTreeMap::new(),
            delivery_count: 1,
            origin,
            payload: payload.clone(),
        });
        drop(state);
        self.shared.changed.notify_waiters();
        routed
    }
}

impl Transport for MemoryBroker {
    const SYSTEM: &'static str = "tidings_memory";
    type Consumer = MemoryConsumer;

    async fn publish(&self, batch: &[Outgoing]) -> Vec<Result<(), TransportError>> {
        let delay = self.shared.state.lock().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.shared.state.lock();
        // Keys whose run ended with a retryable failure in this call (the per-key order
        // contract of `Transport::publish`): their later messages are held back.
        let mut failed_keys: Vec<(&str, Option<&str>)> = Vec::new();
        let results = batch
            .iter()
            .map(|out| {
                let key = (out.destination.as_str(), out.envelope.key.as_deref());
                if failed_keys.contains(&key) {
                    return Err(TransportError::Disconnected(
                        "not published: an earlier message with the same key failed".into(),
                    ));
                }
                let result = if state.down {
                    Err(TransportError::Disconnected("the broker is down".into()))
                } else if state.fail_publishes > 0 {
                    state.fail_publishes -= 1;
                    Err(TransportError::Disconnected(
                        "injected publish failure".into(),
                    ))
                } else {
                    state.route(&out.destination, &out.envelope)
                };
                #[cfg(feature = "testing")]
                if result.is_ok() {
                    state.log.published(out);
                }
                if result.as_ref().is_err_and(TransportError::is_retryable) {
                    failed_keys.push(key);
                }
                result
            })
            .collect();
        drop(state);
        self.shared.changed.notify_waiters();
        results
    }

    async fn declare(&self, source: &Endpoint) -> Result<(), TransportError> {
        let mut state = self.shared.state.lock();
        if state.down {
            return Err(TransportError::Disconnected("the broker is down".into()));
        }
        state.declare(&source.name, &source.group, &source.dead_letter)?;
        let dead = source.dead_letter.clone();
        state.declare(&dead, "default", &format!("{dead}.dead-letter"))
    }

    async fn consume(&self, source: &Endpoint) -> Result<MemoryConsumer, TransportError> {
        self.declare(source).await?;
        let mut state = self.shared.state.lock();
        state.next_consumer += 1;
        let lag = state
            .group_mut(&source.name, &source.group)
            .map(|g| {
                g.count_ready();
                g.lag.clone()
            })
            .unwrap_or_default();
        Ok(MemoryConsumer {
            lag,
            broker: self.clone(),
            source: source.name.clone(),
            group: source.group.clone(),
            id: state.next_consumer,
            prefetch: source.prefetch.max(1),
            epoch: state.epoch,
        })
    }
}

/// A consumer of a [`MemoryBroker`] queue. Dropping it returns its unacknowledged messages.
pub struct MemoryConsumer {
    broker: MemoryBroker,
    lag: Lag,
    source: String,
    group: String,
    id: u64,
    prefetch: usize,
    epoch: u64,
}

impl std::fmt::Debug for MemoryConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryConsumer")
            .field("source", &self.source)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Consumer for MemoryConsumer {
    /// The messages waiting for the consumer's group (delivered ones not counted).
    fn lag(&self) -> Option<Lag> {
        Some(self.lag.clone())
    }

    async fn next(&mut self) -> Option<Result<Delivery, TransportError>> {
        let shared = Arc::clone(&self.broker.shared);
        loop {
            let mut changed = pin!(shared.changed.notified());
            changed.as_mut().enable();
            {
                let mut state = shared.state.lock();
                if state.down || state.epoch != self.epoch {
                    return Some(Err(TransportError::Disconnected(
                        "the connection was cut".into(),
                    )));
                }
                state.next_tag += 1;
                let tag = state.next_tag;
                let group = state.group_mut(&self.source, &self.group)?;
                let held = group.in_flight.get(&self.id).copied().unwrap_or(0);
                if held < self.prefetch {
                    if let Some(message) = group.ready.pop_front() {
                        group.count_ready();
                        group.unacked.insert(tag, (self.id, message.clone()));
                        *group.in_flight.entry(self.id).or_default() += 1;
                        let acker = MemoryAcker {
                            broker: self.broker.clone(),
                            source: self.source.clone(),
                            group: self.group.clone(),
                            tag,
                        };
                        return Some(Ok(Delivery::new(message, acker)));
                    }
                }
            }
            changed.await;
        }
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        let mut state = self.broker.shared.state.lock();
        state.requeue(
            |g| *g.source == *self.source && g.group == self.group,
            Some(self.id),
        );
        drop(state);
        self.broker.shared.changed.notify_waiters();
    }
}

struct MemoryAcker {
    broker: MemoryBroker,
    source: String,
    group: String,
    tag: u64,
}

impl MemoryAcker {
    /// Takes the delivery out of the unacknowledged set, then runs `then` on it.
    fn settle(
        self,
        then: impl FnOnce(&mut State, &str, Incoming) -> Result<(), TransportError>,
    ) -> Result<(), TransportError> {
        let mut state = self.broker.shared.state.lock();
        let Some(group) = state.group_mut(&self.source, &self.group) else {
            return Err(TransportError::Closed);
        };
        let Some((consumer, message)) = group.unacked.remove(&self.tag) else {
            return Err(TransportError::Disconnected(
                "stale delivery: it was returned for redelivery".into(),
            ));
        };
        group.release(consumer);
        let dead_letter = group.dead_letter.clone();
        let result = then(&mut state, &dead_letter, message);
        drop(state);
        self.broker.shared.changed.notify_waiters();
        result
    }
}

impl Acker for MemoryAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        let result = self.settle(|_state, _, _message| {
            #[cfg(feature = "testing")]
            _state.log.acknowledged(&_message);
            Ok(())
        });
        Box::pin(async move { result })
    }

    /// Puts the broker's own copy back at the head of the queue.
    fn nack(self: Box<Self>, _: Incoming) -> BoxFuture<'static, Result<(), TransportError>> {
        let (source, group) = (self.source.clone(), self.group.clone());
        let result = self.settle(move |state, _, message| {
            state.return_to(&source, &group, message);
            Ok(())
        });
        Box::pin(async move { result })
    }

    /// Routes the broker's own copy to the dead-letter destination.
    fn dead_letter(
        self: Box<Self>,
        _: Incoming,
        headers: BTreeMap<String, String>,
    ) -> BoxFuture<'static, Result<(), TransportError>> {
        let (source, group) = (self.source.clone(), self.group.clone());
        let result = self.settle(move |state, dead_letter, message| {
            let envelope = Envelope {
                source: message.origin.to_string(),
                ..Envelope::republish(&message, headers)
            };
            let routed = if state.refuse_dead_letters {
                Err(TransportError::Rejected("dead letters are refused".into()))
            } else {
                state.route(dead_letter, &envelope)
            };
            let error = match routed {
                Ok(()) => {
                    #[cfg(feature = "testing")]
                    state
                        .log
                        .dead_lettered(&message, dead_letter, &envelope.headers);
                    return Ok(());
                }
                Err(error) => error,
            };
            // Nowhere to put it: back to the head of its queue, as RabbitMQ returns a message
            // whose copy was refused. Never dropped.
            state.return_to(&source, &group, message);
            Err(TransportError::Rejected(format!(
                "cannot dead-letter to `{dead_letter}` ({error}); returned to the queue"
            )))
        });
        Box::pin(async move { result })
    }
}
