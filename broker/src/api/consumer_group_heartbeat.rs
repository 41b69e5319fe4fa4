//! ConsumerGroupHeartbeat (KIP-848): joins, heartbeats and leaves of consumer-protocol groups, answered with
//! the member's epoch and, when it changed, its assignment. The state machine is
//! [`crate::groups::consumer`]; this file turns the request into its input and its output into the answer.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;
use strata_controller::{ConfigResource, MetadataImage};
use uuid::Uuid;

use crate::broker::Broker;
use crate::groups::consumer;

/// Topics as the metadata image has them.
pub(super) struct ImageTopics(pub MetadataImage);

impl consumer::Topics for ImageTopics {
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
        self.0
            .topic_by_name(name)
            .map(|t| (t.id, i32::try_from(t.partitions.len()).unwrap_or(i32::MAX)))
    }

    fn name(&self, id: Uuid) -> Option<String> {
        self.0.topic(&id).map(|t| t.name.clone())
    }

    fn names(&self, visit: &mut dyn FnMut(&str)) {
        self.0
            .topics()
            .values()
            .filter(|t| t.name != crate::groups::offsets::OFFSETS_TOPIC)
            .for_each(|t| visit(&t.name));
    }
}

/// A group config in milliseconds, or the broker's default. Group configs were checked against Kafka's
/// bounds when set (see `dynamic::validate_group`).
fn group_ms(image: &MetadataImage, group: &str, key: &str, default: std::time::Duration) -> std::time::Duration {
    image
        .configs(&ConfigResource::Group(group.to_owned()))
        .and_then(|configs| configs.get(key))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map_or(default, std::time::Duration::from_millis)
}

pub async fn handle(
    broker: &Broker,
    request: ConsumerGroupHeartbeatRequest,
    _version: i16,
    client_id: &str,
    client_host: String,
) -> ConsumerGroupHeartbeatResponse {
    let group = request.group_id.0.to_string();
    if broker.shares.groups.describe(&group, &Default::default()).is_some() {
        return ConsumerGroupHeartbeatResponse::default()
            .with_error_code(ResponseError::GroupIdNotFound.code())
            .with_error_message(Some(StrBytes::from_string(format!("group {group} is a share group"))));
    }
    let image = broker.metadata.image();
    let settings = broker.groups.settings();
    let session_timeout = group_ms(
        &image,
        &group,
        "consumer.session.timeout.ms",
        settings.consumer_session_timeout,
    );
    let heartbeat_interval = group_ms(
        &image,
        &group,
        "consumer.heartbeat.interval.ms",
        settings.consumer_heartbeat_interval,
    );
    let heartbeat = consumer::Heartbeat {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|s| s.to_string()),
        rack_id: request.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.0.to_string()).collect()),
        subscribed_topic_regex: request.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: request.server_assignor.map(|s| s.to_string()),
        owned: request.topic_partitions.map(|topics| {
            let mut owned = consumer::Assignment::new();
            for topic in topics {
                owned.entry(topic.topic_id).or_default().extend(topic.partitions);
            }
            owned
        }),
        client_id: client_id.to_owned(),
        client_host,
        session_timeout,
    };
    let response = ConsumerGroupHeartbeatResponse::default()
        .with_heartbeat_interval_ms(i32::try_from(heartbeat_interval.as_millis()).unwrap_or(i32::MAX));
    let result = broker
        .groups
        .consumer_heartbeat(&group, heartbeat, &ImageTopics(image), &broker.group_log());
    // Answered once the group's records are on every in-sync replica, so that a new coordinator knows
    // whatever this answer tells the member.
    let result = match result {
        Ok((answer, Some(written))) => written
            .wait()
            .await
            .map(|()| answer)
            .map_err(|error| (error, format!("writing group {group} to __consumer_offsets failed"))),
        Ok((answer, None)) => Ok(answer),
        Err(refusal) => Err(refusal),
    };
    match result {
        Ok(answer) => response
            .with_member_id(Some(StrBytes::from_string(answer.member_id)))
            .with_member_epoch(answer.member_epoch)
            .with_assignment(answer.assignment.map(|assignment| {
                let topics = assignment
                    .into_iter()
                    .map(|(topic, partitions)| {
                        TopicPartitions::default()
                            .with_topic_id(topic)
                            .with_partitions(partitions.into_iter().collect())
                    })
                    .collect();
                Assignment::default().with_topic_partitions(topics)
            })),
        Err((error, message)) => response
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message))),
    }
}
