//! KIP-932's persister, share-partition leader side: reads and writes a share-partition's durable state at its
//! share coordinator (`crate::share::state`), which is the leader of the state's partition of
//! `__share_group_state`. When that is this broker, the store is called directly; otherwise through
//! ReadShareGroupState and WriteShareGroupState on the coordinator's inter-broker listener, as Kafka's
//! brokers do. A coordinator that moves, is loading, or cannot be reached is retried until
//! [`PERSIST_TIMEOUT`].
//!
//! `__share_group_state` is created on first use, as `__consumer_offsets` is: 50 partitions, compacted,
//! replicated as the offsets topic is.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ReadShareGroupStateRequest, WriteShareGroupStateRequest, read_share_group_state_request,
    write_share_group_state_request,
};
use kafka_protocol::protocol::StrBytes;
use strata_protocol::client::Client;
use tokio::sync::Mutex;
use tracing::warn;

use super::partition::{ShareSnapshot, StateBatch};
use super::state::{
    SHARE_STATE_PARTITIONS, SHARE_STATE_TOPIC, StateKey, Stored, UNINITIALIZED, delivery_state, record_state,
};
use crate::broker::Broker;
use crate::replica::ClusterView;

/// How long a read or write of a share-partition's state keeps trying.
pub const PERSIST_TIMEOUT: Duration = Duration::from_secs(15);
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Connections to other brokers' share coordinators, one per broker, used by one request at a time.
#[derive(Debug, Default)]
pub struct Connections {
    clients: Mutex<HashMap<i32, Client>>,
}

/// Errors worth trying again: the coordinator moved, is loading, or was not reachable.
fn retriable(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::NotCoordinator
            | ResponseError::CoordinatorLoadInProgress
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::RequestTimedOut
            | ResponseError::NetworkException
    )
}

/// A start offset on the wire: -1 for [`UNINITIALIZED`].
pub fn wire_offset(start_offset: u64) -> i64 {
    i64::try_from(start_offset).unwrap_or(-1)
}

/// The share coordinator of `key`: the leader of its partition of `__share_group_state`.
async fn coordinator(broker: &Broker, key: &StateKey) -> Result<i32, ResponseError> {
    broker
        .ensure_internal_topic(SHARE_STATE_TOPIC, SHARE_STATE_PARTITIONS)
        .await?;
    broker
        .metadata
        .image()
        .topic_by_name(SHARE_STATE_TOPIC)
        .and_then(|t| t.partitions.get(&key.state_partition()))
        .map(|p| p.leader)
        .filter(|leader| *leader >= 0)
        .ok_or(ResponseError::CoordinatorNotAvailable)
}

/// Whether to try `result` again: a retriable error before `deadline`. Logs what is given up.
async fn again<T>(
    broker: &Broker,
    what: &str,
    key: &StateKey,
    deadline: tokio::time::Instant,
    result: &Result<T, ResponseError>,
) -> bool {
    match result {
        Ok(_) => false,
        Err(error)
            if retriable(*error) && tokio::time::Instant::now() < deadline && !broker.shutdown.is_cancelled() =>
        {
            tokio::time::sleep(RETRY_BACKOFF).await;
            true
        }
        Err(error) => {
            warn!(group = %key.group, topic_id = %key.topic_id, partition = key.partition, ?error, what, "share-partition state not persisted");
            false
        }
    }
}

/// Sends `request` to broker `node`'s share coordinator, over a kept connection.
async fn send<R: kafka_protocol::protocol::Request>(
    broker: &Broker,
    node: i32,
    request: R,
) -> Result<R::Response, ResponseError> {
    let mut clients = broker.shares.coordinators.clients.lock().await;
    let client = match clients.entry(node) {
        Entry::Occupied(client) => client.into_mut(),
        Entry::Vacant(slot) => {
            let addr = broker
                .metadata
                .broker_address(node)
                .ok_or(ResponseError::CoordinatorNotAvailable)?;
            slot.insert(
                Client::connect(&addr)
                    .await
                    .map_err(|_| ResponseError::NetworkException)?,
            )
        }
    };
    let answer = client.send(request).await;
    if answer.is_err() {
        clients.remove(&node);
    }
    answer.map_err(|_| ResponseError::NetworkException)
}

/// The durable state of `key` with its state epoch, `None` if it has none yet.
pub async fn read(
    broker: &Broker,
    key: &StateKey,
    leader_epoch: i32,
) -> Result<Option<(i32, ShareSnapshot)>, ResponseError> {
    let deadline = tokio::time::Instant::now() + PERSIST_TIMEOUT;
    loop {
        let result = read_once(broker, key, leader_epoch).await;
        if !again(broker, "read", key, deadline, &result).await {
            return result;
        }
    }
}

async fn read_once(
    broker: &Broker,
    key: &StateKey,
    leader_epoch: i32,
) -> Result<Option<(i32, ShareSnapshot)>, ResponseError> {
    let node = coordinator(broker, key).await?;
    if node == broker.node_id() {
        return Ok(broker
            .shares
            .state
            .read(&broker.replicas, key)?
            .map(|stored| (stored.state_epoch, stored.snapshot)));
    }
    let request = ReadShareGroupStateRequest::default()
        .with_group_id(StrBytes::from_string(key.group.clone()))
        .with_topics(vec![
            read_share_group_state_request::ReadStateData::default()
                .with_topic_id(key.topic_id)
                .with_partitions(vec![
                    read_share_group_state_request::PartitionData::default()
                        .with_partition(key.partition)
                        .with_leader_epoch(leader_epoch),
                ]),
        ]);
    let response = send(broker, node, request).await?;
    let result = response
        .results
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or(ResponseError::UnknownServerError)?;
    if result.error_code != 0 {
        return Err(ResponseError::try_from_code(result.error_code).unwrap_or(ResponseError::UnknownServerError));
    }
    // Kafka answers a share-partition without state with start offset -1; at a state epoch past 0 it is
    // one an administrator deleted.
    if result.start_offset < 0 && result.state_epoch == 0 && result.state_batches.is_empty() {
        return Ok(None);
    }
    let batches = result
        .state_batches
        .iter()
        .map(|b| {
            Some(StateBatch {
                first: u64::try_from(b.first_offset).ok()?,
                last: u64::try_from(b.last_offset).ok()?,
                state: record_state(b.delivery_state)?,
                delivery_count: u16::try_from(b.delivery_count).ok()?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or(ResponseError::UnknownServerError)?;
    let start_offset = u64::try_from(result.start_offset).unwrap_or(UNINITIALIZED);
    Ok(Some((result.state_epoch, ShareSnapshot { start_offset, batches })))
}

/// Makes `snapshot` the durable state of `key` at `state_epoch`, written by the leader at `leader_epoch` (or
/// by an administrator's change, which moves the state epoch on).
pub async fn write(
    broker: &Broker,
    key: &StateKey,
    leader_epoch: i32,
    state_epoch: i32,
    snapshot: ShareSnapshot,
) -> Result<(), ResponseError> {
    let deadline = tokio::time::Instant::now() + PERSIST_TIMEOUT;
    loop {
        let result = write_once(broker, key, leader_epoch, state_epoch, &snapshot).await;
        if !again(broker, "write", key, deadline, &result).await {
            return result;
        }
    }
}

async fn write_once(
    broker: &Broker,
    key: &StateKey,
    leader_epoch: i32,
    state_epoch: i32,
    snapshot: &ShareSnapshot,
) -> Result<(), ResponseError> {
    let node = coordinator(broker, key).await?;
    if node == broker.node_id() {
        let stored = Stored {
            state_epoch,
            leader_epoch,
            snapshot: snapshot.clone(),
        };
        return broker.shares.state.write(&broker.replicas, key, stored).await;
    }
    let batches = snapshot
        .batches
        .iter()
        .map(|b| {
            write_share_group_state_request::StateBatch::default()
                .with_first_offset(b.first as i64)
                .with_last_offset(b.last as i64)
                .with_delivery_state(delivery_state(b.state))
                .with_delivery_count(b.delivery_count as i16)
        })
        .collect();
    let request = WriteShareGroupStateRequest::default()
        .with_group_id(StrBytes::from_string(key.group.clone()))
        .with_topics(vec![
            write_share_group_state_request::WriteStateData::default()
                .with_topic_id(key.topic_id)
                .with_partitions(vec![
                    write_share_group_state_request::PartitionData::default()
                        .with_partition(key.partition)
                        .with_leader_epoch(leader_epoch)
                        .with_start_offset(snapshot.start_offset as i64)
                        .with_state_batches(batches),
                ]),
        ]);
    let response = send(broker, node, request).await?;
    let code = response
        .results
        .first()
        .and_then(|t| t.partitions.first())
        .map(|p| p.error_code)
        .ok_or(ResponseError::UnknownServerError)?;
    match code {
        0 => Ok(()),
        code => Err(ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError)),
    }
}
