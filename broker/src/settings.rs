//! Broker-wide settings with Kafka's names, set with `--set key=value`, and the topic settings they default.
//!
//! Kafka names a topic setting (`retention.ms`) and the broker default for it differently
//! (`log.retention.ms`, Kafka's `ServerTopicConfigSynonyms`); [`BrokerSettings::set`] accepts the broker
//! names and keeps the defaults as a [`LogConfig`], so a topic's effective settings are "broker defaults, then
//! the topic's overrides". Which defaults were set at start is remembered, so DescribeConfigs can tell a
//! topic's inherited value from the broker (`STATIC_BROKER_CONFIG`) from Kafka's own default
//! (`DEFAULT_CONFIG`).

use std::collections::{BTreeMap, BTreeSet};

use strata_storage::LogConfig;
use strata_storage::config::{ConfigError, LOG_CONFIG_KEYS};
use thiserror::Error;

use crate::groups::offsets::OFFSETS_REPLICATION_FACTOR;

/// Topic-level settings other than the storage ones, with the only values Strata supports so far.
const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

/// A setting that could not be applied.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SettingError {
    #[error("unknown setting `{0}`")]
    Unknown(String),
    #[error("`{key}` = `{value}` is invalid: {reason}")]
    Invalid { key: String, value: String, reason: String },
    #[error("`{key}` = `{value}` is out of range: {reason}")]
    OutOfRange { key: String, value: String, reason: String },
    /// Settings each valid alone that contradict each other.
    #[error("{0}")]
    Conflict(String),
}

impl SettingError {
    fn from_config(key: &str, value: &str, e: ConfigError) -> Self {
        match e {
            ConfigError::Unknown(key) => SettingError::Unknown(key),
            ConfigError::OutOfRange { range, .. } => SettingError::OutOfRange {
                key: key.into(),
                value: value.into(),
                reason: format!("must be {range}"),
            },
            ConfigError::Conflict(message) => SettingError::Conflict(message),
            other => {
                let reason = match &other {
                    ConfigError::NotAnInteger { .. } => "not an integer".to_owned(),
                    ConfigError::NotANumber { .. } => "not a number".to_owned(),
                    ConfigError::NotABoolean { .. } => "not true or false".to_owned(),
                    ConfigError::NotOneOf { allowed, .. } => format!("must be one of {allowed}"),
                    ConfigError::Unsupported { reason, .. } => (*reason).to_owned(),
                    _ => other.to_string(),
                };
                SettingError::Invalid {
                    key: key.into(),
                    value: value.into(),
                    reason,
                }
            }
        }
    }
}

/// The largest `max.connections`: tokio's semaphore holds at most `usize::MAX >> 3` permits, and a broker
/// does not get near a million open connections on one listener anyway.
const MAX_CONNECTIONS_MAX: usize = 1_000_000;

/// Kafka's `group.max.size` default (`Integer.MAX_VALUE`: no practical limit, but one that is checked).
const GROUP_MAX_SIZE_DEFAULT: usize = i32::MAX as usize;
/// Kafka's `offsets.retention.minutes` default: seven days (KIP-186).
const OFFSETS_RETENTION_MINUTES_DEFAULT: u64 = 7 * 24 * 60;

/// Share group settings (Kafka's `group.share.*` broker configs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupSettings {
    /// `group.share.record.lock.duration.ms`: how long a member holds the records it was given.
    pub record_lock_duration_ms: u64,
    /// `group.share.delivery.count.limit`: deliveries after which a record that comes back is archived.
    pub delivery_count_limit: u16,
    /// `group.share.partition.max.record.locks`: records in flight per share-partition.
    pub partition_max_record_locks: u64,
    /// `group.share.session.timeout.ms`: a member that does not heartbeat for this long is removed.
    pub session_timeout_ms: u64,
    /// `group.share.heartbeat.interval.ms`: how often members heartbeat.
    pub heartbeat_interval_ms: i32,
    /// `group.share.max.share.sessions`: share sessions one broker keeps.
    pub max_share_sessions: usize,
}

impl Default for ShareGroupSettings {
    fn default() -> Self {
        Self {
            record_lock_duration_ms: 30_000,
            delivery_count_limit: 5,
            partition_max_record_locks: 2_000,
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_share_sessions: 2_000,
        }
    }
}

/// Settings of the whole broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSettings {
    /// `num.partitions`: partitions of an auto-created topic, or of one created with -1.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `socket.request.max.bytes`: the largest request frame.
    pub socket_request_max_bytes: usize,
    /// `max.connections`: client connections served at once; further ones wait in the accept backlog.
    pub max_connections: usize,
    /// `max.connections.per.ip`: client connections from one address at once; further ones are closed.
    pub max_connections_per_ip: usize,
    /// `queued.max.request.bytes`: the memory all requests being read or handled may hold together; a
    /// connection whose next request does not fit waits, unread, until memory is returned.
    pub queued_max_request_bytes: usize,
    /// `connections.max.idle.ms`: a connection that sends nothing for this long is closed, and so is one
    /// whose request takes longer than this to arrive.
    pub connections_max_idle_ms: u64,
    /// `log.retention.check.interval.ms`: how often retention, time flushes and checkpoints run.
    pub retention_check_interval_ms: u64,
    /// `log.cleaner.backoff.ms`: how often the cleaner looks for compacted logs that are due.
    pub cleaner_backoff_ms: u64,
    /// `min.insync.replicas` default.
    pub min_insync_replicas: i32,
    /// `group.initial.rebalance.delay.ms`: how long a group starting from empty waits for more members.
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.max.size`: members (and members handed an id that have not joined yet) one group may have;
    /// a JoinGroup past it is answered `GROUP_MAX_SIZE_REACHED`.
    pub group_max_size: usize,
    /// `group.consumer.session.timeout.ms`: how long a member of a consumer-protocol (KIP-848) group may go
    /// without a heartbeat, unless its group's `consumer.session.timeout.ms` says otherwise.
    pub group_consumer_session_timeout_ms: u64,
    /// `group.consumer.heartbeat.interval.ms`: how often members of a consumer-protocol group heartbeat,
    /// unless its group's `consumer.heartbeat.interval.ms` says otherwise.
    pub group_consumer_heartbeat_interval_ms: u64,
    /// `group.consumer.max.size`: members one consumer-protocol group may have; a join past it is answered
    /// `GROUP_MAX_SIZE_REACHED`.
    pub group_consumer_max_size: usize,
    /// `offsets.retention.minutes` (or Strata's `offsets.retention.ms`), in milliseconds: how long a group's
    /// committed offsets outlive its last member, or a standalone commit its commit.
    pub offsets_retention_ms: u64,
    /// `offsets.retention.check.interval.ms`: how often expired offsets and dead groups are looked for.
    pub offsets_retention_check_interval_ms: u64,
    /// `broker.rack`: placement spreads each partition's replicas over racks.
    pub rack: Option<String>,
    /// `broker.heartbeat.interval.ms`: how often the broker tells the active controller it is alive.
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: how long the active controller waits for a heartbeat before fencing a
    /// broker (a controller setting in Kafka; here the controller of this node uses it).
    pub broker_session_timeout_ms: u64,
    /// `auto.leader.rebalance.enable`: leadership returns to preferred replicas when their broker returns.
    pub auto_leader_rebalance: bool,
    /// `replica.lag.time.max.ms`: a follower that has not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// `offsets.topic.replication.factor`: replicas of each `__consumer_offsets` partition. Set, it is
    /// Kafka's rule: the topic is not created until that many brokers are live, so it never starts
    /// under-replicated. Unset, the topic gets up to three replicas, as many as there are live brokers,
    /// so that a single node serves groups without configuration.
    pub offsets_topic_replication_factor: Option<i16>,
    /// `max.incremental.fetch.session.cache.slots`: fetch sessions (KIP-227) kept at once.
    pub fetch_session_cache_slots: usize,
    /// Share groups (KIP-932): `group.share.*`.
    pub share: ShareGroupSettings,
    /// Defaults for every topic's storage settings (`log.segment.bytes` and friends).
    pub log: LogConfig,
    /// The topic settings whose broker default was set (by any of its broker names), for DescribeConfigs.
    pub log_defaults_set: BTreeSet<&'static str>,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics: true,
            socket_request_max_bytes: strata_protocol::frame::FRAME_BYTES_MAX_DEFAULT,
            max_connections: 10_000,
            max_connections_per_ip: 10_000,
            queued_max_request_bytes: 512 * 1024 * 1024,
            connections_max_idle_ms: 600_000,
            retention_check_interval_ms: 300_000,
            cleaner_backoff_ms: 15_000,
            min_insync_replicas: 1,
            group_initial_rebalance_delay_ms: 3000,
            group_max_size: GROUP_MAX_SIZE_DEFAULT,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_max_size: GROUP_MAX_SIZE_DEFAULT,
            offsets_retention_ms: OFFSETS_RETENTION_MINUTES_DEFAULT * 60_000,
            offsets_retention_check_interval_ms: 600_000,
            rack: None,
            broker_heartbeat_interval_ms: 2_000,
            broker_session_timeout_ms: 9_000,
            auto_leader_rebalance: true,
            replica_lag_time_max_ms: 30_000,
            offsets_topic_replication_factor: None,
            fetch_session_cache_slots: crate::fetch_sessions::CACHE_SLOTS_DEFAULT,
            share: ShareGroupSettings::default(),
            log: LogConfig::default(),
            log_defaults_set: BTreeSet::new(),
        }
    }
}

impl BrokerSettings {
    /// Applies one broker setting, by its Kafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let invalid = |reason: &str| SettingError::Invalid {
            key: key.into(),
            value: value.into(),
            reason: reason.into(),
        };
        let int = |min: i64| -> Result<i64, SettingError> {
            let v: i64 = value.trim().parse().map_err(|_| invalid("not an integer"))?;
            if v < min {
                return Err(SettingError::OutOfRange {
                    key: key.into(),
                    value: value.into(),
                    reason: format!("must be >= {min}"),
                });
            }
            Ok(v)
        };
        let range = |min: i64, max: i64| -> Result<i64, SettingError> {
            let v = int(min)?;
            if v > max {
                return Err(SettingError::OutOfRange {
                    key: key.into(),
                    value: value.into(),
                    reason: format!("must be between {min} and {max}"),
                });
            }
            Ok(v)
        };
        let log_key = |topic_key: &str, value: String| {
            let mut log = self.log.clone();
            log.set(topic_key, &value)
                .and_then(|()| log.check())
                .map_err(|e| SettingError::from_config(key, &value, e))?;
            Ok::<_, SettingError>(log)
        };
        match key {
            "num.partitions" => self.num_partitions = int(1)? as i32,
            "default.replication.factor" => self.default_replication_factor = int(1)? as i16,
            "auto.create.topics.enable" => {
                self.auto_create_topics = value.trim().parse().map_err(|_| invalid("not true or false"))?
            }
            "socket.request.max.bytes" => self.socket_request_max_bytes = int(1)?.min(i64::from(i32::MAX)) as usize,
            "max.connections" => self.max_connections = int(1)?.min(MAX_CONNECTIONS_MAX as i64) as usize,
            "max.connections.per.ip" => self.max_connections_per_ip = int(1)? as usize,
            // Held as semaphore permits, whose count tops out at u32::MAX per request.
            "queued.max.request.bytes" => self.queued_max_request_bytes = int(1)?.min(i64::from(u32::MAX)) as usize,
            "connections.max.idle.ms" => self.connections_max_idle_ms = int(1)? as u64,
            "log.retention.check.interval.ms" => self.retention_check_interval_ms = int(1)? as u64,
            "log.cleaner.backoff.ms" => self.cleaner_backoff_ms = int(0)? as u64,
            // A broker setting carried in every log's config, which the cleaner reads.
            "log.cleaner.dedupe.buffer.size" => self.log.dedupe_buffer_bytes = int(1)? as u64,
            "min.insync.replicas" => {
                self.min_insync_replicas = int(1)?.min(i64::from(i32::MAX)) as i32;
                self.log_defaults_set.insert(MIN_INSYNC_REPLICAS);
            }
            "group.initial.rebalance.delay.ms" => self.group_initial_rebalance_delay_ms = int(0)? as u64,
            // An int in Kafka, at least 1.
            "group.max.size" => self.group_max_size = int(1)?.min(i64::from(i32::MAX)) as usize,
            // Ints in Kafka; the heartbeat interval travels as an i32 in every heartbeat answer.
            "group.consumer.session.timeout.ms" => {
                self.group_consumer_session_timeout_ms = int(1)?.min(i64::from(i32::MAX)) as u64;
            }
            "group.consumer.heartbeat.interval.ms" => {
                self.group_consumer_heartbeat_interval_ms = int(1)?.min(i64::from(i32::MAX)) as u64;
            }
            "group.consumer.max.size" => self.group_consumer_max_size = int(1)?.min(i64::from(i32::MAX)) as usize,
            "offsets.retention.minutes" => self.offsets_retention_ms = int(1)?.min(i64::from(i32::MAX)) as u64 * 60_000,
            // Not a Kafka setting: the same retention in milliseconds, so that a test need not wait minutes.
            "offsets.retention.ms" => self.offsets_retention_ms = int(1)? as u64,
            "offsets.retention.check.interval.ms" => self.offsets_retention_check_interval_ms = int(1)? as u64,
            "broker.rack" => self.rack = Some(value.trim().to_owned()).filter(|rack| !rack.is_empty()),
            "broker.heartbeat.interval.ms" => self.broker_heartbeat_interval_ms = int(1)? as u64,
            "broker.session.timeout.ms" => self.broker_session_timeout_ms = int(1)? as u64,
            "auto.leader.rebalance.enable" => {
                self.auto_leader_rebalance = value.trim().parse().map_err(|_| invalid("not true or false"))?
            }
            "replica.lag.time.max.ms" => self.replica_lag_time_max_ms = int(1)? as u64,
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor = Some(int(1)?.min(i64::from(i16::MAX)) as i16)
            }
            // An int in Kafka, at least 0 (no sessions: every fetch is a full one).
            "max.incremental.fetch.session.cache.slots" => {
                self.fetch_session_cache_slots = int(0)?.min(i64::from(i32::MAX)) as usize
            }
            "group.share.record.lock.duration.ms" => {
                self.share.record_lock_duration_ms = range(1_000, 3_600_000)? as u64
            }
            "group.share.delivery.count.limit" => self.share.delivery_count_limit = range(2, 10)? as u16,
            "group.share.partition.max.record.locks" => {
                self.share.partition_max_record_locks = range(100, 10_000)? as u64
            }
            "group.share.session.timeout.ms" => self.share.session_timeout_ms = range(1, i64::from(i32::MAX))? as u64,
            "group.share.heartbeat.interval.ms" => {
                self.share.heartbeat_interval_ms = range(1, i64::from(i32::MAX))? as i32
            }
            "group.share.max.share.sessions" => self.share.max_share_sessions = range(1, 100_000)? as usize,
            "log.retention.hours" => {
                self.log = log_key("retention.ms", int(-1)?.saturating_mul(3_600_000).max(-1).to_string())?;
                self.log_defaults_set.insert("retention.ms");
            }
            "log.retention.minutes" => {
                self.log = log_key("retention.ms", int(-1)?.saturating_mul(60_000).max(-1).to_string())?;
                self.log_defaults_set.insert("retention.ms");
            }
            "log.roll.hours" => {
                self.log = log_key("segment.ms", int(1)?.saturating_mul(3_600_000).to_string())?;
                self.log_defaults_set.insert("segment.ms");
            }
            "log.roll.jitter.hours" => {
                self.log = log_key("segment.jitter.ms", int(0)?.saturating_mul(3_600_000).to_string())?;
                self.log_defaults_set.insert("segment.jitter.ms");
            }
            _ => match broker_to_topic_key(key) {
                Some(topic_key) => {
                    self.log = log_key(topic_key, value.to_owned())?;
                    self.log_defaults_set.insert(topic_key);
                }
                None => return Err(SettingError::Unknown(key.to_owned())),
            },
        }
        Ok(())
    }

    /// Checks one topic-level override, by its Kafka name.
    pub fn validate_topic_setting(&self, key: &str, value: &str) -> Result<(), SettingError> {
        match key {
            MIN_INSYNC_REPLICAS => {
                let v: i64 = value.parse().map_err(|_| SettingError::Invalid {
                    key: key.into(),
                    value: value.into(),
                    reason: "not an integer".into(),
                })?;
                if v < 1 {
                    return Err(SettingError::OutOfRange {
                        key: key.into(),
                        value: value.into(),
                        reason: "must be >= 1".into(),
                    });
                }
                Ok(())
            }
            UNCLEAN_LEADER_ELECTION => match value {
                "true" | "false" => Ok(()),
                _ => Err(SettingError::Invalid {
                    key: key.into(),
                    value: value.into(),
                    reason: "not true or false".into(),
                }),
            },
            _ => self
                .log
                .clone()
                .set(key, value)
                .map_err(|e| SettingError::from_config(key, value, e)),
        }
    }

    /// Checks a topic's whole set of overrides: each one, then the effective settings against each other
    /// (Kafka refuses `min.compaction.lag.ms` above `max.compaction.lag.ms`, wherever each comes from).
    pub fn validate_topic_settings(&self, overrides: &BTreeMap<String, String>) -> Result<(), SettingError> {
        for (key, value) in overrides {
            self.validate_topic_setting(key, value)?;
        }
        self.topic_log_config(overrides)
            .check()
            .map_err(|e| SettingError::from_config("", "", e))
    }

    /// The storage settings of a topic: broker defaults, then the topic's overrides (already validated).
    pub fn topic_log_config(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        let mut config = self.log.clone();
        for (key, value) in overrides {
            // `min.insync.replicas` and `unclean.leader.election.enable` are not storage settings; LogConfig
            // refuses them.
            let _ = config.set(key, value);
        }
        config
    }

    /// Every topic-level setting with its effective value and whether it was overridden, for
    /// DescribeConfigs and CreateTopics responses.
    pub fn describe_topic(&self, overrides: &BTreeMap<String, String>) -> Vec<TopicSetting> {
        let config = self.topic_log_config(overrides);
        let source = |key: &str, broker_set: bool| {
            if overrides.contains_key(key) {
                SettingSource::Topic
            } else if broker_set {
                SettingSource::StaticBroker
            } else {
                SettingSource::Default
            }
        };
        let mut out: Vec<TopicSetting> = LOG_CONFIG_KEYS
            .iter()
            .map(|key| TopicSetting {
                name: key,
                value: config.get(key).expect("every listed key has a value"),
                source: source(key, self.log_defaults_set.contains(key)),
            })
            .collect();
        out.push(TopicSetting {
            name: MIN_INSYNC_REPLICAS,
            value: overrides
                .get(MIN_INSYNC_REPLICAS)
                .cloned()
                .unwrap_or_else(|| self.min_insync_replicas.to_string()),
            source: source(MIN_INSYNC_REPLICAS, self.log_defaults_set.contains(MIN_INSYNC_REPLICAS)),
        });
        out.push(TopicSetting {
            name: UNCLEAN_LEADER_ELECTION,
            value: overrides
                .get(UNCLEAN_LEADER_ELECTION)
                .cloned()
                .unwrap_or_else(|| "false".into()),
            source: source(UNCLEAN_LEADER_ELECTION, false),
        });
        out
    }

    /// The broker settings as DescribeConfigs shows them for the broker resource.
    pub fn describe_broker(&self) -> Vec<(&'static str, String)> {
        let log = |key: &str| self.log.get(key).expect("a known key");
        vec![
            ("num.partitions", self.num_partitions.to_string()),
            (
                "default.replication.factor",
                self.default_replication_factor.to_string(),
            ),
            ("auto.create.topics.enable", self.auto_create_topics.to_string()),
            ("socket.request.max.bytes", self.socket_request_max_bytes.to_string()),
            ("max.connections", self.max_connections.to_string()),
            ("max.connections.per.ip", self.max_connections_per_ip.to_string()),
            ("queued.max.request.bytes", self.queued_max_request_bytes.to_string()),
            ("connections.max.idle.ms", self.connections_max_idle_ms.to_string()),
            (
                "log.retention.check.interval.ms",
                self.retention_check_interval_ms.to_string(),
            ),
            (
                "log.cleaner.dedupe.buffer.size",
                self.log.dedupe_buffer_bytes.to_string(),
            ),
            ("min.insync.replicas", self.min_insync_replicas.to_string()),
            (
                "group.initial.rebalance.delay.ms",
                self.group_initial_rebalance_delay_ms.to_string(),
            ),
            ("group.max.size", self.group_max_size.to_string()),
            (
                "group.consumer.session.timeout.ms",
                self.group_consumer_session_timeout_ms.to_string(),
            ),
            (
                "group.consumer.heartbeat.interval.ms",
                self.group_consumer_heartbeat_interval_ms.to_string(),
            ),
            ("group.consumer.max.size", self.group_consumer_max_size.to_string()),
            (
                "max.incremental.fetch.session.cache.slots",
                self.fetch_session_cache_slots.to_string(),
            ),
            (
                "group.share.record.lock.duration.ms",
                self.share.record_lock_duration_ms.to_string(),
            ),
            (
                "group.share.delivery.count.limit",
                self.share.delivery_count_limit.to_string(),
            ),
            (
                "group.share.partition.max.record.locks",
                self.share.partition_max_record_locks.to_string(),
            ),
            (
                "group.share.session.timeout.ms",
                self.share.session_timeout_ms.to_string(),
            ),
            (
                "group.share.heartbeat.interval.ms",
                self.share.heartbeat_interval_ms.to_string(),
            ),
            (
                "group.share.max.share.sessions",
                self.share.max_share_sessions.to_string(),
            ),
            (
                "offsets.retention.minutes",
                (self.offsets_retention_ms / 60_000).to_string(),
            ),
            ("offsets.retention.ms", self.offsets_retention_ms.to_string()),
            (
                "offsets.retention.check.interval.ms",
                self.offsets_retention_check_interval_ms.to_string(),
            ),
            ("broker.rack", self.rack.clone().unwrap_or_default()),
            (
                "broker.heartbeat.interval.ms",
                self.broker_heartbeat_interval_ms.to_string(),
            ),
            ("broker.session.timeout.ms", self.broker_session_timeout_ms.to_string()),
            ("auto.leader.rebalance.enable", self.auto_leader_rebalance.to_string()),
            ("replica.lag.time.max.ms", self.replica_lag_time_max_ms.to_string()),
            (
                "offsets.topic.replication.factor",
                self.offsets_topic_replication_factor
                    .map_or(OFFSETS_REPLICATION_FACTOR as i16, |rf| rf)
                    .to_string(),
            ),
            ("log.segment.bytes", log("segment.bytes")),
            ("log.roll.ms", log("segment.ms")),
            ("log.index.size.max.bytes", log("segment.index.bytes")),
            ("log.index.interval.bytes", log("index.interval.bytes")),
            ("log.retention.ms", log("retention.ms")),
            ("log.retention.bytes", log("retention.bytes")),
            ("log.flush.interval.messages", log("flush.messages")),
            ("log.flush.interval.ms", log("flush.ms")),
            ("message.max.bytes", log("max.message.bytes")),
            ("log.cleanup.policy", log("cleanup.policy")),
            ("log.cleaner.delete.retention.ms", log("delete.retention.ms")),
            ("log.cleaner.backoff.ms", self.cleaner_backoff_ms.to_string()),
            ("log.cleaner.min.cleanable.ratio", log("min.cleanable.dirty.ratio")),
            ("log.cleaner.min.compaction.lag.ms", log("min.compaction.lag.ms")),
            ("log.cleaner.max.compaction.lag.ms", log("max.compaction.lag.ms")),
            ("log.segment.delete.delay.ms", log("file.delete.delay.ms")),
            ("log.roll.jitter.ms", log("segment.jitter.ms")),
            ("log.preallocate", log("preallocate")),
            ("compression.type", log("compression.type")),
            ("compression.gzip.level", log("compression.gzip.level")),
            ("compression.lz4.level", log("compression.lz4.level")),
            ("compression.zstd.level", log("compression.zstd.level")),
            ("log.message.timestamp.type", log("message.timestamp.type")),
            (
                "log.message.timestamp.before.max.ms",
                log("message.timestamp.before.max.ms"),
            ),
            (
                "log.message.timestamp.after.max.ms",
                log("message.timestamp.after.max.ms"),
            ),
            ("log.local.retention.ms", log("local.retention.ms")),
            ("log.local.retention.bytes", log("local.retention.bytes")),
        ]
    }

    /// The effective `min.insync.replicas` of a topic.
    pub fn min_insync_replicas(&self, overrides: &BTreeMap<String, String>) -> i32 {
        overrides
            .get(MIN_INSYNC_REPLICAS)
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.min_insync_replicas)
    }
}

/// One topic setting as DescribeConfigs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSetting {
    pub name: &'static str,
    pub value: String,
    pub source: SettingSource,
}

/// Where a topic's value of a setting comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingSource {
    /// Set on the topic itself (`DYNAMIC_TOPIC_CONFIG`).
    Topic,
    /// The broker's default, set at start (`STATIC_BROKER_CONFIG`).
    StaticBroker,
    /// Kafka's default (`DEFAULT_CONFIG`).
    Default,
}

/// Kafka's broker name for the default of a topic storage setting (`ServerTopicConfigSynonyms`; the ones
/// that convert units, `log.retention.hours` and the like, are handled in [`BrokerSettings::set`]).
pub(crate) fn broker_to_topic_key(key: &str) -> Option<&'static str> {
    Some(match key {
        "log.segment.bytes" => "segment.bytes",
        "log.roll.ms" => "segment.ms",
        "log.index.size.max.bytes" => "segment.index.bytes",
        "log.index.interval.bytes" => "index.interval.bytes",
        "log.retention.ms" => "retention.ms",
        "log.retention.bytes" => "retention.bytes",
        "log.flush.interval.messages" => "flush.messages",
        "log.flush.interval.ms" => "flush.ms",
        "message.max.bytes" => "max.message.bytes",
        "log.cleanup.policy" => "cleanup.policy",
        "log.cleaner.delete.retention.ms" => "delete.retention.ms",
        "log.cleaner.min.cleanable.ratio" => "min.cleanable.dirty.ratio",
        "log.cleaner.min.compaction.lag.ms" => "min.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms" => "max.compaction.lag.ms",
        "log.segment.delete.delay.ms" => "file.delete.delay.ms",
        "log.roll.jitter.ms" => "segment.jitter.ms",
        "log.preallocate" => "preallocate",
        "compression.type" => "compression.type",
        "compression.gzip.level" => "compression.gzip.level",
        "compression.lz4.level" => "compression.lz4.level",
        "compression.zstd.level" => "compression.zstd.level",
        "log.message.timestamp.type" => "message.timestamp.type",
        "log.message.timestamp.before.max.ms" => "message.timestamp.before.max.ms",
        "log.message.timestamp.after.max.ms" => "message.timestamp.after.max.ms",
        "log.local.retention.ms" => "local.retention.ms",
        "log.local.retention.bytes" => "local.retention.bytes",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_names_set_topic_defaults() {
        let mut settings = BrokerSettings::default();
        settings.set("log.segment.bytes", "1048576").unwrap();
        settings.set("log.retention.hours", "2").unwrap();
        settings.set("message.max.bytes", "2000").unwrap();
        settings.set("num.partitions", "3").unwrap();
        settings.set("auto.create.topics.enable", "false").unwrap();
        assert_eq!(settings.offsets_topic_replication_factor, None);
        settings.set("offsets.topic.replication.factor", "3").unwrap();
        assert_eq!(settings.offsets_topic_replication_factor, Some(3));
        assert!(matches!(
            settings.set("offsets.topic.replication.factor", "0"),
            Err(SettingError::OutOfRange { .. })
        ));
        assert_eq!(settings.log.segment_bytes, 1 << 20);
        assert_eq!(settings.log.retention_ms, Some(7_200_000));
        assert_eq!(settings.log.max_message_bytes, 2000);
        assert_eq!((settings.num_partitions, settings.auto_create_topics), (3, false));
        assert!(matches!(
            settings.set("log.segment.bytes", "1"),
            Err(SettingError::OutOfRange { .. })
        ));
        assert!(matches!(
            settings.set("no.such.setting", "1"),
            Err(SettingError::Unknown(_))
        ));
    }

    #[test]
    fn group_bounds_have_kafkas_names_and_defaults() {
        let mut settings = BrokerSettings::default();
        assert_eq!(settings.group_max_size, 2_147_483_647);
        assert_eq!(settings.offsets_retention_ms, 10_080 * 60_000);
        assert_eq!(settings.offsets_retention_check_interval_ms, 600_000);
        settings.set("group.max.size", "5").unwrap();
        settings.set("offsets.retention.minutes", "60").unwrap();
        settings.set("offsets.retention.check.interval.ms", "1000").unwrap();
        assert_eq!(settings.group_max_size, 5);
        assert_eq!(settings.offsets_retention_ms, 3_600_000);
        assert_eq!(settings.offsets_retention_check_interval_ms, 1000);
        settings.set("offsets.retention.ms", "1500").unwrap();
        assert_eq!(settings.offsets_retention_ms, 1500);
        for (key, value) in [
            ("group.max.size", "0"),
            ("offsets.retention.minutes", "0"),
            ("offsets.retention.check.interval.ms", "0"),
        ] {
            assert!(
                matches!(settings.set(key, value), Err(SettingError::OutOfRange { .. })),
                "{key}={value}"
            );
        }
        let described = settings.describe_broker();
        let shown = |key: &str| described.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
        assert_eq!(shown("group.max.size").as_deref(), Some("5"));
        assert_eq!(shown("offsets.retention.ms").as_deref(), Some("1500"));
    }

    #[test]
    fn kafkas_broker_names_set_the_new_topic_defaults() {
        let mut settings = BrokerSettings::default();
        for (key, value) in [
            ("compression.type", "zstd"),
            ("compression.zstd.level", "7"),
            ("log.message.timestamp.type", "LogAppendTime"),
            ("log.message.timestamp.after.max.ms", "1000"),
            ("log.cleaner.min.cleanable.ratio", "0.25"),
            ("log.cleaner.max.compaction.lag.ms", "600000"),
            ("log.cleaner.min.compaction.lag.ms", "1000"),
            ("log.segment.delete.delay.ms", "0"),
            ("log.roll.jitter.hours", "1"),
            ("log.preallocate", "false"),
            ("log.local.retention.ms", "-2"),
            ("log.cleaner.backoff.ms", "500"),
        ] {
            settings
                .set(key, value)
                .unwrap_or_else(|e| panic!("{key}={value}: {e}"));
        }
        let log = &settings.log;
        assert_eq!(log.compression_type, strata_storage::config::CompressionType::Zstd);
        assert_eq!(log.compression_zstd_level, 7);
        assert_eq!(
            log.message_timestamp_type,
            strata_storage::config::TimestampType::LogAppendTime
        );
        assert_eq!(log.message_timestamp_after_max_ms, 1000);
        assert_eq!(log.min_cleanable_dirty_ratio.get(), 0.25);
        assert_eq!((log.min_compaction_lag_ms, log.max_compaction_lag_ms), (1000, 600_000));
        assert_eq!((log.file_delete_delay_ms, log.segment_jitter_ms), (0, 3_600_000));
        assert_eq!(settings.cleaner_backoff_ms, 500);
        let described = settings.describe_broker();
        let shown = |key: &str| described.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
        assert_eq!(shown("log.cleaner.min.cleanable.ratio").as_deref(), Some("0.25"));
        assert_eq!(shown("compression.type").as_deref(), Some("zstd"));
        // A minimum lag above the maximum is refused, as Kafka validates its broker defaults.
        assert!(matches!(
            settings.set("log.cleaner.min.compaction.lag.ms", "700000"),
            Err(SettingError::Conflict(_))
        ));
        assert!(matches!(
            settings.set("log.preallocate", "true"),
            Err(SettingError::Invalid { .. })
        ));
    }

    #[test]
    fn a_topics_settings_are_checked_together() {
        let settings = BrokerSettings::default();
        let overrides = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert!(
            settings
                .validate_topic_settings(&overrides(&[
                    ("min.compaction.lag.ms", "100"),
                    ("max.compaction.lag.ms", "1000"),
                ]))
                .is_ok()
        );
        let e = settings
            .validate_topic_settings(&overrides(&[
                ("min.compaction.lag.ms", "2000"),
                ("max.compaction.lag.ms", "1000"),
            ]))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("min.compaction.lag.ms (2000) > max.compaction.lag.ms (1000)"),
            "{e}"
        );
        let e = settings
            .validate_topic_settings(&overrides(&[("local.retention.ms", "1000")]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "`local.retention.ms` = `1000` is invalid: tiered storage is not supported; only -2 (follow retention) \
             is accepted"
        );
        let e = settings
            .validate_topic_settings(&overrides(&[("compression.type", "brotli")]))
            .unwrap_err();
        assert!(e.to_string().contains("must be one of"), "{e}");
    }

    #[test]
    fn topic_overrides_apply_over_broker_defaults() {
        let mut settings = BrokerSettings::default();
        settings.set("log.retention.ms", "1000").unwrap();
        let overrides: BTreeMap<String, String> = [("max.message.bytes".to_owned(), "500".to_owned())].into();
        let config = settings.topic_log_config(&overrides);
        assert_eq!((config.retention_ms, config.max_message_bytes), (Some(1000), 500));
        let described = settings.describe_topic(&overrides);
        let max = described.iter().find(|s| s.name == "max.message.bytes").unwrap();
        assert_eq!((max.value.as_str(), max.source), ("500", SettingSource::Topic));
        let retention = described.iter().find(|s| s.name == "retention.ms").unwrap();
        assert_eq!(retention.source, SettingSource::StaticBroker, "set at start, inherited");
        let segment = described.iter().find(|s| s.name == "segment.bytes").unwrap();
        assert_eq!(segment.source, SettingSource::Default, "Kafka's default");
        assert!(
            settings
                .validate_topic_setting("cleanup.policy", "compact,delete")
                .is_ok()
        );
        assert!(settings.validate_topic_setting("cleanup.policy", "shred").is_err());
        assert!(settings.validate_topic_setting("retention.ms", "-5").is_err());
        assert!(settings.validate_topic_setting("retention.ms", "-1").is_ok());
    }
}
