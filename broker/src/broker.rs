//! The broker's shared state and the topic operations several APIs need (create, auto-create, delete).
//!
//! Every API handler gets a `&Broker`. Kafka-visible failures are returned as [`ResponseError`] codes here,
//! in one place, so each API file only copies them into its response.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use kafka_protocol::ResponseError;
use strata_controller::client::ControllerClient;
use strata_controller::proto::controller::{self as pb, write_request::Command};
use strata_controller::proto::metadata::ConfigResourceType;
use strata_controller::{ConfigResource, MetadataImage};
use strata_storage::TopicPartition;
use tracing::{debug, info};
use uuid::Uuid;

use tokio_util::sync::CancellationToken;

use crate::fetch_sessions::FetchSessions;
use crate::groups::Coordinator;
use crate::groups::offsets::{OFFSETS_REPLICATION_FACTOR, OffsetStore};
use crate::metadata::{MetadataView, NodeIdentity, Topic};
use crate::metrics::Metrics;
use crate::producers::ProducerIds;
use crate::replica::{ControllerChannel, ControllerRefusal, IsrChange, ReplicaManager};
use crate::settings::{BrokerSettings, SettingError};

/// Kafka's longest topic name: 249 characters, so `<topic>-<partition>` fits a 255-byte file name.
const TOPIC_NAME_BYTES_MAX: usize = 249;
/// The most partitions one topic may have on this node; a bound on what one request can create.
pub const PARTITIONS_MAX: i32 = 100_000;

/// Where clients reach this broker.
/// A Kafka listener as clients are told to reach it.
#[derive(Debug, Clone)]
pub struct Advertised {
    /// The listener's name (`PLAINTEXT`, `INTERNAL`, ...): a client is answered with the addresses of the
    /// listener it connected to.
    pub name: String,
    pub host: String,
    pub port: i32,
}

/// Shared by every connection.
#[derive(Debug)]
pub struct Broker {
    pub identity: NodeIdentity,
    /// Every Kafka listener of this broker, as registered with the controller.
    pub advertised: Vec<Advertised>,
    /// The settings given at start (`--set`, config file, environment): what dynamic broker configs fall
    /// back to.
    pub static_settings: BrokerSettings,
    /// The settings in force: the static ones with the dynamic broker configs of the metadata over them
    /// (`crate::dynamic`), replaced whole when those change. A std lock: held only to clone the `Arc`.
    pub live_settings: RwLock<Arc<BrokerSettings>>,
    /// This run of the broker process, as registered with the controller.
    pub incarnation: u64,
    /// The cluster metadata, followed from the controllers.
    pub metadata: Arc<MetadataView>,
    /// The active controller, for registration and heartbeats.
    pub controller: Arc<ControllerClient>,
    /// Metadata changes sent to the active controller.
    pub changes: Arc<MetadataChanges>,
    pub producer_ids: ProducerIds,
    /// What clients may hold, across every Kafka listener.
    pub limits: Arc<crate::server::Limits>,
    pub replicas: Arc<ReplicaManager>,
    /// The figures on `/metrics` (shared with the replica manager and the storage engine's flushes).
    pub metrics: Arc<Metrics>,
    pub groups: Arc<Coordinator>,
    pub offsets: Arc<OffsetStore>,
    /// Consumers' fetch sessions (KIP-227).
    pub fetch_sessions: FetchSessions,
    /// Share groups (KIP-932): their members, share sessions and share-partitions.
    pub shares: crate::share::Shares,
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
        // Kafka answers every setting it refuses, unknown, unparsable, out of range or contradicting another,
        // with INVALID_CONFIG and the reason (POLICY_VIOLATION is for a create-topic policy's refusals).
        match e {
            SettingError::Unknown(_)
            | SettingError::Invalid { .. }
            | SettingError::OutOfRange { .. }
            | SettingError::Conflict(_) => Self::new(ResponseError::InvalidConfig, e.to_string()),
        }
    }
}

/// What a new topic should look like; `None` means the broker default.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    pub name: String,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
    pub configs: BTreeMap<String, String>,
    /// A manual replica assignment: the replicas of partition `i` at index `i`, preferred leader first. Set,
    /// it decides the partition count and the replication factor (`partitions` and `replication_factor` are
    /// `None` then), and the controller checks it against the registered brokers.
    pub assignment: Option<Vec<Vec<i32>>>,
}

/// How long a metadata change may take: the controller's answer, and this broker seeing it applied.
const METADATA_CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the answer to a metadata change waits for this broker to act on it (host its new partitions).
const LOCAL_APPLY_WAIT: Duration = Duration::from_secs(2);

/// Sends metadata changes to the active controller and waits until this broker's metadata shows them, so
/// that whoever asked sees the change through this broker at once. Topic operations and the replica
/// manager's ISR changes ([`ControllerChannel`]) go through it.
#[derive(Debug)]
pub struct MetadataChanges {
    pub controller: Arc<ControllerClient>,
    pub metadata: Arc<MetadataView>,
    pub node_id: i32,
    /// This run of the broker, which ISR changes carry.
    pub incarnation: u64,
}

impl MetadataChanges {
    async fn change(&self, command: Command, validate_only: bool) -> Result<(), TopicFailure> {
        let request = pb::WriteRequest {
            command: Some(command),
            validate_only,
        };
        let reply = self
            .controller
            .call_active(METADATA_CHANGE_TIMEOUT, |mut client| {
                let request = request.clone();
                async move { client.write(request).await }
            })
            .await
            .map_err(|e| TopicFailure::new(ResponseError::RequestTimedOut, e.to_string()))?;
        if reply.error_code != 0 {
            let error = i16::try_from(reply.error_code)
                .ok()
                .and_then(ResponseError::try_from_code)
                .unwrap_or(ResponseError::UnknownServerError);
            return Err(TopicFailure::new(error, reply.message));
        }
        let index = reply.metadata_index;
        debug!(index, "metadata change made; waiting to know it");
        if !self.metadata.wait_to_know(index, METADATA_CHANGE_TIMEOUT).await {
            return Err(TopicFailure::new(
                ResponseError::RequestTimedOut,
                format!("the change was applied at metadata index {index} but has not reached this broker"),
            ));
        }
        // Usually the partitions this broker hosts for the change exist a moment later, and the client can
        // use them as soon as it has the answer. Creating thousands of logs takes longer: then the answer
        // does not wait (the change is made), and the client retries what it sends meanwhile, as with Kafka.
        if !self.metadata.wait_for(index, LOCAL_APPLY_WAIT).await {
            info!(index, "answering before this broker has acted on the change");
        }
        Ok(())
    }
}

impl ControllerChannel for MetadataChanges {
    fn alter_partition(
        &self,
        tp: &TopicPartition,
        topic_id: Uuid,
        change: IsrChange,
    ) -> BoxFuture<'_, Result<(), ControllerRefusal>> {
        let command = Command::AlterPartition(pb::AlterPartition {
            broker_id: self.node_id,
            incarnation: self.incarnation,
            topic_id: topic_id.as_bytes().to_vec(),
            partition: tp.partition,
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch,
            isr: change.isr,
        });
        Box::pin(async move {
            self.change(command, false).await.map_err(|f| ControllerRefusal {
                error: f.error,
                message: f.message,
            })
        })
    }
}

impl Broker {
    /// Where consumer-protocol groups' records are written: their partitions of `__consumer_offsets`.
    pub fn group_log(&self) -> crate::groups::offsets::GroupStateLog {
        crate::groups::offsets::GroupStateLog {
            offsets: self.offsets.clone(),
            replicas: self.replicas.clone(),
        }
    }

    pub fn node_id(&self) -> i32 {
        self.identity.node_id
    }

    /// The settings in force now (static settings with the dynamic broker configs over them).
    pub fn settings(&self) -> Arc<BrokerSettings> {
        self.live_settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// This broker's dynamic configs and the cluster-wide ones, as `image` holds them.
    pub fn dynamic_configs<'a>(
        &self,
        image: &'a MetadataImage,
    ) -> (
        Option<&'a strata_controller::Configs>,
        Option<&'a strata_controller::Configs>,
    ) {
        (
            image.configs(&ConfigResource::Broker(String::new())),
            image.configs(&ConfigResource::Broker(self.node_id().to_string())),
        )
    }

    /// Makes the dynamic broker configs of `image` the settings in force, if they differ from those of
    /// `previous`. Returns whether they did (and so every hosted log needs its settings again).
    pub fn apply_dynamic_configs(&self, previous: &MetadataImage, image: &MetadataImage) -> bool {
        if self.dynamic_configs(previous) == self.dynamic_configs(image) {
            return false;
        }
        let (cluster, node) = self.dynamic_configs(image);
        let settings = crate::dynamic::effective(&self.static_settings, cluster, node);
        info!(cluster_wide = ?cluster, this_broker = ?node, "dynamic broker configs changed");
        *self.live_settings.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(settings);
        true
    }

    async fn change_metadata(&self, command: Command, validate_only: bool) -> Result<(), TopicFailure> {
        self.changes.change(command, validate_only).await
    }

    /// Checks a new topic here (name, counts, settings), then has the controller create it (unless
    /// `validate_only`) and waits until this broker knows it.
    pub async fn create_topic(&self, new: NewTopic, validate_only: bool) -> Result<Topic, TopicFailure> {
        validate_topic_name(&new.name)?;
        let settings = self.settings();
        let assigned = new.assignment.as_ref();
        let partitions = match assigned {
            Some(assignment) => i32::try_from(assignment.len()).unwrap_or(i32::MAX),
            None => new.partitions.unwrap_or(settings.num_partitions),
        };
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(TopicFailure::new(
                ResponseError::InvalidPartitions,
                format!("a topic has 1 to {PARTITIONS_MAX} partitions, not {partitions}"),
            ));
        }
        let replication_factor = match assigned {
            Some(assignment) => assignment.first().map_or(0, |replicas| replicas.len() as i16),
            None => new.replication_factor.unwrap_or(settings.default_replication_factor),
        };
        if replication_factor < 1 {
            return Err(TopicFailure::new(
                ResponseError::InvalidReplicationFactor,
                format!("replication factor {replication_factor} is below 1"),
            ));
        }
        settings.validate_topic_settings(&new.configs)?;
        if self.metadata.get(&new.name).is_some() {
            return Err(TopicFailure::new(
                ResponseError::TopicAlreadyExists,
                format!("topic `{}` already exists", new.name),
            ));
        }
        let command = Command::CreateTopic(pb::CreateTopic {
            name: new.name.clone(),
            partitions,
            replication_factor: i32::from(replication_factor),
            configs: new.configs.clone().into_iter().collect(),
            assignments: broker_ids(new.assignment.as_deref().unwrap_or_default()),
        });
        self.change_metadata(command, validate_only).await?;
        if validate_only {
            return Ok(Topic {
                name: new.name,
                id: Uuid::nil(),
                partitions,
                replication_factor,
                configs: new.configs,
            });
        }
        info!(topic = %new.name, partitions, replication_factor, "created topic");
        self.metadata
            .get(&new.name)
            .ok_or_else(|| TopicFailure::new(ResponseError::UnknownTopicOrPartition, "deleted again at once"))
    }

    /// Creates the internal topic `name` (`__consumer_offsets`, `__share_group_state`) if it does not exist:
    /// `partitions` partitions, compacted, with `offsets.topic.replication.factor` replicas once that many
    /// brokers are live (until then `COORDINATOR_NOT_AVAILABLE`, as on Kafka), or, when that is not set, up to
    /// three, bounded by the live brokers.
    pub async fn ensure_internal_topic(&self, name: &str, partitions: i32) -> Result<(), ResponseError> {
        if self.metadata.get(name).is_some() {
            return Ok(());
        }
        let live = self.metadata.image().brokers().values().filter(|b| !b.fenced).count();
        let replication_factor = match self.settings().offsets_topic_replication_factor {
            Some(wanted) if live < wanted as usize => {
                // Clients retry FindCoordinator every few hundred ms: not an error worth a line each time.
                debug!(
                    live,
                    wanted,
                    topic = name,
                    "an internal topic waits for more live brokers"
                );
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            Some(wanted) => wanted,
            None => live.clamp(1, OFFSETS_REPLICATION_FACTOR) as i16,
        };
        let new = NewTopic {
            name: name.into(),
            partitions: Some(partitions),
            replication_factor: Some(replication_factor),
            configs: [("cleanup.policy".to_owned(), "compact".to_owned())].into(),
            assignment: None,
        };
        match self.create_topic(new, false).await {
            Ok(_) => Ok(()),
            Err(failure) if failure.error == ResponseError::TopicAlreadyExists => Ok(()),
            Err(failure) => {
                tracing::error!(error = %failure.message, topic = name, "creating an internal topic failed");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    /// Creates `name` with the broker defaults if it does not exist and auto-creation is on. Returns the
    /// topic if it exists afterwards.
    pub async fn auto_create(&self, name: &str) -> Result<Option<Topic>, TopicFailure> {
        if let Some(topic) = self.metadata.get(name) {
            return Ok(Some(topic));
        }
        if !self.settings().auto_create_topics {
            return Ok(None);
        }
        let new = NewTopic {
            name: name.to_owned(),
            ..NewTopic::default()
        };
        match self.create_topic(new, false).await {
            Ok(topic) => Ok(Some(topic)),
            // Another connection, or another broker, created it first.
            Err(f) if f.error == ResponseError::TopicAlreadyExists => Ok(self.metadata.get(name)),
            Err(f) => Err(f),
        }
    }

    /// Deletes a topic; every broker deletes its logs when the metadata reaches it.
    pub async fn delete_topic(&self, name: &str) -> Result<Topic, TopicFailure> {
        let topic = self.existing(name)?;
        self.change_metadata(Command::DeleteTopic(pb::DeleteTopic { name: name.to_owned() }), false)
            .await?;
        info!(topic = name, "deleted topic");
        Ok(topic)
    }

    /// The settings `resource` has of its own (a topic's overrides, a broker's or the cluster's dynamic
    /// configs, a group's configs). A topic must exist; brokers and groups have none until some are set.
    pub fn configs_of(&self, resource: &ConfigResource) -> Result<BTreeMap<String, String>, TopicFailure> {
        if let ConfigResource::Topic(name) = resource {
            return Ok(self.existing(name)?.configs);
        }
        Ok(self.metadata.image().configs(resource).cloned().unwrap_or_default())
    }

    /// Replaces the settings of `resource` with `configs` (each validated first, as its kind of resource
    /// requires). Nothing changes if any setting is refused or with `validate_only`. Every broker applies the
    /// new settings when the metadata reaches it.
    pub async fn set_configs(
        &self,
        resource: &ConfigResource,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicFailure> {
        let current = self.configs_of(resource)?;
        let (resource_type, name) = match resource {
            ConfigResource::Topic(name) => {
                self.settings().validate_topic_settings(&configs)?;
                (ConfigResourceType::Topic, name)
            }
            ConfigResource::Broker(name) => {
                crate::dynamic::validate_broker(&self.static_settings, name, &configs)?;
                (ConfigResourceType::Broker, name)
            }
            ConfigResource::Group(name) => {
                crate::dynamic::validate_group(&configs)?;
                (ConfigResourceType::Group, name)
            }
        };
        let remove = current
            .keys()
            .filter(|key| !configs.contains_key(*key))
            .cloned()
            .collect();
        let command = Command::SetConfigs(pb::SetConfigs {
            resource_type: resource_type.into(),
            resource_name: name.to_owned(),
            set: configs.clone().into_iter().collect(),
            remove,
        });
        self.change_metadata(command, validate_only).await?;
        if !validate_only {
            info!(resource = ?resource, configs = ?configs, "settings changed");
        }
        Ok(())
    }

    /// Grows a topic to `count` partitions, placed by the controller or, with `assignment`, on the replicas
    /// it gives for each new partition. Kafka never shrinks a topic.
    pub async fn add_partitions(
        &self,
        name: &str,
        count: i32,
        assignment: Option<&[Vec<i32>]>,
        validate_only: bool,
    ) -> Result<Topic, TopicFailure> {
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
        if let Some(assignment) = assignment
            && assignment.len() as i64 != i64::from(count) - i64::from(topic.partitions)
        {
            return Err(TopicFailure::new(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "{} partitions are added to `{name}`, but {} assignments were given",
                    count - topic.partitions,
                    assignment.len()
                ),
            ));
        }
        let command = Command::CreatePartitions(pb::CreatePartitions {
            name: name.to_owned(),
            count,
            assignments: broker_ids(assignment.unwrap_or_default()),
        });
        self.change_metadata(command, validate_only).await?;
        if validate_only {
            return Ok(Topic {
                partitions: count,
                ..topic
            });
        }
        info!(topic = name, from = topic.partitions, to = count, "added partitions");
        self.existing(name)
    }

    fn existing(&self, name: &str) -> Result<Topic, TopicFailure> {
        self.metadata.get(name).ok_or_else(|| {
            TopicFailure::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic `{name}` does not exist"),
            )
        })
    }
}

/// A replica assignment as the controller's request carries it.
fn broker_ids(assignment: &[Vec<i32>]) -> Vec<strata_controller::proto::metadata::BrokerIds> {
    assignment
        .iter()
        .map(|ids| strata_controller::proto::metadata::BrokerIds { ids: ids.clone() })
        .collect()
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
