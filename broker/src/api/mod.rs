//! One file per Kafka API, and the one `match` that sends each request to its file.
//!
//! [`SUPPORTED`] is what ApiVersions advertises and what the request decoder accepts: exactly the APIs and
//! versions implemented here, never more.

use std::net::SocketAddr;

use kafka_protocol::messages::{
    ApiKey, ConsumerGroupHeartbeatResponse, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, RequestKind,
    ResponseKind, ShareGroupHeartbeatResponse, SyncGroupResponse,
};
use strata_protocol::request::Request;

use crate::broker::Broker;
use crate::metrics::RemoteWait;

mod alter_configs;
mod alter_share_group_offsets;
mod api_versions;
mod authorized;
mod configs;
mod consumer_group_describe;
mod consumer_group_heartbeat;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_share_group_offsets;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_quorum;
mod describe_share_group_offsets;
mod error_codes;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod read_share_group_state;
mod share_acknowledge;
mod share_admin;
mod share_fetch;
mod share_group_describe;
mod share_group_heartbeat;
mod sync_group;
mod write_share_group_state;

pub use api_versions::unsupported_version_response;
pub use error_codes::error_codes;

/// The APIs this broker implements, with the versions it handles. Lower bounds are the oldest versions that
/// Kafka 4 still accepts (KIP-896), upper bounds the newest whose semantics are implemented in full.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::ShareGroupHeartbeat, 1, 1),
    (ApiKey::ShareGroupDescribe, 1, 1),
    (ApiKey::ShareFetch, 1, 1),
    (ApiKey::ShareAcknowledge, 1, 1),
    (ApiKey::ReadShareGroupState, 0, 0),
    (ApiKey::WriteShareGroupState, 0, 0),
    (ApiKey::DescribeShareGroupOffsets, 0, 0),
    (ApiKey::AlterShareGroupOffsets, 0, 0),
    (ApiKey::DeleteShareGroupOffsets, 0, 0),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// The versions of `api_key` this broker handles.
pub fn supported(api_key: ApiKey) -> Option<std::ops::RangeInclusive<i16>> {
    SUPPORTED
        .iter()
        .find(|(key, _, _)| *key == api_key)
        .map(|(_, min, max)| *min..=*max)
}

/// Whether this broker may answer for `group` now: NOT_COORDINATOR unless it leads the group's partition of
/// `__consumer_offsets`, COORDINATOR_LOAD_IN_PROGRESS while it reads that partition back.
pub(crate) fn check_coordinator(broker: &Broker, group: &str) -> Result<(), kafka_protocol::ResponseError> {
    broker
        .offsets
        .coordinator_partition(&broker.replicas, group)
        .map(|_| ())
}

/// [`check_coordinator`] as an error code (0 when this broker can answer).
fn coordinator_error(broker: &Broker, group: &str) -> i16 {
    check_coordinator(broker, group).map_or_else(|e| e.code(), |()| 0)
}

/// Where a request came from: the client's address and the listener it connected to, whose addresses
/// Metadata, FindCoordinator and DescribeCluster answer with (Kafka's per-listener endpoints).
#[derive(Debug, Clone)]
pub struct Origin {
    pub peer: SocketAddr,
    pub listener: std::sync::Arc<str>,
}

/// Handles one request. `None` means no response is sent (a produce with `acks=0`). The time a produce or
/// fetch spends waiting on others (followers, new data) is added to `remote`.
pub async fn handle(broker: &Broker, request: Request, origin: &Origin, remote: &RemoteWait) -> Option<ResponseKind> {
    let (peer, listener) = (origin.peer, &*origin.listener);
    let version = request.version();
    let client_id = request.header.client_id.as_deref().unwrap_or_default().to_owned();
    Some(match request.body {
        RequestKind::ApiVersions(body) => ResponseKind::ApiVersions(api_versions::handle(body, version)),
        RequestKind::Metadata(body) => ResponseKind::Metadata(metadata::handle(broker, body, version, listener).await),
        RequestKind::CreateTopics(body) => {
            ResponseKind::CreateTopics(create_topics::handle(broker, body, version).await)
        }
        RequestKind::DeleteTopics(body) => {
            ResponseKind::DeleteTopics(delete_topics::handle(broker, body, version).await)
        }
        RequestKind::Produce(body) => {
            return produce::handle(broker, body, version, remote)
                .await
                .map(ResponseKind::Produce);
        }
        RequestKind::Fetch(body) => ResponseKind::Fetch(fetch::handle(broker, body, version, remote).await),
        RequestKind::ListOffsets(body) => ResponseKind::ListOffsets(list_offsets::handle(broker, body, version)),
        RequestKind::DeleteRecords(body) => ResponseKind::DeleteRecords(delete_records::handle(broker, body, version)),
        RequestKind::DescribeConfigs(body) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(broker, body, version))
        }
        RequestKind::AlterConfigs(body) => {
            ResponseKind::AlterConfigs(alter_configs::handle(broker, body, version).await)
        }
        RequestKind::IncrementalAlterConfigs(body) => {
            ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(broker, body, version).await)
        }
        RequestKind::CreatePartitions(body) => {
            ResponseKind::CreatePartitions(create_partitions::handle(broker, body, version).await)
        }
        RequestKind::DescribeCluster(body) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(broker, body, version, listener))
        }
        RequestKind::DescribeQuorum(body) => {
            ResponseKind::DescribeQuorum(describe_quorum::handle(broker, body, version).await)
        }
        RequestKind::InitProducerId(body) => {
            ResponseKind::InitProducerId(init_producer_id::handle(broker, body, version))
        }
        RequestKind::FindCoordinator(body) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(broker, body, version, listener).await)
        }
        // A group's requests go to its coordinator; elsewhere they get NOT_COORDINATOR and clients look again
        // (or COORDINATOR_LOAD_IN_PROGRESS while it reads the group's offsets back, and clients retry).
        RequestKind::JoinGroup(body) if coordinator_error(broker, &body.group_id) != 0 => ResponseKind::JoinGroup(
            JoinGroupResponse::default().with_error_code(coordinator_error(broker, &body.group_id)),
        ),
        RequestKind::SyncGroup(body) if coordinator_error(broker, &body.group_id) != 0 => ResponseKind::SyncGroup(
            SyncGroupResponse::default().with_error_code(coordinator_error(broker, &body.group_id)),
        ),
        RequestKind::Heartbeat(body) if coordinator_error(broker, &body.group_id) != 0 => ResponseKind::Heartbeat(
            HeartbeatResponse::default().with_error_code(coordinator_error(broker, &body.group_id)),
        ),
        RequestKind::LeaveGroup(body) if coordinator_error(broker, &body.group_id) != 0 => ResponseKind::LeaveGroup(
            LeaveGroupResponse::default().with_error_code(coordinator_error(broker, &body.group_id)),
        ),
        RequestKind::ShareGroupHeartbeat(body) if coordinator_error(broker, &body.group_id) != 0 => {
            ResponseKind::ShareGroupHeartbeat(
                ShareGroupHeartbeatResponse::default().with_error_code(coordinator_error(broker, &body.group_id)),
            )
        }
        RequestKind::ShareGroupHeartbeat(body) => {
            ResponseKind::ShareGroupHeartbeat(share_group_heartbeat::handle(broker, body, version, &client_id, peer))
        }
        RequestKind::ShareGroupDescribe(body) => {
            ResponseKind::ShareGroupDescribe(share_group_describe::handle(broker, body, version))
        }
        RequestKind::ShareFetch(body) => ResponseKind::ShareFetch(share_fetch::handle(broker, body, version).await),
        RequestKind::ShareAcknowledge(body) => {
            ResponseKind::ShareAcknowledge(share_acknowledge::handle(broker, body, version).await)
        }
        // The group's coordinator answers these (each checks, per group).
        RequestKind::DescribeShareGroupOffsets(body) => {
            ResponseKind::DescribeShareGroupOffsets(describe_share_group_offsets::handle(broker, body, version).await)
        }
        RequestKind::AlterShareGroupOffsets(body) => {
            ResponseKind::AlterShareGroupOffsets(alter_share_group_offsets::handle(broker, body, version).await)
        }
        RequestKind::DeleteShareGroupOffsets(body) => {
            ResponseKind::DeleteShareGroupOffsets(delete_share_group_offsets::handle(broker, body, version).await)
        }
        RequestKind::ConsumerGroupHeartbeat(body) if coordinator_error(broker, &body.group_id) != 0 => {
            ResponseKind::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default().with_error_code(coordinator_error(broker, &body.group_id)),
            )
        }
        RequestKind::ConsumerGroupHeartbeat(body) => ResponseKind::ConsumerGroupHeartbeat(
            consumer_group_heartbeat::handle(broker, body, version, &client_id, format!("/{}", peer.ip())).await,
        ),
        RequestKind::ConsumerGroupDescribe(body) => {
            ResponseKind::ConsumerGroupDescribe(consumer_group_describe::handle(broker, body, version))
        }
        RequestKind::ReadShareGroupState(body) => {
            ResponseKind::ReadShareGroupState(read_share_group_state::handle(broker, body, version))
        }
        RequestKind::WriteShareGroupState(body) => {
            ResponseKind::WriteShareGroupState(write_share_group_state::handle(broker, body, version).await)
        }
        RequestKind::JoinGroup(body) => {
            ResponseKind::JoinGroup(join_group::handle(broker, body, version, &client_id, peer).await)
        }
        RequestKind::SyncGroup(body) => ResponseKind::SyncGroup(sync_group::handle(broker, body, version).await),
        RequestKind::Heartbeat(body) => ResponseKind::Heartbeat(heartbeat::handle(broker, body, version)),
        RequestKind::LeaveGroup(body) => ResponseKind::LeaveGroup(leave_group::handle(broker, body, version)),
        RequestKind::OffsetCommit(body) => {
            ResponseKind::OffsetCommit(offset_commit::handle(broker, body, version).await)
        }
        RequestKind::OffsetFetch(body) => ResponseKind::OffsetFetch(offset_fetch::handle(broker, body, version)),
        RequestKind::ListGroups(body) => ResponseKind::ListGroups(list_groups::handle(broker, body, version)),
        RequestKind::DescribeGroups(body) => {
            ResponseKind::DescribeGroups(describe_groups::handle(broker, body, version))
        }
        RequestKind::DeleteGroups(body) => {
            ResponseKind::DeleteGroups(delete_groups::handle(broker, body, version).await)
        }
        RequestKind::OffsetDelete(body) => {
            ResponseKind::OffsetDelete(offset_delete::handle(broker, body, version).await)
        }
        RequestKind::OffsetForLeaderEpoch(body) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(broker, body, version))
        }
        other => unreachable!("the decoder only accepts APIs in SUPPORTED, not {other:?}"),
    })
}
