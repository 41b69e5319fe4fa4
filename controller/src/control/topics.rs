//! Topic requests: CreateTopics, CreatePartitions and DeleteTopics, as records.
//!
//! Checks here repeat those of replay (name, free name and id, known topic) and add Kafka's request rules
//! (legal name characters, partitions only grow), so that a client gets Kafka's error code and a committed
//! batch is never refused.

use std::collections::BTreeMap;

use crate::control::placement::{PlacementError, place_replicas};
use crate::control::{ControllerResult, record};
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
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

impl CreatePartitionsError {
    /// The Kafka error code a client sees.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            Self::UnknownTopic(_) => 3,
            Self::InvalidPartitionCount { .. } => 37,
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
    if partitions > TOPIC_PARTITIONS_MAX {
        return Err(PlacementError::InvalidPartitionCount(partitions).into());
    }
    let placement = place_replicas(image, id, 0, partitions, replication_factor)?;
    let mut records = Vec::with_capacity(1 + placement.len() + configs.len());
    records.push(record(Record::Topic(TopicRecord {
        name: name.to_owned(),
        topic_id: id.as_bytes().to_vec(),
    })));
    records.extend(partition_records(id, 0, placement));
    records.extend(configs.iter().map(|(key, value)| {
        record(Record::Config(ConfigRecord {
            resource_type: ConfigResourceType::Topic.into(),
            resource_name: name.to_owned(),
            key: key.clone(),
            value: Some(value.clone()),
        }))
    }));
    Ok(ControllerResult::new(records, id))
}

/// Grows topic `name` to `new_count` partitions. The new ones are placed as at creation (continuing the
/// topic's sequence) with the replication factor of partition 0, as Kafka does.
pub fn create_partitions(
    image: &MetadataImage,
    name: &str,
    new_count: i32,
) -> Result<ControllerResult, CreatePartitionsError> {
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
    let replication_factor = topic
        .partitions
        .get(&0)
        .map_or(1, |partition| partition.replicas.len() as i32);
    let placement = place_replicas(image, topic.id, current, new_count - current, replication_factor)?;
    let records = partition_records(topic.id, current, placement).collect();
    Ok(ControllerResult::new(records, ()))
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

/// New partitions `first..`, led by their first replica, every replica in sync, epochs 0.
fn partition_records(
    topic: TopicId,
    first: i32,
    placement: Vec<Vec<BrokerId>>,
) -> impl Iterator<Item = MetadataRecord> {
    (first..).zip(placement).map(move |(partition, replicas)| {
        record(Record::Partition(PartitionRecord {
            topic_id: topic.as_bytes().to_vec(),
            partition,
            isr: replicas.clone(),
            leader: replicas[0],
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
