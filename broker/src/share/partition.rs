//! One share-partition (KIP-932): a partition as one share group consumes it, kept by the partition's leader.
//!
//! Records of a share-partition are delivered to members one by one rather than by position. Below the
//! share-partition start offset (SPSO, [`SharePartition::start_offset`]) every record is done with. From it up
//! to the end offset (SPEO, [`SharePartition::end_offset`], the first offset never handed out) are the
//! in-flight records, each in one state:
//!
//! - **available**: may be handed out (again);
//! - **acquired** by one member, until it acknowledges the record or its acquisition lock expires
//!   (`share.record.lock.duration.ms`);
//! - **acknowledged** (ACCEPT): processed, never delivered again;
//! - **archived**: given up, never delivered again: rejected (REJECT), released or expired once too often
//!   (`share.delivery.count.limit` deliveries), or an offset the log has no record at (a gap).
//!
//! Each handing out counts a delivery. RELEASE and an expired lock make a record available again, or archive
//! it once it has been delivered `delivery_limit` times. The start offset moves past acknowledged and
//! archived records as soon as nothing before them is in flight, so the in-flight window is as short as the
//! slowest record in it; it holds at most `max_in_flight` offsets (Kafka's
//! `group.share.partition.max.record.locks`), past which nothing new is handed out until the start moves.
//!
//! Everything here is plain state: the caller reads the log, passes the offsets it found
//! ([`SharePartition::acquire`]), and passes the time. Archived records that the dead-letter topic should
//! receive are queued in [`SharePartition::take_dead_letters`]. What must survive a leader failover (the start
//! offset, and which in-flight records are acknowledged or archived, with delivery counts) is
//! [`SharePartition::snapshot`]; restored from one, records acquired before are available again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// A share group member's id.
pub type MemberId = Arc<str>;

/// The most offsets a share-partition ever has in flight (the top of `group.share.partition.max.record.locks`).
pub const IN_FLIGHT_MAX: u64 = 10_000;

/// How a share-partition hands records out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareSettings {
    /// `share.record.lock.duration.ms`: how long a member holds a record it was given.
    pub lock_duration: Duration,
    /// `share.delivery.count.limit`: deliveries after which a record that comes back is archived.
    pub delivery_limit: u16,
    /// `group.share.partition.max.record.locks`: the most offsets in flight at once.
    pub max_in_flight: u64,
}

impl Default for ShareSettings {
    fn default() -> Self {
        Self {
            lock_duration: Duration::from_millis(30_000),
            delivery_limit: 5,
            max_in_flight: 2_000,
        }
    }
}

/// The state of an in-flight record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    Available,
    Acquired,
    Acknowledged,
    Archived,
}

/// What a member says of a record it was given (KIP-932's acknowledge types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckType {
    /// An offset without a record, which the member never saw.
    Gap,
    /// Processed.
    Accept,
    /// Not processed: give it to someone (perhaps the same member) again.
    Release,
    /// Unprocessable: never deliver it again.
    Reject,
}

impl AckType {
    /// From the wire value: 0 gap, 1 accept, 2 release, 3 reject.
    pub fn from_wire(value: i8) -> Option<AckType> {
        Some(match value {
            0 => AckType::Gap,
            1 => AckType::Accept,
            2 => AckType::Release,
            3 => AckType::Reject,
            _ => return None,
        })
    }
}

/// Why an acknowledgement was refused (Kafka's `INVALID_RECORD_STATE`): the whole batch is refused and
/// nothing in it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRecordState {
    pub offset: u64,
    pub reason: &'static str,
}

/// Offsets handed to a member in one go, all delivered `delivery_count` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    pub first: u64,
    pub last: u64,
    pub delivery_count: u16,
}

/// Why a record was archived without being accepted, for the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    Rejected,
    DeliveryLimit,
}

/// A record archived without being accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetter {
    pub offset: u64,
    pub delivery_count: u16,
    pub reason: DeadLetterReason,
}

#[derive(Debug, Clone)]
struct InFlight {
    state: RecordState,
    delivery_count: u16,
    /// The member holding an acquired record, and until when.
    holder: Option<(MemberId, Instant)>,
}

/// What a share-partition must keep across a leader failover: Kafka's share-group state batches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShareSnapshot {
    pub start_offset: u64,
    /// Runs of in-flight offsets past the start with the same state and delivery count; offsets past the
    /// start that no run covers are available and were never delivered.
    pub batches: Vec<StateBatch>,
}

/// A run of in-flight offsets in one state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateBatch {
    pub first: u64,
    pub last: u64,
    pub state: RecordState,
    pub delivery_count: u16,
}

#[derive(Debug)]
pub struct SharePartition {
    settings: ShareSettings,
    start_offset: u64,
    end_offset: u64,
    /// Every offset in `start_offset..end_offset`.
    in_flight: BTreeMap<u64, InFlight>,
    dead_letters: Vec<DeadLetter>,
}

impl SharePartition {
    /// A share-partition whose consumption starts at `start_offset` (the log start or end, by
    /// `share.auto.offset.reset`).
    pub fn new(start_offset: u64, settings: ShareSettings) -> Self {
        Self {
            settings,
            start_offset,
            end_offset: start_offset,
            in_flight: BTreeMap::new(),
            dead_letters: Vec::new(),
        }
    }

    /// A share-partition as a snapshot left it: acquired records were lost with their holders' locks, so
    /// everything not acknowledged or archived is available.
    pub fn restore(snapshot: &ShareSnapshot, settings: ShareSettings) -> Self {
        let mut partition = Self::new(snapshot.start_offset, settings);
        for batch in &snapshot.batches {
            let first = batch.first.max(snapshot.start_offset);
            // A snapshot is checked when written (`crate::share::state`); one that still reaches past the most
            // records ever in flight is cut there rather than filling memory.
            let last = batch.last.min(snapshot.start_offset.saturating_add(IN_FLIGHT_MAX));
            if first > last {
                continue;
            }
            // Offsets between runs are available and undelivered.
            for offset in partition.end_offset..first {
                partition.in_flight.insert(offset, available(0));
            }
            let state = match batch.state {
                RecordState::Acquired => RecordState::Available,
                state => state,
            };
            for offset in first..=last {
                partition.in_flight.insert(
                    offset,
                    InFlight {
                        state,
                        delivery_count: batch.delivery_count,
                        holder: None,
                    },
                );
            }
            partition.end_offset = partition.end_offset.max(last + 1);
        }
        partition.advance_start();
        partition
    }

    pub fn set_settings(&mut self, settings: ShareSettings) {
        self.settings = settings;
    }

    pub fn start_offset(&self) -> u64 {
        self.start_offset
    }

    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    /// The state and delivery count of `offset`, if it is in flight.
    #[cfg(test)]
    pub fn state(&self, offset: u64) -> Option<(RecordState, u16)> {
        self.in_flight.get(&offset).map(|r| (r.state, r.delivery_count))
    }

    /// Records in flight that are not done with (available or acquired).
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.in_flight
            .values()
            .filter(|r| matches!(r.state, RecordState::Available | RecordState::Acquired))
            .count()
    }

    /// Where the next read of the log for this share-partition starts: the first available in-flight
    /// record, else the end offset. `None` when the in-flight window is full and nothing in it is available.
    pub fn next_fetch_offset(&self) -> Option<u64> {
        let available = self
            .in_flight
            .iter()
            .find(|(_, r)| r.state == RecordState::Available)
            .map(|(offset, _)| *offset);
        match available {
            Some(offset) => Some(offset),
            None if self.window_full() => None,
            None => Some(self.end_offset),
        }
    }

    /// The earliest time an acquisition lock expires, for a fetch that waits.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.in_flight
            .values()
            .filter_map(|r| r.holder.as_ref().map(|(_, until)| *until))
            .min()
    }

    fn window_full(&self) -> bool {
        self.end_offset - self.start_offset >= self.settings.max_in_flight
    }

    /// Hands `member` records from `batches`, the `(first, last)` offset ranges of the record batches the log
    /// returned from [`next_fetch_offset`](Self::next_fetch_offset) on, in order. Available in-flight records
    /// are handed out again; records past the end offset are handed out for the first time, and offsets the
    /// log skipped are archived as gaps. Returns the runs handed out.
    ///
    /// `max_records` is a soft limit, as in Kafka: a batch once started is handed out to its end (within the
    /// in-flight window), so that a batch goes whole to one member instead of being sent, and decoded, by
    /// every member that takes a slice of it.
    pub fn acquire(
        &mut self,
        member: &MemberId,
        batches: &[(u64, u64)],
        max_records: usize,
        now: Instant,
    ) -> Vec<Acquired> {
        self.expire(now);
        let until = now + self.settings.lock_duration;
        let mut acquired: Vec<Acquired> = Vec::new();
        let mut count = 0;
        'batches: for &(first, last) in batches {
            if count >= max_records {
                break;
            }
            for offset in first.max(self.start_offset)..=last {
                if offset >= self.end_offset {
                    if self.window_full() {
                        break 'batches;
                    }
                    // The log has no record between the end offset and this one (compacted away, or a
                    // control batch the reader skipped): nobody will ever acknowledge them.
                    for gap in self.end_offset..offset {
                        self.in_flight.insert(
                            gap,
                            InFlight {
                                state: RecordState::Archived,
                                delivery_count: 0,
                                holder: None,
                            },
                        );
                    }
                    self.in_flight.insert(offset, available(0));
                    self.end_offset = offset + 1;
                }
                let Some(record) = self.in_flight.get_mut(&offset) else {
                    continue;
                };
                if record.state != RecordState::Available {
                    continue;
                }
                // Delivered as often as it may be already: after a failover a record acquired for the last
                // time comes back available, and is archived here rather than handed out once more.
                if record.delivery_count >= self.settings.delivery_limit {
                    record.state = RecordState::Archived;
                    self.dead_letters.push(DeadLetter {
                        offset,
                        delivery_count: record.delivery_count,
                        reason: DeadLetterReason::DeliveryLimit,
                    });
                    continue;
                }
                record.state = RecordState::Acquired;
                record.delivery_count = record.delivery_count.saturating_add(1);
                record.holder = Some((member.clone(), until));
                count += 1;
                match acquired.last_mut() {
                    Some(run) if run.last + 1 == offset && run.delivery_count == record.delivery_count => {
                        run.last = offset;
                    }
                    _ => acquired.push(Acquired {
                        first: offset,
                        last: offset,
                        delivery_count: record.delivery_count,
                    }),
                }
            }
        }
        self.advance_start();
        acquired
    }

    /// Applies `member`'s acknowledgement of `first..=last`: one type for the whole range, or one per offset.
    /// Every record must be acquired by `member` (a gap may also be acknowledged as one), else nothing
    /// changes.
    pub fn acknowledge(
        &mut self,
        member: &MemberId,
        first: u64,
        last: u64,
        types: &[AckType],
        now: Instant,
    ) -> Result<(), InvalidRecordState> {
        let refuse = |offset, reason| Err(InvalidRecordState { offset, reason });
        if first > last || (types.len() != 1 && types.len() as u64 != last - first + 1) {
            return refuse(first, "the acknowledge types do not match the offsets");
        }
        // Checked before any loop over the range: a client names any offsets it likes.
        if first < self.start_offset || last >= self.end_offset {
            return refuse(first, "not in flight");
        }
        self.expire(now);
        let kind = |offset: u64| types[if types.len() == 1 { 0 } else { (offset - first) as usize }];
        for offset in first..=last {
            let Some(record) = self.in_flight.get(&offset) else {
                return refuse(offset, "not in flight");
            };
            let held = record.holder.as_ref().is_some_and(|(holder, _)| holder == member);
            match (kind(offset), record.state) {
                (AckType::Gap, RecordState::Archived) if record.delivery_count == 0 => {}
                (_, RecordState::Acquired) if held => {}
                (_, RecordState::Acquired) => return refuse(offset, "acquired by another member"),
                _ => return refuse(offset, "not acquired (its lock may have expired)"),
            }
        }
        for offset in first..=last {
            let kind = kind(offset);
            let limit = self.settings.delivery_limit;
            let record = self.in_flight.get_mut(&offset).expect("checked above");
            if record.state != RecordState::Acquired {
                continue;
            }
            record.holder = None;
            record.state = match kind {
                AckType::Accept => RecordState::Acknowledged,
                AckType::Gap => RecordState::Archived,
                AckType::Reject => {
                    self.dead_letters.push(DeadLetter {
                        offset,
                        delivery_count: record.delivery_count,
                        reason: DeadLetterReason::Rejected,
                    });
                    RecordState::Archived
                }
                AckType::Release => back(record, offset, limit, &mut self.dead_letters),
            };
        }
        self.advance_start();
        Ok(())
    }

    /// Makes the records whose acquisition lock has expired available again (or archives them).
    pub fn expire(&mut self, now: Instant) {
        let limit = self.settings.delivery_limit;
        for (offset, record) in self.in_flight.range_mut(self.start_offset..) {
            if record.holder.as_ref().is_some_and(|(_, until)| *until <= now) {
                record.holder = None;
                record.state = back(record, *offset, limit, &mut self.dead_letters);
            }
        }
        self.advance_start();
    }

    /// Makes every record `member` holds available again: it left the group or its session expired.
    pub fn release_member(&mut self, member: &MemberId) {
        let limit = self.settings.delivery_limit;
        for (offset, record) in self.in_flight.range_mut(self.start_offset..) {
            if record.holder.as_ref().is_some_and(|(holder, _)| holder == member) {
                record.holder = None;
                record.state = back(record, *offset, limit, &mut self.dead_letters);
            }
        }
        self.advance_start();
    }

    /// Moves the start offset, as an administrator resets it (AlterShareGroupOffsets): everything before is
    /// done with, everything from it is undelivered.
    pub fn reset(&mut self, start_offset: u64) {
        self.start_offset = start_offset;
        self.end_offset = start_offset;
        self.in_flight.clear();
    }

    /// Records archived without being accepted since the last call, for the dead-letter topic.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead_letters)
    }

    /// What must survive a failover, as runs of offsets in one state.
    pub fn snapshot(&self) -> ShareSnapshot {
        let mut batches: Vec<StateBatch> = Vec::new();
        for (&offset, record) in &self.in_flight {
            // Acquired records are kept with their delivery count: restored, they are available again but
            // their deliveries still count.
            match batches.last_mut() {
                Some(run)
                    if run.last + 1 == offset
                        && run.state == record.state
                        && run.delivery_count == record.delivery_count =>
                {
                    run.last = offset
                }
                _ => batches.push(StateBatch {
                    first: offset,
                    last: offset,
                    state: record.state,
                    delivery_count: record.delivery_count,
                }),
            }
        }
        ShareSnapshot {
            start_offset: self.start_offset,
            batches,
        }
    }

    /// Drops the done records at the start of the window.
    fn advance_start(&mut self) {
        while let Some(entry) = self.in_flight.first_entry() {
            if !matches!(entry.get().state, RecordState::Acknowledged | RecordState::Archived) {
                break;
            }
            self.start_offset = *entry.key() + 1;
            entry.remove();
        }
        if self.in_flight.is_empty() {
            self.start_offset = self.start_offset.max(self.end_offset);
            self.end_offset = self.start_offset;
        }
    }
}

fn available(delivery_count: u16) -> InFlight {
    InFlight {
        state: RecordState::Available,
        delivery_count,
        holder: None,
    }
}

/// The state of a record given back (released, or its lock expired): available, or archived once it has
/// been delivered `limit` times.
fn back(record: &InFlight, offset: u64, limit: u16, dead_letters: &mut Vec<DeadLetter>) -> RecordState {
    if record.delivery_count >= limit {
        dead_letters.push(DeadLetter {
            offset,
            delivery_count: record.delivery_count,
            reason: DeadLetterReason::DeliveryLimit,
        });
        RecordState::Archived
    } else {
        RecordState::Available
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str) -> MemberId {
        Arc::from(name)
    }

    fn settings() -> ShareSettings {
        ShareSettings {
            lock_duration: Duration::from_secs(30),
            delivery_limit: 3,
            max_in_flight: 100,
        }
    }

    fn run(first: u64, last: u64, delivery_count: u16) -> Acquired {
        Acquired {
            first,
            last,
            delivery_count,
        }
    }

    #[test]
    fn records_go_to_one_member_each_and_accepted_ones_never_return() {
        let now = Instant::now();
        let mut share = SharePartition::new(0, settings());
        let (a, b) = (member("a"), member("b"));
        // Batches 0-3 and 4-9: the limit stops at a batch's end, not inside it.
        assert_eq!(share.acquire(&a, &[(0, 3), (4, 9)], 2, now), vec![run(0, 3, 1)]);
        // b is handed what a was not, from the same batches read again.
        assert_eq!(share.next_fetch_offset(), Some(4));
        assert_eq!(share.acquire(&b, &[(0, 3), (4, 9)], 100, now), vec![run(4, 9, 1)]);
        assert_eq!(share.acquire(&b, &[(0, 3), (4, 9)], 100, now), vec![], "all in flight");

        share.acknowledge(&a, 0, 3, &[AckType::Accept], now).unwrap();
        assert_eq!(share.start_offset(), 4, "the start moves past the accepted records");
        // b accepts some, releases one: only the released record is available again.
        let types = [AckType::Accept, AckType::Release, AckType::Accept, AckType::Accept];
        share.acknowledge(&b, 4, 7, &types, now).unwrap();
        assert_eq!(share.start_offset(), 5);
        assert_eq!(share.next_fetch_offset(), Some(5));
        assert_eq!(share.acquire(&a, &[(0, 9)], 100, now), vec![run(5, 5, 2)]);
        share.acknowledge(&a, 5, 5, &[AckType::Accept], now).unwrap();
        share.acknowledge(&b, 8, 9, &[AckType::Accept], now).unwrap();
        assert_eq!((share.start_offset(), share.end_offset(), share.pending()), (10, 10, 0));
    }

    #[test]
    fn an_expired_lock_makes_records_available_again_with_their_delivery_counted() {
        let now = Instant::now();
        let mut share = SharePartition::new(0, settings());
        let (a, b) = (member("a"), member("b"));
        share.acquire(&a, &[(0, 1)], 10, now);
        assert_eq!(share.next_expiry(), Some(now + Duration::from_secs(30)));
        let later = now + Duration::from_secs(30);
        assert_eq!(share.acquire(&b, &[(0, 1)], 10, later), vec![run(0, 1, 2)]);
        // a's acknowledgement comes too late: refused, and b keeps the records.
        let late = share.acknowledge(&a, 0, 1, &[AckType::Accept], later).unwrap_err();
        assert_eq!(late.offset, 0);
        share.acknowledge(&b, 0, 1, &[AckType::Accept], later).unwrap();
        assert_eq!(share.start_offset(), 2);
    }

    #[test]
    fn a_record_delivered_too_often_or_rejected_is_archived_for_the_dead_letter_topic() {
        let mut now = Instant::now();
        let mut share = SharePartition::new(0, settings());
        let a = member("a");
        for delivery in 1..=3 {
            assert_eq!(share.acquire(&a, &[(0, 0)], 10, now), vec![run(0, 0, delivery)]);
            now += Duration::from_secs(31);
        }
        share.expire(now);
        assert_eq!(share.state(0), None, "archived and passed");
        assert_eq!(share.start_offset(), 1);
        assert_eq!(
            share.take_dead_letters(),
            vec![DeadLetter {
                offset: 0,
                delivery_count: 3,
                reason: DeadLetterReason::DeliveryLimit
            }]
        );
        share.acquire(&a, &[(1, 1)], 10, now);
        share.acknowledge(&a, 1, 1, &[AckType::Reject], now).unwrap();
        assert_eq!(share.take_dead_letters()[0].reason, DeadLetterReason::Rejected);
        assert_eq!(share.start_offset(), 2);
    }

    #[test]
    fn acknowledgements_of_records_not_held_change_nothing() {
        let now = Instant::now();
        let mut share = SharePartition::new(0, settings());
        let (a, b) = (member("a"), member("b"));
        share.acquire(&a, &[(0, 3)], 10, now);
        let refused = share.acknowledge(&b, 0, 3, &[AckType::Accept], now).unwrap_err();
        assert_eq!(refused.reason, "acquired by another member");
        // Offsets of the range past what is in flight: the whole range is refused, at once however wide.
        let refused = share.acknowledge(&a, 2, 5, &[AckType::Accept], now).unwrap_err();
        assert_eq!(refused.reason, "not in flight");
        assert_eq!(share.state(2), Some((RecordState::Acquired, 1)));
        let refused = share
            .acknowledge(&a, 0, u64::MAX - 1, &[AckType::Accept], now)
            .unwrap_err();
        assert_eq!(refused.reason, "not in flight");
        // One offset of the range not held: nothing in it changes.
        share.acquire(&b, &[(4, 4)], 10, now);
        let refused = share.acknowledge(&a, 2, 4, &[AckType::Accept], now).unwrap_err();
        assert_eq!((refused.offset, refused.reason), (4, "acquired by another member"));
        assert_eq!(share.state(2), Some((RecordState::Acquired, 1)));
        assert!(
            share
                .acknowledge(&a, 0, 3, &[AckType::Accept, AckType::Accept], now)
                .is_err()
        );
    }

    #[test]
    fn a_departed_member_s_records_go_back_and_gaps_are_archived() {
        let now = Instant::now();
        let mut share = SharePartition::new(0, settings());
        let (a, b) = (member("a"), member("b"));
        // The log has records at 0-1 and 5-6 (2-4 compacted away).
        assert_eq!(
            share.acquire(&a, &[(0, 1), (5, 6)], 10, now),
            vec![run(0, 1, 1), run(5, 6, 1)]
        );
        assert_eq!(share.state(3), Some((RecordState::Archived, 0)));
        share.release_member(&a);
        assert_eq!(
            share.acquire(&b, &[(0, 1), (5, 6)], 10, now),
            vec![run(0, 1, 2), run(5, 6, 2)]
        );
        share.acknowledge(&b, 0, 6, &[AckType::Accept], now).unwrap_err();
        let types = [
            AckType::Accept,
            AckType::Accept,
            AckType::Gap,
            AckType::Gap,
            AckType::Gap,
            AckType::Accept,
            AckType::Accept,
        ];
        share.acknowledge(&b, 0, 6, &types, now).unwrap();
        assert_eq!(share.start_offset(), 7);
    }

    #[test]
    fn a_record_delivered_for_the_last_time_before_a_failover_is_archived_not_delivered_again() {
        let now = Instant::now();
        let a = member("a");
        let mut share = SharePartition::new(0, settings());
        for _ in 0..2 {
            share.acquire(&a, &[(0, 0)], 1, now);
            share.release_member(&a);
        }
        assert_eq!(
            share.acquire(&a, &[(0, 0)], 1, now),
            vec![run(0, 0, 3)],
            "the third and last delivery"
        );
        let mut restored = SharePartition::restore(&share.snapshot(), settings());
        assert_eq!(restored.acquire(&a, &[(0, 0)], 1, now), vec![]);
        assert_eq!(restored.take_dead_letters()[0].reason, DeadLetterReason::DeliveryLimit);
        assert_eq!(restored.start_offset(), 1);
    }

    #[test]
    fn the_in_flight_window_is_bounded() {
        let now = Instant::now();
        let mut share = SharePartition::new(
            0,
            ShareSettings {
                max_in_flight: 5,
                ..settings()
            },
        );
        let a = member("a");
        assert_eq!(share.acquire(&a, &[(0, 9)], 100, now), vec![run(0, 4, 1)]);
        assert_eq!(share.next_fetch_offset(), None, "full, nothing available");
        share.acknowledge(&a, 0, 1, &[AckType::Accept], now).unwrap();
        assert_eq!(share.next_fetch_offset(), Some(5));
        assert_eq!(share.acquire(&a, &[(5, 9)], 100, now), vec![run(5, 6, 1)]);
    }

    #[test]
    fn a_snapshot_keeps_what_was_acknowledged_and_frees_what_was_acquired() {
        let now = Instant::now();
        let mut share = SharePartition::new(10, settings());
        let a = member("a");
        share.acquire(&a, &[(10, 19)], 100, now);
        share.acknowledge(&a, 12, 13, &[AckType::Accept], now).unwrap();
        share.acknowledge(&a, 15, 15, &[AckType::Reject], now).unwrap();
        let snapshot = share.snapshot();
        assert_eq!(snapshot.start_offset, 10);

        let mut restored = SharePartition::restore(&snapshot, settings());
        assert_eq!((restored.start_offset(), restored.end_offset()), (10, 20));
        assert_eq!(restored.state(12), Some((RecordState::Acknowledged, 1)));
        assert_eq!(restored.state(15), Some((RecordState::Archived, 1)));
        // The records a held come back, their first delivery counted; the acknowledged ones never do.
        let b = member("b");
        let again = restored.acquire(&b, &[(10, 19)], 100, now);
        assert_eq!(again, vec![run(10, 11, 2), run(14, 14, 2), run(16, 19, 2)]);
    }

    /// A seeded run of random operations by three members on a log of random batches, with failovers
    /// (snapshot, restore) and lock expiries, checking after every step what a user relies on: a record is
    /// held by at most one member; a record accepted, or archived, is never handed out again, across
    /// failovers too; the start offset never moves back; no record is delivered more than the limit allows.
    /// `STRATA_SHARE_SEEDS=N` runs more seeds; a failure names its seed.
    #[test]
    fn random_operations_keep_the_guarantees() {
        let seeds: u64 = std::env::var("STRATA_SHARE_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        for seed in 1..=seeds {
            run_seed(seed);
        }
    }

    fn run_seed(seed: u64) {
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move |n: u64| {
            // xorshift64*
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
        };
        let settings = ShareSettings {
            lock_duration: Duration::from_secs(10),
            delivery_limit: 3,
            max_in_flight: 40,
        };
        // The log: batches of 1-5 records with gaps of 0-2 offsets (compaction) between them.
        let mut batches = Vec::new();
        let mut offset = 0u64;
        for _ in 0..60 {
            offset += next(3);
            let len = 1 + next(5);
            batches.push((offset, offset + len - 1));
            offset += len;
        }
        let members: Vec<MemberId> = ["a", "b", "c"].iter().map(|m| member(m)).collect();
        let mut now = Instant::now();
        let mut share = SharePartition::new(0, settings);
        let mut done: std::collections::BTreeSet<u64> = Default::default();
        let mut held: std::collections::BTreeMap<u64, MemberId> = Default::default();
        let mut last_start = 0;
        for step in 0..400 {
            let who = members[next(3) as usize].clone();
            match next(10) {
                0..=3 => {
                    let from = share.next_fetch_offset().unwrap_or(u64::MAX);
                    let visible: Vec<(u64, u64)> = batches.iter().copied().filter(|b| b.1 >= from).take(4).collect();
                    for run in share.acquire(&who, &visible, 1 + next(8) as usize, now) {
                        assert!(run.delivery_count <= settings.delivery_limit, "seed {seed} step {step}");
                        for o in run.first..=run.last {
                            assert!(!done.contains(&o), "seed {seed} step {step}: {o} handed out again");
                            assert!(
                                held.insert(o, who.clone()).is_none(),
                                "seed {seed} step {step}: {o} held twice"
                            );
                        }
                    }
                }
                4..=6 => {
                    let mine: Vec<u64> = held.iter().filter(|(_, m)| **m == who).map(|(o, _)| *o).collect();
                    if let Some(&o) = mine.get(next(mine.len() as u64 + 1) as usize) {
                        let kind = [AckType::Accept, AckType::Release, AckType::Reject][next(3) as usize];
                        share.acknowledge(&who, o, o, &[kind], now).unwrap();
                        held.remove(&o);
                        if kind != AckType::Release {
                            done.insert(o);
                        }
                    }
                }
                7 => {
                    now += Duration::from_secs(11);
                    share.expire(now);
                    held.clear();
                }
                8 => {
                    share.release_member(&who);
                    held.retain(|_, m| *m != who);
                }
                _ => {
                    // A failover: the new leader starts from the snapshot; nothing is held any more.
                    share = SharePartition::restore(&share.snapshot(), settings);
                    held.clear();
                }
            }
            for dead in share.take_dead_letters() {
                done.insert(dead.offset);
            }
            assert!(
                share.start_offset() >= last_start,
                "seed {seed} step {step}: the start moved back"
            );
            last_start = share.start_offset();
        }
    }
}
