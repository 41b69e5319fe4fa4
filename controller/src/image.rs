//! The `MetadataImage`: the cluster metadata as of one point of the metadata log, immutable.
//!
//! An image is never changed in place. A [`MetadataDelta`](crate::MetadataDelta) replays committed records on
//! top of one image and produces the next (Kafka's `MetadataImage` / `MetadataDelta`). Readers — the broker's
//! metadata cache, request handlers, the controller's own logic — hold an image as long as they like: it is a
//! handful of `Arc`s, so cloning it is cheap, and a new image shares every map the records did not touch.
//!
//! This module owns the shape of the metadata and how it is written out as records (for snapshots). It does
//! not own the rules of change: those are in [`crate::delta`].

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use crate::proto::metadata::{
    ConfigRecord, ConfigResourceType, Listener, MetadataRecord, PartitionRecord, RegisterBroker, TopicRecord,
    UnfenceBroker, metadata_record::Record,
};

/// A broker id (Kafka's `node.id` of a broker): non-negative.
pub type BrokerId = i32;

/// A topic id: a random UUID that, unlike the name, is never reused.
pub type TopicId = Uuid;

/// Kafka's "no leader" broker id: the partition is offline.
pub const NO_LEADER: BrokerId = -1;

/// A registered broker.
#[derive(Debug, Clone, PartialEq)]
pub struct Broker {
    pub id: BrokerId,
    /// Which run of the broker process registered (see `RegisterBroker.incarnation`).
    pub incarnation: u64,
    pub listeners: Vec<Listener>,
    pub rack: Option<String>,
    /// A fenced broker leads no partition and is in no ISR. Brokers register fenced.
    pub fenced: bool,
}

impl Broker {
    /// The broker's listener named `name` (Kafka's per-listener endpoints: a client is told the addresses
    /// of the listener it connected to).
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

/// One partition's replicas and leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Assigned replicas, preferred leader first.
    pub replicas: Vec<BrokerId>,
    /// In-sync replicas, a subset of `replicas`.
    pub isr: Vec<BrokerId>,
    /// The leader, a member of `isr`, or [`NO_LEADER`].
    pub leader: BrokerId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    pub id: TopicId,
    pub name: String,
    /// By partition index. Shared between images until a record touches one of this topic's partitions.
    pub partitions: Arc<BTreeMap<i32, Partition>>,
}

/// What a setting belongs to, with Kafka's resource names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigResource {
    /// A topic, by name (Kafka keys topic configs by name).
    Topic(String),
    /// A broker, by id as text; the empty name holds the cluster-wide defaults.
    Broker(String),
    /// A group, by group id (KIP-848's group configs). A group's settings outlive the group: they are
    /// Kafka's per-group-id settings, not part of a group's state.
    Group(String),
}

/// Settings of one resource: key → value, only the keys that were set.
pub type Configs = BTreeMap<String, String>;

/// The cluster metadata after replaying a prefix of the metadata log.
///
/// Each map sits behind its own `Arc`, and each topic and each resource's settings behind another, so that
/// the next image copies only what changed (copy on write, in [`crate::delta`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataImage {
    pub(crate) brokers: Arc<BTreeMap<BrokerId, Broker>>,
    pub(crate) topics: Arc<BTreeMap<TopicId, Arc<Topic>>>,
    /// Topic names → ids, kept in step with `topics`.
    pub(crate) topic_ids: Arc<BTreeMap<String, TopicId>>,
    pub(crate) configs: Arc<BTreeMap<ConfigResource, Arc<Configs>>>,
}

impl MetadataImage {
    /// The image before any record: no brokers, topics or settings.
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.brokers.is_empty() && self.topics.is_empty() && self.configs.is_empty()
    }

    pub fn brokers(&self) -> &BTreeMap<BrokerId, Broker> {
        &self.brokers
    }

    pub fn broker(&self, id: BrokerId) -> Option<&Broker> {
        self.brokers.get(&id)
    }

    pub fn topics(&self) -> &BTreeMap<TopicId, Arc<Topic>> {
        &self.topics
    }

    pub fn topic(&self, id: &TopicId) -> Option<&Arc<Topic>> {
        self.topics.get(id)
    }

    pub fn topic_by_name(&self, name: &str) -> Option<&Arc<Topic>> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn partition(&self, topic: &TopicId, partition: i32) -> Option<&Partition> {
        self.topics.get(topic)?.partitions.get(&partition)
    }

    /// Settings of `resource` that were set; empty when none were.
    pub fn configs(&self, resource: &ConfigResource) -> Option<&Configs> {
        self.configs.get(resource).map(|configs| &**configs)
    }

    /// Every resource that has settings.
    pub fn config_resources(&self) -> impl Iterator<Item = &ConfigResource> {
        self.configs.keys()
    }

    /// The records that rebuild this image when replayed on an empty one, in an order that replay accepts
    /// (brokers, then each topic followed by its partitions, then settings, which need their topic). This is
    /// what a snapshot holds, as in Kafka.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut records = Vec::with_capacity(self.record_count());
        for broker in self.brokers.values() {
            records.extend(broker_records(broker));
        }
        for topic in self.topics.values() {
            records.extend(topic_records(topic));
        }
        for (resource, configs) in self.configs.iter() {
            records.extend(configs.iter().map(|(key, value)| config_record(resource, key, value)));
        }
        records
    }

    /// How many records [`Self::to_records`] writes.
    fn record_count(&self) -> usize {
        let brokers = self
            .brokers
            .values()
            .map(|broker| if broker.fenced { 1 } else { 2 })
            .sum::<usize>();
        let topics = self
            .topics
            .values()
            .map(|topic| 1 + topic.partitions.len())
            .sum::<usize>();
        let configs = self.configs.values().map(|configs| configs.len()).sum::<usize>();
        brokers + topics + configs
    }
}

fn record(record: Record) -> MetadataRecord {
    MetadataRecord { record: Some(record) }
}

/// A registration, and an unfence for a live broker (registrations replay as fenced).
fn broker_records(broker: &Broker) -> impl Iterator<Item = MetadataRecord> {
    let register = record(Record::RegisterBroker(RegisterBroker {
        broker_id: broker.id,
        incarnation: broker.incarnation,
        listeners: broker.listeners.clone(),
        rack: broker.rack.clone(),
    }));
    let unfence = (!broker.fenced).then(|| {
        record(Record::UnfenceBroker(UnfenceBroker {
            broker_id: broker.id,
            incarnation: broker.incarnation,
        }))
    });
    std::iter::once(register).chain(unfence)
}

fn topic_records(topic: &Topic) -> impl Iterator<Item = MetadataRecord> + '_ {
    let topic_id = topic.id.as_bytes().to_vec();
    let created = record(Record::Topic(TopicRecord {
        name: topic.name.clone(),
        topic_id: topic_id.clone(),
    }));
    let partitions = topic.partitions.iter().map(move |(&index, partition)| {
        record(Record::Partition(PartitionRecord {
            topic_id: topic_id.clone(),
            partition: index,
            replicas: partition.replicas.clone(),
            isr: partition.isr.clone(),
            leader: partition.leader,
            leader_epoch: partition.leader_epoch,
            partition_epoch: partition.partition_epoch,
        }))
    });
    std::iter::once(created).chain(partitions)
}

fn config_record(resource: &ConfigResource, key: &str, value: &str) -> MetadataRecord {
    let (resource_type, resource_name) = match resource {
        ConfigResource::Topic(name) => (ConfigResourceType::Topic, name),
        ConfigResource::Broker(name) => (ConfigResourceType::Broker, name),
        ConfigResource::Group(name) => (ConfigResourceType::Group, name),
    };
    record(Record::Config(ConfigRecord {
        resource_type: resource_type.into(),
        resource_name: resource_name.clone(),
        key: key.to_owned(),
        value: Some(value.to_owned()),
    }))
}
