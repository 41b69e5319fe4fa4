//! Replica fetchers: a follower pulls its partitions from their leaders, as in Kafka.
//!
//! One task per leader broker fetches every partition this broker follows from it, in one Fetch request
//! with this broker's id as `replica_id` (so the leader reads up to its log end and counts the fetch offset
//! as this replica's log end offset). Batches are appended verbatim (`Log::append_replicated`): same offsets,
//! same leader epochs. The leader's high watermark and log start offset come back with each response.
//!
//! Before a partition's first fetch in a new leader epoch, the follower asks the leader where its own latest
//! epoch ends (OffsetForLeaderEpoch) and truncates its log there, so a replica that was ahead of the new
//! leader (records never committed) drops them, and the logs never diverge.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_protocol::client::{Client, ClientOptions};
use strata_protocol::transport::Connector;
use strata_storage::{ReplicaAppendError, TopicPartition};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::replica::{Partition, ReplicaManager};

/// How long the leader may hold a fetch that finds nothing new.
const FETCH_MAX_WAIT_MS: i32 = 500;
const FETCH_BYTES_MAX: i32 = 16 << 20;
const PARTITION_FETCH_BYTES_MAX: i32 = 1 << 20;
/// A request that takes longer than this is abandoned and the connection made again. A fetch is answered
/// within [`FETCH_MAX_WAIT_MS`] when the leader is there, so anything much longer means the connection is
/// dead (its packets dropped by a partition, say): waiting Kafka's 30 s `replica.socket.timeout.ms` there
/// would hold acks=all for as long after the network heals.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(FETCH_MAX_WAIT_MS as u64 + 2_500);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A followed partition: the leader epoch it is followed at, and whether the log was truncated for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Followed {
    leader_epoch: i32,
    truncated: bool,
}

/// The partitions followed from one leader, and whether its task runs.
#[derive(Debug, Default)]
struct FromLeader {
    partitions: Mutex<HashMap<TopicPartition, Followed>>,
    wake: Notify,
    running: AtomicBool,
}

impl FromLeader {
    fn partitions(&self) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, Followed>> {
        self.partitions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Every fetcher of this broker, by leader.
#[derive(Debug)]
pub struct Fetchers {
    by_leader: Mutex<HashMap<i32, Arc<FromLeader>>>,
    /// How connections to leaders are made.
    connector: Connector,
}

impl Fetchers {
    pub fn new(connector: Connector) -> Self {
        Self {
            by_leader: Mutex::default(),
            connector,
        }
    }

    /// Follows `tp` from `leader` at `leader_epoch` (from any other leader no more), for `manager`. A new
    /// epoch truncates first.
    pub fn follow(&self, manager: &Arc<ReplicaManager>, tp: TopicPartition, leader: i32, leader_epoch: i32) {
        let mut by_leader = self.by_leader.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, from) in by_leader.iter() {
            if *id != leader {
                from.partitions().remove(&tp);
            }
        }
        let from = by_leader.entry(leader).or_default().clone();
        drop(by_leader);
        {
            let mut partitions = from.partitions();
            if partitions.get(&tp).is_none_or(|f| f.leader_epoch != leader_epoch) {
                let followed = Followed {
                    leader_epoch,
                    truncated: false,
                };
                partitions.insert(tp, followed);
            }
        }
        if !from.running.swap(true, Ordering::AcqRel) {
            debug!(leader, "starting a fetcher");
            tokio::spawn(run(manager.clone(), leader, from.clone()));
        }
        from.wake.notify_one();
    }

    /// Stops following `tp`.
    pub fn unfollow(&self, tp: &TopicPartition) {
        for from in self.by_leader.lock().unwrap_or_else(PoisonError::into_inner).values() {
            from.partitions().remove(tp);
        }
    }

    /// Wakes every fetcher (at shutdown, so they see it).
    pub fn wake_all(&self) {
        for from in self.by_leader.lock().unwrap_or_else(PoisonError::into_inner).values() {
            from.wake.notify_one();
        }
    }
}

/// The task fetching from `leader` while it has partitions to fetch.
async fn run(manager: Arc<ReplicaManager>, leader: i32, from: Arc<FromLeader>) {
    let mut client: Option<Client> = None;
    let mut backoff = BACKOFF_MIN;
    loop {
        if manager.shutdown().is_cancelled() {
            from.running.store(false, Ordering::Release);
            return;
        }
        let followed: Vec<(TopicPartition, Followed)> =
            from.partitions().iter().map(|(tp, f)| (tp.clone(), *f)).collect();
        if followed.is_empty() {
            from.running.store(false, Ordering::Release);
            // A partition added after the check above but before the store would have found the task
            // running and not started another: look once more.
            if from.partitions().is_empty() || from.running.swap(true, Ordering::AcqRel) {
                debug!(leader, "fetcher stopped: nothing left to follow from this leader");
                return;
            }
            continue;
        }
        let connection = match client.as_mut() {
            Some(connection) => connection,
            None => match connect(&manager, leader).await {
                Ok(connection) => client.insert(connection),
                Err(e) => {
                    debug!(leader, error = %e, "cannot reach the leader yet");
                    pause(&manager, &from, &mut backoff).await;
                    continue;
                }
            },
        };
        tracing::trace!(node = manager.node_id(), leader, followed = ?followed, "fetch round");
        let result = fetch_round(&manager, connection, &from, &followed).await;
        match result {
            Ok(progress) => {
                if progress {
                    backoff = BACKOFF_MIN;
                } else {
                    pause(&manager, &from, &mut backoff).await;
                }
            }
            Err(e) => {
                debug!(leader, error = %e, "fetching from the leader failed; reconnecting");
                client = None;
                pause(&manager, &from, &mut backoff).await;
            }
        }
    }
}

async fn pause(manager: &ReplicaManager, from: &FromLeader, backoff: &mut Duration) {
    tokio::select! {
        () = tokio::time::sleep(*backoff) => {}
        () = from.wake.notified() => {}
        () = manager.shutdown().cancelled() => {}
    }
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
}

async fn connect(manager: &ReplicaManager, leader: i32) -> anyhow::Result<Client> {
    let addr = manager
        .cluster()
        .broker_address(leader)
        .ok_or_else(|| anyhow::anyhow!("broker {leader} has no listener in the metadata"))?;
    let options = ClientOptions {
        client_id: format!("strata-replica-{}", manager.node_id()),
        request_timeout: REQUEST_TIMEOUT,
        connector: manager.fetchers().connector.clone(),
        ..ClientOptions::default()
    };
    Ok(Client::connect_with(&addr, options).await?)
}

/// Truncates what needs it, then fetches once. Returns whether any partition made progress (records or
/// truncation), so that a round of errors only backs off.
async fn fetch_round(
    manager: &ReplicaManager,
    client: &mut Client,
    from: &FromLeader,
    followed: &[(TopicPartition, Followed)],
) -> anyhow::Result<bool> {
    let untruncated: Vec<_> = followed.iter().filter(|(_, f)| !f.truncated).collect();
    let mut progress = !untruncated.is_empty() && truncate(manager, client, from, &untruncated).await? > 0;
    let mut request = FetchRequest::default()
        .with_replica_id(BrokerId(manager.node_id()))
        .with_max_wait_ms(FETCH_MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_BYTES_MAX)
        .with_session_epoch(-1);
    let mut wanted: HashMap<TopicPartition, Arc<Partition>> = HashMap::new();
    let mut topics: HashMap<String, Vec<FetchPartition>> = HashMap::new();
    for (tp, f) in followed {
        let Some(partition) = manager.get(tp) else {
            continue;
        };
        if !from
            .partitions()
            .get(tp)
            .is_some_and(|now| now.truncated && now.leader_epoch == f.leader_epoch)
        {
            continue;
        }
        let (fetch_offset, log_start) = {
            let log = partition.log.lock().unwrap_or_else(PoisonError::into_inner);
            (log.log_end_offset(), log.log_start_offset())
        };
        topics.entry(tp.topic.clone()).or_default().push(
            FetchPartition::default()
                .with_partition(tp.partition)
                .with_current_leader_epoch(f.leader_epoch)
                .with_fetch_offset(fetch_offset as i64)
                .with_log_start_offset(log_start as i64)
                .with_partition_max_bytes(PARTITION_FETCH_BYTES_MAX),
        );
        wanted.insert(tp.clone(), partition);
    }
    if wanted.is_empty() {
        return Ok(progress);
    }
    request.topics = topics
        .into_iter()
        .map(|(topic, partitions)| {
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic)))
                .with_partitions(partitions)
        })
        .collect();
    let response = client.send(request).await?;
    if response.error_code != 0 {
        anyhow::bail!("fetch refused: error {}", response.error_code);
    }
    for topic in response.responses {
        for data in topic.partitions {
            let tp = TopicPartition::new(topic.topic.0.to_string(), data.partition_index);
            let Some(partition) = wanted.get(&tp) else { continue };
            match ResponseError::try_from_code(data.error_code) {
                None => {
                    let records = data.records.unwrap_or_default();
                    manager.metrics().replication_in(records.len());
                    progress |= append(from, partition, &records, data.high_watermark, data.log_start_offset);
                }
                Some(ResponseError::OffsetOutOfRange) => {
                    // Behind the leader's log start (retention or DeleteRecords removed what this replica
                    // lacks): start over there. Ahead of its end cannot happen after truncation, but if it
                    // does, truncate again.
                    let log_end_offset = partition
                        .log
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .log_end_offset();
                    if data.log_start_offset > log_end_offset as i64 {
                        info!(partition = %tp, offset = data.log_start_offset, "behind the leader's log start: restarting the log there");
                        let restarted = manager
                            .log_manager()
                            .truncate_fully_and_start_at(&tp, data.log_start_offset as u64);
                        if let Err(e) = restarted {
                            warn!(partition = %tp, error = %e, "restarting the log failed");
                        }
                    } else {
                        mark_untruncated(from, &tp);
                    }
                    progress = true;
                }
                Some(error) => {
                    // Leadership moved, or this broker's metadata lags: the next image says what to do.
                    debug!(partition = %tp, ?error, "the leader refused a fetch");
                }
            }
        }
    }
    Ok(progress)
}

/// Appends what a fetch brought; returns whether anything was appended.
fn append(from: &FromLeader, partition: &Partition, records: &Bytes, high_watermark: i64, log_start: i64) -> bool {
    let appended = if records.is_empty() {
        false
    } else {
        let mut log = partition.log.lock().unwrap_or_else(PoisonError::into_inner);
        match log.append_replicated(records) {
            // The log updated its idempotent producers' state from the batches.
            Ok(_) => true,
            // Only a partial batch: the next fetch brings it whole.
            Err(ReplicaAppendError::Append(strata_storage::AppendError::Empty)) => false,
            Err(e @ (ReplicaAppendError::OffsetMismatch { .. } | ReplicaAppendError::EpochRegression { .. })) => {
                warn!(partition = %partition.tp, error = %e, "fetched batches do not continue this log: truncating again");
                drop(log);
                mark_untruncated(from, &partition.tp);
                false
            }
            Err(e) => {
                warn!(partition = %partition.tp, error = %e, "appending fetched batches failed");
                false
            }
        }
    };
    if log_start > 0 {
        let mut log = partition.log.lock().unwrap_or_else(PoisonError::into_inner);
        let start = log_start as u64;
        if start > log.log_start_offset()
            && start <= log.log_end_offset()
            && let Err(e) = log.delete_records_before(start)
        {
            warn!(partition = %partition.tp, error = %e, "following the leader's log start failed");
        }
    }
    partition.follower_high_watermark(high_watermark.max(0) as u64);
    if appended {
        partition.appended();
    }
    appended
}

fn mark_untruncated(from: &FromLeader, tp: &TopicPartition) {
    if let Some(f) = from.partitions().get_mut(tp) {
        f.truncated = false;
    }
}

/// Asks the leader where each partition's latest local epoch ends, and truncates there (Kafka's
/// OffsetsForLeaderEpoch): records past that point were never committed under the new leader. Returns how
/// many partitions are ready to fetch (a leader that has not taken the leadership yet refuses; those wait).
async fn truncate(
    manager: &ReplicaManager,
    client: &mut Client,
    from: &FromLeader,
    partitions: &[&(TopicPartition, Followed)],
) -> anyhow::Result<usize> {
    let mut ready = 0;
    let mut topics: HashMap<String, Vec<OffsetForLeaderPartition>> = HashMap::new();
    let mut asked = Vec::new();
    for (tp, f) in partitions {
        let Some(partition) = manager.get(tp) else {
            continue;
        };
        let latest = partition
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .latest_epoch();
        let Some(latest) = latest else {
            // An empty log (or one without epochs) has nothing to truncate.
            set_truncated(from, tp, f.leader_epoch);
            ready += 1;
            continue;
        };
        topics.entry(tp.topic.clone()).or_default().push(
            OffsetForLeaderPartition::default()
                .with_partition(tp.partition)
                .with_current_leader_epoch(f.leader_epoch)
                .with_leader_epoch(latest),
        );
        asked.push((tp.clone(), f.leader_epoch, partition));
    }
    if asked.is_empty() {
        return Ok(ready);
    }
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(manager.node_id()))
        .with_topics(
            topics
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetForLeaderTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(topic)))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let response = client.send(request).await?;
    for topic in response.topics {
        for answer in topic.partitions {
            let tp = TopicPartition::new(topic.topic.0.to_string(), answer.partition);
            let Some((_, epoch, partition)) = asked.iter().find(|(t, _, _)| *t == tp) else {
                continue;
            };
            if answer.error_code != 0 {
                debug!(partition = %tp, error = answer.error_code, "the leader refused OffsetForLeaderEpoch");
                continue;
            }
            let log = partition.log.lock().unwrap_or_else(PoisonError::into_inner);
            let end = if answer.end_offset < 0 {
                // The leader knows no epoch at or below ours: keep only what is known committed.
                partition.high_watermark()
            } else {
                // The leader's end of the epoch it answered, bounded by where that epoch ends here.
                let local = log
                    .end_offset_for_epoch(answer.leader_epoch)
                    .map_or(log.log_end_offset(), |(_, end)| end);
                (answer.end_offset as u64).min(local)
            };
            let log_end_offset = log.log_end_offset();
            // The lock is let go for the log manager, which takes it after the checkpoint lock.
            drop(log);
            if end < log_end_offset {
                info!(partition = %tp, from = log_end_offset, to = end, "truncating to the leader's log");
                if let Err(e) = manager.log_manager().truncate_to(&tp, end) {
                    warn!(partition = %tp, error = %e, "truncating failed");
                    continue;
                }
                partition.truncated();
            }
            set_truncated(from, &tp, *epoch);
            ready += 1;
        }
    }
    Ok(ready)
}

fn set_truncated(from: &FromLeader, tp: &TopicPartition, leader_epoch: i32) {
    if let Some(f) = from.partitions().get_mut(tp)
        && f.leader_epoch == leader_epoch
    {
        f.truncated = true;
    }
}
