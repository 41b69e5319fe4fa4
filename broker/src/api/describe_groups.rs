//! DescribeGroups: state, protocol and members with their assignments of classic groups. An unknown group,
//! or a consumer-protocol one, is described as `Dead`, as Kafka describes them before v6.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::authorized::{self, Resource};
use super::check_coordinator;
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: DescribeGroupsRequest, _version: i16) -> DescribeGroupsResponse {
    let operations = authorized::operations(request.include_authorized_operations, Resource::Group);
    let groups = request
        .groups
        .into_iter()
        .map(|id| {
            let described = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(operations);
            if let Err(error) = check_coordinator(broker, &id) {
                return described.with_error_code(error.code());
            }
            // A consumer-protocol group is no classic group: Kafka 4 answers `GROUP_ID_NOT_FOUND` from v6, and
            // `Dead` without an error at the versions before (which are all this broker speaks). Its members
            // are for ConsumerGroupDescribe.
            if broker.groups.describe_consumer(&id).is_some() {
                return described.with_group_state(StrBytes::from_static_str("Dead"));
            }
            let Some(view) = broker.groups.describe(&id) else {
                let state = if broker.offsets.of_group(&id).is_empty() {
                    "Dead"
                } else {
                    "Empty"
                };
                return described.with_group_state(StrBytes::from_static_str(state));
            };
            let members = view
                .members
                .into_iter()
                .map(|m| {
                    DescribedGroupMember::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_group_instance_id(m.instance_id.map(StrBytes::from_string))
                        .with_client_id(StrBytes::from_string(m.client_id))
                        .with_client_host(StrBytes::from_string(m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment)
                })
                .collect();
            described
                .with_group_state(StrBytes::from_static_str(view.state.name()))
                .with_protocol_type(StrBytes::from_string(view.protocol_type))
                .with_protocol_data(StrBytes::from_string(view.protocol))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
