//! DeleteShareGroupOffsets (KIP-932, Kafka 4.1): forgets a share group's state for whole topics: the next
//! fetch starts each of their partitions again where `share.auto.offset.reset` says, as for a group that
//! never read them. Allowed only while the group has no members (`NON_EMPTY_GROUP` otherwise), as Kafka
//! allows it; a group with neither members nor state is `GROUP_ID_NOT_FOUND`.
//!
//! Per topic: one that does not exist, or that the group has no state for, is `UNKNOWN_TOPIC_OR_PARTITION`;
//! one with a partition led by another broker is `NOT_LEADER_OR_FOLLOWER` and nothing of it is forgotten
//! (`super::share_admin`).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic;
use kafka_protocol::messages::{DeleteShareGroupOffsetsRequest, DeleteShareGroupOffsetsResponse};
use kafka_protocol::protocol::StrBytes;
use strata_storage::TopicPartition;
use tracing::info;
use uuid::Uuid;

use super::share_admin;
use crate::broker::Broker;

pub fn handle(
    broker: &Broker,
    request: DeleteShareGroupOffsetsRequest,
    _version: i16,
) -> DeleteShareGroupOffsetsResponse {
    let group = request.group_id.0.to_string();
    let refuse = |error: ResponseError, message: String| {
        DeleteShareGroupOffsetsResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    if let Err((error, message)) =
        share_admin::check_group(broker, &group).and_then(|()| share_admin::check_empty(broker, &group))
    {
        return refuse(error, message);
    }
    let held = broker.shares.of_group(&group);
    if held.is_empty() {
        return refuse(
            ResponseError::GroupIdNotFound,
            format!("share group {group} does not exist"),
        );
    }
    let image = broker.metadata.image();
    let responses = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.topic_name.0.to_string();
            let metadata = image.topic_by_name(&name);
            let answer = DeleteShareGroupOffsetsResponseTopic::default()
                .with_topic_name(topic.topic_name)
                .with_topic_id(metadata.map_or(Uuid::nil(), |t| t.id));
            let outcome = match metadata {
                None => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name} does not exist"),
                )),
                Some(_) if !held.iter().any(|(tp, _)| tp.topic == name) => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("share group {group} has no offsets for topic {name}"),
                )),
                Some(metadata) => {
                    let elsewhere = metadata
                        .partitions
                        .keys()
                        .map(|&p| TopicPartition::new(name.clone(), p))
                        .find(|tp| share_admin::led_here(broker, tp).is_err());
                    match elsewhere {
                        Some(tp) => Err((
                            ResponseError::NotLeaderOrFollower,
                            format!("{tp} is not led by this broker, which keeps only its own share-partitions"),
                        )),
                        None => {
                            let forgotten = broker.shares.forget_topic(&group, &name);
                            info!(%group, topic = %name, partitions = forgotten, "share group offsets deleted");
                            Ok(())
                        }
                    }
                }
            };
            match outcome {
                Ok(()) => answer,
                Err((error, message)) => answer
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    DeleteShareGroupOffsetsResponse::default().with_responses(responses)
}
