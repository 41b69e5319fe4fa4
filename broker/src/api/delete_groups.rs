//! DeleteGroups: removes groups that have no members, and their committed offsets. A share group without
//! members loses its share-partitions (their start offsets and in-flight records), as Kafka deletes a share
//! group's state; with members it is `NON_EMPTY_GROUP`.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::check_coordinator;
use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: DeleteGroupsRequest, _version: i16) -> DeleteGroupsResponse {
    // Share group members whose session ended are not members any more.
    super::share_group_heartbeat::expire_members(broker);
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group in request.groups_names {
        let known = broker.groups.describe(&group).is_some()
            || broker.groups.describe_consumer(&group).is_some()
            || !broker.offsets.of_group(&group).is_empty();
        let share = broker.shares.groups.describe(&group, &Default::default()).is_some();
        let result = if let Err(error) = check_coordinator(broker, &group) {
            Err(error)
        } else if share {
            // A share group with members is not deleted, as Kafka refuses.
            Err(ResponseError::NonEmptyGroup)
        } else if !known && !broker.shares.of_group(&group).is_empty() {
            // An empty share group: what its share-partitions remember goes.
            broker.shares.forget_group(&group);
            Ok(())
        } else if !known {
            Err(ResponseError::GroupIdNotFound)
        } else {
            match broker.groups.delete(&group, &broker.group_log()) {
                Ok(written) => {
                    if let Some(written) = written
                        && let Err(error) = written.wait().await
                    {
                        results.push(
                            DeletableGroupResult::default()
                                .with_group_id(group)
                                .with_error_code(error.code()),
                        );
                        continue;
                    }
                    let partitions = broker.offsets.of_group(&group).into_iter().map(|(tp, _)| tp).collect();
                    broker.offsets.delete(&broker.replicas, &group, partitions).await
                }
                Err(e) => Err(e),
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group)
                .with_error_code(result.err().map_or(0, |e| e.code())),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
