//! How an [`AmqpTransport`](super::AmqpTransport) connects: URLs, heartbeats, TLS, windows and
//! bounds.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::AMQPUri;
use tidings::Backoff;

pub(crate) use crate::secret::{password_of, redact, scrub};

use super::error::Error;
use super::topology::QueueArgs;

/// A broker URL whose password is never shown: `Display` and `Debug` print
/// `amqp://user:***@host:port/vhost`.
#[derive(Clone)]
pub(crate) struct BrokerUrl {
    pub(crate) uri: AMQPUri,
    redacted: String,
}

impl BrokerUrl {
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        let redacted = redact(url);
        let password = password_of(url);
        let uri = AMQPUri::from_str(url).map_err(|reason| Error::InvalidUrl {
            url: redacted.clone(),
            reason: scrub(&reason, password),
        })?;
        Ok(BrokerUrl { uri, redacted })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// TLS settings for `amqps://` URLs. Without any, the system's trusted roots verify the
/// broker.
#[derive(Clone, Default)]
pub struct Tls {
    ca_pem: Option<String>,
    identity: Option<(Vec<u8>, String)>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "…"))
            .field("client_identity", &self.identity.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Tls {
    /// No extra settings: the system's roots.
    pub fn new() -> Self {
        Tls::default()
    }

    /// Trusts the certificate authorities in `pem` (for a private CA).
    #[must_use]
    pub fn ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Presents a client certificate and key (a PKCS#12 archive and its password), for
    /// brokers that require one (`auth_mechanism=external`).
    #[must_use]
    pub fn client_pkcs12(mut self, der: impl Into<Vec<u8>>, password: impl Into<String>) -> Self {
        self.identity = Some((der.into(), password.into()));
        self
    }

    pub(crate) fn to_lapin(&self) -> OwnedTLSConfig {
        OwnedTLSConfig {
            identity: self
                .identity
                .as_ref()
                .map(|(der, password)| OwnedIdentity::PKCS12 {
                    der: der.clone(),
                    password: password.clone(),
                }),
            cert_chain: self.ca_pem.clone(),
        }
    }
}

/// The settings of a transport; built by [`AmqpBuilder`](super::AmqpBuilder).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) urls: Vec<BrokerUrl>,
    pub(crate) connection_name: String,
    pub(crate) heartbeat: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect: Backoff,
    pub(crate) confirm_window: usize,
    pub(crate) publishing_channels: usize,
    pub(crate) buffer: usize,
    pub(crate) publish_timeout: Duration,
    pub(crate) max_message: usize,
    pub(crate) tls: Tls,
    pub(crate) queue_args: QueueArgs,
}

impl Config {
    pub(crate) fn new(url: BrokerUrl) -> Self {
        Config {
            urls: vec![url],
            connection_name: "tidings".to_owned(),
            heartbeat: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            reconnect: Backoff::Exponential {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(10),
            },
            confirm_window: 256,
            publishing_channels: 4,
            buffer: 10_000,
            publish_timeout: Duration::from_secs(30),
            // RabbitMQ's default `max_message_size`.
            max_message: 128 << 20,
            tls: Tls::default(),
            queue_args: QueueArgs::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_an_error_without_its_password() {
        let error = BrokerUrl::parse("amqp://guest:hunter2@host:notaport/").expect_err("invalid");
        let text = error.to_string();
        assert!(text.contains("amqp://guest:***@host:notaport/"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!format!("{error:?}").contains("hunter2"));
        // Unencoded reserved characters make the parser split the URL elsewhere: the error
        // still shows no part of the password.
        for (url, password) in [
            ("amqp://user:pa/ss@host/%2f", "pa/ss"),
            ("amqp://user:pa?ss@host/%2f", "pa?ss"),
            ("amqp://user:pa#ss@host/%2f", "pa#ss"),
            ("amqp://user:pa%zzss@host/%2f", "pa%zzss"),
        ] {
            let shown = match BrokerUrl::parse(url) {
                Ok(parsed) => format!("{parsed} {parsed:?}"),
                Err(error) => format!("{error} {error:?}"),
            };
            assert!(!shown.contains(password), "{url}: {shown}");
            assert!(!shown.contains("ss@host"), "{url}: {shown}");
        }
    }

    #[test]
    fn a_good_url_prints_without_its_password() {
        let url = BrokerUrl::parse("amqp://guest:hunter2@127.0.0.1:5672/%2f").expect("valid");
        assert_eq!(url.uri.authority.userinfo.password, "hunter2");
        assert!(!url.to_string().contains("hunter2"));
        assert!(!format!("{url:?}").contains("hunter2"));
    }

    #[test]
    fn tls_settings_do_not_print_secrets() {
        let tls = Tls::new()
            .ca_pem("-----BEGIN CERTIFICATE-----")
            .client_pkcs12(vec![1, 2, 3], "pfx-password");
        assert!(!format!("{tls:?}").contains("pfx-password"));
        let lapin = tls.to_lapin();
        assert_eq!(
            lapin.cert_chain.as_deref(),
            Some("-----BEGIN CERTIFICATE-----")
        );
        assert!(lapin.identity.is_some());
    }
}
