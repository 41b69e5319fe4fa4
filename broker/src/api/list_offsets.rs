//! ListOffsets: the earliest or latest offset of a partition, the first offset at or after a time, or the
//! record with the largest timestamp (KIP-734).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use strata_storage::TopicPartition;
use tracing::error;

use crate::broker::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
/// Kafka's answer when no record qualifies.
const UNKNOWN: i64 = -1;

pub fn handle(broker: &Broker, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    match lookup(broker, &topic.name, p.partition_index, p.timestamp) {
                        // The leader epoch is in the response from v4 on.
                        Ok(found) if version >= 4 => response
                            .with_timestamp(found.timestamp)
                            .with_offset(found.offset)
                            .with_leader_epoch(found.leader_epoch),
                        Ok(found) => response.with_timestamp(found.timestamp).with_offset(found.offset),
                        Err(error) => response
                            .with_error_code(error.code())
                            .with_timestamp(UNKNOWN)
                            .with_offset(UNKNOWN),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// The answer for one partition: a timestamp, an offset and the leader epoch that wrote that offset (all
/// [`UNKNOWN`] when no record qualifies).
struct Found {
    timestamp: i64,
    offset: i64,
    leader_epoch: i32,
}

fn lookup(broker: &Broker, topic: &str, partition: i32, timestamp: i64) -> Result<Found, ResponseError> {
    let tp = TopicPartition::new(topic, partition);
    let partition = broker.replicas.get(&tp).ok_or(ResponseError::UnknownTopicOrPartition)?;
    partition.leader_epoch().ok_or(ResponseError::NotLeaderOrFollower)?;
    // Consumers see the log up to the high watermark.
    let high_watermark = partition.high_watermark();
    let log = partition.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Kafka answers with the epoch of the offset found: the last epoch that started at or before it.
    let found = |timestamp: i64, offset: u64| Found {
        timestamp,
        offset: offset as i64,
        leader_epoch: log
            .epoch_entries()
            .iter()
            .rev()
            .find(|entry| entry.start_offset <= offset)
            .map_or(UNKNOWN as i32, |entry| entry.epoch),
    };
    let by_time = match timestamp {
        LATEST => {
            return Ok(Found {
                leader_epoch: log.latest_epoch().unwrap_or(UNKNOWN as i32),
                ..found(UNKNOWN, high_watermark)
            });
        }
        EARLIEST => return Ok(found(UNKNOWN, log.log_start_offset())),
        MAX_TIMESTAMP => log.max_timestamp_offset(),
        t if t >= 0 => log.offset_for_timestamp(t),
        _ => return Err(ResponseError::InvalidRequest),
    };
    match by_time {
        Ok(Some(at)) if at.offset < high_watermark => Ok(found(at.timestamp, at.offset)),
        Ok(_) => Ok(Found {
            timestamp: UNKNOWN,
            offset: UNKNOWN,
            leader_epoch: UNKNOWN as i32,
        }),
        Err(e) => {
            error!(partition = %tp, error = %e, "offset lookup failed");
            Err(ResponseError::KafkaStorageError)
        }
    }
}
