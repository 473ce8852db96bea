//! Errors of the RabbitMQ transport. None of them ever holds a password.

use std::time::Duration;

use tidings::bridge::TransportError;

/// Setting up or using the RabbitMQ transport failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A broker URL could not be parsed.
    #[error("invalid AMQP URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No broker could be reached in time.
    #[error("could not connect to {urls} within {timeout:?}: {last_error}")]
    Connect {
        /// The URLs tried, passwords redacted.
        urls: String,
        /// How long it tried.
        timeout: Duration,
        /// The last failure.
        last_error: String,
    },
    /// The broker refused a declaration or deletion (an exchange or queue exists with other
    /// settings, say).
    #[error("{what} failed: {reason}")]
    Topology {
        /// What was attempted.
        what: String,
        /// The broker's reason.
        reason: String,
    },
    /// A name is longer than AMQP's 255-byte limit.
    #[error("`{0}…` is longer than the 255 bytes AMQP allows")]
    NameTooLong(String),
    /// A request got no reply in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The responder failed to handle a request.
    #[error("the responder failed: {0}")]
    Remote(String),
    /// A reply or request could not be encoded or decoded.
    #[error("could not encode or decode a message: {0}")]
    Codec(#[from] serde_json::Error),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Maps a broker's refusal of `what` to [`Error::Topology`].
pub(crate) fn refused(what: String) -> impl FnOnce(lapin::Error) -> Error {
    move |error| Error::Topology {
        what,
        reason: error.to_string(),
    }
}

/// `name` as an AMQP short string, or an error naming it.
pub(crate) fn short(name: &str) -> Result<lapin::types::ShortString, Error> {
    lapin::types::ShortString::try_new(name).map_err(|_| {
        let prefix: String = name.chars().take(32).collect();
        Error::NameTooLong(prefix)
    })
}

impl From<Error> for TransportError {
    fn from(error: Error) -> Self {
        match error {
            Error::Transport(error) => error,
            Error::NameTooLong(_) => TransportError::Rejected(error.to_string()),
            other => TransportError::Other(Box::new(other)),
        }
    }
}
