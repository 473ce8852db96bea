//! [`Producer`]: the clients a transport and its consumers share (the producer, the admin
//! client and the configuration), below both: the transport publishes with it, a consumer
//! produces its dead letters with it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rdkafka::admin::AdminClient;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use tidings::bridge::{Outgoing, TransportError};
use tokio::time::Instant;

use super::config::Config;
use super::context::ClientCtx;
use super::error::classify;
use super::wire;

/// What a [`KafkaTransport`](super::KafkaTransport) and its consumers share.
pub(crate) struct Producer {
    pub(crate) config: Arc<Config>,
    pub(crate) context: ClientCtx,
    /// Replaced once, without idempotence, if the cluster refuses the idempotent producer.
    pub(crate) producer: RwLock<FutureProducer<ClientCtx>>,
    pub(crate) admin: AdminClient<ClientCtx>,
    /// Topics known to exist: publishing to any other first asks the cluster.
    pub(crate) topics: Mutex<HashSet<String>>,
}

impl Producer {
    /// The producer to publish with now.
    pub(crate) fn producer(&self) -> FutureProducer<ClientCtx> {
        self.producer.read().clone()
    }

    /// Whether `failed` (a producer that just failed some messages) died because the cluster
    /// refused the idempotent producer; if so, it is replaced by one without idempotence (one
    /// request in flight per connection, so retries still cannot reorder), once.
    fn refused_idempotence(&self, failed: &FutureProducer<ClientCtx>) -> bool {
        use RDKafkaErrorCode as C;
        let Some((code, reason)) = failed.client().fatal_error() else {
            return false;
        };
        if !matches!(
            code,
            C::UnsupportedFeature | C::ClusterAuthorizationFailed | C::UnsupportedVersion
        ) {
            return false;
        }
        let mut producer = self.producer.write();
        if !std::ptr::eq(producer.client().native_ptr(), failed.client().native_ptr()) {
            return true; // Another publish replaced it already.
        }
        match self
            .config
            .producer(None, false)
            .create_with_context(self.context.clone())
        {
            Ok(fallback) => {
                tracing::warn!(
                    %code,
                    reason = %self.context.scrub(&reason),
                    "the cluster refused the idempotent producer; publishing without \
                     idempotence, one request in flight per connection"
                );
                *producer = fallback;
                true
            }
            Err(error) => {
                tracing::error!(
                    error = %self.context.scrub(&error.to_string()),
                    "cannot create a producer without idempotence"
                );
                false
            }
        }
    }

    pub(crate) async fn produce_one(&self, out: &Outgoing) -> Result<(), TransportError> {
        produce(
            self,
            &self.producer(),
            std::slice::from_ref(out),
            &self.context,
            true,
        )
        .await
        .pop()
        .unwrap_or(Err(TransportError::Closed))
    }
}

/// Enqueues every message of `batch` on `producer` and waits for each delivery report.
///
/// Per-key order: librdkafka keeps the order of one partition, and one key maps to one
/// partition. When enqueuing fails for a key (a full local queue past the publish timeout),
/// later messages of that key are not enqueued, so nothing overtakes the failed one.
///
/// With `fallback` (the transport's own producer), a producer the cluster killed for refusing
/// idempotence is replaced (see `Producer::refused_idempotence`) and its failures are reported
/// retryable.
pub(crate) async fn produce(
    inner: &Producer,
    producer: &FutureProducer<ClientCtx>,
    batch: &[Outgoing],
    context: &ClientCtx,
    fallback: bool,
) -> Vec<Result<(), TransportError>> {
    let deadline = Instant::now() + inner.config.publish_timeout;
    let mut failed_keys: HashSet<(&str, Option<&str>)> = HashSet::new();
    let mut pending = Vec::with_capacity(batch.len());
    for out in batch {
        let envelope = &out.envelope;
        let id = (out.destination.as_str(), envelope.key.as_deref());
        if envelope.payload.len() > inner.config.max_message {
            pending.push(Err(TransportError::Rejected(format!(
                "a payload of {} bytes is over the limit of {} bytes",
                envelope.payload.len(),
                inner.config.max_message
            ))));
            continue;
        }
        if failed_keys.contains(&id) {
            pending.push(Err(TransportError::Disconnected(
                "an earlier message of the same key was not sent".into(),
            )));
            continue;
        }
        let mut record = FutureRecord::to(&out.destination)
            .payload(envelope.payload.as_ref())
            .headers(wire::headers(envelope))
            .timestamp(wire::millis(envelope.time));
        if let Some(key) = &envelope.key {
            record = record.key(key.as_str());
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(Ok(delivery));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    // The local queue is full: let librdkafka send some, then try again.
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((error, _)) => {
                    let error = classify(context, &error);
                    if error.is_retryable() {
                        failed_keys.insert(id);
                    }
                    pending.push(Err(error));
                    break;
                }
            }
        }
    }
    let mut results = Vec::with_capacity(pending.len());
    for p in pending {
        results.push(match p {
            Err(error) => Err(error),
            // librdkafka fails a message itself at `message.timeout.ms`; the margin covers
            // a report on its way.
            Ok(delivery) => {
                match tokio::time::timeout_at(deadline + Duration::from_secs(5), delivery).await {
                    Ok(Ok(Ok(_))) => Ok(()),
                    Ok(Ok(Err((error, _)))) => Err(classify(context, &error)),
                    Ok(Err(_canceled)) => Err(TransportError::Closed),
                    Err(_) => Err(TransportError::Disconnected(
                        "no delivery report in time".into(),
                    )),
                }
            }
        });
    }
    if fallback && results.iter().any(Result::is_err) && inner.refused_idempotence(producer) {
        // What failed with the old producer is worth sending again with the new one.
        for result in &mut results {
            if let Err(TransportError::Rejected(reason)) = result {
                *result = Err(TransportError::Disconnected(reason.clone()));
            }
        }
    }
    results
}
