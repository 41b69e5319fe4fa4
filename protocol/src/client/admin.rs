//! Typed helpers for the admin side of Kafka: topics, partitions, configs, offsets, the cluster.
//!
//! Each helper fills the request for the negotiated version, turns error codes into
//! [`ClientError::Kafka`] with what was being done, and returns plain Rust types.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest, ListOffsetsRequest,
    MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{Client, ClientError, Result, check};

/// How long the broker may take over an admin operation.
const ADMIN_TIMEOUT_MS: i32 = 30_000;
/// Kafka's `ConfigResource.Type` for topics.
const RESOURCE_TOPIC: i8 = 2;
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
        let mut metadata = self.metadata(Some(&[topic]), auto_create).await?;
        let found = metadata
            .topics
            .iter()
            .position(|t| t.name == topic)
            .ok_or_else(|| ClientError::Kafka {
                context: format!("topic {topic}"),
                error: ResponseError::UnknownTopicOrPartition,
                message: Some("the broker did not describe it".into()),
            })?;
        let mut topic_metadata = metadata.topics.swap_remove(found);
        if let Some(error) = topic_metadata.error {
            let message = (error == ResponseError::UnknownTopicOrPartition).then(|| "it does not exist".into());
            return Err(ClientError::Kafka {
                context: format!("topic {topic}"),
                error,
                message,
            });
        }
        topic_metadata.partitions.sort_by_key(|p| p.index);
        Ok(topic_metadata)
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
        answers.sort_by_key(|a| partitions.iter().position(|p| *p == a.partition));
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

    /// The cluster id, controller and brokers.
    pub async fn describe_cluster(&mut self) -> Result<Cluster> {
        let response = self.send(DescribeClusterRequest::default()).await?;
        check(response.error_code, response.error_message.as_ref(), || {
            "describing the cluster".into()
        })?;
        Ok(Cluster {
            cluster_id: response.cluster_id.to_string(),
            controller_id: response.controller_id.0,
            brokers: response
                .brokers
                .into_iter()
                .map(|b| BrokerMetadata {
                    node_id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.map(|r| r.to_string()),
                })
                .collect(),
        })
    }
}
