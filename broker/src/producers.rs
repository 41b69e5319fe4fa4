//! Idempotent producers: producer ids, and the per-partition sequence state that turns a retried batch into
//! the answer it already had instead of a second copy.
//!
//! A producer with `enable.idempotence` (the Java client's default) asks InitProducerId for an id, then
//! numbers its records per partition. For each partition and producer the broker keeps the epoch and the
//! sequence ranges of the last [`BATCHES_KEPT`] batches with their offsets, as Kafka does:
//!
//! - a batch that repeats one of those ranges is a retry: it is answered with the offset it got the first
//!   time and not appended again;
//! - a batch that continues the last range is appended;
//! - anything else is `OUT_OF_ORDER_SEQUENCE_NUMBER`; an older epoch is `INVALID_PRODUCER_EPOCH`; a
//!   producer this partition does not know, starting past sequence 0, is `UNKNOWN_PRODUCER_ID` (the client
//!   then starts over with a new id).
//!
//! The state is rebuilt when a partition is hosted, from the batches of its active segment (producers that
//! last wrote before that are forgotten and get `UNKNOWN_PRODUCER_ID`, which clients handle). Producer ids
//! are handed out in blocks whose end is persisted before any id of the block is used, so an id is never
//! given twice, restarts included. Each node gives ids from its own range (node id × 2^40 onwards), so no two
//! brokers of a cluster give the same id; Kafka has its controller hand out the blocks instead.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use kafka_protocol::ResponseError;
use strata_storage::batch::BatchHeader;

/// Batches remembered per producer and partition: Kafka's `max.in.flight.requests.per.connection` limit
/// for idempotence is 5, so a retry is always one of the last five.
pub const BATCHES_KEPT: usize = 5;
/// Producer ids reserved (and persisted) at a time.
const ID_BLOCK: i64 = 1000;
const PRODUCER_IDS_FILE: &str = "producer-ids";
/// Bits of a producer id below the node id: 2^40 ids per node.
const NODE_ID_SHIFT: u32 = 40;

/// What to do with a batch from an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Append,
    /// A retry of a batch already appended at this base offset.
    Duplicate(u64),
    Refuse(ResponseError),
}

#[derive(Debug, Clone, Copy)]
struct Written {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: u64,
}

#[derive(Debug, Default)]
struct Producer {
    epoch: i16,
    written: VecDeque<Written>,
}

/// The sequence state of one partition.
#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, Producer>,
}

impl ProducerStates {
    /// Judges a batch before it is appended. Batches without a producer id are always appended.
    pub fn check(&self, batch: &BatchHeader) -> Verdict {
        if batch.producer_id < 0 {
            return Verdict::Append;
        }
        let Some(producer) = self.producers.get(&batch.producer_id) else {
            return if batch.base_sequence == 0 {
                Verdict::Append
            } else {
                Verdict::Refuse(ResponseError::UnknownProducerId)
            };
        };
        if batch.producer_epoch < producer.epoch {
            return Verdict::Refuse(ResponseError::InvalidProducerEpoch);
        }
        if batch.producer_epoch > producer.epoch {
            // A new epoch starts its sequences again.
            return if batch.base_sequence == 0 {
                Verdict::Append
            } else {
                Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
            };
        }
        let (first, last) = (batch.base_sequence, batch.last_sequence());
        if let Some(w) = producer
            .written
            .iter()
            .find(|w| w.first_sequence == first && w.last_sequence == last)
        {
            return Verdict::Duplicate(w.base_offset);
        }
        let next = producer.written.back().map_or(0, |w| next_sequence(w.last_sequence));
        if first == next {
            Verdict::Append
        } else {
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
        }
    }

    /// Records a batch that was appended (its header carries the assigned base offset).
    pub fn appended(&mut self, batch: &BatchHeader) {
        if batch.producer_id < 0 {
            return;
        }
        let producer = self.producers.entry(batch.producer_id).or_default();
        if batch.producer_epoch != producer.epoch {
            producer.epoch = batch.producer_epoch;
            producer.written.clear();
        }
        if producer.written.len() == BATCHES_KEPT {
            producer.written.pop_front();
        }
        producer.written.push_back(Written {
            first_sequence: batch.base_sequence,
            last_sequence: batch.last_sequence(),
            base_offset: batch.base_offset as u64,
        });
    }
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX { 0 } else { sequence + 1 }
}

/// Hands out producer ids; see the module documentation.
#[derive(Debug)]
pub struct ProducerIds {
    path: PathBuf,
    /// (next id to give, end of the persisted block)
    state: Mutex<(i64, i64)>,
}

impl ProducerIds {
    /// The ids of node `node_id`, continuing after the block persisted in `data_dir`.
    pub fn open(data_dir: &Path, node_id: i32) -> anyhow::Result<Self> {
        let first = i64::from(node_id) << NODE_ID_SHIFT;
        let path = data_dir.join(PRODUCER_IDS_FILE);
        let next = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let body =
                    crate::metadata::verify_crc(&text).with_context(|| format!("{} is corrupt", path.display()))?;
                body.trim()
                    .strip_prefix("next=")
                    .and_then(|n| n.parse().ok())
                    .context("producer-ids has no next=")?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => first,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let next = i64::max(next, first);
        // Nothing of the persisted block is known to be unused: start after it.
        Ok(Self {
            path,
            state: Mutex::new((next, next)),
        })
    }

    /// A producer id never given before.
    pub fn allocate(&self) -> anyhow::Result<i64> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (next, end) = *state;
        if next == end {
            let new_end = end + ID_BLOCK;
            crate::metadata::write_atomically(&self.path, &crate::metadata::with_crc(format!("next={new_end}\n")))?;
            state.1 = new_end;
        }
        state.0 += 1;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_storage::batch::build::{Record, batch};

    fn header(producer_id: i64, epoch: i16, base_sequence: i32, records: i32, base_offset: i64) -> BatchHeader {
        let mut header = BatchHeader::parse(&batch(&[Record::default()])).unwrap();
        header.producer_id = producer_id;
        header.producer_epoch = epoch;
        header.base_sequence = base_sequence;
        header.last_offset_delta = records - 1;
        header.record_count = records;
        header.base_offset = base_offset;
        header
    }

    #[test]
    fn retries_are_answered_with_their_first_offset_and_gaps_are_refused() {
        let mut states = ProducerStates::default();
        assert_eq!(
            states.check(&header(7, 0, 3, 1, 0)),
            Verdict::Refuse(ResponseError::UnknownProducerId)
        );
        let first = header(7, 0, 0, 5, 100);
        assert_eq!(states.check(&first), Verdict::Append);
        states.appended(&first);
        assert_eq!(states.check(&header(7, 0, 0, 5, 0)), Verdict::Duplicate(100), "a retry");
        assert_eq!(
            states.check(&header(7, 0, 6, 1, 0)),
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
        );
        let second = header(7, 0, 5, 2, 105);
        assert_eq!(states.check(&second), Verdict::Append);
        states.appended(&second);
        assert_eq!(states.check(&header(7, 0, 5, 2, 0)), Verdict::Duplicate(105));
        assert_eq!(
            states.check(&header(7, 0, 0, 5, 0)),
            Verdict::Duplicate(100),
            "still among the last five"
        );
        // Fencing and epochs.
        assert_eq!(
            states.check(&header(7, 1, 3, 1, 0)),
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
        );
        let bumped = header(7, 1, 0, 1, 200);
        assert_eq!(states.check(&bumped), Verdict::Append);
        states.appended(&bumped);
        assert_eq!(
            states.check(&header(7, 0, 7, 1, 0)),
            Verdict::Refuse(ResponseError::InvalidProducerEpoch)
        );
        // Plain batches are not judged.
        assert_eq!(states.check(&header(-1, -1, -1, 3, 0)), Verdict::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut states = ProducerStates::default();
        for i in 0..7 {
            let h = header(1, 0, i, 1, i64::from(i));
            assert_eq!(states.check(&h), Verdict::Append);
            states.appended(&h);
        }
        assert_eq!(states.check(&header(1, 0, 2, 1, 0)), Verdict::Duplicate(2));
        assert_eq!(
            states.check(&header(1, 0, 1, 1, 0)),
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn sequences_wrap_like_kafkas() {
        let h = header(1, 0, i32::MAX - 1, 3, 0);
        assert_eq!(h.last_sequence(), 0);
        assert_eq!(next_sequence(i32::MAX), 0);
    }

    #[test]
    fn producer_ids_are_never_reused_across_restarts_or_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path(), 0).unwrap();
        let first: Vec<i64> = (0..3).map(|_| ids.allocate().unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(ids);
        let ids = ProducerIds::open(dir.path(), 0).unwrap();
        assert!(
            ids.allocate().unwrap() >= ID_BLOCK,
            "a restart starts after the persisted block"
        );
        let other = tempfile::tempdir().unwrap();
        let node_2 = ProducerIds::open(other.path(), 2).unwrap().allocate().unwrap();
        assert_eq!(node_2, 2 << NODE_ID_SHIFT, "node 2 gives ids from its own range");
    }
}
