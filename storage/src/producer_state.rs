//! Idempotent producers' state of one partition (Kafka's `ProducerStateManager`): per producer id, its
//! epoch and the sequence ranges of its last [`BATCHES_KEPT`] batches with their offsets. The log owns it,
//! judges every leader append against it ([`crate::Log::append_as_leader`]) and updates it from every append,
//! the leader's and a follower's alike, so that a follower elected leader already knows its producers.
//!
//! A batch from a producer (`producer_id >= 0`) is judged as Kafka does:
//!
//! - one that repeats one of the last [`BATCHES_KEPT`] ranges of the same epoch is a retry: it is answered
//!   with the offsets it got the first time and not appended again;
//! - one that continues the last range (or starts a newer epoch at sequence 0) is appended;
//! - an older epoch is [`ProducerError::InvalidProducerEpoch`]; any other sequence
//!   [`ProducerError::OutOfOrderSequence`]; a producer this partition does not know, starting past sequence
//!   0, [`ProducerError::UnknownProducerId`] (the client then starts over with a new id).
//!
//! # Snapshots
//!
//! The state is written to `<offset>.snapshot` (20-digit offset, like the segment files) when a segment
//! rolls and when the log closes; the file holds the state of every batch below `<offset>`. Opening loads
//! the newest snapshot at or below the log end offset that reads back whole and replays the batch headers
//! from its offset on (with no usable snapshot, from the last two segments, as Kafka does); truncation does
//! the same after deleting the snapshots past the new end. Snapshots below the first segment go with the
//! segments.
//! A roll's snapshot is written without fsync under the partition lock and fsynced with the rolled segment
//! off it; a torn one fails its CRC and an older one (or the log) is used instead.
//!
//! Text, in the framing of [`crate::checkpoint`] (version, count, lines, CRC-32), one producer a line:
//!
//! ```text
//! 1
//! 2
//! 7 0 0:4:100:104 5:6:105:106      producer id, epoch, then first:last sequence:base:last offset per batch
//! 9 3 0:0:107:107
//! crc32 1c2b3a4d
//! ```
//!
//! # Bounds
//!
//! At most `producers_max` producers are kept ([`PRODUCERS_MAX_DEFAULT`], 100,000: about 20 MB of state).
//! Past it, the tenth that wrote least recently is forgotten at once (so the cost of choosing them is paid
//! once per ten thousand new producers, not at each); a forgotten producer's next batch is answered
//! `UNKNOWN_PRODUCER_ID` unless it starts a sequence, as happens in Kafka when a producer id expires.
//! Producers whose last batch falls below the log start offset (retention, DeleteRecords) are forgotten too.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use crate::batch::BatchHeader;
use crate::checkpoint;
use crate::disk::Disk;
use crate::error::{Error, IoContext, ProducerError};
use crate::segment;

/// Batches remembered per producer: Kafka's `max.in.flight.requests.per.connection` limit for idempotence is
/// 5, so a retry is always one of the last five.
pub const BATCHES_KEPT: usize = 5;
/// Producers kept per partition by default; see the module documentation.
pub const PRODUCERS_MAX_DEFAULT: usize = 100_000;
pub const SNAPSHOT_SUFFIX: &str = "snapshot";
const SNAPSHOT_VERSION: &str = "1";

/// One batch a producer wrote: its sequence range and offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: u64,
    pub last_offset: u64,
}

impl BatchMetadata {
    fn of(header: &BatchHeader) -> Self {
        Self {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset: header.base_offset as u64,
            last_offset: header.last_offset() as u64,
        }
    }
}

/// What the partition knows of one producer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// The last batches of `epoch`, oldest first; never empty, at most [`BATCHES_KEPT`].
    pub batches: VecDeque<BatchMetadata>,
}

impl ProducerEntry {
    fn last_offset(&self) -> u64 {
        self.batches.back().map_or(0, |b| b.last_offset)
    }

    fn record(&mut self, header: &BatchHeader) {
        if header.producer_epoch != self.epoch {
            self.epoch = header.producer_epoch;
            self.batches.clear();
        }
        if self.batches.len() == BATCHES_KEPT {
            self.batches.pop_front();
        }
        self.batches.push_back(BatchMetadata::of(header));
    }
}

/// What to do with a batch: append it, or answer it as the retry of one already in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judgement {
    Append,
    Duplicate(BatchMetadata),
}

/// The producer state of one partition; see the module documentation.
#[derive(Debug)]
pub struct ProducerStateManager {
    dir: PathBuf,
    disk: Arc<dyn Disk>,
    producers: HashMap<i64, ProducerEntry>,
    producers_max: usize,
    /// The state holds every batch below this offset that was applied.
    map_end_offset: u64,
    /// Offsets of the snapshot files in `dir`.
    snapshots: BTreeSet<u64>,
}

impl ProducerStateManager {
    /// An empty state for the log in `dir`, which holds snapshots at `snapshots` (see `scan_directory`).
    pub(crate) fn new(dir: &Path, disk: Arc<dyn Disk>, snapshots: BTreeSet<u64>, producers_max: usize) -> Self {
        Self {
            dir: dir.to_owned(),
            disk,
            producers: HashMap::new(),
            producers_max: producers_max.max(1),
            map_end_offset: 0,
            snapshots,
        }
    }

    pub fn producer(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    /// Offsets of the snapshot files, oldest first.
    pub fn snapshot_offsets(&self) -> Vec<u64> {
        self.snapshots.iter().copied().collect()
    }

    /// Judges batches about to be appended together, in order, their headers carrying the offsets they will
    /// get. `Ok(Some(batch))`: one of them repeats `batch`, already in the log, and the whole append is a
    /// retry (as Kafka answers it). Nothing is changed: [`Self::update`] records the batches once written.
    pub(crate) fn check<'a>(
        &self,
        headers: impl IntoIterator<Item = &'a BatchHeader>,
    ) -> Result<Option<BatchMetadata>, ProducerError> {
        // Batches of one producer later in the same append continue the earlier ones: judge each against the
        // state as the earlier ones leave it, in a copy of the few producers involved.
        let mut staged: HashMap<i64, ProducerEntry> = HashMap::new();
        for header in headers {
            if header.producer_id < 0 {
                continue;
            }
            let entry = staged
                .get(&header.producer_id)
                .or_else(|| self.producers.get(&header.producer_id));
            match judge(entry, header)? {
                Judgement::Duplicate(batch) => return Ok(Some(batch)),
                Judgement::Append => {
                    let mut entry = entry.cloned().unwrap_or_default();
                    entry.record(header);
                    staged.insert(header.producer_id, entry);
                }
            }
        }
        Ok(None)
    }

    /// Records a batch written to the log (its header carries its final offsets). Unjudged: a follower's
    /// batches were judged by their leader, and replaying the log repeats what was judged then.
    pub(crate) fn update(&mut self, header: &BatchHeader) {
        self.map_end_offset = self.map_end_offset.max(header.last_offset() as u64 + 1);
        if header.producer_id < 0 {
            return;
        }
        self.producers.entry(header.producer_id).or_default().record(header);
        if self.producers.len() > self.producers_max {
            self.evict_least_recent();
        }
    }

    /// Forgets the tenth of the producers that wrote least recently; see the module documentation.
    fn evict_least_recent(&mut self) {
        let evict = (self.producers_max / 10).max(1).min(self.producers.len());
        let mut by_age: Vec<(u64, i64)> = self.producers.iter().map(|(id, p)| (p.last_offset(), *id)).collect();
        by_age.select_nth_unstable(evict - 1);
        for (_, id) in &by_age[..evict] {
            self.producers.remove(id);
        }
        warn!(dir = %self.dir.display(), evicted = evict, kept = self.producers.len(),
            "more idempotent producers than kept per partition: forgot those that wrote least recently");
    }

    /// Forgets the producers whose last batch is below `log_start_offset`, and snapshot files below
    /// `first_segment` (the base of the oldest segment left).
    pub(crate) fn on_log_start_moved(&mut self, log_start_offset: u64, first_segment: u64) -> Result<(), Error> {
        self.producers.retain(|_, p| p.last_offset() >= log_start_offset);
        let gone: Vec<u64> = self.snapshots.range(..first_segment).copied().collect();
        self.delete_snapshots(&gone)
    }

    /// Writes the state as `<map end offset>.snapshot` and returns its path. Without `sync` nothing is
    /// fsynced (the caller fsyncs the file and the directory). Then keeps only the snapshots at segment
    /// bases (`segment_bases`) and the one just written: one snapshot per segment, as Kafka keeps.
    pub(crate) fn take_snapshot(&mut self, at: u64, sync: bool, segment_bases: &[u64]) -> Result<PathBuf, Error> {
        debug_assert!(
            at >= self.map_end_offset,
            "a snapshot at {at} would claim batches past it"
        );
        let path = self.dir.join(segment::file_name(at, SNAPSHOT_SUFFIX));
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        let lines: Vec<String> = ids
            .into_iter()
            .map(|id| {
                let p = &self.producers[id];
                let mut line = format!("{id} {}", p.epoch);
                for b in &p.batches {
                    line.push_str(&format!(
                        " {}:{}:{}:{}",
                        b.first_sequence, b.last_sequence, b.base_offset, b.last_offset
                    ));
                }
                line
            })
            .collect();
        if sync {
            checkpoint::write_lines(&*self.disk, &path, SNAPSHOT_VERSION, &lines)?;
        } else {
            checkpoint::write_lines_unsynced(&*self.disk, &path, SNAPSHOT_VERSION, &lines)?;
        }
        self.snapshots.insert(at);
        self.map_end_offset = at;
        let superseded: Vec<u64> = self
            .snapshots
            .iter()
            .copied()
            .filter(|o| *o != at && segment_bases.binary_search(o).is_err())
            .collect();
        self.delete_snapshots(&superseded)?;
        Ok(path)
    }

    /// Empties the state and loads the newest snapshot at or below `end_offset` that reads back whole, after
    /// deleting those past it (truncation or recovery cut their batches). Returns the snapshot's offset, from
    /// which the caller replays the log; `None` when no snapshot could be used.
    pub(crate) fn load(&mut self, end_offset: u64) -> Result<Option<u64>, Error> {
        self.producers.clear();
        self.map_end_offset = 0;
        let stale: Vec<u64> = self.snapshots.range(end_offset + 1..).copied().collect();
        self.delete_snapshots(&stale)?;
        while let Some(&at) = self.snapshots.iter().next_back() {
            let path = self.dir.join(segment::file_name(at, SNAPSHOT_SUFFIX));
            let read = checkpoint::read_lines(&path, SNAPSHOT_VERSION)?;
            let parsed = match read {
                Some(Ok(lines)) => parse_snapshot(&lines),
                Some(Err(corrupt)) => Err(corrupt.reason),
                None => Err("the file is gone".to_owned()),
            };
            match parsed {
                Ok(producers) => {
                    self.producers = producers;
                    self.map_end_offset = at;
                    return Ok(Some(at));
                }
                Err(reason) => {
                    warn!(path = %path.display(), reason, "ignoring an unreadable producer-state snapshot");
                    self.delete_snapshots(&[at])?;
                }
            }
        }
        Ok(None)
    }

    /// Deletes every snapshot and empties the state (the log restarts at `offset`).
    pub(crate) fn clear(&mut self, offset: u64) -> Result<(), Error> {
        let all: Vec<u64> = self.snapshots.iter().copied().collect();
        self.delete_snapshots(&all)?;
        self.producers.clear();
        self.map_end_offset = offset;
        Ok(())
    }

    fn delete_snapshots(&mut self, offsets: &[u64]) -> Result<(), Error> {
        for &at in offsets {
            let path = self.dir.join(segment::file_name(at, SNAPSHOT_SUFFIX));
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).context("delete producer-state snapshot", &path);
                }
                _ => {}
            }
            self.snapshots.remove(&at);
        }
        Ok(())
    }
}

/// Judges one batch of a producer against what the partition knows of it (`None`: nothing).
fn judge(entry: Option<&ProducerEntry>, header: &BatchHeader) -> Result<Judgement, ProducerError> {
    let producer_id = header.producer_id;
    let (epoch, sequence) = (header.producer_epoch, header.base_sequence);
    let Some(entry) = entry else {
        return if sequence == 0 {
            Ok(Judgement::Append)
        } else {
            Err(ProducerError::UnknownProducerId { producer_id, sequence })
        };
    };
    if epoch < entry.epoch {
        return Err(ProducerError::InvalidProducerEpoch {
            producer_id,
            epoch,
            current_epoch: entry.epoch,
        });
    }
    // A new epoch starts its sequences again.
    let expected = if epoch > entry.epoch {
        0
    } else {
        let last = header.last_sequence();
        if let Some(batch) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == sequence && b.last_sequence == last)
        {
            return Ok(Judgement::Duplicate(*batch));
        }
        entry.batches.back().map_or(0, |b| next_sequence(b.last_sequence))
    };
    if sequence == expected {
        Ok(Judgement::Append)
    } else {
        Err(ProducerError::OutOfOrderSequence {
            producer_id,
            epoch,
            sequence,
            expected,
        })
    }
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX { 0 } else { sequence + 1 }
}

/// Parses snapshot lines (see the module documentation) and checks what judging relies on.
fn parse_snapshot(lines: &[String]) -> Result<HashMap<i64, ProducerEntry>, String> {
    let mut producers = HashMap::with_capacity(lines.len());
    for line in lines {
        let bad = || format!("bad line `{line}`");
        let mut fields = line.split(' ');
        let id: i64 = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
        let epoch: i16 = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
        let mut batches = VecDeque::new();
        for field in fields {
            let mut parts = field.split(':').map(str::parse::<i64>);
            let (Some(Ok(first)), Some(Ok(last)), Some(Ok(base)), Some(Ok(last_offset)), None) =
                (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            let in_range = |v: i64| i32::try_from(v).is_ok_and(|v| v >= 0);
            if !in_range(first) || !in_range(last) || base < 0 || last_offset < base {
                return Err(bad());
            }
            batches.push_back(BatchMetadata {
                first_sequence: first as i32,
                last_sequence: last as i32,
                base_offset: base as u64,
                last_offset: last_offset as u64,
            });
        }
        if id < 0 || batches.is_empty() || batches.len() > BATCHES_KEPT {
            return Err(bad());
        }
        if producers.insert(id, ProducerEntry { epoch, batches }).is_some() {
            return Err(format!("producer {id} is listed twice"));
        }
    }
    Ok(producers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::build::{Record, batch};
    use crate::disk::OsDisk;

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, records: i32, base_offset: i64) -> BatchHeader {
        let mut header = BatchHeader::parse(&batch(&[Record::default()])).unwrap();
        header.producer_id = producer_id;
        header.producer_epoch = epoch;
        header.base_sequence = base_sequence;
        header.last_offset_delta = records - 1;
        header.record_count = records;
        header.base_offset = base_offset;
        header
    }

    fn state() -> (tempfile::TempDir, ProducerStateManager) {
        let dir = tempfile::tempdir().unwrap();
        let state = ProducerStateManager::new(dir.path(), OsDisk::shared(), BTreeSet::new(), PRODUCERS_MAX_DEFAULT);
        (dir, state)
    }

    fn check_one(state: &ProducerStateManager, h: BatchHeader) -> Result<Option<u64>, ProducerError> {
        state.check([&h]).map(|d| d.map(|b| b.base_offset))
    }

    #[test]
    fn retries_are_answered_with_their_first_offset_and_gaps_are_refused() {
        let (_dir, mut state) = state();
        assert!(matches!(
            check_one(&state, header(7, 0, 3, 1, 0)),
            Err(ProducerError::UnknownProducerId { .. })
        ));
        let first = header(7, 0, 0, 5, 100);
        assert_eq!(check_one(&state, first), Ok(None));
        state.update(&first);
        assert_eq!(check_one(&state, header(7, 0, 0, 5, 0)), Ok(Some(100)), "a retry");
        assert!(matches!(
            check_one(&state, header(7, 0, 6, 1, 0)),
            Err(ProducerError::OutOfOrderSequence { expected: 5, .. })
        ));
        let second = header(7, 0, 5, 2, 105);
        assert_eq!(check_one(&state, second), Ok(None));
        state.update(&second);
        assert_eq!(check_one(&state, header(7, 0, 5, 2, 0)), Ok(Some(105)));
        assert_eq!(
            check_one(&state, header(7, 0, 0, 5, 0)),
            Ok(Some(100)),
            "still among the last five"
        );
        assert!(matches!(
            check_one(&state, header(7, 1, 3, 1, 0)),
            Err(ProducerError::OutOfOrderSequence { expected: 0, .. })
        ));
        let bumped = header(7, 1, 0, 1, 200);
        assert_eq!(check_one(&state, bumped), Ok(None));
        state.update(&bumped);
        assert!(matches!(
            check_one(&state, header(7, 0, 7, 1, 0)),
            Err(ProducerError::InvalidProducerEpoch { current_epoch: 1, .. })
        ));
        assert_eq!(
            check_one(&state, header(-1, -1, -1, 3, 0)),
            Ok(None),
            "plain batches are not judged"
        );
    }

    #[test]
    fn batches_of_one_append_continue_each_other() {
        let (_dir, state) = state();
        let (a, b) = (header(3, 0, 0, 2, 0), header(3, 0, 2, 2, 2));
        assert_eq!(state.check([&a, &b]), Ok(None));
        assert!(state.check([&b, &a]).is_err());
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let (_dir, mut state) = state();
        for i in 0..7 {
            let h = header(1, 0, i, 1, i64::from(i));
            assert_eq!(check_one(&state, h), Ok(None));
            state.update(&h);
        }
        assert_eq!(check_one(&state, header(1, 0, 2, 1, 0)), Ok(Some(2)));
        assert!(check_one(&state, header(1, 0, 1, 1, 0)).is_err());
    }

    #[test]
    fn sequences_wrap_like_kafkas() {
        let h = header(1, 0, i32::MAX - 1, 3, 0);
        assert_eq!(h.last_sequence(), 0);
        assert_eq!(next_sequence(i32::MAX), 0);
    }

    #[test]
    fn producers_past_the_bound_are_forgotten_least_recent_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ProducerStateManager::new(dir.path(), OsDisk::shared(), BTreeSet::new(), 20);
        for id in 0..21 {
            state.update(&header(id, 0, 0, 1, id));
        }
        assert_eq!(state.producer_count(), 19, "a tenth (two) forgotten at once");
        assert!(state.producer(0).is_none() && state.producer(1).is_none());
        assert!(state.producer(20).is_some());
    }

    #[test]
    fn snapshots_round_trip_and_a_corrupt_one_falls_back_to_an_older_one() {
        let (dir, mut state) = state();
        state.update(&header(7, 2, 0, 5, 0));
        state.take_snapshot(5, true, &[0, 5]).unwrap();
        state.update(&header(7, 2, 5, 1, 5));
        state.update(&header(8, 0, 0, 1, 6));
        state.take_snapshot(7, true, &[0, 5]).unwrap();
        assert_eq!(state.snapshot_offsets(), vec![5, 7]);
        let before = state.producers.clone();
        assert_eq!(state.load(100).unwrap(), Some(7));
        assert_eq!(state.producers, before);

        let newest = dir.path().join(segment::file_name(7, SNAPSHOT_SUFFIX));
        std::fs::write(&newest, b"1\n1\n").unwrap();
        assert_eq!(state.load(100).unwrap(), Some(5), "the torn snapshot is skipped");
        assert!(!newest.exists());
        assert_eq!(state.producer(7).unwrap().batches.len(), 1);
        assert!(state.producer(8).is_none());
        assert_eq!(state.load(4).unwrap(), None, "snapshots past the end go");
        assert!(state.snapshot_offsets().is_empty());
    }
}
