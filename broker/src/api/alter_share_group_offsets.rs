//! AlterShareGroupOffsets (KIP-932, Kafka 4.1): sets a share group's start offset for partitions, as
//! `kafka-share-groups.sh --reset-offsets` does. Allowed only while the group has no members
//! (`NON_EMPTY_GROUP`, for the whole request, otherwise), as Kafka allows it.
//!
//! The share-partition's durable state at its share coordinator (`crate::share::persister`) becomes the new
//! start offset with nothing in flight, at the next state epoch; the partition's leader, whichever broker it
//! is, loads it when a member next opens a share session (a leader still holding the old state is fenced:
//! `FENCED_STATE_EPOCH`). The next fetch hands out records from the new start, each delivered afresh.
//!
//! Per partition: an unknown topic or partition is `UNKNOWN_TOPIC_OR_PARTITION`; a negative offset, or one
//! past the partition's high watermark (which would skip records not yet written), `INVALID_REQUEST`;
//! an offset below the log start is accepted, and the next fetch moves it up to the log start, as it does
//! when retention deletes records. The high watermark is checked where this broker leads the partition.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_share_group_offsets_response::{
    AlterShareGroupOffsetsResponsePartition, AlterShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::{AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse};
use kafka_protocol::protocol::StrBytes;
use strata_storage::TopicPartition;
use tracing::info;
use uuid::Uuid;

use super::share_admin;
use crate::broker::Broker;
use crate::share::partition::ShareSnapshot;

/// The most partitions one request may change: a bound on the work of one request.
const PARTITIONS_MAX: usize = 100_000;

pub async fn handle(
    broker: &Broker,
    request: AlterShareGroupOffsetsRequest,
    _version: i16,
) -> AlterShareGroupOffsetsResponse {
    let group = request.group_id.0.to_string();
    let refuse = |error: ResponseError, message: String| {
        AlterShareGroupOffsetsResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    if let Err((error, message)) = share_admin::check_group(broker, &group) {
        return refuse(error, message);
    }
    let asked: usize = request.topics.iter().map(|t| t.partitions.len()).sum();
    if asked > PARTITIONS_MAX {
        return refuse(
            ResponseError::InvalidRequest,
            format!("more than {PARTITIONS_MAX} partitions in one request"),
        );
    }
    // A member could join between this check and the change below (membership and share-partitions have
    // separate locks, where Kafka orders both through the coordinator's log). Records it acquired in that
    // moment are forgotten with everything else in flight, and its acknowledgements of them are refused
    // (INVALID_RECORD_STATE): they are delivered again from the new start, which a reset means anyway.
    if let Err((error, message)) = share_admin::check_empty(broker, &group) {
        return refuse(error, message);
    }
    let image = broker.metadata.image();
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.topic_name.0.to_string();
        let metadata = image.topic_by_name(&name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let tp = TopicPartition::new(name.clone(), p.partition_index);
            let answer = AlterShareGroupOffsetsResponsePartition::default().with_partition_index(p.partition_index);
            let outcome = match metadata.and_then(|t| t.partitions.get(&p.partition_index).map(|m| (t.id, m))) {
                Some((topic_id, partition)) => {
                    alter(broker, &group, &tp, topic_id, partition.leader_epoch, p.start_offset).await
                }
                None => Err((ResponseError::UnknownTopicOrPartition, format!("{tp} does not exist"))),
            };
            partitions.push(match outcome {
                Ok(()) => answer,
                Err((error, message)) => answer
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            });
        }
        responses.push(
            AlterShareGroupOffsetsResponseTopic::default()
                .with_topic_name(topic.topic_name)
                .with_topic_id(metadata.map_or(Uuid::nil(), |t| t.id))
                .with_partitions(partitions),
        );
    }
    AlterShareGroupOffsetsResponse::default().with_responses(responses)
}

/// Moves `group`'s start offset of `tp` to `offset`: a new durable state at the next state epoch.
async fn alter(
    broker: &Broker,
    group: &str,
    tp: &TopicPartition,
    topic_id: Uuid,
    leader_epoch: i32,
    offset: i64,
) -> Result<(), (ResponseError, String)> {
    let offset = u64::try_from(offset).map_err(|_| {
        (
            ResponseError::InvalidRequest,
            format!("start offset {offset} is negative"),
        )
    })?;
    if let Ok(partition) = share_admin::led_here(broker, tp)
        && offset > partition.high_watermark()
    {
        return Err((
            ResponseError::InvalidRequest,
            format!(
                "start offset {offset} is past the end of {tp} ({})",
                partition.high_watermark()
            ),
        ));
    }
    let snapshot = ShareSnapshot {
        start_offset: offset,
        batches: Vec::new(),
    };
    share_admin::replace_state(broker, group, tp, topic_id, leader_epoch, snapshot)
        .await
        .map_err(|e| (e, format!("the state of {tp} could not be changed: {e}")))?;
    info!(%group, partition = %tp, to = offset, "share group start offset altered");
    Ok(())
}
