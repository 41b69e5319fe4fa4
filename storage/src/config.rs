//! Per-log settings, named, defaulted and bounded as Kafka 4 names, defaults and bounds them.
//!
//! The broker builds a [`LogConfig`] from its own defaults and each topic's overrides and hands it to the
//! log; [`crate::Log::set_config`] applies a change live. Parsing from `key=value` strings lives here too so
//! that the broker, the CLI and tests agree on names, units and ranges.
//!
//! Every one of Kafka's topic settings is known here ([`LOG_CONFIG_KEYS`], with the broker's two,
//! `min.insync.replicas` and `unclean.leader.election.enable`, the whole list). Those Strata has no feature
//! for (tiered storage, replication throttles, preallocation) accept only their Kafka default, so that a
//! tool that sends the defaults explicitly works, and refuse anything else with the reason
//! ([`ConfigError::Unsupported`]) rather than accept a setting that would do nothing.

use std::time::Duration;

use thiserror::Error;

use crate::batch::Compression;

/// Kafka's default `log.cleaner.dedupe.buffer.size`: 128 MiB.
pub const DEDUPE_BUFFER_BYTES_DEFAULT: u64 = 128 * 1024 * 1024;

/// `compression.type`: the codec a topic stores its batches with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// Whatever the producer used (Kafka's default): batches are stored as sent.
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    const NAMES: &'static str = "uncompressed, zstd, lz4, snappy, gzip, producer";

    pub fn name(self) -> &'static str {
        match self {
            Self::Producer => "producer",
            Self::Uncompressed => "uncompressed",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    /// Kafka's names, case-sensitive as Kafka's validator is.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "producer" => Self::Producer,
            "uncompressed" => Self::Uncompressed,
            "gzip" => Self::Gzip,
            "snappy" => Self::Snappy,
            "lz4" => Self::Lz4,
            "zstd" => Self::Zstd,
            _ => return None,
        })
    }

    /// The codec a batch sent with `source` is stored with.
    pub fn target(self, source: Compression) -> Compression {
        match self {
            Self::Producer => source,
            Self::Uncompressed => Compression::None,
            Self::Gzip => Compression::Gzip,
            Self::Snappy => Compression::Snappy,
            Self::Lz4 => Compression::Lz4,
            Self::Zstd => Compression::Zstd,
        }
    }
}

/// `message.timestamp.type`: whose clock a record's timestamp is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's (Kafka's default), checked against `message.timestamp.before/after.max.ms`.
    CreateTime,
    /// The leader's, at append: every batch is stamped with it.
    LogAppendTime,
}

impl TimestampType {
    pub fn name(self) -> &'static str {
        match self {
            Self::CreateTime => "CreateTime",
            Self::LogAppendTime => "LogAppendTime",
        }
    }
}

/// `min.cleanable.dirty.ratio`: a fraction in [0, 1]. Its own type so that [`LogConfig`] stays `Eq`: a
/// validated ratio is never NaN, so comparing the bits is equality.
#[derive(Debug, Clone, Copy)]
pub struct DirtyRatio(f64);

impl DirtyRatio {
    pub fn new(ratio: f64) -> Option<Self> {
        (0.0..=1.0).contains(&ratio).then_some(Self(ratio))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for DirtyRatio {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for DirtyRatio {}

/// KIP-390's compression levels, with Kafka's bounds and defaults.
pub const GZIP_LEVEL_DEFAULT: i32 = -1;
pub const LZ4_LEVEL_DEFAULT: i32 = 9;
pub const LZ4_LEVELS: std::ops::RangeInclusive<i32> = 1..=17;
pub const ZSTD_LEVEL_DEFAULT: i32 = 3;
/// zstd's own bounds (`ZSTD_minCLevel()` is -(1 << 17)), which Kafka takes from the library.
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = -131_072..=22;

/// Settings of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment when an append would take it past this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first batch is older than this.
    pub segment_ms: u64,
    /// `segment.jitter.ms`: each new segment rolls up to this much (at most `segment.ms`) earlier, chosen at
    /// random when it is created, so that many partitions created together do not all roll at once.
    pub segment_jitter_ms: u64,
    /// `segment.index.bytes`: the preallocated size of each active index; a full index rolls the segment.
    pub segment_index_bytes: u64,
    /// `index.interval.bytes`: bytes of log between two offset index entries.
    pub index_interval_bytes: u64,
    /// `retention.ms`: closed segments whose newest record is older than this are deleted. `None` keeps all.
    pub retention_ms: Option<u64>,
    /// `retention.bytes`: the oldest closed segments are deleted while the log is larger. `None` keeps all.
    pub retention_bytes: Option<u64>,
    /// `flush.messages`: fsync after this many records. `None` leaves flushing to the OS (Kafka's default).
    pub flush_messages: Option<u64>,
    /// `flush.ms`: fsync when unflushed data is older than this. `None` leaves flushing to the OS.
    pub flush_ms: Option<u64>,
    /// `max.message.bytes`: the largest batch the log accepts.
    pub max_message_bytes: u64,
    /// `cleanup.policy` contains `delete`: retention removes old segments.
    pub cleanup_delete: bool,
    /// `cleanup.policy` contains `compact`: closed segments keep only the newest record of each key, and
    /// records without a key are refused.
    pub cleanup_compact: bool,
    /// `delete.retention.ms`: how long compaction keeps a tombstone (a record with a null value).
    pub delete_retention_ms: u64,
    /// `min.cleanable.dirty.ratio`: compaction waits until the part of the log not compacted yet is more
    /// than this share of it (unless `max.compaction.lag.ms` says it must not wait).
    pub min_cleanable_dirty_ratio: DirtyRatio,
    /// `min.compaction.lag.ms`: a segment holding a record younger than this is not compacted yet.
    pub min_compaction_lag_ms: u64,
    /// `max.compaction.lag.ms`: a record not compacted this long after it was written makes compaction run
    /// whatever the dirty ratio (and rolls the active segment, so that it can be compacted).
    pub max_compaction_lag_ms: u64,
    /// `file.delete.delay.ms`: the files of a deleted or replaced segment keep their space this long.
    pub file_delete_delay_ms: u64,
    /// `compression.type`: the codec batches are stored with; a batch sent with another one is
    /// recompressed by the leader.
    pub compression_type: CompressionType,
    /// `compression.gzip.level`: 1-9, or -1 for zlib's default (6).
    pub compression_gzip_level: i32,
    /// `compression.lz4.level`: 1-17. Accepted and shown as Kafka does; Strata's lz4 encoder has one level.
    pub compression_lz4_level: i32,
    /// `compression.zstd.level`: -131072 to 22.
    pub compression_zstd_level: i32,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: a CreateTime record older than this (by the leader's clock) is
    /// refused with INVALID_TIMESTAMP.
    pub message_timestamp_before_max_ms: u64,
    /// `message.timestamp.after.max.ms`: a CreateTime record further in the future than this is refused.
    pub message_timestamp_after_max_ms: u64,
    /// The broker's `log.cleaner.dedupe.buffer.size` (not a topic setting): the most memory compaction's map
    /// of keys to their newest offsets may take for one log. A log whose dirty part holds more keys is
    /// compacted a part at a time, as Kafka's cleaner does.
    pub dedupe_buffer_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            segment_jitter_ms: 0,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_ms: Some(7 * 24 * 60 * 60 * 1000),
            retention_bytes: None,
            flush_messages: None,
            flush_ms: None,
            max_message_bytes: 1024 * 1024 + 12,
            cleanup_delete: true,
            cleanup_compact: false,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_cleanable_dirty_ratio: DirtyRatio(0.5),
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX as u64,
            file_delete_delay_ms: 60_000,
            compression_type: CompressionType::Producer,
            compression_gzip_level: GZIP_LEVEL_DEFAULT,
            compression_lz4_level: LZ4_LEVEL_DEFAULT,
            compression_zstd_level: ZSTD_LEVEL_DEFAULT,
            message_timestamp_type: TimestampType::CreateTime,
            message_timestamp_before_max_ms: i64::MAX as u64,
            message_timestamp_after_max_ms: 3_600_000,
            dedupe_buffer_bytes: DEDUPE_BUFFER_BYTES_DEFAULT,
        }
    }
}

/// A setting that could not be applied.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown log setting `{0}`")]
    Unknown(String),
    #[error("`{key}` must be an integer, got `{value}`")]
    NotAnInteger { key: String, value: String },
    #[error("`{key}` must be a number, got `{value}`")]
    NotANumber { key: String, value: String },
    #[error("`{key}` must be true or false, got `{value}`")]
    NotABoolean { key: String, value: String },
    #[error("`cleanup.policy` = `{value}` is not `delete`, `compact` or `compact,delete`")]
    NotAPolicy { value: String },
    #[error("`{key}` = `{value}` is not one of {allowed}")]
    NotOneOf {
        key: String,
        value: String,
        allowed: &'static str,
    },
    #[error("`{key}` = {value} is out of range ({range})")]
    OutOfRange {
        key: String,
        value: String,
        range: &'static str,
    },
    /// A Kafka setting whose only value Strata can honour is its default.
    #[error("`{key}` = `{value}` is not supported: {reason}")]
    Unsupported {
        key: String,
        value: String,
        reason: &'static str,
    },
    /// Two settings that are each in range but contradict each other.
    #[error("{0}")]
    Conflict(String),
}

/// The names [`LogConfig::set`] accepts, in Kafka's spelling: every Kafka 4 topic setting but the two the
/// broker keeps (`min.insync.replicas`, `unclean.leader.election.enable`).
pub const LOG_CONFIG_KEYS: &[&str] = &[
    "segment.bytes",
    "segment.ms",
    "segment.index.bytes",
    "index.interval.bytes",
    "retention.ms",
    "retention.bytes",
    "flush.messages",
    "flush.ms",
    "max.message.bytes",
    "cleanup.policy",
    "delete.retention.ms",
    "compression.type",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "message.timestamp.type",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
    "file.delete.delay.ms",
    "segment.jitter.ms",
    "preallocate",
    "local.retention.ms",
    "local.retention.bytes",
    "remote.storage.enable",
    "remote.log.copy.disable",
    "remote.log.delete.on.disable",
    "leader.replication.throttled.replicas",
    "follower.replication.throttled.replicas",
];

/// The smallest `segment.bytes` Kafka allows: a segment must hold at least a batch header and then some.
const SEGMENT_BYTES_MIN: i64 = 14;
/// Relative positions in the offset index are `u32`, so a segment cannot outgrow them.
const SEGMENT_BYTES_MAX: i64 = i32::MAX as i64;
/// An index must hold at least one entry of either kind.
const SEGMENT_INDEX_BYTES_MIN: i64 = 12;
/// `max.message.bytes` and the other settings Kafka types as `int`.
const INT_MAX: i64 = i32::MAX as i64;

const TIERED_STORAGE: &str = "tiered storage is not supported";
const THROTTLES: &str = "replication throttles are not supported (leave it empty)";
const PREALLOCATE: &str = "Strata does not preallocate segment files";
/// `local.retention.*`: -2 means "the same as `retention.*`", the only meaning without tiered storage.
const FOLLOW_RETENTION: i64 = -2;

impl LogConfig {
    /// Applies one `key=value` setting with Kafka's name, units and range. `-1` means "unlimited" for
    /// `retention.ms`, `retention.bytes`; Kafka's `Long.MAX_VALUE` default for the flush settings maps to
    /// "leave it to the OS". Does not check settings against each other: see [`Self::check`].
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let trimmed = value.trim();
        match key {
            "cleanup.policy" => return self.set_cleanup_policy(value),
            "compression.type" => {
                self.compression_type = CompressionType::parse(trimmed).ok_or_else(|| ConfigError::NotOneOf {
                    key: key.to_owned(),
                    value: value.to_owned(),
                    allowed: CompressionType::NAMES,
                })?;
                return Ok(());
            }
            "message.timestamp.type" => {
                self.message_timestamp_type = match trimmed {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => {
                        return Err(ConfigError::NotOneOf {
                            key: key.to_owned(),
                            value: value.to_owned(),
                            allowed: "CreateTime, LogAppendTime",
                        });
                    }
                };
                return Ok(());
            }
            "min.cleanable.dirty.ratio" => {
                let ratio: f64 = trimmed.parse().map_err(|_| ConfigError::NotANumber {
                    key: key.to_owned(),
                    value: value.to_owned(),
                })?;
                self.min_cleanable_dirty_ratio = DirtyRatio::new(ratio).ok_or_else(|| ConfigError::OutOfRange {
                    key: key.to_owned(),
                    value: value.to_owned(),
                    range: "0.0..=1.0",
                })?;
                return Ok(());
            }
            "preallocate" | "remote.storage.enable" | "remote.log.copy.disable" | "remote.log.delete.on.disable" => {
                // Kafka parses booleans without regard to case.
                let enabled = match trimmed.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ConfigError::NotABoolean {
                            key: key.to_owned(),
                            value: value.to_owned(),
                        });
                    }
                };
                return match enabled {
                    false => Ok(()),
                    true => Err(ConfigError::Unsupported {
                        key: key.to_owned(),
                        value: value.to_owned(),
                        reason: if key == "preallocate" {
                            PREALLOCATE
                        } else {
                            TIERED_STORAGE
                        },
                    }),
                };
            }
            "leader.replication.throttled.replicas" | "follower.replication.throttled.replicas" => {
                return check_throttled_replicas(key, value);
            }
            _ => {}
        }
        let parsed: i64 = trimmed.parse().map_err(|_| ConfigError::NotAnInteger {
            key: key.to_owned(),
            value: value.to_owned(),
        })?;
        let out_of_range = |range| ConfigError::OutOfRange {
            key: key.to_owned(),
            value: parsed.to_string(),
            range,
        };
        let between = |min: i64, max: i64, range| {
            if (min..=max).contains(&parsed) {
                Ok(parsed)
            } else {
                Err(out_of_range(range))
            }
        };
        let at_least = |min: i64, range| between(min, i64::MAX, range).map(|v| v as u64);
        let unlimited_if_negative_one = |range| match parsed {
            -1 => Ok(None),
            v if v >= 0 => Ok(Some(v as u64)),
            _ => Err(out_of_range(range)),
        };
        let os_if_max = |range| match parsed {
            i64::MAX => Ok(None),
            v if v >= 1 => Ok(Some(v as u64)),
            _ => Err(out_of_range(range)),
        };
        match key {
            "segment.bytes" => {
                self.segment_bytes = between(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX, "14..=2147483647")? as u64
            }
            "segment.ms" => self.segment_ms = at_least(1, ">= 1")?,
            "segment.jitter.ms" => self.segment_jitter_ms = at_least(0, ">= 0")?,
            "segment.index.bytes" => {
                self.segment_index_bytes =
                    between(SEGMENT_INDEX_BYTES_MIN, SEGMENT_BYTES_MAX, "12..=2147483647")? as u64
            }
            "index.interval.bytes" => self.index_interval_bytes = between(0, INT_MAX, "0..=2147483647")? as u64,
            "retention.ms" => self.retention_ms = unlimited_if_negative_one(">= -1")?,
            "retention.bytes" => self.retention_bytes = unlimited_if_negative_one(">= -1")?,
            "flush.messages" => self.flush_messages = os_if_max(">= 1")?,
            "flush.ms" => self.flush_ms = os_if_max(">= 1")?,
            "max.message.bytes" => self.max_message_bytes = between(0, INT_MAX, "0..=2147483647")? as u64,
            "delete.retention.ms" => self.delete_retention_ms = at_least(0, ">= 0")?,
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = at_least(0, ">= 0")?,
            "max.compaction.lag.ms" => self.max_compaction_lag_ms = at_least(1, ">= 1")?,
            "file.delete.delay.ms" => self.file_delete_delay_ms = at_least(0, ">= 0")?,
            "message.timestamp.before.max.ms" => self.message_timestamp_before_max_ms = at_least(0, ">= 0")?,
            "message.timestamp.after.max.ms" => self.message_timestamp_after_max_ms = at_least(0, ">= 0")?,
            "compression.gzip.level" => {
                if parsed != i64::from(GZIP_LEVEL_DEFAULT) {
                    between(1, 9, "1..=9, or -1")?;
                }
                self.compression_gzip_level = parsed as i32;
            }
            "compression.lz4.level" => {
                let (min, max) = (*LZ4_LEVELS.start(), *LZ4_LEVELS.end());
                self.compression_lz4_level = between(i64::from(min), i64::from(max), "1..=17")? as i32;
            }
            "compression.zstd.level" => {
                let (min, max) = (*ZSTD_LEVELS.start(), *ZSTD_LEVELS.end());
                self.compression_zstd_level = between(i64::from(min), i64::from(max), "-131072..=22")? as i32;
            }
            "local.retention.ms" | "local.retention.bytes" => {
                between(FOLLOW_RETENTION, i64::MAX, ">= -2")?;
                if parsed != FOLLOW_RETENTION {
                    return Err(ConfigError::Unsupported {
                        key: key.to_owned(),
                        value: value.to_owned(),
                        reason: "tiered storage is not supported; only -2 (follow retention) is accepted",
                    });
                }
            }
            _ => return Err(ConfigError::Unknown(key.to_owned())),
        }
        Ok(())
    }

    fn set_cleanup_policy(&mut self, value: &str) -> Result<(), ConfigError> {
        // A list: `delete`, `compact`, or both.
        let (mut delete, mut compact) = (false, false);
        for policy in value.split(',').map(str::trim) {
            match policy {
                "delete" => delete = true,
                "compact" => compact = true,
                _ => {
                    return Err(ConfigError::NotAPolicy {
                        value: value.to_owned(),
                    });
                }
            }
        }
        if !delete && !compact {
            return Err(ConfigError::NotAPolicy {
                value: value.to_owned(),
            });
        }
        (self.cleanup_delete, self.cleanup_compact) = (delete, compact);
        Ok(())
    }

    /// Checks the settings against each other, as Kafka's `LogConfig.validateValues` does:
    /// `min.compaction.lag.ms` may not exceed `max.compaction.lag.ms`.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.min_compaction_lag_ms > self.max_compaction_lag_ms {
            return Err(ConfigError::Conflict(format!(
                "conflicting topic settings: min.compaction.lag.ms ({}) > max.compaction.lag.ms ({})",
                self.min_compaction_lag_ms, self.max_compaction_lag_ms
            )));
        }
        Ok(())
    }

    /// The current value of a setting, formatted as Kafka's DescribeConfigs shows it.
    pub fn get(&self, key: &str) -> Option<String> {
        let limited = |v: Option<u64>| v.map_or("-1".to_owned(), |v| v.to_string());
        let os = |v: Option<u64>| v.map_or(i64::MAX.to_string(), |v| v.to_string());
        Some(match key {
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "segment.jitter.ms" => self.segment_jitter_ms.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "retention.ms" => limited(self.retention_ms),
            "retention.bytes" => limited(self.retention_bytes),
            "flush.messages" => os(self.flush_messages),
            "flush.ms" => os(self.flush_ms),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "cleanup.policy" => match (self.cleanup_delete, self.cleanup_compact) {
                (true, true) => "compact,delete".to_owned(),
                (false, true) => "compact".to_owned(),
                _ => "delete".to_owned(),
            },
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            // Java's `Double.toString`, which DescribeConfigs shows: `0.5`, `1.0`.
            "min.cleanable.dirty.ratio" => format!("{:?}", self.min_cleanable_dirty_ratio.get()),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms.to_string(),
            "file.delete.delay.ms" => self.file_delete_delay_ms.to_string(),
            "compression.type" => self.compression_type.name().to_owned(),
            "compression.gzip.level" => self.compression_gzip_level.to_string(),
            "compression.lz4.level" => self.compression_lz4_level.to_string(),
            "compression.zstd.level" => self.compression_zstd_level.to_string(),
            "message.timestamp.type" => self.message_timestamp_type.name().to_owned(),
            "message.timestamp.before.max.ms" => self.message_timestamp_before_max_ms.to_string(),
            "message.timestamp.after.max.ms" => self.message_timestamp_after_max_ms.to_string(),
            "preallocate" | "remote.storage.enable" | "remote.log.copy.disable" | "remote.log.delete.on.disable" => {
                "false".to_owned()
            }
            "local.retention.ms" | "local.retention.bytes" => FOLLOW_RETENTION.to_string(),
            "leader.replication.throttled.replicas" | "follower.replication.throttled.replicas" => String::new(),
            _ => return None,
        })
    }

    pub(crate) fn flush_interval(&self) -> Option<Duration> {
        self.flush_ms.map(Duration::from_millis)
    }

    /// Kafka's `maxSegmentMs`: a compacted log with a `max.compaction.lag.ms` rolls at least that often, so
    /// that its records reach a closed segment, which compaction can clean, within the lag.
    pub fn max_segment_ms(&self) -> u64 {
        if self.cleanup_compact {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }

    /// The level batches are compressed at when the leader recompresses them to `codec`.
    pub fn compression_level(&self, codec: Compression) -> i32 {
        match codec {
            Compression::Gzip => self.compression_gzip_level,
            Compression::Lz4 => self.compression_lz4_level,
            Compression::Zstd => self.compression_zstd_level,
            Compression::None | Compression::Snappy => 0,
        }
    }
}

/// Kafka's `ThrottledReplicaListValidator`: empty, `*`, or `partition:broker` pairs. Only empty is
/// accepted; a well-formed list is refused because nothing would throttle.
fn check_throttled_replicas(key: &str, value: &str) -> Result<(), ConfigError> {
    let entries: Vec<&str> = value.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    if entries.is_empty() {
        return Ok(());
    }
    let pair = |entry: &str| {
        entry
            .split_once(':')
            .is_some_and(|(p, b)| p.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
    };
    if entries != ["*"] && !entries.iter().all(|e| pair(e)) {
        return Err(ConfigError::NotOneOf {
            key: key.to_owned(),
            value: value.to_owned(),
            allowed: "empty, `*`, or a list of partition:broker pairs",
        });
    }
    Err(ConfigError::Unsupported {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: THROTTLES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_round_trips_through_get() {
        let mut config = LogConfig::default();
        for key in LOG_CONFIG_KEYS {
            let value = config.get(key).unwrap();
            config.set(key, &value).unwrap_or_else(|e| panic!("{key}={value}: {e}"));
        }
        assert_eq!(config, LogConfig::default());
    }

    #[test]
    fn kafka_spellings_of_unlimited() {
        let mut config = LogConfig::default();
        config.set("retention.ms", "-1").unwrap();
        assert_eq!(config.retention_ms, None);
        config.set("flush.messages", &i64::MAX.to_string()).unwrap();
        assert_eq!(config.flush_messages, None);
        config.set("flush.messages", "1").unwrap();
        assert_eq!(config.flush_messages, Some(1));
    }

    #[test]
    fn out_of_range_and_unknown_settings_are_refused() {
        let mut config = LogConfig::default();
        assert!(matches!(
            config.set("segment.bytes", "10"),
            Err(ConfigError::OutOfRange { .. })
        ));
        assert!(matches!(
            config.set("retention.ms", "-2"),
            Err(ConfigError::OutOfRange { .. })
        ));
        assert!(matches!(
            config.set("segment.bytes", "big"),
            Err(ConfigError::NotAnInteger { .. })
        ));
        assert!(matches!(config.set("no.such.key", "1"), Err(ConfigError::Unknown(_))));
        assert_eq!(config, LogConfig::default(), "a refused setting changes nothing");
    }

    #[test]
    fn kafka_4_defaults() {
        let config = LogConfig::default();
        let shown = |key| config.get(key).unwrap();
        for (key, value) in [
            ("compression.type", "producer"),
            ("compression.gzip.level", "-1"),
            ("compression.lz4.level", "9"),
            ("compression.zstd.level", "3"),
            ("message.timestamp.type", "CreateTime"),
            ("message.timestamp.before.max.ms", "9223372036854775807"),
            ("message.timestamp.after.max.ms", "3600000"),
            ("min.cleanable.dirty.ratio", "0.5"),
            ("min.compaction.lag.ms", "0"),
            ("max.compaction.lag.ms", "9223372036854775807"),
            ("file.delete.delay.ms", "60000"),
            ("segment.jitter.ms", "0"),
            ("preallocate", "false"),
            ("local.retention.ms", "-2"),
            ("local.retention.bytes", "-2"),
            ("remote.storage.enable", "false"),
            ("remote.log.copy.disable", "false"),
            ("remote.log.delete.on.disable", "false"),
            ("leader.replication.throttled.replicas", ""),
            ("follower.replication.throttled.replicas", ""),
        ] {
            assert_eq!(shown(key), value, "{key}");
        }
        let distinct: std::collections::BTreeSet<&str> = LOG_CONFIG_KEYS.iter().copied().collect();
        assert_eq!(distinct.len(), LOG_CONFIG_KEYS.len(), "no repeats");
        assert_eq!(
            LOG_CONFIG_KEYS.len() + 2,
            33,
            "with the broker's two, Kafka 4's whole list"
        );
    }

    #[test]
    fn new_settings_take_kafkas_values_and_ranges() {
        let mut config = LogConfig::default();
        for (key, value) in [
            ("compression.type", "zstd"),
            ("compression.gzip.level", "9"),
            ("compression.gzip.level", "-1"),
            ("compression.gzip.level", "1"),
            ("compression.lz4.level", "17"),
            ("compression.zstd.level", "-131072"),
            ("compression.zstd.level", "22"),
            ("message.timestamp.type", "LogAppendTime"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("min.cleanable.dirty.ratio", "1"),
            ("min.compaction.lag.ms", "1000"),
            ("max.compaction.lag.ms", "1"),
            ("file.delete.delay.ms", "0"),
            ("segment.jitter.ms", "100"),
            ("preallocate", "FALSE"),
            ("local.retention.ms", "-2"),
            ("leader.replication.throttled.replicas", " "),
        ] {
            config.set(key, value).unwrap_or_else(|e| panic!("{key}={value}: {e}"));
        }
        assert_eq!(config.compression_type, CompressionType::Zstd);
        assert_eq!(config.compression_gzip_level, 1);
        assert_eq!(config.compression_zstd_level, 22);
        assert_eq!(config.message_timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(config.get("min.cleanable.dirty.ratio").as_deref(), Some("1.0"));
        assert!(
            matches!(config.check(), Err(ConfigError::Conflict(_))),
            "min lag 1000 > max lag 1"
        );
        config.set("max.compaction.lag.ms", "1000").unwrap();
        assert_eq!(config.check(), Ok(()));

        let before = config.clone();
        let refused = |config: &mut LogConfig, key: &str, value: &str| {
            config
                .set(key, value)
                .expect_err(&format!("{key}={value} should be refused"))
        };
        for (key, value) in [
            ("compression.gzip.level", "0"),
            ("compression.gzip.level", "10"),
            ("compression.lz4.level", "0"),
            ("compression.lz4.level", "18"),
            ("compression.zstd.level", "-131073"),
            ("compression.zstd.level", "23"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.cleanable.dirty.ratio", "-0.1"),
            ("max.compaction.lag.ms", "0"),
            ("message.timestamp.after.max.ms", "-1"),
            ("local.retention.bytes", "-3"),
        ] {
            assert!(
                matches!(refused(&mut config, key, value), ConfigError::OutOfRange { .. }),
                "{key}={value}"
            );
        }
        assert!(matches!(
            refused(&mut config, "compression.type", "GZIP"),
            ConfigError::NotOneOf { .. }
        ));
        assert!(matches!(
            refused(&mut config, "message.timestamp.type", "createtime"),
            ConfigError::NotOneOf { .. }
        ));
        assert!(matches!(
            refused(&mut config, "min.cleanable.dirty.ratio", "half"),
            ConfigError::NotANumber { .. }
        ));
        assert!(matches!(
            refused(&mut config, "preallocate", "yes"),
            ConfigError::NotABoolean { .. }
        ));
        assert!(matches!(
            refused(&mut config, "leader.replication.throttled.replicas", "0:x"),
            ConfigError::NotOneOf { .. }
        ));
        // Well-formed, but a feature Strata does not have: refused with the reason.
        for (key, value) in [
            ("preallocate", "true"),
            ("remote.storage.enable", "true"),
            ("remote.log.copy.disable", "true"),
            ("remote.log.delete.on.disable", "True"),
            ("local.retention.ms", "-1"),
            ("local.retention.bytes", "1000"),
            ("leader.replication.throttled.replicas", "*"),
            ("follower.replication.throttled.replicas", "0:1,1:2"),
        ] {
            let e = refused(&mut config, key, value);
            assert!(matches!(e, ConfigError::Unsupported { .. }), "{key}={value}: {e}");
            assert!(e.to_string().contains("not supported"), "{e}");
        }
        assert_eq!(config, before, "a refused setting changes nothing");
    }

    #[test]
    fn compression_type_names_the_stored_codec() {
        assert_eq!(CompressionType::Producer.target(Compression::Gzip), Compression::Gzip);
        assert_eq!(
            CompressionType::Uncompressed.target(Compression::Gzip),
            Compression::None
        );
        assert_eq!(CompressionType::Zstd.target(Compression::None), Compression::Zstd);
        for name in ["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"] {
            assert_eq!(CompressionType::parse(name).map(CompressionType::name), Some(name));
        }
    }

    #[test]
    fn a_compacted_log_rolls_within_its_max_compaction_lag() {
        let mut config = LogConfig::default();
        config.set("max.compaction.lag.ms", "60000").unwrap();
        assert_eq!(config.max_segment_ms(), config.segment_ms, "not compacted: segment.ms");
        config.set("cleanup.policy", "compact").unwrap();
        assert_eq!(config.max_segment_ms(), 60_000);
    }
}
