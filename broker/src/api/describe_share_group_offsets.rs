//! DescribeShareGroupOffsets (KIP-932, Kafka 4.1): per share group and partition, the share-partition start
//! offset (SPSO): every record before it is done with (acknowledged or archived).
//!
//! As Kafka answers: a partition the group has not started on, and a topic that does not exist, come back
//! with start offset -1 and no error; `topics` null asks for every partition the group has a
//! share-partition of here or its members subscribe to. The start offset is the durable one, read from the
//! share-partition's share coordinator (`crate::share::persister`), wherever the partition is led. The leader
//! epoch is the partition's current one, 0 where there is no start offset.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup;
use kafka_protocol::messages::describe_share_group_offsets_response::{
    DescribeShareGroupOffsetsResponseGroup, DescribeShareGroupOffsetsResponsePartition,
    DescribeShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::{DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::share_admin;
use crate::broker::Broker;
use crate::share::persister;
use crate::share::state::{StateKey, UNINITIALIZED};

/// Kafka's start offset of a share-partition that does not exist (`PartitionFactory.UNINITIALIZED_START_OFFSET`).
pub(super) const UNINITIALIZED_START_OFFSET: i64 = -1;
/// The most partitions one request may ask about, over all its groups: a bound on the response.
const PARTITIONS_MAX: usize = 100_000;

pub async fn handle(
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
    let mut groups = Vec::with_capacity(request.groups.len());
    for group in request.groups {
        groups.push(if asked > PARTITIONS_MAX {
            refused(
                group.group_id.0.clone(),
                ResponseError::InvalidRequest,
                format!("more than {PARTITIONS_MAX} partitions asked for"),
            )
        } else {
            describe(broker, group).await
        });
    }
    DescribeShareGroupOffsetsResponse::default().with_groups(groups)
}

fn refused(group_id: StrBytes, error: ResponseError, message: String) -> DescribeShareGroupOffsetsResponseGroup {
    DescribeShareGroupOffsetsResponseGroup::default()
        .with_group_id(group_id.into())
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}

async fn describe(
    broker: &Broker,
    request: DescribeShareGroupOffsetsRequestGroup,
) -> DescribeShareGroupOffsetsResponseGroup {
    let group = request.group_id.0.to_string();
    if let Err((error, message)) = share_admin::check_group(broker, &group) {
        return refused(request.group_id.0, error, message);
    }
    // (topic, partitions) in the order asked; or every partition of the topics the group has share-partitions
    // of here or its members subscribe to, of which those with a durable state are answered.
    let all = request.topics.is_none();
    let wanted: Vec<(String, Vec<i32>)> = match request.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.topic_name.0.to_string(), t.partitions))
            .collect(),
        None => {
            let image = broker.metadata.image();
            let mut names: Vec<String> = broker
                .shares
                .of_group(&group)
                .into_iter()
                .map(|(tp, _)| tp.topic)
                .collect();
            if let Some(view) = broker.shares.groups.describe(&group, &Default::default()) {
                names.extend(view.members.into_iter().flat_map(|m| m.subscribed));
            }
            names.sort();
            names.dedup();
            names
                .into_iter()
                .filter_map(|name| {
                    let partitions = image.topic_by_name(&name)?.partitions.keys().copied().collect();
                    Some((name, partitions))
                })
                .collect()
        }
    };
    let image = broker.metadata.image();
    let mut topics = Vec::with_capacity(wanted.len());
    for (name, indexes) in wanted {
        let topic = image.topic_by_name(&name);
        let mut partitions = Vec::with_capacity(indexes.len());
        for index in indexes {
            let answer = DescribeShareGroupOffsetsResponsePartition::default()
                .with_partition_index(index)
                .with_start_offset(UNINITIALIZED_START_OFFSET)
                .with_leader_epoch(0);
            let (Some(topic), Some(metadata)) = (topic, topic.and_then(|t| t.partitions.get(&index))) else {
                partitions.push(answer);
                continue;
            };
            let key = StateKey {
                group: group.clone(),
                topic_id: topic.id,
                partition: index,
            };
            partitions.push(match persister::read(broker, &key, -1).await {
                Ok(Some((_, snapshot))) if snapshot.start_offset != UNINITIALIZED => answer
                    .with_start_offset(snapshot.start_offset as i64)
                    .with_leader_epoch(metadata.leader_epoch),
                Ok(_) if all => continue,
                Ok(_) => answer,
                Err(error) => answer
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(error.to_string()))),
            });
        }
        topics.push(
            DescribeShareGroupOffsetsResponseTopic::default()
                .with_topic_name(TopicName(StrBytes::from_string(name)))
                .with_topic_id(topic.map_or(Uuid::nil(), |t| t.id))
                .with_partitions(partitions),
        );
    }
    DescribeShareGroupOffsetsResponseGroup::default()
        .with_group_id(request.group_id)
        .with_topics(topics)
}
