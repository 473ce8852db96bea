//! Forwarding bus events to a broker.

mod durable;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tracing::Instrument;

use super::envelope::{new_id_at, Envelope};
use super::store::OutboundStore;
use super::task::BridgeTask;
use super::transport::{Channel, Outgoing, Transport, TransportError};
use crate::backoff::Backoff;
use crate::bus::Overflow;
use crate::bus::{Bus, Pattern, PatternError, QueueGauge, QueueOptions, Spanned, Subscription};
use crate::codec::{Codec, CodecError, EventSetCodec, Json};
use crate::event::{AnyEvent, EventRef, EventSet, Member};
use crate::shutdown::ShutdownReport;

/// Where one event goes: a destination (exchange, topic, stream) and an optional key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Exchange, topic or stream.
    pub destination: String,
    /// The message key (partition key, and for RabbitMQ's default exchange the queue name);
    /// when `None`, the event's own key ([`Event::key`](crate::event::Event::key)).
    pub key: Option<String>,
}

impl Route {
    /// A route to `destination` with the event's own key.
    pub fn to(destination: impl Into<String>) -> Self {
        Route {
            destination: destination.into(),
            key: None,
        }
    }

    /// Uses `key` instead of the event's own key.
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

type RouteFn<S> = Arc<dyn Fn(EventRef<'_, S>) -> Route + Send + Sync>;

/// Where an outbound sends, as far as its builder fixed it: for [`Outbound::channels`].
#[derive(Clone)]
enum Routing {
    /// The default: each event to a destination named after it.
    ByName,
    /// [`OutboundBuilder::destination`].
    To(String),
    /// [`OutboundBuilder::route`]: chosen per event.
    Custom,
}

/// Configures an [`Outbound`]; from [`Outbound::builder`].
#[must_use]
pub struct OutboundBuilder<S: EventSetCodec, T, C = Json> {
    bus: Bus<S>,
    codec: C,
    transport: T,
    indices: Vec<usize>,
    route: RouteFn<S>,
    routing: Routing,
    source: String,
    batch_size: usize,
    linger: Duration,
    buffer: usize,
    backoff: Backoff,
    store: Option<Arc<dyn OutboundStore>>,
}

impl<S: EventSetCodec, T: Transport, C: Codec> OutboundBuilder<S, T, C> {
    /// Encodes events with `codec` instead of JSON; its content type travels with each
    /// message (the consumer's [`InboundBuilder::codec`](super::InboundBuilder::codec) must
    /// match it).
    pub fn codec<D: Codec>(self, codec: D) -> OutboundBuilder<S, T, D> {
        OutboundBuilder {
            bus: self.bus,
            codec,
            transport: self.transport,
            indices: self.indices,
            route: self.route,
            routing: self.routing,
            source: self.source,
            batch_size: self.batch_size,
            linger: self.linger,
            buffer: self.buffer,
            backoff: self.backoff,
            store: self.store,
        }
    }

    /// Keeps every forwarded event in `store` before its emitter is told it was accepted, and
    /// forgets it only once the broker confirmed it: a durable outbound. See
    /// [Durable outbound](super#durable-outbound) for what that guarantees and what it costs.
    pub fn store(mut self, store: impl OutboundStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Forwards every `E`.
    pub fn forward<E: Member<S>>(mut self) -> Self {
        self.indices.push(E::INDEX);
        self
    }

    /// Forwards every event whose name matches `pattern`.
    ///
    /// # Errors
    /// [`PatternError`] when the pattern does not parse.
    pub fn forward_pattern(mut self, pattern: &str) -> Result<Self, PatternError> {
        self.indices
            .extend(Pattern::parse(pattern)?.indices(S::NAMES));
        Ok(self)
    }

    /// Sends every event to `destination` with its own key.
    pub fn destination(mut self, destination: impl Into<String>) -> Self {
        let destination = destination.into();
        self.routing = Routing::To(destination.clone());
        self.route = Arc::new(move |_| Route::to(destination.clone()));
        self
    }

    /// Chooses destination and key per event.
    pub fn route(
        mut self,
        route: impl Fn(EventRef<'_, S>) -> Route + Send + Sync + 'static,
    ) -> Self {
        self.routing = Routing::Custom;
        self.route = Arc::new(route);
        self
    }

    /// The CloudEvents `source` of what this service publishes (default `tidings`).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Publishes in batches of at most `size`, waiting at most `linger` for a batch to fill
    /// (defaults: 1024 and 2 ms). A batch is only as large as what is waiting, so a large
    /// `size` costs nothing when traffic is light; under load it matters: a transport keeps
    /// its confirm window full within a batch but waits for the last confirms between
    /// batches, so batches several times the window keep the broker busy (with RabbitMQ's
    /// window of 256, batches of 128 measured 25% fewer messages per second than 1024).
    pub fn batch(mut self, size: usize, linger: Duration) -> Self {
        self.batch_size = size.max(1);
        self.linger = linger;
        self
    }

    /// How many events may wait to be published (default 4096). When it is full,
    /// [`Bus::emit_async`] waits and a sync [`Bus::emit`] reports the overflow through
    /// [`Bus::on_error`].
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = events.max(1);
        self
    }

    /// Delays between retries of unconfirmed publishes (default: 50 ms doubling to 5 s, with
    /// jitter).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Starts forwarding.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    #[track_caller]
    pub fn build(mut self) -> Outbound<S> {
        self.indices.sort_unstable();
        self.indices.dedup();
        let options = QueueOptions::new()
            .capacity(self.buffer)
            .overflow(Overflow::Wait);
        let stats = Arc::new(Counters::default());
        let bus = self.bus.clone();
        let indices = std::mem::take(&mut self.indices);
        let channels = channels::<S>(T::SYSTEM, &self.routing, &indices);
        let durable = self.store.is_some();
        let (id, buffer, task) = if let Some(store) = self.store.take() {
            let subscription = bus.add_stored(indices, options);
            let (id, buffer) = (subscription.id(), subscription.gauge());
            let forwarder = Forwarder {
                config: self,
                stats: Arc::clone(&stats),
            };
            let task = tokio::spawn(forwarder.run_durable(store, subscription));
            (id, buffer, task)
        } else {
            let subscription = bus.add_reporting_spanned(indices, options);
            let (id, buffer) = (subscription.id(), subscription.gauge());
            let forwarder = Forwarder {
                config: self,
                stats: Arc::clone(&stats),
            };
            let task = tokio::spawn(forwarder.run(subscription));
            (id, buffer, task)
        };
        Outbound {
            bus,
            subscription: id,
            buffer,
            stats,
            durable,
            channels,
            task: BridgeTask::new(task),
        }
    }
}

/// The channels an outbound of `system` with `routing` sends the events at `indices` to.
fn channels<S: EventSet>(
    system: &'static str,
    routing: &Routing,
    indices: &[usize],
) -> Vec<Channel> {
    let events: Vec<&'static str> = indices.iter().map(|&i| S::NAMES[i]).collect();
    let channel = |address: Option<String>, events: Vec<&'static str>| Channel {
        system,
        address,
        group: None,
        events,
    };
    match routing {
        Routing::ByName => events
            .iter()
            .map(|&name| channel(Some(name.to_owned()), vec![name]))
            .collect(),
        Routing::To(destination) => vec![channel(Some(destination.clone()), events)],
        Routing::Custom => vec![channel(None, events)],
    }
}

/// Forwards chosen events from a bus to a transport; see the [module docs](super).
///
/// Each event is encoded, routed, batched and published; a publish counts only when the broker
/// confirmed it. While the transport is down, unconfirmed events are retried with backoff and
/// new ones wait in a bounded buffer. Dropping an `Outbound` stops forwarding at once; use
/// [`shutdown`](Self::shutdown) to flush first.
pub struct Outbound<S: EventSetCodec> {
    bus: Bus<S>,
    subscription: crate::bus::ListenerId,
    /// The bounded buffer between the bus and the forwarding task.
    buffer: QueueGauge,
    stats: Arc<Counters>,
    /// Whether it has a store (events stored and not confirmed at shutdown are not lost).
    durable: bool,
    channels: Vec<Channel>,
    task: BridgeTask,
}

/// Counters of an [`Outbound`]; see [`Outbound::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboundStats {
    /// Messages handed to the transport, retries included.
    pub published: u64,
    /// Messages the broker confirmed.
    pub confirmed: u64,
    /// Messages published again after a retryable failure.
    pub retried: u64,
    /// Messages the broker refused outright (unroutable, too large); logged at error level.
    pub rejected: u64,
    /// Events the codec could not encode; logged at error level.
    pub unencodable: u64,
    /// Events taken from the buffer and not yet confirmed.
    pub in_flight: u64,
    /// Events waiting in the buffer.
    pub buffered: u64,
    /// Events a sync `emit` could not put in the full buffer (each also reported through
    /// [`Bus::on_error`]). Zero unless the buffer overflowed.
    pub dropped: u64,
    /// Durable outbound: events kept in the store (by this process).
    pub stored: u64,
    /// Durable outbound: events the store could not keep; each emitter that waits
    /// (`emit_and_wait`) got the error, and each is logged at error level.
    pub unstored: u64,
}

crate::counters::counter_set! {
    /// The counters behind [`OutboundStats`]; `IN_FLIGHT` is a gauge: events taken from the
    /// buffer and not yet confirmed or refused.
    type Counters = [PUBLISHED, CONFIRMED, RETRIED, REJECTED, UNENCODABLE, IN_FLIGHT, STORED, UNSTORED];
}

fn read_stats(stats: &Counters, buffer: &QueueGauge) -> OutboundStats {
    let [published, confirmed, retried, rejected, unencodable, in_flight, stored, unstored] =
        stats.snapshot();
    OutboundStats {
        published,
        confirmed,
        retried,
        rejected,
        unencodable,
        in_flight,
        buffered: buffer.len() as u64,
        dropped: buffer.missed(),
        stored,
        unstored,
    }
}

impl<S: EventSetCodec> Outbound<S> {
    /// Starts configuring an outbound bridge from `bus` to `transport`. Choose events with
    /// [`forward`](OutboundBuilder::forward) or [`forward_pattern`](OutboundBuilder::forward_pattern)
    /// and where they go with [`destination`](OutboundBuilder::destination) or
    /// [`route`](OutboundBuilder::route).
    pub fn builder<T: Transport>(bus: &Bus<S>, transport: T) -> OutboundBuilder<S, T> {
        OutboundBuilder {
            bus: bus.clone(),
            codec: Json,
            transport,
            indices: Vec::new(),
            route: Arc::new(|e| Route::to(e.name())),
            routing: Routing::ByName,
            source: "tidings".to_owned(),
            batch_size: 1024,
            linger: Duration::from_millis(2),
            buffer: 4096,
            backoff: Backoff::Exponential {
                initial: Duration::from_millis(50),
                max: Duration::from_secs(5),
            },
            store: None,
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> OutboundStats {
        read_stats(&self.stats, &self.buffer)
    }

    /// Where it sends what: one channel per destination the builder fixed (each event's own
    /// name by default, or [`destination`](OutboundBuilder::destination)), or one without an
    /// address for events routed by a [`route`](OutboundBuilder::route) function. What
    /// `contracts::Contract::outbound` describes (feature `contracts`).
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// Reads [`stats`](Self::stats) without holding the bridge (for the metrics reporter).
    #[cfg(feature = "metrics")]
    pub(crate) fn stats_reader(&self) -> impl Fn() -> OutboundStats + Send + Sync + 'static {
        let (stats, buffer) = (self.stats.clone(), self.buffer.clone());
        move || read_stats(&stats, &buffer)
    }

    /// Stops taking events from the bus, publishes what it holds, and waits up to `deadline`
    /// for the confirmations. The report counts the events left unconfirmed (in flight or
    /// still buffered): they were not published, or their publish may or may not have
    /// reached the broker. With a store, it counts only the events left unstored (still
    /// buffered): those stored and not confirmed stay in the store, and the next outbound on
    /// it publishes them. Its [`refused_count`](ShutdownReport::refused_count) is the events
    /// refused for good (rejected or unencodable) during the outbound's life.
    pub async fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        if !self.task.is_running() {
            return ShutdownReport::default();
        }
        self.bus.off(self.subscription);
        self.task.stop(deadline).await;
        let in_flight = self.stats.get(IN_FLIGHT);
        let unconfirmed = if self.durable {
            if in_flight > 0 {
                tracing::info!(
                    in_flight,
                    "durable outbound stopped with stored events not confirmed; the next \
                     start publishes them"
                );
            }
            self.buffer.len() as u64
        } else {
            in_flight + self.buffer.len() as u64
        };
        if unconfirmed > 0 {
            tracing::error!(
                unconfirmed,
                "outbound bridge stopped with events not confirmed"
            );
        }
        let refused = self.stats.get(REJECTED) + self.stats.get(UNENCODABLE);
        ShutdownReport::new(usize::try_from(unconfirmed).unwrap_or(usize::MAX))
            .with_refused(refused)
    }
}

impl<S: EventSetCodec> Drop for Outbound<S> {
    fn drop(&mut self) {
        // The task is aborted by its own drop.
        if self.task.is_running() {
            self.bus.off(self.subscription);
        }
    }
}

/// The forwarding task: the finished configuration and the counters.
struct Forwarder<S: EventSetCodec, T, C> {
    config: OutboundBuilder<S, T, C>,
    stats: Arc<Counters>,
}

impl<S: EventSetCodec, T: Transport, C: Codec> Forwarder<S, T, C> {
    async fn run(self, mut events: Subscription<S, Spanned<S>>) {
        let mut batch: Vec<Outgoing> = Vec::with_capacity(self.config.batch_size);
        loop {
            // Wait for the first event, take what is already queued, and only then let a short
            // batch fill for at most `linger` (no timer per event when the buffer is busy).
            let Some(first) = events.recv().await else {
                break;
            };
            self.take(first, &mut batch);
            self.take_queued(&mut events, &mut batch);
            // Events taken count as in flight before the next await (where a shutdown's
            // deadline can stop the task): one update per run of takes, not one per event.
            self.stats.add(IN_FLIGHT, batch.len() as u64);
            if batch.len() < self.config.batch_size && !self.config.linger.is_zero() {
                // One timer for the whole linger, not one per event received meanwhile (each
                // would be registered in the timer wheel and removed again).
                let linger = tokio::time::sleep(self.config.linger);
                tokio::pin!(linger);
                while batch.len() < self.config.batch_size {
                    let next = tokio::select! {
                        biased;
                        next = events.recv() => next,
                        () = &mut linger => None,
                    };
                    let Some(next) = next else {
                        break;
                    };
                    let before = batch.len();
                    self.take(next, &mut batch);
                    self.take_queued(&mut events, &mut batch);
                    self.stats.add(IN_FLIGHT, (batch.len() - before) as u64);
                }
            }
            self.publish(&mut batch).await;
        }
    }

    /// Encodes and routes one event into the batch (an event the codec refuses does not go
    /// in).
    fn take(&self, event: Result<Spanned<S>, crate::bus::Missed>, batch: &mut Vec<Outgoing>) {
        // A bridge subscription reports overflow through `on_error`, never as lag.
        let Ok((event, span)) = event else {
            return;
        };
        if let Ok(out) = self.outgoing(&event, span.as_deref()) {
            batch.push(out);
        }
    }

    /// Takes what is already queued, without waiting, until the batch is full.
    fn take_queued(&self, events: &mut Subscription<S, Spanned<S>>, batch: &mut Vec<Outgoing>) {
        while batch.len() < self.config.batch_size {
            let Some(next) = events.try_recv() else {
                return;
            };
            self.take(next, batch);
        }
    }

    /// Encodes and routes one event; an event the codec refuses is counted and logged. The
    /// message carries the trace context of its `create` span, a child of `emitted_in`.
    fn outgoing(
        &self,
        event: &AnyEvent<S>,
        emitted_in: Option<&tracing::Span>,
    ) -> Result<Outgoing, CodecError> {
        let view = event.as_ref();
        let payload = match S::encode_ref(view, &self.config.codec) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.stats.incr(UNENCODABLE);
                tracing::error!(event = event.name(), %error, "cannot encode an event for the broker");
                return Err(error);
            }
        };
        let route = (self.config.route)(view);
        let time = SystemTime::now();
        let id = new_id_at(time);
        let span = tracing::info_span!(
            parent: emitted_in.and_then(tracing::Span::id),
            "tidings.create",
            event = event.name(),
            otel.name = %format_args!("create {}", route.destination),
            otel.kind = "producer",
            messaging.system = T::SYSTEM,
            messaging.operation.type = "create",
            messaging.operation.name = "create",
            messaging.destination.name = %route.destination,
            messaging.message.id = %id,
            messaging.message.body.size = payload.len(),
        );
        let mut headers = std::collections::BTreeMap::new();
        crate::trace::write_span(&span, &mut headers);
        let version = S::VERSIONS.get(event.index()).copied().unwrap_or(1);
        if version > 1 {
            headers.insert(
                crate::codec::VERSION_HEADER.to_owned(),
                crate::codec::schema_uri(event.name(), version),
            );
        }
        let envelope = Envelope {
            id,
            name: event.name().to_owned(),
            key: route.key.or_else(|| S::key_of(view)),
            source: self.config.source.clone(),
            time,
            content_type: self.config.codec.content_type().to_owned(),
            headers,
            payload: Bytes::from(payload),
        };
        Ok(Outgoing {
            destination: route.destination,
            envelope,
        })
    }

    /// Publishes until every message in `batch` is confirmed or refused for good.
    async fn publish(&self, batch: &mut Vec<Outgoing>) {
        // The batch's `send` span: a root (the bridge's task works for many traces), linked to
        // each message's `create` span, as the messaging conventions have it for batches.
        let span = tracing::info_span!(
            parent: None,
            "tidings.publish",
            events = batch.len(),
            otel.name = "send",
            otel.kind = "client",
            messaging.system = T::SYSTEM,
            messaging.operation.type = "send",
            messaging.operation.name = "send",
            messaging.batch.message_count = batch.len(),
        );
        crate::trace::link_messages(&span, batch);
        self.publish_batch(batch).instrument(span).await;
    }

    async fn publish_batch(&self, batch: &mut Vec<Outgoing>) {
        let mut retry = 0u32;
        while !batch.is_empty() {
            self.stats.add(PUBLISHED, batch.len() as u64);
            let mut results = self.config.transport.publish(batch).await;
            if results.len() != batch.len() {
                tracing::error!(
                    messages = batch.len(),
                    results = results.len(),
                    "the transport returned a result count that does not match the batch (a \
                     transport bug); messages without a result are published again"
                );
                results.truncate(batch.len());
                results.resize_with(batch.len(), || {
                    Err(TransportError::Disconnected(
                        "the transport returned no result for this message".into(),
                    ))
                });
            }
            check_key_order(batch, &results);
            let mut failed = Vec::new();
            // Counted once per batch (no await until then): one update per counter, not per
            // message.
            let (mut confirmed, mut rejected) = (0, 0);
            for (out, result) in batch.drain(..).zip(results) {
                match result {
                    Ok(()) => confirmed += 1,
                    Err(error) if error.is_retryable() => failed.push(out),
                    Err(error) => {
                        rejected += 1;
                        tracing::error!(
                            event = out.envelope.name,
                            id = out.envelope.id,
                            destination = out.destination,
                            %error,
                            "the broker refused an event"
                        );
                    }
                }
            }
            self.stats.add(CONFIRMED, confirmed);
            if rejected > 0 {
                self.stats.add(REJECTED, rejected);
            }
            self.stats.sub(IN_FLIGHT, confirmed + rejected);
            if failed.is_empty() {
                return;
            }
            retry += 1;
            self.stats.add(RETRIED, failed.len() as u64);
            let delay = self.config.backoff.jittered(retry);
            tracing::warn!(
                unconfirmed = failed.len(),
                ?delay,
                "publish failed; retrying"
            );
            tokio::time::sleep(delay).await;
            *batch = failed;
        }
    }
}

/// Logs a transport's breach of the per-key order contract of
/// [`Transport::publish`]: a message confirmed after an earlier message with the same
/// destination and key failed and will be retried behind it. The reorder cannot be undone once
/// the broker has the later message, so it is made visible rather than passed over.
fn check_key_order(batch: &[Outgoing], results: &[Result<(), TransportError>]) {
    let mut failed: Vec<(&str, Option<&str>)> = Vec::new();
    for (out, result) in batch.iter().zip(results) {
        let group = (out.destination.as_str(), out.envelope.key.as_deref());
        match result {
            Err(error) if error.is_retryable() && !failed.contains(&group) => failed.push(group),
            Ok(()) if failed.contains(&group) => {
                tracing::error!(
                    destination = out.destination,
                    key = out.envelope.key,
                    id = out.envelope.id,
                    "the transport confirmed a message after an earlier message with the same \
                     key failed: per-key order is broken (a transport bug)"
                );
                return;
            }
            _ => {}
        }
    }
}
