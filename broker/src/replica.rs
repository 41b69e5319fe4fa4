//! The replica manager: the partitions this broker hosts, their logs, and waking fetches when data arrives.
//!
//! On a single node every hosted partition is led here and the high watermark is the log end offset (the
//! only in-sync replica is this one). Replication, a later milestone, will keep the high watermark apart.
//!
//! Log calls are synchronous file I/O made from async tasks. An append or read is a page-cache copy of at
//! most a request's size, so it is not worth a thread hop; `flush.messages=1` (an fsync per append) is the
//! exception, and the benchmark records what it costs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};

use strata_storage::batch::BatchHeader;
use strata_storage::{Log, LogConfig, LogManager, ReadLimits, SharedLog, TopicPartition};
use tokio::sync::Notify;
use tracing::warn;

use crate::producers::ProducerStates;

/// One hosted partition.
#[derive(Debug)]
pub struct Partition {
    pub tp: TopicPartition,
    pub log: SharedLog,
    /// Idempotent producers' sequences. Lock order: `log` first, then this, so that judging a batch and
    /// appending it are one step.
    pub producers: Mutex<ProducerStates>,
    /// Fetches waiting for data, woken after each append (a delayed-fetch purgatory of one key).
    waiters: Mutex<Vec<Weak<Notify>>>,
}

impl Partition {
    fn new(tp: TopicPartition, log: SharedLog) -> Self {
        let producers = rebuild_producer_states(&log.lock().unwrap_or_else(PoisonError::into_inner));
        Self {
            tp,
            log,
            producers: Mutex::new(producers),
            waiters: Mutex::default(),
        }
    }

    /// Registers `waiter` to be notified at the next append. Registrations of finished fetches are dropped
    /// here, so an idle partition's list stays as long as its live waiters.
    pub fn watch(&self, waiter: &Arc<Notify>) {
        let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        waiters.retain(|w| w.strong_count() > 0);
        waiters.push(Arc::downgrade(waiter));
    }

    /// Wakes every fetch waiting on this partition.
    pub fn appended(&self) {
        let waiters = std::mem::take(&mut *self.waiters.lock().unwrap_or_else(PoisonError::into_inner));
        for waiter in waiters.iter().filter_map(Weak::upgrade) {
            waiter.notify_one();
        }
    }

    /// The offset consumers may read up to. One replica: everything appended.
    pub fn high_watermark(&self) -> u64 {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).log_end_offset()
    }
}

/// The partitions of this broker; see the module documentation.
#[derive(Debug)]
pub struct ReplicaManager {
    logs: Arc<LogManager>,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
}

impl ReplicaManager {
    /// Hosts nothing yet: partitions are hosted for known topics with [`Self::ensure`].
    pub fn new(logs: Arc<LogManager>) -> Self {
        Self {
            logs,
            partitions: RwLock::default(),
        }
    }

    pub fn log_manager(&self) -> &Arc<LogManager> {
        &self.logs
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tp)
            .cloned()
    }

    /// Hosts `tp` with `config`, creating its log if needed; an existing log gets `config` applied.
    pub fn ensure(&self, tp: &TopicPartition, config: LogConfig) -> Result<Arc<Partition>, strata_storage::Error> {
        if let Some(partition) = self.get(tp) {
            partition
                .log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .set_config(config);
            return Ok(partition);
        }
        let log = self.logs.get_or_create(tp, config.clone())?;
        log.lock().unwrap_or_else(PoisonError::into_inner).set_config(config);
        let mut partitions = self.partitions.write().unwrap_or_else(PoisonError::into_inner);
        let partition = partitions
            .entry(tp.clone())
            .or_insert_with(|| Arc::new(Partition::new(tp.clone(), log)));
        Ok(partition.clone())
    }

    /// Stops hosting `tp` and deletes its log.
    pub fn remove(&self, tp: &TopicPartition) -> Result<(), strata_storage::Error> {
        let removed = self
            .partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tp);
        if let Some(partition) = removed {
            // Wake its fetches so they answer now rather than at their deadline.
            partition.appended();
        }
        self.logs.delete(tp)?;
        Ok(())
    }

    /// Every hosted partition of `topic`.
    pub fn partitions_of(&self, topic: &str) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|p| p.tp.topic == topic)
            .cloned()
            .collect()
    }
}

/// Bytes read at a time while rebuilding producer state.
const REBUILD_READ_BYTES: usize = 1024 * 1024;

/// The sequence state of idempotent producers, from the batches of the active segment.
fn rebuild_producer_states(log: &Log) -> ProducerStates {
    let mut states = ProducerStates::default();
    let active_base = log.segment_base_offsets().last().copied().unwrap_or(0);
    let mut offset = active_base.max(log.log_start_offset());
    while offset < log.log_end_offset() {
        let read = match log.read(offset, ReadLimits::bytes(REBUILD_READ_BYTES)) {
            Ok(read) if !read.records.is_empty() => read,
            Ok(_) => break,
            Err(e) => {
                warn!(dir = %log.dir().display(), error = %e, "reading producer state failed; starting without it");
                break;
            }
        };
        for_each_header(&read.records, |header| states.appended(header));
        offset = read.next_offset;
    }
    states
}

/// Calls `f` with the header of each whole batch in `bytes`.
pub fn for_each_header(bytes: &[u8], mut f: impl FnMut(&BatchHeader)) {
    let mut rest = bytes;
    while let Ok(header) = BatchHeader::parse(rest) {
        let size = header.total_bytes();
        if size > rest.len() || size < strata_storage::batch::BATCH_HEADER_BYTES {
            break;
        }
        f(&header);
        rest = &rest[size..];
    }
}
