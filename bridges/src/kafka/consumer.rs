//! [`KafkaConsumer`]: one group member, run on a thread of its own.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{Message as _, Statistics};
use rdkafka::{Offset, TopicPartitionList};
use tidings::bridge::{
    Acker, Consumer, Delivery, Envelope, Incoming, Lag, Outgoing, Source, TransportError,
    DROPPED_HEADERS,
};
use tokio::sync::oneshot;

use super::config::StartFrom;
use super::context::Context;
use super::error::classify;
use super::transport::Inner;
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

enum Command {
    Ack(Mark),
    Nack(Mark, Box<Incoming>),
    /// A delivery dropped unsettled: it stays unsettled until the consumer goes.
    Dropped,
    Close,
}

#[derive(Clone, Copy)]
struct Mark {
    partition: i32,
    offset: i64,
    generation: u64,
}

/// One assigned partition's unsettled offsets.
struct Partition {
    generation: u64,
    unsettled: BTreeSet<i64>,
    /// One past the highest offset received.
    next: i64,
    /// The offset stored last; before any, the one before the first offset received in this
    /// assignment (nothing below it is ours to store).
    stored: i64,
}

struct State {
    topic: String,
    partitions: HashMap<i32, Partition>,
    generations: u64,
    /// Deliveries out and not settled.
    out: usize,
    /// Messages to hand out before polling more: nacked ones, then ones received while paused.
    waiting: VecDeque<(Mark, Incoming)>,
    closing: bool,
}

impl State {
    fn partition(&mut self, partition: i32) -> &mut Partition {
        let generations = &mut self.generations;
        self.partitions.entry(partition).or_insert_with(|| {
            *generations += 1;
            Partition {
                generation: *generations,
                unsettled: BTreeSet::new(),
                next: 0,
                stored: i64::MIN,
            }
        })
    }

    fn received(&mut self, partition: i32, offset: i64) -> Mark {
        let p = self.partition(partition);
        if p.stored == i64::MIN {
            p.stored = offset - 1;
        }
        p.unsettled.insert(offset);
        p.next = p.next.max(offset + 1);
        Mark {
            partition,
            offset,
            generation: p.generation,
        }
    }

    fn apply(&mut self, consumer: &BaseConsumer<ConsumerCtx>, command: Command) {
        match command {
            Command::Ack(mark) => {
                self.out = self.out.saturating_sub(1);
                let Some(upto) = self.settled(mark) else {
                    return;
                };
                match consumer.store_offset(&self.topic, mark.partition, upto) {
                    Ok(()) => {
                        if let Some(p) = self.current(mark) {
                            p.stored = upto;
                        }
                    }
                    Err(error) => tracing::debug!(
                        topic = self.topic, partition = mark.partition, %error,
                        "offset not stored (partition revoked?); the message may come again"
                    ),
                }
            }
            Command::Nack(mark, mut message) => {
                self.out = self.out.saturating_sub(1);
                if self.current(mark).is_some() {
                    message.delivery_count = message.delivery_count.saturating_add(1);
                    self.waiting.push_front((mark, *message));
                }
            }
            Command::Dropped => self.out = self.out.saturating_sub(1),
            Command::Close => self.closing = true,
        }
    }

    /// Marks `mark` settled; the offset to store now, if the settled run grew: the last one
    /// before the first offset still unsettled.
    fn settled(&mut self, mark: Mark) -> Option<i64> {
        let p = self.current(mark)?;
        p.unsettled.remove(&mark.offset);
        let upto = p.unsettled.first().map_or(p.next - 1, |first| first - 1);
        (upto > p.stored).then_some(upto)
    }

    /// The partition `mark` belongs to, if it is still in the assignment it came from.
    fn current(&mut self, mark: Mark) -> Option<&mut Partition> {
        self.partitions
            .get_mut(&mark.partition)
            .filter(|p| p.generation == mark.generation)
    }

    fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.partitions.remove(p);
        }
        self.waiting
            .retain(|(mark, _)| !partitions.contains(&mark.partition));
    }
}

/// The consumer's librdkafka context: the transport's, plus rebalance handling.
pub(crate) struct ConsumerCtx {
    shared: Context,
    start: StartFrom,
    /// Bounds the blocking calls made in callbacks.
    timeout: Duration,
    state: Mutex<State>,
    commands: Mutex<std_mpsc::Receiver<Command>>,
    /// Summed from librdkafka's statistics, once a second.
    lag: Lag,
    /// The topic consumed, for the statistics callback (which must not take `state`: it may
    /// run inside a call made with `state` held).
    topic: String,
}

impl ConsumerCtx {
    fn drain(&self, consumer: &BaseConsumer<ConsumerCtx>) {
        let commands = self.commands.lock();
        let mut state = self.state.lock();
        while let Ok(command) = commands.try_recv() {
            state.apply(consumer, command);
        }
    }
}

impl ClientContext for ConsumerCtx {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.shared.log(level, facility, message);
    }

    fn stats(&self, statistics: Statistics) {
        // With no broker up, the last watermarks are stale: the lag is not known.
        let up = statistics.brokers.values().any(|b| b.state == "UP");
        self.lag
            .set(up.then(|| lag_of(&statistics, &self.topic)).flatten());
        self.shared.stats(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.shared.error(error, reason);
    }
}

/// The consumer lag of `topic` in `statistics`: over the partitions this consumer is
/// assigned, each one's high watermark minus the group's committed offset (librdkafka's
/// `consumer_lag`, as `kafka-consumer-groups` reports lag); `None` while no partition's is
/// known.
fn lag_of(statistics: &Statistics, topic: &str) -> Option<u64> {
    let partitions = &statistics.topics.get(topic)?.partitions;
    partitions
        .values()
        // -1: librdkafka's "unassigned" pseudo-partition, or a lag not known yet.
        .filter(|p| p.partition >= 0 && p.desired)
        .filter_map(|p| u64::try_from(p.consumer_lag).ok())
        .reduce(u64::saturating_add)
}

impl ConsumerContext for ConsumerCtx {
    /// rdkafka's own rebalance, written with its safe calls, plus one step: with
    /// [`StartFrom::Timestamp`], newly assigned partitions that have no committed offset
    /// start at the first message at or after the time.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let StartFrom::Timestamp(time) = self.start {
                    self.start_at(consumer, list, time);
                }
                self.pre_rebalance(consumer, &Rebalance::Assign(list));
                let assigned = if cooperative {
                    consumer.incremental_assign(list)
                } else {
                    consumer.assign(list)
                };
                self.post_rebalance(consumer, &Rebalance::Assign(list));
                assigned
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.pre_rebalance(consumer, &Rebalance::Revoke(list));
                let revoked = if cooperative {
                    consumer.incremental_unassign(list)
                } else {
                    consumer.unassign()
                };
                self.post_rebalance(consumer, &Rebalance::Revoke(list));
                revoked
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                tracing::warn!(%code, "rebalance error; librdkafka drops the assignment");
                let _ = consumer.unassign();
                Ok(())
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, "applying a rebalance failed");
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            // Apply what was settled so far, commit it, then forget the partitions.
            self.drain(consumer);
            commit(consumer);
            let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
            tracing::debug!(?partitions, "partitions revoked");
            self.state.lock().revoke(&partitions);
        }
    }
}

impl ConsumerCtx {
    /// Sets the start of each partition of `list` that has no committed offset to the first
    /// message at or after `time` (its end when there is none). On failure the partitions
    /// start as `auto.offset.reset` says (earliest), which loses nothing.
    fn start_at(
        &self,
        consumer: &BaseConsumer<Self>,
        list: &mut TopicPartitionList,
        time: SystemTime,
    ) {
        let committed = match consumer.committed_offsets(list.clone(), self.timeout) {
            Ok(committed) => committed,
            Err(error) => {
                tracing::warn!(%error, "committed offsets unknown; starting from the earliest");
                return;
            }
        };
        let mut query = TopicPartitionList::new();
        for e in committed.elements() {
            if !matches!(e.offset(), Offset::Offset(_)) {
                let at = Offset::Offset(wire::millis(time));
                let _ = query.add_partition_offset(e.topic(), e.partition(), at);
            }
        }
        if query.count() == 0 {
            return;
        }
        match consumer.offsets_for_times(query, self.timeout) {
            Ok(found) => {
                for e in found.elements() {
                    let _ = list.set_partition_offset(e.topic(), e.partition(), e.offset());
                }
            }
            Err(error) => {
                tracing::warn!(%error, "offsets for the start time unknown; starting from the earliest");
            }
        }
    }
}

fn commit(consumer: &BaseConsumer<ConsumerCtx>) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing stored since the last commit.
        Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
        Err(error) => {
            tracing::warn!(%error, "committing offsets failed; handled messages may come again")
        }
    }
}

/// Where a consumer's messages come from and where dead letters go.
struct Origin {
    inner: Arc<Inner>,
    /// The topic subscribed to, shared by the messages read from it.
    topic: Arc<str>,
    dead_letter: String,
}

impl KafkaConsumer {
    pub(crate) fn start(inner: Arc<Inner>, source: &Source) -> Result<Self, TransportError> {
        let (commands, receiver) = std_mpsc::channel();
        let lag = Lag::new();
        let context = ConsumerCtx {
            shared: inner.context.clone(),
            start: inner.config.start,
            timeout: inner.config.publish_timeout,
            state: Mutex::new(State {
                topic: source.name.clone(),
                partitions: HashMap::new(),
                generations: 0,
                out: 0,
                waiting: VecDeque::new(),
                closing: false,
            }),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            topic: "t".into(),
            partitions: HashMap::new(),
            generations: 0,
            out: 0,
            waiting: VecDeque::new(),
            closing: false,
        }
    }

    #[test]
    fn a_revoked_then_reassigned_partition_ignores_old_marks() {
        let mut s = state();
        let old = s.received(0, 10);
        s.revoke(&[0]);
        let new = s.received(0, 10);
        assert_ne!(old.generation, new.generation);
        assert!(s.current(old).is_none());
        assert!(s.current(new).is_some());
    }

    fn message() -> Incoming {
        Incoming::from_envelope(&Envelope::new("e", b"{}".to_vec()), "t")
    }

    #[test]
    fn offsets_are_stored_only_up_to_the_first_unsettled_message() {
        let mut s = state();
        let marks: Vec<Mark> = (100..105).map(|o| s.received(0, o)).collect();
        // Settled out of order: 101 and 103 first store nothing.
        assert_eq!(s.settled(marks[1]), None);
        assert_eq!(s.settled(marks[3]), None);
        // 100 done: 100 and 101 are a settled run.
        assert_eq!(s.settled(marks[0]), Some(101));
        s.current(marks[0]).unwrap().stored = 101;
        // 104 done while 102 is not: nothing new.
        assert_eq!(s.settled(marks[4]), None);
        assert_eq!(s.settled(marks[2]), Some(104));
    }

    #[test]
    fn partitions_are_tracked_apart() {
        let mut s = state();
        let a = s.received(0, 5);
        let b = s.received(1, 7);
        let _ = s.received(1, 8);
        assert_eq!(s.settled(a), Some(5));
        assert_eq!(
            s.settled(b),
            Some(7),
            "8 is unsettled; 7 is the settled run"
        );
        assert_eq!(s.partitions[&0].unsettled.len(), 0);
        assert_eq!(s.partitions[&1].unsettled.len(), 1);
    }

    #[test]
    fn nacked_messages_of_revoked_partitions_are_not_redelivered() {
        let mut s = state();
        let a = s.received(0, 1);
        let b = s.received(1, 1);
        s.waiting.push_back((a, message()));
        s.waiting.push_back((b, message()));
        s.revoke(&[0]);
        assert_eq!(s.waiting.len(), 1);
        assert_eq!(s.waiting[0].0.partition, 1);
    }
}
