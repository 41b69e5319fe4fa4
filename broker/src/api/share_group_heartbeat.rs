//! ShareGroupHeartbeat (KIP-932): a share group member joins (epoch 0), keeps its session, changes its
//! subscription, or leaves (epoch -1); the answer carries its epoch and, when it changed, its assignment
//! (`crate::share::group`). A group id in use by a consumer group (classic or KIP-848) with members is
//! `GROUP_ID_NOT_FOUND`, as Kafka answers for a group of another type.

use std::net::SocketAddr;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;
use tracing::info;

use crate::broker::Broker;
use crate::share::group::{HeartbeatRequest, LEAVE_EPOCH, Topics};
use crate::share::{self};

pub fn handle(
    broker: &Broker,
    request: ShareGroupHeartbeatRequest,
    _version: i16,
    client_id: &str,
    peer: SocketAddr,
) -> ShareGroupHeartbeatResponse {
    let group = request.group_id.0.as_str();
    let refuse = |error: ResponseError, message: &str| {
        ShareGroupHeartbeatResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message.to_owned())))
    };
    if group.is_empty() {
        return refuse(ResponseError::InvalidGroupId, "the group id is empty");
    }
    // A group id belongs to one kind of group; Kafka answers GROUP_ID_NOT_FOUND for another kind.
    let classic = broker.groups.describe(group).is_some_and(|g| !g.members.is_empty());
    let consumer = broker
        .groups
        .describe_consumer(group)
        .is_some_and(|g| !g.members.is_empty());
    if classic || consumer {
        return refuse(
            ResponseError::GroupIdNotFound,
            &format!("group {group} is not a share group"),
        );
    }
    expire_members(broker);
    let image = broker.metadata.image();
    let settings = broker.settings();
    let (_, session) = share::settings_of(&settings, &image, group);
    let topics: Topics = image
        .topics()
        .values()
        .map(|t| (t.name.clone(), (t.id, t.partitions.len() as i32)))
        .collect();
    let heartbeat = HeartbeatRequest {
        group_id: group,
        member_id: request.member_id.as_str(),
        member_epoch: request.member_epoch,
        subscribed: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.0.to_string()).collect()),
        client_id,
        client_host: &format!("/{}", peer.ip()),
    };
    match broker
        .shares
        .groups
        .heartbeat(heartbeat, &topics, session, Instant::now())
    {
        Ok(answer) => {
            // A member that leaves closes its share sessions itself, acknowledging what it processed: the
            // records are not taken from it here, where the leave may overtake those acknowledgements.
            if answer.member_epoch == LEAVE_EPOCH {
                info!(group, member = %answer.member_id, "share group member left");
            }
            let assignment = answer.assignment.map(|partitions| {
                Assignment::default().with_topic_partitions(
                    partitions
                        .into_iter()
                        .map(|(id, partitions)| {
                            TopicPartitions::default().with_topic_id(id).with_partitions(partitions)
                        })
                        .collect(),
                )
            });
            ShareGroupHeartbeatResponse::default()
                .with_member_id(Some(StrBytes::from_string(answer.member_id.to_string())))
                .with_member_epoch(answer.member_epoch)
                .with_heartbeat_interval_ms(share::heartbeat_interval_ms(&settings, &image, group))
                .with_assignment(assignment)
        }
        Err(error) => refuse(error, &error.to_string()),
    }
}

/// Removes the members whose session ended, giving back the records they held. Run at every heartbeat: the
/// live members' heartbeats come often enough to notice the dead within an interval.
pub(super) fn expire_members(broker: &Broker) {
    for (group, member) in broker.shares.groups.expire(Instant::now()) {
        info!(%group, %member, "share group member's session ended");
        broker.shares.member_gone(&group, &member);
    }
}
