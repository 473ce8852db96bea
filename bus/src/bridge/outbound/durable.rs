//! The durable outbound: events go to an [`OutboundStore`] before their emitters are released,
//! and to the broker from there.
//!
//! Two loops share the bridge's task:
//! - the **keeper** takes what is queued, encodes it, appends it to the store as one batch
//!   (one transaction: the events queued while the last append ran share the next one, which
//!   is the group commit), settles each event's ticket (so `emit_and_wait` returns `Ok`, or
//!   the store's error), and hands the stored batch to the relay through a bounded channel;
//! - the **relay** publishes stored messages in position order with the transport's confirms
//!   and forgets them once confirmed or refused for good.
//!
//! When the channel is full (the broker is slower than the emitters, or down), the keeper
//! stops handing batches over and sets `spilled`: the relay, once it has published what it
//! was handed, reads the store from its last position instead. The store is the truth and
//! the channel only a shortcut, so the relay skips anything at or below the last position it
//! published, whichever way it came. A start is a spill: the relay first reads everything an
//! earlier process left, while the keeper already accepts new events.
//!
//! Why not publish from the store only: reading back what was just written costs a read per
//! batch and a poll interval; the shortcut keeps the broker path as fast as the in-memory one
//! whenever the relay keeps up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Forwarder, IN_FLIGHT, STORED, UNSTORED};
use crate::bridge::store::{OutboundStore, StoreError, StoredMessage};
use crate::bridge::transport::{Outgoing, Transport};
use crate::bus::{Spanned, Subscription, Ticket};
use crate::codec::{Codec, EventSetCodec};

/// Stored batches the keeper may hand over before the relay reads the store instead.
const HANDED_OVER: usize = 8;

impl<S: EventSetCodec, T: Transport, C: Codec> Forwarder<S, T, C> {
    pub(super) async fn run_durable(
        self,
        store: Arc<dyn OutboundStore>,
        events: Subscription<S, (Spanned<S>, Ticket)>,
    ) {
        // A start is a spill: what an earlier process left is read from the store first.
        let spilled = AtomicBool::new(true);
        let (batches, handed) = mpsc::channel(HANDED_OVER);
        tokio::join!(
            self.keep(&*store, events, batches, &spilled),
            self.relay(&*store, handed, &spilled),
        );
    }

    /// Stores what is queued, batch by batch, and releases the emitters.
    async fn keep(
        &self,
        store: &dyn OutboundStore,
        mut events: Subscription<S, (Spanned<S>, Ticket)>,
        batches: mpsc::Sender<Vec<StoredMessage>>,
        spilled: &AtomicBool,
    ) {
        let size = self.config.batch_size;
        let reader = events.id();
        let mut messages: Vec<Outgoing> = Vec::with_capacity(size);
        let mut tickets: Vec<Ticket> = Vec::with_capacity(size);
        while let Some(first) = events.recv().await {
            let mut next = Some(first);
            while let Some(item) = next {
                // A stored stream reports overflow through `on_error`, never as lag.
                if let Ok(((event, span), ticket)) = item {
                    match self.outgoing(&event, span.as_deref()) {
                        Ok(out) => {
                            messages.push(out);
                            tickets.push(ticket);
                        }
                        Err(error) => ticket.failed(reader, Box::new(error)),
                    }
                }
                next = if messages.len() < size {
                    events.try_recv()
                } else {
                    None
                };
            }
            if messages.is_empty() {
                continue;
            }
            let count = messages.len();
            match store
                .append(std::mem::replace(&mut messages, Vec::with_capacity(size)))
                .await
            {
                Ok(stored) => {
                    if stored.len() != count {
                        tracing::error!(
                            messages = count,
                            returned = stored.len(),
                            "the outbound store returned a message count that does not match \
                             the batch (a store bug); the relay reads the batch back from the \
                             store"
                        );
                        spilled.store(true, Ordering::SeqCst);
                    }
                    self.stats.add(STORED, count as u64);
                    tickets.drain(..).for_each(Ticket::stored);
                    // SeqCst pairs with the relay: it either sees this batch in the store
                    // after clearing `spilled`, or this sees `spilled` cleared and hands over.
                    if !spilled.load(Ordering::SeqCst) && batches.try_send(stored).is_err() {
                        spilled.store(true, Ordering::SeqCst);
                    }
                }
                Err(error) => {
                    self.stats.add(UNSTORED, count as u64);
                    tracing::error!(events = count, %error, "the outbound store could not keep events; their emitters are told");
                    for ticket in tickets.drain(..) {
                        ticket.failed(reader, Box::new(error.clone()));
                    }
                }
            }
        }
        // Dropping `batches` tells the relay the keeper is done.
    }

    /// Publishes stored messages in position order and forgets the confirmed ones.
    async fn relay(
        &self,
        store: &dyn OutboundStore,
        mut handed: mpsc::Receiver<Vec<StoredMessage>>,
        spilled: &AtomicBool,
    ) {
        let size = self.config.batch_size;
        // The last position published: anything at or below it was published already.
        let mut last = 0u64;
        // One more read of the store after clearing `spilled`, for the batches stored while
        // it was still set.
        let mut recheck = false;
        let mut failures = 0u32;
        loop {
            let page = if spilled.load(Ordering::SeqCst) || recheck {
                let page = match store.read_after(last, size).await {
                    Ok(page) => page,
                    Err(error) => {
                        failures += 1;
                        self.wait_for_store(&error, failures).await;
                        continue;
                    }
                };
                failures = 0;
                let caught_up = page.len() < size;
                if caught_up {
                    recheck = spilled.swap(false, Ordering::SeqCst);
                }
                page
            } else {
                let mut page = match handed.recv().await {
                    Some(page) => page,
                    // The keeper is done; what it stored after the last hand-over is read
                    // from the store.
                    None if spilled.load(Ordering::SeqCst) => continue,
                    None => break,
                };
                while page.len() < size {
                    match handed.try_recv() {
                        Ok(more) => page.extend(more),
                        Err(_) => break,
                    }
                }
                page
            };
            self.publish_stored(store, page, &mut last).await;
        }
    }

    /// Publishes the messages of `page` newer than `last`, forgets them, and moves `last`.
    async fn publish_stored(
        &self,
        store: &dyn OutboundStore,
        mut page: Vec<StoredMessage>,
        last: &mut u64,
    ) {
        page.retain(|m| m.seq > *last);
        let Some(newest) = page.last().map(|m| m.seq) else {
            return;
        };
        *last = newest;
        let positions: Vec<u64> = page.iter().map(|m| m.seq).collect();
        let mut batch: Vec<Outgoing> = page.into_iter().map(|m| m.message).collect();
        self.stats.add(IN_FLIGHT, batch.len() as u64);
        self.publish(&mut batch).await;
        if let Err(error) = store.forget(&positions).await {
            tracing::warn!(
                messages = positions.len(),
                %error,
                "confirmed messages could not be removed from the outbound store; the next \
                 start publishes them again"
            );
        }
    }

    async fn wait_for_store(&self, error: &StoreError, failures: u32) {
        let delay = self.config.backoff.jittered(failures);
        tracing::warn!(%error, ?delay, "cannot read the outbound store; trying again");
        tokio::time::sleep(delay).await;
    }
}
