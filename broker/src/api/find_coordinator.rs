//! FindCoordinator: the broker that coordinates a consumer group, which is the leader of the group's
//! partition of `__consumer_offsets` (created here on first use, as Kafka does).
//!
//! Transactions are not implemented, so no transaction coordinator is offered. The answer for one must make
//! the client give up at once rather than retry until `transaction.timeout.ms`: clients retry
//! COORDINATOR_NOT_AVAILABLE, while TRANSACTIONAL_ID_AUTHORIZATION_FAILED is fatal for librdkafka's
//! transaction manager (`init_transactions()` fails at once with the message below) and for the Java
//! producer alike. Idempotent producers never ask for a transaction coordinator and are not affected.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::groups::offsets::{OFFSETS_PARTITIONS, OFFSETS_TOPIC, partition_for};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Why a transactional producer is turned away, for the client's error.
const NO_TRANSACTIONS: &str = "transactions are not supported by this broker (Strata); use an idempotent producer \
                               (enable.idempotence=true) without transactional.id";

/// Why there is no coordinator to give: the error code and, for the client's log, a message.
type Refusal = (ResponseError, Option<&'static str>);

/// The coordinator of `group`: (node id, host, port).
async fn coordinator(
    broker: &Broker,
    key_type: i8,
    group: &str,
    listener: &str,
) -> Result<(i32, String, i32), Refusal> {
    match key_type {
        KEY_TYPE_GROUP => {}
        KEY_TYPE_TRANSACTION => return Err((ResponseError::TransactionalIdAuthorizationFailed, Some(NO_TRANSACTIONS))),
        _ => return Err((ResponseError::InvalidRequest, Some("unknown coordinator key type"))),
    }
    broker
        .ensure_internal_topic(OFFSETS_TOPIC, OFFSETS_PARTITIONS)
        .await
        .map_err(|e| (e, None))?;
    let image = broker.metadata.image();
    let leader = image
        .topic_by_name(OFFSETS_TOPIC)
        .and_then(|topic| topic.partitions.get(&partition_for(group)))
        .map(|partition| partition.leader)
        .ok_or((ResponseError::CoordinatorNotAvailable, None))?;
    let listener = image
        .broker(leader)
        .filter(|b| !b.fenced)
        .and_then(|b| b.listener(listener))
        .ok_or((ResponseError::CoordinatorNotAvailable, None))?;
    Ok((leader, listener.host.clone(), listener.port as i32))
}

/// The coordinator is given at its address on `listener`, the one the request came in on.
pub async fn handle(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> FindCoordinatorResponse {
    if version < 4 {
        let found = coordinator(broker, request.key_type, &request.key, listener).await;
        let (node, host, port) = found.clone().unwrap_or((-1, String::new(), -1));
        let (error, message) = refusal(found.err());
        return FindCoordinatorResponse::default()
            .with_error_code(error)
            .with_error_message(message)
            .with_node_id(BrokerId(node))
            .with_host(StrBytes::from_string(host))
            .with_port(port);
    }
    // v4+: one answer per key.
    let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
    for key in request.coordinator_keys {
        let found = coordinator(broker, request.key_type, &key, listener).await;
        let (node, host, port) = found.clone().unwrap_or((-1, String::new(), -1));
        let (error, message) = refusal(found.err());
        coordinators.push(
            Coordinator::default()
                .with_key(key)
                .with_error_code(error)
                .with_error_message(message)
                .with_node_id(BrokerId(node))
                .with_host(StrBytes::from_string(host))
                .with_port(port),
        );
    }
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}

/// A refusal as the response's error code and message (0 and none when there is a coordinator).
fn refusal(refused: Option<Refusal>) -> (i16, Option<StrBytes>) {
    match refused {
        None => (0, None),
        Some((error, message)) => (error.code(), message.map(StrBytes::from_static_str)),
    }
}
