//! Fetch: whole batches from each requested partition, within the per-partition and total byte limits.
//!
//! A fetch that finds fewer than `min_bytes` waits (a delayed fetch) until an append to one of its
//! partitions wakes it or `max_wait_ms` passes; it is woken, never polling. The waiter is registered with
//! every partition *before* the logs are read, so an append between the read and the wait is not missed.
//!
//! Only a partition's leader answers. Consumers read up to the high watermark; a follower (a fetch with a
//! `replica_id`) reads up to the log end, and its fetch offset tells the leader how far its log reaches,
//! which moves the high watermark (`crate::replica`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use strata_storage::{ReadError, ReadLimits, TopicPartition};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::error;

use crate::broker::Broker;
use crate::replica::Partition;

/// The longest a fetch may wait, whatever the client asks: a bound on parked requests.
const MAX_WAIT_MS_MAX: i32 = 60_000;
/// The most one fetch returns, whatever the client asks (Kafka's default `fetch.max.bytes` is 50 MiB).
const FETCH_BYTES_MAX: usize = 64 * 1024 * 1024;

pub async fn handle(broker: &Broker, request: FetchRequest, _version: i16) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.clamp(0, MAX_WAIT_MS_MAX) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    let waiter = Arc::new(Notify::new());
    let follower = (request.replica_id.0 >= 0).then_some(request.replica_id.0);
    if let Some(replica) = follower {
        let partitions = resolve(broker, &request);
        for (topic, hosted) in request.topics.iter().zip(&partitions) {
            for (wanted, partition) in topic.partitions.iter().zip(hosted.iter().flatten()) {
                // Only a follower at this leader's epoch has truncated its log to agree with this one, so only
                // its fetch offset tells how far the two logs agree.
                if let Some(partition) = partition
                    && wanted.current_leader_epoch >= 0
                    && check_leader(partition, wanted.current_leader_epoch).is_ok()
                {
                    partition.follower_fetched(replica, u64::try_from(wanted.fetch_offset).unwrap_or(0));
                }
            }
        }
    }
    loop {
        let partitions = resolve(broker, &request);
        for partition in partitions.iter().flatten().flatten().flatten() {
            partition.watch(&waiter);
        }
        let (response, bytes, errors) = read(&request, &partitions, follower.is_some());
        if bytes >= min_bytes || errors || Instant::now() >= deadline {
            return response;
        }
        // An append, the deadline or a shutdown: each ends in one more read and an answer.
        tokio::select! {
            () = waiter.notified() => {}
            () = tokio::time::sleep_until(deadline) => {}
            () = broker.shutdown.cancelled() => {}
        }
        if broker.shutdown.is_cancelled() {
            return read(&request, &resolve(broker, &request), follower.is_some()).0;
        }
    }
}

/// The hosted partition for each requested one: outer `None` for an unknown topic, inner for a partition.
fn resolve(broker: &Broker, request: &FetchRequest) -> Vec<Option<Vec<Option<Arc<Partition>>>>> {
    request
        .topics
        .iter()
        .map(|topic| {
            broker.metadata.get(&topic.topic).map(|_| {
                topic
                    .partitions
                    .iter()
                    .map(|p| {
                        broker
                            .replicas
                            .get(&TopicPartition::new(topic.topic.0.to_string(), p.partition))
                    })
                    .collect()
            })
        })
        .collect()
}

/// Reads every partition once, up to the log end for a `follower`, else up to the high watermark. Returns
/// the response, the record bytes in it, and whether any partition failed (which answers at once rather
/// than waiting).
fn read(
    request: &FetchRequest,
    partitions: &[Option<Vec<Option<Arc<Partition>>>>],
    follower: bool,
) -> (FetchResponse, usize, bool) {
    let mut budget = (request.max_bytes.max(0) as usize).min(FETCH_BYTES_MAX);
    let mut total = 0;
    let mut errors = false;
    let mut responses = Vec::with_capacity(request.topics.len());
    for (topic, hosted) in request.topics.iter().zip(partitions) {
        let mut out = Vec::with_capacity(topic.partitions.len());
        for (i, wanted) in topic.partitions.iter().enumerate() {
            let data = PartitionData::default()
                .with_partition_index(wanted.partition)
                .with_records(Some(Bytes::new()));
            let Some(partition) = hosted.as_ref().and_then(|h| h[i].as_ref()) else {
                errors = true;
                out.push(data.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            if let Err(error) = check_leader(partition, wanted.current_leader_epoch) {
                errors = true;
                out.push(data.with_error_code(error.code()));
                continue;
            }
            let high_watermark = partition.high_watermark();
            let log = partition.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let data = data
                .with_high_watermark(high_watermark as i64)
                .with_last_stable_offset(high_watermark as i64)
                .with_log_start_offset(log.log_start_offset() as i64);
            let limits = ReadLimits {
                max_bytes: (wanted.partition_max_bytes.max(0) as usize).min(budget),
                max_offset: (!follower).then_some(high_watermark),
                // KIP-74: the first batch of a response is returned whole even past the limits, so that one
                // oversized batch cannot stall a consumer forever.
                min_one_batch: total == 0,
            };
            let offset = u64::try_from(wanted.fetch_offset).unwrap_or(u64::MAX);
            match log.read(offset, limits) {
                Ok(read) => {
                    total += read.records.len();
                    budget = budget.saturating_sub(read.records.len());
                    out.push(data.with_records(Some(Bytes::from(read.records))));
                }
                Err(ReadError::OffsetOutOfRange { .. }) => {
                    errors = true;
                    out.push(data.with_error_code(ResponseError::OffsetOutOfRange.code()));
                }
                Err(ReadError::Storage(e)) => {
                    error!(partition = %partition.tp, error = %e, "fetch failed");
                    errors = true;
                    out.push(data.with_error_code(ResponseError::KafkaStorageError.code()));
                }
            }
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(out),
        );
    }
    (FetchResponse::default().with_responses(responses), total, errors)
}

/// Only the leader serves fetches, and only at its leader epoch when the client names one (KIP-320):
/// an older epoch is fenced, a newer one means this broker has not caught up with the metadata yet.
pub fn check_leader(partition: &Partition, client_epoch: i32) -> Result<i32, ResponseError> {
    let epoch = partition.leader_epoch().ok_or(ResponseError::NotLeaderOrFollower)?;
    match client_epoch {
        e if e < 0 || e == epoch => Ok(epoch),
        e if e < epoch => Err(ResponseError::FencedLeaderEpoch),
        _ => Err(ResponseError::UnknownLeaderEpoch),
    }
}
