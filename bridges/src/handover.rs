//! Deliveries handed from a transport's reading side (a task or a thread) to its consumer a
//! read at a time: one channel message and one wake-up per read, not per message.

use std::collections::VecDeque;

use tidings::bridge::{Delivery, TransportError};
use tokio::sync::mpsc;

/// What the reading side sends: the deliveries of one read, or the error that ends it.
pub(crate) type Read = Result<Vec<Delivery>, TransportError>;

/// The reading side's end.
pub(crate) type Sender = mpsc::UnboundedSender<Read>;

/// A channel of reads; the receiver hands them out one delivery at a time.
pub(crate) fn channel() -> (Sender, Receiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let receiver = Receiver {
        rx,
        ready: VecDeque::new(),
    };
    (tx, receiver)
}

/// The consumer's end. Deliveries not taken when it is dropped are dropped unsettled, as
/// those still in the channel are.
pub(crate) struct Receiver {
    rx: mpsc::UnboundedReceiver<Read>,
    /// What the last read brought and the caller has not taken yet.
    ready: VecDeque<Delivery>,
}

impl Receiver {
    /// The next delivery or error; `None` once the reading side is gone. When nothing is left
    /// to take without waiting, `about_to_wait` runs first (a transport sends what was
    /// acknowledged, or asks for more). Cancel-safe: a read received is kept before anything
    /// else can happen.
    pub(crate) async fn next(
        &mut self,
        about_to_wait: impl FnOnce(),
    ) -> Option<Result<Delivery, TransportError>> {
        if self.ready.is_empty() && self.rx.is_empty() {
            about_to_wait();
        }
        loop {
            if let Some(delivery) = self.ready.pop_front() {
                return Some(Ok(delivery));
            }
            match self.rx.recv().await? {
                Ok(read) => self.ready = read.into(),
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use futures_util::future::BoxFuture;
    use tidings::bridge::{Acker, Envelope, Incoming};

    use super::*;

    struct Settled;

    impl Acker for Settled {
        fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
            Box::pin(async { Ok(()) })
        }
        fn nack(self: Box<Self>, _: Incoming) -> BoxFuture<'static, Result<(), TransportError>> {
            Box::pin(async { Ok(()) })
        }
        fn dead_letter(
            self: Box<Self>,
            _: Incoming,
            _headers: BTreeMap<String, String>,
        ) -> BoxFuture<'static, Result<(), TransportError>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn delivery(i: u8) -> Delivery {
        let envelope = Envelope::new("e", vec![i]);
        Delivery::new(Incoming::from_envelope(&envelope, "s"), Settled)
    }

    #[tokio::test]
    async fn reads_are_handed_out_one_delivery_at_a_time_in_order_then_the_error() {
        let (tx, mut rx) = channel();
        tx.send(Ok(vec![delivery(1), delivery(2)])).unwrap();
        tx.send(Ok(vec![delivery(3)])).unwrap();
        tx.send(Err(TransportError::Closed)).unwrap();
        drop(tx);
        let mut waited = 0;
        let mut got = Vec::new();
        while let Some(next) = rx.next(|| waited += 1).await {
            match next {
                Ok(d) => got.push(d.message.payload[0]),
                Err(error) => {
                    assert!(matches!(error, TransportError::Closed));
                    got.push(0);
                }
            }
        }
        assert_eq!(got, [1, 2, 3, 0]);
        // Only the call that found nothing left (after the error, before the end) was about
        // to wait.
        assert_eq!(waited, 1);
    }
}
