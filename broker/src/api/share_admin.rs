//! What the three share-group offset APIs (DescribeShareGroupOffsets, AlterShareGroupOffsets,
//! DeleteShareGroupOffsets) check alike: that the group is a share group, whether it has members, and where
//! a share-partition's state is.
//!
//! These requests go to the group's coordinator; a share-partition's durable state lives with its share
//! coordinator (`__share_group_state`, `crate::share::persister`), which any broker reaches, so they read and
//! change it wherever the partition is led.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use strata_storage::TopicPartition;

use crate::broker::Broker;
use crate::replica::Partition;

/// Why a group's offsets may not be read or changed: the group-level error of the three APIs.
pub(super) fn check_group(broker: &Broker, group: &str) -> Result<(), (ResponseError, String)> {
    if group.is_empty() {
        return Err((ResponseError::InvalidGroupId, "the group id is empty".into()));
    }
    super::check_coordinator(broker, group).map_err(|e| (e, e.to_string()))?;
    if consumer_group(broker, group) {
        // As Kafka answers for a group of another type.
        return Err((
            ResponseError::GroupIdNotFound,
            format!("group {group} is not a share group"),
        ));
    }
    Ok(())
}

/// Whether `group` names a consumer group (classic or KIP-848: with members, or with committed offsets)
/// and no share group.
fn consumer_group(broker: &Broker, group: &str) -> bool {
    if has_members(broker, group) || !broker.shares.of_group(group).is_empty() {
        return false;
    }
    broker.groups.describe(group).is_some_and(|g| !g.members.is_empty())
        || broker
            .groups
            .describe_consumer(group)
            .is_some_and(|g| !g.members.is_empty())
        || !broker.offsets.of_group(group).is_empty()
}

/// Whether the share group `group` has members now (members whose session ended are removed first).
pub(super) fn has_members(broker: &Broker, group: &str) -> bool {
    super::share_group_heartbeat::expire_members(broker);
    broker.shares.groups.describe(group, &Default::default()).is_some()
}

/// The group-level refusal of an offset change while `group` has members, as Kafka refuses it: the
/// members' acknowledgements would race the change.
pub(super) fn check_empty(broker: &Broker, group: &str) -> Result<(), (ResponseError, String)> {
    if has_members(broker, group) {
        return Err((
            ResponseError::NonEmptyGroup,
            format!("share group {group} has members; its offsets change only when it has none"),
        ));
    }
    Ok(())
}

/// The partition `tp` as this broker leads it, where its share-partitions live.
pub(super) fn led_here(broker: &Broker, tp: &TopicPartition) -> Result<Arc<Partition>, ResponseError> {
    let partition = broker.replicas.get(tp).ok_or(ResponseError::NotLeaderOrFollower)?;
    partition.leader_epoch().ok_or(ResponseError::NotLeaderOrFollower)?;
    Ok(partition)
}

/// Replaces `group`'s durable state of `tp` with `snapshot` at the next state epoch. A leader holding the old
/// state is fenced at its next write and reloads when a member opens a session; when that leader is this
/// broker, it takes the new state at once.
pub(super) async fn replace_state(
    broker: &Broker,
    group: &str,
    tp: &TopicPartition,
    topic_id: uuid::Uuid,
    leader_epoch: i32,
    snapshot: crate::share::partition::ShareSnapshot,
) -> Result<(), ResponseError> {
    let key = crate::share::state::StateKey {
        group: group.to_owned(),
        topic_id,
        partition: tp.partition,
    };
    let state_epoch = crate::share::persister::read(broker, &key, leader_epoch)
        .await?
        .map_or(0, |(state_epoch, _)| state_epoch);
    crate::share::persister::write(broker, &key, leader_epoch, state_epoch + 1, snapshot.clone()).await?;
    if let Some(slot) = broker.shares.get(group, tp) {
        broker.shares.forget(group, tp, &slot);
    }
    if snapshot.start_offset != crate::share::state::UNINITIALIZED
        && let Ok(partition) = led_here(broker, tp)
        && let Some(current) = partition.leader_epoch()
    {
        let image = broker.metadata.image();
        let (settings, _) = crate::share::settings_of(&broker.settings(), &image, group);
        let fresh = crate::share::partition::SharePartition::restore(&snapshot, settings);
        broker.shares.install(group, tp, (current, state_epoch + 1), fresh);
    }
    Ok(())
}
