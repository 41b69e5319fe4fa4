//! The partition log: an ordered run of segments with one active segment at the end.
//!
//! A [`Log`] owns one directory, `<topic>-<partition>/`, holding the files of its segments (see `segment`)
//! and its `leader-epoch-checkpoint`. Offsets are contiguous from the log start offset to the log end offset
//! (LEO), except for the holes compaction leaves; the active segment is the only one appended to, and a new
//! one is rolled at `segment.bytes`, at `segment.ms` less the segment's `segment.jitter.ms` draw (on a
//! compacted log, at `max.compaction.lag.ms` if sooner, as Kafka's `maxSegmentMs`), or when an index fills.
//!
//! Batches come in two ways. A leader appends what clients sent with [`Log::append_as_leader`], which
//! validates each batch once (with the topic's record rules: keys on compacted logs, the CreateTime window),
//! judges idempotent producers' sequences, assigns offsets from the log end offset and stamps the leader
//! epoch, and, as the topic's settings ask, the append time (`LogAppendTime`) and another codec
//! (`compression.type`). A follower appends what it fetched from its leader with
//! [`Log::append_replicated`], verbatim: offsets and epochs were assigned by the leader, and must continue
//! this log. Both share validation, rolling, indexing and the flush policy, and both update the producer
//! state.
//!
//! The log is the partition as one unit: besides its segments it owns the idempotent producers' state
//! ([`crate::producer_state`], snapshotted as `<offset>.snapshot` at each roll and at close, rewound on
//! truncation) and the leader-epoch cache, so that one lock covers a batch and everything it changes.
//!
//! The log also keeps the partition's leader-epoch cache (`leader-epoch-checkpoint`, see [`crate::epochs`]):
//! appends add an entry when a batch carries a new epoch, [`Log::truncate_to`] drops entries past the new
//! end, and moving the log start offset (DeleteRecords, retention) moves the first entry up. Opening
//! rebuilds a missing, corrupt or stale checkpoint from the batch headers and truncates it to what recovery
//! kept.
//!
//! What the log does not own: where its recovery point and log start offset are persisted (the
//! [`crate::LogManager`]'s checkpoints), the high watermark (the broker's replica manager passes it to
//! [`Log::read`] as the upper bound), producer ids (the broker hands them out), and locking (callers wrap a
//! log in a mutex; reads take `&self`). Work that takes long is kept out from under that mutex: fsyncs of
//! rolls and `flush.ms` run on threads of their own, compaction builds its segments from a
//! [`CompactionPlan`] without the log and swaps them in one at a time, and deleted segments' blocks are freed
//! by whoever drops [`Log::take_deleted_files`] (the log manager, after `file.delete.delay.ms`).
//!
//! When to compact is the log's call too ([`Log::plan_compaction`]), with Kafka's triggers:
//! `min.cleanable.dirty.ratio`, `max.compaction.lag.ms`, `min.compaction.lag.ms`.
//!
//! Durability follows Kafka: appends go to the page cache; `flush.messages`/`flush.ms` add fsyncs; a roll and
//! a close always fsync. The recovery point is the offset below which everything is known to be on disk;
//! opening after an unclean stop scans only from the segment holding it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use crate::batch::{self, BatchHeader, Compression, RecordRules, TimestampRule};
use crate::config::{LogConfig, TimestampType};
use crate::disk::{Disk, OpenMode};
use crate::epochs::{EpochEntry, LEADER_EPOCH_CHECKPOINT, LeaderEpochCache};
use crate::error::{AppendError, Error, IoContext, ReadError, ReplicaAppendError};
use crate::handles::HandleCache;
use crate::manager::FlushObserver;
use crate::producer_state::{self, BatchMetadata, PRODUCERS_MAX_DEFAULT, ProducerStateManager};
use crate::segment::{self, AppendFailure, PendingBatch, Segment};

/// How many times `max.message.bytes` a client's batch may decompress to. Compressed batches are checked
/// record by record as they decompress, in constant memory; the bound caps the work one batch can ask for
/// (a gzip bomb of zeros), generous enough for repetitive data, which compresses 10-50 times.
const DECOMPRESSION_RATIO_MAX: u64 = 64;
/// Relative offsets in the indexes are `u32`; like Kafka, Strata keeps them within `i32` and rolls before.
const RELATIVE_OFFSET_MAX: u64 = i32::MAX as u64;
/// Deleted segment files held open for the log manager to free (see `Log::deleted_files`); past this they
/// are freed under the lock, as before.
const DELETED_FILES_HELD_MAX: usize = 1024;
/// A segment's byte positions are `u32` in the offset index.
const SEGMENT_POSITION_MAX: u64 = u32::MAX as u64;

/// What an append assigned (or, for a follower's append, found in the batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// The base offset of the first batch appended.
    pub first_offset: u64,
    /// The last offset of the last batch appended.
    pub last_offset: u64,
    /// The log end offset after the append (`last_offset + 1`).
    pub log_end_offset: u64,
    /// The largest timestamp of the appended batches.
    pub max_timestamp: i64,
    pub batches: usize,
    /// Records appended: the sum of the batches' record counts (on a follower, a compacted batch may hold
    /// fewer records than offsets).
    pub records: u64,
    /// The time the leader stamped on the batches (`message.timestamp.type=LogAppendTime`), which Produce
    /// answers with; `None` otherwise (Kafka's -1).
    pub log_append_time_ms: Option<i64>,
}

/// What a leader append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderAppend {
    Appended(AppendInfo),
    /// The batches are an idempotent producer's retry of `batch`, already in the log: nothing was appended,
    /// and the producer is answered with the offsets the batch got the first time.
    Duplicate {
        batch: BatchMetadata,
        /// The append time the batch was stamped with the first time, if it was.
        log_append_time_ms: Option<i64>,
    },
}

/// Bounds on one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Bytes to return at most (whole batches only).
    pub max_bytes: usize,
    /// Return only batches that end below this offset (the high watermark, for consumers). `None`: the LEO.
    pub max_offset: Option<u64>,
    /// Return the first batch whole even when it is larger than `max_bytes`, so a consumer always progresses.
    pub min_one_batch: bool,
}

impl ReadLimits {
    pub fn bytes(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            max_offset: None,
            min_one_batch: true,
        }
    }
}

/// Batches read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole v2 batches, back to back. The first may begin before the requested offset (it holds it).
    pub records: Vec<u8>,
    /// The offset after the last batch returned (the requested offset when nothing was returned).
    pub next_offset: u64,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
}

/// Where one batch is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLocation {
    /// The base offset of the segment, which names its files.
    pub segment_base_offset: u64,
    /// Byte position of the batch in the segment's `.log` file.
    pub position: u64,
    pub base_offset: u64,
    pub last_offset: u64,
    pub size_bytes: usize,
}

/// A record found by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub offset: u64,
}

/// What the log must know to open its directory: where recovery starts, and whether the last stop was clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenState {
    /// Offsets below this are on disk (from the recovery-point checkpoint); 0 when unknown.
    pub recovery_point: u64,
    /// The log start offset from the log-start-offset checkpoint; 0 when unknown.
    pub log_start_offset: u64,
    /// The data directory holds a clean-shutdown marker: no recovery scan is needed.
    pub clean_shutdown: bool,
}

/// What opening found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    /// Segments scanned batch by batch (those past the recovery point after an unclean stop).
    pub segments_recovered: usize,
    /// Bytes cut from torn or corrupt tails, and segments dropped after a cut.
    pub bytes_truncated: u64,
    pub segments_deleted: usize,
    /// The leader-epoch checkpoint was missing, corrupt or behind the log, and was rebuilt from the batches.
    pub epoch_cache_rebuilt: bool,
    /// Batch headers read to bring the idempotent producers' state from its newest snapshot to the log end.
    pub producer_batches_replayed: u64,
}

/// What compaction removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionReport {
    pub segments_rewritten: usize,
    pub bytes_removed: u64,
    /// The log changed while the compacted segments were built (truncation, retention, DeleteRecords):
    /// nothing was installed.
    pub abandoned: bool,
}

/// What retention removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

/// One partition's log; see the module documentation.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    handles: Arc<HandleCache>,
    /// Keyed by base offset; never empty; the last is the active segment.
    segments: BTreeMap<u64, Segment>,
    log_start_offset: u64,
    recovery_point: u64,
    unflushed_records: u64,
    last_flush: Instant,
    /// fsyncs of rolled segments running on their own threads, oldest first; the recovery point moves past
    /// a rolled segment only when its fsync (and every earlier one) has finished.
    rolled_syncs: VecDeque<RolledSync>,
    /// Segments below this base offset were compacted since the last roll (in memory: a restart compacts
    /// once more, which finds nothing to remove).
    compacted_up_to: u64,
    /// Set when an append failed in a way that left the active segment damaged; appends are refused until
    /// the log is reopened and recovered, as Kafka takes a failed log directory offline.
    offline: bool,
    /// A new log's directory, and its entry in the data directory, are not fsynced yet: that waits for the
    /// log's first flush or roll (as Kafka defers it), so that creating thousands of empty partitions costs
    /// no fsyncs. A crash before then loses only an empty directory, or records never flushed, which the
    /// recovery point did not vouch for.
    dirs_unsynced: bool,
    /// The first offset of each leader epoch in the log, persisted as `leader-epoch-checkpoint`.
    epochs: LeaderEpochCache,
    /// When the active segment was created or, for one found on disk, opened (ms since the Unix epoch).
    active_since_ms: i64,
    /// How much earlier than `segment.ms` the active segment rolls (`segment.jitter.ms`), drawn when it was
    /// created or opened, as Kafka draws it per segment.
    roll_jitter_ms: u64,
    /// Idempotent producers' sequences, snapshotted with the segments (see [`crate::producer_state`]).
    producers: ProducerStateManager,
    /// Bumped by every change to the closed segments (truncation, deletion, a compaction swap), so that a
    /// compaction built outside the lock can tell whether what it read is still the log.
    generation: u64,
    /// `.log` files of segments retention or DeleteRecords deleted, held open so that their blocks are freed
    /// when the log manager drops them without the lock, after `file.delete.delay.ms` (see
    /// [`Self::take_deleted_files`]).
    deleted_files: Vec<DeletedFile>,
    /// Told how long each fsync of this log took (see [`FlushObserver`]).
    flush_observer: Option<FlushObserver>,
}

/// The file of a deleted segment, unlinked and held open: its space is given back when it is dropped, which
/// the log manager does once `due` has passed (Kafka's `file.delete.delay.ms`), without the log's lock.
#[derive(Debug)]
pub struct DeletedFile {
    pub file: fs::File,
    pub due: Instant,
}

/// Where appended batches come from, which decides how they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A producer, through the leader: every batch whole, within `max.message.bytes`, one record per offset.
    Client,
    /// The leader, through a follower's fetch: a partial batch at the end is dropped (a fetch response may
    /// end in one), the size limit is not applied (the leader accepted the batch), and a compacted batch may
    /// hold fewer records than offsets.
    Replica,
}

impl Log {
    /// Opens the log in `dir`, creating it if needed. After an unclean stop, recovers every segment from the
    /// one holding the recovery point: torn or corrupt tails are cut and logged, and indexes rebuilt.
    pub fn open(
        dir: impl Into<PathBuf>,
        config: LogConfig,
        handles: Arc<HandleCache>,
        state: OpenState,
    ) -> Result<(Self, RecoveryReport), Error> {
        let dir = dir.into();
        fs::create_dir_all(&dir).context("create log directory", &dir)?;
        // A compaction interrupted before its swap: the segments in place are whole.
        remove_cleaner_dir(&dir.join(CLEANER_DIR));
        let (bases, snapshots) = scan_directory(&dir)?;
        let mut report = RecoveryReport::default();
        let mut segments = BTreeMap::new();
        for &base in &bases {
            segments.insert(base, Segment::open(&dir, base, &handles).context("open segment", &dir)?);
        }

        // Segments from the one holding the recovery point on may hold unflushed, torn data.
        let recover_from = if state.clean_shutdown {
            u64::MAX
        } else {
            segments
                .range(..=state.recovery_point)
                .next_back()
                .map_or(0, |(base, _)| *base)
        };
        let mut cut_at: Option<u64> = None;
        let in_order: Vec<u64> = segments.keys().copied().collect();
        for (i, &base) in in_order.iter().enumerate() {
            let segment = segments.get_mut(&base).expect("listed above");
            if base < recover_from {
                match segment.load(&config) {
                    Ok(()) => continue,
                    Err(e) => warn!(segment = %segment.log_path().display(), error = %e,
                        "segment does not load; recovering it"),
                }
            }
            report.segments_recovered += 1;
            let outcome = segment
                .recover(&config)
                .context("recover segment", segment.log_path())?;
            if outcome.truncated_bytes > 0 {
                warn!(
                    segment = %segment.log_path().display(),
                    bytes = outcome.truncated_bytes,
                    reason = outcome.reason.as_deref().unwrap_or("unknown"),
                    "cut a torn or corrupt tail"
                );
                report.bytes_truncated += outcome.truncated_bytes;
                cut_at = Some(base);
                break;
            }
            // A roll starts the next segment at this one's end, and segments from the recovery point on are
            // never compacted, so a gap means this one's tail was lost (after a power cut, a later file's
            // unsynced pages can reach the disk while an earlier one's do not).
            if let Some(&next) = in_order.get(i + 1)
                && segment.next_offset() != next
            {
                warn!(segment = %segment.log_path().display(), next_offset = segment.next_offset(), next_base = next,
                    "a segment ends short of the next one: its tail was lost");
                cut_at = Some(base);
                break;
            }
        }
        // Nothing after a cut can be trusted to follow it: later segments go.
        if let Some(cut) = cut_at {
            let later: Vec<u64> = segments.range(cut + 1..).map(|(base, _)| *base).collect();
            for base in later {
                let segment = segments.remove(&base).expect("listed above");
                report.bytes_truncated += segment.size();
                report.segments_deleted += 1;
                warn!(segment = %segment.log_path().display(), "deleted a segment that followed a cut");
                segment.delete().context("delete segment", &dir)?;
            }
        }
        report.segments = segments.len();
        // Recovery sized the indexes it rebuilt for appends; all but the active segment's go back to their
        // entries, or the next clean open would take the padding for damage and rebuild them again.
        for segment in segments.values_mut().rev().skip(1) {
            segment.trim_indexes().context("trim indexes", segment.log_path())?;
        }

        let epochs = LeaderEpochCache::new(dir.join(LEADER_EPOCH_CHECKPOINT), handles.disk().clone());
        let producers = ProducerStateManager::new(&dir, handles.disk().clone(), snapshots, PRODUCERS_MAX_DEFAULT);
        let mut log = Self {
            dir,
            config,
            handles,
            segments,
            log_start_offset: state.log_start_offset,
            recovery_point: 0,
            unflushed_records: 0,
            last_flush: Instant::now(),
            rolled_syncs: VecDeque::new(),
            compacted_up_to: 0,
            offline: false,
            dirs_unsynced: false,
            epochs,
            active_since_ms: now_ms(),
            roll_jitter_ms: 0,
            producers,
            generation: 0,
            deleted_files: Vec::new(),
            flush_observer: None,
        };
        match log.segments.keys().next().copied() {
            None => {
                log.create_first_segment(state.log_start_offset)?;
                log.dirs_unsynced = true;
            }
            Some(_) if state.log_start_offset > log.log_end_offset() => {
                // The checkpoint says records were deleted up to an offset the (recovered) log never reached.
                warn!(dir = %log.dir.display(), log_start_offset = state.log_start_offset,
                    "log start offset is past the recovered log end; starting the log afresh there");
                log.start_fresh_at(state.log_start_offset)?;
            }
            Some(first) => log.log_start_offset = log.log_start_offset.max(first),
        }
        log.activate_last()?;
        log.roll_jitter_ms = random_jitter_ms(&log.config);
        if report.segments_recovered > 0 {
            // What recovery read may be only in the page cache; make it durable before calling it recovered.
            log.flush_all()?;
        }
        log.recovery_point = log.log_end_offset();
        report.epoch_cache_rebuilt = log.load_epochs()?;
        report.producer_batches_replayed = log.load_producer_state()?;
        if report.segments_recovered > 0 || report.bytes_truncated > 0 {
            info!(dir = %log.dir.display(), ?report, log_end_offset = log.log_end_offset(), "recovered log");
        }
        Ok((log, report))
    }

    /// Deletes every segment and starts an empty log at `offset`; the epoch cache is cleared, as Kafka's
    /// `truncateFullyAndStartAt` does (no batch is left to carry an epoch).
    fn start_fresh_at(&mut self, offset: u64) -> Result<(), Error> {
        for (_, segment) in std::mem::take(&mut self.segments) {
            segment.delete().context("delete segment", &self.dir)?;
        }
        self.create_first_segment(offset)?;
        self.sync_dirs()?;
        self.generation += 1;
        self.compacted_up_to = self.compacted_up_to.min(offset);
        self.producers.clear(offset)?;
        // After the segments: a crash in between leaves entries that opening drops (they are past the end).
        self.epochs.clear();
        self.epochs.persist()
    }

    /// Loads the idempotent producers' state: the newest usable snapshot at or below the log end, then the
    /// batch headers from its offset to the end. Snapshots past the end go (recovery or truncation cut their
    /// batches). Returns the batches replayed.
    ///
    /// Without a usable snapshot (a log written before snapshots existed, or every one lost) only the last
    /// two segments are replayed, as Kafka does: a scan of every header of a large log would make opening
    /// slow, and a producer that wrote only before them is forgotten (its next batch gets
    /// `UNKNOWN_PRODUCER_ID` unless it starts a sequence, which clients handle).
    fn load_producer_state(&mut self) -> Result<u64, Error> {
        let end = self.log_end_offset();
        let first = *self.segments.keys().next().expect("never empty");
        let last_two = *self.segments.keys().rev().nth(1).unwrap_or(&first);
        let from = self.producers.load(end)?.unwrap_or(last_two).max(first);
        let mut replayed = 0;
        let producers = &mut self.producers;
        for segment in self.segments.values().filter(|s| s.next_offset() > from) {
            segment
                .for_each_header(|header| {
                    if header.base_offset as u64 >= from {
                        producers.update(header);
                        replayed += 1;
                    }
                })
                .context("rebuild producer state from", segment.log_path())?;
        }
        self.producers.on_log_start_moved(self.log_start_offset, first)?;
        Ok(replayed)
    }

    /// The idempotent producers' state (for tests and metrics).
    pub fn producer_state(&self) -> &ProducerStateManager {
        &self.producers
    }

    /// The segment of an empty log starting at `offset`. Not fsynced: see `dirs_unsynced`.
    fn create_first_segment(&mut self, offset: u64) -> Result<(), Error> {
        let segment =
            Segment::create(&self.dir, offset, &self.handles, &self.config).context("create segment", &self.dir)?;
        self.segments.insert(offset, segment);
        self.log_start_offset = offset;
        self.recovery_point = self.recovery_point.min(offset);
        self.clamp_rolled_syncs(offset);
        Ok(())
    }

    /// fsyncs this log's directory, and the first time also the data directory's entry for it.
    fn sync_dirs(&mut self) -> Result<(), Error> {
        sync_dir(&**self.handles.disk(), &self.dir)?;
        if self.dirs_unsynced {
            if let Some(parent) = self.dir.parent() {
                sync_dir(&**self.handles.disk(), parent)?;
            }
            self.dirs_unsynced = false;
        }
        Ok(())
    }

    /// Loads the leader-epoch cache on open, after recovery: reads the checkpoint, or rebuilds it from the
    /// batch headers when it is missing, corrupt, or does not end with the epoch of the last batch (it fell
    /// behind the log). Then truncates it to the log as recovery left it. Returns whether it was rebuilt.
    fn load_epochs(&mut self) -> Result<bool, Error> {
        let path = self.dir.join(LEADER_EPOCH_CHECKPOINT);
        let has_batches = self.log_end_offset() > self.log_start_offset;
        let rebuild_because = match LeaderEpochCache::read(&path, self.handles.disk().clone())? {
            Some(Ok(cache)) => {
                self.epochs = cache;
                self.truncate_epochs_to_log();
                self.epochs_disagree_with_last_batch()
            }
            Some(Err(corrupt)) => Some(corrupt.to_string()),
            // A new log has nothing to rebuild from, and writes the file with its first epoch.
            None if !has_batches => None,
            None => Some("the checkpoint is missing".to_owned()),
        };
        let Some(reason) = rebuild_because else {
            self.epochs.persist()?;
            return Ok(false);
        };
        let mut rebuilt = LeaderEpochCache::new(path, self.handles.disk().clone());
        for segment in self.segments.values() {
            segment
                .for_each_header(|header| {
                    rebuilt.assign(header.partition_leader_epoch, header.base_offset as u64);
                })
                .context("rebuild the leader-epoch cache from", segment.log_path())?;
        }
        self.epochs = rebuilt;
        self.truncate_epochs_to_log();
        // Written even when empty, so that the next open reads it instead of scanning again.
        self.epochs.replace(self.epochs.entries().to_vec());
        self.epochs.persist()?;
        warn!(dir = %self.dir.display(), reason, entries = ?self.epochs.entries(),
            "rebuilt the leader-epoch cache from the log");
        Ok(true)
    }

    /// Drops the epoch entries outside `[log start, log end)`: those past the end belong to batches recovery
    /// cut (or that were never written), and those before the start to deleted ones.
    fn truncate_epochs_to_log(&mut self) {
        self.epochs.truncate_from_start(self.log_start_offset);
        self.epochs.truncate_from_end(self.log_end_offset());
    }

    /// Why the cache cannot be right for the last batch in the log, if it cannot: its latest epoch must be
    /// that batch's (or the cache empty, for a batch without an epoch).
    fn epochs_disagree_with_last_batch(&self) -> Option<String> {
        if self.log_end_offset() <= self.log_start_offset {
            return None;
        }
        let last_epoch = self.segments.values().rev().find_map(Segment::last_epoch)?;
        let latest = self.epochs.latest_epoch();
        let agree = if last_epoch >= 0 {
            latest == Some(last_epoch)
        } else {
            latest.is_none()
        };
        (!agree).then(|| format!("the last batch carries epoch {last_epoch}, the checkpoint ends with {latest:?}"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Applies new settings. Size and time limits take effect from the next append; a new
    /// `segment.index.bytes` from the next segment.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> u64 {
        self.active().next_offset()
    }

    pub fn recovery_point(&self) -> u64 {
        self.recovery_point
    }

    /// The leader epoch of the newest batch that carries one (Kafka's `latestEpoch`); `None` when no batch
    /// carries an epoch (or the whole log was truncated away).
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// Kafka's OffsetsForLeaderEpoch for `epoch`, as the leader answers it: the largest epoch at or below
    /// `epoch` in this log, and the offset where it ends (the first offset of the next higher epoch, or the
    /// log end offset for the latest epoch). `None` (Kafka's `UNDEFINED_EPOCH_OFFSET`) when `epoch` is
    /// negative or above the latest, or no batch carries an epoch. An epoch below the oldest one still in
    /// the log is answered with itself and the oldest one's start, as Kafka does. See
    /// [`LeaderEpochCache::end_offset_for`].
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, u64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// The leader-epoch cache: the first offset of each epoch in the log, oldest first.
    pub fn epoch_entries(&self) -> &[EpochEntry] {
        self.epochs.entries()
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<u64> {
        self.segments.keys().copied().collect()
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Gives the last segment room to grow; it may have been sealed (trimmed) before.
    fn activate_last(&mut self) -> Result<(), Error> {
        let active = self
            .segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment");
        active.activate(&self.config).context("activate segment", &self.dir)
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// The leader's append, the one entry point for what clients send: validates one or more batches,
    /// exactly as a client encoded them back to back in `batches`, judges idempotent producers' sequences,
    /// assigns offsets from the log end offset and stamps `leader_epoch` into each batch header, in place,
    /// and appends. Each batch is walked once: its header is parsed and its CRC checked in one pass, and
    /// everything after works on the parsed headers. Either every batch is appended or none is.
    ///
    /// The topic's settings apply as Kafka's LogValidator applies them: on a compacted log every record
    /// needs a key; with `message.timestamp.type=CreateTime` each record's timestamp must be within
    /// `message.timestamp.before.max.ms` / `after.max.ms` of now (both refused as
    /// [`batch::BatchError::RecordsRejected`], naming the records); with `LogAppendTime` each batch is
    /// stamped with now. A batch whose codec is not the topic's `compression.type` is recompressed; only
    /// then are the records decompressed whole and the bytes copied, and the rebuilt batch must still fit
    /// `max.message.bytes`. A batch the log rewrites is appended from a buffer of its own, leaving
    /// `batches` as it was.
    ///
    /// An epoch below the latest one in the log is refused (`Error::StaleLeaderEpoch`): only a stale leader
    /// appends with one. An epoch above it starts a new entry in the leader-epoch cache. A producer's retry
    /// of a batch still among its last five is [`LeaderAppend::Duplicate`]; a sequence that does not follow,
    /// or a fenced epoch, is [`AppendError::Producer`].
    pub fn append_as_leader(&mut self, batches: &mut [u8], leader_epoch: i32) -> Result<LeaderAppend, AppendError> {
        if self.offline {
            return Err(Error::Offline { path: self.dir.clone() }.into());
        }
        self.reap_rolled_syncs();
        let now_ms = now_ms();
        let rules = self.record_rules(now_ms);
        let decompressed_bytes_max = self.config.max_message_bytes.saturating_mul(DECOMPRESSION_RATIO_MAX);
        // Per batch: the codec to store it with when it is not the one it came with, and its records
        // decompressed when they were compressed.
        let mut recompress: Vec<Option<(Compression, Option<Vec<u8>>)>> = Vec::new();
        let mut pending = self.split_batches(batches, Origin::Client, |one| {
            if one.len() as u64 > self.config.max_message_bytes {
                return Err(AppendError::TooLarge {
                    size: one.len(),
                    max: self.config.max_message_bytes,
                });
            }
            let target = self.recompression_target(one);
            let validated = batch::validate_as_leader(one, decompressed_bytes_max, &rules, target.is_some())
                .map_err(|source| AppendError::InvalidBatch { position: 0, source })?;
            recompress.push(target.map(|codec| (codec, validated.decompressed)));
            Ok(validated.header)
        })?;
        if let Some(latest_epoch) = self.epochs.latest_epoch()
            && leader_epoch < latest_epoch
        {
            return Err(Error::StaleLeaderEpoch {
                path: self.dir.clone(),
                epoch: leader_epoch,
                latest_epoch,
            }
            .into());
        }
        let mut next = self.log_end_offset();
        for batch in &mut pending {
            batch.header.base_offset = next as i64;
            batch.header.partition_leader_epoch = leader_epoch;
            next += batch.header.record_count as u64;
        }
        if let Some(batch) = self.producers.check(pending.iter().map(|b| &b.header))? {
            let log_append_time_ms = self.log_append_time_of(batch.base_offset);
            return Ok(LeaderAppend::Duplicate {
                batch,
                log_append_time_ms,
            });
        }
        let log_append_time_ms = (self.config.message_timestamp_type == TimestampType::LogAppendTime).then_some(now_ms);
        let appended = if recompress.iter().all(Option::is_none) {
            // The common case: headers rewritten in place, nothing copied.
            for batch in &mut pending {
                let one = &mut batches[batch.start..batch.start + batch.header.total_bytes()];
                batch::assign(one, batch.header.base_offset, leader_epoch);
                if let Some(now_ms) = log_append_time_ms {
                    batch::set_log_append_time(one, now_ms);
                    batch.header = BatchHeader::parse(one).expect("validated above");
                }
            }
            self.append_batches(batches, &pending)
        } else {
            let rewritten = self.rewrite(batches, &mut pending, recompress, log_append_time_ms)?;
            self.append_batches(&rewritten, &pending)
        };
        appended.map(|info| {
            LeaderAppend::Appended(AppendInfo {
                log_append_time_ms,
                ..info
            })
        })
    }

    /// The topic's rules for the records of a client's batch at `now_ms`.
    fn record_rules(&self, now_ms: i64) -> RecordRules {
        RecordRules {
            key_required: self.config.cleanup_compact,
            timestamps: match self.config.message_timestamp_type {
                TimestampType::CreateTime => TimestampRule::CreateTime {
                    now_ms,
                    before_max_ms: self.config.message_timestamp_before_max_ms,
                    after_max_ms: self.config.message_timestamp_after_max_ms,
                },
                TimestampType::LogAppendTime => TimestampRule::LogAppendTime,
            },
        }
    }

    /// The codec the batch `one` must be recompressed to, if its own is not the topic's
    /// `compression.type`. Uncompressed control batches stay uncompressed, as in Kafka.
    fn recompression_target(&self, one: &[u8]) -> Option<Compression> {
        let header = BatchHeader::parse(one).ok()?;
        let source = header.compression().ok()?;
        let target = self.config.compression_type.target(source);
        (target != source && !(header.is_control() && source == Compression::None)).then_some(target)
    }

    /// The batches of `batches` rebuilt where they must be: recompressed to the topic's codec (from the
    /// records validation decompressed, or the batch's own bytes when it was uncompressed), stamped with the
    /// append time, and with their offsets and epoch. `pending` is updated to the new buffer.
    fn rewrite(
        &self,
        batches: &[u8],
        pending: &mut [PendingBatch],
        recompress: Vec<Option<(Compression, Option<Vec<u8>>)>>,
        log_append_time_ms: Option<i64>,
    ) -> Result<Vec<u8>, AppendError> {
        let mut out = Vec::with_capacity(batches.len());
        for (batch, recompress) in pending.iter_mut().zip(recompress) {
            let one = &batches[batch.start..batch.start + batch.header.total_bytes()];
            let start = out.len();
            match recompress {
                Some((codec, decompressed)) => {
                    let records = decompressed.as_deref().unwrap_or(&one[batch::BATCH_HEADER_BYTES..]);
                    let level = self.config.compression_level(codec);
                    out.extend_from_slice(&batch::recompressed(one, records, codec, level, log_append_time_ms));
                    let size = out.len() - start;
                    // Kafka checks the size again after recompression: another codec may not shrink it as much.
                    if size as u64 > self.config.max_message_bytes {
                        return Err(AppendError::TooLarge {
                            size,
                            max: self.config.max_message_bytes,
                        });
                    }
                }
                None => {
                    out.extend_from_slice(one);
                    if let Some(now_ms) = log_append_time_ms {
                        batch::set_log_append_time(&mut out[start..], now_ms);
                    }
                }
            }
            let written = &mut out[start..];
            batch::assign(written, batch.header.base_offset, batch.header.partition_leader_epoch);
            *batch = PendingBatch {
                start,
                header: BatchHeader::parse(written).expect("a batch just built"),
            };
        }
        Ok(out)
    }

    /// The append time the batch at `base_offset` was stamped with, if it was (for a producer's retry).
    fn log_append_time_of(&self, base_offset: u64) -> Option<i64> {
        let (_, _, header) = self.find_batch(base_offset).ok()??;
        header.is_log_append_time().then_some(header.max_timestamp)
    }

    /// [`Self::append_as_leader`] for callers that write their own batches (the group coordinator, tests):
    /// a duplicate is answered with the offsets of the batch already in the log, and `batches: 0`.
    pub fn append(&mut self, batches: &mut [u8], leader_epoch: i32) -> Result<AppendInfo, AppendError> {
        Ok(match self.append_as_leader(batches, leader_epoch)? {
            LeaderAppend::Appended(info) => info,
            LeaderAppend::Duplicate {
                batch,
                log_append_time_ms,
            } => AppendInfo {
                first_offset: batch.base_offset,
                last_offset: batch.last_offset,
                log_end_offset: self.log_end_offset(),
                max_timestamp: i64::MIN,
                batches: 0,
                records: 0,
                log_append_time_ms,
            },
        })
    }

    /// A follower's append: `batches` were fetched from the leader and are stored verbatim, offsets and
    /// partition leader epochs as the leader assigned them. Each whole batch is checked as on the leader
    /// (magic 2, lengths, CRC-32C, record count against the bytes), and must continue the log: the first at
    /// the log end offset, each next one right after the previous one's last offset (on a compacted log
    /// later is allowed too: see [`ReplicaAppendError::OffsetMismatch`]), with an epoch no lower than the
    /// latest in the log. A partial batch at the end of `batches`, as a fetch response may carry, is ignored.
    /// Rolling, indexes and the flush policy are those of [`Self::append`]; `max.message.bytes` is not
    /// applied (the leader accepted the batches). Either every whole batch is appended or none is.
    pub fn append_replicated(&mut self, batches: &[u8]) -> Result<AppendInfo, ReplicaAppendError> {
        if self.offline {
            return Err(Error::Offline { path: self.dir.clone() }.into());
        }
        self.reap_rolled_syncs();
        let pending = self.split_batches(batches, Origin::Replica, |one| {
            batch::validate_replicated(one).map_err(|source| AppendError::InvalidBatch { position: 0, source })
        })?;
        self.check_continues_log(&pending)?;
        let last = pending.last().expect("split_batches refuses an empty append");
        let whole = last.start + last.header.total_bytes();
        Ok(self.append_batches(&batches[..whole], &pending)?)
    }

    /// Checks that fetched batches continue this log: offsets (see [`Self::append_replicated`]) and epochs.
    fn check_continues_log(&self, pending: &[PendingBatch]) -> Result<(), ReplicaAppendError> {
        let log_end_offset = self.log_end_offset();
        // Compaction on the leader removes whole batches, leaving holes in the offsets it serves.
        let gaps_allowed = self.config.cleanup_compact;
        let mut expected = log_end_offset;
        let mut latest_epoch = self.epochs.latest_epoch();
        for batch in pending {
            let header = &batch.header;
            let continues = u64::try_from(header.base_offset)
                .is_ok_and(|base| base == expected || (gaps_allowed && base > expected));
            // Whatever the holes, the batch must fit a segment started at the log end: relative offsets in the
            // indexes are 32-bit.
            let indexable = (header.last_offset() as u64).saturating_sub(log_end_offset) <= RELATIVE_OFFSET_MAX;
            if !continues || !indexable {
                return Err(ReplicaAppendError::OffsetMismatch {
                    position: batch.start,
                    expected,
                    base_offset: header.base_offset,
                });
            }
            let epoch = header.partition_leader_epoch;
            if let Some(latest) = latest_epoch
                && epoch < latest
            {
                return Err(ReplicaAppendError::EpochRegression {
                    position: batch.start,
                    epoch,
                    latest_epoch: latest,
                });
            }
            if epoch >= 0 {
                latest_epoch = Some(epoch);
            }
            expected = header.last_offset() as u64 + 1;
        }
        Ok(())
    }

    /// Appends validated batches whose headers hold their final offsets and epochs: rolls if needed, records
    /// new epochs, writes, and applies the flush policy. Shared by the leader's and the follower's append.
    fn append_batches(&mut self, bytes: &[u8], pending: &[PendingBatch]) -> Result<AppendInfo, AppendError> {
        let (Some(first), Some(last)) = (pending.first(), pending.last()) else {
            return Err(AppendError::Empty);
        };
        let first_offset = first.header.base_offset as u64;
        let last_offset = last.header.last_offset() as u64;
        let records: u64 = pending.iter().map(|b| b.header.record_count as u64).sum();
        let max_timestamp = pending.iter().map(|b| b.header.max_timestamp).max().unwrap_or(i64::MIN);
        self.maybe_roll(bytes.len() as u64, last_offset)?;
        let epochs_before = self.record_epochs(pending)?;
        let config = self.config.clone();
        let failure = match self.active_mut().append(bytes, pending, &config) {
            Ok(()) => None,
            Err(AppendFailure::Unchanged(e)) => {
                // Nothing was written: the new epochs describe no batch. Undo them; if the checkpoint cannot be
                // rewritten now, it stays dirty and the next append rewrites it before writing any batch.
                if let Some(before) = epochs_before {
                    self.epochs.replace(before);
                    if let Err(persist) = self.epochs.persist() {
                        warn!(dir = %self.dir.display(), error = %persist, "could not undo a leader-epoch change");
                    }
                }
                Some(e)
            }
            Err(AppendFailure::Damaged(e)) => {
                // The batches may be on disk in part or whole: the checkpoint keeps their epochs, and opening
                // truncates it to whatever recovery keeps.
                self.offline = true;
                Some(e)
            }
        };
        if let Some(e) = failure {
            return Err(Error::Io {
                op: "append to",
                path: self.dir.clone(),
                source: e,
            }
            .into());
        }
        // Unjudged on a follower: its leader judged the batches.
        for batch in pending {
            self.producers.update(&batch.header);
        }
        self.unflushed_records += records;
        if self.config.flush_messages.is_some_and(|n| self.unflushed_records >= n) {
            self.flush()?;
        }
        Ok(AppendInfo {
            first_offset,
            last_offset,
            log_end_offset: last_offset + 1,
            max_timestamp,
            batches: pending.len(),
            records,
            log_append_time_ms: None,
        })
    }

    /// Adds the epochs `pending` starts to the leader-epoch cache and persists it, before the batches are
    /// written: a batch on disk then always has its epoch in the checkpoint, and a crash in between leaves
    /// only an entry at the log end, which opening drops. Returns the entries as they were if they changed.
    fn record_epochs(&mut self, pending: &[PendingBatch]) -> Result<Option<Vec<EpochEntry>>, Error> {
        let latest = self.epochs.latest_epoch();
        let changes = pending.iter().any(|b| {
            let epoch = b.header.partition_leader_epoch;
            epoch >= 0 && latest.is_none_or(|latest| epoch > latest)
        });
        // The common case, an append in the current epoch, copies and writes nothing.
        let before = changes.then(|| self.epochs.entries().to_vec());
        if changes {
            for batch in pending {
                self.epochs
                    .assign(batch.header.partition_leader_epoch, batch.header.base_offset as u64);
            }
        }
        if let Err(e) = self.epochs.persist() {
            if let Some(before) = before {
                self.epochs.replace(before);
            }
            return Err(e);
        }
        Ok(before)
    }

    /// Splits `bytes` into whole batches and checks each with `check` (which sees one batch and answers
    /// with its header; an `InvalidBatch` it returns gets the batch's position); nothing is changed. A
    /// replica's partial batch at the end is left out (see [`Origin`]).
    fn split_batches(
        &self,
        bytes: &[u8],
        origin: Origin,
        mut check: impl FnMut(&[u8]) -> Result<BatchHeader, AppendError>,
    ) -> Result<Vec<PendingBatch>, AppendError> {
        let mut pending = Vec::new();
        let mut start = 0;
        while start < bytes.len() {
            let rest = &bytes[start..];
            let invalid = |source| AppendError::InvalidBatch {
                position: start,
                source,
            };
            if origin == Origin::Replica {
                // A partial batch at the end is ignored, as Kafka's record iterators do: fewer bytes than the
                // length field, or fewer than it declares. A declared size below a header is corruption.
                let declared = batch::declared_total_bytes(rest);
                if declared.is_none_or(|size| size > rest.len() as i64 && size >= batch::BATCH_HEADER_BYTES as i64) {
                    break;
                }
            }
            let header = BatchHeader::parse(rest).map_err(invalid)?;
            let size = header.total_bytes();
            if header.batch_length < 0 || start + size > bytes.len() {
                return Err(invalid(batch::BatchError::LengthMismatch {
                    declared: i64::from(header.batch_length),
                    present: bytes.len() - start - batch::BATCH_LENGTH_PREFIX_BYTES,
                }));
            }
            let header = check(&bytes[start..start + size]).map_err(|e| match e {
                AppendError::InvalidBatch { source, .. } => invalid(source),
                other => other,
            })?;
            pending.push(PendingBatch { start, header });
            start += size;
        }
        if pending.is_empty() {
            return Err(AppendError::Empty);
        }
        Ok(pending)
    }

    /// Rolls before an append of `bytes` ending at `last_offset` if the active segment cannot or should not
    /// take it.
    fn maybe_roll(&mut self, bytes: u64, last_offset: u64) -> Result<(), Error> {
        let active = self.active();
        if active.is_empty() {
            return Ok(());
        }
        let full = active.size() + bytes > self.config.segment_bytes.min(SEGMENT_POSITION_MAX);
        let old = self.active_is_old(now_ms());
        let offsets_overflow = last_offset - active.base_offset() > RELATIVE_OFFSET_MAX;
        if full || old || offsets_overflow || active.indexes_full() {
            self.roll()?;
        }
        Ok(())
    }

    /// Whether the active segment has been open long enough to roll: Kafka's `segment.ms` (or, on a
    /// compacted log, `max.compaction.lag.ms` if shorter), less this segment's `segment.jitter.ms` draw.
    /// Kafka counts from the first batch's timestamp, which the producer chose: one with an ancient timestamp
    /// would roll a segment at every append (thousands of files and maps from one client). Counting from the
    /// segment's creation too bounds the rolls to one per `segment.ms`.
    fn active_is_old(&self, now_ms: i64) -> bool {
        let roll_after_ms = self.config.max_segment_ms().saturating_sub(self.roll_jitter_ms);
        self.active()
            .first_batch_timestamp()
            .is_some_and(|t| i128::from(now_ms) - i128::from(t.max(self.active_since_ms)) > i128::from(roll_after_ms))
    }

    /// Closes the active segment (final time index entry, trimmed indexes, fsync) and starts a new one at the
    /// log end offset. Does nothing when the active segment is empty.
    pub fn roll(&mut self) -> Result<(), Error> {
        if self.offline {
            return Err(Error::Offline { path: self.dir.clone() });
        }
        let next = self.log_end_offset();
        let dir = self.dir.clone();
        let active = self.active_mut();
        if active.is_empty() {
            return Ok(());
        }
        active.seal_unsynced().context("seal segment", active.log_path())?;
        let mut paths = active.file_paths().to_vec();
        let segment = Segment::create(&dir, next, &self.handles, &self.config).context("create segment", &dir)?;
        self.segments.insert(next, segment);
        self.active_since_ms = now_ms();
        self.roll_jitter_ms = random_jitter_ms(&self.config);
        let bases = self.segment_base_offsets();
        paths.push(self.producers.take_snapshot(next, false, &bases)?);
        // Every fsync of a roll (the full segment, up to `segment.bytes`; the producer snapshot; the
        // directory, for the new files) takes long enough to stall producers, so they run on a thread of
        // their own, as Kafka flushes rolled segments in the background. The recovery point follows when
        // they are done (`reap_rolled_syncs`); `flush` and `close` wait for them.
        paths.push(dir.clone());
        if self.dirs_unsynced
            && let Some(parent) = dir.parent()
        {
            paths.push(parent.to_owned());
            self.dirs_unsynced = false;
        }
        self.rolled_syncs.push_back(RolledSync::start(
            self.handles.disk().clone(),
            paths,
            next,
            self.flush_observer.clone(),
        ));
        self.unflushed_records = 0;
        self.last_flush = Instant::now();
        Ok(())
    }

    /// Reads whole batches from `offset` (which may fall inside a batch: the batch holding it is returned).
    /// An offset equal to the log end offset reads nothing; one outside the log is `OffsetOutOfRange`.
    pub fn read(&self, offset: u64, limits: ReadLimits) -> Result<ReadResult, ReadError> {
        self.check_range(offset)?;
        let log_end_offset = self.log_end_offset();
        let max_offset = limits.max_offset.unwrap_or(log_end_offset).min(log_end_offset);
        let mut result = ReadResult {
            records: Vec::new(),
            next_offset: offset,
            log_start_offset: self.log_start_offset,
            log_end_offset,
        };
        if offset >= max_offset || (limits.max_bytes == 0 && !limits.min_one_batch) {
            return Ok(result);
        }
        let Some((segment, position, first)) = self.find_batch(offset)? else {
            return Ok(result);
        };
        let read = segment
            .read_from(position, &first, limits.max_bytes, max_offset, limits.min_one_batch)
            .context("read", segment.log_path())?;
        if let Some((records, next_offset)) = read {
            result.records = records;
            result.next_offset = next_offset;
        }
        Ok(result)
    }

    /// Where the batch holding `offset` is stored: the first batch whose last offset is at or past it. `None`
    /// when `offset` is the log end offset; `OffsetOutOfRange` outside the log.
    pub fn locate(&self, offset: u64) -> Result<Option<BatchLocation>, ReadError> {
        self.check_range(offset)?;
        Ok(self
            .find_batch(offset)?
            .map(|(segment, position, header)| BatchLocation {
                segment_base_offset: segment.base_offset(),
                position,
                base_offset: header.base_offset as u64,
                last_offset: header.last_offset() as u64,
                size_bytes: header.total_bytes(),
            }))
    }

    fn check_range(&self, offset: u64) -> Result<(), ReadError> {
        let log_end_offset = self.log_end_offset();
        if offset < self.log_start_offset || offset > log_end_offset {
            return Err(ReadError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset,
            });
        }
        Ok(())
    }

    /// The segment, position and header of the batch holding `offset`, through the offset index.
    fn find_batch(&self, offset: u64) -> Result<Option<(&Segment, u64, BatchHeader)>, Error> {
        let from = self.segments.range(..=offset).next_back().map_or(0, |(base, _)| *base);
        for segment in self.segments.range(from..).map(|(_, s)| s) {
            let found = segment
                .find_batch(offset.max(segment.base_offset()))
                .context("read", segment.log_path())?;
            if let Some((position, header)) = found {
                return Ok(Some((segment, position, header)));
            }
        }
        Ok(None)
    }

    /// Kafka's ListOffsets by time: the first record whose timestamp is at or after `timestamp`, or `None`
    /// when every record is older (Kafka then answers offset -1).
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>, Error> {
        for segment in self.segments.values() {
            if segment.next_offset() <= self.log_start_offset {
                continue;
            }
            let found = segment
                .find_by_timestamp(timestamp, self.log_start_offset)
                .context("search by time", segment.log_path())?;
            if let Some((offset, timestamp)) = found {
                return Ok(Some(TimestampOffset { timestamp, offset }));
            }
        }
        Ok(None)
    }

    /// Kafka's ListOffsets `MAX_TIMESTAMP`: the first record carrying the largest timestamp in the log.
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>, Error> {
        let mut best: Option<(&Segment, i64)> = None;
        for segment in self.segments.values() {
            if let Some((timestamp, _)) = segment.max_timestamp()
                && best.is_none_or(|(_, max)| timestamp > max)
            {
                best = Some((segment, timestamp));
            }
        }
        let Some((segment, _)) = best else {
            return Ok(None);
        };
        let found = segment
            .max_timestamp_record()
            .context("search by time", segment.log_path())?;
        Ok(found.map(|(offset, timestamp)| TimestampOffset { timestamp, offset }))
    }

    /// Removes every record at or after `offset`, for a replica whose log diverged from its leader's. A batch
    /// holding `offset` is removed whole, so the new log end offset may be below `offset`. Returns it.
    ///
    /// The leader-epoch cache loses the entries at or after the new end (Kafka's `truncateFromEnd`); when the
    /// whole log goes (`offset` at or below the log start), it is cleared.
    pub fn truncate_to(&mut self, offset: u64) -> Result<u64, Error> {
        if self.offline {
            return Err(Error::Offline { path: self.dir.clone() });
        }
        if offset >= self.log_end_offset() {
            return Ok(self.log_end_offset());
        }
        if offset <= self.log_start_offset {
            warn!(dir = %self.dir.display(), offset, "truncating the whole log");
            self.start_fresh_at(offset)?;
            return Ok(offset);
        }
        let later: Vec<u64> = self.segments.range(offset + 1..).map(|(base, _)| *base).collect();
        for base in later {
            let segment = self.segments.remove(&base).expect("listed above");
            segment.delete().context("delete segment", &self.dir)?;
        }
        let active = self.active_mut();
        active.truncate_to(offset).context("truncate", active.log_path())?;
        self.activate_last()?;
        let end = self.log_end_offset();
        self.recovery_point = self.recovery_point.min(end);
        // The active segment now ends in records no compaction has seen.
        self.compacted_up_to = self.compacted_up_to.min(self.active().base_offset());
        self.clamp_rolled_syncs(end);
        // The batch holding `offset` may have straddled the log start offset.
        self.log_start_offset = self.log_start_offset.min(end);
        self.generation += 1;
        // After the segments: a crash in between leaves entries past the end, which opening drops.
        self.epochs.truncate_from_end(end);
        self.epochs.persist()?;
        // Producers' state goes back to the newest snapshot at or below the end, and forward through what is
        // left (Kafka's `truncateAndReload`).
        self.load_producer_state()?;
        Ok(end)
    }

    /// Kafka's `truncateFullyAndStartAt`: deletes every segment and restarts the log, empty, at `offset`
    /// (log start and log end both `offset`, which may be past the current log end), and clears the
    /// leader-epoch cache. For a follower whose fetch offset the leader no longer has (it answered
    /// `OFFSET_OUT_OF_RANGE`): the follower restarts at the leader's log start offset.
    pub fn truncate_fully_and_start_at(&mut self, offset: u64) -> Result<(), Error> {
        if self.offline {
            return Err(Error::Offline { path: self.dir.clone() });
        }
        info!(dir = %self.dir.display(), offset, log_end_offset = self.log_end_offset(),
            "deleting the whole log and restarting it");
        self.start_fresh_at(offset)
    }

    /// Kafka's DeleteRecords: moves the log start offset up to `offset` and deletes the segments wholly
    /// below it; the leader-epoch cache's first entry moves up with it (Kafka's `truncateFromStart`). Returns
    /// the new log start offset.
    pub fn delete_records_before(&mut self, offset: u64) -> Result<u64, Error> {
        let log_end_offset = self.log_end_offset();
        if offset > log_end_offset {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.log_start_offset = offset;
        if self.active().next_offset() <= offset && !self.active().is_empty() {
            // Everything is deleted: roll so the last segment can go too.
            self.roll()?;
        }
        self.delete_segments_while(|segment| segment.next_offset() <= offset)?;
        Ok(self.log_start_offset)
    }

    /// Deletes closed segments past `retention.ms` (by their newest timestamp) or beyond `retention.bytes`
    /// (oldest first). When every segment, the active one included, is past `retention.ms`, the active one is
    /// rolled first so that old data does not outlive its retention just because no one appends.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<RetentionReport, Error> {
        let mut report = RetentionReport::default();
        if !self.config.cleanup_delete {
            return Ok(report);
        }
        if let Some(retention_ms) = self.config.retention_ms {
            let cutoff = now_ms.saturating_sub(retention_ms as i64);
            let expired = |segment: &Segment| segment.max_timestamp().is_some_and(|(ts, _)| ts < cutoff);
            if self.segments.values().all(expired) && !self.offline {
                self.roll()?;
            }
            let deleted = self.delete_segments_while(expired)?;
            report.segments_deleted += deleted.0;
            report.bytes_deleted += deleted.1;
        }
        if let Some(retention_bytes) = self.config.retention_bytes {
            let mut excess = self.size_bytes().saturating_sub(retention_bytes);
            let deleted = self.delete_segments_while(|segment| {
                if segment.size() <= excess {
                    excess -= segment.size();
                    true
                } else {
                    false
                }
            })?;
            report.segments_deleted += deleted.0;
            report.bytes_deleted += deleted.1;
        }
        if report.segments_deleted > 0 {
            info!(dir = %self.dir.display(), segments = report.segments_deleted, bytes = report.bytes_deleted,
                log_start_offset = self.log_start_offset, "retention deleted segments");
        }
        Ok(report)
    }

    /// Compaction (`cleanup.policy=compact`) in one call, for a caller that may hold the log for its whole
    /// length (tests, tools): [`Self::plan_compaction`], [`CompactionPlan::build`],
    /// [`Self::install_compaction`]. The log manager runs the build without the log's lock instead. It first
    /// waits for the fsyncs of rolled segments, so that every closed segment is below the recovery point and
    /// the result does not depend on how fast the disk is.
    pub fn compact(&mut self, now_ms: i64) -> Result<CompactionReport, Error> {
        self.wait_rolled_syncs();
        let Some(plan) = self.plan_compaction(now_ms) else {
            return Ok(CompactionReport::default());
        };
        let built = plan.build()?;
        self.install_compaction(built)
    }

    /// The first step of compaction, under the lock and cheap: whether the log is due for it, and which
    /// closed segments to clean, as they are now. `None` when there is nothing to do.
    ///
    /// Compaction keeps, in every closed segment, only the newest record of each key, and drops tombstones
    /// older than `delete.retention.ms` (by their batch's newest timestamp). Offsets never change: a batch
    /// that loses records keeps its offset range, rewritten uncompressed. The active segment is left alone,
    /// as in Kafka. As Kafka's cleaner does, the work is split in three so that appends go on meanwhile: plan
    /// under the lock, build outside it, install under it.
    ///
    /// When, as Kafka's `LogCleanerManager` decides: the dirty part (segments appended since the last
    /// compaction, up to the first that may not be cleaned yet) is more than `min.cleanable.dirty.ratio` of
    /// the closed log, or a dirty segment's first batch is older than `max.compaction.lag.ms` (then at once,
    /// whatever the ratio). A segment holding a record younger than `min.compaction.lag.ms`, and every one
    /// after it, is not cleaned yet. A compacted log whose active segment is older than
    /// `max.compaction.lag.ms` is rolled first, even without appends (Kafka rolls only on append), so that
    /// no record waits longer than the lag for want of a closed segment.
    pub fn plan_compaction(&mut self, now_ms: i64) -> Option<CompactionPlan> {
        self.reap_rolled_syncs();
        if !self.config.cleanup_compact || self.offline {
            return None;
        }
        if self.config.max_compaction_lag_ms < i64::MAX as u64
            && self.active_is_old(now_ms)
            && let Err(e) = self.roll()
        {
            warn!(dir = %self.dir.display(), error = %e, "could not roll for max.compaction.lag.ms");
        }
        // Only segments below the recovery point: recovery relies on segments it scans never having been
        // compacted (a gap between two of them means a lost tail there). Below it is every closed segment but
        // the last one rolled, until its fsync finishes.
        let below_recovery_point = *self
            .segments
            .range(..=self.recovery_point)
            .next_back()
            .map_or(&0, |(base, _)| base);
        let first_dirty = self.compacted_up_to;
        let mut clean_below = below_recovery_point;
        let min_lag_ms = self.config.min_compaction_lag_ms;
        if min_lag_ms > 0 {
            let newest_allowed = now_ms.saturating_sub_unsigned(min_lag_ms);
            let too_young = self
                .segments
                .range(first_dirty..clean_below)
                .find(|(_, s)| s.max_timestamp().is_some_and(|(ts, _)| ts > newest_allowed));
            if let Some((&base, _)) = too_young {
                clean_below = base;
            }
        }
        if first_dirty >= clean_below {
            return None;
        }
        let bytes = |range: std::ops::Range<u64>| self.segments.range(range).map(|(_, s)| s.size()).sum::<u64>();
        let (clean_bytes, cleanable_bytes) = (bytes(0..first_dirty), bytes(first_dirty..clean_below));
        let total_bytes = clean_bytes + cleanable_bytes;
        if cleanable_bytes == 0 {
            return None;
        }
        let dirty_ratio = cleanable_bytes as f64 / total_bytes as f64;
        let active_base = self.active().base_offset();
        let cleaned_by = now_ms.saturating_sub_unsigned(self.config.max_compaction_lag_ms);
        let overdue = self
            .segments
            .range(first_dirty..active_base)
            .filter_map(|(_, s)| s.first_batch_timestamp())
            .any(|ts| ts > 0 && ts < cleaned_by);
        // Strictly greater, as Kafka compares: a ratio of 1.0 never triggers, 0.0 always does.
        if !overdue && dirty_ratio <= self.config.min_cleanable_dirty_ratio.get() {
            return None;
        }
        let segments = self
            .segments
            .range(..clean_below)
            .map(|(&base, segment)| PlannedSegment {
                base,
                log_path: segment.log_path().to_owned(),
                size: segment.size(),
            })
            .collect();
        Some(CompactionPlan {
            dir: self.dir.clone(),
            generation: self.generation,
            segments,
            first_dirty,
            clean_below,
            tombstone_cutoff: now_ms.saturating_sub(self.config.delete_retention_ms as i64),
            config: self.config.clone(),
            handles: self.handles.clone(),
            dirty_ratio,
            overdue,
        })
    }

    /// The last step of compaction, under the lock: [`Self::install_next_compacted`] until every segment of
    /// `built` is in, or the build is abandoned. The log manager instead takes the lock once per segment.
    pub fn install_compaction(&mut self, mut built: CompactedSegments) -> Result<CompactionReport, Error> {
        let mut report = CompactionReport::default();
        while self.install_next_compacted(&mut built, &mut report)? {}
        Ok(report)
    }

    /// Swaps the next segment of `built` in, under the lock, if the closed segments are still those the
    /// build read (no truncation, retention, DeleteRecords or other compaction since the plan, or since the
    /// previous segment's swap); otherwise abandons the rest of the build (`abandoned` in the report; the
    /// next round plans again). Returns whether a segment is left to swap. Each segment stands alone: it
    /// lost only records that a newer record, kept wherever it is, supersedes.
    ///
    /// The swap: the old indexes are moved into the cleaner's directory and the directory fsynced, then the
    /// cleaned `.log` and its indexes renamed over the old names and the directory fsynced again. A crash at
    /// any point leaves the old or the new `.log`, whole, and indexes that are either right or missing
    /// (rebuilt on open); the cleaner's directory is removed on open. The lock is held for five renames and
    /// two directory fsyncs; freeing the old files' blocks waits until `built` is dropped, which the caller
    /// does without the lock.
    pub fn install_next_compacted(
        &mut self,
        built: &mut CompactedSegments,
        report: &mut CompactionReport,
    ) -> Result<bool, Error> {
        let Some(cleaned) = built.segments.first().copied() else {
            self.compacted_up_to = self.compacted_up_to.max(built.clean_below);
            if report.segments_rewritten > 0 {
                info!(dir = %self.dir.display(), ?report, "compacted");
            }
            return Ok(false);
        };
        let unchanged = !self.offline
            && self.generation == built.generation
            && cleaned.base < built.clean_below
            && self
                .segments
                .get(&cleaned.base)
                .is_some_and(|s| s.size() == cleaned.bytes_before);
        if !unchanged {
            built.segments.clear();
            report.abandoned = true;
            info!(dir = %self.dir.display(), "the log changed while compaction built its segments; abandoned");
            return Ok(false);
        }
        built.segments.remove(0);
        let retired = built.cleaner_dir.join(RETIRED_DIR);
        let old = &self.segments[&cleaned.base];
        old.close_handles();
        // Held open so that the old file's blocks are freed when `built` is dropped, not at the rename.
        if let Ok(file) = fs::File::open(old.log_path()) {
            built.retired.push(DeletedFile {
                file,
                due: later_by(Instant::now(), built.file_delete_delay),
            });
        }
        for suffix in [segment::INDEX_SUFFIX, segment::TIME_INDEX_SUFFIX] {
            let name = segment::file_name(cleaned.base, suffix);
            match fs::rename(self.dir.join(&name), retired.join(&name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).context("retire index", self.dir.join(&name));
                }
                _ => {}
            }
        }
        sync_dir(&**self.handles.disk(), &self.dir)?;
        for suffix in [segment::LOG_SUFFIX, segment::INDEX_SUFFIX, segment::TIME_INDEX_SUFFIX] {
            let name = segment::file_name(cleaned.base, suffix);
            let to = self.dir.join(&name);
            fs::rename(built.cleaner_dir.join(&name), &to).context("install compacted segment", &to)?;
        }
        sync_dir(&**self.handles.disk(), &self.dir)?;
        self.generation += 1;
        built.generation = self.generation;
        let log_path = self.dir.join(segment::file_name(cleaned.base, segment::LOG_SUFFIX));
        let mut segment = Segment::open(&self.dir, cleaned.base, &self.handles).context("open segment", &log_path)?;
        segment
            .load(&self.config)
            .context("load compacted segment", &log_path)?;
        self.segments.insert(cleaned.base, segment);
        report.segments_rewritten += 1;
        report.bytes_removed += cleaned.bytes_before - cleaned.bytes_after;
        Ok(true)
    }

    /// Deletes closed segments from the oldest while `deletable` says so; never the active segment. Moves the
    /// log start offset to the first remaining segment. Returns segments and bytes deleted.
    fn delete_segments_while(&mut self, mut deletable: impl FnMut(&Segment) -> bool) -> Result<(usize, u64), Error> {
        let mut deleted = (0, 0);
        while self.segments.len() > 1 {
            let (&base, segment) = self.segments.iter().next().expect("more than one");
            if !deletable(segment) {
                break;
            }
            let segment = self.segments.remove(&base).expect("just seen");
            deleted.0 += 1;
            deleted.1 += segment.size();
            // Unlinked now; its blocks are freed when the last handle goes, which `take_deleted_files` lets
            // the caller do without the lock (freeing a large file's blocks takes a while).
            if let Ok(file) = fs::File::open(segment.log_path())
                && self.deleted_files.len() < DELETED_FILES_HELD_MAX
            {
                self.deleted_files.push(DeletedFile {
                    file,
                    due: later_by(Instant::now(), Duration::from_millis(self.config.file_delete_delay_ms)),
                });
            }
            segment.delete().context("delete segment", &self.dir)?;
        }
        let first = *self.segments.keys().next().expect("never empty");
        self.log_start_offset = self.log_start_offset.max(first);
        if deleted.0 > 0 {
            self.generation += 1;
        }
        self.epochs.truncate_from_start(self.log_start_offset);
        self.epochs.persist()?;
        self.producers.on_log_start_moved(self.log_start_offset, first)?;
        Ok(deleted)
    }

    /// The files of segments deleted since the last call, still open: dropping them frees their blocks.
    /// The log manager drops each after releasing the log's lock, once its `file.delete.delay.ms` has passed
    /// (Kafka's delay: readers that found the segment before it went may finish).
    pub fn take_deleted_files(&mut self) -> Vec<DeletedFile> {
        std::mem::take(&mut self.deleted_files)
    }

    /// Moves the recovery point past rolled segments whose background fsync has finished. A failed fsync
    /// takes the log offline: what was acknowledged may not be on disk, so recovery must look again.
    pub fn reap_rolled_syncs(&mut self) {
        while self.rolled_syncs.front().is_some_and(RolledSync::is_finished) {
            let sync = self.rolled_syncs.pop_front().expect("just seen");
            self.finish_rolled_sync(sync);
        }
    }

    fn finish_rolled_sync(&mut self, sync: RolledSync) {
        let up_to = sync.up_to;
        match sync.wait() {
            Ok(()) => self.recovery_point = self.recovery_point.max(up_to),
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "fsync of a rolled segment failed; log offline");
                self.offline = true;
            }
        }
    }

    /// After a truncation to `end`: a rolled segment's fsync still running vouches for nothing past `end`,
    /// where new, unflushed batches will go.
    fn clamp_rolled_syncs(&mut self, end: u64) {
        for sync in &mut self.rolled_syncs {
            sync.up_to = sync.up_to.min(end);
        }
    }

    /// Waits for every background fsync of rolled segments.
    fn wait_rolled_syncs(&mut self) {
        while let Some(sync) = self.rolled_syncs.pop_front() {
            self.finish_rolled_sync(sync);
        }
    }

    /// From now on, tells `observer` how long each fsync of this log takes.
    pub fn observe_flushes(&mut self, observer: Option<FlushObserver>) {
        self.flush_observer = observer;
    }

    /// fsyncs the active segment (and waits for rolled segments' fsyncs) and moves the recovery point to the
    /// log end offset.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.wait_rolled_syncs();
        let started = Instant::now();
        let active = self.active();
        active.flush().context("flush", active.log_path())?;
        if self.dirs_unsynced {
            self.sync_dirs()?;
        }
        if let Some(observer) = &self.flush_observer {
            observer.observe(started.elapsed());
        }
        self.recovery_point = self.log_end_offset();
        self.unflushed_records = 0;
        self.last_flush = Instant::now();
        Ok(())
    }

    fn flush_all(&mut self) -> Result<(), Error> {
        for segment in self.segments.values() {
            segment.flush().context("flush", segment.log_path())?;
        }
        self.flush()
    }

    /// Flushes if `flush.ms` is set and unflushed records are older than it.
    pub fn flush_if_due(&mut self, now: Instant) -> Result<bool, Error> {
        let due = self.config.flush_interval().is_some_and(|interval| {
            self.unflushed_records > 0 && now.saturating_duration_since(self.last_flush) >= interval
        });
        if due {
            self.flush()?;
        }
        Ok(due)
    }

    /// [`Self::flush_if_due`] for the upkeep thread: the fsync of the active segment (and of the directory,
    /// for a new log) runs on a thread of its own, as a roll's does, so the lock is not held through it; the
    /// recovery point moves to the log end offset of now when it is done. Returns whether a flush started.
    pub fn flush_in_background_if_due(&mut self, now: Instant) -> bool {
        let due = self.config.flush_interval().is_some_and(|interval| {
            self.unflushed_records > 0 && now.saturating_duration_since(self.last_flush) >= interval
        });
        if !due || self.offline {
            return false;
        }
        let mut paths = self.active().file_paths().to_vec();
        if self.dirs_unsynced {
            paths.push(self.dir.clone());
            if let Some(parent) = self.dir.parent() {
                paths.push(parent.to_owned());
            }
            self.dirs_unsynced = false;
        }
        self.rolled_syncs.push_back(RolledSync::start(
            self.handles.disk().clone(),
            paths,
            self.log_end_offset(),
            self.flush_observer.clone(),
        ));
        self.unflushed_records = 0;
        self.last_flush = now;
        true
    }

    /// Closes the log cleanly: a last time index entry, trimmed indexes, fsync. Returns the log end offset
    /// (the recovery point to checkpoint) and the log start offset.
    ///
    /// The log should not be used afterwards: its indexes are trimmed, so an append would roll at once.
    pub fn close(&mut self) -> Result<(u64, u64), Error> {
        if self.offline {
            // Leave the damaged segment for recovery; trimming the indexes still lets the files reopen.
            let _ = self.active_mut().trim_indexes();
            return Err(Error::Offline { path: self.dir.clone() });
        }
        self.wait_rolled_syncs();
        let active = self.active_mut();
        active.seal().context("seal segment", active.log_path())?;
        for segment in self.segments.values() {
            segment.close_handles();
        }
        if self.dirs_unsynced {
            self.sync_dirs()?;
        }
        // Only after a failed write is there anything to write here.
        self.epochs.persist()?;
        // The next open starts from here instead of replaying the active segment.
        let bases = self.segment_base_offsets();
        self.producers.take_snapshot(self.log_end_offset(), true, &bases)?;
        self.recovery_point = self.log_end_offset();
        Ok((self.recovery_point, self.log_start_offset))
    }

    /// Deletes the log's directory and everything in it. The log must not be used afterwards.
    pub fn delete(&mut self) -> Result<(), Error> {
        for segment in self.segments.values() {
            segment.close_handles();
        }
        fs::remove_dir_all(&self.dir).context("delete log directory", &self.dir)
    }

    /// Whether an earlier append failed and left the log refusing writes until it is reopened.
    pub fn is_offline(&self) -> bool {
        self.offline
    }
}

/// The base offsets of the segments in `dir`, sorted, and the offsets of the producer-state snapshots.
/// Removes leftovers that are not part of any segment: index files without a `.log`, and temporary files.
fn scan_directory(dir: &Path) -> Result<(Vec<u64>, BTreeSet<u64>), Error> {
    let mut logs = Vec::new();
    let mut snapshots = BTreeSet::new();
    let mut indexes = Vec::new();
    for entry in fs::read_dir(dir).context("list", dir)? {
        let entry = entry.context("list", dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, suffix)) = name.split_once('.') else {
            continue;
        };
        let Ok(base) = stem.parse::<u64>() else {
            continue;
        };
        match suffix {
            segment::LOG_SUFFIX => logs.push(base),
            // Left by an older Strata's compaction, interrupted before its rename: the `.log` is still whole.
            "log.cleaned" => fs::remove_file(entry.path()).context("delete unfinished compaction", entry.path())?,
            segment::INDEX_SUFFIX | segment::TIME_INDEX_SUFFIX => indexes.push((base, entry.path())),
            producer_state::SNAPSHOT_SUFFIX => {
                snapshots.insert(base);
            }
            // A snapshot whose write was interrupted.
            "tmp" => fs::remove_file(entry.path()).context("delete unfinished snapshot", entry.path())?,
            _ => {}
        }
    }
    logs.sort_unstable();
    for (base, path) in indexes {
        if logs.binary_search(&base).is_err() {
            warn!(path = %path.display(), "deleting an index without its log");
            fs::remove_file(&path).context("delete orphan index", &path)?;
        }
    }
    Ok((logs, snapshots))
}

/// The directory, inside a log's, where compaction builds its segments before they are swapped in.
const CLEANER_DIR: &str = ".cleaner";
/// Inside [`CLEANER_DIR`]: the old indexes of swapped segments, deleted with it.
const RETIRED_DIR: &str = "retired";

fn remove_cleaner_dir(path: &Path) {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            warn!(path = %path.display(), error = %e, "could not remove the compaction directory");
        }
        _ => {}
    }
}

/// A closed segment as compaction planned it.
#[derive(Debug, Clone)]
struct PlannedSegment {
    base: u64,
    log_path: PathBuf,
    size: u64,
}

/// The closed segments of a log to compact, as [`Log::plan_compaction`] found them; [`Self::build`] needs
/// no lock.
#[derive(Debug)]
pub struct CompactionPlan {
    dir: PathBuf,
    generation: u64,
    segments: Vec<PlannedSegment>,
    /// Segments from this offset on were appended since the last compaction (Kafka's dirty section); only
    /// their keys go into the map. Those below were compacted already: each of their keys at most once.
    first_dirty: u64,
    clean_below: u64,
    tombstone_cutoff: i64,
    config: LogConfig,
    handles: Arc<HandleCache>,
    dirty_ratio: f64,
    overdue: bool,
}

/// One segment compaction rewrote, waiting in the cleaner's directory.
#[derive(Debug, Clone, Copy)]
struct CleanedSegment {
    base: u64,
    bytes_before: u64,
    bytes_after: u64,
}

/// Compacted segments built by [`CompactionPlan::build`], for [`Log::install_compaction`]. Dropping it
/// deletes the cleaner's directory and frees the replaced files (drop it without the log's lock).
#[derive(Debug)]
pub struct CompactedSegments {
    generation: u64,
    clean_below: u64,
    cleaner_dir: PathBuf,
    /// Not yet swapped in, oldest first.
    segments: Vec<CleanedSegment>,
    /// The replaced `.log` files, held open so that their blocks are freed without the lock, once their
    /// `file.delete.delay.ms` has passed (see [`Self::take_retired`]), or when this is dropped.
    retired: Vec<DeletedFile>,
    file_delete_delay: Duration,
}

impl CompactedSegments {
    /// The replaced segments' files, for the log manager to free after `file.delete.delay.ms`.
    pub fn take_retired(&mut self) -> Vec<DeletedFile> {
        std::mem::take(&mut self.retired)
    }
}

impl Drop for CompactedSegments {
    fn drop(&mut self) {
        self.retired.clear();
        remove_cleaner_dir(&self.cleaner_dir);
    }
}

impl CompactionPlan {
    /// The share of the closed log appended since the last compaction, when planned.
    pub fn dirty_ratio(&self) -> f64 {
        self.dirty_ratio
    }

    /// Whether a record waited longer than `max.compaction.lag.ms` (compaction then runs whatever the ratio).
    pub fn overdue(&self) -> bool {
        self.overdue
    }

    /// The segments below this offset are cleaned; it is where the next compaction's dirty part starts.
    pub fn clean_below(&self) -> u64 {
        self.clean_below
    }

    /// Reads the planned segments, without the log's lock (closed segments are not appended to; if one is
    /// truncated, deleted or swapped meanwhile, the install sees it and throws this build away), and writes
    /// each segment that loses records into the cleaner's directory with its indexes, fsynced. Memory: one
    /// entry per distinct key, and one batch at a time.
    pub fn build(self) -> Result<CompactedSegments, Error> {
        let cleaner_dir = self.dir.join(CLEANER_DIR);
        remove_cleaner_dir(&cleaner_dir);
        fs::create_dir(&cleaner_dir).context("create compaction directory", &cleaner_dir)?;
        let retired = cleaner_dir.join(RETIRED_DIR);
        fs::create_dir(&retired).context("create compaction directory", &retired)?;
        let result = self.build_in(&cleaner_dir);
        if result.is_err() {
            remove_cleaner_dir(&cleaner_dir);
        }
        result
    }

    /// Kafka's offset map: the newest offset of each key in the dirty segments, oldest first, for as many
    /// whole segments as fit in `dedupe_buffer_bytes`. Returns the map and the offset below which it covers
    /// every dirty segment (the next compaction goes on from there); refuses when not even the first dirty
    /// segment fits, as Kafka's cleaner does.
    fn map_dirty_keys(&self) -> Result<(HashMap<Vec<u8>, i64>, u64), Error> {
        // What one entry costs besides its key: the offset, the key's vector and the table's slot.
        const ENTRY_OVERHEAD_BYTES: u64 = 48;
        let mut newest: HashMap<Vec<u8>, i64> = HashMap::new();
        let mut map_bytes = 0u64;
        let dirty = self.segments.iter().filter(|s| s.base >= self.first_dirty);
        for (i, planned) in dirty.enumerate() {
            let mut fits = true;
            for_each_stored_batch(planned, |_, _, records| {
                for record in records {
                    let Some(key) = record.key else { continue };
                    if let Some(offset) = newest.get_mut(&key) {
                        *offset = record.offset;
                        continue;
                    }
                    let cost = key.len() as u64 + ENTRY_OVERHEAD_BYTES;
                    if map_bytes + cost > self.config.dedupe_buffer_bytes {
                        fits = false;
                        continue;
                    }
                    map_bytes += cost;
                    newest.insert(key, record.offset);
                }
                Ok(())
            })?;
            match (fits, i) {
                (true, _) => {}
                (false, 0) => {
                    return Err(Error::Io {
                        op: "compact",
                        path: planned.log_path.clone(),
                        source: std::io::Error::other(format!(
                            "the keys of this segment need more than log.cleaner.dedupe.buffer.size ({} bytes)",
                            self.config.dedupe_buffer_bytes
                        )),
                    });
                }
                // Records below take the newer offsets the partial segment put in the map; it is not rewritten.
                (false, _) => return Ok((newest, planned.base)),
            }
        }
        Ok((newest, self.clean_below))
    }

    fn build_in(&self, cleaner_dir: &Path) -> Result<CompactedSegments, Error> {
        const WRITE_BUFFER_BYTES: usize = 1024 * 1024;
        let (newest, mapped_below) = self.map_dirty_keys()?;
        let mut cleaned = Vec::new();
        for planned in self.segments.iter().filter(|s| s.base < mapped_below) {
            let out_path = cleaner_dir.join(segment::file_name(planned.base, segment::LOG_SUFFIX));
            let mut out = self
                .handles
                .disk()
                .open(&out_path, OpenMode::Truncated)
                .context("create", &out_path)?;
            let mut changed = false;
            let mut written = 0u64;
            let mut pending = Vec::new();
            for_each_stored_batch(planned, |header, bytes, records| {
                let expired = header.max_timestamp < self.tombstone_cutoff;
                let kept: Vec<batch::StoredRecord> = records
                    .into_iter()
                    .filter(|r| {
                        // A key the dirty part does not hold has no newer record than this one.
                        r.key
                            .as_ref()
                            .is_none_or(|k| newest.get(k).is_none_or(|&o| o <= r.offset))
                            && (r.has_value || !expired)
                    })
                    .collect();
                let rebuilt;
                let keep: &[u8] = if kept.len() == header.record_count as usize {
                    bytes
                } else {
                    changed = true;
                    if kept.is_empty() {
                        return Ok(());
                    }
                    rebuilt = batch::rebuild(header, bytes, &kept);
                    &rebuilt
                };
                // Written a buffer at a time, not a batch at a time: small batches would cost a syscall each.
                pending.extend_from_slice(keep);
                if pending.len() >= WRITE_BUFFER_BYTES {
                    out.write(written, &pending)?;
                    written += pending.len() as u64;
                    pending.clear();
                }
                Ok(())
            })?;
            out.write(written, &pending).context("write", &out_path)?;
            written += pending.len() as u64;
            if !changed {
                drop(out);
                fs::remove_file(&out_path).context("delete", &out_path)?;
                continue;
            }
            out.sync_data().context("fsync compacted segment", &out_path)?;
            drop(out);
            // Indexes built here, off the lock, as recovery builds them; sealed (trimmed and fsynced).
            let mut segment =
                Segment::open(cleaner_dir, planned.base, &self.handles).context("open compacted segment", &out_path)?;
            segment
                .recover(&self.config)
                .context("index compacted segment", &out_path)?;
            segment.seal().context("seal compacted segment", &out_path)?;
            segment.close_handles();
            cleaned.push(CleanedSegment {
                base: planned.base,
                bytes_before: planned.size,
                bytes_after: written,
            });
        }
        sync_dir(&**self.handles.disk(), cleaner_dir)?;
        Ok(CompactedSegments {
            generation: self.generation,
            clean_below: mapped_below,
            cleaner_dir: cleaner_dir.to_owned(),
            segments: cleaned,
            retired: Vec::new(),
            file_delete_delay: Duration::from_millis(self.config.file_delete_delay_ms),
        })
    }
}

/// Calls `f` with each batch (header, bytes, decoded records) of a closed segment's `.log`, read
/// sequentially from its own file handle. Bytes that do not form a whole, valid batch end the walk with an
/// error: a closed segment holds only whole batches, so the file changed underneath (and the install would
/// throw the build away anyway).
fn for_each_stored_batch(
    planned: &PlannedSegment,
    mut f: impl FnMut(&BatchHeader, &[u8], Vec<batch::StoredRecord>) -> std::io::Result<()>,
) -> Result<(), Error> {
    const READ_BUFFER_BYTES: usize = 1024 * 1024;
    let path = &planned.log_path;
    let file = fs::File::open(path).context("open for compaction", path)?;
    let mut reader = std::io::BufReader::with_capacity(READ_BUFFER_BYTES, file);
    let mut position = 0u64;
    let mut bytes = Vec::new();
    let invalid = |what: String| Error::Io {
        op: "read for compaction",
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, what),
    };
    while position < planned.size {
        bytes.resize(batch::BATCH_LENGTH_PREFIX_BYTES, 0);
        std::io::Read::read_exact(&mut reader, &mut bytes).context("read for compaction", path)?;
        let total = batch::declared_total_bytes(&bytes)
            .filter(|&n| n >= batch::BATCH_HEADER_BYTES as i64 && position + n as u64 <= planned.size)
            .ok_or_else(|| invalid(format!("no whole batch at byte {position}")))?;
        bytes.resize(total as usize, 0);
        std::io::Read::read_exact(&mut reader, &mut bytes[batch::BATCH_LENGTH_PREFIX_BYTES..])
            .context("read for compaction", path)?;
        let header = BatchHeader::parse(&bytes).map_err(|e| invalid(e.to_string()))?;
        let records = batch::records(&bytes).map_err(|e| invalid(e.to_string()))?;
        f(&header, &bytes, records).context("write compacted segment", path)?;
        position += total as u64;
    }
    Ok(())
}

/// The fsync of a rolled segment's files, on a thread of its own.
#[derive(Debug)]
struct RolledSync {
    /// The log end offset when the segment rolled: everything below it is durable once this finishes.
    up_to: u64,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    /// The result when the fsync ran inline (no thread could be started).
    inline: Option<std::io::Result<()>>,
}

impl RolledSync {
    fn start(disk: Arc<dyn Disk>, paths: Vec<PathBuf>, up_to: u64, observer: Option<FlushObserver>) -> Self {
        // A segment deleted meanwhile (retention, truncation) has nothing left to make durable.
        let sync = move || {
            let started = Instant::now();
            let synced = paths.iter().try_for_each(|path| match disk.sync_path(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            });
            if let Some(observer) = &observer {
                observer.observe(started.elapsed());
            }
            synced
        };
        match std::thread::Builder::new()
            .name("strata-roll-fsync".into())
            .spawn(sync.clone())
        {
            Ok(thread) => Self {
                up_to,
                thread: Some(thread),
                inline: None,
            },
            Err(_) => Self {
                up_to,
                thread: None,
                inline: Some(sync()),
            },
        }
    }

    fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(std::thread::JoinHandle::is_finished)
    }

    fn wait(self) -> std::io::Result<()> {
        match (self.thread, self.inline) {
            (Some(thread), _) => thread
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the fsync thread panicked"))),
            (None, Some(result)) => result,
            (None, None) => Ok(()),
        }
    }
}

/// fsyncs a directory so that files created or renamed in it survive a power loss.
pub(crate) fn sync_dir(disk: &dyn Disk, dir: &Path) -> Result<(), Error> {
    disk.sync_path(dir).context("sync directory", dir)
}

/// `at + delay`, or a century on when a setting of up to `i64::MAX` ms does not fit an `Instant`.
pub(crate) fn later_by(at: Instant, delay: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    at.checked_add(delay.min(CENTURY)).unwrap_or(at)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A segment's `segment.jitter.ms` draw, as Kafka's `randomSegmentJitter`: uniform below
/// `min(segment.jitter.ms, segment.ms)`, 0 without jitter. Randomness from std's per-process hash keys is
/// plenty for spreading rolls.
fn random_jitter_ms(config: &LogConfig) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let bound = config.segment_jitter_ms.min(config.segment_ms);
    if bound == 0 {
        return 0;
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(now_ms() as u64);
    hasher.finish() % bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roll_jitter_is_drawn_below_jitter_and_segment_ms() {
        let mut config = LogConfig::default();
        assert_eq!(random_jitter_ms(&config), 0, "no jitter by default");
        config.set("segment.jitter.ms", "1000").unwrap();
        let draws: BTreeSet<u64> = (0..200).map(|_| random_jitter_ms(&config)).collect();
        assert!(draws.iter().all(|&d| d < 1000), "{draws:?}");
        assert!(draws.len() > 100, "draws vary: {}", draws.len());
        config.set("segment.ms", "10").unwrap();
        assert!(
            (0..200).all(|_| random_jitter_ms(&config) < 10),
            "never past segment.ms"
        );
    }
}
