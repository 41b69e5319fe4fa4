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

pub fn handle(broker: &Broker, request: ListOffsetsRequest, _version: i16) -> ListOffsetsResponse {
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
                        Ok((timestamp, offset)) => response
                            .with_timestamp(timestamp)
                            .with_offset(offset)
                            .with_leader_epoch(0),
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

/// The (timestamp, offset) answer for one partition.
fn lookup(broker: &Broker, topic: &str, partition: i32, timestamp: i64) -> Result<(i64, i64), ResponseError> {
    let tp = TopicPartition::new(topic, partition);
    let partition = broker.replicas.get(&tp).ok_or(ResponseError::UnknownTopicOrPartition)?;
    partition.leader_epoch().ok_or(ResponseError::NotLeaderOrFollower)?;
    // Consumers see the log up to the high watermark.
    let high_watermark = partition.high_watermark();
    let log = partition.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let found = match timestamp {
        LATEST => return Ok((UNKNOWN, high_watermark as i64)),
        EARLIEST => return Ok((UNKNOWN, log.log_start_offset() as i64)),
        MAX_TIMESTAMP => log.max_timestamp_offset(),
        t if t >= 0 => log.offset_for_timestamp(t),
        _ => return Err(ResponseError::InvalidRequest),
    };
    match found {
        Ok(Some(found)) if found.offset < high_watermark => Ok((found.timestamp, found.offset as i64)),
        Ok(_) => Ok((UNKNOWN, UNKNOWN)),
        Err(e) => {
            error!(partition = %tp, error = %e, "offset lookup failed");
            Err(ResponseError::KafkaStorageError)
        }
    }
}
