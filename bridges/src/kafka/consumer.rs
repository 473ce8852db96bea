//! [`KafkaConsumer`]: one group member, run on a thread of its own.

use std::collections::BTreeMap;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::Message as _;
use tidings::bridge::{
    Acker, Consumer, Delivery, Endpoint, Envelope, Incoming, Lag, Outgoing, TransportError,
    DROPPED_HEADERS,
};
use tokio::sync::oneshot;

use super::error::classify;
use super::offsets::{Command, Mark, State};
use super::producer::Producer;
use super::rebalance::{commit, ConsumerCtx};
use super::wire;
use crate::handover;

/// How long the consumer thread waits for messages or settlements before looking again.
const TICK: Duration = Duration::from_millis(50);

/// How many messages a consumer fetches ahead of what it hands out (at least its prefetch).
const AHEAD: usize = 512;

/// A stream of deliveries from one Kafka topic as one member of the source's group.
/// Dropping it commits what was handled and leaves the group; [`Consumer::close`] waits for
/// that.
///
/// librdkafka's consumer calls block (poll, commit, close), so each consumer owns a thread
/// that polls it and talks to the async side through channels: deliveries go out, what one
/// turn polled in one message (a message and a wake-up of the async side per delivery cost
/// more than the delivery itself), and settlements (ack, nack, dropped) come back.
///
/// **Offsets.** A partition's offset is stored only up to the last message before the first
/// one still unsettled: messages of one partition may be handled side by side (the inbound
/// bridge runs keys in lanes), and a commit must never pass work not yet done. Stored offsets
/// are committed every commit interval, on close, and before a rebalance takes partitions
/// away; librdkafka's own auto-store is off.
///
/// **Redelivery.** Kafka has no per-message return. A nacked message is delivered again by
/// this consumer (its delivery count one higher) and stays unsettled meanwhile, so its offset
/// is not committed; if the consumer goes first, the group delivers it again from the
/// committed offset (its count then starts again at 1).
///
/// **Backpressure.** At most `prefetch` deliveries are out at once. The thread fetches up to
/// 512 messages (or `prefetch`, if larger) ahead of that, then pauses the partitions until
/// the backlog is below that bound again; it keeps polling meanwhile, so it stays in the
/// group.
///
/// **Rebalances.** When partitions are revoked, settlements already sent are applied and the
/// offsets committed; settlements of the revoked partitions that arrive later are ignored
/// (the new owner delivers those messages again). Each assignment of a partition has its own
/// generation, so a late settlement cannot store an offset in a later assignment.
pub struct KafkaConsumer {
    deliveries: handover::Receiver,
    commands: std_mpsc::Sender<Command>,
    /// Resolves once the thread committed, left the group and ended.
    ended: Option<oneshot::Receiver<()>>,
    close_timeout: Duration,
    lag: Lag,
}

impl std::fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer").finish_non_exhaustive()
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Close);
    }
}

impl Consumer for KafkaConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, TransportError>> {
        self.deliveries.next(|| {}).await
    }

    /// Over this consumer's partitions, the high watermarks minus the group's committed
    /// offsets, from librdkafka's statistics (once a second).
    fn lag(&self) -> Option<Lag> {
        Some(self.lag.clone())
    }

    /// Applies the settlements sent so far, commits, leaves the group, and returns once the
    /// consumer thread has done so (at most the session timeout and 5 s).
    async fn close(mut self) {
        let ended = self.ended.take();
        let timeout = self.close_timeout;
        drop(self);
        if let Some(ended) = ended {
            if tokio::time::timeout(timeout, ended).await.is_err() {
                tracing::warn!("the Kafka consumer did not close in time");
            }
        }
    }
}

/// Where a consumer's messages come from and where dead letters go.
struct Origin {
    inner: Arc<Producer>,
    /// The topic subscribed to, shared by the messages read from it.
    topic: Arc<str>,
    dead_letter: String,
}

impl KafkaConsumer {
    pub(crate) fn start(inner: Arc<Producer>, source: &Endpoint) -> Result<Self, TransportError> {
        let (commands, receiver) = std_mpsc::channel();
        let lag = Lag::new();
        let context = ConsumerCtx {
            shared: inner.context.clone(),
            start: inner.config.start,
            timeout: inner.config.publish_timeout,
            state: Mutex::new(State::new(source.name.clone())),
            commands: Mutex::new(receiver),
            lag: lag.clone(),
            topic: source.name.clone(),
        };
        let consumer: BaseConsumer<ConsumerCtx> = inner
            .config
            .consumer(&source.group)
            .create_with_context(context)
            .map_err(|e| classify(&inner.context, &e))?;
        consumer
            .subscribe(&[&source.name])
            .map_err(|e| classify(&inner.context, &e))?;
        let (tx, deliveries) = handover::channel();
        let origin = Arc::new(Origin {
            inner,
            topic: source.name.as_str().into(),
            dead_letter: source.dead_letter.clone(),
        });
        let prefetch = source.prefetch.max(1);
        let sender = commands.clone();
        let close_timeout = origin.inner.config.session_timeout + Duration::from_secs(5);
        let (end, ended) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("tidings-kafka-{}", source.name))
            .spawn(move || {
                run(&consumer, prefetch, &tx, &sender, &origin);
                // Closes the consumer and leaves the group.
                drop(consumer);
                let _ = end.send(());
            })
            .map_err(|e| TransportError::Other(e.into()))?;
        Ok(KafkaConsumer {
            deliveries,
            commands,
            ended: Some(ended),
            close_timeout,
            lag,
        })
    }
}

type Out = handover::Sender;

fn run(
    consumer: &BaseConsumer<ConsumerCtx>,
    prefetch: usize,
    tx: &Out,
    commands: &std_mpsc::Sender<Command>,
    origin: &Arc<Origin>,
) {
    let ctx = consumer.context();
    let ahead = prefetch.max(AHEAD);
    let mut paused = false;
    loop {
        ctx.drain(consumer);
        let mut state = ctx.state.lock();
        if state.closing || tx.is_closed() {
            break;
        }
        // What this turn hands out, sent in one channel message (one wake-up of the async
        // side per turn rather than per message).
        let mut read = Vec::new();
        while state.out < prefetch {
            let Some((mark, message)) = state.waiting.pop_front() else {
                break;
            };
            state.out += 1;
            read.push(delivery(commands, origin, mark, message));
        }
        let full = state.out >= prefetch;
        let buffered = state.waiting.len();
        drop(state);
        // Fetching runs ahead of handing out, up to `ahead` messages; past that the
        // partitions are paused. (Pausing at every full window would make librdkafka drop
        // and fetch again what it had prefetched.)
        if (buffered >= ahead) != paused {
            if let Ok(assignment) = consumer.assignment() {
                let _ = if paused {
                    consumer.resume(&assignment)
                } else {
                    consumer.pause(&assignment)
                };
            }
            paused = !paused;
        }
        // Wait for the first message only when there is room and nothing to hand out; then
        // take what librdkafka has fetched already, up to the room left.
        let mut wait = if full || !read.is_empty() {
            Duration::ZERO
        } else {
            TICK
        };
        let mut fatal = None;
        loop {
            match consumer.poll(wait) {
                Some(Ok(m)) => {
                    let incoming = wire::incoming(&m, &origin.topic);
                    let mut state = ctx.state.lock();
                    let mark = state.received(m.partition(), m.offset());
                    if state.out < prefetch && state.waiting.is_empty() {
                        state.out += 1;
                        drop(state);
                        read.push(delivery(commands, origin, mark, incoming));
                    } else {
                        state.waiting.push_back((mark, incoming));
                        break;
                    }
                }
                Some(Err(error)) => {
                    let is_fatal = matches!(error, KafkaError::MessageConsumptionFatal(_));
                    tracing::warn!(error = %ctx.shared.scrub(&error.to_string()), fatal = is_fatal, "Kafka consumer error");
                    if is_fatal {
                        fatal = Some(classify(&ctx.shared, &error));
                    }
                    break;
                }
                None => break,
            }
            wait = Duration::ZERO;
        }
        if !read.is_empty() {
            // A closed receiver means the consumer is going; the messages stay unsettled.
            let _ = tx.send(Ok(read));
        }
        if let Some(error) = fatal {
            let _ = tx.send(Err(error));
            break;
        }
        if full {
            // Wait for a settlement rather than spin.
            let command = ctx.commands.lock().recv_timeout(TICK);
            if let Ok(command) = command {
                ctx.state.lock().apply(consumer, command);
            }
        }
    }
    ctx.drain(consumer);
    commit(consumer);
    // Dropping the consumer (by the caller) closes it and leaves the group.
}

/// A delivery of `message`, settled through the consumer thread.
fn delivery(
    commands: &std_mpsc::Sender<Command>,
    origin: &Arc<Origin>,
    mark: Mark,
    message: Incoming,
) -> Delivery {
    let acker = KafkaAcker {
        mark,
        settled: false,
        commands: commands.clone(),
        origin: Arc::clone(origin),
    };
    Delivery::new(message, acker)
}

/// Settles one delivery through the consumer thread. It keeps no copy of the message: a
/// nack or a dead letter gets the delivery's own back ([`Acker::nack`]).
struct KafkaAcker {
    mark: Mark,
    settled: bool,
    commands: std_mpsc::Sender<Command>,
    origin: Arc<Origin>,
}

impl KafkaAcker {
    fn send(&mut self, command: Command) -> Result<(), TransportError> {
        self.settled = true;
        self.commands
            .send(command)
            .map_err(|_| TransportError::Closed)
    }
}

impl Drop for KafkaAcker {
    fn drop(&mut self) {
        if !self.settled {
            let _ = self.commands.send(Command::Dropped);
        }
    }
}

impl Acker for KafkaAcker {
    fn ack(mut self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        let result = self.send(Command::Ack(self.mark));
        Box::pin(async move { result })
    }

    /// Hands `message` out again from this consumer, its delivery count one higher.
    fn nack(
        mut self: Box<Self>,
        message: Incoming,
    ) -> BoxFuture<'static, Result<(), TransportError>> {
        let result = self.send(Command::Nack(self.mark, Box::new(message)));
        Box::pin(async move { result })
    }

    fn dead_letter(
        mut self: Box<Self>,
        message: Incoming,
        mut headers: BTreeMap<String, String>,
    ) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            headers.insert(
                wire::ORIGIN_PARTITION.to_owned(),
                self.mark.partition.to_string(),
            );
            headers.insert(wire::ORIGIN_OFFSET.to_owned(), self.mark.offset.to_string());
            let mut out = Outgoing {
                destination: self.origin.dead_letter.clone(),
                envelope: Envelope::republish(&message, headers),
            };
            let mut result = self.origin.inner.produce_one(&out).await;
            if matches!(result, Err(TransportError::Rejected(_))) {
                // Refused as it is (over the dead-letter topic's size limit, say: the copy is
                // the original plus the reason): once more with only the headers that say why
                // it was dead-lettered, and how many of its own it lost.
                let headers = &mut out.envelope.headers;
                let before = headers.len();
                headers.retain(|name, _| wire::DEAD_LETTER_HEADERS.contains(&name.as_str()));
                let dropped = before - headers.len();
                if dropped > 0 {
                    headers.insert(DROPPED_HEADERS.to_owned(), dropped.to_string());
                    result = self.origin.inner.produce_one(&out).await;
                }
            }
            match result {
                Ok(()) => self.send(Command::Ack(self.mark)),
                Err(error) => {
                    let mark = self.mark;
                    let _ = self.send(Command::Nack(mark, Box::new(message)));
                    Err(TransportError::Rejected(format!(
                        "dead-lettering to `{}` failed ({error}); the message is delivered again",
                        self.origin.dead_letter
                    )))
                }
            }
        })
    }
}
