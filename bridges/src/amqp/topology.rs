//! Exchanges, queues and bindings declared in code, and declared again after every reconnect.
//!
//! ```
//! use std::time::Duration;
//! use tidings_bridges::amqp::{Exchange, Queue, Topology};
//!
//! let topology = Topology::new()
//!     .exchange(Exchange::topic("events"))
//!     // `billing`, bound to `events` for `invoice.*`, whose rejected and expired messages go
//!     // to `billing.dlx` and from there to the queue `billing.dead-letter`.
//!     .dead_lettered_queue(
//!         Queue::durable("billing").quorum().delivery_limit(5).message_ttl(Duration::from_secs(3600)),
//!         "events",
//!         "invoice.*",
//!     );
//! assert_eq!(topology.queues().count(), 2);
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};

use super::error::{refused, short, Error};
use super::link::close_channel;

/// An exchange to declare.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    name: String,
    kind: ExchangeKind,
    durable: bool,
}

impl Exchange {
    fn new(name: impl Into<String>, kind: ExchangeKind) -> Self {
        Exchange {
            name: name.into(),
            kind,
            durable: true,
        }
    }

    /// A durable topic exchange (routing keys matched against `a.*.c` / `a.#` patterns).
    pub fn topic(name: impl Into<String>) -> Self {
        Exchange::new(name, ExchangeKind::Topic)
    }

    /// A durable fanout exchange (every bound queue gets every message).
    pub fn fanout(name: impl Into<String>) -> Self {
        Exchange::new(name, ExchangeKind::Fanout)
    }

    /// A durable direct exchange (routing key equals binding key).
    pub fn direct(name: impl Into<String>) -> Self {
        Exchange::new(name, ExchangeKind::Direct)
    }

    /// A durable headers exchange (bindings match on headers).
    pub fn headers(name: impl Into<String>) -> Self {
        Exchange::new(name, ExchangeKind::Headers)
    }

    /// Not durable: gone when the broker restarts.
    #[must_use]
    pub fn transient(mut self) -> Self {
        self.durable = false;
        self
    }

    /// The exchange's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// Queue arguments: type, limits and dead-lettering.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct QueueArgs {
    quorum: bool,
    delivery_limit: Option<u32>,
    message_ttl: Option<Duration>,
    max_length: Option<u64>,
    overflow: Option<QueueOverflow>,
    dead_letter: Option<(String, Option<String>)>,
}

/// What a queue at its [`max_length`](Queue::max_length) does with the next message
/// (`x-overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueOverflow {
    /// Drops (or dead-letters) the oldest message to make room: RabbitMQ's default
    /// (`drop-head`).
    DropHead,
    /// Refuses the new message with a negative confirm (`reject-publish`): the transport
    /// sends it again until its publish timeout, then fails it with
    /// [`TransportError::NotStored`](tidings::bridge::TransportError::NotStored), which an
    /// outbound bridge retries.
    RejectPublish,
    /// As [`RejectPublish`](Self::RejectPublish), and dead-letters the refused message
    /// (`reject-publish-dlx`).
    RejectPublishDlx,
}

impl QueueOverflow {
    /// The `x-overflow` value.
    fn as_str(self) -> &'static str {
        match self {
            QueueOverflow::DropHead => "drop-head",
            QueueOverflow::RejectPublish => "reject-publish",
            QueueOverflow::RejectPublishDlx => "reject-publish-dlx",
        }
    }
}

impl QueueArgs {
    /// Sends what the broker drops for a limit (delivery limit, TTL, length) to `queue`
    /// through the default exchange, unless a dead-letter exchange is set already.
    pub(crate) fn route_broker_dead_letters_to(&mut self, queue: &str) {
        let limited = self.delivery_limit.is_some()
            || self.message_ttl.is_some()
            || self.max_length.is_some();
        if limited && self.dead_letter.is_none() {
            self.dead_letter = Some((String::new(), Some(queue.to_owned())));
        }
    }

    /// A quorum queue: the broker counts deliveries in `x-delivery-count`.
    pub(crate) fn is_quorum(&self) -> bool {
        self.quorum
    }

    /// Rejected messages go to a dead-letter exchange of the queue's own.
    pub(crate) fn has_dead_letter_exchange(&self) -> bool {
        self.dead_letter.is_some()
    }

    fn to_table(&self) -> FieldTable {
        let mut table = FieldTable::default();
        if self.quorum {
            table.insert("x-queue-type".into(), long("quorum"));
        }
        if let Some(limit) = self.delivery_limit {
            table.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(limit.into()),
            );
        }
        if let Some(ttl) = self.message_ttl {
            let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            table.insert("x-message-ttl".into(), AMQPValue::LongLongInt(millis));
        }
        if let Some(max) = self.max_length {
            let max = i64::try_from(max).unwrap_or(i64::MAX);
            table.insert("x-max-length".into(), AMQPValue::LongLongInt(max));
        }
        if let Some(overflow) = self.overflow {
            table.insert("x-overflow".into(), long(overflow.as_str()));
        }
        if let Some((exchange, routing_key)) = &self.dead_letter {
            table.insert("x-dead-letter-exchange".into(), long(exchange));
            if let Some(key) = routing_key {
                table.insert("x-dead-letter-routing-key".into(), long(key));
            }
        }
        table
    }
}

/// A queue to declare: durable unless made otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Queue {
    name: String,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    args: QueueArgs,
}

impl Queue {
    /// A durable classic queue, as amqplib's `assertQueue(name, { durable: true })`.
    pub fn durable(name: impl Into<String>) -> Self {
        Queue {
            name: name.into(),
            durable: true,
            exclusive: false,
            auto_delete: false,
            args: QueueArgs::default(),
        }
    }

    /// A queue with these arguments.
    pub(crate) fn with_args(name: impl Into<String>, args: QueueArgs) -> Self {
        Queue {
            args,
            ..Queue::durable(name)
        }
    }

    /// A quorum queue (replicated; counts deliveries in `x-delivery-count`).
    #[must_use]
    pub fn quorum(mut self) -> Self {
        self.args.quorum = true;
        self
    }

    /// Quorum queues only: after this many deliveries a message is dead-lettered (or dropped
    /// when the queue has no dead-letter exchange) by the broker.
    #[must_use]
    pub fn delivery_limit(mut self, limit: u32) -> Self {
        self.args.delivery_limit = Some(limit);
        self
    }

    /// Messages older than this expire (and are dead-lettered, with a dead-letter exchange).
    #[must_use]
    pub fn message_ttl(mut self, ttl: Duration) -> Self {
        self.args.message_ttl = Some(ttl);
        self
    }

    /// At most this many messages; the oldest are dropped (or dead-lettered) beyond it,
    /// unless [`overflow`](Self::overflow) says otherwise.
    #[must_use]
    pub fn max_length(mut self, max: u64) -> Self {
        self.args.max_length = Some(max);
        self
    }

    /// What the queue does at its [`max_length`](Self::max_length): with
    /// [`QueueOverflow::RejectPublish`], publishes are refused instead of the oldest message
    /// being dropped (amqplib's `arguments: { 'x-overflow': 'reject-publish' }`).
    #[must_use]
    pub fn overflow(mut self, overflow: QueueOverflow) -> Self {
        self.args.overflow = Some(overflow);
        self
    }

    /// Where the broker moves rejected, expired and over-limit messages: `exchange`, with
    /// `routing_key` (or the message's own when `None`).
    #[must_use]
    pub fn dead_letter_exchange(
        mut self,
        exchange: impl Into<String>,
        routing_key: Option<String>,
    ) -> Self {
        self.args.dead_letter = Some((exchange.into(), routing_key));
        self
    }

    /// Only for this connection, deleted when it closes.
    #[must_use]
    pub fn exclusive(mut self) -> Self {
        self.exclusive = true;
        self.durable = false;
        self
    }

    /// Deleted when its last consumer goes.
    #[must_use]
    pub fn auto_delete(mut self) -> Self {
        self.auto_delete = true;
        self
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its arguments, as a template for other queues.
    pub(crate) fn args(&self) -> &QueueArgs {
        &self.args
    }
}

/// A queue bound to an exchange for a routing-key pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The queue.
    pub queue: String,
    /// The exchange.
    pub exchange: String,
    /// The routing key or pattern (`#` for everything on a topic exchange).
    pub pattern: String,
    /// For a headers exchange: the headers to match, and `x-match` (`all` or `any`).
    pub headers: BTreeMap<String, String>,
}

/// Exchanges, queues and bindings, declared in this order.
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct Topology {
    exchanges: Vec<Exchange>,
    queues: Vec<Queue>,
    bindings: Vec<Binding>,
}

impl Topology {
    /// Nothing yet.
    pub fn new() -> Self {
        Topology::default()
    }

    /// Adds an exchange.
    pub fn exchange(mut self, exchange: Exchange) -> Self {
        if !self.exchanges.contains(&exchange) {
            self.exchanges.push(exchange);
        }
        self
    }

    /// Adds a queue.
    pub fn queue(mut self, queue: Queue) -> Self {
        if !self.queues.contains(&queue) {
            self.queues.push(queue);
        }
        self
    }

    /// Binds `queue` to `exchange` for `pattern`.
    pub fn bind(
        self,
        queue: impl Into<String>,
        exchange: impl Into<String>,
        pattern: impl Into<String>,
    ) -> Self {
        self.binding(Binding {
            queue: queue.into(),
            exchange: exchange.into(),
            pattern: pattern.into(),
            headers: BTreeMap::new(),
        })
    }

    /// Binds `queue` to the headers exchange `exchange` for messages whose headers match
    /// `headers`: every one of them when `all`, at least one otherwise.
    pub fn bind_headers<K: Into<String>, V: Into<String>>(
        self,
        queue: impl Into<String>,
        exchange: impl Into<String>,
        headers: impl IntoIterator<Item = (K, V)>,
        all: bool,
    ) -> Self {
        let mut headers: BTreeMap<String, String> = headers
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        headers.insert(
            "x-match".to_owned(),
            if all { "all" } else { "any" }.to_owned(),
        );
        self.binding(Binding {
            queue: queue.into(),
            exchange: exchange.into(),
            pattern: String::new(),
            headers,
        })
    }

    fn binding(mut self, binding: Binding) -> Self {
        if !self.bindings.contains(&binding) {
            self.bindings.push(binding);
        }
        self
    }

    /// `queue` bound to `exchange` for `pattern`, with its dead letters going to a fanout
    /// exchange `{queue}.dlx` and from there to a durable queue `{queue}.dead-letter`. (The
    /// exchanges `exchange` must be declared too.)
    pub fn dead_lettered_queue(
        self,
        queue: Queue,
        exchange: impl Into<String>,
        pattern: impl Into<String>,
    ) -> Self {
        let name = queue.name.clone();
        let dlx = format!("{name}.dlx");
        let dlq = format!("{name}.dead-letter");
        self.exchange(Exchange::fanout(dlx.clone()))
            .queue(Queue::durable(dlq.clone()))
            .bind(dlq, dlx.clone(), "")
            .queue(queue.dead_letter_exchange(dlx, None))
            .bind(name, exchange, pattern)
    }

    /// The arguments of queue `name`, if this topology declares it.
    pub(crate) fn queue_args(&self, name: &str) -> Option<&QueueArgs> {
        self.queues.iter().find(|q| q.name == name).map(Queue::args)
    }

    /// Queue `name` as recorded here, with its bindings and the exchanges they bind it to;
    /// `None` when the queue is not recorded.
    pub(crate) fn of_queue(&self, name: &str) -> Option<Topology> {
        let queue = self.queues.iter().find(|q| q.name == name)?;
        Some(self.around(|b| b.queue == name).queue(queue.clone()))
    }

    /// Exchange `name` as recorded here, with the bindings from it and the queues they bind;
    /// `None` when the exchange is not recorded.
    pub(crate) fn of_exchange(&self, name: &str) -> Option<Topology> {
        let exchange = self.exchanges.iter().find(|e| e.name == name)?;
        Some(
            self.around(|b| b.exchange == name)
                .exchange(exchange.clone()),
        )
    }

    /// The recorded bindings `keep` selects, with the recorded exchanges and queues they bind.
    fn around(&self, keep: impl Fn(&Binding) -> bool) -> Topology {
        let bindings: Vec<Binding> = self.bindings.iter().filter(|b| keep(b)).cloned().collect();
        let exchanges = (self.exchanges.iter())
            .filter(|e| bindings.iter().any(|b| b.exchange == e.name))
            .cloned()
            .collect();
        let queues = (self.queues.iter())
            .filter(|q| bindings.iter().any(|b| b.queue == q.name))
            .cloned()
            .collect();
        Topology {
            exchanges,
            queues,
            bindings,
        }
    }

    /// This topology without queue `name` and its bindings (after the queue was deleted).
    pub(crate) fn without_queue(mut self, name: &str) -> Self {
        self.queues.retain(|q| q.name != name);
        self.bindings.retain(|b| b.queue != name);
        self
    }

    /// This topology without exchange `name` and the bindings to it.
    pub(crate) fn without_exchange(mut self, name: &str) -> Self {
        self.exchanges.retain(|e| e.name != name);
        self.bindings.retain(|b| b.exchange != name);
        self
    }

    /// What of this topology `other` does not hold (the same item, arguments and all).
    pub(crate) fn minus(&self, other: &Topology) -> Topology {
        Topology {
            exchanges: (self.exchanges.iter())
                .filter(|e| !other.exchanges.contains(e))
                .cloned()
                .collect(),
            queues: (self.queues.iter())
                .filter(|q| !other.queues.contains(q))
                .cloned()
                .collect(),
            bindings: (self.bindings.iter())
                .filter(|b| !other.bindings.contains(b))
                .cloned()
                .collect(),
        }
    }

    /// Everything of `other` not here yet.
    pub fn merge(mut self, other: &Topology) -> Self {
        for exchange in &other.exchanges {
            self = self.exchange(exchange.clone());
        }
        for queue in &other.queues {
            self = self.queue(queue.clone());
        }
        for binding in &other.bindings {
            self = self.binding(binding.clone());
        }
        self
    }

    /// The exchanges.
    pub fn exchanges(&self) -> impl Iterator<Item = &Exchange> {
        self.exchanges.iter()
    }

    /// The queues.
    pub fn queues(&self) -> impl Iterator<Item = &Queue> {
        self.queues.iter()
    }

    /// The bindings.
    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.bindings.iter()
    }

    /// Declares everything on `channel`, stopping at the first refusal, and counts in
    /// `accepted` the items the broker accepted (the first ones in [`items`](Self::items)'
    /// order). A refusal closes the channel, so use one for this alone.
    pub(crate) async fn declare(
        &self,
        channel: &Channel,
        accepted: &mut usize,
    ) -> Result<(), Error> {
        for item in self.items() {
            item.declare(channel).await?;
            *accepted += 1;
        }
        Ok(())
    }

    /// The first `n` items in the order they are declared.
    pub(crate) fn first(&self, n: usize) -> Topology {
        let exchanges = n.min(self.exchanges.len());
        let queues = (n - exchanges).min(self.queues.len());
        let bindings = (n - exchanges - queues).min(self.bindings.len());
        Topology {
            exchanges: self.exchanges[..exchanges].to_vec(),
            queues: self.queues[..queues].to_vec(),
            bindings: self.bindings[..bindings].to_vec(),
        }
    }

    /// Every item, in the order they are declared: exchanges, queues, then bindings.
    fn items(&self) -> impl Iterator<Item = Item<'_>> {
        (self.exchanges.iter().map(Item::Exchange))
            .chain(self.queues.iter().map(Item::Queue))
            .chain(self.bindings.iter().map(Item::Binding))
    }

    /// Declares everything on a new connection, going on past a refusal (on a fresh channel:
    /// the refusal closed the last), which is logged. This topology was accepted once, so a
    /// refusal now means another client re-created an item with other arguments while the
    /// connection was down; it must not keep the transport from connecting at all.
    ///
    /// # Errors
    /// When no channel opens: the connection is failing.
    pub(crate) async fn redeclare(&self, connection: &Connection) -> Result<(), String> {
        let open = || async { connection.create_channel().await.map_err(|e| e.to_string()) };
        let mut channel = open().await?;
        for item in self.items() {
            if let Err(error) = item.declare(&channel).await {
                tracing::error!(%error, "a declaration accepted before was refused on reconnecting; going on without it");
                close_channel(&channel).await;
                channel = open().await?;
            }
        }
        close_channel(&channel).await;
        Ok(())
    }
}

/// One item of a [`Topology`].
enum Item<'a> {
    Exchange(&'a Exchange),
    Queue(&'a Queue),
    Binding(&'a Binding),
}

impl Item<'_> {
    async fn declare(self, channel: &Channel) -> Result<(), Error> {
        match self {
            Item::Exchange(exchange) => declare_exchange(channel, exchange).await,
            Item::Queue(queue) => declare_queue(channel, queue).await,
            Item::Binding(binding) => declare_binding(channel, binding).await,
        }
    }
}

async fn declare_exchange(channel: &Channel, exchange: &Exchange) -> Result<(), Error> {
    let options = ExchangeDeclareOptions {
        durable: exchange.durable,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            short(&exchange.name)?,
            exchange.kind.clone(),
            options,
            FieldTable::default(),
        )
        .await
        .map_err(refused(format!("declaring exchange `{}`", exchange.name)))
}

async fn declare_queue(channel: &Channel, queue: &Queue) -> Result<(), Error> {
    let options = QueueDeclareOptions {
        durable: queue.durable,
        exclusive: queue.exclusive,
        auto_delete: queue.auto_delete,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(short(&queue.name)?, options, queue.args.to_table())
        .await
        .map(drop)
        .map_err(refused(format!("declaring queue `{}`", queue.name)))
}

async fn declare_binding(channel: &Channel, b: &Binding) -> Result<(), Error> {
    let mut arguments = FieldTable::default();
    for (name, value) in &b.headers {
        arguments.insert(short(name)?, long(value));
    }
    channel
        .queue_bind(
            short(&b.queue)?,
            short(&b.exchange)?,
            short(&b.pattern)?,
            QueueBindOptions::default(),
            arguments,
        )
        .await
        .map_err(refused(format!(
            "binding `{}` to `{}` for `{}`",
            b.queue, b.exchange, b.pattern
        )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_arguments_are_what_rabbitmq_expects() {
        let queue = Queue::durable("q")
            .quorum()
            .delivery_limit(3)
            .message_ttl(Duration::from_secs(2))
            .max_length(10)
            .overflow(QueueOverflow::RejectPublishDlx)
            .dead_letter_exchange("dlx", Some("dead".into()));
        let table = queue.args.to_table();
        let get = |k: &str| table.inner().get(k).cloned();
        assert_eq!(
            get("x-queue-type"),
            Some(AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(get("x-delivery-limit"), Some(AMQPValue::LongLongInt(3)));
        assert_eq!(get("x-message-ttl"), Some(AMQPValue::LongLongInt(2000)));
        assert_eq!(get("x-max-length"), Some(AMQPValue::LongLongInt(10)));
        assert_eq!(
            get("x-overflow"),
            Some(AMQPValue::LongString("reject-publish-dlx".into()))
        );
        for (overflow, value) in [
            (QueueOverflow::DropHead, "drop-head"),
            (QueueOverflow::RejectPublish, "reject-publish"),
        ] {
            let table = Queue::durable("q").overflow(overflow).args.to_table();
            assert_eq!(
                table.inner().get("x-overflow"),
                Some(&AMQPValue::LongString(value.into()))
            );
        }
        assert_eq!(
            get("x-dead-letter-exchange"),
            Some(AMQPValue::LongString("dlx".into()))
        );
        assert_eq!(
            get("x-dead-letter-routing-key"),
            Some(AMQPValue::LongString("dead".into()))
        );
        assert!(Queue::durable("plain").args.to_table().inner().is_empty());
    }

    #[test]
    fn the_dead_letter_helper_declares_exchange_queue_and_bindings() {
        let t = Topology::new()
            .exchange(Exchange::topic("events"))
            .dead_lettered_queue(Queue::durable("work"), "events", "job.*");
        let exchanges: Vec<&str> = t.exchanges().map(Exchange::name).collect();
        assert_eq!(exchanges, ["events", "work.dlx"]);
        let queues: Vec<&str> = t.queues().map(Queue::name).collect();
        assert_eq!(queues, ["work.dead-letter", "work"]);
        let work = t.queues().find(|q| q.name() == "work").expect("work");
        assert_eq!(work.args().dead_letter, Some(("work.dlx".into(), None)));
        let bindings: Vec<(&str, &str, &str)> = t
            .bindings()
            .map(|b| (b.queue.as_str(), b.exchange.as_str(), b.pattern.as_str()))
            .collect();
        assert_eq!(
            bindings,
            [
                ("work.dead-letter", "work.dlx", ""),
                ("work", "events", "job.*")
            ]
        );
        // Merging is idempotent.
        assert_eq!(t.clone().merge(&t), t);
    }
}
