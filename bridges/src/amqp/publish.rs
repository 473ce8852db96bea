//! Publishing with confirms over the shared connection state: the one path every publish takes
//! (bridges, dead-letter copies, RPC replies).
//!
//! Who touches what: callers borrow the live link from [`LinkState`] and hold a permit of its
//! confirm window per message awaiting a confirm; nothing here is stored between calls.

use std::collections::VecDeque;

use bytes::Bytes;
use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation, PublisherConfirm};
use tidings::bridge::TransportError;
use tokio::sync::SemaphorePermit;
use tokio::time::Instant;

use super::link::{LinkState, Live};
use super::wire;

/// A message ready to go out.
#[derive(Clone)]
pub(crate) struct Raw {
    pub(crate) exchange: ShortString,
    pub(crate) routing_key: ShortString,
    pub(crate) payload: Bytes,
    pub(crate) properties: BasicProperties,
}

type Results = Vec<Option<Result<(), TransportError>>>;

/// Publishes one message and waits for its confirm: for dead letters, replies and raw
/// interop.
pub(crate) async fn one(shared: &LinkState, raw: Raw) -> Result<(), TransportError> {
    let mut results = batch(shared, &[raw]).await;
    results.pop().unwrap_or(Err(TransportError::Closed))
}

/// Publishes every message and waits for the broker's confirms, resending on the next
/// connection what a failed one never confirmed, until the publish timeout.
pub(crate) async fn batch(shared: &LinkState, batch: &[Raw]) -> Vec<Result<(), TransportError>> {
    let deadline = Instant::now() + shared.config.publish_timeout;
    let mut results: Results = (0..batch.len()).map(|_| None).collect();
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    let mut min_generation = 0;
    while !pending.is_empty() {
        let Some(live) = shared.live(deadline, pending.len(), min_generation).await else {
            let why = if shared.is_stopped() {
                "the transport is closed".to_owned()
            } else {
                format!(
                    "no connection to RabbitMQ within {:?} (or more than {} messages waiting for one)",
                    shared.config.publish_timeout, shared.config.buffer
                )
            };
            for i in pending {
                results[i] = Some(Err(TransportError::Disconnected(why.clone())));
            }
            break;
        };
        pending = publish_on(shared, &live, batch, &pending, &mut results, deadline).await;
        min_generation = live.generation + 1;
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or(Err(TransportError::Closed)))
        .collect()
}

/// Publishes `pending` on `live`; returns what must be sent again on a new connection.
async fn publish_on(
    shared: &LinkState,
    live: &Live,
    batch: &[Raw],
    pending: &[usize],
    results: &mut Results,
    deadline: Instant,
) -> Vec<usize> {
    let window = &shared.window;
    let mut retry = Vec::new();
    let mut in_flight: VecDeque<(usize, SemaphorePermit<'_>, PublisherConfirm)> = VecDeque::new();
    // The exchange checked last: a batch mostly goes to one destination.
    let mut checked: Option<&str> = None;
    let frame_max = live.frame_max();
    for &i in pending {
        let raw = &batch[i];
        // A content header over the frame limit would make the broker close the whole
        // connection (FRAME_ERROR): refuse it here, for good.
        if let Err(error) = wire::check_header_size(&raw.properties, frame_max) {
            results[i] = Some(Err(error));
            continue;
        }
        let exchange = raw.exchange.as_str();
        if checked != Some(exchange) {
            match live.exchange_exists(exchange).await {
                Ok(true) => checked = Some(exchange),
                Ok(false) => {
                    results[i] = Some(Err(TransportError::Unroutable(exchange.to_owned())));
                    continue;
                }
                Err(_) => {
                    live.broke();
                    retry.push(i);
                    continue;
                }
            }
        }
        let permit = loop {
            if let Ok(permit) = window.try_acquire() {
                break Some(permit);
            }
            match in_flight.pop_front() {
                Some(sent) => settle(live, sent, results, &mut retry, deadline).await,
                None => break window.acquire().await.ok(),
            }
        };
        let Some(permit) = permit else {
            results[i] = Some(Err(TransportError::Closed));
            continue;
        };
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let send = live.publisher.basic_publish(
            raw.exchange.clone(),
            raw.routing_key.clone(),
            options,
            &raw.payload,
            raw.properties.clone(),
        );
        match tokio::time::timeout_at(deadline, send).await {
            Ok(Ok(confirm)) => in_flight.push_back((i, permit, confirm)),
            Ok(Err(_)) | Err(_) => {
                live.broke();
                retry.push(i);
            }
        }
    }
    while let Some(sent) = in_flight.pop_front() {
        settle(live, sent, results, &mut retry, deadline).await;
    }
    retry.sort_unstable();
    retry
}

/// Waits for one confirm and records its outcome.
async fn settle(
    live: &Live,
    (i, permit, confirm): (usize, SemaphorePermit<'_>, PublisherConfirm),
    results: &mut Results,
    retry: &mut Vec<usize>,
    deadline: Instant,
) {
    let outcome = tokio::time::timeout_at(deadline, confirm).await;
    drop(permit);
    results[i] = Some(match outcome {
        Ok(Ok(Confirmation::Ack(None))) => Ok(()),
        Ok(Ok(Confirmation::Ack(Some(returned)))) => Err(TransportError::Unroutable(format!(
            "{} / {}",
            returned.delivery.exchange, returned.delivery.routing_key
        ))),
        // RabbitMQ nacks what it could not store (a quorum queue between leaders, an alarm):
        // not a verdict on the message. It is sent again on a fresh connection, whose channel
        // finds the queue's current leader (a channel that saw the old one kept being nacked).
        Ok(Ok(Confirmation::Nack(_))) => {
            live.broke();
            retry.push(i);
            return;
        }
        Ok(Ok(Confirmation::NotRequested)) => Err(TransportError::Other(
            "the publishing channel is not in confirm mode".into(),
        )),
        Ok(Err(_)) => {
            live.broke();
            retry.push(i);
            return;
        }
        Err(_) => Err(TransportError::Disconnected(
            "no confirm from the broker before the publish timeout".to_owned(),
        )),
    });
}
