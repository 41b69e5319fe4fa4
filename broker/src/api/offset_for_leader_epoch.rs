//! OffsetForLeaderEpoch: where a leader epoch ends in this leader's log (Kafka's OffsetsForLeaderEpoch).
//!
//! Followers ask it before fetching in a new leader epoch, to truncate what the new leader never had;
//! consumers ask it after a leader change to detect a truncated log (KIP-320). Only the leader answers, at
//! the epoch the requester names.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use strata_storage::TopicPartition;

use super::fetch::check_leader;
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: OffsetForLeaderEpochRequest, _version: i16) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let answer = EpochEndOffset::default().with_partition(wanted.partition);
                    let tp = TopicPartition::new(topic.topic.0.to_string(), wanted.partition);
                    let Some(partition) = broker.replicas.get(&tp) else {
                        return answer
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                    };
                    if let Err(error) = check_leader(&partition, wanted.current_leader_epoch) {
                        return answer
                            .with_error_code(error.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                    }
                    let log = partition.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    match log.end_offset_for_epoch(wanted.leader_epoch) {
                        Some((epoch, end)) => answer.with_leader_epoch(epoch).with_end_offset(end as i64),
                        None => answer.with_leader_epoch(-1).with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
