//! The replica manager: the partitions this broker hosts, their logs, their replication state, and waking
//! fetches and produces that wait for data or for the high watermark.
//!
//! Each hosted partition has a [`ReplicaState`] set from the metadata image (`crate::reconcile`): this broker
//! leads it, follows another broker, or neither (offline). The **leader** tracks each follower's log end
//! offset, as its fetches say, and when it was last caught up; the high watermark is the smallest log end
//! offset over the *maximal* ISR, and never moves back while this broker leads. A **follower** appends what it
//! fetches from the leader (`crate::fetcher`) and takes the leader's high watermark, bounded by its own log
//! end.
//!
//! The maximal ISR (Kafka's KIP-497) is the committed ISR plus any member this leader has asked the
//! controller to add and whose answer it has not seen. A replica joins only once its log reaches the high
//! watermark, and from the moment the leader asks, the high watermark waits for it too; both happen under the
//! state lock, in [`Partition::propose_isr_change`]. So every replica the controller may put in the ISR — and
//! elect, even in the same step, as the preferred-leader election does — holds every record below the high
//! watermark, which is every record ever acknowledged with `acks=all`. Counting only the committed ISR lost
//! acknowledged records: a follower added and elected at once lacked what the old leader had acknowledged
//! meanwhile with the smaller ISR (found by `tests/tests/replication.rs`).
//!
//! A leader acts as one only while its **lease** holds: while its session with the controller was renewed
//! within `broker.session.timeout.ms` ([`Lease`]). A broker cut off from the controller is fenced there when
//! its session ends and its partitions get new leaders; it stops answering as their leader
//! (`NOT_LEADER_OR_FOLLOWER`, so clients look for the new one) no later than that, rather than for as long as
//! it stays cut off.
//!
//! Log calls are synchronous file I/O made from async tasks. An append or read is a page-cache copy of at
//! most a request's size, so it is not worth a thread hop; `flush.messages=1` (an fsync per append) is the
//! exception, and the benchmark records what it costs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use kafka_protocol::ResponseError;
use strata_protocol::transport::Connector;
use strata_storage::{LogConfig, LogManager, SharedLog, TopicPartition};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::fetcher::Fetchers;
use crate::metrics::Metrics;

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
    /// The last time the follower was known to have the leader's whole log (see
    /// [`FollowerProgress::fetched`]).
    caught_up_at: Instant,
    /// The leader's log end offset when the follower last fetched, and when that was.
    last_fetch_leader_end: u64,
    last_fetch_at: Instant,
}

impl FollowerProgress {
    fn new(now: Instant) -> Self {
        Self {
            log_end: 0,
            caught_up_at: now,
            last_fetch_leader_end: 0,
            last_fetch_at: now,
        }
    }

    /// The follower fetched from `fetch_offset` at `now`, when the leader's log ended at `leader_end`.
    ///
    /// Kafka's rule for "caught up": a fetch from the leader's log end means caught up now; a fetch from at
    /// least where the leader's log ended at the follower's *previous* fetch means it was caught up then.
    /// Requiring the first alone judges a follower that keeps pace with a steady stream of appends as
    /// lagging forever, since a new append always lands between its fetches: it would leave the ISR under
    /// load and never return (found by `tests/tests/replication.rs` with three producers).
    fn fetched(&mut self, fetch_offset: u64, leader_end: u64, now: Instant) {
        self.log_end = fetch_offset.min(leader_end);
        if fetch_offset >= leader_end {
            self.caught_up_at = self.caught_up_at.max(now);
        } else if fetch_offset >= self.last_fetch_leader_end {
            self.caught_up_at = self.caught_up_at.max(self.last_fetch_at);
        }
        self.last_fetch_leader_end = leader_end;
        self.last_fetch_at = now;
    }
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
    /// The ISR this leader asked the controller for, while the metadata does not show the outcome yet.
    pending_isr: Option<Vec<i32>>,
}

impl ReplicaState {
    /// The committed ISR and the members a pending change would add: what the high watermark waits for.
    fn maximal_isr(&self) -> impl Iterator<Item = &i32> {
        let added = self.pending_isr.iter().flatten().filter(|id| !self.isr.contains(id));
        self.isr.iter().chain(added)
    }
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
            pending_isr: None,
        }
    }
}

/// An ISR change a leader should ask the controller for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
    /// The committed ISR it replaces: whether it shrinks or expands it, once committed.
    pub replaces: Vec<i32>,
}

/// Whether this broker may act as a partition leader: its session with the controller was renewed (a
/// heartbeat or its registration answered) within the session timeout, counted from when the renewing
/// request was *sent*. The controller starts its count when it receives the request, later, so this lease
/// always ends first: the broker has stopped leading before the controller can fence it and elect others.
#[derive(Debug)]
pub struct Lease {
    /// tokio's clock, which a simulation drives.
    origin: Instant,
    /// When the last renewing request was sent, in ms after `origin`; 0: never renewed.
    renewed_sent_ms: AtomicU64,
    session_timeout: Duration,
}

impl Lease {
    pub fn new(session_timeout: Duration) -> Self {
        Self {
            origin: Instant::now(),
            renewed_sent_ms: AtomicU64::new(0),
            session_timeout,
        }
    }

    /// A request sent at `sent` renewed the session.
    pub fn renewed(&self, sent: Instant) {
        // +1 so that a renewal at the origin is not "never".
        let ms = sent.saturating_duration_since(self.origin).as_millis() as u64 + 1;
        self.renewed_sent_ms.fetch_max(ms, Ordering::AcqRel);
    }

    /// When the lease ends unless renewed first; `None`: never renewed.
    pub fn expires_at(&self) -> Option<Instant> {
        let renewed = self.renewed_sent_ms.load(Ordering::Acquire);
        (renewed > 0).then(|| self.origin + Duration::from_millis(renewed - 1) + self.session_timeout)
    }

    /// Whether the session is renewed as of now.
    pub fn holds(&self) -> bool {
        self.expires_at().is_some_and(|expires| Instant::now() < expires)
    }
}

/// One hosted partition.
#[derive(Debug)]
pub struct Partition {
    pub tp: TopicPartition,
    pub log: SharedLog,
    lease: Arc<Lease>,
    /// The offset consumers may read up to (see the module documentation).
    high_watermark: AtomicU64,
    state: Mutex<ReplicaState>,
    /// Fetches waiting for data, woken after each append (a delayed-fetch purgatory of one key).
    waiters: Mutex<Vec<Weak<Notify>>>,
}

impl Partition {
    fn new(tp: TopicPartition, log: SharedLog, lease: Arc<Lease>) -> Self {
        Self {
            tp,
            log,
            lease,
            high_watermark: AtomicU64::new(0),
            state: Mutex::default(),
            waiters: Mutex::default(),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, ReplicaState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log_end_offset(&self) -> u64 {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).log_end_offset()
    }

    /// The leader epoch, if this broker leads the partition (and its lease holds).
    pub fn leader_epoch(&self) -> Option<i32> {
        let state = self.state();
        (state.role == Role::Leader && self.lease.holds()).then_some(state.leader_epoch)
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
                .map(|&id| (id, FollowerProgress::new(now)))
                .collect();
        }
        if metadata.partition_epoch != state.partition_epoch {
            // The change this leader asked for was made, or can no longer be: it named an older partition
            // epoch, which the controller refuses.
            state.pending_isr = None;
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

    /// On the leader: recomputes the high watermark from the maximal ISR's log end offsets. It only moves
    /// forward. Called with the state locked, so that it never runs between judging a follower fit to join
    /// and counting it here.
    fn advance_high_watermark(&self, state: &ReplicaState) {
        let own = self.log_end_offset();
        let lowest = state
            .maximal_isr()
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
            progress.fetched(fetch_offset, own, Instant::now());
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

    /// After truncation: a high watermark past the log end is brought back to it. (The log rewound its
    /// idempotent producers' state itself.)
    pub fn truncated(&self) {
        let log_end_offset = self.log_end_offset();
        self.high_watermark.fetch_min(log_end_offset, Ordering::AcqRel);
    }

    /// On the leader, with no change in flight: the ISR it should have, marked as pending (counted in the
    /// maximal ISR from now on) in the same step as it is judged. Followers not caught up for `lag_max`
    /// leave; followers whose log reached the high watermark join.
    pub fn propose_isr_change(&self, me: i32, lag_max: Duration) -> Option<IsrChange> {
        let mut state = self.state();
        if state.role != Role::Leader || state.pending_isr.is_some() || state.replicas.len() < 2 {
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
        if isr == state.isr {
            return None;
        }
        state.pending_isr = Some(isr.clone());
        Some(IsrChange {
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            isr,
            replaces: state.isr.clone(),
        })
    }

    /// The change [`Self::propose_isr_change`] asked for at `partition_epoch` is known not to have been made
    /// (refused, or nothing to change): it may be asked again, and the high watermark no longer waits for
    /// members it would have added. A change whose outcome is unknown must not end this way: it may have
    /// been made, and only the metadata (a new partition epoch) says so.
    pub fn end_isr_change(&self, partition_epoch: i32) {
        let mut state = self.state();
        if state.partition_epoch != partition_epoch {
            return;
        }
        state.pending_isr = None;
        if state.role == Role::Leader {
            self.advance_high_watermark(&state);
        }
    }

    /// Whether the change asked for at `partition_epoch` still awaits its outcome.
    fn isr_change_pending(&self, partition_epoch: i32) -> bool {
        let state = self.state();
        state.partition_epoch == partition_epoch && state.pending_isr.is_some()
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
            if self.leader_epoch().is_none() {
                return false;
            }
            // Nothing wakes a wait when the lease lapses: look again then.
            let lease_end = self.lease.expires_at().unwrap_or(deadline);
            if tokio::time::timeout_at(deadline.min(lease_end), waiter.notified())
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
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

/// What the replica manager needs to know of the cluster, from the metadata this broker follows.
pub trait ClusterView: Send + Sync + 'static {
    /// Where broker `id` serves Kafka (`host:port`), for this broker's replica fetchers.
    fn broker_address(&self, id: i32) -> Option<String>;
    /// The id of topic `name`, which ISR changes name it by.
    fn topic_id(&self, name: &str) -> Option<Uuid>;
}

/// A refused or unanswered request to the controller: the Kafka error and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerRefusal {
    pub error: ResponseError,
    pub message: String,
}

/// What the replica manager asks of the controller quorum.
pub trait ControllerChannel: Send + Sync + 'static {
    /// Asks for a partition's new ISR, as its leader (Kafka's AlterPartition), and waits until this broker's
    /// metadata shows the outcome. `Err` with `REQUEST_TIMED_OUT` means the outcome is unknown.
    fn alter_partition(
        &self,
        tp: &TopicPartition,
        topic_id: Uuid,
        change: IsrChange,
    ) -> BoxFuture<'_, Result<(), ControllerRefusal>>;
}

/// The settings the replica manager runs with.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaSettings {
    /// This broker.
    pub node_id: i32,
    /// Kafka's `replica.lag.time.max.ms`: a follower not caught up for longer leaves the ISR.
    pub lag_max: Duration,
    /// Kafka's `broker.session.timeout.ms`, which bounds the [`Lease`].
    pub session_timeout: Duration,
}

/// The partitions of this broker, their replication state and their fetchers; see the module
/// documentation. It depends on the rest of the node only through [`ClusterView`], [`ControllerChannel`], a
/// [`Connector`] to reach leaders, and tokio's clock (which a simulation drives), so that it runs the same
/// in a `strata server`, a test, or a turmoil simulation.
pub struct ReplicaManager {
    settings: ReplicaSettings,
    logs: Arc<LogManager>,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    lease: Arc<Lease>,
    fetchers: Fetchers,
    cluster: Arc<dyn ClusterView>,
    controller: Arc<dyn ControllerChannel>,
    /// Cancelled when the node stops: fetchers and the ISR upkeep end, waits answer at once.
    shutdown: CancellationToken,
    /// The broker's figures: ISR changes and replicated bytes are counted here.
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for ReplicaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaManager")
            .field("settings", &self.settings)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl ReplicaManager {
    /// Hosts nothing yet: partitions are hosted for known topics with [`Self::ensure`].
    pub fn new(
        settings: ReplicaSettings,
        logs: Arc<LogManager>,
        cluster: Arc<dyn ClusterView>,
        controller: Arc<dyn ControllerChannel>,
        connector: Connector,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            settings,
            logs,
            partitions: RwLock::default(),
            lease: Arc::new(Lease::new(settings.session_timeout)),
            fetchers: Fetchers::new(connector),
            cluster,
            controller,
            shutdown,
            metrics,
        }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn node_id(&self) -> i32 {
        self.settings.node_id
    }

    /// This broker's lease on its leaderships.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    pub(crate) fn cluster(&self) -> &dyn ClusterView {
        &*self.cluster
    }

    pub(crate) fn fetchers(&self) -> &Fetchers {
        &self.fetchers
    }

    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Follows `tp` from `leader` at `leader_epoch` (see [`Fetchers::follow`]).
    pub fn follow(self: &Arc<Self>, tp: TopicPartition, leader: i32, leader_epoch: i32) {
        self.fetchers.follow(self, tp, leader, leader_epoch);
    }

    /// Stops following `tp`.
    pub fn unfollow(&self, tp: &TopicPartition) {
        self.fetchers.unfollow(tp);
    }

    /// Wakes every fetcher, so that they see a stop.
    pub fn wake_fetchers(&self) {
        self.fetchers.wake_all();
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
            .or_insert_with(|| Arc::new(Partition::new(tp.clone(), log, self.lease.clone())));
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

/// On each partition this broker leads: asks the controller to shrink the ISR when followers lag past
/// `replica.lag.time.max.ms`, and to grow it when they catch up. Runs until the manager's shutdown.
pub async fn maintain_isrs(manager: Arc<ReplicaManager>) {
    let lag_max = manager.settings.lag_max;
    let mut ticks = tokio::time::interval((lag_max / 4).clamp(Duration::from_millis(50), Duration::from_millis(500)));
    loop {
        tokio::select! {
            () = manager.shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        for partition in manager.all() {
            let Some(topic_id) = manager.cluster.topic_id(&partition.tp.topic) else {
                continue;
            };
            let Some(change) = partition.propose_isr_change(manager.node_id(), lag_max) else {
                continue;
            };
            info!(partition = %partition.tp, isr = ?change.isr, "asking the controller to change the ISR");
            tokio::spawn(change_isr(manager.clone(), partition, topic_id, change));
        }
    }
}

/// How long a leader waits before asking again for an ISR change whose outcome it does not know.
const ISR_CHANGE_RETRY: Duration = Duration::from_millis(200);

/// Asks the controller for `change` until its outcome is known (Kafka's AlterPartition manager).
async fn change_isr(manager: Arc<ReplicaManager>, partition: Arc<Partition>, topic_id: Uuid, change: IsrChange) {
    let epoch = change.partition_epoch;
    loop {
        match manager
            .controller
            .alter_partition(&partition.tp, topic_id, change.clone())
            .await
        {
            // Made, and this broker has seen the metadata that says so (which ended the change), or there
            // was nothing to make.
            Ok(()) => {
                manager.metrics.isr_changed(&change.replaces, &change.isr);
                return partition.end_isr_change(epoch);
            }
            // No answer in time, or made but not seen here yet: it may have been made, so it stays in the
            // maximal ISR and is asked again. Asked again once made, it is refused as stale, below.
            Err(failure) if failure.error == ResponseError::RequestTimedOut => {
                if manager.shutdown.is_cancelled() || !partition.isr_change_pending(epoch) {
                    return;
                }
                debug!(partition = %partition.tp, error = %failure.message, "ISR change not answered; asking again");
                tokio::time::sleep(ISR_CHANGE_RETRY).await;
            }
            // The partition changed since it was asked: perhaps by this very change. The metadata carrying
            // the new partition epoch ends it.
            Err(failure) if failure.error == ResponseError::InvalidUpdateVersion => {
                debug!(partition = %partition.tp, error = %failure.message, "ISR change overtaken by a newer partition epoch");
                return;
            }
            Err(failure) => {
                warn!(partition = %partition.tp, error = %failure.message, "ISR change refused");
                return partition.end_isr_change(epoch);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use strata_protocol::client::{BatchBuilder, Compression};
    use strata_storage::ManagerConfig;

    use super::*;

    const LAG_MAX: Duration = Duration::from_secs(30);

    fn metadata(leader: i32, leader_epoch: i32, isr: &[i32], partition_epoch: i32) -> strata_controller::Partition {
        strata_controller::Partition {
            replicas: vec![3, 1, 2],
            isr: isr.to_vec(),
            leader,
            leader_epoch,
            partition_epoch,
        }
    }

    fn append_one(partition: &Partition, leader_epoch: i32) {
        let mut batch = BatchBuilder::new(Compression::None);
        batch.push(None, Some(Bytes::from_static(b"record")), Default::default(), 0);
        let mut bytes = batch.build().unwrap().to_vec();
        partition.log.lock().unwrap().append(&mut bytes, leader_epoch).unwrap();
        partition.leader_appended();
    }

    /// A cluster nothing is known of, and a controller that refuses everything: what these tests drive by
    /// hand instead.
    struct Alone;

    impl ClusterView for Alone {
        fn broker_address(&self, _: i32) -> Option<String> {
            None
        }

        fn topic_id(&self, _: &str) -> Option<Uuid> {
            None
        }
    }

    impl ControllerChannel for Alone {
        fn alter_partition(
            &self,
            _: &TopicPartition,
            _: Uuid,
            _: IsrChange,
        ) -> BoxFuture<'_, Result<(), ControllerRefusal>> {
            Box::pin(async {
                Err(ControllerRefusal {
                    error: ResponseError::NotController,
                    message: "no controller here".into(),
                })
            })
        }
    }

    /// Broker 1's replica manager over a data directory in `dir`.
    fn manager(dir: &std::path::Path, session_timeout: Duration) -> ReplicaManager {
        let (logs, _) = LogManager::open(dir, LogConfig::default(), ManagerConfig::default()).unwrap();
        let settings = ReplicaSettings {
            node_id: 1,
            lag_max: LAG_MAX,
            session_timeout,
        };
        let alone = Arc::new(Alone);
        ReplicaManager::new(
            settings,
            Arc::new(logs),
            alone.clone(),
            alone,
            Connector::tcp(),
            CancellationToken::new(),
            Arc::default(),
        )
    }

    /// Node 1 leads `orders-0` (replicas 3, 1, 2; 3 preferred) at epoch 1 with ISR [1, 2], after 3 restarted;
    /// ten records are on all three.
    fn leader_after_restart(dir: &std::path::Path) -> Arc<Partition> {
        let manager = manager(dir, Duration::from_secs(9));
        manager.lease().renewed(Instant::now());
        let partition = manager
            .ensure(&TopicPartition::new("orders", 0), LogConfig::default())
            .unwrap();
        partition.apply_metadata(1, &metadata(1, 1, &[1, 2], 5));
        for _ in 0..10 {
            append_one(&partition, 1);
        }
        partition.follower_fetched(2, 10);
        partition.follower_fetched(3, 10);
        assert_eq!(partition.high_watermark(), 10);
        partition
    }

    /// The lost write of the fault run, step by step: node 1 asks to add node 3 (caught up to the high
    /// watermark); before the controller answers, a record is appended and node 2 fetches it; the controller
    /// then adds node 3 and, in the same batch, makes it leader again (preferred). The record must not count
    /// as acknowledged before node 3 has it: node 3, elected, would not have it, and nodes 1 and 2 would
    /// truncate it away.
    #[test]
    fn a_proposed_isr_member_holds_back_the_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let partition = leader_after_restart(dir.path());
        let change = partition
            .propose_isr_change(1, LAG_MAX)
            .expect("node 3 caught up: it joins");
        assert_eq!(change.isr, vec![3, 1, 2]);
        assert!(
            partition.propose_isr_change(1, LAG_MAX).is_none(),
            "one change at a time"
        );

        append_one(&partition, 1);
        partition.follower_fetched(2, 11);
        assert_eq!(
            partition.high_watermark(),
            10,
            "offset 10 is not acknowledged while node 3, proposed for the ISR, lacks it"
        );
        partition.follower_fetched(3, 11);
        assert_eq!(partition.high_watermark(), 11, "node 3 has it now");

        // The controller's answer: ISR [3, 1, 2] and node 3 leading at epoch 2. Everything node 1 ever
        // acknowledged is on node 3.
        partition.apply_metadata(1, &metadata(3, 2, &[3, 1, 2], 6));
        assert_eq!(partition.leader_epoch(), None);
    }

    #[test]
    fn a_refused_isr_change_stops_holding_back_the_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let partition = leader_after_restart(dir.path());
        let change = partition.propose_isr_change(1, LAG_MAX).unwrap();
        append_one(&partition, 1);
        partition.follower_fetched(2, 11);
        assert_eq!(partition.high_watermark(), 10);

        // An answer for another partition epoch ends nothing; a refusal at this one does.
        partition.end_isr_change(change.partition_epoch + 1);
        assert_eq!(partition.high_watermark(), 10);
        partition.end_isr_change(change.partition_epoch);
        assert_eq!(partition.high_watermark(), 11, "back to the committed ISR [1, 2]");
        assert!(
            partition.propose_isr_change(1, LAG_MAX).is_none(),
            "node 3 is behind the high watermark now"
        );
        partition.follower_fetched(3, 11);
        assert!(
            partition.propose_isr_change(1, LAG_MAX).is_some(),
            "caught up, it is asked for again"
        );
    }

    #[test]
    fn a_follower_keeping_pace_with_appends_is_caught_up() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut progress = FollowerProgress::new(start);
        // Every fetch asks for what the leader had at the previous one, while appends go on.
        progress.fetched(0, 5, at(100));
        for (i, ms) in (1..50u64).zip((200..).step_by(100)) {
            progress.fetched(5 * i, 5 * (i + 1), at(ms));
        }
        assert_eq!(progress.caught_up_at, at(4900), "caught up as of its previous fetch");
        // One that falls behind stays where it was last caught up.
        progress.fetched(100, 400, at(6000));
        progress.fetched(150, 500, at(7000));
        assert_eq!(progress.caught_up_at, at(4900));
    }

    #[test]
    fn a_leader_whose_lease_lapsed_does_not_lead() {
        let dir = tempfile::tempdir().unwrap();
        let manager = manager(dir.path(), Duration::from_millis(50));
        let partition = manager
            .ensure(&TopicPartition::new("orders", 0), LogConfig::default())
            .unwrap();
        partition.apply_metadata(1, &metadata(1, 1, &[1, 2], 5));
        assert_eq!(partition.leader_epoch(), None, "never renewed");
        manager.lease().renewed(Instant::now());
        assert_eq!(partition.leader_epoch(), Some(1));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while partition.leader_epoch().is_some() {
            assert!(std::time::Instant::now() < deadline, "the lease never lapsed");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
