//! Request/reply over RabbitMQ: [`RpcClient`] sends a request with a correlation id and waits
//! (with a timeout) for the reply on RabbitMQ's direct reply-to queue; [`RpcServer`] consumes
//! a request queue, runs a handler, and replies to the `reply_to` of each request.
//!
//! Requests and replies are JSON. A handler's error travels back in the reply header
//! [`ERROR_HEADER`] and comes out as [`Error::Remote`]; a request that is unroutable (no
//! server queue) fails at once instead of timing out. Direct reply-to is bound to the channel
//! that sent the request, so when the connection fails, calls waiting for a reply fail with
//! [`TransportError::Disconnected`] and a new channel serves the next calls.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Confirmation};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tidings::bridge::{new_id, Consumer, Delivery, Endpoint, Transport, TransportError};
use tidings::ShutdownReport;

use tidings::Backoff;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::error::{short, Error};
use super::link::{answered, Publisher};
use super::publish::{self, Raw};
use super::topology::{Queue, Topology};
use super::transport::AmqpTransport;
use super::wire::{CORRELATION_ID, REPLY_TO};

/// Reply header that carries a handler's error.
pub const ERROR_HEADER: &str = "x-tidings-error";
/// RabbitMQ's pseudo-queue for direct replies.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

type Reply = Result<Bytes, Error>;
type Pending = Arc<Mutex<HashMap<String, (u64, oneshot::Sender<Reply>)>>>;

/// The client's channel for one connection generation.
struct ClientChannel {
    generation: u64,
    channel: Arc<Publisher>,
}

/// Sends requests and waits for their replies; cheap to share behind an `Arc`.
pub struct RpcClient {
    transport: AmqpTransport,
    timeout: Duration,
    channel: tokio::sync::Mutex<Option<ClientChannel>>,
    pending: Pending,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("timeout", &self.timeout)
            .field("pending", &self.pending.lock().len())
            .finish()
    }
}

/// Removes a call from the pending map however the call ends.
struct Forget<'a>(&'a Pending, String);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.lock().remove(&self.1);
    }
}

impl RpcClient {
    /// A client on `transport` whose calls time out after 5 s.
    pub fn new(transport: &AmqpTransport) -> Self {
        RpcClient {
            transport: transport.clone(),
            timeout: Duration::from_secs(5),
            channel: tokio::sync::Mutex::new(None),
            pending: Arc::default(),
        }
    }

    /// Sets how long a call waits for its reply, publishing included.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `request` to `exchange` (`""` for the default exchange, which routes by queue
    /// name) with `routing_key`, and decodes the reply.
    ///
    /// # Errors
    /// [`Error::Timeout`] without a reply in time, [`Error::Remote`] when the handler
    /// failed, [`Error::Transport`] when the request was unroutable or the connection
    /// failed, [`Error::Codec`] when either side's JSON did not fit.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        exchange: &str,
        routing_key: &str,
        request: &Req,
    ) -> Result<Resp, Error> {
        let payload = serde_json::to_vec(request)?;
        let reply = self
            .call_bytes(exchange, routing_key, payload.into())
            .await?;
        Ok(serde_json::from_slice(&reply)?)
    }

    /// [`call`](Self::call) with raw bytes.
    ///
    /// # Errors
    /// As [`call`](Self::call), but for the codec.
    pub async fn call_bytes(
        &self,
        exchange: &str,
        routing_key: &str,
        payload: Bytes,
    ) -> Result<Bytes, Error> {
        let deadline = Instant::now() + self.timeout;
        let (exchange, routing_key) = (short(exchange)?, short(routing_key)?);
        let (generation, channel) = self.channel(deadline).await?;
        let id = new_id();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id.clone(), (generation, tx));
        let _forget = Forget(&self.pending, id.clone());
        let properties = BasicProperties::default()
            .with_correlation_id(short(&id)?)
            .with_message_id(short(&id)?)
            .with_reply_to(DIRECT_REPLY_TO.into())
            .with_content_type("application/json".into());
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let disconnected =
            |e: lapin::Error| Error::from(TransportError::Disconnected(e.to_string()));
        // The request alone on the channel until its confirm is in, so a return is its own
        // (see `Publisher`).
        let Ok(turn) = tokio::time::timeout_at(deadline, channel.turn()).await else {
            return Err(Error::Timeout(self.timeout));
        };
        let send = turn.publish(exchange, routing_key.clone(), options, &payload, properties);
        let confirm = match tokio::time::timeout_at(deadline, send).await {
            Ok(sent) => sent.map_err(disconnected)?,
            Err(_) => return Err(Error::Timeout(self.timeout)),
        };
        match tokio::time::timeout_at(deadline, confirm).await {
            Ok(Ok(Confirmation::Ack(None))) => {}
            Ok(Ok(Confirmation::Ack(Some(_)))) => {
                return Err(TransportError::Unroutable(routing_key.to_string()).into());
            }
            Ok(Ok(_)) => {
                return Err(
                    TransportError::Rejected("the broker refused the request".into()).into(),
                );
            }
            Ok(Err(e)) => return Err(disconnected(e)),
            Err(_) => return Err(Error::Timeout(self.timeout)),
        }
        drop(turn);
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => {
                Err(TransportError::Disconnected("the reply channel closed".into()).into())
            }
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    /// The channel of the current connection, opened (with its reply consumer) when the
    /// connection changed.
    async fn channel(&self, deadline: Instant) -> Result<(u64, Arc<Publisher>), Error> {
        let live = self.transport.shared().connected_by(deadline).await?;
        let mut slot = self.channel.lock().await;
        if let Some(c) = slot.as_ref() {
            if c.generation == live.generation && c.channel.is_open() {
                return Ok((c.generation, Arc::clone(&c.channel)));
            }
        }
        let channel = answered(live.connection.create_channel()).await?;
        answered(channel.confirm_select(ConfirmSelectOptions::default())).await?;
        let options = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        let mut replies = answered(channel.basic_consume(
            DIRECT_REPLY_TO.into(),
            "".into(),
            options,
            FieldTable::default(),
        ))
        .await?;
        let pending = Arc::clone(&self.pending);
        let generation = live.generation;
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = replies.next().await {
                let props = &delivery.properties;
                let Some(id) = props.correlation_id() else {
                    continue;
                };
                let Some((_, tx)) = pending.lock().remove(id.as_str()) else {
                    continue;
                };
                let error = props
                    .headers()
                    .as_ref()
                    .and_then(|h| h.inner().get(ERROR_HEADER))
                    .map(|v| match v {
                        AMQPValue::LongString(s) => {
                            String::from_utf8_lossy(s.as_bytes()).into_owned()
                        }
                        other => format!("{other:?}"),
                    });
                let _ = tx.send(match error {
                    Some(error) => Err(Error::Remote(error)),
                    None => Ok(Bytes::from(delivery.data)),
                });
            }
            // The channel is gone: its calls will get no reply.
            pending.lock().retain(|_, (g, _)| *g != generation);
        });
        let channel = Arc::new(Publisher::new(vec![channel]));
        *slot = Some(ClientChannel {
            generation,
            channel: Arc::clone(&channel),
        });
        Ok((generation, channel))
    }
}

/// Serves requests from a queue; stops when dropped or shut down.
pub struct RpcServer {
    stop: Arc<Notify>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer").finish_non_exhaustive()
    }
}

impl RpcServer {
    /// Declares the durable queue `queue` (again after reconnects) and answers each request
    /// on it with `handler`, one at a time. A request that does not decode gets an error
    /// reply; a request without `reply_to` is acknowledged and logged.
    ///
    /// # Errors
    /// When the queue cannot be declared.
    pub async fn serve<Req, Resp, F, Fut>(
        transport: &AmqpTransport,
        queue: &str,
        handler: F,
    ) -> Result<RpcServer, Error>
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, String>> + Send + 'static,
    {
        transport
            .declare_topology(&Topology::new().queue(Queue::durable(queue)))
            .await?;
        let stop = Arc::new(Notify::new());
        let source = Endpoint::new(queue);
        let (transport, halt) = (transport.clone(), Arc::clone(&stop));
        let task = tokio::spawn(async move {
            let backoff = Backoff::Exponential {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(10),
            };
            let mut failures = 0;
            loop {
                if let Ok(mut consumer) = transport.consume(&source).await {
                    loop {
                        let next = tokio::select! {
                            next = consumer.next() => next,
                            () = halt.notified() => return,
                        };
                        let Some(Ok(delivery)) = next else { break };
                        failures = 0;
                        answer(&transport, delivery, &handler).await;
                    }
                }
                failures += 1;
                tokio::select! {
                    () = tokio::time::sleep(backoff.jittered(failures)) => {}
                    () = halt.notified() => return,
                }
            }
        });
        Ok(RpcServer {
            stop,
            task: Some(task),
        })
    }

    /// Stops taking requests and waits up to `deadline` for the one being answered. If it is
    /// not answered in time, it is stopped and counted unfinished: its request stays
    /// unacknowledged and the broker delivers it again.
    pub async fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        self.stop.notify_one();
        let Some(mut task) = self.task.take() else {
            return ShutdownReport::default();
        };
        if tokio::time::timeout(deadline, &mut task).await.is_ok() {
            return ShutdownReport::default();
        }
        task.abort();
        let _ = task.await;
        ShutdownReport::new(1)
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn answer<Req, Resp, F, Fut>(transport: &AmqpTransport, delivery: Delivery, handler: &F)
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: Fn(Req) -> Fut,
    Fut: Future<Output = Result<Resp, String>>,
{
    let headers = &delivery.message.headers;
    let Some(reply_to) = headers
        .get(REPLY_TO)
        .and_then(|r| ShortString::try_new(r.as_str()).ok())
    else {
        tracing::warn!(
            queue = &*delivery.message.origin,
            "a request without reply_to; dropped"
        );
        let _ = delivery.ack().await;
        return;
    };
    let outcome = match serde_json::from_slice::<Req>(&delivery.message.payload) {
        Ok(request) => handler(request).await.and_then(|reply| {
            serde_json::to_vec(&reply).map_err(|e| format!("cannot encode the reply: {e}"))
        }),
        Err(error) => Err(format!("bad request: {error}")),
    };
    let mut properties = BasicProperties::default().with_content_type("application/json".into());
    if let Some(id) = headers
        .get(CORRELATION_ID)
        .and_then(|id| ShortString::try_new(id.as_str()).ok())
    {
        properties = properties.with_correlation_id(id);
    }
    let payload = match outcome {
        Ok(body) => Bytes::from(body),
        Err(error) => {
            let mut table = FieldTable::default();
            table.insert(
                ERROR_HEADER.into(),
                AMQPValue::LongString(LongString::from(error.into_bytes())),
            );
            properties = properties.with_headers(table);
            Bytes::new()
        }
    };
    let reply = Raw {
        exchange: "".into(),
        routing_key: reply_to,
        payload,
        properties,
    };
    match publish::one(transport.shared(), reply).await {
        // Unroutable: the caller is gone (timed out or disconnected); nobody wants the reply.
        Ok(()) | Err(TransportError::Unroutable(_)) => {
            let _ = delivery.ack().await;
        }
        Err(error) => {
            tracing::warn!(%error, "could not send a reply; the request will be delivered again");
        }
    }
}
