//! DeleteShareGroupOffsets (KIP-932, Kafka 4.1): forgets a share group's state for whole topics: the next
//! fetch starts each of their partitions again where `share.auto.offset.reset` says, as for a group that
//! never read them. Allowed only while the group has no members (`NON_EMPTY_GROUP` otherwise), as Kafka
//! allows it; a group with neither members nor state is `GROUP_ID_NOT_FOUND`.
//!
//! Each partition's durable state becomes "uninitialized" at the next state epoch (`crate::share::state`),
//! at its share coordinator, wherever the partition is led. Per topic: one that does not exist, or that the
//! group has no state for, is `UNKNOWN_TOPIC_OR_PARTITION`.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic;
use kafka_protocol::messages::{DeleteShareGroupOffsetsRequest, DeleteShareGroupOffsetsResponse};
use kafka_protocol::protocol::StrBytes;
use strata_storage::TopicPartition;
use tracing::info;
use uuid::Uuid;

use super::share_admin;
use crate::broker::Broker;
use crate::share::partition::ShareSnapshot;
use crate::share::persister;
use crate::share::state::{StateKey, UNINITIALIZED};

pub async fn handle(
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
    // A group this broker keeps no share-partition of is one it does not know (Kafka's coordinator knows its
    // share groups from its log).
    if broker.shares.of_group(&group).is_empty() {
        return refuse(
            ResponseError::GroupIdNotFound,
            format!("share group {group} does not exist"),
        );
    }
    let image = broker.metadata.image();
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
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
            Some(metadata) => forget(broker, &group, &name, metadata).await,
        };
        responses.push(match outcome {
            Ok(()) => answer,
            Err((error, message)) => answer
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    DeleteShareGroupOffsetsResponse::default().with_responses(responses)
}

/// Deletes `group`'s state of every partition of `name` that has one.
async fn forget(
    broker: &Broker,
    group: &str,
    name: &str,
    metadata: &strata_controller::Topic,
) -> Result<(), (ResponseError, String)> {
    let mut forgotten = 0;
    for (&index, partition) in metadata.partitions.iter() {
        let key = StateKey {
            group: group.to_owned(),
            topic_id: metadata.id,
            partition: index,
        };
        let held = persister::read(broker, &key, partition.leader_epoch)
            .await
            .map_err(|e| (e, e.to_string()))?;
        if held.is_none_or(|(_, snapshot)| snapshot.start_offset == UNINITIALIZED) {
            continue;
        }
        let tp = TopicPartition::new(name, index);
        let uninitialized = ShareSnapshot {
            start_offset: UNINITIALIZED,
            batches: Vec::new(),
        };
        share_admin::replace_state(broker, group, &tp, metadata.id, partition.leader_epoch, uninitialized)
            .await
            .map_err(|e| (e, format!("the state of {tp} could not be deleted: {e}")))?;
        forgotten += 1;
    }
    broker.shares.forget_topic(group, name);
    if forgotten == 0 {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("share group {group} has no offsets for topic {name}"),
        ));
    }
    info!(%group, topic = %name, partitions = forgotten, "share group offsets deleted");
    Ok(())
}
