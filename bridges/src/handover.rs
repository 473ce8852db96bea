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
