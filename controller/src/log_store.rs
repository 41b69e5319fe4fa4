//! openraft's log storage for the metadata quorum: entries, vote, committed and purged log ids, durable in
//! one directory (`<data_dir>/__cluster_metadata-0/`).
//!
//! ```text
//! <dir>/
//!   00000000000000000000.log   entries (crate::log_files: frames with a CRC-32 each)
//!   state                      vote, committed log id, purged log id (crate::checked_file, magic "SRL1")
//! ```
//!
//! Every entry that is on disk is also held in memory until it is purged, so reads never touch the disk.
//! The metadata log stays small: openraft purges it behind each snapshot of the state machine.
//!
//! Durability: an append is written and fsynced before openraft's flush callback is called; the vote and
//! the committed log id are fsynced (temp file, fsync, rename) before `save_vote` / `save_committed` return;
//! a purge records the purged log id durably before deleting segment files, so a crash between the two leaves
//! extra entries that reopening ignores, never a gap.
//!
//! File I/O runs on tokio's blocking pool (`blocking`), not on the async workers, so an fsync does not
//! stall other tasks (heartbeats among them). Only the [`LogStore`] writes; it is owned by openraft's core,
//! which calls it one operation at a time. [`LogReader`]s (replication tasks) read the in-memory copy
//! concurrently.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use prost::Message;

use crate::checked_file::{self, CheckedFileError};
use crate::codec::{self, DecodeError};
use crate::log_files::LogFiles;
use crate::proto::raft as pb;
use crate::types::{Entry, LogId, LogState, TypeConfig, Vote};

/// The magic of the `state` file; the digit is its format version.
const STATE_MAGIC: [u8; 4] = *b"SRL1";
const STATE_FILE: &str = "state";
/// The state file holds three log ids; anything larger is corrupt.
const STATE_BODY_BYTES_MAX: usize = 4 << 10;

/// Why a metadata log directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Damaged { path: PathBuf, source: CheckedFileError },
    #[error("{path}: {source}")]
    Undecodable { path: PathBuf, source: DecodeError },
}

/// The small state kept beside the entries.
#[derive(Debug, Clone, Default, PartialEq)]
struct DurableState {
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

/// What readers see: the durable state and every unpurged entry.
#[derive(Debug, Default)]
struct Memory {
    state: DurableState,
    entries: BTreeMap<u64, Entry>,
}

/// The metadata log: openraft's [`RaftLogStorage`].
#[derive(Debug)]
pub struct LogStore {
    dir: PathBuf,
    /// Shared with readers. A std lock: it is held only to copy in or out, never across an await or I/O.
    memory: Arc<RwLock<Memory>>,
    /// Behind a mutex only so that blocking-pool closures can own a handle; this store is its only user.
    files: Arc<Mutex<LogFiles>>,
}

/// A read handle for openraft's replication tasks.
#[derive(Debug, Clone)]
pub struct LogReader {
    memory: Arc<RwLock<Memory>>,
}

impl LogStore {
    /// Opens (creating it if needed) the metadata log in `dir`, cutting a torn tail.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, OpenError> {
        let dir = dir.into();
        let io_error = |source| OpenError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io_error)?;
        let state = read_state(&dir.join(STATE_FILE))?;
        let recovered = LogFiles::open(&dir).map_err(io_error)?;
        if recovered.cut_bytes > 0 {
            tracing::warn!(dir = %dir.display(), cut_bytes = recovered.cut_bytes, "metadata log tail cut on open");
        }
        let purged_index = state.purged.map(|purged| purged.index);
        let entries = recovered
            .entries
            .into_iter()
            .filter(|entry| purged_index.is_none_or(|purged| entry.log_id.index > purged))
            .map(|entry| (entry.log_id.index, entry))
            .collect::<BTreeMap<_, _>>();
        tracing::info!(dir = %dir.display(), entries = entries.len(), "metadata log opened");
        Ok(Self {
            dir,
            memory: Arc::new(RwLock::new(Memory { state, entries })),
            files: Arc::new(Mutex::new(recovered.files)),
        })
    }

    fn memory(&self) -> RwLockReadGuard<'_, Memory> {
        read_memory(&self.memory)
    }

    fn memory_mut(&self) -> RwLockWriteGuard<'_, Memory> {
        self.memory.write().expect(LOCK_HOLDERS_DO_NOT_PANIC)
    }

    /// Writes `state` durably, then makes it visible.
    async fn save_state(&mut self, state: DurableState) -> io::Result<()> {
        let path = self.dir.join(STATE_FILE);
        let bytes = checked_file::frame(STATE_MAGIC, &state_to_pb(&state).encode_to_vec());
        blocking(move || checked_file::replace(&path, &bytes)).await?;
        self.memory_mut().state = state;
        Ok(())
    }

    /// Runs `op` on the segment files on the blocking pool.
    async fn with_files<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut LogFiles) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let files = Arc::clone(&self.files);
        blocking(move || op(&mut files.lock().expect("no panics while the segment files are locked"))).await
    }

    /// Appends `entries`, durably. They must follow the last log id (an entry, or the purged id); an empty
    /// log may start anywhere.
    async fn append_durably(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        let Some(first) = entries.first() else { return Ok(()) };
        if let Some(last) = last_log_id(&self.memory())
            && first.log_id.index != last.index + 1
        {
            let message = format!("append at index {} after {}: a hole", first.log_id.index, last.index);
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        let written = entries.clone();
        self.with_files(move |files| files.append(&written)).await?;
        let mut memory = self.memory_mut();
        memory
            .entries
            .extend(entries.into_iter().map(|entry| (entry.log_id.index, entry)));
        Ok(())
    }
}

impl Memory {
    /// Copies of the entries in `range` (openraft takes entries by value).
    fn entries_in(&self, range: impl RangeBounds<u64>) -> Vec<Entry> {
        self.entries.range(range).map(|(_, entry)| entry.clone()).collect()
    }
}

/// Nothing panics while holding the lock (copies and map edits only), so a poisoned lock is a bug.
const LOCK_HOLDERS_DO_NOT_PANIC: &str = "no panics while the metadata log lock is held";

fn read_memory(memory: &RwLock<Memory>) -> RwLockReadGuard<'_, Memory> {
    memory.read().expect(LOCK_HOLDERS_DO_NOT_PANIC)
}

/// The last log id in `memory`: the last entry's, or the purged one's when every entry is purged.
fn last_log_id(memory: &Memory) -> Option<LogId> {
    memory
        .entries
        .values()
        .next_back()
        .map(|entry| entry.log_id)
        .or(memory.state.purged)
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        Ok(read_memory(&self.memory).entries_in(range))
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(read_memory(&self.memory).state.vote)
    }
}

/// The store reads what its readers read.
impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        Ok(self.memory().entries_in(range))
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(self.memory().state.vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> io::Result<LogState> {
        let memory = self.memory();
        Ok(LogState {
            last_purged_log_id: memory.state.purged,
            last_log_id: last_log_id(&memory),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            memory: Arc::clone(&self.memory),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let state = DurableState {
            vote: Some(*vote),
            ..self.memory().state.clone()
        };
        self.save_state(state).await
    }

    /// Saved so that a restarted controller re-applies its log up to here before serving, instead of
    /// showing an image older than the one it had.
    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        let state = DurableState {
            committed,
            ..self.memory().state.clone()
        };
        self.save_state(state).await
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.memory().state.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        match self.append_durably(entries.into_iter().collect()).await {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let last_kept = last_log_id.map(|log_id| log_id.index);
        self.with_files(move |files| files.truncate_after(last_kept)).await?;
        let first_removed = last_kept.map_or(0, |index| index + 1);
        self.memory_mut().entries.split_off(&first_removed);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        // The purged id first: once it is durable, the entries up to it are gone whatever happens next.
        let state = DurableState {
            purged: Some(log_id),
            ..self.memory().state.clone()
        };
        self.save_state(state).await?;
        {
            let mut memory = self.memory_mut();
            memory.entries = memory.entries.split_off(&(log_id.index + 1));
        }
        self.with_files(move |files| files.purge(log_id.index)).await
    }
}

/// Runs blocking file I/O (writes, fsyncs, reads) on tokio's blocking pool (see
/// [`strata_protocol::blocking`]), so that a slow disk stalls only the storage operation waiting for it,
/// never the async workers that send heartbeats and answer RPCs.
///
/// tokio's pool, not openraft's `AsyncRuntime::spawn_blocking`: openraft's tokio runtime does not override
/// that method, whose default starts a new OS thread for every call (every append, every vote).
pub(crate) async fn blocking<T: Send + 'static>(op: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    match strata_protocol::blocking::run(op).await {
        Ok(result) => result,
        Err(e) => Err(io::Error::other(format!("metadata file operation: {e}"))),
    }
}

fn state_to_pb(state: &DurableState) -> pb::LogState {
    pb::LogState {
        vote: state.vote.as_ref().map(codec::vote_to_pb),
        committed: state.committed.as_ref().map(codec::log_id_to_pb),
        purged: state.purged.as_ref().map(codec::log_id_to_pb),
    }
}

/// The state file at `path`; the default state if there is none yet. A damaged file is an error: it may hold
/// a vote (see [`crate::checked_file`]).
fn read_state(path: &Path) -> Result<DurableState, OpenError> {
    let bytes = checked_file::read(path).map_err(|source| OpenError::Io {
        path: path.to_owned(),
        source,
    })?;
    let Some(bytes) = bytes else {
        return Ok(DurableState::default());
    };
    let body =
        checked_file::unframe(STATE_MAGIC, &bytes, STATE_BODY_BYTES_MAX).map_err(|source| OpenError::Damaged {
            path: path.to_owned(),
            source,
        })?;
    let state = pb::LogState::decode(body).map_err(|e| OpenError::Undecodable {
        path: path.to_owned(),
        source: DecodeError::from(e),
    })?;
    Ok(DurableState {
        vote: state.vote.as_ref().map(codec::vote_from_pb),
        committed: state.committed.as_ref().map(codec::log_id_from_pb),
        purged: state.purged.as_ref().map(codec::log_id_from_pb),
    })
}
