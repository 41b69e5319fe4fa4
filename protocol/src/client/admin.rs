//! Typed helpers for the admin side of Kafka: topics, partitions, configs, offsets, the cluster, consumer
//! groups.
//!
//! Each helper fills the request for the negotiated version, turns error codes into
//! [`ClientError::Kafka`] with what was being done, and returns plain Rust types.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_quorum_request;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ConsumerGroupDescribeRequest, ConsumerProtocolAssignment, CreatePartitionsRequest,
    CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, DescribeQuorumRequest, FindCoordinatorRequest, GroupId,
    IncrementalAlterConfigsRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use uuid::Uuid;

use super::{Client, ClientError, Result, check};

/// How long the broker may take over an admin operation.
const ADMIN_TIMEOUT_MS: i32 = 30_000;
/// Kafka's `ConfigResource.Type` for topics.
const RESOURCE_TOPIC: i8 = 2;
/// FindCoordinator's key type for consumer groups (1 is transactions).
const KEY_TYPE_GROUP: i8 = 0;
/// Kafka's `AlterConfigOp.OpType` codes.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// The cluster as Metadata describes it.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerMetadata>,
    pub topics: Vec<TopicMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TopicMetadata {
    pub name: String,
    pub id: Uuid,
    pub internal: bool,
    /// Set when the broker could not describe the topic (it does not exist, for one).
    pub error: Option<ResponseError>,
    pub partitions: Vec<PartitionMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub index: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
    pub error: Option<ResponseError>,
}

impl Metadata {
    /// The description of `topic`, which must be in it without an error. Partitions come sorted by index.
    pub fn topic(&self, topic: &str) -> Result<TopicMetadata> {
        let found = self
            .topics
            .iter()
            .find(|t| t.name == topic)
            .ok_or_else(|| ClientError::Kafka {
                context: format!("topic {topic}"),
                error: ResponseError::UnknownTopicOrPartition,
                message: Some("the broker did not describe it".into()),
            })?;
        found.check()?;
        let mut topic_metadata = found.clone();
        topic_metadata.partitions.sort_by_key(|p| p.index);
        Ok(topic_metadata)
    }
}

impl TopicMetadata {
    /// The error the broker answered for the topic, if any, as [`ClientError::Kafka`].
    pub fn check(&self) -> Result<()> {
        let Some(error) = self.error else {
            return Ok(());
        };
        let message = (error == ResponseError::UnknownTopicOrPartition).then(|| "it does not exist".into());
        Err(ClientError::Kafka {
            context: format!("topic {}", self.name),
            error,
            message,
        })
    }
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// `-1`: the broker's `num.partitions`.
    pub partitions: i32,
    /// `-1`: the broker's `default.replication.factor`.
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

/// Where a config value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic (a per-topic override).
    Topic,
    DynamicBroker,
    DynamicDefaultBroker,
    StaticBroker,
    Default,
    Other(i8),
}

impl From<i8> for ConfigSource {
    fn from(code: i8) -> Self {
        match code {
            1 => ConfigSource::Topic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            other => ConfigSource::Other(other),
        }
    }
}

/// One config of a described resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    /// `None` for a sensitive or unset value.
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
}

/// A change to a topic's configs (IncrementalAlterConfigs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    Set(String, String),
    /// Removes the override, so the broker default applies again.
    Delete(String),
}

/// Which offset ListOffsets looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset: where the next record will go.
    Latest,
    /// The first offset whose record's timestamp is at or after this many milliseconds since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    fn code(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

/// A ListOffsets answer for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    pub partition: i32,
    /// `None` when no record qualifies (a timestamp after every record's).
    pub offset: Option<i64>,
    /// The record's timestamp for a timestamp lookup.
    pub timestamp: Option<i64>,
}

/// The cluster as DescribeCluster describes it.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub cluster_id: String,
    pub controller_id: i32,
    pub brokers: Vec<BrokerMetadata>,
}

/// The cluster as DescribeCluster describes it, fenced brokers included where the broker can say
/// ([`Client::describe_cluster_with_fenced`]).
#[derive(Debug, Clone)]
pub struct ClusterDescription {
    pub cluster_id: String,
    pub controller_id: i32,
    pub brokers: Vec<ClusterBroker>,
    /// Whether fenced brokers are listed: only brokers that speak DescribeCluster v2 (KIP-1073) list them;
    /// older ones leave them out and `brokers` is then only the live ones.
    pub fenced_listed: bool,
}

/// One broker of [`ClusterDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterBroker {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Registered but fenced: it leads no partition and is in no ISR (usually: starting, or stopped
    /// without deregistering).
    pub fenced: bool,
}

/// The controller quorum as DescribeQuorum describes it (the metadata log, `__cluster_metadata-0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    /// `None` when the answering controller knows no leader.
    pub leader_id: Option<i32>,
    /// The leader's epoch (for a Raft quorum, its term).
    pub leader_epoch: i32,
    /// The committed position of the metadata log; `None` when unknown.
    pub high_watermark: Option<i64>,
    pub voters: Vec<QuorumVoter>,
    /// Replicas that follow the log without voting; Kafka lists its brokers here.
    pub observers: Vec<QuorumVoter>,
}

/// A voter (or observer) of [`QuorumDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    pub id: i32,
    /// How far its log is known to reach; `None` when the leader does not know.
    pub log_end_offset: Option<i64>,
    /// `HOST:PORT` of its first listener; only DescribeQuorum v2 (KIP-853) gives addresses.
    pub address: Option<String>,
}

impl QuorumVoter {
    /// How far the voter is behind the high watermark (0 for one at or past it); `None` when either is
    /// unknown.
    pub fn lag(&self, high_watermark: Option<i64>) -> Option<i64> {
        Some((high_watermark? - self.log_end_offset?).max(0))
    }
}

/// The topic Kafka names its metadata log by; DescribeQuorum asks about its one partition, 0.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

impl Client {
    /// Describes the cluster and `topics` (`None`: every topic). With `auto_create`, a named topic that
    /// does not exist is created if the broker's `auto.create.topics.enable` allows, as producers do.
    pub async fn metadata(&mut self, topics: Option<&[&str]>, auto_create: bool) -> Result<Metadata> {
        let request = MetadataRequest::default().with_topics(topics.map(|names| {
            names
                .iter()
                .map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name))))
                .collect()
        }));
        let version = self.version::<MetadataRequest>()?;
        // Before v4 the flag does not exist (the broker's setting alone decides) and must keep its default.
        let request = request.with_allow_auto_topic_creation(auto_create || version < 4);
        // v0 reads an empty list as "all topics"; later versions take null.
        let request = if version == 0 && request.topics.is_none() {
            request.with_topics(Some(Vec::new()))
        } else {
            request
        };
        let response = self.send_at(request, version).await?;
        let brokers = response
            .brokers
            .into_iter()
            .map(|b| BrokerMetadata {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.map(|r| r.to_string()),
            })
            .collect();
        let ids = |nodes: Vec<BrokerId>| nodes.into_iter().map(|n| n.0).collect();
        let topics = response
            .topics
            .into_iter()
            .map(|t| TopicMetadata {
                name: t.name.map(|n| n.0.to_string()).unwrap_or_default(),
                id: t.topic_id,
                internal: t.is_internal,
                error: ResponseError::try_from_code(t.error_code),
                partitions: t
                    .partitions
                    .into_iter()
                    .map(|p| PartitionMetadata {
                        index: p.partition_index,
                        leader: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        replicas: ids(p.replica_nodes),
                        isr: ids(p.isr_nodes),
                        offline_replicas: ids(p.offline_replicas),
                        error: ResponseError::try_from_code(p.error_code),
                    })
                    .collect(),
            })
            .collect();
        Ok(Metadata {
            cluster_id: response.cluster_id.map(|c| c.to_string()),
            controller_id: response.controller_id.0,
            brokers,
            topics,
        })
    }

    /// Describes one topic, which must exist unless `auto_create` (see [`metadata`](Self::metadata)) makes
    /// it. Partitions come sorted by index.
    pub async fn topic_metadata(&mut self, topic: &str, auto_create: bool) -> Result<TopicMetadata> {
        self.metadata(Some(&[topic]), auto_create).await?.topic(topic)
    }

    /// Creates a topic.
    pub async fn create_topic(&mut self, topic: &NewTopic) -> Result<()> {
        let configs = topic
            .configs
            .iter()
            .map(|(name, value)| {
                CreatableTopicConfig::default()
                    .with_name(str_bytes(name))
                    .with_value(Some(str_bytes(value)))
            })
            .collect();
        let request = CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(topic_name(&topic.name))
                    .with_num_partitions(topic.partitions)
                    .with_replication_factor(topic.replication_factor)
                    .with_configs(configs),
            ])
            .with_timeout_ms(ADMIN_TIMEOUT_MS);
        let response = self.send(request).await?;
        for result in response.topics {
            check(result.error_code, result.error_message.as_ref(), || {
                format!("creating topic {}", topic.name)
            })?;
        }
        Ok(())
    }

    /// Deletes a topic by name.
    pub async fn delete_topic(&mut self, topic: &str) -> Result<()> {
        let version = self.version::<DeleteTopicsRequest>()?;
        let request = DeleteTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS);
        // v6 names topics in a list of (name, id) states; earlier versions in a list of names.
        let request = if version >= 6 {
            request.with_topics(vec![DeleteTopicState::default().with_name(Some(topic_name(topic)))])
        } else {
            request.with_topic_names(vec![topic_name(topic)])
        };
        let response = self.send_at(request, version).await?;
        for result in response.responses {
            check(result.error_code, result.error_message.as_ref(), || {
                format!("deleting topic {topic}")
            })?;
        }
        Ok(())
    }

    /// Grows a topic to `count` partitions in all.
    pub async fn create_partitions(&mut self, topic: &str, count: i32) -> Result<()> {
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(topic_name(topic))
                    .with_count(count)
                    // Null lets the broker place the new partitions; an empty list (the default) would be a
                    // manual assignment of none of them.
                    .with_assignments(None),
            ])
            .with_timeout_ms(ADMIN_TIMEOUT_MS);
        let response = self.send(request).await?;
        for result in response.results {
            check(result.error_code, result.error_message.as_ref(), || {
                format!("growing topic {topic} to {count} partitions")
            })?;
        }
        Ok(())
    }

    /// Every config of a topic, with where its value comes from.
    pub async fn describe_topic_configs(&mut self, topic: &str) -> Result<Vec<ConfigEntry>> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes(topic))
                // Null asks for every config; `kafka-protocol`'s default, an empty list, for none.
                .with_configuration_keys(None),
        ]);
        let response = self.send(request).await?;
        let mut entries = Vec::new();
        for result in response.results {
            check(result.error_code, result.error_message.as_ref(), || {
                format!("describing the configs of topic {topic}")
            })?;
            entries.extend(result.configs.into_iter().map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: ConfigSource::from(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            }));
        }
        Ok(entries)
    }

    /// Sets and removes topic config overrides, leaving the others as they are.
    pub async fn alter_topic_configs(&mut self, topic: &str, changes: &[ConfigChange]) -> Result<()> {
        let configs = changes
            .iter()
            .map(|change| match change {
                ConfigChange::Set(name, value) => AlterableConfig::default()
                    .with_name(str_bytes(name))
                    .with_config_operation(OP_SET)
                    .with_value(Some(str_bytes(value))),
                ConfigChange::Delete(name) => AlterableConfig::default()
                    .with_name(str_bytes(name))
                    .with_config_operation(OP_DELETE)
                    .with_value(None),
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes(topic))
                .with_configs(configs),
        ]);
        let response = self.send(request).await?;
        for result in response.responses {
            check(result.error_code, result.error_message.as_ref(), || {
                format!("altering the configs of topic {topic}")
            })?;
        }
        Ok(())
    }

    /// Looks up an offset in each of `partitions` of `topic`, answered in the order asked.
    pub async fn list_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<Vec<ListedOffset>> {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|&p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(p)
                                    .with_current_leader_epoch(-1)
                                    .with_timestamp(spec.code())
                            })
                            .collect(),
                    ),
            ]);
        let response = self.send(request).await?;
        let mut answers = Vec::with_capacity(partitions.len());
        for topic_response in response.topics {
            for p in topic_response.partitions {
                check(p.error_code, None, || {
                    format!("listing offsets of {topic}-{}", p.partition_index)
                })?;
                answers.push(ListedOffset {
                    partition: p.partition_index,
                    offset: (p.offset >= 0).then_some(p.offset),
                    timestamp: (p.timestamp >= 0).then_some(p.timestamp),
                });
            }
        }
        // In the order asked (a map, not a search per comparison: a request may name 10,000 partitions).
        let asked: std::collections::HashMap<i32, usize> =
            partitions.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        answers.sort_by_key(|a| asked.get(&a.partition).copied());
        if answers.len() != partitions.len() {
            return Err(ClientError::Protocol {
                api_key: kafka_protocol::messages::ApiKey::ListOffsets,
                version: self.version::<ListOffsetsRequest>()?,
                reason: format!("{} answers for {} partitions", answers.len(), partitions.len()),
            });
        }
        Ok(answers)
    }

    /// Deletes the records of `topic`'s partitions before the given offsets (`(partition, offset)`;
    /// offset `-1` means the high watermark). Returns each partition's new log start offset.
    pub async fn delete_records(&mut self, topic: &str, before: &[(i32, i64)]) -> Result<Vec<(i32, i64)>> {
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_topics(vec![
                DeleteRecordsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        before
                            .iter()
                            .map(|&(p, offset)| {
                                DeleteRecordsPartition::default()
                                    .with_partition_index(p)
                                    .with_offset(offset)
                            })
                            .collect(),
                    ),
            ]);
        let response = self.send(request).await?;
        let mut low_watermarks = Vec::new();
        for topic_response in response.topics {
            for p in topic_response.partitions {
                check(p.error_code, None, || {
                    format!("deleting records of {topic}-{}", p.partition_index)
                })?;
                low_watermarks.push((p.partition_index, p.low_watermark));
            }
        }
        Ok(low_watermarks)
    }

    /// The cluster id, controller and live brokers.
    pub async fn describe_cluster(&mut self) -> Result<Cluster> {
        let described = self.describe_cluster_with_fenced().await?;
        Ok(Cluster {
            cluster_id: described.cluster_id,
            controller_id: described.controller_id,
            brokers: described
                .brokers
                .into_iter()
                .filter(|b| !b.fenced)
                .map(|b| BrokerMetadata {
                    node_id: b.node_id,
                    host: b.host,
                    port: b.port,
                    rack: b.rack,
                })
                .collect(),
        })
    }

    /// The cluster id, controller and every registered broker with its rack and whether it is fenced.
    /// Brokers older than DescribeCluster v2 list only the live ones ([`ClusterDescription::fenced_listed`]).
    pub async fn describe_cluster_with_fenced(&mut self) -> Result<ClusterDescription> {
        let fenced_listed = self.version::<DescribeClusterRequest>()? >= 2;
        let request = DescribeClusterRequest::default().with_include_fenced_brokers(fenced_listed);
        let response = self.send(request).await?;
        check(response.error_code, response.error_message.as_ref(), || {
            "describing the cluster".into()
        })?;
        Ok(ClusterDescription {
            cluster_id: response.cluster_id.to_string(),
            controller_id: response.controller_id.0,
            brokers: response
                .brokers
                .into_iter()
                .map(|b| ClusterBroker {
                    node_id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                    fenced: b.is_fenced,
                })
                .collect(),
            fenced_listed,
        })
    }

    /// DescribeCluster, asking for fenced brokers too when `include_fenced` (which needs v2).
    /// The controller quorum: leader, epoch, high watermark and each voter's position (DescribeQuorum on
    /// `__cluster_metadata-0`). A broker that cannot reach the controllers answers an error (Strata and
    /// Kafka: RequestTimedOut), as does a quorum without a leader (NotLeaderOrFollower).
    pub async fn describe_quorum(&mut self) -> Result<QuorumDescription> {
        let request = DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(topic_name(METADATA_TOPIC))
                .with_partitions(vec![
                    describe_quorum_request::PartitionData::default().with_partition_index(0),
                ]),
        ]);
        let version = self.version::<DescribeQuorumRequest>()?;
        let response = self.send_at(request, version).await?;
        let context = || "describing the controller quorum".to_owned();
        check(response.error_code, response.error_message.as_ref(), context)?;
        let partition = response
            .topics
            .into_iter()
            .filter(|t| t.topic_name.0.as_str() == METADATA_TOPIC)
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == 0)
            .ok_or_else(|| ClientError::Protocol {
                api_key: ApiKey::DescribeQuorum,
                version,
                reason: format!("{METADATA_TOPIC}-0 is not in the response"),
            })?;
        check(partition.error_code, partition.error_message.as_ref(), context)?;
        // v2 gives each node's listeners; the first is where it is reached.
        let address = |id: i32| {
            let node = response.nodes.iter().find(|n| n.node_id.0 == id)?;
            let listener = node.listeners.first()?;
            let host = listener.host.as_str();
            Some(if host.contains(':') {
                format!("[{host}]:{}", listener.port)
            } else {
                format!("{host}:{}", listener.port)
            })
        };
        let replicas = |states: Vec<kafka_protocol::messages::describe_quorum_response::ReplicaState>| {
            states
                .into_iter()
                .map(|r| QuorumVoter {
                    id: r.replica_id.0,
                    log_end_offset: (r.log_end_offset >= 0).then_some(r.log_end_offset),
                    address: address(r.replica_id.0),
                })
                .collect()
        };
        Ok(QuorumDescription {
            leader_id: (partition.leader_id.0 >= 0).then_some(partition.leader_id.0),
            leader_epoch: partition.leader_epoch,
            high_watermark: (partition.high_watermark >= 0).then_some(partition.high_watermark),
            voters: replicas(partition.current_voters),
            observers: replicas(partition.observers),
        })
    }
}

/// A group as ListGroups lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    /// `consumer` for consumer groups; empty for groups that only commit offsets.
    pub protocol_type: String,
    /// `Empty`, `Stable`, …; `None` from brokers older than ListGroups v4, which do not say.
    pub state: Option<String>,
    /// `classic`, `consumer` (KIP-848) or `share` (KIP-932); `None` from brokers older than ListGroups v5.
    pub group_type: Option<String>,
}

/// A consumer-protocol group (KIP-848) as ConsumerGroupDescribe describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupDescription {
    pub group_id: String,
    /// `Empty`, `Assigning`, `Reconciling` or `Stable`.
    pub state: String,
    pub epoch: i32,
    pub assignment_epoch: i32,
    /// The server-side assignor (`uniform`, `range`).
    pub assignor: String,
    pub members: Vec<ConsumerGroupMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub subscribed_topics: Vec<String>,
    pub subscribed_regex: Option<String>,
    /// Partitions by topic name: what the member owns now, and what the coordinator means it to own.
    pub assignment: BTreeMap<String, Vec<i32>>,
    pub target: BTreeMap<String, Vec<i32>>,
}

/// A group as DescribeGroups describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable` or `Dead` (a group the coordinator
    /// does not know).
    pub state: String,
    pub protocol_type: String,
    /// The chosen protocol: for consumer groups, the assignor (`range`, `cooperative-sticky`, …).
    pub protocol: String,
    pub members: Vec<GroupMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The member's subscription, in the format of the group's protocol type.
    pub metadata: Bytes,
    /// The member's assignment, in the format of the group's protocol type; for consumer groups
    /// [`decode_consumer_assignment`] reads it.
    pub assignment: Bytes,
}

/// A group's committed offset for one partition (OffsetFetch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    /// `None` when the group has committed nothing for the partition.
    pub offset: Option<i64>,
    pub leader_epoch: Option<i32>,
    pub metadata: Option<String>,
}

/// The partitions of a consumer-protocol assignment (`ConsumerProtocolAssignment` v0–v3: an `i16` version,
/// then topics with their partitions, then user data), as `(topic, partitions)`. Empty bytes are an empty
/// assignment (a member that has not synced yet). A version newer than 3 is read as v3, whose fields it
/// starts with, as Kafka's clients read it.
pub fn decode_consumer_assignment(bytes: &Bytes) -> Result<Vec<(String, Vec<i32>)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut buf = bytes.clone();
    if buf.len() < 2 {
        return Err("truncated consumer-protocol assignment".into());
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    if version < 0 {
        return Err(format!("consumer-protocol assignment version {version}"));
    }
    let _ = bytes::Buf::get_i16(&mut buf);
    let assignment = ConsumerProtocolAssignment::decode(&mut buf, version.min(3))
        .map_err(|e| format!("malformed consumer-protocol assignment: {e}"))?;
    Ok(assignment
        .assigned_partitions
        .into_iter()
        .map(|tp| (tp.topic.0.to_string(), tp.partitions))
        .collect())
}

impl Client {
    /// The coordinator of a consumer group (FindCoordinator, key type 0), at the address it is reached.
    /// While the group's coordinator is not known (being elected, or `__consumer_offsets` being created)
    /// the broker answers CoordinatorNotAvailable.
    pub async fn find_coordinator(&mut self, group: &str) -> Result<BrokerMetadata> {
        let version = self.version::<FindCoordinatorRequest>()?;
        let request = FindCoordinatorRequest::default().with_key_type(KEY_TYPE_GROUP);
        let context = || format!("finding the coordinator of group {group}");
        // v4 asks for a list of keys; earlier versions for one.
        let (node_id, host, port) = if version >= 4 {
            let request = request.with_coordinator_keys(vec![str_bytes(group)]);
            let response = self.send_at(request, version).await?;
            let found = response
                .coordinators
                .into_iter()
                .find(|c| c.key.as_str() == group)
                .ok_or_else(|| ClientError::Protocol {
                    api_key: ApiKey::FindCoordinator,
                    version,
                    reason: format!("group {group} is not in the response"),
                })?;
            check(found.error_code, found.error_message.as_ref(), context)?;
            (found.node_id, found.host, found.port)
        } else {
            let response = self.send_at(request.with_key(str_bytes(group)), version).await?;
            check(response.error_code, response.error_message.as_ref(), context)?;
            (response.node_id, response.host, response.port)
        };
        Ok(BrokerMetadata {
            node_id: node_id.0,
            host: host.to_string(),
            port,
            rack: None,
        })
    }

    /// Every group the broker coordinates, with its state where the broker says it (ListGroups v4+).
    pub async fn list_groups(&mut self) -> Result<Vec<ListedGroup>> {
        let version = self.version::<ListGroupsRequest>()?;
        // No filter: every state (v4+) and every type (v5+).
        let request = ListGroupsRequest::default()
            .with_states_filter(Vec::new())
            .with_types_filter(Vec::new());
        let response = self.send_at(request, version).await?;
        check(response.error_code, None, || "listing groups".into())?;
        Ok(response
            .groups
            .into_iter()
            .map(|g| ListedGroup {
                group_id: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: (version >= 4).then(|| g.group_state.to_string()),
                group_type: (version >= 5).then(|| g.group_type.to_string()),
            })
            .collect())
    }

    /// Describes one consumer-protocol group (ConsumerGroupDescribe). `None` if the coordinator says it is
    /// not one (`GROUP_ID_NOT_FOUND`: a classic group, or none at all).
    pub async fn describe_consumer_group(&mut self, group: &str) -> Result<Option<ConsumerGroupDescription>> {
        let request = ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(str_bytes(group))])
            .with_include_authorized_operations(false);
        let response = self.send(request).await?;
        let described =
            self.described::<ConsumerGroupDescribeRequest, _>(response.groups, |g| g.group_id.0.as_str(), group)?;
        if described.error_code == ResponseError::GroupIdNotFound.code() {
            return Ok(None);
        }
        check(described.error_code, described.error_message.as_ref(), || {
            format!("describing consumer group {group}")
        })?;
        let by_name = |assignment: kafka_protocol::messages::consumer_group_describe_response::Assignment| {
            assignment
                .topic_partitions
                .into_iter()
                .map(|t| (t.topic_name.0.to_string(), t.partitions))
                .collect::<BTreeMap<String, Vec<i32>>>()
        };
        Ok(Some(ConsumerGroupDescription {
            group_id: group.to_owned(),
            state: described.group_state.to_string(),
            epoch: described.group_epoch,
            assignment_epoch: described.assignment_epoch,
            assignor: described.assignor_name.to_string(),
            members: described
                .members
                .into_iter()
                .map(|m| ConsumerGroupMember {
                    member_id: m.member_id.to_string(),
                    instance_id: m.instance_id.map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    epoch: m.member_epoch,
                    subscribed_topics: m.subscribed_topic_names.into_iter().map(|t| t.0.to_string()).collect(),
                    subscribed_regex: m.subscribed_topic_regex.map(|r| r.to_string()),
                    assignment: by_name(m.assignment),
                    target: by_name(m.target_assignment),
                })
                .collect(),
        }))
    }

    /// Describes one group. A group the coordinator does not know comes back in state `Dead` (or, from
    /// DescribeGroups v6 brokers, as the error GroupIdNotFound).
    pub async fn describe_group(&mut self, group: &str) -> Result<GroupDescription> {
        let request = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(str_bytes(group))])
            .with_include_authorized_operations(false);
        let response = self.send(request).await?;
        let described =
            self.described::<DescribeGroupsRequest, _>(response.groups, |g| g.group_id.0.as_str(), group)?;
        check(described.error_code, described.error_message.as_ref(), || {
            format!("describing group {group}")
        })?;
        Ok(GroupDescription {
            group_id: group.to_owned(),
            state: described.group_state.to_string(),
            protocol_type: described.protocol_type.to_string(),
            protocol: described.protocol_data.to_string(),
            members: described
                .members
                .into_iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    instance_id: m.group_instance_id.map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    metadata: m.member_metadata,
                    assignment: m.member_assignment,
                })
                .collect(),
        })
    }

    /// A group's committed offsets: for `topics` (`(topic, partitions)`; a partition without a commit comes
    /// back with offset `None`), or, with `None`, for every partition the group has committed.
    pub async fn fetch_committed_offsets(
        &mut self,
        group: &str,
        topics: Option<&[(&str, &[i32])]>,
    ) -> Result<Vec<CommittedOffset>> {
        let version = self.version::<OffsetFetchRequest>()?;
        let context = || format!("fetching the committed offsets of group {group}");
        // Both response layouts carry the same per-partition fields under different type names.
        let take = |offsets: &mut Vec<CommittedOffset>,
                    topic: &TopicName,
                    partition: i32,
                    (error, offset, epoch, metadata): (i16, i64, i32, Option<StrBytes>)|
         -> Result<()> {
            check(error, None, || format!("{} for {}-{}", context(), topic.0, partition))?;
            offsets.push(CommittedOffset {
                topic: topic.0.to_string(),
                partition,
                offset: (offset >= 0).then_some(offset),
                leader_epoch: (epoch >= 0).then_some(epoch),
                metadata: metadata.map(|m| m.to_string()),
            });
            Ok(())
        };
        let mut offsets = Vec::new();
        // v8 asks for a list of groups; earlier versions for one. Null topics ask for everything committed.
        if version >= 8 {
            let wanted = topics.map(|topics| {
                topics
                    .iter()
                    .map(|(name, partitions)| {
                        OffsetFetchRequestTopics::default()
                            .with_name(topic_name(name))
                            .with_partition_indexes(partitions.to_vec())
                    })
                    .collect()
            });
            let request = OffsetFetchRequest::default()
                .with_require_stable(false)
                .with_groups(vec![
                    OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(str_bytes(group)))
                        // A classic-protocol admin fetch: no member.
                        .with_member_id(None)
                        .with_member_epoch(-1)
                        .with_topics(wanted),
                ]);
            let response = self.send_at(request, version).await?;
            for g in response.groups {
                check(g.error_code, None, context)?;
                for t in g.topics {
                    for p in t.partitions {
                        let fields = (p.error_code, p.committed_offset, p.committed_leader_epoch, p.metadata);
                        take(&mut offsets, &t.name, p.partition_index, fields)?;
                    }
                }
            }
        } else {
            let wanted = topics.map(|topics| {
                topics
                    .iter()
                    .map(|(name, partitions)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(topic_name(name))
                            .with_partition_indexes(partitions.to_vec())
                    })
                    .collect()
            });
            let request = OffsetFetchRequest::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_topics(wanted);
            // require_stable exists from v7 and keeps its default (false) before.
            let response = self.send_at(request, version).await?;
            check(response.error_code, None, context)?;
            for t in response.topics {
                for p in t.partitions {
                    let fields = (p.error_code, p.committed_offset, p.committed_leader_epoch, p.metadata);
                    take(&mut offsets, &t.name, p.partition_index, fields)?;
                }
            }
        }
        Ok(offsets)
    }

    /// Commits `offsets` (`(topic, partition, offset)`) for `group` as an admin tool does: outside any
    /// generation (generation -1, no member id), which a coordinator accepts only while the group has no
    /// members; otherwise it answers UnknownMemberId.
    pub async fn commit_group_offsets(&mut self, group: &str, offsets: &[(&str, i32, i64)]) -> Result<()> {
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for &(topic, partition, offset) in offsets {
            let entry = OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(StrBytes::default()));
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(entry),
                None => topics.push(
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(vec![entry]),
                ),
            }
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::default())
            .with_group_instance_id(None)
            // -1: the broker's offsets.retention.minutes (v2–v4 only).
            .with_retention_time_ms(-1)
            .with_topics(topics);
        let response = self.send(request).await?;
        for t in response.topics {
            for p in t.partitions {
                check(p.error_code, None, || {
                    format!(
                        "committing offsets of group {group} for {}-{}",
                        t.name.0, p.partition_index
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Deletes a group and its committed offsets. The coordinator refuses (NonEmptyGroup) while the group has
    /// members.
    pub async fn delete_group(&mut self, group: &str) -> Result<()> {
        let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str_bytes(group))]);
        let response = self.send(request).await?;
        let result = response
            .results
            .into_iter()
            .find(|r| r.group_id.0.as_str() == group)
            .ok_or_else(|| ClientError::Protocol {
                api_key: ApiKey::DeleteGroups,
                version: self.version::<DeleteGroupsRequest>().unwrap_or(-1),
                reason: format!("group {group} is not in the response"),
            })?;
        check(result.error_code, None, || format!("deleting group {group}"))
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::Encodable;

    use super::*;

    fn assignment(version: i16, user_data: Option<Bytes>) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(version);
        ConsumerProtocolAssignment::default()
            .with_assigned_partitions(vec![
                TopicPartition::default()
                    .with_topic(topic_name("orders"))
                    .with_partitions(vec![0, 2]),
                TopicPartition::default()
                    .with_topic(topic_name("audit"))
                    .with_partitions(vec![]),
            ])
            .with_user_data(user_data)
            .encode(&mut buf, version.min(3))
            .unwrap();
        buf.freeze()
    }

    #[test]
    fn consumer_assignments_decode_at_every_version() {
        let expected = vec![("orders".to_owned(), vec![0, 2]), ("audit".to_owned(), vec![])];
        for version in 0..=4 {
            for user_data in [None, Some(Bytes::from_static(b"sticky"))] {
                assert_eq!(
                    decode_consumer_assignment(&assignment(version, user_data)),
                    Ok(expected.clone()),
                    "v{version}"
                );
            }
        }
        assert_eq!(decode_consumer_assignment(&Bytes::new()), Ok(Vec::new()));
        assert!(decode_consumer_assignment(&Bytes::from_static(&[0])).is_err());
        assert!(decode_consumer_assignment(&Bytes::from_static(&[0, 0, 0, 0, 0, 5])).is_err());
        assert!(decode_consumer_assignment(&Bytes::from_static(&[0xff, 0xff])).is_err());
    }
}
