//! Fencing and unfencing brokers, and the ISR changes and leader elections that follow.
//!
//! The caller decides *when*: a missed session or a controlled shutdown fences, a broker caught up with the
//! metadata log is unfenced. This module decides *what*: the fence or unfence record and, in the same batch,
//! the partition changes, so that no image ever shows a fenced leader.

use crate::control::election::{elect, partition_change};
use crate::control::{ControllerResult, is_live, record};
use crate::image::{BrokerId, MetadataImage, NO_LEADER, Topic};
use crate::proto::metadata::{FenceBroker, MetadataRecord, UnfenceBroker, metadata_record::Record};

/// Why a broker cannot be fenced or unfenced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// Kafka's BROKER_NOT_AVAILABLE.
    #[error("unknown broker {0}")]
    UnknownBroker(BrokerId),
}

impl BrokerError {
    /// The Kafka error code a client sees.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            Self::UnknownBroker(_) => 8,
        }
    }
}

/// Fences `broker_id`: it leaves every ISR it is in (unless it is the last member: Kafka keeps it, so the
/// partition can come back cleanly with that broker), and each partition it led gets a new leader from the
/// rest of its ISR, or goes offline unless `unclean_allowed` says the topic may elect an out-of-sync replica.
/// Fencing a fenced broker changes nothing.
pub fn fence_broker(
    image: &MetadataImage,
    broker_id: BrokerId,
    unclean_allowed: impl Fn(&Topic) -> bool,
) -> Result<ControllerResult, BrokerError> {
    let broker = image.broker(broker_id).ok_or(BrokerError::UnknownBroker(broker_id))?;
    if broker.fenced {
        return Ok(ControllerResult::new(Vec::new(), ()));
    }
    let mut records = vec![record(Record::FenceBroker(FenceBroker {
        broker_id,
        incarnation: broker.incarnation,
    }))];
    let live = |id| id != broker_id && is_live(image, id);
    for topic in image.topics().values() {
        // Asked once per topic, and only for topics the broker is in: it may read settings.
        let mut unclean = None;
        for (&index, partition) in topic.partitions.iter() {
            if !partition.isr.contains(&broker_id) {
                continue;
            }
            let mut isr: Vec<BrokerId> = partition.isr.iter().copied().filter(|&id| id != broker_id).collect();
            if isr.is_empty() {
                isr = partition.isr.clone();
            }
            let unclean = *unclean.get_or_insert_with(|| unclean_allowed(topic));
            let (leader, isr) = elect(partition, isr, live, unclean);
            records.extend(partition_change(topic.id, index, partition, leader, isr));
        }
    }
    Ok(ControllerResult::new(records, ()))
}

/// Unfences `broker_id`, and elects it leader of offline partitions it can lead: those whose ISR it is in
/// (it was their last in-sync replica), and, where `unclean_allowed`, those it is a replica of. Without this
/// such partitions would stay offline after their broker came back. The broker rejoins other ISRs the normal
/// way, when their leaders see it caught up. Unfencing a live broker changes nothing.
pub fn unfence_broker(
    image: &MetadataImage,
    broker_id: BrokerId,
    unclean_allowed: impl Fn(&Topic) -> bool,
) -> Result<ControllerResult, BrokerError> {
    let broker = image.broker(broker_id).ok_or(BrokerError::UnknownBroker(broker_id))?;
    if !broker.fenced {
        return Ok(ControllerResult::new(Vec::new(), ()));
    }
    let mut records = vec![record(Record::UnfenceBroker(UnfenceBroker {
        broker_id,
        incarnation: broker.incarnation,
    }))];
    records.extend(offline_elections(image, broker_id, unclean_allowed));
    Ok(ControllerResult::new(records, ()))
}

/// Elections for offline partitions once `returning` is live again.
fn offline_elections(
    image: &MetadataImage,
    returning: BrokerId,
    unclean_allowed: impl Fn(&Topic) -> bool,
) -> Vec<MetadataRecord> {
    let live = |id| id == returning || is_live(image, id);
    let mut records = Vec::new();
    for topic in image.topics().values() {
        let mut unclean = None;
        for (&index, partition) in topic.partitions.iter() {
            if partition.leader != NO_LEADER || !partition.replicas.contains(&returning) {
                continue;
            }
            let unclean = *unclean.get_or_insert_with(|| unclean_allowed(topic));
            let (leader, isr) = elect(partition, partition.isr.clone(), live, unclean);
            records.extend(partition_change(topic.id, index, partition, leader, isr));
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::testing::{ORDERS, apply, cluster, join, partition, with_orders};
    use crate::proto::metadata::RegisterBroker;

    /// A restarted broker's registration: a new incarnation, fenced until unfenced.
    fn register(image: &MetadataImage, id: BrokerId, incarnation: u64) -> MetadataImage {
        let registration = record(Record::RegisterBroker(RegisterBroker {
            broker_id: id,
            incarnation,
            listeners: Vec::new(),
            rack: None,
        }));
        apply(image, &ControllerResult::new(vec![registration], ()))
    }

    fn never(_: &Topic) -> bool {
        false
    }

    fn always(_: &Topic) -> bool {
        true
    }

    #[test]
    fn fencing_a_leader_elects_the_next_in_sync_replica() {
        let image = with_orders(&cluster(&[(1, None), (2, None), (3, None)]), 3, 3);
        let before = partition(&image, 0).clone();
        let gone = before.leader;
        let fenced = apply(&image, &fence_broker(&image, gone, never).unwrap());
        assert!(fenced.broker(gone).unwrap().fenced);
        for index in 0..3 {
            let (old, new) = (partition(&image, index), partition(&fenced, index));
            let isr: Vec<_> = old.isr.iter().copied().filter(|&id| id != gone).collect();
            assert_eq!(new.isr, isr);
            assert_eq!(new.partition_epoch, 1);
            if old.leader == gone {
                // The next replica in order, which is in sync and live.
                assert_eq!((new.leader, new.leader_epoch), (old.replicas[1], 1));
            } else {
                assert_eq!(
                    (new.leader, new.leader_epoch),
                    (old.leader, 0),
                    "followers' loss keeps the leader"
                );
            }
        }
        let again = fence_broker(&fenced, gone, never).unwrap();
        assert!(again.records.is_empty(), "fencing a fenced broker changes nothing");
        assert_eq!(fence_broker(&fenced, 9, never), Err(BrokerError::UnknownBroker(9)));
    }

    /// Two brokers, one partition on both; its preferred replica is `a`, and `b` is live but out of sync.
    fn out_of_sync_follower() -> (MetadataImage, BrokerId, BrokerId) {
        let image = with_orders(&cluster(&[(1, None), (2, None)]), 1, 2);
        let (a, b) = (partition(&image, 0).replicas[0], partition(&image, 0).replicas[1]);
        let image = apply(&image, &fence_broker(&image, b, never).unwrap());
        let image = join(&image, b, 2, None);
        assert_eq!(
            (partition(&image, 0).leader, partition(&image, 0).isr.as_slice()),
            (a, &[a][..])
        );
        (image, a, b)
    }

    #[test]
    fn losing_the_last_in_sync_replica_takes_the_partition_offline() {
        let (image, a, _) = out_of_sync_follower();
        let offline = apply(&image, &fence_broker(&image, a, never).unwrap());
        let p = partition(&offline, 0);
        assert_eq!((p.leader, p.isr.as_slice(), p.leader_epoch), (NO_LEADER, &[a][..], 1));

        // The last in-sync replica returns: it leads again, cleanly.
        let returned = register(&offline, a, 2);
        let unfenced = unfence_broker(&returned, a, never).unwrap();
        let back = apply(&returned, &unfenced);
        let p = partition(&back, 0);
        assert_eq!((p.leader, p.isr.as_slice(), p.leader_epoch), (a, &[a][..], 2));
        assert!(!back.broker(a).unwrap().fenced);
    }

    #[test]
    fn unclean_election_elects_an_out_of_sync_replica() {
        let (image, a, b) = out_of_sync_follower();
        let unclean = apply(&image, &fence_broker(&image, a, always).unwrap());
        let p = partition(&unclean, 0);
        assert_eq!((p.leader, p.isr.as_slice()), (b, &[b][..]));

        // Offline, then only the out-of-sync replica returns: it leads only if the topic allows it.
        let offline = apply(&image, &fence_broker(&image, a, never).unwrap());
        let offline = apply(&offline, &fence_broker(&offline, b, never).unwrap());
        let returned = register(&offline, b, 3);
        let clean = unfence_broker(&returned, b, never).unwrap();
        assert_eq!(clean.records.len(), 1, "only the unfence: {:?}", clean.records);
        assert_eq!(partition(&apply(&returned, &clean), 0).leader, NO_LEADER);
        let unclean = apply(&returned, &unfence_broker(&returned, b, always).unwrap());
        assert_eq!(
            (partition(&unclean, 0).leader, partition(&unclean, 0).isr.as_slice()),
            (b, &[b][..])
        );
    }

    #[test]
    fn unfencing_a_live_broker_changes_nothing() {
        let image = cluster(&[(1, None)]);
        assert!(unfence_broker(&image, 1, never).unwrap().records.is_empty());
        assert_eq!(unfence_broker(&image, 2, never).unwrap_err().kafka_error_code(), 8);
    }

    #[test]
    fn only_topics_with_the_broker_are_asked_about_unclean_election() {
        let image = with_orders(&cluster(&[(1, None), (2, None)]), 1, 1);
        let owner = partition(&image, 0).leader;
        let other = if owner == 1 { 2 } else { 1 };
        let fenced = fence_broker(&image, other, |_| panic!("not a replica of orders")).unwrap();
        assert_eq!(fenced.records.len(), 1);
        assert_eq!(image.topic(&ORDERS).unwrap().partitions.len(), 1);
    }
}
