//! [`ConsumerCtx`]: a consumer's librdkafka context, which keeps the offset book through
//! rebalances and reads the consumer lag from librdkafka's statistics.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{Offset, Statistics, TopicPartitionList};
use tidings::bridge::Lag;

use super::config::StartFrom;
use super::context::ClientCtx;
use super::offsets::{Command, State};
use super::wire;

/// The consumer's librdkafka context: the transport's, plus rebalance handling.
pub(crate) struct ConsumerCtx {
    pub(super) shared: ClientCtx,
    pub(super) start: StartFrom,
    /// Bounds the blocking calls made in callbacks.
    pub(super) timeout: Duration,
    pub(super) state: Mutex<State>,
    pub(super) commands: Mutex<std_mpsc::Receiver<Command>>,
    /// Summed from librdkafka's statistics, once a second.
    pub(super) lag: Lag,
    /// The topic consumed, for the statistics callback (which must not take `state`: it may
    /// run inside a call made with `state` held).
    pub(super) topic: String,
}

impl ConsumerCtx {
    pub(super) fn drain(&self, consumer: &BaseConsumer<ConsumerCtx>) {
        let commands = self.commands.lock();
        let mut state = self.state.lock();
        while let Ok(command) = commands.try_recv() {
            state.apply(consumer, command);
        }
    }
}

impl ClientContext for ConsumerCtx {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.shared.log(level, facility, message);
    }

    fn stats(&self, statistics: Statistics) {
        // With no broker up, the last watermarks are stale: the lag is not known.
        let up = statistics.brokers.values().any(|b| b.state == "UP");
        self.lag
            .set(up.then(|| lag_of(&statistics, &self.topic)).flatten());
        self.shared.stats(statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.shared.error(error, reason);
    }
}

/// The consumer lag of `topic` in `statistics`: over the partitions this consumer is
/// assigned, each one's high watermark minus the group's committed offset (librdkafka's
/// `consumer_lag`, as `kafka-consumer-groups` reports lag); `None` while no partition's is
/// known.
fn lag_of(statistics: &Statistics, topic: &str) -> Option<u64> {
    let partitions = &statistics.topics.get(topic)?.partitions;
    partitions
        .values()
        // -1: librdkafka's "unassigned" pseudo-partition, or a lag not known yet.
        .filter(|p| p.partition >= 0 && p.desired)
        .filter_map(|p| u64::try_from(p.consumer_lag).ok())
        .reduce(u64::saturating_add)
}

impl ConsumerContext for ConsumerCtx {
    /// rdkafka's own rebalance, written with its safe calls, plus one step: with
    /// [`StartFrom::Timestamp`], newly assigned partitions that have no committed offset
    /// start at the first message at or after the time.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let StartFrom::Timestamp(time) = self.start {
                    self.start_at(consumer, list, time);
                }
                self.pre_rebalance(consumer, &Rebalance::Assign(list));
                let assigned = if cooperative {
                    consumer.incremental_assign(list)
                } else {
                    consumer.assign(list)
                };
                self.post_rebalance(consumer, &Rebalance::Assign(list));
                assigned
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.pre_rebalance(consumer, &Rebalance::Revoke(list));
                let revoked = if cooperative {
                    consumer.incremental_unassign(list)
                } else {
                    consumer.unassign()
                };
                self.post_rebalance(consumer, &Rebalance::Revoke(list));
                revoked
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                tracing::warn!(%code, "rebalance error; librdkafka drops the assignment");
                let _ = consumer.unassign();
                Ok(())
            }
        };
        if let Err(error) = result {
            tracing::warn!(%error, "applying a rebalance failed");
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            // Apply what was settled so far, commit it, then forget the partitions.
            self.drain(consumer);
            commit(consumer);
            let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
            tracing::debug!(?partitions, "partitions revoked");
            self.state.lock().revoke(&partitions);
        }
    }
}

impl ConsumerCtx {
    /// Sets the start of each partition of `list` that has no committed offset to the first
    /// message at or after `time` (its end when there is none). On failure the partitions
    /// start as `auto.offset.reset` says (earliest), which loses nothing.
    fn start_at(
        &self,
        consumer: &BaseConsumer<Self>,
        list: &mut TopicPartitionList,
        time: SystemTime,
    ) {
        let committed = match consumer.committed_offsets(list.clone(), self.timeout) {
            Ok(committed) => committed,
            Err(error) => {
                tracing::warn!(%error, "committed offsets unknown; starting from the earliest");
                return;
            }
        };
        let mut query = TopicPartitionList::new();
        for e in committed.elements() {
            if !matches!(e.offset(), Offset::Offset(_)) {
                let at = Offset::Offset(wire::millis(time));
                let _ = query.add_partition_offset(e.topic(), e.partition(), at);
            }
        }
        if query.count() == 0 {
            return;
        }
        match consumer.offsets_for_times(query, self.timeout) {
            Ok(found) => {
                for e in found.elements() {
                    let _ = list.set_partition_offset(e.topic(), e.partition(), e.offset());
                }
            }
            Err(error) => {
                tracing::warn!(%error, "offsets for the start time unknown; starting from the earliest");
            }
        }
    }
}

pub(super) fn commit(consumer: &BaseConsumer<ConsumerCtx>) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing stored since the last commit.
        Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) => {}
        Err(error) => {
            tracing::warn!(%error, "committing offsets failed; handled messages may come again")
        }
    }
}
