//! DeleteTopics: by name, or (v6) by topic id.

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    // Up to v5 topics come as names; v6 as (name or id) pairs.
    let wanted: Vec<(Option<TopicName>, Uuid)> = if version < 6 {
        request
            .topic_names
            .into_iter()
            .map(|name| (Some(name), Uuid::nil()))
            .collect()
    } else {
        request.topics.into_iter().map(|t| (t.name, t.topic_id)).collect()
    };
    let responses = wanted.into_iter().map(|(name, id)| async move {
        let name = name
            .map(|n| n.0.to_string())
            .or_else(|| broker.metadata.by_id(id).map(|t| t.name));
        let result = DeletableTopicResult::default().with_topic_id(id);
        let Some(name) = name else {
            return result.with_error_code(ResponseError::UnknownTopicId.code());
        };
        let result = result.with_name(Some(TopicName(StrBytes::from_string(name.clone()))));
        match broker.delete_topic(&name).await {
            Ok(topic) => result.with_topic_id(topic.id),
            Err(failure) => result
                .with_error_code(failure.error.code())
                .with_error_message(Some(StrBytes::from_string(failure.message))),
        }
    });
    DeleteTopicsResponse::default().with_responses(join_all(responses).await)
}
