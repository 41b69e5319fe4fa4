//! The share coordinator's store (KIP-932's persister, coordinator side): the durable state of every
//! share-partition, kept as records in the internal topic `__share_group_state`.
//!
//! A share-partition is keyed by group, topic id and partition; its state lives in partition
//! `abs(javaHashCode("group:topicId:partition")) % 50` of `__share_group_state`, whose leader is the
//! share-partition's share coordinator. Each write is one snapshot of the whole state — start offset and the
//! runs of in-flight offsets that are acknowledged, archived, or delivered before — appended with acks=all
//! before it is acknowledged, so a snapshot the leader was told is written survives any single failure. The
//! topic is compacted: the newest snapshot of each share-partition is what stays. A broker that becomes leader
//! of a partition of the topic reads it back from its start into memory, and answers reads from there.
//!
//! Writes are fenced twice. By the share-partition's leader epoch: a snapshot from a leader older than the
//! last one that wrote is refused with `FENCED_LEADER_EPOCH`, so a deposed leader cannot overwrite its
//! successor. And by the state epoch, which an administrator's change of the start offset
//! (AlterShareGroupOffsets, DeleteShareGroupOffsets) moves on: a leader still serving the state from before
//! the change is refused with `FENCED_STATE_EPOCH`, and loads the new state.
//!
//! A state whose start offset is [`UNINITIALIZED`] was deleted by an administrator: the share-partition
//! starts again where `share.auto.offset.reset` says.
//!
//! Records use Strata's own layout (Kafka's share coordinator records are not a public format):
//!
//! ```text
//! key   (version 0): i16 version = 0, string group, 16 bytes topic id, i32 partition
//! value (version 0): i16 version = 0, i32 state epoch, i32 leader epoch, i64 start offset,
//!                    i32 count, count × (i64 first offset, i64 last offset, i8 state, i16 delivery count)
//! ```
//!
//! Strings are an `i16` length and UTF-8 bytes. States are Kafka's delivery states: 0 available,
//! 2 acknowledged, 4 archived (an acquired record is stored as available: its holder's lock dies with the
//! leader).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use strata_protocol::client::BatchBuilder;
use strata_storage::{ReadLimits, TopicPartition};
use tracing::{error, info};
use uuid::Uuid;

use super::partition::{IN_FLIGHT_MAX, RecordState, ShareSnapshot, StateBatch};
use crate::groups::offsets::{get_string, put_string};
use crate::replica::{Partition, ReplicaManager};

pub const SHARE_STATE_TOPIC: &str = "__share_group_state";
/// Kafka's `share.coordinator.state.topic.num.partitions` default.
pub const SHARE_STATE_PARTITIONS: i32 = 50;
/// The start offset of a state an administrator deleted (-1 on the wire, as Kafka answers for no state).
pub const UNINITIALIZED: u64 = u64::MAX;
/// How long a write waits for the in-sync replicas.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const LOAD_READ_BYTES: usize = 1024 * 1024;
const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;
/// The most state batches one snapshot may hold: a share-partition holds at most
/// `group.share.partition.max.record.locks` (≤ 10,000) offsets in flight.
const BATCHES_MAX: usize = 10_000;

/// Which share-partition a state belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateKey {
    pub group: String,
    pub topic_id: Uuid,
    pub partition: i32,
}

impl StateKey {
    /// The partition of `__share_group_state` that holds this state (Kafka's `SharePartitionKey` hashing).
    pub fn state_partition(&self) -> i32 {
        let key = format!("{}:{}:{}", self.group, self.topic_id, self.partition);
        let hash = key
            .encode_utf16()
            .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
        (hash & 0x7fff_ffff) % SHARE_STATE_PARTITIONS
    }
}

/// A share-partition's durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Moves on when an administrator changes the start offset.
    pub state_epoch: i32,
    /// The leader epoch of the share-partition leader that wrote it.
    pub leader_epoch: i32,
    pub snapshot: ShareSnapshot,
}

#[derive(Debug, Default)]
pub struct ShareStateStore {
    states: Mutex<HashMap<StateKey, Stored>>,
    /// Partitions of `__share_group_state` being read back: their keys wait (COORDINATOR_LOAD_IN_PROGRESS).
    loading: Mutex<HashSet<i32>>,
}

impl ShareStateStore {
    fn lock(&self) -> MutexGuard<'_, HashMap<StateKey, Stored>> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn loading(&self) -> MutexGuard<'_, HashSet<i32>> {
        self.loading.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks partition `index` as about to be read back ([`Self::load_partition`] ends it).
    pub fn start_loading(&self, index: i32) {
        self.loading().insert(index);
    }

    /// Reads the states that `partition` of `__share_group_state` holds, replacing what was known of them:
    /// when this broker becomes their coordinator.
    pub fn load_partition(&self, partition: &Partition) -> anyhow::Result<()> {
        let result = self.read_partition(partition);
        self.loading().remove(&partition.tp.partition);
        result
    }

    fn read_partition(&self, partition: &Partition) -> anyhow::Result<()> {
        let index = partition.tp.partition;
        let started = std::time::Instant::now();
        self.lock().retain(|key, _| key.state_partition() != index);
        let mut states = 0;
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
                    let Some(key) = record.key.and_then(decode_key) else {
                        continue;
                    };
                    let mut stored = self.lock();
                    match record.value.and_then(decode_value) {
                        Some(value) => stored.insert(key, value),
                        None => stored.remove(&key),
                    };
                    states += 1;
                }
            }
            offset = read.next_offset;
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        info!(partition = index, states, elapsed_ms, "loaded share-partition states");
        Ok(())
    }

    /// The partition of `__share_group_state` that `key` lives in, if this broker leads it and has read it.
    pub fn coordinator_partition(
        &self,
        replicas: &ReplicaManager,
        key: &StateKey,
    ) -> Result<Arc<Partition>, ResponseError> {
        let index = key.state_partition();
        let partition = replicas
            .get(&TopicPartition::new(SHARE_STATE_TOPIC, index))
            .ok_or(ResponseError::NotCoordinator)?;
        if partition.leader_epoch().is_none() {
            return Err(ResponseError::NotCoordinator);
        }
        if self.loading().contains(&index) {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        Ok(partition)
    }

    /// The state of `key`, `None` if it has none (the share-partition starts at `share.auto.offset.reset`).
    pub fn read(&self, replicas: &ReplicaManager, key: &StateKey) -> Result<Option<Stored>, ResponseError> {
        self.coordinator_partition(replicas, key)?;
        Ok(self.lock().get(key).cloned())
    }

    /// Makes `stored` the state of `key`: durable on every in-sync replica before it returns. A write from an
    /// older state epoch than the last one is `FENCED_STATE_EPOCH`, one from an older leader epoch
    /// `FENCED_LEADER_EPOCH`.
    pub async fn write(&self, replicas: &ReplicaManager, key: &StateKey, stored: Stored) -> Result<(), ResponseError> {
        if !well_formed(&stored.snapshot) {
            return Err(ResponseError::InvalidRequest);
        }
        let partition = self.coordinator_partition(replicas, key)?;
        let leader_epoch = partition.leader_epoch().ok_or(ResponseError::NotCoordinator)?;
        let end = {
            // Every write of the partition appends under its log lock: the fencing check and the append are
            // ordered with every other write.
            let mut log = partition.log.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(known) = self.lock().get(key) {
                if known.state_epoch > stored.state_epoch {
                    return Err(ResponseError::FencedStateEpoch);
                }
                if known.state_epoch == stored.state_epoch && known.leader_epoch > stored.leader_epoch {
                    return Err(ResponseError::FencedLeaderEpoch);
                }
            }
            let mut batch = encode_batch(key, Some(&stored))?;
            let end = match log.append(&mut batch, leader_epoch) {
                Ok(info) => info.log_end_offset,
                Err(e) => {
                    error!(group = %key.group, error = %e, "writing a share-partition state failed");
                    return Err(ResponseError::KafkaStorageError);
                }
            };
            // Applied at once, under the log lock, so that reads and later writes see it in append order; it
            // is acknowledged only once replicated, below.
            self.lock().insert(key.clone(), stored);
            end
        };
        partition.leader_appended();
        if !partition.wait_for_high_watermark(end, WRITE_TIMEOUT).await {
            return Err(if partition.leader_epoch().is_some() {
                ResponseError::RequestTimedOut
            } else {
                ResponseError::NotCoordinator
            });
        }
        Ok(())
    }
}

/// Whether a snapshot could be a share-partition's: runs in order, not overlapping, past the start offset and
/// within the most offsets ever in flight after it. A written snapshot may come from any client
/// (WriteShareGroupState): this bounds what loading it takes.
fn well_formed(snapshot: &ShareSnapshot) -> bool {
    if snapshot.batches.len() > BATCHES_MAX {
        return false;
    }
    if snapshot.start_offset == UNINITIALIZED {
        return snapshot.batches.is_empty();
    }
    let limit = snapshot.start_offset.saturating_add(IN_FLIGHT_MAX);
    let mut next = snapshot.start_offset;
    snapshot.batches.iter().all(|b| {
        let ok = b.first >= next && b.first <= b.last && b.last < limit;
        next = b.last.saturating_add(1);
        ok
    })
}

fn encode_batch(key: &StateKey, stored: Option<&Stored>) -> Result<BytesMut, ResponseError> {
    let mut batch = BatchBuilder::new(Compression::None);
    batch.push(
        Some(encode_key(key)),
        stored.map(encode_value),
        Default::default(),
        crate::now_ms(),
    );
    let batch = batch.build().map_err(|e| {
        error!(error = %e, "encoding a share-partition state failed");
        ResponseError::UnknownServerError
    })?;
    Ok(BytesMut::from(&batch[..]))
}

fn encode_key(key: &StateKey) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(KEY_VERSION);
    put_string(&mut buf, &key.group);
    buf.put_slice(key.topic_id.as_bytes());
    buf.put_i32(key.partition);
    buf.freeze()
}

fn decode_key(mut buf: Bytes) -> Option<StateKey> {
    if buf.remaining() < 2 || buf.get_i16() != KEY_VERSION {
        return None;
    }
    let group = get_string(&mut buf)?;
    if buf.remaining() < 20 {
        return None;
    }
    let topic_id = Uuid::from_slice(&buf.split_to(16)).ok()?;
    Some(StateKey {
        group,
        topic_id,
        partition: buf.get_i32(),
    })
}

/// Kafka's delivery state of a record state.
pub fn delivery_state(state: RecordState) -> i8 {
    match state {
        RecordState::Available | RecordState::Acquired => 0,
        RecordState::Acknowledged => 2,
        RecordState::Archived => 4,
    }
}

/// The record state of Kafka's delivery state.
pub fn record_state(delivery_state: i8) -> Option<RecordState> {
    Some(match delivery_state {
        0 | 1 => RecordState::Available,
        2 => RecordState::Acknowledged,
        4 => RecordState::Archived,
        _ => return None,
    })
}

fn encode_value(stored: &Stored) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(VALUE_VERSION);
    buf.put_i32(stored.state_epoch);
    buf.put_i32(stored.leader_epoch);
    buf.put_u64(stored.snapshot.start_offset);
    buf.put_i32(stored.snapshot.batches.len() as i32);
    for batch in &stored.snapshot.batches {
        buf.put_u64(batch.first);
        buf.put_u64(batch.last);
        buf.put_i8(delivery_state(batch.state));
        buf.put_u16(batch.delivery_count);
    }
    buf.freeze()
}

fn decode_value(mut buf: Bytes) -> Option<Stored> {
    if buf.remaining() < 2 + 4 + 4 + 8 + 4 || buf.get_i16() != VALUE_VERSION {
        return None;
    }
    let state_epoch = buf.get_i32();
    let leader_epoch = buf.get_i32();
    let start_offset = buf.get_u64();
    let count = usize::try_from(buf.get_i32()).ok().filter(|c| *c <= BATCHES_MAX)?;
    // Check the length before allocating (a record is read back from disk, but bounds cost nothing).
    const BATCH_BYTES: usize = 8 + 8 + 1 + 2;
    if buf.remaining() < count * BATCH_BYTES {
        return None;
    }
    let mut batches = Vec::with_capacity(count);
    for _ in 0..count {
        let first = buf.get_u64();
        let last = buf.get_u64();
        let state = record_state(buf.get_i8())?;
        let delivery_count = buf.get_u16();
        if last < first {
            return None;
        }
        batches.push(StateBatch {
            first,
            last,
            state,
            delivery_count,
        });
    }
    Some(Stored {
        state_epoch,
        leader_epoch,
        snapshot: ShareSnapshot { start_offset, batches },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let key = StateKey {
            group: "workers".into(),
            topic_id: Uuid::from_u128(42),
            partition: 3,
        };
        assert_eq!(decode_key(encode_key(&key)), Some(key.clone()));
        let stored = Stored {
            state_epoch: 1,
            leader_epoch: 7,
            snapshot: ShareSnapshot {
                start_offset: 10,
                batches: vec![
                    StateBatch {
                        first: 10,
                        last: 12,
                        state: RecordState::Available,
                        delivery_count: 2,
                    },
                    StateBatch {
                        first: 13,
                        last: 13,
                        state: RecordState::Acknowledged,
                        delivery_count: 1,
                    },
                ],
            },
        };
        assert_eq!(decode_value(encode_value(&stored)), Some(stored));
        // A truncated value is refused, not read past.
        let whole = encode_value(&Stored {
            state_epoch: 0,
            leader_epoch: 0,
            snapshot: ShareSnapshot {
                start_offset: 0,
                batches: vec![StateBatch {
                    first: 0,
                    last: 0,
                    state: RecordState::Archived,
                    delivery_count: 1,
                }],
            },
        });
        assert_eq!(decode_value(whole.slice(..whole.len() - 1)), None);
    }

    #[test]
    fn only_snapshots_a_share_partition_could_have_are_written() {
        let batch = |first, last| StateBatch {
            first,
            last,
            state: RecordState::Acknowledged,
            delivery_count: 1,
        };
        let snapshot = |start_offset, batches| ShareSnapshot { start_offset, batches };
        assert!(well_formed(&snapshot(10, vec![batch(10, 12), batch(14, 14)])));
        assert!(!well_formed(&snapshot(10, vec![batch(9, 12)])), "before the start");
        assert!(
            !well_formed(&snapshot(10, vec![batch(10, 12), batch(12, 13)])),
            "overlapping"
        );
        assert!(
            !well_formed(&snapshot(0, vec![batch(0, u64::MAX - 1)])),
            "past what is ever in flight"
        );
        assert!(!well_formed(&snapshot(UNINITIALIZED, vec![batch(0, 0)])));
    }

    #[test]
    fn keys_spread_over_the_state_partitions() {
        let partitions: HashSet<i32> = (0..200)
            .map(|p| {
                StateKey {
                    group: "g".into(),
                    topic_id: Uuid::from_u128(1),
                    partition: p,
                }
                .state_partition()
            })
            .collect();
        assert!(partitions.len() > 30, "{partitions:?}");
        assert!(partitions.iter().all(|p| (0..SHARE_STATE_PARTITIONS).contains(p)));
    }
}
