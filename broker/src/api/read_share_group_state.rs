//! ReadShareGroupState (KIP-932, between brokers): a share coordinator answers a share-partition leader with
//! the partition's durable state (`crate::share::state`). A share-partition without state is answered with
//! start offset -1, as Kafka does; a key this broker does not coordinate is `NOT_COORDINATOR`.

use kafka_protocol::messages::read_share_group_state_response::{PartitionResult, ReadStateResult, StateBatch};
use kafka_protocol::messages::{ReadShareGroupStateRequest, ReadShareGroupStateResponse};

use crate::broker::Broker;
use crate::share::state::{StateKey, delivery_state};

pub fn handle(broker: &Broker, request: ReadShareGroupStateRequest, _version: i16) -> ReadShareGroupStateResponse {
    let results = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let key = StateKey {
                        group: request.group_id.to_string(),
                        topic_id: topic.topic_id,
                        partition: p.partition,
                    };
                    let result = PartitionResult::default().with_partition(p.partition);
                    match broker.shares.state.read(&broker.replicas, &key) {
                        Err(error) => result.with_error_code(error.code()),
                        Ok(None) => result.with_start_offset(-1),
                        Ok(Some(stored)) => result
                            .with_state_epoch(stored.state_epoch)
                            .with_start_offset(crate::share::persister::wire_offset(stored.snapshot.start_offset))
                            .with_state_batches(
                                stored
                                    .snapshot
                                    .batches
                                    .iter()
                                    .map(|b| {
                                        StateBatch::default()
                                            .with_first_offset(b.first as i64)
                                            .with_last_offset(b.last as i64)
                                            .with_delivery_state(delivery_state(b.state))
                                            .with_delivery_count(b.delivery_count as i16)
                                    })
                                    .collect(),
                            ),
                    }
                })
                .collect();
            ReadStateResult::default()
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    ReadShareGroupStateResponse::default().with_results(results)
}
