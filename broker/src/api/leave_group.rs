//! LeaveGroup: one member (v0–2) or several, by member or instance id (v3+).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::broker::Broker;

pub fn handle(broker: &Broker, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let log = broker.group_log();
    if version < 3 {
        let result = broker.groups.leave(&request.group_id, &request.member_id, None, &log);
        return LeaveGroupResponse::default().with_error_code(result.err().map_or(0, |e| e.code()));
    }
    let members = request
        .members
        .into_iter()
        .map(|m| {
            let result = broker
                .groups
                .leave(&request.group_id, &m.member_id, m.group_instance_id.as_deref(), &log);
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(result.err().map_or(0, |e| e.code()))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}
