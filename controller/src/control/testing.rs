//! Test helpers: images built from records, and results replayed as a controller would commit them.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::control::{ControllerResult, create_topic, record};
use crate::image::{BrokerId, MetadataImage, Partition, TopicId};
use crate::proto::metadata::{
    BrokerIds, Listener, MetadataBatch, PartitionChange, RegisterBroker, UnfenceBroker, metadata_record::Record,
};

pub(crate) const ORDERS: TopicId = Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0001);

/// Replays `result`'s records on `image`, as the state machine does after commit; they must be accepted.
pub(crate) fn apply<T>(image: &MetadataImage, result: &ControllerResult<T>) -> MetadataImage {
    let batch = MetadataBatch {
        records: result.records.clone(),
    };
    image
        .replay_batch(&batch)
        .expect("control logic produced a batch replay refuses")
}

/// Registers broker `id` (a new run, `incarnation`) and unfences it: the records a restart ends with.
pub(crate) fn join(image: &MetadataImage, id: BrokerId, incarnation: u64, rack: Option<&str>) -> MetadataImage {
    let register = record(Record::RegisterBroker(RegisterBroker {
        broker_id: id,
        incarnation,
        listeners: vec![Listener {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9092,
            security_protocol: "PLAINTEXT".into(),
        }],
        rack: rack.map(str::to_owned),
    }));
    let unfence = record(Record::UnfenceBroker(UnfenceBroker {
        broker_id: id,
        incarnation,
    }));
    apply(image, &ControllerResult::new(vec![register, unfence], ()))
}

/// Live brokers with the given racks.
pub(crate) fn cluster(brokers: &[(BrokerId, Option<&str>)]) -> MetadataImage {
    brokers
        .iter()
        .fold(MetadataImage::empty(), |image, &(id, rack)| join(&image, id, 1, rack))
}

/// `image` with topic "orders" (id [`ORDERS`]) created by the control logic.
pub(crate) fn with_orders(image: &MetadataImage, partitions: i32, replication_factor: i32) -> MetadataImage {
    let created = create_topic(
        image,
        "orders",
        ORDERS,
        partitions,
        replication_factor,
        &BTreeMap::new(),
    )
    .unwrap();
    apply(image, &created)
}

/// Sets the ISR of partition `partition` of "orders", as its leader would once a follower caught up.
pub(crate) fn set_isr(image: &MetadataImage, partition: i32, isr: &[BrokerId]) -> MetadataImage {
    let change = record(Record::PartitionChange(PartitionChange {
        topic_id: ORDERS.as_bytes().to_vec(),
        partition,
        leader: None,
        isr: Some(BrokerIds { ids: isr.to_vec() }),
        replicas: None,
    }));
    apply(image, &ControllerResult::new(vec![change], ()))
}

pub(crate) fn partition(image: &MetadataImage, index: i32) -> &Partition {
    image.partition(&ORDERS, index).unwrap()
}

/// How many partitions of "orders" each broker leads.
pub(crate) fn leaders(image: &MetadataImage) -> BTreeMap<BrokerId, usize> {
    let mut counts = BTreeMap::new();
    for partition in image.topic(&ORDERS).unwrap().partitions.values() {
        *counts.entry(partition.leader).or_default() += 1;
    }
    counts
}
