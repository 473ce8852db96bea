//! Errors of the job-queue module.

use std::fmt;

/// An error from a job queue or worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Redis failed or could not be reached (the message never holds a password).
    #[error("redis: {0}")]
    Redis(String),
    /// A job could not be encoded as JSON.
    #[error("the job could not be encoded: {0}")]
    Encode(String),
    /// An option or argument is invalid; nothing was sent.
    #[error("invalid: {0}")]
    Invalid(String),
    /// No job has this id.
    #[error("no job has the id `{0}`")]
    NotFound(String),
    /// A bulk add failed as a whole: no job of the batch was added.
    #[error("no job of the batch was added: {0}")]
    Bulk(String),
}

impl Error {
    /// Maps an error of the BullMQ client, replacing `secret` (the URL's password) with `***`.
    pub(crate) fn from_bullmq(error: bullmq::Error, secret: Option<&str>) -> Error {
        let text = crate::secret::scrub(&error.to_string(), secret);
        match error {
            bullmq::Error::InvalidConfig(_) => Error::Invalid(text),
            bullmq::Error::JobNotFound(id) => Error::NotFound(id),
            bullmq::Error::Serialization(_) => Error::Encode(text),
            _ => Error::Redis(text),
        }
    }
}

/// Why a job's handler failed: a reason stored with the job (`failedReason`), and whether
/// another attempt may help.
///
/// Any error converts into it with `?`; [`JobFailure::fatal`] is Bull's `UnrecoverableError`:
/// the job goes to the failed set at once, whatever attempts remain.
pub struct JobFailure {
    pub(crate) reason: String,
    pub(crate) fatal: bool,
}

impl JobFailure {
    /// A failure that is retried while attempts remain.
    pub fn new(reason: impl fmt::Display) -> JobFailure {
        JobFailure {
            reason: reason.to_string(),
            fatal: false,
        }
    }

    /// A failure that no retry can fix: the job fails now, without further attempts.
    pub fn fatal(reason: impl fmt::Display) -> JobFailure {
        JobFailure {
            reason: reason.to_string(),
            fatal: true,
        }
    }

    /// The reason stored with the job.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Whether further attempts are skipped.
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }
}

impl fmt::Debug for JobFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobFailure")
            .field("reason", &self.reason)
            .field("fatal", &self.fatal)
            .finish()
    }
}

impl<E: std::error::Error> From<E> for JobFailure {
    fn from(error: E) -> JobFailure {
        JobFailure::new(error)
    }
}
