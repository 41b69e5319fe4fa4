//! Share groups (KIP-932, "queues for Kafka"): many members consume the same partitions, each record goes to
//! one member at a time and is acknowledged one by one.
//!
//! - [`group`]: membership (ShareGroupHeartbeat), kept by the group's coordinator: every member is
//!   assigned every partition of the topics it subscribes to.
//! - [`session`]: share sessions, kept by each partition leader: which partitions a member fetches from.
//! - [`partition`]: one share-partition's in-flight records and their states, kept by the partition's
//!   leader.
//! - [`state`]: the share coordinator's store of share-partition states in `__share_group_state`, and
//!   [`persister`], through which a partition leader reads and writes them (KIP-932's persister).
//! - [`dead_letters`]: copies of records archived without being accepted, to the group's dead-letter
//!   topic.
//!
//! [`Shares`] holds them for one broker. A share-partition lives in the memory of the partition's leader,
//! loaded from its durable state when the leader first serves it at a leader epoch, and written back before
//! any acknowledgement is answered: a new leader hands out again what was in flight, never what was
//! acknowledged.

pub mod dead_letters;
pub mod group;
pub mod partition;
pub mod persister;
pub mod session;
pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use strata_controller::{ConfigResource, MetadataImage};
use strata_storage::TopicPartition;

use self::dead_letters::DeadLetters;
use self::group::ShareGroups;
use self::partition::{MemberId, SharePartition, ShareSettings};
use self::session::ShareSessions;
use crate::settings::BrokerSettings;

/// The most share-partitions one broker keeps, over all groups: a bound on what clients can make it hold.
pub const SHARE_PARTITIONS_MAX: usize = 100_000;

/// A share-partition as its leader keeps it.
#[derive(Debug)]
pub struct ShareSlot {
    /// The partition's leader epoch this state was loaded at: served at a later epoch, it is loaded again.
    pub leader_epoch: i32,
    /// The state epoch it was loaded at: an administrator's change moves the durable state's on, and the
    /// state is loaded again.
    pub state_epoch: i32,
    /// The state, behind a lock held while the log is read and records are acquired (never across an await).
    pub state: Mutex<SharePartition>,
    /// Held while a snapshot is taken and written, so that writes reach the coordinator in order; holds the
    /// number of the last change a written snapshot carries.
    pub writes: tokio::sync::Mutex<u64>,
    /// Changes to persist, numbered under the state lock (see [`ShareSlot::changed`]).
    pub changes: std::sync::atomic::AtomicU64,
}

impl ShareSlot {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, SharePartition> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Numbers a change to persist. Called with the state lock held (`_state`), so that a snapshot taken
    /// under the lock carries every change numbered up to [`ShareSlot::changes`] as read under it.
    pub fn changed(&self, _state: &SharePartition) -> u64 {
        self.changes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
    }
}

pub type SharedPartition = Arc<ShareSlot>;

/// One broker's share groups, sessions and share-partitions.
#[derive(Debug)]
pub struct Shares {
    pub groups: ShareGroups,
    pub sessions: ShareSessions,
    pub dead_letters: DeadLetters,
    /// The share coordinator's store, for the partitions of `__share_group_state` this broker leads.
    pub state: state::ShareStateStore,
    /// Connections to other brokers' share coordinators.
    pub coordinators: persister::Connections,
    partitions: Mutex<HashMap<(String, TopicPartition), SharedPartition>>,
}

/// Where a share group starts reading a partition it has not read before (`share.auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOffsetReset {
    Latest,
    Earliest,
}

impl Shares {
    pub fn new(settings: &BrokerSettings) -> Self {
        Self {
            groups: ShareGroups::default(),
            sessions: ShareSessions::new(settings.share.max_share_sessions),
            dead_letters: DeadLetters::default(),
            state: Default::default(),
            coordinators: Default::default(),
            partitions: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, TopicPartition), SharedPartition>> {
        self.partitions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Installs `fresh` as `group`'s share-partition of `tp` at `leader_epoch` and `state_epoch`, unless one
    /// is there at those epochs already (another request loaded it first), which is returned instead. `None`
    /// when the broker holds [`SHARE_PARTITIONS_MAX`] already.
    pub fn install(
        &self,
        group: &str,
        tp: &TopicPartition,
        (leader_epoch, state_epoch): (i32, i32),
        fresh: SharePartition,
    ) -> Option<SharedPartition> {
        let mut partitions = self.lock();
        let key = (group.to_owned(), tp.clone());
        match partitions.get(&key) {
            Some(found) if (found.leader_epoch, found.state_epoch) >= (leader_epoch, state_epoch) => {
                return Some(found.clone());
            }
            Some(_) => {}
            None if partitions.len() >= SHARE_PARTITIONS_MAX => return None,
            None => {}
        }
        let slot = Arc::new(ShareSlot {
            leader_epoch,
            state_epoch,
            state: Mutex::new(fresh),
            writes: tokio::sync::Mutex::new(0),
            changes: std::sync::atomic::AtomicU64::new(0),
        });
        partitions.insert(key, slot.clone());
        Some(slot)
    }

    /// Drops `slot` as `group`'s share-partition of `tp` (its state is stale), unless another replaced it.
    pub fn forget(&self, group: &str, tp: &TopicPartition, slot: &SharedPartition) {
        let mut partitions = self.lock();
        let key = (group.to_owned(), tp.clone());
        if partitions.get(&key).is_some_and(|found| Arc::ptr_eq(found, slot)) {
            partitions.remove(&key);
        }
    }

    /// `group`'s share-partition of `tp`, if it has one.
    pub fn get(&self, group: &str, tp: &TopicPartition) -> Option<SharedPartition> {
        self.lock().get(&(group.to_owned(), tp.clone())).cloned()
    }

    /// Every share-partition of `group`.
    pub fn of_group(&self, group: &str) -> Vec<(TopicPartition, SharedPartition)> {
        let mut found: Vec<_> = self
            .lock()
            .iter()
            .filter(|((g, _), _)| g == group)
            .map(|((_, tp), p)| (tp.clone(), p.clone()))
            .collect();
        found.sort_by(|a, b| (&a.0.topic, a.0.partition).cmp(&(&b.0.topic, b.0.partition)));
        found
    }

    /// Forgets `group`'s share-partitions (the group was deleted).
    pub fn forget_group(&self, group: &str) {
        self.lock().retain(|(g, _), _| g != group);
    }

    /// `member` left `group` or its session ended: its share sessions close and the records it held are
    /// available to the others at once.
    pub fn member_gone(&self, group: &str, member: &MemberId) {
        self.sessions.close_member(group, member);
        for (_, partition) in self.of_group(group) {
            partition.lock().release_member(member);
        }
    }
}

/// The share settings of `group`: the broker's, under the group's own configs.
pub fn settings_of(settings: &BrokerSettings, image: &MetadataImage, group: &str) -> (ShareSettings, Duration) {
    let configs = image.configs(&ConfigResource::Group(group.to_owned()));
    let own = |key: &str| configs.and_then(|c| c.get(key)).and_then(|v| v.parse::<u64>().ok());
    let share = &settings.share;
    let lock_ms = own("share.record.lock.duration.ms").unwrap_or(share.record_lock_duration_ms);
    let session_ms = own("share.session.timeout.ms").unwrap_or(share.session_timeout_ms);
    (
        ShareSettings {
            lock_duration: Duration::from_millis(lock_ms),
            delivery_limit: share.delivery_count_limit,
            max_in_flight: share.partition_max_record_locks,
        },
        Duration::from_millis(session_ms),
    )
}

/// `group`'s heartbeat interval in milliseconds.
pub fn heartbeat_interval_ms(settings: &BrokerSettings, image: &MetadataImage, group: &str) -> i32 {
    let configs = image.configs(&ConfigResource::Group(group.to_owned()));
    configs
        .and_then(|c| c.get("share.heartbeat.interval.ms"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(settings.share.heartbeat_interval_ms)
}

/// `group`'s `share.auto.offset.reset` (latest unless the group says otherwise).
pub fn auto_offset_reset(image: &MetadataImage, group: &str) -> AutoOffsetReset {
    let configs = image.configs(&ConfigResource::Group(group.to_owned()));
    match configs
        .and_then(|c| c.get("share.auto.offset.reset"))
        .map(String::as_str)
    {
        Some("earliest") => AutoOffsetReset::Earliest,
        _ => AutoOffsetReset::Latest,
    }
}

/// `group`'s dead-letter topic (`errors.deadletterqueue.topic.name`), if it has one.
pub fn dead_letter_topic(image: &MetadataImage, group: &str) -> Option<String> {
    image
        .configs(&ConfigResource::Group(group.to_owned()))
        .and_then(|c| c.get(crate::dynamic::SHARE_DEAD_LETTER_TOPIC))
        .cloned()
}

// For the admin APIs (DeleteShareGroupOffsets, ListGroups): kept apart from the rest of `Shares`.
impl Shares {
    /// Forgets `group`'s share-partitions of `topic`; returns how many there were.
    pub fn forget_topic(&self, group: &str, topic: &str) -> usize {
        let mut partitions = self.lock();
        let before = partitions.len();
        partitions.retain(|(g, tp), _| !(g == group && tp.topic == topic));
        before - partitions.len()
    }

    /// The ids of the groups with share-partitions here, with or without members, sorted.
    pub fn group_ids_with_partitions(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().keys().map(|(g, _)| g.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }
}
