//! Bus events into job queues, through the bridge core's `Outbound`.

use std::sync::Arc;

use tidings::bridge::{Consumer, Delivery, Endpoint, Outgoing, Transport, TransportError};

use super::error::Error;
use super::location::{check_name, Location};
use super::options::JobOptions;

/// A publish-only [`Transport`] that adds each message as a job: the destination is the
/// queue, the event name the job's name, the JSON payload its data, and the envelope's id its
/// job id, so a publish retried after a lost reply adds nothing twice. A publish is confirmed
/// once Redis stored the job; each batch is added in one transaction.
///
/// Use it with [`Outbound`](tidings::bridge::Outbound) to run work in the background when an
/// event happens; a [`Worker`](super::Worker) of the event's type takes the jobs.
///
/// ```no_run
/// use tidings::bridge::Outbound;
/// use tidings::prelude::*;
/// use tidings_bridges::jobs::JobTransport;
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
/// #[event(name = "email.send")]
/// struct SendEmail { to: String }
///
/// #[derive(Debug, Clone, EventSet)]
/// enum App { SendEmail(SendEmail) }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::<App>::new();
/// let jobs = JobTransport::new("redis://127.0.0.1:6379");
/// let outbound = Outbound::builder(&bus, jobs).forward::<SendEmail>().destination("email").build();
/// bus.emit_async(SendEmail { to: "ada@example.com".into() }).await?;
/// # Ok(()) }
/// ```
///
/// It does not consume: a job is settled by its handler's return, with attempts, backoff and
/// a lock the worker renews, where a bridge consumer hands out deliveries to acknowledge or
/// return at will; and job queues order by priority, not by key. So job queues do not run
/// the bridge conformance suite; [`consume`](Transport::consume) refuses, and jobs are taken
/// by a [`Worker`](super::Worker).
#[derive(Clone)]
pub struct JobTransport {
    location: Location,
    options: bullmq::JobOptions,
    /// The largest job data it adds (the server's `proto-max-bulk-len`).
    max_message: usize,
    /// Made on first use, and again once Sentinel names another master.
    producer: Arc<tokio::sync::Mutex<Option<Arc<bullmq::FlowProducer>>>>,
}

impl std::fmt::Debug for JobTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobTransport")
            .field("url", &crate::secret::redact(&self.location.url))
            .field("prefix", &self.location.prefix)
            .finish()
    }
}

impl JobTransport {
    /// Adds jobs to queues on the Redis at `url`, key prefix `bull`; connects on first use.
    pub fn new(url: &str) -> JobTransport {
        JobTransport {
            location: Location::new(url, ""),
            options: bullmq::JobOptions::default(),
            // Redis's default `proto-max-bulk-len`.
            max_message: 512 << 20,
            producer: Arc::default(),
        }
    }

    /// Options for every job it adds (attempts, backoff, priority...); the job id is always
    /// the envelope's.
    pub fn options(mut self, options: &JobOptions) -> Result<JobTransport, Error> {
        self.options = options.to_bullmq()?;
        Ok(self)
    }

    /// Messages whose payload (the job's data) is larger than this are refused with
    /// [`TransportError::Rejected`] instead of being added (default 512 MiB, Redis's default
    /// `proto-max-bulk-len`; set it to the server's when that is lower): a server that reads
    /// an argument over its limit closes the connection, failing the batch's whole
    /// transaction, and the same job would fail every retry.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> JobTransport {
        self.max_message = bytes;
        self
    }

    /// The key prefix (`bull` by default).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> JobTransport {
        self.location.prefix = prefix.into();
        self
    }

    /// Finds the master through Sentinel and follows a failover (see
    /// [`JobQueueBuilder::sentinels`](super::JobQueueBuilder::sentinels)).
    #[must_use]
    pub fn sentinels(mut self, sentinels: &[&str], master: &str) -> JobTransport {
        self.location.sentinel = Some(crate::redis_connection::Sentinel {
            sentinels: sentinels.iter().map(|s| (*s).to_owned()).collect(),
            master: master.to_owned(),
        });
        self
    }

    /// Adds jobs on a Redis Cluster seeded by the URL and `nodes`; the prefix needs a hash
    /// tag (see [`JobQueueBuilder::cluster`](super::JobQueueBuilder::cluster)).
    #[must_use]
    pub fn cluster(mut self, nodes: &[&str]) -> JobTransport {
        self.location.cluster = nodes.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    async fn producer(&self) -> Result<Arc<bullmq::FlowProducer>, Error> {
        let mut slot = self.producer.lock().await;
        // Behind Sentinel, on the master Sentinel names (see `Location::recheck`).
        if slot.is_some() && self.location.recheck().await? {
            *slot = None;
        }
        if let Some(producer) = slot.as_ref() {
            return Ok(Arc::clone(producer));
        }
        self.location.check_prefix()?;
        // Fails in seconds where BullMQ's client would retry for minutes.
        self.location.probe().await?;
        let producer = bullmq::FlowProducer::with_options(bullmq::FlowProducerOptions {
            connection: self.location.connection(),
            prefix: Some(self.location.prefix.clone()),
        })
        .await
        .map_err(|e| self.location.error(e))?;
        let producer = Arc::new(producer);
        *slot = Some(Arc::clone(&producer));
        Ok(producer)
    }

    fn job(&self, outgoing: &Outgoing) -> Result<bullmq::FlowJob, TransportError> {
        let envelope = &outgoing.envelope;
        if envelope.payload.len() > self.max_message {
            return Err(TransportError::Rejected(format!(
                "the job's data is {} bytes, over the limit of {} (max_message_size: the \
                 server's proto-max-bulk-len)",
                envelope.payload.len(),
                self.max_message
            )));
        }
        let data: serde_json::Value = serde_json::from_slice(&envelope.payload)
            .map_err(|e| TransportError::Rejected(format!("a job's data must be JSON: {e}")))?;
        check_name(&outgoing.destination).map_err(|e| TransportError::Rejected(e.to_string()))?;
        let mut options = self.options.clone();
        options.job_id = None;
        if !envelope.id.is_empty()
            && !envelope.id.contains(':')
            && envelope.id.parse::<u64>().is_err()
        {
            options.job_id = Some(envelope.id.clone());
        }
        bullmq::FlowJob::new(envelope.name.clone(), outgoing.destination.clone(), data)
            .map(|job| job.options(options))
            .map_err(|e| TransportError::Rejected(e.to_string()))
    }
}

impl Transport for JobTransport {
    const SYSTEM: &'static str = "bullmq";
    type Consumer = NoConsumer;

    async fn publish(&self, batch: &[Outgoing]) -> Vec<Result<(), TransportError>> {
        let mut results: Vec<Result<(), TransportError>> = Vec::with_capacity(batch.len());
        let mut jobs = Vec::new();
        // Where the jobs sent are in the batch.
        let mut sent = Vec::new();
        for (index, outgoing) in batch.iter().enumerate() {
            match self.job(outgoing) {
                Ok(job) => {
                    sent.push(index);
                    jobs.push(job);
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if jobs.is_empty() {
            return results;
        }
        let added = match self.producer().await {
            Ok(producer) => producer
                .add_bulk(jobs)
                .await
                .map(drop)
                .map_err(|e| self.location.error(e)),
            Err(e) => Err(e),
        };
        if let Err(e) = added {
            // The failure is marked on the location: behind Sentinel, the next batch asks
            // where the master is first (`producer`).
            // One transaction: none of them was added.
            let reason = e.to_string();
            for index in sent {
                results[index] = Err(TransportError::Disconnected(reason.clone()));
            }
        }
        results
    }

    /// Checks the queue name (BullMQ's rule: not empty, no `:`) and that Redis answers, so a
    /// bad name or an unreachable server shows here rather than at the first publish. A job
    /// queue needs nothing created in Redis beforehand.
    async fn declare(&self, source: &Endpoint) -> Result<(), TransportError> {
        check_name(&source.name).map_err(|e| TransportError::Rejected(e.to_string()))?;
        self.producer()
            .await
            .map(drop)
            .map_err(|e| TransportError::Disconnected(e.to_string()))
    }

    async fn consume(&self, source: &Endpoint) -> Result<NoConsumer, TransportError> {
        Err(TransportError::Rejected(format!(
            "`{}`: job queues are consumed by a jobs::Worker, not an inbound bridge",
            source.name
        )))
    }
}

/// The consumer [`JobTransport`] never returns.
#[derive(Debug)]
pub struct NoConsumer(());

impl Consumer for NoConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, TransportError>> {
        None
    }
}
