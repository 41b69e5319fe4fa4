//! ShareFetch (KIP-932): a share group member's acknowledgements, and records acquired for it from the
//! partitions of its share session that this broker leads.
//!
//! The request first moves the member's share session on (`crate::share::session`); its acknowledgements are
//! applied (`INVALID_RECORD_STATE` per partition for records the member does not hold); then, unless the
//! request closes the session, each partition of the session in turn hands the member records
//! (`crate::share::partition`): the log is read from the share-partition's next available offset up to the
//! high watermark, and the batches returned are those holding records acquired for the member, with the
//! acquired offset ranges and their delivery counts. The member processes only those offsets.
//!
//! When nothing could be acquired the fetch waits, up to `max_wait_ms`, for an append to one of its
//! partitions or for an acquisition lock to expire, whichever comes first, then tries again. A share-partition
//! is made on first use, at the log end or the log start by the group's `share.auto.offset.reset`.

use std::sync::PoisonError;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::share_fetch_response::{AcquiredRecords, PartitionData, ShareFetchableTopicResponse};
use kafka_protocol::messages::{ShareFetchRequest, ShareFetchResponse};
use kafka_protocol::protocol::StrBytes;
use strata_storage::log::Log;
use strata_storage::{ReadLimits, TopicPartition};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::replica::Partition;
use crate::share::partition::{AckType, Acquired, MemberId, SharePartition};
use crate::share::session::{OPEN_EPOCH, SharePartitionKey, Step};
use crate::share::state::{StateKey, UNINITIALIZED};
use crate::share::{self, AutoOffsetReset, SharedPartition, persister};

/// The longest a share fetch may wait, whatever the client asks.
const MAX_WAIT_MS_MAX: i32 = 60_000;
/// The most one share fetch returns, whatever the client asks.
const SHARE_FETCH_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Records acquired per fetch when the client does not say (`max_records` 0 or less), and the most.
const MAX_RECORDS_DEFAULT: usize = 500;
const MAX_RECORDS_MAX: usize = 10_000;

/// The answer for one partition of a share fetch.
#[derive(Debug, Default)]
struct Answered {
    error: Option<ResponseError>,
    acknowledge_error: Option<(ResponseError, String)>,
    records: Option<(Bytes, Vec<Acquired>)>,
}

pub async fn handle(broker: &Broker, request: ShareFetchRequest, _version: i16) -> ShareFetchResponse {
    let refuse = |error: ResponseError, message: &str| {
        ShareFetchResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message.to_owned())))
    };
    let (Some(group), Some(member)) = (&request.group_id, &request.member_id) else {
        return refuse(
            ResponseError::InvalidRequest,
            "a share fetch names its group and member",
        );
    };
    let (group, member): (String, MemberId) = (group.0.to_string(), member.as_str().into());
    if group.is_empty() || member.is_empty() {
        return refuse(
            ResponseError::InvalidRequest,
            "a share fetch names its group and member",
        );
    }
    let now = Instant::now();
    let named: Vec<SharePartitionKey> = request
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic_id, p.partition_index)))
        .collect();
    let forgotten: Vec<SharePartitionKey> = request
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic_id, *p)))
        .collect();
    let step = match broker
        .shares
        .sessions
        .step(&group, &member, request.share_session_epoch, &named, &forgotten, now)
    {
        Ok(step) => step,
        Err(error) => {
            info!(%group, %member, epoch = request.share_session_epoch, ?error, "share session refused");
            return refuse(error, &error.to_string());
        }
    };
    let mut answers: Vec<(SharePartitionKey, Answered)> = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            if partition.acknowledgement_batches.is_empty() {
                continue;
            }
            let batches = partition
                .acknowledgement_batches
                .iter()
                .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.as_slice()));
            let result = acknowledge(
                broker,
                &group,
                &member,
                (topic.topic_id, partition.partition_index),
                batches,
            )
            .await;
            answers.push((
                (topic.topic_id, partition.partition_index),
                Answered {
                    acknowledge_error: result.err(),
                    ..Default::default()
                },
            ));
        }
    }
    let partitions = match step {
        Step::Fetch(partitions) => partitions,
        Step::Closed(partitions) => {
            release(broker, &group, &member, &partitions);
            return respond(broker, &group, answers);
        }
    };
    let deadline = now + Duration::from_millis(request.max_wait_ms.clamp(0, MAX_WAIT_MS_MAX) as u64);
    let max_records = match request.max_records {
        n if n <= 0 => MAX_RECORDS_DEFAULT,
        n => (n as usize).min(MAX_RECORDS_MAX),
    };
    let max_bytes = (request.max_bytes.max(0) as usize).min(SHARE_FETCH_BYTES_MAX);
    // Partitions take turns at being first, so that a byte or record limit does not starve the last ones.
    let start = if partitions.is_empty() {
        0
    } else {
        request.share_session_epoch.max(0) as usize % partitions.len()
    };
    let order: Vec<SharePartitionKey> = partitions[start..]
        .iter()
        .chain(&partitions[..start])
        .copied()
        .collect();
    let waiter = std::sync::Arc::new(Notify::new());
    // A member opening its session checks each share-partition against its durable state once.
    let mut opening = request.share_session_epoch == OPEN_EPOCH;
    loop {
        let now = Instant::now();
        let mut records_left = max_records;
        let mut bytes_left = max_bytes;
        let mut acquired_any = false;
        let mut next_expiry: Option<Instant> = None;
        let mut fetched = Vec::new();
        for key in &order {
            let resolved = match led(broker, *key) {
                Ok((tp, partition)) => match share_partition(broker, &group, *key, &tp, &partition, opening).await {
                    Ok(shared) => Ok((tp, partition, shared)),
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            };
            let got = resolved.and_then(|(tp, partition, shared)| {
                partition.watch(&waiter);
                if let Some(expiry) = shared.lock().next_expiry() {
                    next_expiry = Some(next_expiry.map_or(expiry, |e: Instant| e.min(expiry)));
                }
                acquire(
                    broker,
                    &group,
                    &member,
                    &tp,
                    &partition,
                    &shared,
                    &mut records_left,
                    &mut bytes_left,
                    now,
                )
            });
            let answered = match got {
                Err(error) => Answered {
                    error: Some(error),
                    ..Default::default()
                },
                Ok(None) => continue,
                Ok(Some(got)) => {
                    acquired_any = true;
                    Answered {
                        records: Some(got),
                        ..Default::default()
                    }
                }
            };
            fetched.push((*key, answered));
        }
        opening = false;
        let errors = fetched.iter().any(|(_, a)| a.error.is_some());
        if acquired_any || errors || now >= deadline || broker.shutdown.is_cancelled() {
            for (key, answered) in fetched {
                match answers.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, existing)) => {
                        existing.error = answered.error;
                        existing.records = answered.records;
                    }
                    None => answers.push((key, answered)),
                }
            }
            return respond(broker, &group, answers);
        }
        let wake = next_expiry.map_or(deadline, |e| e.min(deadline));
        tokio::select! {
            () = waiter.notified() => {}
            () = tokio::time::sleep_until(wake) => {}
            () = broker.shutdown.cancelled() => {}
        }
    }
}

/// The hosted partition `key` names, led by this broker.
fn led(broker: &Broker, key: SharePartitionKey) -> Result<(TopicPartition, std::sync::Arc<Partition>), ResponseError> {
    let image = broker.metadata.image();
    let topic = image.topic(&key.0).ok_or(ResponseError::UnknownTopicId)?;
    let tp = TopicPartition::new(topic.name.clone(), key.1);
    let partition = broker.replicas.get(&tp).ok_or(ResponseError::UnknownTopicOrPartition)?;
    partition.leader_epoch().ok_or(ResponseError::NotLeaderOrFollower)?;
    Ok((tp, partition))
}

/// `group`'s share-partition of `tp` as this leader serves it: loaded from its durable state the first time
/// it is served at this leader epoch, or made at the log end or start (`share.auto.offset.reset`) if it has
/// none. With `revalidate` (a member opening its share session) the durable state is read even when one is
/// loaded, and replaces it if an administrator changed it since (a later state epoch).
pub(super) async fn share_partition(
    broker: &Broker,
    group: &str,
    key: SharePartitionKey,
    tp: &TopicPartition,
    partition: &Partition,
    revalidate: bool,
) -> Result<SharedPartition, ResponseError> {
    let image = broker.metadata.image();
    let (settings, _) = share::settings_of(&broker.settings(), &image, group);
    let leader_epoch = partition.leader_epoch().ok_or(ResponseError::NotLeaderOrFollower)?;
    let loaded = broker
        .shares
        .get(group, tp)
        .filter(|found| found.leader_epoch == leader_epoch);
    if let Some(found) = &loaded
        && !revalidate
    {
        found.lock().set_settings(settings);
        return Ok(found.clone());
    }
    let stored = persister::read(broker, &state_key(group, key), leader_epoch).await?;
    if let Some(found) = loaded
        && stored
            .as_ref()
            .is_none_or(|(state_epoch, _)| *state_epoch <= found.state_epoch)
    {
        found.lock().set_settings(settings);
        return Ok(found);
    }
    let (state_epoch, fresh) = match stored {
        Some((state_epoch, snapshot)) if snapshot.start_offset != UNINITIALIZED => {
            (state_epoch, SharePartition::restore(&snapshot, settings))
        }
        stored => {
            let start = match share::auto_offset_reset(&image, group) {
                AutoOffsetReset::Latest => partition.high_watermark(),
                AutoOffsetReset::Earliest => partition
                    .log
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .log_start_offset(),
            };
            let state_epoch = stored.map_or(0, |(state_epoch, _)| state_epoch);
            let fresh = SharePartition::new(start, settings);
            // Where the group starts is durable from its first fetch (Kafka's InitializeShareGroupState), so
            // that it is what every later leader and DescribeShareGroupOffsets see.
            persister::write(
                broker,
                &state_key(group, key),
                leader_epoch,
                state_epoch,
                fresh.snapshot(),
            )
            .await?;
            (state_epoch, fresh)
        }
    };
    broker
        .shares
        .install(group, tp, (leader_epoch, state_epoch), fresh)
        .ok_or_else(|| {
            warn!(%group, partition = %tp, "share-partition refused: the broker keeps as many as it may");
            ResponseError::UnknownServerError
        })
}

fn state_key(group: &str, (topic_id, partition): SharePartitionKey) -> StateKey {
    StateKey {
        group: group.to_owned(),
        topic_id,
        partition,
    }
}

/// Makes change `change` of `shared` durable at its share coordinator, after an acknowledgement and before
/// it is answered.
async fn persist(
    broker: &Broker,
    group: &str,
    key: SharePartitionKey,
    shared: &SharedPartition,
    change: u64,
) -> Result<(), ResponseError> {
    // Writes of one share-partition go one at a time, each with the state as it is when its turn comes, so
    // that a later snapshot is never overwritten by an earlier one; a change that a snapshot written while
    // it waited already carried needs no write of its own (acknowledgements arriving together share one).
    let mut written = shared.writes.lock().await;
    if *written >= change {
        return Ok(());
    }
    let (snapshot, upto) = {
        let state = shared.lock();
        (
            state.snapshot(),
            shared.changes.load(std::sync::atomic::Ordering::SeqCst),
        )
    };
    persister::write(
        broker,
        &state_key(group, key),
        shared.leader_epoch,
        shared.state_epoch,
        snapshot,
    )
    .await?;
    *written = upto;
    Ok(())
}

/// Acquires up to `records_left` records of `partition` for `member`, within `bytes_left`.
#[allow(clippy::too_many_arguments)]
fn acquire(
    broker: &Broker,
    group: &str,
    member: &MemberId,
    tp: &TopicPartition,
    partition: &Partition,
    shared: &SharedPartition,
    records_left: &mut usize,
    bytes_left: &mut usize,
    now: Instant,
) -> Result<Option<(Bytes, Vec<Acquired>)>, ResponseError> {
    let mut share = shared.lock();
    share.expire(now);
    let log = partition.log.lock().unwrap_or_else(PoisonError::into_inner);
    // Records deleted by retention cannot be delivered: the share-partition moves past them.
    if share.start_offset() < log.log_start_offset() {
        share.reset(log.log_start_offset());
    }
    let high_watermark = partition.high_watermark();
    let got = match share.next_fetch_offset() {
        Some(from) if from < high_watermark && *records_left > 0 && *bytes_left > 0 => {
            let limits = ReadLimits {
                max_bytes: *bytes_left,
                max_offset: Some(high_watermark),
                min_one_batch: true,
            };
            let read = log.read(from, limits).map_err(|e| {
                warn!(partition = %tp, error = %e, "share fetch read failed");
                ResponseError::KafkaStorageError
            })?;
            let batches = batch_ranges(&read.records);
            let ranges: Vec<(u64, u64)> = batches.iter().map(|b| (b.0, b.1)).collect();
            let acquired = share.acquire(member, &ranges, *records_left, now);
            let count: u64 = acquired.iter().map(|a| a.last - a.first + 1).sum();
            *records_left = records_left.saturating_sub(count as usize);
            // Only the batches that hold an acquired record go back.
            let mut records = BytesMut::new();
            for (first, last, bytes) in batches {
                if acquired.iter().any(|a| a.first <= last && first <= a.last) {
                    records.extend_from_slice(&read.records[bytes]);
                }
            }
            *bytes_left = bytes_left.saturating_sub(records.len());
            (!acquired.is_empty()).then(|| (records.freeze(), acquired))
        }
        _ => None,
    };
    dead_letters(broker, group, tp, &log, &mut share);
    Ok(got)
}

/// Records archived without being accepted: logged, and copied to the group's dead-letter topic if it has
/// one (`crate::share::dead_letters`).
fn dead_letters(broker: &Broker, group: &str, tp: &TopicPartition, log: &Log, share: &mut SharePartition) {
    let dead = share.take_dead_letters();
    if dead.is_empty() {
        return;
    }
    for letter in &dead {
        info!(%group, partition = %tp, offset = letter.offset, deliveries = letter.delivery_count, reason = ?letter.reason, "share record archived");
    }
    if let Some(topic) = share::dead_letter_topic(&broker.metadata.image(), group) {
        broker
            .shares
            .dead_letters
            .queue(&topic, group, (&tp.topic, tp.partition), log, &dead);
    }
}

/// The offset range and byte range of each record batch in `records` (whole v2 batches, as the log returns
/// them).
fn batch_ranges(records: &[u8]) -> Vec<(u64, u64, std::ops::Range<usize>)> {
    // Base offset (8 bytes), batch length (4), …, last offset delta at byte 23 (4).
    const LAST_OFFSET_DELTA_AT: usize = 23;
    let mut out = Vec::new();
    let mut at = 0;
    while at + LAST_OFFSET_DELTA_AT + 4 <= records.len() {
        let base = i64::from_be_bytes(records[at..at + 8].try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(records[at + 8..at + 12].try_into().expect("4 bytes"));
        let delta = i32::from_be_bytes(
            records[at + LAST_OFFSET_DELTA_AT..at + LAST_OFFSET_DELTA_AT + 4]
                .try_into()
                .expect("4 bytes"),
        );
        let end = at + 12 + length.max(0) as usize;
        if base < 0 || delta < 0 || end > records.len() {
            break;
        }
        out.push((base as u64, base as u64 + delta as u64, at..end));
        at = end;
    }
    out
}

/// Applies one partition's acknowledgement batches for `member`, and makes the result durable before it
/// returns.
pub(super) async fn acknowledge<'a>(
    broker: &Broker,
    group: &str,
    member: &MemberId,
    key: SharePartitionKey,
    batches: impl Iterator<Item = (i64, i64, &'a [i8])>,
) -> Result<(), (ResponseError, String)> {
    let (tp, partition) = led(broker, key).map_err(|e| (e, e.to_string()))?;
    let shared = match broker.shares.get(group, &tp) {
        Some(shared) if Some(shared.leader_epoch) == partition.leader_epoch() => shared,
        // Loaded at an earlier leadership, or never: the member holds nothing here.
        _ => {
            return Err((
                ResponseError::InvalidRecordState,
                "the member holds no records of this partition here".to_owned(),
            ));
        }
    };
    let mut outcome = Ok(());
    let mut changed = None;
    {
        let mut share = shared.lock();
        for (first, last, types) in batches {
            let kinds: Option<Vec<AckType>> = types.iter().map(|t| AckType::from_wire(*t)).collect();
            let (Some(kinds), Ok(first), Ok(last)) = (kinds, u64::try_from(first), u64::try_from(last)) else {
                outcome = Err((
                    ResponseError::InvalidRequest,
                    "an acknowledge type or offset is invalid".into(),
                ));
                continue;
            };
            if kinds.is_empty() {
                outcome = Err((ResponseError::InvalidRequest, "no acknowledge type".into()));
                continue;
            }
            match share.acknowledge(member, first, last, &kinds, Instant::now()) {
                Ok(()) => changed = Some(shared.changed(&share)),
                Err(refused) => {
                    info!(%group, %member, partition = %tp, offset = refused.offset, reason = refused.reason, "acknowledgement refused");
                    outcome = Err((
                        ResponseError::InvalidRecordState,
                        format!("offset {}: {}", refused.offset, refused.reason),
                    ));
                }
            }
        }
        let log = partition.log.lock().unwrap_or_else(PoisonError::into_inner);
        dead_letters(broker, group, &tp, &log, &mut share);
    }
    if let Some(change) = changed
        && let Err(error) = persist(broker, group, key, &shared, change).await
    {
        if error == ResponseError::FencedStateEpoch {
            // An administrator changed the state: what this leader holds is stale; the next use loads it.
            broker.shares.forget(group, &tp, &shared);
        }
        return Err((error, "the acknowledgement could not be made durable".to_owned()));
    }
    outcome
}

/// Gives back the records `member` holds in `partitions` (its share session closed).
pub(super) fn release(broker: &Broker, group: &str, member: &MemberId, partitions: &[SharePartitionKey]) {
    for key in partitions {
        if let Ok((tp, _)) = led(broker, *key)
            && let Some(shared) = broker.shares.get(group, &tp)
        {
            shared.lock().release_member(member);
        }
    }
}

fn respond(broker: &Broker, group: &str, answers: Vec<(SharePartitionKey, Answered)>) -> ShareFetchResponse {
    let image = broker.metadata.image();
    let (settings, _) = share::settings_of(&broker.settings(), &image, group);
    let mut topics: Vec<ShareFetchableTopicResponse> = Vec::new();
    for ((topic_id, index), answered) in answers {
        let mut data = PartitionData::default().with_partition_index(index);
        if let Some(error) = answered.error {
            data = data.with_error_code(error.code());
        }
        if let Some((error, message)) = answered.acknowledge_error {
            data = data
                .with_acknowledge_error_code(error.code())
                .with_acknowledge_error_message(Some(StrBytes::from_string(message)));
        }
        let (records, acquired) = answered.records.unwrap_or_default();
        data = data.with_records(Some(records)).with_acquired_records(
            acquired
                .into_iter()
                .map(|a| {
                    AcquiredRecords::default()
                        .with_first_offset(a.first as i64)
                        .with_last_offset(a.last as i64)
                        .with_delivery_count(a.delivery_count as i16)
                })
                .collect(),
        );
        match topics.iter_mut().find(|t| t.topic_id == topic_id) {
            Some(topic) => topic.partitions.push(data),
            None => topics.push(
                ShareFetchableTopicResponse::default()
                    .with_topic_id(topic_id)
                    .with_partitions(vec![data]),
            ),
        }
    }
    ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(settings.lock_duration.as_millis().min(i32::MAX as u128) as i32)
        .with_responses(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_ranges_follow_the_v2_layout() {
        let mut records = Vec::new();
        for (base, delta, body) in [(5i64, 2i32, 60usize), (8, 0, 60)] {
            let mut batch = vec![0u8; 12 + body];
            batch[..8].copy_from_slice(&base.to_be_bytes());
            batch[8..12].copy_from_slice(&(body as i32).to_be_bytes());
            batch[23..27].copy_from_slice(&delta.to_be_bytes());
            records.extend_from_slice(&batch);
        }
        assert_eq!(batch_ranges(&records), vec![(5, 7, 0..72), (8, 8, 72..144)]);
        // A torn tail is ignored.
        assert_eq!(batch_ranges(&records[..100]).len(), 1);
    }
}
