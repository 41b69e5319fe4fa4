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
//! Strings are an `i16` length and UTF-8 bytes. The topic is created on first use with 50 partitions and
//! `cleanup.policy=compact`: compaction keeps the newest commit of each group and partition, and drops the
//! tombstones of deleted groups after `delete.retention.ms`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// Committed offsets by group, then by partition.
#[derive(Debug, Default)]
pub struct OffsetStore {
    committed: Mutex<HashMap<String, HashMap<TopicPartition, Committed>>>,
    /// Partitions of `__consumer_offsets` being read back after this broker became their leader: their
    /// groups' requests wait (COORDINATOR_LOAD_IN_PROGRESS) rather than see offsets not loaded yet.
    loading: Mutex<HashSet<i32>>,
}

impl OffsetStore {
    /// Reads the committed offsets of the groups that `partition` of `__consumer_offsets` holds, replacing
    /// what was known of them: when this broker becomes their coordinator (it leads that partition).
    pub fn load_partition(&self, partition: &Partition) -> anyhow::Result<()> {
        let index = partition.tp.partition;
        let result = self.read_partition(partition);
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

    fn read_partition(&self, partition: &Partition) -> anyhow::Result<()> {
        let index = partition.tp.partition;
        let started = std::time::Instant::now();
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
                    if let Some((group, tp)) = record.key.as_ref().and_then(|k| decode_key(k.clone())) {
                        self.apply(group, tp, record.value.and_then(decode_value));
                        commits += 1;
                    }
                }
            }
            offset = read.next_offset;
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        info!(partition = index, commits, elapsed_ms, "loaded committed offsets");
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<TopicPartition, Committed>>> {
        self.committed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn apply(&self, group: String, tp: TopicPartition, value: Option<Committed>) {
        let mut committed = self.lock();
        match value {
            Some(value) => {
                committed.entry(group).or_default().insert(tp, value);
            }
            None => {
                if let Some(offsets) = committed.get_mut(&group) {
                    offsets.remove(&tp);
                }
            }
        }
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
            .map(|(tp, committed)| (tp, Some(committed)))
            .collect();
        self.write(replicas, group, changes).await
    }

    /// Deletes committed offsets (tombstones in `__consumer_offsets`).
    pub async fn delete(
        &self,
        replicas: &ReplicaManager,
        group: &str,
        partitions: Vec<TopicPartition>,
    ) -> Result<(), ResponseError> {
        self.write(replicas, group, partitions.into_iter().map(|tp| (tp, None)).collect())
            .await
    }

    /// Appends one batch with a record per change (a value, or a tombstone), waits until every in-sync
    /// replica has it (Kafka commits offsets with acks=all), and applies the changes.
    async fn write(
        &self,
        replicas: &ReplicaManager,
        group: &str,
        changes: Vec<(TopicPartition, Option<Committed>)>,
    ) -> Result<(), ResponseError> {
        if changes.is_empty() {
            return Ok(());
        }
        let partition = self.coordinator_partition(replicas, group)?;
        let leader_epoch = partition.leader_epoch().ok_or(ResponseError::NotCoordinator)?;
        let now = crate::now_ms();
        let records: Vec<Record> = changes
            .iter()
            .enumerate()
            .map(|(i, (tp, committed))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: now,
                key: Some(encode_key(group, tp)),
                value: committed.as_ref().map(|c| encode_value(c, now)),
                headers: Default::default(),
            })
            .collect();
        let mut batch = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut batch, &records, &options).map_err(|e| {
            error!(error = %e, "encoding an offset commit failed");
            ResponseError::UnknownServerError
        })?;
        let appended = partition
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .append(&mut batch, leader_epoch);
        let end = match appended {
            Ok(info) => info.log_end_offset,
            Err(e) => {
                error!(group, error = %e, "writing committed offsets failed");
                return Err(ResponseError::KafkaStorageError);
            }
        };
        partition.leader_appended();
        if !partition.wait_for_high_watermark(end, COMMIT_TIMEOUT).await {
            return Err(if partition.leader_epoch().is_some() {
                ResponseError::RequestTimedOut
            } else {
                ResponseError::NotCoordinator
            });
        }
        for (tp, committed) in changes {
            self.apply(group.to_owned(), tp, committed);
        }
        Ok(())
    }

    pub fn fetch(&self, group: &str, tp: &TopicPartition) -> Option<Committed> {
        self.lock().get(group).and_then(|offsets| offsets.get(tp)).cloned()
    }

    /// Every committed offset of a group.
    pub fn of_group(&self, group: &str) -> Vec<(TopicPartition, Committed)> {
        let mut all: Vec<_> = self
            .lock()
            .get(group)
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
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

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

fn get_string(buf: &mut Bytes) -> Option<String> {
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

fn decode_value(mut buf: Bytes) -> Option<Committed> {
    if buf.remaining() < 2 + 8 + 4 || buf.get_i16() != VALUE_VERSION {
        return None;
    }
    let offset = buf.get_i64();
    let leader_epoch = buf.get_i32();
    let metadata = get_string(&mut buf)?;
    Some(Committed {
        offset,
        leader_epoch,
        metadata,
    })
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
        assert_eq!(decode_value(encode_value(&committed, 1)), Some(committed));
        assert_eq!(
            decode_key(Bytes::from_static(&[0, 2, 0])),
            None,
            "not an offset commit key"
        );
    }
}
