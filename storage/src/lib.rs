//! Strata's storage engine: partition logs of Kafka v2 record batches in segment files with mmapped
//! indexes, crash recovery, retention, and the manager that owns a data directory.
//!
//! # Layout
//!
//! - [`batch`]: the v2 record batch header, its validation (lengths, CRC-32C, and every record walked once,
//!   decompressed as it is read within a bound, against the topic's record rules: keys on compacted topics,
//!   the timestamp window), the codecs, and what the leader rewrites (base offset, partition leader epoch,
//!   the append time, and the codec when `compression.type` differs from the producer's).
//! - `index`: the sparse offset index (`.index`) and time index (`.timeindex`), mmapped.
//! - `segment`: one `.log` file with its two indexes; append, read, search by time, truncate, recover.
//! - [`log`]: the partition as one unit: an ordered run of segments with its producer state and leader-epoch
//!   cache; the leader's append (`append_as_leader`, one walk per batch) and the follower's, roll, read across
//!   segments, retention, flush policy, truncation, DeleteRecords, compaction (planned under the lock, built
//!   outside it, swapped in under it), and recovery on open.
//! - [`producer_state`]: idempotent producers' epochs and last sequences (Kafka's `ProducerStateManager`),
//!   how a batch is judged, and the `<offset>.snapshot` files.
//! - `handles`: one bound on open descriptors and index maps across all logs, so that 20,000 partitions
//!   stay far below `vm.max_map_count`.
//! - [`epochs`]: the leader-epoch cache (epoch -> first offset) and its `leader-epoch-checkpoint` file,
//!   which the log keeps in step with its batches for replication's truncation (OffsetsForLeaderEpoch).
//! - [`checkpoint`]: checkpoint files, replaced atomically and guarded by a CRC-32.
//! - [`disk`]: the small trait every write, length change and fsync of segment and checkpoint files goes
//!   through (redb's `StorageBackend` shape), so tests can cut the power under the engine.
//! - [`manager`]: the data directory: opens logs in parallel, writes checkpoints and the clean-shutdown
//!   marker, and runs retention, compaction and time-based flushes in the background, each without holding a
//!   log's lock through its slow part.
//! - [`config`]: per-log settings with Kafka's names, defaults and ranges: every Kafka 4 topic setting, those
//!   Strata has no feature for accepting only their default.
//!
//! # Errors
//!
//! Each kind of operation has its own error ([`AppendError`] with [`ProducerError`] for idempotent producers,
//! [`ReplicaAppendError`], [`ReadError`], [`Error`]) so the broker can map each variant to exactly one Kafka
//! error code. Nothing found on disk
//! panics: invalid bytes at the end of a log are cut during recovery and logged; I/O failures come back as
//! errors and leave the log reopenable.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod disk;
pub mod epochs;
mod error;
mod handles;
mod index;
pub mod log;
pub mod manager;
pub mod producer_state;
mod segment;

pub use config::LogConfig;
pub use epochs::EpochEntry;
pub use error::{AppendError, Error, ProducerError, ReadError, ReplicaAppendError};
pub use handles::{HANDLES_MAX_DEFAULT, HandleCache};
pub use log::{
    AppendInfo, BatchLocation, CompactedSegments, CompactionPlan, CompactionReport, DeletedFile, LeaderAppend, Log,
    OpenState, ReadLimits, ReadResult, RecoveryReport, RetentionReport, TimestampOffset,
};
pub use manager::{FlushObserver, LogManager, ManagerConfig, OpenReport, SharedLog, TopicPartition};
