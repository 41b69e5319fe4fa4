//! openraft's state machine for the metadata quorum: committed batches replayed into the [`MetadataImage`],
//! and snapshots of that image.
//!
//! The image lives in memory only. What makes it durable is the snapshot file plus the log: on open the
//! state machine loads the snapshot, and openraft re-applies the log from there up to the saved committed
//! log id (see [`crate::log_store`]).
//!
//! ```text
//! <dir>/snapshot   crate::checked_file with magic "SRS1", body a prost `strata.raft.Snapshot`:
//!                  last applied log id, last membership, and the image as the records that rebuild it
//! ```
//!
//! A snapshot is written temp file, fsync, rename, fsync directory. openraft moves snapshots as the exact
//! bytes of that file (header and CRC-32 included), so a snapshot received from the leader is checked
//! end to end before it replaces anything, and is stored as it came.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::{Stream, TryStreamExt};
use openraft::OptionalSend;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use prost::Message;
use tokio::sync::watch;

use crate::checked_file::{self, CheckedFileError};
use crate::codec::{self, DecodeError};
use crate::delta::ReplayError;
use crate::image::MetadataImage;
use crate::log_store::blocking;
use crate::proto::metadata::MetadataBatch;
use crate::proto::raft as pb;
use crate::types::{Applied, Entry, EntryPayload, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

/// The magic of the snapshot file; the digit is its format version.
const SNAPSHOT_MAGIC: [u8; 4] = *b"SRS1";
const SNAPSHOT_FILE: &str = "snapshot";
/// Largest snapshot body. 100,000 partitions take about 5 MiB; this bounds what a damaged length, or a
/// leader, can make this node allocate.
pub const SNAPSHOT_BODY_BYTES_MAX: usize = 1 << 30;

/// How many applied batches [`Feed`] keeps for brokers following the metadata log. A broker further behind
/// is sent the whole image instead.
pub const FEED_BATCHES_MAX: usize = 4096;

/// What brokers follow (see `FetchMetadata` in `proto/controller_service.proto`): the image as of an applied
/// index, and the recent batches that led to it, so that a broker close behind gets only what it lacks.
#[derive(Debug, Clone, Default)]
pub struct Feed {
    /// The last applied metadata log index; 0 before any.
    pub applied_index: u64,
    pub image: MetadataImage,
    /// Every batch applied at an index in `(kept_after, applied_index]`, oldest first, with its index.
    /// Batches replay refused changed nothing and are left out.
    pub batches: Arc<VecDeque<(u64, Arc<MetadataBatch>)>>,
    pub kept_after: u64,
}

impl Feed {
    fn at(applied_index: u64, image: MetadataImage) -> Self {
        Self {
            applied_index,
            image,
            batches: Arc::default(),
            kept_after: applied_index,
        }
    }

    /// The batches after `after`, or `None` when some of them are no longer kept (send the image).
    pub fn batches_after(&self, after: u64) -> Option<impl Iterator<Item = &(u64, Arc<MetadataBatch>)>> {
        (after >= self.kept_after).then(|| self.batches.iter().filter(move |(index, _)| *index > after))
    }
}

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("damaged snapshot: {0}")]
    Damaged(#[from] CheckedFileError),
    #[error("undecodable snapshot: {0}")]
    Undecodable(#[from] DecodeError),
    #[error("snapshot records do not replay: {0}")]
    Replay(#[from] ReplayError),
    #[error("snapshot holds log id {found:?}, its metadata says {expected:?}")]
    Mismatch {
        expected: Option<LogId>,
        found: Option<LogId>,
    },
}

impl From<SnapshotError> for io::Error {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::Io { source, .. } => source,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// Everything a snapshot holds, decoded.
struct LoadedSnapshot {
    meta: SnapshotMeta,
    image: MetadataImage,
}

/// The snapshot file, shared by the state machine and the builders that openraft runs on their own tasks.
#[derive(Debug)]
struct SnapshotFile {
    path: PathBuf,
    /// Metadata of the snapshot on disk. The lock also orders replacements of the file.
    current: Mutex<Option<SnapshotMeta>>,
}

impl SnapshotFile {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SnapshotMeta>> {
        self.current
            .lock()
            .expect("no panics while the snapshot file is locked")
    }

    /// Replaces the file with `bytes` (a whole snapshot file) unless it already holds a later snapshot: a
    /// builder that started before a snapshot from the leader was installed must not undo it.
    fn replace_unless_older(&self, meta: &SnapshotMeta, bytes: &[u8]) -> io::Result<()> {
        let mut current = self.lock();
        if current
            .as_ref()
            .is_some_and(|current| current.last_log_id > meta.last_log_id)
        {
            return Ok(());
        }
        checked_file::replace(&self.path, bytes)?;
        *current = Some(meta.clone());
        Ok(())
    }

    /// Replaces the file with `bytes`, whatever it held.
    fn replace(&self, meta: &SnapshotMeta, bytes: &[u8]) -> io::Result<()> {
        let mut current = self.lock();
        checked_file::replace(&self.path, bytes)?;
        *current = Some(meta.clone());
        Ok(())
    }

    /// The snapshot on disk, with its metadata.
    fn read(&self) -> io::Result<Option<Snapshot>> {
        let current = self.lock();
        let Some(meta) = current.as_ref() else { return Ok(None) };
        let bytes = std::fs::read(&self.path)?;
        Ok(Some(Snapshot {
            meta: meta.clone(),
            snapshot: bytes,
        }))
    }
}

/// The metadata state machine: openraft's [`RaftStateMachine`].
#[derive(Debug)]
pub struct StateMachine {
    image: MetadataImage,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshot: Arc<SnapshotFile>,
    /// Every new image, for whoever follows the metadata.
    published: watch::Sender<MetadataImage>,
    /// The same, with the index and recent batches, for brokers following over the network.
    feed: watch::Sender<Feed>,
}

/// Builds a snapshot of the image as of one applied log id, on openraft's snapshot task.
#[derive(Debug)]
pub struct SnapshotBuilder {
    image: MetadataImage,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    snapshot: Arc<SnapshotFile>,
}

impl StateMachine {
    /// Opens the state machine of the metadata log in `dir` (creating it if needed), loading its snapshot.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SnapshotError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| SnapshotError::Io {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(SNAPSHOT_FILE);
        let loaded = read_snapshot_file(&path)?;
        let (image, meta) = match loaded {
            Some(LoadedSnapshot { meta, image }) => (image, Some(meta)),
            None => (MetadataImage::empty(), None),
        };
        if let Some(meta) = &meta {
            tracing::info!(path = %path.display(), snapshot = %meta, "metadata snapshot loaded");
        }
        let last_applied = meta.as_ref().and_then(|meta| meta.last_log_id);
        Ok(Self {
            feed: watch::Sender::new(Feed::at(last_applied.map_or(0, |id| id.index), image.clone())),
            last_applied,
            last_membership: meta
                .as_ref()
                .map(|meta| meta.last_membership.clone())
                .unwrap_or_default(),
            published: watch::Sender::new(image.clone()),
            image,
            snapshot: Arc::new(SnapshotFile {
                path,
                current: Mutex::new(meta),
            }),
        })
    }

    /// The image after the last applied entry.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    pub fn last_applied(&self) -> Option<LogId> {
        self.last_applied
    }

    /// A receiver that sees each new image (once per applied run of entries, and on snapshot install).
    pub fn subscribe(&self) -> watch::Receiver<MetadataImage> {
        self.published.subscribe()
    }

    /// A receiver of the [`Feed`] after each applied run of entries and on snapshot install.
    pub fn feed(&self) -> watch::Receiver<Feed> {
        self.feed.subscribe()
    }

    /// Applies one committed entry and says how it went; a batch replay accepted is added to `applied`.
    fn apply_entry(&mut self, entry: Entry, applied: &mut Vec<(u64, Arc<MetadataBatch>)>) -> Applied {
        let log_index = entry.log_id.index;
        self.last_applied = Some(entry.log_id);
        let outcome = match entry.payload {
            EntryPayload::Blank => Ok(()),
            EntryPayload::Normal(batch) => self.image.replay_batch(&batch).map(|image| {
                self.image = image;
                applied.push((log_index, Arc::new(batch)));
            }),
            EntryPayload::Membership(membership) => {
                self.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                Ok(())
            }
        };
        if let Err(error) = &outcome {
            // Every node refuses the same batch, so the images agree; but the controller logic wrote it.
            tracing::error!(log_index, %error, "metadata batch refused by replay; nothing of it applied");
        }
        Applied { log_index, outcome }
    }
}

impl StateMachine {
    fn applied_index(&self) -> u64 {
        self.last_applied.map_or(0, |id| id.index)
    }

    /// Publishes the image, and the feed with `applied` added (keeping at most [`FEED_BATCHES_MAX`]).
    fn publish(&mut self, applied: Vec<(u64, Arc<MetadataBatch>)>) {
        self.published.send_replace(self.image.clone());
        let applied_index = self.applied_index();
        let image = self.image.clone();
        self.feed.send_modify(|feed| {
            let batches = Arc::make_mut(&mut feed.batches);
            batches.extend(applied);
            while batches.len() > FEED_BATCHES_MAX {
                if let Some((index, _)) = batches.pop_front() {
                    feed.kept_after = index;
                }
            }
            feed.applied_index = applied_index;
            feed.image = image;
        });
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        let mut answers = Vec::new();
        let mut batches = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            let applied = self.apply_entry(entry, &mut batches);
            if let Some(responder) = responder {
                answers.push((responder, applied));
            }
        }
        self.publish(batches);
        // Answered only once the new image is published: a proposer that reads it next sees its change.
        for (responder, applied) in answers {
            responder.send(applied);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            image: self.image.clone(),
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot: Arc::clone(&self.snapshot),
        }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Vec<u8>) -> io::Result<()> {
        let loaded = decode_snapshot(&snapshot)?;
        if loaded.meta.last_log_id != meta.last_log_id {
            let mismatch = SnapshotError::Mismatch {
                expected: meta.last_log_id,
                found: loaded.meta.last_log_id,
            };
            return Err(mismatch.into());
        }
        let file = Arc::clone(&self.snapshot);
        let stored_meta = meta.clone();
        blocking(move || file.replace(&stored_meta, &snapshot)).await?;
        tracing::info!(snapshot = %meta, "metadata snapshot installed");
        self.image = loaded.image;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.published.send_replace(self.image.clone());
        self.feed
            .send_replace(Feed::at(self.applied_index(), self.image.clone()));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let file = Arc::clone(&self.snapshot);
        blocking(move || file.read()).await
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
        };
        let image = self.image.clone();
        let file = Arc::clone(&self.snapshot);
        let stored_meta = meta.clone();
        // Encoding a large image takes a while too: all of it off the async workers.
        let bytes = blocking(move || {
            let bytes = encode_snapshot(&stored_meta, &image);
            file.replace_unless_older(&stored_meta, &bytes).map(|()| bytes)
        })
        .await?;
        tracing::info!(snapshot = %meta, bytes = bytes.len(), "metadata snapshot written");
        Ok(Snapshot { meta, snapshot: bytes })
    }
}

/// The bytes of a snapshot file for `image` as of `meta`.
fn encode_snapshot(meta: &SnapshotMeta, image: &MetadataImage) -> Vec<u8> {
    let body = pb::Snapshot {
        last_log_id: meta.last_log_id.as_ref().map(codec::log_id_to_pb),
        last_membership: Some(codec::stored_membership_to_pb(&meta.last_membership)),
        records: image.to_records(),
    };
    checked_file::frame(SNAPSHOT_MAGIC, &body.encode_to_vec())
}

/// A snapshot from the bytes of a snapshot file, checked and replayed.
fn decode_snapshot(bytes: &[u8]) -> Result<LoadedSnapshot, SnapshotError> {
    let body = checked_file::unframe(SNAPSHOT_MAGIC, bytes, SNAPSHOT_BODY_BYTES_MAX)?;
    let snapshot = pb::Snapshot::decode(body).map_err(DecodeError::from)?;
    let membership = snapshot
        .last_membership
        .as_ref()
        .ok_or(DecodeError::Missing("Snapshot.last_membership"))?;
    let meta = SnapshotMeta {
        last_log_id: snapshot.last_log_id.as_ref().map(codec::log_id_from_pb),
        last_membership: codec::stored_membership_from_pb(membership)?,
    };
    let image = MetadataImage::from_records(&snapshot.records)?;
    Ok(LoadedSnapshot { meta, image })
}

/// The snapshot in the file at `path`, if there is one.
fn read_snapshot_file(path: &Path) -> Result<Option<LoadedSnapshot>, SnapshotError> {
    let bytes = checked_file::read(path).map_err(|source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    })?;
    bytes.map(|bytes| decode_snapshot(&bytes)).transpose()
}
