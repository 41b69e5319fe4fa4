//! Placement: which brokers hold the replicas of new partitions, and which of them is the preferred leader.
//!
//! This is Kafka's `AdminUtils.assignReplicasToBrokers`, rack-aware form. Live brokers are listed rack by
//! rack in turn (one broker of each rack, then the next of each...), so that neighbours in the list are on
//! different racks. Partition `p`'s first replica (its preferred leader) is broker `(p + start) % n` of that
//! list, which spreads leaders evenly; the other replicas follow at a distance set by a shift that grows by one
//! every `n` partitions, which spreads followers evenly too. A replica is skipped while it would repeat a rack
//! the partition already has and another rack is still unused. Kafka draws `start` and the shift at random per
//! topic so that topics do not all lead on the same broker; here they are taken from the (random) topic id,
//! which keeps this function pure and makes CreatePartitions continue the topic's own sequence.
//!
//! A broker without `broker.rack` counts as a rack of its own: with no racks at all this is Kafka's
//! rack-unaware placement over brokers sorted by id, and a cluster with racks on only some brokers still gets
//! replicas on as many distinct racks as it can.

use std::collections::{BTreeMap, BTreeSet};

use crate::image::{BrokerId, MetadataImage, TopicId};

/// Where a rack-less broker sits: a rack of its own, named by its id (sorted before named racks).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Rack<'a> {
    Alone(BrokerId),
    Named(&'a str),
}

/// Why replicas cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Kafka's INVALID_REPLICATION_FACTOR.
    #[error("replication factor {replication_factor} with {live_brokers} live brokers")]
    InvalidReplicationFactor {
        replication_factor: i32,
        live_brokers: usize,
    },
    /// Kafka's INVALID_PARTITIONS.
    #[error("invalid partition count {0}")]
    InvalidPartitionCount(i32),
}

impl PlacementError {
    /// The Kafka error code a client sees.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            Self::InvalidReplicationFactor { .. } => 38,
            Self::InvalidPartitionCount(_) => 37,
        }
    }
}

/// Replicas of partitions `first .. first + count` of topic `topic`, each with `replication_factor` distinct
/// live brokers, preferred leader first.
pub fn place_replicas(
    image: &MetadataImage,
    topic: TopicId,
    first: i32,
    count: i32,
    replication_factor: i32,
) -> Result<Vec<Vec<BrokerId>>, PlacementError> {
    if count < 1 || first < 0 || first.checked_add(count).is_none() {
        return Err(PlacementError::InvalidPartitionCount(count));
    }
    let brokers = rack_alternated_brokers(image);
    let invalid_factor = PlacementError::InvalidReplicationFactor {
        replication_factor,
        live_brokers: brokers.len(),
    };
    let factor = usize::try_from(replication_factor).map_err(|_| invalid_factor.clone())?;
    if factor < 1 || factor > brokers.len() {
        return Err(invalid_factor);
    }
    let placer = Placer::new(&brokers, topic);
    Ok((first..first + count)
        .map(|partition| placer.replicas(partition as usize, factor))
        .collect())
}

/// Live brokers, one of each rack in turn (Kafka's `getRackAlternatedBrokerList`), brokers and racks sorted so
/// that every controller computes the same list.
fn rack_alternated_brokers(image: &MetadataImage) -> Vec<(BrokerId, Rack<'_>)> {
    let mut by_rack: BTreeMap<Rack<'_>, Vec<BrokerId>> = BTreeMap::new();
    for broker in image.brokers().values().filter(|broker| !broker.fenced) {
        let rack = broker.rack.as_deref().map_or(Rack::Alone(broker.id), Rack::Named);
        by_rack.entry(rack).or_default().push(broker.id);
    }
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest)
        .flat_map(|round| {
            by_rack
                .iter()
                .filter_map(move |(rack, ids)| ids.get(round).map(|&id| (id, rack.clone())))
        })
        .collect()
}

struct Placer<'a, 'b> {
    brokers: &'a [(BrokerId, Rack<'b>)],
    rack_count: usize,
    start: usize,
    shift: usize,
}

impl<'a, 'b> Placer<'a, 'b> {
    fn new(brokers: &'a [(BrokerId, Rack<'b>)], topic: TopicId) -> Self {
        let rack_count = brokers.iter().map(|(_, rack)| rack).collect::<BTreeSet<_>>().len();
        // The topic id is random (v4): its two halves stand in for Kafka's two random draws.
        let seed = topic.as_u128();
        let n = brokers.len() as u128;
        Self {
            brokers,
            rack_count,
            start: (seed % n) as usize,
            shift: ((seed >> 64) % n) as usize,
        }
    }

    fn replicas(&self, partition: usize, factor: usize) -> Vec<BrokerId> {
        let n = self.brokers.len();
        let first = (partition + self.start) % n;
        // Kafka bumps the shift every n partitions; as a function of the index, a later CreatePartitions
        // continues exactly where the topic's sequence left off.
        let shift = (self.shift + partition / n) * self.rack_count;
        let mut chosen = vec![first];
        let mut racks = BTreeSet::from([&self.brokers[first].1]);
        // Kafka walks the other brokers from `first + 1 + shift`, wrapping. In the first lap a broker is
        // skipped if its rack is already used; every rack is used by the end of it, so the second lap accepts
        // any broker not yet chosen, and factor <= n means two laps always suffice.
        let mut candidates = (0..n - 1)
            .map(|k| (first + 1 + (shift + k) % (n - 1)) % n)
            .cycle()
            .take(2 * (n - 1));
        while chosen.len() < factor {
            let index = candidates
                .next()
                .expect("two laps place factor <= live brokers replicas");
            let rack = &self.brokers[index].1;
            let rack_ok = !racks.contains(rack) || racks.len() == self.rack_count;
            if rack_ok && !chosen.contains(&index) {
                racks.insert(rack);
                chosen.push(index);
            }
        }
        chosen.into_iter().map(|index| self.brokers[index].0).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::control::fence_broker;
    use crate::control::testing::{ORDERS, apply, cluster, leaders, partition, with_orders};

    fn rack_of(image: &MetadataImage, id: BrokerId) -> &str {
        image.broker(id).unwrap().rack.as_deref().unwrap()
    }

    #[test]
    fn replicas_and_leaders_spread_evenly() {
        let brokers: Vec<_> = (1..=4).map(|id| (id, None)).collect();
        let image = with_orders(&cluster(&brokers), 8, 3);
        assert_eq!(leaders(&image), BTreeMap::from([(1, 2), (2, 2), (3, 2), (4, 2)]));
        let mut held = BTreeMap::<BrokerId, usize>::new();
        for index in 0..8 {
            let p = partition(&image, index);
            assert_eq!(p.replicas.len(), 3);
            assert_eq!(
                p.replicas.iter().collect::<BTreeSet<_>>().len(),
                3,
                "distinct replicas: {p:?}"
            );
            for &id in &p.replicas {
                *held.entry(id).or_default() += 1;
            }
        }
        assert_eq!(held, BTreeMap::from([(1, 6), (2, 6), (3, 6), (4, 6)]));
    }

    #[test]
    fn replicas_of_a_partition_are_on_distinct_racks() {
        let racks = [
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
            (6, Some("c")),
        ];
        let image = with_orders(&cluster(&racks), 12, 3);
        for index in 0..12 {
            let p = partition(&image, index);
            let distinct: BTreeSet<_> = p.replicas.iter().map(|&id| rack_of(&image, id)).collect();
            assert_eq!(distinct.len(), 3, "partition {index}: {p:?}");
        }
        assert_eq!(leaders(&image).values().collect::<Vec<_>>(), vec![&2; 6]);
    }

    #[test]
    fn more_replicas_than_racks_use_every_rack_then_repeat() {
        // Three brokers on one rack, one on another: the lone rack is in every partition, and the rest
        // comes from a second pass over the brokers that were skipped for their rack.
        let racks = [(1, Some("a")), (2, Some("a")), (3, Some("a")), (4, Some("b"))];
        let image = cluster(&racks);
        for seed in 1..20u128 {
            let placement = place_replicas(&image, TopicId::from_u128(seed), 0, 8, 3).unwrap();
            for replicas in placement {
                assert!(replicas.contains(&4), "{replicas:?}");
                assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3);
            }
        }
    }

    #[test]
    fn only_live_brokers_get_replicas() {
        let image = cluster(&[(1, None), (2, None), (3, None)]);
        let fenced = fence_broker(&image, 2, |_| false).unwrap();
        let image = apply(&image, &fenced);
        let placement = place_replicas(&image, ORDERS, 0, 6, 2).unwrap();
        assert!(placement.iter().all(|replicas| !replicas.contains(&2)));
        assert_eq!(
            place_replicas(&image, ORDERS, 0, 1, 3),
            Err(PlacementError::InvalidReplicationFactor {
                replication_factor: 3,
                live_brokers: 2
            })
        );
    }

    #[test]
    fn invalid_requests_are_refused() {
        let image = cluster(&[(1, None), (2, None)]);
        for factor in [0, -1, 3] {
            let refused = place_replicas(&image, ORDERS, 0, 1, factor).unwrap_err();
            assert_eq!(refused.kafka_error_code(), 38);
        }
        for count in [0, -3] {
            let refused = place_replicas(&image, ORDERS, 0, count, 1).unwrap_err();
            assert_eq!(refused, PlacementError::InvalidPartitionCount(count));
            assert_eq!(refused.kafka_error_code(), 37);
        }
        let empty = place_replicas(&MetadataImage::empty(), ORDERS, 0, 1, 1);
        assert!(matches!(
            empty,
            Err(PlacementError::InvalidReplicationFactor { live_brokers: 0, .. })
        ));
    }

    #[test]
    fn a_single_broker_holds_everything() {
        let image = with_orders(&cluster(&[(7, Some("r"))]), 3, 1);
        assert_eq!(leaders(&image), BTreeMap::from([(7, 3)]));
    }
}
