//! DescribeShareGroupOffsets (KIP-932, Kafka 4.1): per share group and partition, the share-partition start
//! offset (SPSO): every record before it is done with (acknowledged or archived).
//!
//! As Kafka answers: a partition the group has not started on, and a topic that does not exist, come back
//! with start offset -1 and no error; `topics` null asks for every partition the group has a
//! share-partition of. The leader epoch is the partition's current one, 0 where there is no start offset.
//! For a partition another broker leads the answer is `NOT_LEADER_OR_FOLLOWER` (`super::share_admin`).

use std::collections::BTreeMap;
use std::sync::PoisonError;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup;
use kafka_protocol::messages::describe_share_group_offsets_response::{
    DescribeShareGroupOffsetsResponseGroup, DescribeShareGroupOffsetsResponsePartition,
    DescribeShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::{DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_storage::TopicPartition;
use uuid::Uuid;

use super::share_admin;
use crate::broker::Broker;

/// Kafka's start offset of a share-partition that does not exist (`PartitionFactory.UNINITIALIZED_START_OFFSET`).
pub(super) const UNINITIALIZED_START_OFFSET: i64 = -1;
/// The most partitions one request may ask about, over all its groups: a bound on the response.
const PARTITIONS_MAX: usize = 100_000;

pub fn handle(
    broker: &Broker,
    request: DescribeShareGroupOffsetsRequest,
    _version: i16,
) -> DescribeShareGroupOffsetsResponse {
    let asked: usize = request
        .groups
        .iter()
        .flat_map(|g| g.topics.iter().flatten())
        .map(|t| t.partitions.len())
        .sum();
    let groups = request
        .groups
        .into_iter()
        .map(|group| {
            if asked > PARTITIONS_MAX {
                return refused(
                    group.group_id.0.clone(),
                    ResponseError::InvalidRequest,
                    format!("more than {PARTITIONS_MAX} partitions asked for"),
                );
            }
            describe(broker, group)
        })
        .collect();
    DescribeShareGroupOffsetsResponse::default().with_groups(groups)
}

fn refused(group_id: StrBytes, error: ResponseError, message: String) -> DescribeShareGroupOffsetsResponseGroup {
    DescribeShareGroupOffsetsResponseGroup::default()
        .with_group_id(group_id.into())
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}

fn describe(broker: &Broker, request: DescribeShareGroupOffsetsRequestGroup) -> DescribeShareGroupOffsetsResponseGroup {
    let group = request.group_id.0.to_string();
    if let Err((error, message)) = share_admin::check_group(broker, &group) {
        return refused(request.group_id.0, error, message);
    }
    // (topic, partitions) in the order asked, or every share-partition the group has here.
    let wanted: Vec<(String, Vec<i32>)> = match request.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.topic_name.0.to_string(), t.partitions))
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (tp, _) in broker.shares.of_group(&group) {
                by_topic.entry(tp.topic).or_default().push(tp.partition);
            }
            by_topic.into_iter().collect()
        }
    };
    let image = broker.metadata.image();
    let topics = wanted
        .into_iter()
        .map(|(name, partitions)| {
            let topic = image.topic_by_name(&name);
            let partitions = partitions
                .into_iter()
                .map(|index| {
                    let answer = DescribeShareGroupOffsetsResponsePartition::default()
                        .with_partition_index(index)
                        .with_start_offset(UNINITIALIZED_START_OFFSET)
                        .with_leader_epoch(0);
                    let Some(metadata) = topic.and_then(|t| t.partitions.get(&index)) else {
                        return answer;
                    };
                    let tp = TopicPartition::new(name.clone(), index);
                    if let Err(error) = share_admin::led_here(broker, &tp) {
                        return answer
                            .with_error_code(error.code())
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "{tp} is led by broker {}, which keeps its share-partitions",
                                metadata.leader
                            ))));
                    }
                    match broker.shares.get(&group, &tp) {
                        Some(shared) => {
                            let start = shared.lock().unwrap_or_else(PoisonError::into_inner).start_offset();
                            answer
                                .with_start_offset(start as i64)
                                .with_leader_epoch(metadata.leader_epoch)
                        }
                        None => answer,
                    }
                })
                .collect();
            DescribeShareGroupOffsetsResponseTopic::default()
                .with_topic_name(TopicName(StrBytes::from_string(name)))
                .with_topic_id(topic.map_or(Uuid::nil(), |t| t.id))
                .with_partitions(partitions)
        })
        .collect();
    DescribeShareGroupOffsetsResponseGroup::default()
        .with_group_id(request.group_id)
        .with_topics(topics)
}
