//! Metadata: the live brokers, and topics with their partitions, leaders, replicas and ISRs, from this
//! broker's metadata image. Creates requested topics that do not exist when `auto.create.topics.enable` is
//! on (and, from v4, the client allows it), as Kafka does.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_controller::{MetadataImage, NO_LEADER};

use super::authorized::{self, Resource};
use crate::broker::{Broker, validate_topic_name};

/// Brokers and leaders are given at their addresses on `listener`, the one the request came in on.
pub async fn handle(broker: &Broker, request: MetadataRequest, version: i16, listener: &str) -> MetadataResponse {
    let all = match &request.topics {
        // v0 sends an empty list for "all topics"; later versions send null.
        None => true,
        Some(requested) => requested.is_empty() && version == 0,
    };
    let topics = if all {
        let image = broker.metadata.image();
        image.topics().values().map(|t| describe(&image, t, listener)).collect()
    } else {
        let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
        let mut topics = Vec::new();
        for t in request.topics.unwrap_or_default() {
            topics.push(match t.name {
                Some(name) => lookup(broker, &name, allow_auto_create, listener).await,
                // Lookup by topic id (v10+).
                None => {
                    let image = broker.metadata.image();
                    match image.topic(&t.topic_id) {
                        Some(topic) => describe(&image, topic, listener),
                        None => MetadataResponseTopic::default()
                            .with_topic_id(t.topic_id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    }
                }
            });
        }
        topics
    };
    // Only topics that exist have operations (the flag decodes as false before v8, where the field is absent).
    let topic_operations = authorized::operations(request.include_topic_authorized_operations, Resource::Topic);
    let topics = topics
        .into_iter()
        .map(|t| match t.error_code {
            0 => t.with_topic_authorized_operations(topic_operations),
            _ => t,
        })
        .collect();
    let image = broker.metadata.image();
    MetadataResponse::default()
        .with_brokers(live_brokers(&image, listener))
        .with_cluster_id(Some(StrBytes::from_string(broker.identity.cluster_id.clone())))
        // Kafka (KRaft) names a live broker here: clients send controller requests to it, and it forwards.
        .with_controller_id(BrokerId(broker.node_id()))
        .with_topics(topics)
        .with_cluster_authorized_operations(authorized::operations(
            request.include_cluster_authorized_operations,
            Resource::Cluster,
        ))
}

/// Every broker that is registered and not fenced, at its address on `listener` (a broker without that
/// listener is left out, as Kafka does).
pub fn live_brokers(image: &MetadataImage, listener: &str) -> Vec<MetadataResponseBroker> {
    image
        .brokers()
        .values()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let listener = b.listener(listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(listener.host.clone()))
                    .with_port(listener.port as i32)
                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect()
}

async fn lookup(broker: &Broker, name: &TopicName, allow_auto_create: bool, listener: &str) -> MetadataResponseTopic {
    let unknown = |error: ResponseError| {
        MetadataResponseTopic::default()
            .with_name(Some(name.clone()))
            .with_error_code(error.code())
    };
    if let Err(failure) = validate_topic_name(name) {
        return unknown(failure.error);
    }
    let found = if allow_auto_create {
        broker.auto_create(name).await.map(|t| t.is_some())
    } else {
        Ok(broker.metadata.get(name).is_some())
    };
    let image = broker.metadata.image();
    match (found, image.topic_by_name(name)) {
        (Ok(true), Some(topic)) => describe(&image, topic, listener),
        (Ok(_), _) => unknown(ResponseError::UnknownTopicOrPartition),
        (Err(failure), _) => unknown(failure.error),
    }
}

fn describe(image: &MetadataImage, topic: &strata_controller::Topic, listener: &str) -> MetadataResponseTopic {
    let ids = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let partitions = topic
        .partitions
        .iter()
        .map(|(&index, p)| {
            // Replicas on fenced brokers are listed as offline, as Kafka does.
            let offline = p
                .replicas
                .iter()
                .copied()
                .filter(|&id| image.broker(id).is_none_or(|b| b.fenced))
                .collect::<Vec<_>>();
            // A leader without the client's listener cannot be reached by it: Kafka answers
            // LISTENER_NOT_FOUND and no leader.
            let reachable = image.broker(p.leader).is_some_and(|b| b.listener(listener).is_some());
            let (error, leader) = match (p.leader, reachable) {
                (NO_LEADER, _) => (ResponseError::LeaderNotAvailable.code(), NO_LEADER),
                (_, false) => (ResponseError::ListenerNotFound.code(), NO_LEADER),
                (leader, true) => (0, leader),
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_offline_replicas(ids(&offline))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name == crate::groups::offsets::OFFSETS_TOPIC)
        .with_partitions(partitions)
        .with_topic_authorized_operations(authorized::NOT_REQUESTED)
}
