//! Publishing with confirms over the shared connection state: the one path every publish takes
//! (bridges, dead-letter copies, RPC replies).
//!
//! Who touches what: callers borrow the live link from [`LinkState`], publish a batch under
//! the publishing channel's turn (see [`Publisher`](super::link::Publisher): confirms and
//! returns are only attributable while one batch publishes at a time) and hold a permit of its
//! confirm window per message awaiting a confirm; nothing here is stored between calls.
//!
//! A batch's publishes are not awaited one by one. lapin's `basic_publish` queues a message's
//! frames on the connection when first polled and resolves once its I/O loop has written them;
//! awaited in turn, every message waited for its own write, so each write carried one message
//! and every message cost a hand-over between the publishing task and the I/O loop. Here each
//! publish is polled once as it is made, which queues its frames in the batch's order (so
//! delivery tags, confirms and per-key order are the batch's, as before), and its write is
//! awaited only with its confirm: the I/O loop writes what has piled up in one go. Measured
//! end to end (`benches/README.md`, "RabbitMQ end to end"): the client's CPU share went from
//! about a third of the machine to about a quarter, and messages per second rose with it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation, PublisherConfirm};
use tidings::bridge::TransportError;
use tokio::sync::SemaphorePermit;
use tokio::time::Instant;

use super::link::{LinkState, Live, Turn};
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

/// A message handed to lapin: its frames are queued on the channel, in the order of the
/// batch, and written by lapin's I/O loop.
enum Sending<'a> {
    /// Written: the confirm is what is left to wait for.
    Written(PublisherConfirm),
    /// Not yet written. The frames are queued already (they are, once a publish is first
    /// polled); what is left is lapin's word that it wrote them, then the confirm.
    Queued(Pin<Box<dyn Future<Output = Result<PublisherConfirm, lapin::Error>> + Send + 'a>>),
}

/// One message in flight: its index in the batch, its permit of the confirm window, and
/// where its publish stands.
type InFlight<'a> = (usize, SemaphorePermit<'a>, Sending<'a>);

/// Publishes one message and waits for its confirm: for dead letters, replies and raw
/// interop.
pub(crate) async fn one(shared: &LinkState, raw: Raw) -> Result<(), TransportError> {
    let mut results = batch(shared, &[raw]).await;
    results.pop().unwrap_or(Err(TransportError::Closed))
}

/// Publishes every message and waits for the broker's confirms, until the publish timeout:
/// what a failed connection never confirmed is sent again on the next connection, and what
/// the broker nacked is sent again on a fresh channel of the same connection after a pause
/// (the transport's reconnect backoff, growing with each round of nacks), so that a queue
/// that keeps refusing (`x-overflow: reject-publish` when full) costs neither the
/// connection, which consumers may share, nor a tight loop. A message nacked and not
/// confirmed by the timeout (its last attempt nacked too, or not answered in time) gets
/// [`TransportError::NotStored`].
pub(crate) async fn batch(shared: &LinkState, batch: &[Raw]) -> Vec<Result<(), TransportError>> {
    let deadline = Instant::now() + shared.config.publish_timeout;
    let mut results: Results = (0..batch.len()).map(|_| None).collect();
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    let mut min_generation = 0;
    let mut nack_rounds = 0;
    // Which messages the broker nacked at least once (allocated at the first nack only).
    let mut nacked: Vec<bool> = Vec::new();
    // Once the broker closed the channel over a message it did not point out, the rest go one
    // at a time (see `Again::alone`).
    let mut singly = false;
    // Exchanges found missing and declared again (or not): at most once each per call.
    let mut redeclared: Vec<ShortString> = Vec::new();
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
        let later = if singly {
            pending.split_off(1)
        } else {
            Vec::new()
        };
        let mut again = publish_on(shared, &live, batch, &pending, &mut results, deadline).await;
        let missing = declare_missing(shared, batch, &again.missing, &mut results, &mut redeclared);
        again.resend.extend(missing.await);
        if !again.alone.is_empty() {
            singly = true;
        }
        if !again.reconnect.is_empty() {
            min_generation = live.generation + 1;
        }
        if !again.nacked.is_empty() {
            nacked.resize(batch.len(), false);
            for &i in &again.nacked {
                nacked[i] = true;
            }
            nack_rounds += 1;
            let pause = shared.config.reconnect.jittered(nack_rounds);
            if Instant::now() + pause >= deadline {
                // Left without a result: reported below.
                pending = again.reconnect;
                pending.extend(again.alone);
                pending.extend(later);
                pending.sort_unstable();
                continue;
            }
            tracing::warn!(
                messages = again.nacked.len(),
                ?pause,
                "the broker nacked messages (a full queue that rejects publishes, or one \
                 without a leader): sending them again on a fresh channel"
            );
            tokio::time::sleep(pause).await;
        }
        pending = again.reconnect;
        pending.extend(again.nacked);
        pending.extend(again.resend);
        pending.extend(again.alone);
        pending.extend(later);
        pending.sort_unstable();
    }
    let not_stored = || {
        TransportError::NotStored(format!(
            "negative confirms until the publish timeout ({:?}): the queue may be full and \
             reject publishes, or have no leader",
            shared.config.publish_timeout
        ))
    };
    let nacked = |i: usize| nacked.get(i).copied().unwrap_or(false);
    results
        .into_iter()
        .enumerate()
        .map(|(i, result)| match result {
            Some(Ok(())) => Ok(()),
            Some(Err(TransportError::Disconnected(_))) | None if nacked(i) => Err(not_stored()),
            Some(result) => result,
            None => Err(TransportError::Closed),
        })
        .collect()
}

/// Messages the broker refused because their exchange does not exist (`NOT_FOUND`). When
/// this transport has that exchange recorded (another client deleted it while the connection
/// stayed up), it is declared again as recorded, with its bindings, as a reconnect would, and
/// the messages are to be sent again: they are returned, their results cleared. Each
/// exchange at most once per call: refused again, its messages stay refused.
async fn declare_missing(
    shared: &LinkState,
    batch: &[Raw],
    missing: &[usize],
    results: &mut Results,
    redeclared: &mut Vec<ShortString>,
) -> Vec<usize> {
    let mut declared_now: Vec<&ShortString> = Vec::new();
    let mut again = Vec::new();
    for &i in missing {
        let exchange = &batch[i].exchange;
        if !redeclared.contains(exchange) {
            redeclared.push(exchange.clone());
            if let Some(Ok(())) = shared.declare_exchange_again(exchange.as_str()).await {
                tracing::warn!(
                    exchange = exchange.as_str(),
                    "the exchange was missing; declared it again"
                );
                declared_now.push(exchange);
            }
        }
        if declared_now.contains(&exchange) {
            results[i] = None;
            again.push(i);
        }
    }
    again
}

/// What [`publish_on`] could not settle.
#[derive(Default)]
struct Again {
    /// To send again on a new connection (this one failed).
    reconnect: Vec<usize>,
    /// Nacked by the broker: to send again on this connection, whose publishing channel has
    /// been renewed.
    nacked: Vec<usize>,
    /// Lost with a channel the broker closed over another message: to send again on this
    /// connection, whose publishing channel has been renewed.
    resend: Vec<usize>,
    /// Lost with a channel the broker closed for a reason that points at none of them (a
    /// message over its `max_message_size`, say): to send again on this connection one at a
    /// time, so that the one it refuses is told apart from the others.
    alone: Vec<usize>,
    /// Refused because their exchange does not exist (see [`declare_missing`]).
    missing: Vec<usize>,
}

/// Publishes `pending` on `live`, under the channel's [`Turn`](super::link::Turn) until the
/// last confirm is in; returns what must be sent again, and where.
///
/// A `basic.return` is matched to its message by message id, not by the confirm lapin hands
/// it to (see [`Publisher`](super::link::Publisher)): with the turn held, every return that
/// arrives is for a message of this batch, and it arrives before that message's confirm, so
/// once every confirm is in, every return is known.
async fn publish_on(
    shared: &LinkState,
    live: &Live,
    batch: &[Raw],
    pending: &[usize],
    results: &mut Results,
    deadline: Instant,
) -> Again {
    let window = &shared.window;
    let mut outcomes = Outcomes::default();
    // The exchange checked last: a batch mostly goes to one destination.
    let mut checked: Option<&str> = None;
    let frame_max = live.frame_max();
    let Ok(mut turn) = tokio::time::timeout_at(deadline, live.publisher.turn()).await else {
        for &i in pending {
            results[i] = Some(Err(TransportError::Disconnected(
                "no turn on the publishing channel before the publish timeout".to_owned(),
            )));
        }
        return Again::default();
    };
    if turn.reopen(&live.connection).await.is_err() {
        live.broke();
        return Again {
            reconnect: pending.to_vec(),
            ..Again::default()
        };
    }
    let mut in_flight: VecDeque<InFlight<'_>> = VecDeque::new();
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
                    outcomes.retry.push(i);
                    continue;
                }
            }
        }
        let permit = loop {
            if let Ok(permit) = window.try_acquire() {
                break Some(permit);
            }
            match in_flight.pop_front() {
                Some(sent) => outcomes.settle(live, &turn, sent, results, deadline).await,
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
        // Polled once here, which queues the message's frames in the batch's order, and not
        // awaited: lapin's I/O loop writes what is queued together, where waiting for each
        // write before queuing the next put one message in each write and a hand-over
        // between this task and the I/O loop between any two messages.
        let mut send = Box::pin(turn.publish(
            raw.exchange.clone(),
            raw.routing_key.clone(),
            options,
            &raw.payload,
            raw.properties.clone(),
        ));
        let waker = futures_util::task::noop_waker_ref();
        match send.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(Ok(confirm)) => {
                in_flight.push_back((i, permit, Sending::Written(confirm)));
            }
            Poll::Ready(Err(error)) => outcomes.failed(live, &turn, i, &error),
            Poll::Pending => in_flight.push_back((i, permit, Sending::Queued(send))),
        }
    }
    while let Some(sent) = in_flight.pop_front() {
        outcomes.settle(live, &turn, sent, results, deadline).await;
    }
    // Empty; its type still borrows the turn, which is renewed next.
    drop(in_flight);
    let closed = !outcomes.lost.is_empty();
    if (!outcomes.nacked.is_empty() || closed) && turn.renew(&live.connection).await.is_err() {
        live.broke();
        outcomes.retry.append(&mut outcomes.nacked);
        outcomes.retry.append(&mut outcomes.lost);
    }
    drop(turn);
    outcomes.refuse(batch, results);
    outcomes.apply_returns(batch, pending, results);
    let mut again = Again {
        reconnect: outcomes.retry,
        nacked: outcomes.nacked,
        resend: outcomes.resend,
        alone: outcomes.alone,
        missing: outcomes.missing,
    };
    again.reconnect.sort_unstable();
    again
}

/// What the confirms of one batch said.
#[derive(Default)]
struct Outcomes {
    /// Sent again on a new connection.
    retry: Vec<usize>,
    /// Nacked: sent again on a fresh channel.
    nacked: Vec<usize>,
    /// Message ids of the returned messages, with where each was returned from.
    returned: Vec<(ShortString, String)>,
    /// Why the broker closed the channel under this batch (the first reason seen), and
    /// whether it was an exchange that does not exist (`NOT_FOUND`).
    reason: Option<(String, bool)>,
    /// The messages the channel the broker closed took with it.
    lost: Vec<usize>,
    /// See [`Again::resend`].
    resend: Vec<usize>,
    /// See [`Again::alone`].
    alone: Vec<usize>,
    /// See [`Again::missing`].
    missing: Vec<usize>,
}

impl Outcomes {
    /// Records a publish or confirm of message `i` that failed with `error`. The broker
    /// closing the channel (a soft error: `ACCESS_REFUSED` when the user may not write to the
    /// exchange, say) leaves the connection, which consumers may share, as it is: the channel
    /// is renewed and the message judged by the broker's reason ([`refuse`](Self::refuse)).
    /// Anything else means the connection failed.
    ///
    /// The broker's reason comes with the soft error; a publish or confirm that lapin fails
    /// because it already knows the channel closed says only that, hence the channel's state.
    fn failed(&mut self, live: &Live, turn: &Turn<'_>, i: usize, error: &lapin::Error) {
        let soft = super::link::channel_level(error);
        if live.connection.status().connected() && (soft || !turn.is_open()) {
            if soft {
                let missing = super::link::not_found(error);
                self.reason
                    .get_or_insert_with(|| (error.to_string(), missing));
            }
            self.lost.push(i);
        } else {
            live.broke();
            self.retry.push(i);
        }
    }

    /// Judges the messages a channel the broker closed took with it: those to the exchange
    /// the broker's reason names (`... exchange 'orders' ...`) are refused for good with that
    /// reason; the others were only on the same channel (or their confirm was lost with it)
    /// and are sent again, on the renewed channel. When the reason names none of their
    /// exchanges (a message over the broker's `max_message_size`), a message the channel took
    /// alone is refused, and several are sent again one at a time: together they would close
    /// the channel again until the publish timeout, alone each is judged on its own. Without a
    /// reason, every one is sent again. A refusal because the exchange does not exist is also
    /// noted in `missing`, for [`declare_missing`] to declare it again if it is recorded.
    fn refuse(&mut self, batch: &[Raw], results: &mut Results) {
        if self.lost.is_empty() {
            return;
        }
        let (reason, missing) = self.reason.take().unwrap_or_default();
        // The broker names the default exchange `amq.default`.
        let named = |i: &usize| {
            let exchange = match batch[*i].exchange.as_str() {
                "" => "amq.default",
                name => name,
            };
            reason.contains(&format!("'{exchange}'"))
        };
        let any_named = self.lost.iter().any(named);
        let alone = self.lost.len() == 1;
        for i in std::mem::take(&mut self.lost) {
            if !reason.is_empty() && !any_named && !alone {
                results[i] = Some(Err(TransportError::Disconnected(format!(
                    "the broker closed the publishing channel over one of the messages sent \
                     with this one: {reason}"
                ))));
                self.alone.push(i);
            } else if reason.is_empty() || (any_named && !named(&i)) {
                results[i] = Some(Err(TransportError::Disconnected(if reason.is_empty() {
                    "the broker closed the publishing channel".to_owned()
                } else {
                    format!(
                        "the broker closed the publishing channel over another message: {reason}"
                    )
                })));
                self.resend.push(i);
            } else {
                results[i] = Some(Err(TransportError::Rejected(format!(
                    "the broker refused the publish: {reason}"
                ))));
                if missing {
                    self.missing.push(i);
                }
            }
        }
    }

    /// Waits for one message's write and confirm and records its outcome. A return is set
    /// aside to be matched by message id ([`apply_returns`](Self::apply_returns)); one without
    /// an id is taken as the confirm's own, as lapin hands it over.
    async fn settle(
        &mut self,
        live: &Live,
        turn: &Turn<'_>,
        (i, permit, sending): InFlight<'_>,
        results: &mut Results,
        deadline: Instant,
    ) {
        let confirm = match sending {
            Sending::Written(confirm) => confirm,
            Sending::Queued(send) => match tokio::time::timeout_at(deadline, send).await {
                Ok(Ok(confirm)) => confirm,
                Ok(Err(error)) => {
                    self.failed(live, turn, i, &error);
                    return;
                }
                Err(_) => {
                    live.broke();
                    self.retry.push(i);
                    return;
                }
            },
        };
        let outcome = tokio::time::timeout_at(deadline, confirm).await;
        drop(permit);
        results[i] = Some(match outcome {
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(returned)))) => {
                let route = format!(
                    "{} / {}",
                    returned.delivery.exchange, returned.delivery.routing_key
                );
                match returned.delivery.properties.message_id() {
                    Some(id) => {
                        self.returned.push((id.clone(), route));
                        Ok(())
                    }
                    None => Err(TransportError::Unroutable(route)),
                }
            }
            // RabbitMQ nacks what it could not store (a full queue that rejects publishes, a
            // quorum queue between leaders): not a verdict on the message, nor on the
            // connection. It is sent again on a fresh channel (one that saw a quorum queue's
            // old leader kept being nacked), after a pause (see `batch`).
            Ok(Ok(Confirmation::Nack(_))) => {
                self.nacked.push(i);
                return;
            }
            Ok(Ok(Confirmation::NotRequested)) => Err(TransportError::Other(
                "the publishing channel is not in confirm mode".into(),
            )),
            Ok(Err(error)) => {
                self.failed(live, turn, i, &error);
                return;
            }
            Err(_) => Err(TransportError::Disconnected(
                "no confirm from the broker before the publish timeout".to_owned(),
            )),
        });
    }

    /// Marks each returned message unroutable: the first confirmed message of the batch with
    /// the returned message's id (ids are unique unless a caller reuses one; each return then
    /// takes the next such message). One pass over the batch, whatever the number of returns.
    fn apply_returns(&mut self, batch: &[Raw], pending: &[usize], results: &mut Results) {
        if self.returned.is_empty() {
            return;
        }
        let mut routes: HashMap<ShortString, VecDeque<String>> = HashMap::new();
        for (id, route) in self.returned.drain(..) {
            routes.entry(id).or_default().push_back(route);
        }
        for &i in pending {
            if !matches!(results[i], Some(Ok(()))) {
                continue;
            }
            let Some(id) = batch[i].properties.message_id() else {
                continue;
            };
            if let Some(route) = routes.get_mut(id).and_then(VecDeque::pop_front) {
                results[i] = Some(Err(TransportError::Unroutable(route)));
            }
        }
    }
}
