//! [`AmqpConsumer`]: deliveries from one queue, and their acknowledgements.
//!
//! ## Cumulative acknowledgements
//!
//! Acknowledging each delivery with its own `basic.ack` costs the broker one operation per
//! message; acknowledging with `multiple` settles every delivery up to a tag at once, which
//! measurably raises end-to-end throughput (`benches/README.md`). So an `ack` is recorded, and
//! the consumer sends what was recorded: one `basic.ack` with `multiple` for the run of
//! acknowledged deliveries from the oldest outstanding one, and a plain `basic.ack` for each
//! acknowledged delivery after a gap (a delivery held unsettled):
//!
//! - when nothing has been waiting to be delivered for [`ACK_LINGER`] (a millisecond), so
//!   that acknowledgements never wait for traffic that has stopped;
//! - when a quarter of the prefetch has piled up, so the broker always has room to send more;
//! - when the consumer is dropped (before its channel closes).
//!
//! Sent as soon as nothing was waiting, as they once were, acknowledgements went out every
//! five messages or so under load (the consumer keeps up, so it often finds nothing waiting
//! for the few microseconds until the next delivery), each an operation for the broker and a
//! write for the client; with the linger they gather up to the threshold while messages keep
//! coming (about 900 acknowledgements for 20,000 messages at prefetch 100, against about
//! 4,000: `benches/README.md`, "RabbitMQ end to end").
//!
//! A `multiple` ack never covers a delivery that was not acknowledged, and `nack` is sent at
//! once on its own. An acknowledgement not yet sent when the connection fails means the message comes
//! again, exactly as for an acknowledgement lost in flight: delivery stays at least once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::BasicProperties;
use parking_lot::Mutex;
use tidings::bridge::{Acker, Consumer, Delivery, Endpoint, Incoming, Lag, TransportError};

use super::error::short;
use super::link::Handle;
use super::link::{answered, asked, Live, DEFAULT_FRAME_MAX};
use super::publish::{self, Raw};
use super::topology::{Queue, QueueArgs, Topology};
use super::wire;

/// How long a consumer that finds no delivery waiting keeps its unsent acknowledgements back
/// for the next one (see the module docs).
pub(crate) const ACK_LINGER: Duration = Duration::from_millis(1);

/// The acknowledgement state of one consumer's channel.
struct Acks {
    /// Delivered, not yet settled with the broker; `Some` once acknowledged here.
    outstanding: BTreeMap<u64, Option<lapin::Acker>>,
    /// Acknowledged here and not sent.
    unsent: usize,
    /// Send once this many are unsent.
    threshold: usize,
    /// The consumer is gone: send every ack at once.
    closed: bool,
}

impl Acks {
    /// Takes every acknowledgement not sent yet: the acker to send one `multiple` ack with,
    /// covering the acknowledged run from the oldest outstanding delivery, and the ackers of
    /// acknowledged deliveries after a gap, to send one by one.
    fn take(&mut self) -> (Option<lapin::Acker>, Vec<lapin::Acker>) {
        let mut run = None;
        while let Some(entry) = self.outstanding.first_entry() {
            if entry.get().is_none() {
                break;
            }
            run = entry.remove();
            self.unsent -= 1;
        }
        let mut single = Vec::new();
        // Acknowledged deliveries after a gap, if any are left, go one by one.
        if self.unsent > 0 {
            self.outstanding.retain(|_, acker| match acker.take() {
                Some(acker) => {
                    single.push(acker);
                    false
                }
                None => true,
            });
        }
        self.unsent = 0;
        (run, single)
    }
}

/// What a consumer's deliveries share to be settled: one reference per delivery.
struct Settling {
    /// The connection (kept up while deliveries may still be settled).
    connection: Arc<Handle>,
    /// The dead-letter queue.
    dead_letter: String,
    /// The source queue was declared (through this transport) with a dead-letter exchange.
    own_dead_letter_exchange: bool,
    acks: Mutex<Acks>,
    /// Held while acknowledgements are taken and sent: one flush at a time (see `flush`).
    sending: tokio::sync::Mutex<()>,
}

impl Settling {
    /// Takes the acknowledgements not sent yet and sends them, one flush at a time. Two
    /// flushes side by side could send a `multiple` ack that covers a tag the other then
    /// acknowledges again, which RabbitMQ answers by closing the channel: every message still
    /// unacknowledged on it would come again (seen under load, one run in a dozen).
    async fn flush(&self, close: bool) -> Result<(), TransportError> {
        let _turn = self.sending.lock().await;
        let taken = {
            let mut acks = self.acks.lock();
            acks.closed |= close;
            acks.take()
        };
        send(taken).await
    }
}

/// Whether lapin could still settle the delivery (`false`: its channel is gone).
fn acked(usable: bool) -> Result<(), TransportError> {
    if usable {
        Ok(())
    } else {
        Err(TransportError::Disconnected(
            "the delivery's channel is gone; it will be delivered again".to_owned(),
        ))
    }
}

/// The run's acker with `multiple`, then the others one by one.
fn with_options(
    (run, single): (Option<lapin::Acker>, Vec<lapin::Acker>),
) -> impl Iterator<Item = (lapin::Acker, BasicAckOptions)> {
    let run = run.map(|acker| (acker, BasicAckOptions { multiple: true }));
    let single = single
        .into_iter()
        .map(|acker| (acker, BasicAckOptions::default()));
    run.into_iter().chain(single)
}

/// Sends every acknowledgement not sent yet.
async fn send(taken: (Option<lapin::Acker>, Vec<lapin::Acker>)) -> Result<(), TransportError> {
    let mut result = Ok(());
    for (acker, options) in with_options(taken) {
        let sent = answered(acker.ack(options)).await.and_then(acked);
        result = result.and(sent);
    }
    result
}

/// Deliveries from one queue; from [`Transport::consume`](tidings::bridge::Transport::consume).
///
/// Acknowledgements are recorded and sent cumulatively: one `basic.ack` with `multiple` for
/// the run of acknowledged deliveries from the oldest outstanding one, and a plain `basic.ack`
/// for each acknowledged delivery after a gap (one held unsettled), once no delivery has come
/// for a millisecond, when a quarter of the prefetch has piled up, or when the consumer is
/// dropped. A
/// `multiple` ack never covers a delivery that was not acknowledged; `nack` is sent at once.
/// An acknowledgement not sent when the connection fails means the message comes again, as
/// for one lost in flight.
///
/// Dropping it sends the acknowledgements it holds and closes its channel; the broker
/// delivers its unacknowledged messages again.
pub struct AmqpConsumer {
    /// The connection generation of this consumer's channel, and the live link: when the
    /// supervisor replaces the connection, the consumer ends instead of waiting on a dead one.
    generation: u64,
    link: tokio::sync::watch::Receiver<Option<Arc<Live>>>,
    consumer: lapin::Consumer,
    _channel: lapin::Channel,
    /// The queue, shared by the messages it delivers.
    origin: Arc<str>,
    /// The queue is a quorum queue (declared through this transport), whose
    /// `x-delivery-count` the broker maintains; on other queues a producer could set it.
    trust_delivery_count: bool,
    settling: Arc<Settling>,
    /// The queue's ready messages, measured by `measuring` until the consumer is dropped.
    lag: Lag,
    measuring: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for AmqpConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConsumer")
            .field("queue", &self.origin)
            .finish_non_exhaustive()
    }
}

impl AmqpConsumer {
    pub(crate) fn new(
        connection: Arc<Handle>,
        channel: lapin::Channel,
        consumer: lapin::Consumer,
        queue: String,
        source: &Endpoint,
        generation: u64,
    ) -> Self {
        let queue_args = connection.shared.recorded_queue_args(&queue);
        let lag = Lag::new();
        let measuring = tokio::spawn(measure_lag(
            connection.shared.link(),
            queue.clone(),
            lag.clone(),
        ));
        AmqpConsumer {
            lag,
            measuring,
            link: connection.shared.link(),
            generation,
            consumer,
            _channel: channel,
            origin: queue.into(),
            trust_delivery_count: queue_args.as_ref().is_some_and(QueueArgs::is_quorum),
            settling: Arc::new(Settling {
                own_dead_letter_exchange: queue_args
                    .as_ref()
                    .is_some_and(QueueArgs::has_dead_letter_exchange),
                connection,
                dead_letter: source.dead_letter.clone(),
                sending: tokio::sync::Mutex::new(()),
                acks: Mutex::new(Acks {
                    outstanding: BTreeMap::new(),
                    unsent: 0,
                    threshold: (source.prefetch / 4).max(1),
                    closed: false,
                }),
            }),
        }
    }

    fn wrap(&self, mut delivery: lapin::message::Delivery) -> Delivery {
        let payload = Bytes::from(std::mem::take(&mut delivery.data));
        let message = wire::incoming(
            &delivery,
            Arc::clone(&self.origin),
            payload.clone(),
            self.trust_delivery_count,
        );
        self.settling
            .acks
            .lock()
            .outstanding
            .insert(delivery.delivery_tag, None);
        let acker = AmqpAcker {
            settling: Arc::clone(&self.settling),
            tag: delivery.delivery_tag,
            acker: delivery.acker,
            properties: delivery.properties,
            payload,
        };
        Delivery::new(message, acker)
    }
}

/// How often a consumer measures its queue's ready messages.
const LAG_EVERY: Duration = Duration::from_secs(1);

/// Measures `queue`'s ready messages every [`LAG_EVERY`] into `lag`: a passive declare on a
/// channel of its own, kept from one measure to the next (a queue deleted meanwhile closes that
/// channel, not the consumer's; the next measure opens another). Unknown while there is no
/// connection or the broker does not answer. Dropping the task drops the channel, which lapin
/// closes.
async fn measure_lag(
    mut link: tokio::sync::watch::Receiver<Option<Arc<Live>>>,
    queue: String,
    lag: Lag,
) {
    let Ok(name) = short(&queue) else { return };
    let mut ticks = tokio::time::interval(LAG_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The channel measures go through, and the connection generation it belongs to.
    let mut channel: Option<(u64, lapin::Channel)> = None;
    loop {
        ticks.tick().await;
        let live = link.borrow_and_update().clone();
        let Some(live) = live else {
            channel = None;
            lag.set(None);
            continue;
        };
        let usable = channel.as_ref().is_some_and(|(generation, c)| {
            *generation == live.generation && c.status().connected()
        });
        if !usable {
            channel = answered(live.connection.create_channel())
                .await
                .ok()
                .map(|c| (live.generation, c));
        }
        let measured = match &channel {
            Some((_, c)) => {
                let options = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                };
                match asked(c.queue_declare(name.clone(), options, FieldTable::default())).await {
                    Ok(Ok(queue)) => Some(u64::from(queue.message_count())),
                    // Refused (404: the queue is gone; the broker closed the channel) or no
                    // answer: a new channel next time.
                    _ => None,
                }
            }
            None => None,
        };
        if measured.is_none() {
            channel = None;
        }
        lag.set(measured);
    }
}

impl Consumer for AmqpConsumer {
    /// The queue's ready messages (delivered and unacknowledged ones not counted), from a
    /// passive declare once a second.
    fn lag(&self) -> Option<Lag> {
        Some(self.lag.clone())
    }

    async fn next(&mut self) -> Option<Result<Delivery, TransportError>> {
        let next = match self.consumer.next().now_or_never() {
            Some(next) => next,
            None => {
                let generation = self.generation;
                let replaced = self
                    .link
                    .wait_for(|link| link.as_ref().map(|live| live.generation) != Some(generation));
                tokio::pin!(replaced);
                let lost = || {
                    Some(Err(TransportError::Disconnected(
                        "the connection was lost".to_owned(),
                    )))
                };
                // Nothing waiting: what was acknowledged waits a moment for more (see the
                // module docs), then goes, so the broker can send more.
                let early = if self.settling.acks.lock().unsent == 0 {
                    None
                } else {
                    tokio::select! {
                        biased;
                        next = self.consumer.next() => Some(next),
                        _ = &mut replaced => return lost(),
                        () = tokio::time::sleep(ACK_LINGER) => None,
                    }
                };
                match early {
                    Some(next) => next,
                    None => {
                        if let Err(error) = self.settling.flush(false).await {
                            tracing::debug!(%error, "acknowledgements lost; those messages come again");
                        }
                        tokio::select! {
                            next = self.consumer.next() => next,
                            _ = &mut replaced => return lost(),
                        }
                    }
                }
            }
        };
        match next {
            Some(Ok(delivery)) => Some(Ok(self.wrap(delivery))),
            Some(Err(error)) => Some(Err(TransportError::Disconnected(error.to_string()))),
            None => {
                tracing::warn!(
                    queue = &*self.origin,
                    "the consumer was cancelled (queue deleted or channel closed)"
                );
                None
            }
        }
    }

    /// Sends the acknowledgements not sent yet and waits for them to be on their way, then
    /// closes the consumer's channel (acknowledgements queued only from `Drop` could be
    /// overtaken by the channel's close, and those messages would come again).
    async fn close(self) {
        if let Err(error) = self.settling.flush(true).await {
            tracing::debug!(%error, "acknowledgements lost at close; those messages come again");
        }
        drop(self);
    }
}

impl Drop for AmqpConsumer {
    fn drop(&mut self) {
        self.measuring.abort();
        let taken = {
            let mut acks = self.settling.acks.lock();
            acks.closed = true;
            acks.take()
        };
        // The first poll of each ack queues it on the connection, ahead of the channel's
        // close; the broker's answer is not awaited.
        for (acker, options) in with_options(taken) {
            let _ = acker.ack(options).now_or_never();
        }
    }
}

/// Settles one RabbitMQ delivery.
struct AmqpAcker {
    settling: Arc<Settling>,
    tag: u64,
    acker: lapin::Acker,
    properties: BasicProperties,
    payload: Bytes,
}

impl AmqpAcker {
    async fn ack(self) -> Result<(), TransportError> {
        let due = {
            let mut acks = self.settling.acks.lock();
            if let Some(slot) = acks.outstanding.get_mut(&self.tag) {
                *slot = Some(self.acker);
                acks.unsent += 1;
            }
            acks.closed || acks.unsent >= acks.threshold
        };
        if due {
            self.settling.flush(false).await
        } else {
            Ok(())
        }
    }
}

impl Acker for AmqpAcker {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin((*self).ack())
    }

    /// Returns the message to RabbitMQ, which delivers its own copy again.
    fn nack(self: Box<Self>, _: Incoming) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin((*self).nack(true))
    }

    /// Republishes the message as RabbitMQ delivered it, byte for byte.
    fn dead_letter(
        self: Box<Self>,
        _: Incoming,
        headers: BTreeMap<String, String>,
    ) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            // Copy to the dead-letter queue first, acknowledge after: a failure in between
            // leaves a duplicate, never a loss.
            match self.copy_to_dead_letter(&headers).await {
                Ok(()) => self.ack().await,
                Err(error) => Err(self.give_back(error).await),
            }
        })
    }
}

impl AmqpAcker {
    /// Publishes the dead-letter copy and waits for its confirm. A dead-letter queue that
    /// does not exist (the source queue was declared by another service) is declared and
    /// recorded, then the copy is sent again.
    async fn copy_to_dead_letter(
        &self,
        headers: &BTreeMap<String, String>,
    ) -> Result<(), TransportError> {
        let settling = &self.settling;
        let dead_letter = settling.dead_letter.as_str();
        let routing_key = ShortString::try_new(dead_letter).map_err(|_| {
            TransportError::Rejected("the dead-letter queue name is too long".to_owned())
        })?;
        let shared = &settling.connection.shared;
        let frame_max = shared
            .current()
            .map_or(DEFAULT_FRAME_MAX, |live| live.frame_max());
        let raw = Raw {
            exchange: "".into(),
            routing_key,
            payload: self.payload.clone(),
            properties: wire::dead_letter_properties(&self.properties, headers, frame_max)?,
        };
        match publish::one(shared, raw.clone()).await {
            Err(TransportError::Unroutable(_)) => {
                tracing::warn!(
                    queue = dead_letter,
                    "the dead-letter queue does not exist; declaring it"
                );
                let topology = Topology::new().queue(Queue::durable(dead_letter));
                shared
                    .declare(&topology)
                    .await
                    .map_err(|e| TransportError::Other(e.into()))?;
                publish::one(shared, raw).await
            }
            other => other,
        }
    }

    /// The copy could not be made: settles the delivery so the consumer keeps flowing, and
    /// says where the message went. With a dead-letter exchange of its own (known from the
    /// declared topology) the queue's is used (`basic.reject`); otherwise the message goes
    /// back to the queue (`basic.nack` with requeue) and comes again. Never dropped.
    async fn give_back(self, error: TransportError) -> TransportError {
        let settling = Arc::clone(&self.settling);
        let (requeue, went) = if settling.own_dead_letter_exchange {
            (false, "rejected to the queue's own dead-letter exchange")
        } else {
            (true, "returned to the queue; it will be delivered again")
        };
        let went = match self.nack(requeue).await {
            Ok(()) => went,
            Err(_) => "left unsettled; the broker delivers it again when the channel closes",
        };
        TransportError::Rejected(format!(
            "cannot copy the message to dead-letter queue `{}` ({error}); {went}",
            settling.dead_letter
        ))
    }

    /// Settles the delivery negatively, at once: back to the queue (`requeue`), or rejected to
    /// the queue's own dead-letter exchange (callers reject only when it has one).
    /// Holds the flush turn while it does: once its tag leaves the outstanding ones, a
    /// `multiple` ack sent before the nack would cover (and so acknowledge) it.
    async fn nack(self, requeue: bool) -> Result<(), TransportError> {
        let _turn = self.settling.sending.lock().await;
        self.settling.acks.lock().outstanding.remove(&self.tag);
        let options = BasicNackOptions {
            requeue,
            multiple: false,
        };
        answered(self.acker.nack(options)).await.and_then(acked)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn acks(tags: &[u64]) -> Acks {
        Acks {
            outstanding: tags.iter().map(|&t| (t, None)).collect(),
            unsent: 0,
            threshold: 4,
            closed: false,
        }
    }

    fn ack(state: &mut Acks, tag: u64) {
        let d = lapin::message::Delivery::mock(tag, "".into(), "".into(), false, Vec::new());
        state.outstanding.insert(tag, Some(d.acker));
        state.unsent += 1;
    }

    #[test]
    fn a_run_stops_at_the_first_unsettled_delivery_and_the_rest_go_one_by_one() {
        let mut state = acks(&[1, 2, 3, 4, 5]);
        ack(&mut state, 2);
        ack(&mut state, 3);
        let (run, single) = state.take();
        assert!(run.is_none(), "1 is still held");
        assert_eq!(single.len(), 2);
        let left: BTreeSet<u64> = state.outstanding.keys().copied().collect();
        assert_eq!(left, BTreeSet::from([1, 4, 5]));
        ack(&mut state, 1);
        ack(&mut state, 5);
        let (run, single) = state.take();
        assert!(run.is_some(), "1 alone is a run");
        assert_eq!(single.len(), 1, "5 is after the gap at 4");
        let left: BTreeSet<u64> = state.outstanding.keys().copied().collect();
        assert_eq!(left, BTreeSet::from([4]));
        assert_eq!(state.unsent, 0);
        let (run, single) = state.take();
        assert!(
            run.is_none() && single.is_empty(),
            "nothing was acknowledged"
        );
    }
}
