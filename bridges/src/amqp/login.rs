//! Keeping the password out of lapin's own TRACE logs.
//!
//! lapin logs every frame it sends at TRACE level, from its I/O thread, to the process's global
//! `tracing` subscriber; the login frame (`connection.start-ok`) carries the password, so with
//! lapin's TRACE events enabled the password would be in the logs as a list of bytes. Nothing
//! in this process can filter events of another library's thread on their way to the user's
//! subscriber, and lapin offers no way in below its frame log. So when lapin's TRACE events are
//! enabled at connect time, lapin never gets the password: it logs in through a relay on
//! loopback with a random placeholder of the same length, and the relay, which holds the
//! connection to the broker (with TLS when the URL says `amqps`), puts the password in place of
//! the placeholder in the login frame as it passes. The relay then copies bytes both ways until
//! either side closes. Without TRACE for lapin nothing is relayed: lapin connects directly and
//! logs no frame.
//!
//! The relay accepts exactly one connection, from lapin, within the connect timeout. A local
//! process that connected first would reach the broker unauthenticated (it does not know the
//! placeholder), and lapin's connect would fail and be retried.
//!
//! Who touches what: the relay task owns both sockets; nothing is shared.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use async_compat::Compat;
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use lapin::tcp::{AsyncTcpStream, OwnedTLSConfig};
use lapin::uri::{AMQPScheme, AMQPUri, SASLMechanism};
use tokio::net::{TcpListener, TcpStream};

use super::config::Tls;

/// Whether lapin would log its login frame (TRACE events of its I/O loop).
pub(crate) fn lapin_logs_frames() -> bool {
    tracing::enabled!(target: "lapin::io_loop", tracing::Level::TRACE)
}

/// The URI lapin connects to instead of `uri`: a relay on loopback, logged in with a
/// placeholder password. `None` when `uri` has no password to hide.
pub(crate) async fn relay(
    uri: &AMQPUri,
    tls: &Tls,
    timeout: Duration,
) -> io::Result<Option<AMQPUri>> {
    let password = uri.authority.userinfo.password.clone();
    if password.is_empty() {
        return Ok(None);
    }
    let placeholder: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(password.len())
        .collect();
    let swap = Swap::new(uri, &placeholder, &password);
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let local = listener.local_addr()?;
    let upstream = Upstream {
        host: uri.authority.host.clone(),
        port: uri.authority.port,
        tls: (uri.scheme == AMQPScheme::AMQPS).then(|| tls.to_lapin()),
    };
    tokio::spawn(async move {
        let Ok(Ok((lapin, _))) = tokio::time::timeout(timeout, listener.accept()).await else {
            return;
        };
        drop(listener);
        match tokio::time::timeout(timeout, upstream.connect()).await {
            Ok(Ok(broker)) => pump(lapin, broker, swap).await,
            Ok(Err(error)) => tracing::debug!(%error, "the login relay cannot reach the broker"),
            Err(_) => tracing::debug!("the login relay timed out reaching the broker"),
        }
    });
    Ok(Some(relayed(uri, local, &placeholder)))
}

/// `uri` pointed at the relay at `local`, plain (the relay does the TLS), with `placeholder`
/// for a password.
fn relayed(uri: &AMQPUri, local: SocketAddr, placeholder: &str) -> AMQPUri {
    let mut relayed = uri.clone();
    relayed.scheme = AMQPScheme::AMQP;
    relayed.authority.host = local.ip().to_string();
    relayed.authority.port = local.port();
    relayed.authority.userinfo.password = placeholder.to_owned();
    relayed
}

/// Where the relay connects.
struct Upstream {
    host: String,
    port: u16,
    tls: Option<OwnedTLSConfig>,
}

type Broker = AsyncTcpStream<Compat<TcpStream>>;

impl Upstream {
    async fn connect(self) -> io::Result<Broker> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        tcp.set_nodelay(true)?;
        let plain = AsyncTcpStream::Plain(Compat::new(tcp));
        match &self.tls {
            Some(tls) => plain.into_tls(&self.host, tls.as_ref()).await,
            None => Ok(plain),
        }
    }
}

/// The one replacement the relay makes: `find` becomes `with` (of the same length) once, in
/// the first [`SWAP_WINDOW`] bytes lapin sends.
struct Swap {
    find: Vec<u8>,
    with: Vec<u8>,
}

/// The login frame comes right after the protocol header; past this many bytes the relay stops
/// looking.
const SWAP_WINDOW: usize = 64 * 1024;

impl Swap {
    /// For PLAIN (lapin's default) the whole `\0user\0password` response is matched, so even a
    /// one-character placeholder cannot match anything else; for other mechanisms the
    /// placeholder alone.
    fn new(uri: &AMQPUri, placeholder: &str, password: &str) -> Swap {
        let user = &uri.authority.userinfo.username;
        match uri.query.auth_mechanism.unwrap_or_default() {
            SASLMechanism::Plain => Swap {
                find: format!("\0{user}\0{placeholder}").into_bytes(),
                with: format!("\0{user}\0{password}").into_bytes(),
            },
            _ => Swap {
                find: placeholder.as_bytes().to_vec(),
                with: password.as_bytes().to_vec(),
            },
        }
    }

    /// Replaces the first `find` in `data`, if it is there; whether it was.
    fn apply(&self, data: &mut [u8]) -> bool {
        let Some(at) = data
            .windows(self.find.len())
            .position(|window| window == self.find.as_slice())
        else {
            return false;
        };
        data[at..at + self.with.len()].copy_from_slice(&self.with);
        true
    }
}

/// The outbound side of the relay: what to send for each chunk lapin wrote, with the swap
/// made even when `find` is cut across chunks.
struct Swapper {
    swap: Swap,
    /// Bytes held back because they may be the start of `find`.
    held: Vec<u8>,
    /// Bytes seen so far, up to the window.
    seen: usize,
    done: bool,
}

impl Swapper {
    fn new(swap: Swap) -> Self {
        Swapper {
            swap,
            held: Vec::new(),
            seen: 0,
            done: false,
        }
    }

    /// Takes `chunk` and appends to `out` what can be sent now.
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.done {
            out.extend_from_slice(chunk);
            return;
        }
        self.seen += chunk.len();
        self.held.extend_from_slice(chunk);
        self.done = self.swap.apply(&mut self.held) || self.seen > SWAP_WINDOW;
        // Unless done, keep back an end that is the start of `find` (cut off by a short
        // read), and only that: lapin may be waiting for the broker's answer to what it sent.
        let keep = if self.done {
            0
        } else {
            partial_match(&self.held, &self.swap.find)
        };
        out.extend(self.held.drain(..self.held.len() - keep));
    }

    /// What is still held, at the end of the stream.
    fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// The length of the longest end of `data` that is a proper start of `find`.
fn partial_match(data: &[u8], find: &[u8]) -> usize {
    (1..find.len().min(data.len() + 1))
        .rev()
        .find(|&k| data.ends_with(&find[..k]))
        .unwrap_or(0)
}

/// Copies lapin's bytes to the broker (swapping the password in on the way) and the broker's
/// to lapin, until either side closes.
async fn pump(lapin: TcpStream, broker: Broker, swap: Swap) {
    if lapin.set_nodelay(true).is_err() {
        return;
    }
    let (mut from_lapin, mut to_lapin) = Compat::new(lapin).split();
    let (mut from_broker, mut to_broker) = broker.split();
    let outbound = async {
        let mut swapper = Swapper::new(swap);
        let mut buf = vec![0u8; 16 * 1024];
        let mut out = Vec::with_capacity(buf.len());
        loop {
            let n = from_lapin.read(&mut buf).await?;
            if n == 0 {
                to_broker.write_all(&swapper.finish()).await?;
                return to_broker.close().await;
            }
            out.clear();
            swapper.feed(&buf[..n], &mut out);
            to_broker.write_all(&out).await?;
        }
    };
    let inbound = async {
        futures_util::io::copy(&mut from_broker, &mut to_lapin).await?;
        to_lapin.close().await
    };
    // Either direction ending (a close or an error) ends the relay: both sockets are dropped,
    // so the other side sees the connection go, as it would without the relay.
    let result: io::Result<()> = tokio::select! {
        r = outbound => r,
        r = inbound => r,
    };
    if let Err(error) = result {
        tracing::debug!(%error, "the login relay's connection ended");
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn the_login_response_is_swapped_once_and_only_there() {
        let uri = AMQPUri::from_str("amqp://ada:s3cret@host:5672/%2f").expect("uri");
        let swap = Swap::new(&uri, "XXXXXX", "s3cret");
        let mut frame = b"PLAIN....\0ada\0XXXXXX...XXXXXX".to_vec();
        assert!(swap.apply(&mut frame));
        assert_eq!(frame, b"PLAIN....\0ada\0s3cret...XXXXXX");
        let mut other = b"nothing to see".to_vec();
        assert!(!swap.apply(&mut other));
    }

    #[test]
    fn lapin_gets_the_relay_and_a_placeholder_of_the_same_length() {
        let uri = AMQPUri::from_str("amqps://ada:p%C3%A4ss@broker:5671/%2f").expect("uri");
        let local = SocketAddr::from(([127, 0, 0, 1], 40_000));
        let relayed = relayed(&uri, local, "abcde");
        assert_eq!(relayed.scheme, AMQPScheme::AMQP, "the relay does the TLS");
        assert_eq!(
            (relayed.authority.host.as_str(), relayed.authority.port),
            ("127.0.0.1", 40_000)
        );
        assert_eq!(relayed.authority.userinfo.password, "abcde");
        assert_eq!(relayed.vhost, uri.vhost);
    }

    #[test]
    fn a_placeholder_cut_across_chunks_is_still_swapped() {
        let uri = AMQPUri::from_str("amqp://ada:s3cret@127.0.0.1:1/%2f").expect("uri");
        let sent = b"AMQP....PLAIN\0ada\0XXXXXX....tail";
        for size in 1..sent.len() {
            let mut swapper = Swapper::new(Swap::new(&uri, "XXXXXX", "s3cret"));
            let mut out = Vec::new();
            for chunk in sent.chunks(size) {
                swapper.feed(chunk, &mut out);
            }
            out.extend(swapper.finish());
            assert_eq!(
                out, b"AMQP....PLAIN\0ada\0s3cret....tail",
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn only_a_possible_start_of_the_pattern_is_held_back() {
        let uri = AMQPUri::from_str("amqp://ada:s3cret@127.0.0.1:1/%2f").expect("uri");
        let mut swapper = Swapper::new(Swap::new(&uri, "XXXXXX", "s3cret"));
        let mut out = Vec::new();
        // The protocol header goes out whole: lapin waits for the broker's answer to it.
        swapper.feed(b"AMQP\0\0\x09\x01", &mut out);
        assert_eq!(out, b"AMQP\0\0\x09\x01");
        out.clear();
        swapper.feed(b"PLAIN\0ad", &mut out);
        assert_eq!(out, b"PLAIN", "`\\0ad` may be the start of the response");
        assert_eq!(partial_match(b"xx\0a", b"\0ada"), 2);
        assert_eq!(partial_match(b"", b"\0ada"), 0);
    }

    #[test]
    fn past_the_window_bytes_pass_untouched() {
        let uri = AMQPUri::from_str("amqp://ada:s3cret@127.0.0.1:1/%2f").expect("uri");
        let mut swapper = Swapper::new(Swap::new(&uri, "XXXXXX", "s3cret"));
        let mut out = Vec::new();
        swapper.feed(&vec![b'.'; SWAP_WINDOW + 1], &mut out);
        swapper.feed(b"\0ada\0XXXXXX", &mut out);
        assert!(out.ends_with(b"\0ada\0XXXXXX"));
    }
}
