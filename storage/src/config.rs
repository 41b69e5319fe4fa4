//! Per-log settings, named and defaulted as Kafka names and defaults them.
//!
//! The broker builds a [`LogConfig`] from its own defaults and each topic's overrides and hands it to the
//! log; [`crate::Log::set_config`] applies a change live. Parsing from `key=value` strings lives here too so
//! that the broker, the CLI and tests agree on names, units and ranges.

use std::time::Duration;

use thiserror::Error;

/// Kafka's default `log.cleaner.dedupe.buffer.size`: 128 MiB.
pub const DEDUPE_BUFFER_BYTES_DEFAULT: u64 = 128 * 1024 * 1024;

/// Settings of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment when an append would take it past this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first batch is older than this.
    pub segment_ms: u64,
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
    /// `cleanup.policy` contains `compact`: closed segments keep only the newest record of each key.
    pub cleanup_compact: bool,
    /// `delete.retention.ms`: how long compaction keeps a tombstone (a record with a null value).
    pub delete_retention_ms: u64,
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
    #[error("`cleanup.policy` = `{value}` is not `delete`, `compact` or `compact,delete`")]
    NotAPolicy { value: String },
    #[error("`{key}` = {value} is out of range ({range})")]
    OutOfRange {
        key: String,
        value: i64,
        range: &'static str,
    },
}

/// The names [`LogConfig::set`] accepts, in Kafka's spelling.
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
];

/// The smallest `segment.bytes` Kafka allows: a segment must hold at least a batch header and then some.
const SEGMENT_BYTES_MIN: i64 = 14;
/// Relative positions in the offset index are `u32`, so a segment cannot outgrow them.
const SEGMENT_BYTES_MAX: i64 = i32::MAX as i64;
/// An index must hold at least one entry of either kind.
const SEGMENT_INDEX_BYTES_MIN: i64 = 12;

impl LogConfig {
    /// Applies one `key=value` setting with Kafka's name, units and range. `-1` means "unlimited" for
    /// `retention.ms`, `retention.bytes`; Kafka's `Long.MAX_VALUE` default for the flush settings maps to
    /// "leave it to the OS".
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        if key == "cleanup.policy" {
            // A list: `delete`, `compact`, or both.
            let mut policies = value.split(',').map(str::trim);
            let (mut delete, mut compact) = (false, false);
            for policy in &mut policies {
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
            return Ok(());
        }
        let parsed: i64 = value.trim().parse().map_err(|_| ConfigError::NotAnInteger {
            key: key.to_owned(),
            value: value.to_owned(),
        })?;
        let out_of_range = |range| ConfigError::OutOfRange {
            key: key.to_owned(),
            value: parsed,
            range,
        };
        let at_least = |min: i64, range| {
            if parsed >= min {
                Ok(parsed as u64)
            } else {
                Err(out_of_range(range))
            }
        };
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
                if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&parsed) {
                    return Err(out_of_range("14..=2147483647"));
                }
                self.segment_bytes = parsed as u64;
            }
            "segment.ms" => self.segment_ms = at_least(1, ">= 1")?,
            "segment.index.bytes" => {
                if !(SEGMENT_INDEX_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&parsed) {
                    return Err(out_of_range("12..=2147483647"));
                }
                self.segment_index_bytes = parsed as u64;
            }
            "index.interval.bytes" => self.index_interval_bytes = at_least(0, ">= 0")?,
            "retention.ms" => self.retention_ms = unlimited_if_negative_one(">= -1")?,
            "retention.bytes" => self.retention_bytes = unlimited_if_negative_one(">= -1")?,
            "flush.messages" => self.flush_messages = os_if_max(">= 1")?,
            "flush.ms" => self.flush_ms = os_if_max(">= 1")?,
            "max.message.bytes" => self.max_message_bytes = at_least(0, ">= 0")?,
            "delete.retention.ms" => self.delete_retention_ms = at_least(0, ">= 0")?,
            _ => return Err(ConfigError::Unknown(key.to_owned())),
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
            _ => return None,
        })
    }

    pub(crate) fn flush_interval(&self) -> Option<Duration> {
        self.flush_ms.map(Duration::from_millis)
    }
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
}
