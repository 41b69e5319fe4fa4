//! The control logic: what a metadata request, or a broker's loss or return, does to the metadata, computed
//! as records from an image.
//!
//! Every function here is pure: it reads a [`MetadataImage`] and returns a [`ControllerResult`] (Kafka's
//! `ControllerResult`), the records to commit and the answer for the requester, or a typed error and no
//! records. Nothing here changes an image, talks to the network or to openraft: the caller proposes the
//! records as one batch, and the change exists once the state machine has replayed it. Checks mirror those of
//! replay ([`crate::delta`]) so that a committed batch is never refused.
//!
//! Time and randomness come from the caller: `liveness` is told the time, and callers choose new topic ids;
//! nothing here decodes requests. Everything stays deterministic and testable.
//!
//! - [`placement`]: replicas and preferred leaders of new partitions, spread over live brokers and racks.
//! - [`topics`]: CreateTopics, CreatePartitions (placed, or as a manual assignment asks), DeleteTopics.
//! - [`brokers`]: fencing and unfencing, with the leader elections they cause.
//! - [`election`]: choosing a leader from an ISR, and the preferred leader rebalance.
//! - [`registration`]: BrokerRegistration: a broker's new run, registered fenced.
//! - [`changes`]: settings changes, and ISR changes asked for by partition leaders (AlterPartition).
//! - [`liveness`]: heartbeats and sessions (in memory, active controller only), and the fence and unfence
//!   records they lead to.

pub mod brokers;
pub mod changes;
pub mod election;
pub mod liveness;
pub mod placement;
pub mod registration;
pub mod topics;

#[cfg(test)]
pub(crate) mod testing;

use crate::image::{BrokerId, ConfigResource, MetadataImage};
use crate::proto::metadata::{MetadataRecord, metadata_record::Record};

pub use brokers::{BrokerError, fence_broker, unfence_broker};
pub use changes::{AlterPartition, AlterPartitionError, ConfigError, alter_partition, set_configs};
pub use election::preferred_leader_elections;
pub use placement::{PlacementError, place_replicas};
pub use topics::{
    CreatePartitionsError, CreateTopicError, DeleteTopicError, create_partitions, create_partitions_assigned,
    create_topic, create_topic_assigned, delete_topic,
};

/// Kafka's topic setting (and broker default) that allows electing a leader outside the ISR, losing data.
pub const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// Records to commit as one batch, and the answer to give once they are committed (Kafka's
/// `ControllerResult`). The answer is only true after the records are applied: send it then, not before.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerResult<T = ()> {
    pub records: Vec<MetadataRecord>,
    pub response: T,
}

impl<T> ControllerResult<T> {
    pub fn new(records: Vec<MetadataRecord>, response: T) -> Self {
        Self { records, response }
    }
}

pub(crate) fn record(record: Record) -> MetadataRecord {
    MetadataRecord { record: Some(record) }
}

/// A broker that may hold replicas and lead: registered and not fenced.
pub(crate) fn is_live(image: &MetadataImage, id: BrokerId) -> bool {
    image.broker(id).is_some_and(|broker| !broker.fenced)
}

/// Whether `topic` allows unclean leader election: its own setting, else the cluster-wide broker default
/// (resource `""`), else Kafka's default, false. A value that is not `true`/`false` counts as false, the safe
/// side: an unclean election loses committed records.
pub fn unclean_leader_election_enabled(image: &MetadataImage, topic: &str) -> bool {
    [
        ConfigResource::Topic(topic.to_owned()),
        ConfigResource::Broker(String::new()),
    ]
    .iter()
    .find_map(|resource| image.configs(resource)?.get(UNCLEAN_LEADER_ELECTION_ENABLE))
    .is_some_and(|value| value.eq_ignore_ascii_case("true"))
}
