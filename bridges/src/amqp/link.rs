//! The connection supervisor: one live connection at a time, replaced after every failure.
//!
//! The supervisor task connects (trying each URL in turn, with backoff and jitter between
//! failed rounds), opens the confirm-mode publishing channel, declares the recorded topology,
//! and publishes the result as the current [`Live`] link. It then waits for the connection to
//! fail (lapin's error event, a missed heartbeat, or an operation that saw the connection
//! break) and starts over. Operations wait for a live link through [`LinkState::live`]; a publish
//! whose connection died before the broker confirmed it is sent again on the next one.
//!
//! lapin's own automatic recovery is left off on purpose: the supervisor owns reconnection,
//! so that topology, consumers and unconfirmed publishes are restored in a known order.

pub(crate) use crate::ConnectionEvent;
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::ExchangeDeclareOptions;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind, PublisherConfirm,
};

use parking_lot::Mutex;
use tidings::bridge::TransportError;
use tokio::sync::{broadcast, watch, Notify, Semaphore};
use tokio::time::Instant;

use super::config::{BrokerUrl, Config};
use super::error::{short, Error};
use super::login;
use super::topology::{QueueArgs, Topology};

/// One established connection and its publishing channel.
pub(crate) struct Live {
    pub(crate) generation: u64,
    pub(crate) url: String,
    pub(crate) connection: Connection,
    pub(crate) publisher: Publisher,
    /// Exchanges known to exist on this connection (publishing to a missing exchange would
    /// close the publishing channel).
    exchanges: Mutex<HashSet<String>>,
    /// An operation saw the connection fail (a stored permit: reported once is enough).
    broken: Notify,
    /// When it was opened.
    opened: Instant,
}

impl Live {
    /// Reports that an operation saw this connection fail; the supervisor replaces it.
    pub(crate) fn broke(&self) {
        self.broken.notify_one();
    }

    /// Forgets that `exchange` exists (it was deleted).
    pub(crate) fn forget_exchange(&self, exchange: &str) {
        self.exchanges.lock().remove(exchange);
    }

    /// The largest frame the broker accepts on this connection (negotiated at connect).
    pub(crate) fn frame_max(&self) -> usize {
        match self.connection.configuration().frame_max() {
            // 0 means "no limit" in AMQP; RabbitMQ never negotiates it, but be safe.
            0 => usize::MAX,
            n => n as usize,
        }
    }

    /// Whether `exchange` exists, asked at most once per connection. `Ok(false)` means the
    /// broker said it does not.
    pub(crate) async fn exchange_exists(&self, exchange: &str) -> Result<bool, TransportError> {
        if exchange.is_empty() || self.exchanges.lock().contains(exchange) {
            return Ok(true);
        }
        let Ok(name) = short(exchange) else {
            return Ok(false);
        };
        // A passive declare on a throwaway channel: a 404 closes that channel, not ours.
        let channel = answered(self.connection.create_channel()).await?;
        let options = ExchangeDeclareOptions {
            passive: true,
            ..ExchangeDeclareOptions::default()
        };
        let declare =
            channel.exchange_declare(name, ExchangeKind::Topic, options, FieldTable::default());
        match asked(declare).await? {
            Ok(()) => {
                close_channel(&channel).await;
                self.exchanges.lock().insert(exchange.to_owned());
                Ok(true)
            }
            // Refused (404): the broker closes that channel itself.
            Err(_) => Ok(false),
        }
    }
}

/// The frame limit assumed before the first connection negotiated one (RabbitMQ's default).
pub(crate) const DEFAULT_FRAME_MAX: usize = 131_072;

/// How long closing a channel or a connection may take: a dead peer never answers.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one exchange with the broker (opening a channel, a declaration, sending an ack)
/// may take; a connection that stops answering must not hang its callers forever.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker did not answer within [`ANSWER_TIMEOUT`].
fn silent() -> TransportError {
    TransportError::Disconnected(format!("no answer from RabbitMQ within {ANSWER_TIMEOUT:?}"))
}

/// `operation` within [`ANSWER_TIMEOUT`]: the broker's refusal (an AMQP soft error, such as
/// a missing queue or exchange) as `Ok(Err(_))`; a failure or silence as a disconnection.
pub(crate) async fn asked<T>(
    operation: impl Future<Output = Result<T, lapin::Error>>,
) -> Result<Result<T, lapin::Error>, TransportError> {
    match tokio::time::timeout(ANSWER_TIMEOUT, operation).await {
        Ok(Ok(value)) => Ok(Ok(value)),
        Ok(Err(error)) if error.is_amqp_soft_error() => Ok(Err(error)),
        Ok(Err(error)) => Err(TransportError::Disconnected(error.to_string())),
        Err(_) => Err(silent()),
    }
}

/// `operation` within [`ANSWER_TIMEOUT`]; any failure or silence is a disconnection.
pub(crate) async fn answered<T>(
    operation: impl Future<Output = Result<T, lapin::Error>>,
) -> Result<T, TransportError> {
    asked(operation)
        .await?
        .map_err(|error| TransportError::Disconnected(error.to_string()))
}

/// A channel in confirm mode, published on by one batch at a time.
///
/// Two things go wrong when tasks publish on one channel at once. lapin numbers a publish
/// for its confirm before it queues the publish's frames, with no lock held across the two,
/// so two publishes can reach the broker in the other order than their numbers and each get
/// the other's confirm. And a `basic.return` carries no delivery tag: RabbitMQ sends it before
/// the acknowledgement of its message, often one acknowledgement for many (`multiple`), and
/// lapin hands it to the first confirm it settles next, whoever's that is. The test that found
/// it saw 40 to 144 of 3,200 concurrent publishes get another message's outcome: routed
/// messages reported unroutable (and dropped as refused), unroutable ones confirmed, and in an
/// outage a message the broker never stored confirmed with another's acknowledgement (a
/// confirmed event lost in one broker-restart run in thirty).
///
/// So a batch publishes under a [`Turn`], held until its last confirm: the confirms and
/// returns that arrive meanwhile are the batch's own, and a return is matched to its message
/// by message id (see `publish::publish_on`). A connection's publisher holds a few such
/// channels ([`publishing_channels`](crate::amqp::AmqpBuilder::publishing_channels)), so that
/// callers publishing at once (several outbound bridges, dead-letter copies, replies) each
/// take a channel of their own instead of taking turns on one; a caller waits only when every
/// channel is in use. An outbound bridge publishes one batch at a time, so its batches keep
/// their order whichever channel each takes.
///
/// A channel can be replaced under its turn ([`Turn::renew`]): after negative confirms, a
/// fresh channel finds a quorum queue's current leader, where one that saw the old leader
/// kept being refused; the connection, and the consumers on it, stay.
pub(crate) struct Publisher {
    /// Each replaced only under its turn; read for its status at any time.
    channels: Vec<Mutex<Channel>>,
    /// The channels no turn holds, the last used on top (so a lone caller keeps one channel).
    free: Mutex<Vec<usize>>,
    /// One permit per free channel.
    turns: Semaphore,
}

/// The right to publish on one of a [`Publisher`]'s channels; see there. The channel is free
/// again when the turn is dropped.
pub(crate) struct Turn<'a> {
    publisher: &'a Publisher,
    index: usize,
    channel: Channel,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // Before the permit goes (fields drop after this), so a permit always finds a channel.
        self.publisher.free.lock().push(self.index);
    }
}

impl Publisher {
    /// A publisher over `channels` (at least one), each in confirm mode.
    pub(crate) fn new(channels: Vec<Channel>) -> Self {
        let n = channels.len();
        Publisher {
            channels: channels.into_iter().map(Mutex::new).collect(),
            free: Mutex::new((0..n).rev().collect()),
            turns: Semaphore::new(n),
        }
    }

    /// Whether every channel is open. A channel [`Turn::renew`] replaces is closed only after
    /// the new one took its place, so this never sees the old one closed.
    pub(crate) fn is_open(&self) -> bool {
        self.channels
            .iter()
            .all(|channel| channel.lock().status().connected())
    }

    /// Waits for a channel no other batch publishes on; hold the turn until every confirm of
    /// the batch is in.
    pub(crate) async fn turn(&self) -> Turn<'_> {
        let permit = self
            .turns
            .acquire()
            .await
            .expect("the publisher's semaphore is never closed");
        let index = self
            .free
            .lock()
            .pop()
            .expect("a permit is held for every free channel");
        Turn {
            publisher: self,
            index,
            channel: self.channels[index].lock().clone(),
            _permit: permit,
        }
    }
}

impl Turn<'_> {
    /// `basic.publish` on the channel; the confirm to wait for.
    pub(crate) async fn publish(
        &self,
        exchange: ShortString,
        routing_key: ShortString,
        options: BasicPublishOptions,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<PublisherConfirm, lapin::Error> {
        self.channel
            .basic_publish(exchange, routing_key, options, payload, properties)
            .await
    }

    /// Whether the channel is open (the broker closes it over a publish it refuses).
    pub(crate) fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// Renews the channel when the broker closed it (a publish it refused under an earlier
    /// turn); does nothing when it is open.
    ///
    /// # Errors
    /// When the broker does not open the new channel: the connection is failing.
    pub(crate) async fn reopen(&mut self, connection: &Connection) -> Result<(), TransportError> {
        if self.is_open() {
            return Ok(());
        }
        self.renew(connection).await
    }

    /// Replaces the channel with a fresh one in confirm mode on `connection`, then closes the
    /// old one. Call it once every confirm of the batch is in.
    ///
    /// # Errors
    /// When the broker does not open the new channel: the connection is failing.
    pub(crate) async fn renew(&mut self, connection: &Connection) -> Result<(), TransportError> {
        let fresh = open_publishing_channel(connection).await?;
        let old = std::mem::replace(
            &mut *self.publisher.channels[self.index].lock(),
            fresh.clone(),
        );
        self.channel = fresh;
        close_channel(&old).await;
        Ok(())
    }
}

/// A new channel on `connection`, in confirm mode.
async fn open_publishing_channel(connection: &Connection) -> Result<Channel, TransportError> {
    let channel = answered(connection.create_channel()).await?;
    answered(channel.confirm_select(ConfirmSelectOptions::default())).await?;
    Ok(channel)
}

/// Closes `channel`, waiting at most [`CLOSE_TIMEOUT`] for the broker's answer.
pub(crate) async fn close_channel(channel: &Channel) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, channel.close(200, "OK".into())).await;
}

async fn close_connection(connection: &Connection, code: u16, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(code, reason.into())).await;
}

/// Stops the supervisor when the last clone of a transport goes.
pub(crate) struct Handle {
    pub(crate) shared: Arc<LinkState>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

/// What every clone of a transport shares with the supervisor.
pub(crate) struct LinkState {
    pub(crate) config: Config,
    link: watch::Sender<Option<Arc<Live>>>,
    topology: Mutex<Topology>,
    events: broadcast::Sender<ConnectionEvent>,
    /// Messages waiting for a connection (bounded by `config.buffer`).
    waiting: AtomicUsize,
    /// Publishes sent and not yet confirmed, across connections.
    pub(crate) window: Semaphore,
    stopped: AtomicBool,
    stop: Notify,
    pub(crate) connects: AtomicU64,
}

impl LinkState {
    pub(crate) fn new(config: Config) -> Arc<Self> {
        let window = Semaphore::new(config.confirm_window.max(1));
        Arc::new(LinkState {
            config,
            link: watch::Sender::new(None),
            topology: Mutex::new(Topology::new()),
            events: broadcast::channel(64).0,
            waiting: AtomicUsize::new(0),
            window,
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
            connects: AtomicU64::new(0),
        })
    }

    pub(crate) fn events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }

    fn emit(&self, event: ConnectionEvent) {
        match &event {
            ConnectionEvent::Connected { url } => tracing::info!(url, "connected to RabbitMQ"),
            ConnectionEvent::Disconnected { url, reason } => {
                tracing::warn!(url, reason, "lost the RabbitMQ connection; reconnecting");
            }
            ConnectionEvent::Blocked { reason } => {
                tracing::warn!(reason, "RabbitMQ blocked publishing");
            }
            ConnectionEvent::Unblocked => tracing::info!("RabbitMQ unblocked publishing"),
        }
        let _ = self.events.send(event);
    }

    /// Follows the live link as it changes.
    pub(crate) fn link(&self) -> watch::Receiver<Option<Arc<Live>>> {
        self.link.subscribe()
    }

    /// The live link now, if any.
    pub(crate) fn current(&self) -> Option<Arc<Live>> {
        self.link.borrow().clone()
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The live link, waiting for one up to the publish timeout.
    pub(crate) async fn connected(&self) -> Result<Arc<Live>, TransportError> {
        let deadline = Instant::now() + self.config.publish_timeout;
        self.connected_by(deadline).await
    }

    /// The live link, waiting for one until `deadline`.
    pub(crate) async fn connected_by(
        &self,
        deadline: Instant,
    ) -> Result<Arc<Live>, TransportError> {
        self.live(deadline, 0, 0)
            .await
            .ok_or_else(|| TransportError::Disconnected("no connection to RabbitMQ".to_owned()))
    }

    /// Makes `live` the current link and says so.
    fn go_live(&self, live: Arc<Live>) {
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.emit(ConnectionEvent::Connected {
            url: live.url.clone(),
        });
        self.link.send_replace(Some(live));
    }

    /// Waits for a live link of at least `min_generation` until `deadline`, counting
    /// `messages` against the buffer bound meanwhile. `None` when the deadline passed, the buffer is full, or the transport was
    /// closed.
    pub(crate) async fn live(
        &self,
        deadline: Instant,
        messages: usize,
        min_generation: u64,
    ) -> Option<Arc<Live>> {
        if let Some(live) = self.current().filter(|l| l.generation >= min_generation) {
            return Some(live);
        }
        if self.is_stopped() {
            return None;
        }
        let before = self.waiting.fetch_add(messages, Ordering::AcqRel);
        let _release = Release(&self.waiting, messages);
        if before + messages > self.config.buffer {
            return None;
        }
        let mut rx = self.link.subscribe();
        let wait = rx.wait_for(|link| {
            link.as_ref()
                .is_some_and(|l| l.generation >= min_generation)
                || self.is_stopped()
        });
        let found = match tokio::time::timeout_at(deadline, wait).await {
            Ok(Ok(link)) => link.clone(),
            _ => None,
        };
        found
    }

    /// The arguments of queue `name` as declared through this transport, if it was.
    pub(crate) fn recorded_queue_args(&self, name: &str) -> Option<QueueArgs> {
        self.topology.lock().queue_args(name).cloned()
    }

    /// Stops re-declaring queue `name` (and its bindings) on reconnect.
    pub(crate) fn forget_queue(&self, name: &str) {
        let mut recorded = self.topology.lock();
        *recorded = std::mem::take(&mut *recorded).without_queue(name);
    }

    /// Stops re-declaring exchange `name` (and bindings to it) on reconnect.
    pub(crate) fn forget_exchange(&self, name: &str) {
        let mut recorded = self.topology.lock();
        *recorded = std::mem::take(&mut *recorded).without_exchange(name);
    }

    /// Records `topology` for every future connection and declares it on the live one, if
    /// any.
    pub(crate) async fn declare(&self, topology: &Topology) -> Result<(), Error> {
        // Recorded first, so that a connection made meanwhile declares it too.
        let added = {
            let mut recorded = self.topology.lock();
            let added = topology.minus(&recorded);
            *recorded = std::mem::take(&mut *recorded).merge(topology);
            added
        };
        let mut accepted = 0;
        let counted = &mut accepted;
        let declared = self
            .on_own_channel(|channel| async move { topology.declare(&channel, counted).await })
            .await;
        match declared {
            // Recorded: declared as soon as a connection comes.
            Err(Error::Transport(TransportError::Disconnected(_))) => Ok(()),
            Err(refused) => {
                // The refused item and those after it are not kept for the next connections
                // (declaring them again would fail every reconnect); what the broker accepted
                // before the refusal exists there and is declared again like the rest.
                let dropped = added.minus(&topology.first(accepted));
                let mut recorded = self.topology.lock();
                *recorded = recorded.minus(&dropped);
                Err(refused)
            }
            Ok(()) => Ok(()),
        }
    }

    /// Declares queue `name` again as recorded, with its bindings (and the exchanges they
    /// bind it to): for a consumer that found it missing. `None` when it is not recorded (it
    /// was never declared through this transport, or was deleted through it).
    pub(crate) async fn declare_queue_again(&self, name: &str) -> Option<Result<(), Error>> {
        let part = self.topology.lock().of_queue(name)?;
        Some(self.declare_again(part).await)
    }

    /// Declares exchange `name` again as recorded, with the bindings from it (and the queues
    /// they bind): for a publish the broker refused because it does not exist. `None` when it
    /// is not recorded.
    pub(crate) async fn declare_exchange_again(&self, name: &str) -> Option<Result<(), Error>> {
        let part = self.topology.lock().of_exchange(name)?;
        Some(self.declare_again(part).await)
    }

    /// Declares `part` of the recorded topology on the live connection, as a reconnect would.
    async fn declare_again(&self, part: Topology) -> Result<(), Error> {
        let mut accepted = 0;
        let counted = &mut accepted;
        self.on_own_channel(|channel| async move { part.declare(&channel, counted).await })
            .await
    }

    /// Runs `operation` on a channel of its own, so that a refusal closes only that channel.
    pub(crate) async fn on_own_channel<T, F, Fut>(&self, operation: F) -> Result<T, Error>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let live = self.connected().await?;
        let channel = answered(live.connection.create_channel()).await?;
        let result = tokio::time::timeout(ANSWER_TIMEOUT, operation(channel.clone()))
            .await
            .unwrap_or_else(|_| Err(silent().into()));
        close_channel(&channel).await;
        result
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.stop.notify_one();
    }
}

/// Gives back what a waiter counted against the buffer.
struct Release<'a>(&'a AtomicUsize, usize);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::AcqRel);
    }
}

/// Connects to `url`, opens the publishing channel and declares the topology.
async fn open(shared: &LinkState, url: &BrokerUrl, generation: u64) -> Result<Arc<Live>, String> {
    let config = &shared.config;
    let mut uri = url.uri.clone();
    let heartbeat = u16::try_from(config.heartbeat.as_secs().max(1)).unwrap_or(u16::MAX);
    uri.query.heartbeat = Some(heartbeat);
    let properties = ConnectionProperties::default()
        .with_connection_name(config.connection_name.clone().into_bytes().into());
    resolve(&uri).await?;
    let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
    // When lapin would log its login frame, it logs in through a relay that adds the
    // password (and does the TLS), so lapin itself connects in plain.
    let relayed = if login::lapin_logs_frames() {
        login::relay(&uri, &config.tls, config.connect_timeout)
            .await
            .map_err(|e| format!("cannot start the login relay: {e}"))?
    } else {
        None
    };
    let tls = match relayed {
        Some(relayed) => {
            uri = relayed;
            OwnedTLSConfig::default()
        }
        None => config.tls.to_lapin(),
    };
    let connection = Connection::connect_uri_with_config(uri, properties, tls, runtime)
        .await
        .map_err(|e| e.to_string())?;
    let mut publishing = Vec::with_capacity(config.publishing_channels);
    for _ in 0..config.publishing_channels {
        publishing.push(
            open_publishing_channel(&connection)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let topology = shared.topology.lock().clone();
    topology.redeclare(&connection).await?;
    Ok(Arc::new(Live {
        generation,
        url: url.to_string(),
        connection,
        publisher: Publisher::new(publishing),
        exchanges: Mutex::new(HashSet::new()),
        broken: Notify::new(),
        opened: Instant::now(),
    }))
}

/// Resolves the broker's host name before connecting, so that a name that does not resolve
/// is reported as such (lapin reports it as a connection reset by the peer).
async fn resolve(uri: &AMQPUri) -> Result<(), String> {
    let host = uri
        .authority
        .host
        .trim_start_matches('[')
        .trim_end_matches(']');
    match tokio::net::lookup_host((host, uri.authority.port))
        .await
        .map(|mut addresses| addresses.next().is_some())
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("the host name `{host}` resolves to no address")),
        Err(error) => Err(format!("the host name `{host}` did not resolve: {error}")),
    }
}

/// Whether `error` is the broker's soft (channel-level) error, which closes one channel and
/// leaves the connection up.
pub(crate) fn channel_level(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(e) if matches!(e.kind(), lapin::protocol::AMQPErrorKind::Soft(_))
    )
}

/// Whether `error` is the broker's `NOT_FOUND` (a queue or exchange that does not exist).
pub(crate) fn not_found(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(e) if matches!(e.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
    )
}

/// Waits until `live` fails, passing on blocked/unblocked notices; returns why it failed.
async fn watch_until_broken(shared: &LinkState, live: &Live) -> String {
    let mut events = live.connection.events_listener();
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            event = events.next() => match event {
                // lapin reports a channel the broker closed (a refused declaration on a
                // channel of its own, a refused publish) as an error of the connection: the
                // connection is fine then. A publishing channel closed that way is renewed by
                // the batch it closed under, or by the next to take its turn (`Turn::reopen`).
                Some(lapin::Event::Error(error))
                    if channel_level(&error) && live.connection.status().connected() =>
                {
                    tracing::debug!(%error, "the broker closed a channel");
                }
                Some(lapin::Event::Error(error)) => return error.to_string(),
                Some(lapin::Event::ConnectionBlocked(reason)) => {
                    shared.emit(ConnectionEvent::Blocked { reason });
                }
                Some(lapin::Event::ConnectionUnblocked) => shared.emit(ConnectionEvent::Unblocked),
                Some(_) => {}
                None => return "the connection closed".to_owned(),
            },
            () = live.broken.notified() => return "an operation saw the connection fail".to_owned(),
            _ = poll.tick() => {
                if !live.connection.status().connected() {
                    return "the connection closed".to_owned();
                }
            }
        }
    }
}

/// Tries every URL once; the last error when none worked.
async fn connect_round(shared: &LinkState, generation: u64) -> Result<Arc<Live>, String> {
    let mut last = String::new();
    for url in &shared.config.urls {
        match tokio::time::timeout(shared.config.connect_timeout, open(shared, url, generation))
            .await
        {
            Ok(Ok(live)) => return Ok(live),
            Ok(Err(error)) => last = format!("{url}: {error}"),
            Err(_) => {
                last = format!(
                    "{url}: no connection within {:?}",
                    shared.config.connect_timeout
                );
            }
        }
        tracing::warn!(error = last, "cannot connect to RabbitMQ");
    }
    Err(last)
}

/// Connects for the first time, retrying until `deadline`.
pub(crate) async fn first_connect(shared: &Arc<LinkState>, deadline: Instant) -> Result<(), Error> {
    let mut failures = 0;
    loop {
        match connect_round(shared, 1).await {
            Ok(live) => {
                shared.go_live(live);
                return Ok(());
            }
            Err(last_error) => {
                failures += 1;
                let delay = shared.config.reconnect.jittered(failures);
                if Instant::now() + delay >= deadline {
                    let urls: Vec<String> =
                        shared.config.urls.iter().map(ToString::to_string).collect();
                    return Err(Error::Connect {
                        urls: urls.join(", "),
                        timeout: shared.config.connect_timeout,
                        last_error,
                    });
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// How long a connection must stay up to count as having worked. One that fails sooner (the
/// broker closing it over something it was sent, say) counts as a failed connect, so the
/// next attempt waits out the backoff instead of reconnecting in a tight loop.
const STABLE_AFTER: Duration = Duration::from_secs(5);

/// The failure count after a connection that was up for `lived` broke.
fn failures_after_break(failures: u32, lived: Duration) -> u32 {
    if lived < STABLE_AFTER {
        failures.saturating_add(1)
    } else {
        0
    }
}

/// The supervisor: keeps a connection up until the transport is closed.
pub(crate) async fn supervise(shared: Arc<LinkState>) {
    let mut generation = 1;
    // Failed connects in a row, counting connections that broke right after they opened.
    let mut failures = 0;
    loop {
        if let Some(live) = shared.current() {
            let reason = tokio::select! {
                reason = watch_until_broken(&shared, &live) => reason,
                () = shared.stop.notified() => {
                    // Closed or dropped: close the connection if `close` did not.
                    if shared.link.send_replace(None).is_some() {
                        close_connection(&live.connection, 200, "OK").await;
                    }
                    return;
                }
            };
            shared.link.send_replace(None);
            if shared.is_stopped() {
                return;
            }
            shared.emit(ConnectionEvent::Disconnected {
                url: live.url.clone(),
                reason,
            });
            close_connection(&live.connection, 320, "reconnecting").await;
            failures = failures_after_break(failures, live.opened.elapsed());
            if failures > 0 {
                let delay = shared.config.reconnect.jittered(failures);
                tracing::warn!(
                    ?delay,
                    "the connection broke soon after it opened; backing off"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shared.stop.notified() => return,
                }
            }
        }
        loop {
            if shared.is_stopped() {
                return;
            }
            generation += 1;
            match connect_round(&shared, generation).await {
                Ok(live) if shared.is_stopped() => {
                    close_connection(&live.connection, 200, "OK").await;
                    return;
                }
                Ok(live) => {
                    shared.go_live(live);
                    break;
                }
                Err(_) => {
                    failures += 1;
                    let delay = shared.config.reconnect.jittered(failures);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shared.stop.notified() => return,
                    }
                }
            }
        }
    }
}

/// Closes the live connection, if any, and wakes everything waiting for one.
pub(crate) async fn close(shared: &LinkState) {
    shared.stop();
    if let Some(live) = shared.link.send_replace(None) {
        close_connection(&live.connection, 200, "OK").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_that_breaks_right_after_opening_counts_as_a_failure() {
        assert_eq!(failures_after_break(0, Duration::from_millis(20)), 1);
        assert_eq!(failures_after_break(3, Duration::from_secs(1)), 4);
        assert_eq!(
            failures_after_break(3, STABLE_AFTER),
            0,
            "it worked for a while"
        );
        assert_eq!(failures_after_break(u32::MAX, Duration::ZERO), u32::MAX);
    }
}
