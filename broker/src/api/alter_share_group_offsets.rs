//! AlterShareGroupOffsets (KIP-932, Kafka 4.1): sets a share group's start offset for partitions, as
//! `kafka-share-groups.sh --reset-offsets` does. Allowed only while the group has no members
//! (`NON_EMPTY_GROUP`, for the whole request, otherwise), as Kafka allows it.
//!
//! The share-partition's start offset moves and everything in flight is forgotten: the next fetch hands
//! out records from the new start, each delivered afresh (`SharePartition::reset`). A group that has no
//! share-partition of a partition gets one; a group with none at all becomes an empty share group.
//!
//! Per partition: an unknown topic or partition is `UNKNOWN_TOPIC_OR_PARTITION`; a negative offset, or one
//! past the partition's high watermark (which would skip records not yet written), `INVALID_REQUEST`;
//! an offset below the log start is accepted, and the next fetch moves it up to the log start, as it does
//! when retention deletes records. A partition another broker leads is `NOT_LEADER_OR_FOLLOWER`
//! (`super::share_admin`).

use std::sync::PoisonError;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_share_group_offsets_response::{
    AlterShareGroupOffsetsResponsePartition, AlterShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::{AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse};
use kafka_protocol::protocol::StrBytes;
use strata_storage::TopicPartition;
use tracing::{info, warn};
use uuid::Uuid;

use super::share_admin;
use crate::broker::Broker;
use crate::share::partition::SharePartition;
use crate::share::{self};

/// The most partitions one request may change: a bound on the work of one request.
const PARTITIONS_MAX: usize = 100_000;

pub fn handle(
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
    let (settings, _) = share::settings_of(&broker.settings(), &image, &group);
    let responses = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.topic_name.0.to_string();
            let metadata = image.topic_by_name(&name);
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let tp = TopicPartition::new(name.clone(), p.partition_index);
                    let answer =
                        AlterShareGroupOffsetsResponsePartition::default().with_partition_index(p.partition_index);
                    let exists = metadata.is_some_and(|t| t.partitions.contains_key(&p.partition_index));
                    let outcome = if exists {
                        alter(broker, &group, &tp, p.start_offset, settings)
                    } else {
                        Err((ResponseError::UnknownTopicOrPartition, format!("{tp} does not exist")))
                    };
                    match outcome {
                        Ok(()) => answer,
                        Err((error, message)) => answer
                            .with_error_code(error.code())
                            .with_error_message(Some(StrBytes::from_string(message))),
                    }
                })
                .collect();
            AlterShareGroupOffsetsResponseTopic::default()
                .with_topic_name(topic.topic_name)
                .with_topic_id(metadata.map_or(Uuid::nil(), |t| t.id))
                .with_partitions(partitions)
        })
        .collect();
    AlterShareGroupOffsetsResponse::default().with_responses(responses)
}

/// Moves `group`'s start offset of `tp` to `offset`.
fn alter(
    broker: &Broker,
    group: &str,
    tp: &TopicPartition,
    offset: i64,
    settings: crate::share::partition::ShareSettings,
) -> Result<(), (ResponseError, String)> {
    let partition = share_admin::led_here(broker, tp).map_err(|e| (e, format!("{tp} is not led by this broker")))?;
    let high_watermark = partition.high_watermark();
    let offset = u64::try_from(offset).map_err(|_| {
        (
            ResponseError::InvalidRequest,
            format!("start offset {offset} is negative"),
        )
    })?;
    if offset > high_watermark {
        return Err((
            ResponseError::InvalidRequest,
            format!("start offset {offset} is past the end of {tp} ({high_watermark})"),
        ));
    }
    let shared = broker
        .shares
        .partition(group, tp, || SharePartition::new(offset, settings))
        .ok_or_else(|| {
            warn!(%group, partition = %tp, "share-partition refused: the broker keeps as many as it may");
            (
                ResponseError::UnknownServerError,
                "this broker keeps as many share-partitions as it may".to_owned(),
            )
        })?;
    let mut share = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let before = share.start_offset();
    share.reset(offset);
    info!(%group, partition = %tp, from = before, to = offset, "share group start offset altered");
    Ok(())
}
