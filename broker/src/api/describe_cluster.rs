//! DescribeCluster: the cluster id and the brokers, from the metadata image. Only live (unfenced) brokers,
//! unless a v2 request sets `include_fenced_brokers` (KIP-1073): then the fenced ones too, marked
//! `is_fenced`, so that an operator sees a broker that registered and is not serving.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::authorized::{self, Resource};
use crate::broker::Broker;

/// Brokers are listed at their addresses on `listener`, the one the request came in on; a broker without it
/// is left out, as Kafka does.
pub fn handle(
    broker: &Broker,
    request: DescribeClusterRequest,
    version: i16,
    listener: &str,
) -> DescribeClusterResponse {
    // The flag decodes as false before v2, and `is_fenced` would not encode there; the version check keeps
    // the two together.
    let include_fenced = version >= 2 && request.include_fenced_brokers;
    let image = broker.metadata.image();
    let brokers = image
        .brokers()
        .values()
        .filter(|b| include_fenced || !b.fenced)
        .filter_map(|b| {
            let listener = b.listener(listener)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(listener.host.clone()))
                    .with_port(listener.port as i32)
                    .with_rack(b.rack.clone().map(StrBytes::from_string))
                    .with_is_fenced(b.fenced),
            )
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(StrBytes::from_string(broker.identity.cluster_id.clone()))
        // As in Kafka (KRaft), a live broker, which forwards controller requests.
        .with_controller_id(BrokerId(broker.node_id()))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(authorized::operations(
            request.include_cluster_authorized_operations,
            Resource::Cluster,
        ))
}
