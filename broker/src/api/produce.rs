//! Produce: append each partition's batches to its log, exactly as the client encoded them.
//!
//! Each partition stands alone, as in Kafka: a bad batch fails its partition with an error code and appends
//! nothing there; other partitions of the same request go ahead. With `acks=0` no response is sent.
//!
//! Only the partition's leader appends, stamping its leader epoch into each batch, and applying the topic's
//! settings as Kafka's LogValidator does (see `Log::append_as_leader`): records without a key on a compacted
//! topic are `INVALID_RECORD` and create times outside the topic's window `INVALID_TIMESTAMP`, each naming
//! the records in `record_errors`; `LogAppendTime` topics answer with the time stamped
//! (`log_append_time_ms`, else -1); a batch in another codec than the topic's `compression.type` is
//! recompressed. `acks=all` first checks
//! that the ISR has at least `min.insync.replicas` members (else NOT_ENOUGH_REPLICAS, nothing appended), then
//! answers once the high watermark has passed the appended batches, that is once every in-sync replica has
//! them, or REQUEST_TIMED_OUT after the request's timeout.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use strata_storage::batch::{BatchError, RejectionKind};
use strata_storage::{AppendError, LeaderAppend, ProducerError, TopicPartition};
use tracing::warn;

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use crate::broker::Broker;
use crate::metadata::Topic;
use crate::metrics::{Direction, RemoteWait};
use crate::replica::Partition;

/// The longest `acks=all` waits, whatever the client asks.
const ACKS_ALL_TIMEOUT_MAX_MS: i32 = 300_000;

struct Refusal {
    error: ResponseError,
    message: String,
    /// The records of the batch the error is about (index in the batch, why), for INVALID_RECORD and
    /// INVALID_TIMESTAMP (Kafka's `record_errors`, KIP-467).
    records: Vec<(i32, String)>,
}

impl Refusal {
    fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Refusal {
            error,
            message: message.into(),
            records: Vec::new(),
        }
    }
}

/// Batches appended to one partition as its leader.
struct Written {
    partition: Arc<Partition>,
    base_offset: u64,
    /// The offset after the last appended record: acks=all waits for the high watermark to reach it.
    end_offset: u64,
    log_start_offset: u64,
    /// The time a `LogAppendTime` topic stamped on the batches.
    log_append_time_ms: Option<i64>,
}

/// One partition of the request after the appends.
struct Appended {
    index: i32,
    result: Result<Written, Refusal>,
}

pub async fn handle(
    broker: &Broker,
    request: ProduceRequest,
    version: i16,
    remote: &RemoteWait,
) -> Option<ProduceResponse> {
    // From v13 topics are named by id (KIP-516), in the request and in the answer.
    let topic_ids = version >= 13;
    let acks = request.acks;
    let timeout = Duration::from_millis(request.timeout_ms.clamp(0, ACKS_ALL_TIMEOUT_MAX_MS) as u64);
    // Appends first, for every partition; then, with acks=all, the waits, all running at once.
    let mut appended: Vec<(TopicProduceResponse, Vec<Appended>)> = Vec::new();
    for topic_data in request.topic_data {
        let (topic, unknown, named) = if topic_ids {
            (
                broker.metadata.by_id(topic_data.topic_id),
                Refusal::new(ResponseError::UnknownTopicId, "unknown topic id"),
                TopicProduceResponse::default().with_topic_id(topic_data.topic_id),
            )
        } else {
            (
                broker.metadata.get(&topic_data.name),
                Refusal::new(ResponseError::UnknownTopicOrPartition, "unknown topic"),
                TopicProduceResponse::default().with_name(topic_data.name),
            )
        };
        let partitions = topic_data
            .partition_data
            .into_iter()
            .map(|data| {
                let index = data.index;
                let result = match &topic {
                    None => Err(Refusal::new(unknown.error, unknown.message.clone())),
                    Some(topic) if !matches!(acks, -1..=1) => Err(Refusal::new(
                        ResponseError::InvalidRequiredAcks,
                        format!("acks={acks} is not -1, 0 or 1 ({})", topic.name),
                    )),
                    Some(topic) => append(broker, topic, index, acks, data.records.as_deref().unwrap_or_default()),
                };
                Appended { index, result }
            })
            .collect();
        appended.push((named, partitions));
    }
    if acks == 0 {
        return None;
    }
    // The request waits (in Kafka's terms, sits in the produce purgatory) while its acks=all waits run.
    let waiting = (acks == -1 && appended.iter().any(|(_, p)| p.iter().any(|a| a.result.is_ok())))
        .then(|| broker.metrics.produce_waiting());
    let mut responses = Vec::with_capacity(appended.len());
    for (named, partitions) in appended {
        let topic = topic_label(&named);
        let waits = partitions.into_iter().map(|Appended { index, result }| async move {
            let result = match result {
                Ok(written) if acks == -1 => {
                    if written
                        .partition
                        .wait_for_high_watermark(written.end_offset, timeout)
                        .await
                    {
                        Ok(written)
                    } else if written.partition.leader_epoch().is_none() {
                        Err(Refusal::new(
                            ResponseError::NotLeaderOrFollower,
                            "leadership moved before the write was replicated",
                        ))
                    } else {
                        Err(Refusal::new(
                            ResponseError::RequestTimedOut,
                            "the in-sync replicas did not all acknowledge in time",
                        ))
                    }
                }
                result => result,
            };
            (index, result)
        });
        let partition_responses = remote
            .wait(futures_util::future::join_all(waits))
            .await
            .into_iter()
            .map(|(index, result)| {
                let response = PartitionProduceResponse::default()
                    .with_index(index)
                    .with_log_append_time_ms(-1);
                match result {
                    Ok(written) => response
                        .with_base_offset(written.base_offset as i64)
                        .with_log_start_offset(written.log_start_offset as i64)
                        .with_log_append_time_ms(written.log_append_time_ms.unwrap_or(-1)),
                    Err(Refusal {
                        error,
                        message,
                        records,
                    }) => {
                        warn!(%topic, partition = index, error = ?error, %message, "produce refused");
                        // Kafka names the records an INVALID_RECORD or INVALID_TIMESTAMP is about (KIP-467).
                        let record_errors = records
                            .into_iter()
                            .map(|(at, why)| {
                                BatchIndexAndErrorMessage::default()
                                    .with_batch_index(at)
                                    .with_batch_index_error_message(Some(StrBytes::from_string(why)))
                            })
                            .collect();
                        response
                            .with_error_code(error.code())
                            .with_base_offset(-1)
                            .with_log_start_offset(-1)
                            .with_record_errors(record_errors)
                            .with_error_message(Some(StrBytes::from_string(message)))
                    }
                }
            })
            .collect();
        responses.push(named.with_partition_responses(partition_responses));
    }
    drop(waiting);
    Some(ProduceResponse::default().with_responses(responses))
}

/// How the log names a topic of the answer: by name, or by id from v13.
fn topic_label(named: &TopicProduceResponse) -> String {
    if named.topic_id.is_nil() {
        named.name.0.to_string()
    } else {
        named.topic_id.to_string()
    }
}

/// Appends to one partition as its leader.
fn append(broker: &Broker, topic: &Topic, index: i32, acks: i16, records: &[u8]) -> Result<Written, Refusal> {
    let Some(partition) = broker.replicas.get(&TopicPartition::new(topic.name.clone(), index)) else {
        return Err(Refusal::new(
            ResponseError::UnknownTopicOrPartition,
            format!("{} has no partition {index} here", topic.name),
        ));
    };
    let Some(leader_epoch) = partition.leader_epoch() else {
        return Err(Refusal::new(
            ResponseError::NotLeaderOrFollower,
            "this broker does not lead the partition",
        ));
    };
    if acks == -1 {
        let min_insync = broker.settings().min_insync_replicas(&topic.configs);
        let in_sync = partition.state().isr.len();
        if (in_sync as i32) < min_insync {
            return Err(Refusal::new(
                ResponseError::NotEnoughReplicas,
                format!("{in_sync} in-sync replica(s), fewer than min.insync.replicas={min_insync}"),
            ));
        }
    }
    // The log rewrites offsets in place; the request's bytes are shared with the whole frame.
    let mut batches = records.to_vec();
    // One call judges idempotent producers' sequences and appends, under the partition's one lock.
    let appended = {
        let mut log = partition.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.append_as_leader(&mut batches, leader_epoch)
            .map(|append| match append {
                LeaderAppend::Appended(info) => (
                    info.first_offset,
                    info.log_end_offset,
                    log.log_start_offset(),
                    info.log_append_time_ms,
                    info.records,
                ),
                // A retry: answered with the offsets (and append time) it got the first time; acks=all waits
                // for those.
                LeaderAppend::Duplicate {
                    batch,
                    log_append_time_ms,
                } => (
                    batch.base_offset,
                    batch.last_offset + 1,
                    log.log_start_offset(),
                    log_append_time_ms,
                    // Appended the first time, and counted then.
                    0,
                ),
            })
    };
    match appended {
        Ok((base_offset, end_offset, log_start_offset, log_append_time_ms, records_appended)) => {
            partition.leader_appended();
            if records_appended > 0 {
                broker
                    .metrics
                    .topic_flow(Direction::In, &topic.name, records.len(), records_appended);
            }
            Ok(Written {
                partition,
                base_offset,
                end_offset,
                log_start_offset,
                log_append_time_ms,
            })
        }
        Err(e) => Err(refusal(e)),
    }
}

/// What the client is told about a failed append: the error code, the message and the records named.
fn refusal(e: AppendError) -> Refusal {
    let error = error_code(&e);
    match e {
        AppendError::InvalidBatch {
            source: BatchError::InvalidRecord { index, reason },
            position,
        } => Refusal {
            records: i32::try_from(index)
                .ok()
                .map(|at| (at, format!("record {at}: {reason}")))
                .into_iter()
                .collect(),
            ..Refusal::new(
                error,
                format!("invalid record batch at byte {position} of the appended bytes: record {index}: {reason}"),
            )
        },
        // Kafka's own message for the batch, and each refused record with its own.
        AppendError::InvalidBatch {
            source: source @ BatchError::RecordsRejected { .. },
            ..
        } => {
            let message = source.to_string();
            let BatchError::RecordsRejected { errors, .. } = source else {
                unreachable!("matched above")
            };
            Refusal {
                records: errors
                    .into_iter()
                    .filter_map(|r| Some((i32::try_from(r.index).ok()?, r.message)))
                    .collect(),
                ..Refusal::new(error, message)
            }
        }
        e => Refusal::new(error, e.to_string()),
    }
}

/// The one place append failures become Kafka error codes.
fn error_code(e: &AppendError) -> ResponseError {
    match e {
        AppendError::InvalidBatch {
            source: BatchError::UnsupportedMagic(_),
            ..
        } => ResponseError::UnsupportedForMessageFormat,
        AppendError::InvalidBatch {
            source: BatchError::InvalidRecord { .. },
            ..
        }
        | AppendError::InvalidBatch {
            source:
                BatchError::RecordsRejected {
                    kind: RejectionKind::InvalidRecord,
                    ..
                },
            ..
        } => ResponseError::InvalidRecord,
        AppendError::InvalidBatch {
            source:
                BatchError::RecordsRejected {
                    kind: RejectionKind::InvalidTimestamp,
                    ..
                },
            ..
        } => ResponseError::InvalidTimestamp,
        AppendError::InvalidBatch { .. } | AppendError::Empty => ResponseError::CorruptMessage,
        AppendError::TooLarge { .. } => ResponseError::MessageTooLarge,
        // This broker's view of the leadership is behind: a newer leader's batches are in the log.
        AppendError::Storage(strata_storage::Error::StaleLeaderEpoch { .. }) => ResponseError::FencedLeaderEpoch,
        AppendError::Producer(ProducerError::OutOfOrderSequence { .. }) => ResponseError::OutOfOrderSequenceNumber,
        AppendError::Producer(ProducerError::InvalidProducerEpoch { .. }) => ResponseError::InvalidProducerEpoch,
        AppendError::Producer(ProducerError::UnknownProducerId { .. }) => ResponseError::UnknownProducerId,
        AppendError::Storage(_) => ResponseError::KafkaStorageError,
    }
}
