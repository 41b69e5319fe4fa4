//! Leader election: who leads a partition given which brokers are live, and the preferred leader rebalance.
//!
//! A leader is chosen from the ISR, in replica order, so that the preferred (first) replica wins whenever it
//! can: leadership then stays where placement spread it. Only when no ISR member is live, and the topic
//! allows it, is an out-of-sync replica elected (unclean: records it lacks are lost, so the ISR becomes that
//! replica alone). This module computes `PartitionChange` records; it does not decide when brokers are live.

use crate::control::{ControllerResult, is_live, record};
use crate::image::{BrokerId, MetadataImage, NO_LEADER, Partition, TopicId};
use crate::proto::metadata::MetadataRecord;
use crate::proto::metadata::{BrokerIds, PartitionChange, metadata_record::Record};

/// The leader and ISR `partition` should have with `isr` as its in-sync replicas and `live` telling which
/// brokers may lead. A live leader still in the ISR keeps leading: moving it would only cost clients a
/// metadata refresh.
pub(crate) fn elect(
    partition: &Partition,
    isr: Vec<BrokerId>,
    live: impl Fn(BrokerId) -> bool,
    unclean_allowed: bool,
) -> (BrokerId, Vec<BrokerId>) {
    let current = partition.leader;
    if current != NO_LEADER && live(current) && isr.contains(&current) {
        return (current, isr);
    }
    let clean = partition.replicas.iter().find(|&&id| isr.contains(&id) && live(id));
    if let Some(&leader) = clean {
        return (leader, isr);
    }
    if unclean_allowed && let Some(&leader) = partition.replicas.iter().find(|&&id| live(id)) {
        return (leader, vec![leader]);
    }
    (NO_LEADER, isr)
}

/// The record moving `current` to `leader` and `isr`, with only the fields that change (a present leader
/// bumps the leader epoch on replay, so an unchanged one is left out), or none if nothing changes.
pub(crate) fn partition_change(
    topic: TopicId,
    index: i32,
    current: &Partition,
    leader: BrokerId,
    isr: Vec<BrokerId>,
) -> Option<MetadataRecord> {
    let leader = (leader != current.leader).then_some(leader);
    let isr = (isr != current.isr).then_some(BrokerIds { ids: isr });
    if leader.is_none() && isr.is_none() {
        return None;
    }
    Some(record(Record::PartitionChange(PartitionChange {
        topic_id: topic.as_bytes().to_vec(),
        partition: index,
        leader,
        isr,
        replicas: None,
    })))
}

/// Moves leadership back to each partition's preferred replica (the first) where it is live and in sync
/// (Kafka's `auto.leader.rebalance.enable`). Without this, leadership piles up on the brokers that stayed up
/// while others restarted. Kafka waits until a broker's imbalance passes a threshold; this moves every
/// partition that can move, and leaves the schedule to the caller.
pub fn preferred_leader_elections(image: &MetadataImage) -> ControllerResult {
    let records = image
        .topics()
        .values()
        .flat_map(|topic| {
            topic.partitions.iter().filter_map(|(&index, partition)| {
                let preferred = partition.replicas[0];
                let movable =
                    partition.leader != preferred && partition.isr.contains(&preferred) && is_live(image, preferred);
                if !movable {
                    return None;
                }
                partition_change(topic.id, index, partition, preferred, partition.isr.clone())
            })
        })
        .collect();
    ControllerResult::new(records, ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::testing::{ORDERS, apply, cluster, join, partition, set_isr, with_orders};
    use crate::control::{fence_broker, unclean_leader_election_enabled};
    use crate::proto::metadata::{ConfigRecord, ConfigResourceType};

    #[test]
    fn leadership_returns_to_the_preferred_replica_once_in_sync() {
        let image = with_orders(&cluster(&[(1, None), (2, None), (3, None)]), 3, 3);
        assert!(
            preferred_leader_elections(&image).records.is_empty(),
            "placement leads on preferred replicas"
        );

        let p0 = partition(&image, 0).clone();
        let preferred = p0.replicas[0];
        let image = apply(&image, &fence_broker(&image, preferred, |_| false).unwrap());
        let image = join(&image, preferred, 2, None);
        assert!(
            preferred_leader_elections(&image).records.is_empty(),
            "a replica out of the ISR does not lead"
        );

        let image = set_isr(&image, 0, &p0.replicas);
        let elections = preferred_leader_elections(&image);
        let image = apply(&image, &elections);
        let p = partition(&image, 0);
        assert_eq!((p.leader, p.leader_epoch), (preferred, 2));
        assert!(preferred_leader_elections(&image).records.is_empty());
    }

    fn setting(resource_type: ConfigResourceType, name: &str, value: &str) -> MetadataRecord {
        record(Record::Config(ConfigRecord {
            resource_type: resource_type.into(),
            resource_name: name.into(),
            key: crate::control::UNCLEAN_LEADER_ELECTION_ENABLE.into(),
            value: Some(value.into()),
        }))
    }

    #[test]
    fn unclean_election_setting_of_the_topic_overrides_the_cluster_default() {
        let image = with_orders(&cluster(&[(1, None)]), 1, 1);
        assert!(!unclean_leader_election_enabled(&image, "orders"));
        let cluster_on = vec![setting(ConfigResourceType::Broker, "", "true")];
        let image = apply(&image, &ControllerResult::new(cluster_on, ()));
        assert!(unclean_leader_election_enabled(&image, "orders"));
        let topic_off = vec![setting(ConfigResourceType::Topic, "orders", "false")];
        let image = apply(&image, &ControllerResult::new(topic_off, ()));
        assert!(!unclean_leader_election_enabled(&image, "orders"));
        assert!(image.topic(&ORDERS).is_some());
    }
}
