//! Settings changes (AlterConfigs, IncrementalAlterConfigs) and ISR changes requested by partition leaders
//! (Kafka's AlterPartition).

use std::collections::BTreeMap;

use crate::control::{ControllerResult, is_live, record};
use crate::image::{BrokerId, ConfigResource, MetadataImage, TopicId};
use crate::proto::metadata::{BrokerIds, ConfigRecord, ConfigResourceType, PartitionChange, metadata_record::Record};

/// Why a settings change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    /// Kafka's INVALID_CONFIG: an empty key.
    #[error("a setting needs a name")]
    EmptyKey,
    /// Kafka's INVALID_GROUP_ID: group configs belong to a named group.
    #[error("a group config needs a group id")]
    EmptyGroupId,
}

impl ConfigError {
    /// The Kafka error code a client sees.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            Self::UnknownTopic(_) => 3,
            Self::EmptyKey => 40,
            Self::EmptyGroupId => 24,
        }
    }
}

/// Sets `set` and removes `remove` on `resource`. Values are not judged here: the broker that took the
/// request knows the settings and checked them. Changes that change nothing give no records.
pub fn set_configs(
    image: &MetadataImage,
    resource: &ConfigResource,
    set: &BTreeMap<String, String>,
    remove: &[String],
) -> Result<ControllerResult, ConfigError> {
    let (resource_type, name) = match resource {
        ConfigResource::Topic(name) => {
            if image.topic_by_name(name).is_none() {
                return Err(ConfigError::UnknownTopic(name.clone()));
            }
            (ConfigResourceType::Topic, name)
        }
        ConfigResource::Broker(name) => (ConfigResourceType::Broker, name),
        ConfigResource::Group(name) if name.is_empty() => return Err(ConfigError::EmptyGroupId),
        ConfigResource::Group(name) => (ConfigResourceType::Group, name),
    };
    if set.keys().chain(remove).any(String::is_empty) {
        return Err(ConfigError::EmptyKey);
    }
    let current = image.configs(resource);
    let value_of = |key: &str| current.and_then(|configs| configs.get(key));
    let config = |key: &str, value: Option<&String>| {
        record(Record::Config(ConfigRecord {
            resource_type: resource_type.into(),
            resource_name: name.clone(),
            key: key.to_owned(),
            value: value.cloned(),
        }))
    };
    let mut records: Vec<_> = set
        .iter()
        .filter(|(key, value)| value_of(key) != Some(*value))
        .map(|(key, value)| config(key, Some(value)))
        .collect();
    records.extend(
        remove
            .iter()
            .filter(|key| !set.contains_key(*key) && value_of(key).is_some())
            .map(|key| config(key, None)),
    );
    Ok(ControllerResult::new(records, ()))
}

/// A leader's request to change a partition's ISR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartition {
    pub broker_id: BrokerId,
    pub incarnation: u64,
    pub topic_id: TopicId,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<BrokerId>,
}

/// Why an ISR change is refused. The leader should refresh its metadata; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlterPartitionError {
    /// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
    #[error("no such partition")]
    UnknownPartition,
    /// Kafka's STALE_BROKER_EPOCH: the request comes from an earlier run of the broker.
    #[error("broker {0}: not the registered run")]
    StaleBroker(BrokerId),
    /// Kafka's NOT_LEADER_OR_FOLLOWER / FENCED_LEADER_EPOCH: the requester does not lead at this epoch.
    #[error("broker {broker_id} does not lead at epoch {leader_epoch}")]
    NotLeader { broker_id: BrokerId, leader_epoch: i32 },
    /// Kafka's INVALID_UPDATE_VERSION (95): the partition changed since the leader looked.
    #[error("partition epoch {requested} is not the current {current}")]
    StalePartitionEpoch { requested: i32, current: i32 },
    /// Kafka's INVALID_REQUEST / INELIGIBLE_REPLICA: members outside the replicas, fenced, or no leader.
    #[error("invalid ISR {0:?}")]
    InvalidIsr(Vec<BrokerId>),
}

impl AlterPartitionError {
    /// The Kafka error code a client sees.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            Self::UnknownPartition => 3,
            Self::StaleBroker(_) => 77,
            Self::NotLeader { .. } => 74,
            Self::StalePartitionEpoch { .. } => 95,
            Self::InvalidIsr(_) => 107,
        }
    }
}

/// Sets a partition's ISR as its leader asks. The ISR must hold the leader, only assigned replicas, and
/// (when growing) only live brokers; the request must come from the current run of the leader at the
/// current leader and partition epochs. Answers the new partition epoch.
pub fn alter_partition(
    image: &MetadataImage,
    request: &AlterPartition,
) -> Result<ControllerResult<i32>, AlterPartitionError> {
    let partition = image
        .partition(&request.topic_id, request.partition)
        .ok_or(AlterPartitionError::UnknownPartition)?;
    if image.broker(request.broker_id).map(|b| b.incarnation) != Some(request.incarnation) {
        return Err(AlterPartitionError::StaleBroker(request.broker_id));
    }
    if partition.leader != request.broker_id || partition.leader_epoch != request.leader_epoch {
        return Err(AlterPartitionError::NotLeader {
            broker_id: request.broker_id,
            leader_epoch: request.leader_epoch,
        });
    }
    if partition.partition_epoch != request.partition_epoch {
        return Err(AlterPartitionError::StalePartitionEpoch {
            requested: request.partition_epoch,
            current: partition.partition_epoch,
        });
    }
    let mut isr = request.isr.clone();
    isr.sort_unstable();
    isr.dedup();
    let added_dead = isr.iter().any(|id| !partition.isr.contains(id) && !is_live(image, *id));
    if !isr.contains(&request.broker_id) || isr.iter().any(|id| !partition.replicas.contains(id)) || added_dead {
        return Err(AlterPartitionError::InvalidIsr(request.isr.clone()));
    }
    // Kept in replica order, as placement wrote it.
    let isr: Vec<BrokerId> = partition
        .replicas
        .iter()
        .copied()
        .filter(|id| isr.contains(id))
        .collect();
    if isr == partition.isr {
        return Ok(ControllerResult::new(Vec::new(), partition.partition_epoch));
    }
    let change = record(Record::PartitionChange(PartitionChange {
        topic_id: request.topic_id.as_bytes().to_vec(),
        partition: request.partition,
        leader: None,
        isr: Some(BrokerIds { ids: isr }),
        replicas: None,
    }));
    Ok(ControllerResult::new(vec![change], partition.partition_epoch + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::testing::{ORDERS, apply, cluster, partition, with_orders};

    const THREE: [(BrokerId, Option<&str>); 3] = [(1, None), (2, None), (3, None)];

    #[test]
    fn configs_write_only_what_changes() {
        let image = with_orders(&cluster(&THREE), 1, 3);
        let resource = ConfigResource::Topic("orders".into());
        let set = BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]);
        let result = set_configs(&image, &resource, &set, &[]).unwrap();
        assert_eq!(result.records.len(), 1);
        let image = apply(&image, &result);
        assert_eq!(image.configs(&resource).unwrap()["retention.ms"], "1000");
        // The same again: nothing to write. Removing it: one record, and it is gone.
        assert!(set_configs(&image, &resource, &set, &[]).unwrap().records.is_empty());
        let removed = set_configs(&image, &resource, &BTreeMap::new(), &["retention.ms".into()]).unwrap();
        let image = apply(&image, &removed);
        assert!(image.configs(&resource).is_none_or(|c| !c.contains_key("retention.ms")));
        let unknown = ConfigResource::Topic("nope".into());
        assert_eq!(
            set_configs(&image, &unknown, &set, &[]).unwrap_err(),
            ConfigError::UnknownTopic("nope".into())
        );
    }

    #[test]
    fn leaders_shrink_and_grow_the_isr_at_the_current_epochs() {
        let image = with_orders(&cluster(&THREE), 1, 3);
        let p = partition(&image, 0).clone();
        let leader = p.leader;
        let incarnation = image.broker(leader).unwrap().incarnation;
        let request = AlterPartition {
            broker_id: leader,
            incarnation,
            topic_id: ORDERS,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![leader],
        };
        let shrunk = alter_partition(&image, &request).unwrap();
        let image = apply(&image, &shrunk);
        let after = partition(&image, 0).clone();
        assert_eq!(
            (after.isr.clone(), after.partition_epoch),
            (vec![leader], shrunk.response)
        );
        assert_eq!(
            after.leader_epoch, p.leader_epoch,
            "an ISR change keeps the leader epoch"
        );

        // The old partition epoch is refused; the current one grows the ISR back, in replica order.
        assert!(matches!(
            alter_partition(&image, &request),
            Err(AlterPartitionError::StalePartitionEpoch { .. })
        ));
        let grow = AlterPartition {
            partition_epoch: after.partition_epoch,
            isr: p.replicas.iter().rev().copied().collect(),
            ..request.clone()
        };
        let grown = apply(&image, &alter_partition(&image, &grow).unwrap());
        assert_eq!(partition(&grown, 0).isr, p.replicas);

        // Not the leader; an ISR without the leader; a broker outside the replicas.
        let follower = p.replicas.iter().copied().find(|&b| b != leader).unwrap();
        let not_leader = AlterPartition {
            broker_id: follower,
            incarnation: image.broker(follower).unwrap().incarnation,
            ..grow.clone()
        };
        assert!(matches!(
            alter_partition(&image, &not_leader),
            Err(AlterPartitionError::NotLeader { .. })
        ));
        let without_leader = AlterPartition {
            isr: vec![follower],
            ..grow.clone()
        };
        assert!(matches!(
            alter_partition(&image, &without_leader),
            Err(AlterPartitionError::InvalidIsr(_))
        ));
        let outsider = AlterPartition {
            isr: vec![leader, 99],
            ..grow
        };
        assert!(matches!(
            alter_partition(&image, &outsider),
            Err(AlterPartitionError::InvalidIsr(_))
        ));
    }
}
