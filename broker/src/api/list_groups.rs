//! ListGroups: every group the coordinator knows, with its state (v4 filters by state).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: ListGroupsRequest, _version: i16) -> ListGroupsResponse {
    let mut groups: Vec<(String, &'static str, String)> = broker
        .groups
        .list()
        .into_iter()
        .map(|(id, state, protocol_type)| (id, state.name(), protocol_type))
        .collect();
    // Groups known only by their committed offsets (after a restart) are empty consumer groups.
    for group in broker.offsets.groups() {
        if !groups.iter().any(|(id, _, _)| *id == group) {
            groups.push((group, "Empty", "consumer".into()));
        }
    }
    let listed = groups
        .into_iter()
        .filter(|(_, state, _)| {
            request.states_filter.is_empty() || request.states_filter.iter().any(|s| s.eq_ignore_ascii_case(state))
        })
        .map(|(id, state, protocol_type)| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(id)))
                .with_protocol_type(StrBytes::from_string(protocol_type))
                .with_group_state(StrBytes::from_static_str(state))
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}
