//! FindCoordinator: on one node, this broker coordinates every group. Transaction coordinators are not
//! offered (transactions are not built).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

const KEY_TYPE_GROUP: i8 = 0;

pub fn handle(broker: &Broker, request: FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
    let node = BrokerId(broker.node_id());
    let host = StrBytes::from_string(broker.advertised.host.clone());
    let error = (request.key_type != KEY_TYPE_GROUP).then_some(ResponseError::CoordinatorNotAvailable);
    let code = error.map_or(0, |e| e.code());
    if version < 4 {
        return FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_node_id(if error.is_some() { BrokerId(-1) } else { node })
            .with_host(host)
            .with_port(broker.advertised.port);
    }
    // v4+: one answer per key.
    let coordinators = request
        .coordinator_keys
        .into_iter()
        .map(|key| {
            Coordinator::default()
                .with_key(key)
                .with_error_code(code)
                .with_node_id(if error.is_some() { BrokerId(-1) } else { node })
                .with_host(host.clone())
                .with_port(broker.advertised.port)
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}
