//! The group coordinator: consumer groups with Kafka's classic rebalance protocol, and their committed
//! offsets.
//!
//! A group moves through Kafka's states: `Empty` → `PreparingRebalance` (members (re)join) →
//! `CompletingRebalance` (the leader computes the assignment, members wait in SyncGroup) → `Stable`.
//! Assignors run in the clients (range, roundrobin, cooperative-sticky): the coordinator only collects the
//! members' protocols, picks one all of them support, and hands the leader's assignment out.
//!
//! A rebalance starts when a member joins, leaves, or misses its session timeout. It completes when every
//! member has rejoined, or at the longest rebalance timeout (members that did not rejoin are removed). A
//! group starting from empty waits `group.initial.rebalance.delay.ms` first, so that consumers started
//! together land in one generation, as in Kafka.
//!
//! Requests that must wait (JoinGroup until the rebalance completes, SyncGroup until the leader's
//! assignment) hold a oneshot receiver outside the lock; the group state lives behind one std mutex that is
//! never held across an await. Committed offsets are in [`offsets`].
//!
//! On one node this broker coordinates every group. Static membership (`group.instance.id`, KIP-345): a
//! static member that comes back (a restart, or a second process started with the same instance id, as in
//! a rolling deploy whose pods overlap) gets a new member id and takes the old one's place and assignment;
//! the old member id is fenced, so whatever still uses it is answered `FENCED_INSTANCE_ID` and stops
//! (librdkafka raises it as a fatal error) instead of consuming the same partitions. A static follower that
//! comes back to a stable group with the same protocols does so without a rebalance; until its session
//! times out, its partitions wait for it.
//!
//! Commits: a member of the current generation may commit while the group prepares a rebalance (as
//! cooperative consumers do before they rejoin), not while it completes one, whose new generation it has
//! not been told yet: Kafka's rule.
//!
//! What a client can make the coordinator keep is bounded, as in Kafka: a group holds at most
//! `group.max.size` members, counting the members handed an id that have not joined yet (which are
//! forgotten after their session timeout); a group that is `Empty` and has no committed offsets is removed
//! (Kafka's `Dead`) by the periodic check in [`expiry`], which also expires committed offsets.
//!
//! Groups of the KIP-848 consumer protocol (ConsumerGroupHeartbeat) are in [`consumer`], behind a second
//! mutex. A group id is one or the other, and moves between them as in Kafka 4's online migration
//! (`group.consumer.migration.policy=bidirectional`): an empty group of either kind is taken over by the
//! other; a ConsumerGroupHeartbeat joining a classic group of consumers converts it, members and
//! assignments included; JoinGroup, SyncGroup, Heartbeat and LeaveGroup for a consumer group with members
//! are its classic members' (see [`consumer`]); and when the last consumer-protocol member leaves, the
//! classic members left are a classic group again, which rebalances. Whoever needs both locks takes the
//! classic one first, so that the two never wait for each other.
//!
//! Consumer-protocol groups are durable: each change is appended as records to the group's partition of
//! `__consumer_offsets` through a [`GroupLog`], under the consumer-group mutex so that the log has the
//! changes in the order they were made (the wait for the replicas happens after it is released), and a
//! broker that becomes leader of a partition reads its groups back ([`ConsumerLoad`]). Classic groups are
//! not: after a coordinator moves, they rebalance.
//!
//! What `/metrics` shows of the groups this broker coordinates (states, members, rebalances, committed
//! offsets and lag) is rendered by [`metrics`], which also keeps the high watermarks of partitions other
//! brokers lead fresh for the lag.

pub mod consumer;
pub mod expiry;
pub mod metrics;
pub mod offsets;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

/// Bounds on what members may ask for (Kafka's `group.min/max.session.timeout.ms` defaults).
pub const SESSION_TIMEOUT_MS_MIN: i32 = 6_000;
pub const SESSION_TIMEOUT_MS_MAX: i32 = 1_800_000;
/// How often sessions are checked for expiry.
const SESSION_CHECK: Duration = Duration::from_millis(250);
/// The protocol type of Kafka's consumers, whose subscriptions the coordinator can read.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The coordinator's settings.
#[derive(Debug, Clone, Copy)]
pub struct GroupSettings {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// `group.max.size`.
    pub max_size: usize,
    /// `group.consumer.session.timeout.ms`: a consumer-protocol group's session timeout, unless the group's
    /// `consumer.session.timeout.ms` config says otherwise.
    pub consumer_session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms`, likewise.
    pub consumer_heartbeat_interval: Duration,
    /// `group.consumer.max.size`: members one consumer-protocol group may have.
    pub consumer_max_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// What a member is told when its join completes.
#[derive(Debug, Clone)]
pub struct Joined {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// The members and their metadata for the chosen protocol: only the leader gets them.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// What a member is told when its sync completes: its assignment.
#[derive(Debug, Clone)]
pub struct Synced {
    pub protocol_type: String,
    pub protocol: String,
    pub assignment: Bytes,
}

/// A member of a group, as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group, as DescribeGroups and ListGroups show it.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub state: State,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberView>,
}

/// A JoinGroup request, reduced to what the coordinator needs.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets its id back with MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

#[derive(Debug)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join: Option<oneshot::Sender<Result<Joined, ResponseError>>>,
    sync: Option<oneshot::Sender<Result<Synced, ResponseError>>>,
}

#[derive(Debug)]
struct Group {
    state: State,
    generation: i32,
    protocol_type: String,
    protocol: String,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED and not yet joined, with the end of the session
    /// timeout their member asked for: as in Kafka, an id not used by then is forgotten.
    pending: HashMap<String, Instant>,
    /// When the group entered its state (Kafka's `currentStateTimestamp`): for an `Empty` group, when its
    /// last member left, which its offsets' retention counts from.
    state_since: Instant,
    /// The rebalance running or last run, numbered across all groups, so that a timer for an earlier one
    /// does nothing (not even to a new group of the same id, after this one was removed).
    rebalance: u64,
    /// The rebalance started from empty and waits out the initial delay, even if everyone has joined.
    delaying: bool,
}

impl Group {
    fn new() -> Self {
        Self {
            state: State::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: String::new(),
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            state_since: Instant::now(),
            rebalance: 0,
            delaying: false,
        }
    }

    fn set_state(&mut self, state: State) {
        if self.state != state {
            self.state = state;
            self.state_since = Instant::now();
        }
    }

    /// No members, and none about to join.
    fn is_bare(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// How its committed offsets expire (Kafka's `GroupMetadata.removeExpiredOffsets`).
    fn expiry(&self) -> offsets::Expiry {
        use offsets::Expiry;
        match self.state {
            // A group no member ever joined (only ids handed out, or commits without membership): Kafka's
            // group without a protocol type, a "simple consumer".
            State::Empty if self.protocol_type.is_empty() => Expiry::ByCommit,
            State::Empty => Expiry::EmptySince(self.state_since),
            State::Stable if self.protocol_type == CONSUMER_PROTOCOL_TYPE => {
                let mut topics = Vec::new();
                for member in self.members.values() {
                    let metadata = member.protocols.iter().find(|(name, _)| *name == self.protocol);
                    match metadata.and_then(|(_, metadata)| subscription_topics_exact(metadata.clone())) {
                        Some(subscribed) => topics.extend(subscribed),
                        // Kafka expires nothing of a group whose subscriptions it cannot read.
                        None => return Expiry::Keep,
                    }
                }
                topics.sort();
                topics.dedup();
                Expiry::Unsubscribed(topics)
            }
            State::Stable | State::PreparingRebalance | State::CompletingRebalance => Expiry::Keep,
        }
    }

    fn member_for_instance(&self, instance_id: &str) -> Option<String> {
        self.members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance_id))
            .map(|(id, _)| id.clone())
    }
}

/// Kafka's `acceptJoiningMember`: whether `member_id` may join `group` under `group.max.size`. Members that
/// have an id but have not joined yet count as well (Kafka leaves them out, so that clients could pile them
/// up until their session timeouts), except the one joining.
fn accepts_member(group: &Group, member_id: &str, max_size: usize) -> bool {
    let pending = group.pending.len() - usize::from(group.pending.contains_key(member_id));
    match group.state {
        // No members: only ids handed out count.
        State::Empty => pending < max_size,
        // A member that has rejoined this rebalance stays. Others count against those that have: members
        // that do not rejoin are out when it completes, so the group may be over the size until then.
        State::PreparingRebalance => {
            let awaiting = group.members.values().filter(|m| m.join.is_some()).count();
            group.members.get(member_id).is_some_and(|m| m.join.is_some()) || awaiting + pending < max_size
        }
        // A member stays; a new one only while there is room.
        State::CompletingRebalance | State::Stable => {
            group.members.contains_key(member_id) || group.members.len() + pending < max_size
        }
    }
}

/// A classic member's JoinGroup of a consumer-protocol group: its answer and the write to wait for before
/// giving it, or the error and the member id to answer with.
type ConsumerJoin = Result<(Joined, Option<offsets::Written>), (ResponseError, String)>;

/// What [`Coordinator::join`] does once it has handled the request under the lock.
enum JoinStep {
    /// Answered at once.
    Done(Joined),
    /// Answered when the rebalance completes.
    Wait(oneshot::Receiver<Result<Joined, ResponseError>>),
}

/// Where the records of consumer-protocol groups go: their partition of `__consumer_offsets`
/// ([`offsets::GroupStateLog`]), or nowhere in the coordinator's unit tests.
pub trait GroupLog: Send + Sync {
    /// Appends `records` of `group` in one batch; what to wait on before answering, if anything.
    fn append(
        &self,
        group: &str,
        records: &[consumer::records::GroupRecord],
    ) -> Result<Option<offsets::Written>, ResponseError>;
}

/// Reads consumer-protocol groups back from a partition of `__consumer_offsets` into the coordinator.
pub struct ConsumerLoad {
    coordinator: Arc<Coordinator>,
    index: i32,
    loader: consumer::records::Loader,
}

impl ConsumerLoad {
    pub fn new(coordinator: Arc<Coordinator>, index: i32) -> Self {
        Self {
            coordinator,
            index,
            loader: Default::default(),
        }
    }
}

impl offsets::Replay for ConsumerLoad {
    fn replay(&mut self, key: Bytes, value: Option<Bytes>) {
        if consumer::records::is_group_record(&key) && !self.loader.replay(key, value) {
            tracing::warn!(
                partition = self.index,
                "an unreadable consumer group record was skipped"
            );
        }
    }

    fn loaded(&mut self) {
        let loader = std::mem::take(&mut self.loader);
        let groups = loader.finish(Instant::now(), self.coordinator.settings.consumer_session_timeout);
        self.coordinator.install_consumer(self.index, groups);
    }
}

/// Coordinates every group; see the module documentation.
#[derive(Debug)]
pub struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    /// Consumer-protocol groups; locked after `groups` when both are needed.
    consumer: Mutex<HashMap<String, consumer::Group>>,
    settings: GroupSettings,
    /// The last rebalance number handed out (see [`Group::rebalance`]).
    rebalances: AtomicU64,
    /// Completed rebalances and what lag is computed from, for `/metrics` ([`metrics`]).
    metrics: metrics::GroupMetrics,
}

impl Coordinator {
    pub fn new(settings: GroupSettings) -> Arc<Self> {
        Arc::new(Self {
            groups: Mutex::new(HashMap::new()),
            consumer: Mutex::new(HashMap::new()),
            settings,
            rebalances: AtomicU64::new(0),
            metrics: Default::default(),
        })
    }

    pub fn metrics(&self) -> &metrics::GroupMetrics {
        &self.metrics
    }

    /// Counts a consumer group's rebalance if its epoch moved from `before` to `after`.
    fn count_epoch(&self, group_id: &str, before: Option<i32>, after: Option<i32>) {
        if let Some(after) = after
            && after > before.unwrap_or(0)
        {
            self.metrics.rebalanced(group_id);
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The consumer-protocol groups. Taken after [`Coordinator::lock`] when both are held.
    fn lock_consumer(&self) -> MutexGuard<'_, HashMap<String, consumer::Group>> {
        self.consumer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn settings(&self) -> GroupSettings {
        self.settings
    }

    /// ConsumerGroupHeartbeat for `group_id` (see [`consumer`]). The records of what it changed are
    /// appended to the group's partition of `__consumer_offsets` under the lock, so that the log has the
    /// changes in the order they were made; the caller waits for the returned write before answering. If
    /// the append fails, the group is as it was before the heartbeat. A join converts a classic group of
    /// consumers ([`upgradable`]); a leave that leaves only classic members converts the group back
    /// ([`Self::downgraded`]).
    pub fn consumer_heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        request: consumer::Heartbeat,
        topics: &dyn consumer::Topics,
        log: &dyn GroupLog,
    ) -> Result<(consumer::Answer, Option<offsets::Written>), consumer::Refusal> {
        if group_id.is_empty() {
            return Err((ResponseError::InvalidRequest, "GroupId can't be empty.".into()));
        }
        let now = Instant::now();
        let joining = request.member_epoch == consumer::JOIN_EPOCH;
        // Held to the end: a leave may turn the group back into a classic one.
        let mut classic = self.lock();
        let mut upgraded = None;
        if let Some(group) = classic.get(group_id) {
            if group.is_bare() {
                // An empty classic group (its offsets stay, they are kept apart) becomes a consumer group.
                classic.remove(group_id);
            } else {
                let members = joining
                    .then(|| upgradable(group, topics, self.settings.consumer_max_size))
                    .flatten()
                    .ok_or_else(|| {
                        (
                            ResponseError::GroupIdNotFound,
                            format!("Group {group_id} is not a consumer group."),
                        )
                    })?;
                let mut group = classic.remove(group_id).expect("present");
                upgraded = Some(consumer::Group::from_classic(members, group.generation, topics, now));
                // Kafka's online upgrade: requests of the classic rebalance in flight are told to rejoin,
                // which the consumer group now answers.
                for member in group.members.values_mut() {
                    if let Some(join) = member.join.take() {
                        let _ = join.send(Err(ResponseError::RebalanceInProgress));
                    }
                    if let Some(sync) = member.sync.take() {
                        let _ = sync.send(Err(ResponseError::RebalanceInProgress));
                    }
                }
                tracing::info!(
                    group = group_id,
                    members = group.members.len(),
                    generation = group.generation,
                    "classic group converted to a consumer group for a consumer-protocol member"
                );
            }
        }
        let mut groups = self.lock_consumer();
        // What the records are computed from: a copy costs what an assignment does (members and
        // partitions), which a heartbeat may run anyway. An upgraded group has no records yet: all of them
        // are written.
        let before = groups.get(group_id).cloned();
        if let Some(group) = upgraded {
            groups.insert(group_id.to_owned(), group);
        }
        if before.is_none() && !groups.contains_key(group_id) {
            if !joining {
                // Kafka's answer to a member of a group it does not know: the member rejoins.
                return Err((
                    ResponseError::UnknownMemberId,
                    format!("member {} is not a member of group {group_id}", request.member_id),
                ));
            }
            groups.insert(group_id.to_owned(), consumer::Group::new(now));
        }
        let group = groups.get_mut(group_id).expect("present or inserted");
        let replacing = request.instance_id.as_deref().is_some_and(|i| group.holds_instance(i));
        if joining
            && !group.has_member(&request.member_id)
            && !replacing
            && group.member_count() >= self.settings.consumer_max_size
        {
            if before.is_none() {
                groups.remove(group_id);
            }
            return Err((
                ResponseError::GroupMaxSizeReached,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    self.settings.consumer_max_size
                ),
            ));
        }
        let leaving = (request.member_epoch < 0).then(|| (request.member_id.clone(), request.member_epoch));
        let answer = group.heartbeat(request, topics, now);
        match (&leaving, &answer) {
            (Some((member, consumer::LEAVE_STATIC_EPOCH)), Ok(_)) => {
                tracing::info!(group = group_id, member = %member, epoch = group.epoch(), "static member left for now; its partitions wait for its session timeout");
            }
            (Some((member, _)), Ok(_)) => {
                tracing::info!(group = group_id, member = %member, epoch = group.epoch(), "consumer group member left");
            }
            _ => {}
        }
        if answer.is_err() && before.is_none() {
            // A refused join does not leave a group behind (an upgraded group's members rejoin as classic
            // members of a new group).
            groups.remove(group_id);
        }
        // The last consumer-protocol member left and classic ones remain: a classic group again.
        if let (Some(_), Ok(_)) = (&leaving, &answer)
            && let Some(members) = groups.get(group_id).and_then(consumer::Group::classic_members)
        {
            let group = groups.remove(group_id).expect("present");
            let records = consumer::records::diff(group_id, before.as_ref(), None);
            if let Err(error) = log.append(group_id, &records) {
                groups.insert(group_id.to_owned(), before.expect("a member left it"));
                return Err((error, format!("writing group {group_id} to __consumer_offsets failed")));
            }
            drop(groups);
            let downgraded = self.downgraded(group_id, members, group.epoch(), topics);
            tracing::info!(
                group = group_id,
                members = downgraded.members.len(),
                "consumer group converted back to a classic group: only classic members are left"
            );
            let entry = classic.entry(group_id.to_owned()).insert_entry(downgraded);
            self.members_changed(group_id, entry.into_mut());
            // The leave's answer does not depend on the tombstones: they are not waited for.
            return answer.map(|answer| (answer, None));
        }
        let records = consumer::records::diff(group_id, before.as_ref(), groups.get(group_id));
        if records.is_empty() {
            return answer.map(|answer| (answer, None));
        }
        match log.append(group_id, &records) {
            Ok(written) => {
                let after = groups.get(group_id).map(consumer::Group::epoch);
                self.count_epoch(group_id, before.as_ref().map(consumer::Group::epoch), after);
                answer.map(|answer| (answer, written))
            }
            Err(error) => {
                match before {
                    Some(before) => groups.insert(group_id.to_owned(), before),
                    None => groups.remove(group_id),
                };
                Err((error, format!("writing group {group_id} to __consumer_offsets failed")))
            }
        }
    }

    /// Kafka's `ClassicGroup.fromConsumerGroup`: the classic members of a consumer group as a classic group
    /// at the group epoch, each with its assignment as ConsumerProtocol bytes, ready for a rebalance that
    /// every member must rejoin ([`Self::members_changed`] starts it).
    fn downgraded(
        &self,
        group_id: &str,
        members: Vec<consumer::ClassicMember>,
        epoch: i32,
        topics: &dyn consumer::Topics,
    ) -> Group {
        let mut group = Group::new();
        group.generation = epoch;
        group.protocol_type = CONSUMER_PROTOCOL_TYPE.to_owned();
        // Stable, so that `members_changed` starts a rebalance rather than wait for the initial delay.
        group.state = State::Stable;
        let now = Instant::now();
        for m in members {
            let assignment = consumer::protocol::encode_assignment(&m.assigned, topics);
            group.members.insert(
                m.member_id,
                Member {
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: m.session_timeout,
                    rebalance_timeout: m.rebalance_timeout,
                    protocols: m.protocols,
                    assignment,
                    last_seen: now,
                    join: None,
                    sync: None,
                },
            );
        }
        group.protocol = group
            .members
            .values()
            .next()
            .and_then(|m| m.protocols.first())
            .map(|(name, _)| name.clone())
            .unwrap_or_default();
        tracing::debug!(
            group = group_id,
            generation = epoch,
            "classic group rebuilt from a consumer group"
        );
        group
    }

    /// Replaces the consumer-protocol groups of partition `index` of `__consumer_offsets` with `loaded`,
    /// read back from it: this broker now coordinates them.
    pub fn install_consumer(&self, index: i32, loaded: Vec<(String, consumer::Group)>) {
        let mut groups = self.lock_consumer();
        groups.retain(|id, _| offsets::partition_for(id) != index);
        let (count, members): (usize, usize) = (loaded.len(), loaded.iter().map(|(_, g)| g.member_count()).sum());
        groups.extend(loaded);
        if count > 0 {
            tracing::info!(partition = index, groups = count, members, "loaded consumer groups");
        }
    }

    /// Forgets the consumer-protocol groups of partition `index`: another broker coordinates them now.
    pub fn unload_consumer(&self, index: i32) {
        self.lock_consumer().retain(|id, _| offsets::partition_for(id) != index);
    }

    /// A view of consumer group `group_id`, if it is one.
    pub fn describe_consumer(&self, group_id: &str) -> Option<consumer::GroupView> {
        self.lock_consumer().get(group_id).map(consumer::Group::view)
    }

    /// Whether `group_id` is a classic group this coordinator knows.
    pub fn is_classic(&self, group_id: &str) -> bool {
        self.lock().contains_key(group_id)
    }

    /// Every consumer-protocol group with its state.
    pub fn list_consumer(&self) -> Vec<(String, &'static str)> {
        self.lock_consumer()
            .iter()
            .map(|(id, g)| (id.clone(), g.state()))
            .collect()
    }

    /// OffsetCommit (`fetch` false) or OffsetFetch (`fetch` true) checks for a consumer-protocol group: `None`
    /// if `group_id` is not one (the classic checks apply). A member must be at its current epoch
    /// (`STALE_MEMBER_EPOCH` otherwise) and commit with OffsetCommit v9+, as Kafka requires of members of
    /// the consumer protocol.
    pub fn check_consumer_member(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
        version: i16,
        fetch: bool,
    ) -> Option<Result<(), ResponseError>> {
        let groups = self.lock_consumer();
        let group = groups.get(group_id)?;
        Some(if fetch {
            group.check_member_epoch(member_id, member_epoch, true)
        } else {
            group.check_commit(member_id, member_epoch, version)
        })
    }

    /// Expires members that stopped heartbeating, until `shutdown`.
    pub async fn run_sessions(self: Arc<Self>, log: Arc<dyn GroupLog>, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(SESSION_CHECK) => {}
                () = shutdown.cancelled() => return,
            }
            let now = Instant::now();
            let mut groups = self.lock();
            let ids: Vec<String> = groups.keys().cloned().collect();
            for id in ids {
                let group = groups.get_mut(&id).expect("listed above");
                let expired: Vec<String> = group
                    .members
                    .iter()
                    .filter(|(_, m)| m.join.is_none() && now.duration_since(m.last_seen) > m.session_timeout)
                    .map(|(member, _)| member.clone())
                    .collect();
                if !expired.is_empty() {
                    tracing::info!(group = %id, members = ?expired, "members missed their session timeout");
                    for member in &expired {
                        group.members.remove(member);
                    }
                    self.members_changed(&id, group);
                }
                group.pending.retain(|_, deadline| now < *deadline);
            }
            drop(groups);
            for (id, group) in self.lock_consumer().iter_mut() {
                if !group.has_expired(now) {
                    continue;
                }
                let before = group.clone();
                let expired = group.expire(now);
                let epochs = (before.epoch(), group.epoch());
                let records = consumer::records::diff(id, Some(&before), Some(group));
                if let Err(error) = log.append(id, &records) {
                    // Not this broker's group any more (it is unloaded when the leadership moves), or the log
                    // refused: the members stay until the next check.
                    tracing::debug!(group = %id, ?error, "not expiring consumer group members");
                    *group = before;
                    continue;
                }
                self.count_epoch(id, Some(epochs.0), Some(epochs.1));
                tracing::info!(group = %id, members = ?expired, "consumer group members missed their session or rebalance timeout");
            }
        }
    }

    /// JoinGroup. Waits until the rebalance completes. An empty consumer-protocol group with the same id
    /// becomes a classic one: its records in `__consumer_offsets` get tombstones (appended to `log`, not
    /// waited for: the join's answer does not depend on them).
    pub async fn join(
        self: &Arc<Self>,
        request: JoinRequest,
        topics: &(dyn consumer::Topics + Sync),
        log: &dyn GroupLog,
    ) -> Result<Joined, (ResponseError, String)> {
        if !(SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX).contains(&request.session_timeout_ms) {
            return Err((ResponseError::InvalidSessionTimeout, request.member_id));
        }
        if request.group_id.is_empty() {
            return Err((ResponseError::InvalidGroupId, request.member_id));
        }
        if let Some(result) = self.join_consumer(&request, topics, log) {
            // Answered once the group's records are on every in-sync replica, as a ConsumerGroupHeartbeat.
            return match result {
                Ok((joined, Some(written))) => written
                    .wait()
                    .await
                    .map(|()| joined)
                    .map_err(|e| (e, request.member_id)),
                Ok((joined, None)) => Ok(joined),
                Err(refusal) => Err(refusal),
            };
        }
        let waiter = {
            let mut groups = self.lock();
            {
                let mut consumer = self.lock_consumer();
                match consumer.get(&request.group_id) {
                    Some(group) if !group.is_empty() => {
                        return Err((ResponseError::InconsistentGroupProtocol, request.member_id));
                    }
                    // An empty consumer group becomes a classic one.
                    Some(group) => {
                        let id = &request.group_id;
                        if let Err(error) = log.append(id, &consumer::records::diff(id, Some(group), None)) {
                            tracing::warn!(group = %id, ?error, "writing a replaced consumer group's tombstones failed");
                        }
                        consumer.remove(id);
                    }
                    None => {}
                }
            }
            let created = !groups.contains_key(&request.group_id);
            let group = groups.entry(request.group_id.clone()).or_insert_with(Group::new);
            let step = self.join_locked(group, &request);
            // A refused join does not leave a group behind.
            if step.is_err() && created && group.is_bare() {
                groups.remove(&request.group_id);
            }
            match step? {
                JoinStep::Done(joined) => return Ok(joined),
                JoinStep::Wait(waiter) => waiter,
            }
        };
        waiter
            .await
            .unwrap_or(Err(ResponseError::CoordinatorNotAvailable))
            .map_err(|e| (e, request.member_id))
    }

    /// JoinGroup of a classic member for a consumer-protocol group with members (KIP-848's online
    /// migration; see [`consumer`]), answered at once with the member's epoch as the generation and no
    /// leader (the coordinator assigns). `None` if `group_id` is no such group. The records of what it
    /// changed are appended under the lock, as a ConsumerGroupHeartbeat's.
    fn join_consumer(
        &self,
        request: &JoinRequest,
        topics: &dyn consumer::Topics,
        log: &dyn GroupLog,
    ) -> Option<ConsumerJoin> {
        let _classic = self.lock();
        let mut groups = self.lock_consumer();
        let group = groups.get_mut(&request.group_id).filter(|g| !g.is_empty())?;
        let refuse = |error: ResponseError| Some(Err((error, request.member_id.clone())));
        if request.protocol_type != CONSUMER_PROTOCOL_TYPE || request.protocols.is_empty() {
            return refuse(ResponseError::InconsistentGroupProtocol);
        }
        // Kafka reads the subscription of the member's first protocol: the topics are the same in all.
        let Some(subscription) = consumer::protocol::subscription(&request.protocols[0].1) else {
            return refuse(ResponseError::InconsistentGroupProtocol);
        };
        let member_id = if request.member_id.is_empty() {
            new_member_id(request)
        } else {
            request.member_id.clone()
        };
        if !group.has_member(&member_id) && group.member_count() >= self.settings.consumer_max_size {
            return Some(Err((ResponseError::GroupMaxSizeReached, String::new())));
        }
        let join = consumer::ClassicJoin {
            member_id: member_id.clone(),
            instance_id: request.instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout: Duration::from_millis(request.session_timeout_ms as u64),
            rebalance_timeout: Duration::from_millis(request.rebalance_timeout_ms.max(0) as u64),
            protocols: request.protocols.clone(),
            subscribed: subscription.topics,
            owned: consumer::protocol::resolve(&subscription.owned, topics),
        };
        let before = group.clone();
        let epoch = match group.classic_join(join, topics, Instant::now()) {
            Ok(epoch) => epoch,
            Err((error, message)) => {
                tracing::debug!(group = %request.group_id, member = %member_id, ?error, message, "classic join refused");
                return Some(Err((error, member_id)));
            }
        };
        let records = consumer::records::diff(&request.group_id, Some(&before), Some(group));
        let written = if records.is_empty() {
            None
        } else {
            match log.append(&request.group_id, &records) {
                Ok(written) => written,
                Err(error) => {
                    groups.insert(request.group_id.clone(), before);
                    return Some(Err((error, member_id)));
                }
            }
        };
        let joined = Joined {
            generation: epoch,
            protocol_type: CONSUMER_PROTOCOL_TYPE.to_owned(),
            protocol: request.protocols[0].0.clone(),
            leader: String::new(),
            member_id,
            members: Vec::new(),
        };
        Some(Ok((joined, written)))
    }

    /// JoinGroup under the lock: refused, answered at once, or waiting for the rebalance.
    fn join_locked(
        self: &Arc<Self>,
        group: &mut Group,
        request: &JoinRequest,
    ) -> Result<JoinStep, (ResponseError, String)> {
        // A static member is known by its instance id, whatever member id it sends.
        let known = request
            .instance_id
            .as_deref()
            .and_then(|instance| group.member_for_instance(instance))
            .unwrap_or_else(|| request.member_id.clone());
        if !accepts_member(group, &known, self.settings.max_size) {
            // As Kafka: a member refused (one that had not rejoined a running rebalance, which would drop it
            // when it completes) is out of the group, and the answer carries no member id.
            group.pending.remove(&known);
            if group.members.remove(&known).is_some() {
                self.members_changed(&request.group_id, group);
            }
            // Debug: a client retrying a refused join would flood the log at info.
            let max_size = self.settings.max_size;
            tracing::debug!(group = %request.group_id, member = %known, max_size, "group.max.size reached: join refused");
            return Err((ResponseError::GroupMaxSizeReached, String::new()));
        }
        if request.protocol_type.is_empty()
            || request.protocols.is_empty()
            || (!group.members.is_empty() && request.protocol_type != group.protocol_type)
            || (!group.members.is_empty() && !group.members.values().all(|m| shares_protocol(m, &request.protocols)))
        {
            return Err((ResponseError::InconsistentGroupProtocol, request.member_id.clone()));
        }
        let member_id = match (&request.instance_id, request.member_id.is_empty()) {
            // A static member coming back (restarted, or a second process with the same instance id) takes
            // the place of the member with its instance id under a new member id; the old id is fenced.
            (Some(instance), true) => match group.member_for_instance(instance) {
                Some(old) => {
                    let id = new_member_id(request);
                    tracing::info!(group = %request.group_id, instance = %instance, old = %old, new = %id,
                        "static member rejoined: the old member id is fenced");
                    replace_static_member(group, &old, id.clone());
                    // Back into a stable group, as a follower, with the same protocols: its place back
                    // without a rebalance, as in Kafka (KIP-345). The others keep their partitions, and it
                    // gets its old assignment in SyncGroup.
                    if group.state == State::Stable
                        && group.leader.as_ref() != Some(&id)
                        && group.members[&id].protocols == request.protocols
                    {
                        let member = group.members.get_mut(&id).expect("just placed");
                        member.last_seen = Instant::now();
                        member.client_id = request.client_id.clone();
                        member.client_host = request.client_host.clone();
                        return Ok(JoinStep::Done(Joined {
                            generation: group.generation,
                            protocol_type: group.protocol_type.clone(),
                            protocol: group.protocol.clone(),
                            leader: group.leader.clone().unwrap_or_default(),
                            member_id: id,
                            members: Vec::new(),
                        }));
                    }
                    id
                }
                None => new_member_id(request),
            },
            // A member id that is no longer the one of its instance: an older process, fenced.
            (Some(instance), false) => {
                check_instance(group, &request.member_id, Some(instance))
                    .map_err(|e| (e, request.member_id.clone()))?;
                if !group.members.contains_key(&request.member_id) {
                    return Err((ResponseError::UnknownMemberId, request.member_id.clone()));
                }
                request.member_id.clone()
            }
            (None, true) if request.require_known_member_id => {
                let id = new_member_id(request);
                let session_timeout = Duration::from_millis(request.session_timeout_ms as u64);
                group.pending.insert(id.clone(), Instant::now() + session_timeout);
                return Err((ResponseError::MemberIdRequired, id));
            }
            (None, true) => new_member_id(request),
            (None, false) if group.members.contains_key(&request.member_id) => request.member_id.clone(),
            (None, false) if group.pending.remove(&request.member_id).is_some() => request.member_id.clone(),
            (None, false) => return Err((ResponseError::UnknownMemberId, request.member_id.clone())),
        };
        let (tx, rx) = oneshot::channel();
        let member = group.members.entry(member_id).or_insert_with(|| Member {
            instance_id: request.instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout: Duration::ZERO,
            rebalance_timeout: Duration::ZERO,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_seen: Instant::now(),
            join: None,
            sync: None,
        });
        member.session_timeout = Duration::from_millis(request.session_timeout_ms as u64);
        member.rebalance_timeout = Duration::from_millis(request.rebalance_timeout_ms.max(0) as u64);
        member.protocols = request.protocols.clone();
        member.last_seen = Instant::now();
        if let Some(old) = member.join.replace(tx) {
            // The same member joined twice: the older request is superseded.
            let _ = old.send(Err(ResponseError::UnknownMemberId));
        }
        group.protocol_type = request.protocol_type.clone();
        self.members_changed(&request.group_id, group);
        Ok(JoinStep::Wait(rx))
    }

    /// Starts a rebalance if none is running, and completes it if every member has joined already.
    fn members_changed(self: &Arc<Self>, group_id: &str, group: &mut Group) {
        if group.members.is_empty() {
            group.set_state(State::Empty);
            group.leader = None;
            group.protocol.clear();
            group.generation += 1;
            return;
        }
        if group.state != State::PreparingRebalance {
            let from_empty = group.state == State::Empty;
            group.set_state(State::PreparingRebalance);
            group.rebalance = self.rebalances.fetch_add(1, Ordering::Relaxed) + 1;
            for member in group.members.values_mut() {
                if let Some(sync) = member.sync.take() {
                    let _ = sync.send(Err(ResponseError::RebalanceInProgress));
                }
            }
            let delay = if from_empty {
                self.settings.initial_rebalance_delay
            } else {
                group
                    .members
                    .values()
                    .map(|m| m.rebalance_timeout)
                    .max()
                    .unwrap_or_default()
            };
            let (coordinator, id, rebalance) = (self.clone(), group_id.to_owned(), group.rebalance);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                coordinator.complete_join(&id, rebalance, true);
            });
            group.delaying = from_empty && !self.settings.initial_rebalance_delay.is_zero();
        }
        if !group.delaying && group.members.values().all(|m| m.join.is_some()) {
            let rebalance = group.rebalance;
            if complete_join_locked(group, rebalance, false) {
                self.metrics.rebalanced(group_id);
            }
        }
    }

    /// Completes rebalance `rebalance` of `group_id` if it is still running: at its deadline (`timed_out`),
    /// members that did not rejoin are removed.
    fn complete_join(self: &Arc<Self>, group_id: &str, rebalance: u64, timed_out: bool) {
        let mut groups = self.lock();
        if let Some(group) = groups.get_mut(group_id) {
            if complete_join_locked(group, rebalance, timed_out) {
                self.metrics.rebalanced(group_id);
            }
            if group.members.is_empty() && group.state == State::PreparingRebalance {
                group.set_state(State::Empty);
            }
        }
    }

    /// SyncGroup. The leader's call hands every member its assignment; a follower waits for it.
    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        topics: &(dyn consumer::Topics + Sync),
    ) -> Result<Synced, ResponseError> {
        if let Some(synced) = self.with_consumer(group_id, |group| {
            let (assigned, protocol) = group.classic_sync(member_id, generation, Instant::now())?;
            Ok(Synced {
                protocol_type: CONSUMER_PROTOCOL_TYPE.to_owned(),
                protocol,
                assignment: consumer::protocol::encode_assignment(&assigned, topics),
            })
        }) {
            return synced;
        }
        let waiter = {
            let mut groups = self.lock();
            let group = groups.get_mut(group_id).ok_or(ResponseError::UnknownMemberId)?;
            check_member(group, member_id, instance_id, generation)?;
            match group.state {
                State::Empty => return Err(ResponseError::UnknownMemberId),
                State::PreparingRebalance => return Err(ResponseError::RebalanceInProgress),
                State::Stable => return Ok(synced(group, member_id)),
                State::CompletingRebalance => {}
            }
            if group.leader.as_deref() == Some(member_id) {
                let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
                for (id, member) in group.members.iter_mut() {
                    member.assignment = assignments.remove(id).unwrap_or_default();
                }
                group.set_state(State::Stable);
                let (protocol_type, protocol) = (group.protocol_type.clone(), group.protocol.clone());
                for member in group.members.values_mut() {
                    if let Some(sync) = member.sync.take() {
                        let answer = Synced {
                            protocol_type: protocol_type.clone(),
                            protocol: protocol.clone(),
                            assignment: member.assignment.clone(),
                        };
                        let _ = sync.send(Ok(answer));
                    }
                }
                return Ok(synced(group, member_id));
            }
            let (tx, rx) = oneshot::channel();
            group.members.get_mut(member_id).expect("checked").sync = Some(tx);
            rx
        };
        waiter.await.unwrap_or(Err(ResponseError::CoordinatorNotAvailable))
    }

    /// Heartbeat: keeps the session alive and tells the member whether to rejoin.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if let Some(result) = self.with_consumer(group_id, |group| {
            group.classic_heartbeat(member_id, generation, Instant::now())
        }) {
            return result;
        }
        let mut groups = self.lock();
        let group = groups.get_mut(group_id).ok_or(ResponseError::UnknownMemberId)?;
        check_member(group, member_id, instance_id, generation)?;
        group.members.get_mut(member_id).expect("checked").last_seen = Instant::now();
        match group.state {
            State::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            State::Empty => Err(ResponseError::UnknownMemberId),
            State::CompletingRebalance | State::Stable => Ok(()),
        }
    }

    /// LeaveGroup for one member, named by member id or (v3+) instance id.
    pub fn leave(
        self: &Arc<Self>,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        log: &dyn GroupLog,
    ) -> Result<(), ResponseError> {
        if let Some(result) = self.with_consumer(group_id, |group| {
            let before = group.clone();
            let id = group.classic_leave(member_id, instance_id, Instant::now())?;
            // The leave's answer does not depend on the records: they are not waited for.
            if let Err(error) = log.append(group_id, &consumer::records::diff(group_id, Some(&before), Some(group))) {
                *group = before;
                return Err(error);
            }
            tracing::info!(group = group_id, member = %id, "classic member left a consumer group");
            Ok(())
        }) {
            return result;
        }
        let mut groups = self.lock();
        let group = groups.get_mut(group_id).ok_or(ResponseError::UnknownMemberId)?;
        let id = match instance_id {
            Some(instance) => {
                // A fenced (older) process of the instance does not take the current one out.
                if !member_id.is_empty() {
                    check_instance(group, member_id, Some(instance))?;
                }
                group
                    .member_for_instance(instance)
                    .ok_or(ResponseError::UnknownMemberId)?
            }
            None => member_id.to_owned(),
        };
        let member = group.members.remove(&id).ok_or(ResponseError::UnknownMemberId)?;
        if let Some(join) = member.join {
            let _ = join.send(Err(ResponseError::UnknownMemberId));
        }
        tracing::info!(group = group_id, member = %id, "member left");
        self.members_changed(group_id, group);
        Ok(())
    }

    /// Runs `serve` on consumer-protocol group `group_id` if it has members (a classic member's SyncGroup,
    /// Heartbeat or LeaveGroup); `None` if there is no such group, for the classic coordinator to answer.
    fn with_consumer<T>(&self, group_id: &str, serve: impl FnOnce(&mut consumer::Group) -> T) -> Option<T> {
        let mut groups = self.lock_consumer();
        groups.get_mut(group_id).filter(|g| !g.is_empty()).map(serve)
    }

    /// Whether a commit from this member at this generation is accepted. A commit without a member
    /// (generation -1) is accepted for a group that has no members, as Kafka accepts it from consumers
    /// that assign partitions themselves. A member of the current generation may commit while the group
    /// prepares a rebalance (its generation is still current), not while the rebalance completes (Kafka's
    /// `ClassicGroup.validateOffsetCommit`).
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let groups = self.lock();
        let Some(group) = groups.get(group_id) else {
            return if generation < 0 {
                Ok(())
            } else {
                Err(ResponseError::IllegalGeneration)
            };
        };
        if generation < 0 && member_id.is_empty() {
            return if group.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        check_member(group, member_id, instance_id, generation)?;
        if group.state == State::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Forgets a group that has no members (DeleteGroups), with tombstones for a consumer-protocol group's
    /// records (the write to wait for). Its offsets are the caller's to delete.
    pub fn delete(&self, group_id: &str, log: &dyn GroupLog) -> Result<Option<offsets::Written>, ResponseError> {
        let mut groups = self.lock();
        let mut consumer = self.lock_consumer();
        if groups.get(group_id).is_some_and(|group| !group.members.is_empty()) {
            return Err(ResponseError::NonEmptyGroup);
        }
        let mut written = None;
        match consumer.get(group_id) {
            Some(group) if !group.is_empty() => return Err(ResponseError::NonEmptyGroup),
            Some(group) => {
                written = log.append(group_id, &consumer::records::diff(group_id, Some(group), None))?;
                consumer.remove(group_id);
            }
            None => {}
        }
        groups.remove(group_id);
        Ok(written)
    }

    /// The topics the members of a consumer group subscribe to (from the consumer protocol's subscription:
    /// `i16` version, then an array of topic names). Empty for a group without members.
    pub fn subscribed_topics(&self, group_id: &str) -> Vec<String> {
        let groups = self.lock();
        if let Some(group) = self.lock_consumer().get(group_id) {
            return group.subscribed_topics().into_iter().collect();
        }
        let Some(group) = groups.get(group_id) else {
            return Vec::new();
        };
        let mut topics: Vec<String> = group
            .members
            .values()
            .flat_map(|m| {
                m.protocols
                    .iter()
                    .filter(|(name, _)| *name == group.protocol || group.protocol.is_empty())
            })
            .flat_map(|(_, metadata)| subscription_topics(metadata.clone()))
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupView> {
        let groups = self.lock();
        let group = groups.get(group_id)?;
        let members = group
            .members
            .iter()
            .map(|(id, m)| MemberView {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(name, _)| *name == group.protocol)
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect();
        Some(GroupView {
            state: group.state,
            protocol_type: group.protocol_type.clone(),
            protocol: group.protocol.clone(),
            members,
        })
    }

    /// Every group with members or a past, with its state and protocol type.
    pub fn list(&self) -> Vec<(String, State, String)> {
        self.lock()
            .iter()
            .map(|(id, g)| (id.clone(), g.state, g.protocol_type.clone()))
            .collect()
    }

    /// How the committed offsets of each group it knows expire now. A group it does not know (known only by
    /// its offsets) is [`offsets::Expiry::ByCommit`].
    pub fn expiry(&self) -> HashMap<String, offsets::Expiry> {
        let mut expiry: HashMap<String, offsets::Expiry> =
            self.lock().iter().map(|(id, g)| (id.clone(), g.expiry())).collect();
        for (id, group) in self.lock_consumer().iter() {
            // Kafka's `ConsumerGroup`: an empty group's offsets expire from when it became empty, a live
            // group's only for topics no member subscribes to.
            let rule = if group.is_empty() {
                offsets::Expiry::EmptySince(group.empty_since)
            } else {
                offsets::Expiry::Unsubscribed(group.subscribed_topics().into_iter().collect())
            };
            expiry.insert(id.clone(), rule);
        }
        expiry
    }

    /// Removes the groups that are `Empty`, with no member about to join and no committed offsets
    /// (`has_offsets`): Kafka's transition to `Dead`. Returns how many went.
    pub fn remove_dead(&self, has_offsets: impl Fn(&str) -> bool, log: &dyn GroupLog) -> usize {
        let mut groups = self.lock();
        let before = groups.len();
        groups.retain(|id, g| !(g.state == State::Empty && g.is_bare() && !has_offsets(id)));
        let mut consumer = self.lock_consumer();
        let consumer_before = consumer.len();
        consumer.retain(|id, g| {
            let keep = !g.is_empty() || has_offsets(id);
            if !keep && let Err(error) = log.append(id, &consumer::records::diff(id, Some(g), None)) {
                // Its records stay: the next coordinator reads back an empty group, removed again here.
                tracing::debug!(group = %id, ?error, "writing a dead group's tombstones failed");
            }
            keep
        });
        before - groups.len() + consumer_before - consumer.len()
    }
}

/// The members of classic group `group` as consumer-group members, if it may become a consumer group
/// (Kafka's `validateOnlineUpgrade`): all of them of the `consumer` protocol type, no more than
/// `group.consumer.max.size`, and every subscription and assignment readable.
fn upgradable(group: &Group, topics: &dyn consumer::Topics, max_size: usize) -> Option<Vec<consumer::ClassicMember>> {
    if group.protocol_type != CONSUMER_PROTOCOL_TYPE || group.members.len() >= max_size {
        return None;
    }
    group
        .members
        .iter()
        .map(|(id, m)| {
            // The chosen protocol's metadata; mid-rebalance, before one is chosen, the member's first.
            let (_, metadata) = m
                .protocols
                .iter()
                .find(|(name, _)| *name == group.protocol)
                .or_else(|| m.protocols.first())?;
            let subscription = consumer::protocol::subscription(metadata)?;
            let assigned = consumer::protocol::assignment(&m.assignment)?;
            Some(consumer::ClassicMember {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout: m.session_timeout,
                rebalance_timeout: m.rebalance_timeout,
                protocols: m.protocols.clone(),
                subscribed: subscription.topics,
                assigned: consumer::protocol::resolve(&assigned, topics),
            })
        })
        .collect()
}

/// Topic names from a ConsumerProtocolSubscription (any version: the topics come first). Malformed metadata
/// yields what could be read.
fn subscription_topics(mut metadata: Bytes) -> Vec<String> {
    use bytes::Buf;
    let mut topics = Vec::new();
    if metadata.remaining() < 6 {
        return topics;
    }
    metadata.advance(2);
    let count = metadata.get_i32();
    for _ in 0..count.max(0) {
        if metadata.remaining() < 2 {
            break;
        }
        let len = metadata.get_i16().max(0) as usize;
        if metadata.remaining() < len {
            break;
        }
        topics.push(String::from_utf8_lossy(&metadata.split_to(len)).into_owned());
    }
    topics
}

/// Topic names from a ConsumerProtocolSubscription, or `None` unless all of them can be read.
fn subscription_topics_exact(mut metadata: Bytes) -> Option<Vec<String>> {
    use bytes::Buf;
    if metadata.remaining() < 6 {
        return None;
    }
    metadata.advance(2);
    let count = usize::try_from(metadata.get_i32()).ok()?;
    // Each name takes at least two bytes: a count the bytes cannot hold is refused before allocating.
    if count > metadata.remaining() / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        if metadata.remaining() < 2 {
            return None;
        }
        let len = usize::try_from(metadata.get_i16()).ok()?;
        if metadata.remaining() < len {
            return None;
        }
        topics.push(String::from_utf8(metadata.split_to(len).to_vec()).ok()?);
    }
    Some(topics)
}

fn new_member_id(request: &JoinRequest) -> String {
    let prefix = request.instance_id.as_deref().unwrap_or(&request.client_id);
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

fn shares_protocol(member: &Member, protocols: &[(String, Bytes)]) -> bool {
    member
        .protocols
        .iter()
        .any(|(name, _)| protocols.iter().any(|(other, _)| other == name))
}

/// Kafka's `validateCurrentMember`: fenced, unknown, or of another generation.
fn check_member(
    group: &Group,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> Result<(), ResponseError> {
    check_instance(group, member_id, instance_id)?;
    if !group.members.contains_key(member_id) {
        return Err(ResponseError::UnknownMemberId);
    }
    if generation != group.generation {
        return Err(ResponseError::IllegalGeneration);
    }
    Ok(())
}

/// `FENCED_INSTANCE_ID` when `instance_id` belongs to a member of another id: a newer process of the
/// instance took its place.
fn check_instance(group: &Group, member_id: &str, instance_id: Option<&str>) -> Result<(), ResponseError> {
    match instance_id.and_then(|instance| group.member_for_instance(instance)) {
        Some(current) if current != member_id => Err(ResponseError::FencedInstanceId),
        _ => Ok(()),
    }
}

/// Moves the member `old` to the id `new` (a static member back under a new id), with its assignment and
/// leadership; a request of the old one still waiting is answered `FENCED_INSTANCE_ID`.
fn replace_static_member(group: &mut Group, old: &str, new: String) {
    let mut member = group.members.remove(old).expect("a member of the group");
    if let Some(join) = member.join.take() {
        let _ = join.send(Err(ResponseError::FencedInstanceId));
    }
    if let Some(sync) = member.sync.take() {
        let _ = sync.send(Err(ResponseError::FencedInstanceId));
    }
    if group.leader.as_deref() == Some(old) {
        group.leader = Some(new.clone());
    }
    group.members.insert(new, member);
}

fn synced(group: &Group, member_id: &str) -> Synced {
    Synced {
        protocol_type: group.protocol_type.clone(),
        protocol: group.protocol.clone(),
        assignment: group
            .members
            .get(member_id)
            .map(|m| m.assignment.clone())
            .unwrap_or_default(),
    }
}

/// Ends the join phase of rebalance `rebalance` (if it is the one running): a new generation, a protocol
/// every member supports, a leader, and each waiting member's answer. Returns whether it did so with
/// members (a completed rebalance, as Kafka's `classic-group-completed-rebalance-count` counts them).
fn complete_join_locked(group: &mut Group, rebalance: u64, timed_out: bool) -> bool {
    if group.state != State::PreparingRebalance || group.rebalance != rebalance {
        return false;
    }
    if !timed_out && (group.delaying || !group.members.values().all(|m| m.join.is_some())) {
        return false;
    }
    group.delaying = false;
    // Members that did not rejoin in time are out.
    group.members.retain(|_, m| m.join.is_some());
    if group.members.is_empty() {
        group.set_state(State::Empty);
        group.leader = None;
        group.protocol.clear();
        group.generation += 1;
        return false;
    }
    group.generation += 1;
    if group
        .leader
        .as_ref()
        .is_none_or(|leader| !group.members.contains_key(leader))
    {
        group.leader = group.members.keys().next().cloned();
    }
    let leader = group.leader.clone().expect("set above");
    // The leader's most preferred protocol that every member supports.
    let chosen = group.members[&leader]
        .protocols
        .iter()
        .map(|(name, _)| name.clone())
        .find(|name| {
            group
                .members
                .values()
                .all(|m| m.protocols.iter().any(|(p, _)| p == name))
        })
        .unwrap_or_default();
    group.protocol = chosen.clone();
    group.set_state(State::CompletingRebalance);
    let members: Vec<(String, Option<String>, Bytes)> = group
        .members
        .iter()
        .map(|(id, m)| {
            let metadata = m
                .protocols
                .iter()
                .find(|(name, _)| *name == chosen)
                .map(|(_, md)| md.clone())
                .unwrap_or_default();
            (id.clone(), m.instance_id.clone(), metadata)
        })
        .collect();
    let (generation, protocol_type) = (group.generation, group.protocol_type.clone());
    for (id, member) in group.members.iter_mut() {
        member.last_seen = Instant::now();
        if let Some(join) = member.join.take() {
            let _ = join.send(Ok(Joined {
                generation,
                protocol_type: protocol_type.clone(),
                protocol: chosen.clone(),
                leader: leader.clone(),
                member_id: id.clone(),
                members: if *id == leader { members.clone() } else { Vec::new() },
            }));
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::offsets::Expiry;
    use super::*;

    fn member(rejoined: bool) -> Member {
        let (join, _) = oneshot::channel();
        Member {
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_seen: Instant::now(),
            join: rejoined.then_some(join),
            sync: None,
        }
    }

    fn group(state: State, members: &[(&str, bool)], pending: &[&str]) -> Group {
        let mut group = Group::new();
        group.state = state;
        for (id, rejoined) in members {
            group.members.insert((*id).into(), member(*rejoined));
        }
        for id in pending {
            group.pending.insert((*id).into(), Instant::now());
        }
        group
    }

    #[test]
    fn group_max_size_counts_members_and_ids_handed_out() {
        // Stable or completing: members stay; a new one needs room, ids handed out included.
        for state in [State::Stable, State::CompletingRebalance] {
            let full = group(state, &[("a", false), ("b", false)], &[]);
            assert!(accepts_member(&full, "a", 2));
            assert!(!accepts_member(&full, "", 2), "{state:?}");
            assert!(!accepts_member(&full, "stranger", 2));
            assert!(accepts_member(&full, "", 3));
            let with_pending = group(state, &[("a", false)], &["p"]);
            assert!(!accepts_member(&with_pending, "", 2), "an id handed out holds a place");
            assert!(accepts_member(&with_pending, "p", 2), "its own place");
        }
        // Rebalancing: those that rejoined count; a member that has not rejoined competes with new ones.
        let rebalancing = group(State::PreparingRebalance, &[("a", true), ("b", false)], &[]);
        assert!(accepts_member(&rebalancing, "a", 1));
        assert!(!accepts_member(&rebalancing, "b", 1));
        assert!(accepts_member(&rebalancing, "b", 2));
        assert!(!accepts_member(&rebalancing, "", 1));
        // Empty: only ids handed out.
        assert!(accepts_member(&group(State::Empty, &[], &[]), "", 1));
        assert!(!accepts_member(&group(State::Empty, &[], &["p"]), "", 1));
        assert!(accepts_member(&group(State::Empty, &[], &["p"]), "p", 1));
    }

    fn join_request(group: &str, member_id: &str) -> JoinRequest {
        JoinRequest {
            group_id: group.into(),
            member_id: member_id.into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::new())],
            require_known_member_id: true,
        }
    }

    fn coordinator(max_size: usize) -> Arc<Coordinator> {
        Coordinator::new(GroupSettings {
            initial_rebalance_delay: Duration::ZERO,
            max_size,
            consumer_session_timeout: Duration::from_secs(45),
            consumer_heartbeat_interval: Duration::from_secs(5),
            consumer_max_size: max_size,
        })
    }

    #[tokio::test]
    async fn a_join_past_group_max_size_is_refused_with_no_member_id() {
        let coordinator = coordinator(1);
        let (error, id) = coordinator
            .join(join_request("g", ""), &NoTopics, &MemoryLog::default())
            .await
            .unwrap_err();
        assert_eq!(error, ResponseError::MemberIdRequired);
        assert_eq!(
            coordinator
                .join(join_request("g", ""), &NoTopics, &MemoryLog::default())
                .await
                .unwrap_err(),
            (ResponseError::GroupMaxSizeReached, String::new()),
            "the id handed out holds the only place"
        );
        let joined = coordinator
            .join(join_request("g", &id), &NoTopics, &MemoryLog::default())
            .await
            .unwrap();
        assert_eq!(joined.member_id, id);
        assert_eq!(
            coordinator
                .join(join_request("g", ""), &NoTopics, &MemoryLog::default())
                .await
                .unwrap_err()
                .0,
            ResponseError::GroupMaxSizeReached
        );
        assert_eq!(coordinator.describe("g").unwrap().members.len(), 1);
    }

    /// Runs `join` as a task until it waits for the rebalance (a current-thread runtime runs the task at
    /// the yield, and the join registers before its first wait).
    async fn start_join(
        coordinator: &Arc<Coordinator>,
        request: JoinRequest,
    ) -> tokio::task::JoinHandle<Result<Joined, (ResponseError, String)>> {
        let coordinator = coordinator.clone();
        let task = tokio::spawn(async move { coordinator.join(request, &NoTopics, &MemoryLog::default()).await });
        tokio::task::yield_now().await;
        task
    }

    #[tokio::test]
    async fn a_member_that_has_not_rejoined_a_full_rebalance_is_refused_and_out() {
        let coordinator = coordinator(2);
        let direct = |member_id: &str| JoinRequest {
            require_known_member_id: false,
            ..join_request("g", member_id)
        };
        let a = coordinator
            .join(direct(""), &NoTopics, &MemoryLog::default())
            .await
            .unwrap()
            .member_id;
        let b_first = start_join(&coordinator, direct("")).await;
        let a_again = start_join(&coordinator, direct(&a)).await;
        let b = b_first.await.unwrap().unwrap().member_id;
        a_again.await.unwrap().unwrap();
        // A rebalance that a and a newcomer c join first: two have rejoined, so b is refused.
        let a_again = start_join(&coordinator, direct(&a)).await;
        let c = start_join(&coordinator, direct("")).await;
        assert_eq!(
            coordinator
                .join(direct(&b), &NoTopics, &MemoryLog::default())
                .await
                .unwrap_err(),
            (ResponseError::GroupMaxSizeReached, String::new())
        );
        // Without b, everyone has rejoined: the rebalance completes.
        let (a_joined, c_joined) = (a_again.await.unwrap().unwrap(), c.await.unwrap().unwrap());
        assert_eq!(a_joined.generation, c_joined.generation);
        let mut members: Vec<String> = coordinator
            .describe("g")
            .unwrap()
            .members
            .into_iter()
            .map(|m| m.member_id)
            .collect();
        members.sort();
        let mut expected = vec![a, c_joined.member_id];
        expected.sort();
        assert_eq!(members, expected);
    }

    #[tokio::test]
    async fn groups_left_empty_without_offsets_are_removed_and_refused_joins_leave_none() {
        let coordinator = coordinator(10);
        let mut refused = join_request("refused", "");
        refused.protocol_type.clear();
        assert_eq!(
            coordinator
                .join(refused, &NoTopics, &MemoryLog::default())
                .await
                .unwrap_err()
                .0,
            ResponseError::InconsistentGroupProtocol
        );
        let mut direct = join_request("g", "");
        direct.require_known_member_id = false;
        let joined = coordinator
            .join(direct, &NoTopics, &MemoryLog::default())
            .await
            .unwrap();
        assert_eq!(
            coordinator.list().len(),
            1,
            "only the joined group: {:?}",
            coordinator.list()
        );
        assert_eq!(coordinator.expiry()["g"], Expiry::Keep, "rebalancing");
        assert_eq!(
            coordinator.remove_dead(|_| false, &MemoryLog::default()),
            0,
            "it has a member"
        );

        coordinator
            .leave("g", &joined.member_id, None, &MemoryLog::default())
            .unwrap();
        assert!(matches!(coordinator.expiry()["g"], Expiry::EmptySince(_)));
        assert_eq!(
            coordinator.remove_dead(|_| true, &MemoryLog::default()),
            0,
            "kept while it has offsets"
        );
        assert_eq!(coordinator.remove_dead(|_| false, &MemoryLog::default()), 1);
        assert!(coordinator.list().is_empty());
    }

    fn static_join(instance: &str, member_id: &str) -> JoinRequest {
        JoinRequest {
            instance_id: Some(instance.into()),
            ..join_request("g", member_id)
        }
    }

    fn bytes(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[tokio::test]
    async fn a_second_process_of_a_static_member_fences_the_first() {
        let coordinator = coordinator(10);
        let first = coordinator
            .join(static_join("a", ""), &NoTopics, &MemoryLog::default())
            .await
            .unwrap();
        let old = first.member_id.clone();
        let assignment = vec![(old.clone(), bytes("p0"))];
        coordinator
            .sync("g", &old, Some("a"), first.generation, assignment, &NoTopics)
            .await
            .unwrap();

        // The same instance id again (a pod of the next deploy, the old one still running).
        let second = coordinator
            .join(static_join("a", ""), &NoTopics, &MemoryLog::default())
            .await
            .unwrap();
        assert_ne!(second.member_id, old, "a new member id");
        let fenced = Err(ResponseError::FencedInstanceId);
        assert_eq!(coordinator.heartbeat("g", &old, Some("a"), first.generation), fenced);
        assert_eq!(coordinator.check_commit("g", &old, Some("a"), first.generation), fenced);
        assert_eq!(coordinator.leave("g", &old, Some("a"), &MemoryLog::default()), fenced);
        assert_eq!(
            coordinator
                .join(static_join("a", &old), &NoTopics, &MemoryLog::default())
                .await
                .unwrap_err()
                .0,
            ResponseError::FencedInstanceId
        );
        assert_eq!(
            coordinator.heartbeat("g", &old, None, first.generation),
            Err(ResponseError::UnknownMemberId)
        );
        let members: Vec<String> = coordinator
            .describe("g")
            .unwrap()
            .members
            .into_iter()
            .map(|m| m.member_id)
            .collect();
        assert_eq!(members, vec![second.member_id.clone()]);
        // The newer one is the group's: it was the leader, so the group rebalanced to hand out again.
        assert_eq!(second.leader, second.member_id);
        assert_eq!(second.generation, first.generation + 1);
    }

    #[tokio::test]
    async fn a_static_follower_back_in_a_stable_group_takes_its_place_and_assignment_without_a_rebalance() {
        let coordinator = coordinator(10);
        let a = coordinator
            .join(static_join("a", ""), &NoTopics, &MemoryLog::default())
            .await
            .unwrap();
        coordinator
            .sync("g", &a.member_id, Some("a"), a.generation, vec![], &NoTopics)
            .await
            .unwrap();
        // b joins; a rejoins: one generation of two, a leading.
        let b = start_join(&coordinator, static_join("b", "")).await;
        assert_eq!(
            coordinator.check_commit("g", &a.member_id, Some("a"), a.generation),
            Ok(()),
            "a member of the current generation commits while the group prepares a rebalance"
        );
        let a = coordinator
            .join(static_join("a", &a.member_id), &NoTopics, &MemoryLog::default())
            .await
            .unwrap();
        let b = b.await.unwrap().unwrap();
        assert_eq!(a.generation, b.generation);
        assert_eq!(
            coordinator.check_commit("g", &a.member_id, Some("a"), a.generation),
            Err(ResponseError::RebalanceInProgress),
            "not while the rebalance completes"
        );
        let b_sync = {
            let coordinator = coordinator.clone();
            let b_id = b.member_id.clone();
            tokio::spawn(async move {
                coordinator
                    .sync("g", &b_id, Some("b"), b.generation, vec![], &NoTopics)
                    .await
            })
        };
        tokio::task::yield_now().await;
        let assignments = vec![(a.member_id.clone(), bytes("pa")), (b.member_id.clone(), bytes("pb"))];
        coordinator
            .sync("g", &a.member_id, Some("a"), a.generation, assignments, &NoTopics)
            .await
            .unwrap();
        assert_eq!(b_sync.await.unwrap().unwrap().assignment, bytes("pb"));

        let b2 = coordinator
            .join(static_join("b", ""), &NoTopics, &MemoryLog::default())
            .await
            .unwrap();
        assert_eq!(b2.generation, a.generation, "no rebalance");
        let synced = coordinator
            .sync("g", &b2.member_id, Some("b"), b2.generation, vec![], &NoTopics)
            .await
            .unwrap();
        assert_eq!(synced.assignment, bytes("pb"), "the old member's assignment");
        assert_eq!(
            coordinator.heartbeat("g", &a.member_id, Some("a"), a.generation),
            Ok(())
        );
        assert_eq!(
            coordinator.heartbeat("g", &b.member_id, Some("b"), b.generation),
            Err(ResponseError::FencedInstanceId)
        );
    }

    struct NoTopics;

    impl consumer::Topics for NoTopics {
        fn by_name(&self, _: &str) -> Option<(uuid::Uuid, i32)> {
            None
        }
        fn name(&self, _: uuid::Uuid) -> Option<String> {
            None
        }
        fn names(&self, _: &mut dyn FnMut(&str)) {}
    }

    /// A log that keeps what is appended, or refuses everything.
    #[derive(Default)]
    struct MemoryLog {
        records: Mutex<Vec<consumer::records::GroupRecord>>,
        refuse: bool,
    }

    impl GroupLog for MemoryLog {
        fn append(
            &self,
            _: &str,
            records: &[consumer::records::GroupRecord],
        ) -> Result<Option<offsets::Written>, ResponseError> {
            if self.refuse {
                return Err(ResponseError::NotCoordinator);
            }
            self.records.lock().unwrap().extend_from_slice(records);
            Ok(None)
        }
    }

    fn consumer_join(member: &str) -> consumer::Heartbeat {
        consumer::Heartbeat {
            member_id: member.into(),
            rebalance_timeout_ms: 10_000,
            subscribed_topic_names: Some(vec!["t".into()]),
            owned: Some(consumer::Assignment::new()),
            session_timeout: Duration::from_secs(45),
            ..consumer::Heartbeat::default()
        }
    }

    /// A ConsumerProtocol Subscription (v1) to topic `t`, owning `owned`.
    fn subscription_to_t(owned: &[i32]) -> Bytes {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition;
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let message = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .with_owned_partitions(vec![
                TopicPartition::default()
                    .with_topic(StrBytes::from_static_str("t").into())
                    .with_partitions(owned.to_vec()),
            ]);
        let mut buf = bytes::BytesMut::new();
        bytes::BufMut::put_i16(&mut buf, 1);
        message.encode(&mut buf, 1).unwrap();
        buf.freeze()
    }

    fn partitions_of(assignment: &Bytes) -> Vec<i32> {
        let named = consumer::protocol::assignment(assignment).unwrap();
        named.into_iter().flat_map(|(_, p)| p).collect()
    }

    #[tokio::test]
    async fn a_classic_group_upgrades_for_a_consumer_member_serves_its_classic_members_and_downgrades_back() {
        let coordinator = coordinator(10);
        let (t, log) = (consumer::tests_support::Fixture::one_topic(6), &MemoryLog::default());
        let classic_join = |member: &str, owned: &[i32]| JoinRequest {
            protocols: vec![("range".into(), subscription_to_t(owned))],
            require_known_member_id: false,
            ..join_request("up", member)
        };
        // A classic group of two members, the leader handing out 0-2 and 3-5.
        let alone = coordinator.join(classic_join("", &[]), &NoTopics, log).await.unwrap();
        let c2 = coordinator.clone();
        let second =
            tokio::spawn(async move { c2.join(classic_join("", &[]), &NoTopics, &MemoryLog::default()).await });
        // The first member rejoins the rebalance the second one started.
        let first = loop {
            tokio::task::yield_now().await;
            if coordinator.describe("up").unwrap().state == State::PreparingRebalance {
                break coordinator
                    .join(classic_join(&alone.member_id, &[]), &NoTopics, log)
                    .await
                    .unwrap();
            }
        };
        let second = second.await.unwrap().unwrap();
        let (leader, follower) = if first.member_id == first.leader {
            (first, second)
        } else {
            (second, first)
        };
        let owned = consumer::protocol::resolve(&[("t".into(), vec![0, 1, 2])], &t);
        let rest = consumer::protocol::resolve(&[("t".into(), vec![3, 4, 5])], &t);
        let assignments = vec![
            (
                leader.member_id.clone(),
                consumer::protocol::encode_assignment(&owned, &t),
            ),
            (
                follower.member_id.clone(),
                consumer::protocol::encode_assignment(&rest, &t),
            ),
        ];
        let (generation, id) = (leader.generation, leader.member_id.clone());
        coordinator
            .sync("up", &id, None, generation, assignments, &t)
            .await
            .unwrap();

        // A consumer-protocol member joins: the group converts, the classic members keep their partitions.
        let (answer, _) = coordinator
            .consumer_heartbeat("up", consumer_join("c"), &t, log)
            .unwrap();
        assert_eq!(answer.member_epoch, generation + 1);
        assert!(coordinator.describe("up").is_none());
        assert_eq!(coordinator.describe_consumer("up").unwrap().members.len(), 3);
        assert_eq!(
            coordinator.heartbeat("up", &id, None, generation),
            Err(ResponseError::RebalanceInProgress)
        );
        // The leader rejoins, as a classic member of the consumer group: answered at once, no leader.
        let rejoined = coordinator.join(classic_join(&id, &[0, 1, 2]), &t, log).await.unwrap();
        assert_eq!(
            (rejoined.member_id.as_str(), rejoined.leader.as_str()),
            (id.as_str(), "")
        );
        assert!(rejoined.members.is_empty());
        let synced = coordinator
            .sync("up", &id, None, rejoined.generation, vec![], &t)
            .await
            .unwrap();
        let kept = partitions_of(&synced.assignment);
        assert_eq!(kept.len(), 2, "one partition goes to c");
        // It revoked the third and rejoins: it is at the group's epoch, and its heartbeat is quiet.
        let again = coordinator.join(classic_join(&id, &kept), &t, log).await.unwrap();
        assert_eq!(again.generation, generation + 1);
        assert_eq!(coordinator.heartbeat("up", &id, None, again.generation), Ok(()));
        assert!(
            !log.records.lock().unwrap().is_empty(),
            "the converted group is in the log"
        );

        // The consumer-protocol member leaves: a classic group again, rebalancing, its members to rejoin.
        let leave = consumer::Heartbeat {
            member_epoch: consumer::LEAVE_EPOCH,
            ..consumer_join("c")
        };
        coordinator.consumer_heartbeat("up", leave, &t, log).unwrap();
        assert!(coordinator.describe_consumer("up").is_none());
        let classic = coordinator.describe("up").unwrap();
        assert_eq!((classic.state, classic.members.len()), (State::PreparingRebalance, 2));
        let back = coordinator.join(classic_join(&id, &kept), &NoTopics, log);
        let other = coordinator.join(classic_join(&follower.member_id, &[]), &NoTopics, log);
        let (back, other) = tokio::join!(back, other);
        assert_eq!(back.unwrap().generation, other.unwrap().generation);
        assert_eq!(coordinator.describe("up").unwrap().state, State::CompletingRebalance);
    }

    #[tokio::test]
    async fn a_group_id_is_classic_or_consumer_and_consumer_groups_have_a_max_size() {
        let coordinator = coordinator(1);
        let log = &MemoryLog::default();
        coordinator
            .consumer_heartbeat("cg", consumer_join("a"), &NoTopics, log)
            .unwrap();
        assert_eq!(
            coordinator
                .consumer_heartbeat("cg", consumer_join("b"), &NoTopics, log)
                .unwrap_err()
                .0,
            ResponseError::GroupMaxSizeReached
        );
        assert!(
            coordinator
                .consumer_heartbeat("cg", consumer_join("a"), &NoTopics, log)
                .is_ok(),
            "a member rejoining keeps its place"
        );
        assert_eq!(
            coordinator
                .join(join_request("cg", ""), &NoTopics, &MemoryLog::default())
                .await
                .unwrap_err()
                .0,
            ResponseError::InconsistentGroupProtocol
        );
        assert_eq!(
            coordinator.delete("cg", log).map(|_| ()),
            Err(ResponseError::NonEmptyGroup)
        );
        let mut direct = join_request("classic", "");
        direct.require_known_member_id = false;
        coordinator
            .join(direct, &NoTopics, &MemoryLog::default())
            .await
            .unwrap();
        assert_eq!(
            coordinator
                .consumer_heartbeat("classic", consumer_join("c"), &NoTopics, log)
                .unwrap_err()
                .0,
            ResponseError::GroupIdNotFound
        );
        let left = consumer::Heartbeat {
            member_epoch: consumer::LEAVE_EPOCH,
            ..consumer_join("a")
        };
        coordinator.consumer_heartbeat("cg", left, &NoTopics, log).unwrap();
        assert!(matches!(coordinator.expiry()["cg"], Expiry::EmptySince(_)));
        assert_eq!(
            coordinator.remove_dead(|_| false, log),
            1,
            "the empty consumer group, without offsets"
        );
        assert!(coordinator.describe_consumer("cg").is_none());
    }

    #[tokio::test]
    async fn a_new_coordinator_reads_consumer_groups_back_and_a_refused_write_changes_nothing() {
        let first = coordinator(10);
        let log = &MemoryLog::default();
        first
            .consumer_heartbeat("cg", consumer_join("a"), &NoTopics, log)
            .unwrap();
        first
            .consumer_heartbeat("cg", consumer_join("b"), &NoTopics, log)
            .unwrap();
        let refusing = &MemoryLog {
            refuse: true,
            ..MemoryLog::default()
        };
        let refused = first.consumer_heartbeat("cg", consumer_join("c"), &NoTopics, refusing);
        assert_eq!(refused.unwrap_err().0, ResponseError::NotCoordinator);
        assert_eq!(first.describe_consumer("cg").unwrap().members.len(), 2, "c is not in");
        assert!(
            first
                .consumer_heartbeat("new", consumer_join("a"), &NoTopics, refusing)
                .is_err()
        );
        assert!(
            first.describe_consumer("new").is_none(),
            "nor is the group it would have made"
        );

        let second = coordinator(10);
        let mut load = ConsumerLoad::new(second.clone(), offsets::partition_for("cg"));
        for (key, value) in log.records.lock().unwrap().iter() {
            offsets::Replay::replay(&mut load, key.clone(), value.clone());
        }
        offsets::Replay::loaded(&mut load);
        let (before, after) = (
            first.describe_consumer("cg").unwrap(),
            second.describe_consumer("cg").unwrap(),
        );
        assert_eq!((after.epoch, after.state), (before.epoch, before.state));
        let epochs = |v: &consumer::GroupView| {
            v.members
                .iter()
                .map(|m| (m.member_id.clone(), m.member_epoch))
                .collect::<Vec<_>>()
        };
        assert_eq!(epochs(&after), epochs(&before));
        // b carries on at its epoch on the new coordinator, without rejoining.
        let beat = consumer::Heartbeat {
            member_epoch: before.members[1].member_epoch,
            rebalance_timeout_ms: -1,
            subscribed_topic_names: None,
            owned: None,
            ..consumer_join("b")
        };
        let (answer, _) = second.consumer_heartbeat("cg", beat, &NoTopics, log).unwrap();
        assert_eq!(answer.member_epoch, before.members[1].member_epoch);
        second.unload_consumer(offsets::partition_for("cg"));
        assert!(second.describe_consumer("cg").is_none());
    }

    #[test]
    fn subscriptions_are_read_whole_or_not_at_all() {
        let mut metadata = vec![0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c'];
        assert_eq!(
            subscription_topics_exact(Bytes::from(metadata.clone())),
            Some(vec!["a".to_owned(), "bc".to_owned()])
        );
        metadata.pop();
        assert_eq!(subscription_topics_exact(Bytes::from(metadata)), None);
        let absurd = vec![0, 1, 0x7f, 0xff, 0xff, 0xff, 0, 1, b'a'];
        assert_eq!(subscription_topics_exact(Bytes::from(absurd)), None);
    }
}
