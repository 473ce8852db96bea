//! [`KafkaTransport`]: the bridge core's [`Transport`] on Kafka.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use tidings::bridge::{Endpoint, Outgoing, Transport, TransportError};
use tokio::sync::broadcast;

use super::config::{Compression, Config, Sasl, StartFrom};
use super::consumer::KafkaConsumer;
use super::context::ClientCtx;
use super::error::{classify, Error};
use super::producer::{produce, Producer};
use super::topology::Topic;
use crate::ConnectionEvent;

/// Configures a [`KafkaTransport`]; from [`KafkaTransport::builder`].
#[must_use]
#[derive(Debug)]
pub struct KafkaBuilder {
    config: Config,
}

impl KafkaBuilder {
    /// The `client.id` brokers see (default `tidings`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.config.client_id = id.into();
        self
    }

    /// SASL authentication; the password never appears in logs or errors.
    pub fn sasl(mut self, sasl: Sasl) -> Self {
        self.config.sasl = Some(sasl);
        self
    }

    /// The idempotent producer (default on): the broker drops the duplicates of retried
    /// requests, and librdkafka keeps order per partition across retries. Off, the transport
    /// keeps one request in flight per connection instead, so retries cannot reorder. When on
    /// and the cluster refuses it (librdkafka's fatal `UnsupportedFeature` or
    /// `ClusterAuthorizationFailed` for `InitProducerId`), the transport falls back to that
    /// by itself, logs a warning, and reports the failed publishes as retryable.
    pub fn idempotence(mut self, on: bool) -> Self {
        self.config.idempotence = on;
        self
    }

    /// Compression of produced batches (default none).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.config.compression = compression;
        self
    }

    /// How long the broker may hold a consumer's fetch while it has less than the minimum to
    /// send (`fetch.wait.max.ms`, default 500 ms; at most 300 s). Shorter means less latency
    /// for a trickle of messages and more fetch requests.
    pub fn fetch_wait(mut self, wait: Duration) -> Self {
        self.config.fetch_wait = wait;
        self
    }

    /// How long the producer waits to fill a batch (`linger.ms`, default 5 ms).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.config.linger = linger;
        self
    }

    /// At most this many messages per produced batch (default 10 000).
    pub fn batch_messages(mut self, messages: usize) -> Self {
        self.config.batch_messages = messages;
        self
    }

    /// How long a publish may take, retries included, before it fails with
    /// [`TransportError::Disconnected`] (default 30 s; librdkafka's `message.timeout.ms`).
    /// Every other wait of the transport (metadata, topic creation) is bounded by it too.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.config.publish_timeout = timeout;
        self
    }

    /// Payloads larger than this are refused with [`TransportError::Rejected`] before they
    /// are sent (default 1 000 000 bytes, Kafka's default `message.max.bytes`).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message = bytes;
        self
    }

    /// The consumer-group session timeout (default 10 s): a consumer silent this long is
    /// presumed dead and its partitions go to the rest of the group.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.config.session_timeout = timeout;
        self
    }

    /// How often consumers commit the offsets of handled messages (default 1 s). They also
    /// commit when closed and when a rebalance takes partitions away.
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.config.commit_interval = interval;
        self
    }

    /// Where a consumer group with no committed offset starts (default
    /// [`StartFrom::Earliest`]).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.config.start = start;
        self
    }

    /// Whether consumers skip messages of aborted transactions (`read_committed`, the
    /// default) or read everything.
    pub fn read_committed(mut self, on: bool) -> Self {
        self.config.read_committed = on;
        self
    }

    /// The partitions, replication and configs of the topics [`Transport::declare`] creates
    /// (from a template; its name is ignored). Default: 3 partitions, replication 1.
    pub fn source_topics(mut self, template: &Topic) -> Self {
        self.config.topics = template.clone();
        self
    }

    /// Sets a librdkafka property as given, after the transport's own (for what this builder
    /// does not name; see librdkafka's `CONFIGURATION.md`). It applies to the producer, the
    /// consumers and the admin client alike; librdkafka logs a warning for a property a
    /// client does not use.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.extra.insert(key.into(), value.into());
        self
    }

    /// Creates the producer and the admin client. Nothing is sent until the first call;
    /// librdkafka connects in the background and reconnects by itself.
    ///
    /// # Errors
    /// A configuration librdkafka refuses (the error never quotes the password).
    pub fn build(self) -> Result<KafkaTransport, Error> {
        let config = Arc::new(self.config);
        let context = ClientCtx::new(&config.brokers, config.secret());
        let producer = config
            .producer(None, config.idempotence)
            .create_with_context(context.clone())
            .map_err(|e| Error::config(&context, &e))?;
        let admin = config
            .admin()
            .create_with_context(context.clone())
            .map_err(|e| Error::config(&context, &e))?;
        Ok(KafkaTransport {
            inner: Arc::new(Producer {
                config,
                context,
                producer: RwLock::new(producer),
                admin,
                topics: Mutex::new(HashSet::new()),
            }),
        })
    }
}

/// A Kafka producer and admin client, shared by clones, that implements [`Transport`]; see
/// the [module docs](super).
#[derive(Clone)]
pub struct KafkaTransport {
    inner: Arc<Producer>,
}

impl std::fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("config", &self.inner.config)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl KafkaTransport {
    /// Starts configuring a transport for the cluster at `brokers`
    /// (`host:port[,host:port…]`).
    pub fn builder(brokers: &str) -> KafkaBuilder {
        KafkaBuilder {
            config: Config::new(brokers),
        }
    }

    /// Connection events from now on: `Connected` when some broker is up again,
    /// `Disconnected` when none is (reported from librdkafka's statistics, once a second).
    pub fn events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.inner.context.events()
    }

    /// Whether some broker was up at librdkafka's last report.
    pub fn is_connected(&self) -> bool {
        self.inner.context.is_up()
    }

    fn admin_options(&self) -> AdminOptions {
        let timeout = self.inner.config.publish_timeout;
        AdminOptions::new()
            .request_timeout(Some(timeout))
            .operation_timeout(Some(timeout))
    }

    /// Creates `topics` that do not exist yet (existing ones are left as they are).
    ///
    /// # Errors
    /// The first topic the cluster refused, and why.
    pub async fn create_topics(&self, topics: &[Topic]) -> Result<(), TransportError> {
        let configs: Vec<Vec<(&str, &str)>> = topics
            .iter()
            .map(|t| {
                t.configs
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect()
            })
            .collect();
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .zip(&configs)
            .map(|(t, configs)| {
                configs.iter().fold(
                    NewTopic::new(
                        &t.name,
                        t.partitions,
                        TopicReplication::Fixed(t.replication),
                    ),
                    |n, (k, v)| n.set(k, v),
                )
            })
            .collect();
        let results = self
            .bounded(
                "creating topics",
                self.inner.admin.create_topics(&new, &self.admin_options()),
            )
            .await?
            .map_err(|e| classify(&self.inner.context, &e))?;
        for result in results {
            match result {
                Ok(name) | Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    self.inner.topics.lock().insert(name);
                }
                Err((name, code)) => {
                    return Err(TransportError::Rejected(format!(
                        "creating topic `{name}`: {code}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Deletes `topics`; ones that do not exist are skipped.
    ///
    /// # Errors
    /// The first topic the cluster refused to delete, and why.
    pub async fn delete_topics(&self, topics: &[&str]) -> Result<(), TransportError> {
        let results = self
            .bounded(
                "deleting topics",
                self.inner
                    .admin
                    .delete_topics(topics, &self.admin_options()),
            )
            .await?
            .map_err(|e| classify(&self.inner.context, &e))?;
        for result in results {
            match result {
                Ok(name) | Err((name, RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                    self.inner.topics.lock().remove(&name);
                }
                Err((name, code)) => {
                    return Err(TransportError::Rejected(format!(
                        "deleting topic `{name}`: {code}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Deletes consumer groups (their committed offsets); groups that do not exist are
    /// skipped.
    ///
    /// # Errors
    /// When the cluster could not be asked.
    pub async fn delete_groups(&self, groups: &[&str]) -> Result<(), TransportError> {
        self.bounded(
            "deleting groups",
            self.inner
                .admin
                .delete_groups(groups, &self.admin_options()),
        )
        .await?
        .map_err(|e| classify(&self.inner.context, &e))?;
        Ok(())
    }

    async fn bounded<T>(
        &self,
        what: &str,
        future: impl std::future::Future<Output = T>,
    ) -> Result<T, TransportError> {
        tokio::time::timeout(self.inner.config.publish_timeout, future)
            .await
            .map_err(|_| TransportError::Disconnected(format!("{what}: no answer in time")))
    }

    /// Whether `topic` exists, asking the cluster when it is not known yet.
    async fn topic_exists(&self, topic: &str) -> Result<bool, TransportError> {
        if self.inner.topics.lock().contains(topic) {
            return Ok(true);
        }
        let inner = Arc::clone(&self.inner);
        let name = topic.to_owned();
        let timeout = self.inner.config.publish_timeout;
        let metadata = tokio::task::spawn_blocking(move || {
            inner
                .producer()
                .client()
                .fetch_metadata(Some(&name), timeout)
        })
        .await
        .map_err(|e| TransportError::Other(e.into()))?
        .map_err(|e| classify(&self.inner.context, &e))?;
        let exists = metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
        if exists {
            self.inner.topics.lock().insert(topic.to_owned());
        }
        Ok(exists)
    }

    /// Publishes `batch` as one transaction: either every message becomes visible to
    /// `read_committed` consumers, or none does. Uses a transactional producer with
    /// `transactional_id` (created, and its transactions initialised, on each call; keep the
    /// id stable per producing instance so the broker fences a zombie predecessor).
    ///
    /// # Errors
    /// Why the transaction was aborted (or could not start); nothing of `batch` is then
    /// committed.
    pub async fn publish_transaction(
        &self,
        transactional_id: &str,
        batch: &[Outgoing],
    ) -> Result<(), TransportError> {
        let inner = Arc::clone(&self.inner);
        let context = inner.context.clone();
        let producer: FutureProducer<ClientCtx> = inner
            .config
            .producer(Some(transactional_id), true)
            .create_with_context(context.clone())
            .map_err(|e| classify(&context, &e))?;
        let timeout = inner.config.publish_timeout;
        let p = producer.clone();
        let blocking =
            move |f: fn(&FutureProducer<ClientCtx>, Duration) -> Result<(), KafkaError>| {
                let p = p.clone();
                tokio::task::spawn_blocking(move || f(&p, timeout))
            };
        let run = |r: Result<Result<(), KafkaError>, tokio::task::JoinError>| match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(classify(&context, &e)),
            Err(e) => Err(TransportError::Other(e.into())),
        };
        run(blocking(|p, t| p.init_transactions(t)).await)?;
        producer
            .begin_transaction()
            .map_err(|e| classify(&context, &e))?;
        let results = produce(&inner, &producer, batch, &context, false).await;
        if let Some(error) = results.into_iter().find_map(Result::err) {
            let _ = run(blocking(|p, t| p.abort_transaction(t)).await);
            return Err(error);
        }
        if let Err(error) = run(blocking(|p, t| p.commit_transaction(t)).await) {
            let _ = run(blocking(|p, t| p.abort_transaction(t)).await);
            return Err(error);
        }
        Ok(())
    }
}

impl Transport for KafkaTransport {
    const SYSTEM: &'static str = "kafka";
    type Consumer = KafkaConsumer;

    async fn publish(&self, batch: &[Outgoing]) -> Vec<Result<(), TransportError>> {
        // A topic that does not exist would wait in librdkafka until the publish timeout:
        // ask the cluster once instead, and fail those messages as unroutable.
        let mut missing: HashSet<&str> = HashSet::new();
        let mut checked: HashSet<&str> = HashSet::new();
        for out in batch {
            let topic = out.destination.as_str();
            if checked.insert(topic) {
                match self.topic_exists(topic).await {
                    Ok(true) => {}
                    Ok(false) => {
                        missing.insert(topic);
                    }
                    Err(error) => {
                        let reason = error.to_string();
                        return batch
                            .iter()
                            .map(|_| Err(TransportError::Disconnected(reason.clone())))
                            .collect();
                    }
                }
            }
        }
        if missing.is_empty() {
            return produce(
                &self.inner,
                &self.inner.producer(),
                batch,
                &self.inner.context,
                true,
            )
            .await;
        }
        let routable: Vec<Outgoing> = batch
            .iter()
            .filter(|o| !missing.contains(o.destination.as_str()))
            .cloned()
            .collect();
        let mut sent = produce(
            &self.inner,
            &self.inner.producer(),
            &routable,
            &self.inner.context,
            true,
        )
        .await
        .into_iter();
        batch
            .iter()
            .map(|o| {
                if missing.contains(o.destination.as_str()) {
                    Err(TransportError::Unroutable(o.destination.clone()))
                } else {
                    sent.next().unwrap_or(Err(TransportError::Closed))
                }
            })
            .collect()
    }

    async fn declare(&self, source: &Endpoint) -> Result<(), TransportError> {
        let template = &self.inner.config.topics;
        self.create_topics(&[
            template.named(&source.name),
            template.named(&source.dead_letter),
        ])
        .await
    }

    async fn consume(&self, source: &Endpoint) -> Result<KafkaConsumer, TransportError> {
        KafkaConsumer::start(Arc::clone(&self.inner), source)
    }
}
