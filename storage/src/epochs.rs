//! The leader-epoch cache of one partition (Kafka's `LeaderEpochFileCache`): for every leader epoch that
//! wrote batches to the log, the offset of its first batch. A replica that becomes a follower asks the new
//! leader where its last epoch ends ([`LeaderEpochCache::end_offset_for`], Kafka's OffsetsForLeaderEpoch) and
//! truncates past that, so logs never diverge.
//!
//! Entries increase strictly in both epoch and start offset. The cache is derived from the log: every batch
//! carries the partition leader epoch that wrote it, and an entry `(epoch, start)` says that the batches
//! from `start` up to the next entry's start carry `epoch`. The [`crate::Log`] keeps it so: an append whose
//! batch carries an epoch above the latest adds an entry, truncation drops the entries at or past the new
//! end, and moving the log start offset moves the first entry up. What the cache does not own: deciding
//! when those happen (the log does), and refusing a batch whose epoch goes backwards (the log does too).
//!
//! Persisted as `leader-epoch-checkpoint` in the partition directory: Kafka's text layout with Strata's
//! CRC-32 line (see [`crate::checkpoint`]), replaced atomically:
//!
//! ```text
//! 0                     format version (Kafka's)
//! 2                     number of entries
//! 0 0                   epoch, start offset; one line each, in increasing order
//! 3 1500
//! crc32 42fc455f        CRC-32 of every byte above this line, 8 hex digits
//! ```
//!
//! The file changes only when the cache does (an epoch change, a truncation, a move of the log start), and
//! each change is fsynced before the log writes a batch that depends on it. A missing or corrupt file is
//! rebuilt by the log from its batch headers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::{self, CorruptCheckpoint};
use crate::disk::Disk;
use crate::error::Error;

/// The checkpoint's file name in the partition directory.
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
const VERSION: &str = "0";
/// An epoch history longer than this is not believed: one entry per leader election of one partition.
const ENTRIES_MAX: usize = 1 << 20;

/// The first offset written under one leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: u64,
}

impl EpochEntry {
    pub fn new(epoch: i32, start_offset: u64) -> Self {
        Self { epoch, start_offset }
    }
}

/// The epoch history of one partition and its checkpoint file; see the module documentation.
#[derive(Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    disk: Arc<dyn Disk>,
    /// Strictly increasing in both epoch and start offset; epochs are never negative.
    entries: Vec<EpochEntry>,
    /// The file may not hold `entries`: they changed since the last write, or a write failed.
    dirty: bool,
}

impl LeaderEpochCache {
    /// An empty cache kept at `path`; nothing is written until it changes.
    pub fn new(path: impl Into<PathBuf>, disk: Arc<dyn Disk>) -> Self {
        Self {
            path: path.into(),
            disk,
            entries: Vec::new(),
            dirty: false,
        }
    }

    /// Reads the checkpoint at `path`. `Ok(None)`: there is no file. `Ok(Some(Err(_)))`: the file fails its
    /// CRC, does not parse, or lists entries that do not increase strictly; the caller rebuilds the cache.
    pub fn read(
        path: impl Into<PathBuf>,
        disk: Arc<dyn Disk>,
    ) -> Result<Option<Result<Self, CorruptCheckpoint>>, Error> {
        let path = path.into();
        let Some(lines) = checkpoint::read_lines(&path, VERSION)? else {
            return Ok(None);
        };
        let entries = lines.and_then(|lines| {
            parse_entries(&lines).map_err(|reason| CorruptCheckpoint {
                path: path.clone(),
                reason,
            })
        });
        Ok(Some(entries.map(|entries| Self {
            path,
            disk,
            entries,
            dirty: false,
        })))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.latest().map(|e| e.epoch)
    }

    /// Whether the file may not hold what the cache holds (see [`Self::persist`]).
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Records that batches from `start_offset` on carry `epoch`, when `epoch` is above the latest (or the
    /// cache is empty). Negative epochs (`-1`: none) and epochs at or below the latest change nothing.
    /// Entries starting at or after `start_offset` hold no batch of their own and go, as in Kafka (after the
    /// whole log was deleted, the kept entry starts at the log end). Returns whether the cache changed.
    pub fn assign(&mut self, epoch: i32, start_offset: u64) -> bool {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return false;
        }
        while self.entries.last().is_some_and(|e| e.start_offset >= start_offset) {
            self.entries.pop();
        }
        self.entries.push(EpochEntry::new(epoch, start_offset));
        self.dirty = true;
        true
    }

    /// Kafka's `truncateFromEnd`: drops the entries starting at or after `end_offset`, the new log end
    /// offset after a truncation. Returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: u64) -> bool {
        let keep = self.entries.partition_point(|e| e.start_offset < end_offset);
        self.keep_first(keep)
    }

    /// Kafka's `truncateFromStart`: the log now starts at `start_offset`. Entries that start at or before it
    /// go, except the last of them, which now starts at `start_offset` (its epoch still holds the batches
    /// from there). Returns whether the cache changed.
    pub fn truncate_from_start(&mut self, start_offset: u64) -> bool {
        let at_or_before = self.entries.partition_point(|e| e.start_offset <= start_offset);
        if at_or_before == 0 {
            return false;
        }
        let first = EpochEntry::new(self.entries[at_or_before - 1].epoch, start_offset);
        if at_or_before == 1 && self.entries[0] == first {
            return false;
        }
        self.entries.drain(..at_or_before - 1);
        self.entries[0] = first;
        self.dirty = true;
        true
    }

    /// Drops every entry (the log was emptied and restarted). Returns whether the cache changed.
    pub fn clear(&mut self) -> bool {
        self.keep_first(0)
    }

    /// Replaces the entries, for a rebuild from the log or to undo a change whose append failed. The file
    /// is rewritten by the next [`Self::persist`].
    pub(crate) fn replace(&mut self, entries: Vec<EpochEntry>) {
        debug_assert!(entries.iter().all(|e| e.epoch >= 0));
        debug_assert!(
            entries
                .windows(2)
                .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset)
        );
        self.entries = entries;
        self.dirty = true;
    }

    fn keep_first(&mut self, n: usize) -> bool {
        if n >= self.entries.len() {
            return false;
        }
        self.entries.truncate(n);
        self.dirty = true;
        true
    }

    /// Kafka's OffsetsForLeaderEpoch for `epoch` on a log ending at `log_end_offset`: the largest epoch at or
    /// below `epoch` and the offset where it ends (the start of the next higher epoch, or the log end offset
    /// for the latest epoch). `None` (Kafka's `UNDEFINED_EPOCH_OFFSET`) when `epoch` is negative, the cache is
    /// empty, or `epoch` is above the latest.
    ///
    /// An epoch below the first entry is answered with itself and the first entry's start offset, as Kafka
    /// does: older epochs were deleted from the log, and a follower that truncates to where the remaining
    /// history begins can replicate from there.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: u64) -> Option<(i32, u64)> {
        let latest = self.latest()?;
        if epoch < 0 || epoch > latest.epoch {
            return None;
        }
        if epoch == latest.epoch {
            return Some((epoch, log_end_offset));
        }
        // The first entry with a higher epoch; one exists since `epoch` is below the latest.
        let higher = self.entries.partition_point(|e| e.epoch <= epoch);
        let end = self.entries[higher].start_offset;
        match higher.checked_sub(1) {
            Some(floor) => Some((self.entries[floor].epoch, end)),
            None => Some((epoch, end)),
        }
    }

    /// Writes the file if it may not hold the entries: write temp, fsync, rename, fsync the directory. On
    /// failure the cache stays dirty, so the next call tries again.
    pub fn persist(&mut self) -> Result<(), Error> {
        if !self.dirty {
            return Ok(());
        }
        let lines: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{} {}", e.epoch, e.start_offset))
            .collect();
        checkpoint::write_lines(&*self.disk, &self.path, VERSION, &lines)?;
        self.dirty = false;
        Ok(())
    }
}

/// Parses `epoch start_offset` lines and checks the invariants a cache relies on.
fn parse_entries(lines: &[String]) -> Result<Vec<EpochEntry>, String> {
    if lines.len() > ENTRIES_MAX {
        return Err(format!("{} entries, more than {ENTRIES_MAX}", lines.len()));
    }
    let mut entries: Vec<EpochEntry> = Vec::with_capacity(lines.len());
    for line in lines {
        let mut fields = line.split(' ');
        let (Some(epoch), Some(start), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!("bad line `{line}`"));
        };
        let epoch: i32 = epoch.parse().map_err(|_| format!("bad epoch in `{line}`"))?;
        let start_offset: u64 = start.parse().map_err(|_| format!("bad start offset in `{line}`"))?;
        if epoch < 0 {
            return Err(format!("negative epoch in `{line}`"));
        }
        if let Some(previous) = entries.last()
            && (epoch <= previous.epoch || start_offset <= previous.start_offset)
        {
            return Err(format!(
                "entry `{line}` does not follow epoch {} at {}",
                previous.epoch, previous.start_offset
            ));
        }
        entries.push(EpochEntry::new(epoch, start_offset));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    //! Kafka's `LeaderEpochFileCacheTest` examples, where Strata's rules agree with Kafka's, and the file.

    use super::*;
    use crate::disk::OsDisk;

    fn empty() -> LeaderEpochCache {
        LeaderEpochCache::new("/nonexistent/leader-epoch-checkpoint", OsDisk::shared())
    }

    fn with(entries: &[(i32, u64)]) -> LeaderEpochCache {
        let mut cache = empty();
        for &(epoch, start) in entries {
            assert!(cache.assign(epoch, start), "assign({epoch}, {start})");
        }
        cache
    }

    fn entries(cache: &LeaderEpochCache) -> Vec<(i32, u64)> {
        cache.entries().iter().map(|e| (e.epoch, e.start_offset)).collect()
    }

    #[test]
    fn an_assigned_epoch_ends_at_the_log_end() {
        let cache = with(&[(2, 10)]);
        assert_eq!(cache.latest_epoch(), Some(2));
        assert_eq!(entries(&cache), [(2, 10)]);
        assert_eq!(cache.end_offset_for(2, 11), Some((2, 11)));
    }

    #[test]
    fn the_same_epoch_again_changes_nothing() {
        // shouldNotOverwriteLogEndOffsetForALeaderEpochOnceItHasBeenAssigned, shouldNotUpdateEpochAndStartOffset...
        let mut cache = with(&[(2, 6)]);
        assert!(!cache.assign(2, 7));
        assert!(!cache.assign(2, 10));
        assert_eq!(entries(&cache), [(2, 6)]);
        assert_eq!(cache.end_offset_for(2, 14), Some((2, 14)));
    }

    #[test]
    fn lower_or_negative_epochs_change_nothing() {
        // Kafka truncates the higher entries here (shouldEnforceMonotonicallyIncreasingEpochs); Strata's log
        // refuses such a batch before it reaches the cache, so the cache only ignores it.
        let mut cache = with(&[(1, 5), (2, 6)]);
        assert!(!cache.assign(1, 7));
        assert!(!cache.assign(-1, 7));
        assert_eq!(entries(&cache), [(1, 5), (2, 6)]);
        let mut nothing = empty();
        assert!(!nothing.assign(-1, 0));
        assert_eq!(nothing.latest_epoch(), None);
    }

    #[test]
    fn a_new_epoch_at_the_same_start_replaces_the_empty_one() {
        // shouldEnforceMonotonicallyIncreasingStartOffsets
        let mut cache = with(&[(2, 9)]);
        assert!(cache.assign(3, 9));
        assert_eq!(entries(&cache), [(3, 9)]);
    }

    #[test]
    fn undefined_or_unknown_epochs_have_no_end_offset() {
        let cache = with(&[(2, 11), (3, 12)]);
        assert_eq!(cache.end_offset_for(-1, 0), None, "UNDEFINED_EPOCH");
        assert_eq!(cache.end_offset_for(4, 100), None, "above the latest");
        assert_eq!(empty().end_offset_for(0, 0), None, "empty cache");
        assert_eq!(empty().end_offset_for(-1, 73), None, "empty cache, undefined epoch");
        assert_eq!(empty().end_offset_for(7, 0), None);
        assert_eq!(with(&[(2, 100)]).end_offset_for(3, 100), None);
    }

    #[test]
    fn an_epoch_below_the_first_ends_where_the_history_starts() {
        // shouldReturnFirstEpochIfRequestedEpochLessThanFirstEpoch
        let cache = with(&[(5, 11), (6, 12), (7, 13)]);
        assert_eq!(cache.end_offset_for(4, 0), Some((4, 11)));
        assert_eq!(cache.end_offset_for(0, 0), Some((0, 11)));
    }

    #[test]
    fn an_earlier_epoch_ends_where_the_next_begins() {
        // shouldGetFirstOffsetOfSubsequentEpochWhenOffsetRequestedForPreviousEpoch
        let mut cache = with(&[(1, 11), (2, 13), (3, 15)]);
        assert!(!cache.assign(1, 12) && !cache.assign(2, 14) && !cache.assign(3, 16));
        assert_eq!(cache.end_offset_for(2, 17), Some((2, 15)));
        assert_eq!(cache.end_offset_for(1, 17), Some((1, 13)));
        assert_eq!(cache.end_offset_for(3, 17), Some((3, 17)));
    }

    #[test]
    fn a_missing_epoch_is_answered_with_the_one_below() {
        // shouldReturnNextAvailableEpochIfThereIsNoExactEpochForTheOneRequested
        let cache = with(&[(0, 10), (2, 13), (4, 17)]);
        assert_eq!(cache.end_offset_for(1, 0), Some((0, 13)));
        assert_eq!(cache.end_offset_for(2, 0), Some((2, 17)));
        assert_eq!(cache.end_offset_for(3, 0), Some((2, 17)));
        assert_eq!(cache.end_offset_for(4, 20), Some((4, 20)));
        assert_eq!(cache.end_offset_for(5, 20), None);
    }

    #[test]
    fn epochs_tracked_as_leaders_change() {
        // shouldIncreaseAndTrackEpochsAsLeadersChangeManyTimes: epoch 0 never wrote a batch.
        let mut cache = with(&[(0, 0)]);
        assert!(cache.assign(1, 0));
        assert_eq!(cache.latest_epoch(), Some(1));
        assert_eq!(cache.end_offset_for(1, 0), Some((1, 0)));
        // Epoch 0 wrote nothing, so only (1, 0) is kept; epoch 0, now below the first entry, ends at 0.
        assert_eq!(entries(&cache), [(1, 0)]);
        assert_eq!(cache.end_offset_for(0, 0), Some((0, 0)));
        assert_eq!(cache.end_offset_for(1, 5), Some((1, 5)));
        assert!(cache.assign(2, 5));
        assert_eq!(cache.end_offset_for(2, 10), Some((2, 10)));
        assert_eq!(cache.end_offset_for(1, 10), Some((1, 5)));
        assert_eq!(cache.end_offset_for(0, 10), Some((0, 0)));
    }

    #[test]
    fn epochs_tracked_as_a_follower_appends() {
        // shouldIncreaseAndTrackEpochsAsFollowerReceivesManyMessages
        let mut cache = empty();
        for (epoch, offset) in [(0, 0), (0, 1), (0, 2), (1, 3), (1, 4), (1, 5), (2, 6), (2, 7), (2, 8)] {
            cache.assign(epoch, offset);
        }
        assert_eq!(entries(&cache), [(0, 0), (1, 3), (2, 6)]);
        assert_eq!(cache.end_offset_for(2, 9), Some((2, 9)));
        assert_eq!(cache.end_offset_for(0, 9), Some((0, 3)));
        assert_eq!(cache.end_offset_for(1, 9), Some((1, 6)));
    }

    #[test]
    fn truncating_from_the_end_drops_entries_at_or_past_it() {
        // shouldDropEntriesOnEpochBoundaryWhenRemovingLatestEntries
        let mut cache = with(&[(2, 6), (3, 8), (4, 11)]);
        assert!(cache.truncate_from_end(8));
        assert_eq!(entries(&cache), [(2, 6)]);
        // shouldDropEntriesBetweenEpochBoundaryWhenRemovingNewest
        let mut cache = with(&[(2, 6), (3, 8), (4, 11)]);
        assert!(cache.truncate_from_end(9));
        assert_eq!(entries(&cache), [(2, 6), (3, 8)]);
        assert_eq!(cache.latest_epoch(), Some(3));
        assert!(!cache.truncate_from_end(9) && !cache.truncate_from_end(100));
        assert!(cache.truncate_from_end(6));
        assert_eq!(entries(&cache), []);
        assert!(!cache.truncate_from_end(7), "an empty cache");
        assert!(!cache.truncate_from_start(7), "an empty cache");
    }

    #[test]
    fn truncating_from_the_start_moves_the_first_entry_up() {
        let base = [(2, 6), (3, 8), (4, 11)];
        let after = |start: u64| {
            let mut cache = with(&base);
            let changed = cache.truncate_from_start(start);
            (changed, entries(&cache))
        };
        // shouldNotClearAnythingIfOffsetTooEarly, shouldNotClearAnythingIfOffsetIsFirstOffset
        assert_eq!(after(1), (false, base.to_vec()));
        assert_eq!(after(6), (false, base.to_vec()));
        // shouldPreserveResetOffsetOnClearEarliestIfOneExists
        assert_eq!(after(8), (true, vec![(3, 8), (4, 11)]));
        // shouldUpdateOffsetBetweenEpochBoundariesOnClearEarliest
        assert_eq!(after(9), (true, vec![(3, 9), (4, 11)]));
        // shouldRetainLatestEpochOnClearAllEarliest
        assert_eq!(after(11), (true, vec![(4, 11)]));
        // shouldRetainLatestEpochOnClearAllEarliestAndUpdateItsOffset
        assert_eq!(after(15), (true, vec![(4, 15)]));
        assert_eq!(after(7), (true, vec![(2, 7), (3, 8), (4, 11)]));
        // shouldUpdateOffsetBetweenFirstTwoEpochBoundariesOnClearEarliest
        let mut cache = with(&[(0, 0), (1, 7), (2, 10)]);
        assert!(cache.truncate_from_start(5));
        assert_eq!(entries(&cache), [(0, 5), (1, 7), (2, 10)]);
    }

    #[test]
    fn after_everything_was_deleted_a_new_epoch_replaces_the_kept_one() {
        let mut cache = with(&[(2, 6), (3, 8)]);
        assert!(cache.truncate_from_start(20));
        assert_eq!(entries(&cache), [(3, 20)]);
        assert!(!cache.assign(3, 20));
        assert!(cache.assign(5, 20));
        assert_eq!(entries(&cache), [(5, 20)]);
    }

    #[test]
    fn clearing_drops_everything() {
        let mut cache = with(&[(2, 6), (3, 8), (4, 11)]);
        assert!(cache.clear());
        assert_eq!(entries(&cache), []);
        assert!(!cache.clear());
    }

    #[test]
    fn the_file_round_trips_and_is_written_only_when_needed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEADER_EPOCH_CHECKPOINT);
        assert!(
            LeaderEpochCache::read(&path, OsDisk::shared()).unwrap().is_none(),
            "no file yet"
        );
        let mut cache = LeaderEpochCache::new(&path, OsDisk::shared());
        cache.persist().unwrap();
        assert!(!path.exists(), "an unchanged cache writes nothing");
        cache.assign(0, 0);
        cache.assign(3, 1500);
        assert!(cache.is_dirty());
        cache.persist().unwrap();
        assert!(!cache.is_dirty());
        let text = std::fs::read_to_string(&path).unwrap();
        let body = "0\n2\n0 0\n3 1500\n";
        assert_eq!(text, format!("{body}crc32 {:08x}\n", crc32fast::hash(body.as_bytes())));
        let read = LeaderEpochCache::read(&path, OsDisk::shared())
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(read.entries(), cache.entries());
        assert!(!read.is_dirty());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );

        cache.clear();
        cache.persist().unwrap();
        assert_eq!(
            LeaderEpochCache::read(&path, OsDisk::shared())
                .unwrap()
                .unwrap()
                .unwrap()
                .entries(),
            []
        );
    }

    #[test]
    fn corrupt_files_and_broken_invariants_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEADER_EPOCH_CHECKPOINT);
        let mut cache = LeaderEpochCache::new(&path, OsDisk::shared());
        cache.assign(1, 0);
        cache.assign(4, 90);
        cache.persist().unwrap();
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                LeaderEpochCache::read(&path, OsDisk::shared())
                    .unwrap()
                    .unwrap()
                    .is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        for len in 0..good.len() - 1 {
            std::fs::write(&path, &good[..len]).unwrap();
            assert!(
                LeaderEpochCache::read(&path, OsDisk::shared())
                    .unwrap()
                    .unwrap()
                    .is_err(),
                "truncation to {len} bytes went unnoticed"
            );
        }
        // A well-formed file whose entries do not increase, or carry a negative epoch, is not believed.
        for lines in [
            &["4 0", "4 10"][..],
            &["4 10", "5 10"],
            &["5 0", "4 10"],
            &["-1 0"],
            &["1 2 3"],
        ] {
            let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            checkpoint::write_lines(&OsDisk, &path, VERSION, &lines).unwrap();
            assert!(
                LeaderEpochCache::read(&path, OsDisk::shared())
                    .unwrap()
                    .unwrap()
                    .is_err(),
                "{lines:?} was believed"
            );
        }
    }
}
