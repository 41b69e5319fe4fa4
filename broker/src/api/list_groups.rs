//! ListGroups: every group the coordinator knows, with its state. v4 filters by state (KIP-518), v5 by group
//! type (KIP-848); both filters match case-insensitively, as Kafka's do, and an empty filter matches all.
//! Groups of JoinGroup/SyncGroup are `classic`, groups of ConsumerGroupHeartbeat `consumer` (with Kafka's
//! consumer group states: Empty, Assigning, Reconciling, Stable); both have protocol type `consumer`. Share
//! groups (KIP-932) are `share`, with protocol type `share`: `Stable` with members, `Empty` without members but
//! with share-partitions on this broker.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

/// KIP-848's name for the groups of the JoinGroup/SyncGroup protocol.
const GROUP_TYPE_CLASSIC: &str = "classic";
/// KIP-848's name for the groups of the ConsumerGroupHeartbeat protocol.
const GROUP_TYPE_CONSUMER: &str = "consumer";
/// KIP-932's group type and protocol type of share groups.
const GROUP_TYPE_SHARE: &str = "share";

pub fn handle(broker: &Broker, request: ListGroupsRequest, _version: i16) -> ListGroupsResponse {
    // (id, state, protocol type, group type)
    let mut groups: Vec<(String, &'static str, String, &'static str)> = broker
        .groups
        .list()
        .into_iter()
        .map(|(id, state, protocol_type)| (id, state.name(), protocol_type, GROUP_TYPE_CLASSIC))
        .collect();
    for (id, state) in broker.groups.list_consumer() {
        groups.push((id, state, "consumer".into(), GROUP_TYPE_CONSUMER));
    }
    // Groups known only by their committed offsets (after a restart) are empty classic consumer groups.
    for group in broker.offsets.groups() {
        if !groups.iter().any(|(id, _, _, _)| *id == group) {
            groups.push((group, "Empty", "consumer".into(), GROUP_TYPE_CLASSIC));
        }
    }
    super::share_group_heartbeat::expire_members(broker);
    for group in broker.shares.groups.group_ids() {
        groups.push((group, "Stable", GROUP_TYPE_SHARE.into(), GROUP_TYPE_SHARE));
    }
    // A share group without members whose share-partitions remain (members left, or its offsets were
    // altered) is an empty share group, as Kafka lists it; listed by its coordinator only, as share-partitions
    // live on partition leaders, which may be other brokers.
    for group in broker.shares.group_ids_with_partitions() {
        if !groups.iter().any(|(id, _, _, _)| *id == group) && super::check_coordinator(broker, &group).is_ok() {
            groups.push((group, "Empty", GROUP_TYPE_SHARE.into(), GROUP_TYPE_SHARE));
        }
    }
    // The filters decode empty at versions without them.
    let matches =
        |filter: &[StrBytes], value: &str| filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value));
    let listed = groups
        .into_iter()
        .filter(|(_, state, _, kind)| matches(&request.states_filter, state) && matches(&request.types_filter, kind))
        .map(|(id, state, protocol_type, kind)| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(id)))
                .with_protocol_type(StrBytes::from_string(protocol_type))
                .with_group_state(StrBytes::from_static_str(state))
                .with_group_type(StrBytes::from_static_str(kind))
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}
