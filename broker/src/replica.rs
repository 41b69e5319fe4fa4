//! The replica manager: the partitions this broker hosts, their logs, their replication state, and waking
//! fetches and produces that wait for data or for the high watermark.
//!
//! Each hosted partition has a [`ReplicaState`] set from the metadata image (`crate::reconcile`): this broker
//! leads it, follows another broker, or neither (offline). The **leader** tracks each follower's log end
//! offset, as its fetches say, and when it was last caught up; the high watermark is the smallest log end
//! offset over the ISR, and never moves back while this broker leads. A **follower** appends what it fetches
//! from the leader (`crate::fetcher`) and takes the leader's high watermark, bounded by its own log end.
//!
//! Log calls are synchronous file I/O made from async tasks. An append or read is a page-cache copy of at
//! most a request's size, so it is not worth a thread hop; `flush.messages=1` (an fsync per append) is the
//! exception, and the benchmark records what it costs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use strata_storage::batch::BatchHeader;
use strata_storage::{Log, LogConfig, LogManager, ReadLimits, SharedLog, TopicPartition};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::producers::ProducerStates;

/// What this broker is for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    /// Following the given broker.
    Follower(i32),
    /// No leader, or this broker is not a replica any more: serves nothing.
    Offline,
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy)]
struct FollowerProgress {
    /// The follower's log end offset: the offset its last fetch asked for.
    log_end: u64,
    /// When its log end last reached the leader's.
    caught_up_at: Instant,
}

/// A partition's replication state: its metadata, and on the leader each follower's progress.
#[derive(Debug)]
pub struct ReplicaState {
    pub role: Role,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    followers: HashMap<i32, FollowerProgress>,
    /// An ISR change was sent to the controller and the metadata does not show its outcome yet.
    pub isr_change_pending: bool,
}

impl Default for ReplicaState {
    fn default() -> Self {
        Self {
            role: Role::Offline,
            leader_epoch: -1,
            partition_epoch: -1,
            replicas: Vec::new(),
            isr: Vec::new(),
            followers: HashMap::new(),
            isr_change_pending: false,
        }
    }
}

/// An ISR change a leader should ask the controller for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// One hosted partition.
#[derive(Debug)]
pub struct Partition {
    pub tp: TopicPartition,
    pub log: SharedLog,
    /// The offset consumers may read up to (see the module documentation).
    high_watermark: AtomicU64,
    state: Mutex<ReplicaState>,
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
            high_watermark: AtomicU64::new(0),
            state: Mutex::default(),
            producers: Mutex::new(producers),
            waiters: Mutex::default(),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, ReplicaState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log_end_offset(&self) -> u64 {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).log_end_offset()
    }

    /// The leader epoch, if this broker leads the partition.
    pub fn leader_epoch(&self) -> Option<i32> {
        let state = self.state();
        (state.role == Role::Leader).then_some(state.leader_epoch)
    }

    /// Takes the partition's state from the metadata. `me` is this broker. Returns the role before.
    pub fn apply_metadata(&self, me: i32, metadata: &strata_controller::Partition) -> Role {
        let role = match metadata.leader {
            leader if leader == me => Role::Leader,
            leader if leader >= 0 && metadata.replicas.contains(&me) => Role::Follower(leader),
            _ => Role::Offline,
        };
        let mut state = self.state();
        let before = state.role;
        let new_term = role != before || metadata.leader_epoch != state.leader_epoch;
        if new_term {
            // A new leader term: followers are judged from now on (Kafka resets their caught-up times).
            let now = Instant::now();
            state.followers = metadata
                .replicas
                .iter()
                .filter(|&&id| id != me)
                .map(|&id| {
                    let progress = FollowerProgress {
                        log_end: 0,
                        caught_up_at: now,
                    };
                    (id, progress)
                })
                .collect();
        }
        if metadata.partition_epoch != state.partition_epoch {
            state.isr_change_pending = false;
        }
        state.role = role;
        state.leader_epoch = metadata.leader_epoch;
        state.partition_epoch = metadata.partition_epoch;
        state.replicas = metadata.replicas.clone();
        state.isr = metadata.isr.clone();
        if role == Role::Leader {
            self.advance_high_watermark(&state);
        }
        drop(state);
        self.appended();
        before
    }

    /// On the leader: recomputes the high watermark from the ISR's log end offsets. It only moves forward.
    fn advance_high_watermark(&self, state: &ReplicaState) {
        let own = self.log_end_offset();
        let lowest = state
            .isr
            .iter()
            .filter_map(|id| state.followers.get(id))
            .map(|f| f.log_end)
            .fold(own, u64::min);
        let before = self.high_watermark.fetch_max(lowest, Ordering::AcqRel);
        if lowest > before {
            self.appended();
        }
    }

    /// After an append on the leader: the high watermark moves if this is the only in-sync replica.
    pub fn leader_appended(&self) {
        let state = self.state();
        if state.role == Role::Leader {
            self.advance_high_watermark(&state);
        }
        drop(state);
        self.appended();
    }

    /// On the leader: follower `replica` fetched from `fetch_offset`, so its log ends there. Moves the high
    /// watermark. Answers the leader's log end offset at that time.
    pub fn follower_fetched(&self, replica: i32, fetch_offset: u64) -> u64 {
        let own = self.log_end_offset();
        let mut state = self.state();
        if let Some(progress) = state.followers.get_mut(&replica) {
            progress.log_end = fetch_offset.min(own);
            if fetch_offset >= own {
                progress.caught_up_at = Instant::now();
            }
        }
        self.advance_high_watermark(&state);
        own
    }

    /// On a follower: the leader's high watermark, bounded by this log's end.
    pub fn follower_high_watermark(&self, leader_high_watermark: u64) {
        let bounded = leader_high_watermark.min(self.log_end_offset());
        let before = self.high_watermark.swap(bounded, Ordering::AcqRel);
        if bounded != before {
            self.appended();
        }
    }

    /// After truncation: a high watermark past the log end is brought back to it, and idempotent
    /// producers' state is rebuilt from what the log still holds.
    pub fn truncated(&self) {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        self.high_watermark.fetch_min(log.log_end_offset(), Ordering::AcqRel);
        let producers = rebuild_producer_states(&log);
        *self.producers.lock().unwrap_or_else(PoisonError::into_inner) = producers;
    }

    /// On the leader, with no change in flight: the ISR it should have. Followers not caught up for
    /// `lag_max` leave; followers whose log reached the high watermark join.
    pub fn wanted_isr(&self, me: i32, lag_max: Duration) -> Option<IsrChange> {
        let state = self.state();
        if state.role != Role::Leader || state.isr_change_pending || state.replicas.len() < 2 {
            return None;
        }
        let high_watermark = self.high_watermark();
        let now = Instant::now();
        let isr: Vec<i32> = state
            .replicas
            .iter()
            .copied()
            .filter(|&id| {
                id == me
                    || state.followers.get(&id).is_some_and(|f| {
                        let lagging = now.duration_since(f.caught_up_at) > lag_max;
                        if state.isr.contains(&id) {
                            !lagging
                        } else {
                            !lagging && f.log_end >= high_watermark
                        }
                    })
            })
            .collect();
        (isr != state.isr).then(|| IsrChange {
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            isr,
        })
    }

    /// Marks an ISR change as sent (or, with `false`, as failed: it may be asked again).
    pub fn set_isr_change_pending(&self, pending: bool) {
        self.state().isr_change_pending = pending;
    }

    /// Waits until the high watermark reaches `offset` or `timeout` passes; returns whether it did.
    pub async fn wait_for_high_watermark(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let waiter = Arc::new(Notify::new());
            self.watch(&waiter);
            if self.high_watermark() >= offset {
                return true;
            }
            if self.state().role != Role::Leader {
                return false;
            }
            if tokio::time::timeout_at(deadline, waiter.notified()).await.is_err() {
                return self.high_watermark() >= offset;
            }
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

    /// The offset consumers may read up to.
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark.load(Ordering::Acquire)
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

    /// Every hosted partition.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
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

/// On each partition this broker leads: asks the controller to shrink the ISR when followers lag past
/// `replica.lag.time.max.ms`, and to grow it when they catch up.
pub async fn maintain_isrs(broker: Arc<Broker>, shutdown: CancellationToken) {
    let lag_max = Duration::from_millis(broker.settings.replica_lag_time_max_ms);
    let mut ticks = tokio::time::interval((lag_max / 4).clamp(Duration::from_millis(50), Duration::from_millis(500)));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let image = broker.metadata.image();
        for partition in broker.replicas.all() {
            let Some(change) = partition.wanted_isr(broker.node_id(), lag_max) else {
                continue;
            };
            let Some(topic_id) = image.topic_by_name(&partition.tp.topic).map(|t| t.id) else {
                continue;
            };
            partition.set_isr_change_pending(true);
            info!(partition = %partition.tp, isr = ?change.isr, "asking the controller to change the ISR");
            let broker = broker.clone();
            tokio::spawn(async move {
                if let Err(failure) = broker.alter_isr(&partition.tp, topic_id, change).await {
                    warn!(partition = %partition.tp, error = %failure.message, "ISR change refused");
                    partition.set_isr_change_pending(false);
                }
            });
        }
    }
}
