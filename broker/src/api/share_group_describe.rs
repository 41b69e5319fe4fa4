//! ShareGroupDescribe (KIP-932): a share group's members, their subscriptions and assignments. A group with
//! no members is `Empty` if this broker keeps share-partitions for it, else `GROUP_ID_NOT_FOUND`.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::share_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use kafka_protocol::messages::{ShareGroupDescribeRequest, ShareGroupDescribeResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::authorized::{self, Resource};
use crate::broker::Broker;
use crate::share::group::Topics;

pub fn handle(broker: &Broker, request: ShareGroupDescribeRequest, _version: i16) -> ShareGroupDescribeResponse {
    super::share_group_heartbeat::expire_members(broker);
    let image = broker.metadata.image();
    let topics: Topics = image
        .topics()
        .values()
        .map(|t| (t.name.clone(), (t.id, t.partitions.len() as i32)))
        .collect();
    let name_of = |id| {
        image
            .topic(&id)
            .map(|t| TopicName(StrBytes::from_string(t.name.clone())))
            .unwrap_or_default()
    };
    let operations = authorized::operations(request.include_authorized_operations, Resource::Group);
    let groups = request
        .group_ids
        .into_iter()
        .map(|group_id| {
            let id = group_id.0.to_string();
            let described = DescribedGroup::default().with_group_id(group_id.clone());
            if let Some(code) = super::check_coordinator(broker, &id).err() {
                return described.with_error_code(code.code());
            }
            match broker.shares.groups.describe(&id, &topics) {
                Some(view) => described
                    .with_group_state(StrBytes::from_static_str("Stable"))
                    .with_group_epoch(view.epoch)
                    .with_assignment_epoch(view.epoch)
                    .with_assignor_name(StrBytes::from_static_str("simple"))
                    .with_authorized_operations(operations)
                    .with_members(
                        view.members
                            .into_iter()
                            .map(|m| {
                                let assignment = m
                                    .assignment
                                    .into_iter()
                                    .map(|(id, partitions)| {
                                        TopicPartitions::default()
                                            .with_topic_id(id)
                                            .with_topic_name(name_of(id))
                                            .with_partitions(partitions)
                                    })
                                    .collect();
                                Member::default()
                                    .with_member_id(StrBytes::from_string(m.member_id.to_string()))
                                    .with_member_epoch(m.member_epoch)
                                    .with_client_id(StrBytes::from_string(m.client_id))
                                    .with_client_host(StrBytes::from_string(m.client_host))
                                    .with_subscribed_topic_names(
                                        m.subscribed
                                            .into_iter()
                                            .map(|t| TopicName(StrBytes::from_string(t)))
                                            .collect(),
                                    )
                                    .with_assignment(Assignment::default().with_topic_partitions(assignment))
                            })
                            .collect(),
                    ),
                None if !broker.shares.of_group(&id).is_empty() => described
                    .with_group_state(StrBytes::from_static_str("Empty"))
                    .with_assignor_name(StrBytes::from_static_str("simple"))
                    .with_authorized_operations(operations),
                None => described
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(StrBytes::from_string(format!("share group {id} does not exist")))),
            }
        })
        .collect();
    ShareGroupDescribeResponse::default().with_groups(groups)
}
