//! Errors of the PostgreSQL outbox, relay and inbox. None of them ever holds a password.

use tidings::bridge::TransportError;

/// Using the PostgreSQL outbox, relay or inbox failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A table name, connection string or setting is invalid; nothing was done.
    #[error("invalid: {0}")]
    Invalid(String),
    /// PostgreSQL failed or could not be reached (the text never holds a password).
    #[error("postgres: {0}")]
    Database(String),
    /// The broker did not take every row of a relay round; those stay staged.
    #[error("publishing: {0}")]
    Publish(String),
    /// An event could not be encoded as JSON; nothing was staged.
    #[error("the event could not be encoded: {0}")]
    Encode(String),
}

impl Error {
    /// `error` as text with `secret` (the connection's password) replaced by `***`.
    pub(crate) fn database(error: &tokio_postgres::Error, secret: Option<&str>) -> Error {
        let mut text = error.to_string();
        if let Some(source) = std::error::Error::source(error) {
            let source = source.to_string();
            if !text.contains(&source) {
                text = format!("{text}: {source}");
            }
        }
        Error::Database(crate::secret::scrub(&text, secret))
    }
}

impl From<tokio_postgres::Error> for Error {
    /// For errors of a client the caller made (whose password this crate never saw).
    fn from(error: tokio_postgres::Error) -> Self {
        Error::database(&error, None)
    }
}

impl From<Error> for TransportError {
    fn from(error: Error) -> Self {
        match error {
            Error::Database(reason) => TransportError::Disconnected(reason),
            other => TransportError::Other(Box::new(other)),
        }
    }
}
