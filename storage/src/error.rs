//! Errors, one enum per kind of operation.
//!
//! [`AppendError`] and [`ReadError`] are what produce and fetch see, so the broker can map each variant to one
//! Kafka error code (`CORRUPT_MESSAGE`, `MESSAGE_TOO_LARGE`, `OFFSET_OUT_OF_RANGE`, `KAFKA_STORAGE_ERROR`,
//! and through [`ProducerError`] `OUT_OF_ORDER_SEQUENCE_NUMBER`, `INVALID_PRODUCER_EPOCH`,
//! `UNKNOWN_PRODUCER_ID`).
//! [`ReplicaAppendError`] is what a follower's append of fetched batches sees: the same failures, plus
//! batches that do not continue the log (wrong offsets, an epoch that goes backwards).
//! [`Error`] covers the rest (open, roll, truncate, retention, checkpoints), which fail only on I/O or on an
//! argument outside the log.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::batch::BatchError;

/// An I/O failure, or a request outside the log, for operations other than append and read.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("offset {offset} is outside the log [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: u64,
        log_start_offset: u64,
        log_end_offset: u64,
    },
    #[error("log {} is offline after an earlier I/O error; reopen it to recover", path.display())]
    Offline { path: PathBuf },
    /// A leader append with an epoch below one the log already holds: only a stale leader does that, and
    /// storing it would leave epochs going backwards in the log.
    #[error("leader epoch {epoch} is below {latest_epoch}, the latest in log {}", path.display())]
    StaleLeaderEpoch {
        path: PathBuf,
        epoch: i32,
        latest_epoch: i32,
    },
}

/// Why an append appended nothing.
#[derive(Debug, Error)]
pub enum AppendError {
    #[error("no record batch in the appended bytes")]
    Empty,
    #[error("invalid record batch at byte {position} of the appended bytes: {source}")]
    InvalidBatch {
        position: usize,
        #[source]
        source: BatchError,
    },
    #[error("record batch of {size} bytes is larger than max.message.bytes ({max})")]
    TooLarge { size: usize, max: u64 },
    /// An idempotent producer's batch that is neither the next in its sequence nor a retry.
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error(transparent)]
    Storage(#[from] Error),
}

/// Why a leader refused an idempotent producer's batch; each variant is one Kafka error code (see
/// [`crate::producer_state`]).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProducerError {
    /// `INVALID_PRODUCER_EPOCH`: a producer fenced by a newer instance of itself.
    #[error("producer {producer_id} has epoch {epoch}, older than its current epoch {current_epoch}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current_epoch: i16,
    },
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER`: a gap or a repeat that is not one of the last batches.
    #[error("producer {producer_id} (epoch {epoch}) sent sequence {sequence} where {expected} comes next")]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        sequence: i32,
        expected: i32,
    },
    /// `UNKNOWN_PRODUCER_ID`: a producer this partition does not know (never seen, or forgotten) that does
    /// not start at sequence 0.
    #[error("producer {producer_id} is not known here and sent sequence {sequence}, not 0")]
    UnknownProducerId { producer_id: i64, sequence: i32 },
}

/// Why a follower's append of batches fetched from its leader appended nothing.
#[derive(Debug, Error)]
pub enum ReplicaAppendError {
    /// As for a leader append: no whole batch (`Empty`), an invalid batch, or an I/O failure. Never
    /// `TooLarge`: the leader accepted the batch, and `max.message.bytes` may have shrunk since (Kafka does
    /// not check it on followers either).
    #[error(transparent)]
    Append(#[from] AppendError),
    /// A batch does not start where the log continues: the first at the log end offset, each next one
    /// after the previous one's last offset. On a log whose `cleanup.policy` includes `compact`, a batch may
    /// start later than `expected` (compaction on the leader removed whole batches), never earlier, and
    /// never more than 2^31 offsets past the log end offset (a segment's index holds 32-bit relative offsets).
    ///
    /// A follower whose log is empty and whose first fetched batch straddles its log end offset (the
    /// leader's log start falls inside a batch, after DeleteRecords) restarts its log at the batch's base
    /// offset with [`crate::Log::truncate_fully_and_start_at`], as Kafka's follower does, and appends again.
    #[error("batch at byte {position} of the appended bytes starts at offset {base_offset}, not at {expected}")]
    OffsetMismatch {
        position: usize,
        expected: u64,
        base_offset: i64,
    },
    /// A batch carries a leader epoch below one the log already holds: the follower's log diverged from its
    /// leader's and must be truncated (OffsetsForLeaderEpoch) before it appends.
    #[error("batch at byte {position} carries leader epoch {epoch}, below {latest_epoch} already in the log")]
    EpochRegression {
        position: usize,
        epoch: i32,
        latest_epoch: i32,
    },
}

impl From<Error> for ReplicaAppendError {
    fn from(e: Error) -> Self {
        Self::Append(AppendError::Storage(e))
    }
}

/// Why a read returned nothing.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("offset {offset} is outside the log [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: u64,
        log_start_offset: u64,
        log_end_offset: u64,
    },
    #[error(transparent)]
    Storage(#[from] Error),
}

/// Attaches the operation and path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn context(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            op,
            path: path.into(),
            source,
        })
    }
}
