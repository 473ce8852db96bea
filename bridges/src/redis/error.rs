//! Errors of setting up the Redis transport. None of them ever holds a password.

use std::time::Duration;

use tidings::bridge::TransportError;

/// Setting up the Redis transport failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL could not be parsed.
    #[error("invalid Redis URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No server answered in time.
    #[error("could not connect to {url} within {timeout:?}: {last_error}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// How long it tried.
        timeout: Duration,
        /// The last failure.
        last_error: String,
    },
}

impl From<Error> for TransportError {
    fn from(error: Error) -> Self {
        match error {
            Error::Connect { .. } => TransportError::Disconnected(error.to_string()),
            Error::InvalidUrl { .. } => TransportError::Other(Box::new(error)),
        }
    }
}
