//! Typed helpers for share groups (KIP-932) as an administrator sees them: a group's members and
//! assignments (ShareGroupDescribe), and its share-partition start offsets, read (DescribeShareGroupOffsets),
//! set (AlterShareGroupOffsets) and forgotten (DeleteShareGroupOffsets). Listing share groups is
//! [`Client::list_groups`], deleting one [`Client::delete_group`]. All of these go to the group's
//! coordinator.
//!
//! As in [`super::admin`], each helper turns error codes into [`ClientError::Kafka`] with what was being
//! done; a partition's error in DescribeShareGroupOffsets is kept with the partition instead, so that one
//! partition the coordinator cannot answer for does not hide the others.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_share_group_offsets_request::{
    AlterShareGroupOffsetsRequestPartition, AlterShareGroupOffsetsRequestTopic,
};
use kafka_protocol::messages::delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic;
use kafka_protocol::messages::describe_share_group_offsets_request::{
    DescribeShareGroupOffsetsRequestGroup, DescribeShareGroupOffsetsRequestTopic,
};
use kafka_protocol::messages::{
    AlterShareGroupOffsetsRequest, DeleteShareGroupOffsetsRequest, DescribeShareGroupOffsetsRequest, GroupId,
    ShareGroupDescribeRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{Client, Result, check};

fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// A share group as ShareGroupDescribe describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupDescription {
    pub group_id: String,
    /// `Stable` with members, `Empty` without (but with state kept for it).
    pub state: String,
    pub epoch: i32,
    pub members: Vec<ShareGroupMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGroupMember {
    pub member_id: String,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed: Vec<String>,
    /// `(topic, partitions)`: in a share group every member is assigned every partition it subscribes to.
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// A share group's start offset of one partition (DescribeShareGroupOffsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareStartOffset {
    pub topic: String,
    pub partition: i32,
    /// Every record before it is done with; `None` where the group has not started on the partition.
    pub start_offset: Option<i64>,
    /// Why the coordinator could not answer for this partition.
    pub error: Option<ResponseError>,
}

impl Client {
    /// Describes one share group. A group that does not exist is [`ResponseError::GroupIdNotFound`].
    pub async fn describe_share_group(&mut self, group: &str) -> Result<ShareGroupDescription> {
        let request = ShareGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(str_bytes(group))])
            .with_include_authorized_operations(false);
        let response = self.send(request).await?;
        let described =
            self.described::<ShareGroupDescribeRequest, _>(response.groups, |g| g.group_id.0.as_str(), group)?;
        check(described.error_code, described.error_message.as_ref(), || {
            format!("describing share group {group}")
        })?;
        Ok(ShareGroupDescription {
            group_id: group.to_owned(),
            state: described.group_state.to_string(),
            epoch: described.group_epoch,
            members: described
                .members
                .into_iter()
                .map(|m| ShareGroupMember {
                    member_id: m.member_id.to_string(),
                    member_epoch: m.member_epoch,
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    subscribed: m.subscribed_topic_names.into_iter().map(|t| t.0.to_string()).collect(),
                    assignment: m
                        .assignment
                        .topic_partitions
                        .into_iter()
                        .map(|t| (t.topic_name.0.to_string(), t.partitions))
                        .collect(),
                })
                .collect(),
        })
    }

    /// A share group's start offsets: for `topics` (`(topic, partitions)`), or, with `None`, for every
    /// partition the group has started on.
    pub async fn share_group_offsets(
        &mut self,
        group: &str,
        topics: Option<&[(&str, &[i32])]>,
    ) -> Result<Vec<ShareStartOffset>> {
        let wanted = topics.map(|topics| {
            topics
                .iter()
                .map(|(name, partitions)| {
                    DescribeShareGroupOffsetsRequestTopic::default()
                        .with_topic_name(TopicName(str_bytes(name)))
                        .with_partitions(partitions.to_vec())
                })
                .collect()
        });
        let request = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
            DescribeShareGroupOffsetsRequestGroup::default()
                .with_group_id(GroupId(str_bytes(group)))
                .with_topics(wanted),
        ]);
        let response = self.send(request).await?;
        let mut offsets = Vec::new();
        for g in response.groups {
            check(g.error_code, g.error_message.as_ref(), || {
                format!("describing the offsets of share group {group}")
            })?;
            for t in g.topics {
                for p in t.partitions {
                    offsets.push(ShareStartOffset {
                        topic: t.topic_name.0.to_string(),
                        partition: p.partition_index,
                        start_offset: (p.start_offset >= 0).then_some(p.start_offset),
                        error: ResponseError::try_from_code(p.error_code),
                    });
                }
            }
        }
        Ok(offsets)
    }

    /// Sets a share group's start offsets (`(topic, partition, offset)`): what is in flight is forgotten and
    /// delivery starts again from there. The coordinator refuses (NonEmptyGroup) while the group has members.
    pub async fn alter_share_group_offsets(&mut self, group: &str, offsets: &[(&str, i32, i64)]) -> Result<()> {
        let mut topics: Vec<AlterShareGroupOffsetsRequestTopic> = Vec::new();
        for &(topic, partition, offset) in offsets {
            let entry = AlterShareGroupOffsetsRequestPartition::default()
                .with_partition_index(partition)
                .with_start_offset(offset);
            match topics.iter_mut().find(|t| t.topic_name.0.as_str() == topic) {
                Some(t) => t.partitions.push(entry),
                None => topics.push(
                    AlterShareGroupOffsetsRequestTopic::default()
                        .with_topic_name(TopicName(str_bytes(topic)))
                        .with_partitions(vec![entry]),
                ),
            }
        }
        let request = AlterShareGroupOffsetsRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_topics(topics);
        let response = self.send(request).await?;
        check(response.error_code, response.error_message.as_ref(), || {
            format!("altering the offsets of share group {group}")
        })?;
        for t in response.responses {
            for p in t.partitions {
                check(p.error_code, p.error_message.as_ref(), || {
                    format!(
                        "altering the offset of share group {group} for {}-{}",
                        t.topic_name.0, p.partition_index
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Forgets a share group's state for whole topics: it starts them again as a new group would
    /// (`share.auto.offset.reset`). The coordinator refuses (NonEmptyGroup) while the group has members.
    pub async fn delete_share_group_offsets(&mut self, group: &str, topics: &[&str]) -> Result<()> {
        let request = DeleteShareGroupOffsetsRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_topics(
                topics
                    .iter()
                    .map(|t| DeleteShareGroupOffsetsRequestTopic::default().with_topic_name(TopicName(str_bytes(t))))
                    .collect(),
            );
        let response = self.send(request).await?;
        check(response.error_code, response.error_message.as_ref(), || {
            format!("deleting the offsets of share group {group}")
        })?;
        for t in response.responses {
            check(t.error_code, t.error_message.as_ref(), || {
                format!(
                    "deleting the offsets of share group {group} for topic {}",
                    t.topic_name.0
                )
            })?;
        }
        Ok(())
    }
}
