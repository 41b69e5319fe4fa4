//! Committed offsets, kept as records in the internal topic `__consumer_offsets`, as Kafka keeps them.
//!
//! A commit appends one batch to the group's partition of the topic (Kafka's choice:
//! `abs(javaHashCode(group)) % 50`) before it is acknowledged, and updates the in-memory map that
//! OffsetFetch reads. The coordinator of a group is the leader of its partition: a broker that becomes
//! leader of a partition rebuilds the map of its groups by reading the partition from its start. Records use Kafka's
//! own layout, so Kafka's tools could read them:
//!
//! ```text
//! key   (OffsetCommitKey v1):   i16 version = 1, string group, string topic, i32 partition
//! value (OffsetCommitValue v3): i16 version = 3, i64 offset, i32 leader epoch, string metadata,
//!                               i64 commit timestamp
//! ```
//!
//! Strings are an `i16` length and UTF-8 bytes. The same partitions hold the state of consumer-protocol
//! groups (see [`super::consumer::records`]): this store appends their records for the coordinator
//! ([`OffsetStore::append_records`]) and hands them over when it reads a partition back ([`Replay`]). The topic is created on first use with 50 partitions and
//! `cleanup.policy=compact`: compaction keeps the newest commit of each group and partition, and drops the
//! tombstones of deleted groups and expired offsets after `delete.retention.ms`.
//!
//! Offsets expire as in Kafka 2.1+ (KIP-211), by [`Expiry`]: all of a group's once it has been `Empty` for
//! `offsets.retention.minutes`; one committed without membership that long after its commit timestamp; in a
//! stable consumer group, one of a topic no member subscribes to that long after its commit. An expired
//! offset is a tombstone in `__consumer_offsets`, written as a deletion is, so it stays expired after a
//! restart or on another coordinator.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strata_storage::{ReadLimits, TopicPartition};
use tracing::{error, info};

use crate::replica::{Partition, ReplicaManager};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
pub const OFFSETS_PARTITIONS: i32 = 50;
/// Kafka's default `offsets.topic.replication.factor`.
pub const OFFSETS_REPLICATION_FACTOR: usize = 3;
/// How long a commit waits for the in-sync replicas (Kafka's `offsets.commit.timeout.ms`).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Kafka's `offset.metadata.max.bytes`.
pub const METADATA_BYTES_MAX: usize = 4096;
const KEY_VERSION: i16 = 1;
const VALUE_VERSION: i16 = 3;
const LOAD_READ_BYTES: usize = 1024 * 1024;
/// How long offsets read back from `__consumer_offsets` are kept whatever their commit timestamps say, when
/// no member of their group has been seen since: group membership is not in the topic, so a group that was
/// stable on the previous coordinator looks like one without members until they rejoin, which they do within
/// their session timeout (at most Kafka's `group.max.session.timeout.ms`).
const LOADED_GRACE: Duration = Duration::from_millis(super::SESSION_TIMEOUT_MS_MAX as u64);

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// A committed offset as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    committed: Committed,
    /// The commit timestamp in its record (ms since the epoch, the committing broker's clock).
    commit_timestamp_ms: i64,
    /// When this broker read it back from `__consumer_offsets`; `None` if it was committed through this
    /// broker.
    loaded_at: Option<Instant>,
}

/// How a group's committed offsets expire, from what its coordinator knows of the group (Kafka's
/// `GroupMetadata.removeExpiredOffsets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    /// No member has joined it on this coordinator (offsets committed without membership, or read back and
    /// not claimed since): each offset expires the retention after its commit.
    ByCommit,
    /// It used the group protocol and has had no members since then: all its offsets expire once that is the
    /// retention ago.
    EmptySince(Instant),
    /// A stable consumer group whose members subscribe to these topics: an offset of another topic expires
    /// the retention after its commit.
    Unsubscribed(Vec<String>),
    /// Rebalancing, or members whose subscriptions cannot be read: nothing expires.
    Keep,
}

/// Committed offsets by group, then by partition.
type Offsets = HashMap<String, HashMap<TopicPartition, Stored>>;

/// The committed offsets of the groups this broker coordinates, and the writes of them under way.
#[derive(Debug, Default)]
pub struct OffsetStore {
    committed: Mutex<Offsets>,
    /// Partitions of `__consumer_offsets` being read back after this broker became their leader: their
    /// groups' requests wait (COORDINATOR_LOAD_IN_PROGRESS) rather than see offsets not loaded yet.
    loading: Mutex<HashSet<i32>>,
    /// Groups with commits or deletions being written, and how many: expiry leaves them alone, so that a
    /// tombstone never lands after a commit it did not see.
    writing: Mutex<HashMap<String, usize>>,
}

/// One change to a group's offsets, as [`OffsetStore::write`] makes it.
#[derive(Debug, Clone)]
enum Change {
    Commit(Committed),
    Delete,
    /// Deletes the offset committed at this timestamp, if it is still the one stored.
    Expire {
        commit_timestamp_ms: i64,
    },
}

/// What a partition of `__consumer_offsets` holds besides committed offsets (the state of consumer-protocol
/// groups), handed over as the partition is read back.
pub trait Replay {
    /// A record whose key is not an offset commit's, in log order.
    fn replay(&mut self, key: Bytes, value: Option<Bytes>);
    /// The whole partition was read: called before its groups' requests are accepted.
    fn loaded(&mut self);
}

/// Records appended to a group's partition, not yet known to be on every in-sync replica.
#[derive(Debug)]
pub struct Written {
    partition: Arc<Partition>,
    end: u64,
}

impl Written {
    /// Waits until every in-sync replica has the records (acks=all, as for offset commits).
    pub async fn wait(self) -> Result<(), ResponseError> {
        wait_replicated(&self.partition, self.end).await
    }
}

/// The broker's [`super::GroupLog`]: the groups' partitions of `__consumer_offsets`, through
/// [`OffsetStore::append_records`].
#[derive(Debug, Clone)]
pub struct GroupStateLog {
    pub offsets: Arc<OffsetStore>,
    pub replicas: Arc<ReplicaManager>,
}

impl super::GroupLog for GroupStateLog {
    fn append(&self, group: &str, records: &[(Bytes, Option<Bytes>)]) -> Result<Option<Written>, ResponseError> {
        if records.is_empty() {
            return Ok(None);
        }
        self.offsets.append_records(&self.replicas, group, records).map(Some)
    }
}

/// Waits for the high watermark to reach `end`: REQUEST_TIMED_OUT after [`COMMIT_TIMEOUT`], or
/// NOT_COORDINATOR if the partition's leadership moved meanwhile.
async fn wait_replicated(partition: &Partition, end: u64) -> Result<(), ResponseError> {
    if partition.wait_for_high_watermark(end, COMMIT_TIMEOUT).await {
        Ok(())
    } else if partition.leader_epoch().is_some() {
        Err(ResponseError::RequestTimedOut)
    } else {
        Err(ResponseError::NotCoordinator)
    }
}

impl OffsetStore {
    /// Reads the committed offsets of the groups that `partition` of `__consumer_offsets` holds, replacing
    /// what was known of them, and hands every other record to `others`: when this broker becomes their
    /// coordinator (it leads that partition).
    pub fn load_partition(&self, partition: &Partition, others: &mut dyn Replay) -> anyhow::Result<()> {
        let index = partition.tp.partition;
        let result = self.read_partition(partition, others);
        if result.is_ok() {
            others.loaded();
        }
        self.loading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&index);
        result
    }

    /// Marks partition `index` as about to be read back ([`Self::load_partition`] ends it).
    pub fn start_loading(&self, index: i32) {
        self.loading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(index);
    }

    fn is_loading(&self, index: i32) -> bool {
        self.loading
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&index)
    }

    fn read_partition(&self, partition: &Partition, others: &mut dyn Replay) -> anyhow::Result<()> {
        let index = partition.tp.partition;
        let started = Instant::now();
        self.lock().retain(|group, _| partition_for(group) != index);
        let mut commits = 0;
        let log = partition.log.lock().unwrap_or_else(PoisonError::into_inner);
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let read = log.read(offset, ReadLimits::bytes(LOAD_READ_BYTES))?;
            if read.records.is_empty() {
                break;
            }
            let mut bytes = Bytes::from(read.records);
            for set in RecordBatchDecoder::decode_all(&mut bytes)? {
                for record in set.records {
                    let Some(key) = record.key else { continue };
                    if let Some((group, tp)) = decode_key(key.clone()) {
                        let mut committed = self.lock();
                        match record.value.and_then(decode_value) {
                            Some((value, commit_timestamp_ms)) => {
                                let stored = Stored {
                                    committed: value,
                                    commit_timestamp_ms,
                                    loaded_at: Some(started),
                                };
                                committed.entry(group).or_default().insert(tp, stored);
                            }
                            None => remove(&mut committed, &group, &tp, None),
                        }
                        commits += 1;
                    } else {
                        others.replay(key, record.value);
                    }
                }
            }
            offset = read.next_offset;
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        info!(partition = index, commits, elapsed_ms, "loaded committed offsets");
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Offsets> {
        self.committed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn writing(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.writing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `offsets` durable in `__consumer_offsets` (on every in-sync replica), then visible to
    /// OffsetFetch.
    pub async fn commit(
        &self,
        replicas: &ReplicaManager,
        group: &str,
        offsets: Vec<(TopicPartition, Committed)>,
    ) -> Result<(), ResponseError> {
        let changes = offsets
            .into_iter()
            .map(|(tp, committed)| (tp, Change::Commit(committed)))
            .collect();
        self.write(replicas, group, changes).await.map(drop)
    }

    /// Deletes committed offsets (tombstones in `__consumer_offsets`).
    pub async fn delete(
        &self,
        replicas: &ReplicaManager,
        group: &str,
        partitions: Vec<TopicPartition>,
    ) -> Result<(), ResponseError> {
        let changes = partitions.into_iter().map(|tp| (tp, Change::Delete)).collect();
        self.write(replicas, group, changes).await.map(drop)
    }

    /// Expires offsets [`Self::expired`] found: tombstones for those still committed at the same timestamp
    /// and without a write of the group under way. Returns how many were expired.
    pub async fn expire(
        &self,
        replicas: &ReplicaManager,
        group: &str,
        offsets: Vec<(TopicPartition, i64)>,
    ) -> Result<usize, ResponseError> {
        let changes = offsets
            .into_iter()
            .map(|(tp, commit_timestamp_ms)| (tp, Change::Expire { commit_timestamp_ms }))
            .collect();
        self.write(replicas, group, changes).await
    }

    /// Appends one batch with a record per change (a value, or a tombstone), waits until every in-sync
    /// replica has it (Kafka commits offsets with acks=all), and applies the changes. Returns how many
    /// changes were written: expiries that no longer hold are dropped.
    async fn write(
        &self,
        replicas: &ReplicaManager,
        group: &str,
        changes: Vec<(TopicPartition, Change)>,
    ) -> Result<usize, ResponseError> {
        if changes.is_empty() {
            return Ok(0);
        }
        let partition = self.coordinator_partition(replicas, group)?;
        let leader_epoch = partition.leader_epoch().ok_or(ResponseError::NotCoordinator)?;
        let expiring = changes.iter().any(|(_, c)| matches!(c, Change::Expire { .. }));
        // Registered before the append, so that an expiry either sees it or appends before it.
        let _writing = (!expiring).then(|| Writing::start(self, group));
        let now = crate::now_ms();
        let (changes, end) = {
            // Every write of the partition appends under this lock, so an expiry checked under it is ordered
            // with the others: a commit it does not see registered appends after its tombstones.
            let mut log = partition.log.lock().unwrap_or_else(PoisonError::into_inner);
            let changes = if expiring {
                self.still_expired(group, changes)
            } else {
                changes
            };
            if changes.is_empty() {
                return Ok(0);
            }
            let batch = encode_batch(group, &changes, now)?;
            let end = append(&mut log, group, batch, leader_epoch)?;
            (changes, end)
        };
        partition.leader_appended();
        wait_replicated(&partition, end).await?;
        let written = changes.len();
        let mut committed = self.lock();
        for (tp, change) in changes {
            match change {
                Change::Commit(value) => {
                    let stored = Stored {
                        committed: value,
                        commit_timestamp_ms: now,
                        loaded_at: None,
                    };
                    committed.entry(group.to_owned()).or_default().insert(tp, stored);
                }
                Change::Delete => remove(&mut committed, group, &tp, None),
                // A commit appended after the tombstone may have been applied first: it stays.
                Change::Expire { commit_timestamp_ms } => remove(&mut committed, group, &tp, Some(commit_timestamp_ms)),
            }
        }
        Ok(written)
    }

    /// Appends `records` of `group` (consumer-group state) to its partition in one batch, without waiting
    /// for the replicas: the caller appends in the order its state changed, and waits with
    /// [`Written::wait`] before answering.
    pub fn append_records(
        &self,
        replicas: &ReplicaManager,
        group: &str,
        records: &[(Bytes, Option<Bytes>)],
    ) -> Result<Written, ResponseError> {
        let partition = self.coordinator_partition(replicas, group)?;
        let leader_epoch = partition.leader_epoch().ok_or(ResponseError::NotCoordinator)?;
        let batch = encode_records(records, crate::now_ms())?;
        let end = {
            let mut log = partition.log.lock().unwrap_or_else(PoisonError::into_inner);
            append(&mut log, group, batch, leader_epoch)?
        };
        partition.leader_appended();
        Ok(Written { partition, end })
    }

    /// The expiries of `changes` that still hold: the group has no write under way, and each offset is still
    /// the one committed at the timestamp found expired.
    fn still_expired(&self, group: &str, changes: Vec<(TopicPartition, Change)>) -> Vec<(TopicPartition, Change)> {
        if self.writing().contains_key(group) {
            return Vec::new();
        }
        let committed = self.lock();
        let Some(offsets) = committed.get(group) else {
            return Vec::new();
        };
        changes
            .into_iter()
            .filter(|(tp, change)| match change {
                Change::Expire { commit_timestamp_ms } => offsets
                    .get(tp)
                    .is_some_and(|stored| stored.commit_timestamp_ms == *commit_timestamp_ms),
                Change::Commit(_) | Change::Delete => true,
            })
            .collect()
    }

    /// The offsets due to expire, by group, with their commit timestamps (for [`Self::expire`]). `expiry`
    /// says how each group's offsets expire; a group not in it is [`Expiry::ByCommit`].
    pub fn expired(
        &self,
        expiry: &HashMap<String, Expiry>,
        retention: Duration,
    ) -> Vec<(String, Vec<(TopicPartition, i64)>)> {
        let clock = Clock {
            now: Instant::now(),
            now_ms: crate::now_ms(),
        };
        self.lock()
            .iter()
            .filter_map(|(group, offsets)| {
                let how = expiry.get(group).unwrap_or(&Expiry::ByCommit);
                let due = expired_offsets(offsets, how, clock, retention);
                (!due.is_empty()).then(|| (group.clone(), due))
            })
            .collect()
    }
}

/// A group registered as being written to, until dropped.
struct Writing<'a> {
    store: &'a OffsetStore,
    group: String,
}

impl<'a> Writing<'a> {
    fn start(store: &'a OffsetStore, group: &str) -> Self {
        *store.writing().entry(group.to_owned()).or_default() += 1;
        Self {
            store,
            group: group.to_owned(),
        }
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut writing = self.store.writing();
        if let Some(count) = writing.get_mut(&self.group) {
            *count -= 1;
            if *count == 0 {
                writing.remove(&self.group);
            }
        }
    }
}

/// Removes a group's offset (only if committed at `only_at`, when given), and the group once it has none
/// left, so that the map holds no groups without offsets.
fn remove(committed: &mut Offsets, group: &str, tp: &TopicPartition, only_at: Option<i64>) {
    let Some(offsets) = committed.get_mut(group) else {
        return;
    };
    if only_at.is_none_or(|at| offsets.get(tp).is_some_and(|s| s.commit_timestamp_ms == at)) {
        offsets.remove(tp);
    }
    if offsets.is_empty() {
        committed.remove(group);
    }
}

/// The present, on both clocks: the wall clock for commit timestamps (which are in the records), the
/// monotonic one for what this broker saw happen.
#[derive(Debug, Clone, Copy)]
struct Clock {
    now: Instant,
    now_ms: i64,
}

/// Kafka's `removeExpiredOffsets` for one group: the offsets due to expire, with their commit timestamps.
fn expired_offsets(
    offsets: &HashMap<TopicPartition, Stored>,
    expiry: &Expiry,
    clock: Clock,
    retention: Duration,
) -> Vec<(TopicPartition, i64)> {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let due = |tp: &TopicPartition, stored: &Stored| {
        let committed_long_ago = clock.now_ms.saturating_sub(stored.commit_timestamp_ms) >= retention_ms;
        match expiry {
            Expiry::Keep => false,
            Expiry::EmptySince(since) => clock.now.saturating_duration_since(*since) >= retention,
            Expiry::ByCommit => {
                committed_long_ago
                    && stored
                        .loaded_at
                        .is_none_or(|at| clock.now.saturating_duration_since(at) >= LOADED_GRACE)
            }
            Expiry::Unsubscribed(topics) => committed_long_ago && !topics.contains(&tp.topic),
        }
    };
    let mut expired: Vec<(TopicPartition, i64)> = offsets
        .iter()
        .filter(|(tp, stored)| due(tp, stored))
        .map(|(tp, stored)| (tp.clone(), stored.commit_timestamp_ms))
        .collect();
    expired.sort();
    expired
}

/// One batch of records for `changes` of `group`'s offsets: a value per commit, a tombstone per deletion.
fn encode_batch(group: &str, changes: &[(TopicPartition, Change)], now_ms: i64) -> Result<BytesMut, ResponseError> {
    let records: Vec<(Bytes, Option<Bytes>)> = changes
        .iter()
        .map(|(tp, change)| {
            let value = match change {
                Change::Commit(committed) => Some(encode_value(committed, now_ms)),
                Change::Delete | Change::Expire { .. } => None,
            };
            (encode_key(group, tp), value)
        })
        .collect();
    encode_records(&records, now_ms)
}

/// One batch of `records` (keys and values, `None` a tombstone).
fn encode_records(records: &[(Bytes, Option<Bytes>)], now_ms: i64) -> Result<BytesMut, ResponseError> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now_ms,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut batch = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut batch, &records, &options).map_err(|e| {
        error!(error = %e, "encoding records for __consumer_offsets failed");
        ResponseError::UnknownServerError
    })?;
    Ok(batch)
}

/// Appends `batch` to the partition's log (its lock held by the caller); returns the log end offset after it.
fn append(
    log: &mut strata_storage::Log,
    group: &str,
    mut batch: BytesMut,
    leader_epoch: i32,
) -> Result<u64, ResponseError> {
    match log.append(&mut batch, leader_epoch) {
        Ok(info) => Ok(info.log_end_offset),
        Err(e) => {
            error!(group, error = %e, "writing committed offsets failed");
            Err(ResponseError::KafkaStorageError)
        }
    }
}

impl OffsetStore {
    pub fn fetch(&self, group: &str, tp: &TopicPartition) -> Option<Committed> {
        self.lock()
            .get(group)
            .and_then(|offsets| offsets.get(tp))
            .map(|stored| stored.committed.clone())
    }

    /// Every committed offset of a group.
    pub fn of_group(&self, group: &str) -> Vec<(TopicPartition, Committed)> {
        let mut all: Vec<_> = self
            .lock()
            .get(group)
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.committed.clone())).collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, o)| !o.is_empty())
            .map(|(g, _)| g.clone())
            .collect()
    }
}

impl OffsetStore {
    /// The partition of `__consumer_offsets` that holds `group`, if this broker leads it (is the group's
    /// coordinator) and has read it back: else NOT_COORDINATOR, or COORDINATOR_LOAD_IN_PROGRESS while
    /// reading.
    pub fn coordinator_partition(
        &self,
        replicas: &ReplicaManager,
        group: &str,
    ) -> Result<Arc<Partition>, ResponseError> {
        let index = partition_for(group);
        let partition = replicas
            .get(&TopicPartition::new(OFFSETS_TOPIC, index))
            .ok_or(ResponseError::NotCoordinator)?;
        if partition.leader_epoch().is_none() {
            return Err(ResponseError::NotCoordinator);
        }
        if self.is_loading(index) {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        Ok(partition)
    }
}

/// Kafka's `Utils.abs(groupId.hashCode()) % 50`, with Java's `String.hashCode` over UTF-16 code units.
pub fn partition_for(group: &str) -> i32 {
    let hash = group
        .encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    (hash & 0x7fff_ffff) % OFFSETS_PARTITIONS
}

/// An `i16` length and UTF-8 bytes, as Kafka's internal records write strings.
pub(crate) fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

pub(crate) fn get_string(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = usize::try_from(buf.get_i16()).ok()?;
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok()
}

fn encode_key(group: &str, tp: &TopicPartition) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(KEY_VERSION);
    put_string(&mut buf, group);
    put_string(&mut buf, &tp.topic);
    buf.put_i32(tp.partition);
    buf.freeze()
}

fn decode_key(mut buf: Bytes) -> Option<(String, TopicPartition)> {
    if buf.remaining() < 2 || !matches!(buf.get_i16(), 0 | 1) {
        return None; // group metadata and other record kinds
    }
    let group = get_string(&mut buf)?;
    let topic = get_string(&mut buf)?;
    (buf.remaining() >= 4).then(|| (group, TopicPartition::new(topic, buf.get_i32())))
}

fn encode_value(committed: &Committed, now_ms: i64) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(committed.offset);
    buf.put_i32(committed.leader_epoch);
    put_string(&mut buf, &committed.metadata);
    buf.put_i64(now_ms);
    buf.freeze()
}

/// A committed offset and its commit timestamp.
fn decode_value(mut buf: Bytes) -> Option<(Committed, i64)> {
    if buf.remaining() < 2 + 8 + 4 || buf.get_i16() != VALUE_VERSION {
        return None;
    }
    let offset = buf.get_i64();
    let leader_epoch = buf.get_i32();
    let metadata = get_string(&mut buf)?;
    if buf.remaining() < 8 {
        return None;
    }
    let commit_timestamp_ms = buf.get_i64();
    let committed = Committed {
        offset,
        leader_epoch,
        metadata,
    };
    Some((committed, commit_timestamp_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_kafkas_partitions() {
        // "my-group".hashCode() is -1906497762 in Java; Utils.abs masks the sign bit.
        assert_eq!(partition_for(""), 0);
        assert_eq!(partition_for("my-group"), (-1_906_497_762i32 & 0x7fff_ffff) % 50);
        assert_eq!(partition_for("my-group"), 36);
    }

    #[test]
    fn keys_and_values_round_trip() {
        let tp = TopicPartition::new("orders", 7);
        assert_eq!(decode_key(encode_key("g", &tp)), Some(("g".into(), tp)));
        let committed = Committed {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
        };
        assert_eq!(decode_value(encode_value(&committed, 1)), Some((committed, 1)));
        assert_eq!(
            decode_key(Bytes::from_static(&[0, 2, 0])),
            None,
            "not an offset commit key"
        );
    }

    const MINUTE: Duration = Duration::from_secs(60);

    fn stored(commit_timestamp_ms: i64, loaded_at: Option<Instant>) -> Stored {
        Stored {
            committed: Committed {
                offset: 1,
                leader_epoch: 0,
                metadata: String::new(),
            },
            commit_timestamp_ms,
            loaded_at,
        }
    }

    #[test]
    fn offsets_expire_as_kafkas_do() {
        let start = Instant::now();
        // An hour after `start`; the wall clock says 10_000_000 ms then.
        let clock = Clock {
            now: start + 60 * MINUTE,
            now_ms: 10_000_000,
        };
        let (a, b) = (TopicPartition::new("a", 0), TopicPartition::new("b", 0));
        let old = clock.now_ms - 11 * 60_000;
        let recent = clock.now_ms - 60_000;
        let offsets: HashMap<TopicPartition, Stored> =
            [(a.clone(), stored(old, None)), (b.clone(), stored(recent, None))].into();
        let expired = |expiry: &Expiry| expired_offsets(&offsets, expiry, clock, 10 * MINUTE);

        // Without membership: each offset by its commit timestamp.
        assert_eq!(expired(&Expiry::ByCommit), vec![(a.clone(), old)]);
        // A group that used the group protocol: all at once, by how long it has been empty.
        assert_eq!(expired(&Expiry::EmptySince(start + 51 * MINUTE)), vec![]);
        assert_eq!(
            expired(&Expiry::EmptySince(start + 50 * MINUTE)),
            vec![(a.clone(), old), (b.clone(), recent)]
        );
        // A stable consumer group: only topics it does not subscribe to, by commit timestamp.
        assert_eq!(expired(&Expiry::Unsubscribed(vec!["a".into()])), vec![]);
        assert_eq!(expired(&Expiry::Unsubscribed(vec!["b".into()])), vec![(a.clone(), old)]);
        assert_eq!(expired(&Expiry::Unsubscribed(vec![])), vec![(a.clone(), old)]);
        assert_eq!(expired(&Expiry::Keep), vec![]);
    }

    #[test]
    fn offsets_read_back_outlive_their_commit_for_a_session_timeout() {
        let start = Instant::now();
        let clock = Clock {
            now: start + 60 * MINUTE,
            now_ms: 10_000_000,
        };
        let tp = TopicPartition::new("a", 0);
        let old = clock.now_ms - 11 * 60_000;
        let just_loaded: HashMap<TopicPartition, Stored> = [(tp.clone(), stored(old, Some(clock.now)))].into();
        assert_eq!(
            expired_offsets(&just_loaded, &Expiry::ByCommit, clock, 10 * MINUTE),
            vec![],
            "its members may be about to rejoin"
        );
        let loaded_long_ago: HashMap<TopicPartition, Stored> = [(tp.clone(), stored(old, Some(start)))].into();
        assert_eq!(
            expired_offsets(&loaded_long_ago, &Expiry::ByCommit, clock, 10 * MINUTE),
            vec![(tp, old)]
        );
    }

    #[test]
    fn a_group_without_offsets_leaves_the_map() {
        let mut committed: Offsets = HashMap::new();
        let tp = TopicPartition::new("a", 0);
        committed
            .entry("g".into())
            .or_default()
            .insert(tp.clone(), stored(5, None));
        remove(&mut committed, "g", &tp, Some(6));
        assert_eq!(committed["g"].len(), 1, "committed again since: kept");
        remove(&mut committed, "g", &tp, Some(5));
        assert!(committed.is_empty());
    }
}
