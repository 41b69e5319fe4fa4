//! One segment of a partition log: a `.log` file of batches and its two indexes.
//!
//! Files are named by the segment's base offset, zero-padded to 20 digits:
//!
//! ```text
//! 00000000000000368769.log        v2 record batches back to back, byte for byte as clients sent them,
//!                                  with the base offset and leader epoch assigned by the log. The first
//!                                  batch's base offset is the file name; offsets increase strictly.
//! 00000000000000368769.index      sparse offset -> file position index (see `index`)
//! 00000000000000368769.timeindex  sparse max-timestamp -> offset index (see `index`)
//! ```
//!
//! Only the last segment of a log (the active one) is appended to. An index entry is added for a batch when
//! more than `index.interval.bytes` have been appended since the previous entry, so the first batch of a
//! segment never has one (it is at position 0). Indexes hold nothing the `.log` does not: after an unclean
//! stop, [`Segment::recover`] rebuilds them by scanning and validating every batch, and cuts the file at the
//! first batch that is torn or fails its CRC.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use crate::batch::{self, BATCH_HEADER_BYTES, BatchHeader};
use crate::config::LogConfig;
use crate::disk::{DiskFile, OpenMode};
use crate::handles::{HandleCache, Slot};
use crate::index::{OffsetIndex, OffsetPosition, TimeIndex, TimestampOffset, remove_if_exists};

pub const LOG_SUFFIX: &str = "log";
pub const INDEX_SUFFIX: &str = "index";
pub const TIME_INDEX_SUFFIX: &str = "timeindex";

/// How much of the log a batch walk reads at once when it only needs headers.
const WALK_CHUNK_BYTES: usize = 4096;
/// How much of the log recovery reads at once.
const RECOVERY_CHUNK_BYTES: usize = 1024 * 1024;

/// The name of a segment file: the 20-digit base offset and a suffix.
pub fn file_name(base_offset: u64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// A batch about to be appended: where it sits in the caller's buffer, and its header after offsets were
/// assigned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingBatch {
    pub start: usize,
    pub header: BatchHeader,
}

/// Why an append to a segment failed, and whether the segment is still as it was before it.
#[derive(Debug)]
pub(crate) enum AppendFailure {
    Unchanged(io::Error),
    Damaged(io::Error),
}

/// What recovery found in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentRecovery {
    /// Bytes cut from the end of the file.
    pub truncated_bytes: u64,
    /// Why the cut was made, if one was.
    pub reason: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: u64,
    log_path: PathBuf,
    file: Arc<Slot<Box<dyn DiskFile>>>,
    size: u64,
    next_offset: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index_entry: u64,
    /// The largest timestamp in the segment and the (last) offset of the batch that carried it.
    max_timestamp: Option<(i64, u64)>,
    /// The max timestamp of the first batch: `segment.ms` counts from it, as in Kafka.
    first_batch_timestamp: Option<i64>,
    /// The partition leader epoch of the last batch, which the log checks its epoch cache against on open.
    last_epoch: Option<i32>,
}

impl Segment {
    /// Creates an empty segment, replacing any files left at its name, with indexes sized for appends.
    pub fn create(dir: &Path, base_offset: u64, handles: &Arc<HandleCache>, config: &LogConfig) -> io::Result<Self> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        handles.disk().open(&log_path, OpenMode::Truncated)?;
        let mut segment = Self::open_files(dir, base_offset, handles)?;
        segment.offset_index.reset(config.segment_index_bytes as usize)?;
        segment.time_index.reset(config.segment_index_bytes as usize)?;
        Ok(segment)
    }

    /// Opens an existing segment's files. Its offsets and timestamps are not known until [`Self::load`] or
    /// [`Self::recover`] runs.
    pub fn open(dir: &Path, base_offset: u64, handles: &Arc<HandleCache>) -> io::Result<Self> {
        Self::open_files(dir, base_offset, handles)
    }

    fn open_files(dir: &Path, base_offset: u64, handles: &Arc<HandleCache>) -> io::Result<Self> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let size = std::fs::metadata(&log_path)?.len();
        let index_path = dir.join(file_name(base_offset, INDEX_SUFFIX));
        let time_index_path = dir.join(file_name(base_offset, TIME_INDEX_SUFFIX));
        // A torn or missing index is not fatal: it is emptied here and rebuilt from the log by the caller.
        let offset_index = OffsetIndex::open(index_path.clone(), handles).or_else(|e| {
            warn!(path = %index_path.display(), error = %e, "offset index unreadable; it will be rebuilt");
            std::fs::write(&index_path, [])?;
            OffsetIndex::open(index_path, handles)
        })?;
        let time_index = TimeIndex::open(time_index_path.clone(), handles).or_else(|e| {
            warn!(path = %time_index_path.display(), error = %e, "time index unreadable; it will be rebuilt");
            std::fs::write(&time_index_path, [])?;
            TimeIndex::open(time_index_path, handles)
        })?;
        Ok(Self {
            base_offset,
            log_path,
            file: Slot::new(handles),
            size,
            next_offset: base_offset,
            offset_index,
            time_index,
            bytes_since_index_entry: 0,
            max_timestamp: None,
            first_batch_timestamp: None,
            last_epoch: None,
        })
    }

    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn max_timestamp(&self) -> Option<(i64, u64)> {
        self.max_timestamp
    }

    pub fn first_batch_timestamp(&self) -> Option<i64> {
        self.first_batch_timestamp
    }

    /// The partition leader epoch of the segment's last batch; `None` when it is empty.
    pub fn last_epoch(&self) -> Option<i32> {
        self.last_epoch
    }

    pub fn indexes_full(&self) -> bool {
        self.offset_index.is_full() || self.time_index.is_full()
    }

    fn with_file<R>(&self, f: impl FnOnce(&mut Box<dyn DiskFile>) -> io::Result<R>) -> io::Result<R> {
        let path = &self.log_path;
        let disk = self.file.cache().disk();
        self.file.with(|| disk.open(path, OpenMode::Existing), f)?
    }

    /// Loads a segment that was closed cleanly: checks its indexes (rebuilding them if they are insane) and
    /// reads the batches after the last index entry to learn the next offset and the newest timestamp.
    pub fn load(&mut self, config: &LogConfig) -> io::Result<()> {
        let next_base_bound = u64::from(u32::MAX);
        let indexes_sane =
            self.offset_index.sanity_check(self.size)? && self.time_index.sanity_check(next_base_bound)?;
        if !indexes_sane {
            warn!(segment = %self.log_path.display(), "index failed its sanity check; rebuilding it");
            let outcome = self.recover(config)?;
            // Rebuilt indexes are sized for appends; a sealed segment's must be trimmed again or every
            // later open would find them insane too. (The log re-activates the last segment.)
            self.trim_indexes()?;
            if outcome.truncated_bytes > 0 {
                warn!(segment = %self.log_path.display(), bytes = outcome.truncated_bytes,
                    reason = outcome.reason.as_deref().unwrap_or(""), "cut an invalid tail while rebuilding");
            }
            return Ok(());
        }
        self.reload_tail()?;
        if self.offset_index.entries() > 0 && self.next_offset == self.base_offset {
            // An index entry points at a batch, so the walk must have found one.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "index points past the last batch",
            ));
        }
        self.first_batch_timestamp = self.read_first_batch_timestamp()?;
        Ok(())
    }

    fn read_first_batch_timestamp(&self) -> io::Result<Option<i64>> {
        if self.size < BATCH_HEADER_BYTES as u64 {
            return Ok(None);
        }
        let header = self.with_file(|file| file.read(0, BATCH_HEADER_BYTES))?;
        Ok(BatchHeader::parse(&header).ok().map(|h| h.max_timestamp))
    }

    /// Scans every batch from the start, checking length and CRC-32C and that offsets increase, rebuilds both
    /// indexes, and cuts the file at the first invalid byte. Never fails on what it reads; only on I/O.
    pub fn recover(&mut self, config: &LogConfig) -> io::Result<SegmentRecovery> {
        self.offset_index.reset(config.segment_index_bytes as usize)?;
        self.time_index.reset(config.segment_index_bytes as usize)?;
        self.next_offset = self.base_offset;
        self.max_timestamp = None;
        self.first_batch_timestamp = None;
        self.last_epoch = None;
        self.bytes_since_index_entry = 0;
        let file_size = self.size;
        let mut valid_end = 0u64;
        let mut reason = None;
        let mut buf = Vec::new();
        let mut buf_start = 0u64;
        while valid_end < file_size {
            let in_buf = (valid_end - buf_start) as usize;
            let need_header = BATCH_HEADER_BYTES.min((file_size - valid_end) as usize);
            if buf.len() < in_buf + need_header {
                buf_start = valid_end;
                buf = self.read_at(valid_end, RECOVERY_CHUNK_BYTES.min((file_size - valid_end) as usize))?;
                continue;
            }
            let available = &buf[in_buf..];
            let header = match BatchHeader::parse(available) {
                Ok(header) => header,
                Err(e) => {
                    reason = Some(format!("at position {valid_end}: {e}"));
                    break;
                }
            };
            let total = header.total_bytes();
            if header.batch_length < (BATCH_HEADER_BYTES - 12) as i32 || valid_end + total as u64 > file_size {
                reason = Some(format!(
                    "at position {valid_end}: batch of {total} bytes runs past the end of the file"
                ));
                break;
            }
            if available.len() < total {
                buf_start = valid_end;
                let remaining = (file_size - valid_end) as usize;
                buf = self.read_at(valid_end, RECOVERY_CHUNK_BYTES.max(total).min(remaining))?;
                continue;
            }
            let header = match batch::check_stored(&available[..total]) {
                Ok(header) => header,
                Err(e) => {
                    reason = Some(format!("at position {valid_end}: {e}"));
                    break;
                }
            };
            if header.base_offset < self.next_offset as i64
                || header.last_offset() as u64 - self.base_offset > u64::from(u32::MAX)
            {
                reason = Some(format!(
                    "at position {valid_end}: batch offsets {}..={} do not follow {}",
                    header.base_offset,
                    header.last_offset(),
                    self.next_offset
                ));
                break;
            }
            self.index_batch(valid_end, &header, config)?;
            valid_end += total as u64;
        }
        let truncated_bytes = file_size - valid_end;
        if truncated_bytes > 0 {
            self.with_file(|file| file.set_len(valid_end))?;
            self.size = valid_end;
        }
        Ok(SegmentRecovery {
            truncated_bytes,
            reason: reason.filter(|_| truncated_bytes > 0),
        })
    }

    /// Reads exactly `len` bytes at `pos` into a new buffer.
    fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        self.with_file(|file| file.read(pos, len))
    }

    /// Records one batch that is (or is being) written at `position`: index entries, offsets, timestamps.
    fn index_batch(&mut self, position: u64, header: &BatchHeader, config: &LogConfig) -> io::Result<()> {
        let last_offset = header.last_offset() as u64;
        if self.max_timestamp.is_none_or(|(ts, _)| header.max_timestamp > ts) {
            self.max_timestamp = Some((header.max_timestamp, last_offset));
        }
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(header.max_timestamp);
        }
        if self.bytes_since_index_entry > config.index_interval_bytes {
            let relative_offset = (header.base_offset as u64 - self.base_offset) as u32;
            self.offset_index.append(OffsetPosition {
                relative_offset,
                position: position as u32,
            })?;
            self.append_time_entry()?;
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += header.total_bytes() as u64;
        self.next_offset = last_offset + 1;
        self.last_epoch = Some(header.partition_leader_epoch);
        Ok(())
    }

    fn append_time_entry(&mut self) -> io::Result<()> {
        if let Some((timestamp, offset)) = self.max_timestamp {
            let relative_offset = (offset - self.base_offset) as u32;
            self.time_index.maybe_append(TimestampOffset {
                timestamp,
                relative_offset,
            })?;
        }
        Ok(())
    }

    /// Writes `bytes` (whole batches, offsets already assigned) at the end of the file and indexes them. On a
    /// write error the file is cut back to its old length, so the segment is as it was.
    pub fn append(&mut self, bytes: &[u8], batches: &[PendingBatch], config: &LogConfig) -> Result<(), AppendFailure> {
        let position = self.size;
        let written = self.with_file(|file| file.write(position, bytes));
        if let Err(e) = written {
            // A partial write is cut off, leaving the segment exactly as it was. If even that fails, the
            // segment is damaged until reopened, when recovery cuts the torn bytes.
            return match self.with_file(|file| file.set_len(position)) {
                Ok(()) => Err(AppendFailure::Unchanged(e)),
                Err(cut) => {
                    warn!(segment = %self.log_path.display(), error = %cut, "could not cut a failed append back");
                    Err(AppendFailure::Damaged(e))
                }
            };
        }
        self.size += bytes.len() as u64;
        for batch in batches {
            self.index_batch(position + batch.start as u64, &batch.header, config)
                .map_err(AppendFailure::Damaged)?;
        }
        Ok(())
    }

    /// Makes this the active segment: its indexes get room to grow.
    pub fn activate(&mut self, config: &LogConfig) -> io::Result<()> {
        self.offset_index.resize(config.segment_index_bytes as usize)?;
        self.time_index.resize(config.segment_index_bytes as usize)
    }

    /// Ends this segment's time as the active one: a last time index entry so the index knows the newest
    /// timestamp, indexes trimmed to their entries, everything fsynced.
    pub fn seal(&mut self) -> io::Result<()> {
        self.seal_unsynced()?;
        self.flush()
    }

    /// [`Self::seal`] without the fsync, and with every handle closed: the caller fsyncs the files (see
    /// [`Self::file_paths`]) off the append path.
    pub fn seal_unsynced(&mut self) -> io::Result<()> {
        self.append_time_entry_even_if_full()?;
        self.offset_index.trim()?;
        self.time_index.trim()?;
        self.close_handles();
        Ok(())
    }

    /// The segment's three files.
    pub fn file_paths(&self) -> [PathBuf; 3] {
        [
            self.log_path.clone(),
            self.offset_index.path().to_owned(),
            self.time_index.path().to_owned(),
        ]
    }

    /// Like [`Self::append_time_entry`], but a full time index is grown by one entry: the last entry is what
    /// tells a reopened log its sealed segments' newest timestamps.
    fn append_time_entry_even_if_full(&mut self) -> io::Result<()> {
        if self.time_index.is_full() {
            let needed = (self.time_index.entries() + 1) * crate::index::TIME_ENTRY_BYTES;
            self.time_index.resize(needed)?;
        }
        self.append_time_entry()
    }

    /// Trims the indexes without fsync; for a log closed after an I/O error.
    pub fn trim_indexes(&mut self) -> io::Result<()> {
        self.offset_index.trim()?;
        self.time_index.trim()
    }

    /// fsyncs the log file and both indexes.
    pub fn flush(&self) -> io::Result<()> {
        self.with_file(|file| file.sync_data())?;
        self.offset_index.sync()?;
        self.time_index.sync()
    }

    /// Closes every handle (they reopen on use).
    pub fn close_handles(&self) {
        self.file.close();
        self.offset_index.close();
        self.time_index.close();
    }

    /// The position of the batch holding `offset` (the first whose last offset is at or past it).
    pub fn find_batch(&self, offset: u64) -> io::Result<Option<(u64, BatchHeader)>> {
        let relative = offset.saturating_sub(self.base_offset).min(u64::from(u32::MAX)) as u32;
        let start = self.offset_index.lookup(relative)?.map_or(0, |e| u64::from(e.position));
        self.with_file(|file| {
            let mut walker = Walker::new(file.as_mut(), start, self.size);
            while let Some((at, header)) = walker.next_header()? {
                if header.last_offset() as u64 >= offset {
                    return Ok(Some((at, header)));
                }
            }
            Ok(None)
        })
    }

    /// Reads whole batches starting with `first`, found at `start` by [`Self::find_batch`], up to
    /// `max_bytes` and stopping before any batch whose last offset is at or past `max_offset`. With
    /// `min_one_batch`, a first batch larger than `max_bytes` is returned whole. Returns the bytes and the
    /// offset after the last batch returned.
    pub fn read_from(
        &self,
        start: u64,
        first: &BatchHeader,
        max_bytes: usize,
        max_offset: u64,
        min_one_batch: bool,
    ) -> io::Result<Option<(Vec<u8>, u64)>> {
        let offset = first.base_offset as u64;
        if first.last_offset() as u64 >= max_offset {
            return Ok(None);
        }
        let available = (self.size - start) as usize;
        let first_len = first.total_bytes();
        let want = if min_one_batch {
            max_bytes.max(first_len)
        } else {
            max_bytes
        }
        .min(available);
        if want < first_len {
            return Ok(None);
        }
        let mut buf = self.read_at(start, want)?;
        // Keep whole batches below `max_offset`.
        let mut end = 0;
        let mut next = offset;
        while end + BATCH_HEADER_BYTES <= buf.len() {
            let header =
                BatchHeader::parse(&buf[end..]).map_err(|e| invalid_data(&self.log_path, start + end as u64, e))?;
            let total = header.total_bytes();
            if end + total > buf.len() || header.last_offset() as u64 >= max_offset {
                break;
            }
            end += total;
            next = header.last_offset() as u64 + 1;
        }
        buf.truncate(end);
        Ok(Some((buf, next)))
    }

    /// The first record at or after `timestamp` whose offset is at least `min_offset`: its offset and
    /// timestamp.
    pub fn find_by_timestamp(&self, timestamp: i64, min_offset: u64) -> io::Result<Option<(u64, i64)>> {
        if self.max_timestamp.is_none_or(|(max, _)| max < timestamp) || min_offset >= self.next_offset {
            return Ok(None);
        }
        let from_offset = match self.time_index.last_before(timestamp)? {
            Some(entry) => self.base_offset + u64::from(entry.relative_offset),
            None => self.base_offset,
        }
        .max(min_offset);
        let relative = (from_offset.max(self.base_offset) - self.base_offset).min(u64::from(u32::MAX)) as u32;
        let mut start = self.offset_index.lookup(relative)?.map_or(0, |e| u64::from(e.position));
        loop {
            let candidate = self.with_file(|file| {
                let mut walker = Walker::new(file.as_mut(), start, self.size);
                while let Some((at, header)) = walker.next_header()? {
                    if header.max_timestamp >= timestamp && header.last_offset() as u64 >= min_offset {
                        return Ok(Some((at, header)));
                    }
                }
                Ok(None)
            })?;
            let Some((at, header)) = candidate else {
                return Ok(None);
            };
            // The batch's qualifying records may all sit below `min_offset`; then the search goes on.
            let found = self.record_at_or_after(at, &header, |offset, t| t >= timestamp && offset >= min_offset)?;
            if found.is_some() {
                return Ok(found);
            }
            start = at + header.total_bytes() as u64;
        }
    }

    /// The record of the batch at `position` that first satisfies `wanted` on its timestamp. A batch whose
    /// records cannot be decoded is answered with its own base offset and max timestamp, and logged.
    fn record_at_or_after(
        &self,
        position: u64,
        header: &BatchHeader,
        wanted: impl Fn(u64, i64) -> bool,
    ) -> io::Result<Option<(u64, i64)>> {
        let bytes = self.read_at(position, header.total_bytes())?;
        match batch::record_times(&bytes) {
            Ok(times) => Ok(times
                .iter()
                .find(|r| wanted(r.offset as u64, r.timestamp))
                .map(|r| (r.offset as u64, r.timestamp))),
            Err(e) => {
                warn!(segment = %self.log_path.display(), position, error = %e,
                    "records of a stored batch do not decode; answering with the batch's first offset");
                Ok(Some((header.base_offset as u64, header.max_timestamp)))
            }
        }
    }

    /// The first record carrying the segment's largest timestamp.
    pub fn max_timestamp_record(&self) -> io::Result<Option<(u64, i64)>> {
        let Some((max, last_offset)) = self.max_timestamp else {
            return Ok(None);
        };
        let Some((at, header)) = self.find_batch(last_offset)? else {
            return Ok(None);
        };
        self.record_at_or_after(at, &header, |_, t| t == max)
    }

    /// Calls `f` with the header of every batch, in order (a walk of headers only: the records are not read).
    pub fn for_each_header(&self, mut f: impl FnMut(&BatchHeader)) -> io::Result<()> {
        self.with_file(|file| {
            let mut walker = Walker::new(file.as_mut(), 0, self.size);
            while let Some((_, header)) = walker.next_header()? {
                f(&header);
            }
            Ok(())
        })
    }

    /// Removes every batch whose last offset is at or after `offset` (a batch holding `offset` goes whole).
    /// Returns the bytes removed.
    pub fn truncate_to(&mut self, offset: u64) -> io::Result<u64> {
        let Some((position, cut)) = self.find_batch(offset)? else {
            return Ok(0);
        };
        let removed = self.size - position;
        self.with_file(|file| file.set_len(position))?;
        self.size = position;
        // Index entries name batches by base offset (offset index) or last offset (time index); both are at
        // or past the cut batch's base offset exactly when the batch they name was cut.
        let relative = (cut.base_offset as u64 - self.base_offset) as u32;
        self.offset_index.truncate_to(relative)?;
        self.time_index.truncate_to(relative)?;
        self.reload_tail()?;
        Ok(removed)
    }

    /// Recomputes next offset, newest timestamp and the bytes since the last index entry from the indexes and
    /// the batches after the last offset index entry.
    fn reload_tail(&mut self) -> io::Result<()> {
        let start = match self.offset_index.entries() {
            0 => 0,
            n => u64::from(self.offset_index.get(n - 1)?.position),
        };
        let mut end = start;
        let mut max_timestamp = self
            .time_index
            .last()
            .map(|e| (e.timestamp, self.base_offset + u64::from(e.relative_offset)));
        let mut next_offset = self.base_offset;
        let mut last_epoch = None;
        self.with_file(|file| {
            let mut walker = Walker::new(file.as_mut(), start, self.size);
            while let Some((at, header)) = walker.next_header()? {
                end = at + header.total_bytes() as u64;
                next_offset = header.last_offset() as u64 + 1;
                last_epoch = Some(header.partition_leader_epoch);
                if max_timestamp.is_none_or(|(ts, _)| header.max_timestamp > ts) {
                    max_timestamp = Some((header.max_timestamp, header.last_offset() as u64));
                }
            }
            Ok(())
        })?;
        self.next_offset = next_offset;
        self.max_timestamp = max_timestamp;
        self.last_epoch = last_epoch;
        self.bytes_since_index_entry = end - start;
        if self.size == 0 {
            self.first_batch_timestamp = None;
        }
        Ok(())
    }

    /// Deletes the segment's three files.
    pub fn delete(self) -> io::Result<()> {
        self.file.close();
        remove_if_exists(&self.log_path)?;
        self.offset_index.delete()?;
        self.time_index.delete()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
}

fn invalid_data(path: &Path, position: u64, e: batch::BatchError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} at position {position}: {e}", path.display()),
    )
}

/// Walks batch headers from a position, reading the file in chunks. Checks only what walking needs (a v2
/// header whose length stays inside the file); anything else is `InvalidData`, since a loaded segment was
/// validated when it was written or recovered.
struct Walker<'a> {
    file: &'a mut dyn DiskFile,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> Walker<'a> {
    fn new(file: &'a mut dyn DiskFile, pos: u64, end: u64) -> Self {
        Self {
            file,
            pos,
            end,
            buf: Vec::new(),
            buf_start: pos,
        }
    }

    fn next_header(&mut self) -> io::Result<Option<(u64, BatchHeader)>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        if self.end - self.pos < BATCH_HEADER_BYTES as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("partial batch header at {}", self.pos),
            ));
        }
        let in_buf = self.pos.checked_sub(self.buf_start).map(|d| d as usize);
        let header_bytes = match in_buf {
            Some(at) if at + BATCH_HEADER_BYTES <= self.buf.len() => &self.buf[at..at + BATCH_HEADER_BYTES],
            _ => {
                let len = WALK_CHUNK_BYTES.min((self.end - self.pos) as usize);
                self.buf = self.file.read(self.pos, len)?;
                self.buf_start = self.pos;
                &self.buf[..BATCH_HEADER_BYTES]
            }
        };
        let header = BatchHeader::parse(header_bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("at position {}: {e}", self.pos)))?;
        let total = header.total_bytes() as u64;
        if header.batch_length < (BATCH_HEADER_BYTES - 12) as i32 || self.pos + total > self.end {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("batch at position {} runs past the end of the segment", self.pos),
            ));
        }
        let at = self.pos;
        self.pos += total;
        Ok(Some((at, header)))
    }
}
