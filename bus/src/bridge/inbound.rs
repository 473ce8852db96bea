//! Bringing broker messages into a bus.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use super::envelope::Incoming;
use super::task::BridgeTask;
use super::transport::{Channel, Consumer, Delivery, Endpoint, Lag, Transport};
use crate::backoff::Backoff;
use crate::bus::Bus;
use crate::codec::{Codec, DecodeError, EventSetCodec, Json};
use crate::event::Member;
use crate::message::MessageContext;
use crate::shutdown::ShutdownReport;

/// Remembers message ids to drop redelivered duplicates; see [`InboundBuilder::dedup`].
pub trait Dedup: Send + Sync + 'static {
    /// Whether a message with this id was already handled.
    fn seen<'a>(&'a self, id: &'a str) -> BoxFuture<'a, bool>;
    /// Records that the message with this id was handled.
    fn remember<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()>;
    /// The message with this id was checked with [`seen`](Self::seen) but not handled (given
    /// back, or dead-lettered): a store that holds other copies back while one is handled
    /// releases them. The default does nothing.
    fn forget<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        let _ = id;
        Box::pin(async {})
    }
}

/// In-process dedup with a time to live: ids are forgotten `ttl` after they were remembered.
pub struct MemoryDedup {
    ttl: Duration,
    state: Mutex<DedupState>,
}

#[derive(Default)]
struct DedupState {
    ids: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
}

impl MemoryDedup {
    /// Dedup that remembers ids for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        MemoryDedup {
            ttl,
            state: Mutex::new(DedupState::default()),
        }
    }

    fn expire(&self, state: &mut DedupState, now: Instant) {
        while let Some((at, _)) = state.order.front() {
            if now.duration_since(*at) < self.ttl {
                break;
            }
            if let Some((at, id)) = state.order.pop_front() {
                if state.ids.get(&id) == Some(&at) {
                    state.ids.remove(&id);
                }
            }
        }
    }
}

impl std::fmt::Debug for MemoryDedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDedup")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Dedup for MemoryDedup {
    fn seen<'a>(&'a self, id: &'a str) -> BoxFuture<'a, bool> {
        let mut state = self.state.lock();
        self.expire(&mut state, Instant::now());
        let seen = state.ids.contains_key(id);
        Box::pin(async move { seen })
    }

    fn remember<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ()> {
        let now = Instant::now();
        let mut state = self.state.lock();
        self.expire(&mut state, now);
        state.ids.insert(id.to_owned(), now);
        state.order.push_back((now, id.to_owned()));
        Box::pin(async {})
    }
}

/// Configures an [`Inbound`]; from [`Inbound::builder`].
#[must_use]
pub struct InboundBuilder<S: EventSetCodec, T, C = Json> {
    bus: Bus<S>,
    codec: C,
    transport: T,
    source: Endpoint,
    default_event: Option<&'static str>,
    max_attempts: u32,
    backoff: Backoff,
    max_payload: usize,
    dedup: Option<Arc<dyn Dedup>>,
    concurrency: usize,
    acknowledge_unheard: bool,
}

impl<S: EventSetCodec, T: Transport, C: Codec> InboundBuilder<S, T, C> {
    /// Decodes payloads with `codec` instead of JSON (the producer's codec).
    pub fn codec<D: Codec>(self, codec: D) -> InboundBuilder<S, T, D> {
        InboundBuilder {
            bus: self.bus,
            codec,
            transport: self.transport,
            source: self.source,
            default_event: self.default_event,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            max_payload: self.max_payload,
            dedup: self.dedup,
            concurrency: self.concurrency,
            acknowledge_unheard: self.acknowledge_unheard,
        }
    }

    /// Decodes messages that carry no type as `E`: for producers that publish plain JSON, such
    /// as a Node service doing `sendToQueue(q, Buffer.from(JSON.stringify(obj)))`.
    pub fn bind<E: Member<S>>(mut self) -> Self {
        self.default_event = Some(E::NAME);
        self
    }

    /// Attempts before a message whose handlers keep failing is dead-lettered (default 5;
    /// at least 1). Broker redeliveries count.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The delay between attempts (default: 100 ms doubling to 10 s, with jitter).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Payloads larger than this are dead-lettered undecoded (default 1 MiB).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Acknowledges without handling messages whose id was handled before.
    pub fn dedup(mut self, dedup: impl Dedup) -> Self {
        self.dedup = Some(Arc::new(dedup));
        self
    }

    /// Handles up to `n` messages at once (default 1; at least 1), as an amqplib consumer
    /// with async handlers does up to its prefetch. Messages are spread over `n` lanes by key
    /// (by id when they have none), and each lane handles its messages one after another, so
    /// messages of one key are still handled in order. For async listeners to run at once
    /// too, register them with [`QueueOptions::concurrency`](crate::bus::QueueOptions::concurrency);
    /// and give the source a prefetch of at least `n`.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Acknowledges a message whose event has no listener, unhandled, instead of treating it as
    /// a failure. Without this, such a message is tried again like one whose handler failed
    /// (a listener registered meanwhile gets it) and after the last attempt dead-lettered with
    /// a reason saying no listener took it. Either way it is counted in
    /// [`InboundStats::unheard`]. For services that really want such messages dropped.
    pub fn acknowledge_unheard(mut self) -> Self {
        self.acknowledge_unheard = true;
        self
    }

    /// Starts consuming.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    #[track_caller]
    pub fn build(self) -> Inbound {
        let stats = Arc::new(Counters::default());
        let lag = Arc::new(Mutex::new(None));
        let stop = Arc::new(Notify::new());
        let ingest = Ingest {
            config: self,
            stats: Arc::clone(&stats),
            lag: Arc::clone(&lag),
            dead_letter_failures: AtomicU32::new(0),
        };
        let channel = Channel {
            system: T::SYSTEM,
            address: Some(ingest.config.source.name.clone()),
            group: Some(ingest.config.source.group.clone()),
            events: S::NAMES.to_vec(),
        };
        let task = tokio::spawn(Arc::new(ingest).run(Arc::clone(&stop)));
        Inbound {
            channel,
            stats,
            lag,
            stop,
            task: BridgeTask::new(task),
        }
    }
}

/// Consumes a source and emits what it receives into a bus; see the [module docs](super).
///
/// A message is acknowledged only when every listener of its event succeeded
/// ([`Bus::emit_and_wait`]); otherwise it is tried again with backoff, and after the last
/// attempt dead-lettered with the reason, the attempt count and its origin. A message whose
/// event has no listener is not handled either: it is tried again the same way (unless
/// [`acknowledge_unheard`](InboundBuilder::acknowledge_unheard)), so register listeners before
/// building the bridge. A message that cannot be decoded is dead-lettered at once. Dropping an
/// `Inbound` stops it at once; its unacknowledged message is delivered again by the broker.
pub struct Inbound {
    channel: Channel,
    stats: Arc<Counters>,
    /// The current consumer's lag, if its transport measures it.
    lag: Arc<Mutex<Option<Lag>>>,
    stop: Arc<Notify>,
    task: BridgeTask,
}

/// Counters of an [`Inbound`]; see [`Inbound::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboundStats {
    /// Deliveries received.
    pub received: u64,
    /// Messages handled and acknowledged.
    pub handled: u64,
    /// Deliveries the transport had delivered before (redeliveries).
    pub redelivered: u64,
    /// Handler attempts repeated after a failure.
    pub retried: u64,
    /// Messages moved to the dead-letter destination.
    pub dead_lettered: u64,
    /// Messages acknowledged without handling because their id was seen before.
    pub duplicates: u64,
    /// Messages whose event had no listener at their last attempt: dead-lettered (and counted
    /// in `dead_lettered` too), or acknowledged unhandled with
    /// [`acknowledge_unheard`](InboundBuilder::acknowledge_unheard).
    pub unheard: u64,
    /// Times the consumer was started again after a transport failure.
    pub reconnects: u64,
    /// How far the consumer's group is behind its source, in messages, as the transport last
    /// measured it ([`Lag`], [`Consumer::lag`]); `None` when it does not measure it, or not
    /// yet.
    pub lag: Option<u64>,
}

crate::counters::counter_set! {
    /// The counters behind [`InboundStats`], in its field order, then `IN_HAND`, a gauge not
    /// in the stats: messages taken from the consumer and not settled yet (read by
    /// `shutdown`).
    type Counters = [
        RECEIVED,
        HANDLED,
        REDELIVERED,
        RETRIED,
        DEAD_LETTERED,
        DUPLICATES,
        RECONNECTS,
        UNHEARD,
        IN_HAND,
    ];
}

fn read_stats(stats: &Counters, lag: &Mutex<Option<Lag>>) -> InboundStats {
    let [received, handled, redelivered, retried, dead_lettered, duplicates, reconnects, unheard, _] =
        stats.snapshot();
    InboundStats {
        received,
        handled,
        redelivered,
        retried,
        dead_lettered,
        duplicates,
        reconnects,
        unheard,
        lag: lag.lock().as_ref().and_then(Lag::get),
    }
}

impl Inbound {
    /// Starts configuring an inbound bridge from `source` on `transport` into `bus`.
    pub fn builder<S: EventSetCodec, T: Transport>(
        bus: &Bus<S>,
        transport: T,
        source: Endpoint,
    ) -> InboundBuilder<S, T> {
        InboundBuilder {
            bus: bus.clone(),
            codec: Json,
            transport,
            source,
            default_event: None,
            max_attempts: 5,
            backoff: Backoff::Exponential {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(10),
            },
            max_payload: 1 << 20,
            dedup: None,
            concurrency: 1,
            acknowledge_unheard: false,
        }
    }

    /// Where it reads, and the events it decodes (every event of its set). What
    /// `contracts::Contract::inbound` describes (feature `contracts`).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The counters so far.
    pub fn stats(&self) -> InboundStats {
        read_stats(&self.stats, &self.lag)
    }

    /// Reads [`stats`](Self::stats) without holding the bridge (for the metrics reporter).
    #[cfg(feature = "metrics")]
    pub(crate) fn stats_reader(&self) -> impl Fn() -> InboundStats + Send + Sync + 'static {
        let (stats, lag) = (self.stats.clone(), self.lag.clone());
        move || read_stats(&stats, &lag)
    }

    /// Stops taking messages, lets those in hand finish (and be acknowledged), and waits up
    /// to `deadline` for that. The report counts the messages still in hand at the deadline:
    /// they are left unacknowledged, and the broker delivers them again.
    pub async fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        self.stop.notify_one();
        self.task.stop(deadline).await;
        // Read once the task has ended or been aborted: what was taken from the consumer and
        // not settled (being handled, waiting in a lane, or let go by the stop) is left for
        // the broker to deliver again.
        let in_hand = self.stats.get(IN_HAND);
        ShutdownReport::new(usize::try_from(in_hand).unwrap_or(usize::MAX))
    }
}

/// The consuming task: the finished configuration and the counters.
struct Ingest<S: EventSetCodec, T, C> {
    config: InboundBuilder<S, T, C>,
    stats: Arc<Counters>,
    lag: Arc<Mutex<Option<Lag>>>,
    /// Dead letters refused in a row (by any lane); the pause after the next refusal grows
    /// with it.
    dead_letter_failures: AtomicU32,
}

/// Where deliveries go: handled in the consuming task, or sent to lanes by key.
enum Dispatch {
    Inline,
    Lanes {
        lanes: Vec<mpsc::Sender<Delivery>>,
        tasks: JoinSet<()>,
        turn: usize,
    },
}

/// What the listeners of `message`'s event see as its [`MessageContext`], on `attempt`.
///
/// The message's id, name, key and headers move into the context instead of being copied (a
/// copy was three to four allocations per message); [`give_back`] returns them once the emit
/// is done, before the delivery is settled.
fn lend_context(message: &mut Incoming, attempt: u32) -> Arc<MessageContext> {
    let mut context = MessageContext::new(Arc::clone(&message.origin))
        .with_attempt(attempt)
        .with_headers(std::mem::take(&mut message.headers));
    context.set_known(
        message.id.take(),
        message.name.take(),
        message.key.take(),
        message.time,
    );
    Arc::new(context)
}

/// Puts back into `message` what [`lend_context`] moved into `context`: moved again when no
/// one else holds the context, copied when a listener kept it (a task it started, say).
fn give_back(message: &mut Incoming, context: Arc<MessageContext>) {
    let context = Arc::try_unwrap(context).unwrap_or_else(|kept| (*kept).clone());
    (message.id, message.name, message.key, message.headers) = context.into_known();
}

/// The event name `message` is decoded as: its own, else the source's bound one (a message
/// with neither is dead-lettered before it is decoded).
fn name_of<'a>(message: &'a Incoming, default: Option<&'static str>) -> &'a str {
    message.name.as_deref().or(default).unwrap_or_default()
}

/// The lane for `delivery`: by key, else by id, else in turn.
fn lane_of(turn: &mut usize, lanes: usize, delivery: &Delivery) -> usize {
    let message = &delivery.message;
    match message.key.as_deref().or(message.id.as_deref()) {
        Some(key) => {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut hasher);
            (hasher.finish() % lanes as u64) as usize
        }
        None => {
            *turn = turn.wrapping_add(1);
            *turn % lanes
        }
    }
}

impl<S: EventSetCodec, T: Transport, C: Codec> Ingest<S, T, C> {
    async fn run(self: Arc<Self>, stop: Arc<Notify>) {
        let mut dispatch = if self.config.concurrency > 1 {
            let mut tasks = JoinSet::new();
            let lanes = (0..self.config.concurrency)
                .map(|_| {
                    let (tx, mut rx) = mpsc::channel::<Delivery>(1);
                    let ingest = Arc::clone(&self);
                    tasks.spawn(async move {
                        while let Some(delivery) = rx.recv().await {
                            ingest.handle(delivery).await;
                        }
                    });
                    tx
                })
                .collect();
            Dispatch::Lanes {
                lanes,
                tasks,
                turn: 0,
            }
        } else {
            Dispatch::Inline
        };
        let consumer = self.consume(&mut dispatch, &stop).await;
        // The lanes finish what they hold (dropping the senders ends them) while the consumer
        // is still open, so that their acknowledgements reach the broker.
        if let Dispatch::Lanes {
            lanes, mut tasks, ..
        } = dispatch
        {
            drop(lanes);
            while tasks.join_next().await.is_some() {}
        }
        if let Some(consumer) = consumer {
            consumer.close().await;
        }
    }

    /// Consumes until stopped or the bus is shut down; returns the open consumer, if any.
    async fn consume(&self, dispatch: &mut Dispatch, stop: &Notify) -> Option<T::Consumer> {
        // One waiter for the whole run, not one registered and removed per message.
        let mut stopped = std::pin::pin!(stop.notified());
        let mut failures = 0u32;
        loop {
            let mut consumer = match self.config.transport.consume(&self.config.source).await {
                Ok(consumer) => {
                    *self.lag.lock() = consumer.lag();
                    consumer
                }
                Err(error) => {
                    failures += 1;
                    let delay = self.config.backoff.jittered(failures);
                    tracing::warn!(source = self.config.source.name, %error, ?delay, "cannot consume; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => continue,
                        () = &mut stopped => return None,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    next = consumer.next() => next,
                    () = &mut stopped => return Some(consumer),
                };
                match next {
                    Some(Ok(delivery)) => {
                        failures = 0;
                        // Taken until settled: `handle` gives it back.
                        self.stats.incr(IN_HAND);
                        match dispatch {
                            Dispatch::Inline => self.handle(delivery).await,
                            Dispatch::Lanes { lanes, turn, .. } => {
                                let lane = &lanes[lane_of(turn, lanes.len(), &delivery)];
                                tokio::select! {
                                    sent = lane.send(delivery) => if sent.is_err() { return Some(consumer) },
                                    () = &mut stopped => {
                                        // Let go unhandled, before any lane took it.
                                        self.stats.sub(IN_HAND, 1);
                                        return Some(consumer);
                                    }
                                }
                            }
                        }
                        if self.config.bus.is_closed() {
                            // Nothing can be delivered into a shut-down bus again; leave the
                            // messages to other consumers.
                            tracing::warn!(
                                source = self.config.source.name,
                                "the bus is shut down; the inbound bridge stops"
                            );
                            return Some(consumer);
                        }
                    }
                    Some(Err(error)) => {
                        tracing::warn!(source = self.config.source.name, %error, "consumer failed; consuming again");
                        break;
                    }
                    None => {
                        tracing::warn!(
                            source = self.config.source.name,
                            "consumer closed; consuming again"
                        );
                        break;
                    }
                }
            }
            // No consumer, no lag known until the next one measures it.
            *self.lag.lock() = None;
            drop(consumer);
            self.stats.incr(RECONNECTS);
            failures += 1;
            let delay = self.config.backoff.jittered(failures);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = &mut stopped => return None,
            }
        }
    }

    /// [`process`](Self::process) in a span that names the event: a consumer span after
    /// OpenTelemetry's messaging conventions, continuing the trace the message carried.
    async fn handle(&self, delivery: Delivery) {
        let message = &delivery.message;
        let source = &self.config.source;
        let span = tracing::info_span!(
            "tidings.consume",
            event = message.name.as_deref().or(self.config.default_event),
            id = message.id.as_deref(),
            origin = &*message.origin,
            delivery = message.delivery_count,
            otel.name = %format_args!("process {}", source.name),
            otel.kind = "consumer",
            messaging.system = T::SYSTEM,
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.destination.name = %source.name,
            messaging.consumer.group.name = %source.group,
            messaging.message.id = message.id.as_deref(),
            messaging.message.body.size = message.payload.len(),
        );
        crate::trace::continue_from(&message.headers, &span);
        self.process(delivery).instrument(span).await;
        self.stats.sub(IN_HAND, 1);
    }

    async fn process(&self, mut delivery: Delivery) {
        let message = &delivery.message;
        self.stats.incr(RECEIVED);
        if message.delivery_count > 1 {
            self.stats.incr(REDELIVERED);
        }
        let attempts = message.delivery_count.max(1);
        if message.payload.len() > self.config.max_payload {
            let reason = format!(
                "payload of {} bytes is over the limit of {} bytes",
                message.payload.len(),
                self.config.max_payload
            );
            return self.dead_letter(delivery, &reason, attempts).await;
        }
        if message.name.is_none() && self.config.default_event.is_none() {
            let reason = format!(
                "the message has no event type, and no event type is bound to source `{}`",
                self.config.source.name
            );
            return self.dead_letter(delivery, &reason, attempts).await;
        }
        let id = message.id.as_deref();
        if let (Some(dedup), Some(id)) = (&self.config.dedup, id) {
            if dedup.seen(id).await {
                self.stats.incr(DUPLICATES);
                if let Err(error) = delivery.ack().await {
                    tracing::warn!(%error, "could not acknowledge a duplicate");
                }
                return;
            }
        }
        let mut attempt = attempts;
        loop {
            let message = &delivery.message;
            let version = crate::codec::version_of(&message.headers);
            let name = name_of(message, self.config.default_event);
            let decoded = S::decode_version(name, version, &message.payload, &self.config.codec);
            let event = match decoded {
                Ok(event) => event,
                Err(error) => {
                    let reason = match &error {
                        DecodeError::UnknownEvent { .. } => error.to_string(),
                        _ => format!("undecodable payload: {error}"),
                    };
                    self.forget(message.id.as_deref()).await;
                    return self.dead_letter(delivery, &reason, attempt).await;
                }
            };
            let context = lend_context(&mut delivery.message, attempt);
            let emitted = self
                .config
                .bus
                .emit_set_and_wait_in(event, Some(Arc::clone(&context)));
            let emitted = emitted.await;
            give_back(&mut delivery.message, context);
            let message = &delivery.message;
            let id = message.id.as_deref();
            let name = name_of(message, self.config.default_event);
            let (unheard, failure) = match emitted {
                Ok(0) if self.config.acknowledge_unheard => {
                    self.stats.incr(UNHEARD);
                    self.forget(id).await;
                    if let Err(error) = delivery.ack().await {
                        tracing::warn!(%error, "could not acknowledge a message nobody listens to");
                    }
                    return;
                }
                Ok(0) => (true, format!("no listener took event `{name}`")),
                Ok(_) => {
                    // Remembered before the acknowledgement: if that is lost, the copy that
                    // comes again is dropped as a duplicate.
                    if let (Some(dedup), Some(id)) = (&self.config.dedup, id) {
                        dedup.remember(id).await;
                    }
                    if let Err(error) = delivery.ack().await {
                        // Not acknowledged: the broker delivers it again (at least once).
                        tracing::warn!(%error, "could not acknowledge a handled message");
                        return;
                    }
                    self.stats.incr(HANDLED);
                    return;
                }
                Err(_) if self.config.bus.is_closed() => {
                    // The bus is going away, not the message's fault: let another consumer
                    // have it.
                    self.forget(id).await;
                    if let Err(error) = delivery.nack().await {
                        tracing::warn!(%error, "could not return a message");
                    }
                    return;
                }
                Err(error) => (false, format!("handlers failed: {error}")),
            };
            // A failing handler and an event nobody listens to are tried again alike: a
            // listener may come (one registered late), a handler may recover.
            if attempt >= self.config.max_attempts {
                if unheard {
                    self.stats.incr(UNHEARD);
                }
                let reason = format!("{failure} (after {attempt} attempts)");
                self.forget(id).await;
                return self.dead_letter(delivery, &reason, attempt).await;
            }
            self.stats.incr(RETRIED);
            let delay = self.config.backoff.jittered(attempt);
            tracing::warn!(
                event = name,
                attempt,
                ?delay,
                failure,
                "not handled; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Tells the dedup store that the message with `id` was not handled after all.
    async fn forget(&self, id: Option<&str>) {
        if let (Some(dedup), Some(id)) = (&self.config.dedup, id) {
            dedup.forget(id).await;
        }
    }

    async fn dead_letter(&self, delivery: Delivery, reason: &str, attempts: u32) {
        tracing::error!(
            source = self.config.source.name,
            id = delivery.message.id.as_deref().unwrap_or("-"),
            reason,
            "dead-lettering a message"
        );
        match delivery.dead_letter(reason, attempts).await {
            Ok(()) => {
                self.dead_letter_failures.store(0, Ordering::Relaxed);
                self.stats.incr(DEAD_LETTERED);
            }
            Err(error) => {
                // The transport says where the message went instead (returned to its source,
                // or left to be delivered again): never dropped. It comes back, so pause before
                // the next message: a dead-letter destination that keeps refusing must not
                // turn into a redelivery loop at full speed.
                let failures = self.dead_letter_failures.fetch_add(1, Ordering::Relaxed) + 1;
                let delay = self.config.backoff.jittered(failures);
                tracing::error!(%error, ?delay, "could not dead-letter a message; pausing");
                tokio::time::sleep(delay).await;
            }
        }
    }
}
