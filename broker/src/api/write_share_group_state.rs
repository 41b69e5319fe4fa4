//! WriteShareGroupState (KIP-932, between brokers): a share-partition leader makes a snapshot of the
//! partition's state durable at its share coordinator (`crate::share::state`), answered once every in-sync
//! replica of `__share_group_state` has it. A snapshot from an older leader epoch than the last writer's is
//! `FENCED_LEADER_EPOCH`; a key this broker does not coordinate is `NOT_COORDINATOR`; offsets or states that
//! make no sense are `INVALID_REQUEST`.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::write_share_group_state_response::{PartitionResult, WriteStateResult};
use kafka_protocol::messages::{WriteShareGroupStateRequest, WriteShareGroupStateResponse};

use crate::broker::Broker;
use crate::share::partition::{ShareSnapshot, StateBatch};
use crate::share::state::{StateKey, Stored, record_state};

pub async fn handle(
    broker: &Broker,
    request: WriteShareGroupStateRequest,
    _version: i16,
) -> WriteShareGroupStateResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let key = StateKey {
                group: request.group_id.to_string(),
                topic_id: topic.topic_id,
                partition: p.partition,
            };
            let result = match stored(p) {
                Some(stored) => broker.shares.state.write(&broker.replicas, &key, stored).await,
                None => Err(ResponseError::InvalidRequest),
            };
            partitions.push(
                PartitionResult::default()
                    .with_partition(p.partition)
                    .with_error_code(result.err().map_or(0, |e| e.code())),
            );
        }
        results.push(
            WriteStateResult::default()
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    WriteShareGroupStateResponse::default().with_results(results)
}

/// The state a request's partition carries, if it is well formed.
fn stored(p: &kafka_protocol::messages::write_share_group_state_request::PartitionData) -> Option<Stored> {
    let batches = p
        .state_batches
        .iter()
        .map(|b| {
            let (first, last) = (u64::try_from(b.first_offset).ok()?, u64::try_from(b.last_offset).ok()?);
            (first <= last).then_some(())?;
            Some(StateBatch {
                first,
                last,
                state: record_state(b.delivery_state)?,
                delivery_count: u16::try_from(b.delivery_count).ok()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Stored {
        state_epoch: p.state_epoch,
        leader_epoch: p.leader_epoch,
        snapshot: ShareSnapshot {
            // -1: deleted by an administrator.
            start_offset: match p.start_offset {
                -1 => crate::share::state::UNINITIALIZED,
                offset => u64::try_from(offset).ok()?,
            },
            batches,
        },
    })
}
