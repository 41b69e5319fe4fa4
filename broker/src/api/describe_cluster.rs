//! DescribeCluster: the cluster id, the controller, and the brokers (here, this node).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: DescribeClusterRequest, _version: i16) -> DescribeClusterResponse {
    let node = BrokerId(broker.node_id());
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(StrBytes::from_string(broker.identity.cluster_id.clone()))
        .with_controller_id(node)
        .with_brokers(vec![
            DescribeClusterBroker::default()
                .with_broker_id(node)
                .with_host(StrBytes::from_string(broker.advertised.host.clone()))
                .with_port(broker.advertised.port),
        ])
        .with_cluster_authorized_operations(i32::MIN)
}
