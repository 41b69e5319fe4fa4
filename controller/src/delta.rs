//! Replaying metadata records: the only code that changes metadata.
//!
//! A [`MetadataDelta`] starts from an image, replays records one by one, and [`MetadataDelta::apply`] yields
//! the next image. The base image is never touched: the delta works on a copy-on-write clone (every map is
//! behind an `Arc`, and `Arc::make_mut` copies a map the first time the delta changes it), so a batch that
//! fails half way is dropped with its delta and leaves no trace. That is what makes a batch atomic.
//!
//! Replay checks each record against the image before changing anything, and refuses records that would
//! break an invariant (a partition of an unknown topic, an ISR member that is not a replica, a fence meant for
//! an earlier run of a broker...). Replay is deterministic, so every controller and broker refuses the same
//! batches and all images stay identical. The controller logic is expected never to commit such a record; a
//! refusal means a bug there, and it is reported to the proposer in [`crate::Applied`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use uuid::Uuid;

use crate::image::{Broker, BrokerId, ConfigResource, MetadataImage, NO_LEADER, Partition, Topic, TopicId};
use crate::proto::metadata::{
    BrokerIds, ConfigRecord, ConfigResourceType, FenceBroker, MetadataBatch, MetadataRecord, PartitionChange,
    PartitionRecord, RegisterBroker, RemoveTopic, TopicRecord, UnfenceBroker, metadata_record::Record,
};

/// Longest topic name, as in Kafka (249 bytes, so that `<topic>-<partition>` fits a file name).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Why a record was refused. The batch holding it is not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("a metadata record without content")]
    EmptyRecord,
    #[error("invalid broker id {0}")]
    InvalidBrokerId(BrokerId),
    #[error("listener {name:?} of broker {broker_id}: port {port} is out of range")]
    InvalidPort {
        broker_id: BrokerId,
        name: String,
        port: u32,
    },
    #[error("unknown broker {0}")]
    UnknownBroker(BrokerId),
    #[error("broker {broker_id}: record for incarnation {incarnation}, but the registration is {registered}")]
    StaleIncarnation {
        broker_id: BrokerId,
        incarnation: u64,
        registered: u64,
    },
    #[error("a topic id must be 16 bytes and not all zero, got {0} bytes")]
    InvalidTopicId(usize),
    #[error("invalid topic name {0:?}")]
    InvalidTopicName(String),
    #[error("topic name {0:?} is taken")]
    TopicNameTaken(String),
    #[error("topic id {0} is taken")]
    TopicIdTaken(TopicId),
    #[error("unknown topic {0}")]
    UnknownTopic(TopicId),
    #[error("unknown topic name {0:?}")]
    UnknownTopicName(String),
    #[error("topic {topic}: unknown partition {partition}")]
    UnknownPartition { topic: TopicId, partition: i32 },
    #[error("topic {topic} partition {partition}: {reason}")]
    InvalidPartition {
        topic: TopicId,
        partition: i32,
        reason: &'static str,
    },
    #[error("invalid config resource: {0}")]
    InvalidConfigResource(String),
}

/// Records replayed on top of a base image, not yet an image.
#[derive(Debug, Clone)]
pub struct MetadataDelta {
    /// The base image, copied on write as records change it.
    next: MetadataImage,
}

impl MetadataDelta {
    pub fn new(base: &MetadataImage) -> Self {
        Self { next: base.clone() }
    }

    /// Replays every record of `batch`, in order. On an error the delta is half applied: drop it.
    pub fn replay_batch(&mut self, batch: &MetadataBatch) -> Result<(), ReplayError> {
        batch.records.iter().try_for_each(|record| self.replay(record))
    }

    /// Replays one record. A refused record changes nothing.
    pub fn replay(&mut self, record: &MetadataRecord) -> Result<(), ReplayError> {
        match record.record.as_ref().ok_or(ReplayError::EmptyRecord)? {
            Record::RegisterBroker(record) => self.register_broker(record),
            Record::FenceBroker(FenceBroker { broker_id, incarnation }) => {
                self.set_fenced(*broker_id, *incarnation, true)
            }
            Record::UnfenceBroker(UnfenceBroker { broker_id, incarnation }) => {
                self.set_fenced(*broker_id, *incarnation, false)
            }
            Record::Topic(record) => self.create_topic(record),
            Record::Partition(record) => self.set_partition(record),
            Record::PartitionChange(record) => self.change_partition(record),
            Record::Config(record) => self.set_config(record),
            Record::RemoveTopic(record) => self.remove_topic(record),
        }
    }

    /// The image with every replayed record.
    pub fn apply(self) -> MetadataImage {
        self.next
    }

    fn register_broker(&mut self, record: &RegisterBroker) -> Result<(), ReplayError> {
        check_broker_id(record.broker_id)?;
        if let Some(listener) = record
            .listeners
            .iter()
            .find(|listener| listener.port > u32::from(u16::MAX))
        {
            return Err(ReplayError::InvalidPort {
                broker_id: record.broker_id,
                name: listener.name.clone(),
                port: listener.port,
            });
        }
        // A registration replaces the previous one of the same id whole: the broker restarted.
        let broker = Broker {
            id: record.broker_id,
            incarnation: record.incarnation,
            listeners: record.listeners.clone(),
            rack: record.rack.clone(),
            fenced: true,
        };
        Arc::make_mut(&mut self.next.brokers).insert(record.broker_id, broker);
        Ok(())
    }

    fn set_fenced(&mut self, broker_id: BrokerId, incarnation: u64, fenced: bool) -> Result<(), ReplayError> {
        let broker = self
            .next
            .brokers
            .get(&broker_id)
            .ok_or(ReplayError::UnknownBroker(broker_id))?;
        if broker.incarnation != incarnation {
            return Err(ReplayError::StaleIncarnation {
                broker_id,
                incarnation,
                registered: broker.incarnation,
            });
        }
        if broker.fenced != fenced {
            let brokers = Arc::make_mut(&mut self.next.brokers);
            brokers.get_mut(&broker_id).expect("checked above").fenced = fenced;
        }
        Ok(())
    }

    fn create_topic(&mut self, record: &TopicRecord) -> Result<(), ReplayError> {
        let id = topic_id(&record.topic_id)?;
        check_topic_name(&record.name)?;
        if self.next.topic_ids.contains_key(&record.name) {
            return Err(ReplayError::TopicNameTaken(record.name.clone()));
        }
        if self.next.topics.contains_key(&id) {
            return Err(ReplayError::TopicIdTaken(id));
        }
        let topic = Topic {
            id,
            name: record.name.clone(),
            partitions: Arc::default(),
        };
        Arc::make_mut(&mut self.next.topics).insert(id, Arc::new(topic));
        Arc::make_mut(&mut self.next.topic_ids).insert(record.name.clone(), id);
        Ok(())
    }

    fn set_partition(&mut self, record: &PartitionRecord) -> Result<(), ReplayError> {
        let topic = topic_id(&record.topic_id)?;
        if !self.next.topics.contains_key(&topic) {
            return Err(ReplayError::UnknownTopic(topic));
        }
        let partition = Partition {
            replicas: record.replicas.clone(),
            isr: record.isr.clone(),
            leader: record.leader,
            leader_epoch: record.leader_epoch,
            partition_epoch: record.partition_epoch,
        };
        check_partition(topic, record.partition, &partition)?;
        self.partitions_mut(&topic).insert(record.partition, partition);
        Ok(())
    }

    fn change_partition(&mut self, record: &PartitionChange) -> Result<(), ReplayError> {
        let topic = topic_id(&record.topic_id)?;
        let index = record.partition;
        let current = self.next.partition(&topic, index).ok_or_else(|| {
            if self.next.topics.contains_key(&topic) {
                ReplayError::UnknownPartition {
                    topic,
                    partition: index,
                }
            } else {
                ReplayError::UnknownTopic(topic)
            }
        })?;
        let changed = changed_partition(topic, index, current, record)?;
        check_partition(topic, index, &changed)?;
        self.partitions_mut(&topic).insert(index, changed);
        Ok(())
    }

    fn set_config(&mut self, record: &ConfigRecord) -> Result<(), ReplayError> {
        let resource = self.config_resource(record)?;
        let configs = Arc::make_mut(&mut self.next.configs);
        match &record.value {
            Some(value) => {
                Arc::make_mut(configs.entry(resource).or_default()).insert(record.key.clone(), value.clone());
            }
            None => {
                if let Some(resource_configs) = configs.get_mut(&resource) {
                    Arc::make_mut(resource_configs).remove(&record.key);
                    // No empty entries: an image rebuilt from a snapshot would not have them either.
                    if resource_configs.is_empty() {
                        configs.remove(&resource);
                    }
                }
            }
        }
        Ok(())
    }

    fn remove_topic(&mut self, record: &RemoveTopic) -> Result<(), ReplayError> {
        let id = topic_id(&record.topic_id)?;
        let topic = Arc::make_mut(&mut self.next.topics)
            .remove(&id)
            .ok_or(ReplayError::UnknownTopic(id))?;
        Arc::make_mut(&mut self.next.topic_ids).remove(&topic.name);
        // Kafka keys topic settings by name: a later topic of the same name must not inherit them.
        let resource = ConfigResource::Topic(topic.name.clone());
        if self.next.configs.contains_key(&resource) {
            Arc::make_mut(&mut self.next.configs).remove(&resource);
        }
        Ok(())
    }

    /// The resource a config record names, checked: topics must exist, brokers are named by id or "", groups
    /// by a non-empty group id.
    fn config_resource(&self, record: &ConfigRecord) -> Result<ConfigResource, ReplayError> {
        let name = &record.resource_name;
        match ConfigResourceType::try_from(record.resource_type) {
            Ok(ConfigResourceType::Topic) if self.next.topic_ids.contains_key(name) => {
                Ok(ConfigResource::Topic(name.clone()))
            }
            Ok(ConfigResourceType::Topic) => Err(ReplayError::UnknownTopicName(name.clone())),
            Ok(ConfigResourceType::Broker) if name.is_empty() || name.parse::<u32>().is_ok() => {
                Ok(ConfigResource::Broker(name.clone()))
            }
            Ok(ConfigResourceType::Broker) => Err(ReplayError::InvalidConfigResource(format!("broker {name:?}"))),
            Ok(ConfigResourceType::Group) if !name.is_empty() => Ok(ConfigResource::Group(name.clone())),
            _ => Err(ReplayError::InvalidConfigResource(format!(
                "resource type {}",
                record.resource_type
            ))),
        }
    }

    /// The partitions of `topic`, copied if shared with another image. The topic must exist.
    fn partitions_mut(&mut self, topic: &TopicId) -> &mut BTreeMap<i32, Partition> {
        let topics = Arc::make_mut(&mut self.next.topics);
        let topic = Arc::make_mut(topics.get_mut(topic).expect("checked by the caller"));
        Arc::make_mut(&mut topic.partitions)
    }
}

/// `current` with the fields `change` sets, and its epochs bumped.
fn changed_partition(
    topic: TopicId,
    partition: i32,
    current: &Partition,
    change: &PartitionChange,
) -> Result<Partition, ReplayError> {
    let overflow = |what| ReplayError::InvalidPartition {
        topic,
        partition,
        reason: what,
    };
    let mut next = current.clone();
    if let Some(leader) = change.leader {
        next.leader = leader;
        next.leader_epoch = next
            .leader_epoch
            .checked_add(1)
            .ok_or(overflow("leader epoch overflow"))?;
    }
    if let Some(BrokerIds { ids }) = &change.isr {
        next.isr = ids.clone();
    }
    if let Some(BrokerIds { ids }) = &change.replicas {
        next.replicas = ids.clone();
    }
    next.partition_epoch = next
        .partition_epoch
        .checked_add(1)
        .ok_or(overflow("partition epoch overflow"))?;
    Ok(next)
}

/// The invariants of a partition: replicas are distinct valid ids, the ISR is a subset of them, and a leader
/// is in the ISR.
fn check_partition(topic: TopicId, index: i32, partition: &Partition) -> Result<(), ReplayError> {
    let invalid = |reason| {
        Err(ReplayError::InvalidPartition {
            topic,
            partition: index,
            reason,
        })
    };
    if index < 0 {
        return invalid("negative partition index");
    }
    if partition.replicas.is_empty() {
        return invalid("no replicas");
    }
    if partition.replicas.iter().any(|&id| id < 0) {
        return invalid("negative replica id");
    }
    let replicas: BTreeSet<BrokerId> = partition.replicas.iter().copied().collect();
    if replicas.len() != partition.replicas.len() {
        return invalid("duplicate replica");
    }
    let isr: BTreeSet<BrokerId> = partition.isr.iter().copied().collect();
    if isr.len() != partition.isr.len() {
        return invalid("duplicate ISR member");
    }
    if !isr.is_subset(&replicas) {
        return invalid("ISR member that is not a replica");
    }
    if partition.leader != NO_LEADER && !isr.contains(&partition.leader) {
        return invalid("leader not in the ISR");
    }
    if partition.leader_epoch < 0 || partition.partition_epoch < 0 {
        return invalid("negative epoch");
    }
    Ok(())
}

fn check_broker_id(id: BrokerId) -> Result<(), ReplayError> {
    if id < 0 {
        Err(ReplayError::InvalidBrokerId(id))
    } else {
        Ok(())
    }
}

fn check_topic_name(name: &str) -> Result<(), ReplayError> {
    if name.is_empty() || name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(ReplayError::InvalidTopicName(name.to_owned()));
    }
    Ok(())
}

/// A topic id from its 16 bytes. The nil UUID is reserved (Kafka uses it for "no id").
pub(crate) fn topic_id(bytes: &[u8]) -> Result<TopicId, ReplayError> {
    match Uuid::from_slice(bytes) {
        Ok(id) if !id.is_nil() => Ok(id),
        _ => Err(ReplayError::InvalidTopicId(bytes.len())),
    }
}

impl MetadataImage {
    /// The image that `batch` turns this one into, or why the batch is refused (this image is unchanged).
    pub fn replay_batch(&self, batch: &MetadataBatch) -> Result<MetadataImage, ReplayError> {
        let mut delta = MetadataDelta::new(self);
        delta.replay_batch(batch)?;
        Ok(delta.apply())
    }

    /// An image built by replaying `records` on an empty one (how a snapshot is loaded).
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a MetadataRecord>) -> Result<Self, ReplayError> {
        let mut delta = MetadataDelta::new(&MetadataImage::empty());
        records.into_iter().try_for_each(|record| delta.replay(record))?;
        Ok(delta.apply())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::metadata::Listener;

    const TOPIC: Uuid = Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0001);

    fn rec(record: Record) -> MetadataRecord {
        MetadataRecord { record: Some(record) }
    }

    fn register(broker_id: BrokerId, incarnation: u64) -> MetadataRecord {
        rec(Record::RegisterBroker(RegisterBroker {
            broker_id,
            incarnation,
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092 + broker_id as u32,
                security_protocol: "PLAINTEXT".into(),
            }],
            rack: Some(format!("rack-{}", broker_id % 2)),
        }))
    }

    fn unfence(broker_id: BrokerId, incarnation: u64) -> MetadataRecord {
        rec(Record::UnfenceBroker(UnfenceBroker { broker_id, incarnation }))
    }

    fn fence(broker_id: BrokerId, incarnation: u64) -> MetadataRecord {
        rec(Record::FenceBroker(FenceBroker { broker_id, incarnation }))
    }

    fn topic(name: &str, id: Uuid) -> MetadataRecord {
        rec(Record::Topic(TopicRecord {
            name: name.into(),
            topic_id: id.as_bytes().to_vec(),
        }))
    }

    fn partition(id: Uuid, index: i32, replicas: &[BrokerId]) -> MetadataRecord {
        rec(Record::Partition(PartitionRecord {
            topic_id: id.as_bytes().to_vec(),
            partition: index,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            leader: replicas[0],
            leader_epoch: 0,
            partition_epoch: 0,
        }))
    }

    fn change(id: Uuid, index: i32, leader: Option<BrokerId>, isr: Option<&[BrokerId]>) -> MetadataRecord {
        rec(Record::PartitionChange(PartitionChange {
            topic_id: id.as_bytes().to_vec(),
            partition: index,
            leader,
            isr: isr.map(|ids| BrokerIds { ids: ids.to_vec() }),
            replicas: None,
        }))
    }

    fn config(resource_type: ConfigResourceType, name: &str, key: &str, value: Option<&str>) -> MetadataRecord {
        rec(Record::Config(ConfigRecord {
            resource_type: resource_type.into(),
            resource_name: name.into(),
            key: key.into(),
            value: value.map(str::to_owned),
        }))
    }

    fn batch(records: Vec<MetadataRecord>) -> MetadataBatch {
        MetadataBatch { records }
    }

    /// Three live brokers and topic "orders" with two partitions replicated on all of them.
    fn cluster() -> MetadataImage {
        let mut records = Vec::new();
        for id in 1..=3 {
            records.push(register(id, 7));
            records.push(unfence(id, 7));
        }
        records.push(topic("orders", TOPIC));
        records.push(partition(TOPIC, 0, &[1, 2, 3]));
        records.push(partition(TOPIC, 1, &[2, 3, 1]));
        MetadataImage::empty().replay_batch(&batch(records)).unwrap()
    }

    #[test]
    fn registration_starts_fenced_and_unfence_needs_the_same_incarnation() {
        let image = MetadataImage::empty()
            .replay_batch(&batch(vec![register(1, 7)]))
            .unwrap();
        let broker = image.broker(1).unwrap();
        assert!(broker.fenced);
        assert_eq!(broker.rack.as_deref(), Some("rack-1"));
        assert_eq!(broker.listeners[0].port, 9093);

        let stale = image.replay_batch(&batch(vec![unfence(1, 6)]));
        assert_eq!(
            stale,
            Err(ReplayError::StaleIncarnation {
                broker_id: 1,
                incarnation: 6,
                registered: 7
            })
        );

        let live = image.replay_batch(&batch(vec![unfence(1, 7)])).unwrap();
        assert!(!live.broker(1).unwrap().fenced);
        let fenced = live.replay_batch(&batch(vec![fence(1, 7)])).unwrap();
        assert!(fenced.broker(1).unwrap().fenced);
        // The images before stay as they were.
        assert!(!live.broker(1).unwrap().fenced);
        assert!(image.broker(1).unwrap().fenced);
    }

    #[test]
    fn reregistration_replaces_the_broker_fenced() {
        let image = cluster().replay_batch(&batch(vec![register(2, 8)])).unwrap();
        let broker = image.broker(2).unwrap();
        assert_eq!((broker.incarnation, broker.fenced), (8, true));
        assert_eq!(
            image.replay_batch(&batch(vec![fence(9, 1)])),
            Err(ReplayError::UnknownBroker(9))
        );
    }

    #[test]
    fn create_topic_with_partitions() {
        let image = cluster();
        let orders = image.topic_by_name("orders").unwrap();
        assert_eq!(orders.id, TOPIC);
        assert_eq!(orders.partitions.len(), 2);
        let p1 = image.partition(&TOPIC, 1).unwrap();
        assert_eq!((p1.leader, p1.isr.as_slice(), p1.leader_epoch), (2, &[2, 3, 1][..], 0));

        let taken = image.replay_batch(&batch(vec![topic("orders", Uuid::from_u128(9))]));
        assert_eq!(taken, Err(ReplayError::TopicNameTaken("orders".into())));
        let nil = image.replay_batch(&batch(vec![topic("x", Uuid::nil())]));
        assert_eq!(nil, Err(ReplayError::InvalidTopicId(16)));
        let orphan = image.replay_batch(&batch(vec![partition(Uuid::from_u128(9), 0, &[1])]));
        assert_eq!(orphan, Err(ReplayError::UnknownTopic(Uuid::from_u128(9))));
    }

    #[test]
    fn leader_and_isr_changes_bump_epochs() {
        let image = cluster();
        // Broker 1 drops out of partition 0's ISR and leadership moves to 2.
        let moved = image
            .replay_batch(&batch(vec![change(TOPIC, 0, Some(2), Some(&[2, 3]))]))
            .unwrap();
        let p0 = moved.partition(&TOPIC, 0).unwrap();
        assert_eq!((p0.leader, p0.isr.as_slice()), (2, &[2, 3][..]));
        assert_eq!((p0.leader_epoch, p0.partition_epoch), (1, 1));
        assert_eq!(
            p0.replicas,
            vec![1, 2, 3],
            "replicas are kept when the change leaves them out"
        );

        // An ISR-only change bumps the partition epoch, not the leader epoch.
        let grown = moved
            .replay_batch(&batch(vec![change(TOPIC, 0, None, Some(&[2, 3, 1]))]))
            .unwrap();
        let p0 = grown.partition(&TOPIC, 0).unwrap();
        assert_eq!((p0.leader_epoch, p0.partition_epoch), (1, 2));

        // Offline: no leader, the last ISR member kept.
        let offline = grown
            .replay_batch(&batch(vec![change(TOPIC, 0, Some(NO_LEADER), Some(&[2]))]))
            .unwrap();
        assert_eq!(offline.partition(&TOPIC, 0).unwrap().leader, NO_LEADER);

        assert_eq!(moved.partition(&TOPIC, 1), image.partition(&TOPIC, 1));
    }

    #[test]
    fn untouched_parts_are_shared_with_the_base_image() {
        let other = Uuid::from_u128(2);
        let image = cluster()
            .replay_batch(&batch(vec![topic("payments", other), partition(other, 0, &[1])]))
            .unwrap();
        let moved = image
            .replay_batch(&batch(vec![change(TOPIC, 0, Some(2), None)]))
            .unwrap();
        assert!(Arc::ptr_eq(image.topic(&other).unwrap(), moved.topic(&other).unwrap()));
        assert!(Arc::ptr_eq(&image.brokers, &moved.brokers));
        assert!(!Arc::ptr_eq(image.topic(&TOPIC).unwrap(), moved.topic(&TOPIC).unwrap()));
    }

    #[test]
    fn invalid_partition_changes_are_refused() {
        let image = cluster();
        let cases = [
            (change(TOPIC, 0, Some(4), None), "leader not in the ISR"),
            (
                change(TOPIC, 0, None, Some(&[1, 4])),
                "ISR member that is not a replica",
            ),
            (change(TOPIC, 0, Some(1), Some(&[2, 3])), "leader not in the ISR"),
            (change(TOPIC, 0, None, Some(&[2, 2])), "duplicate ISR member"),
        ];
        for (record, reason) in cases {
            let refused = image.replay_batch(&batch(vec![record]));
            assert_eq!(
                refused,
                Err(ReplayError::InvalidPartition {
                    topic: TOPIC,
                    partition: 0,
                    reason
                })
            );
        }
        let unknown = image.replay_batch(&batch(vec![change(TOPIC, 5, Some(1), None)]));
        assert_eq!(
            unknown,
            Err(ReplayError::UnknownPartition {
                topic: TOPIC,
                partition: 5
            })
        );
    }

    #[test]
    fn a_refused_batch_changes_nothing() {
        let image = cluster();
        let records = vec![
            change(TOPIC, 0, Some(2), None),
            topic("payments", Uuid::from_u128(2)),
            change(TOPIC, 9, Some(2), None),
        ];
        let mut delta = MetadataDelta::new(&image);
        assert!(delta.replay_batch(&batch(records)).is_err());
        drop(delta);
        assert_eq!(image, cluster());
        assert_eq!(image.partition(&TOPIC, 0).unwrap().leader, 1);
    }

    #[test]
    fn config_set_and_remove() {
        let image = cluster();
        let set = batch(vec![
            config(ConfigResourceType::Topic, "orders", "retention.ms", Some("1000")),
            config(ConfigResourceType::Topic, "orders", "cleanup.policy", Some("delete")),
            config(ConfigResourceType::Broker, "", "num.partitions", Some("3")),
            config(ConfigResourceType::Broker, "2", "log.retention.ms", Some("5")),
        ]);
        let image = image.replay_batch(&set).unwrap();
        let orders = ConfigResource::Topic("orders".into());
        assert_eq!(
            image.configs(&orders).unwrap().get("retention.ms").map(String::as_str),
            Some("1000")
        );
        assert_eq!(image.config_resources().count(), 3);

        let overwrite = config(ConfigResourceType::Topic, "orders", "retention.ms", Some("2000"));
        let image = image.replay_batch(&batch(vec![overwrite])).unwrap();
        assert_eq!(image.configs(&orders).unwrap()["retention.ms"], "2000");

        let remove = batch(vec![
            config(ConfigResourceType::Topic, "orders", "retention.ms", None),
            config(ConfigResourceType::Topic, "orders", "cleanup.policy", None),
            config(ConfigResourceType::Broker, "2", "no.such.key", None),
        ]);
        let image = image.replay_batch(&remove).unwrap();
        assert_eq!(image.configs(&orders), None, "a resource without settings disappears");

        let unknown = image.replay_batch(&batch(vec![config(ConfigResourceType::Topic, "nope", "k", Some("v"))]));
        assert_eq!(unknown, Err(ReplayError::UnknownTopicName("nope".into())));
        let bad_broker = image.replay_batch(&batch(vec![config(ConfigResourceType::Broker, "x", "k", Some("v"))]));
        assert!(matches!(bad_broker, Err(ReplayError::InvalidConfigResource(_))));

        // Group configs belong to a group id, with or without a group.
        let key = "consumer.session.timeout.ms";
        let group = batch(vec![config(ConfigResourceType::Group, "payments", key, Some("50000"))]);
        let image = image.replay_batch(&group).unwrap();
        let payments = ConfigResource::Group("payments".into());
        assert_eq!(image.configs(&payments).unwrap()[key], "50000");
        assert_eq!(
            MetadataImage::empty().replay_batch(&batch(image.to_records())).unwrap(),
            image,
            "a snapshot keeps group configs"
        );
        let nameless = image.replay_batch(&batch(vec![config(ConfigResourceType::Group, "", key, Some("1"))]));
        assert!(matches!(nameless, Err(ReplayError::InvalidConfigResource(_))));
    }

    #[test]
    fn topic_removal_takes_partitions_and_settings() {
        let image = cluster()
            .replay_batch(&batch(vec![config(
                ConfigResourceType::Topic,
                "orders",
                "retention.ms",
                Some("1"),
            )]))
            .unwrap();
        let remove = rec(Record::RemoveTopic(RemoveTopic {
            topic_id: TOPIC.as_bytes().to_vec(),
        }));
        let image = image.replay_batch(&batch(vec![remove.clone()])).unwrap();
        assert!(image.topic(&TOPIC).is_none());
        assert!(image.topic_by_name("orders").is_none());
        assert_eq!(image.configs(&ConfigResource::Topic("orders".into())), None);
        assert_eq!(
            image.replay_batch(&batch(vec![remove])),
            Err(ReplayError::UnknownTopic(TOPIC))
        );

        // The name is free again, for a new id, without the old settings.
        let again = Uuid::from_u128(3);
        let image = image
            .replay_batch(&batch(vec![topic("orders", again), partition(again, 0, &[3])]))
            .unwrap();
        assert_eq!(image.topic_by_name("orders").unwrap().id, again);
    }

    #[test]
    fn records_of_an_image_rebuild_it() {
        let image = cluster()
            .replay_batch(&batch(vec![
                fence(3, 7),
                change(TOPIC, 1, Some(3), Some(&[3])),
                config(ConfigResourceType::Topic, "orders", "retention.ms", Some("1")),
                config(ConfigResourceType::Broker, "", "num.partitions", Some("3")),
            ]))
            .unwrap();
        let records = image.to_records();
        assert_eq!(records.len(), 3 * 2 - 1 + 3 + 2);
        assert_eq!(MetadataImage::from_records(&records).unwrap(), image);
        assert!(MetadataImage::from_records(&[]).unwrap().is_empty());
    }

    #[test]
    fn empty_record_is_refused() {
        let image = MetadataImage::empty();
        assert_eq!(
            image.replay_batch(&batch(vec![MetadataRecord { record: None }])),
            Err(ReplayError::EmptyRecord)
        );
    }
}
