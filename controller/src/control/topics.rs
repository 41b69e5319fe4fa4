//! Topic requests: CreateTopics, CreatePartitions and DeleteTopics, as records.
//!
//! Checks here repeat those of replay (name, free name and id, known topic) and add Kafka's request rules
//! (legal name characters, partitions only grow), so that a client gets Kafka's error code and a committed
//! batch is never refused.

use std::collections::BTreeMap;

use crate::control::placement::{PlacementError, place_replicas};
use crate::control::{ControllerResult, is_live, record};
use crate::delta::TOPIC_NAME_BYTES_MAX;
use crate::image::{BrokerId, MetadataImage, TopicId};
use crate::proto::metadata::{
    ConfigRecord, ConfigResourceType, MetadataRecord, PartitionRecord, RemoveTopic, TopicRecord,
    metadata_record::Record,
};

/// Most partitions one topic may have. A request becomes one batch that is held in memory and replayed
/// whole; this bounds it (100,000 partition records are a few MB, well under a log entry's 64 MiB).
pub const TOPIC_PARTITIONS_MAX: i32 = 100_000;

/// Why a topic cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateTopicError {
    /// Kafka's INVALID_TOPIC_EXCEPTION.
    #[error("invalid topic name {0:?}")]
    InvalidTopicName(String),
    /// Kafka's TOPIC_ALREADY_EXISTS.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// The caller's new id is nil or taken (a bug, or a collision of random ids): retry with another.
    #[error("topic id {0} is nil or taken")]
    InvalidTopicId(TopicId),
    /// Kafka's INVALID_CONFIG.
    #[error("invalid config key {0:?}")]
    InvalidConfig(String),
    /// Kafka's INVALID_REPLICA_ASSIGNMENT: a manual assignment that cannot be placed as asked.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

impl CreateTopicError {
    /// The Kafka error code a client sees.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            Self::InvalidTopicName(_) => 17,
            Self::TopicExists(_) => 36,
            Self::InvalidTopicId(_) => -1,
            Self::InvalidConfig(_) => 40,
            Self::InvalidReplicaAssignment(_) => 39,
            Self::Placement(error) => error.kafka_error_code(),
        }
    }
}

/// Why partitions cannot be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreatePartitionsError {
    /// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// Kafka's INVALID_PARTITIONS: partitions can only be added, up to [`TOPIC_PARTITIONS_MAX`].
    #[error("topic has {current} partitions, {requested} requested")]
    InvalidPartitionCount { current: i32, requested: i32 },
    /// Kafka's INVALID_REPLICA_ASSIGNMENT: a manual assignment that cannot be placed as asked.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

impl CreatePartitionsError {
    /// The Kafka error code a client sees.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            Self::UnknownTopic(_) => 3,
            Self::InvalidPartitionCount { .. } => 37,
            Self::InvalidReplicaAssignment(_) => 39,
            Self::Placement(error) => error.kafka_error_code(),
        }
    }
}

/// Why a topic cannot be deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeleteTopicError {
    /// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
}

impl DeleteTopicError {
    /// The Kafka error code a client sees.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            Self::UnknownTopic(_) => 3,
        }
    }
}

/// Creates topic `name` with id `id` (the caller draws a random one: ids are never reused, and drawing it
/// outside keeps this function pure), `partitions` placed over the live brokers with `replication_factor`
/// replicas each, and `configs` as its settings. Every partition starts led by its preferred replica with
/// all replicas in sync: a new partition is empty, so every replica is caught up. Answers the topic id.
pub fn create_topic(
    image: &MetadataImage,
    name: &str,
    id: TopicId,
    partitions: i32,
    replication_factor: i32,
    configs: &BTreeMap<String, String>,
) -> Result<ControllerResult<TopicId>, CreateTopicError> {
    check_new_topic(image, name, id, configs)?;
    if partitions > TOPIC_PARTITIONS_MAX {
        return Err(PlacementError::InvalidPartitionCount(partitions).into());
    }
    let placement = place_replicas(image, id, 0, partitions, replication_factor)?;
    Ok(ControllerResult::new(
        topic_records(image, name, id, placement, configs),
        id,
    ))
}

/// Creates topic `name` as [`create_topic`] does, with the replicas of partition `p` as `assignment[p]`
/// (Kafka's manual replica assignment), preferred leader first. Checked as Kafka checks it: at least one
/// partition, every partition the same number of distinct replicas, every replica a registered broker, and
/// at least one of each partition's replicas live (the live ones are its ISR, the first of them its leader).
pub fn create_topic_assigned(
    image: &MetadataImage,
    name: &str,
    id: TopicId,
    assignment: Vec<Vec<BrokerId>>,
    configs: &BTreeMap<String, String>,
) -> Result<ControllerResult<TopicId>, CreateTopicError> {
    check_new_topic(image, name, id, configs)?;
    if assignment.is_empty() || assignment.len() > TOPIC_PARTITIONS_MAX as usize {
        return Err(PlacementError::InvalidPartitionCount(assignment.len() as i32).into());
    }
    check_assignment(image, 0, &assignment, None).map_err(CreateTopicError::InvalidReplicaAssignment)?;
    Ok(ControllerResult::new(
        topic_records(image, name, id, assignment, configs),
        id,
    ))
}

fn check_new_topic(
    image: &MetadataImage,
    name: &str,
    id: TopicId,
    configs: &BTreeMap<String, String>,
) -> Result<(), CreateTopicError> {
    check_topic_name(name)?;
    if image.topic_by_name(name).is_some() {
        return Err(CreateTopicError::TopicExists(name.to_owned()));
    }
    if id.is_nil() || image.topic(&id).is_some() {
        return Err(CreateTopicError::InvalidTopicId(id));
    }
    if let Some(key) = configs.keys().find(|key| key.is_empty()) {
        return Err(CreateTopicError::InvalidConfig(key.clone()));
    }
    Ok(())
}

/// A new topic's records: the topic, its partitions, its settings.
fn topic_records(
    image: &MetadataImage,
    name: &str,
    id: TopicId,
    placement: Vec<Vec<BrokerId>>,
    configs: &BTreeMap<String, String>,
) -> Vec<MetadataRecord> {
    let mut records = Vec::with_capacity(1 + placement.len() + configs.len());
    records.push(record(Record::Topic(TopicRecord {
        name: name.to_owned(),
        topic_id: id.as_bytes().to_vec(),
    })));
    records.extend(partition_records(image, id, 0, placement));
    records.extend(configs.iter().map(|(key, value)| {
        record(Record::Config(ConfigRecord {
            resource_type: ConfigResourceType::Topic.into(),
            resource_name: name.to_owned(),
            key: key.clone(),
            value: Some(value.clone()),
        }))
    }));
    records
}

/// Checks a manual assignment of partitions `first..` (Kafka's `validateManualPartitionAssignment`), with
/// Kafka's messages. `replication_factor`, when given, is what every partition must have (that of the topic's
/// existing partitions); otherwise the first partition sets it.
fn check_assignment(
    image: &MetadataImage,
    first: i32,
    assignment: &[Vec<BrokerId>],
    replication_factor: Option<usize>,
) -> Result<(), String> {
    let expected = replication_factor.or_else(|| assignment.first().map(Vec::len));
    for (partition, replicas) in (first..).zip(assignment) {
        if replicas.is_empty() {
            return Err(format!(
                "the manual assignment of partition {partition} is an empty replica list"
            ));
        }
        let mut distinct = replicas.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != replicas.len() {
            return Err(format!(
                "the manual assignment of partition {partition} names a broker twice: {replicas:?}"
            ));
        }
        if let Some(unknown) = replicas.iter().find(|id| image.broker(**id).is_none()) {
            return Err(format!(
                "the manual assignment of partition {partition} names broker {unknown}, but no such broker is registered"
            ));
        }
        if Some(replicas.len()) != expected {
            return Err(format!(
                "partition {partition} is assigned {} replica(s), inconsistent with the other partitions, which have {}",
                replicas.len(),
                expected.unwrap_or_default()
            ));
        }
        if !replicas.iter().any(|id| is_live(image, *id)) {
            return Err(format!(
                "every broker of the manual assignment of partition {partition} ({replicas:?}) is fenced"
            ));
        }
    }
    Ok(())
}

/// Grows topic `name` to `new_count` partitions. The new ones are placed as at creation (continuing the
/// topic's sequence) with the replication factor of partition 0, as Kafka does.
pub fn create_partitions(
    image: &MetadataImage,
    name: &str,
    new_count: i32,
) -> Result<ControllerResult, CreatePartitionsError> {
    let (topic, current, replication_factor) = growable(image, name, new_count)?;
    let placement = place_replicas(image, topic, current, new_count - current, replication_factor as i32)?;
    let records = partition_records(image, topic, current, placement).collect();
    Ok(ControllerResult::new(records, ()))
}

/// Grows topic `name` by the partitions of `assignment`, each with the replicas given (Kafka's
/// CreatePartitions with assignments): checked as [`create_topic_assigned`] checks, and each new partition
/// must have as many replicas as the topic's others.
pub fn create_partitions_assigned(
    image: &MetadataImage,
    name: &str,
    assignment: Vec<Vec<BrokerId>>,
) -> Result<ControllerResult, CreatePartitionsError> {
    let current = image.topic_by_name(name).map_or(0, |t| t.partitions.len() as i32);
    let new_count = current.saturating_add(i32::try_from(assignment.len()).unwrap_or(i32::MAX));
    let (topic, current, replication_factor) = growable(image, name, new_count)?;
    check_assignment(image, current, &assignment, Some(replication_factor))
        .map_err(CreatePartitionsError::InvalidReplicaAssignment)?;
    let records = partition_records(image, topic, current, assignment).collect();
    Ok(ControllerResult::new(records, ()))
}

/// The topic to grow to `new_count` partitions: its id, its partition count and replication factor.
fn growable(image: &MetadataImage, name: &str, new_count: i32) -> Result<(TopicId, i32, usize), CreatePartitionsError> {
    let topic = image
        .topic_by_name(name)
        .ok_or_else(|| CreatePartitionsError::UnknownTopic(name.to_owned()))?;
    // Partitions are numbered 0..n without gaps (only create_topic and this add them), so n is the next index.
    let current = i32::try_from(topic.partitions.len()).expect("at most TOPIC_PARTITIONS_MAX partitions");
    if new_count <= current || new_count > TOPIC_PARTITIONS_MAX {
        return Err(CreatePartitionsError::InvalidPartitionCount {
            current,
            requested: new_count,
        });
    }
    let replication_factor = topic.partitions.get(&0).map_or(1, |partition| partition.replicas.len());
    Ok((topic.id, current, replication_factor))
}

/// Deletes topic `name`, its partitions and its settings. Answers the id of the deleted topic.
pub fn delete_topic(image: &MetadataImage, name: &str) -> Result<ControllerResult<TopicId>, DeleteTopicError> {
    let topic = image
        .topic_by_name(name)
        .ok_or_else(|| DeleteTopicError::UnknownTopic(name.to_owned()))?;
    let remove = record(Record::RemoveTopic(RemoveTopic {
        topic_id: topic.id.as_bytes().to_vec(),
    }));
    Ok(ControllerResult::new(vec![remove], topic.id))
}

/// New partitions `first..`, epochs 0. The live replicas are in sync (a new partition is empty), and the
/// first of them leads: with placement that is every replica and the first; a manual assignment may name
/// fenced brokers, which join the ISR once they return and catch up.
fn partition_records<'a>(
    image: &'a MetadataImage,
    topic: TopicId,
    first: i32,
    placement: Vec<Vec<BrokerId>>,
) -> impl Iterator<Item = MetadataRecord> + 'a {
    (first..).zip(placement).map(move |(partition, replicas)| {
        let isr: Vec<BrokerId> = replicas.iter().copied().filter(|id| is_live(image, *id)).collect();
        record(Record::Partition(PartitionRecord {
            topic_id: topic.as_bytes().to_vec(),
            partition,
            leader: isr[0],
            isr,
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
        }))
    })
}

/// Kafka's topic name rules: 1 to 249 bytes of `[a-zA-Z0-9._-]`, and not `.` or `..` (which name
/// directories). Replay checks only the length; the characters matter for log directory names.
fn check_topic_name(name: &str) -> Result<(), CreateTopicError> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let valid = !name.is_empty()
        && name.len() <= TOPIC_NAME_BYTES_MAX
        && name != "."
        && name != ".."
        && name.chars().all(legal);
    if valid {
        Ok(())
    } else {
        Err(CreateTopicError::InvalidTopicName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::testing::{ORDERS, apply, cluster, partition, with_orders};
    use crate::image::ConfigResource;

    fn three() -> MetadataImage {
        cluster(&[(1, None), (2, None), (3, None)])
    }

    #[test]
    fn created_topic_has_led_in_sync_partitions_and_settings() {
        let configs = BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]);
        let created = create_topic(&three(), "orders", ORDERS, 3, 2, &configs).unwrap();
        assert_eq!(created.response, ORDERS);
        let image = apply(&three(), &created);
        let topic = image.topic_by_name("orders").unwrap();
        assert_eq!((topic.id, topic.partitions.len()), (ORDERS, 3));
        for p in topic.partitions.values() {
            assert_eq!(p.replicas.len(), 2);
            assert_eq!((p.leader, &p.isr), (p.replicas[0], &p.replicas));
            assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
        }
        let settings = image.configs(&ConfigResource::Topic("orders".into())).unwrap();
        assert_eq!(settings, &configs);
    }

    #[test]
    fn create_topic_refusals() {
        let image = with_orders(&three(), 1, 1);
        let none = BTreeMap::new();
        let other = TopicId::from_u128(2);
        let exists = create_topic(&image, "orders", other, 1, 1, &none).unwrap_err();
        assert_eq!(
            (exists.kafka_error_code(), exists),
            (36, CreateTopicError::TopicExists("orders".into()))
        );
        for name in ["", ".", "..", "a/b", "ü", &"x".repeat(250)] {
            let refused = create_topic(&image, name, other, 1, 1, &none).unwrap_err();
            assert_eq!(refused.kafka_error_code(), 17, "{name:?}");
        }
        let taken = create_topic(&image, "payments", ORDERS, 1, 1, &none).unwrap_err();
        assert_eq!(taken, CreateTopicError::InvalidTopicId(ORDERS));
        let nil = create_topic(&image, "payments", TopicId::nil(), 1, 1, &none).unwrap_err();
        assert_eq!(nil, CreateTopicError::InvalidTopicId(TopicId::nil()));
        let factor = create_topic(&image, "payments", other, 1, 4, &none).unwrap_err();
        assert_eq!(factor.kafka_error_code(), 38);
        let too_many = create_topic(&image, "payments", other, TOPIC_PARTITIONS_MAX + 1, 1, &none).unwrap_err();
        assert_eq!(too_many.kafka_error_code(), 37);
        let bad_key = BTreeMap::from([(String::new(), "v".to_owned())]);
        let config = create_topic(&image, "payments", other, 1, 1, &bad_key).unwrap_err();
        assert_eq!(config.kafka_error_code(), 40);
    }

    #[test]
    fn added_partitions_continue_the_placement() {
        let image = with_orders(&three(), 3, 2);
        let grown = apply(&image, &create_partitions(&image, "orders", 5).unwrap());
        let at_once = with_orders(&three(), 5, 2);
        assert_eq!(
            grown.topic(&ORDERS).unwrap().partitions,
            at_once.topic(&ORDERS).unwrap().partitions
        );
        assert_eq!(
            partition(&grown, 0),
            partition(&image, 0),
            "existing partitions are untouched"
        );

        for requested in [5, 4, TOPIC_PARTITIONS_MAX + 1] {
            let refused = create_partitions(&grown, "orders", requested).unwrap_err();
            assert_eq!(
                refused,
                CreatePartitionsError::InvalidPartitionCount { current: 5, requested }
            );
        }
        let unknown = create_partitions(&grown, "nope", 9).unwrap_err();
        assert_eq!(unknown.kafka_error_code(), 3);
    }

    #[test]
    fn manual_assignments_place_replicas_as_asked() {
        let image = three();
        let none = BTreeMap::new();
        let assignment = vec![vec![3, 1], vec![2, 3], vec![1, 2]];
        let created = create_topic_assigned(&image, "orders", ORDERS, assignment.clone(), &none).unwrap();
        let image = apply(&image, &created);
        for (index, replicas) in assignment.iter().enumerate() {
            let p = partition(&image, index as i32);
            assert_eq!((&p.replicas, &p.isr, p.leader), (replicas, replicas, replicas[0]));
        }
        let grown = create_partitions_assigned(&image, "orders", vec![vec![1, 3]]).unwrap();
        assert_eq!(partition(&apply(&image, &grown), 3).replicas, vec![1, 3]);

        let other = TopicId::from_u128(2);
        for (bad, why) in [
            (vec![vec![1, 1]], "duplicate"),
            (vec![vec![1, 9]], "unknown broker"),
            (vec![vec![1, 2], vec![3]], "unequal counts"),
            (vec![vec![]], "no replicas"),
        ] {
            let refused = create_topic_assigned(&image, "payments", other, bad, &none).unwrap_err();
            assert_eq!(refused.kafka_error_code(), 39, "{why}");
        }
        let short = create_partitions_assigned(&image, "orders", vec![vec![1]]).unwrap_err();
        assert_eq!(short.kafka_error_code(), 39, "fewer replicas than the topic's others");
    }

    #[test]
    fn deleted_topic_is_gone_and_its_name_free() {
        let image = with_orders(&three(), 2, 3);
        let deleted = delete_topic(&image, "orders").unwrap();
        assert_eq!(deleted.response, ORDERS);
        let image = apply(&image, &deleted);
        assert!(image.topic(&ORDERS).is_none());
        assert_eq!(
            delete_topic(&image, "orders"),
            Err(DeleteTopicError::UnknownTopic("orders".into()))
        );
        let again = create_topic(&image, "orders", TopicId::from_u128(3), 1, 1, &BTreeMap::new()).unwrap();
        assert!(apply(&image, &again).topic_by_name("orders").is_some());
    }
}
