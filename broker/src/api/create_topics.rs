//! CreateTopics: validated one by one; `validate_only` checks without creating.
//!
//! A topic is placed by the controller, or, with `assignments`, on the replicas given for each partition
//! (Kafka's manual replica assignment). Then the counts must be -1 (INVALID_PARTITIONS,
//! INVALID_REPLICATION_FACTOR otherwise) and the partitions listed 0, 1, 2… in order; the controller checks
//! the replicas themselves (INVALID_REPLICA_ASSIGNMENT for duplicates, unknown brokers, unequal counts).

use std::collections::BTreeMap;

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::configs::source_code;
use crate::broker::{Broker, NewTopic};

pub async fn handle(broker: &Broker, request: CreateTopicsRequest, _version: i16) -> CreateTopicsResponse {
    let validate_only = request.validate_only;
    let topics = request.topics.into_iter().map(|topic| async move {
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let assignment = match assignment(&topic) {
            Ok(assignment) => assignment,
            Err((error, message)) => {
                return result
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1);
            }
        };
        let configs: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
            .collect();
        let new = NewTopic {
            name: topic.name.0.to_string(),
            partitions: (topic.num_partitions != -1).then_some(topic.num_partitions),
            replication_factor: (topic.replication_factor != -1).then_some(topic.replication_factor),
            configs,
            assignment,
        };
        match broker.create_topic(new, validate_only).await {
            Ok(created) => {
                let configs = broker
                    .settings()
                    .describe_topic(&created.configs)
                    .into_iter()
                    .map(|s| {
                        CreatableTopicConfigs::default()
                            .with_name(StrBytes::from_static_str(s.name))
                            .with_value(Some(StrBytes::from_string(s.value)))
                            .with_config_source(source_code(s.source))
                    })
                    .collect();
                result
                    .with_topic_id(created.id)
                    .with_num_partitions(created.partitions)
                    .with_replication_factor(created.replication_factor)
                    .with_configs(Some(configs))
            }
            Err(failure) => result
                .with_error_code(failure.error.code())
                .with_error_message(Some(StrBytes::from_string(failure.message)))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        }
    });
    CreateTopicsResponse::default().with_topics(join_all(topics).await)
}

/// The manual assignment of `topic`, if it has one, checked as Kafka checks the request's shape.
fn assignment(topic: &CreatableTopic) -> Result<Option<Vec<Vec<i32>>>, (ResponseError, String)> {
    if topic.assignments.is_empty() {
        return Ok(None);
    }
    if topic.replication_factor != -1 {
        return Err((
            ResponseError::InvalidReplicationFactor,
            "a manual partition assignment was given, but the replication factor is not -1".into(),
        ));
    }
    if topic.num_partitions != -1 {
        return Err((
            ResponseError::InvalidPartitions,
            "a manual partition assignment was given, but the partition count is not -1".into(),
        ));
    }
    topic
        .assignments
        .iter()
        .enumerate()
        .map(|(expected, partition)| {
            if partition.partition_index as i64 != expected as i64 {
                return Err((
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "the assigned partitions must be numbered 0, 1, 2… in order: partition {} where {expected} was expected",
                        partition.partition_index
                    ),
                ));
            }
            Ok(partition.broker_ids.iter().map(|id| id.0).collect())
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}
