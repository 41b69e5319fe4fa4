//! The broker's shared state and the topic operations several APIs need (create, auto-create, delete).
//!
//! Every API handler gets a `&Broker`. Kafka-visible failures are returned as [`ResponseError`] codes here,
//! in one place, so each API file only copies them into its response.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use strata_storage::TopicPartition;
use tracing::{error, info};
use uuid::Uuid;

use tokio_util::sync::CancellationToken;

use crate::groups::Coordinator;
use crate::groups::offsets::OffsetStore;
use crate::http::Metrics;
use crate::metadata::{NodeIdentity, Topic, TopicError, TopicStore};
use crate::producers::ProducerIds;
use crate::replica::ReplicaManager;
use crate::settings::{BrokerSettings, SettingError};

/// Kafka's longest topic name: 249 characters, so `<topic>-<partition>` fits a 255-byte file name.
const TOPIC_NAME_BYTES_MAX: usize = 249;
/// The most partitions one topic may have on this node; a bound on what one request can create.
pub const PARTITIONS_MAX: i32 = 100_000;

/// Where clients reach this broker.
#[derive(Debug, Clone)]
pub struct Advertised {
    pub host: String,
    pub port: i32,
}

/// Shared by every connection.
#[derive(Debug)]
pub struct Broker {
    pub identity: NodeIdentity,
    pub advertised: Advertised,
    pub settings: BrokerSettings,
    pub topics: TopicStore,
    pub producer_ids: ProducerIds,
    pub replicas: ReplicaManager,
    pub metrics: Metrics,
    pub groups: Arc<Coordinator>,
    pub offsets: OffsetStore,
    /// Cancelled when the server stops: waiting fetches answer at once.
    pub shutdown: CancellationToken,
}

/// A refused topic operation: the Kafka error and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFailure {
    pub error: ResponseError,
    pub message: String,
}

impl TopicFailure {
    fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Self {
            error,
            message: message.into(),
        }
    }
}

impl From<SettingError> for TopicFailure {
    fn from(e: SettingError) -> Self {
        let error = match e {
            SettingError::OutOfRange { .. } => ResponseError::PolicyViolation,
            SettingError::Unknown(_) | SettingError::Invalid { .. } => ResponseError::InvalidConfig,
        };
        Self::new(error, e.to_string())
    }
}

/// What a new topic should look like; `None` means the broker default.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    pub name: String,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
    pub configs: BTreeMap<String, String>,
}

impl Broker {
    pub fn node_id(&self) -> i32 {
        self.identity.node_id
    }

    /// Checks and creates a topic (unless `validate_only`), hosting all its partitions before returning.
    pub fn create_topic(&self, new: NewTopic, validate_only: bool) -> Result<Topic, TopicFailure> {
        validate_topic_name(&new.name)?;
        let partitions = new.partitions.unwrap_or(self.settings.num_partitions);
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(TopicFailure::new(
                ResponseError::InvalidPartitions,
                format!("a topic has 1 to {PARTITIONS_MAX} partitions, not {partitions}"),
            ));
        }
        let replication_factor = new
            .replication_factor
            .unwrap_or(self.settings.default_replication_factor);
        let live_brokers = 1;
        if replication_factor < 1 || i32::from(replication_factor) > live_brokers {
            return Err(TopicFailure::new(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "replication factor {replication_factor} is not between 1 and the {live_brokers} live broker(s)"
                ),
            ));
        }
        for (key, value) in &new.configs {
            self.settings.validate_topic_setting(key, value)?;
        }
        if self.topics.get(&new.name).is_some() {
            return Err(TopicFailure::new(
                ResponseError::TopicAlreadyExists,
                format!("topic `{}` already exists", new.name),
            ));
        }
        let topic = Topic {
            name: new.name,
            id: Uuid::new_v4(),
            partitions,
            configs: new.configs,
        };
        if validate_only {
            return Ok(topic);
        }
        match self.topics.create(topic.clone()) {
            Ok(Ok(())) => {}
            Ok(Err(TopicError::Exists(name))) => {
                return Err(TopicFailure::new(
                    ResponseError::TopicAlreadyExists,
                    format!("topic `{name}` already exists"),
                ));
            }
            Ok(Err(e)) => {
                return Err(TopicFailure::new(ResponseError::UnknownServerError, e.to_string()));
            }
            Err(e) => return Err(storage_failure(e)),
        }
        self.host_partitions(&topic, 0)?;
        info!(topic = %topic.name, partitions, "created topic");
        Ok(topic)
    }

    /// Creates `name` with the broker defaults if it does not exist and auto-creation is on. Returns the
    /// topic if it exists afterwards.
    pub fn auto_create(&self, name: &str) -> Result<Option<Topic>, TopicFailure> {
        if let Some(topic) = self.topics.get(name) {
            return Ok(Some(topic));
        }
        if !self.settings.auto_create_topics {
            return Ok(None);
        }
        match self.create_topic(
            NewTopic {
                name: name.to_owned(),
                ..NewTopic::default()
            },
            false,
        ) {
            Ok(topic) => Ok(Some(topic)),
            // Another connection created it first.
            Err(f) if f.error == ResponseError::TopicAlreadyExists => Ok(self.topics.get(name)),
            Err(f) => Err(f),
        }
    }

    /// Deletes a topic and its logs.
    pub fn delete_topic(&self, name: &str) -> Result<Topic, TopicFailure> {
        let topic = self.topics.delete(name).map_err(storage_failure)?.ok_or_else(|| {
            TopicFailure::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic `{name}` does not exist"),
            )
        })?;
        for partition in 0..topic.partitions {
            if let Err(e) = self.replicas.remove(&TopicPartition::new(name, partition)) {
                error!(topic = name, partition, error = %e, "deleting a partition's log failed");
            }
        }
        info!(topic = name, "deleted topic");
        Ok(topic)
    }

    /// Replaces a topic's overrides with `configs` (each validated first) and applies them to its
    /// partitions at once. Nothing changes if any setting is refused or with `validate_only`.
    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Topic, TopicFailure> {
        let topic = self.existing(name)?;
        for (key, value) in &configs {
            self.settings.validate_topic_setting(key, value)?;
        }
        if validate_only {
            return Ok(Topic { configs, ..topic });
        }
        let updated = self.update(name, |t| t.configs = configs)?;
        // Live: retention, segment and size limits apply from the next append or upkeep round.
        self.host_partitions(&updated, 0)?;
        info!(topic = name, configs = ?updated.configs, "topic settings changed");
        Ok(updated)
    }

    /// Grows a topic to `count` partitions. Kafka never shrinks a topic.
    pub fn add_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<Topic, TopicFailure> {
        let topic = self.existing(name)?;
        if count <= topic.partitions || count > PARTITIONS_MAX {
            return Err(TopicFailure::new(
                ResponseError::InvalidPartitions,
                format!(
                    "topic `{name}` has {} partitions; the new count must be larger and at most {PARTITIONS_MAX}, not {count}",
                    topic.partitions
                ),
            ));
        }
        if validate_only {
            return Ok(Topic {
                partitions: count,
                ..topic
            });
        }
        let updated = self.update(name, |t| t.partitions = count)?;
        self.host_partitions(&updated, topic.partitions)?;
        info!(topic = name, from = topic.partitions, to = count, "added partitions");
        Ok(updated)
    }

    fn existing(&self, name: &str) -> Result<Topic, TopicFailure> {
        self.topics.get(name).ok_or_else(|| {
            TopicFailure::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic `{name}` does not exist"),
            )
        })
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut Topic)) -> Result<Topic, TopicFailure> {
        match self.topics.update(name, change) {
            Ok(Ok(topic)) => Ok(topic),
            Ok(Err(e)) => Err(TopicFailure::new(ResponseError::UnknownTopicOrPartition, e.to_string())),
            Err(e) => Err(storage_failure(e)),
        }
    }

    /// Hosts partitions `from..topic.partitions` with the topic's settings.
    pub fn host_partitions(&self, topic: &Topic, from: i32) -> Result<(), TopicFailure> {
        let config = self.settings.topic_log_config(&topic.configs);
        for partition in from..topic.partitions {
            self.replicas
                .ensure(&TopicPartition::new(topic.name.clone(), partition), config.clone())
                .map_err(|e| storage_failure(e.into()))?;
        }
        Ok(())
    }

    /// Hosts every partition of every known topic (at start), applying each topic's settings.
    pub fn host_all(self: &Arc<Self>) -> anyhow::Result<()> {
        for topic in self.topics.all() {
            self.host_partitions(&topic, 0)
                .map_err(|f| anyhow::anyhow!("hosting {}: {}", topic.name, f.message))?;
        }
        Ok(())
    }
}

fn storage_failure(e: anyhow::Error) -> TopicFailure {
    error!(error = %e, "metadata or storage failure");
    TopicFailure::new(ResponseError::KafkaStorageError, e.to_string())
}

/// Kafka's rule: 1 to 249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicFailure> {
    let invalid = |why: &str| {
        TopicFailure::new(
            ResponseError::InvalidTopicException,
            format!("topic name `{name}` {why}"),
        )
    };
    if name.is_empty() {
        return Err(invalid("is empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("is not allowed"));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(invalid("is longer than 249 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "has characters other than ASCII letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for good in ["orders", "a.b_c-d", "X", &"x".repeat(249)] {
            assert!(validate_topic_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "has space", "slash/", "ünïcode", &"x".repeat(250)] {
            assert_eq!(
                validate_topic_name(bad).unwrap_err().error,
                ResponseError::InvalidTopicException,
                "{bad}"
            );
        }
    }
}
