//! OffsetFetch: a group's committed offsets (one group up to v7, several from v8). A partition without a
//! commit answers offset -1, as in Kafka.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_storage::TopicPartition;

use super::check_coordinator;
use crate::broker::Broker;
use crate::groups::offsets::Committed;

/// Per topic, each partition's committed offset (offset -1 where none).
type Answers = Vec<(TopicName, Vec<(i32, Committed)>)>;

/// The answers for a group: the requested partitions, or every committed one when `wanted` is null.
fn answers(broker: &Broker, group: &str, wanted: Option<Vec<(TopicName, Vec<i32>)>>) -> Answers {
    let wanted = wanted.unwrap_or_else(|| {
        let mut by_topic: Vec<(TopicName, Vec<i32>)> = Vec::new();
        for (tp, _) in broker.offsets.of_group(group) {
            match by_topic.iter_mut().find(|(t, _)| t.0.as_str() == tp.topic) {
                Some((_, partitions)) => partitions.push(tp.partition),
                None => by_topic.push((TopicName(StrBytes::from_string(tp.topic.clone())), vec![tp.partition])),
            }
        }
        by_topic
    });
    wanted
        .into_iter()
        .map(|(topic, partitions)| {
            let answers = partitions
                .into_iter()
                .map(|p| {
                    let committed = broker
                        .offsets
                        .fetch(group, &TopicPartition::new(topic.0.to_string(), p));
                    (
                        p,
                        committed.unwrap_or(Committed {
                            offset: -1,
                            leader_epoch: -1,
                            metadata: String::new(),
                        }),
                    )
                })
                .collect();
            (topic, answers)
        })
        .collect()
}

pub fn handle(broker: &Broker, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    // Only the coordinator knows a group's offsets: elsewhere the client must look again, not read nothing
    // and reset its position.
    if version < 8
        && let Err(error) = check_coordinator(broker, &request.group_id)
    {
        if version >= 2 {
            return OffsetFetchResponse::default().with_error_code(error.code());
        }
        // v1 has only per-partition errors.
        let topics = request
            .topics
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partition_indexes
                    .iter()
                    .map(|&p| {
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(-1)
                            .with_error_code(error.code())
                    })
                    .collect();
                OffsetFetchResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect();
        return OffsetFetchResponse::default().with_topics(topics);
    }
    if version < 8 {
        let wanted = request
            .topics
            .map(|topics| topics.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
        let topics = answers(broker, &request.group_id, wanted)
            .into_iter()
            .map(|(name, partitions)| {
                let partitions = partitions
                    .into_iter()
                    .map(|(p, c)| {
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(c.offset)
                            .with_committed_leader_epoch(c.leader_epoch)
                            .with_metadata(Some(StrBytes::from_string(c.metadata)))
                    })
                    .collect();
                OffsetFetchResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect();
        return OffsetFetchResponse::default().with_topics(topics);
    }
    let groups = request
        .groups
        .into_iter()
        .map(|group| {
            if let Err(error) = check_coordinator(broker, &group.group_id) {
                return OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id)
                    .with_error_code(error.code());
            }
            // v9: a member of a consumer-protocol group fetches at its current epoch (Kafka's
            // `ConsumerGroup.validateOffsetFetch`); without a member id anyone may.
            if let Some(member_id) = group.member_id.as_deref()
                && let Some(Err(error)) =
                    broker
                        .groups
                        .check_consumer_member(&group.group_id, member_id, group.member_epoch, version, true)
            {
                return OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id)
                    .with_error_code(error.code());
            }
            let wanted = group
                .topics
                .map(|topics| topics.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
            let topics = answers(broker, &group.group_id, wanted)
                .into_iter()
                .map(|(name, partitions)| {
                    let partitions = partitions
                        .into_iter()
                        .map(|(p, c)| {
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(p)
                                .with_committed_offset(c.offset)
                                .with_committed_leader_epoch(c.leader_epoch)
                                .with_metadata(Some(StrBytes::from_string(c.metadata)))
                        })
                        .collect();
                    OffsetFetchResponseTopics::default()
                        .with_name(name)
                        .with_partitions(partitions)
                })
                .collect();
            OffsetFetchResponseGroup::default()
                .with_group_id(group.group_id)
                .with_topics(topics)
        })
        .collect();
    OffsetFetchResponse::default().with_groups(groups)
}
