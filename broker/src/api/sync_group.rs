//! SyncGroup: the leader hands out the assignment; followers wait for theirs.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: SyncGroupRequest, _version: i16) -> SyncGroupResponse {
    let assignments = request
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    match broker
        .groups
        .sync(
            &request.group_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
            assignments,
            &super::consumer_group_heartbeat::ImageTopics(broker.metadata.image()),
        )
        .await
    {
        Ok(synced) => SyncGroupResponse::default()
            .with_protocol_type(Some(StrBytes::from_string(synced.protocol_type)))
            .with_protocol_name(Some(StrBytes::from_string(synced.protocol)))
            .with_assignment(synced.assignment),
        Err(error) => SyncGroupResponse::default().with_error_code(error.code()),
    }
}
