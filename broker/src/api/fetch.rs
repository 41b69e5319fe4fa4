//! Fetch: whole batches from each requested partition, within the per-partition and total byte limits.
//!
//! A fetch that finds fewer than `min_bytes` waits (a delayed fetch) until an append to one of its
//! partitions wakes it or `max_wait_ms` passes; it is woken, never polling. The waiter is registered with
//! every partition *before* the logs are read, so an append between the read and the wait is not missed.
//!
//! Only a partition's leader answers. Consumers read up to the high watermark; a follower (a fetch with a
//! `replica_id`) reads up to the log end, and its fetch offset tells the leader how far its log reaches,
//! which moves the high watermark (`crate::replica`). The follower's id is `replica_id`, or from v15 on
//! `replica_state.replica_id` (KIP-903).
//!
//! From v7 a fetch may belong to a fetch session (KIP-227, `crate::fetch_sessions`): the session decides which
//! partitions are read (the request's, or all of the session's) and which the answer carries. From v13
//! topics are named by id (KIP-516): an unknown id is `UNKNOWN_TOPIC_ID` for its partitions, and the answer
//! names topics by id too.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_storage::{ReadError, ReadLimits, TopicPartition};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{error, info};

use crate::broker::Broker;
use crate::fetch_sessions::{FINAL_EPOCH, Outcome, Plan, TopicKey, Wanted};
use crate::metrics::{Direction, RemoteWait, record_count};
use crate::replica::Partition;

/// The longest a fetch may wait, whatever the client asks: a bound on parked requests.
const MAX_WAIT_MS_MAX: i32 = 60_000;
/// The most one fetch returns, whatever the client asks (Kafka's default `fetch.max.bytes` is 50 MiB).
const FETCH_BYTES_MAX: usize = 64 * 1024 * 1024;

pub async fn handle(broker: &Broker, request: FetchRequest, version: i16, remote: &RemoteWait) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.clamp(0, MAX_WAIT_MS_MAX) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    // Topics are named by id from v13 on, and sessions exist from v7 on.
    let topic_ids = version >= 13;
    let epoch = if version >= 7 {
        request.session_epoch
    } else {
        FINAL_EPOCH
    };
    let (wanted, forgotten) = requested(&request, topic_ids);
    let plan =
        match broker
            .fetch_sessions
            .plan(request.session_id, epoch, topic_ids, wanted, &forgotten, Instant::now())
        {
            Ok(plan) => plan,
            Err(refused) => {
                info!(session = request.session_id, epoch, error = ?refused, "fetch session refused");
                return FetchResponse::default().with_error_code(refused.response_error().code());
            }
        };
    let wanted = plan.wanted();
    // KIP-903 moved the follower's id into `replica_state` in v15.
    let replica_id = if version >= 15 {
        request.replica_state.replica_id
    } else {
        request.replica_id
    };
    let follower = (replica_id.0 >= 0).then_some(replica_id.0);
    if let Some(replica) = follower {
        for (w, partition) in wanted.iter().zip(resolve(broker, wanted)) {
            // Only a follower at this leader's epoch has truncated its log to agree with this one, so only
            // its fetch offset tells how far the two logs agree.
            if let Ok(partition) = partition
                && w.current_leader_epoch >= 0
                && check_leader(&partition, w.current_leader_epoch).is_ok()
            {
                partition.follower_fetched(replica, u64::try_from(w.fetch_offset).unwrap_or(0));
            }
        }
    }
    let max_bytes = request.max_bytes;
    let waiter = Arc::new(Notify::new());
    loop {
        let partitions = resolve(broker, wanted);
        for partition in partitions.iter().flatten() {
            partition.watch(&waiter);
        }
        let once = read(max_bytes, wanted, &partitions, follower.is_some());
        if once.bytes >= min_bytes || once.errors || Instant::now() >= deadline {
            count_out(broker, follower.is_some(), &partitions, &once);
            return respond(broker, &plan, topic_ids, once);
        }
        // An append, the deadline or a shutdown: each ends in one more read and an answer. Meanwhile the
        // fetch is in Kafka's fetch purgatory, and its time there is the request's remote time.
        let waiting = broker.metrics.fetch_waiting();
        remote
            .wait(async {
                tokio::select! {
                    () = waiter.notified() => {}
                    () = tokio::time::sleep_until(deadline) => {}
                    () = broker.shutdown.cancelled() => {}
                }
            })
            .await;
        drop(waiting);
        if broker.shutdown.is_cancelled() {
            let partitions = resolve(broker, wanted);
            let last = read(max_bytes, wanted, &partitions, follower.is_some());
            count_out(broker, follower.is_some(), &partitions, &last);
            return respond(broker, &plan, topic_ids, last);
        }
    }
}
/// Counts what a read returns: as replication bytes out for a follower, else as each topic's bytes and
/// records out.
fn count_out(broker: &Broker, follower: bool, partitions: &[Result<Arc<Partition>, ResponseError>], read: &Read) {
    if read.bytes == 0 {
        return;
    }
    if follower {
        broker.metrics.replication_out(read.bytes);
        return;
    }
    for (partition, data) in partitions.iter().zip(&read.partitions) {
        if let (Ok(partition), Some(records)) = (partition, &data.records)
            && !records.is_empty()
        {
            let topic = &partition.tp.topic;
            broker
                .metrics
                .topic_flow(Direction::Out, topic, records.len(), record_count(records));
        }
    }
}

/// The partitions a request names, and those it tells its session to forget.
fn requested(request: &FetchRequest, topic_ids: bool) -> (Vec<Wanted>, Vec<(TopicKey, i32)>) {
    let key = |name: &TopicName, id| {
        if topic_ids {
            TopicKey::Id(id)
        } else {
            TopicKey::Name(Arc::from(name.0.as_str()))
        }
    };
    let wanted = request
        .topics
        .iter()
        .flat_map(|topic| {
            let key = key(&topic.topic, topic.topic_id);
            topic.partitions.iter().map(move |p| Wanted {
                topic: key.clone(),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                current_leader_epoch: p.current_leader_epoch,
                log_start_offset: p.log_start_offset,
                partition_max_bytes: p.partition_max_bytes,
            })
        })
        .collect();
    let forgotten = request
        .forgotten_topics_data
        .iter()
        .flat_map(|topic| {
            let key = key(&topic.topic, topic.topic_id);
            topic.partitions.iter().map(move |p| (key.clone(), *p))
        })
        .collect();
    (wanted, forgotten)
}

/// The hosted partition for each wanted one, or why there is none.
fn resolve(broker: &Broker, wanted: &[Wanted]) -> Vec<Result<Arc<Partition>, ResponseError>> {
    let image = broker.metadata.image();
    wanted
        .iter()
        .map(|w| {
            let topic = match &w.topic {
                TopicKey::Name(name) => image
                    .topic_by_name(name)
                    .ok_or(ResponseError::UnknownTopicOrPartition)?,
                TopicKey::Id(id) => image.topic(id).ok_or(ResponseError::UnknownTopicId)?,
            };
            broker
                .replicas
                .get(&TopicPartition::new(topic.name.clone(), w.partition))
                .ok_or(ResponseError::UnknownTopicOrPartition)
        })
        .collect()
}

/// One read of every wanted partition.
struct Read {
    partitions: Vec<PartitionData>,
    outcomes: Vec<Outcome>,
    /// Record bytes in all partitions together.
    bytes: usize,
    /// Whether any partition failed (which answers at once rather than waiting).
    errors: bool,
}

/// Reads every partition once, up to the log end for a `follower`, else up to the high watermark, within
/// `max_bytes` in all.
fn read(
    max_bytes: i32,
    wanted: &[Wanted],
    partitions: &[Result<Arc<Partition>, ResponseError>],
    follower: bool,
) -> Read {
    let mut budget = (max_bytes.max(0) as usize).min(FETCH_BYTES_MAX);
    let mut read = Read {
        partitions: Vec::with_capacity(wanted.len()),
        outcomes: Vec::with_capacity(wanted.len()),
        bytes: 0,
        errors: false,
    };
    for (w, partition) in wanted.iter().zip(partitions) {
        let data = match partition {
            Err(error) => Err(*error),
            Ok(partition) => read_one(partition, w, follower, read.bytes == 0, &mut budget),
        };
        let (data, outcome) = match data {
            Ok(data) => {
                let outcome = Outcome {
                    high_watermark: data.high_watermark,
                    log_start_offset: data.log_start_offset,
                    record_bytes: data.records.as_ref().map_or(0, Bytes::len),
                    error: false,
                };
                read.bytes += outcome.record_bytes;
                (data, outcome)
            }
            Err(error) => {
                read.errors = true;
                let data = PartitionData::default()
                    .with_partition_index(w.partition)
                    .with_records(Some(Bytes::new()))
                    .with_error_code(error.code());
                let outcome = Outcome {
                    high_watermark: -1,
                    log_start_offset: -1,
                    record_bytes: 0,
                    error: true,
                };
                (data, outcome)
            }
        };
        read.partitions.push(data);
        read.outcomes.push(outcome);
    }
    read
}

/// Reads one partition as its leader, taking what it returns from `budget`.
fn read_one(
    partition: &Partition,
    wanted: &Wanted,
    follower: bool,
    first: bool,
    budget: &mut usize,
) -> Result<PartitionData, ResponseError> {
    check_leader(partition, wanted.current_leader_epoch)?;
    let high_watermark = partition.high_watermark();
    let log = partition.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let limits = ReadLimits {
        max_bytes: (wanted.partition_max_bytes.max(0) as usize).min(*budget),
        max_offset: (!follower).then_some(high_watermark),
        // KIP-74: the first batch of a response is returned whole even past the limits, so that one
        // oversized batch cannot stall a consumer forever.
        min_one_batch: first,
    };
    let offset = u64::try_from(wanted.fetch_offset).unwrap_or(u64::MAX);
    let records = match log.read(offset, limits) {
        Ok(read) => read.records,
        Err(ReadError::OffsetOutOfRange { .. }) => return Err(ResponseError::OffsetOutOfRange),
        Err(ReadError::Storage(e)) => {
            error!(partition = %partition.tp, error = %e, "fetch failed");
            return Err(ResponseError::KafkaStorageError);
        }
    };
    *budget = budget.saturating_sub(records.len());
    Ok(PartitionData::default()
        .with_partition_index(wanted.partition)
        .with_high_watermark(high_watermark as i64)
        .with_last_stable_offset(high_watermark as i64)
        .with_log_start_offset(log.log_start_offset() as i64)
        .with_records(Some(Bytes::from(records))))
}

/// The answer to a fetch: the partitions its session says to carry, grouped by topic in the order read.
fn respond(broker: &Broker, plan: &Plan, topic_ids: bool, read: Read) -> FetchResponse {
    let answer = broker
        .fetch_sessions
        .answered(plan, topic_ids, &read.outcomes, Instant::now());
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    let mut last: Option<&TopicKey> = None;
    let kept = plan.wanted().iter().zip(read.partitions).zip(answer.keep);
    for ((w, data), _) in kept.filter(|(_, keep)| *keep) {
        if last != Some(&w.topic) {
            let topic = FetchableTopicResponse::default();
            responses.push(match &w.topic {
                TopicKey::Id(id) => topic.with_topic_id(*id),
                TopicKey::Name(name) => topic.with_topic(TopicName(StrBytes::from_string(name.to_string()))),
            });
            last = Some(&w.topic);
        }
        if let Some(topic) = responses.last_mut() {
            topic.partitions.push(data);
        }
    }
    FetchResponse::default()
        .with_session_id(answer.session_id)
        .with_responses(responses)
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
