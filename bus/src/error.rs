//! The error types every part of the crate shares: the boxed error foreign errors go into,
//! and [`Closed`], a value handed back by a receiver that is gone.

use std::error::Error as StdError;

/// A boxed error that can cross threads: what listeners, handlers and transports return when
/// their own error type is not known here.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The receiver is gone, and the value is handed back undelivered: the event of a
/// [`Bus::emit_async`](crate::bus::Bus::emit_async) after the bus shut down, or the message of
/// an [`ActorRef::tell`](crate::actor::ActorRef::tell) after the actor stopped.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("the receiver is closed; the value was handed back undelivered")]
pub struct Closed<T>(pub T);

impl<T> std::fmt::Debug for Closed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Closed(..)")
    }
}
