//! The offset book of one consumer: which offsets of each assigned partition are still
//! unsettled, and so which offset may be stored (see `KafkaConsumer`'s "Offsets").

use std::collections::{BTreeSet, HashMap, VecDeque};

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use tidings::bridge::Incoming;

pub(super) enum Command {
    Ack(Mark),
    Nack(Mark, Box<Incoming>),
    /// A delivery dropped unsettled: it stays unsettled until the consumer goes.
    Dropped,
    Close,
}

#[derive(Clone, Copy)]
pub(super) struct Mark {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) generation: u64,
}

/// One assigned partition's unsettled offsets.
struct Partition {
    generation: u64,
    unsettled: BTreeSet<i64>,
    /// One past the highest offset received.
    next: i64,
    /// The offset stored last; before any, the one before the first offset received in this
    /// assignment (nothing below it is ours to store).
    stored: i64,
}

pub(super) struct State {
    topic: String,
    partitions: HashMap<i32, Partition>,
    generations: u64,
    /// Deliveries out and not settled.
    pub(super) out: usize,
    /// Messages to hand out before polling more: nacked ones, then ones received while paused.
    pub(super) waiting: VecDeque<(Mark, Incoming)>,
    pub(super) closing: bool,
}

impl State {
    pub(super) fn new(topic: String) -> Self {
        State {
            topic,
            partitions: HashMap::new(),
            generations: 0,
            out: 0,
            waiting: VecDeque::new(),
            closing: false,
        }
    }

    fn partition(&mut self, partition: i32) -> &mut Partition {
        let generations = &mut self.generations;
        self.partitions.entry(partition).or_insert_with(|| {
            *generations += 1;
            Partition {
                generation: *generations,
                unsettled: BTreeSet::new(),
                next: 0,
                stored: i64::MIN,
            }
        })
    }

    pub(super) fn received(&mut self, partition: i32, offset: i64) -> Mark {
        let p = self.partition(partition);
        if p.stored == i64::MIN {
            p.stored = offset - 1;
        }
        p.unsettled.insert(offset);
        p.next = p.next.max(offset + 1);
        Mark {
            partition,
            offset,
            generation: p.generation,
        }
    }

    pub(super) fn apply<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        command: Command,
    ) {
        match command {
            Command::Ack(mark) => {
                self.out = self.out.saturating_sub(1);
                let Some(upto) = self.settled(mark) else {
                    return;
                };
                match consumer.store_offset(&self.topic, mark.partition, upto) {
                    Ok(()) => {
                        if let Some(p) = self.current(mark) {
                            p.stored = upto;
                        }
                    }
                    Err(error) => tracing::debug!(
                        topic = self.topic, partition = mark.partition, %error,
                        "offset not stored (partition revoked?); the message may come again"
                    ),
                }
            }
            Command::Nack(mark, mut message) => {
                self.out = self.out.saturating_sub(1);
                if self.current(mark).is_some() {
                    message.delivery_count = message.delivery_count.saturating_add(1);
                    self.waiting.push_front((mark, *message));
                }
            }
            Command::Dropped => self.out = self.out.saturating_sub(1),
            Command::Close => self.closing = true,
        }
    }

    /// Marks `mark` settled; the offset to store now, if the settled run grew: the last one
    /// before the first offset still unsettled.
    fn settled(&mut self, mark: Mark) -> Option<i64> {
        let p = self.current(mark)?;
        p.unsettled.remove(&mark.offset);
        let upto = p.unsettled.first().map_or(p.next - 1, |first| first - 1);
        (upto > p.stored).then_some(upto)
    }

    /// The partition `mark` belongs to, if it is still in the assignment it came from.
    fn current(&mut self, mark: Mark) -> Option<&mut Partition> {
        self.partitions
            .get_mut(&mark.partition)
            .filter(|p| p.generation == mark.generation)
    }

    pub(super) fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.partitions.remove(p);
        }
        self.waiting
            .retain(|(mark, _)| !partitions.contains(&mark.partition));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings::bridge::Envelope;

    fn state() -> State {
        State::new("t".into())
    }

    #[test]
    fn a_revoked_then_reassigned_partition_ignores_old_marks() {
        let mut s = state();
        let old = s.received(0, 10);
        s.revoke(&[0]);
        let new = s.received(0, 10);
        assert_ne!(old.generation, new.generation);
        assert!(s.current(old).is_none());
        assert!(s.current(new).is_some());
    }

    fn message() -> Incoming {
        Incoming::from_envelope(&Envelope::new("e", b"{}".to_vec()), "t")
    }

    #[test]
    fn offsets_are_stored_only_up_to_the_first_unsettled_message() {
        let mut s = state();
        let marks: Vec<Mark> = (100..105).map(|o| s.received(0, o)).collect();
        // Settled out of order: 101 and 103 first store nothing.
        assert_eq!(s.settled(marks[1]), None);
        assert_eq!(s.settled(marks[3]), None);
        // 100 done: 100 and 101 are a settled run.
        assert_eq!(s.settled(marks[0]), Some(101));
        s.current(marks[0]).unwrap().stored = 101;
        // 104 done while 102 is not: nothing new.
        assert_eq!(s.settled(marks[4]), None);
        assert_eq!(s.settled(marks[2]), Some(104));
    }

    #[test]
    fn partitions_are_tracked_apart() {
        let mut s = state();
        let a = s.received(0, 5);
        let b = s.received(1, 7);
        let _ = s.received(1, 8);
        assert_eq!(s.settled(a), Some(5));
        assert_eq!(
            s.settled(b),
            Some(7),
            "8 is unsettled; 7 is the settled run"
        );
        assert_eq!(s.partitions[&0].unsettled.len(), 0);
        assert_eq!(s.partitions[&1].unsettled.len(), 1);
    }

    #[test]
    fn nacked_messages_of_revoked_partitions_are_not_redelivered() {
        let mut s = state();
        let a = s.received(0, 1);
        let b = s.received(1, 1);
        s.waiting.push_back((a, message()));
        s.waiting.push_back((b, message()));
        s.revoke(&[0]);
        assert_eq!(s.waiting.len(), 1);
        assert_eq!(s.waiting[0].0.partition, 1);
    }
}
