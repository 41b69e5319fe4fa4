//! Produce: append each partition's batches to its log, exactly as the client encoded them.
//!
//! Each partition stands alone, as in Kafka: a bad batch fails its partition with an error code and appends
//! nothing there; other partitions of the same request go ahead. With `acks=0` no response is sent.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use strata_storage::batch::BatchError;
use strata_storage::{AppendError, TopicPartition};
use tracing::warn;

use std::sync::PoisonError;

use crate::broker::Broker;
use crate::producers::Verdict;
use crate::replica::for_each_header;

/// Leader epoch stamped into appended batches; one node never changes leader.
const LEADER_EPOCH: i32 = 0;

pub fn handle(broker: &Broker, request: ProduceRequest, _version: i16) -> Option<ProduceResponse> {
    let acks = request.acks;
    let mut responses = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let topic = broker.topics.get(&topic_data.name);
        let partition_responses = topic_data
            .partition_data
            .into_iter()
            .map(|data| {
                let index = data.index;
                let result = match &topic {
                    None => Err((ResponseError::UnknownTopicOrPartition, "unknown topic".into())),
                    Some(topic) if !matches!(acks, -1..=1) => {
                        Err((ResponseError::InvalidRequiredAcks, format!("acks={acks} is not -1, 0 or 1 ({})", topic.name)))
                    }
                    Some(topic) if acks == -1 && broker.settings.min_insync_replicas(&topic.configs) > 1 => Err((
                        ResponseError::NotEnoughReplicas,
                        "min.insync.replicas is larger than the one in-sync replica".into(),
                    )),
                    Some(topic) => append(broker, &topic.name, index, data.records.as_deref().unwrap_or_default()),
                };
                let response = PartitionProduceResponse::default().with_index(index).with_log_append_time_ms(-1);
                match result {
                    Ok((base_offset, log_start_offset)) => {
                        response.with_base_offset(base_offset as i64).with_log_start_offset(log_start_offset as i64)
                    }
                    Err((error, message)) => {
                        warn!(topic = %topic_data.name.0, partition = index, error = ?error, %message, "produce refused");
                        response
                            .with_error_code(error.code())
                            .with_base_offset(-1)
                            .with_log_start_offset(-1)
                            .with_error_message(Some(StrBytes::from_string(message)))
                    }
                }
            })
            .collect();
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partition_responses),
        );
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

/// Appends to one partition; returns the base offset and the log start offset.
fn append(broker: &Broker, topic: &str, index: i32, records: &[u8]) -> Result<(u64, u64), (ResponseError, String)> {
    let Some(partition) = broker.replicas.get(&TopicPartition::new(topic, index)) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("{topic} has no partition {index}"),
        ));
    };
    // The log rewrites offsets in place; the request's bytes are shared with the whole frame.
    let mut batches = records.to_vec();
    let appended = {
        let mut log = partition.log.lock().unwrap_or_else(PoisonError::into_inner);
        let mut producers = partition.producers.lock().unwrap_or_else(PoisonError::into_inner);
        // Batches of idempotent producers are judged first: a retry gets the answer it had, a gap or a
        // fenced epoch its error, and neither appends anything.
        let mut verdict = Verdict::Append;
        for_each_header(&batches, |header| {
            if verdict == Verdict::Append {
                verdict = producers.check(header);
            }
        });
        match verdict {
            Verdict::Duplicate(base_offset) => return Ok((base_offset, log.log_start_offset())),
            Verdict::Refuse(error) => {
                return Err((error, format!("refused by the idempotent producer checks: {error:?}")));
            }
            Verdict::Append => {}
        }
        log.append(&mut batches, LEADER_EPOCH).map(|info| {
            // The headers now carry the offsets the log assigned.
            for_each_header(&batches, |header| producers.appended(header));
            (info.first_offset, log.log_start_offset())
        })
    };
    match appended {
        Ok(result) => {
            partition.appended();
            Ok(result)
        }
        Err(e) => Err((error_code(&e), e.to_string())),
    }
}

/// The one place append failures become Kafka error codes.
fn error_code(e: &AppendError) -> ResponseError {
    match e {
        AppendError::InvalidBatch {
            source: BatchError::UnsupportedMagic(_),
            ..
        } => ResponseError::UnsupportedForMessageFormat,
        AppendError::InvalidBatch { .. } | AppendError::Empty => ResponseError::CorruptMessage,
        AppendError::TooLarge { .. } => ResponseError::MessageTooLarge,
        AppendError::Storage(_) => ResponseError::KafkaStorageError,
    }
}
