//! Errors of the Kafka transport, and how librdkafka's errors map onto the bridge core's.
//! None of them ever holds a password.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tidings::bridge::TransportError;

use super::context::ClientCtx;

/// Setting up the Kafka transport failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// librdkafka refused the configuration.
    #[error("invalid Kafka configuration: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn config(context: &ClientCtx, error: &KafkaError) -> Self {
        Error::Config(context.scrub(&error.to_string()))
    }
}

/// A librdkafka error as a [`TransportError`]: retryable for what a later attempt may
/// fix (no broker, time-outs, leader changes), `Unroutable` for a missing topic, `Rejected`
/// for what the broker will never take.
pub(crate) fn classify(context: &ClientCtx, error: &KafkaError) -> TransportError {
    use RDKafkaErrorCode as C;
    let text = context.scrub(&error.to_string());
    match error.rdkafka_error_code() {
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition) => {
            TransportError::Unroutable(text)
        }
        Some(
            C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::InvalidMessage
            | C::InvalidRecord
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::InvalidTopic
            | C::InvalidRequiredAcks
            | C::UnsupportedForMessageFormat
            | C::InvalidArgument,
        ) => TransportError::Rejected(text),
        Some(C::Fatal) => TransportError::Rejected(text),
        _ => TransportError::Disconnected(text),
    }
}
