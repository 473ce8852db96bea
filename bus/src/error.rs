//! The error type every part of the crate boxes foreign errors into.

use std::error::Error as StdError;

/// A boxed error that can cross threads: what listeners, handlers and transports return when
/// their own error type is not known here.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;
