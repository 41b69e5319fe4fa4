//! The two sparse, mmapped indexes of a segment.
//!
//! Both are flat arrays of fixed-size big-endian entries, sorted by offset, with one entry added for roughly
//! every `index.interval.bytes` of log appended. The active segment's index files are preallocated to
//! `segment.index.bytes` (so appends never grow a mapped file) and trimmed to their used length when the
//! segment rolls or the log closes; a trimmed file's length therefore says how many entries it holds. After an
//! unclean stop the indexes of every segment past the recovery point are rebuilt from the log, so an index is
//! only a cache of facts the `.log` file already holds.
//!
//! `.index` entry (8 bytes): `u32` offset relative to the segment's base offset, `u32` byte position in
//! `.log` of the batch that starts at that offset.
//!
//! `.timeindex` entry (12 bytes): `i64` largest timestamp of the segment so far, `u32` relative offset of the
//! last record of the batch that carried it. Timestamps strictly increase from entry to entry.
//!
//! The maps are [`Slot`]s of the shared [`HandleCache`]: closed when idle, reopened on use.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::MmapMut;

use crate::handles::{HandleCache, Slot};

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;
const _: () = assert!(OFFSET_ENTRY_BYTES == 4 + 4);
const _: () = assert!(TIME_ENTRY_BYTES == 8 + 4);

/// A file of fixed-size entries behind a lazily mapped [`Slot`].
#[derive(Debug)]
struct IndexFile {
    path: PathBuf,
    entry_bytes: usize,
    entries: usize,
    /// Entries the file can hold at its current length.
    capacity: usize,
    map: Arc<Slot<MmapMut>>,
}

impl IndexFile {
    /// Opens (creating if absent) an index file. A file whose length is not a whole number of entries is
    /// reported as `InvalidData` so the caller rebuilds it.
    fn open(path: PathBuf, entry_bytes: usize, handles: &Arc<HandleCache>) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let len = file.metadata()?.len() as usize;
        if !len.is_multiple_of(entry_bytes) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is {len} bytes, not a multiple of {entry_bytes}", path.display()),
            ));
        }
        let entries = len / entry_bytes;
        Ok(Self {
            path,
            entry_bytes,
            entries,
            capacity: entries,
            map: Slot::new(handles),
        })
    }

    /// Discards every entry and sizes the file for `capacity_bytes` of appends.
    fn reset(&mut self, capacity_bytes: usize) -> io::Result<()> {
        self.map.close();
        let file = OpenOptions::new().write(true).open(&self.path)?;
        file.set_len(0)?;
        self.entries = 0;
        self.capacity = 0;
        self.resize(capacity_bytes)
    }

    /// Makes room for appends: the file grows (sparsely) to `capacity_bytes`, rounded down to whole entries.
    fn resize(&mut self, capacity_bytes: usize) -> io::Result<()> {
        let capacity = (capacity_bytes / self.entry_bytes).max(self.entries);
        if capacity == self.capacity {
            return Ok(());
        }
        // The map must go before the file changes length: touching a page past the end of a file is SIGBUS.
        self.map.close();
        OpenOptions::new()
            .write(true)
            .open(&self.path)?
            .set_len((capacity * self.entry_bytes) as u64)?;
        self.capacity = capacity;
        Ok(())
    }

    /// Shrinks the file to the entries in use; done when the segment stops being active.
    fn trim(&mut self) -> io::Result<()> {
        let entries = self.entries;
        self.resize(entries * self.entry_bytes)
    }

    fn is_full(&self) -> bool {
        self.entries >= self.capacity
    }

    fn with_map<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> io::Result<R> {
        let path = &self.path;
        let len = self.capacity * self.entry_bytes;
        if len == 0 {
            // Nothing to map (an empty sealed index); mapping zero bytes is an error.
            return Ok(f(&mut []));
        }
        self.map.with(
            || {
                let file = OpenOptions::new().read(true).write(true).open(path)?;
                // SAFETY: the file belongs to this log and is only resized through `resize`, which closes this
                // map first; no other process writes Strata's data directory while the broker owns it.
                #[allow(unsafe_code)]
                unsafe {
                    memmap2::MmapOptions::new().len(len).map_mut(&file)
                }
            },
            |map| f(&mut map[..len]),
        )
    }

    fn entry(&self, i: usize) -> std::ops::Range<usize> {
        i * self.entry_bytes..(i + 1) * self.entry_bytes
    }

    fn append(&mut self, entry: &[u8]) -> io::Result<()> {
        debug_assert_eq!(entry.len(), self.entry_bytes);
        if self.is_full() {
            return Err(io::Error::other(format!("{} is full", self.path.display())));
        }
        let i = self.entries;
        self.with_map(|map| {
            let range = i * entry.len()..(i + 1) * entry.len();
            map[range].copy_from_slice(entry);
        })?;
        self.entries += 1;
        Ok(())
    }

    /// Index of the last entry for which `is_before(entry)` holds, entries being sorted so that it holds for a
    /// prefix; `None` when it holds for none.
    fn last_before(&self, is_before: impl Fn(&[u8]) -> bool) -> io::Result<Option<usize>> {
        if self.entries == 0 {
            return Ok(None);
        }
        let entries = self.entries;
        self.with_map(|map| {
            let (mut lo, mut hi) = (0, entries);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if is_before(&map[self.entry(mid)]) {
                    lo = mid + 1
                } else {
                    hi = mid
                }
            }
            lo.checked_sub(1)
        })
    }

    fn read_entry(&self, i: usize) -> io::Result<Vec<u8>> {
        self.with_map(|map| map[self.entry(i)].to_vec())
    }

    /// Drops every entry from `i` on.
    fn truncate_entries(&mut self, i: usize) {
        self.entries = self.entries.min(i);
    }

    /// Writes the dirty pages of the map (if mapped) and fsyncs the file.
    fn sync(&self) -> io::Result<()> {
        if let Some(result) = self.map.with_open(|map| map.flush()) {
            result?;
        }
        self.map.cache().disk().sync_path(&self.path)
    }

    fn delete(self) -> io::Result<()> {
        self.map.close();
        remove_if_exists(&self.path)
    }
}

pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// An entry of the offset index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPosition {
    pub relative_offset: u32,
    pub position: u32,
}

/// The `.index` file of a segment; layout in the module documentation.
#[derive(Debug)]
pub struct OffsetIndex {
    file: IndexFile,
}

impl OffsetIndex {
    pub fn open(path: PathBuf, handles: &Arc<HandleCache>) -> io::Result<Self> {
        Ok(Self {
            file: IndexFile::open(path, OFFSET_ENTRY_BYTES, handles)?,
        })
    }

    pub fn entries(&self) -> usize {
        self.file.entries
    }

    pub fn is_full(&self) -> bool {
        self.file.is_full()
    }

    pub fn append(&mut self, entry: OffsetPosition) -> io::Result<()> {
        let mut bytes = [0u8; OFFSET_ENTRY_BYTES];
        bytes[..4].copy_from_slice(&entry.relative_offset.to_be_bytes());
        bytes[4..].copy_from_slice(&entry.position.to_be_bytes());
        self.file.append(&bytes)
    }

    /// The last entry whose offset is at or before `relative_offset`.
    pub fn lookup(&self, relative_offset: u32) -> io::Result<Option<OffsetPosition>> {
        match self
            .file
            .last_before(|e| decode_offset_entry(e).relative_offset <= relative_offset)?
        {
            Some(i) => self.get(i).map(Some),
            None => Ok(None),
        }
    }

    pub fn get(&self, i: usize) -> io::Result<OffsetPosition> {
        Ok(decode_offset_entry(&self.file.read_entry(i)?))
    }

    /// Drops every entry whose offset is at or after `relative_offset`.
    pub fn truncate_to(&mut self, relative_offset: u32) -> io::Result<()> {
        let keep = self
            .file
            .last_before(|e| decode_offset_entry(e).relative_offset < relative_offset)?;
        self.file.truncate_entries(keep.map_or(0, |i| i + 1));
        Ok(())
    }

    /// Checks a trimmed index against its segment: offsets and positions strictly increase, and the last
    /// entry lies inside the log. A failure means the index must be rebuilt.
    pub fn sanity_check(&self, log_bytes: u64) -> io::Result<bool> {
        let entries = self.file.entries;
        self.file.with_map(|map| {
            let mut previous: Option<OffsetPosition> = None;
            for i in 0..entries {
                let entry = decode_offset_entry(&map[i * OFFSET_ENTRY_BYTES..(i + 1) * OFFSET_ENTRY_BYTES]);
                let ordered =
                    previous.is_none_or(|p| entry.relative_offset > p.relative_offset && entry.position > p.position);
                if !ordered || u64::from(entry.position) >= log_bytes {
                    return false;
                }
                previous = Some(entry);
            }
            true
        })
    }

    pub fn reset(&mut self, capacity_bytes: usize) -> io::Result<()> {
        self.file.reset(capacity_bytes)
    }

    pub fn resize(&mut self, capacity_bytes: usize) -> io::Result<()> {
        self.file.resize(capacity_bytes)
    }

    pub fn trim(&mut self) -> io::Result<()> {
        self.file.trim()
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync()
    }

    pub fn close(&self) {
        self.file.map.close();
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    pub fn delete(self) -> io::Result<()> {
        self.file.delete()
    }
}

fn decode_offset_entry(bytes: &[u8]) -> OffsetPosition {
    OffsetPosition {
        relative_offset: u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")),
        position: u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes")),
    }
}

/// An entry of the time index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// The `.timeindex` file of a segment; layout in the module documentation.
#[derive(Debug)]
pub struct TimeIndex {
    file: IndexFile,
    /// Kept in memory so appends need not touch the map to compare with it.
    last: Option<TimestampOffset>,
}

impl TimeIndex {
    pub fn open(path: PathBuf, handles: &Arc<HandleCache>) -> io::Result<Self> {
        let file = IndexFile::open(path, TIME_ENTRY_BYTES, handles)?;
        let mut index = Self { file, last: None };
        index.last = index.last_entry_from_file()?;
        Ok(index)
    }

    /// Reads the last entry with one `pread`, without mapping the file.
    fn last_entry_from_file(&self) -> io::Result<Option<TimestampOffset>> {
        if self.file.entries == 0 {
            return Ok(None);
        }
        let mut bytes = [0u8; TIME_ENTRY_BYTES];
        let at = ((self.file.entries - 1) * TIME_ENTRY_BYTES) as u64;
        std::os::unix::fs::FileExt::read_exact_at(&File::open(&self.file.path)?, &mut bytes, at)?;
        Ok(Some(decode_time_entry(&bytes)))
    }

    pub fn entries(&self) -> usize {
        self.file.entries
    }

    pub fn is_full(&self) -> bool {
        self.file.is_full()
    }

    pub fn last(&self) -> Option<TimestampOffset> {
        self.last
    }

    /// Appends an entry if `timestamp` is larger than the last entry's. Returns whether it did.
    pub fn maybe_append(&mut self, entry: TimestampOffset) -> io::Result<bool> {
        if self.last.is_some_and(|last| entry.timestamp <= last.timestamp) {
            return Ok(false);
        }
        let mut bytes = [0u8; TIME_ENTRY_BYTES];
        bytes[..8].copy_from_slice(&entry.timestamp.to_be_bytes());
        bytes[8..].copy_from_slice(&entry.relative_offset.to_be_bytes());
        self.file.append(&bytes)?;
        self.last = Some(entry);
        Ok(true)
    }

    /// The last entry whose timestamp is strictly before `timestamp`: every record up to and including its
    /// offset is older than `timestamp`, so a search for the first record at or after it may start there.
    pub fn last_before(&self, timestamp: i64) -> io::Result<Option<TimestampOffset>> {
        match self.file.last_before(|e| decode_time_entry(e).timestamp < timestamp)? {
            Some(i) => Ok(Some(decode_time_entry(&self.file.read_entry(i)?))),
            None => Ok(None),
        }
    }

    /// Drops every entry whose offset is at or after `relative_offset`.
    pub fn truncate_to(&mut self, relative_offset: u32) -> io::Result<()> {
        let keep = self
            .file
            .last_before(|e| decode_time_entry(e).relative_offset < relative_offset)?;
        self.file.truncate_entries(keep.map_or(0, |i| i + 1));
        self.last = match self.file.entries {
            0 => None,
            n => Some(decode_time_entry(&self.file.read_entry(n - 1)?)),
        };
        Ok(())
    }

    /// Checks a trimmed index: timestamps strictly increase, offsets never decrease and stay below
    /// `relative_offset_end`. A failure means the index must be rebuilt.
    pub fn sanity_check(&self, relative_offset_end: u64) -> io::Result<bool> {
        let entries = self.file.entries;
        self.file.with_map(|map| {
            let mut previous: Option<TimestampOffset> = None;
            for i in 0..entries {
                let entry = decode_time_entry(&map[i * TIME_ENTRY_BYTES..(i + 1) * TIME_ENTRY_BYTES]);
                let ordered = previous
                    .is_none_or(|p| entry.timestamp > p.timestamp && entry.relative_offset >= p.relative_offset);
                if !ordered || u64::from(entry.relative_offset) >= relative_offset_end {
                    return false;
                }
                previous = Some(entry);
            }
            true
        })
    }

    pub fn reset(&mut self, capacity_bytes: usize) -> io::Result<()> {
        self.last = None;
        self.file.reset(capacity_bytes)
    }

    pub fn resize(&mut self, capacity_bytes: usize) -> io::Result<()> {
        self.file.resize(capacity_bytes)
    }

    pub fn trim(&mut self) -> io::Result<()> {
        self.file.trim()
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync()
    }

    pub fn close(&self) {
        self.file.map.close();
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    pub fn delete(self) -> io::Result<()> {
        self.file.delete()
    }
}

fn decode_time_entry(bytes: &[u8]) -> TimestampOffset {
    TimestampOffset {
        timestamp: i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
        relative_offset: u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_index(dir: &Path, entries: &[(u32, u32)]) -> OffsetIndex {
        let handles = HandleCache::new(64);
        let mut index = OffsetIndex::open(dir.join("0.index"), &handles).unwrap();
        index.resize(1024).unwrap();
        for &(relative_offset, position) in entries {
            index
                .append(OffsetPosition {
                    relative_offset,
                    position,
                })
                .unwrap();
        }
        index
    }

    #[test]
    fn offset_lookup_at_every_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let index = offset_index(dir.path(), &[(10, 100), (20, 200), (30, 300)]);
        let at = |o| index.lookup(o).unwrap().map(|e| (e.relative_offset, e.position));
        assert_eq!(at(0), None, "before the first entry");
        assert_eq!(at(9), None);
        assert_eq!(at(10), Some((10, 100)), "exactly the first entry");
        assert_eq!(at(11), Some((10, 100)));
        assert_eq!(at(19), Some((10, 100)));
        assert_eq!(at(20), Some((20, 200)));
        assert_eq!(at(30), Some((30, 300)), "exactly the last entry");
        assert_eq!(at(u32::MAX), Some((30, 300)), "past the last entry");
    }

    #[test]
    fn an_empty_offset_index_finds_nothing_and_maps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let index = offset_index(dir.path(), &[]);
        assert_eq!(index.lookup(5).unwrap(), None);
        assert!(!index.file.map.is_open());
    }

    #[test]
    fn a_full_index_refuses_appends() {
        let dir = tempfile::tempdir().unwrap();
        let handles = HandleCache::new(64);
        let mut index = OffsetIndex::open(dir.path().join("0.index"), &handles).unwrap();
        index.resize(2 * OFFSET_ENTRY_BYTES + 3).unwrap();
        index
            .append(OffsetPosition {
                relative_offset: 1,
                position: 1,
            })
            .unwrap();
        index
            .append(OffsetPosition {
                relative_offset: 2,
                position: 2,
            })
            .unwrap();
        assert!(index.is_full());
        assert!(
            index
                .append(OffsetPosition {
                    relative_offset: 3,
                    position: 3
                })
                .is_err()
        );
    }

    #[test]
    fn trimmed_index_reopens_with_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = offset_index(dir.path(), &[(10, 100), (20, 200)]);
        index.trim().unwrap();
        drop(index);
        assert_eq!(std::fs::metadata(dir.path().join("0.index")).unwrap().len(), 16);
        let handles = HandleCache::new(64);
        let index = OffsetIndex::open(dir.path().join("0.index"), &handles).unwrap();
        assert_eq!(index.entries(), 2);
        assert_eq!(
            index.lookup(25).unwrap(),
            Some(OffsetPosition {
                relative_offset: 20,
                position: 200
            })
        );
        assert!(index.sanity_check(300).unwrap());
        assert!(!index.sanity_check(200).unwrap(), "an entry past the log end is insane");
    }

    #[test]
    fn a_torn_index_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0.index"), [0u8; 13]).unwrap();
        let err = OffsetIndex::open(dir.path().join("0.index"), &HandleCache::new(4)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn offset_truncation_keeps_entries_before_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = offset_index(dir.path(), &[(10, 100), (20, 200), (30, 300)]);
        index.truncate_to(20).unwrap();
        assert_eq!(index.entries(), 1);
        index.truncate_to(11).unwrap();
        assert_eq!(index.entries(), 1);
        index.truncate_to(10).unwrap();
        assert_eq!(index.entries(), 0);
    }

    #[test]
    fn time_lookup_at_every_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let handles = HandleCache::new(64);
        let mut index = TimeIndex::open(dir.path().join("0.timeindex"), &handles).unwrap();
        index.resize(1024).unwrap();
        for (timestamp, relative_offset) in [(1000, 5), (2000, 9), (3000, 20)] {
            assert!(
                index
                    .maybe_append(TimestampOffset {
                        timestamp,
                        relative_offset
                    })
                    .unwrap()
            );
        }
        assert!(
            !index
                .maybe_append(TimestampOffset {
                    timestamp: 3000,
                    relative_offset: 25
                })
                .unwrap()
        );
        assert!(
            !index
                .maybe_append(TimestampOffset {
                    timestamp: 10,
                    relative_offset: 25
                })
                .unwrap()
        );
        let before = |t| index.last_before(t).unwrap().map(|e| (e.timestamp, e.relative_offset));
        assert_eq!(before(i64::MIN), None);
        assert_eq!(
            before(1000),
            None,
            "an entry equal to the target is not strictly before it"
        );
        assert_eq!(before(1001), Some((1000, 5)));
        assert_eq!(before(2000), Some((1000, 5)));
        assert_eq!(before(3001), Some((3000, 20)));
        assert_eq!(before(i64::MAX), Some((3000, 20)));

        index.truncate_to(9).unwrap();
        assert_eq!(
            index.last(),
            Some(TimestampOffset {
                timestamp: 1000,
                relative_offset: 5
            })
        );
        index.trim().unwrap();
        drop(index);
        let index = TimeIndex::open(dir.path().join("0.timeindex"), &handles).unwrap();
        assert_eq!(
            index.last(),
            Some(TimestampOffset {
                timestamp: 1000,
                relative_offset: 5
            })
        );
        assert!(index.sanity_check(6).unwrap());
        assert!(!index.sanity_check(5).unwrap());
    }
}
