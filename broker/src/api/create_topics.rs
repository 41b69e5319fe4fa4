//! CreateTopics: validated one by one; `validate_only` checks without creating.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::configs::source_code;
use crate::broker::{Broker, NewTopic};

pub async fn handle(broker: &Broker, request: CreateTopicsRequest, _version: i16) -> CreateTopicsResponse {
    let validate_only = request.validate_only;
    let topics = request.topics.into_iter().map(|topic| async move {
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        if !topic.assignments.is_empty() {
            return result
                .with_error_code(kafka_protocol::ResponseError::InvalidRequest.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "manual replica assignments are not supported",
                )));
        }
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
        };
        match broker.create_topic(new, validate_only).await {
            Ok(created) => {
                let configs = broker
                    .settings
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
