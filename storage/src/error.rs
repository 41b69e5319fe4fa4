//! Errors, one enum per kind of operation.
//!
//! [`AppendError`] and [`ReadError`] are what produce and fetch see, so the broker can map each variant to one
//! Kafka error code (`CORRUPT_MESSAGE`, `MESSAGE_TOO_LARGE`, `OFFSET_OUT_OF_RANGE`, `KAFKA_STORAGE_ERROR`).
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
    #[error(transparent)]
    Storage(#[from] Error),
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
