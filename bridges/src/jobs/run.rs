//! Running one job: decoding its data, calling the handler under the timeout, and recording
//! the outcome (with the custom backoff and the events it causes).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tidings::trace::{TraceContext, TRACEPARENT, TRACESTATE};
use tracing::Instrument;

use super::context::{Backend, ContextInner, JobContext};
use super::error::{Error, JobFailure};
use super::events::Sink;
use super::location::Location;
use super::Job;
use crate::redis_connection::Any;

pub(super) type Handler<J> = Arc<
    dyn Fn(
            J,
            JobContext,
        ) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, JobFailure>> + Send>>
        + Send
        + Sync,
>;

/// The longest stored options read for a trace context, in bytes (BullMQ's own are well under
/// a kilobyte; the carrier is two short headers).
const MAX_OPTIONS_READ: usize = 64 * 1024;

pub(super) type BackoffFn = Arc<dyn Fn(&str, u32, &str) -> Option<Duration> + Send + Sync>;

/// Starts a BullMQ worker with the options and processor fixed at `start`.
pub(super) type Make = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Arc<bullmq::Worker>, bullmq::Error>> + Send>>
        + Send
        + Sync,
>;

/// The BullMQ worker in use (replaced when its connections went silent), and what must carry
/// over to a replacement.
pub(super) struct Current {
    pub(super) worker: Mutex<Arc<bullmq::Worker>>,
    pub(super) paused: AtomicBool,
    pub(super) closing: AtomicBool,
}

impl Current {
    pub(super) fn get(&self) -> Arc<bullmq::Worker> {
        self.worker.lock().clone()
    }
}

/// What each job's run needs.
pub(super) struct Shared<J> {
    pub(super) handler: Handler<J>,
    pub(super) location: Arc<Location>,
    pub(super) keys: bullmq::QueueKeys,
    pub(super) timeout: Option<Duration>,
    pub(super) sink: Option<Sink>,
    pub(super) backoff: Option<BackoffFn>,
    /// Jobs whose outcome is being recorded, for the events: name, attempt, whether a retry
    /// follows a failure.
    pub(super) finishing: Mutex<HashMap<String, (String, u32, bool)>>,
    /// A connection of our own, opened when first needed and opened again after a command on
    /// it timed out (a silent path is never noticed by the connection manager).
    pub(super) raw: tokio::sync::Mutex<Option<Any>>,
}

pub(super) enum Outcome {
    Done(serde_json::Value),
    Failed(JobFailure),
    TimedOut(Duration),
    Cut,
}

impl<J: Job> Shared<J> {
    pub(super) async fn raw(&self) -> Result<Any, Error> {
        let mut raw = self.raw.lock().await;
        if let Some(connection) = raw.as_ref() {
            return Ok(connection.clone());
        }
        let connection = if self.location.cluster.is_empty() {
            let redis_error = |e| self.location.redis_error(e);
            let client = redis::Client::open(self.location.address()).map_err(redis_error)?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(5)))
                .set_response_timeout(Some(Duration::from_secs(5)))
                .set_number_of_retries(2);
            let manager = client
                .get_connection_manager_with_config(config)
                .await
                .map_err(redis_error)?;
            Any::Manager(manager)
        } else {
            // A cluster connection reconnects by itself, node by node.
            self.location.open(Duration::from_secs(5)).await?
        };
        *raw = Some(connection.clone());
        Ok(connection)
    }

    /// Drops the connection of our own (the master moved): the next use opens one where the
    /// location points now.
    pub(super) async fn forget_raw(&self) {
        *self.raw.lock().await = None;
    }

    /// BullMQ's client reads data and options that fail to parse as null and as no options.
    /// Those are checked against the stored text, so a job is never run on what it was not
    /// given. `Err(None)`: Redis could not be asked (the job goes back to waiting).
    pub(super) async fn decode(&self, job: &bullmq::Job) -> Result<J, Option<String>> {
        let data = job.data();
        let plain_options = looks_unset(job.opts());
        if data.is_null() || plain_options {
            let [data, options] = self.stored(job.id(), ["data", "opts"]).await.map_err(|e| {
                tracing::warn!(queue = %self.location.name, error = %e, "a job could not be read");
                None
            })?;
            if let Some(Err(e)) = options.map(|o| serde_json::from_str::<bullmq::JobOptions>(&o)) {
                return Err(Some(format!("the job's options are not valid: {e}")));
            }
            if let Some(Err(e)) = data.map(|d| serde_json::from_str::<serde_json::Value>(&d)) {
                return Err(Some(format!("the job's data is not JSON: {e}")));
            }
        }
        // Decoded from the job's value in place, not from a copy of it.
        J::deserialize(data).map_err(|e| {
            Some(format!(
                "the job's data does not decode as `{}`: {e}",
                std::any::type_name::<J>()
            ))
        })
    }

    /// Fields of the job's hash as stored (`data`, `opts`), asking twice (a connection cut
    /// since the last command fails the first).
    pub(super) async fn stored<const N: usize>(
        &self,
        id: &str,
        fields: [&str; N],
    ) -> Result<[Option<String>; N], Error> {
        let mut tries = 0;
        loop {
            let mut raw = self.raw().await?;
            let read = redis::cmd("HMGET")
                .arg(self.keys.job_key(id))
                .arg(&fields[..])
                .query_async::<Vec<Option<String>>>(&mut raw)
                .await
                .and_then(|values| {
                    <[Option<String>; N]>::try_from(values).map_err(|values| {
                        redis::RedisError::from((
                            redis::ErrorKind::Parse,
                            "HMGET answered with another number of fields",
                            format!("{} for {N}", values.len()),
                        ))
                    })
                });
            match read {
                Ok(fields) => return Ok(fields),
                Err(e) => {
                    if e.is_timeout() {
                        *self.raw.lock().await = None;
                    }
                    tries += 1;
                    if tries == 2 {
                        return Err(self.location.redis_error(e));
                    }
                }
            }
        }
    }

    /// Runs `job` in a `process {queue}` span (kind consumer, OpenTelemetry's messaging
    /// attributes) that continues the trace a producer with telemetry stored in the job.
    pub(super) async fn run(
        &self,
        job: bullmq::Job,
        token: bullmq::worker::CancellationToken,
    ) -> Result<serde_json::Value, bullmq::Error> {
        let queue = &self.location.name;
        let span = tracing::info_span!(
            "tidings.job",
            job = job.name(),
            id = job.id(),
            attempt = job.attempts_made() + 1,
            otel.name = %format_args!("process {queue}"),
            otel.kind = "consumer",
            messaging.system = "bullmq",
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.destination.name = %queue,
            messaging.message.id = job.id(),
        );
        // Only a span that can continue a trace is worth the one more read per job.
        let trace = match tidings::trace::can_continue(&span) {
            true => self.carried_trace(job.id()).await,
            false => None,
        };
        if let Some(trace) = &trace {
            trace.make_parent_of(&span);
        }
        self.run_in_span(job, token, trace).instrument(span).await
    }

    /// The trace context in the job's stored options: BullMQ's telemetry keeps its
    /// propagator's carrier, as JSON text, in the field `tm` (`opts.telemetry.metadata`).
    /// Anything unreadable is no context: the job runs in a new trace.
    async fn carried_trace(&self, id: &str) -> Option<TraceContext> {
        #[derive(serde::Deserialize)]
        struct Stored {
            tm: Option<String>,
        }
        let [options] = self.stored(id, ["opts"]).await.ok()?;
        let options = options.filter(|o| o.len() <= MAX_OPTIONS_READ)?;
        let carrier = serde_json::from_str::<Stored>(&options).ok()?.tm?;
        let carrier: HashMap<String, serde_json::Value> = serde_json::from_str(&carrier).ok()?;
        let field = |name| carrier.get(name).and_then(|v| v.as_str());
        TraceContext::parse(field(TRACEPARENT)?, field(TRACESTATE))
    }

    async fn run_in_span(
        &self,
        job: bullmq::Job,
        token: bullmq::worker::CancellationToken,
        trace: Option<TraceContext>,
    ) -> Result<serde_json::Value, bullmq::Error> {
        let id = job.id().to_owned();
        let name = job.name().to_owned();
        let attempt = job.attempts_made() + 1;
        let attempts = job.opts().attempts.unwrap_or(1).max(1);
        let custom = match &job.opts().backoff {
            Some(bullmq::types::BackoffStrategy::Custom(kind)) => Some(kind.clone()),
            _ => None,
        };
        let outcome = match self.decode(&job).await {
            Err(Some(reason)) => Outcome::Failed(JobFailure::fatal(reason)),
            Err(None) => Outcome::Cut,
            Ok(data) => {
                let context = JobContext {
                    inner: Arc::new(ContextInner {
                        location: self.location.clone(),
                        id: id.clone(),
                        name: name.clone(),
                        attempt,
                        attempts,
                        job: Backend::Redis(tokio::sync::Mutex::new(job)),
                        sink: self.sink.clone(),
                        trace,
                    }),
                };
                let handled = (self.handler)(data, context);
                let timeout = async {
                    match self.timeout {
                        Some(timeout) => {
                            tokio::time::sleep(timeout).await;
                            timeout
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    result = handled => match result {
                        Ok(value) => Outcome::Done(value),
                        Err(failure) => Outcome::Failed(failure),
                    },
                    timeout = timeout => Outcome::TimedOut(timeout),
                    () = token.cancelled() => Outcome::Cut,
                }
            }
        };
        let (result, will_retry) = match outcome {
            Outcome::Done(value) => (Ok(value), false),
            // Cut off by `close`'s deadline, or unreadable: back to waiting without counting
            // an attempt (BullMQ moves a job the handler reports rate-limited back to wait).
            Outcome::Cut => return Err(bullmq::Error::RateLimited { delay_ms: 0 }),
            Outcome::TimedOut(after) => {
                let reason = format!("timed out after {after:?}");
                let retry = attempt < attempts && self.custom_retries(custom, attempt, &reason);
                (Err(bullmq::Error::ProcessingError(reason)), retry)
            }
            Outcome::Failed(failure) if failure.fatal => {
                (Err(bullmq::Error::Unrecoverable(failure.reason)), false)
            }
            Outcome::Failed(failure) => {
                let retry =
                    attempt < attempts && self.custom_retries(custom, attempt, &failure.reason);
                (Err(bullmq::Error::ProcessingError(failure.reason)), retry)
            }
        };
        if let Err(error) = &result {
            // An event on the job's span (and a log line): retries and final failures show in
            // the trace.
            tracing::warn!(error = %error, retry = will_retry, "the job failed");
        }
        if self.sink.is_some() {
            self.finishing
                .lock()
                .insert(id, (name, attempt, will_retry));
        }
        result
    }

    /// Whether a custom backoff strategy (if the job has one) allows another attempt: asked as
    /// BullMQ asks it, with the attempts made.
    pub(super) fn custom_retries(
        &self,
        custom: Option<String>,
        attempt: u32,
        reason: &str,
    ) -> bool {
        match (custom, &self.backoff) {
            (Some(kind), Some(strategy)) => strategy(&kind, attempt, reason).is_some(),
            _ => true,
        }
    }

    pub(super) fn finished(&self, id: &str) -> Option<(String, u32, bool)> {
        self.finishing.lock().remove(id)
    }
}

/// Whether `options` are what BullMQ's client makes of options it could not parse: none set.
pub(super) fn looks_unset(options: &bullmq::JobOptions) -> bool {
    // The usual fields first, so most jobs answer without serializing.
    let common = options.attempts.is_some()
        || options.priority.is_some()
        || options.delay.is_some()
        || options.backoff.is_some()
        || options.timestamp.is_some()
        || options.job_id.is_some()
        || options.remove_on_complete.is_some()
        || options.remove_on_fail.is_some();
    !common
        && serde_json::to_value(options)
            .map(|v| v.as_object().is_some_and(|o| o.is_empty()))
            .unwrap_or(false)
}
