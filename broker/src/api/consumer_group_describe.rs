//! ConsumerGroupDescribe (KIP-848): consumer-protocol groups with their epochs, assignor and members, each
//! with its current and target assignment. A classic group, or an unknown id, is `GROUP_ID_NOT_FOUND`, as
//! Kafka answers.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::authorized::{self, Resource};
use super::check_coordinator;
use super::consumer_group_heartbeat::ImageTopics;
use crate::broker::Broker;
use crate::groups::consumer::{self, Topics};

/// KIP-1099's `member_type` (v1): -1 unknown, 0 classic, 1 consumer. Every member here uses the consumer
/// protocol.
const MEMBER_TYPE_CONSUMER: i8 = 1;

fn assignment(topics: &ImageTopics, assignment: consumer::Assignment) -> Assignment {
    let topic_partitions = assignment
        .into_iter()
        .map(|(id, partitions)| {
            TopicPartitions::default()
                .with_topic_id(id)
                .with_topic_name(TopicName(StrBytes::from_string(topics.name(id).unwrap_or_default())))
                .with_partitions(partitions.into_iter().collect())
        })
        .collect();
    Assignment::default().with_topic_partitions(topic_partitions)
}

pub fn handle(broker: &Broker, request: ConsumerGroupDescribeRequest, _version: i16) -> ConsumerGroupDescribeResponse {
    let operations = authorized::operations(request.include_authorized_operations, Resource::Group);
    let topics = ImageTopics(broker.metadata.image());
    let groups = request
        .group_ids
        .into_iter()
        .map(|id| {
            let described = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(operations);
            if let Err(error) = check_coordinator(broker, &id) {
                return described.with_error_code(error.code());
            }
            let Some(view) = broker.groups.describe_consumer(&id) else {
                let message = if broker.groups.is_classic(&id) {
                    format!("Group {} is not a consumer group.", id.0)
                } else {
                    format!("Group {} not found.", id.0)
                };
                return described
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(StrBytes::from_string(message)));
            };
            let members = view
                .members
                .into_iter()
                .map(|m| {
                    Member::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_instance_id(m.instance_id.map(StrBytes::from_string))
                        .with_rack_id(m.rack_id.map(StrBytes::from_string))
                        .with_member_epoch(m.member_epoch)
                        .with_client_id(StrBytes::from_string(m.client_id))
                        .with_client_host(StrBytes::from_string(m.client_host))
                        .with_subscribed_topic_names(
                            m.subscribed
                                .into_iter()
                                .map(|t| TopicName(StrBytes::from_string(t)))
                                .collect(),
                        )
                        .with_subscribed_topic_regex(m.regex.map(StrBytes::from_string))
                        .with_assignment(assignment(&topics, m.assignment))
                        .with_target_assignment(assignment(&topics, m.target))
                        .with_member_type(MEMBER_TYPE_CONSUMER)
                })
                .collect();
            described
                .with_group_state(StrBytes::from_static_str(view.state))
                .with_group_epoch(view.epoch)
                .with_assignment_epoch(view.assignment_epoch)
                .with_assignor_name(StrBytes::from_static_str(view.assignor))
                .with_members(members)
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
