//! Metadata: brokers, and topics with their partitions and leaders. Creates requested topics that do not
//! exist when `auto.create.topics.enable` is on (and, from v4, the client allows it), as Kafka does.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::broker::{Broker, validate_topic_name};
use crate::metadata::Topic;

/// Authorized-operations fields when the client did not ask for them.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

pub fn handle(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    let node = BrokerId(broker.node_id());
    let topics = match request.topics {
        // v0 sends an empty list for "all topics"; later versions send null.
        None => broker.topics.all().iter().map(|t| describe(t, node)).collect(),
        Some(requested) if requested.is_empty() && version == 0 => {
            broker.topics.all().iter().map(|t| describe(t, node)).collect()
        }
        Some(requested) => {
            let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
            requested
                .into_iter()
                .map(|t| match t.name {
                    Some(name) => lookup(broker, &name, allow_auto_create, node),
                    // Lookup by topic id (v10+).
                    None => match broker.topics.by_id(t.topic_id) {
                        Some(topic) => describe(&topic, node),
                        None => MetadataResponseTopic::default()
                            .with_topic_id(t.topic_id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    },
                })
                .collect()
        }
    };
    MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(node)
                .with_host(StrBytes::from_string(broker.advertised.host.clone()))
                .with_port(broker.advertised.port),
        ])
        .with_cluster_id(Some(StrBytes::from_string(broker.identity.cluster_id.clone())))
        .with_controller_id(node)
        .with_topics(topics)
        .with_cluster_authorized_operations(OPERATIONS_NOT_REQUESTED)
}

fn lookup(broker: &Broker, name: &TopicName, allow_auto_create: bool, node: BrokerId) -> MetadataResponseTopic {
    let unknown = |error: ResponseError| {
        MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(error.code())
    };
    if let Err(failure) = validate_topic_name(name) {
        return unknown(failure.error);
    }
    let found = if allow_auto_create {
        broker.auto_create(name)
    } else {
        Ok(broker.topics.get(name))
    };
    match found {
        Ok(Some(topic)) => describe(&topic, node),
        Ok(None) => unknown(ResponseError::UnknownTopicOrPartition),
        Err(failure) => unknown(failure.error),
    }
}

fn describe(topic: &Topic, node: BrokerId) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name == crate::groups::offsets::OFFSETS_TOPIC)
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
}
