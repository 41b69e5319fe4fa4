//! DeleteRecords: moves a partition's log start offset forward; whole segments below it are deleted. The
//! new log start offsets are checkpointed before answering, so a crash does not bring the records back.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use strata_storage::TopicPartition;
use tracing::error;

use crate::broker::Broker;

/// `offset = -1` deletes up to the high watermark.
const HIGH_WATERMARK: i64 = -1;

pub fn handle(broker: &Broker, request: DeleteRecordsRequest, _version: i16) -> DeleteRecordsResponse {
    let mut topics: Vec<DeleteRecordsTopicResult> = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                    match delete(broker, &topic.name, p.partition_index, p.offset) {
                        Ok(low_watermark) => result.with_low_watermark(low_watermark as i64),
                        Err(error) => result.with_error_code(error.code()).with_low_watermark(-1),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    if let Err(e) = broker.replicas.log_manager().checkpoint() {
        error!(error = %e, "checkpointing log start offsets after DeleteRecords failed");
        for partition in topics
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .filter(|p| p.error_code == 0)
        {
            partition.error_code = ResponseError::KafkaStorageError.code();
        }
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

fn delete(broker: &Broker, topic: &str, partition: i32, offset: i64) -> Result<u64, ResponseError> {
    let tp = TopicPartition::new(topic, partition);
    let partition = broker.replicas.get(&tp).ok_or(ResponseError::UnknownTopicOrPartition)?;
    partition.leader_epoch().ok_or(ResponseError::NotLeaderOrFollower)?;
    // Followers move their log start up when their fetches bring the leader's.
    let high_watermark = partition.high_watermark();
    let mut log = partition.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let offset = match offset {
        HIGH_WATERMARK => high_watermark,
        o if o < 0 || o as u64 > high_watermark => return Err(ResponseError::OffsetOutOfRange),
        o => o as u64,
    };
    log.delete_records_before(offset).map_err(|e| {
        error!(partition = %tp, error = %e, "DeleteRecords failed");
        ResponseError::KafkaStorageError
    })
}
