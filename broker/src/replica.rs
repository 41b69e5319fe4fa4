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

use strata_storage::{LogConfig, LogManager, SharedLog, TopicPartition};
use tokio::sync::Notify;

/// One hosted partition.
#[derive(Debug)]
pub struct Partition {
    pub tp: TopicPartition,
    pub log: SharedLog,
    /// Fetches waiting for data, woken after each append (a delayed-fetch purgatory of one key).
    waiters: Mutex<Vec<Weak<Notify>>>,
}

impl Partition {
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
        let partition = partitions.entry(tp.clone()).or_insert_with(|| {
            Arc::new(Partition {
                tp: tp.clone(),
                log,
                waiters: Mutex::default(),
            })
        });
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
