//! Heartbeat: keeps a member's session; REBALANCE_IN_PROGRESS tells it to rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
    let result = broker.groups.heartbeat(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id,
    );
    HeartbeatResponse::default().with_error_code(result.err().map_or(0, |e| e.code()))
}
