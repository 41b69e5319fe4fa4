//! OffsetDelete: removes a group's committed offsets for partitions of topics its members do not
//! subscribe to (`GROUP_SUBSCRIBED_TO_TOPIC` otherwise), as Kafka does.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use strata_storage::TopicPartition;

use super::check_coordinator;
use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: OffsetDeleteRequest, _version: i16) -> OffsetDeleteResponse {
    let group = request.group_id.0.to_string();
    if let Err(error) = check_coordinator(broker, &group) {
        return OffsetDeleteResponse::default().with_error_code(error.code());
    }
    if broker.groups.describe(&group).is_none() && broker.offsets.of_group(&group).is_empty() {
        return OffsetDeleteResponse::default().with_error_code(ResponseError::GroupIdNotFound.code());
    }
    let subscribed = broker.groups.subscribed_topics(&group);
    let deletable: Vec<TopicPartition> = request
        .topics
        .iter()
        .filter(|t| !subscribed.iter().any(|s| s.as_str() == t.name.as_str()))
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let written = broker.offsets.delete(&broker.replicas, &group, deletable).await.err();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let error = if subscribed.iter().any(|s| s.as_str() == t.name.as_str()) {
                Some(ResponseError::GroupSubscribedToTopic)
            } else {
                written
            };
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
