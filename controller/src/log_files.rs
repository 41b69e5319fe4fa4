//! The Raft log's entries on disk: segment files of checksummed frames, recovered up to the first bad frame.
//!
//! ```text
//! <dir>/
//!   00000000000000000000.log   entries from index 0, each one frame
//!   00000000000000004817.log   entries from index 4817 (a segment is named after its first index)
//! ```
//!
//! A frame, little-endian:
//!
//! ```text
//! body_len   u32        bytes of body, at most ENTRY_BODY_BYTES_MAX
//! crc        u32        CRC-32 (crc32fast) of body
//! body       body_len   a prost-encoded `strata.raft.Entry` (log id and payload)
//! ```
//!
//! Entries are contiguous: each segment starts at the index in its name and the next segment starts where the
//! previous one ended. An append writes its frames at the end of the last segment and fsyncs before it
//! returns (the log store then tells openraft the entries are flushed). A new segment is started, on an
//! append, once the last one holds [`SEGMENT_BYTES_MAX`]; a segment never exists empty.
//!
//! Recovery reads every segment in order and stops at the first frame that is short, too long, fails its CRC,
//! does not decode, or breaks the index sequence: that frame and everything after it (the rest of its segment
//! and all later segments) is cut, with a warning. After a crash only the tail can be torn — everything before
//! it was fsynced — so this loses nothing that openraft was told is durable.
//!
//! This type knows nothing of votes or purging rules: [`crate::log_store`] decides what to append, cut and
//! drop. It does plain blocking file I/O; the log store runs it off the async runtime's worker threads.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::checked_file::sync_dir;
use crate::codec::{entry_from_pb, entry_to_pb};
use crate::proto::raft as pb;
use crate::types::Entry;

/// Bytes before each entry's body.
pub const FRAME_HEADER_BYTES: usize = 8;
const _: () = assert!(FRAME_HEADER_BYTES == 4 + 4);

/// Largest entry body. A batch creating 10,000 partitions with three replicas is about 0.5 MiB; this leaves
/// room for far larger ones and still bounds the allocation a corrupt length could ask for on recovery.
pub const ENTRY_BODY_BYTES_MAX: usize = 64 << 20;

/// A segment that holds this many bytes is closed; the next append starts a new one. Purging deletes whole
/// segments, so this bounds how much purged log stays on disk.
pub const SEGMENT_BYTES_MAX: u64 = 32 << 20;

const SEGMENT_SUFFIX: &str = ".log";
/// Width of the zero-padded first index in a segment's name, as Kafka names its segments.
const SEGMENT_NAME_DIGITS: usize = 20;

/// One segment file.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: File,
    /// Index of the first entry.
    first_index: u64,
    /// Byte position of each entry, in index order; `positions[i]` holds entry `first_index + i`.
    positions: Vec<u64>,
    /// Bytes of valid frames: where the next frame goes.
    len: u64,
}

impl Segment {
    fn last_index(&self) -> u64 {
        self.first_index + self.positions.len() as u64 - 1
    }
}

/// The segment files of one Raft log directory.
#[derive(Debug)]
pub struct LogFiles {
    dir: PathBuf,
    /// By first index. Never holds an empty segment.
    segments: BTreeMap<u64, Segment>,
}

/// What recovery found.
#[derive(Debug)]
pub struct Recovered {
    pub files: LogFiles,
    /// Every entry on disk, in index order.
    pub entries: Vec<Entry>,
    /// Bytes cut from a torn or damaged tail (0 after a clean stop).
    pub cut_bytes: u64,
}

impl LogFiles {
    /// Opens the segments in `dir` (which must exist), cutting the log at the first invalid frame.
    pub fn open(dir: &Path) -> io::Result<Recovered> {
        let mut files = LogFiles {
            dir: dir.to_owned(),
            segments: BTreeMap::new(),
        };
        let mut entries = Vec::new();
        let mut cut_bytes = 0;
        let mut next_index = None;
        let mut paths = segment_paths(dir)?.into_iter();
        for (first_index, path) in paths.by_ref() {
            if next_index.is_some_and(|next| next != first_index) {
                tracing::warn!(path = %path.display(), "metadata log segment does not follow the previous one");
                cut_bytes += remove_segment(&path)?;
                break;
            }
            let (segment, segment_entries, cut) = open_segment(path, first_index)?;
            cut_bytes += cut;
            entries.extend(segment_entries);
            let Some(segment) = segment else { break };
            next_index = Some(segment.last_index() + 1);
            files.segments.insert(first_index, segment);
            // A cut segment ends the log: what follows it no longer continues it.
            if cut > 0 {
                break;
            }
        }
        for (_, path) in paths {
            tracing::warn!(path = %path.display(), "removing metadata log segment after a damaged one");
            cut_bytes += remove_segment(&path)?;
        }
        // Once per open, so that removals above (and of empty segments) are durable before anything new.
        sync_dir(dir)?;
        Ok(Recovered {
            files,
            entries,
            cut_bytes,
        })
    }

    /// Index of the last entry on disk.
    pub fn last_index(&self) -> Option<u64> {
        self.segments.values().next_back().map(Segment::last_index)
    }

    /// Writes `entries` (contiguous, following the last entry on disk) and fsyncs them.
    pub fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        let Some(first) = entries.first() else { return Ok(()) };
        if let Some(last) = self.last_index()
            && first.log_id.index != last + 1
        {
            return Err(invalid_input(format!(
                "append at index {} after {last}",
                first.log_id.index
            )));
        }
        let (bytes, offsets) = encode_frames(entries)?;
        let created = self.segment_for_append(first.log_id.index)?;
        let segment = self
            .segments
            .values_mut()
            .next_back()
            .expect("segment_for_append made one");
        let result = write_frames(segment, &bytes, &offsets, created.then_some(self.dir.as_path()));
        if result.is_err() && created {
            // Leave no empty segment behind, whose name would claim an index that is not there.
            let segment = self.segments.remove(&first.log_id.index).expect("created above");
            fs::remove_file(&segment.path).ok();
        }
        result
    }

    /// Removes every entry after `last_kept` (every entry, for `None`) from disk, last segment first, so that a
    /// crash part way leaves a shorter log, never one with a hole.
    pub fn truncate_after(&mut self, last_kept: Option<u64>) -> io::Result<()> {
        let first_removed = last_kept.map_or(0, |index| index + 1);
        let mut removed_any = false;
        while let Some(mut entry) = self.segments.last_entry() {
            let segment = entry.get_mut();
            if segment.first_index >= first_removed {
                let segment = entry.remove();
                fs::remove_file(&segment.path)?;
                removed_any = true;
                continue;
            }
            if segment.last_index() >= first_removed {
                let keep = (first_removed - segment.first_index) as usize;
                let len = segment.positions[keep];
                segment.file.set_len(len)?;
                segment.file.sync_all()?;
                segment.positions.truncate(keep);
                segment.len = len;
            }
            break;
        }
        if removed_any {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Deletes the segments whose entries are all at or below `upto`, first segment first. The segment
    /// holding `upto + 1` stays, with its purged head: the log store ignores those entries.
    pub fn purge(&mut self, upto: u64) -> io::Result<()> {
        let mut removed_any = false;
        while let Some(entry) = self.segments.first_entry() {
            if entry.get().last_index() > upto {
                break;
            }
            let segment = entry.remove();
            fs::remove_file(&segment.path)?;
            removed_any = true;
        }
        if removed_any {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Makes sure the last segment can take an append starting at `first_index`; returns whether it created
    /// a new segment file.
    fn segment_for_append(&mut self, first_index: u64) -> io::Result<bool> {
        if self
            .segments
            .values()
            .next_back()
            .is_some_and(|segment| segment.len < SEGMENT_BYTES_MAX)
        {
            return Ok(false);
        }
        let path = self.dir.join(segment_name(first_index));
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        let segment = Segment {
            path,
            file,
            first_index,
            positions: Vec::new(),
            len: 0,
        };
        self.segments.insert(first_index, segment);
        Ok(true)
    }
}

/// The frames of `entries` in one buffer, and where each frame starts in it.
fn encode_frames(entries: &[Entry]) -> io::Result<(Vec<u8>, Vec<u64>)> {
    let mut bytes = Vec::new();
    let mut offsets = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        if entry.log_id.index != entries[0].log_id.index + i as u64 {
            return Err(invalid_input(format!(
                "entries not contiguous at index {}",
                entry.log_id.index
            )));
        }
        let body = entry_to_pb(entry).encode_to_vec();
        if body.len() > ENTRY_BODY_BYTES_MAX {
            return Err(invalid_input(format!(
                "entry {} is {} bytes, over the maximum of {ENTRY_BODY_BYTES_MAX}",
                entry.log_id.index,
                body.len()
            )));
        }
        offsets.push(bytes.len() as u64);
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
    }
    Ok((bytes, offsets))
}

/// Writes and fsyncs frames at the end of `segment`, and then records them. On an error the file is cut back
/// to its previous length, so a later append does not follow garbage. `new_in_dir` is the directory to fsync
/// when the segment file was just created.
fn write_frames(segment: &mut Segment, bytes: &[u8], offsets: &[u64], new_in_dir: Option<&Path>) -> io::Result<()> {
    let start = segment.len;
    let written = segment
        .file
        .write_all_at(bytes, start)
        .and_then(|()| segment.file.sync_data())
        .and_then(|()| new_in_dir.map_or(Ok(()), sync_dir));
    if let Err(e) = written {
        segment.file.set_len(start).ok();
        return Err(e);
    }
    segment.positions.extend(offsets.iter().map(|offset| start + offset));
    segment.len = start + bytes.len() as u64;
    Ok(())
}

/// Reads one segment's frames up to the first invalid one, cutting the file there. Returns the segment
/// (`None` if it held no valid entry and was removed), its entries and the bytes cut.
fn open_segment(path: PathBuf, first_index: u64) -> io::Result<(Option<Segment>, Vec<Entry>, u64)> {
    let bytes = fs::read(&path)?;
    let mut entries = Vec::new();
    let mut positions = Vec::new();
    let mut position = 0usize;
    while position < bytes.len() {
        let expected_index = first_index + entries.len() as u64;
        match decode_frame(&bytes[position..], expected_index) {
            Ok((entry, frame_len)) => {
                entries.push(entry);
                positions.push(position as u64);
                position += frame_len;
            }
            Err(reason) => {
                tracing::warn!(
                    path = %path.display(), position, cut_bytes = bytes.len() - position, reason,
                    "metadata log ends in an invalid entry (torn write?): cutting it"
                );
                break;
            }
        }
    }
    let cut = (bytes.len() - position) as u64;
    if entries.is_empty() {
        fs::remove_file(&path)?;
        return Ok((None, entries, bytes.len() as u64));
    }
    let file = OpenOptions::new().read(true).write(true).open(&path)?;
    if cut > 0 {
        file.set_len(position as u64)?;
        file.sync_all()?;
    }
    let segment = Segment {
        path,
        file,
        first_index,
        positions,
        len: position as u64,
    };
    Ok((Some(segment), entries, cut))
}

/// One frame at the start of `bytes`, with its length; or why it is not a valid entry `expected_index`.
fn decode_frame(bytes: &[u8], expected_index: u64) -> Result<(Entry, usize), &'static str> {
    let header = bytes.get(..FRAME_HEADER_BYTES).ok_or("short frame header")?;
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len > ENTRY_BODY_BYTES_MAX {
        return Err("entry length over the maximum");
    }
    let body = bytes
        .get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len)
        .ok_or("short entry body")?;
    if crc32fast::hash(body) != crc {
        return Err("CRC-32 mismatch");
    }
    let entry = pb::Entry::decode(body)
        .ok()
        .and_then(|entry| entry_from_pb(entry).ok())
        .ok_or("undecodable entry")?;
    if entry.log_id.index != expected_index {
        return Err("entry index out of sequence");
    }
    Ok((entry, FRAME_HEADER_BYTES + len))
}

/// Segment files in `dir`, by first index. Other files are not the log's and are left alone.
fn segment_paths(dir: &Path) -> io::Result<BTreeMap<u64, PathBuf>> {
    let mut paths = BTreeMap::new();
    for dir_entry in fs::read_dir(dir)? {
        let path = dir_entry?.path();
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        let first_index = name
            .strip_suffix(SEGMENT_SUFFIX)
            .filter(|digits| digits.len() == SEGMENT_NAME_DIGITS)
            .and_then(|digits| digits.parse::<u64>().ok());
        if let Some(first_index) = first_index {
            paths.insert(first_index, path);
        }
    }
    Ok(paths)
}

fn segment_name(first_index: u64) -> String {
    format!("{first_index:0width$}{SEGMENT_SUFFIX}", width = SEGMENT_NAME_DIGITS)
}

/// Removes a segment file, returning its size.
fn remove_segment(path: &Path) -> io::Result<u64> {
    let len = fs::metadata(path)?.len();
    fs::remove_file(path)?;
    Ok(len)
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use openraft::vote::RaftLeaderId;

    use super::*;
    use crate::types::{EntryPayload, LeaderId, LogId};

    fn blank(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(LeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|entry| entry.log_id.index).collect()
    }

    #[test]
    fn append_truncate_purge_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = LogFiles::open(dir.path()).unwrap().files;
        // Force one segment per append by filling the segment's length past the roll size.
        for index in 0..4 {
            files.append(&[blank(index)]).unwrap();
            files.segments.values_mut().next_back().unwrap().len = SEGMENT_BYTES_MAX;
        }
        assert_eq!(files.segments.len(), 4);
        assert!(files.append(&[blank(9)]).is_err(), "a hole is refused");

        files.truncate_after(Some(1)).unwrap();
        assert_eq!(files.last_index(), Some(1));
        files.purge(0).unwrap();
        assert_eq!(files.segments.keys().copied().collect::<Vec<_>>(), vec![1]);
        drop(files);

        let recovered = LogFiles::open(dir.path()).unwrap();
        assert_eq!(indexes(&recovered.entries), vec![1]);
        assert_eq!(recovered.cut_bytes, 0);
    }

    #[test]
    fn truncate_within_a_segment_then_append() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = LogFiles::open(dir.path()).unwrap().files;
        files.append(&(0..5).map(blank).collect::<Vec<_>>()).unwrap();
        files.truncate_after(Some(2)).unwrap();
        files.append(&[blank(3)]).unwrap();
        files.truncate_after(None).unwrap();
        assert_eq!(files.last_index(), None);
        files.append(&[blank(7)]).unwrap();
        drop(files);
        assert_eq!(indexes(&LogFiles::open(dir.path()).unwrap().entries), vec![7]);
    }
}
