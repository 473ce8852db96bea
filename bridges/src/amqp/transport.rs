//! [`AmqpTransport`]: the bridge core's [`Transport`] on RabbitMQ.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ExchangeDeleteOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use tidings::bridge::{Endpoint, Outgoing, Transport, TransportError};
use tidings::ShutdownReport;

use tidings::Backoff;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::config::{BrokerUrl, Config, Tls};
use super::consumer::AmqpConsumer;
use super::error::{refused, short, Error};
use super::link::{self, ConnectionEvent, Handle, LinkState};
use super::publish::{self, Raw};
use super::topology::{Exchange, Queue, QueueArgs, Topology};
use super::wire;

/// Configures an [`AmqpTransport`]; from [`AmqpTransport::builder`].
#[must_use]
pub struct AmqpBuilder {
    config: Result<Config, Error>,
}

impl std::fmt::Debug for AmqpBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpBuilder")
            .field("config", &self.config)
            .finish()
    }
}

impl AmqpBuilder {
    fn with(mut self, change: impl FnOnce(&mut Config)) -> Self {
        if let Ok(config) = &mut self.config {
            change(config);
        }
        self
    }

    /// Another broker to fail over to; URLs are tried in order, from the first, after each
    /// failure.
    pub fn url(mut self, url: &str) -> Self {
        match BrokerUrl::parse(url) {
            Ok(url) => self.with(|c| c.urls.push(url)),
            Err(error) => {
                self.config = Err(error);
                self
            }
        }
    }

    /// The connection name shown by RabbitMQ (default `tidings`).
    pub fn connection_name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.with(|c| c.connection_name = name)
    }

    /// The heartbeat interval asked of the broker (default 10 s, whole seconds, at least 1):
    /// a connection silent for about two intervals is considered dead and replaced.
    pub fn heartbeat(self, interval: Duration) -> Self {
        self.with(|c| c.heartbeat = interval)
    }

    /// How long one connection attempt may take (default 10 s); also how long
    /// [`connect`](Self::connect) keeps trying.
    pub fn connect_timeout(self, timeout: Duration) -> Self {
        self.with(|c| c.connect_timeout = timeout)
    }

    /// Delays between reconnection rounds (default 100 ms doubling to 10 s, with jitter);
    /// also the pauses before sending nacked messages again (see the
    /// [module docs](super#publishing)).
    pub fn reconnect(self, backoff: Backoff) -> Self {
        self.with(|c| c.reconnect = backoff)
    }

    /// At most this many publishes awaiting the broker's confirm at once (default 256).
    pub fn confirm_window(self, window: usize) -> Self {
        self.with(|c| c.confirm_window = window.max(1))
    }

    /// How many confirm-mode channels each connection publishes on (default 4, at least 1):
    /// callers publishing at once each take a channel of their own, and wait only when all
    /// are in use. One batch holds its channel until its last confirm, so that confirms and
    /// returns are told apart (see the [module docs](super#publishing)).
    pub fn publishing_channels(self, channels: usize) -> Self {
        self.with(|c| c.publishing_channels = channels.max(1))
    }

    /// At most this many messages wait for a connection during an outage (default 10 000);
    /// beyond it, a publish fails at once with [`TransportError::Disconnected`].
    pub fn buffer(self, messages: usize) -> Self {
        self.with(|c| c.buffer = messages)
    }

    /// How long a publish, consume or declaration waits for a connection, and a publish for
    /// its confirm, before it fails (default 30 s). Unconfirmed publishes are sent again on
    /// the new connection, and nacked ones on a fresh channel, within this time.
    pub fn publish_timeout(self, timeout: Duration) -> Self {
        self.with(|c| c.publish_timeout = timeout)
    }

    /// Payloads larger than this are refused with [`TransportError::Rejected`] instead of
    /// being sent (default 128 MiB, RabbitMQ's default `max_message_size`): the broker would
    /// close the publishing channel over them.
    pub fn max_message_size(self, bytes: usize) -> Self {
        self.with(|c| c.max_message = bytes)
    }

    /// TLS settings for `amqps://` URLs.
    pub fn tls(self, tls: Tls) -> Self {
        self.with(|c| c.tls = tls)
    }

    /// The arguments of the queues [`Transport::declare`] creates for sources, from a
    /// template queue (its name is ignored): `Queue::durable("").quorum().delivery_limit(5)`.
    /// When the template sets a delivery limit, a TTL or a maximum length, what the broker
    /// drops for them goes to the source's dead-letter queue. The default is a plain durable
    /// classic queue, as amqplib's `assertQueue(q, { durable: true })` declares it.
    pub fn source_queues(self, template: &Queue) -> Self {
        let args = template.args().clone();
        self.with(|c| c.queue_args = args)
    }

    /// Connects, retrying with backoff for up to the connect timeout, and starts the
    /// supervisor that keeps the connection up.
    ///
    /// # Errors
    /// A URL that does not parse, or no broker reachable in time (the error says why, never
    /// with a password).
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub async fn connect(self) -> Result<AmqpTransport, Error> {
        let config = self.config?;
        let deadline = Instant::now() + config.connect_timeout;
        let shared = LinkState::new(config);
        link::first_connect(&shared, deadline).await?;
        tokio::spawn(link::supervise(Arc::clone(&shared)));
        Ok(AmqpTransport {
            handle: Arc::new(Handle { shared }),
        })
    }
}

/// A RabbitMQ connection, kept up by a supervisor, that implements [`Transport`]; see the
/// [module docs](super). Clones share the connection.
#[derive(Clone)]
pub struct AmqpTransport {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for AmqpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpTransport")
            .field("urls", &self.shared().config.urls)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// The queue that serves `source`'s group: the source's name for group `default` (so a queue
/// another service declared is consumed as is), `{name}.{group}` otherwise.
pub fn queue_name(source: &Endpoint) -> String {
    if source.group == "default" {
        source.name.clone()
    } else {
        format!("{}.{}", source.name, source.group)
    }
}

impl AmqpTransport {
    /// Starts configuring a transport for the broker at `url`, such as
    /// `amqp://guest:guest@127.0.0.1:5672/%2f` or `amqps://…`.
    pub fn builder(url: &str) -> AmqpBuilder {
        AmqpBuilder {
            config: BrokerUrl::parse(url).map(Config::new),
        }
    }

    pub(crate) fn shared(&self) -> &LinkState {
        &self.handle.shared
    }

    /// The connection handle: keeps the connection up while held.
    pub(crate) fn handle(&self) -> Arc<Handle> {
        Arc::clone(&self.handle)
    }

    /// Connection events from now on: connected, disconnected, blocked, unblocked.
    pub fn events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.shared().events()
    }

    /// Whether a connection is up now.
    pub fn is_connected(&self) -> bool {
        self.shared().current().is_some()
    }

    /// How many connections were made so far (1 + reconnections).
    pub fn connections(&self) -> u64 {
        self.shared().connects.load(Ordering::Relaxed)
    }

    /// Declares `topology` now (when connected) and again after every reconnect.
    ///
    /// Items are declared in order (exchanges, queues, bindings) and the first refusal stops
    /// the declaration: what the broker accepted before it exists there and is declared again
    /// after every reconnect; the refused item and those after it are not (declaring them
    /// again would fail every reconnect).
    ///
    /// # Errors
    /// When the broker refuses a declaration, such as a queue that exists with other
    /// arguments.
    pub async fn declare_topology(&self, topology: &Topology) -> Result<(), Error> {
        self.shared().declare(topology).await
    }

    /// Deletes the queue `name` and its messages (amqplib's `deleteQueue`); returns how many
    /// messages it held. Its consumers are cancelled.
    ///
    /// # Errors
    /// Without a connection, or when the broker refuses.
    pub async fn delete_queue(&self, name: &str) -> Result<u32, Error> {
        let queue = short(name)?;
        // Forgotten first, so a reconnect from here on does not declare it again.
        self.shared().forget_queue(name);
        self.shared()
            .on_own_channel(|channel| async move {
                let options = QueueDeleteOptions::default();
                channel
                    .queue_delete(queue, options)
                    .await
                    .map_err(refused(format!("deleting queue `{name}`")))
            })
            .await
    }

    /// Deletes the exchange `name` (amqplib's `deleteExchange`).
    ///
    /// # Errors
    /// Without a connection, or when the broker refuses.
    pub async fn delete_exchange(&self, name: &str) -> Result<(), Error> {
        let exchange = short(name)?;
        self.shared().forget_exchange(name);
        self.shared()
            .on_own_channel(|channel| async move {
                let options = ExchangeDeleteOptions::default();
                channel
                    .exchange_delete(exchange, options)
                    .await
                    .map_err(refused(format!("deleting exchange `{name}`")))
            })
            .await?;
        if let Some(live) = self.shared().current() {
            live.forget_exchange(name);
        }
        Ok(())
    }

    /// Waits for every publish awaiting a confirm (up to `deadline`), then closes the
    /// connection and stops reconnecting. A message still waiting for room in the confirm
    /// window is not sent: its publish fails with [`TransportError::Disconnected`] ("the
    /// transport is closed"), as does every later publish. Shut inbound and outbound bridges
    /// down first, so that they finish their work on the open connection. The report counts
    /// the publishes still awaiting a confirm at the deadline (their callers get an error).
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let shared = self.shared();
        let all = u32::try_from(shared.config.confirm_window.max(1)).unwrap_or(u32::MAX);
        let permits = tokio::time::timeout(deadline, shared.window.acquire_many(all)).await;
        let unconfirmed = match permits {
            Ok(Ok(_)) => 0,
            _ => (all as usize).saturating_sub(shared.window.available_permits()),
        };
        // The whole window stays taken until the connection is closed: a publish waiting for
        // room would otherwise send on it in between, and lose its confirm to the close.
        link::close(shared).await;
        drop(permits);
        ShutdownReport::new(unconfirmed)
    }

    fn raw(&self, out: &Outgoing) -> Result<Raw, TransportError> {
        let envelope = &out.envelope;
        let limit = self.shared().config.max_message;
        if envelope.payload.len() > limit {
            return Err(TransportError::Rejected(format!(
                "the payload is {} bytes; the limit is {limit}",
                envelope.payload.len()
            )));
        }
        let exchange = ShortString::try_new(out.destination.as_str()).map_err(|_| {
            TransportError::Rejected(format!(
                "the exchange name is {} bytes; AMQP allows 255",
                out.destination.len()
            ))
        })?;
        let routing_key = ShortString::try_new(wire::routing_key(&out.destination, envelope))
            .map_err(|_| {
                TransportError::Rejected("the routing key is longer than 255 bytes".to_owned())
            })?;
        Ok(Raw {
            exchange,
            routing_key,
            payload: envelope.payload.clone(),
            properties: wire::properties(envelope)?,
        })
    }

    /// The topology [`Transport::declare`] creates for `source`: a durable topic exchange
    /// named after the source, the group's queue bound to it for `#`, and the dead-letter
    /// queue.
    pub fn source_topology(&self, source: &Endpoint) -> Topology {
        let mut args: QueueArgs = self.shared().config.queue_args.clone();
        args.route_broker_dead_letters_to(&source.dead_letter);
        let queue = queue_name(source);
        Topology::new()
            .exchange(Exchange::topic(source.name.clone()))
            .queue(Queue::durable(source.dead_letter.clone()))
            .queue(Queue::with_args(queue.clone(), args))
            .bind(queue, source.name.clone(), "#")
    }
}

impl Transport for AmqpTransport {
    const SYSTEM: &'static str = "rabbitmq";
    type Consumer = AmqpConsumer;

    async fn publish(&self, batch: &[Outgoing]) -> Vec<Result<(), TransportError>> {
        let mut results: Vec<Result<(), TransportError>> = Vec::with_capacity(batch.len());
        let mut raws = Vec::with_capacity(batch.len());
        let mut slots = Vec::with_capacity(batch.len());
        for (i, out) in batch.iter().enumerate() {
            match self.raw(out) {
                Ok(raw) => {
                    raws.push(raw);
                    slots.push(i);
                    results.push(Ok(()));
                }
                Err(error) => results.push(Err(error)),
            }
        }
        for (slot, result) in slots
            .into_iter()
            .zip(publish::batch(self.shared(), &raws).await)
        {
            results[slot] = result;
        }
        results
    }

    async fn declare(&self, source: &Endpoint) -> Result<(), TransportError> {
        self.declare_topology(&self.source_topology(source))
            .await
            .map_err(Into::into)
    }

    /// Consumes the source's queue. A queue declared through this transport and found missing
    /// (deleted by another client while the connection stayed up) is declared again, as
    /// recorded, with its bindings, as a reconnect would: an inbound bridge whose queue was
    /// deleted under it resumes at once rather than at the next reconnect.
    async fn consume(&self, source: &Endpoint) -> Result<AmqpConsumer, TransportError> {
        match self.consume_queue(source).await {
            Err(Missing(error)) => {
                let queue = queue_name(source);
                match self.shared().declare_queue_again(&queue).await {
                    Some(Ok(())) => {
                        tracing::warn!(queue, "the queue was missing; declared it again");
                        self.consume_queue(source)
                            .await
                            .map_err(TransportError::from)
                    }
                    Some(Err(declared)) => Err(declared.into()),
                    None => Err(error),
                }
            }
            other => other.map_err(TransportError::from),
        }
    }
}

/// A consume's failure; [`Missing`](Consume::Missing) when the queue does not exist.
enum Consume {
    Missing(TransportError),
    Failed(TransportError),
}
use Consume::{Failed, Missing};

impl From<Consume> for TransportError {
    fn from(failure: Consume) -> Self {
        match failure {
            Missing(error) | Failed(error) => error,
        }
    }
}

impl From<TransportError> for Consume {
    fn from(error: TransportError) -> Self {
        Failed(error)
    }
}

impl AmqpTransport {
    async fn consume_queue(&self, source: &Endpoint) -> Result<AmqpConsumer, Consume> {
        let live = self.shared().connected().await?;
        let queue = queue_name(source);
        let name = short(&queue).map_err(TransportError::from)?;
        let channel = link::answered(live.connection.create_channel()).await?;
        let prefetch = u16::try_from(source.prefetch.max(1)).unwrap_or(u16::MAX);
        link::answered(channel.basic_qos(prefetch, BasicQosOptions::default())).await?;
        let tag = format!("tidings-{:016x}", fastrand::u64(..));
        let consume = channel.basic_consume(
            name,
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        );
        let consumer = link::asked(consume).await?.map_err(|e| {
            let error = format!("cannot consume queue `{queue}`: {e}");
            let error = TransportError::Other(error.into());
            if link::not_found(&e) {
                Missing(error)
            } else {
                Failed(error)
            }
        })?;
        Ok(AmqpConsumer::new(
            self.handle(),
            channel,
            consumer,
            queue,
            source,
            live.generation,
        ))
    }
}
