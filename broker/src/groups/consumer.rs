//! Consumer groups of the KIP-848 protocol (`group.protocol=consumer`): the coordinator assigns partitions
//! itself and hands them out one heartbeat at a time. Sans-IO: every call takes the time and a view of the
//! topics, so the unit tests below drive it without a broker or a clock.
//!
//! Three epochs, as in Kafka's `GroupMetadataManager`:
//! - the **group epoch** bumps when the group's inputs change: a member joins or leaves, a subscription or
//!   the assignor a member asks for changes, or a subscribed topic appears, goes or gets partitions;
//! - the **assignment epoch** is the group epoch the target assignment was computed at (it catches up on the
//!   next heartbeat, when the assignor runs: `uniform`, sticky and balanced, or `range`);
//! - each **member epoch** is the assignment epoch the member has reconciled to.
//!
//! Reconciliation (Kafka's `CurrentAssignmentBuilder`) is incremental: a member is first told to give up
//! what its target no longer has (`UnrevokedPartitions`: it is sent its assignment without them, and keeps
//! its epoch until a heartbeat shows it owns no more than that); only then do others get those partitions.
//! A member whose target holds partitions another member still owns gets the free ones and waits for the
//! rest (`UnreleasedPartitions`). Nobody ever owns a partition another member still owns.
//!
//! Groups are durable: every change is a set of records in `__consumer_offsets` ([`records`]), which a new
//! coordinator reads back, so a failover keeps members, epochs and assignments.
//!
//! Static members (`instance_id`) are Kafka's: one leaving with epoch -2 keeps its place and assignment until
//! its session times out, and a member joining with its instance id takes both over (see
//! `Group::static_member`).
//!
//! A member may subscribe by regex (`subscribed_topic_regex`, matching whole topic names) as well as by
//! name: its regex is matched against the topics at every heartbeat of the group, so a topic created or
//! deleted changes the subscribed topics, which bumps the group epoch.
//!
//! Classic members (KIP-848's online migration, Kafka 4's `group.consumer.migration.policy=bidirectional`):
//! a consumer of the classic protocol (JoinGroup/SyncGroup/Heartbeat) may be a member too, its subscription
//! read from its JoinGroup metadata ([`protocol`]). Its JoinGroup is its heartbeat: it reconciles with the
//! partitions its subscription says it owns, and is answered with its member epoch as the generation; its
//! SyncGroup gets what it is assigned now. Its Heartbeat only tells it to rejoin (`REBALANCE_IN_PROGRESS`)
//! when there is something to reconcile: it revokes by rejoining without the partitions. A classic group
//! whose members all speak the consumer protocol type becomes a consumer group ([`Group::from_classic`]),
//! and back ([`Group::classic_members`]) when only classic members are left; the coordinator does both.
//! What classic members asked for in JoinGroup (their protocols) is not in the records: after a failover
//! they are members like any other until they rejoin.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

pub mod protocol;
pub mod records;

/// The assignors this coordinator runs (Kafka's `group.consumer.assignors` default); the first is used
/// when no member names one.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];
/// `member_epoch` of a heartbeat that joins, leaves, or (static members) leaves for a while.
pub const JOIN_EPOCH: i32 = 0;
pub const LEAVE_EPOCH: i32 = -1;
pub const LEAVE_STATIC_EPOCH: i32 = -2;
/// Bound on the size of a compiled topic regex (the `regex` crate's size limit): far above what a pattern
/// of topic names needs, it keeps a client from making the coordinator build a huge automaton.
const REGEX_COMPILED_BYTES_MAX: usize = 1024 * 1024;
/// Bound on the rounds of moves that balance a uniform assignment: each round moves one partition, and
/// a balanced assignment is reached in far fewer for any real group; the bound keeps a bug from spinning.
const BALANCE_ROUNDS_MAX: usize = 1_000_000;

/// Partitions by topic id.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;
/// Partitions as (topic id, index) pairs, for set arithmetic.
type Partitions = BTreeSet<(Uuid, i32)>;

/// What the coordinator knows of topics: the metadata image, or a fixture in tests.
pub trait Topics {
    /// A topic's id and partition count.
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)>;
    fn name(&self, id: Uuid) -> Option<String>;
    /// Calls `visit` with the name of every topic a regex may subscribe to (internal topics are not).
    fn names(&self, visit: &mut dyn FnMut(&str));
}

/// A member's reconciliation state (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    UnrevokedPartitions,
    UnreleasedPartitions,
}

/// A ConsumerGroupHeartbeat, reduced to what the state machine needs. `None` means "unchanged since the
/// last heartbeat", as on the wire.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
    /// The group's `consumer.session.timeout.ms` (group config or broker default).
    pub session_timeout: Duration,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub member_id: String,
    pub member_epoch: i32,
    /// The member's assignment, when it changed or the request was a full one; `None` otherwise.
    pub assignment: Option<Assignment>,
}

/// A refused heartbeat: the error and its message.
pub type Refusal = (ResponseError, String);

/// A classic member's JoinGroup, its subscription already read from its metadata.
#[derive(Debug, Clone)]
pub struct ClassicJoin {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub subscribed: Vec<String>,
    /// What its subscription says it owns.
    pub owned: Assignment,
}

/// A classic member as a group converts to or from one: its place in a classic group.
#[derive(Debug, Clone)]
pub struct ClassicMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub subscribed: Vec<String>,
    pub assigned: Assignment,
}

#[derive(Debug, Clone)]
struct Member {
    epoch: i32,
    previous_epoch: i32,
    state: MemberState,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    subscribed: Vec<String>,
    /// The member's `subscribed_topic_regex`, if it subscribes by pattern, and its compiled form.
    regex: Option<String>,
    pattern: Option<regex::Regex>,
    assignor: Option<String>,
    rebalance_timeout: Duration,
    session_timeout: Duration,
    last_seen: Instant,
    /// What the member owns, as far as the coordinator has told it.
    assigned: Assignment,
    /// What it was told to give up and has not yet confirmed giving up.
    revoking: Assignment,
    /// When a member in `UnrevokedPartitions` must have revoked by: past it, it is removed.
    revoke_deadline: Option<Instant>,
    /// A classic member's JoinGroup protocols (name, metadata), in its order of preference; `None` for a
    /// member of the consumer protocol.
    classic: Option<Vec<(String, Bytes)>>,
}

impl Member {
    /// A member that has just joined, owning nothing.
    fn new(session_timeout: Duration, now: Instant) -> Self {
        Self {
            epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscribed: Vec::new(),
            regex: None,
            pattern: None,
            assignor: None,
            rebalance_timeout: Duration::ZERO,
            session_timeout,
            last_seen: now,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
            revoke_deadline: None,
            classic: None,
        }
    }
}

impl Member {
    /// Whether its session timed out, or its time to revoke ran out, at `now`.
    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen) > self.session_timeout
            || self.revoke_deadline.is_some_and(|deadline| now > deadline)
    }
}

/// One consumer group.
#[derive(Debug, Clone)]
pub struct Group {
    epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, Assignment>,
    /// The subscribed topics as resolved at the last epoch bump: a change bumps the epoch.
    topics: BTreeMap<String, Option<(Uuid, i32)>>,
    /// The topics each of the members' regexes matched when they were last resolved (at every heartbeat).
    matched: BTreeMap<String, BTreeSet<String>>,
    assignor: &'static str,
    /// When the last member left (or the group was created): offsets' retention counts from it.
    pub empty_since: Instant,
}

/// A member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    pub regex: Option<String>,
    pub assignment: Assignment,
    pub target: Assignment,
}

/// A group as ConsumerGroupDescribe and ListGroups show it.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub state: &'static str,
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: &'static str,
    pub members: Vec<MemberView>,
}

impl Group {
    pub fn new(now: Instant) -> Self {
        Self {
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            topics: BTreeMap::new(),
            matched: BTreeMap::new(),
            assignor: ASSIGNORS[0],
            empty_since: now,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Kafka's consumer group states.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.state != MemberState::Stable || m.epoch != self.assignment_epoch)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Handles one heartbeat at `now`; see the module documentation.
    pub fn heartbeat(&mut self, request: Heartbeat, topics: &dyn Topics, now: Instant) -> Result<Answer, Refusal> {
        validate(&request)?;
        // Compiled before anything changes, so that an invalid one changes nothing.
        let pattern = match request.subscribed_topic_regex.as_deref() {
            Some(regex) if !regex.is_empty() => Some(compile(regex)?),
            _ => None,
        };
        let full_request = request.rebalance_timeout_ms >= 0
            && (request.subscribed_topic_names.is_some() || request.subscribed_topic_regex.is_some())
            && request.owned.is_some();
        if let Some(instance) = request.instance_id.as_deref()
            && let Some(answer) = self.static_member(&request, instance)?
        {
            return Ok(answer);
        }
        if request.member_epoch == LEAVE_EPOCH || request.member_epoch == LEAVE_STATIC_EPOCH {
            if self.remove(&request.member_id, now).is_none() {
                return Err(unknown_member(&request.member_id));
            }
            return Ok(Answer {
                member_id: request.member_id,
                member_epoch: request.member_epoch,
                assignment: None,
            });
        }
        let mut bump = false;
        let joining = request.member_epoch == JOIN_EPOCH;
        let member = match self.members.get_mut(&request.member_id) {
            Some(member) if joining => {
                // A known member back at epoch 0 (fenced, or it lost its state): it owns nothing now, so
                // its partitions are free; its target stays, so it is handed them again.
                member.epoch = 0;
                member.previous_epoch = 0;
                member.state = MemberState::Stable;
                member.assigned.clear();
                member.revoking.clear();
                member.revoke_deadline = None;
                member
            }
            None if joining => {
                bump = true;
                self.members
                    .entry(request.member_id.clone())
                    .or_insert_with(|| Member::new(request.session_timeout, now))
            }
            None => return Err(unknown_member(&request.member_id)),
            Some(member) => {
                check_epoch(member, request.member_epoch, request.owned.as_ref())?;
                member
            }
        };
        member.last_seen = now;
        member.session_timeout = request.session_timeout;
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        if let Some(instance) = request.instance_id {
            member.instance_id = Some(instance);
        }
        if let Some(rack) = request.rack_id {
            member.rack_id = Some(rack);
        }
        if request.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout = Duration::from_millis(request.rebalance_timeout_ms as u64);
        }
        if let Some(mut names) = request.subscribed_topic_names {
            names.sort();
            names.dedup();
            if names != member.subscribed {
                member.subscribed = names;
                bump = true;
            }
        }
        if let Some(regex) = request.subscribed_topic_regex {
            // An empty one ends the subscription by pattern.
            let regex = Some(regex).filter(|r| !r.is_empty());
            if regex != member.regex {
                member.regex = regex;
                member.pattern = pattern;
                bump = true;
            }
        }
        if let Some(assignor) = request.server_assignor {
            let assignor = Some(assignor).filter(|a| !a.is_empty());
            if assignor != member.assignor {
                member.assignor = assignor;
                bump = true;
            }
        }
        self.matched = self.match_regexes(topics);
        let resolved = self.resolve_topics(topics);
        if resolved != self.topics {
            self.topics = resolved;
            bump = true;
        }
        if bump {
            self.epoch += 1;
        }
        if self.assignment_epoch < self.epoch {
            self.assign();
        }
        let before = self.members[&request.member_id].assigned.clone();
        self.reconcile(&request.member_id, request.owned.as_ref(), now);
        let member = &self.members[&request.member_id];
        // Kafka's full request (sent when joining, and after errors): every non-optional field set.
        let full = request.member_epoch == JOIN_EPOCH || full_request;
        Ok(Answer {
            member_id: request.member_id,
            member_epoch: member.epoch,
            assignment: (full || member.assigned != before).then(|| member.assigned.clone()),
        })
    }

    /// A classic group whose members all use the consumer protocol type, as a consumer group (Kafka's
    /// `ConsumerGroup.fromClassicGroup`): every member keeps what it was assigned, at the classic generation
    /// as group, assignment and member epoch, so nothing moves until the group's inputs change.
    pub fn from_classic(members: Vec<ClassicMember>, generation: i32, topics: &dyn Topics, now: Instant) -> Self {
        let mut group = Group::new(now);
        group.epoch = generation.max(1);
        group.assignment_epoch = group.epoch;
        let mut taken = Partitions::new();
        for m in members {
            // A partition two members claim (a broken client assignor) stays with the first.
            let assigned = collect(partitions(&m.assigned).filter(|tp| taken.insert(*tp)));
            let mut member = Member::new(m.session_timeout, now);
            member.epoch = group.epoch;
            member.previous_epoch = group.epoch;
            member.instance_id = m.instance_id;
            member.client_id = m.client_id;
            member.client_host = m.client_host;
            member.subscribed = m.subscribed;
            member.subscribed.sort();
            member.subscribed.dedup();
            member.rebalance_timeout = m.rebalance_timeout;
            member.classic = Some(m.protocols);
            member.assigned = assigned.clone();
            group.target.insert(m.member_id.clone(), assigned);
            group.members.insert(m.member_id, member);
        }
        group.topics = group.resolve_topics(topics);
        group
    }

    /// The members, if every one is classic (Kafka's `ConsumerGroup.allMembersUseClassicProtocolExcept`
    /// after the last consumer-protocol member left): the group may become a classic one again.
    pub fn classic_members(&self) -> Option<Vec<ClassicMember>> {
        if self.members.is_empty() {
            return None;
        }
        self.members
            .iter()
            .map(|(id, m)| {
                Some(ClassicMember {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout: m.session_timeout,
                    rebalance_timeout: m.rebalance_timeout,
                    protocols: m.classic.clone()?,
                    subscribed: m.subscribed.clone(),
                    assigned: m.assigned.clone(),
                })
            })
            .collect()
    }

    /// Whether `member_id` is a classic member.
    pub fn is_classic_member(&self, member_id: &str) -> bool {
        self.members.get(member_id).is_some_and(|m| m.classic.is_some())
    }

    /// A classic member's JoinGroup (Kafka's `classicGroupJoinToConsumerGroup`): it joins, or heartbeats
    /// with the partitions its subscription says it owns, and is answered with its member epoch (the
    /// generation it syncs and heartbeats with). A member id of a consumer-protocol member is
    /// `UNKNOWN_MEMBER_ID`, as in Kafka.
    pub fn classic_join(&mut self, join: ClassicJoin, topics: &dyn Topics, now: Instant) -> Result<i32, Refusal> {
        let known = self.members.get(&join.member_id);
        if known.is_some_and(|m| m.classic.is_none()) {
            return Err(unknown_member(&join.member_id));
        }
        let epoch = known.map_or(JOIN_EPOCH, |m| m.epoch);
        let heartbeat = Heartbeat {
            member_id: join.member_id.clone(),
            member_epoch: epoch,
            instance_id: join.instance_id,
            rack_id: None,
            rebalance_timeout_ms: i32::try_from(join.rebalance_timeout.as_millis()).unwrap_or(i32::MAX),
            subscribed_topic_names: Some(join.subscribed),
            subscribed_topic_regex: None,
            server_assignor: None,
            // A member joining owns nothing as far as the group knows; one rejoining owns what it says.
            owned: Some(if epoch == JOIN_EPOCH {
                Assignment::new()
            } else {
                join.owned.clone()
            }),
            client_id: join.client_id,
            client_host: join.client_host,
            session_timeout: join.session_timeout,
        };
        let answer = self.heartbeat(heartbeat, topics, now)?;
        let member = self.members.get_mut(&answer.member_id).expect("it just heartbeat");
        member.classic = Some(join.protocols);
        // Told to revoke what it already gave up before rejoining (an eager consumer gives up everything):
        // it has revoked, so it moves on now rather than at its next rejoin.
        if member.state == MemberState::UnrevokedPartitions && !intersects(&join.owned, &member.revoking) {
            self.reconcile(&answer.member_id, Some(&join.owned), now);
        }
        Ok(self.members[&answer.member_id].epoch)
    }

    /// A classic member's SyncGroup (Kafka's `classicGroupSyncToConsumerGroup`): what it is assigned now,
    /// and its first protocol's name.
    pub fn classic_sync(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Result<(Assignment, String), ResponseError> {
        let member = self.classic_member(member_id, generation)?;
        member.last_seen = now;
        let protocol = member.classic.iter().flatten().next().map(|(name, _)| name.clone());
        Ok((member.assigned.clone(), protocol.unwrap_or_default()))
    }

    /// A classic member's Heartbeat (Kafka's `classicGroupHeartbeatToConsumerGroup`): it keeps its session,
    /// and is told to rejoin (`REBALANCE_IN_PROGRESS`) when the group epoch moved past it, it has partitions
    /// to revoke, or partitions it waits for were released.
    pub fn classic_heartbeat(&mut self, member_id: &str, generation: i32, now: Instant) -> Result<(), ResponseError> {
        let epoch = self.epoch;
        let released = self.released_for(member_id);
        let member = self.classic_member(member_id, generation)?;
        member.last_seen = now;
        let rejoin = member.epoch < epoch
            || member.state == MemberState::UnrevokedPartitions
            || (member.state == MemberState::UnreleasedPartitions && released);
        if rejoin {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// A classic member's LeaveGroup, by member id or instance id. Its id, if it was one.
    pub fn classic_leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<String, ResponseError> {
        let id = match instance_id {
            Some(instance) => {
                let holder = self.holder_of(instance).ok_or(ResponseError::UnknownMemberId)?;
                if !member_id.is_empty() && holder != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
                holder.to_owned()
            }
            None => member_id.to_owned(),
        };
        if !self.is_classic_member(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.remove(&id, now);
        Ok(id)
    }

    /// A classic member at `generation`: `UNKNOWN_MEMBER_ID` if there is none of that id,
    /// `ILLEGAL_GENERATION` if it is at another epoch.
    fn classic_member(&mut self, member_id: &str, generation: i32) -> Result<&mut Member, ResponseError> {
        let member = self
            .members
            .get_mut(member_id)
            .filter(|m| m.classic.is_some())
            .ok_or(ResponseError::UnknownMemberId)?;
        if member.epoch != generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(member)
    }

    /// Whether some partition `member_id`'s target has, and it has not been given, is free now (Kafka's
    /// `!waitingOnUnreleasedPartition`).
    fn released_for(&self, member_id: &str) -> bool {
        let (Some(member), Some(target)) = (self.members.get(member_id), self.target.get(member_id)) else {
            return false;
        };
        partitions(target)
            .filter(|tp| !contains(&member.assigned, *tp))
            .any(|tp| {
                !self
                    .members
                    .iter()
                    .any(|(id, m)| id != member_id && (contains(&m.assigned, tp) || contains(&m.revoking, tp)))
            })
    }

    /// Whether [`Self::expire`] would remove anyone at `now`.
    pub fn has_expired(&self, now: Instant) -> bool {
        self.members.values().any(|m| m.expired(now))
    }

    /// Whether a member holds `instance_id` (a join with it takes that member's place, or is refused).
    pub fn holds_instance(&self, instance_id: &str) -> bool {
        self.holder_of(instance_id).is_some()
    }

    /// The member holding `instance_id`, if any.
    fn holder_of(&self, instance_id: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance_id))
            .map(|(id, _)| id.as_str())
    }

    /// Kafka's static membership (KIP-345 in KIP-848's protocol, `GroupMetadataManager`'s static member
    /// paths), before the heartbeat goes on as a dynamic member's. A leave at epoch -2 keeps the member, its
    /// place and its assignment (the others do not get its partitions) until its session times out, and is
    /// answered here. A join with the instance id of a member that left that way takes that member's place:
    /// its subscription, target and assignment, under the new member id, without bumping the group epoch.
    /// A join while the holder is still live is `UNRELEASED_INSTANCE_ID`; any other request from a member
    /// that no longer holds the instance id is `FENCED_INSTANCE_ID`, and one for an instance id nobody
    /// holds `UNKNOWN_MEMBER_ID`.
    fn static_member(&mut self, request: &Heartbeat, instance_id: &str) -> Result<Option<Answer>, Refusal> {
        let holder = self.holder_of(instance_id).map(str::to_owned);
        if request.member_epoch == JOIN_EPOCH {
            let Some(holder) = holder else {
                return Ok(None); // a new static member
            };
            if holder == request.member_id {
                // The holder itself back at epoch 0 (fenced, or it lost its state): as a dynamic member.
                return Ok(None);
            }
            if self.members[&holder].epoch != LEAVE_STATIC_EPOCH {
                return Err((
                    ResponseError::UnreleasedInstanceId,
                    format!(
                        "Static member {} with instance id {instance_id} cannot join the group because the instance \
                         id is owned by {holder} member.",
                        request.member_id
                    ),
                ));
            }
            let mut member = self.members.remove(&holder).expect("the holder is a member");
            member.epoch = 0;
            member.previous_epoch = 0;
            self.members.insert(request.member_id.clone(), member);
            if let Some(target) = self.target.remove(&holder) {
                self.target.insert(request.member_id.clone(), target);
            }
            return Ok(None);
        }
        let Some(holder) = holder else {
            return Err((
                ResponseError::UnknownMemberId,
                format!("Instance id {instance_id} is unknown."),
            ));
        };
        if holder != request.member_id {
            return Err((
                ResponseError::FencedInstanceId,
                format!(
                    "Static member {} with instance id {instance_id} was fenced by member {holder}.",
                    request.member_id
                ),
            ));
        }
        if request.member_epoch != LEAVE_STATIC_EPOCH {
            return Ok(None);
        }
        let member = self.members.get_mut(&holder).expect("the holder is a member");
        member.epoch = LEAVE_STATIC_EPOCH;
        // What it was giving up goes on to its new owners; what it owns waits for it.
        member.revoking.clear();
        member.revoke_deadline = None;
        Ok(Some(Answer {
            member_id: holder,
            member_epoch: LEAVE_STATIC_EPOCH,
            assignment: None,
        }))
    }

    /// Removes the members whose session timed out, or that did not revoke within their rebalance timeout.
    /// Returns their ids.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.expired(now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.remove(id, now);
        }
        expired
    }

    /// Kafka's `ConsumerGroup.validateOffsetCommit`: a commit without a member (epoch < 0) only to an
    /// empty group; a member's with OffsetCommit v9+ (`version`), at its current epoch.
    pub fn check_commit(&self, member_id: &str, member_epoch: i32, version: i16) -> Result<(), ResponseError> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let Some(member) = self.members.get(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        // A classic member commits with its generation, with any version (Kafka's
        // `validateOffsetCommit`): another one is ILLEGAL_GENERATION, as a classic group answers.
        if member.classic.is_some() {
            return if member.epoch == member_epoch {
                Ok(())
            } else if version >= 9 {
                Err(ResponseError::StaleMemberEpoch)
            } else {
                Err(ResponseError::IllegalGeneration)
            };
        }
        if version < 9 {
            return Err(ResponseError::UnsupportedVersion);
        }
        self.check_member_epoch(member_id, member_epoch, false)
    }

    /// Kafka's `ConsumerGroup.validateOffsetFetch` (and the epoch half of `validateOffsetCommit`): a member
    /// at its current epoch. A fetch without a member (epoch < 0) is accepted (`any_without_member`), a
    /// commit without one only for an empty group.
    pub fn check_member_epoch(
        &self,
        member_id: &str,
        member_epoch: i32,
        any_without_member: bool,
    ) -> Result<(), ResponseError> {
        if member_epoch < 0 && (any_without_member || self.members.is_empty()) {
            return Ok(());
        }
        let member = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if member.epoch != member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// The topics the group's members subscribe to, by name or by regex.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| self.member_topics(m))
            .cloned()
            .collect()
    }

    /// The topics `member` subscribes to: those it names, and those its regex matched.
    fn member_topics<'a>(&'a self, member: &'a Member) -> impl Iterator<Item = &'a String> + 'a {
        let matched = member.regex.as_ref().and_then(|r| self.matched.get(r));
        member.subscribed.iter().chain(matched.into_iter().flatten())
    }

    /// The topics each distinct regex of the members matches now: one pass over the topic names.
    fn match_regexes(&self, topics: &dyn Topics) -> BTreeMap<String, BTreeSet<String>> {
        let patterns: BTreeMap<&String, &regex::Regex> = self
            .members
            .values()
            .filter_map(|m| m.regex.as_ref().zip(m.pattern.as_ref()))
            .collect();
        let mut matched: BTreeMap<String, BTreeSet<String>> =
            patterns.keys().map(|r| ((*r).clone(), BTreeSet::new())).collect();
        if patterns.is_empty() {
            return matched;
        }
        topics.names(&mut |name| {
            for (regex, pattern) in &patterns {
                if pattern.is_match(name) {
                    matched.get_mut(*regex).expect("listed").insert(name.to_owned());
                }
            }
        });
        matched
    }

    pub fn view(&self) -> GroupView {
        GroupView {
            state: self.state(),
            epoch: self.epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor,
            members: self
                .members
                .iter()
                .map(|(id, m)| MemberView {
                    member_id: id.clone(),
                    member_epoch: m.epoch,
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed: m.subscribed.clone(),
                    regex: m.regex.clone(),
                    assignment: m.assigned.clone(),
                    target: self.target.get(id).cloned().unwrap_or_default(),
                })
                .collect(),
        }
    }

    fn remove(&mut self, member_id: &str, now: Instant) -> Option<Member> {
        let member = self.members.remove(member_id)?;
        self.target.remove(member_id);
        self.epoch += 1;
        if self.members.is_empty() {
            self.empty_since = now;
        }
        Some(member)
    }

    fn resolve_topics(&self, topics: &dyn Topics) -> BTreeMap<String, Option<(Uuid, i32)>> {
        self.subscribed_topics()
            .into_iter()
            .map(|name| {
                let resolved = topics.by_name(&name);
                (name, resolved)
            })
            .collect()
    }

    /// Computes the target assignment at the group epoch. The assignor is the one most members ask for
    /// (ties to the first in [`ASSIGNORS`]), the default when none asks.
    fn assign(&mut self) {
        self.assignor = self.preferred_assignor();
        let subscriptions: BTreeMap<&str, Vec<(Uuid, i32)>> = self
            .members
            .iter()
            .map(|(id, m)| {
                let topics = self
                    .member_topics(m)
                    .filter_map(|name| self.topics.get(name).copied().flatten())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                (id.as_str(), topics)
            })
            .collect();
        self.target = match self.assignor {
            "range" => assign_range(&subscriptions),
            _ => assign_uniform(&subscriptions, &self.target),
        };
        self.assignment_epoch = self.epoch;
    }

    /// The assignor most members ask for (ties to the first in [`ASSIGNORS`]), the default when none asks.
    fn preferred_assignor(&self) -> &'static str {
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for assignor in self.members.values().filter_map(|m| m.assignor.as_deref()) {
            *votes.entry(assignor).or_default() += 1;
        }
        let most = votes.values().copied().max().unwrap_or(0);
        ASSIGNORS
            .iter()
            .copied()
            .find(|name| votes.get(name).copied().unwrap_or(0) == most && (most > 0 || *name == ASSIGNORS[0]))
            .unwrap_or(ASSIGNORS[0])
    }

    /// Kafka's `CurrentAssignmentBuilder`: moves `member_id` towards its target, never handing it a
    /// partition another member still owns.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now: Instant) {
        let member = &self.members[member_id];
        let ready = match member.state {
            MemberState::Stable => member.epoch != self.assignment_epoch,
            // Revoked once a heartbeat shows it owns none of what it had to give up.
            MemberState::UnrevokedPartitions => owned.is_some_and(|owned| !intersects(owned, &member.revoking)),
            MemberState::UnreleasedPartitions => true,
        };
        if !ready {
            return;
        }
        // A member that revoked moves on by one epoch at most (Kafka's `min(memberEpoch + 1, target)`), so
        // that one that must revoke again shows it got past the previous round.
        let revoking_epoch = match member.state {
            MemberState::UnrevokedPartitions => (member.epoch + 1).min(self.assignment_epoch),
            MemberState::Stable | MemberState::UnreleasedPartitions => member.epoch,
        };
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let held_by_others: Partitions = self
            .members
            .iter()
            .filter(|(id, _)| id.as_str() != member_id)
            .flat_map(|(_, m)| partitions(&m.assigned).chain(partitions(&m.revoking)))
            .collect();
        let member = self.members.get_mut(member_id).expect("reconciled member exists");
        let current: Partitions = partitions(&member.assigned).collect();
        let wanted: Partitions = partitions(&target).collect();
        let retained: Partitions = current.intersection(&wanted).copied().collect();
        let to_revoke: Partitions = current.difference(&wanted).copied().collect();
        let (free, unreleased): (Partitions, Partitions) =
            wanted.difference(&current).partition(|tp| !held_by_others.contains(tp));
        if !to_revoke.is_empty() {
            if member.epoch != revoking_epoch {
                member.previous_epoch = member.epoch;
                member.epoch = revoking_epoch;
            }
            member.state = MemberState::UnrevokedPartitions;
            member.assigned = collect(retained);
            member.revoking = collect(to_revoke);
            member.revoke_deadline = Some(now + member.rebalance_timeout);
            return;
        }
        member.assigned = collect(retained.into_iter().chain(free));
        member.revoking.clear();
        member.revoke_deadline = None;
        member.state = if unreleased.is_empty() {
            MemberState::Stable
        } else {
            MemberState::UnreleasedPartitions
        };
        if member.epoch != self.assignment_epoch {
            member.previous_epoch = member.epoch;
            member.epoch = self.assignment_epoch;
        }
    }
}

fn unknown_member(member_id: &str) -> Refusal {
    (
        ResponseError::UnknownMemberId,
        format!("member {member_id} is not a member of the group"),
    )
}

fn invalid(message: &str) -> Refusal {
    (ResponseError::InvalidRequest, message.to_owned())
}

/// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`.
fn validate(request: &Heartbeat) -> Result<(), Refusal> {
    if request.member_id.is_empty() {
        return Err(invalid("MemberId can't be empty."));
    }
    if request.instance_id.as_deref() == Some("") {
        return Err(invalid("InstanceId can't be empty."));
    }
    if request.rack_id.as_deref() == Some("") {
        return Err(invalid("RackId can't be empty."));
    }
    match request.member_epoch {
        JOIN_EPOCH => {
            if request.rebalance_timeout_ms < 0 {
                return Err(invalid("RebalanceTimeoutMs must be provided in first request."));
            }
            if request.owned.as_ref().is_none_or(|owned| !owned.is_empty()) {
                return Err(invalid("TopicPartitions must be empty when (re-)joining."));
            }
            if request.subscribed_topic_names.as_ref().is_none_or(Vec::is_empty)
                && request.subscribed_topic_regex.as_ref().is_none_or(String::is_empty)
            {
                return Err(invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                ));
            }
        }
        LEAVE_STATIC_EPOCH if request.instance_id.is_none() => return Err(invalid("InstanceId can't be null.")),
        epoch if epoch < LEAVE_STATIC_EPOCH => return Err(invalid("MemberEpoch is invalid.")),
        _ => {}
    }
    if let Some(assignor) = request.server_assignor.as_deref()
        && !assignor.is_empty()
        && !ASSIGNORS.contains(&assignor)
    {
        return Err((
            ResponseError::UnsupportedAssignor,
            format!("ServerAssignor {assignor} is not supported. Supported assignors: {ASSIGNORS:?}."),
        ));
    }
    Ok(())
}

/// A member's `subscribed_topic_regex`, matching whole topic names as RE2/J's `matches()` does in Kafka;
/// `INVALID_REGULAR_EXPRESSION` (Kafka's message) if it does not compile.
pub(super) fn compile(regex: &str) -> Result<regex::Regex, Refusal> {
    regex::RegexBuilder::new(&format!("^(?:{regex})$"))
        .size_limit(REGEX_COMPILED_BYTES_MAX)
        .build()
        .map_err(|e| {
            (
                ResponseError::InvalidRegularExpression,
                format!("SubscribedTopicRegex `{regex}` is not a valid regular expression: {e}."),
            )
        })
}

/// Kafka's `throwIfMemberEpochIsInvalid`: a member ahead of the coordinator, or behind it other than by
/// the one epoch whose answer it may have missed (owning no more than it has now), is fenced.
fn check_epoch(member: &Member, received: i32, owned: Option<&Assignment>) -> Result<(), Refusal> {
    let fenced = || {
        Err((
            ResponseError::FencedMemberEpoch,
            format!(
                "The consumer group member has a member epoch ({received}) different from the one known by the \
                 group coordinator ({}).",
                member.epoch
            ),
        ))
    };
    if received > member.epoch {
        return fenced();
    }
    if received < member.epoch {
        let subset = owned.is_some_and(|owned| partitions(owned).all(|tp| contains(&member.assigned, tp)));
        if received != member.previous_epoch || !subset {
            return fenced();
        }
    }
    Ok(())
}

fn partitions(assignment: &Assignment) -> impl Iterator<Item = (Uuid, i32)> + '_ {
    assignment
        .iter()
        .flat_map(|(topic, partitions)| partitions.iter().map(move |p| (*topic, *p)))
}

fn contains(assignment: &Assignment, (topic, partition): (Uuid, i32)) -> bool {
    assignment.get(&topic).is_some_and(|p| p.contains(&partition))
}

fn intersects(a: &Assignment, b: &Assignment) -> bool {
    partitions(a).any(|tp| contains(b, tp))
}

fn collect(partitions: impl IntoIterator<Item = (Uuid, i32)>) -> Assignment {
    let mut assignment = Assignment::new();
    for (topic, partition) in partitions {
        assignment.entry(topic).or_default().insert(partition);
    }
    assignment
}

/// The `range` assignor: per topic, its subscribers in member id order each get a contiguous range, the
/// first `partitions % subscribers` one more.
fn assign_range(subscriptions: &BTreeMap<&str, Vec<(Uuid, i32)>>) -> BTreeMap<String, Assignment> {
    let mut by_topic: BTreeMap<(Uuid, i32), Vec<&str>> = BTreeMap::new();
    for (member, topics) in subscriptions {
        for topic in topics {
            by_topic.entry(*topic).or_default().push(member);
        }
    }
    let mut target: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| ((*m).to_owned(), Assignment::new()))
        .collect();
    for ((topic, count), members) in by_topic {
        let (each, extra) = (count / members.len() as i32, count % members.len() as i32);
        let mut next = 0;
        for (i, member) in members.iter().enumerate() {
            let take = each + i32::from((i as i32) < extra);
            let range: BTreeSet<i32> = (next..next + take).collect();
            next += take;
            if !range.is_empty() {
                target.get_mut(*member).expect("listed").insert(topic, range);
            }
        }
    }
    target
}

/// The `uniform` assignor: sticky and balanced. Each member keeps what it had in `previous` that it still
/// subscribes to; the partitions nobody keeps go to the subscriber with the fewest; then partitions move,
/// one at a time, from a member with the most to a subscriber with at least two fewer, until none can.
fn assign_uniform(
    subscriptions: &BTreeMap<&str, Vec<(Uuid, i32)>>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let subscribes = |member: &str, topic: Uuid| {
        subscriptions
            .get(member)
            .is_some_and(|topics| topics.iter().any(|(id, _)| *id == topic))
    };
    let all: BTreeMap<(Uuid, i32), ()> = subscriptions
        .values()
        .flatten()
        .flat_map(|(topic, count)| (0..*count).map(move |p| ((*topic, p), ())))
        .collect();
    let mut owner: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
    let mut counts: BTreeMap<&str, usize> = subscriptions.keys().map(|m| (*m, 0)).collect();
    for (member, assignment) in previous {
        let Some((member, _)) = subscriptions.get_key_value(member.as_str()) else {
            continue;
        };
        for tp in partitions(assignment) {
            if all.contains_key(&tp) && subscribes(member, tp.0) && !owner.contains_key(&tp) {
                owner.insert(tp, member);
                *counts.get_mut(member).expect("counted") += 1;
            }
        }
    }
    for tp in all.keys() {
        if owner.contains_key(tp) {
            continue;
        }
        let fewest = counts
            .iter()
            .filter(|(m, _)| subscribes(m, tp.0))
            .min_by_key(|(m, count)| (**count, **m))
            .map(|(m, _)| *m);
        if let Some(member) = fewest {
            owner.insert(*tp, member);
            *counts.get_mut(member).expect("counted") += 1;
        }
    }
    let mut by_member: BTreeMap<&str, Partitions> = subscriptions.keys().map(|m| (*m, Partitions::new())).collect();
    for (tp, member) in &owner {
        by_member.get_mut(member).expect("listed").insert(*tp);
    }
    // Each move takes a partition from a member with c to one with d < c - 1, which lowers the sum of the
    // squared counts: this ends, and within the bound for any group that fits in memory.
    for _ in 0..BALANCE_ROUNDS_MAX {
        let mut by_load: Vec<(&str, usize)> = counts.iter().map(|(m, c)| (*m, *c)).collect();
        by_load.sort_by_key(|(m, c)| (std::cmp::Reverse(*c), *m));
        let found = by_load.iter().find_map(|(from, from_count)| {
            by_member[from].iter().find_map(|tp| {
                counts
                    .iter()
                    .filter(|(m, c)| **c + 1 < *from_count && subscribes(m, tp.0))
                    .min_by_key(|(m, c)| (**c, **m))
                    .map(|(to, _)| (*from, *to, *tp))
            })
        });
        let Some((from, to, tp)) = found else {
            break;
        };
        owner.insert(tp, to);
        by_member.get_mut(from).expect("listed").remove(&tp);
        by_member.get_mut(to).expect("listed").insert(tp);
        *counts.get_mut(from).expect("counted") -= 1;
        *counts.get_mut(to).expect("counted") += 1;
    }
    let mut target: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| ((*m).to_owned(), Assignment::new()))
        .collect();
    for ((topic, partition), member) in owner {
        target
            .get_mut(member)
            .expect("listed")
            .entry(topic)
            .or_default()
            .insert(partition);
    }
    target
}

/// Topics and requests for the tests of this module and its children.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub struct Fixture(pub BTreeMap<String, (Uuid, i32)>);

    impl Topics for Fixture {
        fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
            self.0.get(name).copied()
        }
        fn name(&self, id: Uuid) -> Option<String> {
            self.0.iter().find(|(_, (i, _))| *i == id).map(|(n, _)| n.clone())
        }
        fn names(&self, visit: &mut dyn FnMut(&str)) {
            self.0.keys().for_each(|name| visit(name));
        }
    }

    impl Fixture {
        /// Topic `t` (id 7) with `partitions` partitions.
        pub fn one_topic(partitions: i32) -> Self {
            Fixture([("t".to_owned(), (Uuid::from_u128(7), partitions))].into())
        }
    }

    /// A join of `member` subscribing to `t`.
    pub fn join_of(member: &str) -> Heartbeat {
        Heartbeat {
            member_id: member.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 10_000,
            subscribed_topic_names: Some(vec!["t".into()]),
            owned: Some(Assignment::new()),
            session_timeout: Duration::from_secs(45),
            ..Heartbeat::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::{Fixture, join_of as join};
    use super::*;

    fn topics(partitions: i32) -> Fixture {
        Fixture::one_topic(partitions)
    }

    fn topic() -> Uuid {
        Uuid::from_u128(7)
    }

    fn beat(member: &str, epoch: i32, owned: Option<&[i32]>) -> Heartbeat {
        Heartbeat {
            member_id: member.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: -1,
            owned: owned.map(of),
            session_timeout: Duration::from_secs(45),
            ..Heartbeat::default()
        }
    }

    fn of(partitions: &[i32]) -> Assignment {
        collect(partitions.iter().map(|p| (topic(), *p)))
    }

    fn owned(answer: &Answer) -> Vec<i32> {
        let assignment = answer.assignment.as_ref().expect("an assignment");
        assignment
            .get(&topic())
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Heartbeats `member` (owning what it was last told) until its answer is stable at the group's
    /// assignment epoch: what a client does. Returns its partitions and epoch.
    fn settle(group: &mut Group, t: &Fixture, member: &str, now: Instant) -> (Vec<i32>, i32) {
        let mut epoch = group.members[member].epoch;
        let mut mine: Vec<i32> = partitions(&group.members[member].assigned).map(|(_, p)| p).collect();
        for _ in 0..10 {
            let answer = group.heartbeat(beat(member, epoch, Some(&mine)), t, now).unwrap();
            epoch = answer.member_epoch;
            if answer.assignment.is_some() {
                mine = owned(&answer);
            }
        }
        (mine, epoch)
    }

    fn classic(member: &str, assigned: &[i32]) -> ClassicMember {
        ClassicMember {
            member_id: member.into(),
            instance_id: None,
            client_id: "rdkafka".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(60),
            protocols: vec![("range".into(), Bytes::from_static(b"metadata"))],
            subscribed: vec!["t".into()],
            assigned: of(assigned),
        }
    }

    fn classic_join(member: &str, owned: &[i32]) -> ClassicJoin {
        let m = classic(member, &[]);
        ClassicJoin {
            member_id: m.member_id,
            instance_id: None,
            client_id: m.client_id,
            client_host: m.client_host,
            session_timeout: m.session_timeout,
            rebalance_timeout: m.rebalance_timeout,
            protocols: m.protocols,
            subscribed: m.subscribed,
            owned: of(owned),
        }
    }

    fn mine(group: &Group, member: &str) -> Vec<i32> {
        partitions(&group.members[member].assigned).map(|(_, p)| p).collect()
    }

    /// What a classic cooperative consumer does until its Heartbeat is answered without an error: rejoin
    /// owning what it was last synced, then sync. Returns its partitions and generation.
    fn settle_classic(group: &mut Group, t: &Fixture, member: &str, now: Instant) -> (Vec<i32>, i32) {
        let mut generation = group.members[member].epoch;
        let mut owns = mine(group, member);
        for _ in 0..10 {
            match group.classic_heartbeat(member, generation, now) {
                Ok(()) => return (owns, generation),
                Err(error) => assert_eq!(error, ResponseError::RebalanceInProgress),
            }
            generation = group.classic_join(classic_join(member, &owns), t, now).unwrap();
            let (assigned, protocol) = group.classic_sync(member, generation, now).unwrap();
            assert_eq!(protocol, "range");
            owns = partitions(&assigned).map(|(_, p)| p).collect();
        }
        panic!("{member} did not settle");
    }

    #[test]
    fn classic_members_upgraded_into_a_consumer_group_keep_their_partitions_and_revoke_by_rejoining() {
        let (t, now) = (topics(6), Instant::now());
        let mut group = Group::from_classic(vec![classic("a", &[0, 1, 2]), classic("b", &[3, 4, 5])], 4, &t, now);
        assert_eq!((group.epoch, group.assignment_epoch, group.state()), (4, 4, "Stable"));
        assert_eq!(group.classic_heartbeat("a", 4, now), Ok(()), "nothing moved");
        assert_eq!(
            group.classic_heartbeat("a", 3, now),
            Err(ResponseError::IllegalGeneration)
        );

        // A consumer-protocol member joins: its target is one partition of each classic member, which it
        // gets once they have revoked them, by rejoining.
        let c = group.heartbeat(join("c"), &t, now).unwrap();
        assert_eq!((c.member_epoch, owned(&c)), (5, vec![]));
        assert_eq!(
            group.classic_heartbeat("a", 4, now),
            Err(ResponseError::RebalanceInProgress)
        );
        let (a, a_generation) = settle_classic(&mut group, &t, "a", now);
        let (b, _) = settle_classic(&mut group, &t, "b", now);
        let (c, _) = settle(&mut group, &t, "c", now);
        assert_eq!((a.len(), b.len(), c.len()), (2, 2, 2));
        assert_eq!(a_generation, 5);
        let mut all: Vec<i32> = a.iter().chain(&b).chain(&c).copied().collect();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4, 5]);
        assert!(a.iter().all(|p| [0, 1, 2].contains(p)) && b.iter().all(|p| [3, 4, 5].contains(p)));
        assert_eq!(group.state(), "Stable");
        // A classic member commits with its generation, at any OffsetCommit version.
        assert_eq!(group.check_commit("a", 5, 2), Ok(()));
        assert_eq!(group.check_commit("a", 4, 2), Err(ResponseError::IllegalGeneration));

        // The consumer-protocol member leaves: only classic members are left, the group may be classic again.
        assert!(group.classic_members().is_none());
        group.heartbeat(beat("c", LEAVE_EPOCH, None), &t, now).unwrap();
        let members = group.classic_members().unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(partitions(&members[0].assigned).count(), 2);
    }

    #[test]
    fn a_classic_member_joins_a_consumer_group_and_an_eager_one_that_revoked_everything_moves_on_at_once() {
        let (t, now) = (topics(4), Instant::now());
        let mut group = Group::new(now);
        group.heartbeat(join("a"), &t, now).unwrap();
        let (a, _) = settle(&mut group, &t, "a", now);
        assert_eq!(a, vec![0, 1, 2, 3]);
        assert_eq!(
            group.classic_join(classic_join("a", &[]), &t, now).unwrap_err().0,
            ResponseError::UnknownMemberId,
            "a JoinGroup cannot take a consumer-protocol member's id"
        );
        // b joins the classic way: nothing is free until a has revoked.
        let generation = group.classic_join(classic_join("b", &[]), &t, now).unwrap();
        assert_eq!(generation, 2);
        assert_eq!(group.classic_sync("b", generation, now).unwrap().0, Assignment::new());
        assert_eq!(
            group.classic_sync("b", 1, now).unwrap_err(),
            ResponseError::IllegalGeneration
        );
        assert_eq!(
            group.classic_sync("z", 2, now).unwrap_err(),
            ResponseError::UnknownMemberId
        );
        assert_eq!(group.classic_heartbeat("b", 2, now), Ok(()), "waiting for a");
        let (a, _) = settle(&mut group, &t, "a", now);
        assert_eq!(a.len(), 2);
        assert_eq!(
            group.classic_heartbeat("b", 2, now),
            Err(ResponseError::RebalanceInProgress),
            "its partitions were released"
        );
        // An eager consumer rejoins owning nothing: it gets the two free ones.
        let generation = group.classic_join(classic_join("b", &[]), &t, now).unwrap();
        let (b, _) = group.classic_sync("b", generation, now).unwrap();
        assert_eq!(partitions(&b).count(), 2);
        assert_eq!(group.classic_heartbeat("b", generation, now), Ok(()));
        // A member whose target shrinks and that revoked everything before rejoining (eager) moves on
        // in the same JoinGroup.
        group.heartbeat(join("c"), &t, now).unwrap();
        assert_eq!(
            group.classic_heartbeat("b", generation, now),
            Err(ResponseError::RebalanceInProgress)
        );
        let next = group.classic_join(classic_join("b", &[]), &t, now).unwrap();
        assert_eq!(next, group.assignment_epoch);
        assert_eq!(group.members["b"].state, MemberState::Stable);
        assert_eq!(
            group.classic_leave("", Some("none"), now),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(group.classic_leave("a", None, now), Err(ResponseError::UnknownMemberId));
        assert_eq!(group.classic_leave("b", None, now), Ok("b".to_owned()));
        assert!(!group.has_member("b"));
    }

    #[test]
    fn a_join_bumps_the_group_epoch_and_a_lone_member_gets_everything() {
        let (t, now) = (topics(4), Instant::now());
        let mut group = Group::new(now);
        let answer = group.heartbeat(join("a"), &t, now).unwrap();
        assert_eq!(answer.member_epoch, 1);
        assert_eq!(owned(&answer), vec![0, 1, 2, 3]);
        assert_eq!(group.state(), "Stable");
        let again = group.heartbeat(beat("a", 1, None), &t, now).unwrap();
        assert_eq!(again.assignment, None, "unchanged: no assignment");
    }

    #[test]
    fn partitions_move_only_after_their_owner_revoked_them() {
        let (t, now) = (topics(6), Instant::now());
        let mut group = Group::new(now);
        let a = group.heartbeat(join("a"), &t, now).unwrap();
        assert_eq!(owned(&a), vec![0, 1, 2, 3, 4, 5]);
        // b joins: its target is half of a's partitions, which a still owns.
        let b = group.heartbeat(join("b"), &t, now).unwrap();
        assert_eq!(b.member_epoch, 2);
        assert_eq!(owned(&b), Vec::<i32>::new(), "nothing free yet");
        assert_eq!(group.state(), "Reconciling");
        // a is told to keep three; its epoch stays until it has revoked.
        let a = group.heartbeat(beat("a", 1, None), &t, now).unwrap();
        assert_eq!(a.member_epoch, 1);
        let kept = owned(&a);
        assert_eq!(kept.len(), 3);
        // b still gets nothing: a has not confirmed.
        let b = group.heartbeat(beat("b", 2, Some(&[])), &t, now).unwrap();
        assert_eq!(b.assignment, None, "unchanged: still nothing");
        // a confirms; then b gets the other three.
        let a = group.heartbeat(beat("a", 1, Some(&kept)), &t, now).unwrap();
        assert_eq!(a.member_epoch, 2);
        let b = group.heartbeat(beat("b", 2, None), &t, now).unwrap();
        let mut all = owned(&b);
        assert_eq!(all.len(), 3);
        all.extend(kept);
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(group.state(), "Stable");
    }

    #[test]
    fn three_members_share_six_partitions_and_a_leaver_s_partitions_go_to_the_others() {
        let (t, now) = (topics(6), Instant::now());
        let mut group = Group::new(now);
        for m in ["a", "b", "c"] {
            group.heartbeat(join(m), &t, now).unwrap();
        }
        let mut held = BTreeMap::new();
        for _ in 0..3 {
            for m in ["a", "b", "c"] {
                held.insert(m, settle(&mut group, &t, m, now).0);
            }
        }
        assert!(held.values().all(|p| p.len() == 2), "{held:?}");
        let epoch = group.members["c"].epoch;
        group.heartbeat(beat("c", LEAVE_EPOCH, None), &t, now).unwrap();
        for m in ["a", "b"] {
            let (mine, _) = settle(&mut group, &t, m, now);
            assert_eq!(mine.len(), 3);
            assert!(held[m].iter().all(|p| mine.contains(p)), "{m} kept its partitions");
        }
        assert_eq!(
            group.heartbeat(beat("c", epoch, None), &t, now).unwrap_err().0,
            ResponseError::UnknownMemberId
        );
    }

    #[test]
    fn stale_and_future_epochs_are_fenced_but_a_missed_answer_is_not() {
        let (t, now) = (topics(2), Instant::now());
        let mut group = Group::new(now);
        group.heartbeat(join("a"), &t, now).unwrap();
        let fenced = |r: Result<Answer, Refusal>| r.unwrap_err().0;
        assert_eq!(
            fenced(group.heartbeat(beat("a", 5, None), &t, now)),
            ResponseError::FencedMemberEpoch
        );
        // b joins; a reconciles to epoch 2 (losing partition 1), then b to 2.
        group.heartbeat(join("b"), &t, now).unwrap();
        let (a_owns, a_epoch) = settle(&mut group, &t, "a", now);
        assert_eq!((a_owns.len(), a_epoch), (1, 2));
        // The answer that moved a to epoch 2 was lost: a at epoch 1 owning a subset is accepted...
        assert!(group.heartbeat(beat("a", 1, Some(&a_owns)), &t, now).is_ok());
        // ...but not owning more than it has, nor an epoch older than that.
        assert_eq!(
            fenced(group.heartbeat(beat("a", 1, Some(&[0, 1])), &t, now)),
            ResponseError::FencedMemberEpoch
        );
        assert_eq!(
            group.check_member_epoch("b", 1, false),
            Err(ResponseError::StaleMemberEpoch)
        );
        assert_eq!(group.check_member_epoch("a", 2, false), Ok(()));
        group.heartbeat(beat("a", LEAVE_EPOCH, None), &t, now).unwrap();
        assert_eq!(
            fenced(group.heartbeat(beat("a", 2, None), &t, now)),
            ResponseError::UnknownMemberId,
            "a left"
        );
        assert_eq!(
            fenced(group.heartbeat(beat("z", 1, None), &t, now)),
            ResponseError::UnknownMemberId
        );
    }

    #[test]
    fn a_member_that_misses_its_session_is_removed_and_its_partitions_reassigned() {
        let (t, now) = (topics(4), Instant::now());
        let mut group = Group::new(now);
        group.heartbeat(join("a"), &t, now).unwrap();
        group.heartbeat(join("b"), &t, now).unwrap();
        settle(&mut group, &t, "a", now);
        settle(&mut group, &t, "b", now);
        let later = now + Duration::from_secs(30);
        settle(&mut group, &t, "a", later);
        assert_eq!(group.expire(now + Duration::from_secs(50)), vec!["b".to_owned()]);
        let (mine, _) = settle(&mut group, &t, "a", now + Duration::from_secs(50));
        assert_eq!(mine, vec![0, 1, 2, 3]);
    }

    fn static_join(member: &str, instance: &str) -> Heartbeat {
        Heartbeat {
            instance_id: Some(instance.into()),
            ..join(member)
        }
    }

    fn static_beat(member: &str, instance: &str, epoch: i32, owned: Option<&[i32]>) -> Heartbeat {
        Heartbeat {
            instance_id: Some(instance.into()),
            ..beat(member, epoch, owned)
        }
    }

    #[test]
    fn a_static_member_that_leaves_for_a_while_keeps_its_place_and_its_successor_takes_it() {
        let (t, now) = (topics(4), Instant::now());
        let mut group = Group::new(now);
        group.heartbeat(join("a"), &t, now).unwrap();
        group.heartbeat(static_join("b", "pod-b"), &t, now).unwrap();
        for _ in 0..2 {
            settle(&mut group, &t, "a", now);
            let epoch = group.members["b"].epoch;
            let mine: Vec<i32> = partitions(&group.members["b"].assigned).map(|(_, p)| p).collect();
            group
                .heartbeat(static_beat("b", "pod-b", epoch, Some(&mine)), &t, now)
                .unwrap();
        }
        let (a_owns, a_epoch) = settle(&mut group, &t, "a", now);
        let b_owns: Vec<i32> = partitions(&group.members["b"].assigned).map(|(_, p)| p).collect();
        assert_eq!((a_owns.len(), b_owns.len()), (2, 2));
        let group_epoch = group.epoch;

        // b leaves for a while: nothing moves, nobody's epoch changes.
        let left = group
            .heartbeat(static_beat("b", "pod-b", LEAVE_STATIC_EPOCH, None), &t, now)
            .unwrap();
        assert_eq!(left.member_epoch, LEAVE_STATIC_EPOCH);
        assert_eq!(group.epoch, group_epoch);
        assert_eq!(
            settle(&mut group, &t, "a", now),
            (a_owns.clone(), a_epoch),
            "a is undisturbed"
        );

        // Another process with b's instance id takes b's place and partitions, without a rebalance.
        let back = group.heartbeat(static_join("b2", "pod-b"), &t, now).unwrap();
        assert_eq!(owned(&back), b_owns);
        assert_eq!(back.member_epoch, group.assignment_epoch);
        assert_eq!(group.epoch, group_epoch);
        assert!(!group.has_member("b"));
        assert_eq!(settle(&mut group, &t, "a", now), (a_owns, a_epoch));
        assert_eq!(
            group
                .heartbeat(static_beat("b", "pod-b", 1, None), &t, now)
                .unwrap_err()
                .0,
            ResponseError::FencedInstanceId,
            "the process it replaced"
        );
        // A third process while b2 is live is refused; so is an instance id nobody holds.
        assert_eq!(
            group.heartbeat(static_join("b3", "pod-b"), &t, now).unwrap_err().0,
            ResponseError::UnreleasedInstanceId
        );
        assert_eq!(
            group
                .heartbeat(static_beat("c", "pod-c", 1, None), &t, now)
                .unwrap_err()
                .0,
            ResponseError::UnknownMemberId
        );
        assert_eq!(
            group
                .heartbeat(beat("a", LEAVE_STATIC_EPOCH, None), &t, now)
                .unwrap_err()
                .0,
            ResponseError::InvalidRequest,
            "-2 without an instance id"
        );
    }

    #[test]
    fn a_static_member_that_does_not_come_back_within_its_session_is_removed() {
        let (t, now) = (topics(2), Instant::now());
        let mut group = Group::new(now);
        group.heartbeat(join("a"), &t, now).unwrap();
        group.heartbeat(static_join("b", "pod-b"), &t, now).unwrap();
        settle(&mut group, &t, "a", now);
        group
            .heartbeat(static_beat("b", "pod-b", LEAVE_STATIC_EPOCH, None), &t, now)
            .unwrap();
        let later = now + Duration::from_secs(30);
        settle(&mut group, &t, "a", later);
        assert!(!group.has_expired(later), "b's partition waits for it");
        let past = now + Duration::from_secs(46);
        assert_eq!(group.expire(past), vec!["b".to_owned()]);
        assert_eq!(settle(&mut group, &t, "a", past).0, vec![0, 1]);
    }

    #[test]
    fn a_regex_subscribes_to_every_matching_topic_as_topics_come_and_go() {
        let now = Instant::now();
        let (t1, t2, other) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let mut t = Fixture(
            [
                ("orders-eu".to_owned(), (t1, 2)),
                ("orders".to_owned(), (other, 1)),
                ("audit".to_owned(), (other, 1)),
            ]
            .into(),
        );
        let mut group = Group::new(now);
        let join = Heartbeat {
            subscribed_topic_names: Some(vec![]),
            subscribed_topic_regex: Some("orders-.*".into()),
            ..join("a")
        };
        let answer = group.heartbeat(join, &t, now).unwrap();
        assert_eq!(
            answer.assignment,
            Some([(t1, [0, 1].into())].into()),
            "whole names only"
        );
        assert_eq!(group.subscribed_topics(), ["orders-eu".to_owned()].into());
        // A matching topic is created: the next heartbeat bumps the epoch and assigns it.
        t.0.insert("orders-us".into(), (t2, 1));
        let epoch = group.epoch;
        let answer = group.heartbeat(beat("a", answer.member_epoch, None), &t, now).unwrap();
        assert_eq!(group.epoch, epoch + 1);
        assert_eq!(answer.assignment, Some([(t1, [0, 1].into()), (t2, [0].into())].into()));
        // It is deleted: its partitions are revoked.
        t.0.remove("orders-us");
        let answer = group.heartbeat(beat("a", answer.member_epoch, None), &t, now).unwrap();
        assert_eq!(answer.assignment, Some([(t1, [0, 1].into())].into()));
        // An invalid regex changes nothing.
        let bad = Heartbeat {
            subscribed_topic_regex: Some("orders-(".into()),
            ..beat("a", answer.member_epoch, None)
        };
        let refused = group.heartbeat(bad, &t, now).unwrap_err();
        assert_eq!(refused.0, ResponseError::InvalidRegularExpression, "{}", refused.1);
        assert_eq!(group.members["a"].regex.as_deref(), Some("orders-.*"));
        // A new coordinator reading the group back knows what the regex matched, without a new epoch.
        let records = records::diff("g", None, Some(&group));
        let mut loader = records::Loader::default();
        for (key, value) in records {
            loader.replay(key, value);
        }
        let (_, mut back) = loader.finish(now, Duration::from_secs(45)).pop().unwrap();
        assert_eq!(back.subscribed_topics(), group.subscribed_topics());
        let epoch = back.epoch;
        back.heartbeat(beat("a", back.members["a"].epoch, None), &t, now)
            .unwrap();
        assert_eq!(back.epoch, epoch);
    }

    #[test]
    fn requests_kafka_refuses_are_refused() {
        let (t, now) = (topics(1), Instant::now());
        let mut group = Group::new(now);
        let refused = |group: &mut Group, h: Heartbeat| group.heartbeat(h, &t, now).unwrap_err().0;
        let mut h = join("a");
        h.server_assignor = Some("sticky".into());
        assert_eq!(refused(&mut group, h), ResponseError::UnsupportedAssignor);
        let mut h = join("a");
        h.subscribed_topic_regex = Some("t(".into());
        assert_eq!(refused(&mut group, h), ResponseError::InvalidRegularExpression);
        let mut h = join("a");
        h.subscribed_topic_names = None;
        assert_eq!(refused(&mut group, h), ResponseError::InvalidRequest);
        assert_eq!(refused(&mut group, join("")), ResponseError::InvalidRequest);
        assert!(group.is_empty());
    }

    #[test]
    fn uniform_is_balanced_and_sticky_at_scale_and_with_different_subscriptions() {
        let (t1, t2) = ((Uuid::from_u128(1), 1000), (Uuid::from_u128(2), 10));
        let names: Vec<String> = (0..100).map(|i| format!("m{i:03}")).collect();
        let subscriptions: BTreeMap<&str, Vec<(Uuid, i32)>> = names.iter().map(|m| (m.as_str(), vec![t1])).collect();
        let first = assign_uniform(&subscriptions, &BTreeMap::new());
        let sizes: Vec<usize> = first.values().map(|a| partitions(a).count()).collect();
        assert_eq!((sizes.iter().min(), sizes.iter().max()), (Some(&10), Some(&10)));
        assert_eq!(
            assign_uniform(&subscriptions, &first),
            first,
            "nothing moves when nothing changed"
        );
        // One member more: each of the others gives up at most one partition, keeping the rest.
        let mut more = subscriptions.clone();
        more.insert("new", vec![t1]);
        let second = assign_uniform(&more, &first);
        for (member, had) in &first {
            let kept = partitions(&second[member]).filter(|tp| contains(had, *tp)).count();
            assert!(kept >= 9, "{member} kept {kept}");
        }
        assert!(partitions(&second["new"]).count() >= 9);
        // Different subscriptions: t2's partitions go to the one member that takes them; balanced otherwise.
        let mixed: BTreeMap<&str, Vec<(Uuid, i32)>> = [("x", vec![t2]), ("y", vec![t1, t2])].into();
        let target = assign_uniform(&mixed, &BTreeMap::new());
        assert_eq!(partitions(&target["x"]).count(), 10);
        assert_eq!(partitions(&target["y"]).count(), 1000);
    }

    #[test]
    fn a_new_partition_bumps_the_epoch_and_range_assigns_ranges() {
        let now = Instant::now();
        let mut group = Group::new(now);
        let mut a = join("a");
        a.server_assignor = Some("range".into());
        group.heartbeat(a, &topics(2), now).unwrap();
        let mut b = join("b");
        b.server_assignor = Some("range".into());
        group.heartbeat(b, &topics(2), now).unwrap();
        let epoch = group.epoch;
        let t = topics(5);
        settle(&mut group, &t, "a", now);
        assert_eq!(group.epoch, epoch + 1, "the partition count changed");
        assert_eq!(group.assignor, "range");
        assert_eq!(group.target["a"][&topic()], [0, 1, 2].into());
        assert_eq!(group.target["b"][&topic()], [3, 4].into());
    }
}
