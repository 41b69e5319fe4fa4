//! DeleteGroups: removes groups that have no members, and their committed offsets.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: DeleteGroupsRequest, _version: i16) -> DeleteGroupsResponse {
    let results = request
        .groups_names
        .into_iter()
        .map(|group| {
            let known = broker.groups.describe(&group).is_some() || !broker.offsets.of_group(&group).is_empty();
            let result = if !known {
                Err(ResponseError::GroupIdNotFound)
            } else {
                broker.groups.delete(&group).and_then(|()| {
                    let partitions = broker.offsets.of_group(&group).into_iter().map(|(tp, _)| tp).collect();
                    broker.offsets.delete(broker, &group, partitions)
                })
            };
            DeletableGroupResult::default()
                .with_group_id(group)
                .with_error_code(result.err().map_or(0, |e| e.code()))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
