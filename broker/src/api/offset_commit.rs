//! OffsetCommit: checked against the group's generation (a consumer-protocol group: the member's epoch), then
//! made durable in `__consumer_offsets`.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use strata_storage::TopicPartition;

use crate::broker::Broker;
use crate::groups::offsets::{Committed, METADATA_BYTES_MAX};

pub async fn handle(broker: &Broker, request: OffsetCommitRequest, version: i16) -> OffsetCommitResponse {
    let group = request.group_id.0.to_string();
    // A consumer-protocol group checks member id and member epoch (v9+); a classic one the generation.
    let allowed = broker
        .groups
        .check_consumer_member(
            &group,
            &request.member_id,
            request.generation_id_or_member_epoch,
            version,
            false,
        )
        .unwrap_or_else(|| {
            broker.groups.check_commit(
                &group,
                &request.member_id,
                request.group_instance_id.as_deref(),
                request.generation_id_or_member_epoch,
            )
        });
    // Per partition: an error now, or an offset to write.
    let mut to_write = Vec::new();
    let mut results: Vec<(usize, usize, ResponseError)> = Vec::new();
    for (t, topic) in request.topics.iter().enumerate() {
        let known = broker.metadata.get(&topic.name);
        for (p, partition) in topic.partitions.iter().enumerate() {
            let error = match (&allowed, &known) {
                (Err(error), _) => Some(*error),
                (_, None) => Some(ResponseError::UnknownTopicOrPartition),
                (_, Some(t)) if !(0..t.partitions).contains(&partition.partition_index) => {
                    Some(ResponseError::UnknownTopicOrPartition)
                }
                _ if partition
                    .committed_metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > METADATA_BYTES_MAX) =>
                {
                    Some(ResponseError::OffsetMetadataTooLarge)
                }
                _ => None,
            };
            match error {
                Some(error) => results.push((t, p, error)),
                None => to_write.push((
                    (t, p),
                    TopicPartition::new(topic.name.0.to_string(), partition.partition_index),
                    Committed {
                        offset: partition.committed_offset,
                        leader_epoch: partition.committed_leader_epoch,
                        metadata: partition
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                    },
                )),
            }
        }
    }
    let positions: Vec<(usize, usize)> = to_write.iter().map(|(at, _, _)| *at).collect();
    let written = broker
        .offsets
        .commit(
            &broker.replicas,
            &group,
            to_write.into_iter().map(|(_, tp, c)| (tp, c)).collect(),
        )
        .await;
    if let Err(error) = written {
        results.extend(positions.into_iter().map(|(t, p)| (t, p, error)));
    }
    let topics = request
        .topics
        .iter()
        .enumerate()
        .map(|(t, topic)| {
            let partitions = topic
                .partitions
                .iter()
                .enumerate()
                .map(|(p, partition)| {
                    let error = results
                        .iter()
                        .find(|(rt, rp, _)| *rt == t && *rp == p)
                        .map_or(0, |(_, _, e)| e.code());
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(error)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
